//! Workspaces: a directory of workspace files, each applied as a diff
//! against the instances it owns, and re-applied whenever it changes.
//!
//! Each workspace has a worker task woken through a `watch` channel: a
//! change only marks the workspace dirty, and the worker reads the file
//! when it gets to it. So changes to one workspace apply one at a time,
//! edits made during an apply coalesce into one more apply of the latest
//! content, and an earlier version is never applied after a later one.
//! Different workspaces apply in parallel.
//!
//! File events are hints (notify, directory watch, debounced per workspace
//! by its worker); the file is read only once it is settled — it must
//! exist, be non-empty and keep the same size and mtime across the read,
//! else it is looked at again after a grace period. A file that stays
//! missing removes its workspace.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use notify::{RecursiveMode, Watcher, event::EventKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use outpost::{
    spec::InstanceSpec,
    workspace_file::{self, Workspace},
};

use crate::orchestrator::{
    ListFilter, Orchestrator, OrchestratorError,
    events::{WorkspaceChange, WorkspaceDiff},
};

/// Trailing debounce of file events: a workspace is applied once no event
/// about it came for this long.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How long a missing, empty or changing file is given to settle.
const SETTLE: Duration = Duration::from_millis(300);
/// How often a file is looked at before it counts as settled as it is.
const SETTLE_TRIES: u32 = 3;

/// What is known about one workspace.
#[derive(Clone, Debug, Default)]
pub struct WorkspaceStatus {
    /// Its file.
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
    /// The file is invalid; every problem is listed.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// No such workspace or file.
    #[error("{0}")]
    NotFound(String),
    /// The daemon is shutting down: workspaces are no longer applied.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// The workspaces of one directory.
pub struct Workspaces {
    dir: PathBuf,
    orchestrator: Arc<Orchestrator>,
    statuses: Mutex<BTreeMap<String, WorkspaceStatus>>,
    /// Wakes the worker of a workspace; created on first use.
    workers: Mutex<HashMap<String, watch::Sender<PathBuf>>>,
    /// Serialises applies of one workspace (worker and API alike).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Cancelled by [`Workspaces::stop`]: the watcher and workers end, and
    /// no apply starts any more.
    stopped: CancellationToken,
}

impl Workspaces {
    /// Applies every workspace file in `dir` and watches it for changes.
    pub fn start(dir: PathBuf, orchestrator: Arc<Orchestrator>) -> std::io::Result<Arc<Self>> {
        fs::create_dir_all(&dir)?;
        let workspaces = Arc::new(Self {
            dir: dir.clone(),
            orchestrator,
            statuses: Mutex::new(BTreeMap::new()),
            workers: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            stopped: CancellationToken::new(),
        });
        let (hints, mut receiver) = mpsc::unbounded_channel::<Option<PathBuf>>();
        // Raw events: the watcher's thread wakes only when one arrives (a
        // debouncer thread would tick while the daemon idles); the workers
        // debounce per workspace with a timer armed only by an event.
        let mut watcher = notify::recommended_watcher(
            move |result: notify::Result<notify::Event>| match result {
                Ok(event) => {
                    // Reading a file is an event too: only changes count.
                    if matches!(event.kind, EventKind::Access(_)) {
                        return;
                    }
                    if event.need_rescan() || matches!(event.kind, EventKind::Other) {
                        let _ = hints.send(None);
                    }
                    for path in event.paths {
                        let _ = hints.send(Some(path));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "workspace watcher error; rescanning");
                    let _ = hints.send(None);
                }
            },
        )
        .map_err(std::io::Error::other)?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(std::io::Error::other)?;
        let task = workspaces.clone();
        tokio::spawn(async move {
            // The watcher stops watching when dropped: it lives here.
            let _watcher = watcher;
            task.rescan();
            loop {
                let hint = tokio::select! {
                    hint = receiver.recv() => hint,
                    () = task.stopped.cancelled() => None,
                };
                match hint {
                    Some(Some(path)) => task.touch(&path),
                    Some(None) => task.rescan(),
                    None => break,
                }
            }
        });
        Ok(workspaces)
    }

    /// Stops watching and applying (for daemon shutdown, before the
    /// instances are stopped, so that no apply starts one again): ends the
    /// watcher and the workers, and waits up to `timeout` for applies in
    /// progress to finish. Applies asked for afterwards fail with
    /// [`ApplyError::ShuttingDown`].
    pub async fn stop(&self, timeout: std::time::Duration) {
        self.stopped.cancel();
        let locks: Vec<_> = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let finished = tokio::time::timeout(timeout, async {
            for lock in locks {
                drop(lock.lock().await);
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(?timeout, "a workspace apply is still in progress");
        }
    }

    /// Marks every workspace file of the directory (and every known
    /// workspace, in case its file is gone) as possibly changed.
    fn rescan(self: &Arc<Self>) {
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                self.touch(&entry.path());
            }
        }
        let known: Vec<PathBuf> = self
            .lock_statuses()
            .values()
            .map(|s| s.file.clone())
            .collect();
        for file in known {
            self.touch(&file);
        }
    }

