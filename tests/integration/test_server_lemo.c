/* test_server_lemo.c: a LeMo job over HTTP, as a user would drive it: method.type "lemo" on
 * stories260K (5 layers: the default schedule keeps layers 0 and 4 dense), the dry run prices
 * it (kept fractions), the job trains and succeeds, its progress carries kept_fraction (the
 * dashboard's chart), the job object shows the resolved LeMo settings, the adapter downloads;
 * bad LeMo fields are 400s naming the field.
 * Predictors: the first predictor-scored job on a model without them prepares them as its
 * first phase (events say so, with the recall), trains with keep "auto" and serves its
 * adapter; GET /v1/models/{id} then shows them ready; a second job reuses them without
 * preparing; POST /v1/models/{id}/lemo prepares anew as a job of its own (no adapter); a
 * server killed -9 in the middle of a preparation restarts it after the restart, leaves no
 * partial folder, and the job completes. Needs ../shared/models/stories260K. */
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

/* The events of job as one text, a line each. */
static char *job_events(const char *job) {
    char path[160];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?limit=1000&order=asc", job);
    ITResp r = it_get(&s, path);
    json_t *j = it_json(&r), *x;
    size_t i, n = 0, cap = 1 << 16;
    char *out = calloc(1, cap);
    json_array_foreach(json_object_get(j, "data"), i, x) {
        const char *m = json_string_value(json_object_get(x, "message"));
        if (m && n + strlen(m) + 2 < cap) n += (size_t)snprintf(out + n, cap - n, "%s\n", m);
    }
    json_decref(j);
    it_free(&r);
    return out;
}

/* GET /v1/models/stories260K's lemo object (a new reference). */
static json_t *model_lemo(void) {
    ITResp r = it_get(&s, "/v1/models/stories260K");
    json_t *j = it_json(&r);
    json_t *l = json_incref(json_object_get(j, "lemo"));
    json_decref(j);
    it_free(&r);
    return l;
}

