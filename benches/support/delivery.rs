//! Judging an event stream of the status bus as one subscriber received
//! it: every revision once and in order, or a RESYNC snapshot standing for
//! what was skipped — anything else is a failure — and how long each event
//! took from its publication (its `time`) to the subscriber.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use pbjson_types::Timestamp;

/// Failures kept word for word per subscriber; the rest are only counted.
const FAILURES_KEPT: usize = 5;

/// What one subscriber received.
pub struct Delivery {
    /// The revision it has everything up to, shared with whoever waits for
    /// it to catch up.
    progress: Arc<AtomicU64>,
    /// Events (not snapshots) received.
    pub events: u64,
    /// Snapshots received: the first starts the stream, every later one
    /// is a RESYNC.
    pub snapshots: u64,
    /// Revisions missing without a snapshot, repeated or out of order.
    pub failures: u64,
    /// The first [`FAILURES_KEPT`] failures in words.
    pub failed: Vec<String>,
    /// Publication to arrival of each event received while measuring.
    pub latencies: Vec<Duration>,
}

impl Delivery {
    /// A subscriber that has received nothing yet; `progress` follows the
    /// last revision it received.
    pub fn new(progress: Arc<AtomicU64>) -> Self {
        Self {
            progress,
            events: 0,
            snapshots: 0,
            failures: 0,
            failed: Vec::new(),
            latencies: Vec::new(),
        }
    }

    /// A snapshot at `revision`: the state up to it, whatever came before.
    pub fn snapshot(&mut self, revision: u64) {
        self.snapshots += 1;
        self.progress.store(revision, Ordering::Relaxed);
    }

    /// An event at `revision`, published at `published`; its latency is
    /// kept when `measuring`.
    pub fn event(&mut self, revision: u64, published: Option<SystemTime>, measuring: bool) {
        let last = self.progress.load(Ordering::Relaxed);
        if self.snapshots == 0 {
            self.fail(format!("event {revision} before any snapshot"));
        } else if revision != last + 1 {
            self.fail(format!(
                "event {revision} after {last}: {}",
                if revision > last {
                    "a gap"
                } else {
                    "out of order"
                }
            ));
        }
        self.events += 1;
        self.progress.store(revision.max(last), Ordering::Relaxed);
        if measuring && let Some(published) = published {
            let latency = SystemTime::now().duration_since(published);
            self.latencies.push(latency.unwrap_or_default());
        }
    }

    /// Something the stream should never carry.
    pub fn fail(&mut self, what: String) {
        self.failures += 1;
        if self.failed.len() < FAILURES_KEPT {
            self.failed.push(what);
        }
    }

    /// The revision it has everything up to.
    pub fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Snapshots after the first.
    pub fn resyncs(&self) -> u64 {
        self.snapshots.saturating_sub(1)
    }
}

/// The instant a protobuf timestamp stands for.
pub fn instant_of(time: &Timestamp) -> Option<SystemTime> {
    let seconds = u64::try_from(time.seconds).ok()?;
    let nanos = u32::try_from(time.nanos).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// The `time` of a StatusEvent in its JSON form (the first `"time"` key:
/// the event's own, which precedes the instance it carries), without
/// decoding the rest.
pub fn published_in_json(event: &str) -> Option<SystemTime> {
    const KEY: &str = "\"time\":";
    let start = event.find(KEY)? + KEY.len();
    let rest = &event[start..];
    let end = rest[1..].find('"')? + 2;
    let time: Timestamp = serde_json::from_str(&rest[..end]).ok()?;
    instant_of(&time)
}
