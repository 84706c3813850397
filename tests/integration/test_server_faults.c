/* test_server_faults.c: the kill -9 campaign, and a corrupted newest checkpoint.
 *
 * Campaign: the same small job (stories260K, 16 steps, a checkpoint every 2) is run once
 * without interruption for reference, then RUNS times, each run killed with SIGKILL one or
 * two times at seeded random points (a random step, then a random few milliseconds, so kills
 * land inside steps, checkpoint writes and exports alike): the server (restarted: startup
 * recovery requeues the job), the trainer (the slot starts it again from its last
 * checkpoint), or both at once (in a seeded order). Every run must end `succeeded` with every
 * step's logged loss equal to the reference's (exact: CPU resume is bit-exact), the same
 * adapter bytes, its listed checkpoints on disk and the uploaded dataset intact. The counts
 * are printed last.
 *
 * Corrupted checkpoint: the server is killed after a few checkpoints, the newest one's
 * optimizer state is truncated, and the restarted job falls back to the one before, says so
 * in its events, and still ends with the reference losses. */
#include "hash.h"
#include "itest.h"

enum { RUNS = 30, STEPS = 16, EVERY = 2 };

static ITServer s;
static const char *models;
static double ref_loss[STEPS + 1];
static char *ref_adapter;
static size_t ref_adapter_len;
static long n_kills_server, n_kills_trainer, n_resumes, n_retries, n_recoveries, n_redone, n_mismatch, bytes_lost;

static uint64_t rng_next(uint64_t *x) { return hash_splitmix(x); }  // the campaign's only randomness, seeded per run

static int start(void) { return it_start(&s, "--models", models, "--slots", "1", NULL); }

static int create_job(const char *file, char *job, size_t cap) {
    char body[1024];
    snprintf(body, sizeof body,
             "{\"model\": \"stories260K\", \"training_file\": \"%s\", \"seed\": 7, \"hyperparameters\": "
             "{\"max_steps\": %d, \"context_length\": 64, \"checkpoint_every\": %d}}", file, STEPS, EVERY);
    ITResp r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    it_str(&r, "id", job, cap);
    int ok = r.status == 200 && job[0];
    if (!ok) fprintf(stderr, "create: %ld %s\n", r.status, r.body);
    it_free(&r);
    return ok ? 0 : -1;
}

/* The job's events (oldest first is not needed: each is looked at alone). */
static json_t *events(const char *job) {
    char path[200];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?limit=1000", job);
    ITResp r = it_get(&s, path);
    json_t *j = it_json(&r);
    it_free(&r);
    json_t *d = json_incref(json_object_get(j, "data"));
    json_decref(j);
    return d ? d : json_array();
}

static int count_events(json_t *ev, const char *text) {
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) {
        const char *m = json_string_value(json_object_get(e, "message"));
        n += m && strstr(m, text) != NULL;
    }
    return n;
}

/* Events whose message begins with text (the trainer's own "resumed from step N (dir)"). */
static int count_events_starting(json_t *ev, const char *text) {
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) {
        const char *m = json_string_value(json_object_get(e, "message"));
        n += m && !strncmp(m, text, strlen(text));
    }
    return n;
}

/* Fills loss[step] from the job's step events (every run of every step: all must agree). */
static int step_losses(json_t *ev, double *loss, int *seen, const char *job) {
    int bad = 0;
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) {
        json_t *d = json_object_get(e, "data");
        const char *type = json_string_value(json_object_get(d, "type"));
        if (!type || strcmp(type, "step")) continue;
        int step = (int)json_integer_value(json_object_get(d, "step"));
        double l = json_number_value(json_object_get(d, "loss"));
        if (step < 1 || step > STEPS) { bad++; continue; }
        if (seen[step] && loss[step] != l) {
            fprintf(stderr, "%s: step %d logged two losses %.9g and %.9g\n", job, step, loss[step], l);
            bad++;
        }
        loss[step] = l;
        seen[step]++;
    }
    return bad;
}

