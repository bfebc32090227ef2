//! The engine's task: it owns the queue, the pause, the watcher's health
//! and the job slot, and never waits on a file or a database itself — so a
//! pause or a resume is answered at once even while a long export or
//! rescan runs. It publishes its state in a `watch` channel whenever it
//! changes, for status reads that need no answer from it.
//!
//! The job slot holds one job at a time. When it is free, user work waits
//! first (exports, rescans and resolves asked for, in order; they run even
//! while paused), then a rescan the watcher asked for, then the paths that
//! are due (neither while paused). A running job is told through a `watch`
//! channel when the engine pauses or stops, and stops before its next
//! entity; what it did not look at comes back in its report.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::Instant,
};

use tokio::sync::{mpsc, oneshot, watch};

use super::{
    EngineStatus, ExportSummary, Hint, RescanSummary, Resolved, Resumed, WatcherState,
    queue::Queue,
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
    /// User work waiting for the slot.
    waiting: VecDeque<Work>,
    running: Option<Running>,
    /// Missing files reported once; lent to the running job.
    orphans: HashSet<Key>,
    paused: bool,
    watching: bool,
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
        watching: bool,
    ) -> Self {
        let mut queue = Queue::default();
        // Edits made while the daemon was down.
        queue.request_rescan();
        Self {
            worker: Arc::new(worker),
            messages,
            done: sender.downgrade(),
            queue,
            waiting: VecDeque::new(),
            running: None,
            orphans: HashSet::new(),
            paused: false,
            watching,
            hold: watch::Sender::new(Hold::default()),
            status,
            stopping: None,
        }
    }

    /// Runs until stopped (or until nobody can send it anything).
    pub(super) async fn run(mut self, _watcher: Option<notify::RecommendedWatcher>) {
        loop {
            if self.running.is_none()
                && let Some(reply) = self.stopping.take()
            {
                let _ = reply.send(());
                return;
            }
            self.start_next(Instant::now());
            self.publish_status();
            let deadline = match &self.running {
                Some(_) => None,
                None if self.paused => None,
                None => self.queue.next_due(Instant::now()),
            };
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

    /// Fills the free job slot.
    fn start_next(&mut self, now: Instant) {
        if self.running.is_some() || self.stopping.is_some() {
            return;
        }
        let work = match self.waiting.pop_front() {
            Some(work) => work,
            None if self.paused => return,
            None if self.queue.take_rescan() => Work::Rescan(None),
            None => {
                let due = self.queue.take_due(now, &self.worker.settings);
                if due.is_empty() {
                    return;
                }
                Work::Reconcile(due)
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
            Message::Command(command) => self.command(command),
            Message::Done(report) => self.done(report, now),
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
            } => self.waiting.push_back(Work::Export {
                kind,
                collection,
                reply,
            }),
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
        for (path, next) in report.next {
            match next {
                Next::Retry { after, tries } => self.queue.retry(path, after, tries, now),
                Next::Failed { tries } => self.queue.failed(path, tries, now, &settings),
                Next::PutBack(pending) => self.queue.put_back(path, pending),
            }
        }
        for hint in report.hints {
            self.handle(Message::Hint(hint));
        }
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
        let state = if !self.watching {
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
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
