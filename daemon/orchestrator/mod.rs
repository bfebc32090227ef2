//! The orchestrator: supervises instances. Each instance is an actor task
//! ([`actor`]) owning its process; the [`registry`] finds actors by id,
//! name or project; every change is published on the [`events`] board.
//! Nothing here knows about gRPC.

pub mod actor;
pub mod events;
pub mod health;
pub mod lineage;
pub mod logs;
pub mod policy;
pub mod ports;
pub mod process;
pub mod reaper;
pub mod registry;
pub mod scanner;
pub mod status;
pub mod usage;
pub mod validate;

use std::{
    collections::{BTreeMap, HashMap},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use tokio::{io::unix::AsyncFd, sync::mpsc};

use crate::{
    config::PortRange,
    store::{Op, Store, StoreError, StoredInstance, Transition, writer::StoreWriter},
};
use actor::{Actor, Command, Process, Reply};
use events::{StatusBoard, Subscription};
use logs::{LogFiles, LogSpares};
use outpost::spec::{self, InstanceSpec, PortChoice};
use ports::{PortError, PortPool};
use reaper::Reaper;
use registry::{InstanceHandle, Registry};
use scanner::Scanner;
use status::{InstanceKind, InstanceState, InstanceStatus, ProcessInfo, Reason};

/// Commands an actor may have queued before senders wait.
const COMMAND_QUEUE: usize = 32;
/// How often log files are checked for rotation.
const ROTATE_EVERY: Duration = Duration::from_secs(10);
/// Most rotation rounds skipped for an instance whose logs did not grow:
/// quiet logs are looked at every 10 s, 20 s, 40 s … up to every 320 s.
const MAX_QUIET_SKIP: u32 = 31;

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
    /// The change happened but could not be stored.
    #[error("{0}")]
    Storage(String),
}

/// Why the orchestrator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store refused (damaged, newer schema, unwritable).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The subreaper or the log directory could not be set up.
    #[error("{0}")]
    Io(std::io::Error),
}

/// How an actor comes to be.
enum Origin {
    /// Created now, with its process if it was started.
    New(Option<Process>),
    /// Recovered from the store, with its process if it was re-adopted.
    Recovered(Option<Process>),
}

impl From<spec::InvalidField> for OrchestratorError {
    fn from(err: spec::InvalidField) -> Self {
        Self::InvalidArgument {
            field: err.field,
            reason: err.reason,
        }
    }
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
    /// Persists every change.
    pub writer: StoreWriter,
    reaper: Arc<Reaper>,
    /// The shared /proc scans.
    scanner: Arc<Scanner>,
    logs_root: PathBuf,
    /// Log directories made ahead for new instances.
    log_spares: Arc<LogSpares>,
    data_dir: PathBuf,
    boot_id: String,
}

impl Shared {
    /// Publishes a transition on the board and queues it for the store.
    pub fn publish(&self, change: events::Change) {
        if let events::Change::Instance {
            status,
            reason,
            detail,
            ..
        } = &change
        {
            self.writer.submit(Op::Upsert {
                status: Box::new(status.clone()),
                transition: Some(Transition {
                    at: SystemTime::now(),
                    reason: *reason,
                    detail: detail.clone(),
                }),
            });
        }
        self.board.publish(change);
    }

    /// Updates an instance's status without a transition (board and store).
    pub fn refresh(&self, status: &InstanceStatus) {
        self.board.refresh(status);
        self.writer.submit(Op::Upsert {
            status: Box::new(status.clone()),
            transition: None,
        });
    }

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
        let logs = self.logs(id);
        let mut command =
            process::command(id, spec, port, &self.data_dir, &logs, &self.log_spares)?;
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
    usage: Arc<usage::UsageSampler>,
}

