//! Resource usage of the running instances a daemon spawned (managed or
//! re-adopted; not external ones), each its whole process tree, in one pass for all of them. Reads never sample: they get the
//! latest sample at once, and a read that finds it older than a second asks
//! the sampler task for a new one, which arrives in the background. An idle
//! daemon spends nothing on usage; one that is read often samples at most
//! once a second.
//!
//! A sample reads only the instances' own processes. For an instance this
//! daemon spawned they are found through the kernel's lists of children
//! ([`lineage::trees`]): the leader's descendants and the daemon's orphans
//! of the instance, so a process that left the group (setsid) counts, and
//! a sample costs a few small reads per process of the instances instead of
//! one per process on the machine. A re-adopted instance's processes may
//! have been orphaned to init while no daemon ran, which no list of the
//! daemon's shows: while one runs, each sample also scans /proc (through
//! the shared [`Scanner`]) and counts what a stop would stop — its group,
//! their descendants and the orphans carrying its marker.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{mpsc, watch};

use super::{
    lineage::{self, Own},
    process::{self, ProcEntry},
    reaper::Reaper,
    scanner::Scanner,
    status::{ProcessInfo, Usage},
};

/// Samples younger than this are not refreshed.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// An instance with a process tree a daemon spawned (managed or
/// re-adopted), whose usage a sample measures.
pub struct Running {
    /// Its id (the marker its processes carry).
    pub id: String,
    /// Its leader, as the instance's status has it.
    pub leader: ProcessInfo,
}

/// Totals of one process tree at one moment.
#[derive(Clone, Copy, Default)]
struct Totals {
    cpu_ticks: u64,
    rss_pages: u64,
    processes: u32,
}

#[derive(Default)]
struct Sample {
    /// When it was taken; None before the first.
    at: Option<Instant>,
    totals: HashMap<i32, Totals>,
    usage: Arc<HashMap<i32, Usage>>,
}

/// Usage per instance, by its process group id, refreshed in the background
/// when read.
#[derive(Clone)]
pub struct UsageSampler {
    latest: watch::Receiver<Sample>,
    /// Asks the sampler task for a new sample of these instances (a full
    /// queue: one is coming).
    refresh: mpsc::Sender<Vec<Running>>,
}

impl UsageSampler {
    /// Starts the sampler task, which reads the trees of the instances it
    /// is handed (finding the daemon's orphans through `reaper`, knowing its
    /// processes by the marker of `data_dir`) and scans through `scanner`
    /// only for re-adopted ones; it ends with the sampler.
    pub fn start(scanner: Scanner, reaper: Arc<Reaper>, data_dir: PathBuf) -> Self {
        let (publish, latest) = watch::channel(Sample::default());
        let (refresh, mut asked) = mpsc::channel(1);
        tokio::spawn(async move {
            while let Some(running) = asked.recv().await {
                let trees = trees(running, &scanner, &reaper, &data_dir).await;
                publish.send_modify(|last| *last = sample(&trees, last, Instant::now()));
            }
        });
        Self { latest, refresh }
    }

    /// The latest usage of every running instance, by process group
    /// (empty before the first sample); CPU is averaged between the last two
    /// samples. Never waits: a stale sample is returned as it is and
    /// refreshed in the background, for the instances `running` lists then
    /// (called only when a sample is due and none is coming).
    pub fn latest(&self, running: impl FnOnce() -> Vec<Running>) -> Arc<HashMap<i32, Usage>> {
        let (at, usage) = {
            let latest = self.latest.borrow();
            (latest.at, Arc::clone(&latest.usage))
        };
        if at.is_none_or(|at| at.elapsed() >= FRESH_FOR)
            && let Ok(permit) = self.refresh.try_reserve()
        {
            permit.send(running());
        }
        usage
    }
}

/// The live processes of each of `running`, by its group: those this
/// daemon spawned through the lists of children (on the blocking pool),
/// the rest — re-adopted, or whose lists could not be read — from a scan.
async fn trees(
    running: Vec<Running>,
    scanner: &Scanner,
    reaper: &Arc<Reaper>,
    data_dir: &Path,
) -> HashMap<i32, Vec<ProcEntry>> {
    let (reaper, dir) = (Arc::clone(reaper), data_dir.to_owned());
    let listed = tokio::task::spawn_blocking(move || own_trees(running, &reaper, &dir)).await;
    let (mut trees, rest) = match listed {
        Ok(listed) => listed,
        Err(err) => {
            tracing::error!(%err, "reading the instances' processes failed");
            return HashMap::new();
        }
    };
    if !rest.is_empty() {
        let table = scanner.fresh().await;
        for running in rest {
            let pgid = running.leader.pgid as i32;
            let members = table.members(pgid, &running.id).into_iter();
            trees.insert(pgid, members.filter(|p| p.state != 'Z').collect());
        }
    }
    trees
}

