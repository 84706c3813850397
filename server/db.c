/* db.c: every SQL statement of the service (see db.h).
 *
 * Statements live in one table below, prepared once after the migrations ran. A recursive
 * mutex serializes the writing connection; db_begin() takes it and opens BEGIN IMMEDIATE, so
 * the calls between db_begin() and db_commit() form one transaction that no other thread can
 * interleave with. WAL lets `lemo keys` (another process) read and write meanwhile, and the
 * busy timeout makes either side wait instead of failing.
 *
 * Reads outside a transaction go to one of DB_READERS read connections instead, each with its
 * own statements and lock. WAL gives each read the database as last committed, and a reader
 * never waits for the writer: before, every request waited behind whatever transaction held
 * the one connection (the scheduler's, which also writes the job's event file, held it up to
 * 145 ms on a busy disk, bench/RESULTS.md). Reads inside a transaction stay on the writer,
 * which alone sees that transaction's own writes. */
#include "db.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job_state.h"
#include "srv_util.h"

#define JOB_COLS "seq,id,model,status,created_at,started_at,finished_at,training_file,validation_file,seed," \
                 "suffix,request,config,error,progress,trained_tokens,estimated_finish,fine_tuned_model,stop_request,result_file"
#define EVENT_COLS "seq,id,job_id,created_at,level,type,message,data"
#define CKPT_COLS "seq,id,job_id,step,path,created_at,metrics"
#define FILE_COLS "seq,id,filename,purpose,bytes,n_examples,created_at"
#define KEY_COLS "id,name,salt,hash,created_at,last_used_at,revoked_at"
#define TERMINAL "('succeeded','failed','cancelled')"
/* ?metadata[KEY]=VALUE filters of the job list: ?3 a JSON object of the pairs (NULL: none), all of
 * which the job's metadata must hold; ?4 non-NULL: only jobs without metadata (?metadata=null) */
#define JOB_FILTER "(?3 IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(?3) f WHERE NOT EXISTS (SELECT 1 FROM " \
                   "json_each(jobs.request,'$.metadata') m WHERE m.key=f.key AND m.type='text' AND m.value=f.value))) " \
                   "AND (?4 IS NULL OR coalesce(json_type(jobs.request,'$.metadata'),'null')='null' OR " \
                   "json_extract(jobs.request,'$.metadata')='{}')"

enum {
    S_BEGIN, S_COMMIT, S_ROLLBACK,
    S_FILE_INSERT, S_FILE_GET, S_FILE_SEQ, S_FILE_LIST, S_FILE_LIST_ASC, S_FILE_DELETE, S_FILE_IN_USE,
    S_JOB_INSERT, S_JOB_GET, S_JOB_SEQ, S_JOB_LIST, S_JOB_LIST_ASC, S_JOB_SUCCEEDED, S_JOB_CLEAR_MODEL,
    S_JOB_RESULT_FILE, S_MODEL_IN_USE, S_JOB_NEXT, S_JOB_RUN, S_JOB_STATUS,
    S_JOB_REQUEUE_BACK, S_JOB_REQUEUE_KEEP, S_JOB_STOP, S_JOB_PROGRESS, S_JOB_IDS, S_STAT_JOBS, S_STAT_TOKENS,
    S_STAT_FILES,
    S_EV_INSERT, S_EV_SEQ, S_EV_LIST, S_EV_LIST_ASC, S_EV_SINCE,
    S_CK_PUT, S_CK_SEQ, S_CK_LIST, S_CK_DELETE_JOB,
    S_KEY_INSERT, S_KEY_GET, S_KEY_LIST, S_KEY_REVOKE, S_KEY_COUNT, S_KEY_TOUCH,
    S_COUNT
};