static char *get_body(const char *path, size_t *len) {
    ITResp r = it_get(&s, path);
    char *b = NULL;
    *len = 0;
    if (r.status == 200 && r.body) {
        b = malloc(r.len + 1);
        memcpy(b, r.body, r.len);
        *len = r.len;
    }
    it_free(&r);
    return b;
}

static char *adapter_of(const char *job, size_t *len) {
    char path[200];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/adapter/adapter_model.safetensors", job);
    return get_body(path, len);
}

/* Bytes of b that are not a's (a missing or shorter b counts its missing bytes). */
static long bytes_differing(const char *a, size_t na, const char *b, size_t nb) {
    long d = (long)(na > nb ? na - nb : nb - na);
    for (size_t i = 0; i < na && i < nb; i++) d += a[i] != b[i];
    return d;
}

/* Listed checkpoints whose folder is gone (0 if all are on disk). */
static int listed_missing(const char *job) {
    char path[200];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/checkpoints?limit=100", job);
    ITResp r = it_get(&s, path);
    json_t *j = it_json(&r);
    it_free(&r);
    int missing = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(j, "data"), i, c) {
        int step = (int)json_integer_value(json_object_get(c, "step_number"));
        char p[600];
        snprintf(p, sizeof p, "%s/jobs/%s/checkpoints/step-%d/optimizer.safetensors", s.data, job, step);
        if (access(p, R_OK)) { fprintf(stderr, "%s: listed checkpoint %d is not on disk\n", job, step); missing++; }
    }
    json_decref(j);
    return missing;
}

static pid_t trainer_pid(const char *job) {
    char needle[200];
    snprintf(needle, sizeof needle, "jobs/%s/config.json", job);
    return it_pid_with(needle);
}

static void wait_trainer_gone(const char *job) {
    double t0 = it_now();
    while (it_now() - t0 < 5 && trainer_pid(job) > 0) usleep(5000);
}

/* Checks a finished run against the reference; returns its mismatches. */
static int check_run(const char *job, const char *what) {
    char st[32];
    int bad = 0;
    if (it_wait_status(&s, job, "succeeded|failed|cancelled|paused", 90, st, sizeof st) || strcmp(st, "succeeded")) {
        fprintf(stderr, "%s (%s): ended %s\n", job, what, st);
        return 1;
    }
    json_t *ev = events(job);
    double loss[STEPS + 1] = {0};
    int seen[STEPS + 1] = {0};
    bad += step_losses(ev, loss, seen, job);
    for (int k = 1; k <= STEPS; k++) {
        if (!seen[k]) { fprintf(stderr, "%s (%s): step %d never logged\n", job, what, k); bad++; }
        else if (loss[k] != ref_loss[k]) {
            fprintf(stderr, "%s (%s): step %d loss %.9g, uninterrupted %.9g\n", job, what, k, loss[k], ref_loss[k]);
            bad++;
        }
    }
    n_resumes += count_events_starting(ev, "resumed from step ");
    for (int k = 1; k <= STEPS; k++) n_redone += seen[k] > 1 ? seen[k] - 1 : 0;
    n_retries += count_events(ev, "The trainer was killed by signal");
    n_recoveries += count_events(ev, "The server stopped while this job was running");
    json_decref(ev);
    size_t n;
    char *ad = adapter_of(job, &n);
    long lost = bytes_differing(ref_adapter, ref_adapter_len, ad, ad ? n : 0);
    if (lost) { fprintf(stderr, "%s (%s): adapter differs in %ld bytes\n", job, what, lost); bad++; }
    bytes_lost += lost;
    free(ad);
    int miss = listed_missing(job);
    bad += miss;
    double fl = it_progress(&s, job, "loss");
    if (fl != ref_loss[STEPS]) { fprintf(stderr, "%s: final loss %.9g\n", job, fl); bad++; }
    return bad;
}

