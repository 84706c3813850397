#!/usr/bin/env bash
# Load figure of the API while a job trains: wrk with 64 connections on GET /v1/fine_tuning/jobs
# (a page of 20 jobs) against a fresh server on a free port, while stories260K trains in the
# server's one slot. Prints requests/s, p50/p99 latency and the training steps done meanwhile.
# Usage: bench/load.sh [BUILD] [SECONDS]    (needs wrk and ../shared/models/stories260K;
#        $LEMO_BIN and $LEMO_MODELS override the binary and the models folder)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
secs=${2:-15}
bin=${LEMO_BIN:-$PWD/$build/lemo}
models=${LEMO_MODELS:-$(cd .. && pwd)/shared/models}
command -v wrk >/dev/null || { echo "load: wrk is not installed (apt-get install wrk)"; exit 1; }
[ -f "$models/stories260K/config.json" ] || { echo "load: $models/stories260K not found"; exit 1; }
tmp=$(mktemp -d /tmp/lemo-load-XXXXXX)
"$bin" serve --port 0 --data-dir "$tmp/data" --models "$models" --slots 1 2>"$tmp/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$tmp/server.log" && break; sleep 0.1; done
base=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/server.log" | head -1)
[ -n "$base" ] || { cat "$tmp/server.log"; exit 1; }
for i in $(seq 200); do
    echo '{"text": "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."}'
done >"$tmp/train.jsonl"
file=$(curl -sf -F purpose=fine-tune -F file=@"$tmp/train.jsonl" "$base/v1/files" | sed 's/.*"id":"\([^"]*\)".*/\1/')
body="{\"model\":\"stories260K\",\"training_file\":\"$file\",\"hyperparameters\":{\"max_steps\":100000,\"context_length\":128}}"
first=""
for i in $(seq 20); do   # one job trains, the others wait: the list page holds 20 jobs
    id=$(curl -sf -H 'Content-Type: application/json' -d "$body" "$base/v1/fine_tuning/jobs" | sed 's/.*"id":"\(ftjob-[^"]*\)".*/\1/')
    [ -z "$first" ] && first=$id
done
step() { curl -sf "$base/v1/fine_tuning/jobs/$first" | grep -o '"step":[0-9]*' | head -1 | cut -d: -f2; }
for _ in $(seq 100); do s=$(step || true); [ -n "$s" ] && [ "$s" -gt 0 ] && break; sleep 0.2; done
s0=$(step)
out=$(wrk -t4 -c64 -d"${secs}s" --latency "$base/v1/fine_tuning/jobs")
s1=$(step)
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
errs=$(echo "$out" | grep -E "Non-2xx|Socket errors" || true)
echo "$out" | sed 's/^/  wrk | /'
echo "load: GET /v1/fine_tuning/jobs, 64 connections, ${secs}s, while a job trains: ${rps} requests/s, p50 ${p50}, p99 ${p99}"
echo "load: training advanced from step $s0 to $s1 meanwhile${errs:+; $errs}"
