//! The reaper: the only code in the daemon that calls `waitpid`.
//!
//! The daemon is a child subreaper, so orphaned descendants of instances
//! (double-forked daemons, leftovers of a killed group) are re-parented to it
//! and must be reaped, or they stay zombies. One task reaps every child on
//! SIGCHLD with `waitpid(-1)` and hands each exit to whoever registered that
//! pid; exits nobody registered are such orphans and are only logged.
//! Because it reaps everything, nothing else in the daemon may wait on
//! children (in particular, `tokio::process` must not be used).

use std::{
    collections::HashMap,
    io,
    process::Command,
    sync::{Arc, Mutex},
};

use nix::{
    errno::Errno,
    sys::wait::{WaitPidFlag, WaitStatus, waitpid},
    unistd::Pid,
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::oneshot,
};

use super::{process, status::ExitOutcome};

/// Hands process exits to their owners.
#[derive(Default)]
pub struct Reaper {
    waiting: Mutex<HashMap<i32, oneshot::Sender<ExitOutcome>>>,
    /// Held while a child is reaped and while the daemon's children are
    /// listed: the kernel's list shifts under a reader when a child leaves
    /// it, and the reader may then skip another.
    reaping: Mutex<()>,
}

/// A spawned child and the future outcome of its exit.
pub struct Spawned {
    pub pid: u32,
    /// Completes when the reaper collects it.
    pub exit: oneshot::Receiver<ExitOutcome>,
}

impl Reaper {
    /// Makes this process a child subreaper and starts reaping on SIGCHLD.
    /// Must be called inside the tokio runtime.
    pub fn start() -> io::Result<Arc<Self>> {
        nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Arc::new(Self::default());
        let task_reaper = reaper.clone();
        tokio::spawn(async move {
            // Children may have exited before the handler was installed.
            loop {
                task_reaper.reap_all();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// Spawns `command` and registers its pid before the reaper can see its
    /// exit, so no exit is ever lost.
    pub fn spawn(&self, command: &mut Command) -> io::Result<Spawned> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let child = command.spawn()?;
        let (sender, exit) = oneshot::channel();
        waiting.insert(child.id() as i32, sender);
        // Dropping std's Child neither kills nor waits for it.
        Ok(Spawned {
            pid: child.id(),
            exit,
        })
    }

    /// The daemon's children it did not spawn: descendants of instances
    /// orphaned and re-parented to it. The kernel re-parents to the first
    /// live thread of a subreaper, the main thread, so its list is the one
    /// read. `None` when the kernel keeps no lists of children.
    pub fn orphans(&self) -> Option<Vec<i32>> {
        let _reaping = self.reaping.lock().unwrap_or_else(|p| p.into_inner());
        let me = std::process::id() as i32;
        let children = process::thread_children(me, me)?;
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            children
                .into_iter()
                .filter(|pid| !waiting.contains_key(pid))
                .collect(),
        )
    }

    /// Collects every child that has exited.
    fn reap_all(&self) {
        loop {
            let reaping = self.reaping.lock().unwrap_or_else(|p| p.into_inner());
            let reaped = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG));
            drop(reaping);
            let (pid, outcome) = match reaped {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitOutcome::Code(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    (pid, ExitOutcome::Signal(signal as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    tracing::error!(%err, "waitpid failed");
                    return;
                }
            };
            let sender = self
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&pid.as_raw());
            match sender {
                Some(sender) => {
                    let _ = sender.send(outcome);
                }
                None => {
                    tracing::debug!(pid = pid.as_raw(), outcome = %outcome.describe(), "reaped an orphaned descendant")
                }
            }
        }
    }
}
