/* test_parallel_launch.c: how the ranks of a multi-GPU job start, without GPUs
 * (engine/parallel/launch.c; DESIGN section 11): each rank's environment (its rank, the world,
 * its one GPU, NVLink multicast off), only rank 0's stdout reaching the job's, the NCCL id's
 * hand-over through a file that a stale or torn file cannot fake, and the supervision: a
 * failed rank stops the others (SIGKILL for one that ignores SIGTERM), and a SIGTERM to the
 * launcher reaches every rank. Ranks here are /bin/sh scripts. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "launch.h"

static char dir[64];

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* par_launch of `world` copies of sh -c script, stdout caught in DIR/stdout; returns its rc. */
static int launch_sh(const char *script, int world, const int *gpus, int grace_ms, int *failed, Err *e) {
    char idf[128], out[128];
    snprintf(idf, sizeof idf, "%s/.nccl-id", dir);
    snprintf(out, sizeof out, "%s/stdout", dir);
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    ParLaunch l = {world, argv, gpus, idf, grace_ms};
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    FILE *f = freopen(out, "w", stdout);
    int rc = f ? par_launch(&l, failed, e) : -1;
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    return rc;
}

static void env_checks(void) {
    ParRank r;
    Err e = {0};
    unsetenv("LEMO_RANK");
    CHECK(par_rank_from_env(&r, &e) == 0 && r.world == 1 && r.rank == 0, "no LEMO_RANK: one process");
    setenv("LEMO_RANK", "2", 1), setenv("LEMO_WORLD", "4", 1), setenv("LEMO_LAUNCH_ID", "00000000deadbeef", 1);
    setenv("LEMO_NCCL_ID_FILE", "/tmp/x/.nccl-id", 1);
    CHECK(par_rank_from_env(&r, &e) == 1 && r.rank == 2 && r.world == 4 && r.nonce == 0xdeadbeefull &&
              !strcmp(r.id_file, "/tmp/x/.nccl-id"), "rank 2 of 4: %s", e.msg);
    setenv("LEMO_RANK", "4", 1);
    CHECK(par_rank_from_env(&r, &e) == -1 && strstr(e.msg, "LEMO_RANK"), "rank 4 of 4: %s", e.msg);
    setenv("LEMO_RANK", "1", 1), setenv("LEMO_WORLD", "0", 1);
    CHECK(par_rank_from_env(&r, &e) == -1 && strstr(e.msg, "LEMO_WORLD"), "world 0: %s", e.msg);
    setenv("LEMO_WORLD", "2", 1), setenv("LEMO_LAUNCH_ID", "xyz", 1);
    CHECK(par_rank_from_env(&r, &e) == -1 && strstr(e.msg, "LEMO_LAUNCH_ID"), "bad nonce: %s", e.msg);
    unsetenv("LEMO_RANK"), unsetenv("LEMO_WORLD"), unsetenv("LEMO_LAUNCH_ID"), unsetenv("LEMO_NCCL_ID_FILE");
}

