//! One task per instance: it owns the instance's process and is the only
//! code that changes the instance's state. Commands arrive over a channel
//! and are handled one at a time, so concurrent start/stop/restart calls on
//! one instance are serialised; the process's exit arrives as an event from
//! the reaper (or a pidfd for an external process), never from polling.

use std::{
    os::fd::OwnedFd,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use nix::sys::signal::Signal;
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot},
    time::timeout_at,
};

use super::{
    OrchestratorError, Shared,
    events::Change,
    process,
    status::{Exit, ExitOutcome, InstanceKind, InstanceState, InstanceStatus, ProcessInfo, Reason},
};

/// How long SIGKILLed processes may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often /proc is looked at while waiting for a group to empty.
const GROUP_POLL: Duration = Duration::from_millis(5);

/// The answer to a command.
pub type Reply = oneshot::Sender<Result<InstanceStatus, OrchestratorError>>;

/// What an actor can be asked to do.
pub enum Command {
    /// Start the process unless it runs.
    Start {
        /// Why.
        reason: Reason,
        /// Where to answer.
        reply: Reply,
    },
    /// Stop the process group; a no-op when stopped.
    Stop {
        /// Overrides the spec's grace period.
        grace: Option<Duration>,
        /// Allow signalling an external process.
        signal_external: bool,
        /// Why.
        reason: Reason,
        /// Where to answer.
        reply: Reply,
    },
    /// Stop, then start.
    Restart {
        /// Where to answer.
        reply: Reply,
    },
    /// Stop (managed processes only, unless `signal_external`) and end the
    /// actor; the answer is the last status.
    Delete {
        /// Allow signalling an external process.
        signal_external: bool,
        /// Where to answer.
        reply: Reply,
    },
}

/// The process behind an instance, as the actor holds it.
pub enum Process {
    /// A child of the daemon, leader of its own group.
    Managed {
        /// Its identity.
        info: ProcessInfo,
        /// Its exit, delivered by the reaper.
        exit: oneshot::Receiver<ExitOutcome>,
    },
    /// A process someone else started, watched through a pidfd.
    External {
        /// Its identity.
        info: ProcessInfo,
        /// Readable once the process has exited.
        pidfd: AsyncFd<OwnedFd>,
    },
}

impl Process {
    fn info(&self) -> ProcessInfo {
        match self {
            Self::Managed { info, .. } | Self::External { info, .. } => *info,
        }
    }

    /// Completes when the process exits.
    async fn exited(&mut self) -> ExitOutcome {
        match self {
            Self::Managed { exit, .. } => exit.await.unwrap_or(ExitOutcome::Unknown),
            Self::External { pidfd, .. } => {
                // A pidfd polls readable when its process exits.
                let _ = pidfd.readable().await;
                ExitOutcome::Unknown
            }
        }
    }
}

/// The instance task.
pub struct Actor {
    status: InstanceStatus,
    process: Option<Process>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
}

impl Actor {
    /// An actor for `status`, with its process if one runs. Publishes the
    /// creation event (and readiness, when a process runs).
    pub fn create(
        mut status: InstanceStatus,
        process: Option<Process>,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        status.process = process.as_ref().map(Process::info);
        let first_state = status.state;
        shared.board.publish(Change::Instance {
            status: status.clone(),
            previous: None,
            reason: Reason::Created,
            detail: String::new(),
        });
        let mut actor = Self {
            status,
            process,
            shared,
            commands,
        };
        if first_state == InstanceState::Starting {
            // No readiness check yet: a live process is ready.
            actor.transition(InstanceState::Running, Reason::Ready, String::new());
        }
        actor
    }

    /// The current status.
    pub fn status(&self) -> &InstanceStatus {
        &self.status
    }

