/* test_server_load.c: many concurrent clients (32 threads x 20 requests, each thread on its
 * own keep-alive connection, mixing reads, uploads and job creations) all get correct answers,
 * and /metrics is valid Prometheus text that counted them. */
#include <ctype.h>
#include <pthread.h>

#include "itest.h"

#define THREADS 32
#define REQS 20

static ITServer s;
static char file_id[64];
static int failures[THREADS];

static size_t sink(char *p, size_t sz, size_t nm, void *ud) {
    (void)p;
    size_t *n = ud;
    *n += sz * nm;
    return sz * nm;
}

static void *client(void *arg) {
    int t = (int)(long)arg;
    CURL *c = curl_easy_init();
    char url[512], body[512];
    const char *text = "{\"text\": \"Lily and Tom played in the park.\"}\n";
    for (int i = 0; i < REQS; i++) {
        int kind = (t + i) % 10;
        size_t got = 0;
        curl_easy_reset(c);
        curl_mime *m = NULL;
        struct curl_slist *hs = NULL;
        if (kind == 0) {  // upload
            snprintf(url, sizeof url, "%s/v1/files", s.base);
            m = curl_mime_init(c);
            curl_mimepart *p = curl_mime_addpart(m);
            curl_mime_name(p, "purpose");
            curl_mime_data(p, "fine-tune", CURL_ZERO_TERMINATED);
            p = curl_mime_addpart(m);
            curl_mime_name(p, "file");
            curl_mime_filename(p, "c.jsonl");
            curl_mime_data(p, text, CURL_ZERO_TERMINATED);
            curl_easy_setopt(c, CURLOPT_MIMEPOST, m);
        } else if (kind == 1) {  // create a job (nothing trains: --slots 0)
            snprintf(url, sizeof url, "%s/v1/fine_tuning/jobs", s.base);
            snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"hyperparameters\": {\"max_steps\": 2}}",
                     file_id);
            hs = curl_slist_append(NULL, "Content-Type: application/json");
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        } else {
            static const char *const paths[] = {"/v1/fine_tuning/jobs", "/v1/files", "/v1/models", "/healthz",
                                                "/v1/fine_tuning/jobs?limit=5", "/metrics", "/v1/files?limit=2",
                                                "/v1/models/m1"};
            snprintf(url, sizeof url, "%s%s", s.base, paths[(t * 7 + i) % 8]);
        }
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        long st = 0;
        CURLcode rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        if (rc != CURLE_OK || st != 200 || got == 0) {
            failures[t]++;
            fprintf(stderr, "thread %d req %d %s: %s %ld\n", t, i, url, curl_easy_strerror(rc), st);
        }
        if (m) curl_mime_free(m);
        curl_slist_free_all(hs);
    }
    curl_easy_cleanup(c);
    return NULL;
}

/* Checks Prometheus text exposition: every sample's metric has a TYPE line before it and
 * every sample line is NAME[{k="v",...}] VALUE. Returns the value of `want` (or -1). */
static double check_metrics(const char *text, const char *want) {
    char types[128][96];
    int n_types = 0, samples = 0;
    double found = -1;
    char *dup = strdup(text);
    for (char *line = strtok(dup, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "# TYPE ", 7)) {
            char name[96], type[32];
            CHECK(sscanf(line + 7, "%95s %31s", name, type) == 2, "TYPE line: %s", line);
            CHECK(!strcmp(type, "gauge") || !strcmp(type, "counter"), "type %s", type);
            if (n_types < 128) snprintf(types[n_types++], 96, "%s", name);
            continue;
        }
        if (line[0] == '#') { CHECK(!strncmp(line, "# HELP ", 7), "comment: %s", line); continue; }
        const char *p = line;
        CHECK(isalpha((unsigned char)*p) || *p == '_', "metric name start: %s", line);
        while (isalnum((unsigned char)*p) || *p == '_' || *p == ':') p++;
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)(p - line), line);
        if (*p == '{') {
            p++;
            while (*p && *p != '}') {
                while (isalnum((unsigned char)*p) || *p == '_') p++;
                CHECK(p[0] == '=' && p[1] == '"', "label syntax: %s", line);
                p += 2;
                while (*p && *p != '"') p++;
                if (*p == '"') p++;
                if (*p == ',') p++;
            }
            CHECK(*p == '}', "labels closed: %s", line);
            if (*p) p++;
        }
        CHECK(*p == ' ', "space before value: %s", line);
        char *end;
        double v = strtod(p, &end);
        CHECK(end != p + 1 && *end == 0, "value parses: %s", line);
        int typed = 0;
        for (int i = 0; i < n_types; i++) typed |= !strcmp(types[i], name);
        CHECK(typed, "TYPE before sample of %s", name);
        if (!strcmp(name, want)) found = v;
        samples++;
    }
    CHECK(samples >= 10, "%d samples", samples);
    free(dup);
    return found;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    it_tempdir(&s);
    char models[400];
    it_config_only_model(&s, models, sizeof models);
    if (it_start(&s, "--slots", "0", "--models", models, NULL)) { CHECK(0, "server start"); return check_done("load"); }
    char *ds = it_story_jsonl(3);
    CHECK(it_upload_ok(&s, "d.jsonl", ds, file_id, sizeof file_id) == 0, "upload");
    free(ds);
    pthread_t th[THREADS];
    double t0 = it_now();
    for (long t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, client, (void *)t);
    int fails = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        fails += failures[t];
    }
    double dt = it_now() - t0;
    fprintf(stderr, "%d requests from %d threads in %.2f s\n", THREADS * REQS, THREADS, dt);
    CHECK(fails == 0, "%d of %d concurrent requests failed", fails, THREADS * REQS);
    CHECK(it_healthy(&s), "healthy after the load");

    ITResp r = it_get(&s, "/v1/fine_tuning/jobs?limit=100");
    json_t *j = it_json(&r);
    CHECK(json_array_size(json_object_get(j, "data")) == THREADS * REQS / 10, "every job created: %zu",
          json_array_size(json_object_get(j, "data")));
    json_decref(j);
    it_free(&r);

    r = it_get(&s, "/metrics");
    CHECK(r.status == 200, "metrics");
    double total = check_metrics(r.body ? r.body : "", "lemo_http_requests_total");
    CHECK(total >= THREADS * REQS, "lemo_http_requests_total %g counts the load", total);
    it_free(&r);
    r = it_get(&s, "/metrics");
    double queued = check_metrics(r.body ? r.body : "", "lemo_queue_depth");
    CHECK(queued == THREADS * REQS / 10, "queue depth %g", queued);
    it_free(&r);
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    return check_done("test_server_load");
}
