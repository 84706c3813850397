#!/usr/bin/env bash
# A real fine-tune: refmodel-22m, LoRA r=8 on q,k,v,o, on RFC text from ../shared/data at 1024
# tokens, must lower the loss on held-out RFCs (numbers ending in 7, never trained on), and
# `lemo eval --adapter` on the exported adapter must agree with the trainer's final eval.
. "$(dirname "$0")/lib.bash"
[ -n "$SHARED" ] || skip "../shared is absent: this test fine-tunes the real refmodel-22m on ../shared/data"
d=$(tmpdir)
zcat "$SHARED/data/finetune.jsonl.gz" | grep '"source": "rfc:' | grep -v '"source": "rfc:rfc[0-9]*7"' | head -n 40 > "$d/train.jsonl"
zcat "$SHARED/data/finetune.jsonl.gz" | grep '"source": "rfc:rfc[0-9]*7"' | head -n 3 > "$d/eval.jsonl"
cat > "$d/cfg.json" <<JSON
{"model": "$SHARED/models/refmodel-22m", "train_file": "$d/train.jsonl", "eval_file": "$d/eval.jsonl",
 "output_dir": "$d/out", "context_length": 1024, "max_steps": 24, "seed": 1, "eval_every": 24, "eval_windows": 4,
 "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
 "optimizer": {"lr": 0.003, "warmup_steps": 2}}
JSON
"$LEMO" train "$d/cfg.json" > "$d/log" 2>"$d/err" || { fail "train failed: $(tail -2 "$d/err")"; finish; }
evals=$(grep '"type":"eval"' "$d/log" | sed -E 's/.*"eval_loss":([-0-9.e]+).*/\1/')
before=$(head -1 <<<"$evals"); after=$(tail -1 <<<"$evals")
echo "held-out loss: before $before, after $after"
[ "$(wc -l <<<"$evals")" -eq 2 ] || fail "expected 2 eval lines, got: $evals"
awk -v a="$after" -v b="$before" 'BEGIN { exit !(a < b - 0.01) }' || fail "held-out loss did not fall: $before -> $after"
for t in q k v o; do
    grep -q "layers.5.self_attn.${t}_proj.lora_B.weight" "$d/out/adapter/adapter_model.safetensors" || fail "adapter lacks ${t}_proj"
done
grep -q '"peft_type": "LORA"' "$d/out/adapter/adapter_config.json" || fail "adapter_config.json is not PEFT LORA"
ev=$("$LEMO" eval --model "$SHARED/models/refmodel-22m" --adapter "$d/out/adapter" --data "$d/eval.jsonl" \
     --context 1024 --max-windows 4 2>"$d/err") || fail "eval failed: $(tail -1 "$d/err")"
got=$(sed -E 's/.*"loss":([-0-9.e]+).*/\1/' <<<"$ev")
awk -v a="$got" -v b="$after" 'BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }' || fail "lemo eval --adapter gives $got, trainer said $after"
base=$("$LEMO" eval --model "$SHARED/models/refmodel-22m" --data "$d/eval.jsonl" --context 1024 --max-windows 4 2>/dev/null | sed -E 's/.*"loss":([-0-9.e]+).*/\1/')
awk -v a="$base" -v b="$before" 'BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }' || fail "base eval $base != trainer's step-0 eval $before"
rm -rf "$d"
finish