static const char *const SQL[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_FILE_INSERT] = "INSERT INTO files(id,filename,purpose,bytes,n_examples,created_at) VALUES(?,?,?,?,?,?)",
    [S_FILE_GET] = "SELECT " FILE_COLS " FROM files WHERE id=?",
    [S_FILE_SEQ] = "SELECT seq FROM files WHERE id=?",
    [S_FILE_LIST] = "SELECT " FILE_COLS " FROM files WHERE (?1 IS NULL OR purpose=?1) AND seq<?2 "
                    "ORDER BY seq DESC LIMIT ?3",
    [S_FILE_LIST_ASC] = "SELECT " FILE_COLS " FROM files WHERE (?1 IS NULL OR purpose=?1) AND seq>?2 "
                        "ORDER BY seq LIMIT ?3",
    [S_FILE_DELETE] = "DELETE FROM files WHERE id=?",
    [S_FILE_IN_USE] = "SELECT count(*) FROM jobs WHERE (training_file=?1 OR validation_file=?1) "
                      "AND status NOT IN " TERMINAL,
    [S_JOB_INSERT] = "INSERT INTO jobs(id,model,status,created_at,queue_pos,training_file,validation_file,seed,"
                     "suffix,request,config) VALUES(?1,?2,'queued',?3,(SELECT coalesce(max(queue_pos),0)+1 FROM jobs),"
                     "?4,?5,?6,?7,?8,?9)",
    [S_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id=?",
    [S_JOB_SEQ] = "SELECT seq FROM jobs WHERE id=?",
    [S_JOB_LIST] = "SELECT " JOB_COLS " FROM jobs WHERE seq<?1 AND " JOB_FILTER " ORDER BY seq DESC LIMIT ?2",
    [S_JOB_LIST_ASC] = "SELECT " JOB_COLS " FROM jobs WHERE seq>?1 AND " JOB_FILTER " ORDER BY seq LIMIT ?2",
    [S_JOB_SUCCEEDED] = "SELECT " JOB_COLS " FROM jobs WHERE status='succeeded' ORDER BY seq DESC LIMIT ?",
    [S_JOB_CLEAR_MODEL] = "UPDATE jobs SET fine_tuned_model=NULL WHERE id=?1 AND fine_tuned_model=?2",
    [S_JOB_RESULT_FILE] = "UPDATE jobs SET result_file=?2 WHERE id=?1",
    [S_MODEL_IN_USE] = "SELECT count(*) FROM jobs WHERE status NOT IN " TERMINAL " AND (model=?1 OR instr(config,?2)>0)",
    [S_JOB_NEXT] = "SELECT id FROM jobs WHERE status='queued' ORDER BY queue_pos, seq LIMIT 1",
    [S_JOB_RUN] = "UPDATE jobs SET status='running', started_at=coalesce(started_at,?2), stop_request=NULL "
                  "WHERE id=?1 AND status='queued'",
    [S_JOB_STATUS] = "UPDATE jobs SET status=?2, finished_at=CASE WHEN ?2 IN " TERMINAL " THEN ?3 ELSE NULL END, "
                     "error=coalesce(?4,error), fine_tuned_model=coalesce(?5,fine_tuned_model), stop_request=NULL, "
                     "estimated_finish=CASE WHEN ?2='running' THEN estimated_finish ELSE NULL END WHERE id=?1",
    [S_JOB_REQUEUE_BACK] = "UPDATE jobs SET status='queued', stop_request=NULL, estimated_finish=NULL, "
                           "error=NULL, queue_pos=(SELECT coalesce(max(queue_pos),0)+1 FROM jobs) WHERE id=?1",
    [S_JOB_REQUEUE_KEEP] = "UPDATE jobs SET status='queued', stop_request=NULL, estimated_finish=NULL, error=NULL "
                           "WHERE id=?1",
    [S_JOB_STOP] = "UPDATE jobs SET stop_request=?2 WHERE id=?1",
    [S_JOB_PROGRESS] = "UPDATE jobs SET progress=?2, trained_tokens=?3, estimated_finish=?4 WHERE id=?1",
    [S_JOB_IDS] = "SELECT id FROM jobs WHERE status=? ORDER BY queue_pos, seq LIMIT ?",
    [S_STAT_JOBS] = "SELECT status, count(*) FROM jobs GROUP BY status",
    [S_STAT_TOKENS] = "SELECT coalesce(sum(trained_tokens),0) FROM jobs",
    [S_STAT_FILES] = "SELECT count(*), coalesce(sum(bytes),0) FROM files",
    [S_EV_INSERT] = "INSERT INTO events(id,job_id,created_at,level,type,message,data) VALUES(?,?,?,?,?,?,?)",
    [S_EV_SEQ] = "SELECT seq FROM events WHERE id=? AND job_id=?",
    [S_EV_LIST] = "SELECT " EVENT_COLS " FROM events WHERE job_id=? AND seq<? ORDER BY seq DESC LIMIT ?",
    [S_EV_LIST_ASC] = "SELECT " EVENT_COLS " FROM events WHERE job_id=? AND seq>? ORDER BY seq LIMIT ?",
    [S_EV_SINCE] = "SELECT " EVENT_COLS " FROM events WHERE job_id=? AND seq>? ORDER BY seq LIMIT ?",
    [S_CK_PUT] = "INSERT INTO checkpoints(id,job_id,step,path,created_at,metrics) VALUES(?,?,?,?,?,?) "
                 "ON CONFLICT(job_id,step) DO UPDATE SET path=excluded.path, metrics=excluded.metrics, "
                 "created_at=excluded.created_at",
    [S_CK_SEQ] = "SELECT seq FROM checkpoints WHERE id=? AND job_id=?",
    [S_CK_LIST] = "SELECT " CKPT_COLS " FROM checkpoints WHERE job_id=? AND seq<? ORDER BY seq DESC LIMIT ?",
    [S_CK_DELETE_JOB] = "DELETE FROM checkpoints WHERE job_id=?",
    [S_KEY_INSERT] = "INSERT INTO api_keys(id,name,salt,hash,created_at) VALUES(?,?,?,?,?)",
    [S_KEY_GET] = "SELECT " KEY_COLS " FROM api_keys WHERE id=?",
    [S_KEY_LIST] = "SELECT " KEY_COLS " FROM api_keys ORDER BY created_at, id",
    [S_KEY_REVOKE] = "UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL",
    [S_KEY_COUNT] = "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL",
    [S_KEY_TOUCH] = "UPDATE api_keys SET last_used_at=?1 WHERE id=?2 AND coalesce(last_used_at,0)<?1-60",
};

#define DB_READERS 4

typedef struct {
    sqlite3 *h;
    sqlite3_stmt *st[S_COUNT];   // the read-only statements (NULL for the others)
    pthread_mutex_t mu;
} DbReader;

struct Db {
    sqlite3 *h;
    sqlite3_stmt *st[S_COUNT];
    int readonly[S_COUNT];       // sqlite3_stmt_readonly: it may run on a reader
    pthread_mutex_t mu;   // recursive
    int depth;            // open db_begin() levels
    DbReader rd[DB_READERS];
    int n_readers;
};

