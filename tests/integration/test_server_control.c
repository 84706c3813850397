/* test_server_control.c: controlling running jobs on stories260K: cancel (the trainer
 * checkpoints and the job ends cancelled), pause + resume (the job continues from the pause
 * checkpoint and finishes all its steps), and a trainer killed from outside (the job fails
 * with the reason, the server keeps serving). */
#include "itest.h"

static ITServer s;

static int create_job(const char *file, int steps, int ckpt, char *job, size_t cap) {
    char body[1024];
    snprintf(body, sizeof body,
             "{\"model\": \"stories260K\", \"training_file\": \"%s\", \"seed\": 11, \"hyperparameters\": "
             "{\"max_steps\": %d, \"context_length\": 64, \"checkpoint_every\": %d}}", file, steps, ckpt);
    ITResp r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    it_str(&r, "id", job, cap);
    int ok = r.status == 200 && job[0];
    if (!ok) fprintf(stderr, "create: %ld %s\n", r.status, r.body);
    it_free(&r);
    return ok ? 0 : -1;
}

/* Waits until the job's progress.step reaches at least n. */
static int wait_step(const char *job, int n, double timeout) {
    double t0 = it_now();
    while (it_now() - t0 < timeout) {
        double st = it_progress(&s, job, "step");
        if (st == st && st >= n) return 0;
        usleep(50000);
    }
    return -1;
}

static int events_have(const char *job, const char *text) {
    char path[200];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?limit=1000", job);
    ITResp r = it_get(&s, path);
    int has = r.body && strstr(r.body, text) != NULL;
    it_free(&r);
    return has;
}

static long post(const char *job, const char *action, char *status, size_t cap) {
    char path[200];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/%s", job, action);
    ITResp r = it_req(&s, "POST", path, NULL, NULL, 0);
    it_str(&r, "status", status, cap);
    long st = r.status;
    it_free(&r);
    return st;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *models = it_shared_models();
    if (!models) SKIP("../shared/models/stories260K is not here (set LEMO_SHARED)");
    it_tempdir(&s);
    if (it_start(&s, "--models", models, "--slots", "1", NULL)) { CHECK(0, "server start"); return check_done("control"); }
    char file[64], st[32], job[64];
    char *ds = it_story_jsonl(40);
    CHECK(it_upload_ok(&s, "t.jsonl", ds, file, sizeof file) == 0, "upload");
    free(ds);

    /* cancel a running job */
    CHECK(create_job(file, 5000, 1000, job, sizeof job) == 0, "create long job");
    CHECK(wait_step(job, 2, 60) == 0, "job runs");
    CHECK(post(job, "cancel", st, sizeof st) == 200, "cancel accepted");
    CHECK(it_wait_status(&s, job, "cancelled", 60, st, sizeof st) == 0, "job cancelled: %s", st);
    CHECK(events_have(job, "Job cancelled at step"), "cancel event");
    int step = (int)it_progress(&s, job, "step");
    char ck[600];
    snprintf(ck, sizeof ck, "%s/jobs/%s/checkpoints/step-%d", s.data, job, step);
    CHECK(access(ck, F_OK) == 0, "the cancel wrote checkpoint %s", ck);
    CHECK(post(job, "resume", st, sizeof st) == 409, "a cancelled job cannot resume");

    /* pause + resume */
    CHECK(create_job(file, 14, 1000, job, sizeof job) == 0, "create job to pause");
    CHECK(wait_step(job, 3, 60) == 0, "job runs");
    CHECK(post(job, "pause", st, sizeof st) == 200, "pause accepted");
    CHECK(it_wait_status(&s, job, "paused", 60, st, sizeof st) == 0, "job paused: %s", st);
    int paused_at = (int)it_progress(&s, job, "step");
    CHECK(paused_at >= 3 && paused_at < 14, "paused mid-run at step %d", paused_at);
    snprintf(ck, sizeof ck, "%s/jobs/%s/checkpoints/step-%d", s.data, job, paused_at);
    CHECK(access(ck, F_OK) == 0, "the pause wrote checkpoint %s", ck);
    usleep(300000);
    CHECK((int)it_progress(&s, job, "step") == paused_at, "a paused job does not advance");
    CHECK(post(job, "resume", st, sizeof st) == 200 && (!strcmp(st, "queued") || !strcmp(st, "running")), "resume: %s", st);
    CHECK(it_wait_status(&s, job, "succeeded|failed", 90, st, sizeof st) == 0 && !strcmp(st, "succeeded"),
          "resumed job succeeded: %s", st);
    CHECK((int)it_progress(&s, job, "step") == 14, "all 14 steps done");
    char want[64];
    snprintf(want, sizeof want, "resumes from step %d", paused_at);
    CHECK(events_have(job, want), "event '%s'", want);

    /* a trainer killed from outside is started again (3 retries, the job stays running); one
     * that keeps dying fails the job, and the server serves on */
    CHECK(create_job(file, 5000, 1000, job, sizeof job) == 0, "create job to kill");
    CHECK(wait_step(job, 1, 60) == 0, "job runs");
    char needle[200];
    snprintf(needle, sizeof needle, "jobs/%s/config.json", job);
    pid_t last = 0;
    for (int k = 0; k < 4; k++) {
        pid_t tp = 0;
        double t0 = it_now();
        while (it_now() - t0 < 30 && ((tp = it_pid_with(needle)) <= 0 || tp == last)) usleep(10000);
        CHECK(tp > 0 && tp != last && kill(tp, SIGKILL) == 0, "kill %d: killed the trainer (pid %d)", k + 1, (int)tp);
        last = tp;
        if (k < 3) {
            char want[64];
            snprintf(want, sizeof want, "(retry %d of 3)", k + 1);
            t0 = it_now();
            while (it_now() - t0 < 30 && !events_have(job, want)) usleep(20000);
            CHECK(events_have(job, want), "event '%s'", want);
            ITResp jr = it_get(&s, "/v1/fine_tuning/jobs?limit=1");
            CHECK(jr.status == 200 && strstr(jr.body, "\"running\""), "still running after kill %d", k + 1);
            it_free(&jr);
        }
    }
    CHECK(it_wait_status(&s, job, "failed", 30, st, sizeof st) == 0, "job failed: %s", st);
    char path[200];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
    ITResp r = it_get(&s, path);
    json_t *j = it_json(&r);
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    CHECK(msg && strstr(msg, "signal 9"), "error names the signal: %s", msg ? msg : "null");
    json_decref(j);
    it_free(&r);
    CHECK(it_healthy(&s), "healthy after the trainer died");

    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    return check_done("test_server_control");
}
