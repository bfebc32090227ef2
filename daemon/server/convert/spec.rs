//! Translation of instance specs, in both directions: a request's spec
//! (and an external registration) into the raw input the domain
//! validates, and a validated spec back into its message.

use std::collections::BTreeMap;

use tonic::Status;

use outpost::{
    limits::{cut, duration_message},
    proto::v1 as pb,
    spec::{
        Condition, ExternalInput, HealthCheck, HttpTarget, InstanceSpec, Limits, PortChoice, Probe,
        Readiness, RestartMode, RestartPolicy, SpecInput,
    },
};

use super::{duration, invalid};
use crate::orchestrator::OrchestratorError;

/// A health check from a request (fields named under `prefix`); unset
/// fields take their defaults.
fn health_check(prefix: &str, check: Option<pb::HealthCheck>) -> Result<HealthCheck, Status> {
    let defaults = HealthCheck::default();
    let Some(check) = check else {
        return Ok(defaults);
    };
    let probe = match check.probe {
        None => Probe::None,
        Some(pb::health_check::Probe::Tcp(tcp)) => Probe::tcp(
            tcp.host,
            match tcp.port {
                0 => None,
                port => Some(u16::try_from(port).map_err(|_| {
                    invalid(
                        &format!("{prefix}.tcp.port"),
                        format!("{port} is not a port from 1 to 65535"),
                    )
                })?),
            },
        ),
        Some(pb::health_check::Probe::Http(http)) => Probe::http(http.url, http.path),
        Some(pb::health_check::Probe::Exec(exec)) => Probe::Exec {
            command: exec.command,
        },
    };
    Ok(HealthCheck {
        probe,
        interval: duration(&format!("{prefix}.interval"), check.interval.as_ref())?
            .unwrap_or(defaults.interval),
        timeout: duration(&format!("{prefix}.timeout"), check.timeout.as_ref())?
            .unwrap_or(defaults.timeout),
        failure_threshold: check
            .failure_threshold
            .unwrap_or(defaults.failure_threshold),
        success_threshold: check
            .success_threshold
            .unwrap_or(defaults.success_threshold),
    })
}

/// A restart policy from a request; unset fields take their defaults.
fn restart_policy(policy: Option<pb::RestartPolicy>) -> Result<RestartPolicy, Status> {
    let defaults = RestartPolicy::default();
    let Some(policy) = policy else {
        return Ok(defaults);
    };
    let mode = match pb::RestartMode::try_from(policy.mode) {
        Ok(pb::RestartMode::Unspecified | pb::RestartMode::Never) => RestartMode::Never,
        Ok(pb::RestartMode::OnFailure) => RestartMode::OnFailure,
        Ok(pb::RestartMode::Always) => RestartMode::Always,
        Err(_) => {
            return Err(invalid(
                "spec.restart.mode",
                format!("unknown mode {}", policy.mode),
            ));
        }
    };
    Ok(RestartPolicy {
        mode,
        initial_delay: duration("spec.restart.initial_delay", policy.initial_delay.as_ref())?
            .unwrap_or(defaults.initial_delay),
        max_delay: duration("spec.restart.max_delay", policy.max_delay.as_ref())?
            .unwrap_or(defaults.max_delay),
        max_restarts: policy.max_restarts.unwrap_or(defaults.max_restarts),
        reset_after: duration("spec.restart.reset_after", policy.reset_after.as_ref())?
            .unwrap_or(defaults.reset_after),
        cooldown: duration("spec.restart.cooldown", policy.cooldown.as_ref())?
            .unwrap_or(defaults.cooldown),
    })
}

/// Validates a spec from a request.
pub fn spec(spec: Option<pb::InstanceSpec>) -> Result<InstanceSpec, Status> {
    Ok(InstanceSpec::validate(spec_input(spec)?).map_err(OrchestratorError::from)?)
}

/// The raw spec of a request, for the domain to validate.
pub fn spec_input(spec: Option<pb::InstanceSpec>) -> Result<SpecInput, Status> {
    let spec = spec.ok_or_else(|| invalid("spec", "is required"))?;
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
        health: health_check("spec.health", spec.health)?,
        restart: restart_policy(spec.restart)?,
        idle_timeout: duration("spec.idle_timeout", spec.idle_timeout.as_ref())?,
        startup_timeout: duration("spec.startup_timeout", spec.startup_timeout.as_ref())?,
        readiness: readiness(spec.readiness)?,
        limits: limits(spec.limits),
        depends_on: depends_on(spec.depends_on)?,
        restart_dependents: spec.restart_dependents,
    };
    Ok(input)
}

/// An external registration from a request, for the orchestrator to
/// validate.
pub fn external_input(
    request: pb::RegisterExternalInstanceRequest,
) -> Result<ExternalInput, Status> {
    Ok(ExternalInput {
        name: request.name,
        pid: request.pid,
        port: request.port,
        project_path: request.project_path,
        labels: request.labels.into_iter().collect(),
        health: health_check("health", request.health)?,
    })
}

