/* test_server_errors.c: bad requests of every kind get the right status and an OpenAI-shaped
 * error naming the field, and the server stays up (GET /healthz after each): bad JSON, wrong
 * types, unknown fields, out-of-range hyperparameters, unknown model/files, oversized bodies
 * (413), path-traversal ids, unknown routes and methods, bad cursors, wrong job states. Runs
 * with --slots 0 (nothing trains) and a model folder holding only a config.json. */
#include "itest.h"

static ITServer s;

/* Sends one request and checks status, error shape and param. */
static void expect(const char *what, const char *method, const char *path, const char *body, long status,
                   const char *param) {
    const char *h[] = {"Content-Type: application/json", NULL};
    ITResp r = it_req(&s, method, path, h, body, body ? (long)strlen(body) : 0);
    CHECK(r.status == status, "%s: status %ld, want %ld: %.300s", what, r.status, status, r.body);
    json_t *j = it_json(&r);
    json_t *err = json_object_get(j, "error");
    CHECK(json_is_object(err) && json_is_string(json_object_get(err, "message")) &&
              json_is_string(json_object_get(err, "type")) && json_object_get(err, "param") &&
              json_object_get(err, "code"),
          "%s: error shape: %.300s", what, r.body);
    if (param) {
        const char *p = json_string_value(json_object_get(err, "param"));
        CHECK(p && !strcmp(p, param), "%s: param '%s', want '%s'", what, p ? p : "null", param);
    }
    json_decref(j);
    it_free(&r);
    CHECK(it_healthy(&s), "%s: server healthy afterwards", what);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    it_tempdir(&s);
    char models[400];
    it_config_only_model(&s, models, sizeof models);
    if (it_start(&s, "--slots", "0", "--models", models, "--max-body-bytes", "65536", NULL)) {
        CHECK(0, "server start");
        return check_done("errors");
    }
    char fid[64];
    char *ds = it_story_jsonl(4);
    CHECK(it_upload_ok(&s, "d.jsonl", ds, fid, sizeof fid) == 0, "upload");
    free(ds);
    char body[4096];
#define JOB(hp) (snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"hyperparameters\": %s}", fid, hp), body)

    /* a valid request first, so the ones below fail for their own reason */
    const char *h[] = {"Content-Type: application/json", NULL};
    JOB("{\"max_steps\": 3}");
    ITResp r = it_req(&s, "POST", "/v1/fine_tuning/jobs", h, body, (long)strlen(body));
    CHECK(r.status == 200, "valid job: %ld %s", r.status, r.body);
    char job[64];
    it_str(&r, "id", job, sizeof job);
    it_free(&r);

    expect("bad JSON", "POST", "/v1/fine_tuning/jobs", "{\"model\": ", 400, NULL);
    expect("not an object", "POST", "/v1/fine_tuning/jobs", "[1,2]", 400, NULL);
    expect("empty body", "POST", "/v1/fine_tuning/jobs", NULL, 400, NULL);
    expect("missing model", "POST", "/v1/fine_tuning/jobs", "{\"training_file\": \"file-x\"}", 400, "model");
    expect("model not a string", "POST", "/v1/fine_tuning/jobs", "{\"model\": 3}", 400, "model");
    snprintf(body, sizeof body, "{\"model\": \"nope\", \"training_file\": \"%s\"}", fid);
    expect("unknown model", "POST", "/v1/fine_tuning/jobs", body, 400, "model");
    snprintf(body, sizeof body, "{\"model\": \"../m1\", \"training_file\": \"%s\"}", fid);
    expect("model path traversal", "POST", "/v1/fine_tuning/jobs", body, 400, "model");
    expect("unknown training file", "POST", "/v1/fine_tuning/jobs", "{\"model\": \"m1\", \"training_file\": \"file-nope\"}", 400, "training_file");
    expect("training file traversal", "POST", "/v1/fine_tuning/jobs", "{\"model\": \"m1\", \"training_file\": \"../../etc/passwd\"}", 400, "training_file");
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"validation_file\": 5}", fid);
    expect("validation file type", "POST", "/v1/fine_tuning/jobs", body, 400, "validation_file");
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"colour\": \"red\"}", fid);
    expect("unknown top-level field", "POST", "/v1/fine_tuning/jobs", body, 400, "colour");
    expect("unknown hyperparameter", "POST", "/v1/fine_tuning/jobs", JOB("{\"lora_rank\": 8}"), 400, "hyperparameters.lora_rank");
    expect("hyperparameters not an object", "POST", "/v1/fine_tuning/jobs", JOB("[1]"), 400, "hyperparameters");
    expect("lora_r type", "POST", "/v1/fine_tuning/jobs", JOB("{\"lora_r\": \"eight\"}"), 400, "hyperparameters.lora_r");
    expect("lora_r range", "POST", "/v1/fine_tuning/jobs", JOB("{\"lora_r\": 0}"), 400, "hyperparameters.lora_r");
    expect("learning_rate range", "POST", "/v1/fine_tuning/jobs", JOB("{\"learning_rate\": -1}"), 400, "hyperparameters.learning_rate");
    expect("both lr forms", "POST", "/v1/fine_tuning/jobs", JOB("{\"learning_rate\": 0.001, \"learning_rate_multiplier\": 2}"), 400, NULL);
    expect("n_epochs and max_steps", "POST", "/v1/fine_tuning/jobs", JOB("{\"n_epochs\": 2, \"max_steps\": 5}"), 400, NULL);
    expect("context_length range", "POST", "/v1/fine_tuning/jobs", JOB("{\"context_length\": 1}"), 400, "hyperparameters.context_length");
    // beyond the model's 512 trained positions: RoPE scaling (or an explicit none) is asked for
    expect("context beyond the model", "POST", "/v1/fine_tuning/jobs", JOB("{\"context_length\": 2048}"), 400,
           "hyperparameters.context_length");
    {
        JOB("{\"context_length\": 2048}");
        ITResp rr = it_req(&s, "POST", "/v1/fine_tuning/jobs", h, body, (long)strlen(body));
        CHECK(strstr(rr.body, "\\\"factor\\\": 4") && strstr(rr.body, "512"), "the error suggests factor 4: %s", rr.body);
        it_free(&rr);
        const char *ok[] = {"{\"context_length\": 2048, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4}}",
                            "{\"context_length\": 2048, \"rope_scaling\": {\"type\": \"none\"}}"};
        for (int i = 0; i < 2; i++) {
            JOB(ok[i]);
            rr = it_req(&s, "POST", "/v1/fine_tuning/jobs", h, body, (long)strlen(body));
            CHECK(rr.status == 200, "%s: %ld %s", ok[i], rr.status, rr.body);
            char id[64] = "", path[128];
            it_str(&rr, "id", id, sizeof id);
            it_free(&rr);
            snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", id);  // it has done its part
            rr = it_req(&s, "POST", path, h, NULL, 0);
            it_free(&rr);
        }
    }
    // a job its own estimate says cannot fit this machine: refused with the estimate, unless forced
    {
        const char *huge = "{\"context_length\": 4194304, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 1024}, "
                           "\"memory\": \"keep\", \"target_modules\": \"all\"}";
        JOB(huge);
        ITResp rr = it_req(&s, "POST", "/v1/fine_tuning/jobs", h, body, (long)strlen(body));
        json_t *j = it_json(&rr), *err = json_object_get(j, "error");
        json_t *est = json_object_get(err, "estimate");
        CHECK(rr.status == 400 && !strcmp(json_string_value(json_object_get(err, "code")) ?: "", "job_does_not_fit") &&
                  !strcmp(json_string_value(json_object_get(err, "param")) ?: "", "hyperparameters.context_length") &&
                  json_is_false(json_object_get(est, "fits")) &&
                  json_integer_value(json_object_get(est, "max_context_length")) < 4194304 &&
                  strstr(json_string_value(json_object_get(err, "message")) ?: "", "force=true"),
              "a job that does not fit: %ld %.400s", rr.status, rr.body);
        json_decref(j);
        it_free(&rr);
        CHECK(it_healthy(&s), "healthy after the refusal");
        rr = it_req(&s, "POST", "/v1/fine_tuning/jobs?force=true", h, body, (long)strlen(body));
        CHECK(rr.status == 200, "forced: %ld %.300s", rr.status, rr.body);
        char id[64] = "", path[128];
        it_str(&rr, "id", id, sizeof id);
        it_free(&rr);
        snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", id);
        rr = it_req(&s, "POST", path, h, NULL, 0);
        it_free(&rr);
    }
    expect("rope none with a factor", "POST", "/v1/fine_tuning/jobs",
           JOB("{\"context_length\": 2048, \"rope_scaling\": {\"type\": \"none\", \"factor\": 2}}"), 400,
           "hyperparameters.rope_scaling");
    expect("batch_size float", "POST", "/v1/fine_tuning/jobs", JOB("{\"batch_size\": 1.5}"), 400, "hyperparameters.batch_size");
    expect("target_modules bad name", "POST", "/v1/fine_tuning/jobs", JOB("{\"target_modules\": [\"q_proj\", \"xx\"]}"), 400, "hyperparameters.target_modules");
    expect("target_modules empty", "POST", "/v1/fine_tuning/jobs", JOB("{\"target_modules\": []}"), 400, "hyperparameters.target_modules");
    expect("rope_scaling type", "POST", "/v1/fine_tuning/jobs", JOB("{\"rope_scaling\": 4}"), 400, "hyperparameters.rope_scaling");
    expect("rope_scaling bad kind", "POST", "/v1/fine_tuning/jobs", JOB("{\"rope_scaling\": {\"type\": \"weird\", \"factor\": 2}}"), 400, "hyperparameters.rope_scaling.type");
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"method\": {\"type\": \"dpo\"}}", fid);
    expect("unsupported method", "POST", "/v1/fine_tuning/jobs", body, 400, "method.type");
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"method\": {\"type\": \"supervised\", \"supervised\": {\"hyperparameters\": {\"n_epochs\": \"lots\"}}}}", fid);
    expect("method hyperparameter type", "POST", "/v1/fine_tuning/jobs", body, 400, "hyperparameters.n_epochs");
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"hyperparameters\": {\"lora_r\": 4}, "
             "\"method\": {\"type\": \"supervised\", \"supervised\": {\"hyperparameters\": {\"lora_r\": 8}}}}", fid);
    expect("top-level and method hyperparameters disagree", "POST", "/v1/fine_tuning/jobs", body, 400,
           "method.supervised.hyperparameters.lora_r");
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"seed\": \"x\"}", fid);
    expect("seed type", "POST", "/v1/fine_tuning/jobs", body, 400, "seed");
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"suffix\": \"a/b\"}", fid);
    expect("suffix chars", "POST", "/v1/fine_tuning/jobs", body, 400, "suffix");
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"metadata\": {\"k\": 1}}", fid);
    expect("metadata value type", "POST", "/v1/fine_tuning/jobs", body, 400, "metadata.k");

    /* n_epochs reads back as an integer where it is whole (OpenAI's clients type it so) */
    {
        JOB("{\"n_epochs\": 2}");
        ITResp rr = it_req(&s, "POST", "/v1/fine_tuning/jobs", h, body, (long)strlen(body));
        CHECK(rr.status == 200 && strstr(rr.body, "\"n_epochs\":2,"), "integer n_epochs: %.300s", rr.body);
        char id[64] = "", path[128];
        it_str(&rr, "id", id, sizeof id);
        it_free(&rr);
        snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", id);
        rr = it_req(&s, "POST", path, h, NULL, 0);
        it_free(&rr);
    }

    /* OpenAI's "auto" values and the method form are accepted */
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"method\": {\"type\": \"supervised\", "
             "\"supervised\": {\"hyperparameters\": {\"n_epochs\": \"auto\", \"batch_size\": \"auto\", "
             "\"learning_rate_multiplier\": 2}}}, \"suffix\": \"my-run\", \"metadata\": {\"team\": \"a\"}}", fid);
    r = it_req(&s, "POST", "/v1/fine_tuning/jobs", h, body, (long)strlen(body));
    json_t *jj = it_json(&r);
    json_t *lr = json_object_get(json_object_get(jj, "hyperparameters"), "learning_rate");
    CHECK(r.status == 200 && json_is_number(lr) && fabs(json_number_value(lr) - 4e-4) < 1e-12,
          "auto + multiplier: %ld %.400s", r.status, r.body);
    char job2[64];
    snprintf(job2, sizeof job2, "%s", json_string_value(json_object_get(jj, "id")) ?: "");
    json_decref(jj);
    it_free(&r);

    /* a body over --max-body-bytes: 413 (with and without Expect: 100-continue) */
    size_t big_n = 200000;
    char *big = malloc(big_n + 1);
    memset(big, ' ', big_n);
    big[0] = '{';
    big[big_n - 1] = '}';
    big[big_n] = 0;
    r = it_req(&s, "POST", "/v1/fine_tuning/jobs", h, big, (long)big_n);
    CHECK(r.status == 413, "huge body: %ld", r.status);
    it_free(&r);
    const char *h_noexpect[] = {"Content-Type: application/json", "Expect:", NULL};
    r = it_req(&s, "POST", "/v1/fine_tuning/jobs", h_noexpect, big, 70000);
    CHECK(r.status == 413, "body just over the limit: %ld", r.status);
    it_free(&r);
    r = it_req(&s, "POST", "/v1/files", h_noexpect, big, 70000);
    CHECK(r.status == 413, "a JSON import body over --max-body-bytes: %ld", r.status);
    it_free(&r);
    free(big);
    CHECK(it_healthy(&s), "healthy after 413s");

    /* ids that are not ids: 404, never a file access */
    expect("job traversal", "GET", "/v1/fine_tuning/jobs/..%2F..%2Fetc%2Fpasswd", NULL, 404, NULL);
    expect("job traversal raw", "GET", "/v1/fine_tuning/jobs/../../../etc/passwd", NULL, 404, NULL);
    expect("file traversal content", "GET", "/v1/files/..%2Flemo.db/content", NULL, 404, NULL);
    expect("unknown job", "GET", "/v1/fine_tuning/jobs/ftjob-nope", NULL, 404, "id");
    expect("unknown file", "GET", "/v1/files/file-nope", NULL, 404, "id");
    expect("wrong prefix", "GET", "/v1/files/ftjob-abc", NULL, 404, "id");
    expect("events of unknown job", "GET", "/v1/fine_tuning/jobs/ftjob-nope/events", NULL, 404, NULL);
    expect("stream of unknown job", "GET", "/v1/fine_tuning/jobs/ftjob-nope/events?stream=true", NULL, 404, NULL);
    char path[256];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter/..%%2F..%%2Flemo.db", job);
    expect("adapter file traversal", "GET", path, NULL, 404, NULL);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter/config.json", job);
    expect("adapter unknown file", "GET", path, NULL, 404, NULL);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter", job);
    expect("adapter before success", "GET", path, NULL, 404, NULL);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter?step=abc", job);
    expect("adapter bad step", "GET", path, NULL, 400, "step");
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter?step=7", job);
    expect("adapter missing step", "GET", path, NULL, 404, "step");
    expect("static traversal", "GET", "/../../etc/passwd", NULL, 404, NULL);
    expect("static hidden", "GET", "/.git/config", NULL, 404, NULL);
    expect("unknown /v1 route", "GET", "/v1/nothing", NULL, 404, NULL);
    expect("wrong method", "PUT", "/v1/files", "{}", 405, NULL);
    expect("wrong method on job", "DELETE", "/v1/fine_tuning/jobs/ftjob-x", NULL, 405, NULL);
    expect("bad limit", "GET", "/v1/fine_tuning/jobs?limit=0", NULL, 400, "limit");
    expect("bad limit text", "GET", "/v1/fine_tuning/jobs?limit=ten", NULL, 400, "limit");
    expect("bad cursor", "GET", "/v1/fine_tuning/jobs?after=ftjob-nope", NULL, 400, "after");
    expect("unknown model get", "GET", "/v1/models/nope", NULL, 404, NULL);

    /* job states: a queued job can be paused and cancelled, not resumed twice, not cancelled twice */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/resume", job);
    expect("resume a queued job", "POST", path, NULL, 409, NULL);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/pause", job);
    r = it_req(&s, "POST", path, NULL, NULL, 0);
    char st[32];
    it_str(&r, "status", st, sizeof st);
    CHECK(r.status == 200 && !strcmp(st, "paused"), "pause queued: %ld %s", r.status, st);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/resume", job);
    r = it_req(&s, "POST", path, NULL, NULL, 0);
    it_str(&r, "status", st, sizeof st);
    CHECK(r.status == 200 && !strcmp(st, "queued"), "resume paused: %ld %s", r.status, st);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", job);
    r = it_req(&s, "POST", path, NULL, NULL, 0);
    it_str(&r, "status", st, sizeof st);
    CHECK(r.status == 200 && !strcmp(st, "cancelled"), "cancel queued: %ld %s", r.status, st);
    it_free(&r);
    expect("cancel twice", "POST", path, NULL, 409, NULL);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/pause", job);
    expect("pause a cancelled job", "POST", path, NULL, 409, NULL);
    /* a file a live job uses cannot be deleted; once its jobs ended it can */
    snprintf(path, sizeof path, "/v1/files/%s", fid);
    expect("delete a file a queued job uses", "DELETE", path, NULL, 409, "id");
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", job2);
    r = it_req(&s, "POST", path, NULL, NULL, 0);
    CHECK(r.status == 200, "cancel the second job: %ld", r.status);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/files/%s", fid);
    r = it_req(&s, "DELETE", path, NULL, NULL, 0);
    CHECK(r.status == 200, "delete a file whose jobs ended: %ld %s", r.status, r.body);
    it_free(&r);

    /* /v1/models without any real model still answers; a models dir with none gives a hint */
    r = it_get(&s, "/v1/models");
    jj = it_json(&r);
    CHECK(r.status == 200 && json_array_size(json_object_get(jj, "data")) == 1, "models: %s", r.body);
    json_decref(jj);
    it_free(&r);
    char cfg[450];
    snprintf(cfg, sizeof cfg, "%s/m1/config.json", models);
    unlink(cfg);
    r = it_get(&s, "/v1/models");
    jj = it_json(&r);
    const char *hint = json_string_value(json_object_get(jj, "hint"));
    CHECK(hint && strstr(hint, "lemo init-model tiny ./models/tiny"), "hint without models: %s", r.body);
    json_decref(jj);
    it_free(&r);
    it_write_file(cfg, "{\"model_type\": \"llama\", \"lemo_random_init\": true}\n");
    r = it_get(&s, "/v1/models/m1");
    jj = it_json(&r);
    CHECK(r.status == 200 && json_is_true(json_object_get(jj, "random_init")), "random_init label: %s", r.body);
    json_decref(jj);
    it_free(&r);

    CHECK(it_healthy(&s), "healthy at the end");
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    return check_done("test_server_errors");
}
