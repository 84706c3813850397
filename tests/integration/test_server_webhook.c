/* test_server_webhook.c: job.cancelled, job.failed and job.succeeded webhooks reach the
 * --webhook-url (and a job's metadata.webhook_url) with a valid Standard Webhooks HMAC-SHA256
 * signature, a receiver that fails first gets the retry, and a job whose trainer fails is
 * `failed` with the trainer's own error message while the server keeps serving. Without
 * --allow-internal-urls a job's webhook may not reach internal addresses (a literal one is a
 * 400 at creation, a name resolving to one is refused when connecting, logged once and dropped)
 * while the operator's --webhook-url on loopback still delivers. */
#include "itest.h"
#include "sha256.h"

static ITServer s;
static ITPeer peer;

static void check_delivery(int i, const char *type, const char *job);

/* Waits for the peer to hold n deliveries. */
static int wait_posts(int n, double timeout) {
    double t0 = it_now();
    while (it_now() - t0 < timeout) {
        if (it_peer_count(&peer) >= n) return 0;
        usleep(50000);
    }
    return -1;
}

/* Lines of the server log holding both needles. */
static int log_lines_with(const ITServer *t, const char *a, const char *b) {
    FILE *f = fopen(t->log, "r");
    if (!f) return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, a) && strstr(line, b);
    fclose(f);
    return n;
}

/* Without --allow-internal-urls: a job's webhook on 127.0.0.1 is a 400 at creation; one on
 * "localhost" is accepted, refused when connecting, logged once and never retried (stopping the
 * server gives every queued delivery one more try, so a requeued one would log again); the
 * operator's --webhook-url on 127.0.0.1 still gets the event. */
static void check_internal_refused(const char *hook, const char *models, const char *file_text) {
    ITServer t;
    it_tempdir(&t);
    if (it_start(&t, "--slots", "0", "--models", models, "--webhook-url", hook, "--webhook-secret", "s3cret", NULL)) {
        CHECK(0, "server start without --allow-internal-urls");
        return;
    }
    char file[64], job[64], body[1024], path[200], url[128];
    CHECK(it_upload_ok(&t, "d.jsonl", file_text, file, sizeof file) == 0, "upload");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/job-hook", peer.port);
    snprintf(body, sizeof body, "{\"model\": \"broken\", \"training_file\": \"%s\", \"metadata\": {\"webhook_url\": \"%s\"}}",
             file, url);
    ITResp r = it_post_json(&t, "/v1/fine_tuning/jobs", body);
    CHECK(it_is_error(&r, 400, "metadata.webhook_url", "invalid_value", "127.0.0.1"),
          "job webhook on 127.0.0.1 refused at creation: %ld %s", r.status, r.body);
    it_free(&r);
    r = it_get(&t, "/v1/fine_tuning/jobs");
    CHECK(r.status == 200 && !strstr(r.body, "ftjob-"), "a refused job is not stored: %s", r.body);
    it_free(&r);

    int base = it_peer_count(&peer);
    snprintf(url, sizeof url, "http://localhost:%d/job-hook", peer.port);
    snprintf(body, sizeof body, "{\"model\": \"broken\", \"training_file\": \"%s\", \"metadata\": {\"webhook_url\": \"%s\"}}",
             file, url);
    r = it_post_json(&t, "/v1/fine_tuning/jobs", body);
    it_str(&r, "id", job, sizeof job);
    CHECK(r.status == 200 && job[0], "a job webhook by host name is accepted at creation: %ld %s", r.status, r.body);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", job);
    r = it_req(&t, "POST", path, NULL, NULL, 0);
    CHECK(r.status == 200, "cancel: %ld", r.status);
    it_free(&r);
    CHECK(wait_posts(base + 1, 10) == 0, "the operator's webhook on 127.0.0.1 delivers (%d)", it_peer_count(&peer));
    if (it_peer_count(&peer) > base) check_delivery(base, "job.cancelled", job);
    double t0 = it_now();
    while (it_now() - t0 < 10 && !log_lines_with(&t, url, "refused")) usleep(50000);
    CHECK(log_lines_with(&t, url, "refused") == 1 && log_lines_with(&t, url, "internal address") == 1,
          "the refused job webhook is logged naming its URL (log %s)", t.log);
    CHECK(log_lines_with(&t, url, job) == 1, "the refusal names the job (log %s)", t.log);
    it_stop(&t, SIGTERM);
    CHECK(log_lines_with(&t, url, "refused") == 1 && log_lines_with(&t, url, "try ") == 0,
          "the refused delivery is dropped, not retried (log %s)", t.log);
    CHECK(it_peer_count(&peer) == base + 1, "only the operator's delivery arrived (%d)", it_peer_count(&peer) - base);
    it_cleanup(&t);
}

