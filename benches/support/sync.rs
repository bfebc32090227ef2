//! What the sync benchmarks share: the Sync client, filling a set with
//! templates, waiting until a daemon has nothing left to reconcile (so
//! that one measurement's aftermath is not timed in the next), and
//! following `IMPORTED` events.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use outpost::{
    endpoint::{AuthChannel, Connection},
    proto::v1::{
        self as pb, SyncEventKind, content_key, sync_client::SyncClient,
        watch_sync_events_response::Payload,
    },
};
use tokio::{task::JoinSet, time::timeout};
use tonic::Streaming;

use super::BoxError;

/// A Sync client.
pub type Sync = SyncClient<AuthChannel>;

/// How long to wait for one expected event, or for a daemon to settle.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
/// `PutTemplate` calls kept in flight while filling a set.
const PUT_IN_FLIGHT: usize = 16;

/// Waits until the daemon reports no dirty path; fails after
/// [`EVENT_TIMEOUT`].
pub async fn settle(sync: &mut Sync) -> Result<(), BoxError> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let status = sync
            .get_sync_status(pb::GetSyncStatusRequest {})
            .await?
            .into_inner();
        if status.dirty_count == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} paths still dirty after {EVENT_TIMEOUT:?}",
                status.dirty_count
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Opens a `WatchSyncEvents` stream of `IMPORTED` events and reads its
/// initial snapshot.
pub async fn watch_imports(
    connection: &Connection,
) -> Result<Streaming<pb::WatchSyncEventsResponse>, BoxError> {
    let mut stream = connection
        .sync()
        .watch_sync_events(pb::WatchSyncEventsRequest {
            since_revision: 0,
            kinds: vec![SyncEventKind::Imported as i32],
        })
        .await?
        .into_inner();
    match stream.message().await? {
        Some(pb::WatchSyncEventsResponse {
            payload: Some(Payload::Snapshot(_)),
        }) => Ok(stream),
        other => Err(format!("WatchSyncEvents began with {other:?}, not a snapshot").into()),
    }
}

/// Reads `imports` until template `title` has been imported; fails after
/// [`EVENT_TIMEOUT`].
pub async fn wait_for_import(
    imports: &mut Streaming<pb::WatchSyncEventsResponse>,
    title: &str,
) -> Result<(), BoxError> {
    let imported = |event: &pb::SyncEvent| {
        matches!(event.key.as_ref().and_then(|k| k.key.as_ref()),
            Some(content_key::Key::Template(key)) if key.title == title)
    };
    let read = async {
        loop {
            let message = imports.message().await?.ok_or("WatchSyncEvents ended")?;
            match message.payload {
                Some(Payload::Events(batch)) if batch.events.iter().any(imported) => return Ok(()),
                Some(Payload::Snapshot(_)) => {
                    return Err::<(), BoxError>("the event stream fell behind (RESYNC)".into());
                }
                _ => {}
            }
        }
    };
    timeout(EVENT_TIMEOUT, read)
        .await
        .map_err(|_| format!("{title} not imported within {EVENT_TIMEOUT:?}"))?
}

/// Puts `count` templates into `set`, template `i` named and filled by
/// `item(i)`, [`PUT_IN_FLIGHT`] calls at a time.
pub async fn put_many(
    sync: &mut Sync,
    set: &str,
    count: usize,
    item: impl Fn(usize) -> (String, String),
) -> Result<(), BoxError> {
    let requests: Arc<Vec<pb::PutTemplateRequest>> = Arc::new(
        (0..count)
            .map(|i| {
                let (title, content) = item(i);
                pb::PutTemplateRequest {
                    key: Some(pb::TemplateKey {
                        set: set.to_owned(),
                        title,
                    }),
                    content,
                    expected_version: None,
                }
            })
            .collect(),
    );
    let mut workers = JoinSet::new();
    for worker in 0..PUT_IN_FLIGHT {
        let (mut sync, requests) = (sync.clone(), Arc::clone(&requests));
        workers.spawn(async move {
            for request in requests.iter().skip(worker).step_by(PUT_IN_FLIGHT) {
                sync.put_template(request.clone()).await?;
            }
            Ok::<_, BoxError>(())
        });
    }
    while let Some(worker) = workers.join_next().await {
        worker??;
    }
    Ok(())
}