static void id_checks(void) {
    char path[128], tmp[140];
    snprintf(path, sizeof path, "%s/.nccl-id", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unsigned char id[PAR_ID_BYTES], got[PAR_ID_BYTES];
    for (int i = 0; i < PAR_ID_BYTES; i++) id[i] = (unsigned char)(i * 37 + 11);
    Err e = {0};
    CHECK(par_id_publish(path, 0x1234abcdull, id, &e) == 0 && !exists(tmp), "publish: %s", e.msg);
    CHECK(par_id_wait(path, 0x1234abcdull, 1000, got, &e) == 0 && !memcmp(id, got, sizeof id), "read back: %s", e.msg);
    // another launch's file is not this one's: the wait times out and names the file
    double t0 = clock_mono_s();
    CHECK(par_id_wait(path, 0x99ull, 150, got, &e) == -1 && strstr(e.msg, path) && clock_mono_s() - t0 >= 0.14,
          "stale nonce: %s", e.msg);
    // a torn file (half a line) is waited past
    FILE *f = fopen(path, "w");
    fputs("lemo-nccl-id 1 000000001234abcd 0b30", f);
    fclose(f);
    CHECK(par_id_wait(path, 0x1234abcdull, 100, got, &e) == -1, "torn id file accepted");
    // rank 0 publishing later, from another process: the wait sees it
    unlink(path);
    pid_t p = fork();
    if (p == 0) {
        nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
        Err ce;
        _exit(par_id_publish(path, 77, id, &ce) ? 1 : 0);
    }
    memset(got, 0, sizeof got);
    CHECK(par_id_wait(path, 77, 5000, got, &e) == 0 && !memcmp(id, got, sizeof id), "id from a later rank 0: %s", e.msg);
    int st;
    waitpid(p, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the publishing process failed");
}

static void launch_checks(void) {
    Err e = {0};
    int failed = 7;
    char script[1024], path[160];
    // every rank's place, its GPU and NVLink multicast off; rank 0's stdout alone reaches ours
    snprintf(script, sizeof script,
             "echo \"$LEMO_RANK $LEMO_WORLD $CUDA_VISIBLE_DEVICES $NCCL_NVLS_ENABLE $LEMO_NCCL_ID_FILE\" > %s/rank-$LEMO_RANK;"
             " echo \"$LEMO_LAUNCH_ID\" > %s/nonce-$LEMO_RANK; echo \"line from $LEMO_RANK\"",
             dir, dir);
    int gpus[3] = {4, 5, 6};
    CHECK(launch_sh(script, 3, gpus, 500, &failed, &e) == 0 && failed == -1, "three ranks: %s", e.msg);
    char nonce0[64] = "";
    for (int r = 0; r < 3; r++) {
        char want[200];
        snprintf(path, sizeof path, "%s/rank-%d", dir, r);
        snprintf(want, sizeof want, "%d 3 %d 0 %s/.nccl-id\n", r, 4 + r, dir);
        char *got = slurp(path);
        CHECK(got && !strcmp(got, want), "rank %d saw '%s', want '%s'", r, got ? got : "(nothing)", want);
        snprintf(path, sizeof path, "%s/nonce-%d", dir, r);
        got = slurp(path);
        if (r == 0 && got) snprintf(nonce0, sizeof nonce0, "%.63s", got);
        CHECK(got && strlen(got) == 17 && !strcmp(got, nonce0), "rank %d's launch id '%s'", r, got ? got : "");
    }
    snprintf(path, sizeof path, "%s/stdout", dir);
    char *out = slurp(path);
    CHECK(out && !strcmp(out, "line from 0\n"), "the job's stdout holds rank 0's lines only: '%s'", out ? out : "");
    // a second launch draws another nonce (its ranks never read the first one's id file)
    char first[64];
    snprintf(first, sizeof first, "%s", nonce0);
    launch_sh(script, 1, NULL, 500, &failed, &e);
    snprintf(path, sizeof path, "%s/nonce-0", dir);
    char *again = slurp(path);
    CHECK(again && strcmp(again, first), "two launches, one nonce");
    snprintf(path, sizeof path, "%s/rank-0", dir);
    CHECK(slurp(path) && !strncmp(slurp(path), "0 1 0 0", 7), "no GPU list: rank r gets GPU r");

    // a failed rank stops the others at once
    snprintf(script, sizeof script,
             "if [ $LEMO_RANK = 1 ]; then exit 3; fi; sleep 21; echo late > %s/late-$LEMO_RANK", dir);
    double t0 = clock_mono_s();
    int rc = launch_sh(script, 3, NULL, 2000, &failed, &e);
    double dt = clock_mono_s() - t0;
    nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
    int left = system("pgrep -f '^sleep 21$' >/dev/null") == 0;
    snprintf(path, sizeof path, "%s/late-0", dir);
    CHECK(!left, "a stopped rank's own children outlive it");
    CHECK(rc == -1 && failed == 1 && strstr(e.msg, "rank 1 of 3") && strstr(e.msg, "status 3") && dt < 5 && !exists(path),
          "rank 1 fails: rc %d, failed %d, %.1f s: %s", rc, failed, dt, e.msg);
    // one that ignores SIGTERM is killed after the grace period
    snprintf(script, sizeof script, "if [ $LEMO_RANK = 0 ]; then exit 1; fi; trap '' TERM; sleep 20");
    t0 = clock_mono_s();
    rc = launch_sh(script, 2, NULL, 300, &failed, &e);
    dt = clock_mono_s() - t0;
    CHECK(rc == -1 && failed == 0 && dt < 5, "a rank ignoring SIGTERM: rc %d, %.1f s", rc, dt);
    // a program that cannot start fails its rank
    char *argv[] = {"/nonexistent/lemo", NULL};
    char idf[128];
    snprintf(idf, sizeof idf, "%s/.nccl-id", dir);
    ParLaunch bad = {2, argv, NULL, idf, 300};
    CHECK(par_launch(&bad, &failed, &e) == -1 && strstr(e.msg, "status 127"), "missing program: %s", e.msg);

    // a SIGTERM to the launcher (cancel) reaches every rank, which stop cleanly: success
    snprintf(script, sizeof script,
             "sleep 20 & p=$!; trap \"kill $p 2>/dev/null; echo stopped > %s/stop-$LEMO_RANK; exit 0\" TERM; wait", dir);
    pid_t me = getpid(), k = fork();
    if (k == 0) {
        nanosleep(&(struct timespec){0, 400 * 1000 * 1000}, NULL);
        kill(me, SIGTERM);
        _exit(0);
    }
    t0 = clock_mono_s();
    rc = launch_sh(script, 3, NULL, 2000, &failed, &e);
    dt = clock_mono_s() - t0;
    waitpid(k, NULL, 0);
    int stopped = 0;
    for (int r = 0; r < 3; r++) {
        snprintf(path, sizeof path, "%s/stop-%d", dir, r);
        stopped += exists(path);
    }
    CHECK(rc == 0 && failed == -1 && stopped == 3 && dt < 5, "cancel: rc %d, %d of 3 ranks stopped, %.1f s: %s", rc,
          stopped, dt, rc ? e.msg : "");
    snprintf(path, sizeof path, "%s/.nccl-id", dir);
    CHECK(!exists(path), "the id file outlives its launch");
}

int main(void) {
    strcpy(dir, "/tmp/lemo-launch-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    env_checks();
    id_checks();
    launch_checks();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return check_done("test_parallel_launch");
}
