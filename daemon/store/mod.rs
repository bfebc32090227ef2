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
pub mod guard;
pub mod health;
pub mod history;
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
use tokio::sync::{Mutex, MutexGuard, watch};

use self::health::{Health, StoreHealth};

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
    health: Health,
}

/// Runs `body` as one transaction on `connection`: committed if it
/// succeeds, rolled back if anything fails. `fail` turns SQLite's errors
/// into the caller's.
///
/// sqlx's own `Transaction` is not used. It counts nesting itself, and when
/// SQLite rolls a transaction back on its own (a full disk does that) its
/// ROLLBACK fails and the count stays one too high: its next "transaction"
/// is a savepoint, and when releasing that fails too (the disk is still
/// full), SQLite keeps the transaction open — and every later statement,
/// answered OK, runs inside a transaction nothing will ever commit. Here a
/// failure always ends with a ROLLBACK (harmless when SQLite already rolled
/// back), so no transaction outlives its call.
async fn transaction<T, E>(
    connection: &mut SqliteConnection,
    fail: impl Fn(sqlx::Error) -> E,
    body: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, E>,
) -> Result<T, E> {
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *connection)
        .await
        .map_err(&fail)?;
    let result = match body(&mut *connection).await {
        Ok(value) => sqlx::query("COMMIT")
            .execute(&mut *connection)
            .await
            .map(|_| value)
            .map_err(&fail),
        Err(err) => Err(err),
    };
    if result.is_err()
        && let Err(err) = sqlx::query("ROLLBACK").execute(&mut *connection).await
        && !err.to_string().contains("no transaction is active")
    {
        tracing::error!(%err, "cannot roll back a failed transaction");
    }
    result
}

/// Opens the database file at `path` as the store uses it, private to the
/// daemon's user: the file is made (or made again) 0600 before SQLite opens
/// it, and SQLite gives its `-wal` and `-shm` files the same mode.
async fn connect(path: &Path) -> Result<SqliteConnection, String> {
    make_private(path).map_err(|err| format!("cannot make it private (0600): {err}"))?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    SqliteConnection::connect_with(&options)
        .await
        .map_err(|err| err.to_string())
}

/// Creates `path` with mode 0600 if it is missing, and takes group and
/// other access away from it and its `-wal` and `-shm` files if they exist.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        match std::fs::metadata(file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
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
        let mut connection = connect(path).await.map_err(unusable)?;
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
            health: Health::new(path),
        })
    }

    /// Whether writes succeed, now and as it changes.
    pub fn health(&self) -> watch::Receiver<StoreHealth> {
        self.health.subscribe()
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
