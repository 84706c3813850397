/* test_server_flow.c: the whole path on the real stories260K model: upload a dataset, create
 * a job, follow its Server-Sent Events to the end, then fetch the adapter (tar with both PEFT
 * files, ETag, If-None-Match, Range, one file, a checkpoint's adapter), see it in /v1/models,
 * and score text with `lemo eval --adapter` on the extracted adapter. */
#include "itest.h"

/* GETs an event stream until the server closes it; returns the HTTP status. */
static long read_stream(ITServer *s, const char *path, const char *last_id, ITResp *out) {
    CURL *c = curl_easy_init();
    char url[512], hdr[128];
    snprintf(url, sizeof url, "%s%s", s->base, path);
    struct curl_slist *hs = NULL;
    if (last_id) {
        snprintf(hdr, sizeof hdr, "Last-Event-ID: %s", last_id);
        hs = curl_slist_append(hs, hdr);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, it_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 240L);
    long st = -1;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    return st;
}

/* The value of a response header ("" if absent). */
static void header_value(const ITResp *r, const char *name, char *out, size_t cap) {
    out[0] = 0;
    const char *p = r->headers;
    size_t nl = strlen(name);
    while (p && *p) {
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            p += nl + 1;
            while (*p == ' ') p++;
            size_t n = strcspn(p, "\r\n");
            snprintf(out, cap, "%.*s", (int)n, p);
            return;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *models = it_shared_models();
    if (!models) SKIP("../shared/models/stories260K is not here (set LEMO_SHARED)");
    ITServer s;
    it_tempdir(&s);
    if (it_start(&s, "--models", models, "--slots", "1", NULL)) { CHECK(0, "server start"); return check_done("flow"); }
    char train[64], valid[64];
    char *ds = it_story_jsonl(40), *vs = it_story_jsonl(5);
    CHECK(it_upload_ok(&s, "train.jsonl", ds, train, sizeof train) == 0, "upload train");
    CHECK(it_upload_ok(&s, "valid.jsonl", vs, valid, sizeof valid) == 0, "upload valid");
    char body[1024];
    /* the dry run: the trainer's estimate, and no job */
    snprintf(body, sizeof body, "{\"model\": \"stories260K\", \"training_file\": \"%s\", \"hyperparameters\": "
             "{\"max_steps\": 20, \"context_length\": 64}}", train);
    ITResp r = it_post_json(&s, "/v1/fine_tuning/jobs?dry_run=true", body);
    json_t *est = it_json(&r);
    CHECK(r.status == 200 && json_is_true(json_object_get(est, "fits")) &&
              json_integer_value(json_object_get(est, "peak_bytes")) > 0 &&
              json_integer_value(json_object_get(est, "max_context_length")) >= 64 &&
              json_is_object(json_object_get(est, "breakdown")) && json_is_number(json_object_get(est, "est_seconds")),
          "dry run: %ld %.400s", r.status, r.body);
    json_decref(est);
    it_free(&r);
    r = it_post_json(&s, "/v1/fine_tuning/jobs?dry_run=true", "{\"model\": \"stories260K\", \"training_file\": \"file-x\"}");
    CHECK(r.status == 400, "dry run with a bad file: %ld", r.status);
    it_free(&r);
    r = it_get(&s, "/v1/fine_tuning/jobs");
    CHECK(r.status == 200 && strstr(r.body, "\"data\":[]"), "a dry run creates no job: %s", r.body);
    it_free(&r);
    snprintf(body, sizeof body,
             "{\"model\": \"stories260K\", \"training_file\": \"%s\", \"validation_file\": \"%s\", \"seed\": 3, "
             "\"suffix\": \"flow\", \"metadata\": {\"run\": \"ci\"}, \"hyperparameters\": {\"max_steps\": 20, "
             "\"context_length\": 64, \"checkpoint_every\": 10, \"eval_every\": 10, \"lora_r\": 4}}", train, valid);
    r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    CHECK(r.status == 200, "create: %ld %s", r.status, r.body);
    char job[64], st[32];
    it_str(&r, "id", job, sizeof job);
    it_str(&r, "status", st, sizeof st);
    CHECK(!strncmp(job, "ftjob-", 6) && !strcmp(st, "queued"), "created queued: %s %s", job, st);
    it_free(&r);

    /* follow the stream to the end */
    char path[256];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?stream=true", job);
    ITResp sb = {0};
    sb.body = calloc(1, 1);
    long sst = read_stream(&s, path, NULL, &sb);
    CHECK(sst == 200, "stream status %ld", sst);
    int n_data = 0, n_steps = 0, ordered = 1;
    long last = 0;
    char last_id[32] = "";
    for (char *line = strtok(sb.body, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "id: ", 4)) {
            long v = atol(line + 4);
            if (v < last) ordered = 0;
            last = v;
            snprintf(last_id, sizeof last_id, "%s", line + 4);
        }
        if (!strncmp(line, "data: ", 6)) {
            n_data++;
            json_t *ev = json_loads(line + 6, 0, NULL);
            CHECK(json_is_object(ev), "stream data is JSON: %.200s", line);
            const char *msg = json_string_value(json_object_get(ev, "message"));
            if (msg && !strncmp(msg, "Step ", 5) && strstr(msg, "training loss")) n_steps++;
            json_decref(ev);
        }
    }
    CHECK(n_steps == 20, "20 step events in the stream, got %d", n_steps);
    CHECK(ordered && n_data > 25, "events in order (%d)", n_data);
    free(sb.body);
    sb.body = calloc(1, 1);
    sb.len = 0;
    read_stream(&s, path, NULL, &sb);
    CHECK(strstr(sb.body, "event: end") && strstr(sb.body, "\"status\":\"succeeded\""), "stream ends with the job");
    free(sb.body);
    sb.body = calloc(1, 1);
    sb.len = 0;
    CHECK(read_stream(&s, path, last_id, &sb) == 204, "reconnect after the end: 204 stops EventSource");
    free(sb.body);

    /* the job */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
    r = it_get(&s, path);
    json_t *j = it_json(&r);
    const char *ftm = json_string_value(json_object_get(j, "fine_tuned_model"));
    char ft[256];
    snprintf(ft, sizeof ft, "%s", ftm ? ftm : "");
    CHECK(!strcmp(json_string_value(json_object_get(j, "status")) ?: "", "succeeded"), "succeeded: %.500s", r.body);
    CHECK(!strncmp(ft, "ft:stories260K:flow:", 20), "fine_tuned_model %s", ft);
    CHECK(json_integer_value(json_object_get(j, "trained_tokens")) > 0, "trained_tokens");
    CHECK(json_integer_value(json_object_get(json_object_get(j, "progress"), "step")) == 20, "progress.step");
    CHECK(json_is_integer(json_object_get(j, "finished_at")), "finished_at");
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(j, "metadata"), "run")) ?: "", "ci"), "metadata kept");
    json_decref(j);
    it_free(&r);

    /* checkpoints, events paging */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/checkpoints", job);
    r = it_get(&s, path);
    j = it_json(&r);
    json_t *data = json_object_get(j, "data");
    CHECK(json_array_size(data) == 2, "2 checkpoints: %.300s", r.body);
    CHECK(json_integer_value(json_object_get(json_array_get(data, 0), "step_number")) == 20, "newest checkpoint first");
    json_decref(j);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?limit=5", job);
    r = it_get(&s, path);
    j = it_json(&r);
    CHECK(json_array_size(json_object_get(j, "data")) == 5 && json_is_true(json_object_get(j, "has_more")), "events page");
    const char *after = json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 4), "id"));
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?limit=5&after=%s", job, after ? after : "");
    json_decref(j);
    it_free(&r);
    r = it_get(&s, path);
    CHECK(r.status == 200 && strstr(r.body, "ftevent-"), "events after cursor");
    it_free(&r);

    /* the adapter tar */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter", job);
    r = it_get(&s, path);
    char etag[128], tarp[400], dir[400], cmd[8192];
    header_value(&r, "ETag", etag, sizeof etag);
    CHECK(r.status == 200 && strlen(etag) == 66, "adapter tar: %ld etag %s", r.status, etag);
    snprintf(tarp, sizeof tarp, "%s/adapter.tar", s.dir);
    snprintf(dir, sizeof dir, "%s/adapter", s.dir);
    FILE *f = fopen(tarp, "wb");
    if (f) { fwrite(r.body, 1, r.len, f); fclose(f); }
    size_t tar_len = r.len;
    char *tar_body = r.body;
    r.body = NULL;
    mkdir(dir, 0755);
    snprintf(cmd, sizeof cmd, "tar -xf '%s' -C '%s'", tarp, dir);
    CHECK(system(cmd) == 0, "tar extracts");
    char p1[500], p2[500];
    snprintf(p1, sizeof p1, "%s/adapter_config.json", dir);
    snprintf(p2, sizeof p2, "%s/adapter_model.safetensors", dir);
    CHECK(access(p1, R_OK) == 0 && access(p2, R_OK) == 0, "tar holds adapter_config.json + adapter_model.safetensors");
    const char *inm[] = {NULL, NULL};
    char h1[200];
    snprintf(h1, sizeof h1, "If-None-Match: %s", etag);
    inm[0] = h1;
    r = it_req(&s, "GET", path, inm, NULL, 0);
    CHECK(r.status == 304, "If-None-Match: %ld", r.status);
    it_free(&r);
    const char *rg[] = {"Range: bytes=512-1023", NULL};
    r = it_req(&s, "GET", path, rg, NULL, 0);
    char cr[128];
    header_value(&r, "Content-Range", cr, sizeof cr);
    CHECK(r.status == 206 && r.len == 512 && tar_len > 1024 && !memcmp(r.body, tar_body + 512, 512), "Range: %ld %zu %s",
          r.status, r.len, cr);
    it_free(&r);
    const char *rg2[] = {"Range: bytes=99999999-", NULL};
    r = it_req(&s, "GET", path, rg2, NULL, 0);
    CHECK(r.status == 416, "unsatisfiable range: %ld", r.status);
    it_free(&r);
    free(tar_body);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter/adapter_config.json", job);
    r = it_get(&s, path);
    j = it_json(&r);
    CHECK(r.status == 200 && json_is_object(j) && json_object_get(j, "peft_type"), "one adapter file: %.200s", r.body);
    json_decref(j);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter?step=10", job);
    r = it_get(&s, path);
    CHECK(r.status == 200 && r.len > 1024, "checkpoint adapter: %ld", r.status);
    it_free(&r);

    /* the fine-tuned model is listed */
    r = it_get(&s, "/v1/models");
    CHECK(r.status == 200 && strstr(r.body, ft) && strstr(r.body, "\"stories260K\""), "models lists base + ft");
    it_free(&r);

    /* lemo eval on the extracted adapter */
    char textp[500];
    snprintf(textp, sizeof textp, "%s/story.txt", s.dir);
    it_write_file(textp, "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.\n");
    snprintf(cmd, sizeof cmd, "'%s' eval --model '%s/stories260K' --adapter '%s' --text '%s' --context 16 2>&1", it_bin(),
             models, dir, textp);
    FILE *pp = popen(cmd, "r");
    char out[4096] = "";
    size_t n = pp ? fread(out, 1, sizeof out - 1, pp) : 0;
    out[n] = 0;
    int ev_rc = pp ? pclose(pp) : -1;
    CHECK(ev_rc == 0 && strstr(out, "\"loss\""), "lemo eval --adapter: %d %s", ev_rc, out);

    CHECK(it_healthy(&s), "healthy at the end");
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    free(ds);
    free(vs);
    return check_done("test_server_flow");
}