/* This thread's open db_begin() levels (its reads then stay on the writer), and the connection
 * its statement in flight runs on (for the error message). */
static _Thread_local int tls_txn;
static _Thread_local sqlite3 *tls_conn;

static int db_fail(Db *db, Err *e, const char *what) {
    return err_set(e, "database: %s: %s", what, sqlite3_errmsg(tls_conn ? tls_conn : db->h));
}

/* Takes the lock and returns the statement reset and unbound: a read outside a transaction on
 * a free reader (the thread's own first, so threads spread over them), anything else on the
 * writer. */
static sqlite3_stmt *db_stmt(Db *db, int i) {
    sqlite3_stmt *s;
    if (db->readonly[i] && !tls_txn && db->n_readers) {
        static _Thread_local unsigned pick;
        if (!pick) pick = (unsigned)(uintptr_t)&pick >> 12 | 1;   // per thread, stable
        DbReader *r = NULL;
        for (int k = 0; k < db->n_readers && !r; k++) {
            DbReader *c = &db->rd[(pick + (unsigned)k) % (unsigned)db->n_readers];
            if (!pthread_mutex_trylock(&c->mu)) r = c;
        }
        if (!r) {
            r = &db->rd[pick % (unsigned)db->n_readers];
            pthread_mutex_lock(&r->mu);
        }
        s = r->st[i];
        tls_conn = r->h;
    } else {
        pthread_mutex_lock(&db->mu);
        s = db->st[i];
        tls_conn = db->h;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static void db_done(Db *db, sqlite3_stmt *s) {
    sqlite3_reset(s);
    sqlite3 *h = sqlite3_db_handle(s);
    tls_conn = NULL;
    if (h == db->h) { pthread_mutex_unlock(&db->mu); return; }
    for (int k = 0; k < db->n_readers; k++)
        if (db->rd[k].h == h) { pthread_mutex_unlock(&db->rd[k].mu); return; }
}

static void bind_text(sqlite3_stmt *s, int i, const char *v) {
    if (v && *v) sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(s, i);
}

/* Column i as text into a fixed buffer ("" for NULL). */
static void col_cpy(sqlite3_stmt *s, int i, char *dst, size_t cap) {
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static char *col_dup(sqlite3_stmt *s, int i) {
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? strdup((const char *)t) : NULL;
}

/* Runs a statement that returns no rows; returns the number of rows changed or -1. */
static int db_exec_stmt(Db *db, sqlite3_stmt *s, Err *e, const char *what) {
    int rc = sqlite3_step(s);
    int changed = sqlite3_changes(db->h);
    if (rc != SQLITE_DONE) { db_fail(db, e, what); db_done(db, s); return -1; }
    db_done(db, s);
    return changed;
}

/* Applies the compiled-in migrations not yet recorded in schema_migrations, each in its own
 * transaction, in order. */
static int db_migrate(Db *db, Err *e) {
    char *msg = NULL;
    if (sqlite3_exec(db->h, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                            "name TEXT NOT NULL, applied_at INTEGER NOT NULL)", NULL, NULL, &msg) != SQLITE_OK) {
        err_set(e, "database: creating schema_migrations: %s", msg ? msg : "?");
        sqlite3_free(msg);
        return -1;
    }
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db->h, "SELECT coalesce(max(version),0) FROM schema_migrations", -1, &q, NULL))
        return db_fail(db, e, "reading schema_migrations");
    long have = sqlite3_step(q) == SQLITE_ROW ? (long)sqlite3_column_int64(q, 0) : 0;
    sqlite3_finalize(q);
    long newest = db_migration_count ? atol(db_migration_names[db_migration_count - 1]) : 0;
    if (have > newest)
        return err_set(e, "database schema version %ld is newer than this binary knows (%ld)", have, newest);
    for (int i = 0; i < db_migration_count; i++) {
        long v = atol(db_migration_names[i]);
        if (v <= have) continue;
        if (sqlite3_exec(db->h, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db->h, db_migration_sql[i], NULL, NULL, &msg) != SQLITE_OK) {
            err_set(e, "database: migration %s: %s", db_migration_names[i], msg ? msg : sqlite3_errmsg(db->h));
            sqlite3_free(msg);
            sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        char ins[256];
        snprintf(ins, sizeof ins, "INSERT INTO schema_migrations VALUES(%ld,'%s',%lld); COMMIT", v,
                 db_migration_names[i], (long long)now_s());
        if (sqlite3_exec(db->h, ins, NULL, NULL, &msg) != SQLITE_OK) {
            err_set(e, "database: recording migration %s: %s", db_migration_names[i], msg ? msg : "?");
            sqlite3_free(msg);
            sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    return 0;
}

Db *db_open(const char *path, Err *e) {
    Db *db = calloc(1, sizeof *db);
    if (!db) { err_set(e, "out of memory"); return NULL; }
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&db->mu, &a);
    pthread_mutexattr_destroy(&a);
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL)) {
        err_set(e, "cannot open database %s: %s", path, db->h ? sqlite3_errmsg(db->h) : "out of memory");
        db_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db->h, 10000);
    char *msg = NULL;
    if (sqlite3_exec(db->h, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON",
                     NULL, NULL, &msg) != SQLITE_OK) {
        err_set(e, "database %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        db_close(db);
        return NULL;
    }
    if (db_migrate(db, e)) { err_prefix(e, "%s", path); db_close(db); return NULL; }
    for (int i = 0; i < S_COUNT; i++) {
        if (sqlite3_prepare_v3(db->h, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &db->st[i], NULL)) {
            err_set(e, "database: preparing statement %d: %s", i, sqlite3_errmsg(db->h));
            db_close(db);
            return NULL;
        }
        db->readonly[i] = i != S_BEGIN && i != S_COMMIT && i != S_ROLLBACK && sqlite3_stmt_readonly(db->st[i]);
    }
    for (int k = 0; k < DB_READERS; k++) {   // after the migrations: the readers see the schema
        DbReader *r = &db->rd[k];
        pthread_mutex_init(&r->mu, NULL);
        db->n_readers++;
        if (sqlite3_open_v2(path, &r->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) ||
            sqlite3_exec(r->h, "PRAGMA query_only=1", NULL, NULL, NULL)) {
            err_set(e, "cannot open database %s for reading: %s", path, r->h ? sqlite3_errmsg(r->h) : "out of memory");
            db_close(db);
            return NULL;
        }
        sqlite3_busy_timeout(r->h, 10000);
        for (int i = 0; i < S_COUNT; i++) {
            if (!db->readonly[i]) continue;
            if (sqlite3_prepare_v3(r->h, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &r->st[i], NULL)) {
                err_set(e, "database: preparing statement %d for reading: %s", i, sqlite3_errmsg(r->h));
                db_close(db);
                return NULL;
            }
        }
    }
    return db;
}

void db_close(Db *db) {
    if (!db) return;
    for (int k = 0; k < db->n_readers; k++) {
        for (int i = 0; i < S_COUNT; i++) sqlite3_finalize(db->rd[k].st[i]);
        if (db->rd[k].h) sqlite3_close(db->rd[k].h);
        pthread_mutex_destroy(&db->rd[k].mu);
    }
    for (int i = 0; i < S_COUNT; i++) sqlite3_finalize(db->st[i]);
    if (db->h) sqlite3_close(db->h);
    pthread_mutex_destroy(&db->mu);
    free(db);
}

int db_begin(Db *db, Err *e) {
    pthread_mutex_lock(&db->mu);
    if (db->depth++ == 0) {
        sqlite3_stmt *s = db->st[S_BEGIN];
        sqlite3_reset(s);
        if (sqlite3_step(s) != SQLITE_DONE) {
            db_fail(db, e, "begin");
            sqlite3_reset(s);
            db->depth--;
            pthread_mutex_unlock(&db->mu);
            return -1;
        }
        sqlite3_reset(s);
    }
    tls_txn++;
    return 0;  // the lock stays held until db_commit/db_rollback
}

int db_commit(Db *db, Err *e) {
    int rc = 0;
    if (--db->depth == 0) {
        sqlite3_stmt *s = db->st[S_COMMIT];
        sqlite3_reset(s);
        if (sqlite3_step(s) != SQLITE_DONE) {
            rc = db_fail(db, e, "commit");
            sqlite3_reset(s);
            sqlite3_reset(db->st[S_ROLLBACK]);
            sqlite3_step(db->st[S_ROLLBACK]);
            sqlite3_reset(db->st[S_ROLLBACK]);
        }
        sqlite3_reset(s);
    }
    tls_txn--;
    pthread_mutex_unlock(&db->mu);
    return rc;
}

void db_rollback(Db *db) {
    if (--db->depth == 0) {
        sqlite3_stmt *s = db->st[S_ROLLBACK];
        sqlite3_reset(s);
        sqlite3_step(s);
        sqlite3_reset(s);
    }
    tls_txn--;
    pthread_mutex_unlock(&db->mu);
}

void job_row_free(JobRow *r) {
    if (!r) return;
    free(r->request); free(r->config); free(r->error); free(r->progress);
    r->request = r->config = r->error = r->progress = NULL;
}

void event_rows_free(EventRow *r, int n) {
    for (int i = 0; i < n; i++) { free(r[i].message); free(r[i].data); }
    free(r);
}

void checkpoint_rows_free(CheckpointRow *r, int n) {
    for (int i = 0; i < n; i++) free(r[i].metrics);
    free(r);
}

/* Resolves an ?after= cursor to its seq: for none, the end a list starts from (INT64_MAX
 * newest first, 0 with asc); -2 if unknown. */
static int64_t db_cursor(Db *db, int stmt, const char *after, const char *job_id, int asc) {
    if (!after || !*after) return asc ? 0 : INT64_MAX;
    sqlite3_stmt *s = db_stmt(db, stmt);
    sqlite3_bind_text(s, 1, after, -1, SQLITE_TRANSIENT);
    if (job_id) sqlite3_bind_text(s, 2, job_id, -1, SQLITE_TRANSIENT);
    int64_t seq = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -2;
    db_done(db, s);
    return seq;
}

/* Grows a row array by one; returns the new slot or NULL. */
static void *rows_push(void **rows, int *n, size_t sz) {
    void *nr = realloc(*rows, (size_t)(*n + 1) * sz);
    if (!nr) return NULL;
    *rows = nr;
    char *slot = (char *)nr + (size_t)(*n)++ * sz;
    memset(slot, 0, sz);
    return slot;
}

/* ---- files ---- */

static void file_from_row(sqlite3_stmt *s, FileRow *f) {
    memset(f, 0, sizeof *f);
    f->seq = sqlite3_column_int64(s, 0);
    col_cpy(s, 1, f->id, sizeof f->id);
    col_cpy(s, 2, f->filename, sizeof f->filename);
    col_cpy(s, 3, f->purpose, sizeof f->purpose);
    f->bytes = sqlite3_column_int64(s, 4);
    f->n_examples = sqlite3_column_int64(s, 5);
    f->created_at = sqlite3_column_int64(s, 6);
}

int db_file_insert(Db *db, const FileRow *f, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_FILE_INSERT);
    bind_text(s, 1, f->id);
    sqlite3_bind_text(s, 2, f->filename, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, f->purpose, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 4, f->bytes);
    sqlite3_bind_int64(s, 5, f->n_examples);
    sqlite3_bind_int64(s, 6, f->created_at);
    return db_exec_stmt(db, s, e, "insert file") < 0 ? -1 : 0;
}

int db_file_get(Db *db, const char *id, FileRow *out, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_FILE_GET);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) file_from_row(s, out);
    else if (rc != SQLITE_DONE) { db_fail(db, e, "get file"); db_done(db, s); return -1; }
    db_done(db, s);
    return rc == SQLITE_ROW;
}

