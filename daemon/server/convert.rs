//! Translation between the `outpost.v1` messages and the orchestrator's
//! domain types. Request fields are validated here (or by the domain types
//! they become); every error names the field.

use std::time::{Duration, SystemTime};

use tonic::Status;

use super::timestamp;
use crate::{
    orchestrator::{
        OrchestratorError,
        events::{Change, Event, Snapshot, SnapshotKind},
        spec::{InstanceSpec, PortChoice, SpecInput},
        status::{
            Exit, ExitOutcome, InstanceKind, InstanceState, InstanceStatus, Reason, signal_name,
        },
    },
    proto::v1 as pb,
};

/// An INVALID_ARGUMENT status naming `field`.
pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {reason}"))
}

impl From<OrchestratorError> for Status {
    fn from(err: OrchestratorError) -> Self {
        status(err)
    }
}

/// Maps a domain error to its gRPC status.
pub fn status(err: OrchestratorError) -> Status {
    let message = err.to_string();
    match err {
        OrchestratorError::InvalidArgument { .. } => Status::invalid_argument(message),
        OrchestratorError::NotFound(_) => Status::not_found(message),
        OrchestratorError::AlreadyExists(_) => Status::already_exists(message),
        OrchestratorError::FailedPrecondition(_) => Status::failed_precondition(message),
        OrchestratorError::ResourceExhausted(_) => Status::resource_exhausted(message),
    }
}

/// A protobuf duration as a std one; negative or malformed is invalid.
pub fn duration(
    field: &str,
    value: Option<&pbjson_types::Duration>,
) -> Result<Option<Duration>, Status> {
    let Some(value) = value else { return Ok(None) };
    if value.seconds < 0 || value.nanos < 0 || value.nanos >= 1_000_000_000 {
        return Err(invalid(field, "must be a non-negative duration"));
    }
    Ok(Some(Duration::new(
        value.seconds as u64,
        value.nanos as u32,
    )))
}

fn proto_duration(value: Duration) -> pbjson_types::Duration {
    value.into()
}

/// A required, non-empty instance reference (id or name).
pub fn instance_key<'a>(field: &str, key: &'a str) -> Result<&'a str, Status> {
    if key.trim().is_empty() {
        Err(invalid(field, "must name an instance (id or name)"))
    } else {
        Ok(key)
    }
}

/// Rejects spec fields whose capability this daemon does not have yet.
fn refuse_unbuilt(spec: &pb::InstanceSpec) -> Result<(), Status> {
    let unbuilt = |field: &str| {
        Status::unimplemented(format!(
            "{field}: not available yet (health checks, restart policies and idle timeouts arrive with the orchestrator policies)"
        ))
    };
    if spec.health.is_some() {
        return Err(unbuilt("spec.health"));
    }
    if spec
        .restart
        .as_ref()
        .is_some_and(|restart| restart.mode > pb::RestartMode::Never as i32)
    {
        return Err(unbuilt("spec.restart"));
    }
    if spec.idle_timeout.is_some() {
        return Err(unbuilt("spec.idle_timeout"));
    }
    if spec.startup_timeout.is_some() {
        return Err(unbuilt("spec.startup_timeout"));
    }
    Ok(())
}

/// Validates a spec from a request.
pub fn spec(spec: Option<pb::InstanceSpec>) -> Result<InstanceSpec, Status> {
    let spec = spec.ok_or_else(|| invalid("spec", "is required"))?;
    refuse_unbuilt(&spec)?;
    let port = match spec.port {
        None => PortChoice::None,
        Some(port) => match pb::PortMode::try_from(port.mode) {
            Ok(pb::PortMode::Unspecified | pb::PortMode::None) => PortChoice::None,
            Ok(pb::PortMode::Auto) => PortChoice::Auto,
            Ok(pb::PortMode::Fixed) => match u16::try_from(port.number) {
                Ok(number) if number > 0 => PortChoice::Fixed(number),
                _ => {
                    return Err(invalid(
                        "spec.port.number",
                        format!("{} is not a port from 1 to 65535", port.number),
                    ));
                }
            },
            Err(_) => {
                return Err(invalid(
                    "spec.port.mode",
                    format!("unknown mode {}", port.mode),
                ));
            }
        },
    };
    let input = SpecInput {
        name: spec.name,
        project_path: spec.project_path,
        command: spec.command,
        args: spec.args,
        env: spec.env.into_iter().collect(),
        working_dir: spec.working_dir,
        port,
        stop_signal: spec.stop_signal,
        stop_grace: duration("spec.stop_grace_period", spec.stop_grace_period.as_ref())?,
        labels: spec.labels.into_iter().collect(),
    };
    InstanceSpec::validate(input).map_err(status)
}

