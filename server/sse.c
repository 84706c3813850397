/* sse.c: GET /v1/fine_tuning/jobs/{id}/events?stream=true as Server-Sent Events, and the
 * notifier that wakes streams when events are stored.
 *
 * Each event is sent as `id: SEQ` + `data: EVENT_JSON` (unnamed, so EventSource.onmessage
 * sees it), oldest first, from the job's first event or after the Last-Event-ID the client
 * sends back on reconnect. When the job has ended and every event is out, a final
 * `event: end` carries the job object and the stream closes; a reconnect after that
 * (Last-Event-ID at the end) gets 204, which tells EventSource to stop. The connection's
 * own thread blocks in the reader callback until something happens, sending a comment line
 * every 15 s (or every half --idle-timeout, if that is shorter) to keep proxies (and dead-peer
 * detection) going. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "api.h"
#include "job_view.h"
#include "srv_util.h"

#define SSE_KEEPALIVE_MS 15000

void server_notify_events(Server *s) {
    pthread_mutex_lock(&s->ev_mu);
    s->ev_version++;
    pthread_cond_broadcast(&s->ev_cond);
    pthread_mutex_unlock(&s->ev_mu);
}

void server_wait_events(Server *s, uint64_t *seen, int timeout_ms) {
    struct timespec ts = clock_wall_after(timeout_ms / 1000.0);
    pthread_mutex_lock(&s->ev_mu);
    while (s->ev_version == *seen && !atomic_load(&s->stopping))
        if (pthread_cond_timedwait(&s->ev_cond, &s->ev_mu, &ts)) break;
    *seen = s->ev_version;
    pthread_mutex_unlock(&s->ev_mu);
}

typedef struct {
    Server *srv;
    char job_id[48];
    int64_t last_seq;
    char *out;            // formatted bytes not yet handed out
    size_t len, off, cap;
    int done;             // the end event is queued
    int64_t sent;         // bytes handed out (the access log's)
} Stream;

static int stream_put(Stream *s, const char *txt, size_t n) {
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 8192;
        while (cap < s->len + n) cap *= 2;
        char *nb = realloc(s->out, cap);
        if (!nb) return -1;
        s->out = nb;
        s->cap = cap;
    }
    memcpy(s->out + s->len, txt, n);
    s->len += n;
    return 0;
}

/* The streams of one job usually stand at the same event, and a new event wakes them all at
 * once: the first to look reads the events after that one from the database and formats them,
 * and the others copy its text. A batch is keyed by job and position and is good for a stream
 * that saw event version `version` or an older one (it was read after that version's events
 * were committed); events never change once stored, so nothing else can make it stale. The
 * lock is held while a batch is read, so the streams woken together wait for that one read
 * instead of each making their own. */
#define SSE_BATCHES 16
#define SSE_BATCH_EVENTS 100

typedef struct {
    char job_id[48];
    int64_t after;        // the batch holds the events after this seq ...
    int64_t last;         // ... up to this one (after, when there are none)
    uint64_t version;     // the event version read before the database was
    uint64_t used;        // for replacing the least recently used
    int end;              // no events and the job has ended: text is the end event
    int empty;            // no events and the job goes on
    StrBuf text;
} Batch;

static Batch batches[SSE_BATCHES];
static uint64_t batch_clock;
static pthread_mutex_t batch_mu = PTHREAD_MUTEX_INITIALIZER;

/* Reads and formats the events of job after seq into b (under batch_mu); -1 on a database error. */
static int batch_read(Server *srv, Batch *b, const char *job_id, int64_t after, uint64_t version) {
    snprintf(b->job_id, sizeof b->job_id, "%s", job_id);
    b->after = b->last = after;
    b->version = version;
    b->end = b->empty = 0;
    b->text.len = 0;
    b->text.oom = 0;
    if (b->text.buf) b->text.buf[0] = 0;
    Err e;
    JobRow j;
    if (db_job_get(srv->db, job_id, &j, &e) != 1) { b->job_id[0] = 0; return -1; }
    int terminal = job_status_terminal(j.status);   // read before the events: an end is never ahead of them
    EventRow *rows;
    int n;
    if (db_event_since(srv->db, job_id, after, SSE_BATCH_EVENTS, &rows, &n, &e)) {
        job_row_free(&j);
        b->job_id[0] = 0;
        return -1;
    }
    for (int i = 0; i < n; i++) {
        sb_printf(&b->text, "id: %lld\ndata: ", (long long)rows[i].seq);
        event_write_json(&b->text, &rows[i]);
        sb_puts(&b->text, "\n\n");
        b->last = rows[i].seq;
    }
    event_rows_free(rows, n);
    if (!n && terminal) {
        sb_printf(&b->text, "id: %lld\nevent: end\ndata: ", (long long)after);
        job_write_json(&b->text, &j);
        sb_puts(&b->text, "\n\n");
        b->end = 1;
    }
    b->empty = !n && !terminal;
    job_row_free(&j);
    if (b->text.oom) { b->job_id[0] = 0; return -1; }
    return 0;
}

