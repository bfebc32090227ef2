//! The store's single writer: actors hand it changes without waiting (so
//! a state change never blocks on disk in the middle of a transition), and
//! whoever must not answer before the change is durable — every RPC —
//! waits for the commit watermark. Changes waiting at the same time are
//! committed in one transaction (group commit), in submission order.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use tokio::sync::{mpsc, watch};

use super::{Op, Store, StoreError};

/// Most changes committed in one transaction.
const BATCH: usize = 512;

/// How far writing has got.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Every change up to this sequence number has been handled.
    done: u64,
    /// The latest failed batch: its sequence range and the error.
    failed: Option<(u64, u64, Arc<str>)>,
}

/// Submits changes to the writer task and waits for them.
pub struct StoreWriter {
    /// The queue and the number of the last change put on it, locked
    /// together so that the queue is always in number order.
    queue: Mutex<(mpsc::UnboundedSender<(u64, Op)>, u64)>,
    progress: watch::Receiver<Progress>,
    /// The database file, for error messages.
    path: PathBuf,
}

impl StoreWriter {
    /// Starts the writer task over `store`; `boot_id` is recorded with
    /// every process identity.
    pub fn start(store: Arc<Store>, boot_id: String) -> Self {
        let path = store.path().to_owned();
        let (sender, mut receiver) = mpsc::unbounded_channel::<(u64, Op)>();
        let (progress_sender, progress) = watch::channel(Progress::default());
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while receiver.recv_many(&mut batch, BATCH).await > 0 {
                let first = batch.first().map_or(0, |(seq, _)| *seq);
                let last = batch.last().map_or(0, |(seq, _)| *seq);
                let ops: Vec<Op> = batch.drain(..).map(|(_, op)| op).collect();
                let result = store.apply(&ops, &boot_id).await;
                progress_sender.send_modify(|progress| {
                    progress.done = last;
                    if let Err(err) = &result {
                        tracing::error!(%err, "state not saved");
                        let cause = match &err {
                            StoreError::Write { cause, .. } => cause.clone(),
                            other => other.to_string(),
                        };
                        progress.failed = Some((first, last, cause.into()));
                    }
                });
            }
        });
        Self {
            queue: Mutex::new((sender, 0)),
            progress,
            path,
        }
    }

    /// Queues a change without waiting.
    pub fn submit(&self, op: Op) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.1 += 1;
        let seq = queue.1;
        if queue.0.send((seq, op)).is_err() {
            tracing::error!("the state writer is gone; a change was not saved");
        }
    }

    /// Waits until every change submitted so far is written; fails if the
    /// batch holding one of them failed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let target = self.queue.lock().unwrap_or_else(|p| p.into_inner()).1;
        let mut progress = self.progress.clone();
        let reached = progress
            .wait_for(|progress| progress.done >= target)
            .await
            .map_err(|_| StoreError::Write {
                path: self.path.clone(),
                cause: "the state writer stopped".to_owned(),
            })?
            .clone();
        match reached.failed {
            Some((first, last, cause)) if (first..=last).contains(&target) => {
                Err(StoreError::Write {
                    path: self.path.clone(),
                    cause: cause.to_string(),
                })
            }
            _ => Ok(()),
        }
    }
}
