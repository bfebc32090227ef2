//! The orchestrator: supervises instances. Each instance is an actor task
//! ([`actor`]) owning its process; the [`registry`] finds actors by id,
//! name or project; every change is published on the [`events`] board.
//! Nothing here knows about gRPC.

pub mod actor;
pub mod events;
pub mod health;
pub mod logs;
pub mod policy;
pub mod ports;
pub mod process;
pub mod reaper;
pub mod registry;
pub mod spec;
pub mod status;
pub mod usage;

use std::{
    collections::BTreeMap,
    io,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use tokio::{io::unix::AsyncFd, sync::mpsc};

use crate::config::PortRange;
use actor::{Actor, Command, Process, Reply};
use events::{StatusBoard, Subscription};
use logs::LogFiles;
use ports::{PortError, PortPool};
use reaper::Reaper;
use registry::{InstanceHandle, Registry};
use spec::{InstanceSpec, PortChoice};
use status::{InstanceKind, InstanceState, InstanceStatus, ProcessInfo, Reason};

/// Commands an actor may have queued before senders wait.
const COMMAND_QUEUE: usize = 32;
/// How often log files are checked for rotation.
const ROTATE_EVERY: Duration = Duration::from_secs(10);

/// Why an orchestrator call failed; the server maps each to a gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// A request field is invalid.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field, as named in the API (`spec.name`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No such instance.
    #[error("{0}")]
    NotFound(String),
    /// The name or project is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but cannot be carried out now.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A limit is reached (instances, ports).
    #[error("{0}")]
    ResourceExhausted(String),
}

impl From<PortError> for OrchestratorError {
    fn from(err: PortError) -> Self {
        match err {
            PortError::Exhausted(_) => Self::ResourceExhausted(err.to_string()),
            PortError::Allocated { .. } | PortError::InUse(_) => {
                Self::FailedPrecondition(err.to_string())
            }
        }
    }
}

/// What the orchestrator needs from the daemon's configuration.
#[derive(Clone, Debug)]
pub struct OrchestratorConfig {
    /// The data directory (logs go below it; default working directory).
    pub data_dir: PathBuf,
    /// The port pool.
    pub port_range: PortRange,
    /// Most instances held.
    pub max_instances: u32,
}

/// What actors share.
pub struct Shared {
    /// The event bus and current status of every instance.
    pub board: StatusBoard,
    reaper: Arc<Reaper>,
    logs_root: PathBuf,
    default_dir: PathBuf,
}

impl Shared {
    /// The log files of instance `id`.
    pub fn logs(&self, id: &str) -> LogFiles {
        LogFiles::new(&self.logs_root, id)
    }

    /// Spawns the process of a managed instance.
    fn spawn(
        &self,
        id: &str,
        spec: &InstanceSpec,
        port: Option<u16>,
    ) -> Result<Process, process::SpawnError> {
        let mut command = process::command(id, spec, port, &self.default_dir, &self.logs(id))?;
        let spawned = self
            .reaper
            .spawn(&mut command)
            .map_err(|err| process::spawn_error(spec, err))?;
        let start_ticks =
            process::read_entry(spawned.pid as i32).map_or(0, |entry| entry.start_ticks);
        Ok(Process::Managed {
            info: ProcessInfo {
                pid: spawned.pid,
                pgid: spawned.pid,
                start_ticks,
                started_at: SystemTime::now(),
            },
            exit: spawned.exit,
        })
    }
}

/// Which instances `list` returns; empty fields match everything.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// Any of these states.
    pub states: Vec<InstanceState>,
    /// Owned by this workspace.
    pub workspace: Option<String>,
    /// Carrying all of these labels.
    pub labels: BTreeMap<String, String>,
}

impl ListFilter {
    fn matches(&self, status: &InstanceStatus) -> bool {
        (self.states.is_empty() || self.states.contains(&status.state))
            && self
                .workspace
                .as_ref()
                .is_none_or(|workspace| status.workspace.as_ref() == Some(workspace))
            && self
                .labels
                .iter()
                .all(|(key, value)| status.spec.labels.get(key) == Some(value))
    }
}

