//! One task per instance: it owns the instance's process and is the only
//! code that changes the instance's state. It waits on four kinds of
//! events at once — commands, the process's exit (from the reaper, or a
//! pidfd for an external process), health probe results (each probe runs in
//! a task of its own, so a hanging probe never blocks the actor or another
//! instance), and its timers (restart delay or cooldown, startup timeout,
//! next probe, idle timeout, failure-count reset). Commands are handled one
//! at a time, so concurrent start/stop/restart calls are serialised.
//!
//! One job, the state machine of an instance, and a long file because every
//! kind of event meets every state here; what the machine calls on —
//! stopping a process tree ([`super::terminate`]), the restart policy
//! ([`super::policy`]), one probe ([`super::health`]) — lives elsewhere.

mod panics;
mod readiness;
mod waiting;

use std::{
    hash::{BuildHasher, RandomState},
    ops::ControlFlow,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{mpsc, oneshot};

use outpost::spec::{InstanceSpec, RestartMode};

use super::{
    context::{Context, Spawned},
    dependencies::needs,
    error::OrchestratorError,
    events::Change,
    health,
    limits::{MEMORY_CHECK, MemoryWatch},
    policy::{RestartTracker, Verdict, deadline, wall_deadline},
    readiness::{Signal, Source},
    status::{
        Exit, ExitOutcome, FAILURE_HISTORY, Failure, HealthState, InstanceKind, InstanceState,
        InstanceStatus, ReadyBy, Reason,
    },
    terminate::{terminate, terminate_group},
    watched::Process,
};
use panics::catch_panic;
use readiness::Listening;

/// The answer to a command.
pub type Reply = oneshot::Sender<Result<InstanceStatus, OrchestratorError>>;

/// What an actor can be asked to do.
pub enum Command {
    /// Start the process unless it runs (an ERROR instance's breaker is
    /// reset; a pending restart happens now).
    Start {
        /// Why.
        reason: Reason,
        /// Answer only once the instance is ready (or failed to be).
        wait_ready: bool,
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
    /// Stop (if running) and take a new spec; the next start uses it.
    Reconfigure {
        /// The new spec.
        spec: Arc<InstanceSpec>,
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
    /// Its dependencies' conditions hold: a WAITING instance starts.
    DependenciesMet,
    /// A WAITING instance waits for this now.
    Waiting {
        /// What for, in words.
        text: String,
        /// A dependency failed or is gone.
        blocked: bool,
    },
    /// A dependency restarted: a running instance stops and waits again.
    Requeue,
}

/// A probe result, tagged with the process generation it was run for.
type ProbeResult = (u64, Result<(), String>);

/// Readiness notes held for the actor; a process that floods its notify
/// socket loses notes beyond this rather than the actor's memory.
const SIGNAL_QUEUE: usize = 64;

/// The actor's deadlines; each is armed only while it applies.
#[derive(Default)]
struct Timers {
    /// Restart after backoff, or half-open attempt after cooldown.
    retry: Option<Instant>,
    /// Readiness deadline while STARTING.
    startup: Option<Instant>,
    /// Next health probe.
    probe: Option<Instant>,
    /// Idle check.
    idle: Option<Instant>,
    /// Failure-count reset after staying healthy.
    reset: Option<Instant>,
    /// The sd_notify watchdog: WATCHDOG=1 is due by then.
    watchdog: Option<Instant>,
    /// The next look at a memory-limited process's usage.
    memory: Option<Instant>,
}

impl Timers {
    fn next(&self) -> Option<Instant> {
        [
            self.retry,
            self.startup,
            self.probe,
            self.idle,
            self.reset,
            self.watchdog,
            self.memory,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Takes `timer` if it is due.
fn due(timer: &mut Option<Instant>, now: Instant) -> bool {
    if timer.is_some_and(|at| at <= now) {
        *timer = None;
        true
    } else {
        false
    }
}

/// The instance task.
pub struct Actor {
    status: InstanceStatus,
    process: Option<Process>,
    context: Arc<Context>,
    commands: mpsc::Receiver<Command>,
    restarts: RestartTracker,
    timers: Timers,
    /// Increments with every spawned process; stale probe results are
    /// recognised by it.
    generation: u64,
    probing: bool,
    probe_successes: u32,
    probe_results: (mpsc::Sender<ProbeResult>, mpsc::Receiver<ProbeResult>),
    /// What the process's readiness source reports.
    signals: (mpsc::Sender<Signal>, mpsc::Receiver<Signal>),
    /// The task listening to the current process's readiness source.
    listening: Option<Listening>,
    /// The current process's memory samples against its limit.
    memory: MemoryWatch,
    waiting_ready: Vec<Reply>,
    /// Why it started waiting for its dependencies (its reason again once
    /// a blocked dependency recovers).
    waiting_reason: Reason,
}

impl Actor {
    /// An actor for `status`, with its process if one runs. Publishes the
    /// creation event (and readiness, when no probe has to pass first).
    pub fn create(
        mut status: InstanceStatus,
        process: Option<Process>,
        source: Option<Source>,
        context: Arc<Context>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        status.process = process.as_ref().map(Process::info);
        context.publish(Change::Instance {
            status: status.clone(),
            previous: None,
            reason: Reason::Created,
            detail: String::new(),
        });
        let mut actor = Self {
            status,
            process,
            context,
            commands,
            restarts: RestartTracker::default(),
            timers: Timers::default(),
            generation: 0,
            probing: false,
            probe_successes: 0,
            probe_results: mpsc::channel(4),
            signals: mpsc::channel(SIGNAL_QUEUE),
            listening: None,
            memory: MemoryWatch::default(),
            waiting_ready: Vec::new(),
            waiting_reason: Reason::Created,
        };
        if actor.status.state == InstanceState::Starting {
            actor.on_spawned(source);
        }
        actor
    }

    /// An actor for an instance recovered from the store after a daemon
    /// restart, with its process if it was re-adopted. Publishes the
    /// instance; a process recorded as running but gone counts as an exit
    /// (the restart policy applies); a pending restart keeps its schedule.
    pub fn resume(
        mut status: InstanceStatus,
        process: Option<Process>,
        context: Arc<Context>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        let recorded = status.state;
        // An external instance registered with a port alone has no
        // process to find: it is assumed to serve, as when registered.
        let port_only = status.kind == InstanceKind::External && status.process.is_none();
        let adopted = process.as_ref().map(Process::info);
        if matches!(process, Some(Process::Adopted { .. })) {
            status.kind = InstanceKind::Discovered;
        }
        status.process = adopted;
        let restarts = RestartTracker {
            failures: status.backoff.consecutive_failures,
            breaker: status.backoff.breaker,
            delay: status.backoff.current_delay,
        };
        let retry_at = status.backoff.next_attempt_at.map(|at| {
            deadline(
                Instant::now(),
                at.duration_since(SystemTime::now()).unwrap_or_default(),
            )
        });
        let detail = match (recorded.is_active(), adopted) {
            (true, Some(info)) => format!("re-adopted pid {}", info.pid),
            (true, None) if port_only => String::new(),
            (true, None) => "its process ended while the daemon was down".to_owned(),
            _ => String::new(),
        };
        if status.state == InstanceState::Waiting {
            status.waiting_for = Some(needs(&status.spec.depends_on));
        }
        context.publish(Change::Instance {
            status: status.clone(),
            previous: None,
            reason: Reason::DaemonRestart,
            detail: detail.clone(),
        });
        let mut actor = Self {
            status,
            process,
            context,
            commands,
            restarts,
            timers: Timers::default(),
            generation: 1,
            probing: false,
            probe_successes: 0,
            probe_results: mpsc::channel(4),
            signals: mpsc::channel(SIGNAL_QUEUE),
            listening: None,
            memory: MemoryWatch::default(),
            waiting_ready: Vec::new(),
            waiting_reason: Reason::Created,
        };
        actor.waiting_reason = actor.status.reason;
        if actor.status.state == InstanceState::Running && actor.process.is_some() {
            actor.status.ready_by = Some(ReadyBy::Readopted);
        }
        match (recorded, adopted) {
            (state, Some(_)) if state.is_active() => actor.arm_adopted_timers(),
            (state, None) if state.is_active() && port_only => actor.arm_adopted_timers(),
            (state, None) if state.is_active() => {
                let exit = Exit {
                    outcome: ExitOutcome::Unknown,
                    at: SystemTime::now(),
                };
                actor.status.last_exit = Some(exit);
                actor.on_failure(Reason::ProcessExit, detail, Some(exit));
            }
            (InstanceState::Backoff | InstanceState::Error, _) => {
                actor.timers.retry = Some(retry_at.unwrap_or_else(Instant::now));
            }
            _ => {}
        }
        actor
    }

    /// The current status.
    pub fn status(&self) -> &InstanceStatus {
        &self.status
    }

    /// Runs until deleted or until every handle is gone. A panic while
    /// handling one event never leaves the process unsupervised: it is
    /// caught, and `after_panic` ([`panics`]) stops the process and marks the
    /// instance failed; the actor goes on serving commands (delete,
    /// shutdown) as for any failed instance.
    pub async fn run(mut self) {
        loop {
            match catch_panic(self.turn()).await {
                Ok(ControlFlow::Continue(())) => {}
                Ok(ControlFlow::Break(())) => break,
                Err(panic) => self.after_panic(panic).await,
            }
        }
    }

    /// Waits for the next event and handles it.
    async fn turn(&mut self) -> ControlFlow<()> {
        let next_timer = self.timers.next();
        tokio::select! {
            command = self.commands.recv() => {
                let Some(command) = command else { return ControlFlow::Break(()) };
                return self.handle(command).await;
            }
            outcome = exited(&mut self.process) => self.on_unexpected_exit(outcome).await,
            Some((generation, result)) = self.probe_results.1.recv() => {
                self.on_probe_result(generation, result).await;
            }
            Some(signal) = self.signals.1.recv() => self.on_signal(signal).await,
            () = sleep_until(next_timer) => self.on_timers().await,
        }
        ControlFlow::Continue(())
    }

    async fn handle(&mut self, command: Command) -> ControlFlow<()> {
        match command {
            Command::Start {
                reason,
                wait_ready,
                reply,
            } => self.start(reason, wait_ready, reply),
            Command::Stop {
                grace,
                signal_external,
                reason,
                reply,
            } => {
                let result = self.stop(grace, signal_external, reason).await;
                let _ = reply.send(result);
            }
            Command::Reconfigure { spec, reply } => {
                let result = self.stop(None, false, Reason::ConfigChange).await.map(|_| {
                    self.status.spec = spec;
                    self.restarts.reset();
                    self.status.clone()
                });
                let _ = reply.send(result);
            }
            Command::Restart { reply } => match self.stop(None, false, Reason::UserRestart).await {
                Ok(_) => {
                    self.status.restart_count = self.status.restart_count.saturating_add(1);
                    self.start(Reason::UserRestart, false, reply);
                }
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            },
            Command::Delete {
                signal_external,
                reply,
            } => {
                self.timers = Timers::default();
                let external = self.status.kind == InstanceKind::External;
                if external && !signal_external {
                    // Forget it; its process keeps running.
                    self.process = None;
                    self.status.process = None;
                    let _ = reply.send(Ok(self.status.clone()));
                    return ControlFlow::Break(());
                }
                match self.stop(None, signal_external, Reason::UserDelete).await {
                    Ok(status) => {
                        let _ = reply.send(Ok(status));
                        return ControlFlow::Break(());
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err));
                    }
                }
            }
            Command::DependenciesMet => self.on_dependencies_met(),
            Command::Waiting { text, blocked } => self.on_waiting_news(text, blocked),
            Command::Requeue => self.requeue().await,
        }
        ControlFlow::Continue(())
    }

    /// Moves to `state`, publishing the change.
    fn transition(&mut self, state: InstanceState, reason: Reason, detail: String) {
        let previous = self.status.state;
        self.status.state = state;
        self.status.reason = reason;
        if state != InstanceState::Waiting {
            self.status.waiting_for = None;
        }
        self.status.state_changed_at = SystemTime::now();
        self.publish(previous, reason, detail);
    }

    /// Publishes the current status (after a state or health change).
    fn publish(&mut self, previous: InstanceState, reason: Reason, detail: String) {
        self.status.process = self.process.as_ref().map(Process::info);
        self.mirror_restarts();
        self.context.publish(Change::Instance {
            status: self.status.clone(),
            previous: Some(previous),
            reason,
            detail,
        });
    }

    /// Copies the restart tracker and retry timer into the status.
    fn mirror_restarts(&mut self) {
        let backoff = &mut self.status.backoff;
        backoff.breaker = self.restarts.breaker;
        backoff.consecutive_failures = self.restarts.failures;
        backoff.current_delay = self.restarts.delay;
        backoff.next_attempt_at = self.timers.retry.map(|at| {
            wall_deadline(
                SystemTime::now(),
                at.saturating_duration_since(Instant::now()),
            )
        });
    }

    fn start(&mut self, reason: Reason, wait_ready: bool, reply: Reply) {
        if self.status.kind == InstanceKind::External {
            let _ = reply.send(if self.process.is_some() {
                Ok(self.status.clone())
            } else {
                Err(OrchestratorError::Refused(format!(
                    "instance {} is external: the daemon cannot start it",
                    self.status.spec.name
                )))
            });
            return;
        }
        if self.process.is_none() {
            if self.status.state == InstanceState::Error {
                self.restarts.reset();
            }
            self.timers.retry = None;
            if self.status.spec.depends_on.is_empty() {
                if let Err(err) = self.spawn(reason) {
                    let _ = reply.send(Err(err));
                    return;
                }
            } else if self.status.state != InstanceState::Waiting {
                // Started by the coordinator once its dependencies hold;
                // a caller waiting for readiness hears WAITING now.
                self.wait_for_dependencies(reason);
            }
        }
        if wait_ready && self.status.state == InstanceState::Starting {
            self.waiting_ready.push(reply);
        } else {
            let _ = reply.send(Ok(self.status.clone()));
        }
    }

    /// Spawns the process. A failure is handled like any other failure
    /// (the restart policy applies) and also returned.
    fn spawn(&mut self, reason: Reason) -> Result<(), OrchestratorError> {
        match self.context.spawn(
            &self.status.id,
            &self.status.spec,
            self.status.port,
            self.generation + 1,
        ) {
            Ok(Spawned { process, readiness }) => {
                self.process = Some(process);
                self.status.kind = InstanceKind::Managed;
                self.status.last_error = None;
                self.transition(InstanceState::Starting, reason, String::new());
                self.on_spawned(Some(readiness));
                Ok(())
            }
            Err(err) => {
                let message = err.to_string();
                self.on_failure(Reason::SpawnFailed, message.clone(), None);
                Err(OrchestratorError::StartFailed(message))
            }
        }
    }

    /// Whether the policy restarts after a failure.
    fn restarts_on_failure(&self) -> bool {
        self.status.kind != InstanceKind::External
            && self.status.spec.restart.mode != RestartMode::Never
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        if due(&mut self.timers.retry, now) {
            match self.status.state {
                InstanceState::Backoff => {
                    let _ = self.spawn(Reason::BackoffElapsed);
                }
                InstanceState::Error => {
                    self.restarts.on_cooldown();
                    let _ = self.spawn(Reason::BreakerHalfOpen);
                }
                _ => {}
            }
        }
        if due(&mut self.timers.startup, now) && self.status.state == InstanceState::Starting {
            let timeout = humantime::format_duration(self.status.spec.startup_timeout);
            self.kill_process().await;
            self.on_failure(
                Reason::StartupTimeout,
                format!("not ready within {timeout}"),
                None,
            );
        }
        if due(&mut self.timers.probe, now) {
            self.launch_probe();
        }
        if due(&mut self.timers.reset, now)
            && self.status.state == InstanceState::Running
            && self.status.health.state != HealthState::Unhealthy
        {
            self.restarts.reset();
            self.mirror_restarts();
            self.context.refresh(&self.status);
        }
        if due(&mut self.timers.idle, now) && self.status.state == InstanceState::Running {
            self.check_idle().await;
        }
        if due(&mut self.timers.watchdog, now) && self.status.state == InstanceState::Running {
            self.on_watchdog_missed().await;
        }
        if due(&mut self.timers.memory, now) {
            self.check_memory().await;
        }
    }

    /// Stops the instance if no activity was recorded for its idle timeout;
    /// otherwise looks again when it would be due.
    async fn check_idle(&mut self) {
        let Some(timeout) = self.status.spec.idle_timeout else {
            return;
        };
        let last = self
            .context
            .board
            .get(&self.status.id)
            .map_or(self.status.last_activity_at, |status| {
                status.last_activity_at
            });
        let idle = SystemTime::now().duration_since(last).unwrap_or_default();
        if idle >= timeout {
            let _ = self.stop(None, false, Reason::IdleTimeout).await;
        } else {
            self.timers.idle = Some(deadline(Instant::now(), timeout - idle));
        }
    }

    /// Looks at the process tree's latest memory sample against the
    /// limit: over it twice in a row, the process is stopped and that is a
    /// failure (the restart policy applies).
    async fn check_memory(&mut self) {
        let (Some(max), Some(process)) = (self.status.spec.limits.memory_max, &self.process) else {
            return;
        };
        let usage = self.context.latest_usage();
        let sample = usage.get(&(process.info().pgid as i32));
        match self.memory.observe(sample, max) {
            Some(message) => {
                self.kill_process().await;
                self.on_failure(Reason::MemoryLimit, message, None);
            }
            None => self.timers.memory = Some(deadline(Instant::now(), MEMORY_CHECK)),
        }
    }

    /// Handles a failure: records it, answers readiness waiters, and moves
    /// to FAILED (or STOPPED), BACKOFF or ERROR as the policy says.
    fn on_failure(&mut self, reason: Reason, message: String, exit: Option<Exit>) {
        let clean = exit.is_some_and(|exit| exit.outcome.is_success());
        if !clean {
            self.status.failures.push_front(Failure {
                at: SystemTime::now(),
                reason,
                message: message.clone(),
                exit,
            });
            self.status.failures.truncate(FAILURE_HISTORY);
            self.status.last_error = Some(message.clone());
        }
        for reply in self.waiting_ready.drain(..) {
            let _ = reply.send(Err(OrchestratorError::StartFailed(format!(
                "{} did not become ready: {message}",
                self.status.spec.name
            ))));
        }
        self.timers = Timers::default();
        self.listening = None;
        self.status.ready_by = None;
        let jitter = (RandomState::new().hash_one(self.generation) % 1000) as f64 / 1000.0;
        match self
            .restarts
            .on_failure(&self.status.spec.restart, clean, jitter)
        {
            Verdict::Stay => {
                let state = if clean {
                    InstanceState::Stopped
                } else {
                    InstanceState::Failed
                };
                self.transition(state, reason, message);
            }
            Verdict::Backoff(delay) => {
                self.timers.retry = Some(deadline(Instant::now(), delay));
                self.status.restart_count = self.status.restart_count.saturating_add(1);
                self.transition(InstanceState::Backoff, reason, message);
            }
            Verdict::Open(cooldown) => {
                self.timers.retry = Some(deadline(Instant::now(), cooldown));
                let detail = format!(
                    "{message}; {} failures in a row, next attempt in {}",
                    self.restarts.failures,
                    humantime::format_duration(cooldown)
                );
                self.transition(InstanceState::Error, Reason::BreakerOpen, detail);
            }
        }
    }

    /// Terminates the current process group without a state change.
    async fn kill_process(&mut self) -> Option<ExitOutcome> {
        let process = self.process.take()?;
        let spec = &self.status.spec;
        Some(
            terminate(
                &self.context,
                &self.status.id,
                process,
                spec.stop_signal,
                spec.stop_grace,
            )
            .await,
        )
    }

    async fn stop(
        &mut self,
        grace: Option<Duration>,
        signal_external: bool,
        reason: Reason,
    ) -> Result<InstanceStatus, OrchestratorError> {
        if matches!(self.process, Some(Process::External { .. })) && !signal_external {
            return Err(OrchestratorError::Refused(format!(
                "instance {} is external: pass signal_external to signal its process",
                self.status.spec.name
            )));
        }
        // A user's stop wins over any pending restart or probe.
        self.timers = Timers::default();
        self.listening = None;
        self.status.ready_by = None;
        for reply in self.waiting_ready.drain(..) {
            let _ = reply.send(Err(OrchestratorError::StartFailed(
                "stopped before it became ready".to_owned(),
            )));
        }
        let Some(process) = self.process.take() else {
            if !matches!(
                self.status.state,
                InstanceState::Stopped | InstanceState::Failed
            ) {
                self.transition(InstanceState::Stopped, reason, String::new());
            }
            return Ok(self.status.clone());
        };
        let grace = grace.unwrap_or(self.status.spec.stop_grace);
        self.process = Some(process);
        self.transition(InstanceState::Stopping, reason, String::new());
        let process = self.process.take().expect("just put back");
        let outcome = terminate(
            &self.context,
            &self.status.id,
            process,
            self.status.spec.stop_signal,
            grace,
        )
        .await;
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
        let exit = Exit {
            outcome,
            at: SystemTime::now(),
        };
        self.status.last_exit = Some(exit);
        let message = format!("process exited with {}", outcome.describe());
        // Publish first (exit-to-event latency), and let the tasks that
        // stream the event run before the group clean-up scans /proc.
        self.on_failure(Reason::ProcessExit, message, Some(exit));
        tokio::task::yield_now().await;
        if !matches!(process, Process::External { .. }) {
            let spec = &self.status.spec;
            terminate_group(
                &self.context,
                &self.status.id,
                process.group(),
                None,
                spec.stop_signal,
                spec.stop_grace,
            )
            .await;
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Completes when the process (if any) exits.
async fn exited(process: &mut Option<Process>) -> ExitOutcome {
    match process {
        Some(process) => process.exited().await,
        None => std::future::pending().await,
    }
}
