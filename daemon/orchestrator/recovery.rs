//! Crash recovery: what an earlier daemon left running is re-adopted, and
//! a process is watched only while it is provably the one recorded (same
//! pid, start time and boot), through a pidfd that pins it.

use std::{
    collections::{HashMap, HashSet},
    os::fd::OwnedFd,
    path::Path,
    time::SystemTime,
};

use tokio::io::unix::AsyncFd;

use super::{
    Orchestrator, Origin,
    error::OrchestratorError,
    process,
    records::StoredInstance,
    status::{InstanceKind, InstanceState, ProcessInfo},
    watched::Process,
};

impl Orchestrator {
    /// Brings back what an earlier daemon left: a process still alive
    /// under the identity it recorded (pid, start time, boot id) is
    /// re-adopted; one that is gone counts as an exit and its restart
    /// policy applies; stopped instances stay stopped; pending restarts
    /// keep their schedule. An instance that should run but whose recorded
    /// process is gone may have a newer process the earlier daemon spawned
    /// and died before recording (a restart): a live group leader carrying
    /// this daemon's marker for the instance is adopted instead of starting
    /// a duplicate. An external process is watched again as external: it
    /// is never taken for one of the daemon's own groups.
    pub(super) fn recover(&self, stored: Vec<StoredInstance>) {
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
            let this_boot = boot_id.as_deref() == Some(self.context.boot_id.as_str());
            let external = status.kind == InstanceKind::External;
            let mut process = match (status.process, status.state.is_active()) {
                (Some(info), true) if this_boot && external => rewatch_external(&status.id, info),
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
            if process.is_none() && meant_to_run && !external {
                let leaders = unrecorded.get_or_insert_with(|| {
                    let table = process::ProcTable::scan(None);
                    process::marked_leaders(&table, &self.context.data_dir)
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
        let known: HashSet<String> = registry.handles().map(|h| h.id.clone()).collect();
        let data_dir = self.context.data_dir.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ORPHAN_REPORT_DELAY).await;
            let _ = tokio::task::spawn_blocking(move || report_orphans(&known, &data_dir)).await;
        });
    }
}

/// How long after start-up the orphans are looked for: the scan reads all
/// of /proc, and right at start it would compete with re-adoption and
/// serving (measured: serving after 1,000 re-adoptions went from a
/// median of 110 ms to 170 ms in some runs).
const ORPHAN_REPORT_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// Logs the process groups this daemon's data directory spawned (they
/// carry its marker) that no stored instance explains — left behind when
/// the state file was lost. `ValidateState` lists them too, and its fix
/// stops them.
fn report_orphans(known: &HashSet<String>, data_dir: &Path) {
    let table = process::ProcTable::scan(None);
    for (id, entry) in process::marked_leaders(&table, data_dir) {
        if !known.contains(&id) {
            tracing::warn!(
                pid = entry.pid,
                instance = id,
                "a process group this daemon's data directory started belongs to no stored instance (was the state file lost?); `outpostctl validate --fix` stops it"
            );
        }
    }
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

/// Re-adopts the process an earlier daemon spawned for instance `id`, if
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

/// Watches the external process recorded for instance `id` again, if it
/// is still that process.
fn rewatch_external(id: &str, info: ProcessInfo) -> Option<Process> {
    match open_pidfd(info.pid, info.start_ticks) {
        Ok(pidfd) => Some(Process::External { info, pidfd }),
        Err(reason) => {
            tracing::info!(
                id,
                pid = info.pid,
                reason,
                "external process no longer watched"
            );
            None
        }
    }
}

/// Watches an external process (registered now) and records its identity.
pub(super) fn watch_external(pid: u32) -> Result<Process, OrchestratorError> {
    let invalid = |reason| OrchestratorError::Invalid {
        field: "pid".to_owned(),
        reason,
    };
    let entry = process::read_entry(pid as i32)
        .ok_or_else(|| invalid(format!("no process has pid {pid}")))?;
    let pidfd = open_pidfd(pid, entry.start_ticks).map_err(invalid)?;
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
