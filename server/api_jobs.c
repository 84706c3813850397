/* api_jobs.c: /v1/fine_tuning/jobs: create (and ?dry_run=true estimates), list, retrieve,
 * cancel, pause, resume.
 *
 * Creating a job resolves the request into the trainer's config (job_request.c), writes it to
 * jobs/JOB_ID/config.json and queues the job; an engine thread picks it up. Cancel and pause
 * of a running job record the request and send SIGTERM to its trainer, which checkpoints and
 * exits; the engine thread then records cancelled or paused. Queued or paused jobs change
 * state at once. Resume puts a paused job at the back of the queue; the trainer continues
 * from its newest checkpoint. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api.h"
#include "fsutil.h"
#include "job_request.h"
#include "job_view.h"
#include "models.h"
#include "scheduler.h"
#include "srv_util.h"
#include "webhook.h"

#define ESTIMATE_TIMEOUT_S 120

static int env_model(void *ctx, const char *name, char *dir, size_t cap, int *max_pos, int *n_layers) {
    return models_find(ctx, name, dir, cap, max_pos, n_layers);
}

static int env_file(void *ctx, const char *id, char *path, size_t cap) {
    Server *srv = ctx;
    FileRow f;
    Err e;
    // a results CSV is not a dataset: to the request it is no fine-tune file at all
    if (db_file_get(srv->db, id, &f, &e) != 1 || strcmp(f.purpose, "fine-tune")) return -1;
    file_path(srv, &f, path, cap);
    return 0;
}

/* Runs `EXE estimate CONFIG` and collects its stdout (up to 1 MiB); returns its exit status,
 * -1 if it could not run, -2 on timeout. */
static int run_estimate(Server *srv, const char *config, int memory_only, char *out, size_t cap) {
    int p[2];
    if (pipe2(p, O_CLOEXEC)) return -1;
    int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    char *argv[] = {srv->exe, "estimate", (char *)config, memory_only ? "--memory-only" : NULL, NULL};
    pid_t pid = srv_spawn(argv, NULL, nullfd, p[1], nullfd);
    close(p[1]);
    if (nullfd >= 0) close(nullfd);
    if (pid < 0) { close(p[0]); return -1; }
    size_t len = 0;
    double deadline = now_f() + ESTIMATE_TIMEOUT_S;
    int timed_out = 0;
    for (;;) {
        struct pollfd pf = {p[0], POLLIN, 0};
        int left = (int)((deadline - now_f()) * 1000);
        if (left <= 0) { timed_out = 1; break; }
        int pr = poll(&pf, 1, left);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) { timed_out = 1; break; }
        char tmp[4096];
        ssize_t r = read(p[0], tmp, sizeof tmp);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        size_t take = (size_t)r < cap - 1 - len ? (size_t)r : cap - 1 - len;
        memcpy(out + len, tmp, take);
        len += take;
    }
    out[len] = 0;
    close(p[0]);
    if (timed_out) kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (timed_out) return -2;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* `lemo estimate` of the job config at cfg (soft: memory and fit only, for job creation): its
 * JSON object in *est (0), or an HTTP error
 * already answered (its status returned in *answered, -1). A config the estimate refuses is a
 * 400 naming its field; an estimate that cannot run or times out is a 500 / 504 unless
 * `soft`, which returns 1 with nothing answered (job creation then goes ahead without it). */
