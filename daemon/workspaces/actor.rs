//! The task that owns every workspace: its file, its status, whether a
//! change waits for its debounce, and whether an apply runs. File events
//! are hints (raw notify events on the directory, so the watcher's thread
//! wakes only when one arrives); a workspace is applied once no event
//! about it came for [`DEBOUNCE`] (the first look at a workspace — at
//! start-up, or a new file — is not delayed). Each apply runs in a task of
//! its own and reports back; while one runs, later changes of the same
//! workspace wait and coalesce, and `ApplyWorkspace` requests queue.
//! One job, owning that state; what an apply does is in [`super::apply`].
//! The task itself never reads a file: the apply tasks do, in blocking
//! threads, so a file that cannot be read never stalls it.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use notify::{RecommendedWatcher, RecursiveMode, Watcher, event::EventKind};
use outpost::workspace_file;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{
    Applied, ApplyError, Source, WorkspaceStatus,
    apply::{self, Done, Read},
    existing_files,
};
use crate::history::{self, Batch, Change, History, Origin, workspace_path};
use crate::orchestrator::{
    Orchestrator,
    events::{WorkspaceChange, WorkspaceDiff},
};

/// Trailing debounce of file events: a workspace is applied once no event
/// about it came for this long.
const DEBOUNCE: Duration = Duration::from_millis(100);

type ApplyReply = oneshot::Sender<Result<Applied, ApplyError>>;

/// What the task is told.
pub(super) enum Message {
    /// A file event: a path, or (None) "look at everything".
    Event(Option<PathBuf>),
    /// `ApplyWorkspace`, or a rollback (which writes `rewrite` to the
    /// file first, inside the workspace's turn, so that the watcher's own
    /// apply of that write comes after it and finds nothing to do).
    Apply {
        source: Source,
        dry_run: bool,
        origin: Origin,
        rewrite: Option<String>,
        reply: ApplyReply,
    },
    /// `ListWorkspaces` and `GetWorkspace`.
    List {
        reply: oneshot::Sender<BTreeMap<String, WorkspaceStatus>>,
    },
    /// An apply finished.
    Finished { name: String, outcome: Box<Outcome> },
    /// The daemon stops.
    Stop {
        timeout: Duration,
        reply: oneshot::Sender<()>,
    },
}

/// What an apply task came to.
pub(super) enum Outcome {
    /// The file was applied (or, dry, diffed).
    Applied {
        file: PathBuf,
        done: Box<Done>,
        /// Who asked, if anyone, and whether only for the diff.
        request: Option<(ApplyReply, bool)>,
        /// What was applied, and what made it, for the history.
        text: String,
        origin: Origin,
    },
    /// The file was refused (it cannot be read, does not validate, would
    /// go over the instance limit) or a step failed and was rolled back:
    /// what ran before still runs.
    Rejected {
        file: PathBuf,
        error: ApplyError,
        request: Option<(ApplyReply, bool)>,
    },
    /// A requested file could not be read.
    Unreadable {
        reply: ApplyReply,
        error: ApplyError,
    },
    /// The file stayed missing: the workspace and its instances are gone.
    Removed { file: PathBuf, diff: WorkspaceDiff },
}

/// An `ApplyWorkspace` waiting for its workspace.
struct Request {
    file: PathBuf,
    /// The request's field that named the file ("name" or "file").
    field: &'static str,
    dry_run: bool,
    origin: Origin,
    /// A rollback's text, written to `file` before it is applied.
    rewrite: Option<String>,
    reply: ApplyReply,
}

/// One workspace as the task knows it.
#[derive(Default)]
struct Entry {
    /// Its file as last seen.
    file: PathBuf,
    /// Known once applied or rejected.
    status: Option<WorkspaceStatus>,
    /// A watched change waits until then.
    due: Option<Instant>,
    /// An apply runs.
    running: bool,
    /// Requests waiting for the running apply.
    requests: VecDeque<Request>,
}

/// Starts the task over `dir` and its watcher; returns where to send it
/// messages.
pub(super) fn start(
    dir: PathBuf,
    orchestrator: Arc<Orchestrator>,
    max_instances: u32,
    history: History,
) -> std::io::Result<mpsc::UnboundedSender<Message>> {
    fs::create_dir_all(&dir)?;
    let (sender, messages) = mpsc::unbounded_channel();
    let events = sender.clone();
    let mut watcher =
        notify::recommended_watcher(move |result: notify::Result<notify::Event>| match result {
            Ok(event) => {
                // Reading a file is an event too: only changes count.
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                if event.need_rescan() || matches!(event.kind, EventKind::Other) {
                    let _ = events.send(Message::Event(None));
                }
                for path in event.paths {
                    let _ = events.send(Message::Event(Some(path)));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "workspace watcher error; rescanning");
                let _ = events.send(Message::Event(None));
            }
        })
        .map_err(std::io::Error::other)?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(std::io::Error::other)?;
    let owner = Owner {
        dir,
        orchestrator,
        max_instances,
        history,
        done: sender.downgrade(),
        entries: HashMap::new(),
        stopping: false,
        stop_waiter: None,
    };
    tokio::spawn(owner.run(messages, watcher));
    Ok(sender)
}

