//! Resource usage of process groups, from the shared /proc scans, in one
//! pass for all instances. Reads never scan: they get the latest sample at
//! once, and a read that finds it older than a second has it refreshed in
//! the background. An idle daemon spends nothing on usage; one that is read
//! often samples at most once a second.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

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

struct Sample {
    at: Instant,
    totals: HashMap<i32, GroupTotals>,
    usage: Arc<HashMap<i32, Usage>>,
}

#[derive(Default)]
struct State {
    last: Option<Sample>,
    refreshing: bool,
}

/// Usage per process group id, refreshed in the background when read.
pub struct UsageSampler {
    state: Mutex<State>,
    scanner: Arc<Scanner>,
}

impl UsageSampler {
    /// A sampler that reads the process table through `scanner`.
    pub fn new(scanner: Arc<Scanner>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            scanner,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The latest usage of every process group (empty before the first
    /// sample); CPU is averaged between the last two samples. Never waits:
    /// a stale sample is returned as it is and refreshed in the background.
    pub fn latest(self: &Arc<Self>) -> Arc<HashMap<i32, Usage>> {
        let mut state = self.lock();
        let stale = state
            .last
            .as_ref()
            .is_none_or(|sample| sample.at.elapsed() >= FRESH_FOR);
        if stale && !state.refreshing {
            state.refreshing = true;
            tokio::spawn(Arc::clone(self).refresh());
        }
        state
            .last
            .as_ref()
            .map(|sample| Arc::clone(&sample.usage))
            .unwrap_or_default()
    }

    /// Takes a new sample.
    async fn refresh(self: Arc<Self>) {
        let table = self.scanner.fresh(false).await;
        let mut state = self.lock();
        state.last = Some(sample(&table, state.last.as_ref()));
        state.refreshing = false;
    }
}

/// Sums `table` per process group; CPU is averaged since `previous`.
fn sample(table: &ProcTable, previous: Option<&Sample>) -> Sample {
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
            let cpu_percent = previous.map_or(0.0, |previous| {
                let before = previous.totals.get(&pgrp).map_or(0, |g| g.cpu_ticks);
                let seconds = now.duration_since(previous.at).as_secs_f64();
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
        at: now,
        totals,
        usage: Arc::new(usage),
    }
}
