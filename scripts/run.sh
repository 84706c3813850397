#!/usr/bin/env bash
# Starts the service the way `make run` does: BUILD/lemo serve on http://127.0.0.1:8080 with
# ./data for state and ./models (plus ../shared/models when it exists) for base models.
# Extra arguments go to `lemo serve` (see `lemo serve --help`).
# Usage: scripts/run.sh [BUILD] [lemo serve flags...]
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
[ $# -gt 0 ] && shift
mkdir -p data models
args=(--host 127.0.0.1 --port 8080 --data-dir ./data --models ./models)
[ -d ../shared/models ] && args+=(--models ../shared/models)
if [ -z "$(ls -A models 2>/dev/null)" ] && [ ! -d ../shared/models ]; then
    echo "run: ./models is empty: copy a Hugging Face model folder into ./models/NAME," \
         "or make a small random one with: $build/lemo init-model tiny ./models/tiny"
fi
exec "$build/lemo" serve "${args[@]}" "$@"
