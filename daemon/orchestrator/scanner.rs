//! The one /proc scanner of the daemon. Stops, exits and the usage of
//! re-adopted instances need the process table; each asks here instead of
//! scanning by itself.
//! One task owns the scans: it runs them off the async workers (on the
//! blocking pool), one at a time, and answers everyone who asked before a
//! scan started from that scan — so a thousand concurrent stops cost a
//! handful of scans, not thousands, and never occupy more than one thread.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::process::{MarkerCache, ProcTable};

/// Most requests one scan answers (the rest wait for the next scan).
const WAITING: usize = 4096;

/// Where a requested table is sent.
type Reply = oneshot::Sender<Arc<ProcTable>>;

/// Asks the scanner task for fresh process tables.
#[derive(Clone)]
pub struct Scanner {
    requests: mpsc::UnboundedSender<Reply>,
}

impl Scanner {
    /// Starts the scanner task; it ends when every handle is gone.
    pub fn start() -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        tokio::spawn(scan(receiver));
        Self { requests }
    }

    /// The process table read by a scan that started after this call: a
    /// scan already running is too old (it may predate a signal the caller
    /// just sent), so the caller waits for the next. The table knows which
    /// escaped processes carry which instance's marker (for
    /// [`ProcTable::members`]).
    pub async fn fresh(&self) -> Arc<ProcTable> {
        let (reply, table) = oneshot::channel();
        if self.requests.send(reply).is_err() {
            // Only at the very end of the runtime: nothing is running.
            return Arc::default();
        }
        table.await.unwrap_or_default()
    }
}

/// The scanner task: every request waiting when a scan starts is
/// answered from it.
async fn scan(mut requests: mpsc::UnboundedReceiver<Reply>) {
    // Environment markers, kept between scans.
    let mut cache = MarkerCache::default();
    let mut waiting = Vec::new();
    while requests.recv_many(&mut waiting, WAITING).await > 0 {
        let mut markers = std::mem::take(&mut cache);
        let scanned = tokio::task::spawn_blocking(move || {
            let table = ProcTable::scan(Some(&mut markers));
            (table, markers)
        })
        .await;
        let table = match scanned {
            Ok((table, markers)) => {
                cache = markers;
                Arc::new(table)
            }
            Err(err) => {
                tracing::error!(%err, "the /proc scan failed");
                Arc::default()
            }
        };
        for reply in waiting.drain(..) {
            let _ = reply.send(Arc::clone(&table));
        }
    }
}