int db_file_list(Db *db, const char *purpose, const char *after, int limit, int asc, FileRow **rows, int *n,
                 int *has_more, Err *e) {
    *rows = NULL; *n = 0; *has_more = 0;
    int64_t cur = db_cursor(db, S_FILE_SEQ, after, NULL, asc);
    if (cur == -2) return -2;
    sqlite3_stmt *s = db_stmt(db, asc ? S_FILE_LIST_ASC : S_FILE_LIST);
    bind_text(s, 1, purpose);
    sqlite3_bind_int64(s, 2, cur);
    sqlite3_bind_int(s, 3, limit + 1);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == limit) { *has_more = 1; continue; }
        FileRow *f = rows_push((void **)rows, n, sizeof **rows);
        if (!f) { rc = SQLITE_NOMEM; break; }
        file_from_row(s, f);
    }
    if (rc != SQLITE_DONE) { db_fail(db, e, "list files"); db_done(db, s); free(*rows); *rows = NULL; *n = 0; return -1; }
    db_done(db, s);
    return 0;
}

int db_file_delete(Db *db, const char *id, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_FILE_DELETE);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    return db_exec_stmt(db, s, e, "delete file");
}

/* Runs a one-integer query with one text parameter. */
static int64_t db_count1(Db *db, int stmt, const char *arg, Err *e, const char *what) {
    sqlite3_stmt *s = db_stmt(db, stmt);
    if (arg) sqlite3_bind_text(s, 1, arg, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    if (rc != SQLITE_ROW) db_fail(db, e, what);
    db_done(db, s);
    return v;
}

int db_file_in_use(Db *db, const char *id, Err *e) {
    return (int)db_count1(db, S_FILE_IN_USE, id, e, "file in use");
}

/* ---- jobs ---- */

static void job_from_row(sqlite3_stmt *s, JobRow *j) {
    memset(j, 0, sizeof *j);
    j->seq = sqlite3_column_int64(s, 0);
    col_cpy(s, 1, j->id, sizeof j->id);
    col_cpy(s, 2, j->model, sizeof j->model);
    col_cpy(s, 3, j->status, sizeof j->status);
    j->created_at = sqlite3_column_int64(s, 4);
    j->started_at = sqlite3_column_int64(s, 5);
    j->finished_at = sqlite3_column_int64(s, 6);
    col_cpy(s, 7, j->training_file, sizeof j->training_file);
    col_cpy(s, 8, j->validation_file, sizeof j->validation_file);
    j->seed = sqlite3_column_int64(s, 9);
    col_cpy(s, 10, j->suffix, sizeof j->suffix);
    j->request = col_dup(s, 11);
    j->config = col_dup(s, 12);
    j->error = col_dup(s, 13);
    j->progress = col_dup(s, 14);
    j->trained_tokens = sqlite3_column_int64(s, 15);
    j->estimated_finish = sqlite3_column_int64(s, 16);
    col_cpy(s, 17, j->fine_tuned_model, sizeof j->fine_tuned_model);
    col_cpy(s, 18, j->stop_request, sizeof j->stop_request);
    col_cpy(s, 19, j->result_file, sizeof j->result_file);
}

int db_job_insert(Db *db, const JobRow *j, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_JOB_INSERT);
    sqlite3_bind_text(s, 1, j->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, j->model, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, j->created_at);
    sqlite3_bind_text(s, 4, j->training_file, -1, SQLITE_TRANSIENT);
    bind_text(s, 5, j->validation_file);
    sqlite3_bind_int64(s, 6, j->seed);
    bind_text(s, 7, j->suffix);
    sqlite3_bind_text(s, 8, j->request, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 9, j->config, -1, SQLITE_TRANSIENT);
    return db_exec_stmt(db, s, e, "insert job") < 0 ? -1 : 0;
}

