//! The engine's task: it owns the queue, the pause, the watcher's health
//! and the job slot, and never waits on a file or a database itself — so a
//! pause or a resume is answered at once even while a long export or
//! rescan runs. It publishes its state in a `watch` channel whenever it
//! changes, for status reads that need no answer from it.
//!
//! The job slot holds one job at a time. When it is free, user work waits
//! first (exports, rescans and resolves asked for, in order; they run even
//! while paused), then a rescan the watcher asked for (or a failed one
//! due again), then failed exports due again, then the paths that are due
//! (none of these while paused).
//!
//! It also owns what is failing ([`Failures`]): each job reports what it
//! attempted and how that went; a failure is published when its subject
//! starts failing, tried again with back-off ([`backoff`]) until it
//! works, and published again when it does. A running job is told through a `watch`
//! channel when the engine pauses or stops, and stops before its next
//! entity; what it did not look at comes back in its report.

use std::{
    collections::{HashSet, VecDeque},
    path::PathBuf,
    sync::Arc,
    time::{Instant, SystemTime},
};

use notify::RecommendedWatcher;
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    EngineStatus, ExportSummary, Hint, RescanSummary, Resolved, Resumed, WatcherState,
    failures::{Failure, Failures, Fault, Subject},
    queue::{Queue, backoff},
    watcher,
    worker::{Hold, Next, Reply, Report, Work, Worker},
};
use crate::sync::{
    Conflict, ContentStore, Key, Kind,
    events::{EventKind, Notice},
    ledger::Ledger,
};

/// What the task is told.
pub(super) enum Message {
    /// A file event or a database change.
    Hint(Hint),
    /// A request from the handle.
    Command(Command),
    /// The running job is done.
    Done(Report),
    /// Another attempt at watching the root came to this.
    Watched(Result<RecommendedWatcher, String>),
}

/// Requests from the handle.
pub(super) enum Command {
    Pause {
        reply: oneshot::Sender<bool>,
    },
    Resume {
        reply: oneshot::Sender<Resumed>,
    },
    Export {
        kind: Kind,
        collection: String,
        reply: Reply<ExportSummary>,
    },
    Rescan {
        reply: Reply<RescanSummary>,
    },
    Conflicts {
        reply: Reply<Vec<Conflict>>,
    },
    Resolve {
        id: String,
        keep_disk: bool,
        reply: Reply<Resolved>,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
}

/// The job in the slot.
struct Running {
    /// An export (the watcher reports itself paused meanwhile).
    export: bool,
    /// Paths it looks at, still counted as queued.
    paths: usize,
}

/// The engine's task and everything it owns.
pub(super) struct Actor<C, L> {
    worker: Arc<Worker<C, L>>,
    messages: mpsc::UnboundedReceiver<Message>,
    /// For jobs to report back; weak, so the task ends once every handle
    /// and job is gone.
    done: mpsc::WeakUnboundedSender<Message>,
    queue: Queue,
    /// What is failing now.
    failures: Failures,
    /// User work waiting for the slot.
    waiting: VecDeque<Work>,
    running: Option<Running>,
    /// Missing files reported once; lent to the running job.
    orphans: HashSet<Key>,
    paused: bool,
    /// The watcher, while the root is watched.
    watcher: Option<RecommendedWatcher>,
    /// When to try watching again, after it failed.
    watch_again_at: Option<Instant>,
    hold: watch::Sender<Hold>,
    /// The state status reads see.
    status: watch::Sender<EngineStatus>,
    /// Who asked to stop, once someone has.
    stopping: Option<oneshot::Sender<()>>,
}

impl<C: ContentStore, L: Ledger> Actor<C, L> {
    pub(super) fn new(
        worker: Worker<C, L>,
        sender: &mpsc::UnboundedSender<Message>,
        messages: mpsc::UnboundedReceiver<Message>,
        status: watch::Sender<EngineStatus>,
        watched: Result<RecommendedWatcher, String>,
    ) -> Self {
        let mut queue = Queue::default();
        // Edits made while the daemon was down.
        queue.request_rescan();
        let mut actor = Self {
            worker: Arc::new(worker),
            messages,
            done: sender.downgrade(),
            queue,
            failures: Failures::default(),
            waiting: VecDeque::new(),
            running: None,
            orphans: HashSet::new(),
            paused: false,
            watcher: None,
            watch_again_at: None,
            hold: watch::Sender::new(Hold::default()),
            status,
            stopping: None,
        };
        actor.watched(watched, Instant::now());
        actor
    }

