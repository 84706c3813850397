/* test_server_dbbusy.c: the server's database under concurrent writers.
 *
 * While the server answers uploads, job creations and cancels from two client threads, two
 * threads and two processes of this test write to the same lemo.db through their own SQLite
 * connections, each holding the write lock a few milliseconds at a time with a
 * read-modify-write of a counter, and once for 1.5 s. No request may fail (a raw SQLITE_BUSY / "database is
 * locked" would show as a 5xx), and no update may be lost: the counter ends at the number of
 * increments, and every file and job the clients created is there in its final state. */
#include <pthread.h>
#include <sqlite3.h>

#include "itest.h"

enum { WRITERS = 4, INCREMENTS = 60, CLIENTS = 2, ROUNDS = 12 };

static ITServer s;
static char dbpath[400];
static volatile int stop_writers;

/* One writer: INCREMENTS times BEGIN IMMEDIATE, read n, hold the lock ~3 ms, write n+1. */
static int writer_run(int id) {
    sqlite3 *h;
    if (sqlite3_open(dbpath, &h)) return 1;
    sqlite3_busy_timeout(h, 10000);
    int bad = 0;
    for (int i = 0; i < INCREMENTS && !bad; i++) {
        sqlite3_stmt *q = NULL;
        bad |= sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK;
        if (bad) { fprintf(stderr, "writer %d: begin: %s\n", id, sqlite3_errmsg(h)); break; }
        sqlite3_prepare_v2(h, "SELECT n FROM busy_counter WHERE id=1", -1, &q, NULL);
        long n = q && sqlite3_step(q) == SQLITE_ROW ? (long)sqlite3_column_int64(q, 0) : -1;
        sqlite3_finalize(q);
        usleep(3000);
        char sql[128];
        snprintf(sql, sizeof sql, "UPDATE busy_counter SET n=%ld WHERE id=1", n + 1);
        bad |= n < 0 || sqlite3_exec(h, sql, NULL, NULL, NULL) != SQLITE_OK ||
               sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK;
        if (bad) fprintf(stderr, "writer %d: %s\n", id, sqlite3_errmsg(h));
        usleep(1000);
    }
    sqlite3_close(h);
    return bad;
}

static void *writer_thread(void *arg) { return (void *)(intptr_t)writer_run((int)(intptr_t)arg); }

typedef struct { int id, failures, files, jobs; char first_error[600]; } Client;

static void client_fail(Client *c, const char *what, const ITResp *r) {
    if (!c->failures++)
        snprintf(c->first_error, sizeof c->first_error, "%s: HTTP %ld %.400s", what, r->status, r->body ? r->body : "");
}

