/* test_server_lemo.c: a LeMo job over HTTP, as a user would drive it: method.type "lemo" on
 * stories260K (5 layers: the default schedule keeps layers 0 and 4 dense), the dry run prices
 * it (kept fractions), the job trains and succeeds, its progress carries kept_fraction (the
 * dashboard's chart), the job object shows the resolved LeMo settings, the adapter downloads;
 * bad LeMo fields are 400s naming the field, and what is not built yet (predictor scores,
 * keep "auto") is refused saying so. Needs ../shared/models/stories260K. */
#include "itest.h"

static ITServer s;

static void expect_400(const char *what, const char *body, const char *param) {
    ITResp r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    char p[128] = "";
    it_err_field(&r, "param", p, sizeof p);
    CHECK(r.status == 400 && !strcmp(p, param), "%s: %ld, param '%s' (want '%s'): %.300s", what, r.status, p, param,
          r.body);
    it_free(&r);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *models = it_shared_models();
    if (!models) SKIP("../shared/models/stories260K is not here (set LEMO_SHARED)");
    it_tempdir(&s);
    if (it_start(&s, "--models", models, "--slots", "1", NULL)) { CHECK(0, "server start"); return check_done("lemo"); }
    char train[64];
    char *ds = it_story_jsonl(40);
    CHECK(it_upload_ok(&s, "train.jsonl", ds, train, sizeof train) == 0, "upload");
    free(ds);
    char body[1024];
#define LEMO_JOB(lemo, hp)                                                                                          \
    (snprintf(body, sizeof body, "{\"model\": \"stories260K\", \"training_file\": \"%s\", \"method\": {\"type\": " \
              "\"lemo\", \"lemo\": {\"hyperparameters\": %s%s%s}}}", train, hp, *(lemo) ? ", " : "", lemo),        \
     body)

    // the dry run prices LeMo: the kept share of each layer
    ITResp r = it_post_json(&s, "/v1/fine_tuning/jobs?dry_run=true",
                            LEMO_JOB("\"scores\": \"random\", \"block\": 32", "{\"max_steps\": 4, \"context_length\": 256}"));
    json_t *est = it_json(&r);
    json_t *kf = json_object_get(json_object_get(est, "lemo"), "kept_fraction");
    CHECK(r.status == 200 && json_array_size(kf) == 5 && json_real_value(json_array_get(kf, 0)) == 1.0 &&
              json_real_value(json_array_get(kf, 1)) == 0.375 && json_real_value(json_array_get(kf, 4)) == 1.0,
          "dry run with LeMo: %ld %.400s", r.status, r.body);
    json_decref(est);
    it_free(&r);

    // bad fields name themselves; what is not built yet says so
    expect_400("keep out of range", LEMO_JOB("\"keep\": 1.5", "{\"context_length\": 256}"), "method.lemo.keep");
    expect_400("keep per layer, wrong count", LEMO_JOB("\"keep\": [1, 0.5]", "{\"context_length\": 256}"), "method.lemo.keep");
    expect_400("unknown scores", LEMO_JOB("\"scores\": \"magic\"", "{\"context_length\": 256}"), "method.lemo.scores");
    expect_400("predictor scores", LEMO_JOB("\"scores\": \"predictor\"", "{\"context_length\": 256}"), "method.lemo.scores");
    expect_400("keep auto", LEMO_JOB("\"keep\": \"auto\"", "{\"context_length\": 256}"), "method.lemo.keep");
    expect_400("block", LEMO_JOB("\"block\": 48", "{\"context_length\": 256}"), "method.lemo.block");
    expect_400("dense layer out of range", LEMO_JOB("\"dense_layers\": [7]", "{\"context_length\": 256}"),
               "method.lemo.dense_layers");
    expect_400("unknown key", LEMO_JOB("\"ratio\": 0.4", "{\"context_length\": 256}"), "method.lemo.ratio");
    expect_400("context not whole blocks", LEMO_JOB("", "{\"context_length\": 200}"), "hyperparameters.context_length");

    // a LeMo job trains, says what it kept, and serves its adapter
    r = it_post_json(&s, "/v1/fine_tuning/jobs",
                     LEMO_JOB("\"scores\": \"exact\", \"block\": 32", "{\"max_steps\": 4, \"context_length\": 256}"));
    CHECK(r.status == 200, "create: %ld %.300s", r.status, r.body);
    char job[64], st[32], path[160];
    it_str(&r, "id", job, sizeof job);
    it_free(&r);
    CHECK(it_wait_status(&s, job, "succeeded|failed|cancelled", 120, st, sizeof st) == 0 && !strcmp(st, "succeeded"),
          "the LeMo job: %s", st);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
    r = it_get(&s, path);
    json_t *j = it_json(&r);
    json_t *m = json_object_get(j, "method"), *ml = json_object_get(m, "lemo");
    kf = json_object_get(json_object_get(j, "progress"), "kept_fraction");
    CHECK(!strcmp(json_string_value(json_object_get(m, "type")) ?: "", "lemo") &&
              !strcmp(json_string_value(json_object_get(ml, "scores")) ?: "", "exact") &&
              json_integer_value(json_object_get(ml, "block")) == 32 && json_real_value(json_object_get(ml, "keep")) == 0.4 &&
              json_is_object(json_object_get(ml, "hyperparameters")),
          "the job shows its LeMo settings: %.500s", r.body);
    CHECK(json_array_size(kf) == 5 && json_real_value(json_array_get(kf, 2)) == 0.375 &&
              json_real_value(json_array_get(kf, 0)) == 1.0,
          "progress.kept_fraction: %.500s", r.body);
    json_decref(j);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter/adapter_model.safetensors", job);
    r = it_get(&s, path);
    CHECK(r.status == 200 && r.len > 1000, "the adapter: %ld, %zu bytes", r.status, r.len);
    it_free(&r);

    CHECK(it_healthy(&s), "healthy at the end");
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    return check_done("test_server_lemo");
}
