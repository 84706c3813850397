#!/usr/bin/env bash
# A full disk during a checkpoint write, an adapter export and an upload, and a server job
# whose checkpoints fill their disk. Each gives a typed error (trainer: "code":"disk_full";
# upload: 507 insufficient_storage), keeps what was complete before (the previous checkpoint,
# no torn adapter or file left or served), and goes on once space is back: the trainer
# resumes to the uninterrupted run's losses and adapter, the paused job resumes to the end.
# The disk is a small tmpfs where this may mount (root, as in CI); else a file-size limit
# (ulimit -f, SIGXFSZ ignored: writes fail with EFBIG) stands in for it, and the server job,
# which needs the data directory's database on another disk, is skipped.
. "$(dirname "$0")/lib.bash"
[ -n "$SHARED" ] || skip "needs ../shared (models/stories260K and data/finetune.jsonl.gz)"
model=$SHARED/models/stories260K
d=$(tmpdir)
mounts=()
cleanup() { for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done; rm -rf "$d"; }
trap cleanup EXIT
small_disk() {  # DIR KBYTES: a tmpfs of that size at DIR (0), or 1 where mounting is not allowed
    mkdir -p "$1" && mount -t tmpfs -o "size=${2}k" lemo-test "$1" 2>/dev/null || return 1
    mounts+=("$1")
}
mode=fsize
# LEMO_DISK_FULL_BY_FSIZE=1 runs the file-size-limit variant where mounting would work
[ -z "${LEMO_DISK_FULL_BY_FSIZE:-}" ] && mkdir -p "$d/probe" && small_disk "$d/probe" 64 && mode=tmpfs
echo "disk full by: $mode"
zcat "$SHARED/data/finetune.jsonl.gz" | head -n 4 > "$d/train.jsonl"
cfg() {  # output_dir
    cat <<JSON
{"model": "$model", "train_file": "$d/train.jsonl", "output_dir": "$1", "context_length": 128,
 "max_steps": 12, "grad_accum": 2, "seed": 7, "checkpoint_every": 3, "resume_from": "auto",
 "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj","v_proj","o_proj","down_proj"]},
 "optimizer": {"lr": 0.002, "warmup_steps": 3}}
JSON
}
losses() { grep '"type":"step"' "$1" | sed -E 's/.*"step":([0-9]+),.*"loss":([-0-9.e]+).*/\1 \2/' | sort -n -s; }
limited() {  # KBYTES COMMAND...: the command with writes limited to KBYTES per file (fsize mode only)
    local kb=$1; shift
    if [ $mode = fsize ]; then (trap '' XFSZ; ulimit -f "$kb"; exec "$@"); else "$@"; fi
}

cfg "$d/a" > "$d/a.json"
"$LEMO" train "$d/a.json" > "$d/a.log" 2>/dev/null || fail "uninterrupted run failed"
[ -f "$d/a/checkpoints/step-9/optimizer.safetensors" ] || fail "the reference has no checkpoint at step 9"
ck_kb=$(du -sk "$d/a/checkpoints/step-3" | cut -f1)

# 1. checkpoint write: the disk holds two checkpoints and a half; the third cannot be written
cfg "$d/b" > "$d/b.json"
if [ $mode = tmpfs ]; then
    small_disk "$d/b" $((ck_kb * 5 / 2)) || fail "mount"
else  # the two earlier checkpoints as the run left them, then every write over 100 KiB fails
    mkdir -p "$d/b/checkpoints" && cp -r "$d/a/checkpoints/step-3" "$d/a/checkpoints/step-6" "$d/b/checkpoints/"
fi
limited 100 "$LEMO" train "$d/b.json" > "$d/b1.log" 2>"$d/b1.err"; rc=$?
[ $rc -ne 0 ] || fail "checkpoint on a full disk: exit status 0"
grep '"type":"error"' "$d/b1.log" | grep -q '"code":"disk_full"' || fail "checkpoint: no disk_full error: $(tail -2 "$d/b1.log")"
[ -d "$d/b/checkpoints/step-9" ] && fail "a step-9 checkpoint exists after the failed write"
ls -A "$d/b/checkpoints" | grep -q tmp && fail "a temp checkpoint was left: $(ls -A "$d/b/checkpoints")"
for f in adapter_model.safetensors optimizer.safetensors state.json; do
    cmp -s "$d/a/checkpoints/step-6/$f" "$d/b/checkpoints/step-6/$f" || fail "the previous checkpoint's $f changed"
done
[ $mode = tmpfs ] && mount -o remount,size=8m "$d/b"
"$LEMO" train "$d/b.json" > "$d/b2.log" 2>/dev/null || fail "resume after freeing space failed"
grep -q '"message":"resumed from step 6 ' "$d/b2.log" || fail "did not resume from step 6: $(grep resumed "$d/b2.log")"
[ "$(losses "$d/a.log" | awk '$1 > 6')" = "$(losses "$d/b2.log")" ] || fail "losses after the full disk differ"
cmp -s "$d/a/adapter/adapter_model.safetensors" "$d/b/adapter/adapter_model.safetensors" || fail "checkpoint: final adapters differ"

