//! Translation between the Orchestrator service's messages and the
//! orchestrator's domain (instances, events, logs, workspaces, the daemon's
//! own status); specs are [`super::spec`]'s.

use tonic::Status;

use outpost::{
    limits::{self, MAX_FILTER_ITEMS, MAX_NAME_LEN, duration_message},
    proto::v1 as pb,
    workspace_file::Workspace,
};

use super::{
    invalid,
    spec::{path_text, spec_message},
    time, timestamp,
};
use crate::{
    orchestrator::{
        ListFilter, OrchestratorError,
        events::{Change, Event, EventFilter, Snapshot, SnapshotKind, WorkspaceDiff},
        limits::Capabilities,
        logs::{
            LogPiece, Stream,
            follow::{LogLines, LogRequest},
        },
        status::{
            Backoff, Breaker, Exit, ExitOutcome, Failure, Health, HealthState, InstanceKind,
            InstanceState, InstanceStatus, Reason, Usage, signal_name,
        },
        validate::{Issue, IssueKind},
    },
    server::DaemonInfo,
    store::health::StoreHealth,
    workspaces::{ApplyError, Source, WorkspaceStatus},
};

/// Most log lines sent in one StreamLogs message.
const LOG_BATCH: usize = 1000;
/// Most bytes of log text in one StreamLogs message (a line is at most
/// [`limits::LOG_PIECE`] a piece), well under the 4 MiB a gRPC client
/// accepts by default.
const LOG_BATCH_BYTES: usize = 1024 * 1024;

impl From<OrchestratorError> for Status {
    fn from(err: OrchestratorError) -> Self {
        let message = err.to_string();
        match err {
            OrchestratorError::Invalid { .. } => Status::invalid_argument(message),
            OrchestratorError::NoSuchInstance(_) => Status::not_found(message),
            OrchestratorError::Taken(_) => Status::already_exists(message),
            OrchestratorError::Refused(_)
            | OrchestratorError::StartFailed(_)
            | OrchestratorError::PortTaken(_) => Status::failed_precondition(message),
            OrchestratorError::LimitReached(_) => Status::resource_exhausted(message),
            OrchestratorError::Storage(_) => Status::unavailable(message),
        }
    }
}

impl From<ApplyError> for Status {
    fn from(err: ApplyError) -> Self {
        let message = err.to_string();
        match err {
            ApplyError::Invalid { .. } | ApplyError::Rejected(_) => {
                Status::invalid_argument(message)
            }
            ApplyError::NotFound(_) => Status::not_found(message),
            ApplyError::LimitReached(_) => Status::resource_exhausted(message),
            ApplyError::Failed(_) => Status::failed_precondition(message),
            ApplyError::ShuttingDown => Status::unavailable(message),
        }
    }
}

/// A required, non-empty instance reference (id or name), no longer
/// than a name.
pub fn instance_key<'a>(field: &str, key: &'a str) -> Result<&'a str, Status> {
    limits::instance_reference(field, key).map_err(OrchestratorError::from)?;
    Ok(key)
}

/// Pairs of domain and proto states.
const STATES: [(InstanceState, pb::InstanceState); 8] = [
    (InstanceState::Waiting, pb::InstanceState::Waiting),
    (InstanceState::Starting, pb::InstanceState::Starting),
    (InstanceState::Running, pb::InstanceState::Running),
    (InstanceState::Stopping, pb::InstanceState::Stopping),
    (InstanceState::Stopped, pb::InstanceState::Stopped),
    (InstanceState::Failed, pb::InstanceState::Failed),
    (InstanceState::Backoff, pb::InstanceState::Backoff),
    (InstanceState::Error, pb::InstanceState::Error),
];

/// A state filter from a request.
pub fn states(field: &str, values: &[i32]) -> Result<Vec<InstanceState>, Status> {
    limits::count(field, values.len() as u64, MAX_FILTER_ITEMS as u64)
        .map_err(OrchestratorError::from)?;
    values
        .iter()
        .map(|&value| {
            STATES
                .iter()
                .find(|(_, proto)| *proto as i32 == value)
                .map(|(domain, _)| *domain)
                .ok_or_else(|| invalid(field, format!("{value} is not an instance state")))
        })
        .collect()
}

