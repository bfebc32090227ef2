//! What the user asks for: a validated instance spec. Shared by the daemon
//! (every front end, and workspace files) and by `outpostctl workspace
//! check`, so both refuse the same specs with the same words. One job,
//! what a valid spec is, for managed and for external instances; long
//! because every field has its rule.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::limits::{
    self, MAX_ARG_LEN, MAX_ARGS, MAX_COMMAND_LEN, MAX_DURATION, MAX_ENV_VARS, MAX_HOST_LEN,
    MAX_NAME_LEN, MAX_PATH_LEN, MAX_PID, MAX_RESTARTS, MAX_SPAWN_BYTES, MAX_STOP_GRACE,
    MAX_THRESHOLD, MAX_URL_LEN, quoted,
};

mod dependencies;
mod readiness;
mod resources;

pub use dependencies::{
    Condition, Graph, MAX_DEPENDENCIES, describe_cycle, find_cycle, layers, parse_after,
};
pub use readiness::{MAX_LOG_PATTERN, MIN_WATCHDOG, Readiness};
pub use resources::{Limits, parse_bytes, parse_percent};

/// A field that cannot be used, named as the API names it
/// (`spec.health.interval`), and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Longest label of a name (between dots), as in DNS.
const MAX_LABEL_LEN: usize = 63;
/// Default grace period between the stop signal and SIGKILL.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// Default time an instance may stay STARTING.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where an instance's port comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortChoice {
    /// No port.
    #[default]
    None,
    /// The lowest free port of the pool.
    Auto,
    /// A fixed port.
    Fixed(u16),
}

/// A validated instance spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct InstanceSpec {
    /// Unique DNS-like name.
    pub name: String,
    /// Absolute project directory, unique among instances.
    pub project_path: Option<PathBuf>,
    /// Program to run.
    pub command: String,
    /// Its arguments; `{port}` is substituted.
    pub args: Vec<String>,
    /// Extra environment; `{port}` is substituted in values.
    pub env: BTreeMap<String, String>,
    /// Working directory; defaults to the project path.
    pub working_dir: Option<PathBuf>,
    /// Port request.
    pub port: PortChoice,
    /// Signal sent to the process group on stop.
    #[serde(with = "signal_by_name")]
    pub stop_signal: Signal,
    /// Time between the stop signal and SIGKILL.
    pub stop_grace: Duration,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Readiness and liveness probing.
    pub health: HealthCheck,
    /// What happens after a failure.
    pub restart: RestartPolicy,
    /// Stop after this long without activity.
    pub idle_timeout: Option<Duration>,
    /// Longest time in STARTING before the start counts as failed.
    pub startup_timeout: Duration,
    /// What makes it ready (absent in records of older daemons: none).
    #[serde(default)]
    pub readiness: Readiness,
    /// What its process tree may use (absent in older records: nothing).
    #[serde(default)]
    pub limits: Limits,
    /// The instances it starts after, by name, and what it needs of each.
    #[serde(default)]
    pub depends_on: BTreeMap<String, Condition>,
    /// When it restarts, its running dependents go back to waiting and
    /// start again once it is ready.
    #[serde(default)]
    pub restart_dependents: bool,
}

/// How an instance's health is probed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// A live process is healthy.
    None,
    /// A TCP connection can be opened.
    Tcp {
        /// Host to connect to.
        host: String,
        /// Port; `None` means the instance's port.
        port: Option<u16>,
    },
    /// GET answers 2xx.
    Http {
        /// A full `http://` URL, or a path on the instance's port.
        target: HttpTarget,
    },
    /// A command exits 0.
    Exec {
        /// Program and arguments.
        command: Vec<String>,
    },
}

/// Where an HTTP probe goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpTarget {
    /// A path on 127.0.0.1 at the instance's port.
    Path(String),
    /// A full URL.
    Url(String),
}

impl Probe {
    /// A TCP probe: an empty `host` is 127.0.0.1, no `port` the instance's.
    pub fn tcp(host: String, port: Option<u16>) -> Self {
        let host = if host.is_empty() {
            "127.0.0.1".to_owned()
        } else {
            host
        };
        Self::Tcp { host, port }
    }

