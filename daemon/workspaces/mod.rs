//! Workspaces: a directory of workspace files, each applied as a diff
//! against the instances it owns, and re-applied whenever it changes.
//!
//! One task owns every workspace's state ([`actor`]): the watcher and
//! `ApplyWorkspace` only send it messages. Changes to one workspace apply
//! one at a time, edits made during an apply coalesce into one more apply
//! of the latest content, and an earlier version is never applied after a
//! later one; different workspaces apply in parallel. What one apply does
//! is in [`apply`]: all of a file or none of it.
//!
//! Files are read defensively ([`outpost::bounded_read`], off the async
//! threads): a FIFO, a device or a file over
//! [`outpost::workspace_file::MAX_FILE_SIZE`] is refused and reported,
//! never waited on. Workspace names are one harmless path component.

mod actor;
mod apply;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use outpost::workspace_file::{self, Workspace};
use tokio::sync::{mpsc, oneshot};

use crate::history::{self, History, HistoryError, Origin, Subject, Version};
use crate::orchestrator::{Orchestrator, events::WorkspaceDiff};
use actor::Message;

/// What is known about one workspace.
#[derive(Clone, Debug, Default)]
pub struct WorkspaceStatus {
    pub file: PathBuf,
    /// When it was last applied successfully.
    pub last_applied_at: Option<SystemTime>,
    /// The problems of the last change; empty when it applied cleanly.
    pub last_errors: Vec<String>,
    /// The last definition that was applied.
    pub definition: Option<Workspace>,
}

/// Why an apply request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The request names no workspace: neither a name nor an absolute path.
    #[error("{field}: {reason}")]
    Invalid {
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The file is invalid; every problem is listed.
    #[error("{}", .0.join("; "))]
    Rejected(Vec<String>),
    /// Applying it would hold more instances than `--max-instances`;
    /// nothing was changed.
    #[error("{0}")]
    LimitReached(String),
    /// A step of the apply failed and what was done was undone: the
    /// message names the step, its error and the rollback.
    #[error("{0}")]
    Failed(String),
    /// No such workspace or file.
    #[error("{0}")]
    NotFound(String),
    /// The daemon is shutting down: workspaces are no longer applied.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// Where to take a workspace from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A workspace of the directory, by name.
    Name(String),
    /// A file anywhere, by absolute path.
    File(String),
}

/// What an apply did.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The workspace.
    pub name: String,
    /// Its status after.
    pub status: WorkspaceStatus,
    /// What changed (or, for a dry run, would).
    pub diff: WorkspaceDiff,
}

/// The workspaces of one directory: a handle to their task.
#[derive(Clone)]
pub struct Workspaces {
    messages: mpsc::UnboundedSender<Message>,
    orchestrator: Arc<Orchestrator>,
    dir: PathBuf,
    history: History,
}

impl ApplyError {
    /// The problems as lines, for a workspace's status and its events.
    fn lines(&self) -> Vec<String> {
        match self {
            Self::Rejected(errors) => errors.clone(),
            other => vec![other.to_string()],
        }
    }
}

impl Workspaces {
    /// Applies every workspace file in `dir` (created if missing) and
    /// watches it for changes. `max_instances` is the daemon's limit: an
    /// apply that would go over it is refused before anything is created.
    /// Every version applied is kept in `history`.
    pub fn start(
        dir: PathBuf,
        orchestrator: Arc<Orchestrator>,
        max_instances: u32,
        history: History,
    ) -> std::io::Result<Self> {
        let messages = actor::start(
            dir.clone(),
            orchestrator.clone(),
            max_instances,
            history.clone(),
        )?;
        Ok(Self {
            messages,
            orchestrator,
            dir,
            history,
        })
    }

    async fn ask<T>(
        &self,
        message: impl FnOnce(oneshot::Sender<T>) -> Message,
    ) -> Result<T, ApplyError> {
        let (reply, answer) = oneshot::channel();
        self.messages
            .send(message(reply))
            .map_err(|_| ApplyError::ShuttingDown)?;
        answer.await.map_err(|_| ApplyError::ShuttingDown)
    }

    /// Every known workspace, by name.
    pub async fn list(&self) -> BTreeMap<String, WorkspaceStatus> {
        self.ask(|reply| Message::List { reply })
            .await
            .unwrap_or_default()
    }

