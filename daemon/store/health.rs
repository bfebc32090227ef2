//! Whether the state database takes writes. Every write through the store
//! reports its outcome here, so that a failure (a full disk, an I/O error,
//! the file deleted under the daemon) is seen at once by whoever watches —
//! gRPC health turns NOT_SERVING, the daemon's status names the cause — and
//! the first write that succeeds again (a caller's, the record writer's
//! retry, or the [guard](super::guard)'s probe) clears it — once the file
//! system has room again: on a full disk, a write that only rewrites pages
//! SQLite already has can succeed while any that needs a new one fails, so
//! one success alone would make health flap.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use tokio::sync::watch;

/// The state database's ability to take writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreHealth {
    /// The last write succeeded.
    Writable,
    /// Writes fail.
    Failing {
        /// The latest failure, naming the file.
        cause: String,
        /// When the current run of failures began.
        since: SystemTime,
    },
}

/// Room the file system of the data directory must have before a failing
/// store counts as writable again: more than the largest write the daemon
/// makes at once, short of content at its size limit.
pub const MIN_FREE: u64 = 4 << 20;

/// The store's side of [`StoreHealth`]: told of outcomes, it logs the
/// changes (once each, not once per write) and publishes them.
pub(super) struct Health {
    state: watch::Sender<StoreHealth>,
    /// The directory of the database, whose file system's room is checked.
    dir: PathBuf,
}

impl Health {
    pub(super) fn new(database: &Path) -> Self {
        Self {
            state: watch::Sender::new(StoreHealth::Writable),
            dir: database.parent().unwrap_or(Path::new("/")).to_owned(),
        }
    }

    /// A write (or a read needed by one) failed with `cause`.
    pub(super) fn failed(&self, cause: &str) {
        self.state.send_if_modified(|health| match health {
            StoreHealth::Writable => {
                tracing::error!(cause, "a write to the state database failed; changes that cannot be stored are refused");
                *health = StoreHealth::Failing {
                    cause: cause.to_owned(),
                    since: SystemTime::now(),
                };
                true
            }
            StoreHealth::Failing { cause: latest, .. } if latest != cause => {
                cause.clone_into(latest);
                true
            }
            StoreHealth::Failing { .. } => false,
        });
    }

    /// A write succeeded.
    pub(super) fn wrote(&self) {
        if !self.is_failing() {
            return;
        }
        if let Some(short) = self.short_of_room() {
            self.failed(&short);
            return;
        }
        self.state.send_if_modified(|health| match health {
            StoreHealth::Writable => false,
            StoreHealth::Failing { since, .. } => {
                let failing_for = since.elapsed().unwrap_or_default();
                tracing::info!(?failing_for, "the state database takes writes again");
                *health = StoreHealth::Writable;
                true
            }
        });
    }

    pub(super) fn is_failing(&self) -> bool {
        matches!(*self.state.borrow(), StoreHealth::Failing { .. })
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<StoreHealth> {
        self.state.subscribe()
    }

    /// Why the file system of the database has too little room, if it
    /// has (what the daemon's user may use: root may use the reserve).
    fn short_of_room(&self) -> Option<String> {
        let stat = nix::sys::statvfs::statvfs(&self.dir).ok()?;
        let blocks = if nix::unistd::geteuid().is_root() {
            stat.blocks_free()
        } else {
            stat.blocks_available()
        };
        let free = blocks.saturating_mul(stat.fragment_size());
        (free < MIN_FREE).then(|| {
            format!(
                "the file system of {} has {} KiB free; the state database needs {} KiB",
                self.dir.display(),
                free >> 10,
                MIN_FREE >> 10
            )
        })
    }
}
