#!/usr/bin/env bash
# Runs the GPU tests (needs an NVIDIA GPU): every BUILD/tests/gpu/test_* binary and
# tests/gpu/*.sh script (a fine-tune with `lemo train` on the device), then
# the op test again under compute-sanitizer memcheck (out-of-bounds and misaligned
# accesses) where the tool is installed. Prints one closing
# line "N passed, N failed, N skipped"; exit 0 = pass, 77 = skip.
# Usage: tests/gpu/run.sh [BUILD]
set -u
build=${1:-build}
cd "$(dirname "$0")/../.."
export LEMO_BIN="$PWD/$build/lemo" LEMO_BUILD="$PWD/$build"
pass=0 fail=0 skip=0
logdir="$build/test-logs/gpu"
mkdir -p "$logdir"

run_one() {  # name, command...
    local name=$1; shift
    local log="$logdir/$name.log" t0=$SECONDS rc
    "$@" >"$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then pass=$((pass + 1)); printf 'ok    %-36s %4ds\n' "$name" $((SECONDS - t0))
    elif [ $rc -eq 77 ]; then skip=$((skip + 1)); printf 'skip  %-36s %s\n' "$name" "$(grep -m1 '^SKIP' "$log")"
    else fail=$((fail + 1)); printf 'FAIL  %-36s %4ds (exit %d)\n' "$name" $((SECONDS - t0)) $rc
        sed 's/^/      | /' "$log" | tail -n 40
    fi
    [ -n "${GPU_TEST_VERBOSE:-}" ] && sed 's/^/      | /' "$log"
    return 0
}

for t in "$build"/tests/gpu/test_*; do
    [ -x "$t" ] && [ -f "$t" ] && run_one "$(basename "$t")" "$t"
done
for t in tests/gpu/*.sh; do  # whole-program GPU tests (lemo train on the device)
    [ "$(basename "$t")" = run.sh ] || run_one "$(basename "$t")" bash "$t"
done

san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$san" ] && [ -x "$build/tests/gpu/test_cuda_ops" ]; then
    run_one "test_cuda_ops (memcheck)" "$san" --tool memcheck --error-exitcode 1 \
        "$build/tests/gpu/test_cuda_ops"
else
    echo "skip  memcheck (compute-sanitizer not found)"
fi

echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