int db_job_get(Db *db, const char *id, JobRow *out, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_JOB_GET);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) job_from_row(s, out);
    else if (rc != SQLITE_DONE) { db_fail(db, e, "get job"); db_done(db, s); return -1; }
    db_done(db, s);
    return rc == SQLITE_ROW;
}

/* Collects job rows of a prepared, bound statement (limit: rows kept; one more = has_more). */
static int job_rows(Db *db, sqlite3_stmt *s, int limit, JobRow **rows, int *n, int *has_more, Err *e) {
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == limit) { if (has_more) *has_more = 1; continue; }
        JobRow *j = rows_push((void **)rows, n, sizeof **rows);
        if (!j) { rc = SQLITE_NOMEM; break; }
        job_from_row(s, j);
    }
    if (rc != SQLITE_DONE) {
        db_fail(db, e, "list jobs");
        db_done(db, s);
        for (int i = 0; i < *n; i++) job_row_free(&(*rows)[i]);
        free(*rows); *rows = NULL; *n = 0;
        return -1;
    }
    db_done(db, s);
    return 0;
}

int db_job_list(Db *db, const char *after, int limit, int asc, const char *metadata_json, int metadata_null,
                JobRow **rows, int *n, int *has_more, Err *e) {
    *rows = NULL; *n = 0; *has_more = 0;
    int64_t cur = db_cursor(db, S_JOB_SEQ, after, NULL, asc);
    if (cur == -2) return -2;
    sqlite3_stmt *s = db_stmt(db, asc ? S_JOB_LIST_ASC : S_JOB_LIST);
    sqlite3_bind_int64(s, 1, cur);
    sqlite3_bind_int(s, 2, limit + 1);
    bind_text(s, 3, metadata_json);
    if (metadata_null) sqlite3_bind_int(s, 4, 1);
    return job_rows(db, s, limit, rows, n, has_more, e);
}

