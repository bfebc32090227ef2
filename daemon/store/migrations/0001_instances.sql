-- Instances: the spec (JSON) and the status columns needed to recover.
CREATE TABLE instances (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    project_path     TEXT UNIQUE,
    kind             TEXT NOT NULL,
    spec             TEXT NOT NULL,
    workspace        TEXT,
    state            TEXT NOT NULL,
    reason           TEXT NOT NULL,
    state_changed_at INTEGER NOT NULL,   -- unix milliseconds
    pid              INTEGER,
    pgid             INTEGER,
    start_ticks      INTEGER,            -- /proc/PID/stat field 22
    boot_id          TEXT,
    started_at       INTEGER,
    port             INTEGER,
    restart_count    INTEGER NOT NULL,
    failures         INTEGER NOT NULL,   -- consecutive, towards max_restarts
    breaker          TEXT NOT NULL,
    retry_delay_ms   INTEGER NOT NULL,
    next_attempt_at  INTEGER,            -- unix milliseconds, in BACKOFF/ERROR
    last_error       TEXT,
    last_exit        TEXT,               -- JSON
    created_at       INTEGER NOT NULL
);

-- Every state transition with its reason; bounded per instance.
CREATE TABLE instance_events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id  TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    at           INTEGER NOT NULL,
    state        TEXT NOT NULL,
    reason       TEXT NOT NULL,
    detail       TEXT NOT NULL
);
CREATE INDEX instance_events_by_instance ON instance_events (instance_id, seq);

-- Ports held by instances (also across restarts), released on delete.
CREATE TABLE port_allocations (
    port         INTEGER PRIMARY KEY,
    instance_id  TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE
);
