/* itload.h: an open-loop HTTP load generator for the server's load tests (test_server_mixed.c)
 * and its benchmark (bench/api_load.c), on top of itest.h.
 *
 * One thread drives every read connection and event stream with epoll over plain sockets
 * (keep-alive HTTP/1.1), so the client takes little of a small machine's CPU. Each read
 * connection sends its requests on a fixed schedule (connections / rate seconds apart, with a
 * random phase) and a request is timed from when the schedule wanted it sent, not from when
 * the previous answer let it go: a slow server is then not hidden by a client that waits for
 * it (the "coordinated omission" of closed-loop clients such as wrk). Rate 0 is the closed
 * loop: each connection asks again as soon as its answer is in, so latency is connections /
 * throughput. Event streams (text/event-stream, chunked) are read continuously: their ids must
 * rise and every data line must be an event object. Writes (uploads, dry runs) run on their
 * own threads through libcurl, each on its own schedule. Every answer is checked by its
 * kind's function; the first bad answer of each kind is kept to print. */
#ifndef LEMO_ITLOAD_H
#define LEMO_ITLOAD_H

#include <pthread.h>
#include <strings.h>
#include <sys/epoll.h>

#include "itraw.h"

#define IL_MAX_CONNS 2048

typedef struct ILKind ILKind;
/* Checks one answer: 0 if right, else -1 with why filled. */
typedef int (*ILCheck)(const ILKind *k, long status, const char *body, size_t len, char *why, size_t cap);

struct ILKind {
    char name[32];
    char path[512];             // a read's GET path
    ILCheck check;
    const void *arg;            // the check's expectation
    int full;                   // the check parses the whole answer (else it checks the text's shape)
    /* a write: one blocking request on the writer's thread, `per_s` times a second */
    ITResp (*perform)(ITServer *s, const ILKind *k);
    double per_s;
    /* results: latencies in seconds of the answers after the warm-up */
    double *lat;
    size_t n, cap;
    long answers, bad, failed;  // bad: a wrong answer; failed: none (reset, timeout, closed)
    char first_bad[400];
    pthread_mutex_t mu;
};

typedef struct {
    ITServer *srv;
    const char *auth;           // "Authorization: Bearer KEY", or NULL
    int full;                   // parse every event a stream sends (else check how each opens)
    int connections;            // read connections
    double rate;                // reads a second over all of them; 0 = closed loop
    int streams;                // event streams on stream_path
    char stream_path[256];
    double seconds, warmup;     // measured time, and the time before it whose answers are not timed
    ILKind *reads;              // connection i asks reads[(i + k) % n_reads] with its k-th request
    int n_reads;
    ILKind *writes;
    int n_writes;
    /* results */
    long stream_events, stream_bad, streams_open;   // events read; bad ids or data; streams open at the end
    char stream_first_bad[400];
    long reconnects;            // read connections the server closed, opened again
    double client_cpu_s, wall_s;
} ILRun;

static inline double il_percentile(const ILKind *k, double p) {
    if (!k->n) return NAN;
    size_t i = (size_t)(p * (double)(k->n - 1) + 0.5);
    return k->lat[i < k->n ? i : k->n - 1];
}

static int il_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline void il_record(ILKind *k, int timed, double lat, int bad, int failed, const char *why) {
    pthread_mutex_lock(&k->mu);
    if (failed) k->failed++;
    else k->answers++;
    if (bad) k->bad++;
    if ((bad || failed) && !k->first_bad[0]) snprintf(k->first_bad, sizeof k->first_bad, "%s", why);
    if (timed && !failed) {
        if (k->n == k->cap) {
            size_t cap = k->cap ? k->cap * 2 : 4096;
            double *nl = realloc(k->lat, cap * sizeof *nl);
            if (nl) k->lat = nl, k->cap = cap;
        }
        if (k->n < k->cap) k->lat[k->n++] = lat;
    }
    pthread_mutex_unlock(&k->mu);
}

/* ---- answers checked by the kinds ---- */

