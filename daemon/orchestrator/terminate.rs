//! Stopping an instance's processes: the whole tree, not just the leader.
//! The instance's processes are its group, every descendant of a member
//! (also those that left with `setsid`), and orphans re-parented to the
//! daemon that carry the instance's marker (double-fork plus `setsid`).
//! The stop signal goes to the group and to each of those; after the grace
//! period SIGKILL goes to whatever is left; a stop returns only when no
//! process of the instance (zombies included) remains. A group of this
//! daemon's own is followed through the kernel's lists of children
//! ([`Lineage`]); /proc is scanned (through the shared [`Scanner`]) only
//! when they cannot tell.

use std::{
    collections::HashSet,
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use tokio::{io::unix::AsyncFd, time::timeout_at};

use super::{
    context::Context,
    lineage::Lineage,
    policy, process,
    scanner::Scanner,
    status::{ExitOutcome, ProcessInfo},
    watched::{Group, Process},
};

/// How long SIGKILLed processes may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often /proc is looked at while waiting for a group to empty.
const GROUP_POLL: Duration = Duration::from_millis(5);

/// The processes of one instance being stopped: every member ever seen
/// during the stop is remembered, because a zombie cannot be recognised
/// by its marker any more (its environment is gone) but must still be
/// waited for until it is reaped.
struct Members<'a> {
    id: &'a str,
    pgid: i32,
    scanner: &'a Scanner,
    seen: HashSet<i32>,
}

/// What one look at /proc found of an instance.
struct Look {
    /// Its members alive now (not zombies).
    live: Vec<i32>,
    /// Whether nothing of it remains.
    gone: bool,
}

impl<'a> Members<'a> {
    fn new(id: &'a str, pgid: i32, scanner: &'a Scanner) -> Self {
        Self {
            id,
            pgid,
            scanner,
            seen: HashSet::new(),
        }
    }

    /// Remembers processes signalled outside a scan (found through the
    /// kernel's lists of children): once they exit they are zombies
    /// without a marker, and still to be waited for until reaped.
    fn remember(&mut self, pids: &[i32]) {
        self.seen.extend(pids);
    }

    /// Whether every process remembered is gone (reaped, or a zombie only
    /// another parent can reap), by reading their entries alone.
    fn remembered_gone(&self) -> bool {
        let me = std::process::id() as i32;
        self.seen
            .iter()
            .all(|&pid| process::read_entry(pid).is_none_or(|p| p.state == 'Z' && p.ppid != me))
    }

    /// Looks at a fresh process table (a scan shared with every other stop
    /// in progress, made off the async workers), remembering the members.
    /// Nothing remains when no member lingers, counting the daemon's own
    /// zombies (its reaper collects them at once) but not zombies of other
    /// parents (dead; only their parent can reap them).
    async fn look(&mut self) -> Look {
        let me = std::process::id() as i32;
        let lingers = |p: &process::ProcEntry| p.state != 'Z' || p.ppid == me;
        let table = self.scanner.fresh().await;
        let members = table.members(self.pgid, self.id);
        self.seen.extend(members.iter().map(|p| p.pid));
        let gone = !members.iter().any(lingers)
            && self
                .seen
                .iter()
                .all(|&pid| table.get(pid).is_none_or(|p| !lingers(p)));
        let live = members
            .into_iter()
            .filter(|p| p.state != 'Z')
            .map(|p| p.pid)
            .collect();
        Look { live, gone }
    }

    /// Looks at /proc every [`GROUP_POLL`] until nothing remains or
    /// `deadline`; returns whether everything is gone.
    async fn wait_gone(&mut self, deadline: Instant) -> bool {
        loop {
            if self.look().await.gone {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(GROUP_POLL).await;
        }
    }
}

/// Stops a managed group: the stop signal to the group and to every
/// descendant that left it, then (waiting for the leader's `exit`, if it
/// still runs) the grace period, then SIGKILL to whatever is left, then
/// waits until nothing of the instance remains, zombies included. A group
/// of this daemon's own is looked at through lists of children; /proc is
/// scanned only when they cannot tell (a re-adopted group, a list that
/// changed while it was read, something left after the leader's exit).
pub async fn terminate_group(
    context: &Context,
    id: &str,
    group: Group,
    mut leader: Option<Process>,
    signal: Signal,
    grace: Duration,
) -> ExitOutcome {
    let pgid = group.pgid as i32;
    let lineage = group
        .own
        .then(|| Lineage::new(id, pgid, &context.reaper, &context.data_dir));
    let mut members = Members::new(id, pgid, &context.scanner);
    let leader_pid = leader.as_ref().map(|leader| leader.info().pid as i32);
    let escapees = match (&lineage, leader_pid) {
        (Some(lineage), Some(pid)) => lineage.escapees(pid),
        (Some(lineage), None) if lineage.gone() => return ExitOutcome::Unknown,
        _ => None,
    };
    match escapees {
        Some(escapees) => {
            process::signal_members(pgid, &escapees, signal);
            members.remember(&escapees);
        }
        None => {
            let first = members.look().await;
            if first.live.is_empty() && leader.is_none() && first.gone {
                return ExitOutcome::Unknown;
            }
            process::signal_members(pgid, &first.live, signal);
        }
    }
    let deadline = policy::deadline(Instant::now(), grace);
    let mut outcome = None;
    if let Some(leader) = leader.as_mut() {
        outcome = timeout_at(deadline.into(), leader.exited()).await.ok();
    }
    let reaped = leader.is_none() || outcome.is_some();
    // An escapee that exited is a zombie without its marker until the
    // reaper collects it: the lineage no longer sees it, the remembered
    // pids do.
    if reaped && lineage.as_ref().is_some_and(Lineage::gone) && members.remembered_gone() {
        return outcome.unwrap_or(ExitOutcome::Unknown);
    }
    if !members.wait_gone(deadline).await {
        let live = members.look().await.live;
        process::signal_members(pgid, &live, Signal::SIGKILL);
        if let (None, Some(leader)) = (outcome, leader.as_mut()) {
            outcome = tokio::time::timeout(KILL_WAIT, leader.exited()).await.ok();
        }
        if !members
            .wait_gone(policy::deadline(Instant::now(), KILL_WAIT))
            .await
        {
            tracing::error!(id, pgid, "processes of the instance survived SIGKILL");
        }
    }
    outcome.unwrap_or(ExitOutcome::Unknown)
}

/// Stops `process` the way its kind allows: a group of the daemon's
/// (spawned or re-adopted) as a whole, an external process by itself.
pub async fn terminate(
    context: &Context,
    id: &str,
    process: Process,
    signal: Signal,
    grace: Duration,
) -> ExitOutcome {
    match process {
        Process::External { info, pidfd } => terminate_external(info, pidfd, grace).await,
        leader => terminate_group(context, id, leader.group(), Some(leader), signal, grace).await,
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