    /// An HTTP probe: of `url` when given, else of `path` on the
    /// instance's port ("/" when empty).
    pub fn http(url: String, path: String) -> Self {
        let target = if !url.is_empty() {
            HttpTarget::Url(url)
        } else if path.is_empty() {
            HttpTarget::Path("/".to_owned())
        } else {
            HttpTarget::Path(path)
        };
        Self::Http { target }
    }
}

/// Health probing of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct HealthCheck {
    pub probe: Probe,
    /// Time between checks.
    pub interval: Duration,
    /// Limit of one check.
    pub timeout: Duration,
    /// Consecutive failures that make a running instance unhealthy.
    pub failure_threshold: u32,
    /// Consecutive successes that make an unhealthy instance healthy.
    pub success_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            probe: Probe::None,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
            success_threshold: 1,
        }
    }
}

/// When an instance is restarted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartMode {
    /// Never on its own.
    #[default]
    Never,
    /// After a failure: non-zero exit, signal, failed health, failed start.
    OnFailure,
    /// After any exit the user did not ask for.
    Always,
}

/// Restarts with exponential backoff and a circuit breaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct RestartPolicy {
    /// When to restart.
    pub mode: RestartMode,
    /// First delay.
    pub initial_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
    /// Consecutive failures that open the breaker.
    pub max_restarts: u32,
    /// Healthy time after which the failure count resets.
    pub reset_after: Duration,
    /// Time the open breaker waits before a half-open attempt.
    pub cooldown: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            mode: RestartMode::Never,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(16),
            max_restarts: 5,
            reset_after: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Raw spec fields as they arrive, before validation.
#[derive(Debug, Default)]
pub struct SpecInput {
    /// See [`InstanceSpec::name`].
    pub name: String,
    /// See [`InstanceSpec::project_path`]; empty means none.
    pub project_path: String,
    /// See [`InstanceSpec::command`].
    pub command: String,
    /// See [`InstanceSpec::args`].
    pub args: Vec<String>,
    /// See [`InstanceSpec::env`].
    pub env: BTreeMap<String, String>,
    /// See [`InstanceSpec::working_dir`]; empty means the default.
    pub working_dir: String,
    /// See [`InstanceSpec::port`].
    pub port: PortChoice,
    /// Signal name; empty means SIGTERM.
    pub stop_signal: String,
    /// Grace period; `None` means the default.
    pub stop_grace: Option<Duration>,
    /// See [`InstanceSpec::labels`].
    pub labels: BTreeMap<String, String>,
    /// See [`InstanceSpec::health`]; checked against the port choice.
    pub health: HealthCheck,
    /// See [`InstanceSpec::restart`]; checked for consistency.
    pub restart: RestartPolicy,
    /// See [`InstanceSpec::idle_timeout`].
    pub idle_timeout: Option<Duration>,
    /// See [`InstanceSpec::startup_timeout`]; `None` means the default.
    pub startup_timeout: Option<Duration>,
    /// See [`InstanceSpec::readiness`].
    pub readiness: Readiness,
    /// See [`InstanceSpec::limits`].
    pub limits: Limits,
    /// See [`InstanceSpec::depends_on`].
    pub depends_on: BTreeMap<String, Condition>,
    /// See [`InstanceSpec::restart_dependents`].
    pub restart_dependents: bool,
}