/* Checks delivery i: its type, job id and signature. */
static void check_delivery(int i, const char *type, const char *job) {
    json_t *ev = json_loads(peer.posts[i], 0, NULL);
    CHECK(ev != NULL, "delivery %d is JSON: %.200s", i, peer.posts[i]);
    const char *t = json_string_value(json_object_get(ev, "type"));
    const char *id = json_string_value(json_object_get(json_object_get(ev, "data"), "id"));
    CHECK(t && !strcmp(t, type), "delivery %d type %s, want %s", i, t ? t : "null", type);
    CHECK(id && !strcmp(id, job), "delivery %d job %s", i, id ? id : "null");
    const char *st = json_string_value(json_object_get(json_object_get(json_object_get(ev, "data"), "job"), "status"));
    CHECK(st && !strcmp(type + 4, st), "delivery %d carries the job in status %s", i, st ? st : "null");
    char msg[9000], want[128];
    snprintf(msg, sizeof msg, "%s.%s.%s", peer.ids[i], peer.stamps[i], peer.posts[i]);
    uint8_t mac[32];
    hmac_sha256("s3cret", 6, msg, strlen(msg), mac);
    char b64[64];
    base64_encode(mac, 32, b64);
    snprintf(want, sizeof want, "v1,%s", b64);
    CHECK(!strcmp(peer.sigs[i], want), "delivery %d signature %s, want %s", i, peer.sigs[i], want);
    json_decref(ev);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    /* HMAC-SHA256 test vector (RFC 4231, case 2), so the check above checks something real */
    uint8_t mac[32];
    char hex[65];
    hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
    hex_encode(mac, 32, hex);
    CHECK(!strcmp(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"), "RFC 4231 vector: %s", hex);

    it_tempdir(&s);
    CHECK(it_peer_start(&peer) == 0, "peer start");
    char hook[128], job_hook[128], models[400], mdir[450], cfg[500];
    snprintf(hook, sizeof hook, "http://127.0.0.1:%d/hook", peer.port);
    snprintf(job_hook, sizeof job_hook, "http://127.0.0.1:%d/job-hook", peer.port);
    snprintf(models, sizeof models, "%s/models", s.dir);
    snprintf(mdir, sizeof mdir, "%s/broken", models);
    mkdir(models, 0755);
    mkdir(mdir, 0755);
    snprintf(cfg, sizeof cfg, "%s/config.json", mdir);
    it_write_file(cfg, "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                       "\"intermediate_size\": 128, \"vocab_size\": 100, \"max_position_embeddings\": 128}\n");
    const char *shared = it_shared_models();
    char link[500];
    if (shared) {  /* stories260K beside the broken model */
        snprintf(link, sizeof link, "%s/stories260K", models);
        char target[PATH_MAX + 16];
        snprintf(target, sizeof target, "%s/stories260K", shared);
        CHECK(symlink(target, link) == 0, "link stories260K");
    }

    /* cancelled: with --slots 0 the job stays queued; both URLs are told (the job's is on
     * 127.0.0.1, so internal URLs are allowed) */
    if (it_start(&s, "--slots", "0", "--models", models, "--webhook-url", hook, "--webhook-secret", "s3cret",
                 "--allow-internal-urls", NULL)) {
        CHECK(0, "server start");
        return check_done("webhook");
    }
    char file[64], job[64], st[32], body[1024], path[200];
    char *ds = it_story_jsonl(20);
    CHECK(it_upload_ok(&s, "d.jsonl", ds, file, sizeof file) == 0, "upload");
    snprintf(body, sizeof body, "{\"model\": \"broken\", \"training_file\": \"%s\", \"metadata\": {\"webhook_url\": \"%s\"}, "
             "\"hyperparameters\": {\"max_steps\": 2, \"context_length\": 16}}", file, job_hook);
    ITResp r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    it_str(&r, "id", job, sizeof job);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", job);
    r = it_req(&s, "POST", path, NULL, NULL, 0);
    CHECK(r.status == 200, "cancel: %ld", r.status);
    it_free(&r);
    CHECK(wait_posts(2, 10) == 0, "two cancelled deliveries (%d)", it_peer_count(&peer));
    check_delivery(0, "job.cancelled", job);
    check_delivery(1, "job.cancelled", job);
    it_stop(&s, SIGTERM);

    /* failed: the trainer cannot load the model; the receiver fails once, the retry lands */
    CHECK(it_start(&s, "--slots", "1", "--models", models, "--webhook-url", hook, "--webhook-secret", "s3cret", NULL) == 0,
          "restart with a slot");
    pthread_mutex_lock(&peer.mu);
    peer.fail_first = 1;
    pthread_mutex_unlock(&peer.mu);
    snprintf(body, sizeof body, "{\"model\": \"broken\", \"training_file\": \"%s\", \"hyperparameters\": {\"max_steps\": 2, "
             "\"context_length\": 16}}", file);
    r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    it_str(&r, "id", job, sizeof job);
    it_free(&r);
    CHECK(it_wait_status(&s, job, "failed|succeeded", 60, st, sizeof st) == 0 && !strcmp(st, "failed"), "broken model fails: %s", st);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
    r = it_get(&s, path);
    json_t *j = it_json(&r);
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    CHECK(msg && strlen(msg) > 10, "failed job carries the trainer's error: %s", msg ? msg : "null");
    json_decref(j);
    it_free(&r);
    CHECK(it_healthy(&s), "server serves after a failed trainer");
    CHECK(wait_posts(3, 20) == 0, "failed delivery after a retry (%d)", it_peer_count(&peer));
    check_delivery(2, "job.failed", job);

    /* succeeded, on the real model when it is here */
    if (shared) {
        snprintf(body, sizeof body, "{\"model\": \"stories260K\", \"training_file\": \"%s\", \"hyperparameters\": "
                 "{\"max_steps\": 2, \"context_length\": 32}}", file);
        r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
        it_str(&r, "id", job, sizeof job);
        it_free(&r);
        CHECK(it_wait_status(&s, job, "failed|succeeded", 60, st, sizeof st) == 0 && !strcmp(st, "succeeded"), "job: %s", st);
        CHECK(wait_posts(4, 10) == 0, "succeeded delivery");
        check_delivery(3, "job.succeeded", job);
    } else {
        fprintf(stderr, "note: ../shared absent: the job.succeeded delivery is not checked\n");
    }
    it_stop(&s, SIGTERM);

    check_internal_refused(hook, models, ds);
    free(ds);
    it_peer_stop(&peer);
    it_cleanup(&s);
    return check_done("test_server_webhook");
}
