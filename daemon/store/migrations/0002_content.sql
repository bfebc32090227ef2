-- Sync content, the "database side": template sets of templates and
-- themes of stylesheets. `version` increments on every change and is the
-- compare-and-swap token.
CREATE TABLE template_sets (
    name        TEXT PRIMARY KEY
);

CREATE TABLE templates (
    set_name    TEXT NOT NULL REFERENCES template_sets(name) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    content     TEXT NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,   -- unix milliseconds
    PRIMARY KEY (set_name, title)
);

CREATE TABLE themes (
    name        TEXT PRIMARY KEY
);

CREATE TABLE stylesheets (
    theme       TEXT NOT NULL REFERENCES themes(name) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    content     TEXT NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (theme, name)
);
