//! What is true now: an instance's state, its process and its history.

use std::{sync::Arc, time::SystemTime};

use serde::{Deserialize, Serialize};

use outpost::spec::InstanceSpec;

/// Who started an instance's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceKind {
    /// Spawned and owned by the daemon.
    Managed,
    /// Registered; watched but never signalled unless asked.
    External,
    /// Spawned by an earlier daemon and re-adopted by this one.
    Discovered,
}

/// Lifecycle state (see DESIGN §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Spawned, not ready yet.
    Starting,
    /// Ready.
    Running,
    /// Stop signal sent; waiting for the group to exit.
    Stopping,
    /// Not running, by request or after a clean exit.
    Stopped,
    /// Exited on its own with a failure.
    Failed,
    /// Waiting for a restart attempt (entered once restart policies exist).
    Backoff,
    /// The circuit breaker is open (entered once restart policies exist).
    Error,
    /// Started, but its dependencies do not all hold yet: no process.
    Waiting,
}

impl InstanceState {
    /// Every state, in reporting order.
    pub const ALL: [Self; 8] = [
        Self::Starting,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Failed,
        Self::Backoff,
        Self::Error,
        Self::Waiting,
    ];

    /// Whether a process is (or should be) alive in this state.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Starting | Self::Running | Self::Stopping)
    }
}

/// Why a state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The instance was created.
    Created,
    /// A user started it.
    UserStart,
    /// A user stopped it.
    UserStop,
    /// A user restarted it.
    UserRestart,
    /// A user deleted it.
    UserDelete,
    /// Its process exited.
    ProcessExit,
    /// Its process could not be spawned.
    SpawnFailed,
    /// It became ready.
    Ready,
    /// The daemon is shutting down.
    DaemonShutdown,
    /// The health check failed `failure_threshold` times in a row.
    HealthFailure,
    /// The health check passed again.
    HealthRecovered,
    /// No readiness within the startup timeout.
    StartupTimeout,
    /// No activity within the idle timeout.
    IdleTimeout,
    /// The backoff delay passed.
    BackoffElapsed,
    /// Too many failures in a row: the breaker opened.
    BreakerOpen,
    /// The cooldown passed: one trial start.
    BreakerHalfOpen,
    /// Re-adopted, or found gone, by a daemon that started after a crash.
    DaemonRestart,
    /// Its spec changed (workspace file edit).
    ConfigChange,
    /// Its sd_notify watchdog went without WATCHDOG=1 too long.
    Watchdog,
    /// Its process tree used more memory than its limit.
    MemoryLimit,
    /// Every dependency met its condition.
    DependenciesReady,
    /// A dependency is gone or failed, or will not complete.
    DependencyBlocked,
    /// A dependency that restarts its dependents restarted.
    DependencyRestart,
}

/// What made an instance ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadyBy {
    /// It has no readiness condition: started is ready.
    Started,
    /// Its health probe passed.
    Probe,
    /// A line of its output matched the readiness pattern.
    LogLine(String),
    /// Its process sent READY=1 over sd_notify.
    Notify,
    /// It was running when an earlier daemon stopped, and was re-adopted.
    Readopted,
}

impl std::fmt::Display for ReadyBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Started => f.write_str("started"),
            Self::Probe => f.write_str("health probe"),
            Self::LogLine(line) => write!(f, "log line: {line}"),
            Self::Notify => f.write_str("sd_notify READY=1"),
            Self::Readopted => f.write_str("re-adopted running"),
        }
    }
}

/// The latest verdict of an instance's health check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HealthState {
    /// No check has completed yet.
    #[default]
    Unknown,
    /// Passing (or, with no probe, alive).
    Healthy,
    /// `failure_threshold` checks failed in a row.
    Unhealthy,
}

/// Live result of the health check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// The verdict.
    pub state: HealthState,
    /// When the last check finished.
    pub last_check_at: Option<SystemTime>,
    /// Why the last failing check failed.
    pub last_failure: Option<String>,
    /// Failures in a row.
    pub consecutive_failures: u32,
}

/// The circuit breaker of the restart policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breaker {
    /// Restarts happen.
    #[default]
    Closed,
    /// Waiting for the cooldown.
    Open,
    /// One trial start is running.
    HalfOpen,
}

/// The restart machinery of an instance, as shown to users.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    pub breaker: Breaker,
    /// Failures in a row, counted towards `max_restarts`.
    pub consecutive_failures: u32,
    /// The delay waited (or being waited) before the latest restart.
    pub current_delay: std::time::Duration,
    /// When the next attempt happens (BACKOFF or ERROR).
    pub next_attempt_at: Option<SystemTime>,
}

