//! The daemon's own content database: [`ContentStore`] over the SQLite
//! state database. Templates and stylesheets share one code path; only the
//! table and column names differ.

use std::time::SystemTime;

// Dynamic SQL here only ever splices the constant table and column names
// of `tables`; every value is bound.
use sqlx::{AssertSqlSafe, Connection, Row, sqlite::SqliteRow};

use super::{Store, from_millis, millis};
use crate::sync::{
    Collection, Conflict, ContentError, ContentStore, Item, Key, Kind, reconcile::Base, sha256,
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
    fn storage(&self, err: sqlx::Error) -> ContentError {
        ContentError::Storage(format!(
            "cannot use the state database {}: {err}",
            self.path().display()
        ))
    }
    /// The current version of `key` (None: it does not exist), failing
    /// the compare-and-swap when `expected` is given and differs (0 stands
    /// for "does not exist").
    async fn checked_version(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
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
        .fetch_optional(&mut **tx)
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
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&mut *self.connection().await)
            .await
            .map_err(|e| self.storage(e))?;
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
        let exists = sqlx::query(AssertSqlSafe(format!(
            "SELECT 1 FROM {} WHERE name = ?",
            t.collections
        )))
        .bind(collection)
        .fetch_optional(&mut *self.connection().await)
        .await
        .map_err(|e| self.storage(e))?;
        if exists.is_none() {
            return Err(ContentError::NotFound(format!(
                "no {} {collection:?}",
                collection_word(kind)
            )));
        }
        let sql = format!("{} ORDER BY {}", select_items(&t), t.name);
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(collection)
            .fetch_all(&mut *self.connection().await)
            .await
            .map_err(|e| self.storage(e))?;
        Ok(rows
            .iter()
            .map(|row| item(kind, collection, row, with_content))
            .collect())
    }

    async fn get(&self, key: &Key) -> Result<Item, ContentError> {
        let t = tables(key.kind);
        let sql = format!("{} AND {} = ?", select_items(&t), t.name);
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(&key.collection)
            .bind(&key.name)
            .fetch_optional(&mut *self.connection().await)
            .await
            .map_err(|e| self.storage(e))?
            .ok_or_else(|| ContentError::NotFound(format!("no {key}")))?;
        Ok(item(key.kind, &key.collection, &row, true))
    }

    async fn put(
        &self,
        key: &Key,
        content: &str,
        expected: Option<u64>,
    ) -> Result<(Item, bool), ContentError> {
        let t = tables(key.kind);
        let mut connection = self.connection().await;
        let mut tx = connection.begin().await.map_err(|e| self.storage(e))?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT OR IGNORE INTO {} (name) VALUES (?)",
            t.collections
        )))
        .bind(&key.collection)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.storage(e))?;
        let current = self.checked_version(&mut tx, key, expected).await?;
        let actual = current.unwrap_or(0);
        let now = millis(SystemTime::now());
        let version = actual + 1;
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
        .map_err(|e| self.storage(e))?;
        tx.commit().await.map_err(|e| self.storage(e))?;
        let item = Item {
            key: key.clone(),
            content: content.to_owned(),
            version,
            updated_at: from_millis(now),
            size: content.len() as u64,
            sha256: sha256(content),
        };
        Ok((item, current.is_none()))
    }

    async fn delete(&self, key: &Key, expected: Option<u64>) -> Result<u64, ContentError> {
        let t = tables(key.kind);
        let mut connection = self.connection().await;
        let mut tx = connection.begin().await.map_err(|e| self.storage(e))?;
        let actual = self
            .checked_version(&mut tx, key, expected)
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
        .map_err(|e| self.storage(e))?;
        tx.commit().await.map_err(|e| self.storage(e))?;
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

/// The name a kind has in `sync_base` and `sync_conflicts`.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Template => "template",
        Kind::Stylesheet => "stylesheet",
    }
}

fn kind_from_name(name: &str) -> Kind {
    if name == "stylesheet" {
        Kind::Stylesheet
    } else {
        Kind::Template
    }
}

fn base_from(row: &SqliteRow) -> Base {
    Base {
        sha256: row.get("sha256"),
        db_version: row.get::<i64, _>("db_version") as u64,
        stat: (
            row.get::<i64, _>("file_size") as u64,
            row.get("file_mtime"),
            row.get::<i64, _>("file_inode") as u64,
        ),
    }
}

fn conflict_from(row: &SqliteRow) -> Conflict {
    Conflict {
        id: row.get("id"),
        key: Key {
            kind: kind_from_name(row.get("kind")),
            collection: row.get("collection"),
            name: row.get("name"),
        },
        path: row.get::<String, _>("path").into(),
        copy_path: row.get::<String, _>("copy_path").into(),
        db_version: row.get::<i64, _>("db_version") as u64,
        db_sha256: row.get("db_sha256"),
        disk_sha256: row.get("disk_sha256"),
        detected_at: from_millis(row.get("detected_at")),
    }
}

