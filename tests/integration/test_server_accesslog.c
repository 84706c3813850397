/* test_server_accesslog.c: the server's log on stderr.
 *   - One access line per request: client address, method, path without the query, status,
 *     bytes of body sent (the bytes the client got) and milliseconds, for answers of every kind
 *     (a list, a 404, a 401, an upload, an event stream, a job creation).
 *   - Never a secret: not the API key (right or wrong), not the Authorization header, not a
 *     query string (clients put tokens there).
 *   - A job's lifecycle: created, queued -> running, running -> failed with its error (a model
 *     folder without weights cannot train).
 *   - --no-access-log drops the access lines and keeps the rest; `lemo serve --help` names it
 *     and the connection limits with their defaults. */
#include "itest.h"

static ITServer s;

typedef struct { const char *method, *path; long status; size_t bytes; int found; } Want;

/* Whether the log holds an access line for w: "lemo serve: access: 127.0.0.1 METHOD PATH STATUS BYTES N.Nms". */
static void find_line(const char *log, Want *w) {
    char pat[600];
    snprintf(pat, sizeof pat, "lemo serve: access: 127.0.0.1 %s %s %ld %zu ", w->method, w->path, w->status, w->bytes);
    for (const char *p = strstr(log, pat); p && !w->found; p = strstr(p + 1, pat)) {
        const char *q = p + strlen(pat);
        char *end;
        double ms = strtod(q, &end);
        w->found = end != q && ms >= 0 && ms < 60000 && !strncmp(end, "ms", 2);
    }
}

