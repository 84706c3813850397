/* itest.h: helpers for the server's integration tests: start a real `lemo serve` on a free
 * loopback port with a temp data directory, talk to it with libcurl, read JSON answers.
 *
 * The binary is $LEMO_BIN (tests/run.sh sets it), else build/lemo. The server is started
 * with --port 0 and its log is read for the port it got, so parallel tests never collide. */
#ifndef LEMO_ITEST_H
#define LEMO_ITEST_H

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

typedef struct {
    char dir[256];        // temp root: data/, models/, server.log
    char data[300];
    char log[300];
    char base[64];        // http://127.0.0.1:PORT
    int port;
    pid_t pid;
} ITServer;

typedef struct {
    long status;
    char *body;
    size_t len;
    char headers[8192];
} ITResp;

static inline const char *it_bin(void) {
    const char *b = getenv("LEMO_BIN");
    return b && *b ? b : "build/lemo";
}

static inline double it_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A fresh temp root for one test. */
static inline void it_tempdir(ITServer *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/lemo-itest-XXXXXX");
    if (!mkdtemp(s->dir)) { perror("mkdtemp"); exit(1); }
    snprintf(s->data, sizeof s->data, "%s/data", s->dir);
    snprintf(s->log, sizeof s->log, "%s/server.log", s->dir);
}

/* Starts `lemo serve --port 0 --data-dir DIR/data` plus extra args (NULL-terminated);
 * returns 0 once it listens. Appends to the log, so a restart keeps the earlier lines. */
static inline int it_start_argv(ITServer *s, const char *const *extra) {
    long off = 0;
    struct stat st;
    if (stat(s->log, &st) == 0) off = (long)st.st_size;
    const char *argv[64];
    int n = 0;
    argv[n++] = it_bin();
    argv[n++] = "serve";
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--data-dir";
    argv[n++] = s->data;
    for (int i = 0; extra && extra[i] && n < 62; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) { dup2(fd, 2); dup2(fd, 1); close(fd); }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    double t0 = it_now();
    while (it_now() - t0 < 15) {
        FILE *f = fopen(s->log, "r");
        if (f) {
            fseek(f, off, SEEK_SET);
            char line[1024];
            while (fgets(line, sizeof line, f)) {
                char *p = strstr(line, "listening on http://127.0.0.1:");
                if (p) {
                    s->port = atoi(p + strlen("listening on http://127.0.0.1:"));
                    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
                    fclose(f);
                    return 0;
                }
            }
            fclose(f);
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "server exited at start; log %s\n", s->log);
            s->pid = 0;
            return -1;
        }
        usleep(20000);
    }
    fprintf(stderr, "server did not start in 15 s; log %s\n", s->log);
    return -1;
}

static inline int it_start(ITServer *s, ...) {
    const char *extra[48];
    int n = 0;
    va_list ap;
    va_start(ap, s);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 47) extra[n++] = a;
    va_end(ap);
    extra[n] = NULL;
    return it_start_argv(s, extra);
}

/* Stops the server with sig (SIGTERM: graceful, SIGKILL: a crash) and reaps it. */
static inline void it_stop(ITServer *s, int sig) {
    if (s->pid <= 0) return;
    kill(s->pid, sig);
    int status;
    waitpid(s->pid, &status, 0);
    s->pid = 0;
}

/* rm -rf of the temp root (only paths under /tmp/lemo-itest-). */
static inline void it_cleanup(ITServer *s) {
    if (strncmp(s->dir, "/tmp/lemo-itest-", 16)) return;
    if (getenv("LEMO_KEEP_TEST_DIR")) { fprintf(stderr, "kept %s\n", s->dir); return; }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", s->dir);
}

static size_t it_write_cb(char *p, size_t sz, size_t nm, void *ud) {
    ITResp *r = ud;
    size_t n = sz * nm;
    char *nb = realloc(r->body, r->len + n + 1);
    if (!nb) return 0;
    r->body = nb;
    memcpy(r->body + r->len, p, n);
    r->len += n;
    r->body[r->len] = 0;
    return n;
}