/// The live processes of each of `running` whose leader is this daemon's
/// child (the one its status names, by start time), through the kernel's
/// lists of children; and the others, which only a scan can tell about.
/// Instances whose leader is gone are left out: their exit is on its way.
fn own_trees(
    running: Vec<Running>,
    reaper: &Reaper,
    data_dir: &Path,
) -> (HashMap<i32, Vec<ProcEntry>>, Vec<Running>) {
    let me = std::process::id() as i32;
    let (mut own, mut rest) = (Vec::new(), Vec::new());
    for running in running {
        let leader = running.leader;
        match process::read_entry(leader.pid as i32) {
            None => {}
            Some(entry)
                if entry.ppid == me
                    && entry.pgrp == leader.pgid as i32
                    && entry.start_ticks == leader.start_ticks =>
            {
                own.push((running, entry))
            }
            Some(_) => rest.push(running),
        }
    }
    let instances: Vec<Own> = (own.iter())
        .map(|(running, leader)| Own {
            id: &running.id,
            leader: *leader,
        })
        .collect();
    let found = lineage::trees(&instances, reaper, data_dir);
    let mut trees = HashMap::new();
    for ((running, _), tree) in own.into_iter().zip(found) {
        match tree {
            Some(tree) => {
                let live = tree.into_iter().filter(|p| p.state != 'Z');
                trees.insert(running.leader.pgid as i32, live.collect());
            }
            None => rest.push(running),
        }
    }
    (trees, rest)
}

/// Sums each tree (zombies are not counted) taken at `now`; CPU is
/// averaged since `previous`. A tree without a live process has no usage.
fn sample(trees: &HashMap<i32, Vec<ProcEntry>>, previous: &Sample, now: Instant) -> Sample {
    let totals: HashMap<i32, Totals> = trees
        .iter()
        .filter_map(|(&pgid, tree)| {
            let live = tree.iter().filter(|p| p.state != 'Z');
            let totals = live.fold(Totals::default(), |sum, p| Totals {
                cpu_ticks: sum.cpu_ticks + p.cpu_ticks,
                rss_pages: sum.rss_pages + p.rss_pages,
                processes: sum.processes + 1,
            });
            (totals.processes > 0).then_some((pgid, totals))
        })
        .collect();
    let ticks_per_second = rustix::param::clock_ticks_per_second() as f64;
    let page_size = rustix::param::page_size() as u64;
    let sampled_at = SystemTime::now();
    let usage = totals
        .iter()
        .map(|(&pgid, tree)| {
            let cpu_percent = previous.at.map_or(0.0, |at| {
                let before = previous.totals.get(&pgid).map_or(0, |t| t.cpu_ticks);
                let seconds = now.duration_since(at).as_secs_f64();
                tree.cpu_ticks.saturating_sub(before) as f64 / ticks_per_second / seconds * 100.0
            });
            let usage = Usage {
                rss_bytes: tree.rss_pages * page_size,
                cpu_percent,
                process_count: tree.processes,
                sampled_at,
            };
            (pgid, usage)
        })
        .collect();
    Sample {
        at: Some(now),
        totals,
        usage: Arc::new(usage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i32, state: char, cpu_ticks: u64, rss_pages: u64) -> ProcEntry {
        ProcEntry {
            pid,
            ppid: 1,
            pgrp: 100,
            state,
            threads: 1,
            start_ticks: 1,
            cpu_ticks,
            rss_pages,
        }
    }

    #[test]
    fn a_tree_sums_its_live_processes() {
        let tree = vec![
            entry(100, 'S', 10, 5),
            entry(101, 'R', 20, 7),
            entry(102, 'Z', 1000, 0),
        ];
        let first = sample(
            &HashMap::from([(100, tree)]),
            &Sample::default(),
            Instant::now(),
        );
        let usage = first.usage[&100];
        assert_eq!(usage.process_count, 2, "zombies are not counted");
        assert_eq!(usage.rss_bytes, 12 * rustix::param::page_size() as u64);
        assert_eq!(usage.cpu_percent, 0.0, "no CPU before a second sample");
    }

    #[test]
    fn cpu_is_averaged_since_the_previous_sample() {
        let ticks = rustix::param::clock_ticks_per_second();
        let start = Instant::now();
        let before = HashMap::from([(100, vec![entry(100, 'S', 10, 1)])]);
        let first = sample(&before, &Sample::default(), start);
        // Half a second of CPU over two seconds, in two processes now.
        let grown = vec![
            entry(100, 'S', 10 + ticks / 4, 1),
            entry(103, 'R', ticks / 4, 1),
        ];
        let later = start + Duration::from_secs(2);
        let second = sample(&HashMap::from([(100, grown)]), &first, later);
        let cpu = second.usage[&100].cpu_percent;
        assert!((cpu - 25.0).abs() < 0.01, "{cpu}");
    }

    #[test]
    fn a_tree_of_zombies_alone_has_no_usage() {
        let trees = HashMap::from([(100, vec![entry(100, 'Z', 5, 0)]), (200, Vec::new())]);
        let sampled = sample(&trees, &Sample::default(), Instant::now());
        assert!(sampled.usage.is_empty());
    }
}
