/* scheduler.c: slot threads and the trainer child processes (see scheduler.h).
 *
 * The progress protocol (one JSON object per line: start, step, eval, checkpoint, log, done,
 * cancelled, error) is read in chunks; all complete lines of a chunk are stored in one
 * transaction, then event streams are woken. Every raw line is also appended to
 * JOB_DIR/events.jsonl; the child's stderr goes to JOB_DIR/train.log. */
#include "fsutil.h"
#include "scheduler.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "clock.h"
#include "job_request.h"
#include "job_state.h"
#include "job_view.h"
#include "lemo.h"
#include "lemo_store.h"
#include "progress.h"
#include "results.h"
#include "srv_util.h"
#include "webhook.h"

extern char **environ;

/* How many times a job's trainer is started again after dying of a signal nobody sent. */
enum { SCHED_TRAINER_RETRIES = 3 };

typedef struct {
    Scheduler *s;
    int index, gpu;
    pthread_t th;
    pid_t pid;            // child pid while running (under s->mu)
    SlotInfo info;        // under s->mu
    /* a LeMo preparation running here (under s->mu): its predictor folder, base model, block */
    char preparing[PATH_MAX], prep_model[256], prep_job[48];
    int prep_block;
} Slot;

struct Scheduler {
    Server *srv;
    int n;
    Slot *slots;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int stopping;
};

/* The child a job's slot runs: the LeMo preparation (its first phase when the base model has
 * no predictor yet, or all of a preparation job), then the trainer. */
typedef enum { PHASE_PREPARE, PHASE_TRAIN } Phase;

/* What the reader learned from the child's lines. */
typedef struct {
    Phase phase;
    int prep_done;        // the preparation printed its done line
    int saw_done, saw_cancelled;
    int64_t step, total_steps, cancel_step;
    json_t *progress;     // the job's progress object
    json_t *error;        // the last {"code","message","param"}
    int64_t trained_tokens;
    double t0;            // time of the first step line of this run
    int64_t step0;
} RunState;

int scheduler_count_gpus(void) {
    DIR *d = opendir("/dev");
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (!strncmp(de->d_name, "nvidia", 6) && de->d_name[6] >= '0' && de->d_name[6] <= '9') n++;
    closedir(d);
    return n;
}

int64_t scheduler_disk_checkpoint_step(const char *job_dir) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/checkpoints", job_dir);
    DIR *d = opendir(p);
    if (!d) return 0;
    int64_t best = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "step-", 5)) continue;
        char *end, ck[PATH_MAX + 300];
        long long v = strtoll(de->d_name + 5, &end, 10);
        if (*end || v <= best) continue;
        // the trainer resumes from the newest one it can read, so that is the step to name
        snprintf(ck, sizeof ck, "%s/%s", p, de->d_name);
        if (checkpoint_readable(ck)) best = v;
    }
    closedir(d);
    return best;
}

static void job_dir_of(Server *srv, const char *id, char *out, size_t cap) {
    snprintf(out, cap, "%s/jobs/%.47s", srv->data_dir, id);
}

/* text with the server's own folders cut off the paths in it (malloc'd; NULL in, NULL out):
 * DATA_DIR/jobs/ID/... becomes jobs/ID/..., MODELS_ROOT/NAME/... becomes NAME/...; what the
 * trainer prints names files by their server paths, and events and errors are the API's. */
static char *scrub_paths(const Server *srv, const char *text) {
    if (!text) return NULL;
    const char *roots[1 + SERVER_MAX_MODEL_DIRS];
    int nr = 0;
    roots[nr++] = srv->data_dir;
    for (int i = 0; i < srv->n_models; i++) roots[nr++] = srv->models[i];
    size_t n = strlen(text);
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = text; *p;) {
        size_t cut = 0;
        for (int r = 0; r < nr && !cut; r++) {
            size_t rl = strlen(roots[r]);
            if (rl > 1 && !strncmp(p, roots[r], rl) && p[rl] == '/') cut = rl + 1;
        }
        if (cut) p += cut;
        else *o++ = *p++;
    }
    *o = 0;
    return out;
}

/* An error object as the text the job stores (paths scrubbed); malloc'd. */
static char *error_text(const Server *srv, json_t *err) {
    char *t = json_dumps(err, JSON_COMPACT | JSON_REAL_PRECISION(10));
    char *s = scrub_paths(srv, t);
    free(t);
    return s;
}

/* Stores an event (paths scrubbed); logs (never fails the caller) on a database error. */
static void add_event(Server *srv, const char *job_id, const char *level, const char *type, const char *data,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void add_event(Server *srv, const char *job_id, const char *level, const char *type, const char *data,
                      const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *m = scrub_paths(srv, msg), *d = scrub_paths(srv, data);
    Err e;
    if (db_event_add(srv->db, job_id, level, type, m ? m : msg, d ? d : data, &e) < 0)
        fprintf(stderr, "lemo serve: job %s: %s\n", job_id, e.msg);
    free(m), free(d);
}

int scheduler_recover(Server *srv, Err *e) {
    char ids[64][48];
    int n;
    while ((n = db_job_ids_with_status(srv->db, "running", ids, 64, e)) > 0) {
        for (int i = 0; i < n; i++) {
            char dir[PATH_MAX];
            job_dir_of(srv, ids[i], dir, sizeof dir);
            // the disk, not the database, says where it resumes: the newest readable checkpoint
            int64_t step = scheduler_disk_checkpoint_step(dir);
            if (db_begin(srv->db, e)) return -1;
            if (db_job_move(srv->db, ids[i], JOB_QUEUED, JOB_BY_RECOVERY, NULL, NULL, e)) { db_rollback(srv->db); return -1; }
            add_event(srv, ids[i], "warn", "message", NULL,
                      "The server stopped while this job was running; the job was requeued and is resumed from step %lld%s",
                      (long long)step, step ? "" : " (no checkpoint yet: it starts over)");
            if (db_commit(srv->db, e)) return -1;
            fprintf(stderr, "lemo serve: job %s was running when the server stopped: requeued, resumed from step %lld\n",
                    ids[i], (long long)step);
        }
    }
    if (n >= 0) {  // predictors whose preparation a crash cut short
        char ld[PATH_MAX];
        snprintf(ld, sizeof ld, "%s/lemo", srv->data_dir);
        lemo_store_sweep(ld);
    }
    return n < 0 ? -1 : 0;
}

static double jnum(json_t *o, const char *k, double def) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : def;
}