static int estimate_config(Req *r, const char *cfg, int soft, json_t **est, int *answered) {
    static const size_t cap = 1 << 20;
    *est = NULL;
    char *out = malloc(cap);
    int rc = out ? run_estimate(r->srv, cfg, soft, out, cap) : -1;
    json_t *last = NULL;
    char *save = NULL;  // strtok_r: requests run on several threads
    for (char *line = rc >= 0 ? strtok_r(out, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
        json_t *x = json_loads(line, 0, NULL);  // the last line holding a JSON object is the answer
        if (json_is_object(x)) { json_decref(last); last = x; }
        else json_decref(x);
    }
    free(out);
    json_t *eo = last ? json_object_get(last, "error") : NULL;
    int ret = -1;
    if (rc == -1 || rc == 127 || rc == -2 || (!last && soft)) {
        if (soft) ret = 1;
        else if (rc == -2)
            *answered = http_error(r, 504, "server_error", "estimate_timeout", NULL, "`lemo estimate` took longer than %d s",
                                   ESTIMATE_TIMEOUT_S);
        else *answered = http_error(r, 500, "server_error", "estimate_unavailable", NULL, "cannot run `lemo estimate`");
    } else if (!last) {
        *answered = http_error(r, 500, "server_error", "estimate_failed", NULL, "`lemo estimate` printed no result (exit %d)", rc);
    } else if (rc != 0 || eo) {
        const char *m = json_string_value(json_object_get(eo, "message"));
        const char *p = json_string_value(json_object_get(eo, "param"));
        *answered = http_error(r, 400, "invalid_request_error", "invalid_config", p && *p ? p : NULL, "%s",
                               m ? m : "the estimate failed");
    } else {
        *est = last;
        last = NULL;
        ret = 0;
    }
    json_decref(last);
    return ret;
}

/* POST /v1/fine_tuning/jobs?dry_run=true: the trainer's memory/time estimate for this request. */
static int jobs_dry_run(Req *r) {
    char dir[PATH_MAX], cfg[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/tmp", r->srv->data_dir);
    fs_mkdirs(dir, NULL);
    snprintf(dir, sizeof dir, "%s/tmp/estimate-XXXXXX", r->srv->data_dir);
    if (!mkdtemp(dir)) return http_500(r, "cannot create a temp directory");
    char lemo_dir[PATH_MAX];
    snprintf(lemo_dir, sizeof lemo_dir, "%s/lemo", r->srv->data_dir);
    JobEnv env = {env_model, env_file, r->srv, dir, r->srv->allow_internal_urls, lemo_dir, 0};
    JobSpec spec;
    Err e = {0};
    if (job_request_resolve(r->body ? r->body : "", r->body_len, &env, &spec, &e)) {
        fs_remove_tree(dir);
        job_spec_free(&spec);
        return http_error_from(r, 400, spec.code, &e);
    }
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    char *txt = json_dumps(spec.config, JSON_INDENT(1));
    int wrote = txt && fs_write_atomic(cfg, txt, strlen(txt), NULL) == 0;
    free(txt);
    json_t *est = NULL;
    int res = 0;
    if (!wrote) res = http_500(r, "cannot write the estimate's config in %s", dir);
    else if (estimate_config(r, cfg, 0, &est, &res) == 0) {
        json_t *o = json_object();
        json_object_set_new(o, "object", json_string("fine_tuning.job.estimate"));
        json_object_set_new(o, "model", json_string(spec.model));
        json_object_update(o, est);
        json_object_set(o, "hyperparameters", json_object_get(spec.request, "hyperparameters"));
        res = http_json(r, 200, o);
    }
    fs_remove_tree(dir);
    json_decref(est);
    job_spec_free(&spec);
    return res;
}

int api_jobs_create(Req *r) {
    if (http_query_bool(r, "dry_run")) return jobs_dry_run(r);
    return api_jobs_create_from(r, r->body, r->body_len, 0);
}

int api_jobs_create_from(Req *r, const char *body, size_t body_len, int prepare_only) {
    JobRow j;
    memset(&j, 0, sizeof j);
    id_new("ftjob-", j.id);
    char dir[PATH_MAX], lemo_dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/jobs/%s", r->srv->data_dir, j.id);
    snprintf(lemo_dir, sizeof lemo_dir, "%s/lemo", r->srv->data_dir);
    JobEnv env = {env_model, env_file, r->srv, dir, r->srv->allow_internal_urls, lemo_dir, prepare_only};
    JobSpec spec;
    Err e = {0};
    if (!body || !body_len) {
        err_set(&e, "The request body must be a JSON object with at least 'model' and 'training_file'");
        return http_error_from(r, 400, "invalid_json", &e);
    }
    if (job_request_resolve(body, body_len, &env, &spec, &e)) {
        job_spec_free(&spec);
        return http_error_from(r, 400, spec.code, &e);
    }
    char *cfg = json_dumps(spec.config, JSON_INDENT(1));
    char *req = json_dumps(spec.request, JSON_COMPACT | JSON_REAL_PRECISION(10));
    char cfg_path[PATH_MAX + 16];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    int res;
    if (!cfg || !req || fs_mkdirs(dir, NULL) || fs_write_atomic(cfg_path, cfg, strlen(cfg), NULL)) {
        res = http_500(r, "cannot write the job's config in %s", dir);
        goto out;
    }
    // refuse what cannot run: a job its own estimate says does not fit (?force=true overrides);
    // a preparation trains no adapter, so the training estimate does not price it
    if (!prepare_only && !http_query_bool(r, "force")) {
        json_t *est = NULL;
        int answered = 0, er = estimate_config(r, cfg_path, 1, &est, &answered);
        if (er < 0) {
            fs_remove_tree(dir);
            res = answered;
            goto out;
        }
        if (er == 0 && json_is_false(json_object_get(est, "fits"))) {
            fs_remove_tree(dir);
            double gib = 1073741824.0;
            char why[300];
            if (json_is_true(json_object_get(est, "device_fits")))
                snprintf(why, sizeof why, "its offloaded activations need %.1f GiB of pinned host memory, more than this "
                         "host's %.1f GiB can give", json_number_value(json_object_get(est, "host_bytes")) / gib,
                         json_number_value(json_object_get(est, "host_mem_bytes")) / gib);
            else
                snprintf(why, sizeof why, "it needs %.1f GiB of %s memory where %.1f GiB are there",
                         json_number_value(json_object_get(est, "peak_bytes")) / gib,
                         json_string_value(json_object_get(est, "device")) ?: "device",
                         json_number_value(json_object_get(est, "device_mem_bytes")) / gib);
            res = http_error_with(r, 400, "invalid_request_error", "job_does_not_fit", "hyperparameters.context_length",
                                  est, "The job does not fit: %s; the largest context that fits is %lld tokens. Lower "
                                  "hyperparameters.context_length, choose hyperparameters.memory \"offload\" or "
                                  "\"auto\", or add ?force=true to queue it anyway", why,
                                  (long long)json_integer_value(json_object_get(est, "max_context_length")));
            json_decref(est);
            goto out;
        }
        json_decref(est);
    }
    snprintf(j.model, sizeof j.model, "%s", spec.model);
    snprintf(j.training_file, sizeof j.training_file, "%s", spec.training_file);
    snprintf(j.validation_file, sizeof j.validation_file, "%s", spec.validation_file);
    snprintf(j.suffix, sizeof j.suffix, "%s", spec.suffix);
    j.seed = spec.seed;
    j.created_at = now_s();
    j.request = req;
    j.config = cfg;
    Db *db = r->srv->db;
    if (db_begin(db, &e) || db_job_insert(db, &j, &e) ||
        db_event_add(db, j.id, "info", "message", prepare_only ? "Created a LeMo preparation job: it trains the base "
                     "model's predictors and calibrates its schedule, then stops (no adapter)" : "Created fine-tuning job",
                     NULL, &e) < 0 ||
        db_event_add(db, j.id, "info", "message", "Job queued", NULL, &e) < 0) {
        db_rollback(db);
        res = http_500(r, "%s", e.msg);
        goto out;
    }
    if (db_commit(db, &e)) { res = http_500(r, "%s", e.msg); goto out; }
    fprintf(stderr, "lemo serve: job %s: created%s (model %s, training file %s): queued\n", j.id,
            prepare_only ? " to prepare LeMo's predictors" : "", j.model, j.training_file);
    JobRow got;
    int have = db_job_get(db, j.id, &got, &e);   // read before an engine thread can claim it
    scheduler_wake(r->srv->sched);
    server_notify_events(r->srv);
    if (have != 1) { res = http_500(r, "%s", e.msg); goto out; }
    res = http_json(r, 200, job_to_json(&got));
    job_row_free(&got);
out:
    free(cfg);
    free(req);
    job_spec_free(&spec);
    return res;
}

/* OpenAI's metadata bounds: at most 16 pairs, keys up to 64 characters, values up to 512. */
enum { META_MAX_PAIRS = 16, META_MAX_KEY = 64, META_MAX_VALUE = 512 };

/* The ?metadata[KEY]=VALUE filters (and ?metadata=null) of a job list, gathered from every
 * query argument; the first bad one is kept to answer. */
typedef struct {
    json_t *pairs;        // {KEY: VALUE}
    int want_null;
    char bad_param[96];
    char bad_msg[200];
} MetaFilter;

static enum MHD_Result meta_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    MetaFilter *f = cls;
    if (f->bad_param[0] || strncmp(key, "metadata", 8)) return MHD_YES;
    const char *k = key + 8;
    size_t kl = strlen(k);
    if (!*k) {
        if (value && !strcmp(value, "null")) f->want_null = 1;
        else {
            snprintf(f->bad_param, sizeof f->bad_param, "metadata");
            snprintf(f->bad_msg, sizeof f->bad_msg, "'metadata' alone takes only null (jobs without metadata); "
                     "filter with metadata[KEY]=VALUE");
        }
        return MHD_YES;
    }
    if (k[0] != '[' || kl < 2 || k[kl - 1] != ']') return MHD_YES;  // metadataX: not ours, ignored as unknown
    snprintf(f->bad_param, sizeof f->bad_param, "%.*s", (int)(kl < 80 ? kl + 8 : 88), key);
    for (char *c = f->bad_param; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '"') *c = '?';
    size_t name_len = kl - 2;
    if (name_len == 0 || name_len > META_MAX_KEY)
        snprintf(f->bad_msg, sizeof f->bad_msg, "A metadata filter's key must have 1 to %d characters", META_MAX_KEY);
    else if (!value || strlen(value) > META_MAX_VALUE)
        snprintf(f->bad_msg, sizeof f->bad_msg, "A metadata filter's value must be given and have at most %d characters",
                 META_MAX_VALUE);
    else if (json_object_size(f->pairs) >= META_MAX_PAIRS)
        snprintf(f->bad_msg, sizeof f->bad_msg, "At most %d metadata filters", META_MAX_PAIRS);
    else {
        char name[META_MAX_KEY + 1];
        snprintf(name, sizeof name, "%.*s", (int)name_len, k + 1);
        json_t *v = json_string(value);   // NULL: not UTF-8
        if (v && strlen(name) == name_len && !json_object_set_new(f->pairs, name, v)) {
            f->bad_param[0] = 0;
            return MHD_YES;
        }
        snprintf(f->bad_msg, sizeof f->bad_msg, "A metadata filter's key and value must be UTF-8 text");
    }
    return MHD_YES;
}

int api_jobs_list(Req *r) {
    int limit, asc;
    const char *after;
    if (http_list_params(r, 20, 100, &limit, &after, &asc)) return MHD_YES;
    MetaFilter mf = {json_object(), 0, "", ""};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, meta_arg, &mf);
    if (mf.bad_param[0]) {
        json_decref(mf.pairs);
        return http_error(r, 400, "invalid_request_error", "invalid_metadata_filter", mf.bad_param, "%s", mf.bad_msg);
    }
    char *meta = json_object_size(mf.pairs) ? json_dumps(mf.pairs, JSON_COMPACT) : NULL;
    json_decref(mf.pairs);
    JobRow *rows;
    int n, more;
    Err e;
    int rc = db_job_list(r->srv->db, after, limit, asc, meta, mf.want_null, &rows, &n, &more, &e);
    free(meta);
    if (rc == -2) return http_error(r, 400, "invalid_request_error", "invalid_cursor", "after", "Unknown 'after' job id");
    if (rc) return http_500(r, "%s", e.msg);
    StrBuf b = {0};
    sb_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < n; i++) {
        if (i) sb_put(&b, ",", 1);
        job_write_json(&b, &rows[i]);
        job_row_free(&rows[i]);
    }
    free(rows);
    sb_printf(&b, "],\"has_more\":%s}", more ? "true" : "false");
    return http_json_text(r, 200, &b);
}