/* How many times needle occurs in the n bytes at p. */
static inline size_t il_count(const char *p, size_t n, const char *needle) {
    size_t c = 0, nl = strlen(needle);
    for (const char *q = p; (q = memmem(q, (size_t)(p + n - q), needle, nl)); q += nl) c++;
    return c;
}

/* A list kind's expectation: how many elements, each opening with `item` (its "object" and
 * the start of its id, as the server writes them). */
typedef struct { int count; const char *item; } ILList;

/* 200 and a JSON list of exactly arg->count elements. Checked on the text (its opening, its
 * elements' openings, its end), which costs the client little; with full, also parsed, every
 * element an object with a string id. */
static inline int il_check_list(const ILKind *k, long status, const char *body, size_t len, char *why, size_t cap) {
    const ILList *want = k->arg;
    static const char head[] = "{\"object\":\"list\",\"data\":[";
    size_t got = il_count(body, len, want->item);
    int ok = status == 200 && len > sizeof head && !memcmp(body, head, sizeof head - 1) && body[len - 1] == '}' &&
             got == (size_t)want->count;
    if (ok && k->full) {
        json_t *j = json_loadb(body, len, 0, NULL);
        json_t *d = json_object_get(j, "data");
        ok = json_array_size(d) == (size_t)want->count;
        for (size_t i = 0; ok && i < json_array_size(d); i++) ok = json_is_string(json_object_get(json_array_get(d, i), "id"));
        json_decref(j);
    }
    if (!ok) snprintf(why, cap, "%s: status %ld, %zu of %d elements: %.200s", k->name, status, got, want->count, body);
    return ok ? 0 : -1;
}

/* 200 and the job object whose id is (const char *)arg, running (on the text; with full, parsed). */
static inline int il_check_job(const ILKind *k, long status, const char *body, size_t len, char *why, size_t cap) {
    char head[128];
    int hl = snprintf(head, sizeof head, "{\"object\":\"fine_tuning.job\",\"id\":\"%s\",", (const char *)k->arg);
    int ok = status == 200 && len > (size_t)hl && !memcmp(body, head, (size_t)hl) && body[len - 1] == '}' &&
             il_count(body, len, "\"status\":\"running\"") == 1;
    if (ok && k->full) {
        json_t *j = json_loadb(body, len, 0, NULL);
        ok = j && !strcmp(json_string_value(json_object_get(j, "status")) ?: "", "running");
        json_decref(j);
    }
    if (!ok) snprintf(why, cap, "%s: status %ld: not the running job %s: %.200s", k->name, status,
                      (const char *)k->arg, body);
    return ok ? 0 : -1;
}

/* ---- the epoll side: read connections and event streams ---- */

typedef struct {
    int fd;
    int stream;
    int busy;                   // a request is out
    long k;                     // requests sent on this connection
    int kind;                   // the kind of the request out
    double due, sched;          // next scheduled start; the scheduled start of the request out
    char *in;
    size_t len, cap;
    /* an event stream: after its headers, chunked decoding then SSE lines */
    int headers_done;
    int ch_state;               // 0 size line, 1 data, 2 CRLF after data
    size_t ch_left;
    char line[65536];
    size_t line_len;
    long long last_id;
    int ended;
} ILConn;