/// The proto enum value of a domain state.
pub fn state(state: InstanceState) -> pb::InstanceState {
    STATES
        .iter()
        .find(|(domain, _)| *domain == state)
        .map_or(pb::InstanceState::Unspecified, |(_, proto)| *proto)
}

fn reason(reason: Reason) -> pb::TransitionReason {
    match reason {
        Reason::Created => pb::TransitionReason::Created,
        Reason::UserStart => pb::TransitionReason::UserStart,
        Reason::UserStop => pb::TransitionReason::UserStop,
        Reason::UserRestart => pb::TransitionReason::UserRestart,
        Reason::UserDelete => pb::TransitionReason::UserDelete,
        Reason::ProcessExit => pb::TransitionReason::ProcessExit,
        Reason::SpawnFailed => pb::TransitionReason::SpawnFailed,
        Reason::Ready => pb::TransitionReason::Ready,
        Reason::DaemonShutdown => pb::TransitionReason::DaemonShutdown,
        Reason::HealthFailure => pb::TransitionReason::HealthFailure,
        Reason::HealthRecovered => pb::TransitionReason::HealthRecovered,
        Reason::Watchdog => pb::TransitionReason::Watchdog,
        Reason::MemoryLimit => pb::TransitionReason::MemoryLimit,
        Reason::StartupTimeout => pb::TransitionReason::StartupTimeout,
        Reason::IdleTimeout => pb::TransitionReason::IdleTimeout,
        Reason::BackoffElapsed => pb::TransitionReason::BackoffElapsed,
        Reason::BreakerOpen => pb::TransitionReason::BreakerOpen,
        Reason::BreakerHalfOpen => pb::TransitionReason::BreakerHalfOpen,
        Reason::DaemonRestart => pb::TransitionReason::DaemonRestart,
        Reason::ConfigChange => pb::TransitionReason::ConfigChange,
        Reason::DependenciesReady => pb::TransitionReason::DependenciesReady,
        Reason::DependencyBlocked => pb::TransitionReason::DependencyBlocked,
        Reason::DependencyRestart => pb::TransitionReason::DependencyRestart,
    }
}

fn health_status(health: &Health) -> pb::HealthStatus {
    pb::HealthStatus {
        state: match health.state {
            HealthState::Unknown => pb::HealthState::Unspecified,
            HealthState::Healthy => pb::HealthState::Healthy,
            HealthState::Unhealthy => pb::HealthState::Unhealthy,
        }
        .into(),
        last_check_at: health.last_check_at.and_then(time),
        last_failure: health.last_failure.clone().unwrap_or_default(),
        consecutive_failures: health.consecutive_failures,
    }
}

fn backoff_status(backoff: &Backoff) -> pb::BackoffStatus {
    pb::BackoffStatus {
        breaker: match backoff.breaker {
            Breaker::Closed => pb::BreakerState::Closed,
            Breaker::Open => pb::BreakerState::Open,
            Breaker::HalfOpen => pb::BreakerState::HalfOpen,
        }
        .into(),
        consecutive_failures: backoff.consecutive_failures,
        current_delay: Some(duration_message(backoff.current_delay)),
        next_attempt_at: backoff.next_attempt_at.and_then(time),
    }
}

fn usage(usage: &Usage) -> pb::ResourceUsage {
    pb::ResourceUsage {
        rss_bytes: usage.rss_bytes,
        cpu_percent: usage.cpu_percent,
        process_count: usage.process_count,
        sampled_at: time(usage.sampled_at),
    }
}

fn failure(failure: &Failure) -> pb::FailureRecord {
    pb::FailureRecord {
        at: time(failure.at),
        reason: reason(failure.reason).into(),
        message: failure.message.clone(),
        exit: failure.exit.as_ref().map(exit),
    }
}

fn exit(exit: &Exit) -> pb::ExitStatus {
    let (outcome, signal) = match exit.outcome {
        ExitOutcome::Code(code) => (Some(pb::exit_status::Outcome::Code(code)), String::new()),
        ExitOutcome::Signal(number) => (
            Some(pb::exit_status::Outcome::Signal(number)),
            signal_name(number),
        ),
        ExitOutcome::Unknown => (None, String::new()),
    };
    pb::ExitStatus {
        outcome,
        signal_name: signal,
        exited_at: Some(timestamp(exit.at)),
    }
}

