//! The native content store: [`ContentStore`] over the SQLite state
//! database, the default when no forum database is configured. Templates and stylesheets share one code path; only the
//! table and column names differ.

use std::time::SystemTime;

// Dynamic SQL here only ever splices the constant table and column names
// of `tables`; every value is bound.
use sqlx::{
    AssertSqlSafe, Row, Sqlite, SqliteConnection,
    query::Query,
    sqlite::{SqliteArguments, SqliteRow},
};

use super::{Store, from_millis, millis, transaction};
use tokio::sync::watch;

use crate::sync::{
    Backend, Collection, ContentError, ContentStore, Item, Key, Kind, Written,
    layout::TemplateGroups, sha256,
};

/// Where one kind of content lives.
struct Tables {
    collections: &'static str,
    items: &'static str,
    collection: &'static str,
    name: &'static str,
}

fn tables(kind: Kind) -> Tables {
    match kind {
        Kind::Template => Tables {
            collections: "template_sets",
            items: "templates",
            collection: "set_name",
            name: "title",
        },
        Kind::Stylesheet => Tables {
            collections: "themes",
            items: "stylesheets",
            collection: "theme",
            name: "name",
        },
    }
}

/// The columns `item` reads, of the items of one collection (bind the
/// collection).
fn select_items(t: &Tables) -> String {
    format!(
        "SELECT {} AS item, content, version, updated_at FROM {} WHERE {} = ?",
        t.name, t.items, t.collection
    )
}

impl Store {
    /// A database error as sync reports it, naming the file.
    pub(super) fn storage(&self, err: sqlx::Error) -> ContentError {
        let cause = format!(
            "cannot use the state database {}: {err}",
            self.path().display()
        );
        self.health.failed(&cause);
        ContentError::Storage(cause)
    }

    /// A write's outcome, told to the store's health on the way.
    fn written<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, ContentError> {
        let value = result.map_err(|e| self.storage(e))?;
        self.health.wrote();
        Ok(value)
    }

    /// The rows `query` selects.
    pub(super) async fn rows(
        &self,
        query: Query<'_, Sqlite, SqliteArguments>,
    ) -> Result<Vec<SqliteRow>, ContentError> {
        let result = query.fetch_all(&mut *self.connection().await).await;
        result.map_err(|e| self.storage(e))
    }

    /// The row `query` selects, if any.
    pub(super) async fn row(
        &self,
        query: Query<'_, Sqlite, SqliteArguments>,
    ) -> Result<Option<SqliteRow>, ContentError> {
        let result = query.fetch_optional(&mut *self.connection().await).await;
        result.map_err(|e| self.storage(e))
    }

    /// Runs a statement that returns nothing.
    pub(super) async fn run(
        &self,
        query: Query<'_, Sqlite, SqliteArguments>,
    ) -> Result<(), ContentError> {
        let result = query.execute(&mut *self.connection().await).await;
        self.written(result).map(drop)
    }

    /// The current version of `key` (None: it does not exist), failing
    /// the compare-and-swap when `expected` is given and differs (0 stands
    /// for "does not exist").
    async fn checked_version(
        &self,
        tx: &mut SqliteConnection,
        key: &Key,
        expected: Option<u64>,
    ) -> Result<Option<u64>, ContentError> {
        let t = tables(key.kind);
        let current: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT version FROM {} WHERE {} = ? AND {} = ?",
            t.items, t.collection, t.name
        )))
        .bind(&key.collection)
        .bind(&key.name)
        .fetch_optional(tx)
        .await
        .map_err(|e| self.storage(e))?;
        let actual = current.unwrap_or(0) as u64;
        match expected {
            Some(expected) if expected != actual => Err(ContentError::VersionMismatch {
                key: key.to_string(),
                expected,
                actual,
            }),
            _ => Ok(current.map(|version| version as u64)),
        }
    }
}

fn item(kind: Kind, collection: &str, row: &SqliteRow, with_content: bool) -> Item {
    let content: String = row.get("content");
    Item {
        key: Key {
            kind,
            collection: collection.to_owned(),
            name: row.get("item"),
        },
        size: content.len() as u64,
        sha256: sha256(&content),
        content: if with_content { content } else { String::new() },
        version: row.get::<i64, _>("version") as u64,
        updated_at: from_millis(row.get("updated_at")),
    }
}

impl ContentStore for Store {
    fn template_groups(&self) -> watch::Receiver<TemplateGroups> {
        // The rule never changes: the sender may go at once.
        watch::channel(TemplateGroups::ByPrefix).1
    }

