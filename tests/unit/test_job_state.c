/* test_job_state.c: walks the job state machine's table (server/job_state.c): every listed
 * move is allowed and every other (from, to, actor) is refused; names round-trip; terminal
 * states have no way out; every state is reachable from queued and can reach an end. Then
 * the same table through the database: db_job_move applies the legal walks and refuses an
 * illegal move without changing the row. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "db.h"
#include "job_state.h"

static int listed(JobState f, JobState t, JobActor by) {
    for (int i = 0; i < job_transition_count; i++)
        if (job_transitions[i].from == f && job_transitions[i].to == t && job_transitions[i].by == by) return 1;
    return 0;
}

static void status_of(Db *db, const char *id, char *out, size_t cap) {
    JobRow j;
    Err e;
    out[0] = 0;
    if (db_job_get(db, id, &j, &e) == 1) {
        snprintf(out, cap, "%s", j.status);
        job_row_free(&j);
    }
}

int main(void) {
    Err e;
    for (int s = 0; s < JOB_STATE_N; s++) {
        CHECK(job_state_names[s] && job_state_parse(job_state_names[s]) == s, "state %d name round-trips", s);
        CHECK(job_state_on_disk[s] && strlen(job_state_on_disk[s]) > 10, "state %s says what is on disk",
              job_state_names[s]);
    }
    CHECK(job_state_parse("validating_files") == -1 && job_state_parse(NULL) == -1, "unknown names");
    for (int a = 0; a < JOB_ACTOR_N; a++) CHECK(job_actor_names[a] != NULL, "actor %d named", a);

    int allowed = 0, refused = 0;
    for (int f = 0; f < JOB_STATE_N; f++)
        for (int t = 0; t < JOB_STATE_N; t++)
            for (int a = 0; a < JOB_ACTOR_N; a++) {
                int ok = job_transition_check(f, t, a, &e) == 0;
                CHECK(ok == listed(f, t, a), "%s -> %s by %s: check %d, table %d", job_state_names[f],
                      job_state_names[t], job_actor_names[a], ok, listed(f, t, a));
                if (!ok) CHECK(strstr(e.msg, job_state_names[f]) && strstr(e.msg, job_actor_names[a]),
                               "the refusal names the move: %s", e.msg);
                allowed += ok;
                refused += !ok;
            }
    CHECK(allowed == job_transition_count, "each table row is one distinct move (%d of %d)", allowed,
          job_transition_count);
    CHECK(job_transition_check(JOB_STATE_N, JOB_QUEUED, JOB_BY_API, &e) < 0, "out of range");
    for (int i = 0; i < job_transition_count; i++) {
        const JobTransition *t = &job_transitions[i];
        CHECK(!job_state_terminal(t->from), "no move leaves %s", job_state_names[t->from]);
        CHECK(t->from != t->to, "no move stays in %s", job_state_names[t->from]);
        CHECK(t->when && t->when[0], "row %d says when", i);
    }
    /* reachability: forward from queued, backward from the terminal states */
    int reach[JOB_STATE_N] = {[JOB_QUEUED] = 1}, ends[JOB_STATE_N] = {0};
    for (int s = 0; s < JOB_STATE_N; s++) ends[s] = job_state_terminal(s);
    for (int pass = 0; pass < JOB_STATE_N; pass++)
        for (int i = 0; i < job_transition_count; i++) {
            if (reach[job_transitions[i].from]) reach[job_transitions[i].to] = 1;
            if (ends[job_transitions[i].to]) ends[job_transitions[i].from] = 1;
        }
    for (int s = 0; s < JOB_STATE_N; s++) {
        CHECK(reach[s], "%s is reachable from queued", job_state_names[s]);
        CHECK(ends[s], "%s can reach an end", job_state_names[s]);
    }

    /* through the database */
    char dir[] = "/tmp/lemo-jobstate-XXXXXX", path[300];
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    snprintf(path, sizeof path, "%s/lemo.db", dir);
    Db *db = db_open(path, &e);
    CHECK(db != NULL, "db_open: %s", e.msg);
    if (db) {
        JobRow j;
        memset(&j, 0, sizeof j);
        snprintf(j.id, sizeof j.id, "ftjob-statetest");
        snprintf(j.model, sizeof j.model, "m");
        snprintf(j.training_file, sizeof j.training_file, "file-x");
        j.request = "{}";
        j.config = "{}";
        CHECK(db_job_insert(db, &j, &e) == 0, "insert: %s", e.msg);
        char st[32];
        CHECK(db_job_move(db, j.id, JOB_SUCCEEDED, JOB_BY_TRAINER_EXIT, NULL, "ft:x", &e) == -2,
              "queued -> succeeded is refused");
        status_of(db, j.id, st, sizeof st);
        CHECK(!strcmp(st, "queued"), "the refused move changed nothing: %s", st);
        CHECK(db_job_move(db, j.id, JOB_RUNNING, JOB_BY_API, NULL, NULL, &e) == -2, "the API does not start jobs");
        JobRow got;
        CHECK(db_job_claim(db, &got, &e) == 1 && !strcmp(got.status, "running"), "claim runs it");
        job_row_free(&got);
        CHECK(db_job_move(db, j.id, JOB_QUEUED, JOB_BY_API, NULL, NULL, &e) == -2, "the API cannot requeue a running job");
        CHECK(db_job_move(db, j.id, JOB_PAUSED, JOB_BY_TRAINER_EXIT, "{\"code\":\"disk_full\"}", NULL, &e) == 0,
              "running -> paused (disk full): %s", e.msg);
        CHECK(db_job_get(db, j.id, &got, &e) == 1 && got.error && strstr(got.error, "disk_full"), "error kept");
        job_row_free(&got);
        CHECK(db_job_move(db, j.id, JOB_QUEUED, JOB_BY_API, NULL, NULL, &e) == 0, "resume: %s", e.msg);
        CHECK(db_job_get(db, j.id, &got, &e) == 1 && !got.error, "a requeue clears the error");
        job_row_free(&got);
        CHECK(db_job_claim(db, &got, &e) == 1, "claimed again");
        job_row_free(&got);
        CHECK(db_job_move(db, j.id, JOB_QUEUED, JOB_BY_RECOVERY, NULL, NULL, &e) == 0, "recovery requeues");
        CHECK(db_job_claim(db, &got, &e) == 1, "claimed a third time");
        job_row_free(&got);
        CHECK(db_job_move(db, j.id, JOB_SUCCEEDED, JOB_BY_TRAINER_EXIT, NULL, "ft:m:x", &e) == 0, "succeeds");
        CHECK(db_job_get(db, j.id, &got, &e) == 1 && got.finished_at > 0 && !strcmp(got.fine_tuned_model, "ft:m:x"),
              "finished_at and fine_tuned_model set");
        job_row_free(&got);
        for (int t = 0; t < JOB_STATE_N; t++)
            for (int a = 0; a < JOB_ACTOR_N; a++)
                CHECK(db_job_move(db, j.id, t, a, NULL, NULL, &e) == -2, "nothing leaves succeeded (%s by %s)",
                      job_state_names[t], job_actor_names[a]);
        status_of(db, j.id, st, sizeof st);
        CHECK(!strcmp(st, "succeeded"), "still succeeded: %s", st);
        CHECK(db_job_move(db, "ftjob-none", JOB_RUNNING, JOB_BY_SCHEDULER, NULL, NULL, &e) == -1, "unknown job");
        db_close(db);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", dir);
    printf("table: %d moves allowed, %d refused\n", allowed, refused);
    return check_done("test_job_state");
}
