//! Reading the daemon's `WatchStatus` stream.

use std::time::Duration;

use outpost::{
    endpoint::Connection,
    proto::v1::{self as pb, status_event::Change, watch_status_response::Payload},
};
use tokio::time::timeout;
use tonic::Streaming;

use super::BoxError;

/// How long to wait for one expected `WatchStatus` event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A `WatchStatus` stream.
pub type Watch = Streaming<pb::WatchStatusResponse>;

/// A `WatchStatus` stream of every instance and the snapshot it began with.
async fn started_watch(connection: &Connection) -> Result<(Watch, pb::StatusSnapshot), BoxError> {
    let mut stream = connection
        .orchestrator()
        .watch_status(pb::WatchStatusRequest::default())
        .await?
        .into_inner();
    match stream.message().await? {
        Some(pb::WatchStatusResponse {
            payload: Some(Payload::Snapshot(snapshot)),
        }) => Ok((stream, snapshot)),
        other => Err(format!("WatchStatus began with {other:?}, not a snapshot").into()),
    }
}

/// Opens a `WatchStatus` stream of every instance and reads its initial
/// snapshot.
pub async fn open_watch(connection: &Connection) -> Result<Watch, BoxError> {
    Ok(started_watch(connection).await?.0)
}

/// The revision of the daemon's status bus now: that of the snapshot a new
/// `WatchStatus` stream starts with.
pub async fn bus_revision(connection: &Connection) -> Result<u64, BoxError> {
    Ok(started_watch(connection).await?.1.revision)
}

/// Reads `watch` until a message shows an instance for which `wanted`
/// holds, and returns that instance; fails after [`EVENT_TIMEOUT`].
pub async fn wait_for(
    watch: &mut Watch,
    what: &str,
    wanted: impl Fn(&pb::Instance) -> bool,
) -> Result<pb::Instance, BoxError> {
    timeout(EVENT_TIMEOUT, read_until(watch, &wanted))
        .await
        .map_err(|_| format!("no event showing {what} within {EVENT_TIMEOUT:?}"))?
}

/// Reads `watch` until a message shows an instance for which `wanted` holds.
async fn read_until(
    watch: &mut Watch,
    wanted: &impl Fn(&pb::Instance) -> bool,
) -> Result<pb::Instance, BoxError> {
    loop {
        let message = watch.message().await?.ok_or("WatchStatus ended")?;
        let found = match message.payload {
            Some(Payload::Events(batch)) => batch.events.into_iter().find_map(|event| match event
                .change
            {
                Some(Change::InstanceChanged(change)) => change.instance.filter(&wanted),
                _ => None,
            }),
            // A RESYNC snapshot replaces the events it skipped.
            Some(Payload::Snapshot(snapshot)) => snapshot.instances.into_iter().find(wanted),
            None => None,
        };
        if let Some(instance) = found {
            return Ok(instance);
        }
    }
}

/// Whether `instance` is instance `id` in `state`.
pub fn is(instance: &pb::Instance, id: &str, state: pb::InstanceState) -> bool {
    instance.id == id && instance.state == state as i32
}
