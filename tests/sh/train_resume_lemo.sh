#!/usr/bin/env bash
# Resume under LeMo, past a damaged checkpoint: a LeMo run (random scores, drawn by seed and
# step; exact scores, from the layers' inputs) stopped by SIGTERM and resumed prints the same
# losses as an uninterrupted one, also when the newest checkpoint has been damaged: the resume
# falls back to the one before it and says so. Uses stories260K when ../shared is present, else
# `lemo init-model` (then every layer is dense under the default schedule: the resume is
# still checked).
. "$(dirname "$0")/lib.bash"
d=$(tmpdir)
if [ -n "$SHARED" ]; then
    model=$SHARED/models/stories260K
    zcat "$SHARED/data/finetune.jsonl.gz" | head -n 4 > "$d/train.jsonl"
else
    model=$d/tiny
    "$LEMO" init-model tiny "$model" >/dev/null || { fail "init-model"; finish; }
    for i in $(seq 1 40); do echo "{\"text\": \"Line $i of a small self-made corpus: the quick brown fox jumps over the lazy dog $i times.\"}"; done > "$d/train.jsonl"
fi
losses() { grep -E '"type":"(step|eval)"' "$1" | sed -E 's/.*"step":([0-9]+).*"(loss|eval_loss)":([-0-9.e]+).*/\1 \2 \3/' | sort -n -k1,1 -s; }
for scores in random exact; do
    cfg() {  # output_dir
        cat <<JSON
{"model": "$model", "train_file": "$d/train.jsonl", "output_dir": "$1", "context_length": 128,
 "max_steps": 14, "grad_accum": 2, "seed": 7, "eval_fraction": 0.25, "eval_every": 7, "eval_windows": 4,
 "checkpoint_every": 4, "resume_from": "auto", "lemo": {"scores": "$scores", "block": 32, "keep": 0.5},
 "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj","v_proj","o_proj","down_proj"]},
 "optimizer": {"lr": 0.002, "warmup_steps": 3}}
JSON
    }
    cfg "$d/a-$scores" > "$d/a.json"; cfg "$d/b-$scores" > "$d/b.json"
    "$LEMO" train "$d/a.json" > "$d/a.log" 2>/dev/null || fail "$scores: uninterrupted run failed"
    "$LEMO" train "$d/b.json" > "$d/b1.log" 2>/dev/null &
    pid=$!
    for _ in $(seq 1 600); do grep -q '"step":9,' "$d/b1.log" && break; sleep 0.1; done
    kill -TERM $pid
    wait $pid
    stopped=$(field step "$(grep '"type":"cancelled"' "$d/b1.log")")
    [ -n "$stopped" ] && [ "$stopped" -ge 9 ] && [ "$stopped" -lt 14 ] || { fail "$scores: stopped at step '$stopped'"; continue; }
    # damage the newest checkpoint: the resume must fall back to the one before it, the last
    # of checkpoint_every 4 below the step it stopped at (how far it got depends on the machine)
    prev=$(( (stopped - 1) / 4 * 4 ))
    : > "$d/b-$scores/checkpoints/step-$stopped/optimizer.safetensors"
    "$LEMO" train "$d/b.json" > "$d/b2.log" 2>"$d/b2.err" || fail "$scores: resumed run failed: $(tail -1 "$d/b2.err")"
    grep -q "step-$stopped cannot be read" "$d/b2.log" "$d/b2.err" || fail "$scores: the fallback was not said"
    grep -q "resumed from step $prev " "$d/b2.log" || fail "$scores: did not resume from step $prev: $(grep resumed "$d/b2.log")"
    want=$(losses "$d/a.log" | awk -v p="$prev" '$1 > p')
    got=$(losses "$d/b2.log")
    [ -n "$want" ] && [ "$want" = "$got" ] || fail "$scores: resumed losses differ:\nwant:\n$want\ngot:\n$got"
    grep -q '"kept_fraction"' "$d/a.log" || [ -z "$SHARED" ] || fail "$scores: the LeMo run reports no kept_fraction"
    cmp -s "$d/a-$scores/adapter/adapter_model.safetensors" "$d/b-$scores/adapter/adapter_model.safetensors" \
        || fail "$scores: final adapters differ"
done
rm -rf "$d"
finish