static inline int il_connect(ITServer *s) {
    int fd = it_raw_connect(s, NULL);
    if (fd >= 0) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static inline int il_send_get(int fd, const char *path, const char *auth) {
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s\r\n", path, auth ? auth : "",
                     auth ? "\r\n" : "");
    // a request this small always fits an empty socket buffer: a short write is a broken connection
    return send(fd, req, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
}

/* Header value (case-insensitive name) in a header block; NULL if absent. */
static inline const char *il_header(const char *hdr, size_t hlen, const char *name, size_t *vlen) {
    size_t nl = strlen(name);
    for (const char *p = hdr; p && p < hdr + hlen;) {
        const char *eol = memchr(p, '\n', (size_t)(hdr + hlen - p));
        if (!eol) break;
        if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            *vlen = (size_t)(eol - v) - (eol > v && eol[-1] == '\r');
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

static inline void il_stream_bad(ILRun *run, const char *fmt, const char *detail) {
    run->stream_bad++;
    if (!run->stream_first_bad[0]) snprintf(run->stream_first_bad, sizeof run->stream_first_bad, fmt, detail);
}

/* One complete SSE line of a stream. */
static inline void il_stream_line(ILRun *run, ILConn *c, const char *l, size_t n) {
    char tmp[128];
    if (n >= 4 && !strncmp(l, "id: ", 4)) {
        snprintf(tmp, sizeof tmp, "%.*s", (int)(n - 4 < 100 ? n - 4 : 100), l + 4);
        long long id = strtoll(tmp, NULL, 10);
        if (id <= c->last_id && !c->ended) il_stream_bad(run, "event id did not rise: %s", tmp);
        c->last_id = id;
    } else if (n >= 6 && !strncmp(l, "data: ", 6)) {
        if (c->ended) return;   // the end event's data is the job
        static const char ev[] = "{\"object\":\"fine_tuning.job.event\",\"id\":\"ftevent-";
        int ok = n - 6 > sizeof ev && !memcmp(l + 6, ev, sizeof ev - 1) && l[n - 1] == '}';
        if (ok && run->full) {
            json_t *j = json_loadb(l + 6, n - 6, 0, NULL);
            ok = j && !strcmp(json_string_value(json_object_get(j, "object")) ?: "", "fine_tuning.job.event");
            json_decref(j);
        }
        if (!ok) {
            snprintf(tmp, sizeof tmp, "%.*s", (int)(n < 100 ? n : 100), l);
            il_stream_bad(run, "not an event: %s", tmp);
        }
        run->stream_events++;
    } else if (n == 10 && !strncmp(l, "event: end", 10)) {
        c->ended = 1;
    }
}

/* Decoded bytes of a stream's body, split into lines. */
static inline void il_stream_bytes(ILRun *run, ILConn *c, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            il_stream_line(run, c, c->line, c->line_len);
            c->line_len = 0;
        } else if (c->line_len < sizeof c->line) {
            c->line[c->line_len++] = p[i];
        }
    }
}

/* Consumes what a stream connection has read: headers once, then chunks. -1: the stream broke. */
static inline int il_stream_feed(ILRun *run, ILConn *c) {
    size_t off = 0;
    if (!c->headers_done) {
        char *e = memmem(c->in, c->len, "\r\n\r\n", 4);
        if (!e) return 0;
        size_t hl = (size_t)(e - c->in) + 4, vl;
        long st = c->len > 12 ? strtol(c->in + 9, NULL, 10) : 0;
        const char *te = il_header(c->in, hl, "Transfer-Encoding", &vl);
        if (st != 200 || !te || vl < 7 || strncasecmp(te, "chunked", 7)) {
            char tmp[160];
            snprintf(tmp, sizeof tmp, "%.*s", (int)(hl < 150 ? hl : 150), c->in);
            il_stream_bad(run, "stream answer: %s", tmp);
            return -1;
        }
        c->headers_done = 1;
        off = hl;
    }
    while (off < c->len) {
        if (c->ch_state == 0) {
            char *nl = memchr(c->in + off, '\n', c->len - off);
            if (!nl) break;
            c->ch_left = strtoul(c->in + off, NULL, 16);
            off = (size_t)(nl - c->in) + 1;
            if (c->ch_left == 0) return -1;   // the server ended the stream
            c->ch_state = 1;
        } else if (c->ch_state == 1) {
            size_t take = c->len - off < c->ch_left ? c->len - off : c->ch_left;
            il_stream_bytes(run, c, c->in + off, take);
            off += take;
            c->ch_left -= take;
            if (!c->ch_left) c->ch_state = 2;
        } else {
            if (c->len - off < 2) break;
            off += 2;
            c->ch_state = 0;
        }
    }
    memmove(c->in, c->in + off, c->len - off);
    c->len -= off;
    return 0;
}

/* A read connection's answer if it is complete: 1 (and the answer is consumed), 0 not yet, -1 broken. */
static inline int il_read_answer(ILRun *run, ILConn *c, double now, double t_timed) {
    char *e = memmem(c->in, c->len, "\r\n\r\n", 4);
    if (!e) return 0;
    size_t hl = (size_t)(e - c->in) + 4, vl;
    const char *cl = il_header(c->in, hl, "Content-Length", &vl);
    if (!cl) return -1;
    size_t body = strtoul(cl, NULL, 10);
    if (c->len < hl + body) return 0;
    long st = strtol(c->in + 9, NULL, 10);
    ILKind *k = &run->reads[c->kind];
    char why[400] = "";
    int bad = k->check && k->check(k, st, c->in + hl, body, why, sizeof why);
    il_record(k, c->sched >= t_timed, now - c->sched, bad, 0, why);
    const char *conn = il_header(c->in, hl, "Connection", &vl);
    int closing = conn && vl >= 5 && !strncasecmp(conn, "close", 5);
    memmove(c->in, c->in + hl + body, c->len - hl - body);
    c->len -= hl + body;
    return closing ? -1 : 1;
}

static inline double il_now(void) { return it_now(); }

/* Opens (or reopens) connection i and, for a stream, sends its request. */
static inline int il_open(ILRun *run, ILConn *c, int ep) {
    c->fd = il_connect(run->srv);
    if (c->fd < 0) return -1;
    c->len = 0;
    c->busy = 0;
    c->headers_done = c->ch_state = 0;
    c->line_len = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    if (c->stream && il_send_get(c->fd, run->stream_path, run->auth)) return -1;
    return 0;
}

static inline void il_close(ILConn *c, int ep) {
    if (c->fd < 0) return;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

typedef struct { ILRun *run; ILKind *k; double t0, t_timed, t_end; } ILWriterArg;

/* A writer thread: its kind's request on its schedule, timed from the scheduled start. */
static void *il_writer(void *p) {
    ILWriterArg *a = p;
    double gap = 1.0 / a->k->per_s, due = a->t0 + gap * (double)(rand() % 1000) / 1000.0;
    while (due < a->t_end) {
        double now = il_now();
        if (due > now) usleep((useconds_t)((due - now) * 1e6));
        ITResp r = a->k->perform(a->run->srv, a->k);
        double done = il_now();
        char why[400] = "";
        int failed = r.status < 0;
        if (failed) snprintf(why, sizeof why, "%s: no answer", a->k->name);
        int bad = !failed && a->k->check && a->k->check(a->k, r.status, r.body, r.len, why, sizeof why);
        il_record(a->k, due >= a->t_timed, done - due, bad, failed, why);
        it_free(&r);
        due += gap;
    }
    return NULL;
}

/* Runs the load; 0 when every connection could be opened, else -1 (results as far as they got). */
static inline int il_run(ILRun *run) {
    int n = run->connections + run->streams;
    if (n > IL_MAX_CONNS || (run->connections && !run->n_reads)) return -1;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 64 && rl.rlim_max >= (rlim_t)n + 64) {
        rl.rlim_cur = (rlim_t)n + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (int i = 0; i < run->n_reads; i++) pthread_mutex_init(&run->reads[i].mu, NULL);
    for (int i = 0; i < run->n_writes; i++) pthread_mutex_init(&run->writes[i].mu, NULL);
    ILConn *cs = calloc((size_t)n, sizeof *cs);
    int ep = epoll_create1(EPOLL_CLOEXEC), rc = 0;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_THREAD, &ru0);
    double t0 = il_now(), gap = run->rate > 0 ? run->connections / run->rate : 0;
    for (int i = 0; i < n; i++) {
        ILConn *c = &cs[i];
        c->stream = i >= run->connections;
        c->kind = run->n_reads ? i % run->n_reads : 0;
        c->cap = 1 << 16;
        c->in = malloc(c->cap);
        if (il_open(run, c, ep)) { rc = -1; c->fd = -1; }
    }
    double start = il_now(), t_timed = start + run->warmup, t_end = t_timed + run->seconds;
    for (int i = 0; i < run->connections; i++) cs[i].due = start + gap * (double)(rand() % 10000) / 10000.0;
    pthread_t th[16];
    ILWriterArg wa[16];
    int nw = run->n_writes < 16 ? run->n_writes : 16;
    for (int i = 0; i < nw; i++) {
        wa[i] = (ILWriterArg){run, &run->writes[i], start, t_timed, t_end};
        if (run->writes[i].per_s > 0) pthread_create(&th[i], NULL, il_writer, &wa[i]);
    }
    struct epoll_event evs[512];
    for (;;) {
        double now = il_now();
        if (now >= t_end) break;
        /* send what is due; note the next due time */
        double next = t_end;
        for (int i = 0; i < run->connections; i++) {
            ILConn *c = &cs[i];
            if (c->fd < 0 && il_open(run, c, ep)) { c->fd = -1; continue; }
            if (c->busy) continue;
            if (c->due <= now) {
                c->kind = (int)((i + c->k) % run->n_reads);
                c->sched = gap > 0 ? c->due : now;
                if (il_send_get(c->fd, run->reads[c->kind].path, run->auth)) {
                    il_record(&run->reads[c->kind], 0, 0, 0, 1, "send failed");
                    il_close(c, ep);
                    run->reconnects++;
                    continue;
                }
                c->busy = 1;
                c->k++;
                c->due = gap > 0 ? c->due + gap : now;
            } else if (c->due < next) {
                next = c->due;
            }
        }
        double wait = next - il_now();
        if (wait < 0) wait = 0;
        if (wait > 0.05) wait = 0.05;
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        int ne = epoll_pwait2(ep, evs, 512, &ts, NULL);
        now = il_now();
        for (int e = 0; e < ne; e++) {
            ILConn *c = evs[e].data.ptr;
            int broken = 0;
            for (;;) {
                if (c->cap - c->len < 16384) {
                    char *nb = realloc(c->in, c->cap * 2);
                    if (!nb) { broken = 1; break; }
                    c->in = nb;
                    c->cap *= 2;
                }
                ssize_t r = recv(c->fd, c->in + c->len, c->cap - c->len, 0);
                if (r > 0) { c->len += (size_t)r; continue; }
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
                broken = 1;   // closed or reset
                break;
            }
            if (c->stream) {
                if (il_stream_feed(run, c) < 0 || broken) {
                    if (!c->ended) il_stream_bad(run, "%s", "a stream closed before the end");
                    il_close(c, ep);
                    c->stream = -1;   // not reopened: a stream that broke stays counted as broken
                }
                continue;
            }
            int got = c->busy ? il_read_answer(run, c, now, t_timed) : 0;
            if (got == 1) c->busy = 0;
            if (got < 0 || broken) {
                if (c->busy) il_record(&run->reads[c->kind], 0, 0, 0, 1, "connection closed before the answer");
                il_close(c, ep);
                run->reconnects++;
            }
        }
    }
    for (int i = 0; i < nw; i++)
        if (run->writes[i].per_s > 0) pthread_join(th[i], NULL);
    getrusage(RUSAGE_THREAD, &ru1);
    run->wall_s = il_now() - t0;
    run->client_cpu_s = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                        (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) * 1e-6;
    for (int i = 0; i < n; i++) {
        if (cs[i].stream == 1 && cs[i].fd >= 0) run->streams_open++;
        il_close(&cs[i], ep);
        free(cs[i].in);
    }
    free(cs);
    close(ep);
    for (int i = 0; i < run->n_reads; i++) qsort(run->reads[i].lat, run->reads[i].n, sizeof(double), il_cmp_double);
    for (int i = 0; i < run->n_writes; i++) qsort(run->writes[i].lat, run->writes[i].n, sizeof(double), il_cmp_double);
    return rc;
}

/* Prints one line per kind: answers, wrong, failed, answers/s, p50, p90, p99, max (ms). */
static inline void il_report(FILE *f, const ILRun *run) {
    fprintf(f, "  %-10s %8s %6s %6s %9s %8s %8s %8s %8s\n", "kind", "answers", "wrong", "failed", "per_s", "p50_ms",
            "p90_ms", "p99_ms", "max_ms");
    for (int w = 0; w < 2; w++) {
        const ILKind *ks = w ? run->writes : run->reads;
        int nk = w ? run->n_writes : run->n_reads;
        for (int i = 0; i < nk; i++) {
            const ILKind *k = &ks[i];
            fprintf(f, "  %-10s %8ld %6ld %6ld %9.1f %8.2f %8.2f %8.2f %8.2f\n", k->name, k->answers, k->bad, k->failed,
                    (double)k->n / run->seconds, il_percentile(k, 0.5) * 1e3, il_percentile(k, 0.9) * 1e3,
                    il_percentile(k, 0.99) * 1e3, k->n ? k->lat[k->n - 1] * 1e3 : NAN);
        }
    }
    fprintf(f, "  streams: %d, %ld open at the end, %ld events read, %ld bad; %ld reconnects; client CPU %.2f s of %.2f s\n",
            run->streams, run->streams_open, run->stream_events, run->stream_bad, run->reconnects, run->client_cpu_s,
            run->wall_s);
}

/* All reads together: the percentile p over every read kind's latencies. */
static inline double il_reads_percentile(const ILRun *run, double p) {
    size_t total = 0;
    for (int i = 0; i < run->n_reads; i++) total += run->reads[i].n;
    if (!total) return NAN;
    double *all = malloc(total * sizeof *all);
    size_t o = 0;
    for (int i = 0; i < run->n_reads; i++) {
        memcpy(all + o, run->reads[i].lat, run->reads[i].n * sizeof *all);
        o += run->reads[i].n;
    }
    qsort(all, total, sizeof *all, il_cmp_double);
    size_t i = (size_t)(p * (double)(total - 1) + 0.5);
    double v = all[i < total ? i : total - 1];
    free(all);
    return v;
}

/* ---- the mixed scenario: one job trains while the API is read, streamed and written ---- */

typedef struct {
    char train_file[64], job[64];
    int page;                   // what the job and event lists hold: their default page of 20
    ILList jobs_list, events_list;
    char dry_body[512];
    ILKind reads[3], writes[2];
} ILMixed;

static inline int il_check_upload(const ILKind *k, long status, const char *body, size_t len, char *why, size_t cap) {
    json_t *j = status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    int ok = j && !strncmp(json_string_value(json_object_get(j, "id")) ?: "", "file-", 5) &&
             json_integer_value(json_object_get(j, "lines")) == 20;
    json_decref(j);
    if (!ok) snprintf(why, cap, "%s: status %ld: %.200s", k->name, status, body);
    return ok ? 0 : -1;
}

static inline int il_check_estimate(const ILKind *k, long status, const char *body, size_t len, char *why, size_t cap) {
    json_t *j = status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    int ok = j && !strcmp(json_string_value(json_object_get(j, "object")) ?: "", "fine_tuning.job.estimate") &&
             json_integer_value(json_object_get(j, "peak_bytes")) > 0;
    json_decref(j);
    if (!ok) snprintf(why, cap, "%s: status %ld: %.200s", k->name, status, body);
    return ok ? 0 : -1;
}

static inline ITResp il_upload_small(ITServer *s, const ILKind *k) {
    (void)k;
    char *ds = it_story_jsonl(20);
    ITResp r = it_upload(s, "load.jsonl", ds, strlen(ds), "fine-tune", NULL);
    free(ds);
    return r;
}

static inline ITResp il_dry_run(ITServer *s, const ILKind *k) {
    return it_post_json(s, "/v1/fine_tuning/jobs?dry_run=true", k->arg);
}

/* On a server started with --slots 1 and stories260K under --models: uploads a dataset,
 * queues page + 1 jobs of which the first trains (for hours: it is cancelled by the server's
 * stop), waits until it runs and has a page of events, and fills m's kinds: reads of the job
 * list, the training job's events and the job itself; writes of uploads (uploads_per_s) and
 * dry runs (dry_runs_per_s). 0, or -1 with why. */
static inline int il_mixed_prepare(ITServer *s, ILMixed *m, double uploads_per_s, double dry_runs_per_s, char *why,
                                   size_t cap) {
    memset(m, 0, sizeof *m);
    m->page = 20;
    char *ds = it_story_jsonl(200);
    int up = it_upload_ok(s, "train.jsonl", ds, m->train_file, sizeof m->train_file);
    free(ds);
    if (up) { snprintf(why, cap, "upload failed"); return -1; }
    char body[512];
    snprintf(body, sizeof body, "{\"model\": \"stories260K\", \"training_file\": \"%s\", \"hyperparameters\": "
             "{\"max_steps\": 1000000, \"context_length\": 128}}", m->train_file);
    for (int i = 0; i <= m->page; i++) {
        ITResp r = it_post_json(s, "/v1/fine_tuning/jobs", body);
        char id[64];
        it_str(&r, "id", id, sizeof id);
        if (r.status != 200) { snprintf(why, cap, "job create: %ld %.200s", r.status, r.body); it_free(&r); return -1; }
        it_free(&r);
        if (i == 0) snprintf(m->job, sizeof m->job, "%s", id);
    }
    char path[256];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?limit=100", m->job);
    for (double t0 = it_now();; usleep(100000)) {
        ITResp r = it_get(s, path);
        json_t *j = it_json(&r);
        size_t n = json_array_size(json_object_get(j, "data"));
        json_decref(j);
        it_free(&r);
        if ((int)n > m->page) break;
        if (it_now() - t0 > 60) { snprintf(why, cap, "job %s has %zu events after 60 s", m->job, n); return -1; }
    }
    snprintf(m->dry_body, sizeof m->dry_body, "{\"model\": \"stories260K\", \"training_file\": \"%s\", "
             "\"hyperparameters\": {\"max_steps\": 50, \"context_length\": 256}}", m->train_file);
    m->jobs_list = (ILList){m->page, "{\"object\":\"fine_tuning.job\",\"id\":\"ftjob-"};
    m->events_list = (ILList){m->page, "{\"object\":\"fine_tuning.job.event\",\"id\":\"ftevent-"};
    m->reads[0] = (ILKind){.name = "jobs", .path = "/v1/fine_tuning/jobs", .check = il_check_list, .arg = &m->jobs_list};
    m->reads[1] = (ILKind){.name = "events", .check = il_check_list, .arg = &m->events_list};
    snprintf(m->reads[1].path, sizeof m->reads[1].path, "/v1/fine_tuning/jobs/%s/events", m->job);
    m->reads[2] = (ILKind){.name = "job", .check = il_check_job, .arg = m->job};
    snprintf(m->reads[2].path, sizeof m->reads[2].path, "/v1/fine_tuning/jobs/%s", m->job);
    m->writes[0] = (ILKind){.name = "upload", .check = il_check_upload, .perform = il_upload_small,
                            .per_s = uploads_per_s};
    m->writes[1] = (ILKind){.name = "dry_run", .check = il_check_estimate, .perform = il_dry_run, .arg = m->dry_body,
                            .per_s = dry_runs_per_s};
    return 0;
}

/* A run of the mixed scenario's kinds (fresh results each time). */
static inline void il_mixed_run_init(ILRun *run, ITServer *s, ILMixed *m, int connections, double rate, int streams,
                                     double seconds) {
    for (int i = 0; i < 3; i++) { free(m->reads[i].lat); m->reads[i].lat = NULL; }
    for (int i = 0; i < 2; i++) { free(m->writes[i].lat); m->writes[i].lat = NULL; }
    for (int i = 0; i < 3; i++) {
        ILKind *k = &m->reads[i];
        k->n = k->cap = 0, k->answers = k->bad = k->failed = 0, k->first_bad[0] = 0;
    }
    for (int i = 0; i < 2; i++) {
        ILKind *k = &m->writes[i];
        k->n = k->cap = 0, k->answers = k->bad = k->failed = 0, k->first_bad[0] = 0;
    }
    memset(run, 0, sizeof *run);
    run->srv = s;
    run->connections = connections;
    run->rate = rate;
    run->streams = streams;
    snprintf(run->stream_path, sizeof run->stream_path, "/v1/fine_tuning/jobs/%s/events?stream=true", m->job);
    run->seconds = seconds;
    run->warmup = 1;
    run->reads = m->reads;
    run->n_reads = 3;
    run->writes = m->writes;
    run->n_writes = 2;
}

#endif