/// The proto form of an instance's status without its spec (the BASIC
/// view of `ListInstances`).
pub fn instance_basic(status: &InstanceStatus) -> pb::Instance {
    let process = status.process;
    pb::Instance {
        id: status.id.clone(),
        name: status.spec.name.clone(),
        kind: match status.kind {
            InstanceKind::Managed => pb::InstanceKind::Managed,
            InstanceKind::External => pb::InstanceKind::External,
            InstanceKind::Discovered => pb::InstanceKind::Discovered,
        }
        .into(),
        state: state(status.state).into(),
        project_path: path_text(status.spec.project_path.as_deref()),
        pid: process.map_or(0, |p| p.pid),
        port: status.port.map_or(0, u32::from),
        health: Some(health_status(&status.health)),
        restart_count: status.restart_count,
        last_error: status.last_error.clone().unwrap_or_default(),
        started_at: process.and_then(|p| time(p.started_at)),
        spec: None,
        pgid: process.map_or(0, |p| p.pgid),
        state_reason: reason(status.reason).into(),
        state_changed_at: time(status.state_changed_at),
        last_exit: status.last_exit.as_ref().map(exit),
        backoff: Some(backoff_status(&status.backoff)),
        usage: status.usage.as_ref().map(usage),
        recent_failures: status.failures.iter().map(failure).collect(),
        last_activity_at: time(status.last_activity_at),
        created_at: time(status.created_at),
        workspace: status.workspace.clone().unwrap_or_default(),
        ready_by: status
            .ready_by
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        notify_status: status.notify_status.clone().unwrap_or_default(),
        limits_enforcement: Capabilities::enforcement(&status.spec.limits).unwrap_or_default(),
        waiting_for: status.waiting_for.clone().unwrap_or_default(),
    }
}

/// The proto form of an instance's status, its spec included.
pub fn instance(status: &InstanceStatus) -> pb::Instance {
    pb::Instance {
        spec: Some(Box::new(spec_message(&status.spec))),
        ..instance_basic(status)
    }
}

/// Whether a list in `view` includes each instance's spec.
pub fn full_view(field: &str, view: i32) -> Result<bool, Status> {
    match pb::InstanceView::try_from(view) {
        Ok(pb::InstanceView::Unspecified | pb::InstanceView::Basic) => Ok(false),
        Ok(pb::InstanceView::Full) => Ok(true),
        Err(_) => Err(invalid(field, format!("{view} is not an instance view"))),
    }
}

/// The proto form of an event.
pub fn event(event: &Event) -> pb::StatusEvent {
    let change = match &event.change {
        Change::Instance {
            status,
            previous,
            reason: why,
            detail,
        } => pb::status_event::Change::InstanceChanged(pb::InstanceChanged {
            instance: Some(instance(status)),
            previous_state: previous
                .map_or(pb::InstanceState::Unspecified, state)
                .into(),
            reason: reason(*why).into(),
            detail: detail.clone(),
        }),
        Change::Deleted { status } => {
            pb::status_event::Change::InstanceDeleted(pb::InstanceDeleted {
                id: status.id.clone(),
                name: status.spec.name.clone(),
                workspace: status.workspace.clone().unwrap_or_default(),
            })
        }
        Change::Workspace(change) => match &change.diff {
            Some(diff) => pb::status_event::Change::WorkspaceApplied(pb::WorkspaceApplied {
                workspace: Some(pb::Workspace {
                    name: change.name.clone(),
                    file: change.file.display().to_string(),
                    last_applied_at: time(event.time),
                    last_errors: change.errors.clone(),
                    instance_count: 0,
                }),
                diff: Some(workspace_diff(diff)),
            }),
            None => pb::status_event::Change::WorkspaceRejected(pb::WorkspaceRejected {
                workspace: change.name.clone(),
                file: change.file.display().to_string(),
                errors: change.errors.clone(),
            }),
        },
    };
    pb::StatusEvent {
        revision: event.revision,
        time: time(event.time),
        change: Some(change),
    }
}