/* Sets o[key] to the number, or to null when it is NaN (not measured). */
static void set_num(json_t *o, const char *key, double v) {
    json_object_set_new(o, key, isnan(v) ? json_null() : json_real(v));
}

/* Stores a metrics event: data is the trainer's line (type, loss, lr, tokens_per_s, ...: what
 * the dashboard and the line's readers know) with OpenAI's metrics fields added (step,
 * train_loss, train_mean_token_accuracy, valid_loss, ...), which clients of OpenAI's API read. */
static void add_metrics_event(Server *srv, const char *job_id, json_t *line, json_t *data, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add_metrics_event(Server *srv, const char *job_id, json_t *line, json_t *data, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *all = json_deep_copy(line);
    json_object_update(all, data);
    char *txt = json_dumps(all, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(all);
    add_event(srv, job_id, "info", "metrics", txt, "%s", msg);
    free(txt);
}

/* The metrics of the job's newest step and eval, in OpenAI's checkpoint metrics shape. */
static json_t *progress_metrics(json_t *p, int64_t step) {
    json_t *m = json_pack("{s:I}", "step", (json_int_t)step);
    set_num(m, "train_loss", jnum(p, "loss", NAN));
    set_num(m, "train_mean_token_accuracy", jnum(p, "accuracy", NAN));
    set_num(m, "valid_loss", jnum(p, "eval_loss", NAN));
    set_num(m, "valid_mean_token_accuracy", jnum(p, "eval_accuracy", NAN));
    set_num(m, "full_valid_loss", jnum(p, "full_eval_loss", NAN));
    set_num(m, "full_valid_mean_token_accuracy", jnum(p, "full_eval_accuracy", NAN));
    return m;
}

/* Handles one progress line (inside the caller's transaction). */
static void store_progress(Server *srv, const char *job_id, RunState *st, int64_t est) {
    char *ptxt = json_dumps(st->progress, JSON_COMPACT | JSON_REAL_PRECISION(10));
    Err e;
    db_job_set_progress(srv->db, job_id, ptxt, st->trained_tokens, est, &e);
    free(ptxt);
}

/* "[a, b, ...]" of a JSON array of fractions, two decimals each. */
static void fractions(json_t *a, char *out, size_t cap) {
    size_t n = 0, i;
    json_t *x;
    out[0] = 0;
    json_array_foreach(a, i, x) {
        if (n + 16 >= cap) break;
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : "[", json_is_number(x) ? "" : "-");
        if (json_is_number(x)) n += (size_t)snprintf(out + n, cap - n, "%.2f", json_number_value(x));
    }
    if (n + 2 < cap) snprintf(out + n, cap - n, "%s", n ? "]" : "[]");
}

/* One line of `lemo prepare` (start, step, calibrate, recall, done, log, error): events, and
 * the job's progress.lemo_prepare {stage, step, total_steps, loss, recall, ...}. */
static void handle_prepare_line(Server *srv, const char *job_id, const char *type, json_t *o, const char *line,
                                RunState *st) {
    ProgressType t = progress_type_of(type);
    json_t *lp = json_object_get(st->progress, "lemo_prepare");
    if (!json_is_object(lp)) json_object_set_new(st->progress, "lemo_prepare", lp = json_object());
    char a[1024];
    if (t == PROGRESS_START) {
        json_object_set_new(lp, "stage", json_string("targets"));
        json_object_set(lp, "context", json_object_get(o, "context"));
        json_object_set(lp, "block", json_object_get(o, "block"));
        add_event(srv, job_id, "info", "message", line, "LeMo: training the predictors (%lld parameters, %lld windows of "
                  "%lld tokens, blocks of %lld); first the exact block scores of the frozen model",
                  (long long)jnum(o, "params", 0), (long long)jnum(o, "train_windows", 0), (long long)jnum(o, "context", 0),
                  (long long)jnum(o, "block", 0));
    } else if (t == PROGRESS_STEP) {
        json_object_set_new(lp, "stage", json_string("training"));
        json_object_set(lp, "step", json_object_get(o, "step"));
        json_object_set(lp, "loss", json_object_get(o, "loss"));
        add_event(srv, job_id, "info", "message", line, "LeMo predictors: step %lld/%lld, loss %.4f",
                  (long long)jnum(o, "step", 0), (long long)jnum(lp, "total_steps", 0), jnum(o, "loss", NAN));
    } else if (t == PROGRESS_CALIBRATE) {
        json_object_set_new(lp, "stage", json_string("calibrated"));
        json_object_set(lp, "schedule", json_object_get(o, "keep"));
        json_object_set(lp, "mean_keep", json_object_get(o, "mean_keep"));
        fractions(json_object_get(o, "keep"), a, sizeof a);
        add_event(srv, job_id, "info", "message", line, "LeMo schedule calibrated: mean keep %.2f, per layer %s",
                  jnum(o, "mean_keep", NAN), a);
    } else if (t == PROGRESS_RECALL) {
        json_object_set(lp, "recall", json_object_get(o, "mean"));
        json_object_set(lp, "random_recall", json_object_get(o, "random"));
        fractions(json_object_get(o, "recall"), a, sizeof a);
        add_event(srv, job_id, "info", "message", line, "LeMo predictors' held-out recall at keep %.2f: %.3f "
                  "(random choice: %.3f), per layer %s", jnum(o, "keep", NAN), jnum(o, "mean", NAN),
                  jnum(o, "random", NAN), a);
    } else if (t == PROGRESS_DONE) {
        st->prep_done = 1;
        json_object_set_new(lp, "stage", json_string("done"));
        json_object_set(lp, "elapsed_s", json_object_get(o, "elapsed_s"));
    } else if (t == PROGRESS_LOG) {
        const char *lv = json_string_value(json_object_get(o, "level"));
        const char *msg = json_string_value(json_object_get(o, "message"));
        add_event(srv, job_id, lv && !strncmp(lv, "warn", 4) ? "warn" : "info", "message", line, "%.900s",
                  msg ? msg : line);
    } else if (t == PROGRESS_ERROR) {
        json_t *m = json_object_get(o, "message"), *p = json_object_get(o, "param");
        snprintf(a, sizeof a, "LeMo's preparation failed: %.900s", json_is_string(m) ? json_string_value(m) : line);
        json_decref(st->error);
        st->error = json_pack("{s:s, s:s}", "code", "lemo_prepare_failed", "message", a);
        json_object_set_new(st->error, "param", json_is_string(p) && json_string_length(p) ? json_copy(p) : json_null());
        add_event(srv, job_id, "error", "message", line, "%s", a);
    } else {
        add_event(srv, job_id, "info", "message", line, "%.60s", type);
    }
    store_progress(srv, job_id, st, 0);
}

static void handle_line(Slot *sl, const char *job_id, const char *line, RunState *st) {
    Server *srv = sl->s->srv;
    json_t *o = json_loads(line, JSON_DECODE_ANY, NULL);
    json_t *tv = json_is_object(o) ? json_object_get(o, "type") : NULL;
    const char *type = json_is_string(tv) ? json_string_value(tv) : NULL;
    if (!type) {
        char msg[600];
        snprintf(msg, sizeof msg, "%.500s", line);
        add_event(srv, job_id, "info", "message", NULL, "%s", msg);
        json_decref(o);
        return;
    }
    if (st->phase == PHASE_PREPARE) {
        handle_prepare_line(srv, job_id, type, o, line, st);
        json_decref(o);
        return;
    }
    ProgressType t = progress_type_of(type);
    if (t == PROGRESS_STEP) {
        int64_t step = (int64_t)jnum(o, "step", 0);
        double now = now_f();
        if (!st->t0) { st->t0 = now; st->step0 = step - 1 >= 0 ? step - 1 : 0; }
        int64_t total = (int64_t)jnum(o, "total_steps", (double)st->total_steps);
        st->step = step;
        st->total_steps = total;
        json_t *p = json_deep_copy(o);
        json_object_del(p, "type");
        // the latest eval's numbers stay in the progress until the next eval
        static const char *const keep[] = {"eval_loss", "eval_accuracy", "full_eval_loss", "full_eval_accuracy"};
        for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
            double v = jnum(st->progress, keep[k], NAN);
            if (!isnan(v)) json_object_set_new(p, keep[k], json_real(v));
        }
        json_t *prep = json_object_get(st->progress, "lemo_prepare");  // the job's first phase, as it ended
        if (json_is_object(prep)) json_object_set(p, "lemo_prepare", prep);
        json_decref(st->progress);
        st->progress = p;
        if (json_is_number(json_object_get(o, "tokens"))) st->trained_tokens = (int64_t)jnum(o, "tokens", 0);
        int64_t est = 0;
        if (step > st->step0 && total >= step && now > st->t0)
            est = (int64_t)(now + (double)(total - step) * (now - st->t0) / (double)(step - st->step0) + 0.5);
        char *ptxt = json_dumps(p, JSON_COMPACT | JSON_REAL_PRECISION(10));
        Err e;
        db_job_set_progress(srv->db, job_id, ptxt, st->trained_tokens, est, &e);
        free(ptxt);
        json_t *md = json_pack("{s:I, s:I}", "step", (json_int_t)step, "total_steps", (json_int_t)total);
        set_num(md, "train_loss", jnum(o, "loss", NAN));
        set_num(md, "train_mean_token_accuracy", jnum(o, "accuracy", NAN));
        add_metrics_event(srv, job_id, o, md, "Step %lld/%lld: training loss=%.4f", (long long)step, (long long)total,
                          jnum(o, "loss", NAN));
        json_decref(md);
        pthread_mutex_lock(&sl->s->mu);
        sl->info.step = step;
        sl->info.total_steps = total;
        sl->info.loss = jnum(o, "loss", NAN);
        sl->info.tokens_per_s = jnum(o, "tokens_per_s", 0);
        sl->info.gpu_mem_bytes = (int64_t)jnum(o, "gpu_mem_bytes", 0);
        sl->info.mem_bytes = (int64_t)jnum(o, "mem_bytes", 0);
        pthread_mutex_unlock(&sl->s->mu);
    } else if (t == PROGRESS_START) {
        st->total_steps = (int64_t)jnum(o, "total_steps", 0);
        if (!json_is_object(st->progress)) { json_decref(st->progress); st->progress = json_object(); }
        json_object_set_new(st->progress, "total_steps", json_integer(st->total_steps));
        char *ptxt = json_dumps(st->progress, JSON_COMPACT | JSON_REAL_PRECISION(10));
        Err e;
        db_job_set_progress(srv->db, job_id, ptxt, st->trained_tokens, 0, &e);
        free(ptxt);
        add_event(srv, job_id, "info", "message", line, "Training started: %lld steps", (long long)st->total_steps);
    } else if (t == PROGRESS_EVAL) {
        double el = jnum(o, "eval_loss", NAN), ea = jnum(o, "eval_accuracy", NAN);
        int64_t es = (int64_t)jnum(o, "step", 0);
        int full = json_is_true(json_object_get(o, "eval_full"));
        /* OpenAI's valid_loss is over a sample of the validation set, full_valid_loss over all
         * of it: the trainer's eval is both when its eval_windows covered the whole set */
        json_t *md = json_pack("{s:I}", "step", (json_int_t)es);
        if ((int64_t)jnum(st->progress, "step", -1) == es) {  // the train numbers of the same step
            set_num(md, "train_loss", jnum(st->progress, "loss", NAN));
            set_num(md, "train_mean_token_accuracy", jnum(st->progress, "accuracy", NAN));
        }
        set_num(md, "valid_loss", el);
        set_num(md, "valid_mean_token_accuracy", ea);
        if (full) {
            set_num(md, "full_valid_loss", el);
            set_num(md, "full_valid_mean_token_accuracy", ea);
        }
        if (json_is_object(st->progress)) {
            set_num(st->progress, "eval_loss", el);
            set_num(st->progress, "eval_accuracy", ea);
            if (full) set_num(st->progress, "full_eval_loss", el), set_num(st->progress, "full_eval_accuracy", ea);
            char *ptxt = json_dumps(st->progress, JSON_COMPACT | JSON_REAL_PRECISION(10));
            Err e;
            db_job_set_progress(srv->db, job_id, ptxt, st->trained_tokens, 0, &e);
            free(ptxt);
        }
        add_metrics_event(srv, job_id, o, md, "Step %lld: eval loss=%.4f", (long long)es, el);
        json_decref(md);
    } else if (t == PROGRESS_CHECKPOINT) {
        int64_t step = (int64_t)jnum(o, "step", 0);
        json_t *pv = json_object_get(o, "path");
        json_t *m = progress_metrics(st->progress, step);
        char *mt = json_dumps(m, JSON_COMPACT | JSON_REAL_PRECISION(10));
        Err e;
        if (db_checkpoint_put(srv->db, job_id, step, json_is_string(pv) ? json_string_value(pv) : "", mt, &e))
            fprintf(stderr, "lemo serve: job %s: %s\n", job_id, e.msg);
        free(mt);
        json_decref(m);
        add_event(srv, job_id, "info", "message", line, "Checkpoint created at step %lld", (long long)step);
    } else if (t == PROGRESS_LOG) {
        const char *lv = json_string_value(json_object_get(o, "level"));
        const char *msg = json_string_value(json_object_get(o, "message"));
        const char *level = lv && (!strcmp(lv, "warn") || !strcmp(lv, "warning")) ? "warn"
                            : lv && !strcmp(lv, "error") ? "error" : "info";
        add_event(srv, job_id, level, "message", line, "%.900s", msg ? msg : line);
    } else if (t == PROGRESS_DONE) {
        st->saw_done = 1;
        if (json_is_object(st->progress)) {
            double tl = jnum(o, "train_loss", NAN), el = jnum(o, "eval_loss", NAN);
            if (!isnan(tl)) json_object_set_new(st->progress, "train_loss", json_real(tl));
            if (!isnan(el)) json_object_set_new(st->progress, "eval_loss", json_real(el));
            char *ptxt = json_dumps(st->progress, JSON_COMPACT | JSON_REAL_PRECISION(10));
            Err e;
            db_job_set_progress(srv->db, job_id, ptxt, st->trained_tokens, 0, &e);
            free(ptxt);
        }
        add_event(srv, job_id, "info", "message", line, "Training finished at step %lld: train loss %.4f, eval loss %.4f",
                  (long long)jnum(o, "step", (double)st->step), jnum(o, "train_loss", NAN), jnum(o, "eval_loss", NAN));
    } else if (t == PROGRESS_CANCELLED) {
        st->saw_cancelled = 1;
        st->cancel_step = (int64_t)jnum(o, "step", (double)st->step);
        add_event(srv, job_id, "info", "message", line, "Training stopped at step %lld with a checkpoint",
                  (long long)st->cancel_step);
    } else if (t == PROGRESS_ERROR) {
        json_t *err = json_object();
        json_t *c = json_object_get(o, "code"), *m = json_object_get(o, "message"), *p = json_object_get(o, "param");
        json_object_set_new(err, "code", json_is_string(c) ? json_copy(c) : json_string("train_failed"));
        json_object_set_new(err, "message", json_is_string(m) ? json_copy(m) : json_string(line));
        json_object_set_new(err, "param", json_is_string(p) && json_string_length(p) ? json_copy(p) : json_null());
        json_decref(st->error);
        st->error = err;
        add_event(srv, job_id, "error", "message", line, "%.900s", json_string_value(json_object_get(err, "message")));
    } else {
        add_event(srv, job_id, "info", "message", line, "%.60s", type);
    }
    json_decref(o);
}

