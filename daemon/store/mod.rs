//! The store: SQLite (through sqlx) in the data directory. It owns SQL and
//! nothing else — it never calls an actor and never sees a process, only
//! the data describing one. It serves the domains through the interfaces
//! they define: [`InstanceRecords`](crate::orchestrator::records) for the
//! orchestrator ([`instances`]), and for sync the native
//! [`ContentStore`](crate::sync::ContentStore) ([`content`]) and the
//! [`Ledger`](crate::sync::ledger::Ledger) of bases and conflicts
//! ([`ledger`]). The domains never name the store; the daemon hands it to
//! them at start.
//!
//! The database is opened with WAL, `synchronous=NORMAL`, a busy timeout
//! and foreign keys, checked with `quick_check`, and migrated with the
//! migrations embedded from `migrations/`. A file that is not a database,
//! fails its check, or carries a newer schema than this binary knows is
//! refused with an error naming it: the daemon never starts empty and
//! forgets running instances.

pub mod backend;
pub mod content;
pub mod instances;
pub mod ledger;
pub mod mybb;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sqlx::{
    Connection, SqliteConnection,
    migrate::MigrateError,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};
use tokio::sync::{Mutex, MutexGuard};

/// Name of the database file in the data directory.
pub const FILE_NAME: &str = "state.db";

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

/// The state database.
pub struct Store {
    /// The one connection. Not a pool: sqlx's pool pings a connection every
    /// time it is given back, a round trip to SQLite's thread per use, and
    /// the store has one writer anyway.
    connection: Mutex<SqliteConnection>,
    path: PathBuf,
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn from_millis(value: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(value.max(0) as u64)
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
        let mut connection = SqliteConnection::connect_with(&options)
            .await
            .map_err(|err| unusable(err.to_string()))?;
        let check: String = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_one(&mut connection)
            .await
            .map_err(|err| unusable(err.to_string()))?;
        if check != "ok" {
            return Err(unusable(format!("integrity check failed: {check}")));
        }
        match sqlx::migrate!("store/migrations")
            .run(&mut connection)
            .await
        {
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
            connection: Mutex::new(connection),
            path: path.to_owned(),
        })
    }

    /// The connection, for as long as the guard is held.
    async fn connection(&self) -> MutexGuard<'_, SqliteConnection> {
        self.connection.lock().await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
