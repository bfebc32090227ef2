//! The MyBB content store: a forum's own database (MySQL/MariaDB or
//! PostgreSQL, through [`database`]) as the content store, written as
//! MyBB 1.8's admin panel writes it (`docs/mybb-semantics.md`; what
//! outpost does is in `docs/mybb.md`).
//!
//! MyBB's tables are MyISAM on MySQL: no transactions; and on neither
//! server a unique key but the row id. Every
//! write is therefore one conditional statement whose affected rows are
//! checked (a lost race is a version mismatch, for the reconciler to
//! decide again), an insert is followed by a check for duplicates, and
//! what was written is read back. Changes made in the database (the admin
//! panel, another tool) are found by [`poll`].

pub mod cache_store;
pub mod columns;
pub mod css;
pub mod database;
pub mod forum;
pub mod php_config;
pub mod php_value;
pub mod poll;
pub mod rules;
mod stylesheets;
mod templates;
pub mod theme_list;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};
use tokio::sync::{OnceCell, watch};

use crate::sync::{
    Backend, Collection, ContentError, ContentStore, Item, Key, Kind, Trim, Written,
    layout::TemplateGroups,
};
use columns::Column;
use database::{Bind, Database, Row};
use forum::Forum;

/// How long one operation may take before it is reported as failed: a
/// database that hangs must not hold the reconciler forever.
const OPERATION_DEADLINE: Duration = Duration::from_secs(30);

/// How long to wait for a connection.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

/// The forum's tables, with its prefix.
struct Tables {
    templates: String,
    templatesets: String,
    templategroups: String,
    themes: String,
    themestylesheets: String,
}

impl Tables {
    fn new(prefix: &str) -> Self {
        Self {
            templates: format!("{prefix}templates"),
            templatesets: format!("{prefix}templatesets"),
            templategroups: format!("{prefix}templategroups"),
            themes: format!("{prefix}themes"),
            themestylesheets: format!("{prefix}themestylesheets"),
        }
    }
}

/// The columns content is written to, as the live schema defines them.
struct Columns {
    template: Column,
    title: Column,
    stylesheet: Column,
    sheet_name: Column,
}

/// A MyBB forum's database as a [`ContentStore`].
pub struct MybbStore {
    forum: Forum,
    db: Database,
    tables: Tables,
    columns: OnceCell<Columns>,
    groups: watch::Receiver<TemplateGroups>,
    backend: watch::Receiver<Backend>,
}

impl MybbStore {
    /// The store of `forum`, and the poller that keeps its template
    /// groups and status and finds changes made in the database. Nothing
    /// is connected yet: a database that is down now is waited for.
    pub fn open(forum: Forum, interval: Duration) -> (Arc<Self>, poll::Poller) {
        let db = Database::lazy(&forum.connect, 4, CONNECT_DEADLINE);
        let (groups_sender, groups) = watch::channel(TemplateGroups::Unknown);
        let (backend_sender, backend) = watch::channel(Backend {
            kind: "mybb",
            database: forum.database.clone(),
            prefix: forum.prefix.clone(),
            forum_root: Some(forum.root.clone()),
            ..Backend::default()
        });
        let store = Arc::new(Self {
            tables: Tables::new(&forum.prefix),
            forum,
            db,
            columns: OnceCell::new(),
            groups,
            backend,
        });
        let poller = poll::Poller::new(store.clone(), interval, groups_sender, backend_sender);
        (store, poller)
    }

    /// A database error as sync reports it: which database, and why
    /// (sqlx's messages never hold the password).
    fn storage(&self, err: impl std::fmt::Display) -> ContentError {
        ContentError::Storage(format!(
            "cannot use the forum database {} at {}: {err}",
            self.forum.database, self.forum.server
        ))
    }