/* Uploads, creates a job on it (queued: no slots), cancels it; ROUNDS times. */
static void *client_thread(void *arg) {
    Client *c = arg;
    for (int i = 0; i < ROUNDS; i++) {
        char text[200], file[64] = "", job[64] = "", body[400], path[200];
        snprintf(text, sizeof text, "{\"text\": \"client %d round %d: a line\"}\n{\"text\": \"and another\"}\n", c->id, i);
        ITResp r = it_upload(&s, "d.jsonl", text, strlen(text), "fine-tune", NULL);
        it_str(&r, "id", file, sizeof file);
        if (r.status != 200 || !file[0]) client_fail(c, "upload", &r); else c->files++;
        it_free(&r);
        if (!file[0]) continue;
        snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"hyperparameters\": "
                 "{\"max_steps\": 1, \"context_length\": 16}}", file);
        r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
        it_str(&r, "id", job, sizeof job);
        if (r.status != 200 || !job[0]) client_fail(c, "create job", &r); else c->jobs++;
        it_free(&r);
        if (!job[0]) continue;
        snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", job);
        r = it_req(&s, "POST", path, NULL, NULL, 0);
        if (r.status != 200) client_fail(c, "cancel", &r);
        it_free(&r);
        r = it_get(&s, "/v1/fine_tuning/jobs?limit=5");
        if (r.status != 200) client_fail(c, "list jobs", &r);
        it_free(&r);
    }
    return NULL;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    it_tempdir(&s);
    char models[300];
    it_config_only_model(&s, models, sizeof models);
    if (it_start(&s, "--slots", "0", "--models", models, NULL)) { CHECK(0, "server start"); return check_done("dbbusy"); }
    snprintf(dbpath, sizeof dbpath, "%s/lemo.db", s.data);
    sqlite3 *h;
    CHECK(sqlite3_open(dbpath, &h) == SQLITE_OK, "open %s", dbpath);
    sqlite3_busy_timeout(h, 10000);
    CHECK(sqlite3_exec(h, "CREATE TABLE busy_counter(id INTEGER PRIMARY KEY, n INTEGER); "
                          "INSERT INTO busy_counter VALUES(1, 0)", NULL, NULL, NULL) == SQLITE_OK,
          "counter table: %s", sqlite3_errmsg(h));

    double t0 = it_now();
    pid_t kids[WRITERS / 2];
    for (int i = 0; i < WRITERS / 2; i++)
        if ((kids[i] = fork()) == 0) _exit(writer_run(100 + i));
    pthread_t wt[WRITERS / 2], ct[CLIENTS];
    for (int i = 0; i < WRITERS / 2; i++) pthread_create(&wt[i], NULL, writer_thread, (void *)(intptr_t)i);
    Client cl[CLIENTS];
    memset(cl, 0, sizeof cl);
    for (int i = 0; i < CLIENTS; i++) { cl[i].id = i; pthread_create(&ct[i], NULL, client_thread, &cl[i]); }

    /* one long hold: 1.5 s with the write lock while the clients keep sending */
    usleep(200000);
    CHECK(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK, "long hold: %s", sqlite3_errmsg(h));
    usleep(1500000);
    CHECK(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) == SQLITE_OK, "long hold commit: %s", sqlite3_errmsg(h));

    int writer_failures = 0, files = 0, jobs = 0, failures = 0;
    for (int i = 0; i < WRITERS / 2; i++) {
        void *rv;
        pthread_join(wt[i], &rv);
        writer_failures += (int)(intptr_t)rv;
        int st;
        waitpid(kids[i], &st, 0);
        writer_failures += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(ct[i], NULL);
        files += cl[i].files;
        jobs += cl[i].jobs;
        failures += cl[i].failures;
        CHECK(cl[i].failures == 0, "client %d: %d failed requests, the first: %s", i, cl[i].failures, cl[i].first_error);
    }
    double dt = it_now() - t0;
    CHECK(writer_failures == 0, "%d writers failed", writer_failures);

    sqlite3_stmt *q = NULL;
    sqlite3_prepare_v2(h, "SELECT n FROM busy_counter WHERE id=1", -1, &q, NULL);
    long n = q && sqlite3_step(q) == SQLITE_ROW ? (long)sqlite3_column_int64(q, 0) : -1;
    sqlite3_finalize(q);
    CHECK(n == WRITERS * INCREMENTS, "counter %ld after %d increments: no lost update", n, WRITERS * INCREMENTS);
    sqlite3_prepare_v2(h, "SELECT count(*), sum(status='cancelled') FROM jobs", -1, &q, NULL);
    long nj = -1, nc = -1;
    if (q && sqlite3_step(q) == SQLITE_ROW) { nj = (long)sqlite3_column_int64(q, 0); nc = (long)sqlite3_column_int64(q, 1); }
    sqlite3_finalize(q);
    sqlite3_close(h);
    CHECK(files == CLIENTS * ROUNDS && jobs == CLIENTS * ROUNDS, "every request went through (%d files, %d jobs)", files, jobs);
    CHECK(nj == jobs && nc == jobs, "%ld jobs stored, %ld cancelled, of %d created", nj, nc, jobs);
    ITResp r = it_get(&s, "/v1/files?limit=1000");
    json_t *j = it_json(&r);
    CHECK((int)json_array_size(json_object_get(j, "data")) == files, "%zu files listed of %d uploaded",
          json_array_size(json_object_get(j, "data")), files);
    json_decref(j);
    it_free(&r);
    CHECK(it_healthy(&s), "healthy");
    printf("db busy: %d writers x %d locked increments, %d clients x %d rounds (%d requests), %d failed, %.1f s\n",
           WRITERS, INCREMENTS, CLIENTS, ROUNDS, CLIENTS * ROUNDS * 4, failures, dt);
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    return check_done("test_server_dbbusy");
}