    fn backend(&self) -> Backend {
        Backend {
            kind: "native",
            database: self.path().display().to_string(),
            ..Backend::default()
        }
    }

    async fn collections(&self, kind: Kind) -> Result<Vec<Collection>, ContentError> {
        let t = tables(kind);
        let sql = format!(
            "SELECT c.name AS name, COUNT(i.{name}) AS items, MAX(i.updated_at) AS updated_at \
             FROM {collections} c LEFT JOIN {items} i ON i.{collection} = c.name GROUP BY c.name ORDER BY c.name",
            name = t.name,
            collections = t.collections,
            items = t.items,
            collection = t.collection
        );
        let rows = self.rows(sqlx::query(AssertSqlSafe(sql))).await?;
        Ok(rows
            .iter()
            .map(|row| Collection {
                name: row.get("name"),
                items: row.get::<i64, _>("items") as u32,
                updated_at: row.get::<Option<i64>, _>("updated_at").map(from_millis),
            })
            .collect())
    }

    async fn items(
        &self,
        kind: Kind,
        collection: &str,
        with_content: bool,
    ) -> Result<Vec<Item>, ContentError> {
        let t = tables(kind);
        let sql = format!("SELECT 1 FROM {} WHERE name = ?", t.collections);
        let exists = sqlx::query(AssertSqlSafe(sql)).bind(collection);
        if self.row(exists).await?.is_none() {
            return Err(ContentError::NotFound(format!(
                "no {} {collection:?}",
                collection_word(kind)
            )));
        }
        let sql = format!("{} ORDER BY {}", select_items(&t), t.name);
        let rows = self
            .rows(sqlx::query(AssertSqlSafe(sql)).bind(collection))
            .await?;
        Ok(rows
            .iter()
            .map(|row| item(kind, collection, row, with_content))
            .collect())
    }

    async fn get(&self, key: &Key) -> Result<Item, ContentError> {
        let t = tables(key.kind);
        let sql = format!("{} AND {} = ?", select_items(&t), t.name);
        let select = sqlx::query(AssertSqlSafe(sql))
            .bind(&key.collection)
            .bind(&key.name);
        let row = self
            .row(select)
            .await?
            .ok_or_else(|| ContentError::NotFound(format!("no {key}")))?;
        Ok(item(key.kind, &key.collection, &row, true))
    }

    async fn put(
        &self,
        key: &Key,
        content: &str,
        expected: Option<u64>,
    ) -> Result<Written, ContentError> {
        let t = tables(key.kind);
        let now = millis(SystemTime::now());
        let mut connection = self.connection().await;
        let storage = |e| self.storage(e);
        let (current, version) = transaction(&mut connection, storage, async |tx| {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT OR IGNORE INTO {} (name) VALUES (?)",
                t.collections
            )))
            .bind(&key.collection)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
            let current = self.checked_version(tx, key, expected).await?;
            let version = current.unwrap_or(0) + 1;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {items} ({collection}, {name}, content, version, updated_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT ({collection}, {name}) DO UPDATE SET content = excluded.content, \
                 version = excluded.version, updated_at = excluded.updated_at",
                items = t.items,
                collection = t.collection,
                name = t.name
            )))
            .bind(&key.collection)
            .bind(&key.name)
            .bind(content)
            .bind(version as i64)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
            Ok((current, version))
        })
        .await?;
        self.health.wrote();
        let item = Item {
            key: key.clone(),
            content: content.to_owned(),
            version,
            updated_at: from_millis(now),
            size: content.len() as u64,
            sha256: sha256(content),
        };
        Ok(Written {
            item,
            created: current.is_none(),
            warnings: Vec::new(),
        })
    }

    async fn delete(&self, key: &Key, expected: Option<u64>) -> Result<u64, ContentError> {
        let t = tables(key.kind);
        let mut connection = self.connection().await;
        let storage = |e| self.storage(e);
        let actual = transaction(&mut connection, storage, async |tx| {
            let actual = self
                .checked_version(tx, key, expected)
                .await?
                .ok_or_else(|| ContentError::NotFound(format!("no {key}")))?;
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {} WHERE {} = ? AND {} = ?",
                t.items, t.collection, t.name
            )))
            .bind(&key.collection)
            .bind(&key.name)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
            Ok(actual)
        })
        .await?;
        self.health.wrote();
        Ok(actual)
    }
}

/// "template set" or "theme".
fn collection_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Template => "template set",
        Kind::Stylesheet => "theme",
    }
}