int db_job_clear_model(Db *db, const char *id, const char *fine_tuned_model, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_JOB_CLEAR_MODEL);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, fine_tuned_model, -1, SQLITE_TRANSIENT);
    return db_exec_stmt(db, s, e, "clear fine-tuned model");
}

int db_job_set_result_file(Db *db, const char *id, const char *file_id, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_JOB_RESULT_FILE);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    bind_text(s, 2, file_id);
    return db_exec_stmt(db, s, e, "set result file") < 0 ? -1 : 0;
}

int db_model_in_use(Db *db, const char *model, const char *job_dir, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_MODEL_IN_USE);
    sqlite3_bind_text(s, 1, model, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, job_dir, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    int v = rc == SQLITE_ROW ? (int)sqlite3_column_int64(s, 0) : -1;
    if (rc != SQLITE_ROW) db_fail(db, e, "model in use");
    db_done(db, s);
    return v;
}

int db_job_list_succeeded(Db *db, int max, JobRow **rows, int *n, Err *e) {
    *rows = NULL; *n = 0;
    sqlite3_stmt *s = db_stmt(db, S_JOB_SUCCEEDED);
    sqlite3_bind_int(s, 1, max);
    return job_rows(db, s, max, rows, n, NULL, e);
}

int db_job_claim(Db *db, JobRow *out, Err *e) {
    if (db_begin(db, e)) return -1;
    sqlite3_stmt *s = db_stmt(db, S_JOB_NEXT);
    char id[ID_MAX] = "";
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) col_cpy(s, 0, id, sizeof id);
    db_done(db, s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) { db_fail(db, e, "claim job"); db_rollback(db); return -1; }
    if (!id[0]) { db_rollback(db); return 0; }
    if (db_job_move(db, id, JOB_RUNNING, JOB_BY_SCHEDULER, NULL, NULL, e)) { db_rollback(db); return -1; }
    if (db_job_get(db, id, out, e) != 1) { db_rollback(db); return -1; }
    if (db_commit(db, e)) { job_row_free(out); return -1; }
    return 1;
}

/* The one place a job's status changes (job_state.h): reads the status, checks the move
 * against the table and applies it, in one transaction. */
int db_job_move(Db *db, const char *id, JobState to, JobActor by, const char *error_json,
                const char *fine_tuned_model, Err *e) {
    if (db_begin(db, e)) return -1;
    JobRow cur;
    int rc = db_job_get(db, id, &cur, e);
    if (rc != 1) {
        db_rollback(db);
        return rc == 0 ? err_set(e, "job %s does not exist", id) : -1;
    }
    int from = job_state_parse(cur.status);
    job_row_free(&cur);
    if (from < 0 || job_transition_check((JobState)from, to, by, e)) {
        if (from < 0) err_set(e, "job %s has the unknown status '%s'", id, cur.status);
        fprintf(stderr, "lemo serve: job %s: refused: %s\n", id, e->msg);
        db_rollback(db);
        return -2;
    }
    sqlite3_stmt *s;
    if (to == JOB_RUNNING) {
        s = db_stmt(db, S_JOB_RUN);
        sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 2, now_s());
    } else if (to == JOB_QUEUED) {
        // a resumed job waits behind the jobs queued meanwhile; one the server stopped keeps its place
        s = db_stmt(db, by == JOB_BY_API ? S_JOB_REQUEUE_BACK : S_JOB_REQUEUE_KEEP);
        sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    } else {
        s = db_stmt(db, S_JOB_STATUS);
        sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, job_state_names[to], -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 3, now_s());
        bind_text(s, 4, error_json);
        bind_text(s, 5, fine_tuned_model);
    }
    int changed = db_exec_stmt(db, s, e, "move job");
    if (changed != 1) {
        if (changed == 0) err_set(e, "job %s: the move to %s changed no row", id, job_state_names[to]);
        db_rollback(db);
        return -1;
    }
    if (db_commit(db, e)) return -1;
    // the job's lifecycle in the server's log: every status change passes here (inside a
    // caller's transaction this is the move, whose commit the caller makes and checks)
    fprintf(stderr, "lemo serve: job %s: %s -> %s (%s)%s%.300s\n", id, job_state_names[from], job_state_names[to],
            job_actor_names[by], error_json ? ": " : "", error_json ? error_json : "");
    return 0;
}