/* Waits until the job's progress shows step >= want (or it ended); 0 when it got there running. */
static int wait_step(const char *job, int want) {
    double t0 = it_now();
    while (it_now() - t0 < 60) {
        char path[128];
        snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", job);
        ITResp r = it_get(&s, path);
        json_t *j = it_json(&r);
        it_free(&r);
        const char *st = json_string_value(json_object_get(j, "status"));
        int step = (int)json_number_value(json_object_get(json_object_get(j, "progress"), "step"));
        int done = st && strcmp(st, "queued") && strcmp(st, "running");
        json_decref(j);
        if (done) return -1;
        if (step >= want) return 0;
        usleep(2000);
    }
    return -1;
}

enum { KILL_SERVER, KILL_TRAINER, KILL_BOTH };
static const char *const kill_names[] = {"server", "trainer", "both"};

static void campaign(const char *file) {
    int by_kind[3] = {0}, failed_runs = 0;
    for (int run = 0; run < RUNS; run++) {
        uint64_t rng = 0x5EED0000ull + (uint64_t)run;
        int kind = run % 3;
        int kills = 1 + (int)(rng_next(&rng) % 2);
        char job[64];
        if (create_job(file, job, sizeof job)) { failed_runs++; continue; }
        int at = 0;
        for (int k = 0; k < kills; k++) {
            at += 1 + (int)(rng_next(&rng) % (uint64_t)((STEPS - 1 - at) / (kills - k) + 1));
            if (at >= STEPS) at = STEPS - 1;
            unsigned delay_us = (unsigned)(rng_next(&rng) % 8000);
            if (wait_step(job, at)) break;  // finished before this point: fewer kills
            usleep(delay_us);
            pid_t tp = trainer_pid(job);
            int trainer_first = (int)(rng_next(&rng) & 1);
            if (kind == KILL_TRAINER) {
                if (tp > 0 && kill(tp, SIGKILL) == 0) n_kills_trainer++;
                // the slot starts it again: wait for the new one before the next kill
                double t0 = it_now();
                while (it_now() - t0 < 10 && trainer_pid(job) == tp) usleep(2000);
            } else {
                if (kind == KILL_BOTH && trainer_first && tp > 0 && kill(tp, SIGKILL) == 0) n_kills_trainer++;
                pid_t sp = s.pid;
                it_stop(&s, SIGKILL);
                n_kills_server += sp > 0;
                if (kind == KILL_BOTH && !trainer_first && tp > 0 && kill(tp, SIGKILL) == 0) n_kills_trainer++;
                wait_trainer_gone(job);
                if (start()) { fprintf(stderr, "run %d: restart failed\n", run); failed_runs++; break; }
            }
        }
        char what[64];
        snprintf(what, sizeof what, "run %d, kill %s x%d", run, kill_names[kind], kills);
        int bad = check_run(job, what);
        n_mismatch += bad;
        failed_runs += bad > 0;
        by_kind[kind]++;
        CHECK(bad == 0, "%s: %d mismatches", what, bad);
    }
    CHECK(failed_runs == 0, "%d runs failed", failed_runs);
    CHECK(n_kills_server + n_kills_trainer >= RUNS, "at least one kill a run (%ld)", n_kills_server + n_kills_trainer);
    printf("campaign: %d runs (server %d, trainer %d, both %d), %ld kills (server %ld, trainer %ld), %ld resumes "
           "from a checkpoint (%ld trainer restarts by the slot, %ld startup recoveries), %ld steps run again after "
           "a kill, %ld loss mismatches, bytes lost = %ld\n",
           RUNS, by_kind[0], by_kind[1], by_kind[2], n_kills_server + n_kills_trainer, n_kills_server,
           n_kills_trainer, n_resumes, n_retries, n_recoveries, n_redone, n_mismatch, bytes_lost);
}

