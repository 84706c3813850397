/* test_server_results.c: what a finished job leaves, on the real stories260K model (6 steps):
 *   - metrics events in OpenAI's shape: every step with train_loss and
 *     train_mean_token_accuracy in [0, 1], evals with valid_loss, valid_mean_token_accuracy
 *     and (the eval covering the whole validation file) full_valid_loss;
 *   - checkpoints whose metrics carry the same fields;
 *   - result_files: one fine-tune-results file whose content is the CSV of the step metrics
 *     (OpenAI's columns, one row per step, the numbers of the step events);
 *   - DELETE /v1/models/ft:...: 409 while an unfinished job's config names the job's files
 *     (set in the database while the server is down), then 200 {"deleted": true}: the adapter
 *     and checkpoints are gone from disk and from the API, the job stays with
 *     fine_tuned_model null, a second delete is a 404. */
#include "itest.h"

#include <math.h>
#include <sqlite3.h>

static ITServer s;

static json_t *get_json(const char *path, long *status) {
    ITResp r = it_get(&s, path);
    json_t *j = it_json(&r);
    *status = r.status;
    it_free(&r);
    return j;
}

static int in01(json_t *v) { return json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) <= 1; }

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *models = it_shared_models();
    if (!models) SKIP("../shared/models/stories260K is not here (set LEMO_SHARED)");
    it_tempdir(&s);
    if (it_start(&s, "--models", models, "--slots", "1", NULL)) { CHECK(0, "server start"); return check_done("results"); }
    char train[64], valid[64];
    char *ds = it_story_jsonl(30), *vs = it_story_jsonl(4);
    CHECK(it_upload_ok(&s, "train.jsonl", ds, train, sizeof train) == 0, "upload train");
    CHECK(it_upload_ok(&s, "valid.jsonl", vs, valid, sizeof valid) == 0, "upload valid");
    free(ds), free(vs);
    char body[1024];
    snprintf(body, sizeof body, "{\"model\": \"stories260K\", \"training_file\": \"%s\", \"validation_file\": \"%s\", "
             "\"hyperparameters\": {\"max_steps\": 6, \"context_length\": 64, \"checkpoint_every\": 3, "
             "\"eval_every\": 3, \"lora_r\": 4, \"learning_rate\": 0.01}}", train, valid);
    ITResp r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    char job[64], st[32];
    it_str(&r, "id", job, sizeof job);
    CHECK(r.status == 200, "create: %ld %.300s", r.status, r.body);
    it_free(&r);
    CHECK(it_wait_status(&s, job, "succeeded|failed|cancelled", 120, st, sizeof st) == 0 && !strcmp(st, "succeeded"),
          "job succeeded: %s", st);

    /* metrics events, oldest first */
    char path[512];
    long status;
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?order=asc&limit=1000", job);
    json_t *ev = get_json(path, &status);
    double step_loss[7], step_acc[7];
    int n_steps = 0, n_evals = 0, n_full = 0;
    for (int i = 0; i < 7; i++) step_loss[i] = step_acc[i] = NAN;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(ev, "data"), i, e) {
        if (strcmp(json_string_value(json_object_get(e, "type")) ?: "", "metrics")) continue;
        json_t *d = json_object_get(e, "data");
        CHECK(!strcmp(json_string_value(json_object_get(e, "object")) ?: "", "fine_tuning.job.event"), "event object");
        int step = (int)json_integer_value(json_object_get(d, "step"));
        if (json_object_get(d, "valid_loss")) {
            n_evals++;
            CHECK(json_is_number(json_object_get(d, "valid_loss")) && in01(json_object_get(d, "valid_mean_token_accuracy")),
                  "eval metrics: %s", json_dumps(d, JSON_COMPACT));
            n_full += json_is_number(json_object_get(d, "full_valid_loss")) &&
                      in01(json_object_get(d, "full_valid_mean_token_accuracy"));
        } else {
            n_steps++;
            CHECK(step >= 1 && step <= 6 && json_is_number(json_object_get(d, "train_loss")) &&
                      in01(json_object_get(d, "train_mean_token_accuracy")),
                  "step metrics in OpenAI's shape: %s", json_dumps(d, JSON_COMPACT));
            if (step >= 1 && step <= 6) {
                step_loss[step] = json_number_value(json_object_get(d, "train_loss"));
                step_acc[step] = json_number_value(json_object_get(d, "train_mean_token_accuracy"));
            }
        }
    }
    json_decref(ev);
    CHECK(n_steps == 6, "6 step metrics events, got %d", n_steps);
    CHECK(n_evals >= 3 && n_full == n_evals, "evals at 0, 3 and 6, all over the whole validation file: %d (%d full)",
          n_evals, n_full);

    /* checkpoints carry the same metrics */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/checkpoints", job);
    json_t *ck = get_json(path, &status);
    json_t *c0 = json_array_get(json_object_get(ck, "data"), 0);
    json_t *m = json_object_get(c0, "metrics");
    CHECK(json_array_size(json_object_get(ck, "data")) >= 1 && json_is_number(json_object_get(m, "train_loss")) &&
              in01(json_object_get(m, "train_mean_token_accuracy")) && json_is_number(json_object_get(m, "valid_loss")) &&
              in01(json_object_get(m, "valid_mean_token_accuracy")) && json_is_number(json_object_get(m, "full_valid_loss")),
          "checkpoint metrics: %s", json_dumps(m, JSON_COMPACT));
    json_decref(ck);

    /* the results file */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
    json_t *j = get_json(path, &status);
    const char *rf = json_string_value(json_array_get(json_object_get(j, "result_files"), 0));
    char results[64], ft[400];
    snprintf(results, sizeof results, "%s", rf ? rf : "");
    snprintf(ft, sizeof ft, "%s", json_string_value(json_object_get(j, "fine_tuned_model")) ?: "");
    CHECK(json_array_size(json_object_get(j, "result_files")) == 1 && !strncmp(results, "file-", 5), "result_files: %s",
          results);
    json_decref(j);
    snprintf(path, sizeof path, "/v1/files/%s", results);
    json_t *fo = get_json(path, &status);
    CHECK(status == 200 && !strcmp(json_string_value(json_object_get(fo, "purpose")) ?: "", "fine-tune-results"),
          "results file object: purpose fine-tune-results");
    json_decref(fo);
    snprintf(path, sizeof path, "/v1/files/%s/content", results);
    r = it_get(&s, path);
    CHECK(r.status == 200 && strstr(r.headers, "text/csv"), "results content: %ld", r.status);
    const char *hdr = "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n";
    CHECK(r.body && !strncmp(r.body, hdr, strlen(hdr)), "CSV header: %.100s", r.body ? r.body : "");
    int rows = 0;
    for (char *save = NULL, *line = r.body ? strtok_r(r.body + strlen(hdr), "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        int step;
        double tl, ta;
        rows++;
        CHECK(sscanf(line, "%d,%lf,%lf", &step, &tl, &ta) == 3 && step == rows && fabs(tl - step_loss[step]) < 1e-5 &&
                  fabs(ta - step_acc[step]) < 1e-5,
              "CSV row %d: %s", rows, line);
        if (step == 3 || step == 6) {
            int commas = 0;
            for (char *c = line; *c; c++) commas += *c == ',';
            CHECK(commas == 4 && line[strlen(line) - 1] != ',', "step %d has its eval: %s", step, line);
        }
    }
    CHECK(rows == 6, "6 CSV rows, got %d", rows);
    it_free(&r);
    r = it_post_json(&s, "/v1/fine_tuning/jobs?force=true", (snprintf(body, sizeof body,
                     "{\"model\": \"stories260K\", \"training_file\": \"%s\"}", results), body));
    CHECK(r.status == 400 && strstr(r.body, "training_file"), "a results file is no training file: %ld", r.status);
    it_free(&r);

    /* a queued job whose config names this job's checkpoint: the model is in use */
    it_stop(&s, SIGTERM);
    CHECK(it_start(&s, "--models", models, "--slots", "0", NULL) == 0, "restart without slots");
    snprintf(body, sizeof body, "{\"model\": \"stories260K\", \"training_file\": \"%s\", \"hyperparameters\": "
             "{\"max_steps\": 2, \"context_length\": 64}}", train);
    r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    char user[64];
    it_str(&r, "id", user, sizeof user);
    it_free(&r);
    it_stop(&s, SIGTERM);
    char dbp[400], sql[1024];
    snprintf(dbp, sizeof dbp, "%s/lemo.db", s.data);
    sqlite3 *db = NULL;
    snprintf(sql, sizeof sql, "UPDATE jobs SET config=json_set(config,'$.resume_from','%s/jobs/%s/checkpoints/step-3') "
             "WHERE id='%s'", s.data, job, user);
    CHECK(sqlite3_open(dbp, &db) == SQLITE_OK && sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK &&
              sqlite3_changes(db) == 1, "point the queued job at the model's checkpoint");
    sqlite3_close(db);
    CHECK(it_start(&s, "--models", models, "--slots", "0", NULL) == 0, "restart");
    snprintf(path, sizeof path, "/v1/models/%s", ft);
    r = it_req(&s, "DELETE", path, NULL, NULL, 0);
    CHECK(it_is_error(&r, 409, "model", "model_in_use", NULL), "in use: %ld %.300s", r.status, r.body);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", user);
    r = it_post_json(&s, path, NULL);
    it_free(&r);

    /* now it goes */
    snprintf(path, sizeof path, "/v1/models/%s", ft);
    r = it_req(&s, "DELETE", path, NULL, NULL, 0);
    j = it_json(&r);
    CHECK(r.status == 200 && !strcmp(json_string_value(json_object_get(j, "id")) ?: "", ft) &&
              !strcmp(json_string_value(json_object_get(j, "object")) ?: "", "model") &&
              json_is_true(json_object_get(j, "deleted")),
          "delete: %ld %.300s", r.status, r.body);
    json_decref(j);
    it_free(&r);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/jobs/%s/adapter", s.data, job);
    CHECK(access(dir, F_OK) != 0, "the adapter folder is gone");
    snprintf(dir, sizeof dir, "%s/jobs/%s/checkpoints", s.data, job);
    CHECK(access(dir, F_OK) != 0, "the checkpoints folder is gone");
    j = get_json(path, &status);
    CHECK(status == 404, "GET the deleted model: %ld", status);
    json_decref(j);
    r = it_req(&s, "DELETE", path, NULL, NULL, 0);
    CHECK(it_is_error(&r, 404, "id", "not_found", NULL), "delete again: %ld", r.status);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
    j = get_json(path, &status);
    CHECK(status == 200 && !strcmp(json_string_value(json_object_get(j, "status")) ?: "", "succeeded") &&
              json_is_null(json_object_get(j, "fine_tuned_model")),
          "the job stays, without its model");
    json_decref(j);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/checkpoints", job);
    ck = get_json(path, &status);
    CHECK(status == 200 && json_array_size(json_object_get(ck, "data")) == 0, "no checkpoints listed");
    json_decref(ck);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter", job);
    r = it_get(&s, path);
    CHECK(r.status == 404 && strstr(r.body, "adapter_not_ready"), "no adapter: %ld", r.status);
    it_free(&r);
    ITResp ml = it_get(&s, "/v1/models");
    CHECK(ml.status == 200 && !strstr(ml.body, ft), "the model list no longer has it");
    it_free(&ml);
    snprintf(path, sizeof path, "/v1/files/%s/content", results);
    r = it_get(&s, path);
    CHECK(r.status == 200, "the results file stays: %ld", r.status);
    it_free(&r);
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    return check_done("results");
}
