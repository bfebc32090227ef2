//! The history's index in the state database: `history_commits` in branch
//! order (`seq`) and `history_changes`, the subjects each changed, keyed
//! so that one subject's versions are one index range.

use futures_util::future::BoxFuture;
use sqlx::{AssertSqlSafe, Row, SqliteConnection, sqlite::SqliteRow};

use super::{Store, from_millis, millis, transaction};
use crate::history::{Index, IndexedCommit, Source, Subject, Version};

/// Spliced into the two selects (a constant: nothing of a request).
const VERSION_COLUMNS: &str = "c.rev, c.committed_at, c.source, c.actor, c.summary, \
     ch.path, ch.blob, ch.size";

fn version_from(row: &SqliteRow) -> Version {
    Version {
        rev: row.get("rev"),
        committed_at: from_millis(row.get("committed_at")),
        source: row
            .get::<Option<String>, _>("source")
            .and_then(|source| Source::parse(&source)),
        actor: row.get("actor"),
        summary: row.get("summary"),
        path: row.get("path"),
        blob: row.get("blob"),
        size: row.get::<i64, _>("size") as u64,
    }
}

async fn insert(
    connection: &mut SqliteConnection,
    commits: &[IndexedCommit],
    replace: bool,
) -> Result<(), sqlx::Error> {
    if replace {
        sqlx::query("DELETE FROM history_commits")
            .execute(&mut *connection)
            .await?;
    }
    for commit in commits {
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO history_commits (rev, committed_at, source, actor, summary) \
             VALUES (?, ?, ?, ?, ?) RETURNING seq",
        )
        .bind(&commit.rev)
        .bind(millis(commit.committed_at))
        .bind(commit.source.map(Source::as_str))
        .bind(&commit.actor)
        .bind(&commit.summary)
        .fetch_one(&mut *connection)
        .await?;
        for change in &commit.changes {
            let columns = change.subject.columns();
            // A commit made by hand may hold a subject at two paths (a
            // template moved between groups): the last one counts.
            sqlx::query(
                "INSERT OR REPLACE INTO history_changes \
                 (seq, kind, collection, name, path, blob, size) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(seq)
            .bind(columns.kind)
            .bind(columns.collection)
            .bind(columns.name)
            .bind(&change.path)
            .bind(&change.blob)
            .bind(change.size as i64)
            .execute(&mut *connection)
            .await?;
        }
    }
    Ok(())
}

impl Index for Store {
    fn head(&self) -> BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT rev FROM history_commits ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *self.connection().await)
                .await
                .map_err(|err| err.to_string())
        })
    }

    fn add(&self, commits: Vec<IndexedCommit>, replace: bool) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut connection = self.connection().await;
            transaction(
                &mut connection,
                |err| err.to_string(),
                async |connection| {
                    insert(connection, &commits, replace)
                        .await
                        .map_err(|err| err.to_string())
                },
            )
            .await
        })
    }

    fn versions<'a>(
        &'a self,
        subject: &'a Subject,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Version>, String>> {
        Box::pin(async move {
            let columns = subject.columns();
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {VERSION_COLUMNS} FROM history_changes ch \
                 JOIN history_commits c ON c.seq = ch.seq \
                 WHERE ch.kind = ? AND ch.collection = ? AND ch.name = ? \
                 ORDER BY ch.seq DESC LIMIT ?"
            )))
            .bind(columns.kind)
            .bind(columns.collection)
            .bind(columns.name)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.connection().await)
            .await
            .map_err(|err| err.to_string())?;
            Ok(rows.iter().map(version_from).collect())
        })
    }

    fn version_at<'a>(
        &'a self,
        subject: &'a Subject,
        rev: &'a str,
    ) -> BoxFuture<'a, Result<Option<Option<Version>>, String>> {
        Box::pin(async move {
            let mut connection = self.connection().await;
            let seq: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM history_commits WHERE rev = ?")
                    .bind(rev)
                    .fetch_optional(&mut *connection)
                    .await
                    .map_err(|err| err.to_string())?;
            let Some(seq) = seq else {
                return Ok(None);
            };
            let columns = subject.columns();
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {VERSION_COLUMNS} FROM history_changes ch \
                 JOIN history_commits c ON c.seq = ch.seq \
                 WHERE ch.kind = ? AND ch.collection = ? AND ch.name = ? AND ch.seq <= ? \
                 ORDER BY ch.seq DESC LIMIT 1"
            )))
            .bind(columns.kind)
            .bind(columns.collection)
            .bind(columns.name)
            .bind(seq)
            .fetch_optional(&mut *connection)
            .await
            .map_err(|err| err.to_string())?;
            Ok(Some(row.as_ref().map(version_from)))
        })
    }
}
