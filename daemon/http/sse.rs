//! Server-Sent Events from the services' streams. An event's SSE `id:` is
//! its bus revision (both buses' in the page's combined stream), so a
//! browser's `EventSource`, reconnecting by itself with `Last-Event-ID`,
//! resumes exactly after the last event it saw — or gets a RESYNC
//! snapshot when that history is gone (always so after a daemon restart:
//! revisions continue from the clock).

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

use super::{
    api::{error_body, failure},
    renders::{Bus, Renders},
};
use crate::server::OrchestratorApi;

/// How often an idle stream sends a comment, so that a connection a
/// proxy or a sleeping laptop dropped is noticed; twice a minute costs an
/// open page next to nothing.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The revision a reconnecting `EventSource` last saw.
pub(crate) fn resume_after(headers: &HeaderMap) -> Option<u64> {
    last_event_id(headers)?.parse().ok()
}

/// The `Last-Event-ID` a reconnecting `EventSource` sends.
pub(crate) fn last_event_id(headers: &HeaderMap) -> Option<&str> {
    Some(headers.get("last-event-id")?.to_str().ok()?.trim())
}

/// An event, with its bus revision if it has one; its `id:` is given
/// when the stream it goes out on is known.
struct Item {
    revision: Option<(Bus, u64)>,
    kind: &'static str,
    data: Result<Arc<str>, String>,
}

impl Item {
    fn new(kind: &'static str, revision: Option<(Bus, u64)>, data: &impl Serialize) -> Self {
        Self {
            revision,
            kind,
            data: render(data),
        }
    }

    /// A bus event, its JSON rendered once for all streams.
    fn event_of(
        kind: &'static str,
        bus: Bus,
        revision: u64,
        data: &impl Serialize,
        renders: &Renders,
    ) -> Self {
        Self {
            revision: Some((bus, revision)),
            kind,
            data: renders.json(bus, revision, || render(data)),
        }
    }

    /// A stream's error as an `error` item with the JSON error body.
    fn error(status: &Status) -> Self {
        Self::new("error", None, &error_body(status))
    }

    fn event(self, id: Option<String>) -> Event {
        // The messages' serde (pbjson) cannot fail on them; if it ever
        // did, the client hears of it rather than missing an event.
        let event = match self.data {
            Ok(data) => Event::default().event(self.kind).data(&*data),
            Err(err) => Event::default()
                .event("error")
                .data(format!("cannot render an event: {err}")),
        };
        match id {
            Some(id) => event.id(id),
            None => event,
        }
    }
}

/// `WatchStatus`'s messages as items: `snapshot_kind` (a StatusSnapshot)
/// and one `status` per StatusEvent.
fn status_items(
    messages: BoxStream<pb::WatchStatusResponse>,
    snapshot_kind: &'static str,
    renders: Arc<Renders>,
) -> impl Stream<Item = Item> {
    messages.flat_map(move |message| {
        let items = match message {
            Ok(message) => match message.payload {
                Some(watch_status_response::Payload::Snapshot(snapshot)) => {
                    let revision = Some((Bus::Status, snapshot.revision));
                    vec![Item::new(snapshot_kind, revision, &snapshot)]
                }
                Some(watch_status_response::Payload::Events(batch)) => (batch.events.iter())
                    .map(|one| Item::event_of("status", Bus::Status, one.revision, one, &renders))
                    .collect(),
                None => Vec::new(),
            },
            Err(status) => vec![Item::error(&status)],
        };
        stream::iter(items)
    })
}

/// `WatchSyncEvents`'s messages as items: `snapshot_kind` (a
/// SyncSnapshot) and one `sync` per SyncEvent.
fn sync_items(
    messages: BoxStream<pb::WatchSyncEventsResponse>,
    snapshot_kind: &'static str,
    renders: Arc<Renders>,
) -> impl Stream<Item = Item> {
    messages.flat_map(move |message| {
        let items = match message {
            Ok(message) => match message.payload {
                Some(watch_sync_events_response::Payload::Snapshot(snapshot)) => {
                    let revision = Some((Bus::Sync, snapshot.revision));
                    vec![Item::new(snapshot_kind, revision, &snapshot)]
                }
                Some(watch_sync_events_response::Payload::Events(batch)) => (batch.events.iter())
                    .map(|one| Item::event_of("sync", Bus::Sync, one.revision, one, &renders))
                    .collect(),
                None => Vec::new(),
            },
            Err(status) => vec![Item::error(&status)],
        };
        stream::iter(items)
    })
}

