//! The writer: a thread that owns the repository. It takes batches in the
//! order they were sent, commits each (git's object and ref writes block,
//! so this is not a task on the async threads), then indexes what the
//! branch gained — read back from the repository, never from the batch, so
//! the index is what `git log` says. At start it first indexes whatever
//! the branch has that the index lacks (a commit made just before the
//! daemon was killed), and prunes by the retention; pruning is repeated
//! every hour.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use gix::ObjectId;
use tokio::{
    runtime::Handle,
    sync::{mpsc, oneshot},
};

use super::{
    Batch, Index, IndexedChange, IndexedCommit, Subject,
    repository::{CommitRecord, RepoError, Repository},
    retention::{self, Retention},
};

/// How long the writer lets a change's own answer and events go before it
/// commits the change: on two busy cores a commit started at once delayed
/// a file save's IMPORTED event by 1.2-2.2 ms (docs/benchmarks.md); what
/// arrives meanwhile is committed in the same step.
const LINGER: Duration = Duration::from_millis(5);
/// At most this many batches are committed in one step (and indexed in
/// one transaction).
const MAX_AT_ONCE: usize = 500;
/// How often the retention is applied again.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the writer is told.
pub(super) enum Command {
    Record(Batch),
    /// Commit what came before, answer, and end.
    Stop(oneshot::Sender<()>),
}

/// Starts the writer over the repository at `dir` (created if missing);
/// returns once the index has caught up with it.
pub(super) async fn start(
    dir: PathBuf,
    index: Arc<dyn Index>,
    retention: Retention,
) -> Result<mpsc::UnboundedSender<Command>, RepoError> {
    let (commands, received) = mpsc::unbounded_channel();
    let (ready, started) = oneshot::channel();
    let handle = Handle::current();
    let thread_dir = dir.clone();
    std::thread::Builder::new()
        .name("outpost-history".into())
        .spawn(move || {
            schedule_as_batch();
            // gix's repository stays on the thread that opened it.
            let opened = Repository::open(&thread_dir).and_then(|repository| {
                let mut writer = Writer {
                    repository,
                    index,
                    handle,
                    retention,
                    indexed: None,
                    pruned: Instant::now(),
                };
                writer.catch_up(true)?;
                writer.prune()?;
                Ok(writer)
            });
            match opened {
                Ok(writer) => {
                    let _ = ready.send(Ok(()));
                    writer.run(received);
                }
                Err(err) => {
                    let _ = ready.send(Err(err));
                }
            }
        })
        .map_err(|err| RepoError {
            dir: dir.clone(),
            reason: format!("cannot start the history writer: {err}"),
        })?;
    started.await.map_err(|_| RepoError {
        dir,
        reason: "the history writer stopped".into(),
    })??;
    Ok(commands)
}

struct Writer {
    repository: Repository,
    index: Arc<dyn Index>,
    /// The daemon's runtime, for the index's calls.
    handle: Handle,
    retention: Retention,
    /// The newest commit the index has.
    indexed: Option<ObjectId>,
    pruned: Instant,
}

impl Writer {
    fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(command) = commands.blocking_recv() {
            if matches!(command, Command::Record(_)) {
                // The change's caller is being answered, its sync event
                // delivered, right now: they go first.
                std::thread::sleep(LINGER);
            }
            // Whatever else waits is committed with it, a commit each.
            let mut batches = Vec::new();
            let mut stop = None;
            let mut next = Some(command);
            while let Some(command) = next.take() {
                match command {
                    Command::Record(batch) => batches.push(batch),
                    Command::Stop(reply) => {
                        stop = Some(reply);
                        break;
                    }
                }
                if batches.len() < MAX_AT_ONCE {
                    next = commands.try_recv().ok();
                }
            }
            self.commit(&batches);
            if let Some(reply) = stop {
                let _ = reply.send(());
                return;
            }
            if self.pruned.elapsed() >= PRUNE_EVERY {
                self.pruned = Instant::now();
                if let Err(err) = self.prune() {
                    tracing::error!(%err, "history: pruning failed");
                }
            }
        }
    }

    fn commit(&mut self, batches: &[Batch]) {
        match self.repository.commit_all(batches) {
            Ok(0) => {}
            Ok(_) => {
                if let Err(err) = self.catch_up(false) {
                    tracing::error!(%err, "history: cannot index the new commits");
                }
            }
            Err(err) => tracing::error!(%err, batches = batches.len(), "history: changes not kept"),
        }
    }

    /// Indexes what the branch has beyond the index's newest commit (all
    /// of it again when that commit is no longer on the branch).
    fn catch_up(&mut self, first: bool) -> Result<(), RepoError> {
        let fail = |reason: String| RepoError {
            dir: self.repository.dir().to_owned(),
            reason,
        };
        if first {
            let head = self.handle.block_on(self.index.head()).map_err(&fail)?;
            self.indexed = head.and_then(|hex| ObjectId::from_hex(hex.as_bytes()).ok());
        }
        let (commits, replace) = match self.repository.commits_since(self.indexed)? {
            Some(commits) => (commits, false),
            None => {
                // Pruned, or the index lost: the branch is read again.
                tracing::info!("history: indexing the whole branch");
                let all = self.repository.commits_since(None)?.unwrap_or_default();
                (all, true)
            }
        };
        if commits.is_empty() && !replace {
            return Ok(());
        }
        let newest = commits.last().map(|commit| commit.rev);
        let records = commits.into_iter().map(indexed).collect();
        self.handle
            .block_on(self.index.add(records, replace))
            .map_err(&fail)?;
        self.indexed = newest;
        Ok(())
    }

    fn prune(&mut self) -> Result<(), RepoError> {
        if let Some(dropped) =
            retention::prune(&self.repository, self.retention, SystemTime::now())?
        {
            tracing::info!(dropped, retention = %self.retention, "history: old versions pruned");
            self.catch_up(false)?;
        }
        Ok(())
    }
}

/// Schedules this thread as a batch job (`SCHED_BATCH`, this thread
/// only): its wake-up never preempts what is running, so a commit does not
/// delay the answer or the sync event the change's caller waits for; yet,
/// unlike a low priority (nice 19, `SCHED_IDLE`), it keeps its fair share
/// of a busy machine, so versions do not wait behind a long build.
fn schedule_as_batch() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` outlives the call; pid 0 is the calling thread.
    let failed = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) != 0 };
    if failed {
        tracing::debug!(err = %std::io::Error::last_os_error(), "history: cannot make the writer a batch thread");
    }
}

fn indexed(commit: CommitRecord) -> IndexedCommit {
    IndexedCommit {
        rev: commit.rev.to_string(),
        committed_at: UNIX_EPOCH + Duration::from_secs(commit.time.max(0) as u64),
        source: commit.parsed.source,
        actor: commit.parsed.actor,
        summary: commit.parsed.summary,
        changes: commit
            .changes
            .into_iter()
            .filter_map(|(path, blob)| {
                Some(IndexedChange {
                    subject: Subject::of_path(&path)?,
                    blob: blob.map(|(id, _)| id.to_string()),
                    size: blob.map_or(0, |(_, size)| size),
                    path,
                })
            })
            .collect(),
    }
}
