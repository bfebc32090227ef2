//! The sync engine's status, events and conflicts, and its controls, as
//! the Sync service answers them.

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::Response,
    routing::{get, post},
};
use serde::Deserialize;
use tonic::Request;

use outpost::proto::v1::{self as pb, sync_server::Sync as _};

use super::{body, failure, reply};
use crate::http::{Front, sse};

pub(super) fn routes() -> Router<Front> {
    Router::new()
        .route("/api/v1/sync/status", get(status))
        .route("/api/v1/sync/events", get(events))
        .route("/api/v1/sync/conflicts", get(conflicts))
        .route("/api/v1/sync/conflicts/{id}", get(conflict))
        .route("/api/v1/sync/conflicts/{id}/resolve", post(resolve))
        .route("/api/v1/sync/pause", post(pause))
        .route("/api/v1/sync/resume", post(resume))
        .route("/api/v1/sync/rescan", post(rescan))
}

async fn status(State(front): State<Front>) -> Response {
    reply(
        front
            .sync
            .get_sync_status(Request::new(pb::GetSyncStatusRequest {}))
            .await,
    )
}

/// `GET /api/v1/sync/events`'s option: where a fresh stream resumes.
#[derive(Deserialize)]
struct EventsQuery {
    since: Option<u64>,
}

async fn events(
    State(front): State<Front>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Response {
    let request = pb::WatchSyncEventsRequest {
        since_revision: sse::resume_after(&headers).or(query.since).unwrap_or(0),
        ..Default::default()
    };
    match front.sync.watch_sync_events(Request::new(request)).await {
        Ok(stream) => sse::sync(stream.into_inner(), front.renders.clone()),
        Err(status) => failure(&status),
    }
}

async fn conflicts(State(front): State<Front>) -> Response {
    reply(
        front
            .sync
            .list_conflicts(Request::new(pb::ListConflictsRequest {}))
            .await,
    )
}

async fn conflict(State(front): State<Front>, Path(id): Path<String>) -> Response {
    let request = pb::GetConflictRequest { conflict_id: id };
    reply(front.sync.get_conflict(Request::new(request)).await)
}

async fn resolve(State(front): State<Front>, Path(id): Path<String>, bytes: Bytes) -> Response {
    match body::<pb::ResolveConflictRequest>(&bytes) {
        Ok(request) => {
            let request = pb::ResolveConflictRequest {
                conflict_id: id,
                ..request
            };
            reply(front.sync.resolve_conflict(Request::new(request)).await)
        }
        Err(status) => failure(&status),
    }
}

async fn pause(State(front): State<Front>) -> Response {
    reply(
        front
            .sync
            .pause_watcher(Request::new(pb::PauseWatcherRequest {}))
            .await,
    )
}

async fn resume(State(front): State<Front>) -> Response {
    reply(
        front
            .sync
            .resume_watcher(Request::new(pb::ResumeWatcherRequest {}))
            .await,
    )
}

async fn rescan(State(front): State<Front>) -> Response {
    reply(front.sync.rescan(Request::new(pb::RescanRequest {})).await)
}
