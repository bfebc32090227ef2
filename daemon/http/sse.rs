//! Server-Sent Events from the services' streams. An event stream's SSE
//! `id:` is the bus revision, so a browser's `EventSource`, reconnecting by
//! itself with `Last-Event-ID`, resumes exactly after the last event it
//! saw — or gets a RESYNC snapshot when that history is gone (always so
//! after a daemon restart: revisions continue from the clock).

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Json,
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::{Stream, StreamExt, stream};
use serde::Serialize;
use tonic::{Request, Status, codegen::BoxStream};

use outpost::proto::v1::{
    self as pb, orchestrator_server::Orchestrator as _, watch_status_response,
    watch_sync_events_response,
};

use super::api::{error_body, failure};
use crate::server::OrchestratorApi;

/// How often an idle stream sends a comment, so that a connection a
/// proxy or a sleeping laptop dropped is noticed; twice a minute costs an
/// open page next to nothing.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The revision a reconnecting `EventSource` last saw.
pub(crate) fn resume_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `WatchStatus` as SSE: `snapshot` events (a StatusSnapshot) and one
/// `status` event per StatusEvent.
pub(crate) fn status(messages: BoxStream<pb::WatchStatusResponse>) -> Response {
    respond(messages.flat_map(|message| {
        let events = match message {
            Ok(message) => match message.payload {
                Some(watch_status_response::Payload::Snapshot(snapshot)) => {
                    vec![event("snapshot", Some(snapshot.revision), &snapshot)]
                }
                Some(watch_status_response::Payload::Events(batch)) => batch
                    .events
                    .iter()
                    .map(|one| event("status", Some(one.revision), one))
                    .collect(),
                None => Vec::new(),
            },
            Err(status) => vec![error(&status)],
        };
        stream::iter(events)
    }))
}

/// `WatchSyncEvents` as SSE: `snapshot` events (a SyncSnapshot) and one
/// `sync` event per SyncEvent.
pub(crate) fn sync(messages: BoxStream<pb::WatchSyncEventsResponse>) -> Response {
    respond(messages.flat_map(|message| {
        let events = match message {
            Ok(message) => match message.payload {
                Some(watch_sync_events_response::Payload::Snapshot(snapshot)) => {
                    vec![event("snapshot", Some(snapshot.revision), &snapshot)]
                }
                Some(watch_sync_events_response::Payload::Events(batch)) => batch
                    .events
                    .iter()
                    .map(|one| event("sync", Some(one.revision), one))
                    .collect(),
                None => Vec::new(),
            },
            Err(status) => vec![error(&status)],
        };
        stream::iter(events)
    }))
}

/// A followed log as SSE: one `lines` event (a StreamLogsResponse) per
/// message. Log lines have no revisions: a reconnect starts from the tail.
pub(crate) fn logs(messages: BoxStream<pb::StreamLogsResponse>) -> Response {
    respond(messages.map(|message| match message {
        Ok(lines) => event("lines", None, &lines),
        Err(status) => error(&status),
    }))
}

/// The instance list (without specs) every `every`, as `usage` events,
/// until the client goes or the daemon stops.
pub(crate) fn usage(orchestrator: Arc<OrchestratorApi>, every: Duration) -> Response {
    let stop = orchestrator.stop.clone();
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(every));
    let samples = ticks
        .then(move |_| {
            let orchestrator = orchestrator.clone();
            async move {
                let request = pb::ListInstancesRequest::default();
                match orchestrator.list_instances(Request::new(request)).await {
                    Ok(list) => event("usage", None, list.get_ref()),
                    Err(status) => error(&status),
                }
            }
        })
        .take_until(stop.cancelled_owned());
    respond(samples)
}

/// The last lines of a log (a stream that ends) as one JSON message.
pub(crate) async fn collect_logs(mut messages: BoxStream<pb::StreamLogsResponse>) -> Response {
    let mut all = pb::StreamLogsResponse::default();
    while let Some(message) = messages.next().await {
        match message {
            Ok(message) => all.lines.extend(message.lines),
            Err(status) => return failure(&status),
        }
    }
    Json(all).into_response()
}

fn respond(events: impl Stream<Item = Event> + Send + 'static) -> Response {
    Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

fn event(kind: &str, revision: Option<u64>, data: &impl Serialize) -> Event {
    let event = Event::default().event(kind);
    let event = match revision {
        Some(revision) => event.id(revision.to_string()),
        None => event,
    };
    // The messages' serde (pbjson) cannot fail on them; if it ever did,
    // the client hears of it rather than missing an event silently.
    event.json_data(data).unwrap_or_else(|err| {
        Event::default()
            .event("error")
            .data(format!("cannot render an event: {err}"))
    })
}

/// A stream's error as an `error` event with the JSON error body.
fn error(status: &Status) -> Event {
    Event::default()
        .event("error")
        .json_data(error_body(status))
        .unwrap_or_else(|_| Event::default().event("error"))
}