/// The task's state.
struct Owner {
    dir: PathBuf,
    orchestrator: Arc<Orchestrator>,
    /// The daemon's `--max-instances`.
    max_instances: u32,
    /// Keeps every version applied.
    history: History,
    /// For apply tasks to report back.
    done: mpsc::WeakUnboundedSender<Message>,
    entries: HashMap<String, Entry>,
    /// Set by a stop: nothing is applied any more.
    stopping: bool,
    /// Who waits for the running applies to finish, and until when.
    stop_waiter: Option<(oneshot::Sender<()>, Instant)>,
}

impl Owner {
    async fn run(
        mut self,
        mut messages: mpsc::UnboundedReceiver<Message>,
        watcher: RecommendedWatcher,
    ) {
        // The watcher stops watching when dropped: it lives here until the
        // stop.
        let mut watcher = Some(watcher);
        self.rescan();
        loop {
            self.start_due(Instant::now());
            let deadline = self.deadline();
            let message = tokio::select! {
                message = messages.recv() => message,
                () = sleep_until(deadline) => {
                    self.stop_timed_out();
                    continue;
                }
            };
            let Some(message) = message else { return };
            match message {
                Message::Event(_) if self.stopping => {}
                Message::Event(Some(path)) => self.touch(&path, Instant::now()),
                Message::Event(None) => self.rescan(),
                Message::Apply {
                    source,
                    dry_run,
                    origin,
                    rewrite,
                    reply,
                } => self.request(source, dry_run, origin, rewrite, reply),
                Message::List { reply } => {
                    let _ = reply.send(self.statuses());
                }
                Message::Finished { name, outcome } => self.finished(&name, *outcome),
                Message::Stop { timeout, reply } => {
                    drop(watcher.take());
                    self.stop(timeout, reply);
                }
            }
            self.reply_if_stopped();
        }
    }

