#!/usr/bin/env bash
# `lemo train` on the real stories260K: the held-out loss falls, and the adapter has PEFT's
# keys and shapes for every layer and target module (LoRA on all seven).
. "$(dirname "$0")/lib.bash"
[ -n "$SHARED" ] || skip "../shared is absent: this test trains the real stories260K"
d=$(tmpdir)
for i in $(seq 1 60); do
    echo "{\"text\": \"Once upon a time, there was a little cat named Tom number $i. Tom liked to play with a red ball in the garden. One day, Tom saw a big bird and said hello. The bird sang a happy song and they became friends.\"}"
done > "$d/train.jsonl"
cat > "$d/cfg.json" <<JSON
{"model": "$SHARED/models/stories260K", "train_file": "$d/train.jsonl", "output_dir": "$d/out",
 "context_length": 128, "max_steps": 30, "eval_fraction": 0.2, "eval_every": 30, "seed": 3,
 "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"]},
 "optimizer": {"lr": 0.005}}
JSON
"$LEMO" train "$d/cfg.json" > "$d/log" 2>"$d/err" || { fail "train failed: $(tail -1 "$d/err")"; finish; }
before=$(grep '"type":"eval"' "$d/log" | head -1 | sed -E 's/.*"eval_loss":([-0-9.e]+).*/\1/')
after=$(grep '"type":"eval"' "$d/log" | tail -1 | sed -E 's/.*"eval_loss":([-0-9.e]+).*/\1/')
echo "held-out loss $before -> $after"
awk -v a="$after" -v b="$before" 'BEGIN { exit !(a < b - 0.05) }' || fail "held-out loss did not fall: $before -> $after"
# the safetensors header: 8-byte length, then JSON naming every tensor with dtype and shape
node -e '
const fs = require("fs"), buf = fs.readFileSync(process.argv[1]);
const n = Number(buf.readBigUInt64LE(0)), h = JSON.parse(buf.subarray(8, 8 + n).toString());
const dims = {q_proj: [64, 64], k_proj: [64, 32], v_proj: [64, 32], o_proj: [64, 64],
              gate_proj: [64, 172], up_proj: [64, 172], down_proj: [172, 64]};  // [in, out]
let bad = 0;
for (let l = 0; l < 5; l++) for (const [t, [i, o]] of Object.entries(dims)) {
  const blk = t.endsWith("proj") && ["gate_proj", "up_proj", "down_proj"].includes(t) ? "mlp" : "self_attn";
  const p = `base_model.model.model.layers.${l}.${blk}.${t}`;
  const a = h[`${p}.lora_A.weight`], b = h[`${p}.lora_B.weight`];
  if (!a || a.shape.join() !== [4, i].join() || !b || b.shape.join() !== [o, 4].join()) { bad++; console.error("bad", p, a, b); }
}
const n_keys = Object.keys(h).filter(k => k !== "__metadata__").length;
if (n_keys !== 70) { bad++; console.error("tensor count", n_keys); }
process.exit(bad ? 1 : 0);' "$d/out/adapter/adapter_model.safetensors" || fail "adapter keys or shapes are wrong"
# the activation policy changes no number: the first steps' losses are the same with memory.auto
# (on the CPU every layer of this model fits kept) and with a per-layer mix of all four policies
steps_of() { grep '"type":"step"' "$1" | sed -E 's/.*"loss":([-0-9.e]+).*/\1/' | tr '\n' ' '; }
for mem in '{}' '{"auto": true}' '{"layers": ["keep", "offload", "offload_attention", "recompute", "keep"]}'; do
    sed -e 's/"max_steps": 30/"max_steps": 3/' -e "s|\"output_dir\": \"$d/out\"|\"output_dir\": \"$d/out-m\"|" \
        -e "s|\"optimizer\": {\"lr\": 0.005}}|\"optimizer\": {\"lr\": 0.005}, \"memory\": $mem}|" "$d/cfg.json" > "$d/cfg-m.json"
    rm -rf "$d/out-m"
    "$LEMO" train "$d/cfg-m.json" > "$d/log-m" 2>"$d/err-m" || { fail "train with memory $mem failed: $(tail -1 "$d/err-m")"; continue; }
    losses=$(steps_of "$d/log-m")
    [ "$mem" = '{}' ] && ref=$losses
    echo "memory $mem: losses $losses"
    [ -n "$losses" ] && [ "$losses" = "$ref" ] || fail "memory $mem changes the losses: $losses vs $ref"
    case "$mem" in *auto*) grep -q 'memory: auto picked 5 keep layers' "$d/log-m" "$d/err-m" \
        || fail "memory.auto did not say it kept all 5 layers: $(grep -h 'auto picked' "$d/log-m" "$d/err-m")" ;; esac
done
rm -rf "$d"
finish
