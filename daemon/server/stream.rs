//! Server streams: one pump for both event streams (`WatchStatus` and
//! `WatchSyncEvents`), fed by a bus subscription, and one for streams fed
//! by a domain task (`StreamLogs`). Every stream ends when its client goes
//! or the daemon stops.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, codegen::BoxStream};

use crate::bus::{self, Revisioned, Start, Subscription};

/// Most events sent in one message.
const EVENT_BATCH: usize = 256;
/// Messages a stream may have ready before its pump waits for the client.
const STREAM_QUEUE: usize = 16;

/// How one event stream renders a bus into messages.
pub(super) trait Feed: Send + Sync + 'static {
    /// The bus's events.
    type Event: Revisioned + Send + Sync + 'static;
    /// The bus owner's snapshot.
    type Snapshot: bus::Snapshot + Send + 'static;
    /// The stream's message.
    type Message: Send + 'static;

    /// The message carrying a snapshot.
    fn snapshot(&self, snapshot: &Self::Snapshot) -> Self::Message;
    /// The message carrying `events`, or None when the stream's filter
    /// leaves none of them.
    fn events(&self, events: &[Arc<Self::Event>]) -> Option<Self::Message>;
    /// A new snapshot, for a client that fell behind.
    fn resync(&self) -> Self::Snapshot;
}

/// Streams `subscription` through `feed`: its start (a snapshot, or the
/// events after `since`), then every event in revision order, batching
/// what is already waiting. A client that falls so far behind that the bus
/// drops events for it gets a RESYNC snapshot, never a silent gap.
pub(super) fn events<F: Feed>(
    subscription: Subscription<F::Event, F::Snapshot>,
    since: u64,
    feed: F,
    stop: CancellationToken,
) -> BoxStream<F::Message> {
    let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = sender.closed() => {}
            () = pump(subscription, since, &feed, &sender) => {}
        }
    });
    Box::pin(ReceiverStream::new(receiver))
}

type Sender<M> = mpsc::Sender<Result<M, Status>>;

/// Sends `message`; false when the client is gone.
async fn send<M>(sender: &Sender<M>, message: M) -> bool {
    sender.send(Ok(message)).await.is_ok()
}

async fn pump<F: Feed>(
    subscription: Subscription<F::Event, F::Snapshot>,
    since: u64,
    feed: &F,
    sender: &Sender<F::Message>,
) {
    let mut events = subscription.events;
    let mut last = since;
    match subscription.start {
        Start::Snapshot(snapshot) => {
            last = bus::Snapshot::revision(&snapshot);
            if !send(sender, feed.snapshot(&snapshot)).await {
                return;
            }
        }
        Start::Replay(replay) => {
            for chunk in replay.chunks(EVENT_BATCH) {
                last = chunk.last().map_or(last, |event| event.revision());
                if let Some(message) = feed.events(chunk)
                    && !send(sender, message).await
                {
                    return;
                }
            }
        }
    }
    while let Some(batch) = bus::next_batch(&mut events, &mut last, EVENT_BATCH).await {
        if let Some(message) = feed.events(&batch.events)
            && !send(sender, message).await
        {
            return;
        }
        if batch.lagged {
            let snapshot = feed.resync();
            last = bus::Snapshot::revision(&snapshot);
            if !send(sender, feed.snapshot(&snapshot)).await {
                return;
            }
        }
    }
}

/// Streams what a domain task sends on `items`, each turned into messages
/// by `render`.
pub(super) fn forward<T: Send + 'static, M: Send + 'static>(
    mut items: mpsc::Receiver<T>,
    render: impl Fn(T) -> Vec<M> + Send + 'static,
    stop: CancellationToken,
) -> BoxStream<M> {
    let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                () = stop.cancelled() => return,
                () = sender.closed() => return,
                item = items.recv() => item,
            };
            let Some(item) = item else { return };
            for message in render(item) {
                if !send(&sender, message).await {
                    return;
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(receiver))
}