/// The proto form of a ValidateState finding.
pub fn inconsistency(issue: &Issue) -> pb::Inconsistency {
    let (instance_id, instance_name) = issue.instance.clone().unwrap_or_default();
    pb::Inconsistency {
        kind: match issue.kind {
            IssueKind::MissingProcess => pb::InconsistencyKind::MissingProcess,
            IssueKind::OrphanProcess => pb::InconsistencyKind::OrphanProcess,
            IssueKind::StalePort => pb::InconsistencyKind::StalePort,
            IssueKind::PortHijacked => pb::InconsistencyKind::PortHijacked,
        }
        .into(),
        instance_id,
        instance_name,
        pid: issue.pid.unwrap_or(0),
        port: issue.port.map_or(0, u32::from),
        description: issue.description.clone(),
        remedy: issue.remedy.clone(),
        fixed: issue.fixed,
    }
}

/// The proto form of a workspace diff.
pub fn workspace_diff(diff: &WorkspaceDiff) -> pb::WorkspaceDiff {
    pb::WorkspaceDiff {
        created: diff.created.clone(),
        deleted: diff.deleted.clone(),
        changed: diff.changed.clone(),
        unchanged: diff.unchanged.clone(),
    }
}

/// The answer to `RecordActivity`: the instance, and when it would go idle.
pub fn activity(status: &InstanceStatus) -> pb::RecordActivityResponse {
    let idle_deadline = status
        .spec
        .idle_timeout
        .filter(|_| status.state.is_active())
        .map(|timeout| {
            timestamp(
                status
                    .last_activity_at
                    .checked_add(timeout)
                    .unwrap_or(status.last_activity_at),
            )
        });
    pb::RecordActivityResponse {
        instance: Some(instance(status)),
        idle_deadline,
    }
}

/// What a `ListInstances` request lists.
pub fn list_filter(request: pb::ListInstancesRequest) -> Result<ListFilter, Status> {
    limits::length("workspace", &request.workspace, MAX_NAME_LEN)
        .and_then(|()| limits::labels("labels", request.labels.iter()))
        .map_err(OrchestratorError::from)?;
    Ok(ListFilter {
        states: states("states", &request.states)?,
        workspace: Some(request.workspace).filter(|w| !w.is_empty()),
        labels: request.labels.into_iter().collect(),
    })
}

/// What a `WatchStatus` request watches.
pub fn event_filter(request: pb::WatchStatusRequest) -> Result<EventFilter, Status> {
    let names = |field, items: &[String]| {
        limits::list(
            field,
            items.iter().map(String::as_str),
            MAX_FILTER_ITEMS,
            MAX_NAME_LEN,
        )
        .map_err(OrchestratorError::from)
    };
    names("instances", &request.instances)?;
    names("workspaces", &request.workspaces)?;
    Ok(EventFilter {
        instances: request.instances.into_iter().collect(),
        workspaces: request.workspaces.into_iter().collect(),
        states: states("states", &request.states)?,
    })
}

/// A snapshot as a `WatchStatus` message, with the instances `filter` shows.
pub fn status_snapshot(snapshot: &Snapshot, filter: &EventFilter) -> pb::WatchStatusResponse {
    let snapshot = pb::StatusSnapshot {
        revision: snapshot.revision,
        kind: match snapshot.kind {
            SnapshotKind::Initial => pb::SnapshotKind::Initial,
            SnapshotKind::Resync => pb::SnapshotKind::Resync,
        }
        .into(),
        instances: snapshot
            .instances
            .iter()
            .filter(|status| filter.shows(status))
            .map(instance)
            .collect(),
    };
    pb::WatchStatusResponse {
        payload: Some(pb::watch_status_response::Payload::Snapshot(snapshot)),
    }
}

/// The events `filter` passes as one `WatchStatus` message; None if none.
pub fn status_events(
    events: &[std::sync::Arc<Event>],
    filter: &EventFilter,
) -> Option<pb::WatchStatusResponse> {
    let events: Vec<pb::StatusEvent> = events
        .iter()
        .filter(|event| filter.passes(event))
        .map(|event| self::event(event))
        .collect();
    if events.is_empty() {
        return None;
    }
    Some(pb::WatchStatusResponse {
        payload: Some(pb::watch_status_response::Payload::Events(
            pb::StatusEvents { events },
        )),
    })
}

/// What a `StreamLogs` request asks for.
pub fn log_request(request: &pb::StreamLogsRequest) -> Result<LogRequest, Status> {
    let streams = match pb::LogStream::try_from(request.stream) {
        Ok(pb::LogStream::Unspecified) => vec![Stream::Stdout, Stream::Stderr],
        Ok(pb::LogStream::Stdout) => vec![Stream::Stdout],
        Ok(pb::LogStream::Stderr) => vec![Stream::Stderr],
        Err(_) => {
            return Err(invalid(
                "stream",
                format!("{} is not a log stream", request.stream),
            ));
        }
    };
    Ok(LogRequest::new(streams, request.tail_lines, request.follow)
        .map_err(OrchestratorError::from)?)
}