    /// Runs until deleted or until every handle is gone.
    pub async fn run(mut self) {
        loop {
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { break };
                    if self.handle(command).await.is_break() {
                        break;
                    }
                }
                outcome = exited(&mut self.process) => self.on_unexpected_exit(outcome).await,
            }
        }
    }

    async fn handle(&mut self, command: Command) -> std::ops::ControlFlow<()> {
        match command {
            Command::Start { reason, reply } => {
                let _ = reply.send(self.start(reason));
            }
            Command::Stop {
                grace,
                signal_external,
                reason,
                reply,
            } => {
                let result = self.stop(grace, signal_external, reason).await;
                let _ = reply.send(result);
            }
            Command::Restart { reply } => {
                let result = match self.stop(None, false, Reason::UserRestart).await {
                    Ok(_) => {
                        self.status.restart_count += 1;
                        self.start(Reason::UserRestart)
                    }
                    Err(err) => Err(err),
                };
                let _ = reply.send(result);
            }
            Command::Delete {
                signal_external,
                reply,
            } => {
                let external = self.status.kind == InstanceKind::External;
                if external && !signal_external {
                    // Forget it; its process keeps running.
                    self.process = None;
                    self.status.process = None;
                    let _ = reply.send(Ok(self.status.clone()));
                    return std::ops::ControlFlow::Break(());
                }
                match self.stop(None, signal_external, Reason::UserDelete).await {
                    Ok(status) => {
                        let _ = reply.send(Ok(status));
                        return std::ops::ControlFlow::Break(());
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err));
                    }
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    }

    /// Moves to `state`, publishing the change.
    fn transition(&mut self, state: InstanceState, reason: Reason, detail: String) {
        let previous = self.status.state;
        self.status.state = state;
        self.status.reason = reason;
        self.status.state_changed_at = SystemTime::now();
        self.status.process = self.process.as_ref().map(Process::info);
        self.shared.board.publish(Change::Instance {
            status: self.status.clone(),
            previous: Some(previous),
            reason,
            detail,
        });
    }

    fn start(&mut self, reason: Reason) -> Result<InstanceStatus, OrchestratorError> {
        if self.status.state.is_active() {
            return Ok(self.status.clone());
        }
        if self.status.kind == InstanceKind::External {
            return Err(OrchestratorError::FailedPrecondition(format!(
                "instance {} is external: the daemon cannot start it",
                self.status.spec.name
            )));
        }
        match self
            .shared
            .spawn(&self.status.id, &self.status.spec, self.status.port)
        {
            Ok(process) => {
                self.process = Some(process);
                self.status.last_error = None;
                self.transition(InstanceState::Starting, reason, String::new());
                self.transition(InstanceState::Running, Reason::Ready, String::new());
                Ok(self.status.clone())
            }
            Err(err) => {
                let message = err.to_string();
                self.status.last_error = Some(message.clone());
                self.transition(InstanceState::Failed, Reason::SpawnFailed, message.clone());
                Err(OrchestratorError::FailedPrecondition(message))
            }
        }
    }

    async fn stop(
        &mut self,
        grace: Option<Duration>,
        signal_external: bool,
        reason: Reason,
    ) -> Result<InstanceStatus, OrchestratorError> {
        let Some(process) = &self.process else {
            return Ok(self.status.clone());
        };
        if matches!(process, Process::External { .. }) && !signal_external {
            return Err(OrchestratorError::FailedPrecondition(format!(
                "instance {} is external: pass signal_external to signal its process",
                self.status.spec.name
            )));
        }
        let grace = grace.unwrap_or(self.status.spec.stop_grace);
        self.transition(InstanceState::Stopping, reason, String::new());
        let process = self.process.take().expect("checked above");
        let outcome = match process {
            Process::Managed { info, exit } => {
                let signal = self.status.spec.stop_signal;
                terminate_group(&self.status.id, info.pgid, Some(exit), signal, grace).await
            }
            Process::External { info, pidfd } => terminate_external(info, pidfd, grace).await,
        };
        self.status.last_exit = Some(Exit {
            outcome,
            at: SystemTime::now(),
        });
        self.transition(InstanceState::Stopped, reason, outcome.describe());
        Ok(self.status.clone())
    }

    async fn on_unexpected_exit(&mut self, outcome: ExitOutcome) {
        let Some(process) = self.process.take() else {
            return;
        };
        self.status.last_exit = Some(Exit {
            outcome,
            at: SystemTime::now(),
        });
        let detail = outcome.describe();
        let state = if outcome.is_success() || outcome == ExitOutcome::Unknown {
            InstanceState::Stopped
        } else {
            self.status.last_error = Some(format!("process exited with {detail}"));
            InstanceState::Failed
        };
        self.transition(state, Reason::ProcessExit, detail);
        // Whatever the leader left behind in its group goes with it.
        if let Process::Managed { info, .. } = process {
            let spec = &self.status.spec;
            terminate_group(
                &self.status.id,
                info.pgid,
                None,
                spec.stop_signal,
                spec.stop_grace,
            )
            .await;
        }
    }
}

