//! Workspaces: a directory of workspace files, each applied as a diff
//! against the instances it owns, and re-applied whenever it changes.
//!
//! One task owns every workspace's state ([`actor`]): the watcher and
//! `ApplyWorkspace` only send it messages. Changes to one workspace apply
//! one at a time, edits made during an apply coalesce into one more apply
//! of the latest content, and an earlier version is never applied after a
//! later one; different workspaces apply in parallel. What one apply does
//! is in [`apply`].

mod actor;
mod apply;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use outpost::workspace_file::Workspace;
use tokio::sync::{mpsc, oneshot};

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
}

impl Workspaces {
    /// Applies every workspace file in `dir` (created if missing) and
    /// watches it for changes.
    pub fn start(dir: PathBuf, orchestrator: Arc<Orchestrator>) -> std::io::Result<Self> {
        let messages = actor::start(dir, orchestrator.clone())?;
        Ok(Self {
            messages,
            orchestrator,
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

    /// Number of instances a workspace owns.
    pub fn instance_count(&self, name: &str) -> usize {
        apply::owned(&self.orchestrator, name).len()
    }

    /// Applies a workspace now (serialised with the watcher's applies of
    /// the same workspace). With `dry_run` only the diff is computed.
    pub async fn apply(&self, source: Source, dry_run: bool) -> Result<Applied, ApplyError> {
        let source = match source {
            Source::Name(name) if name.is_empty() => {
                return Err(ApplyError::Invalid {
                    field: "source",
                    reason: "give a workspace name or an absolute file path".to_owned(),
                });
            }
            Source::File(file) if !file.starts_with('/') => {
                return Err(ApplyError::Invalid {
                    field: "file",
                    reason: format!("{file:?} is not an absolute path"),
                });
            }
            source => source,
        };
        self.ask(|reply| Message::Apply {
            source,
            dry_run,
            reply,
        })
        .await?
    }

    /// Stops watching and applying (for daemon shutdown, before the
    /// instances are stopped, so that no apply starts one again) and waits
    /// up to `timeout` for applies in progress to finish. Applies asked
    /// for afterwards fail with [`ApplyError::ShuttingDown`].
    pub async fn stop(&self, timeout: Duration) {
        let _ = self.ask(|reply| Message::Stop { timeout, reply }).await;
    }
}
