//! Finding the processes of an instance the daemon spawned through the
//! kernel's lists of children (`/proc/PID/task/TID/children`) instead of a
//! scan of all of /proc: stopping a lone process reads three small files,
//! where a scan reads one per process on the machine (about 7 µs each here,
//! so 7 ms with a fleet of 1,000 running).
//!
//! This holds because the daemon is a child subreaper: a process of an
//! instance whose parent dies is re-parented to the daemon (to its main
//! thread, the first live thread of the process), never to init. So while
//! the leader lives, an instance's processes are its descendants and the
//! daemon's orphans that carry the instance's marker, with theirs; once the
//! leader is reaped, what is left is in its group or among those orphans.
//! A re-adopted instance's processes may have been orphaned to init while
//! no daemon ran; they are never looked for here.

use std::{fs, path::Path};

use nix::{errno::Errno, sys::signal::killpg, unistd::Pid};

use super::{
    process::{self, thread_children},
    reaper::Reaper,
};

/// The children of every thread of process `pid`.
fn children(pid: i32) -> Option<Vec<i32>> {
    let mut children = Vec::new();
    for thread in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let tid = thread.ok()?.file_name().to_str()?.parse().ok()?;
        children.extend(thread_children(pid, tid)?);
    }
    Some(children)
}

/// `roots` and all their descendants.
fn descendants(roots: Vec<i32>) -> Option<Vec<i32>> {
    let mut found = Vec::new();
    let mut pending = roots;
    while let Some(pid) = pending.pop() {
        // A process that ended since it was listed has no children left.
        if let Some(children) = children(pid) {
            pending.extend(children);
        } else if fs::metadata(format!("/proc/{pid}")).is_ok() {
            return None;
        }
        found.push(pid);
    }
    Some(found)
}

/// The processes of one instance whose leader the daemon spawned.
pub struct Lineage<'a> {
    id: &'a str,
    pgid: i32,
    reaper: &'a Reaper,
    data_dir: &'a Path,
}

impl<'a> Lineage<'a> {
    /// The lineage of instance `id`, whose group (led by a process this
    /// daemon spawned) is `pgid`.
    pub fn new(id: &'a str, pgid: i32, reaper: &'a Reaper, data_dir: &'a Path) -> Self {
        Self {
            id,
            pgid,
            reaper,
            data_dir,
        }
    }

    /// The daemon's orphans that carry this instance's marker; `None` when
    /// the daemon's children cannot be listed.
    fn marked_orphans(&self) -> Option<Vec<i32>> {
        let orphans = self.reaper.orphans()?;
        Some(
            orphans
                .into_iter()
                .filter(|&pid| process::marker_of(pid, self.data_dir).as_deref() == Some(self.id))
                .collect(),
        )
    }

    /// The live processes of the instance outside its group, while its
    /// leader `leader` is not reaped: descendants that left the group and
    /// orphans carrying the marker, with their descendants. `None` when a
    /// list cannot be read; a scan must find them then.
    pub fn escapees(&self, leader: i32) -> Option<Vec<i32>> {
        let mut roots = children(leader)?;
        roots.extend(self.marked_orphans()?);
        let escapees = descendants(roots)?
            .into_iter()
            .filter(|&pid| {
                process::read_entry(pid).is_some_and(|p| p.pgrp != self.pgid && p.state != 'Z')
            })
            .collect();
        Some(escapees)
    }

    /// Whether nothing of the instance remains, once its leader is reaped:
    /// no process is in its group (zombies count) and no orphan of the
    /// daemon carries its marker. `false` when only a scan can tell.
    pub fn gone(&self) -> bool {
        killpg(Pid::from_raw(self.pgid), None) == Err(Errno::ESRCH)
            && self
                .marked_orphans()
                .is_some_and(|orphans| orphans.is_empty())
    }
}
