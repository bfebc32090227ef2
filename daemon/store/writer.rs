//! The store's single writer: actors hand it changes without waiting (so
//! a state change never blocks on disk in the middle of a transition), and
//! whoever must not answer before the change is durable — every RPC —
//! waits for the commit watermark. Changes waiting at the same time are
//! committed in one transaction (group commit), in submission order. A
//! change nobody waits for yet is held for up to [`LINGER`], so that what
//! follows it shares its commit: a stop's STOPPING and STOPPED are one
//! commit when the process exits promptly. A failed commit is reported to
//! its waiters and tried again (with what came after it) until it
//! succeeds.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{Notify, mpsc, watch};

use super::{Op, Store, StoreError};

/// Most changes taken from the queue at once (a retry takes what is
/// left over as well).
const BATCH: usize = 512;
/// First pause before a failed write is tried again; it doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest pause between two tries of a failed write.
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Longest time a change is held before its commit while nobody waits
/// for it.
const LINGER: Duration = Duration::from_millis(2);

/// How far writing has got.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Every change up to this sequence number is written.
    done: u64,
    /// The changes after `done` up to this number could not be written
    /// (the cause); they are kept and tried again.
    failing: Option<(u64, Arc<str>)>,
}

/// Submits changes to the writer task and waits for them.
pub struct StoreWriter {
    /// The queue and the number of the last change put on it, locked
    /// together so that the queue is always in number order.
    queue: Mutex<(mpsc::UnboundedSender<(u64, Op)>, u64)>,
    progress: watch::Receiver<Progress>,
    /// Tells the writer that someone waits: commit now, do not linger.
    waited_for: Arc<Notify>,
    /// The database file, for error messages.
    path: PathBuf,
}

impl StoreWriter {
    /// Starts the writer task over `store`; `boot_id` is recorded with
    /// every process identity. A write that fails is reported to whoever
    /// waits for it and tried again, with whatever was queued since, until
    /// it succeeds: a change is never left only in memory.
    pub fn start(store: Arc<Store>, boot_id: String) -> Self {
        let path = store.path().to_owned();
        let (sender, mut receiver) = mpsc::unbounded_channel::<(u64, Op)>();
        let (progress_sender, progress) = watch::channel(Progress::default());
        let waited_for = Arc::new(Notify::new());
        let wake = waited_for.clone();
        tokio::spawn(async move {
            let mut received = Vec::with_capacity(BATCH);
            // Changes not yet written, in order, and the number of the last.
            let mut pending: Vec<Op> = Vec::new();
            let mut last = 0;
            let mut retry = RETRY_FIRST;
            loop {
                if pending.is_empty() {
                    if receiver.recv_many(&mut received, BATCH).await == 0 {
                        break;
                    }
                    tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep(LINGER) => {}
                    }
                } else {
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
                while received.len() < BATCH
                    && let Ok(change) = receiver.try_recv()
                {
                    received.push(change);
                }
                if let Some((seq, _)) = received.last() {
                    last = *seq;
                }
                pending.extend(received.drain(..).map(|(_, op)| op));
                match store.apply(&pending, &boot_id).await {
                    Ok(()) => {
                        pending.clear();
                        retry = RETRY_FIRST;
                        progress_sender.send_modify(|progress| {
                            progress.done = last;
                            progress.failing = None;
                        });
                    }
                    Err(err) => {
                        tracing::error!(%err, retry_in = ?retry, "state not saved; trying again");
                        let cause = match &err {
                            StoreError::Write { cause, .. } => cause.clone(),
                            other => other.to_string(),
                        };
                        progress_sender.send_modify(|progress| {
                            progress.failing = Some((last, cause.into()));
                        });
                    }
                }
            }
        });
        Self {
            queue: Mutex::new((sender, 0)),
            progress,
            waited_for,
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

    /// Waits until every change submitted so far is written; fails (naming
    /// the file and the cause) as soon as a write that holds one of them
    /// fails. The writer keeps trying such a write; a later flush succeeds
    /// once it has.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let target = self.queue.lock().unwrap_or_else(|p| p.into_inner()).1;
        let mut progress = self.progress.clone();
        if progress.borrow().done < target {
            self.waited_for.notify_one();
        }
        let reached = progress
            .wait_for(|progress| {
                progress.done >= target
                    || progress
                        .failing
                        .as_ref()
                        .is_some_and(|(upto, _)| *upto >= target)
            })
            .await
            .map_err(|_| StoreError::Write {
                path: self.path.clone(),
                cause: "the state writer stopped".to_owned(),
            })?
            .clone();
        match reached.failing {
            Some((_, cause)) if reached.done < target => Err(StoreError::Write {
                path: self.path.clone(),
                cause: cause.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::{
        orchestrator::status::InstanceState,
        store::tests::{count, open_store, upsert},
    };

    /// A writer over a new store (the directory is kept while it is used).
    async fn start_writer() -> (tempfile::TempDir, Arc<Store>, StoreWriter) {
        let (dir, store) = open_store().await;
        let store = Arc::new(store);
        let writer = StoreWriter::start(store.clone(), "boot".to_owned());
        (dir, store, writer)
    }

    #[tokio::test]
    async fn a_change_nobody_waits_for_is_written_all_the_same() {
        let (_dir, store, writer) = start_writer().await;
        writer.submit(upsert("a", InstanceState::Running, None));
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(&store, "SELECT count(*) FROM instances").await == 0 {
            assert!(
                Instant::now() < deadline,
                "a change never flushed was never written"
            );
            tokio::time::sleep(LINGER).await;
        }
    }

    #[tokio::test]
    async fn a_flush_returns_once_everything_submitted_is_written() {
        let (_dir, store, writer) = start_writer().await;
        writer.submit(upsert("a", InstanceState::Stopping, None));
        writer.submit(upsert("a", InstanceState::Stopped, None));
        writer.submit(upsert("b", InstanceState::Running, None));
        writer.flush().await.unwrap();
        let stopped = "SELECT count(*) FROM instances WHERE id = 'a' AND state = 'stopped'";
        assert_eq!(count(&store, stopped).await, 1);
        assert_eq!(count(&store, "SELECT count(*) FROM instances").await, 2);
        assert_eq!(
            count(&store, "SELECT count(*) FROM instance_events").await,
            3
        );
    }
}