static char *read_log(long from) {
    FILE *f = fopen(s.log, "r");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, from, SEEK_SET);
    char *t = calloc(1, (size_t)(n - from) + 1);
    if (fread(t, 1, (size_t)(n - from), f) != (size_t)(n - from)) t[0] = 0;
    fclose(f);
    return t;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    it_tempdir(&s);
    char models[400];
    it_config_only_model(&s, models, sizeof models);
    char cmd[1024], key[256] = "";
    snprintf(cmd, sizeof cmd, "'%s' keys create --name log --data-dir '%s' 2>/dev/null", it_bin(), s.data);
    FILE *p = popen(cmd, "r");
    if (p) {
        if (!fgets(key, sizeof key, p)) key[0] = 0;
        pclose(p);
    }
    key[strcspn(key, "\n")] = 0;
    CHECK(!strncmp(key, "sk-lemo-", 8), "a key: %s", key);
    if (it_start(&s, "--slots", "1", "--models", models, NULL)) { CHECK(0, "server start"); return check_done("accesslog"); }
    char auth[400];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    const char *h[] = {auth, NULL};
    const char *hj[] = {auth, "Content-Type: application/json", NULL};
    Want w[8];
    int nw = 0;

    ITResp r = it_req(&s, "GET", "/v1/files?purpose=fine-tune&api_key=hunter2-query-secret", h, NULL, 0);
    CHECK(r.status == 200, "list: %ld", r.status);
    w[nw++] = (Want){"GET", "/v1/files", r.status, r.len, 0};
    it_free(&r);
    r = it_req(&s, "GET", "/v1/files/file-nope", h, NULL, 0);
    w[nw++] = (Want){"GET", "/v1/files/file-nope", r.status, r.len, 0};
    CHECK(r.status == 404, "404: %ld", r.status);
    it_free(&r);
    const char *bad[] = {"Authorization: Bearer sk-lemo-wrongid-wrongsecretvalue", NULL};
    r = it_req(&s, "GET", "/v1/models", bad, NULL, 0);
    w[nw++] = (Want){"GET", "/v1/models", r.status, r.len, 0};
    CHECK(r.status == 401, "401: %ld", r.status);
    it_free(&r);
    char *ds = it_story_jsonl(3), file[64];
    r = it_upload(&s, "d.jsonl", ds, strlen(ds), "fine-tune", auth);
    it_str(&r, "id", file, sizeof file);
    w[nw++] = (Want){"POST", "/v1/files", r.status, r.len, 0};
    CHECK(r.status == 200, "upload: %ld %s", r.status, r.body);
    it_free(&r);
    free(ds);
    char body[256], job[64], path[256], status[32];
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\"}", file);
    r = it_req(&s, "POST", "/v1/fine_tuning/jobs", hj, body, (long)strlen(body));
    it_str(&r, "id", job, sizeof job);
    w[nw++] = (Want){"POST", "/v1/fine_tuning/jobs", r.status, r.len, 0};
    CHECK(r.status == 200 && job[0], "job: %ld %s", r.status, r.body);
    it_free(&r);
    /* it_wait_status has no key to send: poll here */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
    status[0] = 0;
    for (double t0 = it_now(); it_now() - t0 < 60 && strcmp(status, "failed"); usleep(200000)) {
        r = it_req(&s, "GET", path, h, NULL, 0);
        it_str(&r, "status", status, sizeof status);
        it_free(&r);
    }
    CHECK(!strcmp(status, "failed"), "a model without weights fails: %s", status);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?stream=true", job);
    r = it_req(&s, "GET", path, h, NULL, 0);   // the job has ended: its events, the end, and the stream closes
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events", job);
    w[nw++] = (Want){"GET", strdup(path), r.status, r.len, 0};
    CHECK(r.status == 200 && strstr(r.body, "event: end"), "stream: %ld", r.status);
    it_free(&r);
    r = it_get(&s, "/healthz");
    w[nw++] = (Want){"GET", "/healthz", r.status, r.len, 0};
    it_free(&r);
    it_stop(&s, SIGTERM);

    char *log = read_log(0);
    for (int i = 0; i < nw; i++) {
        find_line(log, &w[i]);
        CHECK(w[i].found, "an access line for %s %s %ld with %zu bytes", w[i].method, w[i].path, w[i].status, w[i].bytes);
    }
    const char *secret = strrchr(key, '-');
    CHECK(!strstr(log, key) && secret && !strstr(log, secret + 1), "the API key is not in the log");
    CHECK(!strstr(log, "wrongsecretvalue") && !strstr(log, "wrongid") && !strstr(log, "Bearer sk-"),
          "no Authorization header in the log");   // (the start-up line does explain the header, with KEY)
    CHECK(!strstr(log, "hunter2") && !strstr(log, "api_key"), "no query string in the log");
    char pat[200];
    snprintf(pat, sizeof pat, "lemo serve: job %s: created", job);
    CHECK(strstr(log, pat), "the log says the job was created");
    snprintf(pat, sizeof pat, "lemo serve: job %s: queued -> running (scheduler)", job);
    CHECK(strstr(log, pat), "the log says the job started");
    snprintf(pat, sizeof pat, "lemo serve: job %s: running -> failed (trainer exit): {", job);
    CHECK(strstr(log, pat), "the log says the job failed, with its error");
    long off = (long)strlen(log);
    free(log);

    /* --no-access-log: the same server, quiet but for the rest */
    if (it_start(&s, "--slots", "0", "--models", models, "--no-access-log", NULL)) { CHECK(0, "restart"); return check_done("accesslog"); }
    r = it_req(&s, "GET", "/v1/files", h, NULL, 0);
    CHECK(r.status == 200, "list after the restart: %ld", r.status);
    it_free(&r);
    it_stop(&s, SIGTERM);
    log = read_log(off);
    CHECK(!strstr(log, "access:"), "--no-access-log: no access lines: %.300s", log);
    CHECK(strstr(log, "listening on") && strstr(log, "access log off"), "--no-access-log: the rest of the log stays");
    free(log);

    snprintf(cmd, sizeof cmd, "'%s' serve --help", it_bin());
    p = popen(cmd, "r");
    char help[8192] = "";
    size_t hn = p ? fread(help, 1, sizeof help - 1, p) : 0;
    help[hn] = 0;
    if (p) pclose(p);
    static const char *const flags[] = {"--no-access-log", "--header-timeout S", "(default 20)", "--idle-timeout S",
                                        "(default 60", "--max-connections N", "(default 1024",
                                        "--max-connections-per-ip N", "(default 0"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        CHECK(strstr(help, flags[i]), "`lemo serve --help` says %s", flags[i]);
    it_cleanup(&s);
    return check_done("test_server_accesslog");
}
