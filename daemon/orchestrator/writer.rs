//! The single writer of instance records. Actors hand it changes without
//! waiting (so a state change never blocks on disk in the middle of a
//! transition); whoever must not answer before the changes are durable —
//! every RPC — asks it for a flush and waits for the answer. The task owns
//! everything not yet written. Changes waiting at the same time are
//! committed in one transaction (group commit), in order. A change nobody
//! waits for yet is held for up to [`LINGER`], so that what follows shares
//! its commit: a stop's STOPPING and STOPPED are one commit when the
//! process exits promptly. A failed commit fails the flushes waiting on it
//! and is tried again (with what came after) until it succeeds.
//!
//! Changes and flushes come on two queues, so that a change arriving while
//! the task lingers does not wake it (only a flush or the end of the
//! linger does: each wake-up is a thread hop on a path that creates and
//! stops instances). A flush covers every change sent before it by anyone:
//! such a send happened before the flush was sent, so the changes queue
//! holds it when the flush is taken, and the task drains that queue after
//! taking the flushes.

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};

use super::records::{InstanceRecords, Op, RecordsError};

/// Most changes taken from the queue at once while nobody waits.
const BATCH: usize = 512;
/// First pause before a failed write is tried again; it doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest pause between two tries of a failed write.
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Longest time a change is held before its commit while nobody waits
/// for it.
const LINGER: Duration = Duration::from_millis(2);

type Flush = oneshot::Sender<Result<(), RecordsError>>;

/// Submits changes to the writer task and waits for them.
#[derive(Clone)]
pub struct RecordWriter {
    changes: mpsc::UnboundedSender<Op>,
    flushes: mpsc::UnboundedSender<Flush>,
}

impl RecordWriter {
    /// Starts the writer task over `records`; `boot_id` is recorded with
    /// every process identity. The task ends when every handle is gone.
    pub fn start<R: InstanceRecords>(records: Arc<R>, boot_id: String) -> Self {
        let (changes, change_queue) = mpsc::unbounded_channel();
        let (flushes, flush_queue) = mpsc::unbounded_channel();
        let queues = Queues {
            changes: change_queue,
            flushes: flush_queue,
        };
        tokio::spawn(write(records, boot_id, queues));
        Self { changes, flushes }
    }

    /// Queues a change without waiting.
    pub fn submit(&self, op: Op) {
        if self.changes.send(op).is_err() {
            tracing::error!("the state writer is gone; a change was not saved");
        }
    }

    /// Waits until every change submitted so far (by anyone) is written;
    /// fails with the cause as soon as a write that holds one of them
    /// fails. The writer keeps trying such a write; a later flush succeeds
    /// once it has.
    pub async fn flush(&self) -> Result<(), RecordsError> {
        let gone = || RecordsError("the state writer stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        self.flushes.send(reply).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

struct Queues {
    changes: mpsc::UnboundedReceiver<Op>,
    flushes: mpsc::UnboundedReceiver<Flush>,
}

/// The writer task.
async fn write<R: InstanceRecords>(records: Arc<R>, boot_id: String, mut queues: Queues) {
    // Changes not written yet, in order, and the flushes waiting for them.
    let mut pending: Vec<Op> = Vec::new();
    let mut flushes: Vec<Flush> = Vec::new();
    let mut retry = RETRY_FIRST;
    loop {
        if pending.is_empty() {
            tokio::select! {
                count = queues.changes.recv_many(&mut pending, BATCH) => {
                    if count == 0 {
                        return;
                    }
                    // Nobody waits yet: give what follows a moment.
                    let linger = tokio::time::sleep(LINGER);
                    tokio::select! {
                        flush = queues.flushes.recv() => flushes.extend(flush),
                        () = linger => {}
                    }
                }
                flush = queues.flushes.recv() => match flush {
                    Some(flush) => flushes.push(flush),
                    None => return,
                },
            }
        } else {
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
        }
        // Flushes first, then every change: each one sent before one of
        // these flushes is in the queue by now, and all are committed
        // before the flushes are answered.
        while let Ok(flush) = queues.flushes.try_recv() {
            flushes.push(flush);
        }
        while let Ok(op) = queues.changes.try_recv() {
            pending.push(op);
        }
        let result = if pending.is_empty() {
            Ok(())
        } else {
            records.apply(&pending, &boot_id).await
        };
        match &result {
            Ok(()) => {
                pending.clear();
                retry = RETRY_FIRST;
            }
            Err(err) => tracing::error!(%err, retry_in = ?retry, "state not saved; trying again"),
        }
        for reply in flushes.drain(..) {
            let _ = reply.send(result.clone());
        }
    }
}