/* Forks and execs argv (this binary's `train CONFIG` or `prepare ...`) with stdout -> pipe,
 * stderr -> log, on the slot's GPU; returns the pid. */
static pid_t spawn_child(Slot *sl, char *const argv[], const char *log_path, int *out_fd) {
    int p[2];
    if (pipe2(p, O_CLOEXEC)) return -1;
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int nenv = 0;
    while (environ[nenv]) nenv++;
    char **envp = calloc((size_t)nenv + 2, sizeof *envp);
    char cvd[64];
    if (!envp) { close(p[0]); close(p[1]); if (logfd >= 0) close(logfd); if (nullfd >= 0) close(nullfd); return -1; }
    int k = 0;
    for (int i = 0; i < nenv; i++)
        if (sl->gpu < 0 || strncmp(environ[i], "CUDA_VISIBLE_DEVICES=", 21)) envp[k++] = environ[i];
    if (sl->gpu >= 0) {
        snprintf(cvd, sizeof cvd, "CUDA_VISIBLE_DEVICES=%d", sl->gpu);
        envp[k++] = cvd;
    }
    envp[k] = NULL;
    pid_t pid = srv_spawn(argv, envp, nullfd, p[1], logfd);
    free(envp);
    close(p[1]);
    if (logfd >= 0) close(logfd);
    if (nullfd >= 0) close(nullfd);
    if (pid < 0) { close(p[0]); return -1; }
    *out_fd = p[0];
    return pid;
}

