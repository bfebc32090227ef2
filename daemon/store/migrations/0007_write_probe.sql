-- One row the store's guard rewrites while writes fail, to learn when
-- they succeed again (nothing else may be writing then). Its padding makes
-- the probe a write of some size: on a nearly full disk a write of a page
-- or two may still fit where the daemon's own writes do not.
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    written_at INTEGER NOT NULL,
    padding BLOB NOT NULL
);
