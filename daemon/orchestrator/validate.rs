//! ValidateState: compares what the daemon believes with the processes and
//! ports that really exist, and applies the fixes that are provably safe.

use std::{collections::HashMap, path::Path};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use super::{
    process,
    status::{InstanceKind, InstanceStatus},
};

/// What kind of disagreement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueKind {
    /// Recorded as running, but its process is gone (or is another one).
    MissingProcess,
    /// A process carrying an instance marker that no running instance owns.
    OrphanProcess,
    /// A port allocated to an instance that does not exist.
    StalePort,
    /// A running instance's port is held by a process not its own.
    PortHijacked,
}

/// One disagreement between the daemon's state and reality.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub kind: IssueKind,
    /// The instance concerned, if any.
    pub instance: Option<(String, String)>,
    /// The process concerned, if any.
    pub pid: Option<u32>,
    /// The port concerned, if any.
    pub port: Option<u16>,
    /// What is wrong.
    pub description: String,
    /// What the user can do.
    pub remedy: String,
    /// Whether this call fixed it.
    pub fixed: bool,
}

/// Checks `instances` (and the port allocations `ports`, port → owner id)
/// against /proc; only processes spawned by the daemon of `data_dir` can
/// be its orphans. With `fix`, orphans are killed (their marker proves the
/// daemon of `data_dir` spawned them; one naming no known instance was left
/// when the state file was lost) and stale ports
/// are reported as releasable; everything else is only reported.
pub fn check(
    instances: &[InstanceStatus],
    ports: &HashMap<u16, String>,
    data_dir: &Path,
    fix: bool,
) -> Vec<Issue> {
    let by_id: HashMap<&str, &InstanceStatus> =
        instances.iter().map(|s| (s.id.as_str(), s)).collect();
    let table = process::ProcTable::scan(Some(&mut process::MarkerCache::default()));
    let mut issues = Vec::new();

    for status in instances
        .iter()
        .filter(|s| s.state.is_active() && s.kind != InstanceKind::External)
    {
        let Some(info) = status.process else { continue };
        let alive = process::read_entry(info.pid as i32)
            .is_some_and(|entry| entry.start_ticks == info.start_ticks && entry.state != 'Z');
        if !alive {
            issues.push(Issue {
                kind: IssueKind::MissingProcess,
                instance: Some((status.id.clone(), status.spec.name.clone())),
                pid: Some(info.pid),
                port: status.port,
                description: format!(
                    "{} is recorded as running as pid {}, which no longer exists",
                    status.spec.name, info.pid
                ),
                remedy: format!("outpostctl restart {}", status.spec.name),
                fixed: false,
            });
        }
    }

    // Members of every running instance, to tell orphans from descendants.
    let mut owned = std::collections::HashSet::new();
    for status in instances
        .iter()
        .filter(|s| s.kind != InstanceKind::External)
    {
        if let Some(info) = status.process {
            owned.extend(
                table
                    .members(info.pgid as i32, &status.id)
                    .iter()
                    .map(|p| p.pid),
            );
        }
    }
    for entry in table
        .entries()
        .iter()
        .filter(|p| p.state != 'Z' && !owned.contains(&p.pid))
    {
        let Some(id) = process::marker_of(entry.pid, data_dir) else {
            continue;
        };
        let known = by_id.get(id.as_str());
        let mut issue = Issue {
            kind: IssueKind::OrphanProcess,
            instance: known.map(|s| (s.id.clone(), s.spec.name.clone())),
            pid: Some(entry.pid as u32),
            port: None,
            description: match known {
                Some(status) => format!(
                    "pid {} belongs to instance {} but is not one of its running processes",
                    entry.pid, status.spec.name
                ),
                None => format!(
                    "pid {} carries the marker of instance {id}, which this daemon does not know",
                    entry.pid
                ),
            },
            remedy: "outpostctl validate --fix stops it".to_owned(),
            fixed: false,
        };
        // A marker is only an environment variable: a process of another
        // user could carry it too, and is never the daemon's to kill.
        if fix && owned_by_us(entry.pid) {
            issue.fixed = kill(Pid::from_raw(entry.pid), Signal::SIGKILL).is_ok();
        }
        issues.push(issue);
    }

    for (&port, owner) in ports {
        if !by_id.contains_key(owner.as_str()) {
            issues.push(Issue {
                kind: IssueKind::StalePort,
                instance: Some((owner.clone(), String::new())),
                pid: None,
                port: Some(port),
                description: format!("port {port} is allocated to {owner}, which does not exist"),
                remedy: "outpostctl validate --fix releases it".to_owned(),
                fixed: fix,
            });
        }
    }

    for status in instances
        .iter()
        .filter(|s| s.state.is_active() && s.kind != InstanceKind::External)
    {
        let (Some(port), Some(info)) = (status.port, status.process) else {
            continue;
        };
        let members: Vec<i32> = table
            .members(info.pgid as i32, &status.id)
            .iter()
            .map(|p| p.pid)
            .collect();
        for pid in process::listeners(&table, port)
            .into_iter()
            .filter(|pid| !members.contains(pid))
        {
            issues.push(Issue {
                kind: IssueKind::PortHijacked,
                instance: Some((status.id.clone(), status.spec.name.clone())),
                pid: Some(pid as u32),
                port: Some(port),
                description: format!(
                    "port {port} of {} is held by pid {pid}, which is not one of its processes",
                    status.spec.name
                ),
                remedy: format!("stop pid {pid}, or give {} another port", status.spec.name),
                fixed: false,
            });
        }
    }
    issues
}

/// Whether process `pid` runs as the daemon's own user.
fn owned_by_us(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .is_ok_and(|meta| meta.uid() == nix::unistd::geteuid().as_raw())
}