/* The server dies after a few checkpoints; the newest one's optimizer state is then torn. */
static void corrupted_checkpoint(const char *file) {
    char job[64];
    CHECK(create_job(file, job, sizeof job) == 0, "create job to corrupt");
    CHECK(wait_step(job, 7) == 0, "job reached step 7");
    it_stop(&s, SIGKILL);
    wait_trainer_gone(job);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/jobs/%s/checkpoints", s.data, job);
    int newest = 0, before = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        int k = !strncmp(de->d_name, "step-", 5) ? atoi(de->d_name + 5) : 0;
        if (k > newest) { before = newest; newest = k; }
        else if (k > before) before = k;
    }
    if (d) closedir(d);
    CHECK(newest >= 4 && before >= 2 && newest < STEPS, "two checkpoints before the crash (%d, %d)", before, newest);
    char opt[700];
    snprintf(opt, sizeof opt, "%s/step-%d/optimizer.safetensors", dir, newest);
    CHECK(truncate(opt, 100) == 0, "truncated %s", opt);
    CHECK(start() == 0, "restart");
    int bad = check_run(job, "corrupted newest checkpoint");
    CHECK(bad == 0, "the job fell back and repeated the reference losses (%d mismatches)", bad);
    json_t *ev = events(job);
    char want[64];
    snprintf(want, sizeof want, "resumed from step %d (", before);
    CHECK(count_events(ev, "cannot be read") == 1 && count_events(ev, "the one before it") == 1,
          "an event says the newest checkpoint could not be read and the one before is used");
    CHECK(count_events(ev, want) == 1, "an event '%s'", want);
    char reque[96];  // the server's own line names the step the trainer really resumes from
    snprintf(reque, sizeof reque, "requeued and is resumed from step %d", before);
    CHECK(count_events(ev, reque) == 1, "the requeue event names step %d, the readable one", before);
    json_decref(ev);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    models = it_shared_models();
    if (!models) SKIP("needs ../shared (../shared/models/stories260K; set LEMO_SHARED)");
    it_tempdir(&s);
    if (start()) { CHECK(0, "server start"); return check_done("test_server_faults"); }
    char file[64], ref[64], st[32];
    char *ds = it_story_jsonl(40);
    CHECK(it_upload_ok(&s, "t.jsonl", ds, file, sizeof file) == 0, "upload");

    CHECK(create_job(file, ref, sizeof ref) == 0, "create reference job");
    CHECK(it_wait_status(&s, ref, "succeeded|failed|cancelled", 120, st, sizeof st) == 0 && !strcmp(st, "succeeded"),
          "reference job: %s", st);
    json_t *ev = events(ref);
    int seen[STEPS + 1] = {0};
    CHECK(step_losses(ev, ref_loss, seen, ref) == 0, "reference losses");
    for (int k = 1; k <= STEPS; k++) CHECK(seen[k] == 1, "reference step %d logged once", k);
    json_decref(ev);
    ref_adapter = adapter_of(ref, &ref_adapter_len);
    CHECK(ref_adapter && ref_adapter_len > 1000, "reference adapter (%zu bytes)", ref_adapter_len);
    if (!ref_adapter) return check_done("test_server_faults");

    double t0 = it_now();
    campaign(file);
    corrupted_checkpoint(file);

    /* the dataset came through every crash byte for byte */
    char path[128];
    snprintf(path, sizeof path, "/v1/files/%s/content", file);
    size_t n;
    char *got = get_body(path, &n);
    long lost = bytes_differing(ds, strlen(ds), got, got ? n : 0);
    CHECK(lost == 0, "the uploaded dataset lost %ld bytes", lost);
    bytes_lost += lost;
    free(got);
    free(ds);
    CHECK(it_healthy(&s), "healthy");
    printf("total: bytes lost = %ld (adapters and dataset), %.1f s\n", bytes_lost, it_now() - t0);
    it_stop(&s, SIGTERM);
    free(ref_adapter);
    it_cleanup(&s);
    return check_done("test_server_faults");
}