impl Store {
    /// The base state of every entity of a collection, by item name.
    pub async fn bases(
        &self,
        kind: Kind,
        collection: &str,
    ) -> Result<std::collections::HashMap<String, Base>, ContentError> {
        let rows = sqlx::query(
            "SELECT name, sha256, db_version, file_size, file_mtime, file_inode FROM sync_base \
             WHERE kind = ? AND collection = ?",
        )
        .bind(kind_name(kind))
        .bind(collection)
        .fetch_all(&mut *self.connection().await)
        .await
        .map_err(|e| self.storage(e))?;
        Ok(rows
            .iter()
            .map(|row| (row.get("name"), base_from(row)))
            .collect())
    }

    /// The base state of one entity.
    pub async fn base(&self, key: &Key) -> Result<Option<Base>, ContentError> {
        let row = sqlx::query(
            "SELECT sha256, db_version, file_size, file_mtime, file_inode FROM sync_base \
             WHERE kind = ? AND collection = ? AND name = ?",
        )
        .bind(kind_name(key.kind))
        .bind(&key.collection)
        .bind(&key.name)
        .fetch_optional(&mut *self.connection().await)
        .await
        .map_err(|e| self.storage(e))?;
        Ok(row.as_ref().map(base_from))
    }

    /// Forgets the base state of one entity.
    pub async fn forget_base(&self, key: &Key) -> Result<(), ContentError> {
        sqlx::query("DELETE FROM sync_base WHERE kind = ? AND collection = ? AND name = ?")
            .bind(kind_name(key.kind))
            .bind(&key.collection)
            .bind(&key.name)
            .execute(&mut *self.connection().await)
            .await
            .map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// The collections of `kind` that have a base state.
    pub async fn synced_collections(&self, kind: Kind) -> Result<Vec<String>, ContentError> {
        sqlx::query_scalar("SELECT DISTINCT collection FROM sync_base WHERE kind = ?")
            .bind(kind_name(kind))
            .fetch_all(&mut *self.connection().await)
            .await
            .map_err(|e| self.storage(e))
    }

    /// Records a conflict.
    pub async fn add_conflict(&self, conflict: &Conflict) -> Result<(), ContentError> {
        sqlx::query(
            "INSERT INTO sync_conflicts (id, kind, collection, name, path, copy_path, db_version, \
             db_sha256, disk_sha256, detected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&conflict.id)
        .bind(kind_name(conflict.key.kind))
        .bind(&conflict.key.collection)
        .bind(&conflict.key.name)
        .bind(conflict.path.to_string_lossy())
        .bind(conflict.copy_path.to_string_lossy())
        .bind(conflict.db_version as i64)
        .bind(&conflict.db_sha256)
        .bind(&conflict.disk_sha256)
        .bind(millis(conflict.detected_at))
        .execute(&mut *self.connection().await)
        .await
        .map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// Every unresolved conflict, oldest first.
    pub async fn conflicts(&self) -> Result<Vec<Conflict>, ContentError> {
        let rows = sqlx::query("SELECT * FROM sync_conflicts ORDER BY detected_at, id")
            .fetch_all(&mut *self.connection().await)
            .await
            .map_err(|e| self.storage(e))?;
        Ok(rows.iter().map(conflict_from).collect())
    }

    /// One unresolved conflict.
    pub async fn conflict(&self, id: &str) -> Result<Conflict, ContentError> {
        let row = sqlx::query("SELECT * FROM sync_conflicts WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *self.connection().await)
            .await
            .map_err(|e| self.storage(e))?
            .ok_or_else(|| ContentError::NotFound(format!("no conflict {id:?}")))?;
        Ok(conflict_from(&row))
    }

    /// Forgets a resolved conflict.
    pub async fn remove_conflict(&self, id: &str) -> Result<(), ContentError> {
        sqlx::query("DELETE FROM sync_conflicts WHERE id = ?")
            .bind(id)
            .execute(&mut *self.connection().await)
            .await
            .map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// Records what both sides agreed on, in one transaction.
    pub async fn set_bases(&self, bases: &[(Key, Base)]) -> Result<(), ContentError> {
        let mut connection = self.connection().await;
        let mut tx = connection.begin().await.map_err(|e| self.storage(e))?;
        for (key, base) in bases {
            sqlx::query(
                "INSERT OR REPLACE INTO sync_base (kind, collection, name, sha256, db_version, file_size, file_mtime, file_inode) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(kind_name(key.kind))
            .bind(&key.collection)
            .bind(&key.name)
            .bind(&base.sha256)
            .bind(base.db_version as i64)
            .bind(base.stat.0 as i64)
            .bind(base.stat.1)
            .bind(base.stat.2 as i64)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.storage(e))?;
        }
        tx.commit().await.map_err(|e| self.storage(e))
    }
}