    /// Marks every workspace file of the directory (and every known
    /// workspace, in case its file is gone) as possibly changed.
    fn rescan(&mut self) {
        let now = Instant::now();
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                self.touch(&entry.path(), now);
            }
        }
        let known: Vec<PathBuf> = self.entries.values().map(|e| e.file.clone()).collect();
        for file in known {
            self.touch(&file, now);
        }
    }

    /// A change of the workspace `path` defines, if any.
    fn touch(&mut self, path: &Path, now: Instant) {
        let Some(name) = workspace_file::workspace_name(path) else {
            return;
        };
        let entry = self.entries.entry(name).or_default();
        // The first look is not debounced.
        let first = entry.status.is_none() && !entry.running && entry.due.is_none();
        entry.file = path.to_owned();
        entry.due = Some(if first { now } else { now + DEBOUNCE });
    }

    /// An `ApplyWorkspace`: queued behind the workspace's running apply.
    fn request(
        &mut self,
        source: Source,
        dry_run: bool,
        origin: Origin,
        rewrite: Option<String>,
        reply: ApplyReply,
    ) {
        if self.stopping && !dry_run {
            let _ = reply.send(Err(ApplyError::ShuttingDown));
            return;
        }
        let field = match source {
            Source::Name(_) => "name",
            Source::File(_) => "file",
        };
        let file = match self.resolve(source) {
            Ok(file) => file,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        let Some(name) = workspace_file::workspace_name(&file) else {
            let _ = reply.send(Err(ApplyError::Rejected(vec![format!(
                "{}: a workspace file is NAME.toml or NAME.json",
                file.display()
            )])));
            return;
        };
        if let Err(err) = workspace_file::validate_workspace_name(field, &name) {
            let _ = reply.send(Err(ApplyError::Invalid {
                field,
                reason: format!("{}: workspace name: {}", file.display(), err.reason),
            }));
            return;
        }
        let entry = self.entries.entry(name.clone()).or_default();
        entry.requests.push_back(Request {
            file,
            field,
            dry_run,
            origin,
            rewrite,
            reply,
        });
        if !entry.running {
            self.start_request(&name);
        }
    }

    /// The file a source designates (a name was checked to be one path
    /// component). Whatever exists is chosen, to be refused with the
    /// reason when it is not a file that can be read.
    fn resolve(&self, source: Source) -> Result<PathBuf, ApplyError> {
        match source {
            Source::File(path) => Ok(PathBuf::from(path)),
            Source::Name(name) => existing_files(&self.dir, &name).next().ok_or_else(|| {
                ApplyError::NotFound(format!("no workspace {name:?} in {}", self.dir.display()))
            }),
        }
    }

    /// Starts the applies that are due and whose workspace is idle.
    fn start_due(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, entry)| !entry.running && entry.due.is_some_and(|due| due <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let entry = self.entries.get_mut(&name).expect("listed");
            entry.due = None;
            entry.running = true;
            let file = entry.file.clone();
            let max_instances = self.max_instances;
            self.spawn(
                name.clone(),
                async move |orchestrator: Arc<Orchestrator>| {
                    let text = match apply::settled_text(&file).await {
                        Read::Text(text) => text,
                        Read::Missing => {
                            return Outcome::Removed {
                                diff: apply::remove(&orchestrator, &name).await,
                                file,
                            };
                        }
                        Read::Refused(reason) => {
                            tracing::warn!(workspace = name, reason, "workspace file refused");
                            return Outcome::Rejected {
                                file,
                                error: ApplyError::Rejected(vec![reason]),
                                request: None,
                            };
                        }
                    };
                    match apply::apply(&orchestrator, max_instances, &name, &file, &text, false)
                        .await
                    {
                        Ok(done) => Outcome::Applied {
                            file,
                            done: Box::new(done),
                            request: None,
                            text,
                            origin: saved(),
                        },
                        Err(error) => {
                            for line in error.lines() {
                                tracing::warn!(
                                    workspace = name,
                                    error = line,
                                    "workspace file not applied; what ran before still runs"
                                );
                            }
                            Outcome::Rejected {
                                file,
                                error,
                                request: None,
                            }
                        }
                    }
                },
            );
        }
    }

    /// Starts the first waiting request of workspace `name`.
    fn start_request(&mut self, name: &str) {
        let Some(entry) = self.entries.get_mut(name) else {
            return;
        };
        let Some(Request {
            file,
            field,
            dry_run,
            origin,
            rewrite,
            reply,
        }) = entry.requests.pop_front()
        else {
            return;
        };
        entry.running = true;
        let workspace = name.to_owned();
        let max_instances = self.max_instances;
        self.spawn(
            name.to_owned(),
            async move |orchestrator: Arc<Orchestrator>| {
                let read = match rewrite {
                    Some(text) => apply::write(file.clone(), text).await,
                    None => apply::read_once(file.clone()).await,
                };
                let text = match read {
                    Ok(text) => text,
                    Err(err) => {
                        let message = format!("{}: {err}", file.display());
                        let error = if err.kind() == std::io::ErrorKind::NotFound {
                            ApplyError::NotFound(message)
                        } else {
                            ApplyError::Invalid {
                                field,
                                reason: message,
                            }
                        };
                        return Outcome::Unreadable { reply, error };
                    }
                };
                let request = Some((reply, dry_run));
                match apply::apply(
                    &orchestrator,
                    max_instances,
                    &workspace,
                    &file,
                    &text,
                    dry_run,
                )
                .await
                {
                    Ok(done) => Outcome::Applied {
                        file,
                        done: Box::new(done),
                        request,
                        text,
                        origin,
                    },
                    Err(error) => Outcome::Rejected {
                        file,
                        error,
                        request,
                    },
                }
            },
        );
    }

    /// Runs an apply of workspace `name` in a task of its own, which
    /// reports back.
    fn spawn<F: Future<Output = Outcome> + Send + 'static>(
        &self,
        name: String,
        work: impl FnOnce(Arc<Orchestrator>) -> F,
    ) {
        let Some(done) = self.done.upgrade() else {
            return;
        };
        let work = work(self.orchestrator.clone());
        tokio::spawn(async move {
            let outcome = Box::new(work.await);
            let _ = done.send(Message::Finished { name, outcome });
        });
    }

    /// Records what an apply came to, answers whoever asked, and starts
    /// what waited for it.
    fn finished(&mut self, name: &str, outcome: Outcome) {
        if let Some(entry) = self.entries.get_mut(name) {
            entry.running = false;
        }
        match outcome {
            Outcome::Applied {
                file,
                done,
                request,
                text,
                origin,
            } => {
                let dry_run = request.as_ref().is_some_and(|(_, dry_run)| *dry_run);
                let diff = done.diff.clone();
                if !dry_run {
                    self.keep(origin, &file, Some(text));
                    self.record(name, &file, Some((done.workspace, done.diff)), Vec::new());
                }
                if let Some((reply, _)) = request {
                    let status = self.status_of(name, &file);
                    let _ = reply.send(Ok(Applied {
                        name: name.to_owned(),
                        status,
                        diff,
                    }));
                }
            }
            Outcome::Rejected {
                file,
                error,
                request,
            } => {
                let dry_run = request.as_ref().is_some_and(|(_, dry_run)| *dry_run);
                if !dry_run {
                    self.record(name, &file, None, error.lines());
                }
                if let Some((reply, _)) = request {
                    let _ = reply.send(Err(error));
                }
            }
            Outcome::Unreadable { reply, error } => {
                let _ = reply.send(Err(error));
            }
            Outcome::Removed { file, diff } => {
                self.entries.remove(name);
                self.keep(saved(), &file, None);
                self.orchestrator.publish_workspace(WorkspaceChange {
                    name: name.to_owned(),
                    file,
                    diff: Some(diff),
                    errors: Vec::new(),
                });
            }
        }
        if !self.stopping {
            self.start_request(name);
        }
    }

    /// Keeps the version of workspace file `file` applied (None: removed).
    fn keep(&self, origin: Origin, file: &Path, text: Option<String>) {
        let Some(file_name) = file.file_name() else {
            return;
        };
        self.history.record(Batch {
            origin,
            changes: vec![Change {
                path: workspace_path(&file_name.to_string_lossy()),
                content: text,
            }],
        });
    }

    /// Records the outcome of a change and announces it.
    fn record(
        &mut self,
        name: &str,
        file: &Path,
        applied: Option<(outpost::workspace_file::Workspace, WorkspaceDiff)>,
        errors: Vec<String>,
    ) {
        let entry = self.entries.entry(name.to_owned()).or_default();
        let status = entry.status.get_or_insert_with(WorkspaceStatus::default);
        // A save that changes nothing (editors fire several events per
        // save) is not news.
        let no_news = match &applied {
            Some((_, diff)) => {
                errors.is_empty()
                    && status.last_errors.is_empty()
                    && status.last_applied_at.is_some()
                    && diff.created.is_empty()
                    && diff.deleted.is_empty()
                    && diff.changed.is_empty()
            }
            // The same rejection again.
            None => status.last_errors == errors,
        };
        status.file = file.to_owned();
        status.last_errors = errors.clone();
        let diff = applied.map(|(workspace, diff)| {
            status.last_applied_at = Some(SystemTime::now());
            status.definition = Some(workspace);
            diff
        });
        if no_news {
            return;
        }
        self.orchestrator.publish_workspace(WorkspaceChange {
            name: name.to_owned(),
            file: file.to_owned(),
            diff,
            errors,
        });
    }

    /// The status of workspace `name` (for a dry run of a new one: its
    /// file and nothing else).
    fn status_of(&self, name: &str, file: &Path) -> WorkspaceStatus {
        self.entries
            .get(name)
            .and_then(|entry| entry.status.clone())
            .unwrap_or_else(|| WorkspaceStatus {
                file: file.to_owned(),
                ..WorkspaceStatus::default()
            })
    }

    fn statuses(&self) -> BTreeMap<String, WorkspaceStatus> {
        self.entries
            .iter()
            .filter_map(|(name, entry)| Some((name.clone(), entry.status.clone()?)))
            .collect()
    }

    /// When the task must next wake by itself: a change's debounce, or the
    /// end of the shutdown wait.
    fn deadline(&self) -> Option<Instant> {
        if let Some((_, until)) = &self.stop_waiter {
            return Some(*until);
        }
        self.entries
            .values()
            .filter(|entry| !entry.running)
            .filter_map(|entry| entry.due)
            .min()
    }

    fn stop(&mut self, timeout: Duration, reply: oneshot::Sender<()>) {
        for entry in self.entries.values_mut() {
            entry.due = None;
            for request in entry.requests.drain(..) {
                let _ = request.reply.send(Err(ApplyError::ShuttingDown));
            }
        }
        self.stopping = true;
        self.stop_waiter = Some((reply, Instant::now() + timeout));
    }

    /// Answers the stop once no apply runs any more.
    fn reply_if_stopped(&mut self) {
        if self.entries.values().any(|entry| entry.running) {
            return;
        }
        if let Some((reply, _)) = self.stop_waiter.take() {
            let _ = reply.send(());
        }
    }

    /// The shutdown wait is over with an apply still running.
    fn stop_timed_out(&mut self) {
        if self
            .stop_waiter
            .as_ref()
            .is_some_and(|(_, until)| Instant::now() >= *until)
            && let Some((reply, _)) = self.stop_waiter.take()
        {
            tracing::warn!("a workspace apply is still in progress");
            let _ = reply.send(());
        }
    }
}

/// What a change the watcher saw is kept as: a save of the file.
fn saved() -> Origin {
    Origin {
        source: history::Source::WorkspaceApply,
        actor: "workspace file".into(),
        note: None,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
