//! The sync engine: one reconciler for the whole sync root.
//!
//! File events (from the [`watcher`](super::watcher)) and API changes are
//! only hints: each marks a path as possibly changed ([`queue`]). When a
//! path is due, the reconciler reads the file (only if it is settled), the
//! database row and the base both last agreed on, and carries out
//! [`reconcile::decide`](super::reconcile::decide) ([`apply`]).
//!
//! One task owns the engine's state ([`actor`]): the queue, the pause, the
//! watcher's health, what is failing ([`failures`]), and a single job
//! slot. Everything that writes under
//! the root or changes a base — reconciling due paths, a rescan
//! ([`rescan`]), an export ([`export`]), resolving a conflict
//! ([`resolve`]) — is a job: it runs in a task of its own, one at a time,
//! and reports back, so none ever acts on what another is halfway through
//! while the engine itself keeps answering. This handle only sends it
//! commands.

mod actor;
mod apply;
pub mod export;
pub mod failures;
pub mod queue;
mod rescan;
mod resolve;
mod watcher;
mod worker;

use std::{fs, path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot, watch};

use crate::history::History;

use super::{
    Conflict, ContentError, ContentStore, Key, Kind,
    atomic::remove_stale_temps,
    events::{EventKind, Notice, SyncBoard},
    layout::Layout,
    ledger::Ledger,
};
use actor::{Actor, Command, Message};
pub use export::ExportSummary;
pub use failures::{Failing, Failure, Subject};
use queue::Signal;

/// How the engine waits for writers.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Trailing debounce per path.
    pub debounce: Duration,
    /// How long a file still being written, empty or missing is given
    /// before a final decision.
    pub settle: Duration,
}

/// Work for the engine from outside: file events and database changes.
#[derive(Debug)]
pub enum Hint {
    /// A path may have changed.
    Path(PathBuf, Signal),
    /// Events were lost: look at everything.
    Rescan,
    /// The watcher failed; the message says how.
    Failed(String),
    /// The root itself was removed or moved away: nothing under it is
    /// watched any more.
    RootLost,
}

/// What a rescan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RescanSummary {
    /// Entities looked at.
    pub scanned: u32,
    /// Written to the database.
    pub imported: u32,
    /// Written to disk.
    pub exported: u32,
    /// Conflicts found.
    pub conflicts: u32,
    /// Skipped (empty, rejected, not settled).
    pub skipped: u32,
    /// How long it took.
    pub elapsed: Duration,
}

/// The watcher's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatcherState {
    /// Watching and reconciling.
    Watching,
    /// Paused by a user or an export.
    Paused,
    /// Not watching: it failed to start.
    Stopped,
}

/// The engine's state, as a status report shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineStatus {
    /// Watching, paused or stopped.
    pub state: WatcherState,
    /// Whether a user's pause is in force.
    pub paused_by_user: bool,
    /// Exports running or waiting to run.
    pub exports: u32,
    /// Paths waiting to be looked at (or being looked at now), failing
    /// ones included.
    pub queued: usize,
    /// What fails now and is being retried.
    pub failing: Failing,
}

/// What a resume found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resumed {
    /// Whether a user's pause was in force.
    pub was_paused: bool,
    /// Changes that had accumulated.
    pub queued: usize,
}

/// A resolved conflict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The content.
    pub key: Key,
    /// Its database version after (0: it does not exist).
    pub version: u64,
}

/// The sync engine of one sync root: a handle to its task.
#[derive(Clone)]
pub struct SyncEngine {
    messages: mpsc::UnboundedSender<Message>,
    status: watch::Receiver<EngineStatus>,
    board: Arc<SyncBoard>,
    layout: Layout,
}