/* Reads the child's stdout to EOF, storing lines as they complete. */
static void read_progress(Slot *sl, const char *job_id, int fd, int evfd, RunState *st) {
    Server *srv = sl->s->srv;
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    if (!buf) return;
    for (;;) {
        if (len + 4096 > cap) {
            if (cap >= (16u << 20)) {  // a line over 16 MiB is not progress: drop what we have
                len = 0;
            } else {
                char *nb = realloc(buf, cap * 2);
                if (!nb) break;
                buf = nb;
                cap *= 2;
            }
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
        char *start = buf, *nl;
        Err e;
        int began = db_begin(srv->db, &e) == 0;
        while ((nl = memchr(start, '\n', (size_t)(buf + len - start)))) {
            *nl = 0;
            if (evfd >= 0 && nl > start) {
                *nl = '\n';
                if (write(evfd, start, (size_t)(nl - start + 1)) < 0) { /* the DB copy remains */ }
                *nl = 0;
            }
            if (nl > start) handle_line(sl, job_id, start, st);
            start = nl + 1;
        }
        if (began && db_commit(srv->db, &e)) fprintf(stderr, "lemo serve: job %s: %s\n", job_id, e.msg);
        server_notify_events(srv);
        len = (size_t)(buf + len - start);
        memmove(buf, start, len);
    }
    free(buf);
}

/* The job's fine-tuned model name: ft:MODEL[:SUFFIX]:JOB_ID. */
static void ft_name(const JobRow *j, char *out, size_t cap) {
    if (j->suffix[0]) snprintf(out, cap, "ft:%s:%s:%s", j->model, j->suffix, j->id);
    else snprintf(out, cap, "ft:%s:%s", j->model, j->id);
}

/* Sends the job's webhook (if any) for its new terminal status. */
static void notify_terminal(Server *srv, const char *job_id, const char *type) {
    JobRow j;
    Err e;
    if (db_job_get(srv->db, job_id, &j, &e) != 1) return;
    json_t *o = job_to_json(&j);
    char *txt = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_t *md = json_object_get(o, "metadata");
    const char *url = json_is_object(md) ? json_string_value(json_object_get(md, "webhook_url")) : NULL;
    if (txt) webhook_send(srv->hooks, type, job_id, txt, url);
    free(txt);
    json_decref(o);
    job_row_free(&j);
}

/* The preparation job j needs before it trains (1; its settings in *lp, its trainer config in
 * *jc): a preparation job always, a LeMo job with predictor scores when its base model has no
 * predictor at that block yet. */
static int job_needs_prepare(const JobRow *j, LemoPrepare *lp, JobConfig *jc) {
    json_t *req = json_loads(j->request ? j->request : "{}", 0, NULL);
    int has = job_lemo_prepare_of(req, lp) == 0;
    json_decref(req);
    Err e;
    if (!has || job_config_parse(j->config, jc, &e) || jc->lemo.scores != LEMO_SCORES_PREDICTOR) return 0;
    return lp->only || !lemo_predictor_ready(jc->lemo.predictor);
}

/* Waits until no other slot prepares the same predictor folder, then marks it this slot's; 0
 * claimed, -1 when the server stops or the job is asked to stop meanwhile. */
static int prepare_claim(Slot *sl, const JobRow *j, const JobConfig *jc) {
    Scheduler *s = sl->s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        int busy = 0;
        for (int i = 0; i < s->n; i++) busy |= &s->slots[i] != sl && !strcmp(s->slots[i].preparing, jc->lemo.predictor);
        if (!busy || s->stopping) break;
        struct timespec ts = clock_wall_after(1);
        pthread_cond_timedwait(&s->cond, &s->mu, &ts);
        pthread_mutex_unlock(&s->mu);
        JobRow cur;
        Err e;
        int asked = db_job_get(s->srv->db, j->id, &cur, &e) == 1 && (job_row_free(&cur), cur.stop_request[0]);
        pthread_mutex_lock(&s->mu);
        if (asked) { pthread_mutex_unlock(&s->mu); return -1; }
    }
    int ok = !s->stopping;
    if (ok) {
        snprintf(sl->preparing, sizeof sl->preparing, "%s", jc->lemo.predictor);
        snprintf(sl->prep_model, sizeof sl->prep_model, "%s", j->model);
        snprintf(sl->prep_job, sizeof sl->prep_job, "%s", j->id);
        sl->prep_block = jc->lemo.block;
    }
    pthread_mutex_unlock(&s->mu);
    return ok ? 0 : -1;
}

