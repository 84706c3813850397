/* itraw.h: raw TCP clients for the server's abuse tests: bytes no HTTP library would send (a
 * NUL in the request line, a header that never ends, a megabyte of header), and many plain
 * sockets held open at once. On top of itest.h. */
#ifndef LEMO_ITRAW_H
#define LEMO_ITRAW_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "itest.h"

/* A blocking connection to the server from source address src ("127.0.0.2": Linux answers the
 * whole of 127/8, so a test can be several clients; NULL: any). -1 if it cannot connect. */
static inline int it_raw_connect(const ITServer *s, const char *src) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (src) {
        struct sockaddr_in b = {.sin_family = AF_INET};
        inet_pton(AF_INET, src, &b.sin_addr);
        if (bind(fd, (struct sockaddr *)&b, sizeof b)) { close(fd); return -1; }
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { close(fd); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static inline int it_raw_send(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 1 if the server has closed fd (end of stream or reset) within timeout s, 0 if it is still
 * open; bytes it sends meanwhile are read and dropped. */
static inline int it_raw_closed_within(int fd, double timeout) {
    double t0 = it_now();
    for (;;) {
        double left = timeout - (it_now() - t0);
        if (left <= 0) return 0;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return 1;
    }
}

/* Sends n bytes on a new connection and reads the answer until the server closes, the
 * headers and Content-Length bytes are in, or timeout s pass. Returns the status (-1: no
 * answer); the answer, NUL-terminated, in out (cap bytes). */
static inline long it_raw_request(const ITServer *s, const void *req, size_t n, char *out, size_t cap, double timeout) {
    out[0] = 0;
    int fd = it_raw_connect(s, NULL);
    if (fd < 0) return -1;
    it_raw_send(fd, req, n);   // a server refusing early may close before all is sent: read its answer anyway
    size_t len = 0;
    double t0 = it_now();
    while (len + 1 < cap && it_now() - t0 < timeout) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t r = recv(fd, out + len, cap - 1 - len, 0);
        if (r <= 0) break;
        len += (size_t)r;
        out[len] = 0;
        char *e = strstr(out, "\r\n\r\n");
        char *cl = e ? strcasestr(out, "\r\nContent-Length:") : NULL;
        if (cl && cl < e && len >= (size_t)(e + 4 - out) + strtoul(cl + 17, NULL, 10)) break;
    }
    close(fd);
    out[len] = 0;
    return !strncmp(out, "HTTP/1.", 7) && len > 12 ? strtol(out + 9, NULL, 10) : -1;
}

/* The body of a raw answer (after its headers), or "" . */
static inline const char *it_raw_body(const char *answer) {
    const char *e = strstr(answer, "\r\n\r\n");
    return e ? e + 4 : "";
}

/* Raises the soft limit of open files to at least n (the server, started after, inherits it);
 * 0, or -1 when the hard limit is lower. */
static inline int it_raise_nofile(rlim_t n) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return -1;
    if (rl.rlim_cur >= n) return 0;
    if (rl.rlim_max < n) return -1;
    rl.rlim_cur = n;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

#endif
