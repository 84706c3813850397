/* srv_util.h: small helpers shared by the server's modules: clocks, random ids, child processes,
 * text buffers. Files go through engine/core/fsutil.h. */
#ifndef LEMO_SRV_UTIL_H
#define LEMO_SRV_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ID_MAX 48

/* Unix time in seconds / as a double with sub-second precision. */
int64_t now_s(void);
double now_f(void);
/* Fills buf with n cryptographically random bytes (getrandom). */
void random_bytes(void *buf, size_t n);
/* 1 when s is one of the strings of the NULL-terminated list (a table of known keys). */
int str_in(const char *s, const char *const *list);
/* New id: prefix + 24 random [A-Za-z0-9] characters ("file-", "ftjob-" ...). */
void id_new(const char *prefix, char out[ID_MAX]);
/* 1 if s is prefix followed by 1..40 characters of [A-Za-z0-9_]: ids never hold a path. */
int id_valid(const char *s, const char *prefix);
/* Starts argv[0] as a child process (vfork + exec: see srv_util.c) that dies with the server (PR_SET_PDEATHSIG), with default
 * signal handling and only descriptors 0-2: in_fd, out_fd, err_fd (-1 leaves that one as is).
 * envp NULL = the server's environment. Returns the pid, or -1 if fork failed. */
pid_t srv_spawn(char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd);
/* The last non-empty line of a text file (reads at most its last 8 KiB); "" if none. */
void file_last_line(const char *path, char *out, size_t cap);


/* A growable text buffer (for JSON written directly as text on hot paths). */
typedef struct {
    char *buf;
    size_t len, cap;
    int oom;              // an allocation failed: the text is incomplete
} StrBuf;

void sb_put(StrBuf *b, const char *s, size_t n);
void sb_puts(StrBuf *b, const char *s);
void sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Length of the valid UTF-8 sequence at p (1-4; 1 for the NUL), or 0 if the bytes there are
 * not one (a stray continuation byte, an overlong form, a surrogate, past U+10FFFF, cut short). */
size_t utf8_len(const unsigned char *p);
/* Makes s valid UTF-8 in place: each byte that is not part of a valid sequence becomes '?'. */
void utf8_sanitize(char *s);
/* s as a JSON string literal (escaped; a byte that is not UTF-8 becomes U+FFFD), or null when s is NULL. */
void sb_json_str(StrBuf *b, const char *s);

#endif
