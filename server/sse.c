/* sse.c: GET /v1/fine_tuning/jobs/{id}/events?stream=true as Server-Sent Events, and the
 * notifier that wakes streams when events are stored.
 *
 * Each event is sent as `id: SEQ` + `data: EVENT_JSON` (unnamed, so EventSource.onmessage
 * sees it), oldest first, from the job's first event or after the Last-Event-ID the client
 * sends back on reconnect. When the job has ended and every event is out, a final
 * `event: end` carries the job object and the stream closes; a reconnect after that
 * (Last-Event-ID at the end) gets 204, which tells EventSource to stop. The connection's
 * own thread blocks in the reader callback until something happens, sending a comment line
 * every 15 s to keep proxies (and dead-peer detection) going. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
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
} Stream;

static int stream_put(Stream *s, const char *txt) {
    size_t n = strlen(txt);
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
        Err e;
        JobRow j;
        if (db_job_get(srv->db, s->job_id, &j, &e) != 1) return -1;
        int terminal = job_status_terminal(j.status);
        EventRow *rows;
        int n;
        if (db_event_since(srv->db, s->job_id, s->last_seq, 100, &rows, &n, &e)) { job_row_free(&j); return -1; }
        if (n > 0) {
            for (int i = 0; i < n; i++) {
                json_t *o = event_to_json(&rows[i]);
                char *txt = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
                json_decref(o);
                char head[64];
                snprintf(head, sizeof head, "id: %lld\ndata: ", (long long)rows[i].seq);
                if (!txt || stream_put(s, head) || stream_put(s, txt) || stream_put(s, "\n\n")) {
                    free(txt);
                    event_rows_free(rows, n);
                    job_row_free(&j);
                    return -1;
                }
                free(txt);
                s->last_seq = rows[i].seq;
            }
            event_rows_free(rows, n);
            job_row_free(&j);
            return 0;
        }
        event_rows_free(rows, n);
        if (terminal) {
            json_t *o = job_to_json(&j);
            char *txt = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
            json_decref(o);
            char head[64];
            snprintf(head, sizeof head, "id: %lld\nevent: end\ndata: ", (long long)s->last_seq);
            int bad = !txt || stream_put(s, head) || stream_put(s, txt) || stream_put(s, "\n\n");
            free(txt);
            job_row_free(&j);
            s->done = 1;
            return bad ? -1 : 0;
        }
        job_row_free(&j);
        uint64_t before = seen;
        server_wait_events(srv, &seen, SSE_KEEPALIVE_MS);
        if (seen == before && !atomic_load(&srv->stopping)) return stream_put(s, ": keep-alive\n\n");
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
    return http_queue(r, 200, resp);
}