static void prepare_release(Slot *sl) {
    pthread_mutex_lock(&sl->s->mu);
    sl->preparing[0] = sl->prep_model[0] = 0;
    pthread_cond_broadcast(&sl->s->cond);
    pthread_mutex_unlock(&sl->s->mu);
}

int scheduler_lemo_preparing(Scheduler *s, const char *model, char *job_id, size_t cap, int *block) {
    int found = 0;
    if (!s) return 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n && !found; i++)
        if (s->slots[i].prep_model[0] && !strcmp(s->slots[i].prep_model, model)) {
            snprintf(job_id, cap, "%s", s->slots[i].prep_job);
            *block = s->slots[i].prep_block;
            found = 1;
        }
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* `lemo prepare`'s command line for job config jc with the job's settings lp, writing into
 * out; the strings live in buf. */
typedef struct { char num[8][32], rope[48], *argv[40]; } PrepareArgv;
static void prepare_argv(Server *srv, const JobConfig *jc, const LemoPrepare *lp, const char *out, PrepareArgv *a) {
    int n = 0, k = 0;
    char **v = a->argv;
#define NUM(flag, fmt, x) (v[n++] = flag, snprintf(a->num[k], sizeof a->num[k], fmt, x), v[n++] = a->num[k++])
    v[n++] = srv->exe, v[n++] = "prepare", v[n++] = "--model", v[n++] = (char *)jc->model;
    v[n++] = "--data", v[n++] = (char *)jc->train_file;
    if (jc->eval_file[0]) v[n++] = "--eval-data", v[n++] = (char *)jc->eval_file;
    v[n++] = "--out", v[n++] = (char *)out, v[n++] = "--device", v[n++] = (char *)jc->device;
    NUM("--context", "%ld", lp->context_length);
    NUM("--block", "%d", jc->lemo.block);
    NUM("--steps", "%ld", lp->steps);
    NUM("--train-windows", "%ld", lp->train_windows);
    NUM("--keep-mean", "%.6g", lp->keep_mean);
    NUM("--seed", "%ld", lp->seed);
    v[n++] = "--fit-context", v[n++] = "1";
#undef NUM
    if (jc->has_rope_scaling && jc->rope_scaling.type == ROPE_LINEAR) {
        snprintf(a->rope, sizeof a->rope, "linear:%g", (double)jc->rope_scaling.factor);
        v[n++] = "--rope-scaling", v[n++] = a->rope;
    }
    v[n] = NULL;
}

