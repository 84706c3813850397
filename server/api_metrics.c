/* api_metrics.c: GET /healthz (liveness: the database answers) and GET /metrics (Prometheus
 * text format 0.0.4: jobs by status, queue depth, slots, per-running-job tokens/s, step, loss
 * and memory, trained tokens, files, HTTP responses by class, open connections and those closed
 * for a late request header). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "http_guard.h"
#include "scheduler.h"
#include "srv_util.h"

int api_health(Req *r) {
    DbStats st;
    Err e;
    if (db_stats(r->srv->db, &st, &e))
        return http_error(r, 503, "server_error", "unhealthy", NULL, "database: %s", e.msg);
    return http_json(r, 200, json_pack("{s:s, s:I, s:I, s:I, s:i}", "status", "ok", "uptime_s",
                                       (json_int_t)(now_s() - r->srv->started_at), "jobs_running",
                                       (json_int_t)st.running, "jobs_queued", (json_int_t)st.queued, "slots",
                                       scheduler_slots(r->srv->sched)));
}

typedef struct { char *buf; size_t len, cap; } Text;

static void tx(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tx(Text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (t->len + (size_t)n < t->cap) { t->len += (size_t)n; return; }
        size_t cap = t->cap * 2 + (size_t)n;
        char *nb = realloc(t->buf, cap);
        if (!nb) return;
        t->buf = nb;
        t->cap = cap;
    }
}

/* HELP and TYPE lines of one metric. */
static void head(Text *t, const char *name, const char *type, const char *help) {
    tx(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int api_metrics(Req *r) {
    Server *srv = r->srv;
    DbStats st;
    Err e;
    if (db_stats(srv->db, &st, &e)) return http_500(r, "%s", e.msg);
    Text t = {malloc(8192), 0, 8192};
    if (!t.buf) return MHD_NO;
    t.buf[0] = 0;
    head(&t, "lemo_up", "gauge", "1 while the server is running.");
    tx(&t, "lemo_up 1\n");
    head(&t, "lemo_uptime_seconds", "gauge", "Seconds since the server started.");
    tx(&t, "lemo_uptime_seconds %lld\n", (long long)(now_s() - srv->started_at));
    head(&t, "lemo_jobs", "gauge", "Fine-tuning jobs by status.");
    const char *names[] = {"queued", "running", "paused", "succeeded", "failed", "cancelled"};
    int64_t vals[] = {st.queued, st.running, st.paused, st.succeeded, st.failed, st.cancelled};
    for (int i = 0; i < 6; i++) tx(&t, "lemo_jobs{status=\"%s\"} %lld\n", names[i], (long long)vals[i]);
    head(&t, "lemo_queue_depth", "gauge", "Jobs waiting for a free slot.");
    tx(&t, "lemo_queue_depth %lld\n", (long long)st.queued);
    SlotInfo info[64];
    int busy = scheduler_slot_info(srv->sched, info, 64);
    head(&t, "lemo_slots", "gauge", "Engine slots (one job each).");
    tx(&t, "lemo_slots %d\n", scheduler_slots(srv->sched));
    head(&t, "lemo_slots_busy", "gauge", "Slots training a job now.");
    tx(&t, "lemo_slots_busy %d\n", busy);
    head(&t, "lemo_tokens_per_second", "gauge", "Training throughput of each running job.");
    double total_tps = 0;
    for (int i = 0; i < busy; i++) {
        tx(&t, "lemo_tokens_per_second{job=\"%s\",slot=\"%d\"} %.6g\n", info[i].job_id, i, info[i].tokens_per_s);
        total_tps += info[i].tokens_per_s;
    }
    head(&t, "lemo_tokens_per_second_total", "gauge", "Training throughput summed over running jobs.");
    tx(&t, "lemo_tokens_per_second_total %.6g\n", total_tps);
    head(&t, "lemo_job_step", "gauge", "Current optimizer step of each running job.");
    for (int i = 0; i < busy; i++) tx(&t, "lemo_job_step{job=\"%s\"} %lld\n", info[i].job_id, (long long)info[i].step);
    head(&t, "lemo_job_total_steps", "gauge", "Total optimizer steps of each running job.");
    for (int i = 0; i < busy; i++)
        tx(&t, "lemo_job_total_steps{job=\"%s\"} %lld\n", info[i].job_id, (long long)info[i].total_steps);
    head(&t, "lemo_job_loss", "gauge", "Latest training loss of each running job.");
    for (int i = 0; i < busy; i++)
        if (info[i].loss == info[i].loss) tx(&t, "lemo_job_loss{job=\"%s\"} %.6g\n", info[i].job_id, info[i].loss);
    head(&t, "lemo_gpu_memory_bytes", "gauge", "GPU memory used by each running job's trainer.");
    for (int i = 0; i < busy; i++)
        if (info[i].gpu >= 0)
            tx(&t, "lemo_gpu_memory_bytes{job=\"%s\",gpu=\"%d\"} %lld\n", info[i].job_id, info[i].gpu,
               (long long)info[i].gpu_mem_bytes);
    head(&t, "lemo_job_memory_bytes", "gauge", "Host memory used by each running job's trainer.");
    for (int i = 0; i < busy; i++)
        tx(&t, "lemo_job_memory_bytes{job=\"%s\"} %lld\n", info[i].job_id, (long long)info[i].mem_bytes);
    head(&t, "lemo_trained_tokens_total", "counter", "Tokens trained, summed over all jobs.");
    tx(&t, "lemo_trained_tokens_total %lld\n", (long long)st.trained_tokens);
    head(&t, "lemo_files", "gauge", "Uploaded dataset files.");
    tx(&t, "lemo_files %lld\n", (long long)st.files);
    head(&t, "lemo_file_bytes", "gauge", "Bytes of uploaded dataset files.");
    tx(&t, "lemo_file_bytes %lld\n", (long long)st.file_bytes);
    head(&t, "lemo_http_requests_total", "counter", "HTTP requests received.");
    tx(&t, "lemo_http_requests_total %ld\n", atomic_load(&srv->http_requests));
    head(&t, "lemo_http_responses_total", "counter", "HTTP responses by status class.");
    for (int k = 1; k <= 5; k++) tx(&t, "lemo_http_responses_total{code=\"%dxx\"} %ld\n", k, atomic_load(&srv->http_by_class[k]));
    head(&t, "lemo_http_connections", "gauge", "HTTP connections open now (at most --max-connections).");
    tx(&t, "lemo_http_connections %ld\n", http_open_connections(srv));
    head(&t, "lemo_http_header_timeouts_total", "counter",
         "Connections closed for sending no whole request header within --header-timeout.");
    tx(&t, "lemo_http_header_timeouts_total %ld\n", http_guard_closed(srv->guard));
    struct MHD_Response *resp = MHD_create_response_from_buffer(t.len, t.buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) { free(t.buf); return MHD_NO; }
    r->resp_bytes = (int64_t)t.len;
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    return http_queue(r, 200, resp);
}