impl Orchestrator {
    /// Makes the daemon a subreaper, starts the reaper and log rotation.
    /// Must be called inside the tokio runtime.
    pub async fn start(
        config: OrchestratorConfig,
        store: Arc<Store>,
    ) -> Result<Arc<Self>, StartError> {
        let logs_root = config.data_dir.join("logs");
        std::fs::create_dir_all(&logs_root).map_err(StartError::Io)?;
        let stored = store.load().await?;
        let boot_id = process::boot_id();
        let scanner = Arc::new(Scanner::default());
        let orchestrator = Arc::new(Self {
            shared: Arc::new(Shared {
                board: StatusBoard::default(),
                writer: StoreWriter::start(store, boot_id.clone()),
                reaper: Reaper::start().map_err(StartError::Io)?,
                scanner: Arc::clone(&scanner),
                log_spares: LogSpares::start(&logs_root).map_err(StartError::Io)?,
                logs_root,
                data_dir: config.data_dir,
                boot_id,
            }),
            registry: Mutex::new(Registry::new(
                PortPool::new(config.port_range),
                config.max_instances,
            )),
            usage: usage::UsageSampler::new(scanner),
        });
        orchestrator.recover(stored);
        orchestrator.shared.writer.flush().await?;
        let weak = Arc::downgrade(&orchestrator);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ROTATE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut watched = HashMap::new();
            loop {
                tick.tick().await;
                let Some(orchestrator) = weak.upgrade() else {
                    break;
                };
                orchestrator.rotate_logs(&mut watched);
            }
        });
        Ok(orchestrator)
    }

    /// Brings back what an earlier daemon left: a process still alive
    /// under the identity it recorded (pid, start time, boot id) is
    /// re-adopted; one that is gone counts as an exit and its restart
    /// policy applies; stopped instances stay stopped; pending restarts
    /// keep their schedule. An instance that should run but whose recorded
    /// process is gone may have a newer process the earlier daemon spawned
    /// and died before recording (a restart): a live group leader carrying
    /// this daemon's marker for the instance is adopted instead of starting
    /// a duplicate.
    fn recover(&self, stored: Vec<StoredInstance>) {
        let mut registry = self.registry();
        let mut unrecorded: Option<HashMap<String, process::ProcEntry>> = None;
        for StoredInstance {
            mut status,
            boot_id,
        } in stored
        {
            if let Some(port) = status.port
                && let Err(err) = registry.ports.claim(&status.id, port)
            {
                tracing::warn!(id = status.id, %err, "stored port allocation conflicts");
            }
            let this_boot = boot_id.as_deref() == Some(self.shared.boot_id.as_str());
            let mut process = match (status.process, status.state.is_active()) {
                (Some(info), true) if this_boot => adopt(&status.id, info),
                _ => None,
            };
            let meant_to_run = matches!(
                status.state,
                InstanceState::Starting
                    | InstanceState::Running
                    | InstanceState::Stopping
                    | InstanceState::Backoff
                    | InstanceState::Error
            );
            if process.is_none() && meant_to_run && status.kind != InstanceKind::External {
                let leaders = unrecorded.get_or_insert_with(|| {
                    let table = process::ProcTable::scan(None);
                    process::marked_leaders(&table, &self.shared.data_dir)
                });
                if let Some(entry) = leaders.remove(&status.id) {
                    let info = ProcessInfo {
                        pid: entry.pid as u32,
                        pgid: entry.pgrp as u32,
                        start_ticks: entry.start_ticks,
                        started_at: process::started_at(entry.start_ticks),
                    };
                    process = adopt(&status.id, info);
                    if process.is_some() && !status.state.is_active() {
                        status.state = InstanceState::Running;
                    }
                }
            }
            self.launch(&mut registry, status, Origin::Recovered(process));
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates an instance, started unless `start` is false, and returns
    /// once it is stored. On any error nothing of it remains.
    pub async fn create(
        &self,
        spec: InstanceSpec,
        start: bool,
    ) -> Result<InstanceStatus, OrchestratorError> {
        self.create_owned(spec, start, None).await
    }

    /// [`Orchestrator::create`] for an instance owned by a workspace.
    pub async fn create_owned(
        &self,
        spec: InstanceSpec,
        start: bool,
        workspace: Option<String>,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let status = self.create_unsaved(spec, start, workspace)?;
        self.flush().await?;
        Ok(status)
    }

    fn create_unsaved(
        &self,
        spec: InstanceSpec,
        start: bool,
        workspace: Option<String>,
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
        let mut status = InstanceStatus::new(id, spec, InstanceKind::Managed, state, port);
        status.workspace = workspace;
        Ok(self.launch(&mut registry, status, Origin::New(process)))
    }

    /// Starts the actor of an instance and registers it.
    fn launch(
        &self,
        registry: &mut Registry,
        status: InstanceStatus,
        origin: Origin,
    ) -> InstanceStatus {
        let (sender, receiver) = mpsc::channel(COMMAND_QUEUE);
        let name = status.spec.name.clone();
        let project = status.spec.project_path.clone();
        let shared = self.shared.clone();
        let actor = match origin {
            Origin::New(process) => Actor::create(status, process, shared, receiver),
            Origin::Recovered(process) => Actor::resume(status, process, shared, receiver),
        };
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
    pub async fn register_external(
        &self,
        input: ExternalInput,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let status = self.register_unsaved(input)?;
        self.flush().await?;
        Ok(status)
    }

    fn register_unsaved(&self, input: ExternalInput) -> Result<InstanceStatus, OrchestratorError> {
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
        Ok(self.launch(&mut registry, status, Origin::New(process)))
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
                match self.create(spec, true).await {
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
        let status = self
            .call(&handle, |reply| Command::Start {
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
        let usage = self.usage.latest();
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
        self.call(&handle, |reply| Command::Start {
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
        self.call(&handle, |reply| Command::Stop {
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
        self.call(&handle, |reply| Command::Restart { reply }).await
    }

    /// Stops and forgets an instance, releasing its port and logs.
    pub async fn delete_instance(
        &self,
        key: &str,
        signal_external: bool,
        force: bool,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let handle = self.handle(key)?;
        if let Some(workspace) = self.status_of(&handle.id)?.workspace.filter(|_| !force) {
            return Err(OrchestratorError::FailedPrecondition(format!(
                "owned by workspace {workspace}; edit its file (or force the delete)"
            )));
        }
        let status = send_command(&handle, |reply| Command::Delete {
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
        self.shared.writer.submit(Op::Delete {
            id: status.id.clone(),
        });
        self.shared.board.publish(events::Change::Deleted {
            status: status.clone(),
        });
        self.flush().await?;
        Ok(status)
    }

    /// Compares the daemon's state with reality (see [`validate::check`]);
    /// with `fix`, applies the safe fixes, stale ports included.
    pub async fn validate(&self, fix: bool) -> Vec<validate::Issue> {
        let (instances, _) = self.list(&ListFilter::default());
        let ports = self.registry().ports.allocations();
        let data_dir = self.shared.data_dir.clone();
        let issues = tokio::task::spawn_blocking(move || {
            validate::check(&instances, &ports, &data_dir, fix)
        })
        .await
        .unwrap_or_default();
        if fix {
            let mut registry = self.registry();
            for issue in issues
                .iter()
                .filter(|i| i.kind == validate::IssueKind::StalePort)
            {
                if let Some(port) = issue.port {
                    registry.ports.release(port);
                }
            }
        }
        issues
    }

    /// Replaces an instance's spec and restarts it with the new one; if the
    /// new spec fails to start or to become ready, the previous spec is
    /// restored and started again, and the error names both.
    pub async fn reconfigure(
        &self,
        key: &str,
        spec: InstanceSpec,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let handle = self.handle(key)?;
        let previous = self.status_of(&handle.id)?.spec;
        let new = Arc::new(spec);
        let started = match self
            .call(&handle, |reply| Command::Reconfigure {
                spec: new.clone(),
                reply,
            })
            .await
        {
            Ok(_) => {
                self.call(&handle, |reply| Command::Start {
                    reason: Reason::ConfigChange,
                    wait_ready: true,
                    reply,
                })
                .await
            }
            Err(err) => Err(err),
        };
        let Err(err) = started else { return started };
        self.call(&handle, |reply| Command::Reconfigure {
            spec: previous.clone(),
            reply,
        })
        .await?;
        let restored = self
            .call(&handle, |reply| Command::Start {
                reason: Reason::ConfigChange,
                wait_ready: true,
                reply,
            })
            .await;
        let outcome = match restored {
            Ok(_) => "the previous spec was restored and runs again".to_owned(),
            Err(again) => format!("the previous spec was restored but failed too: {again}"),
        };
        Err(OrchestratorError::FailedPrecondition(format!(
            "{}: the new spec ({}) failed: {err}; {outcome} ({})",
            new.name,
            describe(&new),
            describe(&previous)
        )))
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

    /// Announces a workspace change on the event bus.
    pub fn publish_workspace(&self, change: events::WorkspaceChange) {
        self.shared.publish(events::Change::Workspace(change));
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
                send_command(&handle, |reply| Command::Stop {
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
        if let Err(err) = self.flush().await {
            tracing::error!(%err, "state not saved at shutdown");
        }
    }

    /// Sends a command to an actor, waits for its answer, and returns once
    /// what it changed is stored.
    async fn call(
        &self,
        handle: &InstanceHandle,
        command: impl FnOnce(Reply) -> Command,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let status = send_command(handle, command).await?;
        self.flush().await?;
        Ok(status)
    }

    /// Waits until every change made so far is stored.
    async fn flush(&self) -> Result<(), OrchestratorError> {
        self.shared
            .writer
            .flush()
            .await
            .map_err(|err| OrchestratorError::Storage(err.to_string()))
    }

    /// Rotates the logs that have grown too large. Logs that did not grow
    /// since they were last looked at are looked at less and less often
    /// (see [`MAX_QUIET_SKIP`]), and again every round once they grow, so
    /// that a thousand quiet instances cost next to nothing.
    fn rotate_logs(&self, watched: &mut HashMap<String, LogWatch>) {
        let ids: Vec<String> = self
            .registry()
            .handles()
            .map(|handle| handle.id.clone())
            .collect();
        let present: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        watched.retain(|id, _| present.contains(id.as_str()));
        for id in ids {
            let watch = watched.entry(id.clone()).or_default();
            if !watch.due() {
                continue;
            }
            match self.shared.logs(&id).rotate_if_larger(logs::ROTATE_AT) {
                Ok(sizes) => watch.looked(sizes),
                Err(err) => tracing::warn!(id, %err, "cannot rotate logs"),
            }
        }
    }
}

/// How the rotation check treats one instance's logs.
#[derive(Default)]
struct LogWatch {
    /// Sizes of stdout and stderr when last looked at.
    sizes: [u64; 2],
    /// Rounds to skip after each look while the logs stay the same.
    quiet: u32,
    /// Rounds still to skip before the next look.
    skip: u32,
}

impl LogWatch {
    /// Whether this round looks at the logs (otherwise it is skipped).
    fn due(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// Records the sizes found: the same as before doubles the rounds
    /// skipped (up to [`MAX_QUIET_SKIP`]), a change skips none.
    fn looked(&mut self, sizes: [u64; 2]) {
        self.quiet = if sizes == self.sizes {
            (self.quiet * 2 + 1).min(MAX_QUIET_SKIP)
        } else {
            0
        };
        self.skip = self.quiet;
        self.sizes = sizes;
    }
}

/// A short description of a spec for messages: its command line.
fn describe(spec: &InstanceSpec) -> String {
    std::iter::once(spec.command.as_str())
        .chain(spec.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends a command to an actor and waits for its answer.
async fn send_command(
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

/// Opens a pidfd on `pid` if it is still the process that started at
/// `start_ticks`. The pidfd pins that process: checking the start time
/// again after opening closes the window in which the pid could be reused.
fn open_pidfd(pid: u32, start_ticks: u64) -> Result<AsyncFd<OwnedFd>, String> {
    let same = || {
        process::read_entry(pid as i32)
            .is_some_and(|e| e.start_ticks == start_ticks && e.state != 'Z')
    };
    if !same() {
        return Err(format!("process {pid} is gone"));
    }
    let raw = rustix::process::Pid::from_raw(pid as i32).ok_or("pid 0")?;
    let pidfd: OwnedFd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())
        .map_err(|err| format!("cannot watch pid {pid}: {err}"))?;
    if !same() {
        return Err(format!("process {pid} exited while being watched"));
    }
    // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it open
    // (and the same descriptor) for as long as it lives.
    unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(|err| format!("cannot watch pid {pid}: {}", err.into_parts().1))
}

/// Re-adopts the process an earlier daemon recorded for instance `id`, if
/// it is still that process (same pid and start time; the caller checked
/// the boot id). A pid now used by another process is left alone.
fn adopt(id: &str, info: ProcessInfo) -> Option<Process> {
    match open_pidfd(info.pid, info.start_ticks) {
        Ok(pidfd) => {
            tracing::info!(id, pid = info.pid, "re-adopted a running process");
            Some(Process::Adopted { info, pidfd })
        }
        Err(reason) => {
            tracing::info!(id, pid = info.pid, reason, "recorded process not adopted");
            None
        }
    }
}

/// Watches an external process and records its identity.
fn watch_external(pid: u32) -> Result<Process, OrchestratorError> {
    let entry =
        process::read_entry(pid as i32).ok_or_else(|| OrchestratorError::InvalidArgument {
            field: "pid".to_owned(),
            reason: format!("no process has pid {pid}"),
        })?;
    let pidfd = open_pidfd(pid, entry.start_ticks).map_err(|reason| {
        OrchestratorError::InvalidArgument {
            field: "pid".to_owned(),
            reason,
        }
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds in which a watch looks at its logs, out of `rounds`, with the
    /// sizes `size_at(round)` gives.
    fn looks(rounds: u32, size_at: impl Fn(u32) -> u64) -> Vec<u32> {
        let mut watch = LogWatch::default();
        (0..rounds)
            .filter(|&round| {
                let due = watch.due();
                if due {
                    watch.looked([size_at(round), 0]);
                }
                due
            })
            .collect()
    }

    #[test]
    fn quiet_logs_are_looked_at_less_and_less_often() {
        assert_eq!(looks(100, |_| 0), [0, 2, 6, 14, 30, 62, 94]);
    }

    #[test]
    fn growing_logs_are_looked_at_every_round() {
        assert_eq!(looks(5, |round| u64::from(round) + 1), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn logs_that_start_growing_are_looked_at_every_round_again() {
        // Quiet until round 40: the next look (round 62) sees the growth.
        let growing_from_40 = |round: u32| u64::from(round.saturating_sub(40));
        let expected = [0, 2, 6, 14, 30, 62, 63, 64, 65];
        assert_eq!(looks(66, growing_from_40), expected);
    }
}
