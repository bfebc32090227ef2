//! The store: SQLite (through sqlx) in the data directory. It owns SQL and
//! nothing else — it never calls an actor and never sees a process, only
//! the data describing one. Writes go through [`writer`], which batches
//! them into transactions.
//!
//! The database is opened with WAL, `synchronous=NORMAL`, a busy timeout
//! and foreign keys, checked with `quick_check`, and migrated with the
//! migrations embedded from `migrations/`. A file that is not a database,
//! fails its check, or carries a newer schema than this binary knows is
//! refused with an error naming it: the daemon never starts empty and
//! forgets running instances.

pub mod content;
pub mod writer;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Serialize, de::DeserializeOwned};
use sqlx::{
    Row, SqlitePool,
    migrate::MigrateError,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};

use crate::orchestrator::status::{InstanceStatus, ProcessInfo, Reason};

/// Name of the database file in the data directory.
pub const FILE_NAME: &str = "state.db";
/// Transitions kept per instance.
pub const EVENTS_KEPT: i64 = 200;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be opened, is not a database, or is damaged.
    #[error("cannot use the state database {path}: {cause}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        cause: String,
    },
    /// The file was written by a newer outpostd.
    #[error(
        "the state database {path} has schema version {version}, newer than this outpostd knows: run a newer outpostd, or move the file away to start empty"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The unknown version.
        version: i64,
    },
    /// A write failed (full disk, I/O error, lock).
    #[error("cannot write the state database {path}: {cause}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What happened.
        cause: String,
    },
}

/// One change to persist.
#[derive(Debug)]
pub enum Op {
    /// Insert or replace an instance's row, and append a transition.
    Upsert {
        /// The status to store.
        status: Box<InstanceStatus>,
        /// The transition that led to it, if this is one.
        transition: Option<Transition>,
    },
    /// Remove an instance (its events and port go with it).
    Delete {
        /// Its id.
        id: String,
    },
}

/// A recorded state transition.
#[derive(Debug)]
pub struct Transition {
    /// When.
    pub at: SystemTime,
    /// Why.
    pub reason: Reason,
    /// Details.
    pub detail: String,
}

/// An instance as stored, with the restart machinery needed to resume.
#[derive(Debug)]
pub struct StoredInstance {
    /// Its status when last written.
    pub status: InstanceStatus,
    /// Boot id of the machine its process was started on.
    pub boot_id: Option<String>,
}

/// The state database.
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn from_millis(value: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(value.max(0) as u64)
}

/// A value as the JSON text stored in a column.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain values serialise")
}

/// A bare name (an enum stored as its serde name, without quotes).
fn name<T: Serialize>(value: &T) -> String {
    json(value).trim_matches('"').to_owned()
}

fn parse<T: DeserializeOwned>(column: &str, text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|err| format!("column {column}: {err}"))
}

fn parse_name<T: DeserializeOwned>(column: &str, text: &str) -> Result<T, String> {
    parse(column, &format!("\"{text}\""))
}

