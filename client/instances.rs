//! Instance commands: run, up, ls, get, start, stop, restart, rm, register,
//! touch, logs, watch.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, SystemTime},
};

use clap::{Args, ValueEnum};
use outpost::{
    endpoint::Connection,
    proto::v1::{self as pb, status_event::Change, watch_status_response::Payload},
};

use crate::{failure::Failure, output};

/// Spec flags shared by `run` and `up`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Port: "auto" (from the daemon's pool) or a number; exported as PORT and substituted for {port}
    #[arg(long, value_name = "auto|N")]
    port: Option<PortArg>,
    /// Environment variable for the process (repeatable); {port} is substituted
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = crate::key_value)]
    env: Vec<(String, String)>,
    /// Working directory [default: the project directory]
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Label for filtering (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::key_value)]
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
}

/// A `--health` value.
#[derive(Clone, Debug)]
pub struct HealthArg(pb::health_check::Probe);

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
pub enum RestartArg {
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
pub enum PortArg {
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

/// Makes a user-given path absolute (relative to the current directory).
fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

impl SpecArgs {
    fn spec(self, name: String, project: Option<&Path>, command: Vec<String>) -> pb::InstanceSpec {
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
            stop_grace_period: self.stop_grace.map(Into::into),
            labels: self.labels.into_iter().collect(),
            health: self.health.map(|HealthArg(probe)| pb::HealthCheck {
                probe: Some(probe),
                interval: self.health_interval.map(Into::into),
                timeout: self.health_timeout.map(Into::into),
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
                initial_delay: self.backoff.map(|(first, _)| first.into()),
                max_delay: self.backoff.map(|(_, last)| last.into()),
                max_restarts: self.max_restarts,
                reset_after: self.reset_after.map(Into::into),
                cooldown: self.cooldown.map(Into::into),
            }),
            idle_timeout: self.idle_timeout.map(Into::into),
            startup_timeout: self.startup_timeout.map(Into::into),
        }
    }
}

/// `outpostctl run`.
pub async fn run(
    connection: &Connection,
    json: bool,
    name: String,
    project: Option<PathBuf>,
    no_start: bool,
    spec: SpecArgs,
    command: Vec<String>,
) -> Result<ExitCode, Failure> {
    let spec = spec.spec(name, project.as_deref(), command);
    let response = connection
        .orchestrator()
        .create_instance(pb::CreateInstanceRequest {
            spec: Some(spec),
            start: Some(!no_start),
        })
        .await?
        .into_inner();
    print_instance(json, &response, response.instance.as_ref())
}

/// `outpostctl up`: the name defaults to the project directory's name.
pub async fn up(
    connection: &Connection,
    json: bool,
    project: PathBuf,
    name: Option<String>,
    spec: SpecArgs,
    command: Vec<String>,
) -> Result<ExitCode, Failure> {
    let name = name.unwrap_or_else(|| name_from_path(&project));
    let spec = spec.spec(name, Some(&project), command);
    let response = connection
        .orchestrator()
        .get_or_create_instance(pb::GetOrCreateInstanceRequest { spec: Some(spec) })
        .await?
        .into_inner();
    print_instance(json, &response, response.instance.as_ref())
}

/// "My Site_2" → "my-site-2".
fn name_from_path(path: &Path) -> String {
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

/// Which instance operation a one-name command performs.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    /// GetInstance.
    Get,
    /// StartInstance.
    Start,
    /// RestartInstance.
    Restart,
    /// RecordActivity.
    Touch,
}

/// `outpostctl get|start|restart|touch NAME`.
pub async fn act(
    connection: &Connection,
    json: bool,
    action: Action,
    instance: String,
) -> Result<ExitCode, Failure> {
    let mut client = connection.orchestrator();
    match action {
        Action::Get => {
            let response = client
                .get_instance(pb::GetInstanceRequest { instance })
                .await?
                .into_inner();
            if json {
                output::json(&response)?;
            } else if let Some(instance) = &response.instance {
                print_details(instance)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Start => {
            let response = client
                .start_instance(pb::StartInstanceRequest { instance })
                .await?
                .into_inner();
            print_instance(json, &response, response.instance.as_ref())
        }
        Action::Restart => {
            let response = client
                .restart_instance(pb::RestartInstanceRequest { instance })
                .await?
                .into_inner();
            print_instance(json, &response, response.instance.as_ref())
        }
        Action::Touch => {
            let response = client
                .record_activity(pb::RecordActivityRequest { instance })
                .await?
                .into_inner();
            print_instance(json, &response, response.instance.as_ref())
        }
    }
}

/// `outpostctl stop NAME`.
pub async fn stop(
    connection: &Connection,
    json: bool,
    instance: String,
    grace: Option<Duration>,
    signal_external: bool,
) -> Result<ExitCode, Failure> {
    let response = connection
        .orchestrator()
        .stop_instance(pb::StopInstanceRequest {
            instance,
            grace_period: grace.map(Into::into),
            signal_external,
        })
        .await?
        .into_inner();
    print_instance(json, &response, response.instance.as_ref())
}

/// `outpostctl rm NAME`.
pub async fn remove(
    connection: &Connection,
    json: bool,
    instance: String,
    force: bool,
    signal_external: bool,
) -> Result<ExitCode, Failure> {
    let response = connection
        .orchestrator()
        .delete_instance(pb::DeleteInstanceRequest {
            instance,
            force,
            signal_external,
        })
        .await?
        .into_inner();
    if json {
        output::json(&response)?;
    } else if let Some(instance) = &response.instance {
        println!("{}: deleted", instance.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// `outpostctl register NAME`.
pub async fn register(
    connection: &Connection,
    json: bool,
    name: String,
    pid: Option<u32>,
    port: Option<u32>,
    project: Option<PathBuf>,
) -> Result<ExitCode, Failure> {
    let response = connection
        .orchestrator()
        .register_external_instance(pb::RegisterExternalInstanceRequest {
            name,
            pid: pid.unwrap_or(0),
            port: port.unwrap_or(0),
            project_path: project.as_deref().map(absolute).unwrap_or_default(),
            ..Default::default()
        })
        .await?
        .into_inner();
    print_instance(json, &response, response.instance.as_ref())
}

/// A state name for `--state` filters.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StateArg {
    /// STARTING.
    Starting,
    /// RUNNING.
    Running,
    /// STOPPING.
    Stopping,
    /// STOPPED.
    Stopped,
    /// FAILED.
    Failed,
    /// BACKOFF.
    Backoff,
    /// ERROR.
    Error,
}

impl StateArg {
    fn proto(self) -> i32 {
        match self {
            Self::Starting => pb::InstanceState::Starting,
            Self::Running => pb::InstanceState::Running,
            Self::Stopping => pb::InstanceState::Stopping,
            Self::Stopped => pb::InstanceState::Stopped,
            Self::Failed => pb::InstanceState::Failed,
            Self::Backoff => pb::InstanceState::Backoff,
            Self::Error => pb::InstanceState::Error,
        }
        .into()
    }
}

/// `outpostctl ls`.
pub async fn list(
    connection: &Connection,
    json: bool,
    states: Vec<StateArg>,
    workspace: Option<String>,
    labels: Vec<(String, String)>,
    full: bool,
) -> Result<ExitCode, Failure> {
    let view = if full {
        pb::InstanceView::Full
    } else {
        pb::InstanceView::Basic
    };
    let response = connection
        .orchestrator()
        .list_instances(pb::ListInstancesRequest {
            states: states.into_iter().map(StateArg::proto).collect(),
            workspace: workspace.unwrap_or_default(),
            labels: labels.into_iter().collect(),
            view: view.into(),
        })
        .await?
        .into_inner();
    if json {
        output::json(&response)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "NAME", "STATE", "PID", "PORT", "UPTIME", "RESTARTS", "CPU", "MEM",
        ]
        .map(str::to_owned),
    ];
    for instance in &response.instances {
        let (cpu, memory) = usage(instance);
        rows.push([
            instance.name.clone(),
            state_name(instance.state),
            number(instance.pid),
            number(instance.port),
            uptime(instance),
            instance.restart_count.to_string(),
            cpu,
            memory,
        ]);
    }
    output::table(&rows)?;
    Ok(ExitCode::SUCCESS)
}

/// Which output streams `logs` shows.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StreamArg {
    /// Standard output only.
    Stdout,
    /// Standard error only.
    Stderr,
}

/// `outpostctl logs`: stdout lines to stdout, stderr lines to stderr.
pub async fn logs(
    connection: &Connection,
    json: bool,
    instance: String,
    follow: bool,
    lines: u32,
    stream: Option<StreamArg>,
) -> Result<ExitCode, Failure> {
    let stream = match stream {
        None => pb::LogStream::Unspecified,
        Some(StreamArg::Stdout) => pb::LogStream::Stdout,
        Some(StreamArg::Stderr) => pb::LogStream::Stderr,
    };
    let mut responses = connection
        .orchestrator()
        .stream_logs(pb::StreamLogsRequest {
            instance,
            tail_lines: lines,
            follow,
            stream: stream.into(),
        })
        .await?
        .into_inner();
    while let Some(response) = responses.message().await? {
        if json {
            output::json_line(&response)?;
            continue;
        }
        for line in response.lines {
            if line.stream == pb::LogStream::Stderr as i32 {
                eprintln!("{}", line.text);
            } else {
                println!("{}", line.text);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `outpostctl watch`: one line per event, until interrupted.
pub async fn watch(
    connection: &Connection,
    json: bool,
    instances: Vec<String>,
    since: u64,
) -> Result<ExitCode, Failure> {
    let mut responses = connection
        .orchestrator()
        .watch_status(pb::WatchStatusRequest {
            instances,
            since_revision: since,
            ..Default::default()
        })
        .await?
        .into_inner();
    while let Some(response) = responses.message().await? {
        if json {
            output::json_line(&response)?;
            continue;
        }
        match response.payload {
            Some(Payload::Snapshot(snapshot)) => {
                let kind = if snapshot.kind == pb::SnapshotKind::Resync as i32 {
                    "resync"
                } else {
                    "snapshot"
                };
                println!(
                    "{:>6}  {kind}: {} instances",
                    snapshot.revision,
                    snapshot.instances.len()
                );
                for instance in &snapshot.instances {
                    println!(
                        "{:>6}  {} {}",
                        "",
                        instance.name,
                        state_name(instance.state)
                    );
                }
            }
            Some(Payload::Events(events)) => {
                for event in events.events {
                    println!("{:>6}  {}", event.revision, describe_event(event.change));
                }
            }
            None => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_event(change: Option<Change>) -> String {
    match change {
        Some(Change::InstanceChanged(changed)) => {
            let Some(instance) = changed.instance else {
                return String::new();
            };
            let reason = pb::TransitionReason::try_from(changed.reason)
                .map(|reason| {
                    reason
                        .as_str_name()
                        .trim_start_matches("TRANSITION_REASON_")
                        .to_lowercase()
                })
                .unwrap_or_default();
            let previous = if changed.previous_state == 0 {
                "created".to_owned()
            } else {
                state_name(changed.previous_state)
            };
            let detail = if changed.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", changed.detail)
            };
            format!(
                "{} {previous} → {} ({reason}{detail})",
                instance.name,
                state_name(instance.state)
            )
        }
        Some(Change::InstanceDeleted(deleted)) => format!("{} deleted", deleted.name),
        Some(Change::WorkspaceApplied(applied)) => {
            format!(
                "workspace {} applied",
                applied.workspace.map(|w| w.name).unwrap_or_default()
            )
        }
        Some(Change::WorkspaceRejected(rejected)) => {
            format!(
                "workspace {} rejected: {}",
                rejected.workspace,
                rejected.errors.join("; ")
            )
        }
        None => String::new(),
    }
}

/// "RUNNING" → "running".
fn state_name(state: i32) -> String {
    pb::InstanceState::try_from(state)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("INSTANCE_STATE_")
        .to_lowercase()
}

/// CPU% and resident memory, or dashes when not sampled.
fn usage(instance: &pb::Instance) -> (String, String) {
    match &instance.usage {
        Some(usage) => (
            format!("{:.1}%", usage.cpu_percent),
            format!("{:.1}M", usage.rss_bytes as f64 / (1 << 20) as f64),
        ),
        None => ("-".to_owned(), "-".to_owned()),
    }
}

fn number(value: u32) -> String {
    if value == 0 {
        "-".to_owned()
    } else {
        value.to_string()
    }
}

/// Time since the current process started, while one runs.
fn uptime(instance: &pb::Instance) -> String {
    let Some(started) = instance.started_at.as_ref().filter(|_| instance.pid != 0) else {
        return "-".to_owned();
    };
    let started = SystemTime::UNIX_EPOCH + Duration::from_secs(started.seconds.max(0) as u64);
    let elapsed = SystemTime::now()
        .duration_since(started)
        .unwrap_or_default();
    output::duration(Some(&elapsed.into()))
}

/// Prints a response holding one instance: JSON, or a one-line summary.
fn print_instance<T: serde::Serialize>(
    json: bool,
    response: &T,
    instance: Option<&pb::Instance>,
) -> Result<ExitCode, Failure> {
    if json {
        output::json(response)?;
    } else if let Some(instance) = instance {
        let mut facts = Vec::new();
        if instance.pid != 0 {
            facts.push(format!("pid {}", instance.pid));
        }
        if instance.port != 0 {
            facts.push(format!("port {}", instance.port));
        }
        let facts = if facts.is_empty() {
            String::new()
        } else {
            format!(" ({})", facts.join(", "))
        };
        println!("{}: {}{facts}", instance.name, state_name(instance.state));
    }
    Ok(ExitCode::SUCCESS)
}

/// `outpostctl get` in text form.
fn print_details(instance: &pb::Instance) -> Result<(), Failure> {
    let spec = instance.spec.clone().unwrap_or_default();
    let command = std::iter::once(spec.command.as_str())
        .chain(spec.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let kind = pb::InstanceKind::try_from(instance.kind)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("INSTANCE_KIND_")
        .to_lowercase();
    let last_exit = instance
        .last_exit
        .as_ref()
        .map_or("-".to_owned(), |exit| match exit.outcome {
            Some(pb::exit_status::Outcome::Code(code)) => format!("exit code {code}"),
            Some(pb::exit_status::Outcome::Signal(_)) => format!("signal {}", exit.signal_name),
            None => "unknown".to_owned(),
        });
    let mut rows = vec![
        ("name", instance.name.clone()),
        ("id", instance.id.clone()),
        ("kind", kind),
        ("state", state_name(instance.state)),
        ("pid", number(instance.pid)),
        ("port", number(instance.port)),
        ("uptime", uptime(instance)),
        ("restarts", instance.restart_count.to_string()),
        ("last exit", last_exit),
        ("command", command),
        ("project", non_empty(&instance.project_path)),
    ];
    if let Some(health) = &instance.health {
        let state = pb::HealthState::try_from(health.state).unwrap_or_default();
        let mut text = match state {
            pb::HealthState::Unspecified => "unknown".to_owned(),
            other => other
                .as_str_name()
                .trim_start_matches("HEALTH_STATE_")
                .to_lowercase(),
        };
        if !health.last_failure.is_empty() {
            text = format!("{text} (last failure: {})", health.last_failure);
        }
        rows.push(("health", text));
    }
    if let Some(backoff) = &instance.backoff {
        let breaker = pb::BreakerState::try_from(backoff.breaker)
            .unwrap_or_default()
            .as_str_name()
            .trim_start_matches("BREAKER_STATE_")
            .to_lowercase();
        rows.push((
            "breaker",
            format!(
                "{breaker}, {} failures in a row",
                backoff.consecutive_failures
            ),
        ));
        if let Some(next) = &backoff.next_attempt_at {
            let at = SystemTime::UNIX_EPOCH
                + Duration::new(next.seconds.max(0) as u64, next.nanos.max(0) as u32);
            let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
            rows.push((
                "next attempt",
                format!(
                    "in {}",
                    humantime::format_duration(Duration::from_secs(wait.as_secs()))
                ),
            ));
        }
    }
    let (cpu, memory) = usage(instance);
    rows.push(("cpu / memory", format!("{cpu} / {memory}")));
    if !instance.last_error.is_empty() {
        rows.push(("last error", instance.last_error.clone()));
    }
    output::rows(&rows)?;
    for failure in &instance.recent_failures {
        println!("  failure: {}", failure.message);
    }
    Ok(())
}

fn non_empty(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_directory() {
        assert_eq!(name_from_path(Path::new("/srv/My Site_2")), "my-site-2");
    }
}
