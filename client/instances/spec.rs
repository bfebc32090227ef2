//! The spec flags of `run` and `up`, their parsers, and how they become an
//! `InstanceSpec`.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Args, ValueEnum};
use outpost::{limits::duration_message, proto::v1 as pb, spec::Condition};

/// Spec flags shared by `run` and `up`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Port: "auto" (from the daemon's pool) or a number; exported as PORT and substituted for {port}
    #[arg(long, value_name = "auto|N")]
    port: Option<PortArg>,
    /// Environment variable for the process (repeatable); {port} is substituted
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// Working directory [default: the project directory]
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Label for filtering (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = key_value)]
    labels: Vec<(String, String)>,
    /// Signal sent to the process group on stop
    #[arg(long, value_name = "SIGNAL", default_value = "SIGTERM")]
    stop_signal: String,
    /// Time between the stop signal and SIGKILL
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    stop_grace: Option<Duration>,
    /// Health check: tcp, tcp:PORT, http:/PATH, http://HOST:PORT/PATH or exec:'SHELL COMMAND'
    #[arg(long, value_name = "CHECK")]
    health: Option<HealthArg>,
    /// Time between health checks [default: 2s]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    health_interval: Option<Duration>,
    /// Limit of one health check [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    health_timeout: Option<Duration>,
    /// Failed checks in a row that make a running instance unhealthy [default: 3]
    #[arg(long, value_name = "N")]
    health_failures: Option<u32>,
    /// When to restart: never, on-failure or always [default: never]
    #[arg(long, value_enum, value_name = "WHEN")]
    restart: Option<RestartArg>,
    /// Restarts tried in a row before the circuit breaker opens [default: 5]
    #[arg(long, value_name = "N")]
    max_restarts: Option<u32>,
    /// First and largest restart delay [default: 1s..16s]
    #[arg(long, value_name = "MIN..MAX", value_parser = backoff_range)]
    backoff: Option<(Duration, Duration)>,
    /// Healthy time after which the failure count resets [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    reset_after: Option<Duration>,
    /// Time an open circuit breaker waits before one more attempt [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    cooldown: Option<Duration>,
    /// Stop the instance after this long without activity
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Longest time to become ready before the start counts as failed [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    startup_timeout: Option<Duration>,
    /// Ready when a line of its output matches this regular expression
    #[arg(long, value_name = "REGEX", conflicts_with = "ready_notify")]
    ready_log: Option<String>,
    /// Ready when it sends READY=1 over sd_notify ($NOTIFY_SOCKET)
    #[arg(long)]
    ready_notify: bool,
    /// With --ready-notify: it must send WATCHDOG=1 at least this often, or it is restarted
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "ready_notify")]
    watchdog: Option<Duration>,
    /// Most memory its whole process tree may use, e.g. 512M or 2G; over it, it is restarted per policy
    #[arg(long, value_name = "SIZE", value_parser = outpost::spec::parse_bytes)]
    memory_max: Option<u64>,
    /// Most CPU of its process tree, in percent of one core, e.g. 50% (needs a cgroup v2 cpu controller)
    #[arg(long, value_name = "PERCENT", value_parser = outpost::spec::parse_percent)]
    cpu_max: Option<u32>,
    /// Start only once this instance is ready (repeatable); :started or :completed (exited 0) instead
    #[arg(long = "after", value_name = "NAME[:CONDITION]", value_parser = outpost::spec::parse_after)]
    after: Vec<(String, Condition)>,
    /// When this instance restarts, restart the running instances that depend on it
    #[arg(long)]
    restart_dependents: bool,
}