/// Completes when the process (if any) exits.
async fn exited(process: &mut Option<Process>) -> ExitOutcome {
    match process {
        Some(process) => process.exited().await,
        None => std::future::pending().await,
    }
}

/// The instance's processes that are still alive (not zombies).
fn live_members(id: &str, pgid: i32) -> Vec<i32> {
    process::members(&process::scan(), pgid, id)
        .into_iter()
        .filter(|p| p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

/// Stops a managed group: the stop signal to the group and to every
/// descendant that left it, then (waiting for the leader's `exit`, if it
/// still runs) the grace period, then SIGKILL to whatever is left, then
/// waits until nothing of the instance remains.
async fn terminate_group(
    id: &str,
    pgid: u32,
    mut exit: Option<oneshot::Receiver<ExitOutcome>>,
    signal: Signal,
    grace: Duration,
) -> ExitOutcome {
    let pgid = pgid as i32;
    let members = live_members(id, pgid);
    if members.is_empty() && exit.is_none() {
        return ExitOutcome::Unknown;
    }
    process::signal_members(pgid, &members, signal);
    let deadline = Instant::now() + grace;
    let mut outcome = None;
    if let Some(exit) = exit.as_mut() {
        outcome = timeout_at(deadline.into(), exit)
            .await
            .ok()
            .and_then(Result::ok);
    }
    if !wait_until_empty(id, pgid, deadline).await {
        process::signal_members(pgid, &live_members(id, pgid), Signal::SIGKILL);
        if let (None, Some(exit)) = (outcome, exit.as_mut()) {
            outcome = tokio::time::timeout(KILL_WAIT, exit)
                .await
                .ok()
                .and_then(Result::ok);
        }
        if !wait_until_empty(id, pgid, Instant::now() + KILL_WAIT).await {
            tracing::error!(id, pgid, "processes of the instance survived SIGKILL");
        }
    }
    outcome.unwrap_or(ExitOutcome::Unknown)
}

/// Polls /proc until no process (zombies included) of the instance is
/// left, or `deadline` passes. Returns whether it emptied.
async fn wait_until_empty(id: &str, pgid: i32, deadline: Instant) -> bool {
    loop {
        if process::members(&process::scan(), pgid, id).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(GROUP_POLL).await;
    }
}

/// Stops an external process through its pidfd (so a reused pid is never
/// signalled): SIGTERM, the grace period, then SIGKILL.
async fn terminate_external(
    info: ProcessInfo,
    pidfd: AsyncFd<OwnedFd>,
    grace: Duration,
) -> ExitOutcome {
    let send = |signal: rustix::process::Signal| {
        if let Err(err) = rustix::process::pidfd_send_signal(pidfd.get_ref(), signal) {
            tracing::debug!(pid = info.pid, %err, "pidfd_send_signal");
        }
    };
    send(rustix::process::Signal::TERM);
    if tokio::time::timeout(grace, pidfd.readable()).await.is_err() {
        send(rustix::process::Signal::KILL);
        let _ = tokio::time::timeout(KILL_WAIT, pidfd.readable()).await;
    }
    ExitOutcome::Unknown
}