/* Runs one claimed job to its end and records the outcome. */
static void run_job(Slot *sl, JobRow *j) {
    Server *srv = sl->s->srv;
    char dir[PATH_MAX], cfg[PATH_MAX + 16], log[PATH_MAX + 16], evp[PATH_MAX + 16];
    job_dir_of(srv, j->id, dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(log, sizeof log, "%s/train.log", dir);
    snprintf(evp, sizeof evp, "%s/events.jsonl", dir);
    Err e;
    RunState st;
    memset(&st, 0, sizeof st);
    st.progress = json_loads(j->progress ? j->progress : "{}", 0, NULL);
    if (!json_is_object(st.progress)) { json_decref(st.progress); st.progress = json_object(); }
    st.trained_tokens = j->trained_tokens;
    int64_t from = scheduler_disk_checkpoint_step(dir);
    if (fs_mkdirs(dir, NULL) || fs_write_atomic(cfg, j->config, strlen(j->config), NULL)) {
        json_t *err = json_pack("{s:s, s:s, s:n}", "code", "server_error", "message", "cannot write the job config", "param");
        char *et = json_dumps(err, JSON_COMPACT | JSON_REAL_PRECISION(10));
        db_job_move(srv->db, j->id, JOB_FAILED, JOB_BY_SCHEDULER, et, NULL, &e);
        free(et);
        json_decref(err);
        server_notify_events(srv);
        json_decref(st.progress);
        return;
    }
    if (from)
        add_event(srv, j->id, "info", "message", NULL, "Job running again on slot %d: resumes from step %lld",
                  sl->index, (long long)from);
    else
        add_event(srv, j->id, "info", "message", NULL, "Fine-tuning job started on slot %d", sl->index);
    server_notify_events(srv);
    /* LeMo's predictors first, where the job needs them and its base model has none yet (or
     * all of a preparation job): written into a partial folder and installed by rename, so no
     * job ever reads a half-written predictor; a crash or kill restarts the preparation */
    LemoPrepare lp = {0};
    int unclaimed = 0;
    JobConfig *jcp = malloc(sizeof *jcp);  // large (paths): off the slot thread's stack
    int prep = jcp && job_needs_prepare(j, &lp, jcp), prep_only = prep && lp.only;
    char part[PATH_MAX + 16] = "";
    if (prep) {
        if (prepare_claim(sl, j, jcp)) {
            // asked to stop (or the server stops) while another job prepared the same predictor:
            // nothing runs, and the outcome below records the stop as for a preparation
            prep = 0;
            unclaimed = 1;
        } else if (!lp.only && lemo_predictor_ready(jcp->lemo.predictor)) {
            prepare_release(sl);  // another job prepared it while this one waited
            prep = 0;
            add_event(srv, j->id, "info", "message", NULL, "LeMo: the predictors of %s are ready (another job prepared "
                      "them)", j->model);
        } else {
            lemo_store_partial(jcp->lemo.predictor, part, sizeof part);
            add_event(srv, j->id, "info", "message", NULL, prep_only ? "LeMo: preparing the predictors of %s (blocks of "
                      "%d tokens) and calibrating its schedule" : "LeMo: %s has no predictors for blocks of %d tokens "
                      "yet: this job prepares them first (once per base model; later LeMo jobs on it reuse them)",
                      j->model, jcp->lemo.block);
        }
        server_notify_events(srv);
    }
    st.phase = prep || unclaimed ? PHASE_PREPARE : PHASE_TRAIN;
    if (prep) {  // the step lines say how far; the total is the job's setting
        json_t *lpj = json_pack("{s:s, s:I, s:I}", "stage", "queued", "step", (json_int_t)0, "total_steps",
                                (json_int_t)lp.steps);
        json_object_set_new(st.progress, "lemo_prepare", lpj);
    }
    int status = 0, retries = 0;
    char stop[16] = "";
    JobRow cur;
    if (unclaimed && db_job_get(srv->db, j->id, &cur, &e) == 1) {
        snprintf(stop, sizeof stop, "%s", cur.stop_request);
        job_row_free(&cur);
    }
    for (; !unclaimed;) {
        int fd = -1;
        pid_t pid;
        if (st.phase == PHASE_PREPARE) {
            PrepareArgv pa;
            fs_remove_tree(part);  // what a killed run left
            prepare_argv(srv, jcp, &lp, part, &pa);
            pid = spawn_child(sl, pa.argv, log, &fd);
        } else {
            char *argv[] = {srv->exe, "train", cfg, NULL};
            pid = spawn_child(sl, argv, log, &fd);
        }
        if (pid < 0) {
            if (st.phase == PHASE_PREPARE) prepare_release(sl);
            db_job_move(srv->db, j->id, JOB_FAILED, JOB_BY_SCHEDULER,
                        "{\"code\":\"server_error\",\"message\":\"cannot start the trainer process\",\"param\":null}",
                        NULL, &e);
            server_notify_events(srv);
            json_decref(st.progress);
            json_decref(st.error);
            free(jcp);
            return;
        }
        pthread_mutex_lock(&sl->s->mu);
        sl->pid = pid;
        memset(&sl->info, 0, sizeof sl->info);
        snprintf(sl->info.job_id, sizeof sl->info.job_id, "%s", j->id);
        sl->info.gpu = sl->gpu;
        int stopping = sl->s->stopping;
        pthread_mutex_unlock(&sl->s->mu);
        /* a cancel or pause that arrived between the claim and now */
        if (stopping || (db_job_get(srv->db, j->id, &cur, &e) == 1 && (job_row_free(&cur), cur.stop_request[0])))
            kill(pid, SIGTERM);
        int evfd = open(evp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        read_progress(sl, j->id, fd, evfd, &st);
        if (evfd >= 0) close(evfd);
        close(fd);
        /* forget the pid before reaping it, so no signal can reach a reused pid */
        pthread_mutex_lock(&sl->s->mu);
        sl->pid = 0;
        memset(&sl->info, 0, sizeof sl->info);
        pthread_mutex_unlock(&sl->s->mu);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        stop[0] = 0;
        if (db_job_get(srv->db, j->id, &cur, &e) == 1) {
            snprintf(stop, sizeof stop, "%s", cur.stop_request);
            job_row_free(&cur);
        }
        /* A trainer killed by a signal nobody here sent (the OOM killer, a crash, an operator's
         * kill -9) lost at most the steps since its last checkpoint: start it again from there,
         * as a restarted server would, instead of failing hours of training. A trainer that
         * keeps dying fails the job after SCHED_TRAINER_RETRIES tries. */
        if (WIFSIGNALED(status) && !stop[0] && !srv->stopping && !st.saw_done && !st.saw_cancelled && !st.error &&
            retries < SCHED_TRAINER_RETRIES) {
            retries++;
            int64_t ck = scheduler_disk_checkpoint_step(dir);
            add_event(srv, j->id, "warn", "message", NULL,
                      "The trainer was killed by signal %d at step %lld; started again (retry %d of %d), resuming "
                      "from step %lld%s",
                      WTERMSIG(status), (long long)st.step, retries, SCHED_TRAINER_RETRIES, (long long)ck,
                      ck ? "" : " (no checkpoint yet: it starts over)");
            server_notify_events(srv);
            st.t0 = 0;
            continue;
        }
        if (st.phase == PHASE_PREPARE && WIFEXITED(status) && WEXITSTATUS(status) == 0 && st.prep_done && !stop[0] &&
            !srv->stopping) {
            Err ie;
            if (lemo_store_install(jcp->lemo.predictor, &ie)) {
                json_decref(st.error);
                st.error = json_pack("{s:s, s:s, s:n}", "code", "lemo_prepare_failed", "message", ie.msg, "param");
                break;
            }
            prepare_release(sl);
            json_t *lpj = json_object_get(st.progress, "lemo_prepare");
            add_event(srv, j->id, "info", "message", NULL, "LeMo: the predictors of %s are ready (held-out recall %.3f "
                      "against random's %.3f; %.0f s)%s", j->model, jnum(lpj, "recall", NAN), jnum(lpj, "random_recall", NAN),
                      jnum(lpj, "elapsed_s", NAN), prep_only ? "" : "; training starts");
            server_notify_events(srv);
            if (prep_only) { st.saw_done = 1; break; }
            st.phase = PHASE_TRAIN;
            st.t0 = 0;
            retries = 0;
            continue;
        }
        break;
    }
    if (prep) prepare_release(sl);
    Phase ended_in = st.phase;
    free(jcp);

    int exited0 = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    const char *hook = NULL;
    // the results CSV is on disk before the job reads succeeded, so a succeeded job has it
    int succeeded = st.saw_done && (exited0 || WIFSIGNALED(status));
    FileRow results;
    Err re = {0};
    int have_results = succeeded && !prep_only && results_write(srv, j->id, &results, &re) == 0;
    if (db_begin(srv->db, &e) == 0) {
        // the done line comes after the adapter is in place: a kill after it loses nothing
        if (succeeded && prep_only) {
            db_job_move(srv->db, j->id, JOB_SUCCEEDED, JOB_BY_TRAINER_EXIT, NULL, NULL, &e);
            add_event(srv, j->id, "info", "message", NULL, "The preparation has successfully completed: LeMo jobs on %s "
                      "use its predictors", j->model);
            hook = "job.succeeded";
        } else if (succeeded) {
            char name[400];
            ft_name(j, name, sizeof name);
            db_job_move(srv->db, j->id, JOB_SUCCEEDED, JOB_BY_TRAINER_EXIT, NULL, name, &e);
            add_event(srv, j->id, "info", "message", NULL, "The job has successfully completed: %s", name);
            if (have_results && (db_file_insert(srv->db, &results, &re) || db_job_set_result_file(srv->db, j->id, results.id, &re)))
                have_results = 0;
            if (!have_results)
                add_event(srv, j->id, "warn", "message", NULL, "No results file: %s", re.msg[0] ? re.msg : "not written");
            hook = "job.succeeded";
        } else if (exited0 && st.saw_cancelled && !strcmp(stop, "pause")) {
            db_job_move(srv->db, j->id, JOB_PAUSED, JOB_BY_TRAINER_EXIT, NULL, NULL, &e);
            add_event(srv, j->id, "info", "message", NULL, "Job paused at step %lld; resume continues from there",
                      (long long)st.cancel_step);
        } else if (ended_in == PHASE_PREPARE && !strcmp(stop, "pause")) {
            db_job_move(srv->db, j->id, JOB_PAUSED, JOB_BY_TRAINER_EXIT, NULL, NULL, &e);
            add_event(srv, j->id, "info", "message", NULL, "Job paused during LeMo's preparation; resume prepares again");
        } else if (!strcmp(stop, "shutdown") || (srv->stopping && strcmp(stop, "cancel") && strcmp(stop, "pause"))) {
            db_job_move(srv->db, j->id, JOB_QUEUED, JOB_BY_SCHEDULER, NULL, NULL, &e);
            add_event(srv, j->id, "info", "message", NULL, "The server is stopping: job stopped at step %lld and "
                      "is resumed when the server starts again", (long long)(st.saw_cancelled ? st.cancel_step : st.step));
        } else if (exited0 && st.saw_cancelled) {
            db_job_move(srv->db, j->id, JOB_CANCELLED, JOB_BY_TRAINER_EXIT, NULL, NULL, &e);
            add_event(srv, j->id, "info", "message", NULL, "Job cancelled at step %lld", (long long)st.cancel_step);
            hook = "job.cancelled";
        } else if (!strcmp(stop, "cancel") && !st.error) {
            db_job_move(srv->db, j->id, JOB_CANCELLED, JOB_BY_TRAINER_EXIT, NULL, NULL, &e);
            add_event(srv, j->id, "info", "message", NULL, "Job cancelled");
            hook = "job.cancelled";
        } else if (st.error && strcmp(stop, "cancel") && json_is_string(json_object_get(st.error, "code")) &&
                   !strcmp(json_string_value(json_object_get(st.error, "code")), "disk_full")) {
            // the trainer kept its last checkpoint: once space is freed, resume continues from there
            char *et = error_text(srv, st.error);
            int64_t ck = scheduler_disk_checkpoint_step(dir);
            db_job_move(srv->db, j->id, JOB_PAUSED, JOB_BY_TRAINER_EXIT, et, NULL, &e);
            add_event(srv, j->id, "error", "message", NULL,
                      "The disk is full: the job is paused with its checkpoint of step %lld kept; free space, then "
                      "POST /v1/fine_tuning/jobs/%s/resume continues from there", (long long)ck, j->id);
            free(et);
        } else {
            json_t *err = st.error ? json_incref(st.error) : NULL;
            if (!err) {
                char last[600], msg[900];
                file_last_line(log, last, sizeof last);
                if (WIFSIGNALED(status))
                    snprintf(msg, sizeof msg, "The trainer was killed by signal %d%s%s", WTERMSIG(status),
                             last[0] ? ": " : "", last);
                else
                    snprintf(msg, sizeof msg, "The trainer exited with status %d%s%s", WEXITSTATUS(status),
                             last[0] ? ": " : "", last);
                err = json_pack("{s:s, s:s, s:n}", "code", "train_failed", "message", msg, "param");
            }
            char *et = error_text(srv, err);
            db_job_move(srv->db, j->id, JOB_FAILED, JOB_BY_TRAINER_EXIT, et, NULL, &e);
            add_event(srv, j->id, "error", "message", NULL, "The job failed: %.900s",
                      json_string_value(json_object_get(err, "message")));
            free(et);
            json_decref(err);
            hook = "job.failed";
        }
        if (db_commit(srv->db, &e)) fprintf(stderr, "lemo serve: job %s: %s\n", j->id, e.msg);
    } else {
        fprintf(stderr, "lemo serve: job %s: cannot record its end: %s\n", j->id, e.msg);
    }
    server_notify_events(srv);
    if (hook) notify_terminal(srv, j->id, hook);
    json_decref(st.progress);
    json_decref(st.error);
}

static void *slot_main(void *arg) {
    Slot *sl = arg;
    Scheduler *s = sl->s;
    /* the server's main thread handles SIGINT/SIGTERM */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping) break;
        JobRow j;
        Err e;
        int rc = db_job_claim(s->srv->db, &j, &e);
        if (rc == 1) {
            server_notify_events(s->srv);
            run_job(sl, &j);
            job_row_free(&j);
            continue;
        }
        if (rc < 0) fprintf(stderr, "lemo serve: slot %d: %s\n", sl->index, e.msg);
        pthread_mutex_lock(&s->mu);
        if (!s->stopping) {
            struct timespec ts = clock_wall_after(2);
            pthread_cond_timedwait(&s->cond, &s->mu, &ts);
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

Scheduler *scheduler_start(Server *srv, int n, int gpus, Err *e) {
    Scheduler *s = calloc(1, sizeof *s);
    if (!s) { err_set(e, "out of memory"); return NULL; }
    s->srv = srv;
    s->n = n;
    s->slots = calloc((size_t)n, sizeof *s->slots);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (!s->slots) { free(s); err_set(e, "out of memory"); return NULL; }
    for (int i = 0; i < n; i++) {
        Slot *sl = &s->slots[i];
        sl->s = s;
        sl->index = i;
        sl->gpu = gpus > 0 ? i % gpus : -1;
        if (pthread_create(&sl->th, NULL, slot_main, sl)) {
            err_set(e, "cannot start engine thread %d", i);
            s->n = i;
            scheduler_stop(s);
            return NULL;
        }
    }
    return s;
}

void scheduler_wake(Scheduler *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

int scheduler_signal_job(Scheduler *s, const char *job_id) {
    if (!s) return 0;
    int found = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n; i++) {
        Slot *sl = &s->slots[i];
        if (sl->pid > 0 && !strcmp(sl->info.job_id, job_id)) {
            kill(sl->pid, SIGTERM);
            found = 1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

int scheduler_slot_info(Scheduler *s, SlotInfo *out, int max) {
    int k = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n && k < max; i++)
        if (s->slots[i].pid > 0) out[k++] = s->slots[i].info;
    pthread_mutex_unlock(&s->mu);
    return k;
}

int scheduler_slots(Scheduler *s) { return s ? s->n : 0; }

void scheduler_stop(Scheduler *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    for (int i = 0; i < s->n; i++) {
        Slot *sl = &s->slots[i];
        if (sl->pid > 0) kill(sl->pid, SIGTERM);  // srv->stopping is set: the job is requeued
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n; i++) pthread_join(s->slots[i].th, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    free(s->slots);
    free(s);
}
