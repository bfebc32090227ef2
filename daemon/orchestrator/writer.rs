//! The single writer of instance records. Actors hand it changes without
//! waiting (so a state change never blocks on disk in the middle of a
//! transition); whoever must not answer before the changes are durable —
//! every RPC — sends a flush behind them and waits for its answer. The
//! task owns everything not yet written: changes and flushes travel on one
//! queue, so a flush is answered once every change queued before it is
//! committed, by anyone. Changes waiting at the same time are committed in
//! one transaction (group commit), in order. A change nobody waits for yet
//! is held for up to [`LINGER`], so that what follows shares its commit: a
//! stop's STOPPING and STOPPED are one commit when the process exits
//! promptly. A failed commit fails the flushes waiting on it and is tried
//! again (with what came after) until it succeeds.

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};

use super::records::{InstanceRecords, Op, RecordsError};

/// Most messages taken from the queue at once.
const BATCH: usize = 512;
/// First pause before a failed write is tried again; it doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest pause between two tries of a failed write.
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Longest time a change is held before its commit while nobody waits
/// for it.
const LINGER: Duration = Duration::from_millis(2);

enum Message {
    Change(Op),
    Flush(oneshot::Sender<Result<(), RecordsError>>),
}

/// Submits changes to the writer task and waits for them.
#[derive(Clone)]
pub struct RecordWriter {
    queue: mpsc::UnboundedSender<Message>,
}

impl RecordWriter {
    /// Starts the writer task over `records`; `boot_id` is recorded with
    /// every process identity. The task ends when every handle is gone.
    pub fn start<R: InstanceRecords>(records: Arc<R>, boot_id: String) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(write(records, boot_id, receiver));
        Self { queue }
    }

    /// Queues a change without waiting.
    pub fn submit(&self, op: Op) {
        if self.queue.send(Message::Change(op)).is_err() {
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
        self.queue.send(Message::Flush(reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// The writer task.
async fn write<R: InstanceRecords>(
    records: Arc<R>,
    boot_id: String,
    mut queue: mpsc::UnboundedReceiver<Message>,
) {
    let mut received = Vec::with_capacity(BATCH);
    // Changes not written yet, in order, and the flushes waiting for them.
    let mut pending: Vec<Op> = Vec::new();
    let mut flushes = Vec::new();
    let mut retry = RETRY_FIRST;
    loop {
        if pending.is_empty() {
            if queue.recv_many(&mut received, BATCH).await == 0 {
                return;
            }
            linger(&mut queue, &mut received).await;
        } else {
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
        }
        while received.len() < BATCH
            && let Ok(message) = queue.try_recv()
        {
            received.push(message);
        }
        for message in received.drain(..) {
            match message {
                Message::Change(op) => pending.push(op),
                Message::Flush(reply) => flushes.push(reply),
            }
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

/// Waits up to [`LINGER`] for more changes unless someone already waits
/// for a flush.
async fn linger(queue: &mut mpsc::UnboundedReceiver<Message>, received: &mut Vec<Message>) {
    let deadline = tokio::time::Instant::now() + LINGER;
    while !received
        .iter()
        .any(|message| matches!(message, Message::Flush(_)))
        && received.len() < BATCH
    {
        tokio::select! {
            count = queue.recv_many(received, BATCH - received.len()) => if count == 0 { return },
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}
