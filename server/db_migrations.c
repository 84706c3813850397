/* db_migrations.c: the text of the migrations/ SQL files, compiled in so the binary migrates its
 * database from any working directory. Each entry must stay byte-identical to its file
 * (tests/unit/test_server_migrations.c checks); add a migration by adding a file there and
 * its text here, never by editing a landed one. */
#include "db.h"

const char *const db_migration_names[] = {
    "0001_init.sql",
    "0002_results.sql",
};

const char *const db_migration_sql[] = {
    /* 0001_init.sql */
        "-- 0001_init.sql: the service's state. Times are Unix seconds; JSON columns hold API-shaped\n"
        "-- objects as text. `seq` orders lists (newest first) and backs the ?after= cursors.\n"
        "\n"
        "CREATE TABLE files (\n"
        "    seq         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    id          TEXT NOT NULL UNIQUE,            -- \"file-...\"\n"
        "    filename    TEXT NOT NULL,\n"
        "    purpose     TEXT NOT NULL,\n"
        "    bytes       INTEGER NOT NULL,\n"
        "    n_examples  INTEGER NOT NULL,\n"
        "    created_at  INTEGER NOT NULL\n"
        ");\n"
        "\n"
        "CREATE TABLE jobs (\n"
        "    seq              INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    id               TEXT NOT NULL UNIQUE,       -- \"ftjob-...\"\n"
        "    model            TEXT NOT NULL,              -- model folder name\n"
        "    status           TEXT NOT NULL,              -- queued, running, paused, succeeded, failed, cancelled\n"
        "    created_at       INTEGER NOT NULL,\n"
        "    queue_pos        INTEGER NOT NULL,           -- claim order: lowest first (a resumed job goes to the back)\n"
        "    started_at       INTEGER,\n"
        "    finished_at      INTEGER,\n"
        "    training_file    TEXT NOT NULL,\n"
        "    validation_file  TEXT,\n"
        "    seed             INTEGER NOT NULL,\n"
        "    suffix           TEXT,\n"
        "    request          TEXT NOT NULL,              -- {\"hyperparameters\",\"method\",\"metadata\"} as the API shows them\n"
        "    config           TEXT NOT NULL,              -- the trainer's job config\n"
        "    error            TEXT,                       -- {\"code\",\"message\",\"param\"}\n"
        "    progress         TEXT,                       -- latest {\"step\",\"total_steps\",\"loss\",...}\n"
        "    trained_tokens   INTEGER NOT NULL DEFAULT 0,\n"
        "    estimated_finish INTEGER,\n"
        "    fine_tuned_model TEXT,\n"
        "    stop_request     TEXT                        -- \"cancel\", \"pause\" or \"shutdown\" while a child stops\n"
        ");\n"
        "CREATE INDEX jobs_status ON jobs(status, queue_pos);\n"
        "\n"
        "CREATE TABLE events (\n"
        "    seq         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    id          TEXT NOT NULL UNIQUE,            -- \"ftevent-...\"\n"
        "    job_id      TEXT NOT NULL,\n"
        "    created_at  INTEGER NOT NULL,\n"
        "    level       TEXT NOT NULL,                   -- info, warn, error\n"
        "    type        TEXT NOT NULL,                   -- message, metrics\n"
        "    message     TEXT NOT NULL,\n"
        "    data        TEXT                             -- the trainer's line, when the event came from one\n"
        ");\n"
        "CREATE INDEX events_job ON events(job_id, seq);\n"
        "\n"
        "CREATE TABLE checkpoints (\n"
        "    seq         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    id          TEXT NOT NULL UNIQUE,            -- \"ftckpt-...\"\n"
        "    job_id      TEXT NOT NULL,\n"
        "    step        INTEGER NOT NULL,\n"
        "    path        TEXT NOT NULL,\n"
        "    created_at  INTEGER NOT NULL,\n"
        "    metrics     TEXT NOT NULL,                   -- {\"step\",\"train_loss\",\"valid_loss\"}\n"
        "    UNIQUE (job_id, step)\n"
        ");\n"
        "\n"
        "CREATE TABLE api_keys (\n"
        "    id          TEXT PRIMARY KEY,                -- the public part of the key\n"
        "    name        TEXT NOT NULL,\n"
        "    salt        TEXT NOT NULL,                   -- hex\n"
        "    hash        TEXT NOT NULL,                   -- hex sha256(salt || key)\n"
        "    created_at  INTEGER NOT NULL,\n"
        "    last_used_at INTEGER,\n"
        "    revoked_at  INTEGER\n"
        ");\n",
    /* 0002_results.sql */
        "-- 0002_results.sql: a succeeded job's results file (OpenAI's result_files): the CSV of its step\n"
        "-- metrics, stored as a file of purpose \"fine-tune-results\" (files/FILE_ID.csv).\n"
        "\n"
        "ALTER TABLE jobs ADD COLUMN result_file TEXT;   -- \"file-...\" once the job succeeded\n",
};

const int db_migration_count = (int)(sizeof db_migration_names / sizeof db_migration_names[0]);
