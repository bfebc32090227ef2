-- Sync base state: for each synced entity, what the database and the file
-- last agreed on. A side whose content differs from the base has changed.
CREATE TABLE sync_base (
    kind        TEXT NOT NULL,      -- template | stylesheet
    collection  TEXT NOT NULL,
    name        TEXT NOT NULL,
    sha256      TEXT NOT NULL,      -- content both sides agreed on
    db_version  INTEGER NOT NULL,
    file_size   INTEGER NOT NULL,   -- the file's stat tuple at that moment
    file_mtime  INTEGER NOT NULL,   -- nanoseconds
    file_inode  INTEGER NOT NULL,
    PRIMARY KEY (kind, collection, name)
);