/// An [`InvalidField`] error for `field`.
pub fn invalid(field: &str, reason: impl Into<String>) -> InvalidField {
    InvalidField {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Whether `text` has the shape of an instance id: `i-` and 16 hex digits.
/// Names never have it, so a reference to an instance is unambiguous.
pub fn looks_like_id(text: &str) -> bool {
    text.strip_prefix("i-").is_some_and(|hex| {
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// Checks an instance name: DNS-like labels of `[a-z0-9-]` separated by dots.
pub fn validate_name(field: &str, name: &str) -> Result<(), InvalidField> {
    if name.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(
            field,
            format!("longer than {MAX_NAME_LEN} characters"),
        ));
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(invalid(
                field,
                format!(
                    "{} is not a valid name: use lowercase letters, digits and '-' in dot-separated parts of 1-{MAX_LABEL_LEN} characters, not starting or ending with '-'",
                    quoted(name)
                ),
            ));
        }
    }
    if looks_like_id(name) {
        return Err(invalid(
            field,
            format!("{} looks like an instance id", quoted(name)),
        ));
    }
    Ok(())
}

/// Checks that `path` is an absolute path to an existing directory.
pub fn validate_dir(field: &str, path: &str) -> Result<PathBuf, InvalidField> {
    limits::length(field, path, MAX_PATH_LEN)?;
    no_nul(field, path)?;
    let shown = limits::cut(path);
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(invalid(field, format!("{shown} is not an absolute path")));
    }
    if !path.is_dir() {
        return Err(invalid(
            field,
            format!("{shown} is not an existing directory"),
        ));
    }
    Ok(path.to_owned())
}

fn no_nul(field: &str, text: &str) -> Result<(), InvalidField> {
    if text.contains('\0') {
        Err(invalid(field, "must not contain NUL"))
    } else {
        Ok(())
    }
}

/// Checks a program's arguments (or an exec probe's command line): how
/// many, how long each, no NUL.
fn validate_argv(field: &str, args: &[String]) -> Result<(), InvalidField> {
    limits::count(field, args.len() as u64, MAX_ARGS as u64)?;
    for arg in args {
        limits::length(field, arg, MAX_ARG_LEN)?;
        no_nul(field, arg)?;
    }
    Ok(())
}

/// Parses a signal name: "SIGTERM", "TERM" or "sigterm".
pub fn parse_signal(text: &str) -> Option<Signal> {
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).ok()
}

impl InstanceSpec {
    /// Validates raw input; errors name the offending field (`spec.name`, …).
    pub fn validate(input: SpecInput) -> Result<Self, InvalidField> {
        validate_name("spec.name", &input.name)?;
        let project_path = match input.project_path.as_str() {
            "" => None,
            path => Some(validate_dir("spec.project_path", path)?),
        };
        if input.command.trim().is_empty() {
            return Err(invalid("spec.command", "must not be empty"));
        }
        limits::length("spec.command", &input.command, MAX_COMMAND_LEN)?;
        no_nul("spec.command", &input.command)?;
        validate_argv("spec.args", &input.args)?;
        limits::count("spec.env", input.env.len() as u64, MAX_ENV_VARS as u64)?;
        for (key, value) in &input.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(invalid(
                    "spec.env",
                    format!("{} is not a valid variable name", quoted(key)),
                ));
            }
            // The kernel's limit is on the whole "NAME=value" string.
            let entry = key.len() + 1 + value.len();
            if entry > MAX_ARG_LEN {
                return Err(invalid(
                    "spec.env",
                    format!(
                        "{}=value is {entry} bytes long, more than the limit of {MAX_ARG_LEN} bytes",
                        quoted(key)
                    ),
                ));
            }
            no_nul("spec.env", value)?;
        }
        let spawn_bytes = input.command.len()
            + input.args.iter().map(|arg| arg.len() + 1).sum::<usize>()
            + input
                .env
                .iter()
                .map(|(key, value)| key.len() + value.len() + 2)
                .sum::<usize>();
        if spawn_bytes > MAX_SPAWN_BYTES {
            return Err(invalid(
                "spec.args",
                format!(
                    "the command, its arguments and environment are {spawn_bytes} bytes together, more than the limit of {MAX_SPAWN_BYTES} bytes"
                ),
            ));
        }
        // The working directory must be absolute; whether it exists is
        // checked when the process is spawned.
        limits::length("spec.working_dir", &input.working_dir, MAX_PATH_LEN)?;
        no_nul("spec.working_dir", &input.working_dir)?;
        let working_dir = match input.working_dir.as_str() {
            "" => None,
            dir if Path::new(dir).is_absolute() => Some(PathBuf::from(dir)),
            dir => {
                return Err(invalid(
                    "spec.working_dir",
                    format!("{} is not an absolute path", limits::cut(dir)),
                ));
            }
        };
        if input.port == PortChoice::Fixed(0) {
            return Err(invalid("spec.port.number", "must be from 1 to 65535"));
        }
        let stop_signal = match input.stop_signal.as_str() {
            "" => Signal::SIGTERM,
            name => parse_signal(name).ok_or_else(|| {
                invalid(
                    "spec.stop_signal",
                    format!("{} is not a signal name", quoted(name)),
                )
            })?,
        };
        let stop_grace = input.stop_grace.unwrap_or(DEFAULT_STOP_GRACE);
        limits::duration("spec.stop_grace_period", stop_grace, MAX_STOP_GRACE)?;
        limits::labels("spec.labels", input.labels.iter())?;
        validate_health("spec.health", &input.health, input.port)?;
        validate_restart(&input.restart)?;
        if input.idle_timeout == Some(Duration::ZERO) {
            return Err(invalid(
                "spec.idle_timeout",
                "must be positive (leave it unset for none)",
            ));
        }
        if let Some(timeout) = input.idle_timeout {
            limits::duration("spec.idle_timeout", timeout, MAX_DURATION)?;
        }
        let startup_timeout = input.startup_timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT);
        if startup_timeout.is_zero() {
            return Err(invalid("spec.startup_timeout", "must be positive"));
        }
        limits::duration("spec.startup_timeout", startup_timeout, MAX_DURATION)?;
        input.readiness.validate("spec.readiness")?;
        input.limits.validate("spec.limits")?;
        dependencies::validate("spec.depends_on", &input.name, &input.depends_on)?;
        Ok(Self {
            name: input.name,
            project_path,
            command: input.command,
            args: input.args,
            env: input.env,
            working_dir,
            port: input.port,
            stop_signal,
            stop_grace,
            labels: input.labels,
            health: input.health,
            restart: input.restart,
            idle_timeout: input.idle_timeout,
            startup_timeout,
            readiness: input.readiness,
            limits: input.limits,
            depends_on: input.depends_on,
            restart_dependents: input.restart_dependents,
        })
    }
}

