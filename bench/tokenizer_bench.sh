#!/usr/bin/env bash
# Tokenizer throughput: `lemo tokenize` on all RFC text of ../shared/data/finetune.jsonl.gz
# (about 11M characters) with the refmodel-22m tokenizer (Mistral's, SentencePiece-style BPE).
# Prints characters, tokens, seconds and tokens/s; the time excludes loading the tokenizer
# (measured separately on empty input). Not a timed test: numbers depend on the machine.
# Usage: bench/tokenizer_bench.sh [TOKENIZER.json ...]   (default: refmodel-22m's)
#   env: LEMO_BIN (default build/lemo), LEMO_SHARED (default ../shared), RUNS (default 3, best kept)
set -eu
cd "$(dirname "$0")/.."
bin=${LEMO_BIN:-build/lemo}
shared=${LEMO_SHARED:-../shared}
runs=${RUNS:-3}
[ -x "$bin" ] || { echo "no $bin: build it first (make)" >&2; exit 1; }
data="$shared/data/finetune.jsonl.gz"
[ -f "$data" ] || { echo "no $data" >&2; exit 1; }
[ $# -gt 0 ] || set -- "$shared/models/refmodel-22m/tokenizer.json"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
zcat "$data" | python3 -c '
import json, sys
sys.stdout.write("".join(d["text"] for d in map(json.loads, sys.stdin) if d["source"].startswith("rfc:")))
' > "$tmp/rfc.txt"
chars=$(python3 -c 'import sys; print(len(open(sys.argv[1], encoding="utf-8").read()))' "$tmp/rfc.txt")

now() { date +%s.%N; }
for tok in "$@"; do
    best_load=999999 best_all=999999
    for _ in $(seq "$runs"); do
        t0=$(now); "$bin" tokenize --tokenizer "$tok" --no-special < /dev/null > /dev/null; t1=$(now)
        "$bin" tokenize --tokenizer "$tok" --no-special < "$tmp/rfc.txt" > "$tmp/ids.json"; t2=$(now)
        best_load=$(echo "$t1 - $t0" | bc -l | awk -v b="$best_load" '{print ($1 < b) ? $1 : b}')
        best_all=$(echo "$t2 - $t1" | bc -l | awk -v b="$best_all" '{print ($1 < b) ? $1 : b}')
    done
    tokens=$(tr -cd ',' < "$tmp/ids.json" | wc -c)
    tokens=$((tokens + 1))
    awk -v tok="$tok" -v c="$chars" -v n="$tokens" -v l="$best_load" -v a="$best_all" -v cpus="$(nproc)" 'BEGIN {
        s = a - l; if (s <= 0) s = a;
        printf "%s\n  %d chars, %d tokens, load %.2f s, encode %.2f s: %.0f tokens/s, %.2f M chars/s (%d cores, one thread)\n",
               tok, c, n, l, s, n / s, c / s / 1e6, cpus }'
done
