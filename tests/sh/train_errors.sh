#!/usr/bin/env bash
# `lemo train` / `lemo eval` on bad input: each gives a clear error line naming the key,
# file, line or field, exits non-zero, and leaves nothing half-written. Also: usage on --help
# and on a wrong flag for every subcommand.
. "$(dirname "$0")/lib.bash"
d=$(tmpdir)
"$LEMO" init-model tiny "$d/tiny" >/dev/null 2>&1 || fail "init-model tiny failed"
printf '{"text": "hello world, a first line of text"}\n{"text": "second"}\n' > "$d/good.jsonl"
printf '{"text": "fine"}\n{"prompt": "p", "completion": 3}\n' > "$d/bad.jsonl"

expect_error() {  # name, config-json, pattern the error must contain
    echo "$2" > "$d/$1.json"
    out=$("$LEMO" train "$d/$1.json" 2>/dev/null); rc=$?
    [ $rc -ne 0 ] || fail "$1: exit status 0"
    line=$(grep '"type":"error"' <<<"$out")
    [ -n "$line" ] || fail "$1: no error line in: $out"
    grep -q -- "$3" <<<"$line" || fail "$1: error does not mention '$3': $line"
}
base="\"model\": \"$d/tiny\", \"output_dir\": \"$d/out\", \"context_length\": 32, \"max_steps\": 1"
expect_error unknown_key "{$base, \"train_file\": \"$d/good.jsonl\", \"learning_rate\": 1}" '"param":"learning_rate"'
expect_error bad_value "{$base, \"train_file\": \"$d/good.jsonl\", \"lora\": {\"r\": 0}}" '"param":"lora.r"'
expect_error not_json "{$base," 'not valid JSON'
expect_error bad_line "{$base, \"train_file\": \"$d/bad.jsonl\"}" 'line 2'
expect_error bad_field "{$base, \"train_file\": \"$d/bad.jsonl\"}" 'completion'
expect_error no_file "{$base, \"train_file\": \"$d/missing.jsonl\"}" 'missing.jsonl'
expect_error several_gpus "{$base, \"train_file\": \"$d/good.jsonl\", \"grad_accum\": 2, \"parallel\": {\"gpus\": 2, \"mode\": \"data\"}}" '"param":"parallel.gpus"'
expect_error no_model "{\"model\": \"$d/nope\", \"output_dir\": \"$d/out\", \"train_file\": \"$d/good.jsonl\"}" 'nope'
mkdir -p "$d/broken" && cp "$d/tiny/"* "$d/broken/" && head -c 1000 "$d/tiny/model.safetensors" > "$d/broken/model.safetensors"
expect_error truncated_weights "{\"model\": \"$d/broken\", \"output_dir\": \"$d/out\", \"train_file\": \"$d/good.jsonl\", \"context_length\": 32}" 'safetensors'
cp "$d/tiny/model.safetensors" "$d/broken/" && echo '{"model": {"type": "BPE", "vocab": 5}}' > "$d/broken/tokenizer.json"
expect_error bad_tokenizer "{\"model\": \"$d/broken\", \"output_dir\": \"$d/out\", \"train_file\": \"$d/good.jsonl\", \"context_length\": 32}" 'tokenizer'
[ ! -d "$d/out/adapter" ] || fail "a failed run left an adapter behind"

"$LEMO" eval --model "$d/tiny" --text "$d/nothing.txt" >/dev/null 2>"$d/err" && fail "eval of a missing file succeeded"
grep -q nothing.txt "$d/err" || fail "eval error does not name the file: $(cat "$d/err")"

for cmd in train eval tokenize estimate init-model serve keys; do
    "$LEMO" "$cmd" --help > "$d/help" 2>&1 || fail "$cmd --help exit status"
    grep -qi usage "$d/help" || fail "$cmd --help prints no usage"
    "$LEMO" "$cmd" --no-such-flag > "$d/help" 2>&1 && fail "$cmd accepts --no-such-flag"
    grep -qi usage "$d/help" || fail "$cmd prints no usage on a wrong flag"
done
rm -rf "$d"
finish