/* Copies the batch after s->last_seq (read now or by another stream since version `seen`)
 * into s->out: 1 if it held events or the end, 0 if there is nothing new, -1 on an error. */
static int stream_take(Stream *s, uint64_t seen) {
    pthread_mutex_lock(&batch_mu);
    Batch *b = NULL, *lru = &batches[0];
    for (int i = 0; i < SSE_BATCHES && !b; i++) {
        Batch *c = &batches[i];
        int same = c->job_id[0] && c->after == s->last_seq && !strcmp(c->job_id, s->job_id);
        if (same && c->version >= seen) b = c;
        else if (same) lru = c, lru->used = 0;   // older than this stream knows: read again in its place
        else if (c->used < lru->used) lru = c;
    }
    int rc = 0;
    if (!b && batch_read(s->srv, lru, s->job_id, s->last_seq, seen)) rc = -1;
    if (!b && !rc) b = lru;
    if (b) {
        b->used = ++batch_clock;
        if (!b->empty) {
            rc = b->text.len && stream_put(s, b->text.buf, b->text.len) ? -1 : 1;
            s->last_seq = b->last;
            s->done = b->end;
        }
    }
    pthread_mutex_unlock(&batch_mu);
    return rc;
}

/* Formats the next batch of events (or the end, or a keep-alive) into s->out. */
static int stream_fill(Stream *s) {
    Server *srv = s->srv;
    s->len = s->off = 0;
    for (;;) {
        if (atomic_load(&srv->stopping)) return -1;
        uint64_t seen;
        pthread_mutex_lock(&srv->ev_mu);
        seen = srv->ev_version;
        pthread_mutex_unlock(&srv->ev_mu);
        int rc = stream_take(s, seen);
        if (rc) return rc < 0 ? -1 : 0;
        // a comment at least twice within --idle-timeout, so a quiet stream is never taken for a dead one
        int ka_ms = srv->idle_timeout_s > 0 && srv->idle_timeout_s * 500 < SSE_KEEPALIVE_MS ? srv->idle_timeout_s * 500
                                                                                           : SSE_KEEPALIVE_MS;
        uint64_t before = seen;
        server_wait_events(srv, &seen, ka_ms);
        static const char ka[] = ": keep-alive\n\n";
        if (seen == before && !atomic_load(&srv->stopping)) return stream_put(s, ka, sizeof ka - 1);
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    Stream *s = cls;
    if (s->off == s->len) {
        if (s->done || stream_fill(s)) return MHD_CONTENT_READER_END_OF_STREAM;
        if (s->off == s->len) return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(buf, s->out + s->off, n);
    s->off += n;
    s->sent += (int64_t)n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    Stream *s = cls;
    free(s->out);
    free(s);
}

int api_events_stream(Req *r) {
    const char *id = r->params[0];
    JobRow j;
    Err e;
    int rc = id_valid(id, "ftjob-") ? db_job_get(r->srv->db, id, &j, &e) : 0;
    if (rc < 0) return http_500(r, "%s", e.msg);
    if (rc == 0) return http_not_found(r, "fine-tuning job", id);
    int terminal = job_status_terminal(j.status);
    job_row_free(&j);
    Stream *s = calloc(1, sizeof *s);
    if (!s) return MHD_NO;
    s->srv = r->srv;
    snprintf(s->job_id, sizeof s->job_id, "%s", id);
    const char *last = http_header(r, "Last-Event-ID");
    if (last && *last) {
        s->last_seq = strtoll(last, NULL, 10);
        if (terminal) {  // a reconnect after the end: nothing new can come
            EventRow *rows;
            int n;
            if (db_event_since(r->srv->db, id, s->last_seq, 1, &rows, &n, &e) == 0) {
                event_rows_free(rows, n);
                if (n == 0) {
                    free(s);
                    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
                    return http_queue(r, 204, resp);
                }
            }
        }
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
    if (!resp) { free(s); return MHD_NO; }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    r->stream_bytes = &s->sent;   // read when the request completes, before the response (and s) is freed
    return http_queue(r, 200, resp);
}
