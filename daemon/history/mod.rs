//! History: every workspace file applied and every template and stylesheet
//! version that took effect, kept in a git repository in the data
//! directory (`history.git`), so that plain `git log`, `git show` and
//! `git diff` work on it, and any version can be listed, shown and brought
//! back.
//!
//! Whoever changes something ([`History::record`]) only sends a [`Batch`]
//! — one per change, one per burst (an export, a rescan) — to the writer
//! ([`writer`]), a thread of its own that owns the repository: history
//! never blocks the reconciler, the orchestrator or an RPC. A batch that
//! changes nothing (the content is already the last version) makes no
//! commit. Listing goes through an index of commits and the paths they
//! changed ([`Index`], kept in the state database), which the writer
//! derives from the repository alone after each commit and at start —
//! so it never disagrees with `git log` for long, and is rebuilt from the
//! repository when it does (a commit the daemon made just before it was
//! killed, a pruned history).

mod message;
mod repository;
mod retention;
mod subject;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

pub use message::Source;
pub use repository::RepoError;
pub use retention::Retention;
pub use subject::{Subject, workspace_path};

use repository::Repository;

/// The repository's directory in the data directory.
pub const DIR_NAME: &str = "history.git";
/// The most versions one listing returns.
pub const MAX_LIMIT: u32 = 10_000;

/// One path's new content (None: it was deleted).
#[derive(Clone, Debug)]
pub struct Change {
    /// Where it lives in the repository ([`subject`]'s layout).
    pub path: String,
    pub content: Option<String>,
}

/// What made changes, who, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub source: Source,
    /// Who: a user id, a peer address, "outpostd".
    pub actor: String,
    /// Why, when the source alone does not say (the version restored).
    pub note: Option<String>,
}

impl Origin {
    /// A change the daemon itself carried out (an export, a rescan, the
    /// reconciler writing what the database holds).
    pub fn daemon(source: Source) -> Self {
        Self {
            source,
            actor: "outpostd".into(),
            note: None,
        }
    }
}

/// Changes that took effect together: one commit.
#[derive(Clone, Debug)]
pub struct Batch {
    pub origin: Origin,
    pub changes: Vec<Change>,
}

/// One version of a subject, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// The commit, full hex.
    pub rev: String,
    pub committed_at: SystemTime,
    /// None for a commit someone made by hand with git.
    pub source: Option<Source>,
    pub actor: String,
    pub summary: String,
    pub path: String,
    /// Its content's blob, hex; None when this version deleted it.
    pub blob: Option<String>,
    pub size: u64,
}

/// A commit as the index stores it.
#[derive(Clone, Debug)]
pub struct IndexedCommit {
    pub rev: String,
    pub committed_at: SystemTime,
    pub source: Option<Source>,
    pub actor: String,
    pub summary: String,
    /// The subjects it changed (paths of no subject are left out).
    pub changes: Vec<IndexedChange>,
}

#[derive(Clone, Debug)]
pub struct IndexedChange {
    pub subject: Subject,
    pub path: String,
    pub blob: Option<String>,
    pub size: u64,
}

/// Where the index lives (the state database); errors are in words.
pub trait Index: Send + Sync + 'static {
    /// The newest commit indexed.
    fn head(&self) -> BoxFuture<'_, Result<Option<String>, String>>;
    /// Adds commits (oldest first) after the head, all or none; with
    /// `replace`, everything indexed before is dropped first.
    fn add(&self, commits: Vec<IndexedCommit>, replace: bool) -> BoxFuture<'_, Result<(), String>>;
    /// The versions of `subject`, newest first.
    fn versions<'a>(
        &'a self,
        subject: &'a Subject,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Version>, String>>;
    /// The version of `subject` in effect at commit `rev`: the last that
    /// changed it at or before `rev`. Outer None: `rev` is not indexed.
    fn version_at<'a>(
        &'a self,
        subject: &'a Subject,
        rev: &'a str,
    ) -> BoxFuture<'a, Result<Option<Option<Version>>, String>>;
}

/// Why a history call failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// `--history off`.
    #[error("history is off (outpostd --history off)")]
    Off,
    #[error("{0}")]
    NotFound(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("history: {0}")]
    Failed(String),
}

/// The history of this daemon: a handle to its writer and its index.
#[derive(Clone)]
pub struct History {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    dir: PathBuf,
    commands: mpsc::UnboundedSender<writer::Command>,
    index: Arc<dyn Index>,
}

impl History {
    /// History switched off: records go nowhere, reads say so.
    pub fn off() -> Self {
        Self { inner: None }
    }