/// Pairs of domain and proto states.
const STATES: [(InstanceState, pb::InstanceState); 7] = [
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

fn spec_message(spec: &InstanceSpec) -> pb::InstanceSpec {
    let port = match spec.port {
        PortChoice::None => None,
        PortChoice::Auto => Some(pb::PortRequest {
            mode: pb::PortMode::Auto.into(),
            number: 0,
        }),
        PortChoice::Fixed(number) => Some(pb::PortRequest {
            mode: pb::PortMode::Fixed.into(),
            number: number.into(),
        }),
    };
    pb::InstanceSpec {
        name: spec.name.clone(),
        project_path: path_text(spec.project_path.as_deref()),
        command: spec.command.clone(),
        args: spec.args.clone(),
        env: spec.env.clone().into_iter().collect(),
        working_dir: path_text(spec.working_dir.as_deref()),
        port,
        health: None,
        restart: None,
        idle_timeout: None,
        startup_timeout: None,
        stop_signal: spec.stop_signal.as_str().to_owned(),
        stop_grace_period: Some(proto_duration(spec.stop_grace)),
        labels: spec.labels.clone().into_iter().collect(),
    }
}

fn path_text(path: Option<&std::path::Path>) -> String {
    path.map(|path| path.display().to_string())
        .unwrap_or_default()
}

fn time(time: SystemTime) -> Option<pbjson_types::Timestamp> {
    Some(timestamp(time))
}

/// The proto form of an instance's status.
pub fn instance(status: &InstanceStatus) -> pb::Instance {
    let process = status.process;
    pb::Instance {
        id: status.id.clone(),
        name: status.spec.name.clone(),
        kind: match status.kind {
            InstanceKind::Managed => pb::InstanceKind::Managed,
            InstanceKind::External => pb::InstanceKind::External,
        }
        .into(),
        state: state(status.state).into(),
        project_path: path_text(status.spec.project_path.as_deref()),
        pid: process.map_or(0, |p| p.pid),
        port: status.port.map_or(0, u32::from),
        health: None,
        restart_count: status.restart_count,
        last_error: status.last_error.clone().unwrap_or_default(),
        started_at: process.and_then(|p| time(p.started_at)),
        spec: Some(spec_message(&status.spec)),
        pgid: process.map_or(0, |p| p.pgid),
        state_reason: reason(status.reason).into(),
        state_changed_at: time(status.state_changed_at),
        last_exit: status.last_exit.as_ref().map(exit),
        backoff: None,
        usage: None,
        recent_failures: Vec::new(),
        last_activity_at: time(status.last_activity_at),
        created_at: time(status.created_at),
        workspace: status.workspace.clone().unwrap_or_default(),
    }
}

/// The proto form of a snapshot.
pub fn snapshot(snapshot: &Snapshot, keep: impl Fn(&InstanceStatus) -> bool) -> pb::StatusSnapshot {
    pb::StatusSnapshot {
        revision: snapshot.revision,
        kind: match snapshot.kind {
            SnapshotKind::Initial => pb::SnapshotKind::Initial,
            SnapshotKind::Resync => pb::SnapshotKind::Resync,
        }
        .into(),
        instances: snapshot
            .instances
            .iter()
            .filter(|s| keep(s))
            .map(instance)
            .collect(),
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
    };
    pb::StatusEvent {
        revision: event.revision,
        time: time(event.time),
        change: Some(change),
    }
}
