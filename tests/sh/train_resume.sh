#!/usr/bin/env bash
# Exact resume: a run stopped by SIGTERM mid-way and resumed from its checkpoint prints the
# same losses, bit for bit, as an uninterrupted run (CPU); the stop is clean (a checkpoint,
# "cancelled", exit 0). Uses stories260K when ../shared is present, else `lemo init-model`.
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
cfg() {  # output_dir
    cat <<JSON
{"model": "$model", "train_file": "$d/train.jsonl", "output_dir": "$1", "context_length": 128,
 "max_steps": 14, "grad_accum": 2, "seed": 7, "eval_fraction": 0.25, "eval_every": 7, "eval_windows": 4,
 "checkpoint_every": 100, "resume_from": "auto",
 "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj","v_proj","o_proj","down_proj"]},
 "optimizer": {"lr": 0.002, "warmup_steps": 3, "weight_decay": 0.01}}
JSON
}
cfg "$d/a" > "$d/a.json"; cfg "$d/b" > "$d/b.json"
"$LEMO" train "$d/a.json" > "$d/a.log" 2>/dev/null || fail "uninterrupted run failed"

# stop run b with SIGTERM once step 5 is printed
"$LEMO" train "$d/b.json" > "$d/b1.log" 2>/dev/null &
pid=$!
for _ in $(seq 1 600); do grep -q '"step":5,' "$d/b1.log" && break; sleep 0.1; done
kill -TERM $pid
wait $pid; rc=$?
[ $rc -eq 0 ] || fail "SIGTERM exit status $rc, want 0"
grep -q '"type":"cancelled"' "$d/b1.log" || fail "no cancelled line after SIGTERM"
stopped=$(field step "$(grep '"type":"cancelled"' "$d/b1.log")")
[ -n "$stopped" ] && [ "$stopped" -ge 5 ] && [ "$stopped" -lt 14 ] || fail "stopped at step '$stopped'"
[ -f "$d/b/checkpoints/step-$stopped/optimizer.safetensors" ] || fail "no checkpoint at step $stopped"

"$LEMO" train "$d/b.json" > "$d/b2.log" 2>"$d/b2.err" || fail "resumed run failed: $(tail -1 "$d/b2.err")"
grep -q "resumed from step $stopped" "$d/b2.log" || fail "resume did not start from step $stopped"
losses() { grep -E '"type":"(step|eval)"' "$1" | sed -E 's/.*"step":([0-9]+).*"(loss|eval_loss)":([-0-9.e]+).*/\1 \2 \3/' | sort -n -k1,1 -s; }
want=$(losses "$d/a.log" | awk -v s="$stopped" '$1 > s')
got=$(losses "$d/b2.log")
[ -n "$want" ] || fail "no losses after step $stopped in the uninterrupted run"
[ "$want" = "$got" ] || fail "resumed losses differ:\nwant:\n$want\ngot:\n$got"
cmp -s "$d/a/adapter/adapter_model.safetensors" "$d/b/adapter/adapter_model.safetensors" || fail "final adapters differ"
rm -rf "$d"
finish
