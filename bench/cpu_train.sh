#!/usr/bin/env bash
# CPU training throughput: refmodel-22m, LoRA r=8 on q,k,v,o, at CONTEXT tokens (default 2048),
# STEPS optimizer steps (default 6) on RFC text from ../shared/data. Prints tokens/s (the
# trainer's average over steps 2..N, so start-up and data loading are excluded) and the peak
# resident memory. Usage: bench/cpu_train.sh [CONTEXT] [STEPS]
set -eu
cd "$(dirname "$0")/.."
ctx=${1:-2048} steps=${2:-6}
lemo=${LEMO_BIN:-build/lemo}
shared=${LEMO_SHARED:-../shared}
d=$(mktemp -d /tmp/lemo-bench.XXXXXX)
zcat "$shared/data/finetune.jsonl.gz" | head -n 20 > "$d/train.jsonl"
cat > "$d/cfg.json" <<JSON
{"model": "$shared/models/refmodel-22m", "train_file": "$d/train.jsonl", "output_dir": "$d/out",
 "context_length": $ctx, "max_steps": $steps, "eval_fraction": 0,
 "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}}
JSON
/usr/bin/time -f "%M" -o "$d/rss" "$lemo" train "$d/cfg.json" > "$d/log" 2>/dev/null
awk -F'"elapsed_s":' '/"type":"step"/ { split($2, a, /[,}]/); t[++n] = a[1] }
     END { if (n < 2) exit 1; printf "refmodel-22m LoRA r=8 qkvo, %d tokens/window: %.0f tokens/s over steps 2..%d\n",
           '"$ctx"', (n - 1) * '"$ctx"' / (t[n] - t[1]), n }' "$d/log"
planned=$(sed -n 's/.*"planned_bytes":\([0-9]*\).*/\1/p' "$d/log")
echo "peak RSS $(( $(cat "$d/rss") / 1024 )) MiB; model plan $(( planned / 1048576 )) MiB"
"$lemo" estimate "$d/cfg.json" --device cpu | sed 's/^/estimate: /'
rm -rf "$d"
