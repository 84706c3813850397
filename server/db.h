/* db.h: all of the service's SQL (SQLite, WAL), behind typed functions.
 *
 * One connection, every statement prepared once at open, one recursive mutex: handlers and
 * engine threads call these functions from many threads, and a multi-step state change runs
 * inside db_begin()/db_commit() as one transaction. Migrations (migrations/NNNN_*.sql, the
 * same text compiled in from db_migrations.c) are applied in order at open and recorded in
 * schema_migrations. Rows come back as structs; JSON columns stay text (malloc'd, freed by
 * the row's _free function). Functions return 0 (or a count) on success, -1 on an SQLite
 * error with e filled; lookups return 1 found / 0 not found. */
#ifndef LEMO_DB_H
#define LEMO_DB_H

#include <stdint.h>

#include "err.h"
#include "job_state.h"

typedef struct Db Db;

/* Migrations compiled into the binary (db_migrations.c): names like "0001_init.sql". */
extern const char *const db_migration_names[];
extern const char *const db_migration_sql[];
extern const int db_migration_count;

typedef struct {
    int64_t seq;
    char id[48], filename[256], purpose[32];
    int64_t bytes, n_examples, created_at;
} FileRow;

typedef struct {
    int64_t seq;
    char id[48], model[256], status[24];
    int64_t created_at, started_at, finished_at;   // 0 = not yet
    char training_file[48], validation_file[48];   // "" = none
    int64_t seed;
    char suffix[80];
    char *request;        // JSON {"hyperparameters","method","metadata"}
    char *config;         // trainer config JSON
    char *error;          // JSON or NULL
    char *progress;       // JSON or NULL
    int64_t trained_tokens, estimated_finish;      // 0 = unknown
    char fine_tuned_model[400];
    char stop_request[16];
    char result_file[48];                          // "" = none (the results CSV's file id)
} JobRow;

typedef struct {
    int64_t seq;
    char id[48], job_id[48], level[8], type[16];
    int64_t created_at;
    char *message;
    char *data;           // JSON or NULL
} EventRow;

typedef struct {
    int64_t seq;
    char id[48], job_id[48];
    int64_t step, created_at;
    char path[1024];
    char *metrics;        // JSON
} CheckpointRow;

typedef struct {
    char id[48], name[128], salt[65], hash[65];
    int64_t created_at, last_used_at, revoked_at;
} KeyRow;

/* Counts of jobs per status, for /metrics. */
typedef struct {
    int64_t queued, running, paused, succeeded, failed, cancelled;
    int64_t trained_tokens;   // summed over all jobs
    int64_t files, file_bytes;
} DbStats;

Db *db_open(const char *path, Err *e);
void db_close(Db *db);
/* A transaction spanning several calls from one thread (nests; only the outermost commits). */
int db_begin(Db *db, Err *e);
int db_commit(Db *db, Err *e);
void db_rollback(Db *db);

void job_row_free(JobRow *r);
void event_rows_free(EventRow *r, int n);
void checkpoint_rows_free(CheckpointRow *r, int n);

/* Files. Lists are newest first (asc: oldest first); `after` (an id or NULL) starts after that
 * item in the list's order: -2 if unknown. */
int db_file_insert(Db *db, const FileRow *f, Err *e);
int db_file_get(Db *db, const char *id, FileRow *out, Err *e);
int db_file_list(Db *db, const char *purpose, const char *after, int limit, int asc, FileRow **rows, int *n,
                 int *has_more, Err *e);
int db_file_delete(Db *db, const char *id, Err *e);
/* Number of jobs not yet finished that read this file. */
int db_file_in_use(Db *db, const char *id, Err *e);

/* Jobs. */
int db_job_insert(Db *db, const JobRow *j, Err *e);
int db_job_get(Db *db, const char *id, JobRow *out, Err *e);
/* metadata_json: a JSON object of KEY: VALUE strings the job's metadata must all hold (NULL:
 * no filter); metadata_null: only jobs without metadata. */
int db_job_list(Db *db, const char *after, int limit, int asc, const char *metadata_json, int metadata_null,
                JobRow **rows, int *n, int *has_more, Err *e);
/* Clears the job's fine_tuned_model if it is still that name: 1 cleared, 0 not (any more). */
int db_job_clear_model(Db *db, const char *id, const char *fine_tuned_model, Err *e);
int db_job_set_result_file(Db *db, const char *id, const char *file_id, Err *e);
/* Number of unfinished jobs that train from `model` or whose config names a path under
 * job_dir (another job's adapter or checkpoints). */
int db_model_in_use(Db *db, const char *model, const char *job_dir, Err *e);
/* Jobs that finished with an adapter (newest first, at most max), for /v1/models. */
int db_job_list_succeeded(Db *db, int max, JobRow **rows, int *n, Err *e);
/* Claims the oldest queued job (status -> running): 1 claimed (out filled), 0 none. */
int db_job_claim(Db *db, JobRow *out, Err *e);
/* Moves the job to status `to` (finished_at set when terminal, error / fine_tuned_model when
 * given, a requeue clears the error): 0 done, -2 refused because job_transitions[] has no
 * such move from the job's status (logged, nothing changed), -1 database error. */
int db_job_move(Db *db, const char *id, JobState to, JobActor by, const char *error_json,
                const char *fine_tuned_model, Err *e);
int db_job_set_stop_request(Db *db, const char *id, const char *what, Err *e);
int db_job_set_progress(Db *db, const char *id, const char *progress_json, int64_t trained_tokens,
                        int64_t estimated_finish, Err *e);
/* Ids of jobs in a status (up to max). */
int db_job_ids_with_status(Db *db, const char *status, char (*ids)[48], int max, Err *e);
int db_stats(Db *db, DbStats *s, Err *e);

/* Events. db_event_add returns the new event's seq (> 0) or -1. */
int64_t db_event_add(Db *db, const char *job_id, const char *level, const char *type, const char *message,
                     const char *data_json, Err *e);
/* Newest first (asc: oldest first), with an ?after= cursor. */
int db_event_list(Db *db, const char *job_id, const char *after, int limit, int asc, EventRow **rows, int *n,
                  int *has_more, Err *e);
/* Oldest first, seq > after_seq (the event stream). */
int db_event_since(Db *db, const char *job_id, int64_t after_seq, int limit, EventRow **rows, int *n, Err *e);

/* Checkpoints (one per job and step; a repeated step updates the row). */
int db_checkpoint_put(Db *db, const char *job_id, int64_t step, const char *path, const char *metrics_json,
                      Err *e);
int db_checkpoint_list(Db *db, const char *job_id, const char *after, int limit, CheckpointRow **rows, int *n,
                       int *has_more, Err *e);
/* Forgets a job's checkpoints (their folders are the caller's); returns how many. */
int db_checkpoint_delete_job(Db *db, const char *job_id, Err *e);

/* API keys. */
int db_key_insert(Db *db, const KeyRow *k, Err *e);
int db_key_get(Db *db, const char *id, KeyRow *out, Err *e);
int db_key_list(Db *db, KeyRow **rows, int *n, Err *e);
/* 1 if revoked now, 0 if no such active key. */
int db_key_revoke(Db *db, const char *id, Err *e);
int db_key_count_active(Db *db, Err *e);
int db_key_touch(Db *db, const char *id, Err *e);

#endif
