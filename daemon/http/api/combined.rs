//! The page's one stream (`GET /api/v1/stream`): the status bus, the sync
//! bus and (with `?usage=SECONDS`) pushed usage, over one connection
//! ([`sse::combined`]). Each part is the same service call its own route
//! makes.

use axum::{
    Router,
    extract::{Query, State},
    http::HeaderMap,
    response::Response,
    routing::get,
};
use serde::Deserialize;
use tonic::{Request, Status};

use outpost::proto::v1::{
    self as pb, orchestrator_server::Orchestrator as _, sync_server::Sync as _,
};

use super::{failure, usage_interval};
use crate::http::{Front, sse};

pub(super) fn routes() -> Router<Front> {
    Router::new().route("/api/v1/stream", get(stream))
}

/// `GET /api/v1/stream`'s options.
#[derive(Deserialize)]
struct StreamQuery {
    /// Resume after `STATUS:SYNC` (as `Last-Event-ID` does).
    since: Option<String>,
    /// Push usage every this many seconds (1–60); none without it.
    usage: Option<u64>,
}

async fn stream(
    State(front): State<Front>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Response {
    let since = match sse::last_event_id(&headers).or(query.since.as_deref()) {
        None | Some("") => (0, 0),
        Some(id) => match sse::resume_both(id) {
            Some(since) => since,
            None => {
                return failure(&Status::invalid_argument(format!(
                    "since: {} is not STATUS:SYNC revisions",
                    outpost::limits::quoted(id)
                )));
            }
        },
    };
    let usage = match query.usage.map(|every| usage_interval("usage", every)) {
        None => None,
        Some(Ok(every)) => Some((front.orchestrator.clone(), every)),
        Some(Err(status)) => return failure(&status),
    };
    let status = pb::WatchStatusRequest {
        since_revision: since.0,
        ..Default::default()
    };
    let status = match front.orchestrator.watch_status(Request::new(status)).await {
        Ok(stream) => stream.into_inner(),
        Err(status) => return failure(&status),
    };
    let sync = pb::WatchSyncEventsRequest {
        since_revision: since.1,
        ..Default::default()
    };
    let sync = match front.sync.watch_sync_events(Request::new(sync)).await {
        Ok(stream) => stream.into_inner(),
        Err(status) => return failure(&status),
    };
    sse::combined(status, sync, usage, since, front.renders.clone())
}