    /// Runs until stopped (or until nobody can send it anything).
    pub(super) async fn run(mut self) {
        loop {
            if self.running.is_none()
                && let Some(reply) = self.stopping.take()
            {
                let _ = reply.send(());
                return;
            }
            let now = Instant::now();
            if self.watch_again_at.is_some_and(|at| at <= now) {
                self.watch_again();
            }
            self.start_next(now);
            self.publish_status();
            let deadline = match &self.running {
                Some(_) => None,
                None if self.paused => None,
                None => self.queue.next_due(now),
            };
            let deadline = deadline.into_iter().chain(self.watch_again_at).min();
            let message = tokio::select! {
                biased;
                message = self.messages.recv() => message,
                () = sleep_until(deadline) => continue,
            };
            let Some(message) = message else { return };
            self.handle(message);
            // Take every message already queued before deciding anything.
            while let Ok(message) = self.messages.try_recv() {
                self.handle(message);
            }
            if self.paused && self.queue.bound() {
                tracing::info!("too many changes while paused: a rescan replaces them");
            }
        }
    }

    /// Tries watching the root again, off the task (it walks the tree).
    fn watch_again(&mut self) {
        self.watch_again_at = None;
        let Some(sender) = self.done.upgrade() else {
            return;
        };
        let root = self.worker.layout.root().to_owned();
        tokio::task::spawn_blocking(move || {
            let hints = sender.clone();
            // A root removed under the daemon is made again, as at start.
            let watched = std::fs::create_dir_all(&root)
                .map_err(|err| format!("cannot make the sync root {}: {err}", root.display()))
                .and_then(|()| {
                    watcher::watch(&root, move |hint| {
                        let _ = hints.send(Message::Hint(hint));
                    })
                });
            let _ = sender.send(Message::Watched(watched));
        });
    }

    /// Takes in an attempt at watching the root: a watcher that failed to
    /// start is tried again with back-off; one that starts after failing
    /// asks for a rescan (nothing was watched meanwhile).
    fn watched(&mut self, watched: Result<RecommendedWatcher, String>, now: Instant) {
        match watched {
            Ok(watcher) => {
                self.watcher = Some(watcher);
                if self.attempted(Subject::Watcher, Ok(()), now) {
                    self.queue.request_rescan();
                }
            }
            Err(message) => {
                self.attempted(Subject::Watcher, Err(Fault::new(message)), now);
            }
        }
    }

    /// Fills the free job slot.
    fn start_next(&mut self, now: Instant) {
        if self.running.is_some() || self.stopping.is_some() {
            return;
        }
        let work = match self.waiting.pop_front() {
            Some(work) => work,
            None if self.paused => return,
            None if self.queue.take_rescan(now) => Work::Rescan(None),
            None => {
                if let Some((kind, collection)) = self.queue.take_export(now) {
                    Work::Export {
                        kind,
                        collection,
                        reply: None,
                    }
                } else {
                    let due = self.queue.take_due(now, &self.worker.settings);
                    if due.is_empty() {
                        return;
                    }
                    Work::Reconcile(due)
                }
            }
        };
        let Some(done) = self.done.upgrade() else {
            return;
        };
        self.running = Some(Running {
            export: matches!(work, Work::Export { .. }),
            paths: match &work {
                Work::Reconcile(paths) => paths.len(),
                _ => 0,
            },
        });
        let worker = Arc::clone(&self.worker);
        let orphans = std::mem::take(&mut self.orphans);
        let hold = self.hold.subscribe();
        tokio::spawn(async move {
            let report = worker.run(work, orphans, hold).await;
            let _ = done.send(Message::Done(report));
        });
    }