    /// Runs `operation` within the deadline — once the poller has read
    /// the forum's template groups: until then a template's path is not
    /// known, and nothing may be synced by a guess (the poller asks for a
    /// rescan when it has them).
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, ContentError>>,
    ) -> Result<T, ContentError> {
        if *self.groups.borrow() == TemplateGroups::Unknown {
            return Err(self.storage("not read yet (waiting for the database)"));
        }
        tokio::time::timeout(OPERATION_DEADLINE, operation)
            .await
            .unwrap_or_else(|_| {
                Err(self.storage(format!(
                    "no answer within {} s",
                    OPERATION_DEADLINE.as_secs()
                )))
            })
    }

    /// The rows portable statement `sql` selects ([`database`]).
    async fn rows(&self, sql: &str, binds: &[Bind]) -> Result<Vec<Row>, ContentError> {
        self.db
            .rows(sql, binds)
            .await
            .map_err(|err| self.storage(err))
    }

    /// Runs portable statement `sql`; returns the rows it affected.
    async fn run(&self, sql: &str, binds: &[Bind]) -> Result<u64, ContentError> {
        self.db
            .run(sql, binds)
            .await
            .map_err(|err| self.storage(err))
    }

    /// Runs portable `INSERT` statement `sql`; returns the new row's
    /// `id_column`.
    async fn insert(
        &self,
        sql: &str,
        binds: &[Bind],
        id_column: &str,
    ) -> Result<i64, ContentError> {
        self.db
            .insert(sql, binds, id_column)
            .await
            .map_err(|err| self.storage(err))
    }

    /// The content columns, read from the live schema once.
    async fn columns(&self) -> Result<&Columns, ContentError> {
        self.columns
            .get_or_try_init(|| async {
                // PostgreSQL has no character set per column (NULL
                // here) and spells the types out (`character varying`).
                let rows = self
                    .rows(
                        "SELECT COLUMN_NAME AS name, COALESCE(CHARACTER_SET_NAME, '') AS charset, \
                         CAST(COALESCE(CHARACTER_OCTET_LENGTH, 0) AS {int}) AS max_bytes, \
                         CAST(COALESCE(CHARACTER_MAXIMUM_LENGTH, 0) AS {int}) AS max_chars, \
                         DATA_TYPE AS data_type, \
                         TABLE_NAME AS table_name FROM information_schema.COLUMNS \
                         WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME IN (?, ?)",
                        &[
                            (&self.tables.templates).into(),
                            (&self.tables.themestylesheets).into(),
                        ],
                    )
                    .await?;
                let column = |table: &str, wanted: &str| {
                    let row = rows.iter().find(|row| {
                        row.text("name")
                            .is_ok_and(|name| name.eq_ignore_ascii_case(wanted))
                            && row.text("table_name").is_ok_and(|name| name == table)
                    });
                    let row = row.ok_or_else(|| {
                        ContentError::Storage(format!(
                            "the forum database {} has no column {table}.{wanted} (is the prefix {:?} right?)",
                            self.forum.database, self.forum.prefix
                        ))
                    })?;
                    let data_type = row.text("data_type").unwrap_or_default();
                    let varchar = matches!(
                        data_type.to_lowercase().as_str(),
                        "varchar" | "char" | "character varying" | "character"
                    );
                    let limit = |name: &str| {
                        row.int(name)
                            .ok()
                            .and_then(|limit| u64::try_from(limit).ok())
                            .unwrap_or(u64::MAX)
                    };
                    Ok::<_, ContentError>(Column {
                        name: format!("{table}.{wanted}"),
                        charset: row.text("charset").unwrap_or_default(),
                        max_bytes: limit("max_bytes"),
                        max_chars: varchar.then(|| limit("max_chars")),
                    })
                };
                let (templates, sheets) = (&self.tables.templates, &self.tables.themestylesheets);
                Ok(Columns {
                    template: column(templates, "template")?,
                    title: column(templates, "title")?,
                    stylesheet: column(sheets, "stylesheet")?,
                    sheet_name: column(sheets, "name")?,
                })
            })
            .await
    }

    /// Checks that the row `select` finds (by the bound `id`, as
    /// `content` and `changed_at`) holds what was just written at
    /// `written_at`. A row changed again since by someone else is theirs.
    async fn read_back(
        &self,
        key: &Key,
        select: String,
        id: i64,
        content: &str,
        written_at: i64,
    ) -> Result<(), ContentError> {
        let rows = self.rows(&select, &[id.into()]).await?;
        let stored: Option<(String, i64)> = rows
            .first()
            .and_then(|row| Some((row.text("content").ok()?, row.int("changed_at").ok()?)));
        match stored {
            Some((text, _)) if text == content => Ok(()),
            Some((_, at)) if at != written_at => Ok(()),
            _ => Err(ContentError::Refused(format!(
                "{key}: the database did not store exactly what was written (row {id}); check the table's character set"
            ))),
        }
    }

    /// The mismatch a lost race is reported as, with the version now.
    async fn lost_race(&self, key: &Key, expected: u64) -> ContentError {
        let now = match key.kind {
            Kind::Template => self.template(key).await,
            Kind::Stylesheet => self.stylesheet(key).await,
        };
        let actual = match now {
            Ok(item) => item.version,
            Err(ContentError::NotFound(_)) => 0,
            Err(err) => return err,
        };
        ContentError::VersionMismatch {
            key: key.to_string(),
            expected,
            // Never equal to what the caller expected: it did change.
            actual: if actual == expected { 0 } else { actual },
        }
    }

    /// Refuses `text` for `column` when it cannot hold it exactly.
    fn check_fits(
        &self,
        field: &'static str,
        column: &Column,
        text: &str,
    ) -> Result<(), ContentError> {
        match column.refuses(text, self.forum.narrow_connection()) {
            Some(reason) => Err(ContentError::Invalid { field, reason }),
            None => Ok(()),
        }
    }
}

