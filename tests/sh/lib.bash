# lib.bash: helpers for the shell tests (sourced). Exit codes: 0 pass, 1 fail, 77 skip.
set -u
LEMO=${LEMO_BIN:-$PWD/build/lemo}
SHARED=${LEMO_SHARED:-}
[ -z "$SHARED" ] && [ -d ../shared/models ] && SHARED=$(cd ../shared && pwd)
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
skip() { echo "SKIP: $*" >&2; exit 77; }
finish() { [ $fails -eq 0 ] && { echo "pass"; exit 0; } || { echo "$fails failures" >&2; exit 1; }; }
tmpdir() { local d; d=$(mktemp -d /tmp/lemo-test.XXXXXX); echo "$d"; }
# field NAME FILE-LINE: the JSON number/string after "NAME": in a progress line
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" <<<"$2" | tr -d '"'; }