/// A sample of an instance's whole process tree (see `usage.rs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// CPU since the previous sample, percent of one core.
    pub cpu_percent: f64,
    /// Processes in the tree.
    pub process_count: u32,
    /// When it was taken.
    pub sampled_at: SystemTime,
}

/// One entry of an instance's failure history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// When.
    pub at: SystemTime,
    /// What kind.
    pub reason: Reason,
    /// Details.
    pub message: String,
    /// The exit, when it was one.
    pub exit: Option<Exit>,
}

/// Failures kept per instance.
pub const FAILURE_HISTORY: usize = 10;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitOutcome {
    /// exit(code).
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
    /// Ended, but its status cannot be known (not a child of the daemon).
    Unknown,
}

impl ExitOutcome {
    /// Whether this counts as a clean exit.
    pub fn is_success(self) -> bool {
        self == Self::Code(0)
    }

    /// Human-readable form: "exit code 3" or "signal SIGKILL".
    pub fn describe(self) -> String {
        match self {
            Self::Code(code) => format!("exit code {code}"),
            Self::Signal(number) => format!("signal {}", signal_name(number)),
            Self::Unknown => "an unknown status".to_owned(),
        }
    }
}

/// The name of a signal number ("SIGKILL"), or the number itself.
pub fn signal_name(number: i32) -> String {
    nix::sys::signal::Signal::try_from(number)
        .map(|signal| signal.as_str().to_owned())
        .unwrap_or_else(|_| number.to_string())
}

/// A process exit with the time it was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Exit {
    /// How it ended.
    pub outcome: ExitOutcome,
    /// When the daemon saw it.
    pub at: SystemTime,
}

/// The process currently behind an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id (the group leader for managed instances).
    pub pid: u32,
    /// Process group id; 0 for external processes.
    pub pgid: u32,
    /// Start time in clock ticks since boot (/proc/PID/stat field 22):
    /// with the pid and boot id, the process's identity.
    pub start_ticks: u64,
    /// When it was started (or registered).
    pub started_at: SystemTime,
}

/// Everything known about one instance at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceStatus {
    /// Stable id.
    pub id: String,
    /// What the user asked for.
    pub spec: Arc<InstanceSpec>,
    /// Who started the process.
    pub kind: InstanceKind,
    /// Lifecycle state.
    pub state: InstanceState,
    /// Why it is in that state.
    pub reason: Reason,
    /// When it entered that state.
    pub state_changed_at: SystemTime,
    /// The process, while one exists.
    pub process: Option<ProcessInfo>,
    /// Allocated port.
    pub port: Option<u16>,
    /// Restarts since creation.
    pub restart_count: u32,
    /// The most recent error.
    pub last_error: Option<String>,
    /// How the previous process ended.
    pub last_exit: Option<Exit>,
    /// When the instance was created.
    pub created_at: SystemTime,
    /// When activity was last recorded.
    pub last_activity_at: SystemTime,
    /// Owning workspace, if any.
    pub workspace: Option<String>,
    /// Health check result.
    pub health: Health,
    /// Restart and breaker state.
    pub backoff: Backoff,
    /// Latest resource sample, while a process runs.
    pub usage: Option<Usage>,
    /// Recent failures, newest first.
    pub failures: std::collections::VecDeque<Failure>,
    /// What made the current process ready; None until it is.
    pub ready_by: Option<ReadyBy>,
    /// The last STATUS= its process sent over sd_notify.
    pub notify_status: Option<String>,
    /// While WAITING: which dependencies it waits for, and how they are.
    pub waiting_for: Option<String>,
}

impl InstanceStatus {
    /// A new instance's status, as it is created.
    pub fn new(
        id: String,
        spec: InstanceSpec,
        kind: InstanceKind,
        state: InstanceState,
        port: Option<u16>,
    ) -> Self {
        let now = SystemTime::now();
        Self {
            id,
            spec: Arc::new(spec),
            kind,
            state,
            reason: Reason::Created,
            state_changed_at: now,
            process: None,
            port,
            restart_count: 0,
            last_error: None,
            last_exit: None,
            created_at: now,
            last_activity_at: now,
            workspace: None,
            health: Health::default(),
            backoff: Backoff::default(),
            usage: None,
            failures: std::collections::VecDeque::new(),
            ready_by: None,
            notify_status: None,
            waiting_for: None,
        }
    }
}
