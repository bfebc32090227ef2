//! The one /proc scanner of the daemon. Stops, exits and usage sampling all
//! need the process table; each asks here instead of scanning by itself.
//! One task owns the scans: it runs them off the async workers (on the
//! blocking pool), one at a time, and answers everyone who asked before a
//! scan started from that scan — so a thousand concurrent stops cost a
//! handful of scans, not thousands, and never occupy more than one thread.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::process::{MarkerCache, ProcTable};

/// Most requests one scan answers (the rest wait for the next scan).
const WAITING: usize = 4096;

/// A request for a table read after it was made.
struct Request {
    /// Whether the table must know the instance markers.
    markers: bool,
    reply: oneshot::Sender<Arc<ProcTable>>,
}

/// Asks the scanner task for fresh process tables.
#[derive(Clone)]
pub struct Scanner {
    requests: mpsc::UnboundedSender<Request>,
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
    /// just sent), so the caller waits for the next. With `markers`, the
    /// table also knows which escaped processes carry which instance's
    /// marker (needed for [`ProcTable::members`], not for usage).
    pub async fn fresh(&self, markers: bool) -> Arc<ProcTable> {
        let (reply, table) = oneshot::channel();
        let request = Request { markers, reply };
        if self.requests.send(request).is_err() {
            // Only at the very end of the runtime: nothing is running.
            return Arc::default();
        }
        table.await.unwrap_or_default()
    }
}

/// The scanner task: every request waiting when a scan starts is
/// answered from it.
async fn scan(mut requests: mpsc::UnboundedReceiver<Request>) {
    // Environment markers, kept between scans.
    let mut cache = MarkerCache::default();
    let mut waiting = Vec::new();
    while requests.recv_many(&mut waiting, WAITING).await > 0 {
        let with_markers = waiting.iter().any(|request| request.markers);
        let mut markers = std::mem::take(&mut cache);
        let scanned = tokio::task::spawn_blocking(move || {
            let table = ProcTable::scan(with_markers.then_some(&mut markers));
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
        for request in waiting.drain(..) {
            let _ = request.reply.send(Arc::clone(&table));
        }
    }
}