int db_job_set_stop_request(Db *db, const char *id, const char *what, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_JOB_STOP);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    bind_text(s, 2, what);
    return db_exec_stmt(db, s, e, "set stop request") < 0 ? -1 : 0;
}

int db_job_set_progress(Db *db, const char *id, const char *progress_json, int64_t trained_tokens,
                        int64_t estimated_finish, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_JOB_PROGRESS);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    bind_text(s, 2, progress_json);
    sqlite3_bind_int64(s, 3, trained_tokens);
    if (estimated_finish > 0) sqlite3_bind_int64(s, 4, estimated_finish);
    else sqlite3_bind_null(s, 4);
    return db_exec_stmt(db, s, e, "set progress") < 0 ? -1 : 0;
}

int db_job_ids_with_status(Db *db, const char *status, char (*ids)[48], int max, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_JOB_IDS);
    sqlite3_bind_text(s, 1, status, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, max);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < max) col_cpy(s, 0, ids[n++], 48);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) { db_fail(db, e, "job ids"); db_done(db, s); return -1; }
    db_done(db, s);
    return n;
}

int db_stats(Db *db, DbStats *st, Err *e) {
    memset(st, 0, sizeof *st);
    sqlite3_stmt *s = db_stmt(db, S_STAT_JOBS);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(s, 0);
        int64_t v = sqlite3_column_int64(s, 1);
        if (!k) continue;
        if (!strcmp(k, "queued")) st->queued = v;
        else if (!strcmp(k, "running")) st->running = v;
        else if (!strcmp(k, "paused")) st->paused = v;
        else if (!strcmp(k, "succeeded")) st->succeeded = v;
        else if (!strcmp(k, "failed")) st->failed = v;
        else if (!strcmp(k, "cancelled")) st->cancelled = v;
    }
    if (rc != SQLITE_DONE) { db_fail(db, e, "stats"); db_done(db, s); return -1; }
    db_done(db, s);
    st->trained_tokens = db_count1(db, S_STAT_TOKENS, NULL, e, "stats");
    s = db_stmt(db, S_STAT_FILES);
    if (sqlite3_step(s) == SQLITE_ROW) { st->files = sqlite3_column_int64(s, 0); st->file_bytes = sqlite3_column_int64(s, 1); }
    db_done(db, s);
    return st->trained_tokens < 0 ? -1 : 0;
}

/* ---- events ---- */

int64_t db_event_add(Db *db, const char *job_id, const char *level, const char *type, const char *message,
                     const char *data_json, Err *e) {
    char id[ID_MAX];
    id_new("ftevent-", id);
    sqlite3_stmt *s = db_stmt(db, S_EV_INSERT);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, job_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, now_s());
    sqlite3_bind_text(s, 4, level, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 5, type, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 6, message, -1, SQLITE_TRANSIENT);
    bind_text(s, 7, data_json);
    int rc = sqlite3_step(s);
    int64_t seq = sqlite3_last_insert_rowid(db->h);
    if (rc != SQLITE_DONE) { db_fail(db, e, "insert event"); seq = -1; }
    db_done(db, s);
    return seq;
}

static void event_from_row(sqlite3_stmt *s, EventRow *r) {
    r->seq = sqlite3_column_int64(s, 0);
    col_cpy(s, 1, r->id, sizeof r->id);
    col_cpy(s, 2, r->job_id, sizeof r->job_id);
    r->created_at = sqlite3_column_int64(s, 3);
    col_cpy(s, 4, r->level, sizeof r->level);
    col_cpy(s, 5, r->type, sizeof r->type);
    r->message = col_dup(s, 6);
    r->data = col_dup(s, 7);
}

static int event_rows(Db *db, sqlite3_stmt *s, int limit, EventRow **rows, int *n, int *has_more, Err *e) {
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == limit) { if (has_more) *has_more = 1; continue; }
        EventRow *r = rows_push((void **)rows, n, sizeof **rows);
        if (!r) { rc = SQLITE_NOMEM; break; }
        event_from_row(s, r);
    }
    if (rc != SQLITE_DONE) {
        db_fail(db, e, "list events");
        db_done(db, s);
        event_rows_free(*rows, *n); *rows = NULL; *n = 0;
        return -1;
    }
    db_done(db, s);
    return 0;
}

int db_event_list(Db *db, const char *job_id, const char *after, int limit, int asc, EventRow **rows, int *n,
                  int *has_more, Err *e) {
    *rows = NULL; *n = 0; *has_more = 0;
    int64_t cur = db_cursor(db, S_EV_SEQ, after, job_id, asc);
    if (cur == -2) return -2;
    sqlite3_stmt *s = db_stmt(db, asc ? S_EV_LIST_ASC : S_EV_LIST);
    sqlite3_bind_text(s, 1, job_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, cur);
    sqlite3_bind_int(s, 3, limit + 1);
    return event_rows(db, s, limit, rows, n, has_more, e);
}