static void predictor_checks(const char *models, const char *train, char *body, size_t cap) {
    char job[64], st[32], path[200];
    json_t *l = model_lemo();
    CHECK(l && !strcmp(json_string_value(json_object_get(l, "status")) ?: "", "none"),
          "no predictor before the first job: %s", json_string_value(json_object_get(l, "status")));
    json_decref(l);
    // the dry run prices a predictor job before its predictor exists, and says so
    snprintf(body, cap, "{\"model\": \"stories260K\", \"training_file\": \"%s\", \"method\": {\"type\": \"lemo\", "
             "\"lemo\": {\"block\": 32, \"keep\": \"auto\", \"prepare\": {\"steps\": 60}, \"hyperparameters\": "
             "{\"max_steps\": 3, \"context_length\": 256}}}}", train);
    ITResp r = it_post_json(&s, "/v1/fine_tuning/jobs?dry_run=true", body);
    json_t *est = it_json(&r);
    json_t *el = json_object_get(est, "lemo");
    CHECK(r.status == 200 && !strcmp(json_string_value(json_object_get(el, "predictor")) ?: "", "pending") &&
              !strcmp(json_string_value(json_object_get(el, "scores")) ?: "", "predictor") &&
              json_array_size(json_object_get(el, "kept_fraction")) == 5,
          "dry run of a job whose predictor is not prepared yet: %ld %.400s", r.status, r.body);
    json_decref(est);
    it_free(&r);

    // the first job prepares, then trains on the calibrated schedule
    r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    CHECK(r.status == 200, "create a predictor job: %ld %.300s", r.status, r.body);
    it_str(&r, "id", job, sizeof job);
    CHECK(!strstr(r.body, s.data), "the job object names no server path: %.600s", r.body);
    it_free(&r);
    CHECK(it_wait_status(&s, job, "succeeded|failed|cancelled", 180, st, sizeof st) == 0 && !strcmp(st, "succeeded"),
          "the first predictor job: %s", st);
    char *ev = job_events(job);
    CHECK(strstr(ev, "has no predictors") && strstr(ev, "held-out recall") && strstr(ev, "are ready") &&
              strstr(ev, "its calibrated schedule") && strstr(ev, "Training started"),
          "the first job's events say it prepared, with the recall, then trained: %.3000s", ev);
    CHECK(!strstr(ev, s.data), "no server path in the events");
    free(ev);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?limit=1000", job);
    r = it_get(&s, path);  // their data too: the trainer's lines name files by server paths
    CHECK(r.status == 200 && strstr(r.body, "checkpoints/step-") && !strstr(r.body, s.data) && !strstr(r.body, models),
          "the events' data name no server folder");
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
    r = it_get(&s, path);
    json_t *jo = it_json(&r);
    json_t *lpp = json_object_get(json_object_get(jo, "progress"), "lemo_prepare");
    CHECK(!strcmp(json_string_value(json_object_get(lpp, "stage")) ?: "", "done") &&
              json_integer_value(json_object_get(lpp, "step")) == 60 && json_is_number(json_object_get(lpp, "recall")),
          "the job's progress keeps its preparation after training: %.800s", r.body);
    json_decref(jo);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter/adapter_model.safetensors", job);
    r = it_get(&s, path);
    CHECK(r.status == 200 && r.len > 1000, "the predictor job's adapter: %ld, %zu bytes", r.status, r.len);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter/adapter_config.json", job);
    r = it_get(&s, path);
    json_t *ac = it_json(&r);
    CHECK(r.status == 200 && !strcmp(json_string_value(json_object_get(ac, "base_model_name_or_path")) ?: "", "stories260K"),
          "the adapter names its base model by id, not by a server path: %.300s", r.body);
    json_decref(ac);
    it_free(&r);
    r = it_get(&s, "/v1/models/stories260K");
    CHECK(r.status == 200 && !strstr(r.body, models), "the model object names no server path: %.300s", r.body);
    it_free(&r);
    l = model_lemo();
    json_t *rc = json_object_get(l, "recall"), *sc = json_object_get(l, "schedule");
    CHECK(!strcmp(json_string_value(json_object_get(l, "status")) ?: "", "ready") &&
              json_integer_value(json_object_get(l, "block")) == 32 &&
              json_integer_value(json_object_get(l, "trained_context")) == 256 && json_is_number(rc) &&
              json_number_value(rc) >= 0 && json_number_value(rc) <= 1 && json_array_size(sc) == 5,
          "the model shows its predictor: %s", l ? json_dumps(l, JSON_COMPACT) : "(none)");
    json_decref(l);

    // the next job reuses it
    char job2[64];
    r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    it_str(&r, "id", job2, sizeof job2);
    it_free(&r);
    CHECK(it_wait_status(&s, job2, "succeeded|failed|cancelled", 120, st, sizeof st) == 0 && !strcmp(st, "succeeded"),
          "the second predictor job: %s", st);
    ev = job_events(job2);
    CHECK(!strstr(ev, "has no predictors") && !strstr(ev, "training the predictors") && strstr(ev, "the predictor of stories260K"),
          "the second job reuses the predictor: %.2000s", ev);
    free(ev);

    // POST /v1/models/{id}/lemo: its bad input, then a preparation job of its own
    r = it_post_json(&s, "/v1/models/stories260K/lemo", "{\"context_length\": 256}");
    char p[96] = "";
    it_err_field(&r, "param", p, sizeof p);
    CHECK(r.status == 400 && !strcmp(p, "training_file"), "prepare without a file: %ld %s", r.status, p);
    it_free(&r);
    snprintf(body, cap, "{\"training_file\": \"%s\", \"epochs\": 2}", train);
    r = it_post_json(&s, "/v1/models/stories260K/lemo", body);
    it_err_field(&r, "param", p, sizeof p);
    CHECK(r.status == 400 && !strcmp(p, "epochs"), "prepare with an unknown field: %ld %s", r.status, p);
    it_free(&r);
    r = it_post_json(&s, "/v1/models/no-such-model/lemo", body);
    CHECK(r.status == 404, "prepare for a model that is not there: %ld", r.status);
    it_free(&r);
    snprintf(body, cap, "{\"training_file\": \"%s\", \"block\": 32, \"context_length\": 256, \"steps\": 0}", train);
    r = it_post_json(&s, "/v1/models/stories260K/lemo", body);
    it_err_field(&r, "param", p, sizeof p);
    CHECK(r.status == 400 && !strcmp(p, "method.lemo.prepare.steps"), "prepare with 0 steps: %ld %s", r.status, p);
    it_free(&r);
    snprintf(body, cap, "{\"training_file\": \"%s\", \"block\": 64, \"context_length\": 256, \"steps\": 40}", train);
    r = it_post_json(&s, "/v1/models/stories260K/lemo", body);
    CHECK(r.status == 200, "POST /v1/models/stories260K/lemo: %ld %.300s", r.status, r.body);
    it_str(&r, "id", job, sizeof job);
    it_free(&r);
    CHECK(it_wait_status(&s, job, "succeeded|failed|cancelled", 120, st, sizeof st) == 0 && !strcmp(st, "succeeded"),
          "the preparation job: %s", st);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
    r = it_get(&s, path);
    json_t *j = it_json(&r);
    json_t *lp = json_object_get(json_object_get(j, "progress"), "lemo_prepare");
    CHECK(json_is_null(json_object_get(j, "fine_tuned_model")) && json_integer_value(json_object_get(lp, "step")) == 40 &&
              json_is_number(json_object_get(lp, "recall")),
          "the preparation job: no model, its progress: %.600s", r.body);
    json_decref(j);
    it_free(&r);
    l = model_lemo();
    json_t *bl = json_object_get(l, "blocks");
    CHECK(json_integer_value(json_object_get(l, "block")) == 64 && json_array_size(bl) == 2,
          "both blocks listed, the default one shown: %s", l ? json_dumps(l, JSON_COMPACT) : "(none)");
    json_decref(l);

    // kill -9 of the server in the middle of a preparation: after the restart it prepares
    // again from nothing and the job completes
    snprintf(body, cap, "{\"training_file\": \"%s\", \"block\": 128, \"context_length\": 512, \"steps\": 1500}", train);
    r = it_post_json(&s, "/v1/models/stories260K/lemo", body);
    it_str(&r, "id", job, sizeof job);
    it_free(&r);
    double t0 = it_now();
    int mid = 0;
    while (it_now() - t0 < 60 && !mid) {
        snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
        r = it_get(&s, path);
        j = it_json(&r);
        lp = json_object_get(json_object_get(j, "progress"), "lemo_prepare");
        mid = json_integer_value(json_object_get(lp, "step")) >= 10;
        json_decref(j);
        it_free(&r);
        if (!mid) usleep(50000);
    }
    l = model_lemo();
    CHECK(mid && !strcmp(json_string_value(json_object_get(l, "status")) ?: "", "preparing") &&
              !strcmp(json_string_value(json_object_get(l, "job_id")) ?: "", job),
          "the model shows the preparation under way: %s", l ? json_dumps(l, JSON_COMPACT) : "(none)");
    json_decref(l);
    it_stop(&s, SIGKILL);
    char partial[400];
    snprintf(partial, sizeof partial, "%s/lemo/stories260K/b128.partial", s.data);
    t0 = it_now();
    while (it_now() - t0 < 30 && it_process_with("b128.partial")) usleep(20000);  // a loaded machine reaps slowly
    CHECK(!it_process_with("b128.partial"), "the preparation died with the server");
    CHECK(it_start(&s, "--models", models, "--slots", "1", NULL) == 0, "restart after the kill");
    CHECK(it_wait_status(&s, job, "succeeded|failed|cancelled", 240, st, sizeof st) == 0 && !strcmp(st, "succeeded"),
          "the preparation killed with the server completes after the restart: %s", st);
    struct stat sb;
    CHECK(stat(partial, &sb) != 0, "no partial folder left");
    l = model_lemo();
    bl = json_object_get(l, "blocks");
    CHECK(json_array_size(bl) == 3, "the block-128 predictor is in: %s", l ? json_dumps(l, JSON_COMPACT) : "(none)");
    json_decref(l);
    ev = job_events(job);
    CHECK(strstr(ev, "requeued") && strstr(ev, "are ready"), "the events say it was requeued and finished: %.3000s", ev);
    free(ev);
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
    expect_400("keep auto without predictor scores", LEMO_JOB("\"keep\": \"auto\", \"scores\": \"exact\"",
               "{\"context_length\": 256}"), "method.lemo.keep");
    expect_400("prepare without predictor scores", LEMO_JOB("\"scores\": \"random\", \"prepare\": {}",
               "{\"context_length\": 256}"), "method.lemo.prepare");
    expect_400("prepare steps", LEMO_JOB("\"prepare\": {\"steps\": 0}", "{\"context_length\": 256}"),
               "method.lemo.prepare.steps");
    expect_400("prepare keep_mean", LEMO_JOB("\"prepare\": {\"keep_mean\": 0.05}", "{\"context_length\": 256}"),
               "method.lemo.prepare.keep_mean");
    expect_400("prepare unknown", LEMO_JOB("\"prepare\": {\"epochs\": 3}", "{\"context_length\": 256}"),
               "method.lemo.prepare.epochs");
    expect_400("prepare only is the model route's", LEMO_JOB("\"prepare\": {\"only\": true}", "{\"context_length\": 256}"),
               "method.lemo.prepare.only");
    expect_400("prepare context not whole blocks", LEMO_JOB("\"block\": 64, \"prepare\": {\"context_length\": 200}",
               "{\"context_length\": 256}"), "method.lemo.prepare.context_length");
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

    predictor_checks(models, train, body, sizeof body);
    CHECK(it_healthy(&s), "healthy at the end");
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    return check_done("test_server_lemo");
}