int job_of_path(Req *r, JobRow *j) {
    const char *id = r->params[0];
    Err e;
    int rc = id_valid(id, "ftjob-") ? db_job_get(r->srv->db, id, j, &e) : 0;
    if (rc < 0) { http_500(r, "%s", e.msg); return -1; }
    if (rc == 0) { http_not_found(r, "fine-tuning job", id); return -1; }
    return 0;
}

int api_jobs_get(Req *r) {
    JobRow j;
    if (job_of_path(r, &j)) return MHD_YES;
    StrBuf b = {0};
    job_write_json(&b, &j);
    job_row_free(&j);
    return http_json_text(r, 200, &b);
}

/* Waits up to ms for a running job to leave `running`, then answers with the job. */
static int reply_job_after_stop(Req *r, const char *id, int ms) {
    JobRow j;
    Err e;
    uint64_t seen = 0;
    double until = now_f() + ms / 1000.0;
    for (;;) {
        if (db_job_get(r->srv->db, id, &j, &e) != 1) return http_500(r, "job vanished");
        if (strcmp(j.status, "running") || now_f() >= until) break;
        job_row_free(&j);
        server_wait_events(r->srv, &seen, 200);
    }
    int res = http_json(r, 200, job_to_json(&j));
    job_row_free(&j);
    return res;
}