    fn handle(&mut self, message: Message) {
        let now = Instant::now();
        match message {
            Message::Hint(Hint::Path(path, signal)) => {
                self.queue.signal(path, signal, now, &self.worker.settings)
            }
            Message::Hint(Hint::Rescan) => self.queue.request_rescan(),
            Message::Hint(Hint::Failed(message)) => {
                self.worker
                    .board
                    .publish(Notice::new(EventKind::WatcherError, message));
                self.queue.request_rescan();
            }
            Message::Hint(Hint::RootLost) => {
                self.watcher = None;
                let root = self.worker.layout.root().display().to_string();
                self.attempted(
                    Subject::Watcher,
                    Err(Fault::new(format!(
                        "the sync root {root} was removed: nothing is watched until it is made again"
                    ))),
                    now,
                );
            }
            Message::Command(command) => self.command(command),
            Message::Done(report) => self.done(report, now),
            Message::Watched(watched) => self.watched(watched, now),
        }
        self.publish_status();
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Pause { reply } => {
                let was_paused = std::mem::replace(&mut self.paused, true);
                self.hold.send_modify(|hold| hold.paused = true);
                if !was_paused {
                    self.worker.board.publish(Notice::new(
                        EventKind::Paused,
                        "paused: changes are kept and processed on resume",
                    ));
                }
                // Published before the answer: a caller reads the state
                // next (the RPC answers with it).
                self.publish_status();
                let _ = reply.send(was_paused);
            }
            Command::Resume { reply } => {
                let was_paused = std::mem::replace(&mut self.paused, false);
                self.hold.send_modify(|hold| hold.paused = false);
                let queued = self.current_status().queued;
                if was_paused {
                    self.worker.board.publish(Notice::new(
                        EventKind::Resumed,
                        format!("resumed with {queued} changes queued"),
                    ));
                }
                self.publish_status();
                let _ = reply.send(Resumed { was_paused, queued });
            }
            Command::Export {
                kind,
                collection,
                reply,
            } => {
                // It supersedes a failed export of the same collection.
                self.queue.forget_export(kind, &collection);
                self.waiting.push_back(Work::Export {
                    kind,
                    collection,
                    reply: Some(reply),
                });
            }
            Command::Rescan { reply } => self.waiting.push_back(Work::Rescan(Some(reply))),
            Command::Resolve {
                id,
                keep_disk,
                reply,
            } => self.waiting.push_back(Work::Resolve {
                id,
                keep_disk,
                reply,
            }),
            Command::Conflicts { reply } => {
                // A read: it needs no slot.
                let worker = Arc::clone(&self.worker);
                tokio::spawn(async move {
                    let _ = reply.send(worker.ledger.conflicts().await);
                });
            }
            Command::Stop { reply } => {
                self.stopping = Some(reply);
                self.hold.send_modify(|hold| hold.stopping = true);
                // Work nobody has started is not started: its callers hear
                // that the engine stopped.
                self.waiting.clear();
            }
        }
    }

    fn done(&mut self, report: Report, now: Instant) {
        self.running = None;
        self.orphans = report.orphans;
        let settings = self.worker.settings;
        let mut recovered = false;
        let mut rescanned = false;
        for (subject, result) in report.results {
            rescanned |= subject == Subject::Rescan && result.is_ok();
            recovered |= self.attempted(subject, result, now);
        }
        for (path, next) in report.next {
            match next {
                Next::Retry { after, tries } => self.queue.retry(path, after, tries, now),
                Next::Failed { tries } => {
                    let failures = self.failures.attempts(&Subject::Path(path.clone()));
                    let after = backoff(&settings, failures);
                    self.queue.retry(path, after, tries, now);
                }
                Next::PutBack(pending) => self.queue.put_back(path, pending),
            }
        }
        if rescanned {
            // A failing path no longer waiting (replaced by a rescan while
            // paused) was looked at by the rescan, or is unchanged.
            let superseded: Vec<PathBuf> = self
                .failures
                .paths()
                .filter(|path| !self.queue.contains(path))
                .cloned()
                .collect();
            for path in superseded {
                recovered |= self.attempted(Subject::Path(path), Ok(()), now);
            }
        }
        for hint in report.hints {
            self.handle(Message::Hint(hint));
        }
        if recovered {
            // The cause (a full disk, the database away) is often shared.
            let failing: Vec<PathBuf> = self.failures.paths().cloned().collect();
            self.queue.hurry(&failing, now);
        }
    }

