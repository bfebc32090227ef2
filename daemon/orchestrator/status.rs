//! What is true now: an instance's state, its process and its history.

use std::{sync::Arc, time::SystemTime};

use super::spec::InstanceSpec;

/// Who started an instance's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceKind {
    /// Spawned and owned by the daemon.
    Managed,
    /// Registered; watched but never signalled unless asked.
    External,
}

/// Lifecycle state (see DESIGN §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
}

impl InstanceState {
    /// Every state, in reporting order.
    pub const ALL: [Self; 7] = [
        Self::Starting,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Failed,
        Self::Backoff,
        Self::Error,
    ];

    /// Whether a process is (or should be) alive in this state.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Starting | Self::Running | Self::Stopping)
    }
}

/// Why a state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}