impl SyncEngine {
    /// Starts syncing `root` (created if missing) between `content` and the
    /// files, keeping bases and conflicts in `ledger`: removes temps an
    /// interrupted export left, watches the root, rescans it, and then
    /// reconciles whatever changes.
    pub async fn start<C: ContentStore, L: Ledger>(
        content: Arc<C>,
        ledger: Arc<L>,
        root: PathBuf,
        settings: Settings,
        history: History,
    ) -> Result<Self, ContentError> {
        fs::create_dir_all(&root).map_err(|err| {
            ContentError::Storage(format!(
                "cannot create the sync root {}: {err}",
                root.display()
            ))
        })?;
        match remove_stale_temps(&root) {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(removed, root = %root.display(), "removed temp files of an interrupted export")
            }
            Err(err) => tracing::warn!(%err, root = %root.display(), "cannot clean the sync root"),
        }
        let open_conflicts = ledger.conflicts().await?.len() as u32;
        let board = Arc::new(SyncBoard::new(open_conflicts));
        let layout = Layout::new(root.clone(), content.template_groups());
        let (messages, receiver) = mpsc::unbounded_channel();
        // Watch first, then rescan: nothing changed in between is missed.
        let hints = messages.clone();
        let watcher = watcher::watch(&root, move |hint| {
            let _ = hints.send(Message::Hint(hint));
        });
        let worker = worker::Worker {
            content,
            ledger,
            layout: layout.clone(),
            settings,
            board: board.clone(),
            history,
        };
        let (status_sender, status) = watch::channel(EngineStatus {
            state: if watcher.is_ok() {
                WatcherState::Watching
            } else {
                WatcherState::Stopped
            },
            paused_by_user: false,
            exports: 0,
            queued: 0,
            failing: Failing::default(),
        });
        // A watcher that cannot start is tried again (the actor's).
        let actor = Actor::new(worker, &messages, receiver, status_sender, watcher);
        tokio::spawn(actor.run());
        Ok(Self {
            messages,
            status,
            board,
            layout,
        })
    }

    /// The sync root.
    pub fn root(&self) -> &std::path::Path {
        self.layout.root()
    }

    /// The event bus.
    pub fn board(&self) -> &SyncBoard {
        &self.board
    }

    /// Sends a command and waits for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ContentError> {
        let gone = || ContentError::Storage("the sync engine has stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        self.messages
            .send(Message::Command(command(reply)))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }

    /// The watcher's state and the changes queued.
    pub fn status(&self) -> EngineStatus {
        self.status.borrow().clone()
    }

    /// Pauses for a user; returns whether a user had paused already.
    pub async fn pause(&self) -> Result<bool, ContentError> {
        self.ask(|reply| Command::Pause { reply }).await
    }

    /// Lifts a user's pause.
    pub async fn resume(&self) -> Result<Resumed, ContentError> {
        self.ask(|reply| Command::Resume { reply }).await
    }

    /// Exports a collection, with the watcher paused while it runs. The
    /// export runs as a job of its own: a caller that goes away (a
    /// cancelled RPC) never cuts it short between its writes and its bases.
    pub async fn export(
        &self,
        kind: Kind,
        collection: &str,
    ) -> Result<ExportSummary, ContentError> {
        let collection = collection.to_owned();
        self.ask(|reply| Command::Export {
            kind,
            collection,
            reply,
        })
        .await?
    }

    /// Looks at every file and every synced entity.
    pub async fn rescan(&self) -> Result<RescanSummary, ContentError> {
        self.ask(|reply| Command::Rescan { reply }).await?
    }

    /// Every unresolved conflict, oldest first.
    pub async fn conflicts(&self) -> Result<Vec<Conflict>, ContentError> {
        self.ask(|reply| Command::Conflicts { reply }).await?
    }

    /// Resolves a conflict: keeping the disk side puts the conflict copy's
    /// content in the database (the file follows); either way the copy is
    /// removed.
    pub async fn resolve(&self, id: &str, keep_disk: bool) -> Result<Resolved, ContentError> {
        let id = id.to_owned();
        self.ask(|reply| Command::Resolve {
            id,
            keep_disk,
            reply,
        })
        .await?
    }

    /// Tells the reconciler that `key` changed in the database, now at
    /// `version` (0: deleted).
    pub fn changed(&self, key: &Key, version: u64, message: &str) {
        self.board.publish(
            Notice::new(EventKind::ContentChanged, message)
                .key(key)
                .version(version),
        );
        let hint = Hint::Path(self.layout.path(key), Signal::Now);
        let _ = self.messages.send(Message::Hint(hint));
    }

    /// Tells the reconciler that `key` may have changed in the database
    /// (a poll found its rows changed). Nothing is published: what the
    /// reconciler then does is (a file written, a conflict), and a change
    /// that was the engine's own write is nothing.
    pub fn changed_in_database(&self, key: &Key) {
        let hint = Hint::Path(self.layout.path(key), Signal::Now);
        let _ = self.messages.send(Message::Hint(hint));
    }

    /// Asks for a rescan as soon as the engine is free: the database came
    /// back, or what it holds changed beyond single items (a set renamed,
    /// template groups changed).
    pub fn rescan_soon(&self) {
        let _ = self.messages.send(Message::Hint(Hint::Rescan));
    }

    /// Publishes a warning: something the store found or could not do,
    /// which a user should see.
    pub fn warn(&self, key: Option<&Key>, message: &str) {
        let notice = Notice::new(EventKind::Warning, message);
        self.board.publish(match key {
            Some(key) => notice.key(key),
            None => notice,
        });
    }

    /// The group directory of template `title`.
    pub fn template_group(&self, title: &str) -> String {
        self.layout.group(title)
    }

    /// Where `key`'s versions live in the history repository.
    pub fn history_path(&self, key: &Key) -> String {
        self.layout.relative(key)
    }

    /// Stops the engine: the reconciler finishes the entity it is at and
    /// looks at no other; returns once it has.
    pub async fn stop(&self) {
        let _ = self.ask(|reply| Command::Stop { reply }).await;
    }
}