/// Fails the compare-and-swap when `expected` is given and is not
/// `actual`.
fn compare(key: &Key, expected: Option<u64>, actual: u64) -> Result<(), ContentError> {
    match expected {
        Some(expected) if expected != actual => Err(ContentError::VersionMismatch {
            key: key.to_string(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}

/// Now, in the whole seconds MyBB stores.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

/// A row's compare-and-swap token: changes whenever the row, its time or
/// its content does; never 0 (which means "does not exist") and within 63
/// bits (the ledger keeps it as a signed integer).
fn version(row_id: i64, changed_at: i64, sha256: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(row_id.to_be_bytes())
        .chain_update(changed_at.to_be_bytes())
        .chain_update(sha256.as_bytes())
        .finalize();
    let bits = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 1;
    bits.max(1)
}

fn from_unix(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds.max(0) as u64)
}

impl ContentStore for MybbStore {
    fn template_groups(&self) -> watch::Receiver<TemplateGroups> {
        self.groups.clone()
    }

    fn trim(&self, kind: Kind) -> Trim {
        match kind {
            Kind::Template => Trim::TrailingWhitespace,
            Kind::Stylesheet => Trim::Nothing,
        }
    }

    fn backend(&self) -> Backend {
        self.backend.borrow().clone()
    }

    async fn collections(&self, kind: Kind) -> Result<Vec<Collection>, ContentError> {
        match kind {
            Kind::Template => self.bounded(self.template_sets()).await,
            Kind::Stylesheet => self.bounded(self.themes()).await,
        }
    }

    async fn items(
        &self,
        kind: Kind,
        collection: &str,
        _with_content: bool,
    ) -> Result<Vec<Item>, ContentError> {
        match kind {
            Kind::Template => self.bounded(self.templates(collection)).await,
            Kind::Stylesheet => self.bounded(self.stylesheets(collection)).await,
        }
    }

    async fn get(&self, key: &Key) -> Result<Item, ContentError> {
        match key.kind {
            Kind::Template => self.bounded(self.template(key)).await,
            Kind::Stylesheet => self.bounded(self.stylesheet(key)).await,
        }
    }

    async fn put(
        &self,
        key: &Key,
        content: &str,
        expected: Option<u64>,
    ) -> Result<Written, ContentError> {
        match key.kind {
            Kind::Template => {
                self.bounded(self.put_template(key, content, expected))
                    .await
            }
            Kind::Stylesheet => {
                self.bounded(self.put_stylesheet(key, content, expected))
                    .await
            }
        }
    }

    async fn delete(&self, key: &Key, expected: Option<u64>) -> Result<u64, ContentError> {
        match key.kind {
            Kind::Template => self.bounded(self.delete_template(key, expected)).await,
            Kind::Stylesheet => self.bounded(self.delete_stylesheet(key, expected)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_change_with_row_time_and_content() {
        let base = version(7, 1_700_000_000, "aa");
        assert_ne!(base, version(8, 1_700_000_000, "aa"));
        assert_ne!(base, version(7, 1_700_000_001, "aa"));
        assert_ne!(base, version(7, 1_700_000_000, "ab"));
        assert_eq!(base, version(7, 1_700_000_000, "aa"));
        assert!(base > 0 && base < 1 << 63);
    }
}

/// MyBB's own PHP as the judge of `rules` and `css` (a developer's check,
/// not run in CI: it needs MyBB's source). Extract `check_template` from
/// `admin/inc/functions.php` and `parse_theme_variables`,
/// `minify_stylesheet`, `fix_css_urls` from `admin/inc/functions_themes.php`
/// into a PHP script that reads `/tmp/cases.json` (`{"templates": [..],
/// "css": [..]}`) and prints `{"templates": [0|1..], "cached": [..],
/// "min": [..]}` to `/tmp/php-out.json`; 20,000 random cases of each
/// agreed on 2026-12-06 (MyBB 1.8.37, PHP 8.2).
#[cfg(test)]
mod judge {
    #[test]
    #[ignore = "needs MyBB's PHP output in /tmp"]
    fn against_php() {
        let cases: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string("/tmp/cases.json").unwrap()).unwrap();
        let php: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string("/tmp/php-out.json").unwrap()).unwrap();
        let mut bad = 0;
        for (i, t) in cases["templates"].as_array().unwrap().iter().enumerate() {
            let t = t.as_str().unwrap();
            let ours = super::rules::check_template(t).is_err() as i64;
            if ours != php["templates"][i].as_i64().unwrap() {
                bad += 1;
                if bad < 10 {
                    eprintln!("template {t:?}: php {} ours {ours}", php["templates"][i]);
                }
            }
        }
        for (i, c) in cases["css"].as_array().unwrap().iter().enumerate() {
            let c = c.as_str().unwrap();
            let cached = super::css::cached(2, c);
            let min = super::css::minified(&cached);
            if cached != php["cached"][i].as_str().unwrap()
                || min != php["min"][i].as_str().unwrap()
            {
                bad += 1;
                if bad < 20 {
                    eprintln!(
                        "css {c:?}\n ours {cached:?} {min:?}\n php  {:?} {:?}",
                        php["cached"][i], php["min"][i]
                    );
                }
            }
        }
        assert_eq!(bad, 0);
    }
}
