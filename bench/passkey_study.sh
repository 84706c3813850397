#!/usr/bin/env bash
# LeMo's passkey study (bench/RESULTS.md): refmodel-22m extended to 16K (linear RoPE x4), LoRA
# r=8 on q,k,v,o, fine-tuned on the shared data's training split with passkey examples mixed in
# (bench/passkey.py gen: one whole example per 16K window, filler from the training split),
# densely and with LeMo (the default schedule; exact, random and, with PK_PREDICTOR, predictor
# scores); every adapter, and the base model, is then evaluated densely on held-out passkeys
# (filler from Persuasion, never trained on; phrasing the training examples never use) at
# 4K, 8K and 16K tokens and five depths. Prints one JSON line per cell and a table.
#   env: LEMO_BIN (build/lemo), LEMO_SHARED (../shared), PK_STEPS (600), PK_N (150 passkey
#        examples), PK_LR (0.002), PK_PER (4 examples per cell), PK_MODES (dense,exact,random
#        [,predictor]; MODE:F keeps F of a sparse layer's blocks instead of 0.4, e.g. exact:0.6),
#        PK_PREDICTOR (a lemo prepare folder for this model), PK_SKIP_BASE (1: no base row), PK_OUT
# Usage: bench/passkey_study.sh   (needs CUDA, python3 with torch, transformers, peft)
set -u -o pipefail
cd "$(dirname "$0")/.."
lemo=${LEMO_BIN:-build/lemo} shared=${LEMO_SHARED:-../shared}
steps=${PK_STEPS:-600} n=${PK_N:-150} lr=${PK_LR:-0.002} per=${PK_PER:-4} S=16384
out=${PK_OUT:-$(mktemp -d /tmp/lemo-passkey.XXXXXX)}
model="$shared/models/refmodel-22m"
[ -f "$model/config.json" ] && [ -f "$shared/data/finetune.jsonl.gz" ] || { echo "passkey_study: no $model or shared data"; exit 77; }
mkdir -p "$out"
zcat "$shared/data/finetune.jsonl.gz" | grep -v '"source": "rfc:rfc[0-9]*7"' | grep -v '"source": "austen:persuasion' > "$out/text.jsonl"
zcat "$shared/data/finetune.jsonl.gz" | grep '"source": "austen:persuasion' > "$out/heldout.jsonl"
python3 bench/passkey.py gen --tokenizer "$model" --filler "$out/text.jsonl" --out "$out/passkeys.jsonl" --context $S --n "$n" || exit 1
cat "$out/passkeys.jsonl" "$out/text.jsonl" > "$out/train.jsonl"  # the examples first: each fills one window
evalpk() {  # name adapter-or-empty
    local a=(); [ -n "$2" ] && a=(--adapter "$2")
    python3 bench/passkey.py eval --model "$model" "${a[@]}" --filler "$out/heldout.jsonl" --per "$per" \
        --variant heldout > "$out/eval-$1.jsonl" 2> "$out/eval-$1.err" || echo "passkey_study: eval $1 failed: $(tail -2 "$out/eval-$1.err")"
    tail -1 "$out/eval-$1.jsonl"
}
[ "${PK_SKIP_BASE:-0}" = 1 ] || evalpk base ""
modes=dense,exact,random
[ -n "${PK_PREDICTOR:-}" ] && modes=$modes,predictor
for mode in $(echo "${PK_MODES:-$modes}" | tr , ' '); do
    keep=""
    case $mode in *:*) keep=", \"keep\": ${mode#*:}" ;; esac
    case ${mode%%:*} in
        dense) lm="" ;;
        exact|random) lm=", \"lemo\": {\"scores\": \"${mode%%:*}\"$keep}" ;;
        predictor) lm=", \"lemo\": {\"scores\": \"predictor\", \"predictor\": \"$PK_PREDICTOR\"$keep}" ;;
        *) echo "passkey_study: unknown mode $mode"; continue ;;
    esac
    cat > "$out/$mode.json" <<JSON
{"model": "$model", "train_file": "$out/train.jsonl", "eval_fraction": 0, "output_dir": "$out/$mode",
 "context_length": $S, "max_steps": $steps, "seed": 3, "device": "cuda", "rope_scaling": {"type": "linear", "factor": 4},
 "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
 "optimizer": {"lr": $lr, "warmup_steps": 10}$lm}
JSON
    rm -rf "$out/$mode"
    "$lemo" train "$out/$mode.json" > "$out/$mode.log" 2> "$out/$mode.err" || { echo "passkey_study: $mode failed: $(tail -2 "$out/$mode.err")"; continue; }
    echo "{\"run\":\"$mode\",\"train_loss\":$(grep '"type":"done"' "$out/$mode.log" | sed -E 's/.*"train_loss":([-0-9.e]+).*/\1/')}"
    evalpk "$mode" "$out/$mode/adapter"
done
python3 - "$out" <<'PY'
import glob, json, os, sys
rows = []
for f in sorted(glob.glob(os.path.join(sys.argv[1], "eval-*.jsonl"))):
    cells = [json.loads(l) for l in open(f) if l.startswith("{")]
    summ = [c for c in cells if "summary" in c]
    if summ: rows.append((os.path.basename(f)[5:-6], summ[0]))
if rows:
    Ls = list(rows[0][1]["by_length"]); Ds = list(rows[0][1]["by_depth"])
    print("\n| run | mean | " + " | ".join(f"{L} tok" for L in Ls) + " | " + " | ".join(f"depth {d}" for d in Ds) + " |")
    print("| --- " * (2 + len(Ls) + len(Ds)) + "|")
    for name, s in rows:
        print(f"| {name} | {s['mean_accuracy']:.2f} | " + " | ".join(f"{s['by_length'][L]:.2f}" for L in Ls) + " | " +
              " | ".join(f"{s['by_depth'][d]:.2f}" for d in Ds) + " |")
PY
