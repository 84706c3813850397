/* test_server_crash.c: kill -9 of the server mid-job. The trainer dies with it
 * (PR_SET_PDEATHSIG); the restarted server finds the job left `running`, requeues it with an
 * event "resumed from step N" (its last checkpoint), and the job finishes with the same final
 * loss as the same job run without interruption (CPU training resumes bit-exactly). */
#include "itest.h"

static ITServer s;

static int create_job(const char *file, char *job, size_t cap) {
    char body[1024];
    snprintf(body, sizeof body,
             "{\"model\": \"stories260K\", \"training_file\": \"%s\", \"seed\": 7, \"hyperparameters\": "
             "{\"max_steps\": 16, \"context_length\": 64, \"checkpoint_every\": 4}}", file);
    ITResp r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    it_str(&r, "id", job, cap);
    int ok = r.status == 200 && job[0];
    if (!ok) fprintf(stderr, "create: %ld %s\n", r.status, r.body);
    it_free(&r);
    return ok ? 0 : -1;
}

/* The highest checkpoint step listed for the job (0 if none). */
static int listed_checkpoint(const char *job) {
    char path[200];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/checkpoints", job);
    ITResp r = it_get(&s, path);
    json_t *j = it_json(&r);
    int step = (int)json_integer_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "step_number"));
    json_decref(j);
    it_free(&r);
    return step;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *models = it_shared_models();
    if (!models) SKIP("../shared/models/stories260K is not here (set LEMO_SHARED)");
    it_tempdir(&s);
    if (it_start(&s, "--models", models, "--slots", "1", NULL)) { CHECK(0, "server start"); return check_done("crash"); }
    char file[64], st[32], a[64], b[64];
    char *ds = it_story_jsonl(40);
    CHECK(it_upload_ok(&s, "t.jsonl", ds, file, sizeof file) == 0, "upload");
    free(ds);

    /* the reference: one uninterrupted run */
    CHECK(create_job(file, a, sizeof a) == 0, "create reference job");
    CHECK(it_wait_status(&s, a, "succeeded|failed|cancelled", 120, st, sizeof st) == 0 && !strcmp(st, "succeeded"),
          "reference job: %s", st);
    double loss_a = it_progress(&s, a, "loss");
    CHECK(loss_a == loss_a, "reference loss %g", loss_a);

    /* the same job, its server killed after the first checkpoint */
    CHECK(create_job(file, b, sizeof b) == 0, "create job to crash");
    double t0 = it_now();
    int ck = 0;
    while (it_now() - t0 < 60 && (ck = listed_checkpoint(b)) < 4) usleep(20000);
    CHECK(ck >= 4, "a checkpoint exists before the crash (%d)", ck);
    int step_at_kill = (int)it_progress(&s, b, "step");
    it_stop(&s, SIGKILL);
    char needle[200];
    snprintf(needle, sizeof needle, "jobs/%s/config.json", b);
    t0 = it_now();
    while (it_now() - t0 < 5 && it_process_with(needle)) usleep(20000);
    CHECK(!it_process_with(needle), "the trainer died with the server");
    CHECK(step_at_kill < 16, "the crash came mid-job (step %d)", step_at_kill);

    CHECK(it_start(&s, "--models", models, "--slots", "1", NULL) == 0, "restart");
    CHECK(it_wait_status(&s, b, "succeeded|failed|cancelled", 120, st, sizeof st) == 0 && !strcmp(st, "succeeded"),
          "crashed job finished after the restart: %s", st);
    char path[200];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?limit=1000", b);
    ITResp r = it_get(&s, path);
    int disk_ck = 0;
    char *p = r.body ? strstr(r.body, "resumed from step ") : NULL;
    if (p) disk_ck = atoi(p + strlen("resumed from step "));
    CHECK(p && disk_ck >= ck && disk_ck % 4 == 0, "event 'resumed from step N' (N=%d, >= %d)", disk_ck, ck);
    it_free(&r);
    double loss_b = it_progress(&s, b, "loss");
    CHECK(loss_b == loss_a, "final loss after the crash %.9g == uninterrupted %.9g", loss_b, loss_a);
    CHECK((int)it_progress(&s, b, "step") == 16, "all 16 steps");
    CHECK(it_healthy(&s), "healthy");
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    return check_done("test_server_crash");
}
