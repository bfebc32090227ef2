//! The orchestrator: supervises instances. Each instance is an actor task
//! ([`actor`]) owning its process; the [`registry`] finds actors by id,
//! name or project; every change is published on the [`events`] board and
//! written through the [`writer`]. This file is the facade every front end
//! calls, one method per request (long because the requests are many);
//! nothing here knows about gRPC.

pub mod actor;
pub mod context;
pub mod dependencies;
pub mod error;
pub mod events;
pub mod health;
pub mod limits;
pub mod lineage;
pub mod logs;
mod ordered;
pub mod policy;
pub mod ports;
pub mod process;
pub mod readiness;
pub mod reaper;
pub mod records;
mod recovery;
pub mod registry;
pub mod scanner;
pub mod status;
pub mod terminate;
pub mod usage;
pub mod validate;
pub mod watched;
pub mod writer;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use outpost::spec::{ExternalInput, InstanceSpec, PortChoice, SpecInput, validate_dir};
use tokio::sync::mpsc;

use actor::{Actor, Command, Reply};
use context::{Context, Spawned};
pub use error::{OrchestratorError, StartError};
use events::{StatusBoard, Subscription};
use logs::{
    follow::{LogLines, LogRequest},
    spares::LogSpares,
};
use ports::{PortPool, PortRange};
use readiness::Source;
use reaper::Reaper;
use records::{InstanceRecords, Op};
use registry::{InstanceHandle, Registry};
use scanner::Scanner;
use status::{InstanceKind, InstanceState, InstanceStatus, Reason};
use watched::Process;
use writer::RecordWriter;

/// Commands an actor may have queued before senders wait.
const COMMAND_QUEUE: usize = 32;
/// Log lines batches a follower may have ready before it waits.
const LOG_QUEUE: usize = 16;