    /// Takes in how an attempt at `subject` went: a failure is published
    /// when the subject starts failing, and a failed rescan or export is
    /// scheduled again after its back-off (a path, by its report); a
    /// success ends a streak of failures. Returns whether it did.
    fn attempted(&mut self, subject: Subject, result: Result<(), Fault>, now: Instant) -> bool {
        let fault = match result {
            Ok(()) => {
                let Some(failure) = self.failures.succeeded(&subject) else {
                    return false;
                };
                self.publish(
                    EventKind::Recovered,
                    &failure,
                    format!(
                        "{} works again, after {} failed attempts",
                        describe(&subject),
                        failure.attempts
                    ),
                );
                return true;
            }
            Err(fault) => fault,
        };
        let failure = self
            .failures
            .failed(subject.clone(), fault, SystemTime::now())
            .clone();
        let after = backoff(&self.worker.settings, failure.attempts);
        tracing::warn!(
            attempts = failure.attempts,
            retry_in = ?after,
            "{}",
            failure.fault.message
        );
        if failure.attempts == 1 {
            self.publish(
                EventKind::Failing,
                &failure,
                format!("{}; retrying with back-off", failure.fault.message),
            );
        }
        match subject {
            Subject::Rescan => self.queue.rescan_later(now + after),
            Subject::Export(kind, collection) => {
                self.queue.export_later(kind, collection, now + after)
            }
            Subject::Watcher => self.watch_again_at = Some(now + after),
            Subject::Path(_) => {}
        }
        false
    }

    /// Publishes an event about `failure`, after the status that shows
    /// it: whoever sees the event and asks for the status sees it there.
    fn publish(&self, kind: EventKind, failure: &Failure, message: String) {
        self.publish_status();
        let mut notice = Notice::new(kind, message);
        if let Some(path) = &failure.fault.path {
            notice = notice.path(path);
        }
        if let Some(key) = &failure.fault.key {
            notice = notice.key(key);
        }
        self.worker.board.publish(notice);
    }

    /// Publishes the state for status reads, if it changed.
    fn publish_status(&self) {
        let current = self.current_status();
        self.status.send_if_modified(|status| {
            let changed = *status != current;
            *status = current;
            changed
        });
    }

    fn current_status(&self) -> EngineStatus {
        let exports = u32::from(self.running.as_ref().is_some_and(|running| running.export))
            + self
                .waiting
                .iter()
                .filter(|work| matches!(work, Work::Export { .. }))
                .count() as u32;
        let state = if self.watcher.is_none() {
            WatcherState::Stopped
        } else if self.paused || exports > 0 {
            WatcherState::Paused
        } else {
            WatcherState::Watching
        };
        let looking = self.running.as_ref().map_or(0, |running| running.paths);
        EngineStatus {
            state,
            paused_by_user: self.paused,
            exports,
            queued: self.queue.waiting() + looking,
            failing: self.failures.failing(),
        }
    }
}

/// What an attempt at `subject` is, for a message.
fn describe(subject: &Subject) -> String {
    match subject {
        Subject::Path(path) => format!("syncing {}", path.display()),
        Subject::Rescan => "the rescan".to_owned(),
        Subject::Watcher => "watching the sync root".to_owned(),
        Subject::Export(_, collection) => format!("the export of {collection}"),
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
