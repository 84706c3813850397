/* launch.c: the launcher, a rank's environment and the id file (launch.h).
 *
 * The launcher polls its ranks (waitpid with WNOHANG every 10 ms) rather than waiting on
 * SIGCHLD: the loop has three things to watch (a rank ending, a stop request to pass on, the
 * grace period of ranks told to stop) and a poll keeps them in one readable place. Each rank
 * leads a process group of its own, and signals go to the group, so a rank's own children stop
 * with it; a terminal's Ctrl-C reaches the launcher, which passes it on. The id file
 * is one line of text, "lemo-nccl-id 1 NONCE ID" with both in hex, so a stuck launch can be read
 * with cat. */
#include "launch.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "job_config.h"

/* A non-negative integer from s (all of it) into *v; -1 when s is not one. */
static int parse_int(const char *s, long max, int *v) {
    char *end;
    if (!s || !*s) return -1;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (*end || errno || n < 0 || n > max) return -1;
    *v = (int)n;
    return 0;
}

int par_rank_from_env(ParRank *r, Err *e) {
    const char *rank = getenv("LEMO_RANK"), *world = getenv("LEMO_WORLD");
    const char *nonce = getenv("LEMO_LAUNCH_ID"), *file = getenv("LEMO_NCCL_ID_FILE");
    memset(r, 0, sizeof *r);
    r->world = 1;
    if (!rank) return 0;
    if (parse_int(world, PAR_MAX_GPUS, &r->world) || r->world < 1)
        return err_set(e, "LEMO_WORLD must be a rank count in [1, %d], got '%s'", PAR_MAX_GPUS, world ? world : "");
    if (parse_int(rank, r->world - 1, &r->rank))
        return err_set(e, "LEMO_RANK must be a rank in [0, %d], got '%s'", r->world - 1, rank);
    char *end;
    if (!nonce || strlen(nonce) != 16 || (r->nonce = strtoull(nonce, &end, 16), *end))
        return err_set(e, "LEMO_LAUNCH_ID must be 16 hex digits, got '%s'", nonce ? nonce : "");
    if (!file || !*file || strlen(file) >= sizeof r->id_file)
        return err_set(e, "LEMO_NCCL_ID_FILE must name the id file");
    strcpy(r->id_file, file);
    return 1;
}

int par_id_publish(const char *path, uint64_t nonce, const unsigned char id[PAR_ID_BYTES], Err *e) {
    char tmp[1200], line[64 + 2 * PAR_ID_BYTES];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int n = snprintf(line, sizeof line, "lemo-nccl-id 1 %016llx ", (unsigned long long)nonce);
    for (int i = 0; i < PAR_ID_BYTES; i++) n += snprintf(line + n, sizeof line - n, "%02x", id[i]);
    line[n++] = '\n';
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return err_set(e, "cannot write the NCCL id file %s: %s", tmp, strerror(errno));
    int ok = write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path)) {
        err_set(e, "cannot write the NCCL id file %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* 1 when path holds this nonce's id (into id), else 0. */
static int id_read(const char *path, uint64_t nonce, unsigned char id[PAR_ID_BYTES]) {
    char buf[128 + 2 * PAR_ID_BYTES];
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    unsigned long long got;
    int off = 0;
    if (sscanf(buf, "lemo-nccl-id 1 %16llx %n", &got, &off) != 1 || got != nonce || off == 0) return 0;
    const char *h = buf + off;
    if (strlen(h) < 2 * PAR_ID_BYTES + 1 || h[2 * PAR_ID_BYTES] != '\n') return 0;
    for (int i = 0; i < PAR_ID_BYTES; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1) return 0;
        id[i] = (unsigned char)v;
    }
    return 1;
}

int par_id_wait(const char *path, uint64_t nonce, int timeout_ms, unsigned char id[PAR_ID_BYTES], Err *e) {
    double deadline = clock_mono_s() + timeout_ms / 1000.0;
    for (;;) {
        if (id_read(path, nonce, id)) return 0;
        if (clock_mono_s() >= deadline) break;
        nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
    }
    return err_set(e, "no NCCL id from rank 0 in %s after %.1f s (rank 0 did not start, or failed before "
                   "publishing it)", path, timeout_ms / 1000.0);
}

static volatile sig_atomic_t launch_stop;
static void on_launch_stop(int sig) { (void)sig; launch_stop = 1; }

/* A random launch nonce (never 0). */
static uint64_t launch_nonce(void) {
    uint64_t n = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &n, sizeof n) != (ssize_t)sizeof n) n = 0;
        close(fd);
    }
    if (!n) n = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ 0x9E3779B97F4A7C15ull;
    return n;
}

