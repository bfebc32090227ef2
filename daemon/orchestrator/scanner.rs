//! The one /proc scanner of the daemon. Stops, exits and usage sampling all
//! need the process table; each asks here instead of scanning by itself.
//! Scans run off the async workers (on the blocking pool), one at a time,
//! and every caller waiting when a scan starts is answered from that scan —
//! so a thousand concurrent stops cost a handful of scans, not thousands,
//! and never occupy more than one thread.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::process::{MarkerCache, ProcTable};

/// A finished scan: its number and the table it read.
#[derive(Clone, Default)]
struct Scan {
    number: u64,
    table: Arc<ProcTable>,
}

/// What the scanner is doing.
#[derive(Default)]
struct State {
    /// Scans started so far; the running one (if any) has this number.
    started: u64,
    /// Whether a scan runs now.
    running: bool,
    /// Whether someone asked while a scan ran, and so needs the next one.
    again: bool,
    /// Whether the next scan must read instance markers (someone looks for
    /// an instance's members, not only for usage).
    markers_wanted: bool,
    /// Environment markers, kept between scans.
    markers: MarkerCache,
}

/// Shares /proc scans among everyone who needs one at the same time.
pub struct Scanner {
    state: Mutex<State>,
    done: watch::Sender<Scan>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            done: watch::Sender::new(Scan::default()),
        }
    }
}

impl Scanner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The process table read by a scan that started after this call: a
    /// scan already running is too old (it may predate a signal the caller
    /// just sent), so the caller waits for the next. With `markers`, the
    /// table also knows which escaped processes carry which instance's
    /// marker (needed for [`ProcTable::members`], not for usage).
    pub async fn fresh(self: &Arc<Self>, markers: bool) -> Arc<ProcTable> {
        let mut done = self.done.subscribe();
        let wanted = {
            let mut state = self.lock();
            state.markers_wanted |= markers;
            if state.running {
                state.again = true;
                state.started + 1
            } else {
                state.running = true;
                state.started += 1;
                tokio::spawn(Arc::clone(self).run());
                state.started
            }
        };
        match done.wait_for(|scan| scan.number >= wanted).await {
            Ok(scan) => Arc::clone(&scan.table),
            // The sender lives in `self`, which the caller holds.
            Err(_) => unreachable!("the scanner outlives its callers"),
        }
    }

    /// Runs scans until nobody waits for another one.
    async fn run(self: Arc<Self>) {
        loop {
            let (number, with_markers, mut markers) = {
                let mut state = self.lock();
                let with_markers = std::mem::take(&mut state.markers_wanted);
                (
                    state.started,
                    with_markers,
                    std::mem::take(&mut state.markers),
                )
            };
            let scanned = tokio::task::spawn_blocking(move || {
                let table = ProcTable::scan(with_markers.then_some(&mut markers));
                (table, markers)
            })
            .await;
            let table = match scanned {
                Ok((table, markers)) => {
                    self.lock().markers = markers;
                    table
                }
                Err(err) => {
                    tracing::error!(%err, "the /proc scan failed");
                    ProcTable::default()
                }
            };
            self.done.send_replace(Scan {
                number,
                table: Arc::new(table),
            });
            let mut state = self.lock();
            if state.again {
                state.again = false;
                state.started += 1;
            } else {
                state.running = false;
                return;
            }
        }
    }
}