/* Cancel (what = "cancel") or pause ("pause") a job. */
static int job_stop(Req *r, const char *what) {
    JobRow j;
    if (job_of_path(r, &j)) return MHD_YES;
    Db *db = r->srv->db;
    Err e;
    int cancel = !strcmp(what, "cancel");
    int res, signal_child = 0, hook = 0;
    if (db_begin(db, &e)) { job_row_free(&j); return http_500(r, "%s", e.msg); }
    JobRow cur;
    if (db_job_get(db, j.id, &cur, &e) != 1) {
        db_rollback(db);
        job_row_free(&j);
        return http_500(r, "%s", e.msg);
    }
    const char *st = cur.status;
    int ok = 1;
    if (!strcmp(st, "running")) {
        ok = db_job_set_stop_request(db, j.id, what, &e) == 0 &&
             db_event_add(db, j.id, "info", "message", cancel ? "Cancellation requested" : "Pause requested", NULL, &e) > 0;
        signal_child = 1;
    } else if (!strcmp(st, "queued") || (cancel && !strcmp(st, "paused"))) {
        ok = db_job_move(db, j.id, cancel ? JOB_CANCELLED : JOB_PAUSED, JOB_BY_API, NULL, NULL, &e) == 0 &&
             db_event_add(db, j.id, "info", "message", cancel ? "Job cancelled" : "Job paused", NULL, &e) > 0;
        hook = cancel;
    } else {
        db_rollback(db);
        res = http_error(r, 409, "invalid_request_error", "invalid_state", "id", "Job %s is %s: it cannot be %s",
                         j.id, st, cancel ? "cancelled" : "paused");
        job_row_free(&cur);
        job_row_free(&j);
        return res;
    }
    job_row_free(&cur);
    if (!ok) {
        db_rollback(db);
        job_row_free(&j);
        return http_500(r, "%s", e.msg);
    }
    if (db_commit(db, &e)) { job_row_free(&j); return http_500(r, "%s", e.msg); }
    server_notify_events(r->srv);
    if (signal_child) scheduler_signal_job(r->srv->sched, j.id);
    if (hook) {
        JobRow now;
        if (db_job_get(db, j.id, &now, &e) == 1) {
            json_t *o = job_to_json(&now);
            char *txt = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
            json_t *md = json_object_get(o, "metadata");
            if (txt) webhook_send(r->srv->hooks, "job.cancelled", j.id, txt,
                                  json_is_object(md) ? json_string_value(json_object_get(md, "webhook_url")) : NULL);
            free(txt);
            json_decref(o);
            job_row_free(&now);
        }
    }
    res = reply_job_after_stop(r, j.id, signal_child ? 3000 : 0);
    job_row_free(&j);
    return res;
}

