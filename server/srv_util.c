/* srv_util.c: see srv_util.h. */
#include "clock.h"
#include "srv_util.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t now_s(void) { return (int64_t)time(NULL); }

double now_f(void) { return clock_wall_s(); }

int str_in(const char *s, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(s, list[i])) return 1;
    return 0;
}

void random_bytes(void *buf, size_t n) {
    unsigned char *p = buf;
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            /* getrandom cannot fail on Linux >= 3.17 once the pool is ready; fall back anyway. */
            for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(rand() ^ (int)time(NULL));
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

void id_new(const char *prefix, char out[ID_MAX]) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[24];
    random_bytes(r, sizeof r);
    size_t pl = strlen(prefix);
    memcpy(out, prefix, pl);
    for (int i = 0; i < 24; i++) out[pl + i] = al[r[i] % 62];  // bias of 62 vs 256 is irrelevant for ids
    out[pl + 24] = 0;
}

int id_valid(const char *s, const char *prefix) {
    size_t pl = strlen(prefix);
    if (!s || strncmp(s, prefix, pl)) return 0;
    size_t n = 0;
    for (const char *p = s + pl; *p; p++, n++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return 0;
    }
    return n >= 1 && n <= 40;
}

void file_last_line(const char *path, char *out, size_t cap) {
    out[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[8192];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t start = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t r = pread(fd, buf, sizeof buf - 1, start);
    close(fd);
    if (r <= 0) return;
    buf[r] = 0;
    while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == '\r' || buf[r - 1] == ' ')) buf[--r] = 0;
    char *nl = strrchr(buf, '\n');
    snprintf(out, cap, "%s", nl ? nl + 1 : buf);
}

void sb_put(StrBuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) { b->oom = 1; return; }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}

void sb_puts(StrBuf *b, const char *s) { sb_put(b, s, strlen(s)); }

void sb_printf(StrBuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) { sb_put(b, tmp, (size_t)n); return; }
    char *big = malloc((size_t)n + 1);
    if (!big) { b->oom = 1; return; }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    free(big);
}

size_t utf8_len(const unsigned char *p) {
    if (p[0] < 0x80) return 1;
    size_t n = p[0] >= 0xC2 && p[0] <= 0xDF ? 2 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3 : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0))) return 0;  // overlong, surrogate
    if (n == 4 && ((p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] >= 0x90))) return 0;  // overlong, > U+10FFFF
    return n;
}

void utf8_sanitize(char *s) {
    for (unsigned char *p = (unsigned char *)s; *p;) {
        size_t u = utf8_len(p);
        if (u) p += u;
        else *p++ = '?';
    }
}

void sb_json_str(StrBuf *b, const char *s) {
    if (!s) { sb_puts(b, "null"); return; }
    sb_put(b, "\"", 1);
    const char *run = s;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t u = utf8_len(p);
        if (u > 1 || (u == 1 && *p >= 0x20 && *p != '"' && *p != '\\')) { p += u; continue; }
        sb_put(b, run, (size_t)((const char *)p - run));
        char esc[8];
        if (!u) sb_puts(b, "\\ufffd");   // a byte that is no UTF-8 (a message cut mid-character): the answer stays JSON
        else if (*p == '"') sb_puts(b, "\\\"");
        else if (*p == '\\') sb_puts(b, "\\\\");
        else if (*p == '\n') sb_puts(b, "\\n");
        else if (*p == '\t') sb_puts(b, "\\t");
        else { snprintf(esc, sizeof esc, "\\u%04x", *p); sb_puts(b, esc); }
        p++;
        run = (const char *)p;
    }
    sb_puts(b, run);
    sb_put(b, "\"", 1);
}

/* vfork, not fork: fork() of the server (hundreds of connection threads, their stacks mapped)
 * copies its page tables and write-protects every page, so every request thread stalls on
 * the copy and then faults on its next writes: reads waited 0.3-1.4 s at p99 while dry runs
 * spawned `lemo estimate` (bench/RESULTS.md). vfork shares the memory until exec instead;
 * the child then makes system calls only, on arguments prepared before, and writes no memory
 * but its own stack frame. Dispositions go back to default before signals are unblocked, so
 * no handler can run in the shared memory. */
pid_t srv_spawn(char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd) {
    pid_t parent = getpid();
    sigset_t none;
    sigemptyset(&none);
    pid_t pid = vfork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);  // the server died before prctl took hold
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (in_fd >= 0) dup2(in_fd, 0);
        if (out_fd >= 0 && dup2(out_fd, 1) < 0) _exit(127);
        if (err_fd >= 0) dup2(err_fd, 2);
        syscall(SYS_close_range, 3U, ~0U, 0U);  // no server descriptor survives into the child
        if (envp) execve(argv[0], argv, envp);
        else execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}
