//! The state file's guard: a task that makes sure what the daemon writes
//! goes on reaching the file the next daemon will read.
//!
//! Two things can break that behind the daemon's back. The file (or its
//! write-ahead log) can be deleted or replaced while the daemon holds it
//! open: SQLite then refuses every write (or, for a deleted log, writes
//! where no later reader looks), and a restart would forget every
//! instance and leave its process orphaned. And writes can fail for a
//! while (a full disk): the store's [health](super::health) says so, but
//! only a write that succeeds can say it is over, and while nothing else
//! writes, the guard's probe is that write.
//!
//! Every [`CHECK_EVERY`] the guard compares the files at the database's
//! path with those it opened (device and inode). On a difference it
//! rewrites the file from the database the daemon still holds open —
//! `VACUUM INTO` a temporary beside it, synced, then renamed into place
//! (a replacement found there is kept beside it, not destroyed) — and
//! reopens it, all while no other statement can run. Content, bases,
//! conflicts and instances come through as the daemon knows them.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use sqlx::{Connection, SqliteConnection};

use super::{Store, connect, millis};

/// How often the files are compared, and a failing store probed.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How much the probe writes: more than any one change of an instance.
const PROBE_SIZE: i64 = 64 << 10;

/// Device and inode of the database file and of its write-ahead log (None
/// while it does not exist).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    database: Option<(u64, u64)>,
    log: Option<(u64, u64)>,
}

impl Identity {
    fn read(path: &Path) -> Self {
        let of = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|meta| (meta.dev(), meta.ino()))
        };
        Self {
            database: of(path),
            log: of(&sibling(path, "-wal")),
        }
    }

    /// What is wrong with the files now at the path, compared with those
    /// the daemon opened (`self`); None if nothing is.
    fn lost(&self, now: &Self) -> Option<&'static str> {
        match (self.database, now.database) {
            (_, None) => Some("was deleted"),
            (Some(opened), Some(found)) if opened != found => Some("was replaced"),
            _ => match (self.log, now.log) {
                (Some(_), None) => Some("lost its write-ahead log (-wal, deleted)"),
                (Some(opened), Some(found)) if opened != found => {
                    Some("lost its write-ahead log (-wal, replaced)")
                }
                _ => None,
            },
        }
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The database the store's connection is on.
enum Held {
    /// The file the daemon opened, as it was then.
    Open(Identity),
    /// None: the lost file was closed after its copy was made, and the
    /// copy (at `file`) is still to be opened. Statements meanwhile fail.
    Closed { file: PathBuf },
}

/// Starts the guard over `store`; it runs until the runtime ends.
pub fn start(store: Arc<Store>) {
    let opened = Identity::read(store.path());
    tokio::spawn(guard(store, Held::Open(opened)));
}

async fn guard(store: Arc<Store>, mut held: Held) {
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        held = match held {
            Held::Closed { file } => match store.reopen(&file).await {
                Ok(()) => {
                    tracing::warn!(
                        file = %file.display(),
                        "the state database is written again from the daemon's state"
                    );
                    Held::Open(Identity::read(&file))
                }
                Err(err) => {
                    store.health.failed(&err);
                    Held::Closed { file }
                }
            },
            Held::Open(opened) => check(&store, opened).await,
        };
        if store.health.is_failing() {
            store.probe().await;
        }
    }
}

/// Compares the files at the store's path with those it opened, and
/// writes them again if they were lost.
async fn check(store: &Store, mut opened: Identity) -> Held {
    let path = store.path().to_owned();
    let now = tokio::task::spawn_blocking(move || Identity::read(&path))
        .await
        .unwrap_or(opened);
    // The log appears with the first write after it was checkpointed
    // away; a log that was never there cannot be lost.
    if opened.log.is_none() && opened.database == now.database {
        opened.log = now.log;
    }
    let Some(what) = opened.lost(&now) else {
        return Held::Open(opened);
    };
    tracing::error!(
        file = %store.path().display(),
        "the state database {what} while the daemon holds it; writing it again from the daemon's state"
    );
    // A file of someone else's in the database's place is kept; the
    // daemon's own file, whose log was lost, is simply replaced.
    let foreign = opened.database != now.database && now.database.is_some();
    match store.copy_and_close(foreign).await {
        Ok((file, kept)) => {
            if let Some(kept) = kept {
                tracing::warn!(
                    replacement = %kept.display(),
                    "the file found in the state database's place is kept aside"
                );
            }
            match store.reopen(&file).await {
                Ok(()) => {
                    tracing::warn!(
                        file = %file.display(),
                        "the state database is written again from the daemon's state"
                    );
                    Held::Open(Identity::read(&file))
                }
                Err(err) => {
                    store.health.failed(&err);
                    Held::Closed { file }
                }
            }
        }
        // Nothing was closed: the next check tries again.
        Err(Uncopied(err)) => {
            store.health.failed(&err);
            Held::Open(opened)
        }
    }
}

