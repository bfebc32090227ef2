-- Sync conflicts: an entity changed differently on disk and in the
-- database. The database version was kept (and written to the file); the
-- disk version waits in the conflict copy until a user resolves it.
CREATE TABLE sync_conflicts (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,      -- template | stylesheet
    collection      TEXT NOT NULL,
    name            TEXT NOT NULL,
    path            TEXT NOT NULL,
    copy_path       TEXT NOT NULL,
    db_version      INTEGER NOT NULL,
    db_sha256       TEXT NOT NULL,
    disk_sha256     TEXT NOT NULL,
    detected_at     INTEGER NOT NULL    -- unix milliseconds
);
