#!/usr/bin/env bash
# Builds each fuzz/fuzz_*.c as a libFuzzer target (clang, ASan + UBSan) against the
# engine and server sources, then runs each for FUZZ_SECONDS (default 20) from its
# seed corpus fuzz/corpus/NAME/ (if any). Exits non-zero on the first crash.
set -eu
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-20}
out=build-fuzz
mkdir -p "$out/obj"
flags="-std=c11 -O1 -g -D_GNU_SOURCE -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fopenmp=libgomp $(for d in engine/*/; do printf -- '-I%s ' "${d%/}"; done) -Ikernels -Iserver -I/usr/include/x86_64-linux-gnu/openblas-pthread"
libs="-lmicrohttpd -ljansson -lsqlite3 -lcurl -lcrypto -lpcre2-8 -lopenblas -lz -lm -lpthread -lgomp"
objs=()
for src in engine/*/*.c kernels/cpu/*.c server/*.c; do
    [ -f "$src" ] || continue
    [ "$src" = engine/commands/main.c ] && continue
    o="$out/obj/${src//\//_}.o"
    if [ ! -f "$o" ] || [ "$src" -nt "$o" ]; then clang $flags -c "$src" -o "$o"; fi
    objs+=("$o")
done
status=0
for f in fuzz/fuzz_*.c; do
    name=$(basename "$f" .c)
    clang $flags -fsanitize=fuzzer -o "$out/$name" "$f" "${objs[@]}" $libs
    corpus="$out/corpus-$name"; mkdir -p "$corpus"
    seeds=(); [ -d "fuzz/corpus/$name" ] && seeds=("fuzz/corpus/$name")
    echo "fuzz: $name for ${secs}s"
    if ! "$out/$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 "$corpus" "${seeds[@]}" >"$out/$name.log" 2>&1; then
        echo "fuzz: $name FOUND A CRASH"; tail -n 40 "$out/$name.log"; status=1
    else
        tail -n 1 "$out/$name.log"
    fi
done
exit $status
