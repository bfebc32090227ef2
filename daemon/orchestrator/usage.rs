//! Resource usage of process groups, sampled from /proc in one pass for
//! all instances, and only when someone asks: at most once a second, so an
//! idle daemon spends nothing on it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use super::{process, status::Usage};

/// Samples younger than this are reused.
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

/// Usage per process group id, cached for [`FRESH_FOR`].
#[derive(Default)]
pub struct UsageSampler {
    last: Mutex<Option<Sample>>,
}

impl UsageSampler {
    /// Usage of every process group; CPU is averaged since the previous
    /// sample (0 on the first).
    pub fn sample(&self) -> Arc<HashMap<i32, Usage>> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sample) = last.as_ref().filter(|s| s.at.elapsed() < FRESH_FOR) {
            return sample.usage.clone();
        }
        let mut totals: HashMap<i32, GroupTotals> = HashMap::new();
        for entry in process::scan().into_iter().filter(|p| p.state != 'Z') {
            let group = totals.entry(entry.pgrp).or_default();
            group.cpu_ticks += entry.cpu_ticks;
            group.rss_pages += entry.rss_pages;
            group.processes += 1;
        }
        let now = Instant::now();
        let ticks_per_second = rustix::param::clock_ticks_per_second() as f64;
        let page_size = rustix::param::page_size() as u64;
        let sampled_at = SystemTime::now();
        let usage: HashMap<i32, Usage> = totals
            .iter()
            .map(|(&pgrp, group)| {
                let cpu_percent = last.as_ref().map_or(0.0, |previous| {
                    let before = previous.totals.get(&pgrp).map_or(0, |g| g.cpu_ticks);
                    let seconds = now.duration_since(previous.at).as_secs_f64();
                    group.cpu_ticks.saturating_sub(before) as f64 / ticks_per_second / seconds
                        * 100.0
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
        let usage = Arc::new(usage);
        *last = Some(Sample {
            at: now,
            totals,
            usage: usage.clone(),
        });
        usage
    }
}