impl SpecArgs {
    pub(super) fn spec(
        self,
        name: String,
        project: Option<&Path>,
        command: Vec<String>,
    ) -> pb::InstanceSpec {
        let mut command = command.into_iter();
        let port = self.port.map(|port| match port {
            PortArg::Auto => pb::PortRequest {
                mode: pb::PortMode::Auto.into(),
                number: 0,
            },
            PortArg::Fixed(number) => pb::PortRequest {
                mode: pb::PortMode::Fixed.into(),
                number,
            },
        });
        pb::InstanceSpec {
            name,
            project_path: project.map(absolute).unwrap_or_default(),
            command: command.next().unwrap_or_default(),
            args: command.collect(),
            env: self.env.into_iter().collect(),
            working_dir: self.cwd.as_deref().map(absolute).unwrap_or_default(),
            port,
            stop_signal: self.stop_signal,
            stop_grace_period: self.stop_grace.map(duration_message),
            labels: self.labels.into_iter().collect(),
            health: self.health.map(|HealthArg(probe)| pb::HealthCheck {
                probe: Some(probe),
                interval: self.health_interval.map(duration_message),
                timeout: self.health_timeout.map(duration_message),
                failure_threshold: self.health_failures,
                success_threshold: None,
            }),
            restart: Some(pb::RestartPolicy {
                mode: match self.restart {
                    None => pb::RestartMode::Unspecified,
                    Some(RestartArg::Never) => pb::RestartMode::Never,
                    Some(RestartArg::OnFailure) => pb::RestartMode::OnFailure,
                    Some(RestartArg::Always) => pb::RestartMode::Always,
                }
                .into(),
                initial_delay: self.backoff.map(|(first, _)| duration_message(first)),
                max_delay: self.backoff.map(|(_, last)| duration_message(last)),
                max_restarts: self.max_restarts,
                reset_after: self.reset_after.map(duration_message),
                cooldown: self.cooldown.map(duration_message),
            }),
            idle_timeout: self.idle_timeout.map(duration_message),
            startup_timeout: self.startup_timeout.map(duration_message),
            readiness: (self.ready_log.is_some() || self.ready_notify).then(|| pb::Readiness {
                log_pattern: self.ready_log.unwrap_or_default(),
                notify: self.ready_notify,
                watchdog: self.watchdog.map(duration_message),
            }),
            limits: (self.memory_max.is_some() || self.cpu_max.is_some()).then(|| pb::Limits {
                memory_max_bytes: self.memory_max.unwrap_or_default(),
                cpu_max_percent: self.cpu_max.unwrap_or_default(),
            }),
            depends_on: (self.after.into_iter())
                .map(|(name, condition)| (name, pb::DependencyCondition::from(condition).into()))
                .collect(),
            restart_dependents: self.restart_dependents,
        }
    }
}

/// A `--health` value.
#[derive(Clone, Debug)]
struct HealthArg(pb::health_check::Probe);

impl std::str::FromStr for HealthArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        use pb::health_check::Probe;
        let probe = if text == "tcp" {
            Probe::Tcp(pb::TcpProbe::default())
        } else if let Some(port) = text.strip_prefix("tcp:") {
            let port = port
                .parse()
                .map_err(|_| format!("{port:?} is not a port number"))?;
            Probe::Tcp(pb::TcpProbe {
                port,
                ..Default::default()
            })
        } else if text.starts_with("http://") {
            Probe::Http(pb::HttpProbe {
                url: text.to_owned(),
                ..Default::default()
            })
        } else if let Some(path) = text.strip_prefix("http:") {
            Probe::Http(pb::HttpProbe {
                path: path.to_owned(),
                ..Default::default()
            })
        } else if let Some(command) = text.strip_prefix("exec:") {
            Probe::Exec(pb::ExecProbe {
                command: vec!["sh".to_owned(), "-c".to_owned(), command.to_owned()],
            })
        } else {
            return Err(format!(
                "unknown check kind {text:?}: use tcp, tcp:PORT, http:/PATH, http://HOST:PORT/PATH or exec:COMMAND"
            ));
        };
        Ok(Self(probe))
    }
}

/// A `--restart` value.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum RestartArg {
    /// Never restart.
    Never,
    /// Restart after failures.
    OnFailure,
    /// Restart after any exit.
    Always,
}

/// "1s..16s" → (1 s, 16 s).
fn backoff_range(text: &str) -> Result<(Duration, Duration), String> {
    let (first, last) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not MIN..MAX, e.g. 1s..16s"))?;
    let parse =
        |part: &str| humantime::parse_duration(part).map_err(|err| format!("{part:?}: {err}"));
    Ok((parse(first)?, parse(last)?))
}

/// A `--port` value.
#[derive(Clone, Debug)]
enum PortArg {
    /// From the pool.
    Auto,
    /// A fixed port.
    Fixed(u32),
}

impl std::str::FromStr for PortArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "auto" {
            return Ok(Self::Auto);
        }
        // Range checks are the daemon's, so that every client gets the same answer.
        text.parse()
            .map(Self::Fixed)
            .map_err(|_| format!("{text:?} is neither \"auto\" nor a port number"))
    }
}

/// "KEY=VALUE" → (KEY, VALUE).
pub(super) fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// Makes a user-given path absolute (relative to the current directory):
/// the daemon runs elsewhere.
pub(super) fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

/// `up`'s default name: "My Site_2" → "my-site-2".
pub(super) fn name_from_path(path: &Path) -> String {
    let base = std::path::absolute(path)
        .ok()
        .and_then(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let name: String = base
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_directory() {
        assert_eq!(name_from_path(Path::new("/srv/My Site_2")), "my-site-2");
    }
}
