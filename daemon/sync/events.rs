//! The sync event bus: everything the watcher and reconciler did or saw,
//! each event with a monotonically increasing revision, a bounded history
//! for resuming subscribers, and the running tallies that `GetSyncStatus`
//! reports — updated under the same lock as the revision, so a snapshot
//! is exactly the tallies at its revision.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use super::Key;
use crate::bus::{self, Bus, Revisioned};

/// Events kept for resuming subscribers (and the broadcast buffer size).
pub const HISTORY: usize = 4096;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A file's content was written to the database.
    Imported,
    /// Database content was written to a file (or a file removed).
    Exported,
    /// A 0-byte file was skipped.
    SkippedEmpty,
    /// A file was rejected.
    Rejected,
    /// Both sides changed differently.
    Conflict,
    /// A conflict was resolved.
    ConflictResolved,
    /// A file is gone; its content is kept.
    Orphaned,
    /// The watcher was paused by a user.
    Paused,
    /// The watcher was resumed by a user.
    Resumed,
    /// A rescan finished.
    Rescanned,
    ExportFinished,
    /// The watcher failed.
    WatcherError,
    /// Content was changed through the API or in the database.
    ContentChanged,
    /// Something a user should know: a write that did not do all it
    /// should (a cache file not written), duplicates in the database.
    Warning,
    /// A path, a rescan or an export started failing; it is tried again
    /// with back-off until it works.
    Failing,
    /// What was failing works again.
    Recovered,
}

/// What a new event says; the board adds revision and time.
#[derive(Clone, Debug)]
pub struct Notice {
    /// What happened.
    pub kind: EventKind,
    /// The content concerned.
    pub key: Option<Key>,
    /// The file concerned.
    pub path: Option<PathBuf>,
    /// The content's database version after the event (0: none).
    pub version: u64,
    /// Details.
    pub message: String,
}

impl Notice {
    /// A notice of `kind` saying `message`.
    pub fn new(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            key: None,
            path: None,
            version: 0,
            message: message.into(),
        }
    }

    /// About this content.
    pub fn key(mut self, key: &Key) -> Self {
        self.key = Some(key.clone());
        self
    }

    /// About this file.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// With the content's version after the event.
    pub fn version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }
}

/// One event on the bus.
#[derive(Clone, Debug)]
pub struct SyncEvent {
    /// Monotonically increasing (see [`crate::bus`]).
    pub revision: u64,
    /// When it happened.
    pub time: SystemTime,
    /// What it says.
    pub notice: Notice,
}

impl Revisioned for SyncEvent {
    fn revision(&self) -> u64 {
        self.revision
    }
}

/// What the reconciler did since the daemon started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Entities brought in line, either way.
    pub synced: u64,
    /// 0-byte files skipped.
    pub skipped_empty: u64,
    /// Files rejected.
    pub rejected: u64,
    /// Conflicts detected.
    pub conflicts: u64,
    /// Conflicts not resolved yet.
    pub open_conflicts: u32,
    /// When the last rescan finished.
    pub last_rescan_at: Option<SystemTime>,
    /// The last error, if any.
    pub last_error: Option<String>,
}

impl Tally {
    fn count(&mut self, notice: &Notice, time: SystemTime) {
        match notice.kind {
            EventKind::Imported | EventKind::Exported => self.synced += 1,
            EventKind::SkippedEmpty => self.skipped_empty += 1,
            EventKind::Rejected => self.rejected += 1,
            EventKind::Conflict => {
                self.conflicts += 1;
                self.open_conflicts += 1;
            }
            EventKind::ConflictResolved => {
                self.open_conflicts = self.open_conflicts.saturating_sub(1)
            }
            EventKind::Rescanned => self.last_rescan_at = Some(time),
            EventKind::WatcherError => self.last_error = Some(notice.message.clone()),
            EventKind::Orphaned
            | EventKind::Paused
            | EventKind::Resumed
            | EventKind::ExportFinished
            | EventKind::ContentChanged
            | EventKind::Warning
            | EventKind::Failing
            | EventKind::Recovered => {}
        }
    }
}

/// The tallies at a revision.
#[derive(Clone, Debug)]
pub struct TallySnapshot {
    pub revision: u64,
    /// The tallies at it.
    pub tally: Tally,
    /// Taken because events the subscriber asked for were skipped.
    pub resync: bool,
}

impl bus::Snapshot for TallySnapshot {
    fn revision(&self) -> u64 {
        self.revision
    }
}

/// A subscription to the board: a snapshot or a replay, then live events.
pub type Subscription = bus::Subscription<SyncEvent, TallySnapshot>;

struct Inner {
    bus: Bus<SyncEvent>,
    tally: Tally,
}

/// The event bus of sync.
pub struct SyncBoard {
    inner: Mutex<Inner>,
}

impl SyncBoard {
    /// A board whose tallies start with `open_conflicts` from the store.
    pub fn new(open_conflicts: u32) -> Self {
        Self {
            inner: Mutex::new(Inner {
                bus: Bus::new(HISTORY),
                tally: Tally {
                    open_conflicts,
                    ..Tally::default()
                },
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes a notice (and logs it).
    pub fn publish(&self, notice: Notice) -> Arc<SyncEvent> {
        let path = notice.path.as_ref().map(|p| p.display().to_string());
        match notice.kind {
            EventKind::SkippedEmpty | EventKind::Rejected | EventKind::WatcherError => {
                tracing::warn!(kind = ?notice.kind, path, message = %notice.message, "sync")
            }
            EventKind::Recovered => {
                tracing::info!(kind = ?notice.kind, path, message = %notice.message, "sync")
            }
            _ => tracing::debug!(kind = ?notice.kind, path, message = %notice.message, "sync"),
        }
        let mut inner = self.lock();
        let time = SystemTime::now();
        inner.tally.count(&notice, time);
        inner.bus.publish(|revision| SyncEvent {
            revision,
            time,
            notice,
        })
    }

    /// The current tallies, taken as a resync (for a subscriber that fell
    /// behind) when `resync`.
    pub fn tally(&self, resync: bool) -> TallySnapshot {
        let inner = self.lock();
        TallySnapshot {
            revision: inner.bus.revision(),
            tally: inner.tally.clone(),
            resync,
        }
    }

    /// Subscribes; `since` resumes after that revision when the history
    /// still holds every event after it.
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        let inner = self.lock();
        inner.bus.subscribe(since, |resync| TallySnapshot {
            revision: inner.bus.revision(),
            tally: inner.tally.clone(),
            resync,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_follow_the_events() {
        let board = SyncBoard::new(1);
        let first = board.tally(false).revision;
        board.publish(Notice::new(EventKind::Imported, ""));
        board.publish(Notice::new(EventKind::Conflict, ""));
        board.publish(Notice::new(EventKind::ConflictResolved, ""));
        board.publish(Notice::new(EventKind::WatcherError, "boom"));
        let TallySnapshot {
            revision, tally, ..
        } = board.tally(false);
        assert_eq!(revision, first + 4);
        assert_eq!(
            (tally.synced, tally.conflicts, tally.open_conflicts),
            (1, 1, 1)
        );
        assert_eq!(tally.last_error.as_deref(), Some("boom"));
    }
}