int db_event_since(Db *db, const char *job_id, int64_t after_seq, int limit, EventRow **rows, int *n, Err *e) {
    *rows = NULL; *n = 0;
    sqlite3_stmt *s = db_stmt(db, S_EV_SINCE);
    sqlite3_bind_text(s, 1, job_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, after_seq);
    sqlite3_bind_int(s, 3, limit);
    return event_rows(db, s, limit, rows, n, NULL, e);
}

/* ---- checkpoints ---- */

int db_checkpoint_put(Db *db, const char *job_id, int64_t step, const char *path, const char *metrics_json,
                      Err *e) {
    char id[ID_MAX];
    id_new("ftckpt-", id);
    sqlite3_stmt *s = db_stmt(db, S_CK_PUT);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, job_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, step);
    sqlite3_bind_text(s, 4, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 5, now_s());
    sqlite3_bind_text(s, 6, metrics_json ? metrics_json : "{}", -1, SQLITE_TRANSIENT);
    return db_exec_stmt(db, s, e, "put checkpoint") < 0 ? -1 : 0;
}

int db_checkpoint_list(Db *db, const char *job_id, const char *after, int limit, CheckpointRow **rows, int *n,
                       int *has_more, Err *e) {
    *rows = NULL; *n = 0; *has_more = 0;
    int64_t cur = db_cursor(db, S_CK_SEQ, after, job_id, 0);
    if (cur == -2) return -2;
    sqlite3_stmt *s = db_stmt(db, S_CK_LIST);
    sqlite3_bind_text(s, 1, job_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, cur);
    sqlite3_bind_int(s, 3, limit + 1);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == limit) { *has_more = 1; continue; }
        CheckpointRow *r = rows_push((void **)rows, n, sizeof **rows);
        if (!r) { rc = SQLITE_NOMEM; break; }
        r->seq = sqlite3_column_int64(s, 0);
        col_cpy(s, 1, r->id, sizeof r->id);
        col_cpy(s, 2, r->job_id, sizeof r->job_id);
        r->step = sqlite3_column_int64(s, 3);
        col_cpy(s, 4, r->path, sizeof r->path);
        r->created_at = sqlite3_column_int64(s, 5);
        r->metrics = col_dup(s, 6);
    }
    if (rc != SQLITE_DONE) {
        db_fail(db, e, "list checkpoints");
        db_done(db, s);
        checkpoint_rows_free(*rows, *n); *rows = NULL; *n = 0;
        return -1;
    }
    db_done(db, s);
    return 0;
}


int db_checkpoint_delete_job(Db *db, const char *job_id, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_CK_DELETE_JOB);
    sqlite3_bind_text(s, 1, job_id, -1, SQLITE_TRANSIENT);
    return db_exec_stmt(db, s, e, "delete checkpoints");
}

/* ---- API keys ---- */

static void key_from_row(sqlite3_stmt *s, KeyRow *k) {
    memset(k, 0, sizeof *k);
    col_cpy(s, 0, k->id, sizeof k->id);
    col_cpy(s, 1, k->name, sizeof k->name);
    col_cpy(s, 2, k->salt, sizeof k->salt);
    col_cpy(s, 3, k->hash, sizeof k->hash);
    k->created_at = sqlite3_column_int64(s, 4);
    k->last_used_at = sqlite3_column_int64(s, 5);
    k->revoked_at = sqlite3_column_int64(s, 6);
}

int db_key_insert(Db *db, const KeyRow *k, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_KEY_INSERT);
    sqlite3_bind_text(s, 1, k->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, k->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, k->salt, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, k->hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 5, k->created_at);
    return db_exec_stmt(db, s, e, "insert key") < 0 ? -1 : 0;
}

int db_key_get(Db *db, const char *id, KeyRow *out, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_KEY_GET);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) key_from_row(s, out);
    else if (rc != SQLITE_DONE) { db_fail(db, e, "get key"); db_done(db, s); return -1; }
    db_done(db, s);
    return rc == SQLITE_ROW;
}

int db_key_list(Db *db, KeyRow **rows, int *n, Err *e) {
    *rows = NULL; *n = 0;
    sqlite3_stmt *s = db_stmt(db, S_KEY_LIST);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        KeyRow *k = rows_push((void **)rows, n, sizeof **rows);
        if (!k) { rc = SQLITE_NOMEM; break; }
        key_from_row(s, k);
    }
    if (rc != SQLITE_DONE) { db_fail(db, e, "list keys"); db_done(db, s); free(*rows); *rows = NULL; *n = 0; return -1; }
    db_done(db, s);
    return 0;
}

int db_key_revoke(Db *db, const char *id, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_KEY_REVOKE);
    sqlite3_bind_int64(s, 1, now_s());
    sqlite3_bind_text(s, 2, id, -1, SQLITE_TRANSIENT);
    return db_exec_stmt(db, s, e, "revoke key");
}

int db_key_count_active(Db *db, Err *e) {
    return (int)db_count1(db, S_KEY_COUNT, NULL, e, "count keys");
}

int db_key_touch(Db *db, const char *id, Err *e) {
    sqlite3_stmt *s = db_stmt(db, S_KEY_TOUCH);
    sqlite3_bind_int64(s, 1, now_s());
    sqlite3_bind_text(s, 2, id, -1, SQLITE_TRANSIENT);
    return db_exec_stmt(db, s, e, "touch key") < 0 ? -1 : 0;
}