static size_t it_header_cb(char *p, size_t sz, size_t nm, void *ud) {
    ITResp *r = ud;
    size_t n = sz * nm, l = strlen(r->headers);
    if (l + n + 1 < sizeof r->headers) { memcpy(r->headers + l, p, n); r->headers[l + n] = 0; }
    return n;
}

/* One request. headers: NULL-terminated list of "Name: value"; body may be NULL. */
static inline ITResp it_req(ITServer *s, const char *method, const char *path, const char *const *headers,
                            const void *body, long len) {
    ITResp r;
    memset(&r, 0, sizeof r);
    r.body = calloc(1, 1);
    CURL *c = curl_easy_init();
    char url[2048];
    snprintf(url, sizeof url, "%s%s", s->base, path);
    struct curl_slist *hs = NULL;
    for (int i = 0; headers && headers[i]; i++) hs = curl_slist_append(hs, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, it_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, it_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        fprintf(stderr, "request %s %s: %s\n", method, path, curl_easy_strerror(rc));
        r.status = -1;
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    }
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    return r;
}

static inline ITResp it_get(ITServer *s, const char *path) { return it_req(s, "GET", path, NULL, NULL, 0); }

static inline ITResp it_post_json(ITServer *s, const char *path, const char *json) {
    const char *h[] = {"Content-Type: application/json", NULL};
    return it_req(s, "POST", path, h, json, json ? (long)strlen(json) : 0);
}

/* Multipart upload of a file's bytes under field `file` (+ purpose unless NULL). */
static inline ITResp it_upload(ITServer *s, const char *filename, const char *data, size_t n, const char *purpose,
                               const char *auth_header) {
    ITResp r;
    memset(&r, 0, sizeof r);
    r.body = calloc(1, 1);
    CURL *c = curl_easy_init();
    char url[512];
    snprintf(url, sizeof url, "%s/v1/files", s->base);
    curl_mime *m = curl_mime_init(c);
    curl_mimepart *p;
    if (purpose) {
        p = curl_mime_addpart(m);
        curl_mime_name(p, "purpose");
        curl_mime_data(p, purpose, CURL_ZERO_TERMINATED);
    }
    p = curl_mime_addpart(m);
    curl_mime_name(p, "file");
    curl_mime_filename(p, filename);
    curl_mime_data(p, data, n);
    struct curl_slist *hs = auth_header ? curl_slist_append(NULL, auth_header) : NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, m);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, it_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) { fprintf(stderr, "upload: %s\n", curl_easy_strerror(rc)); r.status = -1; }
    else curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_mime_free(m);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    return r;
}

static inline json_t *it_json(const ITResp *r) {
    return r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
}

static inline void it_free(ITResp *r) {
    free(r->body);
    r->body = NULL;
}

/* A string member of a JSON reply, copied into out ("" if absent). */
static inline void it_str(const ITResp *r, const char *key, char *out, size_t cap) {
    json_t *j = it_json(r);
    const char *v = json_string_value(json_object_get(j, key));
    snprintf(out, cap, "%s", v ? v : "");
    json_decref(j);
}

/* error.<field> of an error reply ("" if absent). */
static inline void it_err_field(const ITResp *r, const char *field, char *out, size_t cap) {
    json_t *j = it_json(r);
    const char *v = json_string_value(json_object_get(json_object_get(j, "error"), field));
    snprintf(out, cap, "%s", v ? v : "");
    json_decref(j);
}

/* 1 if r is an error reply with this status, error.param and error.code, whose body names
 * `names` (NULL: anything). */
static inline int it_is_error(const ITResp *r, long status, const char *param, const char *code, const char *names) {
    char p[256], c[64];
    it_err_field(r, "param", p, sizeof p);
    it_err_field(r, "code", c, sizeof c);
    return r->status == status && !strcmp(p, param) && !strcmp(c, code) && (!names || strstr(r->body, names));
}