impl Store {
    /// Opens (creating if missing) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let unusable = |cause: String| StoreError::Unusable {
            path: path.to_owned(),
            cause,
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // One connection: the store has one writer, and reads happen at start.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|err| unusable(err.to_string()))?;
        let check: String = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_one(&pool)
            .await
            .map_err(|err| unusable(err.to_string()))?;
        if check != "ok" {
            return Err(unusable(format!("integrity check failed: {check}")));
        }
        match sqlx::migrate!("./migrations").run(&pool).await {
            Ok(()) => {}
            Err(MigrateError::VersionMissing(version)) => {
                return Err(StoreError::NewerSchema {
                    path: path.to_owned(),
                    version,
                });
            }
            Err(err) => return Err(unusable(format!("migration failed: {err}"))),
        }
        Ok(Self {
            pool,
            path: path.to_owned(),
        })
    }

    /// The connection pool (one connection, shared by every user).
    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `ops` in one transaction.
    pub async fn apply(&self, ops: &[Op], boot_id: &str) -> Result<(), StoreError> {
        self.try_apply(ops, boot_id)
            .await
            .map_err(|err| StoreError::Write {
                path: self.path.clone(),
                cause: err.to_string(),
            })
    }

    async fn try_apply(&self, ops: &[Op], boot_id: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for op in ops {
            match op {
                Op::Upsert { status, transition } => {
                    upsert(&mut tx, status, boot_id).await?;
                    if let Some(transition) = transition {
                        sqlx::query(
                            "INSERT INTO instance_events (instance_id, at, state, reason, detail) VALUES (?, ?, ?, ?, ?)",
                        )
                        .bind(&status.id)
                        .bind(millis(transition.at))
                        .bind(name(&status.state))
                        .bind(name(&transition.reason))
                        .bind(&transition.detail)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(
                            "DELETE FROM instance_events WHERE instance_id = ?1 AND seq <= \
                             (SELECT seq FROM instance_events WHERE instance_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                        )
                        .bind(&status.id)
                        .bind(EVENTS_KEPT)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                Op::Delete { id } => {
                    sqlx::query("DELETE FROM instances WHERE id = ?")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await
    }

    /// Every stored instance.
    pub async fn load(&self) -> Result<Vec<StoredInstance>, StoreError> {
        let unusable = |cause: String| StoreError::Unusable {
            path: self.path.clone(),
            cause,
        };
        let rows = sqlx::query("SELECT * FROM instances ORDER BY created_at")
            .fetch_all(&self.pool)
            .await
            .map_err(|err| unusable(err.to_string()))?;
        rows.iter()
            .map(|row| instance(row).map_err(&unusable))
            .collect()
    }
}

async fn upsert(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    status: &InstanceStatus,
    boot_id: &str,
) -> Result<(), sqlx::Error> {
    let process = status.process;
    sqlx::query(
        "INSERT OR REPLACE INTO instances (id, name, project_path, kind, spec, workspace, state, reason, \
         state_changed_at, pid, pgid, start_ticks, boot_id, started_at, port, restart_count, failures, breaker, \
         retry_delay_ms, next_attempt_at, last_error, last_exit, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&status.id)
    .bind(&status.spec.name)
    .bind(status.spec.project_path.as_ref().map(|p| p.display().to_string()))
    .bind(name(&status.kind))
    .bind(json(&*status.spec))
    .bind(&status.workspace)
    .bind(name(&status.state))
    .bind(name(&status.reason))
    .bind(millis(status.state_changed_at))
    .bind(process.map(|p| p.pid as i64))
    .bind(process.map(|p| p.pgid as i64))
    .bind(process.map(|p| p.start_ticks as i64))
    .bind(process.map(|_| boot_id))
    .bind(process.map(|p| millis(p.started_at)))
    .bind(status.port.map(i64::from))
    .bind(status.restart_count as i64)
    .bind(status.backoff.consecutive_failures as i64)
    .bind(name(&status.backoff.breaker))
    .bind(status.backoff.current_delay.as_millis() as i64)
    .bind(status.backoff.next_attempt_at.map(millis))
    .bind(&status.last_error)
    .bind(status.last_exit.as_ref().map(json))
    .bind(millis(status.created_at))
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM port_allocations WHERE instance_id = ?")
        .bind(&status.id)
        .execute(&mut **tx)
        .await?;
    if let Some(port) = status.port {
        sqlx::query("INSERT INTO port_allocations (port, instance_id) VALUES (?, ?)")
            .bind(i64::from(port))
            .bind(&status.id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Rebuilds a stored instance from its row.
fn instance(row: &SqliteRow) -> Result<StoredInstance, String> {
    let text = |column: &str| -> String { row.get(column) };
    let optional = |column: &str| -> Option<i64> { row.get(column) };
    let spec = parse("spec", &text("spec"))?;
    let id = text("id");
    let mut status = InstanceStatus::new(
        id,
        spec,
        parse_name("kind", &text("kind"))?,
        parse_name("state", &text("state"))?,
        optional("port").and_then(|port| u16::try_from(port).ok()),
    );
    status.reason = parse_name("reason", &text("reason"))?;
    status.state_changed_at = from_millis(row.get("state_changed_at"));
    status.workspace = row.get("workspace");
    status.process = match (
        optional("pid"),
        optional("pgid"),
        optional("start_ticks"),
        optional("started_at"),
    ) {
        (Some(pid), Some(pgid), Some(start_ticks), Some(started_at)) => Some(ProcessInfo {
            pid: pid as u32,
            pgid: pgid as u32,
            start_ticks: start_ticks as u64,
            started_at: from_millis(started_at),
        }),
        _ => None,
    };
    status.restart_count = row.get::<i64, _>("restart_count") as u32;
    status.backoff.consecutive_failures = row.get::<i64, _>("failures") as u32;
    status.backoff.breaker = parse_name("breaker", &text("breaker"))?;
    status.backoff.current_delay =
        Duration::from_millis(row.get::<i64, _>("retry_delay_ms").max(0) as u64);
    status.backoff.next_attempt_at = optional("next_attempt_at").map(from_millis);
    status.last_error = row.get("last_error");
    status.last_exit = row
        .get::<Option<String>, _>("last_exit")
        .map(|exit| parse("last_exit", &exit))
        .transpose()?;
    status.created_at = from_millis(row.get("created_at"));
    Ok(StoredInstance {
        status,
        boot_id: row.get("boot_id"),
    })
}