fn health_check_message(check: &HealthCheck) -> Option<pb::HealthCheck> {
    let probe = match &check.probe {
        Probe::None => return None,
        Probe::Tcp { host, port } => pb::health_check::Probe::Tcp(pb::TcpProbe {
            host: host.clone(),
            port: port.map_or(0, u32::from),
        }),
        Probe::Http { target } => pb::health_check::Probe::Http(match target {
            HttpTarget::Path(path) => pb::HttpProbe {
                path: path.clone(),
                url: String::new(),
            },
            HttpTarget::Url(url) => pb::HttpProbe {
                path: String::new(),
                url: url.clone(),
            },
        }),
        Probe::Exec { command } => pb::health_check::Probe::Exec(pb::ExecProbe {
            command: command.clone(),
        }),
    };
    Some(pb::HealthCheck {
        probe: Some(probe),
        interval: Some(duration_message(check.interval)),
        timeout: Some(duration_message(check.timeout)),
        failure_threshold: Some(check.failure_threshold),
        success_threshold: Some(check.success_threshold),
    })
}

fn restart_policy_message(policy: &RestartPolicy) -> pb::RestartPolicy {
    pb::RestartPolicy {
        mode: match policy.mode {
            RestartMode::Never => pb::RestartMode::Never,
            RestartMode::OnFailure => pb::RestartMode::OnFailure,
            RestartMode::Always => pb::RestartMode::Always,
        }
        .into(),
        initial_delay: Some(duration_message(policy.initial_delay)),
        max_delay: Some(duration_message(policy.max_delay)),
        max_restarts: Some(policy.max_restarts),
        reset_after: Some(duration_message(policy.reset_after)),
        cooldown: Some(duration_message(policy.cooldown)),
    }
}

/// The proto form of a spec.
pub fn spec_message(spec: &InstanceSpec) -> pb::InstanceSpec {
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
        health: health_check_message(&spec.health),
        restart: Some(restart_policy_message(&spec.restart)),
        idle_timeout: spec.idle_timeout.map(duration_message),
        startup_timeout: Some(duration_message(spec.startup_timeout)),
        stop_signal: spec.stop_signal.as_str().to_owned(),
        stop_grace_period: Some(duration_message(spec.stop_grace)),
        labels: spec.labels.clone().into_iter().collect(),
        readiness: readiness_message(&spec.readiness),
        limits: spec.limits.is_set().then(|| pb::Limits {
            memory_max_bytes: spec.limits.memory_max.unwrap_or_default(),
            cpu_max_percent: spec.limits.cpu_max_percent.unwrap_or_default(),
        }),
        depends_on: spec
            .depends_on
            .iter()
            .map(|(name, &condition)| {
                (
                    name.clone(),
                    pb::DependencyCondition::from(condition).into(),
                )
            })
            .collect(),
        restart_dependents: spec.restart_dependents,
    }
}

fn depends_on(
    message: impl IntoIterator<Item = (String, i32)>,
) -> Result<BTreeMap<String, Condition>, Status> {
    message
        .into_iter()
        .map(|(name, number)| {
            let condition = match pb::DependencyCondition::try_from(number) {
                Ok(pb::DependencyCondition::Unspecified | pb::DependencyCondition::Ready) => {
                    Condition::Ready
                }
                Ok(pb::DependencyCondition::Started) => Condition::Started,
                Ok(pb::DependencyCondition::Completed) => Condition::Completed,
                Err(_) => {
                    return Err(invalid(
                        "spec.depends_on",
                        format!("unknown condition {number} for {}", cut(&name)),
                    ));
                }
            };
            Ok((name, condition))
        })
        .collect()
}

fn limits(message: Option<pb::Limits>) -> Limits {
    let message = message.unwrap_or_default();
    Limits {
        memory_max: Some(message.memory_max_bytes).filter(|&bytes| bytes > 0),
        cpu_max_percent: Some(message.cpu_max_percent).filter(|&percent| percent > 0),
    }
}

fn readiness(message: Option<pb::Readiness>) -> Result<Readiness, Status> {
    let Some(message) = message else {
        return Ok(Readiness::default());
    };
    Ok(Readiness {
        log_pattern: Some(message.log_pattern).filter(|pattern| !pattern.is_empty()),
        notify: message.notify,
        watchdog: duration("spec.readiness.watchdog", message.watchdog.as_ref())?,
    })
}

fn readiness_message(readiness: &Readiness) -> Option<pb::Readiness> {
    readiness.is_set().then(|| pb::Readiness {
        log_pattern: readiness.log_pattern.clone().unwrap_or_default(),
        notify: readiness.notify,
        watchdog: readiness.watchdog.map(duration_message),
    })
}

pub fn path_text(path: Option<&std::path::Path>) -> String {
    path.map(|path| path.display().to_string())
        .unwrap_or_default()
}