# 2. adapter export: a run whose final checkpoint is written, its adapter not yet
cfg "$d/c" > "$d/c.json"
[ $mode = tmpfs ] && { small_disk "$d/c" $((ck_kb + 16)) || fail "mount"; }
mkdir -p "$d/c/checkpoints" && cp -r "$d/a/checkpoints/step-12" "$d/c/checkpoints/"
limited 40 "$LEMO" train "$d/c.json" > "$d/c1.log" 2>/dev/null; rc=$?
[ $rc -ne 0 ] || fail "export on a full disk: exit status 0"
grep '"type":"error"' "$d/c1.log" | grep -q '"code":"disk_full"' || fail "export: no disk_full error: $(tail -2 "$d/c1.log")"
grep -q '"type":"done"' "$d/c1.log" && fail "export: a done line after a failed export"
[ -e "$d/c/adapter" ] && fail "export: a torn adapter folder was left: $(ls -l "$d/c/adapter")"
ls -A "$d/c" | grep -q tmp && fail "export: a temp adapter was left: $(ls -A "$d/c")"
cmp -s "$d/a/checkpoints/step-12/optimizer.safetensors" "$d/c/checkpoints/step-12/optimizer.safetensors" ||
    fail "export: the final checkpoint changed"
[ $mode = tmpfs ] && mount -o remount,size=8m "$d/c"
"$LEMO" train "$d/c.json" > "$d/c2.log" 2>/dev/null || fail "export after freeing space failed"
cmp -s "$d/a/adapter/adapter_model.safetensors" "$d/c/adapter/adapter_model.safetensors" || fail "export: adapters differ"
cmp -s "$d/a/adapter/adapter_config.json" "$d/c/adapter/adapter_config.json" || fail "export: adapter configs differ"

# the server, started on DATA with extra flags; sets $base
serve() {  # DATA LIMIT_KB(0: none) ARGS...
    local data=$1 kb=$2; shift 2
    local log=$data.log
    if [ "$kb" -gt 0 ]; then limited "$kb" "$LEMO" serve --port 0 --data-dir "$data" "$@" > "$log" 2>&1 &
    else "$LEMO" serve --port 0 --data-dir "$data" "$@" > "$log" 2>&1 & fi
    spid=$!
    for _ in $(seq 1 150); do
        port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$log" | head -1)
        [ -n "$port" ] && break
        sleep 0.1
    done
    base=http://127.0.0.1:$port
    [ -n "$port" ] || { fail "server did not start: $(tail -3 "$log")"; finish; }
}

# 3. upload: the files folder holds 1 MiB; a 2 MiB dataset does not fit
mkdir -p "$d/s1/files"
if [ $mode = tmpfs ]; then small_disk "$d/s1/files" 1024 || fail "mount"; serve "$d/s1" 0 --slots 0
else serve "$d/s1" 1024 --slots 0; fi
for i in $(seq 1 20000); do echo "{\"text\": \"line $i of a dataset that is too large for the disk it is sent to\"}"; done > "$d/big.jsonl"
out=$(curl -s -w '\n%{http_code}' --data-binary @"$d/big.jsonl" "$base/v1/files?filename=big.jsonl&purpose=fine-tune")
code=$(tail -1 <<<"$out")
[ "$code" = 507 ] || fail "upload on a full disk: HTTP $code, want 507: $out"
grep -q '"code":"insufficient_storage"' <<<"$out" || fail "upload: no insufficient_storage code: $out"
[ -z "$(ls -A "$d/s1/files")" ] || fail "upload: something was left in files/: $(ls -A "$d/s1/files")"
curl -s "$base/v1/files" | grep -q '"data":\[\]' || fail "upload: a file is listed after the failed upload"
head -n 20 "$d/big.jsonl" > "$d/small.jsonl"
out=$(curl -s -w '\n%{http_code}' --data-binary @"$d/small.jsonl" "$base/v1/files?filename=small.jsonl&purpose=fine-tune")
[ "$(tail -1 <<<"$out")" = 200 ] || fail "a small upload after the failed one: $out"
fid=$(sed -n 's/.*"id":"\(file-[^"]*\)".*/\1/p' <<<"$out")
curl -s "$base/v1/files/$fid/content" | cmp -s - "$d/small.jsonl" || fail "the small upload does not read back"
kill $spid; wait $spid

