#!/usr/bin/env bash
# Runs every test and prints one closing line: "N passed, N failed, N skipped".
# A test is an executable under BUILD/tests/{unit,integration}/, a tests/node/*.test.mjs
# script (run with node) or a tests/sh/*.sh script; exit 0 = pass, 77 = skip, else fail.
# Usage: tests/run.sh [BUILD] [FILTER]   (FILTER: substring of the test name)
set -u
build=${1:-build}
filter=${2:-}
cd "$(dirname "$0")/.."
export LEMO_BIN="$PWD/$build/lemo" LEMO_BUILD="$PWD/$build"
pass=0 fail=0 skip=0 failed=()
logdir="$build/test-logs"
mkdir -p "$logdir"

run_one() {  # name, command...
    local name=$1; shift
    [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && return
    local log="$logdir/${name//\//_}.log" t0=$SECONDS rc
    timeout 900 "$@" >"$log" 2>&1
    rc=$?
    local dt=$((SECONDS - t0))
    if [ $rc -eq 0 ]; then pass=$((pass + 1)); printf 'ok    %-40s %4ds\n' "$name" "$dt"
    elif [ $rc -eq 77 ]; then skip=$((skip + 1)); printf 'skip  %-40s %s\n' "$name" "$(grep -m1 '^SKIP' "$log")"
    else fail=$((fail + 1)); failed+=("$name"); printf 'FAIL  %-40s %4ds (exit %d)\n' "$name" "$dt" "$rc"
        sed 's/^/      | /' "$log" | tail -n 30
    fi
}

for t in "$build"/tests/unit/* "$build"/tests/integration/*; do
    [ -x "$t" ] && [ -f "$t" ] && run_one "${t#$build/tests/}" "$t"
done
for t in tests/sh/*.sh; do
    [ -f "$t" ] && run_one "${t#tests/}" bash "$t"
done
for t in tests/node/*.test.mjs; do
    [ -f "$t" ] && run_one "${t#tests/}" node "$t"
done

[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