    /// Opens (or creates) the repository in `data_dir`, brings the index
    /// up to date with it, and starts the writer.
    pub async fn start(
        data_dir: &Path,
        index: Arc<dyn Index>,
        retention: Retention,
    ) -> Result<Self, RepoError> {
        let dir = data_dir.join(DIR_NAME);
        let commands = writer::start(dir.clone(), index.clone(), retention).await?;
        Ok(Self {
            inner: Some(Arc::new(Inner {
                dir,
                commands,
                index,
            })),
        })
    }

    /// The repository, when history is on.
    pub fn dir(&self) -> Option<&Path> {
        self.inner.as_ref().map(|inner| inner.dir.as_path())
    }

    /// Keeps `batch` (in the background; a batch with no changes is
    /// dropped here).
    pub fn record(&self, batch: Batch) {
        if let Some(inner) = &self.inner
            && !batch.changes.is_empty()
        {
            let _ = inner.commands.send(writer::Command::Record(batch));
        }
    }

    fn inner(&self) -> Result<&Inner, HistoryError> {
        self.inner.as_deref().ok_or(HistoryError::Off)
    }

    /// The versions of `subject`, newest first, at most `limit` (0: 100).
    pub async fn versions(
        &self,
        subject: &Subject,
        limit: u32,
    ) -> Result<Vec<Version>, HistoryError> {
        if limit > MAX_LIMIT {
            return Err(HistoryError::Invalid {
                field: "limit",
                reason: format!("{limit} is more than the most one listing returns, {MAX_LIMIT}"),
            });
        }
        let limit = if limit == 0 { 100 } else { limit };
        self.inner()?
            .index
            .versions(subject, limit)
            .await
            .map_err(HistoryError::Failed)
    }

    /// The version of `subject` at `rev` (any commit: the version then in
    /// effect) and its content.
    pub async fn show(
        &self,
        subject: &Subject,
        rev: &str,
    ) -> Result<(Version, String), HistoryError> {
        let inner = self.inner()?;
        if rev.is_empty() || rev.len() > 256 || rev.chars().any(char::is_control) {
            return Err(HistoryError::Invalid {
                field: "rev",
                reason: "give a commit: a full or abbreviated id from `outpostctl history`, at most 256 characters".into(),
            });
        }
        let dir = inner.dir.clone();
        let wanted = rev.to_owned();
        let commit = blocking(move || Repository::open_existing(&dir)?.resolve(&wanted))
            .await?
            .ok_or_else(|| HistoryError::NotFound(format!("no commit {rev:?} in the history")))?;
        let version = inner
            .index
            .version_at(subject, &commit.to_string())
            .await
            .map_err(HistoryError::Failed)?
            .ok_or_else(|| {
                HistoryError::NotFound(format!(
                    "commit {rev} is not in the history index yet; try again"
                ))
            })?
            .ok_or_else(|| HistoryError::NotFound(format!("{subject} has no version at {rev}")))?;
        let Some(blob) = version.blob.clone() else {
            return Err(HistoryError::NotFound(format!(
                "{subject} was deleted at {rev} ({})",
                short(&version.rev)
            )));
        };
        let dir = inner.dir.clone();
        let bytes = blocking(move || {
            let id = gix::ObjectId::from_hex(blob.as_bytes()).map_err(|err| RepoError {
                dir: dir.clone(),
                reason: err.to_string(),
            })?;
            Repository::open_existing(&dir)?.read(id)
        })
        .await?;
        let content = String::from_utf8(bytes)
            .map_err(|_| HistoryError::Failed(format!("{subject} at {rev} is not UTF-8")))?;
        Ok((version, content))
    }

    /// Lets the writer commit what was sent so far, for up to `timeout`
    /// (daemon shutdown: nothing is recorded afterwards).
    pub async fn stop(&self, timeout: Duration) {
        let Some(inner) = &self.inner else { return };
        let (reply, finished) = oneshot::channel();
        if inner.commands.send(writer::Command::Stop(reply)).is_ok()
            && tokio::time::timeout(timeout, finished).await.is_err()
        {
            tracing::warn!("history: changes not committed before shutdown");
        }
    }
}

/// The short form of a commit id people read.
pub fn short(rev: &str) -> &str {
    &rev[..rev.len().min(12)]
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RepoError> + Send + 'static,
) -> Result<T, HistoryError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| HistoryError::Failed(err.to_string()))?
        .map_err(|err| HistoryError::Failed(err.to_string()))
}
