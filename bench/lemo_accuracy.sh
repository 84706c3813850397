#!/usr/bin/env bash
# LeMo's accuracy study (bench/RESULTS.md): refmodel-22m extended from 4K to 16K tokens (linear
# RoPE x4), LoRA r=8 alpha=16 on q,k,v,o, fine-tuned on the shared data with a document-level
# held-out split (Austen's Persuasion and the RFCs whose number ends in 7 are never trained on):
# dense LoRA, LeMo exact and LeMo random at the default schedule, the same steps, data order and
# seed; with ACC_PREDICTOR (a `lemo prepare` folder for this model, trained on the same split)
# also LeMo with the predictor's scores ("predictor"), and the calibrated schedule of that
# folder's lemo.json with each of the three scores ("cal-predictor": keep "auto"; "cal-exact",
# "cal-random": the same per-layer fractions). Each adapter is then evaluated densely at 16K
# (`lemo eval`, as it will be used) on both held-out sets. Prints one JSON line a run and a
# table: held-out losses, their change from the base model, the gap to dense, and the median
# step time.
#   env: LEMO_BIN (default build/lemo), LEMO_SHARED (default ../shared), ACC_DEVICE (cuda),
#        ACC_STEPS (60), ACC_CONTEXT (16384), ACC_LR (0.002), ACC_EVAL_WINDOWS (8), ACC_OUT
#        (a temporary folder), ACC_MODES (dense,exact,random; with ACC_PREDICTOR also
#        predictor,cal-predictor,cal-exact,cal-random), ACC_PREDICTOR
# Usage: bench/lemo_accuracy.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
lemo=${LEMO_BIN:-build/lemo} shared=${LEMO_SHARED:-../shared}
dev=${ACC_DEVICE:-cuda} steps=${ACC_STEPS:-60} S=${ACC_CONTEXT:-16384} lr=${ACC_LR:-0.002} ew=${ACC_EVAL_WINDOWS:-8}
out=${ACC_OUT:-$(mktemp -d /tmp/lemo-acc.XXXXXX)}
model="$shared/models/refmodel-22m"
[ -f "$model/config.json" ] && [ -f "$shared/data/finetune.jsonl.gz" ] || { echo "lemo_accuracy: no $model or shared data"; exit 77; }
mkdir -p "$out"
zcat "$shared/data/finetune.jsonl.gz" | grep -v '"source": "rfc:rfc[0-9]*7"' | grep -v '"source": "austen:persuasion' > "$out/train.jsonl"
zcat "$shared/data/finetune.jsonl.gz" | grep '"source": "austen:persuasion' > "$out/eval_austen.jsonl"
zcat "$shared/data/finetune.jsonl.gz" | grep '"source": "rfc:rfc[0-9]*7"' > "$out/eval_rfc.jsonl"
evalset() {  # adapter-or-empty file -> loss
    local a=(); [ -n "$1" ] && a=(--adapter "$1")
    "$lemo" eval --model "$model" "${a[@]}" --data "$2" --context "$S" --max-windows "$ew" --rope-scaling linear:4 \
        --device "$dev" 2>/dev/null | sed -E 's/.*"loss":([-0-9.e]+).*/\1/'
}
base_a=$(evalset "" "$out/eval_austen.jsonl") base_r=$(evalset "" "$out/eval_rfc.jsonl")
echo "{\"run\":\"base\",\"austen\":$base_a,\"rfc\":$base_r}" | tee "$out/results.jsonl"
pred=${ACC_PREDICTOR:-}
modes=dense,exact,random
[ -n "$pred" ] && modes=$modes,predictor,cal-predictor,cal-exact,cal-random
cal=""
[ -n "$pred" ] && cal=$(python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['keep']))" "$pred/lemo.json")
for mode in $(echo "${ACC_MODES:-$modes}" | tr , ' '); do
    case $mode in
        dense) lm="" ;;
        exact|random) lm=", \"lemo\": {\"scores\": \"$mode\"}" ;;
        predictor) lm=", \"lemo\": {\"scores\": \"predictor\", \"predictor\": \"$pred\"}" ;;
        cal-predictor) lm=", \"lemo\": {\"scores\": \"predictor\", \"predictor\": \"$pred\", \"keep\": \"auto\"}" ;;
        cal-exact|cal-random) lm=", \"lemo\": {\"scores\": \"${mode#cal-}\", \"keep\": $cal}" ;;
        *) echo "lemo_accuracy: unknown mode $mode"; continue ;;
    esac
    cat > "$out/$mode.json" <<JSON
{"model": "$model", "train_file": "$out/train.jsonl", "eval_fraction": 0, "output_dir": "$out/$mode",
 "context_length": $S, "max_steps": $steps, "seed": 3, "device": "$dev", "rope_scaling": {"type": "linear", "factor": 4},
 "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
 "optimizer": {"lr": $lr, "warmup_steps": 5}$lm}
JSON
    rm -rf "$out/$mode"
    "$lemo" train "$out/$mode.json" > "$out/$mode.log" 2> "$out/$mode.err" || { echo "lemo_accuracy: $mode failed: $(tail -2 "$out/$mode.err")"; continue; }
    step_s=$(grep '"type":"step"' "$out/$mode.log" | tail -n +3 | sed -E 's/.*"tokens_per_s":([0-9.]+).*/\1/' | sort -g |
             awk -v S="$S" '{a[NR]=$1} END {print (NR ? S / a[int((NR+1)/2)] : 0)}')
    la=$(evalset "$out/$mode/adapter" "$out/eval_austen.jsonl") lr_=$(evalset "$out/$mode/adapter" "$out/eval_rfc.jsonl")
    echo "{\"run\":\"$mode\",\"austen\":$la,\"rfc\":$lr_,\"step_s\":$step_s,\"steps\":$steps,\"context\":$S}" | tee -a "$out/results.jsonl"
done
python3 - "$out/results.jsonl" <<'PY'
import json, sys
rows = {r["run"]: r for r in map(json.loads, open(sys.argv[1]))}
b, d = rows.get("base"), rows.get("dense")
print(f"\n{'run':<14} {'Persuasion':>10} {'change':>8} {'vs dense':>9} | {'RFCs ..7':>9} {'change':>8} {'vs dense':>9} | {'step s':>7}")
for k, r in rows.items():
    f = lambda key: (f"{r[key] - b[key]:+.4f}" if b else "-", f"{100 * (r[key] / d[key] - 1):+.2f}%" if d and k != "base" else "-")
    ca, va = f("austen"); cr, vr = f("rfc")
    print(f"{k:<14} {r['austen']:>10.4f} {ca:>8} {va:>9} | {r['rfc']:>9.4f} {cr:>8} {vr:>9} | {r.get('step_s', 0):>7.3f}")
PY