/* The child's side of a fork: its environment and stdout, then the rank's program. */
static void launch_child(const ParLaunch *l, int r, uint64_t nonce) {
    char v[32];
    setpgid(0, 0);  // a group of its own: a stop reaches whatever the rank started too
    snprintf(v, sizeof v, "%d", l->gpus ? l->gpus[r] : r);
    setenv("CUDA_VISIBLE_DEVICES", v, 1);
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    snprintf(v, sizeof v, "%d", r);
    setenv("LEMO_RANK", v, 1);
    snprintf(v, sizeof v, "%d", l->world);
    setenv("LEMO_WORLD", v, 1);
    snprintf(v, sizeof v, "%016llx", (unsigned long long)nonce);
    setenv("LEMO_LAUNCH_ID", v, 1);
    setenv("LEMO_NCCL_ID_FILE", l->id_file, 1);
    if (r > 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, STDOUT_FILENO), close(fd);
    }
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    execvp(l->argv[0], l->argv);
    fprintf(stderr, "rank %d: cannot start %s: %s\n", r, l->argv[0], strerror(errno));
    _exit(127);
}

int par_launch(const ParLaunch *l, int *failed, Err *e) {
    *failed = -1;
    if (l->world < 1 || l->world > PAR_MAX_GPUS) return err_set(e, "a launch needs 1 to %d ranks", PAR_MAX_GPUS);
    pid_t pids[PAR_MAX_GPUS];
    int status[PAR_MAX_GPUS], done = 0, started = 0;
    uint64_t nonce = launch_nonce();
    unlink(l->id_file);  // an earlier launch's: its rank 0 is gone
    struct sigaction sa = {0}, old_term, old_int;
    sa.sa_handler = on_launch_stop;
    launch_stop = 0;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    fflush(stdout);
    fflush(stderr);
    int fork_errno = 0;
    for (; started < l->world; started++) {
        pid_t p = fork();
        if (p < 0) {
            fork_errno = errno;
            break;
        }
        if (p == 0) launch_child(l, started, nonce);
        setpgid(p, p);  // as the child does, so no signal can come before it
        pids[started] = p;
    }
    int fork_failed = started < l->world, first = -1, forwarded = 0;
    if (fork_failed)
        for (int r = 0; r < started; r++) kill(-pids[r], SIGTERM);
    double kill_at = fork_failed ? clock_mono_s() + l->grace_ms / 1000.0 : 0;
    int alive[PAR_MAX_GPUS];
    for (int r = 0; r < started; r++) alive[r] = 1;
    while (done < started) {
        for (int r = 0; r < started; r++) {
            int st;
            if (!alive[r] || waitpid(pids[r], &st, WNOHANG) != pids[r]) continue;
            alive[r] = 0, status[r] = st, done++;
            int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
            if (!ok && first < 0 && !fork_failed) {  // the first failure stops the others
                first = r;
                for (int o = 0; o < started; o++)
                    if (alive[o]) kill(-pids[o], SIGTERM);
                kill_at = clock_mono_s() + l->grace_ms / 1000.0;
            }
        }
        if (launch_stop && !forwarded) {  // cancel: every rank checkpoints and stops
            forwarded = 1;
            for (int o = 0; o < started; o++)
                if (alive[o]) kill(-pids[o], SIGTERM);
        }
        if (kill_at > 0 && clock_mono_s() >= kill_at) {
            for (int o = 0; o < started; o++)
                if (alive[o]) kill(-pids[o], SIGKILL);
            kill_at = 0;
        }
        if (done < started) nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    unlink(l->id_file);
    if (fork_failed) return err_set(e, "cannot start rank %d of %d: %s", started, l->world, strerror(fork_errno));
    if (first < 0) return 0;
    *failed = first;
    int st = status[first];
    if (WIFSIGNALED(st))
        return err_set(e, "rank %d of %d was killed by signal %d (%s); the other ranks were stopped", first, l->world,
                       WTERMSIG(st), strsignal(WTERMSIG(st)));
    return err_set(e, "rank %d of %d exited with status %d; the other ranks were stopped", first, l->world,
                   WEXITSTATUS(st));
}