/// The instance list (without specs) every `every`, as `usage` items,
/// until the client goes or the daemon stops. Usage (CPU, memory) changes
/// without events; this pushes it while someone looks.
fn usage_items(orchestrator: Arc<OrchestratorApi>, every: Duration) -> impl Stream<Item = Item> {
    let stop = orchestrator.stop.clone();
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(every));
    ticks
        .then(move |_| {
            let orchestrator = orchestrator.clone();
            async move {
                let request = pb::ListInstancesRequest::default();
                match orchestrator.list_instances(Request::new(request)).await {
                    Ok(list) => Item::new("usage", None, list.get_ref()),
                    Err(status) => Item::error(&status),
                }
            }
        })
        .take_until(stop.cancelled_owned())
}

/// Items of one bus, each with its revision as its `id:`.
fn one_bus(items: impl Stream<Item = Item> + Send + 'static) -> Response {
    respond(items.map(|item| {
        let id = item.revision.map(|(_, revision)| revision.to_string());
        item.event(id)
    }))
}

/// `WatchStatus` as SSE: `snapshot` events (a StatusSnapshot) and one
/// `status` event per StatusEvent.
pub(crate) fn status(
    messages: BoxStream<pb::WatchStatusResponse>,
    renders: Arc<Renders>,
) -> Response {
    one_bus(status_items(messages, "snapshot", renders))
}

/// `WatchSyncEvents` as SSE: `snapshot` events (a SyncSnapshot) and one
/// `sync` event per SyncEvent.
pub(crate) fn sync(
    messages: BoxStream<pb::WatchSyncEventsResponse>,
    renders: Arc<Renders>,
) -> Response {
    one_bus(sync_items(messages, "snapshot", renders))
}

/// The instance list every `every`, as `usage` events.
pub(crate) fn usage(orchestrator: Arc<OrchestratorApi>, every: Duration) -> Response {
    respond(usage_items(orchestrator, every).map(|item| item.event(None)))
}

/// Where a combined stream resumes: `STATUS:SYNC`, the revisions of both
/// buses, as its events' ids carry them.
pub(crate) fn resume_both(id: &str) -> Option<(u64, u64)> {
    let (status, sync) = id.split_once(':')?;
    Some((status.parse().ok()?, sync.parse().ok()?))
}

/// The page's one stream: status (`snapshot`, `status`), sync
/// (`sync-snapshot`, `sync`) and, with `usage`, `usage` events, on one
/// connection — a browser holds only six HTTP/1.1 connections per host
/// across its tabs, and one stream per tab leaves room for several tabs
/// and their requests. Every event with a revision carries both buses'
/// latest as its id (`STATUS:SYNC`), so `Last-Event-ID` resumes both.
pub(crate) fn combined(
    status: BoxStream<pb::WatchStatusResponse>,
    sync: BoxStream<pb::WatchSyncEventsResponse>,
    usage: Option<(Arc<OrchestratorApi>, Duration)>,
    since: (u64, u64),
    renders: Arc<Renders>,
) -> Response {
    let buses = stream::select(
        status_items(status, "snapshot", renders.clone()),
        sync_items(sync, "sync-snapshot", renders),
    )
    .boxed();
    let items = match usage {
        Some((orchestrator, every)) => {
            stream::select(buses, usage_items(orchestrator, every)).boxed()
        }
        None => buses,
    };
    let mut last = since;
    respond(items.map(move |item| {
        let id = item.revision.map(|(bus, revision)| {
            match bus {
                Bus::Status => last.0 = revision,
                Bus::Sync => last.1 = revision,
            }
            format!("{}:{}", last.0, last.1)
        });
        item.event(id)
    }))
}

/// A followed log as SSE: one `lines` event (a StreamLogsResponse) per
/// message. Log lines have no revisions: a reconnect starts from the tail.
pub(crate) fn logs(messages: BoxStream<pb::StreamLogsResponse>) -> Response {
    respond(messages.map(|message| {
        match message {
            Ok(lines) => Item::new("lines", None, &lines),
            Err(status) => Item::error(&status),
        }
        .event(None)
    }))
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

/// `data` as JSON (the messages' serde cannot fail on them; if it ever did,
/// the client hears of it rather than missing an event).
fn render(data: &impl Serialize) -> Result<Arc<str>, String> {
    serde_json::to_string(data)
        .map(Into::into)
        .map_err(|err| err.to_string())
}

fn respond(events: impl Stream<Item = Event> + Send + 'static) -> Response {
    Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}