/* 1 if GET /healthz answers 200. */
static inline int it_healthy(ITServer *s) {
    ITResp r = it_get(s, "/healthz");
    int ok = r.status == 200;
    it_free(&r);
    return ok;
}

/* Uploads a JSONL text, returns the file id into out (0) or -1. */
static inline int it_upload_ok(ITServer *s, const char *name, const char *text, char *out, size_t cap) {
    ITResp r = it_upload(s, name, text, strlen(text), "fine-tune", NULL);
    it_str(&r, "id", out, cap);
    int ok = r.status == 200 && out[0];
    if (!ok) fprintf(stderr, "upload failed: %ld %s\n", r.status, r.body);
    it_free(&r);
    return ok ? 0 : -1;
}

/* Polls the job until its status is one of `want` ("succeeded|failed"), or timeout s;
 * copies the final status into out. */
static inline int it_wait_status(ITServer *s, const char *job, const char *want, double timeout, char *out, size_t cap) {
    char path[128];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
    double t0 = it_now();
    out[0] = 0;
    while (it_now() - t0 < timeout) {
        ITResp r = it_get(s, path);
        it_str(&r, "status", out, cap);
        it_free(&r);
        char pat[64];
        snprintf(pat, sizeof pat, "|%s|", out);
        char w[256];
        snprintf(w, sizeof w, "|%s|", want);
        if (out[0] && strstr(w, pat)) return 0;
        usleep(100000);
    }
    return -1;
}

/* A JSON number under job.progress.KEY (NAN if absent). */
static inline double it_progress(ITServer *s, const char *job, const char *key) {
    char path[128];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
    ITResp r = it_get(s, path);
    json_t *j = it_json(&r);
    json_t *v = json_object_get(json_object_get(j, "progress"), key);
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    json_decref(j);
    it_free(&r);
    return d;
}

/* Absolute path of the shared stories260K model root (the folder holding model folders), or NULL. */
static inline const char *it_shared_models(void) {
    static char buf[PATH_MAX];
    const char *sd = shared_dir();
    if (!sd) return NULL;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/models/stories260K/config.json", sd);
    if (access(p, R_OK)) return NULL;
    snprintf(p, sizeof p, "%s/models", sd);
    return realpath(p, buf) ? buf : NULL;
}

/* Writes a text file. */
static inline int it_write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

/* DIR/models/m1 holding only a config.json: a model the server lists and accepts jobs for,
 * for tests that never train (--slots 0). Writes the models folder into models[cap]. */
static inline void it_config_only_model(const ITServer *s, char *models, size_t cap) {
    char mdir[450], cfg[500];
    snprintf(models, cap, "%s/models", s->dir);
    snprintf(mdir, sizeof mdir, "%s/m1", models);
    mkdir(models, 0755);
    mkdir(mdir, 0755);
    snprintf(cfg, sizeof cfg, "%s/config.json", mdir);
    // the whole config (the estimate reads it), no weights: nothing can train from it
    it_write_file(cfg, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 64, "
                       "\"intermediate_size\": 172, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                       "\"num_key_value_heads\": 4, \"vocab_size\": 512, \"max_position_embeddings\": 512, "
                       "\"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, \"tie_word_embeddings\": true}\n");
}

/* A small text dataset in the stories260K domain: n lines of {"text": ...}. */
static inline char *it_story_jsonl(int n) {
    static const char *const s[] = {
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
        "One day, she saw a big, red ball. She ran to the ball and kicked it very high.",
        "Tom was a happy dog. He liked to run and jump in the grass with his friend Sam.",
        "The sun was warm and the sky was blue. Lily and her mom went to the lake to see the ducks.",
        "Ben had a little toy car. He played with it every day and shared it with his sister."};
    size_t cap = (size_t)n * 160 + 1, len = 0;
    char *out = malloc(cap);
    out[0] = 0;
    for (int i = 0; i < n; i++) len += (size_t)snprintf(out + len, cap - len, "{\"text\": \"%s\"}\n", s[i % 5]);
    return out;
}

