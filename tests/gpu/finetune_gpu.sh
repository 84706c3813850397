#!/usr/bin/env bash
# A GPU fine-tune with `lemo train` (device cuda, memory.auto) lowers the held-out loss as the
# CPU fine-tune of the same job does: refmodel-22m, LoRA r=8 on q,k,v,o, RFC text from the
# shared data at 2048 tokens, held-out RFCs (numbers ending in 7). The GPU's final eval loss
# must fall by more than 0.01 and land within 2% of the CPU's (bf16 against fp32), and the
# trainer must say which activation policy memory.auto picked.
. "$(dirname "$0")/../sh/lib.bash"
[ -n "$SHARED" ] && [ -f "$SHARED/data/finetune.jsonl.gz" ] || skip "the shared models and data are absent (LEMO_SHARED)"
d=$(tmpdir)
zcat "$SHARED/data/finetune.jsonl.gz" | grep '"source": "rfc:' | grep -v '"source": "rfc:rfc[0-9]*7"' | head -n 40 > "$d/train.jsonl"
zcat "$SHARED/data/finetune.jsonl.gz" | grep '"source": "rfc:rfc[0-9]*7"' | head -n 3 > "$d/eval.jsonl"
for dev in cuda cpu; do
    mem='{"auto": true}'
    [ $dev = cpu ] && mem='{"checkpointing": true}'
    cat > "$d/$dev.json" <<JSON
{"model": "$SHARED/models/refmodel-22m", "train_file": "$d/train.jsonl", "eval_file": "$d/eval.jsonl",
 "output_dir": "$d/out-$dev", "context_length": 2048, "max_steps": 24, "seed": 1, "eval_every": 24, "eval_windows": 4,
 "device": "$dev", "memory": $mem,
 "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
 "optimizer": {"lr": 0.003, "warmup_steps": 2}}
JSON
    t0=$SECONDS
    "$LEMO" train "$d/$dev.json" > "$d/log-$dev" 2>"$d/err-$dev" || { fail "$dev train failed: $(tail -2 "$d/err-$dev")"; finish; }
    evals=$(grep '"type":"eval"' "$d/log-$dev" | sed -E 's/.*"eval_loss":([-0-9.e]+).*/\1/')
    eval "before_$dev=$(head -1 <<<"$evals") after_$dev=$(tail -1 <<<"$evals")"
    echo "$dev: held-out loss $(head -1 <<<"$evals") -> $(tail -1 <<<"$evals") ($((SECONDS - t0)) s)"
done
grep -q '"gpu_mem_bytes"' "$d/log-cuda" || fail "the GPU run reports no gpu_mem_bytes"
grep -h 'auto picked' "$d/log-cuda" "$d/err-cuda" | head -1
grep -qh 'memory: auto picked' "$d/log-cuda" "$d/err-cuda" || fail "memory.auto did not say what it picked"
awk -v a="$after_cuda" -v b="$before_cuda" 'BEGIN { exit !(a < b - 0.01) }' || fail "GPU held-out loss did not fall: $before_cuda -> $after_cuda"
awk -v g="$after_cuda" -v c="$after_cpu" 'BEGIN { d = (g - c) / c; exit !(d < 0.02 && d > -0.02) }' \
    || fail "GPU final eval $after_cuda is not within 2% of the CPU's $after_cpu"
rm -rf "$d"
finish
