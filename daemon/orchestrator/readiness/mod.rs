//! Where readiness comes from besides the health probe: a line of the
//! process's output matching a pattern ([`log_line`]), or the sd_notify
//! protocol ([`notify`]). Each spawned process gets its own source, made
//! before the spawn (the socket's path goes into its environment; the log
//! offsets are taken before it can write), then run as a task that sends
//! the actor [`Signal`]s tagged with the process generation. Aborting the
//! task (a new process, a stop, the actor's end) closes the socket and
//! removes its file.

pub mod log_line;
pub mod notify;

use std::{io, path::Path};

use tokio::{sync::mpsc, task::AbortHandle};

use outpost::spec::InstanceSpec;

use super::logs::{LogFiles, Stream};
use notify::NotifySocket;

/// What a process said, or showed, about its readiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A line of output matched the readiness pattern.
    LogLine(String),
    /// READY=1.
    Ready,
    /// STATUS=….
    Status(String),
    /// WATCHDOG=1: alive.
    Watchdog,
    /// WATCHDOG=trigger: the process asks to be treated as hung.
    WatchdogTrigger,
    /// STOPPING=1.
    Stopping,
}

/// A note about the process of one generation.
#[derive(Debug)]
pub struct Signal {
    pub generation: u64,
    pub note: Note,
}

/// A process's readiness source, made before it is spawned.
pub struct Source {
    notify: Option<NotifySocket>,
    log: Option<LogWatch>,
}

/// The output to follow, from where, for what.
struct LogWatch {
    files: LogFiles,
    offsets: Vec<(Stream, u64)>,
    pattern: regex::Regex,
}

impl Source {
    /// The source `spec` asks for, for the process of `generation`.
    pub fn prepare(
        spec: &InstanceSpec,
        id: &str,
        generation: u64,
        data_dir: &Path,
        logs: LogFiles,
    ) -> io::Result<Self> {
        let notify = if spec.readiness.notify {
            Some(NotifySocket::bind(data_dir, id, generation)?)
        } else {
            None
        };
        let log = Self::log_watch(spec, logs)?;
        Ok(Self { notify, log })
    }

    /// The source of a process an earlier daemon spawned and this one
    /// re-adopted: its notify socket bound again where the process sends,
    /// its output followed from now (a line or READY=1 sent while no
    /// daemon ran is lost; the startup deadline then judges it).
    pub fn readopt(
        spec: &InstanceSpec,
        id: &str,
        pid: u32,
        data_dir: &Path,
        logs: LogFiles,
    ) -> io::Result<Self> {
        let notify = if spec.readiness.notify {
            Some(NotifySocket::rebind(data_dir, id, pid)?)
        } else {
            None
        };
        let log = Self::log_watch(spec, logs)?;
        Ok(Self { notify, log })
    }

    fn log_watch(spec: &InstanceSpec, logs: LogFiles) -> io::Result<Option<LogWatch>> {
        let Some(pattern) = &spec.readiness.log_pattern else {
            return Ok(None);
        };
        // Validated with the spec; a record written by hand is not.
        let pattern = regex::Regex::new(pattern).map_err(io::Error::other)?;
        let offsets = log_line::offsets(&logs);
        Ok(Some(LogWatch {
            files: logs,
            offsets,
            pattern,
        }))
    }

    /// The `$NOTIFY_SOCKET` to give the process.
    pub fn notify_socket(&self) -> Option<&Path> {
        self.notify.as_ref().map(NotifySocket::path)
    }

    /// Starts listening; None when there is nothing to listen to.
    pub fn start(self, generation: u64, signals: mpsc::Sender<Signal>) -> Option<AbortHandle> {
        let deliver = move |note| {
            signals.try_send(Signal { generation, note }).map_or_else(
                |err| !matches!(err, mpsc::error::TrySendError::Closed(_)),
                |()| true,
            )
        };
        if let Some(socket) = self.notify {
            return Some(tokio::spawn(socket.listen(deliver)).abort_handle());
        }
        let LogWatch {
            files,
            offsets,
            pattern,
        } = self.log?;
        Some(tokio::spawn(log_line::watch(files, offsets, pattern, deliver)).abort_handle())
    }
}