/// Checks a health check against the instance's port choice; errors name
/// the fields under `prefix` (`spec.health`).
pub fn validate_health(
    prefix: &str,
    health: &HealthCheck,
    port: PortChoice,
) -> Result<(), InvalidField> {
    let field = |name: &str| format!("{prefix}.{name}");
    let has_port = port != PortChoice::None;
    match &health.probe {
        Probe::None => {}
        Probe::Tcp { port: None, .. } if !has_port => {
            return Err(invalid(
                &field("tcp.port"),
                "the instance has no port: give the port to check",
            ));
        }
        Probe::Tcp { host, .. } => {
            limits::length(&field("tcp.host"), host, MAX_HOST_LEN)?;
        }
        Probe::Http {
            target: HttpTarget::Path(path),
        } => {
            if !has_port {
                return Err(invalid(
                    &field("http"),
                    "the instance has no port: give a full url to check",
                ));
            }
            limits::length(&field("http.path"), path, MAX_URL_LEN)?;
            if !path.starts_with('/') {
                return Err(invalid(
                    &field("http.path"),
                    format!("{} must start with '/'", quoted(path)),
                ));
            }
        }
        Probe::Http {
            target: HttpTarget::Url(url),
        } => {
            limits::length(&field("http.url"), url, MAX_URL_LEN)?;
            if !url.starts_with("http://") {
                return Err(invalid(
                    &field("http.url"),
                    format!("{} is not an http:// URL", quoted(url)),
                ));
            }
        }
        Probe::Exec { command } => {
            if command.first().is_none_or(|program| program.is_empty()) {
                return Err(invalid(&field("exec.command"), "must name a program"));
            }
            validate_argv(&field("exec.command"), command)?;
        }
    }
    if health.interval < limits::MIN_PROBE_INTERVAL {
        return Err(invalid(
            &field("interval"),
            format!(
                "must be at least {:?} (the limit), not {:?}",
                limits::MIN_PROBE_INTERVAL,
                health.interval
            ),
        ));
    }
    limits::duration(&field("interval"), health.interval, MAX_DURATION)?;
    if health.timeout.is_zero() {
        return Err(invalid(&field("timeout"), "must be positive"));
    }
    limits::duration(&field("timeout"), health.timeout, MAX_DURATION)?;
    if health.failure_threshold == 0 {
        return Err(invalid(&field("failure_threshold"), "must be at least 1"));
    }
    limits::count(
        &field("failure_threshold"),
        health.failure_threshold.into(),
        MAX_THRESHOLD.into(),
    )?;
    if health.success_threshold == 0 {
        return Err(invalid(&field("success_threshold"), "must be at least 1"));
    }
    limits::count(
        &field("success_threshold"),
        health.success_threshold.into(),
        MAX_THRESHOLD.into(),
    )?;
    Ok(())
}