/// How an actor comes to be.
enum Origin {
    /// Created now, with its process (and that process's readiness
    /// source) if it was started.
    New(Option<Process>, Option<Source>),
    /// Recovered from the store, with its process if it was re-adopted.
    Recovered(Option<Process>),
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

/// Instances and the revision of the board they were read at.
#[derive(Debug)]
pub struct Listing {
    /// The instances, ordered by name.
    pub instances: Vec<InstanceStatus>,
    /// The board's revision: a `WatchStatus` from it misses nothing.
    pub revision: u64,
}

/// What [`Orchestrator::get_or_create`] did.
#[derive(Debug)]
pub struct Ensured {
    /// The instance, ready (or failed to become so).
    pub status: InstanceStatus,
    /// Whether it was created by this call.
    pub created: bool,
    /// Whether this call started it.
    pub started: bool,
}

pub struct Orchestrator {
    context: Arc<Context>,
    /// Lookups are synchronous map reads on every call; admission,
    /// allocation and the spawn happen under it so that a failed spawn
    /// leaves nothing behind. It is never held across an `.await`.
    registry: Mutex<Registry>,
}

impl Orchestrator {
    /// Makes the daemon a subreaper, starts the reaper, the record writer
    /// over `records` and log rotation, and re-adopts what `records` holds.
    /// Must be called inside the tokio runtime.
    pub async fn start<R: InstanceRecords>(
        config: OrchestratorConfig,
        records: Arc<R>,
    ) -> Result<Arc<Self>, StartError> {
        let logs_root = config.data_dir.join("logs");
        std::fs::create_dir_all(&logs_root).map_err(StartError::Io)?;
        let stored = records.load().await?;
        let boot_id = process::boot_id();
        let scanner = Scanner::start();
        let reaper = Reaper::start().map_err(StartError::Io)?;
        let usage =
            usage::UsageSampler::start(scanner.clone(), reaper.clone(), config.data_dir.clone());
        let orchestrator = Arc::new(Self {
            context: Arc::new(Context {
                board: StatusBoard::default(),
                writer: RecordWriter::start(records, boot_id.clone()),
                reaper,
                scanner,
                log_spares: LogSpares::start(&logs_root).map_err(StartError::Io)?,
                logs_root: logs_root.clone(),
                data_dir: config.data_dir,
                boot_id,
                usage,
                limits: limits::Capabilities::detect(),
            }),
            registry: Mutex::new(Registry::new(
                PortPool::new(config.port_range),
                config.max_instances,
            )),
        });
        tracing::info!("{}", orchestrator.context.limits.describe());
        dependencies::coordinator::start(
            Arc::downgrade(&orchestrator),
            orchestrator.subscribe(None),
        );
        orchestrator.recover(stored);
        orchestrator.context.writer.flush().await?;
        logs::rotation::start(logs_root);
        Ok(orchestrator)
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates an instance, started unless `start` is false, owned by
    /// `workspace` if given, and returns once it is stored. On any error
    /// nothing of it remains.
    pub async fn create(
        &self,
        spec: InstanceSpec,
        start: bool,
        workspace: Option<String>,
    ) -> Result<InstanceStatus, OrchestratorError> {
        self.check(&spec)?;
        let status = self.create_unsaved(spec, start, workspace)?;
        self.stored_or_undone(status).await
    }

    /// Returns `status`, a new instance, once it is stored; if it cannot
    /// be, the instance is deleted again (its process stopped) and the
    /// caller hears why, so that nobody is told of an instance the next
    /// daemon would not know.
    async fn stored_or_undone(
        &self,
        status: InstanceStatus,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let Err(err) = self.flush().await else {
            return Ok(status);
        };
        let name = &status.spec.name;
        match self.delete_instance(&status.id, false, true).await {
            Ok(_) | Err(OrchestratorError::Storage(_)) => {}
            Err(undo) => {
                tracing::error!(name, %undo, "cannot undo an instance that was not stored")
            }
        }
        Err(OrchestratorError::Storage(format!(
            "{name} was not created: {err}"
        )))
    }

    /// Refuses a spec whose limits the machine cannot enforce, or whose
    /// dependencies name no instance or close a cycle.
    fn check(&self, spec: &InstanceSpec) -> Result<(), OrchestratorError> {
        (self.context.limits)
            .check(&spec.name, &spec.limits)
            .map_err(OrchestratorError::Refused)?;
        if spec.depends_on.is_empty() {
            return Ok(());
        }
        (self.context.board).read(|statuses| dependencies::check(spec, statuses))
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
        // One with dependencies waits for them, started by the coordinator.
        let waits = start && !spec.depends_on.is_empty();
        let process = if start && !waits {
            // The first process of the instance's actor (generation 1).
            match self.context.spawn(&id, &spec, port, 1) {
                Ok(spawned) => Some(spawned),
                Err(err) => {
                    if let Some(port) = port {
                        registry.ports.release(port);
                    }
                    let _ = self.context.logs(&id).retire(&self.context.log_spares);
                    return Err(OrchestratorError::StartFailed(err.to_string()));
                }
            }
        } else {
            None
        };
        let state = match (start, waits) {
            (true, true) => InstanceState::Waiting,
            (true, false) => InstanceState::Starting,
            (false, _) => InstanceState::Stopped,
        };
        let waiting_for = waits.then(|| dependencies::needs(&spec.depends_on));
        let mut status = InstanceStatus::new(id, spec, InstanceKind::Managed, state, port);
        status.workspace = workspace;
        status.waiting_for = waiting_for;
        let (process, source) = match process {
            Some(Spawned { process, readiness }) => (Some(process), Some(readiness)),
            None => (None, None),
        };
        Ok(self.launch(&mut registry, status, Origin::New(process, source)))
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
        let context = self.context.clone();
        let actor = match origin {
            Origin::New(process, source) => {
                Actor::create(status, process, source, context, receiver)
            }
            Origin::Recovered(process) => Actor::resume(status, process, context, receiver),
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

    /// Registers a process the daemon did not start: watched through its
    /// pid if given, probed if it has a health check, never signalled
    /// unless asked.
    pub async fn register_external(
        &self,
        input: ExternalInput,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let external = input.validate()?;
        let process = match external.pid {
            Some(pid) => Some(recovery::watch_external(pid)?),
            None => None,
        };
        let status = {
            let mut registry = self.registry();
            let spec = external.spec;
            let id = registry.admit(&spec.name, spec.project_path.as_ref())?;
            let port = match spec.port {
                PortChoice::Fixed(port) => Some(port),
                PortChoice::None | PortChoice::Auto => None,
            };
            if let Some(port) = port {
                registry.ports.claim(&id, port)?;
            }
            let status = InstanceStatus::new(
                id,
                spec,
                InstanceKind::External,
                InstanceState::Starting,
                port,
            );
            self.launch(&mut registry, status, Origin::New(process, None))
        };
        self.stored_or_undone(status).await
    }

    /// Makes sure the instance of a project runs: a live one as it is, a
    /// stopped one started, or a new one created from `input` (whose other
    /// fields are only looked at then, so a caller need not describe an
    /// instance that exists). Returns once it is ready (or failed to become
    /// so). Counts as activity.
    pub async fn get_or_create(&self, input: SpecInput) -> Result<Ensured, OrchestratorError> {
        if input.project_path.is_empty() {
            return Err(OrchestratorError::Invalid {
                field: "spec.project_path".to_owned(),
                reason: "is required".to_owned(),
            });
        }
        let project = validate_dir("spec.project_path", &input.project_path)?;
        let existing = self.registry().by_project(&project).cloned();
        let (handle, created) = match existing {
            Some(handle) => (handle, false),
            None => match self
                .create(InstanceSpec::validate(input)?, true, None)
                .await
            {
                Ok(status) => (self.handle(&status.id)?, true),
                // Created concurrently by another caller: use that one.
                Err(OrchestratorError::Taken(message)) => {
                    let handle = self.registry().by_project(&project).cloned();
                    (handle.ok_or(OrchestratorError::Taken(message))?, false)
                }
                Err(err) => return Err(err),
            },
        };
        self.touch(&handle.id);
        let was_active = self.status_of(&handle.id)?.state.is_active();
        let status = self
            .call(&handle, |reply| Command::Start {
                reason: Reason::UserStart,
                wait_ready: true,
                reply,
            })
            .await?;
        Ok(Ensured {
            status,
            created,
            started: created || !was_active,
        })
    }

    fn status_of(&self, id: &str) -> Result<InstanceStatus, OrchestratorError> {
        self.context
            .board
            .get(id)
            .ok_or_else(|| OrchestratorError::NoSuchInstance(format!("instance {id} is gone")))
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

    /// Fills in the usage of every instance whose process tree a daemon
    /// spawned (managed or re-adopted) while it has a process.
    fn add_usage(&self, statuses: &mut [InstanceStatus]) {
        if !statuses
            .iter()
            .any(|s| s.kind != InstanceKind::External && s.process.is_some())
        {
            return;
        }
        let usage = self.context.latest_usage();
        for status in statuses
            .iter_mut()
            .filter(|s| s.kind != InstanceKind::External)
        {
            status.usage = status
                .process
                .and_then(|p| usage.get(&(p.pgid as i32)).copied());
        }
    }

    /// Instances matching `filter`, ordered by name, and the revision they
    /// reflect.
    pub fn list(&self, filter: &ListFilter) -> Listing {
        let snapshot = self.context.board.snapshot(events::SnapshotKind::Initial);
        let mut instances: Vec<InstanceStatus> = snapshot
            .instances
            .into_iter()
            .filter(|status| filter.matches(status))
            .collect();
        instances.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        self.add_usage(&mut instances);
        Listing {
            instances,
            revision: snapshot.revision,
        }
    }

    /// Number of instances in each state.
    pub fn counts(&self) -> BTreeMap<InstanceState, u32> {
        self.context.board.counts()
    }

    pub async fn start_instance(&self, key: &str) -> Result<InstanceStatus, OrchestratorError> {
        let handle = self.handle(key)?;
        self.call(&handle, |reply| Command::Start {
            reason: Reason::UserStart,
            wait_ready: false,
            reply,
        })
        .await
    }

    /// Stops an instance. One that running instances depend on (directly
    /// or not) is refused unless `with_dependents`, which stops them
    /// first, the last dependents first.
    pub async fn stop_instance(
        &self,
        key: &str,
        grace: Option<Duration>,
        signal_external: bool,
        with_dependents: bool,
    ) -> Result<InstanceStatus, OrchestratorError> {
        if let Some(grace) = grace {
            outpost::limits::duration("grace_period", grace, outpost::limits::MAX_STOP_GRACE)?;
        }
        let handle = self.handle(key)?;
        let name = self.status_of(&handle.id)?.spec.name.clone();
        let dependents: Vec<InstanceStatus> = self.context.board.read(|statuses| {
            let dependents = dependencies::dependents(statuses, &name);
            dependents.into_iter().cloned().collect()
        });
        if with_dependents {
            self.stop_in_order(&dependents, Reason::UserStop).await?;
        } else {
            let mut running: Vec<&str> = (dependents.iter())
                .filter(|status| status.state.is_active())
                .map(|status| status.spec.name.as_str())
                .collect();
            running.sort_unstable();
            if !running.is_empty() {
                return Err(OrchestratorError::Refused(format!(
                    "{name} has running dependents: {}; stop them first, or stop with \
                     dependents (--with-dependents)",
                    running.join(", ")
                )));
            }
        }
        self.call(&handle, |reply| Command::Stop {
            grace,
            signal_external,
            reason: Reason::UserStop,
            reply,
        })
        .await
    }

    pub async fn restart_instance(&self, key: &str) -> Result<InstanceStatus, OrchestratorError> {
        let handle = self.handle(key)?;
        self.call(&handle, |reply| Command::Restart { reply }).await
    }

    /// Stops and forgets an instance, releasing its port and logs. An
    /// instance a workspace owns is deleted only with `force` (its file
    /// would create it again).
    pub async fn delete_instance(
        &self,
        key: &str,
        signal_external: bool,
        force: bool,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let handle = self.handle(key)?;
        if let Some(workspace) = self.status_of(&handle.id)?.workspace.filter(|_| !force) {
            return Err(OrchestratorError::Refused(format!(
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
        if status.kind != InstanceKind::External
            && let Err(err) = self
                .context
                .logs(&status.id)
                .retire(&self.context.log_spares)
        {
            tracing::warn!(id = status.id, %err, "cannot remove the logs of a deleted instance");
        }
        self.context.writer.submit(Op::Delete {
            id: status.id.clone(),
        });
        self.context.board.publish(events::Change::Deleted {
            status: status.clone(),
        });
        self.flush().await?;
        Ok(status)
    }

    /// Compares the daemon's state with reality (see [`validate::check`]);
    /// with `fix`, applies the safe fixes, stale ports included.
    pub async fn validate(&self, fix: bool) -> Vec<validate::Issue> {
        let instances = self.list(&ListFilter::default()).instances;
        let ports = self.registry().ports.allocations();
        let data_dir = self.context.data_dir.clone();
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
        self.check(&spec)?;
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
        Err(OrchestratorError::StartFailed(format!(
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
        self.context.board.touch(id, SystemTime::now());
    }

    /// Announces a workspace change on the event bus.
    pub fn publish_workspace(&self, change: events::WorkspaceChange) {
        self.context.publish(events::Change::Workspace(change));
    }

    /// Subscribes to the event bus (see [`StatusBoard::subscribe`]).
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        self.context.board.subscribe(since)
    }

    /// The board now (a resync: for a subscriber that fell behind).
    pub fn snapshot(&self, kind: events::SnapshotKind) -> events::Snapshot {
        self.context.board.snapshot(kind)
    }

    /// Streams an instance's output as `request` asks (see
    /// [`logs::follow`]); a follower ends when the instance is deleted.
    /// An external instance's output is not captured: it has no lines.
    pub fn stream_logs(
        &self,
        key: &str,
        request: LogRequest,
    ) -> Result<mpsc::Receiver<LogLines>, OrchestratorError> {
        let status = self.get(key)?;
        let (sender, receiver) = mpsc::channel(LOG_QUEUE);
        if status.kind == InstanceKind::External {
            return Ok(receiver);
        }
        let files = self.context.logs(&status.id);
        if request.follow
            && let Err(err) = files.create_dir()
        {
            tracing::warn!(id = status.id, %err, "cannot make the log directory to follow");
        }
        tokio::spawn(logs::follow::stream(files, request, sender));
        Ok(receiver)
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
    pub async fn flush(&self) -> Result<(), OrchestratorError> {
        Ok(self.context.writer.flush().await?)
    }
}

/// A short description of a spec for messages: its command line, cut.
fn describe(spec: &InstanceSpec) -> String {
    let line = std::iter::once(spec.command.as_str())
        .chain(spec.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    outpost::limits::cut(&line).into_owned()
}

/// Sends a command to an actor and waits for its answer.
async fn send_command(
    handle: &InstanceHandle,
    command: impl FnOnce(Reply) -> Command,
) -> Result<InstanceStatus, OrchestratorError> {
    let gone =
        || OrchestratorError::NoSuchInstance(format!("instance {} is being deleted", handle.id));
    let (reply, answer) = tokio::sync::oneshot::channel();
    handle
        .commands
        .send(command(reply))
        .await
        .map_err(|_| gone())?;
    answer.await.map_err(|_| gone())?
}
