//! Instances, their logs, the status events and the daemon's status, as
//! the Orchestrator service answers them.

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

use outpost::proto::v1::{self as pb, orchestrator_server::Orchestrator as _};

use super::{body, failure, reply, usage_interval};
use crate::http::{Front, sse};

pub(super) fn routes() -> Router<Front> {
    Router::new()
        .route("/api/v1/daemon/status", get(daemon_status))
        .route("/api/v1/instances", get(list).post(create))
        .route("/api/v1/instances/{name}", get(instance).delete(delete))
        .route("/api/v1/instances/{name}/start", post(start))
        .route("/api/v1/instances/{name}/stop", post(stop))
        .route("/api/v1/instances/{name}/restart", post(restart))
        .route("/api/v1/instances/{name}/touch", post(touch))
        .route("/api/v1/instances/{name}/logs", get(logs))
        .route("/api/v1/events", get(events))
        .route("/api/v1/usage", get(usage))
}

async fn daemon_status(State(front): State<Front>) -> Response {
    reply(
        front
            .orchestrator
            .get_daemon_status(Request::new(pb::GetDaemonStatusRequest {}))
            .await,
    )
}

/// `GET /api/v1/instances`'s filters.
#[derive(Deserialize)]
struct ListQuery {
    workspace: Option<String>,
    /// A state's name (`RUNNING` or `INSTANCE_STATE_RUNNING`).
    state: Option<String>,
}

async fn list(State(front): State<Front>, Query(query): Query<ListQuery>) -> Response {
    let states = match query.state.as_deref().map(instance_state).transpose() {
        Ok(state) => state.into_iter().map(|state| state as i32).collect(),
        Err(status) => return failure(&status),
    };
    let request = pb::ListInstancesRequest {
        states,
        workspace: query.workspace.unwrap_or_default(),
        view: pb::InstanceView::Full as i32,
        ..Default::default()
    };
    reply(
        front
            .orchestrator
            .list_instances(Request::new(request))
            .await,
    )
}

fn instance_state(name: &str) -> Result<pb::InstanceState, tonic::Status> {
    let upper = name.to_ascii_uppercase();
    pb::InstanceState::from_str_name(&upper)
        .or_else(|| pb::InstanceState::from_str_name(&format!("INSTANCE_STATE_{upper}")))
        .ok_or_else(|| {
            tonic::Status::invalid_argument(format!(
                "state: {} is not an instance state",
                outpost::limits::quoted(name)
            ))
        })
}

async fn create(State(front): State<Front>, bytes: Bytes) -> Response {
    match body::<pb::CreateInstanceRequest>(&bytes) {
        Ok(request) => reply(
            front
                .orchestrator
                .create_instance(Request::new(request))
                .await,
        ),
        Err(status) => failure(&status),
    }
}

async fn instance(State(front): State<Front>, Path(name): Path<String>) -> Response {
    let request = pb::GetInstanceRequest { instance: name };
    reply(front.orchestrator.get_instance(Request::new(request)).await)
}

async fn start(State(front): State<Front>, Path(name): Path<String>) -> Response {
    let request = pb::StartInstanceRequest { instance: name };
    reply(
        front
            .orchestrator
            .start_instance(Request::new(request))
            .await,
    )
}

async fn stop(State(front): State<Front>, Path(name): Path<String>, bytes: Bytes) -> Response {
    match body::<pb::StopInstanceRequest>(&bytes) {
        Ok(request) => {
            let request = pb::StopInstanceRequest {
                instance: name,
                ..request
            };
            reply(
                front
                    .orchestrator
                    .stop_instance(Request::new(request))
                    .await,
            )
        }
        Err(status) => failure(&status),
    }
}

async fn restart(State(front): State<Front>, Path(name): Path<String>) -> Response {
    let request = pb::RestartInstanceRequest { instance: name };
    reply(
        front
            .orchestrator
            .restart_instance(Request::new(request))
            .await,
    )
}

async fn touch(State(front): State<Front>, Path(name): Path<String>) -> Response {
    let request = pb::RecordActivityRequest { instance: name };
    reply(
        front
            .orchestrator
            .record_activity(Request::new(request))
            .await,
    )
}

/// `DELETE /api/v1/instances/{name}`'s options.
#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn delete(
    State(front): State<Front>,
    Path(name): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Response {
    let request = pb::DeleteInstanceRequest {
        instance: name,
        force: query.force,
        ..Default::default()
    };
    reply(
        front
            .orchestrator
            .delete_instance(Request::new(request))
            .await,
    )
}

/// `GET /api/v1/instances/{name}/logs`'s options.
#[derive(Deserialize)]
struct LogsQuery {
    tail: Option<u32>,
    #[serde(default)]
    follow: bool,
    /// `stdout` or `stderr`; both when absent.
    stream: Option<String>,
}

/// The last lines as one JSON message, or (`follow=true`) an SSE stream
/// of `lines` events.
async fn logs(
    State(front): State<Front>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Response {
    let stream = match query.stream.as_deref() {
        None | Some("") => pb::LogStream::Unspecified,
        Some("stdout") => pb::LogStream::Stdout,
        Some("stderr") => pb::LogStream::Stderr,
        Some(other) => {
            return failure(&tonic::Status::invalid_argument(format!(
                "stream: {} is neither stdout nor stderr",
                outpost::limits::quoted(other)
            )));
        }
    };
    let request = pb::StreamLogsRequest {
        instance: name,
        tail_lines: query.tail.unwrap_or(if query.follow { 0 } else { 100 }),
        follow: query.follow,
        stream: stream as i32,
    };
    let answer = front.orchestrator.stream_logs(Request::new(request)).await;
    let lines = match answer {
        Ok(response) => response.into_inner(),
        Err(status) => return failure(&status),
    };
    if query.follow {
        sse::logs(lines)
    } else {
        sse::collect_logs(lines).await
    }
}

/// `GET /api/v1/events`'s option: where a fresh stream resumes.
#[derive(Deserialize)]
struct EventsQuery {
    since: Option<u64>,
}

async fn events(
    State(front): State<Front>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Response {
    let request = pb::WatchStatusRequest {
        since_revision: sse::resume_after(&headers).or(query.since).unwrap_or(0),
        ..Default::default()
    };
    match front.orchestrator.watch_status(Request::new(request)).await {
        Ok(stream) => sse::status(stream.into_inner(), front.renders.clone()),
        Err(status) => failure(&status),
    }
}

/// `GET /api/v1/usage`'s option.
#[derive(Deserialize)]
struct UsageQuery {
    /// Seconds between samples.
    every: Option<u64>,
}

/// Usage (CPU, memory) changes without events: this stream pushes the
/// instance list every few seconds while it is open, so a page draws its
/// sparklines without polling, and a page that closes it (hidden) costs
/// nothing.
async fn usage(State(front): State<Front>, Query(query): Query<UsageQuery>) -> Response {
    match usage_interval("every", query.every.unwrap_or(5)) {
        Ok(every) => sse::usage(front.orchestrator.clone(), every),
        Err(status) => failure(&status),
    }
}