/// Checks a restart policy for consistency.
pub fn validate_restart(restart: &RestartPolicy) -> Result<(), InvalidField> {
    for (name, value) in [
        ("initial_delay", restart.initial_delay),
        ("max_delay", restart.max_delay),
        ("reset_after", restart.reset_after),
        ("cooldown", restart.cooldown),
    ] {
        limits::duration(&format!("spec.restart.{name}"), value, MAX_DURATION)?;
    }
    if restart.max_delay < restart.initial_delay {
        return Err(invalid(
            "spec.restart.max_delay",
            format!(
                "{:?} is less than initial_delay {:?}",
                restart.max_delay, restart.initial_delay
            ),
        ));
    }
    if restart.max_restarts == 0 {
        return Err(invalid("spec.restart.max_restarts", "must be at least 1"));
    }
    limits::count(
        "spec.restart.max_restarts",
        restart.max_restarts.into(),
        MAX_RESTARTS.into(),
    )?;
    Ok(())
}

/// A process outpost did not start, to be watched, as the request gives it.
#[derive(Debug, Default)]
pub struct ExternalInput {
    /// Its name, as an instance's.
    pub name: String,
    /// Its pid; 0 for none.
    pub pid: u32,
    /// The port it serves on; 0 for none.
    pub port: u32,
    /// Its project directory; empty for none.
    pub project_path: String,
    pub labels: BTreeMap<String, String>,
    /// How to probe it; checked against the port.
    pub health: HealthCheck,
}

/// A validated external process: what to watch, and its spec (no command;
/// never restarted, since outpost cannot start it).
#[derive(Debug)]
pub struct ExternalSpec {
    /// The pid to watch, when given.
    pub pid: Option<u32>,
    /// Its spec: name, project, port, labels and health.
    pub spec: InstanceSpec,
}

impl ExternalInput {
    /// Validates the input: a pid, a port or both are required (without
    /// either there is nothing to watch or probe).
    pub fn validate(self) -> Result<ExternalSpec, InvalidField> {
        validate_name("name", &self.name)?;
        let port =
            match self.port {
                0 => None,
                port => Some(u16::try_from(port).map_err(|_| {
                    invalid("port", format!("{port} is not a port from 1 to 65535"))
                })?),
            };
        limits::count("pid", self.pid.into(), MAX_PID.into())?;
        let pid = Some(self.pid).filter(|&pid| pid != 0);
        if pid.is_none() && port.is_none() {
            return Err(invalid("pid", "give a pid, a port, or both"));
        }
        let project_path = match self.project_path.as_str() {
            "" => None,
            path => Some(validate_dir("project_path", path)?),
        };
        let port = port.map_or(PortChoice::None, PortChoice::Fixed);
        limits::labels("labels", self.labels.iter())?;
        validate_health("health", &self.health, port)?;
        let spec = InstanceSpec {
            name: self.name,
            project_path,
            command: String::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            port,
            stop_signal: Signal::SIGTERM,
            stop_grace: DEFAULT_STOP_GRACE,
            labels: self.labels,
            health: self.health,
            restart: RestartPolicy::default(),
            idle_timeout: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            readiness: Readiness::default(),
            limits: Limits::default(),
            depends_on: BTreeMap::new(),
            restart_dependents: false,
        };
        Ok(ExternalSpec { pid, spec })
    }
}

/// Serialises a signal as its name ("SIGTERM").
mod signal_by_name {
    use nix::sys::signal::Signal;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(signal: &Signal, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(signal.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Signal, D::Error> {
        let name = String::deserialize(deserializer)?;
        super::parse_signal(&name)
            .ok_or_else(|| D::Error::custom(format!("unknown signal {name:?}")))
    }
}

#[cfg(test)]
mod tests;

/// Arbitrary input never panics validation, and what it accepts keeps to
/// every limit and survives a round trip.
#[cfg(test)]
mod properties;
