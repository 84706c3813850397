-- 0001_init.sql: the service's state. Times are Unix seconds; JSON columns hold API-shaped
-- objects as text. `seq` orders lists (newest first) and backs the ?after= cursors.

CREATE TABLE files (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,            -- "file-..."
    filename    TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    n_examples  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,       -- "ftjob-..."
    model            TEXT NOT NULL,              -- model folder name
    status           TEXT NOT NULL,              -- queued, running, paused, succeeded, failed, cancelled
    created_at       INTEGER NOT NULL,
    queue_pos        INTEGER NOT NULL,           -- claim order: lowest first (a resumed job goes to the back)
    started_at       INTEGER,
    finished_at      INTEGER,
    training_file    TEXT NOT NULL,
    validation_file  TEXT,
    seed             INTEGER NOT NULL,
    suffix           TEXT,
    request          TEXT NOT NULL,              -- {"hyperparameters","method","metadata"} as the API shows them
    config           TEXT NOT NULL,              -- the trainer's job config
    error            TEXT,                       -- {"code","message","param"}
    progress         TEXT,                       -- latest {"step","total_steps","loss",...}
    trained_tokens   INTEGER NOT NULL DEFAULT 0,
    estimated_finish INTEGER,
    fine_tuned_model TEXT,
    stop_request     TEXT                        -- "cancel", "pause" or "shutdown" while a child stops
);
CREATE INDEX jobs_status ON jobs(status, queue_pos);

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,            -- "ftevent-..."
    job_id      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    level       TEXT NOT NULL,                   -- info, warn, error
    type        TEXT NOT NULL,                   -- message, metrics
    message     TEXT NOT NULL,
    data        TEXT                             -- the trainer's line, when the event came from one
);
CREATE INDEX events_job ON events(job_id, seq);

CREATE TABLE checkpoints (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,            -- "ftckpt-..."
    job_id      TEXT NOT NULL,
    step        INTEGER NOT NULL,
    path        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    metrics     TEXT NOT NULL,                   -- {"step","train_loss","valid_loss"}
    UNIQUE (job_id, step)
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,                -- the public part of the key
    name        TEXT NOT NULL,
    salt        TEXT NOT NULL,                   -- hex
    hash        TEXT NOT NULL,                   -- hex sha256(salt || key)
    created_at  INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at  INTEGER
);
