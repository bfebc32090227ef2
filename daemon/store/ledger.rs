//! Sync's ledger in the state database: the base of each synced entity
//! (`sync_base`) and the open conflicts (`sync_conflicts`).

use std::collections::HashMap;

use sqlx::{Row, sqlite::SqliteRow};

use super::{Store, from_millis, millis, transaction};
use crate::sync::{Conflict, ContentError, Key, Kind, file::Stat, ledger::Ledger, reconcile::Base};

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
        stat: Stat {
            size: row.get::<i64, _>("file_size") as u64,
            mtime_ns: row.get("file_mtime"),
            inode: row.get::<i64, _>("file_inode") as u64,
        },
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

impl Ledger for Store {
    async fn bases(
        &self,
        kind: Kind,
        collection: &str,
    ) -> Result<HashMap<String, Base>, ContentError> {
        let select = sqlx::query(
            "SELECT name, sha256, db_version, file_size, file_mtime, file_inode FROM sync_base \
             WHERE kind = ? AND collection = ?",
        )
        .bind(kind_name(kind))
        .bind(collection);
        let rows = self.rows(select).await?;
        Ok(rows
            .iter()
            .map(|row| (row.get("name"), base_from(row)))
            .collect())
    }

    async fn base(&self, key: &Key) -> Result<Option<Base>, ContentError> {
        let select = sqlx::query(
            "SELECT sha256, db_version, file_size, file_mtime, file_inode FROM sync_base \
             WHERE kind = ? AND collection = ? AND name = ?",
        )
        .bind(kind_name(key.kind))
        .bind(&key.collection)
        .bind(&key.name);
        Ok(self.row(select).await?.as_ref().map(base_from))
    }

    async fn forget_base(&self, key: &Key) -> Result<(), ContentError> {
        let delete =
            sqlx::query("DELETE FROM sync_base WHERE kind = ? AND collection = ? AND name = ?")
                .bind(kind_name(key.kind))
                .bind(&key.collection)
                .bind(&key.name);
        self.run(delete).await
    }

    async fn synced_collections(&self, kind: Kind) -> Result<Vec<String>, ContentError> {
        sqlx::query_scalar("SELECT DISTINCT collection FROM sync_base WHERE kind = ?")
            .bind(kind_name(kind))
            .fetch_all(&mut *self.connection().await)
            .await
            .map_err(|e| self.storage(e))
    }

    async fn add_conflict(&self, conflict: &Conflict) -> Result<(), ContentError> {
        let insert = sqlx::query(
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
        .bind(millis(conflict.detected_at));
        self.run(insert).await
    }

    async fn conflicts(&self) -> Result<Vec<Conflict>, ContentError> {
        let select = sqlx::query("SELECT * FROM sync_conflicts ORDER BY detected_at, id");
        Ok(self.rows(select).await?.iter().map(conflict_from).collect())
    }

    async fn conflict(&self, id: &str) -> Result<Conflict, ContentError> {
        let select = sqlx::query("SELECT * FROM sync_conflicts WHERE id = ?").bind(id);
        let row = self
            .row(select)
            .await?
            .ok_or_else(|| ContentError::NotFound(format!("no conflict {id:?}")))?;
        Ok(conflict_from(&row))
    }

    async fn remove_conflict(&self, id: &str) -> Result<(), ContentError> {
        let delete = sqlx::query("DELETE FROM sync_conflicts WHERE id = ?").bind(id);
        self.run(delete).await
    }

    async fn set_bases(&self, bases: &[(Key, Base)]) -> Result<(), ContentError> {
        let mut connection = self.connection().await;
        let storage = |e| self.storage(e);
        transaction(&mut connection, storage, async |tx| {
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
                .bind(base.stat.size as i64)
                .bind(base.stat.mtime_ns)
                .bind(base.stat.inode as i64)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
            }
            Ok(())
        })
        .await?;
        self.health.wrote();
        Ok(())
    }
}