/// Log lines as `StreamLogs` messages of at most [`LOG_BATCH`] lines and
/// [`LOG_BATCH_BYTES`] of text.
pub fn log_messages(lines: LogLines) -> Vec<pb::StreamLogsResponse> {
    let stream = match lines.stream {
        Stream::Stdout => pb::LogStream::Stdout,
        Stream::Stderr => pb::LogStream::Stderr,
    };
    let mut messages = Vec::new();
    let mut batch: Vec<pb::LogLine> = Vec::new();
    let mut bytes = 0;
    for LogPiece { text, partial } in lines.lines {
        if batch.len() == LOG_BATCH || (bytes + text.len() > LOG_BATCH_BYTES && !batch.is_empty()) {
            messages.push(pb::StreamLogsResponse {
                lines: std::mem::take(&mut batch),
            });
            bytes = 0;
        }
        bytes += text.len();
        batch.push(pb::LogLine {
            stream: stream.into(),
            text,
            partial,
        });
    }
    if !batch.is_empty() {
        messages.push(pb::StreamLogsResponse { lines: batch });
    }
    messages
}

/// The daemon's status, with `counts` of instances by state.
pub fn daemon_status(
    info: &DaemonInfo,
    counts: &std::collections::BTreeMap<InstanceState, u32>,
) -> pb::GetDaemonStatusResponse {
    let (store_error, store_failing_since) = match &*info.store_health.borrow() {
        StoreHealth::Writable => (String::new(), None),
        StoreHealth::Failing { cause, since } => (cause.clone(), time(*since)),
    };
    pb::GetDaemonStatusResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        started_at: Some(timestamp(info.started_at)),
        uptime: Some(info.started.elapsed().into()),
        listen_addresses: info.listen_addresses.clone(),
        data_dir: info.data_dir.display().to_string(),
        instance_count: counts.values().sum(),
        instance_counts: counts
            .iter()
            .map(|(&state, &count)| pb::InstanceStateCount {
                state: self::state(state).into(),
                count,
            })
            .collect(),
        port_range: Some(pb::PortRange {
            first: info.port_range.first.into(),
            last: info.port_range.last.into(),
        }),
        max_instances: info.max_instances,
        sync_root: info.sync_root.display().to_string(),
        workspaces_dir: info.workspaces_dir.display().to_string(),
        http_address: info
            .dashboard
            .as_ref()
            .map(|dashboard| dashboard.url.clone())
            .unwrap_or_default(),
        store_error,
        store_failing_since,
        tls_fingerprint: info.tls_fingerprint.clone(),
        history_path: (info.history_path.as_deref())
            .map(|path| path.display().to_string())
            .unwrap_or_default(),
    }
}

/// A workspace's status owning `instance_count` instances.
pub fn workspace(name: &str, status: &WorkspaceStatus, instance_count: usize) -> pb::Workspace {
    pb::Workspace {
        name: name.to_owned(),
        file: status.file.display().to_string(),
        last_applied_at: status.last_applied_at.map(timestamp),
        last_errors: status.last_errors.clone(),
        instance_count: instance_count as u32,
    }
}

/// A workspace's definition, as applied.
pub fn workspace_definition(workspace: &Workspace) -> pb::WorkspaceDefinition {
    pb::WorkspaceDefinition {
        defaults: Some(pb::WorkspaceDefaults {
            env: workspace.defaults.env.clone().into_iter().collect(),
            labels: workspace.defaults.labels.clone().into_iter().collect(),
            health: None,
            restart: None,
        }),
        instances: workspace.instances.iter().map(spec_message).collect(),
    }
}

/// Where an `ApplyWorkspace` takes its workspace from (the workspace
/// engine checks it).
pub fn workspace_source(source: Option<pb::apply_workspace_request::Source>) -> Source {
    match source {
        Some(pb::apply_workspace_request::Source::File(file)) => Source::File(file),
        Some(pb::apply_workspace_request::Source::Name(name)) => Source::Name(name),
        None => Source::Name(String::new()),
    }
}