    fn lock_statuses(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, WorkspaceStatus>> {
        self.statuses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the worker of the workspace `path` defines, if any.
    fn touch(self: &Arc<Self>, path: &Path) {
        let Some(name) = workspace_file::workspace_name(path) else {
            return;
        };
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(worker) = workers.get(&name) {
            worker.send_replace(path.to_owned());
            return;
        }
        let (sender, mut receiver) = watch::channel(path.to_owned());
        receiver.mark_changed();
        workers.insert(name.clone(), sender);
        let workspaces = self.clone();
        tokio::spawn(async move {
            // The first look (at start-up or a new file) is not debounced.
            let mut debounce = false;
            loop {
                tokio::select! {
                    changed = receiver.changed() => if changed.is_err() { break },
                    () = workspaces.stopped.cancelled() => break,
                }
                // Trailing debounce: wait until no event came for DEBOUNCE.
                while debounce {
                    receiver.borrow_and_update();
                    tokio::select! {
                        () = tokio::time::sleep(DEBOUNCE) => {}
                        () = workspaces.stopped.cancelled() => return,
                    }
                    debounce = receiver.has_changed().unwrap_or(false);
                }
                debounce = true;
                let file = receiver.borrow_and_update().clone();
                workspaces.sync_file(&name, &file).await;
            }
        });
    }

    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Brings workspace `name` in line with `file` as it is now.
    async fn sync_file(&self, name: &str, file: &Path) {
        match settled_text(file).await {
            Some(text) => {
                if let Err(ApplyError::Invalid(errors)) =
                    self.apply_text(name, file, &text, false).await
                {
                    for error in &errors {
                        tracing::warn!(
                            workspace = name,
                            error,
                            "workspace file rejected; nothing changed"
                        );
                    }
                }
            }
            None => self.remove(name, file).await,
        }
    }

    /// Validates and applies a workspace file's content as a diff (or with
    /// `dry_run` only computes the diff). Serialised per workspace.
    async fn apply_text(
        &self,
        name: &str,
        file: &Path,
        text: &str,
        dry_run: bool,
    ) -> Result<WorkspaceDiff, ApplyError> {
        let lock = self.lock_for(name);
        let _applying = lock.lock().await;
        if self.stopped.is_cancelled() && !dry_run {
            return Err(ApplyError::ShuttingDown);
        }
        let workspace = match workspace_file::parse(file, text) {
            Ok(workspace) => workspace,
            Err(errors) => {
                if !dry_run {
                    self.record(name, file, None, errors.clone());
                }
                return Err(ApplyError::Invalid(errors));
            }
        };
        let current = self.owned(name);
        let diff = diff(&current, &workspace.instances);
        if dry_run {
            return Ok(diff);
        }
        let mut errors = Vec::new();
        for instance in &diff.deleted {
            if let Err(err) = self
                .orchestrator
                .delete_instance(instance, false, true)
                .await
            {
                errors.push(format!("{instance}: cannot delete: {err}"));
            }
        }
        for spec in &workspace.instances {
            let result = if diff.created.contains(&spec.name) {
                self.orchestrator
                    .create(spec.clone(), true, Some(name.to_owned()))
                    .await
                    .map(drop)
            } else if diff.changed.contains(&spec.name) {
                self.replace(name, &current[&spec.name], spec.clone()).await
            } else {
                Ok(())
            };
            if let Err(err) = result {
                errors.push(err.to_string());
            }
        }
        for error in &errors {
            tracing::warn!(workspace = name, error, "applying workspace");
        }
        self.record(name, file, Some((workspace, diff.clone())), errors);
        Ok(diff)
    }

    /// Changes an instance to `spec`: in place (with rollback) when only
    /// what a restart can change differs, else by delete and create.
    async fn replace(
        &self,
        workspace: &str,
        current: &InstanceSpec,
        spec: InstanceSpec,
    ) -> Result<(), OrchestratorError> {
        if current.port == spec.port && current.project_path == spec.project_path {
            let name = spec.name.clone();
            return self.orchestrator.reconfigure(&name, spec).await.map(drop);
        }
        self.orchestrator
            .delete_instance(&spec.name, false, true)
            .await?;
        self.orchestrator
            .create(spec, true, Some(workspace.to_owned()))
            .await
            .map(drop)
    }

    /// The specs of the instances workspace `name` owns now, by name.
    fn owned(&self, name: &str) -> BTreeMap<String, InstanceSpec> {
        let filter = ListFilter {
            workspace: Some(name.to_owned()),
            ..Default::default()
        };
        let (instances, _) = self.orchestrator.list(&filter);
        instances
            .into_iter()
            .map(|status| (status.spec.name.clone(), (*status.spec).clone()))
            .collect()
    }

    /// Removes a workspace whose file is gone, with its instances.
    async fn remove(&self, name: &str, file: &Path) {
        let lock = self.lock_for(name);
        let _applying = lock.lock().await;
        if self.stopped.is_cancelled() {
            return;
        }
        let current = self.owned(name);
        for instance in current.keys() {
            if let Err(err) = self
                .orchestrator
                .delete_instance(instance, false, true)
                .await
            {
                tracing::warn!(workspace = name, instance, %err, "cannot delete");
            }
        }
        self.lock_statuses().remove(name);
        let diff = WorkspaceDiff {
            deleted: current.into_keys().collect(),
            ..Default::default()
        };
        self.orchestrator.publish_workspace(WorkspaceChange {
            name: name.to_owned(),
            file: file.to_owned(),
            diff: Some(diff),
            errors: Vec::new(),
        });
    }

    /// Records the outcome of a change and announces it.
    fn record(
        &self,
        name: &str,
        file: &Path,
        applied: Option<(Workspace, WorkspaceDiff)>,
        errors: Vec<String>,
    ) {
        let mut statuses = self.lock_statuses();
        let status = statuses.entry(name.to_owned()).or_default();
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
        drop(statuses);
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

    /// Every known workspace, by name.
    pub fn list(&self) -> BTreeMap<String, WorkspaceStatus> {
        self.lock_statuses().clone()
    }

    /// Number of instances a workspace owns.
    pub fn instance_count(&self, name: &str) -> usize {
        self.owned(name).len()
    }

    /// Applies a workspace now: `source` is a name in the directory or an
    /// absolute file path. With `dry_run` only the diff is computed.
    pub async fn apply(
        &self,
        source: &str,
        dry_run: bool,
    ) -> Result<(String, WorkspaceDiff), ApplyError> {
        let file = self.resolve(source)?;
        let name = workspace_file::workspace_name(&file).ok_or_else(|| {
            ApplyError::Invalid(vec![format!(
                "{}: a workspace file is NAME.toml or NAME.json",
                file.display()
            )])
        })?;
        let text = fs::read_to_string(&file)
            .map_err(|err| ApplyError::NotFound(format!("{}: {err}", file.display())))?;
        let diff = self.apply_text(&name, &file, &text, dry_run).await?;
        Ok((name, diff))
    }

    /// The file a name or path designates.
    fn resolve(&self, source: &str) -> Result<PathBuf, ApplyError> {
        let path = Path::new(source);
        if path.is_absolute() {
            return Ok(path.to_owned());
        }
        ["toml", "json"]
            .iter()
            .map(|extension| self.dir.join(format!("{source}.{extension}")))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| {
                ApplyError::NotFound(format!("no workspace {source:?} in {}", self.dir.display()))
            })
    }
}

/// The diff from `current` (owned instances) to `desired`.
fn diff(current: &BTreeMap<String, InstanceSpec>, desired: &[InstanceSpec]) -> WorkspaceDiff {
    let mut diff = WorkspaceDiff::default();
    for spec in desired {
        match current.get(&spec.name) {
            None => diff.created.push(spec.name.clone()),
            Some(existing) if existing == spec => diff.unchanged.push(spec.name.clone()),
            Some(_) => diff.changed.push(spec.name.clone()),
        }
    }
    diff.deleted = current
        .keys()
        .filter(|name| !desired.iter().any(|spec| &spec.name == *name))
        .cloned()
        .collect();
    diff
}

/// The content of `file` once it has settled, or `None` when it stays
/// missing. A file that is empty or changes while being read (an editor
/// mid-save) is read again after a grace period.
async fn settled_text(file: &Path) -> Option<String> {
    let mut attempt = 1;
    loop {
        let last = attempt == SETTLE_TRIES;
        let before = fs::metadata(file).ok();
        let text = fs::read_to_string(file).ok();
        let after = fs::metadata(file).ok();
        let stable = match (&before, &after) {
            (Some(before), Some(after)) => {
                before.len() == after.len() && before.modified().ok() == after.modified().ok()
            }
            _ => false,
        };
        match text {
            Some(text) if last || (stable && !text.trim().is_empty()) => return Some(text),
            None if last => return None,
            _ => {}
        }
        attempt += 1;
        tokio::time::sleep(SETTLE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, command: &str) -> InstanceSpec {
        let input = outpost::spec::SpecInput {
            name: name.to_owned(),
            command: command.to_owned(),
            ..Default::default()
        };
        InstanceSpec::validate(input).unwrap()
    }

    #[test]
    fn diff_sorts_instances_into_what_to_do() {
        let current: BTreeMap<String, InstanceSpec> =
            [spec("w.a", "x"), spec("w.b", "x"), spec("w.c", "x")]
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect();
        let desired = [spec("w.a", "x"), spec("w.b", "y"), spec("w.d", "x")];
        let diff = diff(&current, &desired);
        assert_eq!(diff.unchanged, ["w.a"]);
        assert_eq!(diff.changed, ["w.b"]);
        assert_eq!(diff.created, ["w.d"]);
        assert_eq!(diff.deleted, ["w.c"]);
    }
}