# 4. a server job whose checkpoints fill the jobs disk: paused with disk_full, its last
# checkpoint kept and listed; resumed once space is back, it runs to the end
if [ $mode = tmpfs ]; then
    mkdir -p "$d/s2/jobs" && small_disk "$d/s2/jobs" 1536 || fail "mount"
    serve "$d/s2" 0 --slots 1 --models "$SHARED/models"
    fid=$(curl -s --data-binary @"$d/train.jsonl" "$base/v1/files?filename=t.jsonl&purpose=fine-tune" |
          sed -n 's/.*"id":"\(file-[^"]*\)".*/\1/p')
    job=$(curl -s -H 'Content-Type: application/json' "$base/v1/fine_tuning/jobs" -d "{\"model\": \"stories260K\",
          \"training_file\": \"$fid\", \"seed\": 7, \"hyperparameters\": {\"max_steps\": 80, \"context_length\": 64,
          \"checkpoint_every\": 2}}" | sed -n 's/.*"id":"\(ftjob-[^"]*\)".*/\1/p')
    [ -n "$job" ] || fail "server job not created"
    for _ in $(seq 1 300); do
        st=$(curl -s "$base/v1/fine_tuning/jobs/$job" | sed -n 's/.*"status":"\([a-z_]*\)".*/\1/p')
        [ "$st" != queued ] && [ "$st" != running ] && break
        sleep 0.1
    done
    j=$(curl -s "$base/v1/fine_tuning/jobs/$job")
    [ "$st" = paused ] || fail "server job on a full disk: $st, want paused: $j"
    grep -q '"code":"disk_full"' <<<"$j" || fail "server job: no disk_full error: $j"
    curl -s "$base/v1/fine_tuning/jobs/$job/events?limit=1000" | grep -q 'The disk is full: the job is paused' ||
        fail "server job: no event saying the disk is full"
    last=$(curl -s "$base/v1/fine_tuning/jobs/$job/checkpoints" | grep -o '"step_number":[0-9]*' | cut -d: -f2 | sort -n | tail -1)
    [ -n "$last" ] && [ "$last" -gt 0 ] || fail "server job: no checkpoint listed"
    ls -A "$d/s2/jobs/$job/checkpoints" | grep -q tmp && fail "server job: a temp checkpoint was left"
    opt=$d/s2/jobs/$job/checkpoints/step-$last/optimizer.safetensors
    [ "$(stat -c %s "$opt")" = "$(stat -c %s "$d/s2/jobs/$job/checkpoints/step-2/optimizer.safetensors")" ] ||
        fail "server job: the last listed checkpoint is torn"
    code=$(curl -s -o "$d/ad.tar" -w '%{http_code}' "$base/v1/fine_tuning/jobs/$job/adapter")
    [ "$code" = 409 ] || [ "$code" = 404 ] || fail "server job: a paused job's adapter is served (HTTP $code)"
    mount -o remount,size=64m "$d/s2/jobs"
    curl -s -X POST "$base/v1/fine_tuning/jobs/$job/resume" | grep -q '"status":"\(queued\|running\)"' || fail "resume refused"
    for _ in $(seq 1 600); do
        st=$(curl -s "$base/v1/fine_tuning/jobs/$job" | sed -n 's/.*"status":"\([a-z_]*\)".*/\1/p')
        [ "$st" != queued ] && [ "$st" != running ] && break
        sleep 0.1
    done
    [ "$st" = succeeded ] || fail "server job after freeing space: $st"
    curl -s "$base/v1/fine_tuning/jobs/$job/events?limit=1000" | grep -q "\"resumed from step $last (" ||
        fail "server job did not resume from its kept checkpoint $last"
    curl -s "$base/v1/fine_tuning/jobs/$job" | grep -q '"error":null' || fail "the resumed job still shows the disk error"
    # a full disk while the adapter's archive is built: 507 insufficient_storage, no torn tar
    # left, the adapter's files still served one by one, the archive once space is back
    dd if=/dev/zero of="$d/s2/jobs/filler" bs=1M 2>/dev/null
    out=$(curl -s -w ' %{http_code}' "$base/v1/fine_tuning/jobs/$job/adapter" -o "$d/ad507.json")
    [ "${out##* }" = 507 ] && grep -q '"code":"insufficient_storage"' "$d/ad507.json" ||
        fail "adapter archive on a full disk: HTTP ${out##* } $(head -c 300 "$d/ad507.json")"
    ls "$d/s2/jobs/$job/downloads" 2>/dev/null | grep -q '\.tmp' && fail "a torn archive was left"
    code=$(curl -s -o "$d/ad.safetensors" -w '%{http_code}' "$base/v1/fine_tuning/jobs/$job/adapter/adapter_model.safetensors")
    [ "$code" = 200 ] || fail "an adapter file on a full disk: HTTP $code"
    rm -f "$d/s2/jobs/filler"
    code=$(curl -s -o "$d/ad.tar" -w '%{http_code}' "$base/v1/fine_tuning/jobs/$job/adapter")
    [ "$code" = 200 ] && tar -tf "$d/ad.tar" | grep -q adapter_model.safetensors || fail "the archive once space is back: HTTP $code"
    kill $spid; wait $spid
else
    echo "server job on a full jobs disk: not run (needs a tmpfs mount)"
fi
finish