    /// The status of workspace `name`, if known; the name must be a valid
    /// workspace name.
    pub async fn get(&self, name: &str) -> Result<Option<WorkspaceStatus>, ApplyError> {
        check_name("name", name)?;
        Ok(self.list().await.remove(name))
    }

    /// Number of instances a workspace owns.
    pub fn instance_count(&self, name: &str) -> usize {
        apply::owned(&self.orchestrator, name).len()
    }

    /// Applies a workspace now (serialised with the watcher's applies of
    /// the same workspace), for `origin`. With `dry_run` only the diff is
    /// computed.
    pub async fn apply(
        &self,
        source: Source,
        dry_run: bool,
        origin: Origin,
    ) -> Result<Applied, ApplyError> {
        let source = match source {
            Source::Name(name) if name.is_empty() => {
                return Err(ApplyError::Invalid {
                    field: "source",
                    reason: "give a workspace name or an absolute file path".to_owned(),
                });
            }
            Source::Name(name) => {
                check_name("name", &name)?;
                Source::Name(name)
            }
            Source::File(file) if !file.starts_with('/') => {
                return Err(ApplyError::Invalid {
                    field: "file",
                    reason: format!("{} is not an absolute path", outpost::limits::quoted(&file)),
                });
            }
            source => source,
        };
        self.ask(|reply| Message::Apply {
            source,
            dry_run,
            origin,
            rewrite: None,
            reply,
        })
        .await?
    }

    /// Takes workspace `name` back to its version at commit `rev`: that
    /// text is written to the workspace's file and applied, so only what
    /// differs from the running instances changes. Returns the version
    /// gone back to.
    pub async fn rollback(
        &self,
        name: &str,
        rev: &str,
        actor: String,
    ) -> Result<(Version, Applied), ApplyError> {
        check_name("name", name)?;
        let (version, text) = self
            .history
            .show(&Subject::Workspace(name.to_owned()), rev)
            .await
            .map_err(|err| match err {
                HistoryError::NotFound(message) => ApplyError::NotFound(message),
                HistoryError::Invalid { field, reason } => ApplyError::Invalid { field, reason },
                other => ApplyError::Failed(other.to_string()),
            })?;
        // The version's own file name (the subject's name and .toml or
        // .json): TOML never goes into a .json file.
        let kept_as = version.path.rsplit('/').next().unwrap_or_default();
        let file = self.dir.join(kept_as);
        if let Some(other) = existing_files(&self.dir, name).find(|existing| *existing != file) {
            return Err(ApplyError::Failed(format!(
                "workspace {name} is kept in {} now, and that version was {kept_as}: rename the file first",
                other.display()
            )));
        }
        let origin = Origin {
            source: history::Source::WorkspaceRollback,
            actor,
            note: Some(format!("to {}", history::short(&version.rev))),
        };
        let applied = self
            .ask(|reply| Message::Apply {
                source: Source::File(file.to_string_lossy().into_owned()),
                dry_run: false,
                origin,
                rewrite: Some(text),
                reply,
            })
            .await??;
        Ok((version, applied))
    }

    /// Stops watching and applying (for daemon shutdown, before the
    /// instances are stopped, so that no apply starts one again) and waits
    /// up to `timeout` for applies in progress to finish. Applies asked
    /// for afterwards fail with [`ApplyError::ShuttingDown`].
    pub async fn stop(&self, timeout: Duration) {
        let _ = self.ask(|reply| Message::Stop { timeout, reply }).await;
    }
}

/// The files of `dir` that hold workspace `name` (NAME.toml first, then
/// NAME.json), whatever they are.
fn existing_files<'a>(dir: &'a Path, name: &'a str) -> impl Iterator<Item = PathBuf> + 'a {
    ["toml", "json"]
        .into_iter()
        .map(move |extension| dir.join(format!("{name}.{extension}")))
        .filter(|candidate| candidate.symlink_metadata().is_ok())
}

/// Refuses a workspace name that is not one harmless path component.
fn check_name(field: &'static str, name: &str) -> Result<(), ApplyError> {
    workspace_file::validate_workspace_name(field, name).map_err(|err| ApplyError::Invalid {
        field,
        reason: err.reason,
    })
}
