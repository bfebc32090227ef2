-- The index of the history repository (DATA_DIR/history.git): its
-- commits in branch order and the subjects each changed. Derived from the
-- repository alone, so it can be dropped and rebuilt from it.
CREATE TABLE history_commits (
    seq INTEGER PRIMARY KEY,
    rev TEXT NOT NULL UNIQUE,
    committed_at INTEGER NOT NULL,
    source TEXT,
    actor TEXT NOT NULL,
    summary TEXT NOT NULL
);

CREATE TABLE history_changes (
    seq INTEGER NOT NULL REFERENCES history_commits (seq) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    blob TEXT,
    size INTEGER NOT NULL,
    PRIMARY KEY (kind, collection, name, seq)
) WITHOUT ROWID;