/// An external process to watch.
#[derive(Debug)]
pub struct ExternalInput {
    /// Its name.
    pub name: String,
    /// Its pid, if known.
    pub pid: Option<u32>,
    /// Its port, if any.
    pub port: Option<u16>,
    /// Its project directory, if any.
    pub project_path: Option<PathBuf>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// The orchestrator.
pub struct Orchestrator {
    shared: Arc<Shared>,
    registry: Mutex<Registry>,
    usage: usage::UsageSampler,
}

impl Orchestrator {
    /// Makes the daemon a subreaper, starts the reaper and log rotation.
    /// Must be called inside the tokio runtime.
    pub fn start(config: OrchestratorConfig) -> io::Result<Arc<Self>> {
        let logs_root = config.data_dir.join("logs");
        std::fs::create_dir_all(&logs_root)?;
        let orchestrator = Arc::new(Self {
            shared: Arc::new(Shared {
                board: StatusBoard::default(),
                reaper: Reaper::start()?,
                logs_root,
                default_dir: config.data_dir,
            }),
            registry: Mutex::new(Registry::new(
                PortPool::new(config.port_range),
                config.max_instances,
            )),
            usage: usage::UsageSampler::default(),
        });
        let weak = Arc::downgrade(&orchestrator);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ROTATE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(orchestrator) = weak.upgrade() else {
                    break;
                };
                orchestrator.rotate_logs();
            }
        });
        Ok(orchestrator)
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates an instance, started unless `start` is false. On any error
    /// nothing of it remains.
    pub fn create(
        &self,
        spec: InstanceSpec,
        start: bool,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let mut registry = self.registry();
        let id = registry.admit(&spec.name, spec.project_path.as_ref())?;
        let port = match spec.port {
            PortChoice::None => None,
            PortChoice::Auto => Some(registry.ports.allocate_auto(&id)?),
            PortChoice::Fixed(port) => Some(registry.ports.allocate_fixed(&id, port)?),
        };
        let process = if start {
            match self.shared.spawn(&id, &spec, port) {
                Ok(process) => Some(process),
                Err(err) => {
                    if let Some(port) = port {
                        registry.ports.release(port);
                    }
                    let _ = self.shared.logs(&id).remove();
                    return Err(OrchestratorError::FailedPrecondition(err.to_string()));
                }
            }
        } else {
            None
        };
        let state = if start {
            InstanceState::Starting
        } else {
            InstanceState::Stopped
        };
        let status = InstanceStatus::new(id, spec, InstanceKind::Managed, state, port);
        Ok(self.launch(&mut registry, status, process))
    }

    /// Starts the actor of a new instance and registers it.
    fn launch(
        &self,
        registry: &mut Registry,
        status: InstanceStatus,
        process: Option<Process>,
    ) -> InstanceStatus {
        let (sender, receiver) = mpsc::channel(COMMAND_QUEUE);
        let name = status.spec.name.clone();
        let project = status.spec.project_path.clone();
        let actor = Actor::create(status, process, self.shared.clone(), receiver);
        let status = actor.status().clone();
        registry.insert(
            InstanceHandle {
                id: status.id.clone(),
                commands: sender,
            },
            name,
            project,
        );
        tokio::spawn(actor.run());
        status
    }

    /// Registers a process the daemon did not start.
    pub fn register_external(
        &self,
        input: ExternalInput,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let process = match input.pid {
            Some(pid) => Some(watch_external(pid)?),
            None => None,
        };
        let mut registry = self.registry();
        let id = registry.admit(&input.name, input.project_path.as_ref())?;
        if let Some(port) = input.port {
            registry.ports.claim(&id, port)?;
        }
        let spec = InstanceSpec {
            name: input.name,
            project_path: input.project_path,
            command: String::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            port: input.port.map_or(PortChoice::None, PortChoice::Fixed),
            stop_signal: nix::sys::signal::Signal::SIGTERM,
            stop_grace: spec::DEFAULT_STOP_GRACE,
            labels: input.labels,
            health: spec::HealthCheck::default(),
            restart: spec::RestartPolicy::default(),
            idle_timeout: None,
            startup_timeout: spec::DEFAULT_STARTUP_TIMEOUT,
        };
        // Without a pid there is nothing to watch: it is assumed to serve.
        let status = InstanceStatus::new(
            id,
            spec,
            InstanceKind::External,
            InstanceState::Starting,
            input.port,
        );
        Ok(self.launch(&mut registry, status, process))
    }

    /// Returns the instance of `project`: a live one as it is, a stopped
    /// one started, or a new one created from `spec()` (only called then, so
    /// a caller need not describe an instance that exists). The flags say
    /// whether it was created and whether this call started it. Counts as
    /// activity.
    pub async fn get_or_create<E: From<OrchestratorError>>(
        &self,
        project: &Path,
        spec: impl FnOnce() -> Result<InstanceSpec, E>,
    ) -> Result<(InstanceStatus, bool, bool), E> {
        let existing = self.registry().by_project(project).cloned();
        let (handle, created) = match existing {
            Some(handle) => (handle, false),
            None => {
                let spec = spec()?;
                if spec.project_path.as_deref() != Some(project) {
                    return Err(OrchestratorError::InvalidArgument {
                        field: "spec.project_path".to_owned(),
                        reason: "must be the project asked for".to_owned(),
                    }
                    .into());
                }
                match self.create(spec, true) {
                    Ok(status) => (self.handle(&status.id)?, true),
                    // Created concurrently by another caller: use that one.
                    Err(OrchestratorError::AlreadyExists(_))
                        if self.registry().by_project(project).is_some() =>
                    {
                        (
                            self.registry()
                                .by_project(project)
                                .cloned()
                                .expect("checked"),
                            false,
                        )
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        };
        self.touch(&handle.id);
        let was_active = self.status_of(&handle.id)?.state.is_active();
        // Returns once the instance is ready (or failed to become so).
        let status = call(&handle, |reply| Command::Start {
            reason: Reason::UserStart,
            wait_ready: true,
            reply,
        })
        .await?;
        Ok((status, created, created || !was_active))
    }

    fn status_of(&self, id: &str) -> Result<InstanceStatus, OrchestratorError> {
        self.shared
            .board
            .get(id)
            .ok_or_else(|| OrchestratorError::NotFound(format!("instance {id} is gone")))
    }

    fn handle(&self, key: &str) -> Result<InstanceHandle, OrchestratorError> {
        self.registry().resolve(key).cloned()
    }

    /// One instance, by id or name, with its resource usage.
    pub fn get(&self, key: &str) -> Result<InstanceStatus, OrchestratorError> {
        let handle = self.handle(key)?;
        let mut status = self.status_of(&handle.id)?;
        self.add_usage(std::slice::from_mut(&mut status));
        Ok(status)
    }

    /// Fills in the usage of every managed instance that has a process.
    fn add_usage(&self, statuses: &mut [InstanceStatus]) {
        if !statuses
            .iter()
            .any(|s| s.kind == InstanceKind::Managed && s.process.is_some())
        {
            return;
        }
        let usage = self.usage.sample();
        for status in statuses
            .iter_mut()
            .filter(|s| s.kind == InstanceKind::Managed)
        {
            status.usage = status
                .process
                .and_then(|p| usage.get(&(p.pgid as i32)).copied());
        }
    }

    /// Instances matching `filter`, ordered by name, and the revision they
    /// reflect.
    pub fn list(&self, filter: &ListFilter) -> (Vec<InstanceStatus>, u64) {
        let snapshot = self.shared.board.snapshot(events::SnapshotKind::Initial);
        let mut instances: Vec<InstanceStatus> = snapshot
            .instances
            .into_iter()
            .filter(|status| filter.matches(status))
            .collect();
        instances.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        self.add_usage(&mut instances);
        (instances, snapshot.revision)
    }

    /// Number of instances in each state.
    pub fn counts(&self) -> BTreeMap<InstanceState, u32> {
        let mut counts: BTreeMap<InstanceState, u32> =
            InstanceState::ALL.iter().map(|&s| (s, 0)).collect();
        for status in self
            .shared
            .board
            .snapshot(events::SnapshotKind::Initial)
            .instances
        {
            *counts.entry(status.state).or_default() += 1;
        }
        counts
    }

    /// Starts an instance.
    pub async fn start_instance(&self, key: &str) -> Result<InstanceStatus, OrchestratorError> {
        let handle = self.handle(key)?;
        call(&handle, |reply| Command::Start {
            reason: Reason::UserStart,
            wait_ready: false,
            reply,
        })
        .await
    }

    /// Stops an instance.
    pub async fn stop_instance(
        &self,
        key: &str,
        grace: Option<Duration>,
        signal_external: bool,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let handle = self.handle(key)?;
        call(&handle, |reply| Command::Stop {
            grace,
            signal_external,
            reason: Reason::UserStop,
            reply,
        })
        .await
    }

    /// Restarts an instance.
    pub async fn restart_instance(&self, key: &str) -> Result<InstanceStatus, OrchestratorError> {
        let handle = self.handle(key)?;
        call(&handle, |reply| Command::Restart { reply }).await
    }

    /// Stops and forgets an instance, releasing its port and logs.
    pub async fn delete_instance(
        &self,
        key: &str,
        signal_external: bool,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let handle = self.handle(key)?;
        let status = call(&handle, |reply| Command::Delete {
            signal_external,
            reply,
        })
        .await?;
        self.registry().remove(
            &status.id,
            &status.spec.name,
            status.spec.project_path.as_ref(),
            status.port,
        );
        if status.kind == InstanceKind::Managed
            && let Err(err) = self.shared.logs(&status.id).remove()
        {
            tracing::warn!(id = status.id, %err, "cannot remove the logs of a deleted instance");
        }
        self.shared.board.publish(events::Change::Deleted {
            status: status.clone(),
        });
        Ok(status)
    }

    /// Records activity on an instance.
    pub fn record_activity(&self, key: &str) -> Result<InstanceStatus, OrchestratorError> {
        let handle = self.handle(key)?;
        self.touch(&handle.id);
        self.status_of(&handle.id)
    }

    fn touch(&self, id: &str) {
        self.shared.board.touch(id, SystemTime::now());
    }

    /// Subscribes to the event bus (see [`StatusBoard::subscribe`]).
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        self.shared.board.subscribe(since)
    }

    /// A fresh snapshot, for a subscriber that fell behind.
    pub fn resync(&self) -> events::Snapshot {
        self.shared.board.snapshot(events::SnapshotKind::Resync)
    }

    /// The log files of an instance.
    pub fn logs(&self, key: &str) -> Result<LogFiles, OrchestratorError> {
        let handle = self.handle(key)?;
        Ok(self.shared.logs(&handle.id))
    }

    /// Stops every instance (for daemon shutdown), all at once.
    pub async fn shutdown(&self) {
        let handles: Vec<InstanceHandle> = self.registry().handles().cloned().collect();
        let mut stops = tokio::task::JoinSet::new();
        for handle in handles {
            stops.spawn(async move {
                call(&handle, |reply| Command::Stop {
                    grace: None,
                    signal_external: false,
                    reason: Reason::DaemonShutdown,
                    reply,
                })
                .await
            });
        }
        while let Some(result) = stops.join_next().await {
            // External instances are left running: that is not an error.
            if let Ok(Err(err)) = result
                && !matches!(err, OrchestratorError::FailedPrecondition(_))
            {
                tracing::warn!(%err, "stopping an instance at shutdown");
            }
        }
    }

    fn rotate_logs(&self) {
        let ids: Vec<String> = self
            .registry()
            .handles()
            .map(|handle| handle.id.clone())
            .collect();
        for id in ids {
            if let Err(err) = self.shared.logs(&id).rotate_if_larger(logs::ROTATE_AT) {
                tracing::warn!(id, %err, "cannot rotate logs");
            }
        }
    }
}

/// Sends a command to an actor and waits for its answer.
async fn call(
    handle: &InstanceHandle,
    command: impl FnOnce(Reply) -> Command,
) -> Result<InstanceStatus, OrchestratorError> {
    let gone = || OrchestratorError::NotFound(format!("instance {} is being deleted", handle.id));
    let (reply, answer) = tokio::sync::oneshot::channel();
    handle
        .commands
        .send(command(reply))
        .await
        .map_err(|_| gone())?;
    answer.await.map_err(|_| gone())?
}

/// Opens a pidfd on an external process and records its identity.
fn watch_external(pid: u32) -> Result<Process, OrchestratorError> {
    let invalid = |reason: String| OrchestratorError::InvalidArgument {
        field: "pid".to_owned(),
        reason,
    };
    let entry = process::read_entry(pid as i32)
        .ok_or_else(|| invalid(format!("no process has pid {pid}")))?;
    let raw = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| invalid("must not be 0".to_owned()))?;
    let pidfd: OwnedFd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())
        .map_err(|err| invalid(format!("cannot watch pid {pid}: {err}")))?;
    // The pidfd pins the process we checked: if the pid was reused between
    // the /proc read and pidfd_open, the start time tells.
    if process::read_entry(pid as i32).map(|e| e.start_ticks) != Some(entry.start_ticks) {
        return Err(invalid(format!(
            "process {pid} exited while being registered"
        )));
    }
    // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it open
    // (and the same descriptor) for as long as it lives.
    let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(|err| invalid(format!("cannot watch pid {pid}: {}", err.into_parts().1)))?;
    Ok(Process::External {
        info: ProcessInfo {
            pid,
            pgid: 0,
            start_ticks: entry.start_ticks,
            started_at: SystemTime::now(),
        },
        pidfd,
    })
}