/* The pid of a process (not this one) whose command line mentions needle, or 0. */
static inline pid_t it_pid_with(const char *needle) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *de;
    pid_t found = 0;
    while (!found && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || atoi(de->d_name) == getpid()) continue;
        char p[300], buf[4096];
        snprintf(p, sizeof p, "/proc/%s/cmdline", de->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++) if (!buf[i]) buf[i] = ' ';
        buf[n] = 0;
        if (strstr(buf, needle)) found = atoi(de->d_name);
    }
    closedir(d);
    return found;
}

/* 1 if some process's command line mentions needle (e.g. a job id in a trainer's config path). */
static inline int it_process_with(const char *needle) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *de;
    int found = 0;
    while (!found && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        char p[300], buf[4096];
        snprintf(p, sizeof p, "/proc/%s/cmdline", de->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++) if (!buf[i]) buf[i] = ' ';
        buf[n] = 0;
        if (strstr(buf, needle)) found = 1;
    }
    closedir(d);
    return found;
}

#endif

/* ---- a small HTTP peer run by the test: serves one body on GET, records POST bodies ---- */
#include <microhttpd.h>
#include <pthread.h>

typedef struct {
    struct MHD_Daemon *d;
    int port;
    const char *get_body;          // what GET answers
    size_t get_len;
    pthread_mutex_t mu;
    char posts[16][8192];          // received POST bodies
    char sigs[16][256];            // their webhook-signature headers
    char ids[16][128], stamps[16][64];
    int n_posts;
    int fail_first;                // answer 500 to this many POSTs first
} ITPeer;

typedef struct { char buf[8192]; size_t len; } ITPeerReq;

static enum MHD_Result it_peer_handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                       const char *version, const char *data, size_t *size, void **state) {
    (void)url, (void)version;
    ITPeer *p = cls;
    if (!*state) { *state = calloc(1, sizeof(ITPeerReq)); return MHD_YES; }
    ITPeerReq *rq = *state;
    if (*size) {
        size_t take = *size < sizeof rq->buf - 1 - rq->len ? *size : sizeof rq->buf - 1 - rq->len;
        memcpy(rq->buf + rq->len, data, take);
        rq->len += take;
        *size = 0;
        return MHD_YES;
    }
    struct MHD_Response *resp;
    unsigned status = 200;
    if (!strcmp(method, "POST")) {
        pthread_mutex_lock(&p->mu);
        if (p->fail_first > 0) { p->fail_first--; status = 500; }
        else if (p->n_posts < 16) {
            int i = p->n_posts++;
            snprintf(p->posts[i], sizeof p->posts[i], "%.*s", (int)rq->len, rq->buf);
            const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-signature");
            snprintf(p->sigs[i], sizeof p->sigs[i], "%s", v ? v : "");
            v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id");
            snprintf(p->ids[i], sizeof p->ids[i], "%s", v ? v : "");
            v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-timestamp");
            snprintf(p->stamps[i], sizeof p->stamps[i], "%s", v ? v : "");
        }
        pthread_mutex_unlock(&p->mu);
        resp = MHD_create_response_from_buffer(2, "ok", MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_buffer(p->get_len, (void *)p->get_body, MHD_RESPMEM_PERSISTENT);
    }
    enum MHD_Result rc = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static void it_peer_done(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode t) {
    (void)cls, (void)c, (void)t;
    free(*state);
    *state = NULL;
}

static inline int it_peer_start(ITPeer *p) {
    pthread_mutex_init(&p->mu, NULL);
    p->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
                            it_peer_handler, p, MHD_OPTION_NOTIFY_COMPLETED, it_peer_done, p, MHD_OPTION_END);
    if (!p->d) return -1;
    p->port = MHD_get_daemon_info(p->d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

static inline void it_peer_stop(ITPeer *p) {
    if (p->d) MHD_stop_daemon(p->d);
    p->d = NULL;
}

static inline int it_peer_count(ITPeer *p) {
    pthread_mutex_lock(&p->mu);
    int n = p->n_posts;
    pthread_mutex_unlock(&p->mu);
    return n;
}