int api_jobs_cancel(Req *r) { return job_stop(r, "cancel"); }
int api_jobs_pause(Req *r) { return job_stop(r, "pause"); }

int api_jobs_resume(Req *r) {
    JobRow j;
    if (job_of_path(r, &j)) return MHD_YES;
    Db *db = r->srv->db;
    Err e;
    if (db_begin(db, &e)) { job_row_free(&j); return http_500(r, "%s", e.msg); }
    JobRow cur;
    int rc = db_job_get(db, j.id, &cur, &e);
    if (rc != 1 || strcmp(cur.status, "paused")) {
        db_rollback(db);
        int res = rc != 1 ? http_500(r, "%s", e.msg)
                          : http_error(r, 409, "invalid_request_error", "invalid_state", "id",
                                       "Job %s is %s: only a paused job can be resumed", j.id, cur.status);
        if (rc == 1) job_row_free(&cur);
        job_row_free(&j);
        return res;
    }
    job_row_free(&cur);
    char dir[PATH_MAX], msg[160];
    snprintf(dir, sizeof dir, "%s/jobs/%s", r->srv->data_dir, j.id);
    snprintf(msg, sizeof msg, "Job resumed: queued to continue from step %lld",
             (long long)scheduler_disk_checkpoint_step(dir));
    if (db_job_move(db, j.id, JOB_QUEUED, JOB_BY_API, NULL, NULL, &e) || db_event_add(db, j.id, "info", "message", msg, NULL, &e) < 0) {
        db_rollback(db);
        job_row_free(&j);
        return http_500(r, "%s", e.msg);
    }
    if (db_commit(db, &e)) { job_row_free(&j); return http_500(r, "%s", e.msg); }
    scheduler_wake(r->srv->sched);
    server_notify_events(r->srv);
    int res = reply_job_after_stop(r, j.id, 0);
    job_row_free(&j);
    return res;
}