/// The copy could not be made; the lost file is still open.
struct Uncopied(String);

impl Store {
    /// A write of [`PROBE_SIZE`], to learn whether writes succeed again.
    async fn probe(&self) {
        let write = sqlx::query(
            "INSERT INTO write_probe (id, written_at, padding) VALUES (1, ?, zeroblob(?)) \
             ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at, padding = excluded.padding",
        )
        .bind(millis(SystemTime::now()))
        .bind(PROBE_SIZE)
        .execute(&mut *self.connection().await)
        .await;
        match write {
            Ok(_) => self.health.wrote(),
            Err(err) => self.health.failed(&format!(
                "cannot write the state database {}: {err}",
                self.path.display()
            )),
        }
    }

    /// Copies the database the daemon holds open to its path (a `foreign`
    /// file found there is moved aside) and closes the old one. Returns the file the
    /// copy is in — the path, unless it could not be moved there — and
    /// where a file found at the path went. Until [`Store::reopen`],
    /// statements fail.
    async fn copy_and_close(&self, foreign: bool) -> Result<(PathBuf, Option<PathBuf>), Uncopied> {
        let mut connection = self.connection().await;
        let path = self.path.clone();
        let cannot = |what: &str, err: &dyn std::fmt::Display| {
            format!(
                "cannot write the state database {} again ({what}): {err}",
                path.display()
            )
        };
        if let Some(dir) = path.parent() {
            crate::pid_lock::create_private_dir("--data-dir", dir)
                .map_err(|err| Uncopied(cannot("its directory", &err)))?;
        }
        let copy = sibling(&path, &format!(".rewrite-{}", millis(SystemTime::now())));
        sqlx::query("VACUUM INTO ?")
            .bind(copy.to_string_lossy().into_owned())
            .execute(&mut *connection)
            .await
            .and_then(|_| sync_file(&copy).map_err(sqlx::Error::Io))
            .map_err(|err| {
                let _ = std::fs::remove_file(&copy);
                Uncopied(cannot("copy", &err))
            })?;
        // The old connection is closed before the copy takes the path:
        // closing removes the log and shared-memory files by name, which
        // would by then be the new database's. In its place meanwhile, a
        // database without tables, on which every statement fails.
        let placeholder = SqliteConnection::connect("sqlite::memory:")
            .await
            .map_err(|err| Uncopied(cannot("placeholder", &err)))?;
        let old = std::mem::replace(&mut *connection, placeholder);
        if let Err(err) = old.close().await {
            tracing::warn!(%err, "closing the lost state database");
        }
        let kept = foreign.then_some(()).and_then(|()| {
            let aside = sibling(&path, &format!(".replaced-{}", millis(SystemTime::now())));
            match std::fs::rename(&path, &aside) {
                Ok(()) => Some(aside),
                Err(err) => {
                    tracing::error!(%err, "cannot move the file found in the state database's place aside");
                    None
                }
            }
        });
        for stale in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(sibling(&path, stale));
        }
        match std::fs::rename(&copy, &path).and_then(|()| sync_parent(&path)) {
            Ok(()) => Ok((path, kept)),
            // The copy holds everything: use it where it is, and move it
            // at a later check (its path is not the store's).
            Err(err) => {
                tracing::error!(%err, copy = %copy.display(), "cannot move the copy of the state database into place");
                Ok((copy, kept))
            }
        }
    }

    /// Opens `file` as the store's database again.
    async fn reopen(&self, file: &Path) -> Result<(), String> {
        let connection = connect(file)
            .await
            .map_err(|err| format!("cannot open the state database {}: {err}", file.display()))?;
        *self.connection().await = connection;
        Ok(())
    }
}

fn sync_file(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}
