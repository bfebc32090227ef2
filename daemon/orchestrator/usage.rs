//! Resource usage of process groups, from the shared /proc scans, in one
//! pass for all instances. Reads never scan: they get the latest sample at
//! once, and a read that finds it older than a second asks the sampler
//! task for a new one, which arrives in the background. An idle daemon
//! spends nothing on usage; one that is read often samples at most once a
//! second.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{mpsc, watch};

use super::{process::ProcTable, scanner::Scanner, status::Usage};

/// Samples younger than this are not refreshed.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Totals of one process group at one moment.
#[derive(Clone, Copy, Default)]
struct GroupTotals {
    cpu_ticks: u64,
    rss_pages: u64,
    processes: u32,
}

#[derive(Default)]
struct Sample {
    /// When it was taken; None before the first.
    at: Option<Instant>,
    totals: HashMap<i32, GroupTotals>,
    usage: Arc<HashMap<i32, Usage>>,
}

/// Usage per process group id, refreshed in the background when read.
#[derive(Clone)]
pub struct UsageSampler {
    latest: watch::Receiver<Sample>,
    /// Asks the sampler task for a new sample (a full queue: one is coming).
    refresh: mpsc::Sender<()>,
}

impl UsageSampler {
    /// Starts the sampler task, which reads the process table through
    /// `scanner` when asked; it ends with the sampler.
    pub fn start(scanner: Scanner) -> Self {
        let (publish, latest) = watch::channel(Sample::default());
        let (refresh, mut asked) = mpsc::channel(1);
        tokio::spawn(async move {
            while asked.recv().await.is_some() {
                let table = scanner.fresh(false).await;
                publish.send_modify(|last| *last = sample(&table, last));
            }
        });
        Self { latest, refresh }
    }

    /// The latest usage of every process group (empty before the first
    /// sample); CPU is averaged between the last two samples. Never waits:
    /// a stale sample is returned as it is and refreshed in the background.
    pub fn latest(&self) -> Arc<HashMap<i32, Usage>> {
        let latest = self.latest.borrow();
        if latest.at.is_none_or(|at| at.elapsed() >= FRESH_FOR) {
            let _ = self.refresh.try_send(());
        }
        Arc::clone(&latest.usage)
    }
}

/// Sums `table` per process group; CPU is averaged since `previous`.
fn sample(table: &ProcTable, previous: &Sample) -> Sample {
    let mut totals: HashMap<i32, GroupTotals> = HashMap::new();
    for entry in table.entries().iter().filter(|p| p.state != 'Z') {
        let group = totals.entry(entry.pgrp).or_default();
        group.cpu_ticks += entry.cpu_ticks;
        group.rss_pages += entry.rss_pages;
        group.processes += 1;
    }
    let now = Instant::now();
    let ticks_per_second = rustix::param::clock_ticks_per_second() as f64;
    let page_size = rustix::param::page_size() as u64;
    let sampled_at = SystemTime::now();
    let usage = totals
        .iter()
        .map(|(&pgrp, group)| {
            let cpu_percent = previous.at.map_or(0.0, |at| {
                let before = previous.totals.get(&pgrp).map_or(0, |g| g.cpu_ticks);
                let seconds = now.duration_since(at).as_secs_f64();
                group.cpu_ticks.saturating_sub(before) as f64 / ticks_per_second / seconds * 100.0
            });
            let usage = Usage {
                rss_bytes: group.rss_pages * page_size,
                cpu_percent,
                process_count: group.processes,
                sampled_at,
            };
            (pgrp, usage)
        })
        .collect();
    Sample {
        at: Some(now),
        totals,
        usage: Arc::new(usage),
    }
}
