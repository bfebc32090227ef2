//! The workspace file format (TOML or JSON, one structure) and its
//! validation into instance specs. Shared by the daemon and by
//! `outpostctl workspace check`, so both report the same problems.
//!
//! ```toml
//! [defaults]                 # merged into every instance
//! restart = "on-failure"
//! env = { RUST_LOG = "info" }
//!
//! [instances.web]            # API name "<workspace>.web" unless `name` is set
//! command = ["python3", "-m", "http.server", "{port}"]
//! project = "/srv/site"
//! port = "auto"              # or a number, or omitted
//! health = { http = "/" }
//! depends_on = { db = "ready", migrate = "completed" }   # or ["db"]: ready
//! ```
//!
//! A dependency is named by its key in the same file, or by the API name
//! of any other instance.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::limits::{cut, quoted};
use crate::spec::{
    Condition, Graph, HealthCheck, HttpTarget, InstanceSpec, InvalidField, Limits, PortChoice,
    Probe, Readiness, RestartMode, RestartPolicy, SpecInput, describe_cycle, find_cycle,
    parse_bytes, parse_percent, validate_name,
};

/// Values merged into every instance of a workspace.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Environment under each instance's own.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels under each instance's own.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Health check for instances that declare none.
    pub health: Option<HealthEntry>,
    /// "never", "on-failure" or "always".
    pub restart: Option<String>,
    /// Restarts in a row before the breaker opens.
    pub max_restarts: Option<u32>,
    /// "MIN..MAX", e.g. "1s..16s".
    pub backoff: Option<String>,
    /// Healthy time that resets the failure count.
    pub reset_after: Option<String>,
    /// Time the open breaker waits.
    pub cooldown: Option<String>,
}

/// The restart settings of an instance or of the defaults.
struct RestartEntry<'a> {
    restart: Option<&'a String>,
    max_restarts: Option<u32>,
    backoff: Option<&'a String>,
    reset_after: Option<&'a String>,
    cooldown: Option<&'a String>,
}

/// Gives the restart settings of a file section.
macro_rules! restart_entry {
    ($section:expr) => {
        RestartEntry {
            restart: $section.restart.as_ref(),
            max_restarts: $section.max_restarts,
            backoff: $section.backoff.as_ref(),
            reset_after: $section.reset_after.as_ref(),
            cooldown: $section.cooldown.as_ref(),
        }
    };
}

/// A health check as written in a file: exactly one of tcp, http, exec.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthEntry {
    /// `true` for the instance's port, or a port number.
    pub tcp: Option<TcpEntry>,
    /// A path on the instance's port ("/healthz") or an http:// URL.
    pub http: Option<String>,
    /// A shell command.
    pub exec: Option<String>,
    /// Time between checks.
    pub interval: Option<String>,
    /// Limit of one check.
    pub timeout: Option<String>,
    /// Failures in a row that make a running instance unhealthy.
    pub failures: Option<u32>,
    /// Successes in a row that make it healthy again.
    pub successes: Option<u32>,
}

/// `tcp = true` or `tcp = 5432`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum TcpEntry {
    /// The instance's own port.
    Own(bool),
    /// A given port.
    Port(u32),
}

/// `port = "auto"` or `port = 8080`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PortEntry {
    /// A fixed port.
    Number(i64),
    /// "auto".
    Word(String),
}

/// `depends_on = { db = "ready" }`, or `depends_on = ["db"]` (each ready).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum DependsOnEntry {
    /// Names with their conditions.
    Conditions(BTreeMap<String, String>),
    /// Names, each to be ready.
    Names(Vec<String>),
}

/// One instance as written in a file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceEntry {
    /// API name; default `<workspace>.<key>`.
    pub name: Option<String>,
    /// Program and arguments; `{port}` is substituted.
    #[serde(default)]
    pub command: Vec<String>,
    /// Absolute project directory.
    pub project: Option<String>,
    /// Absolute working directory.
    pub cwd: Option<String>,
    /// "auto", a number, or omitted for none.
    pub port: Option<PortEntry>,
    /// Environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Health check.
    pub health: Option<HealthEntry>,
    /// "never", "on-failure" or "always".
    pub restart: Option<String>,
    /// Restarts in a row before the breaker opens.
    pub max_restarts: Option<u32>,
    /// "MIN..MAX", e.g. "1s..16s".
    pub backoff: Option<String>,
    /// Healthy time that resets the failure count.
    pub reset_after: Option<String>,
    /// Time the open breaker waits.
    pub cooldown: Option<String>,
    /// Stop after this long without activity.
    pub idle_timeout: Option<String>,
    /// Longest time to become ready.
    pub startup_timeout: Option<String>,
    /// Signal sent on stop.
    pub stop_signal: Option<String>,
    /// Time between the stop signal and SIGKILL.
    pub stop_grace: Option<String>,
    /// Ready when a line of output matches this regular expression.
    pub ready_log: Option<String>,
    /// Ready on sd_notify's READY=1.
    #[serde(default)]
    pub ready_notify: bool,
    /// sd_notify watchdog interval, e.g. "10s".
    pub watchdog: Option<String>,
    /// Most memory of its process tree, e.g. "512M".
    pub memory_max: Option<String>,
    /// Most CPU, e.g. "50%".
    pub cpu_max: Option<String>,
    /// What it starts after: keys of this file or API names.
    pub depends_on: Option<DependsOnEntry>,
    /// Restart its running dependents when it restarts.
    #[serde(default)]
    pub restart_dependents: bool,
}

/// A workspace file as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceFile {
    /// Shared values.
    #[serde(default)]
    pub defaults: Defaults,
    /// Instances by key.
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceEntry>,
}

/// A validated workspace.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// Its name (the file name without extension).
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Its defaults, as written.
    pub defaults: Defaults,
    /// Its instances, defaults merged, ordered by API name.
    pub instances: Vec<InstanceSpec>,
}

/// The workspace name a file defines, if it is a workspace file at all
/// (`NAME.toml` or `NAME.json`, not hidden, not an editor's backup).
pub fn workspace_name(path: &Path) -> Option<String> {
    let extension = path.extension()?.to_str()?;
    if !matches!(extension, "toml" | "json") {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    (!stem.starts_with('.')).then(|| stem.to_owned())
}

/// Largest workspace file read (1 MiB): hundreds of instances fit in a
/// few dozen KiB; a file larger than this is not a workspace someone wrote.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Checks a workspace name given on its own (an RPC field, a command-line
/// argument): the rule of instance names, which keeps it one harmless path
/// component — no `/`, no `..`, no NUL, no leading dot, at most
/// [`crate::spec::MAX_NAME_LEN`] characters.
pub fn validate_workspace_name(field: &str, name: &str) -> Result<(), InvalidField> {
    validate_name(field, name)
}

/// Reads a workspace file the way the daemon does: a regular file (links
/// followed) of at most [`MAX_FILE_SIZE`] bytes of UTF-8, never blocking
/// (see [`crate::bounded_read`]). Blocking: async callers run it off their
/// core threads.
pub fn read(path: &Path) -> std::io::Result<String> {
    crate::bounded_read::read_to_string(path, MAX_FILE_SIZE)
}

/// Reads and validates a workspace file. Every problem found is returned,
/// each naming the file and the line or field.
pub fn load(path: &Path) -> Result<Workspace, Vec<String>> {
    let text = read(path).map_err(|err| vec![format!("{}: {err}", path.display())])?;
    parse(path, &text)
}

/// Validates `text` as the workspace file `path`.
pub fn parse(path: &Path, text: &str) -> Result<Workspace, Vec<String>> {
    let shown = path.display().to_string();
    let at = |message: String| format!("{}: {message}", cut(&shown));
    let name = workspace_name(path)
        .ok_or_else(|| vec![at("a workspace file is NAME.toml or NAME.json".to_owned())])?;
    validate_workspace_name("workspace name", &name).map_err(|err| vec![at(err.to_string())])?;
    let file: WorkspaceFile = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text).map_err(|err| vec![at(json_error(&err))])?
    } else {
        toml::from_str(text).map_err(|err| vec![at(toml_error(text, &err))])?
    };
    let mut errors = Vec::new();
    let mut instances: Vec<InstanceSpec> = Vec::new();
    let names: BTreeMap<&str, String> = (file.instances.iter())
        .map(|(key, entry)| (key.as_str(), api_name(&name, key, entry)))
        .collect();
    for (key, entry) in &file.instances {
        match instance(&names, key, entry, &file.defaults) {
            Ok(spec) if instances.iter().any(|other| other.name == spec.name) => {
                errors.push(at(format!(
                    "instances.{}: the name {} is used twice",
                    cut(key),
                    quoted(&spec.name)
                )));
            }
            Ok(spec) => instances.push(spec),
            Err(message) => errors.push(at(format!("instances.{}: {message}", cut(key)))),
        }
    }
    if errors.is_empty()
        && let Some(cycle) = find_cycle(&dependency_graph(&instances))
    {
        errors.push(at(format!(
            "depends_on: {} is a cycle",
            describe_cycle(&cycle)
        )));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    instances.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Workspace {
        name,
        file: path.to_owned(),
        defaults: file.defaults,
        instances,
    })
}

/// A syntax or type error of a JSON file, its position first and the
/// input it quotes cut.
fn json_error(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    let message = text.strip_suffix(&position).unwrap_or(&text);
    format!(
        "line {} column {}: {}",
        err.line(),
        err.column(),
        cut(message)
    )
}

/// A syntax or type error of a TOML file, as its line and column and the
/// parser's message, without the source line it would show (which can be
/// as long as the file).
fn toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end().replace('\n', " ");
    match err.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = before.len()
                - before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1)
                + 1;
            format!("line {line} column {column}: {}", cut(&message))
        }
        None => cut(&message).into_owned(),
    }
}

fn duration(field: &str, text: Option<&String>) -> Result<Option<Duration>, String> {
    text.map(|text| {
        humantime::parse_duration(text).map_err(|_| {
            format!(
                "{field}: {} is not a duration (like 500ms, 30s, 5m)",
                quoted(text)
            )
        })
    })
    .transpose()
}

/// The dependencies of each of `specs`, by name.
pub fn dependency_graph(specs: &[InstanceSpec]) -> Graph<'_> {
    specs
        .iter()
        .map(|spec| {
            let dependencies = spec.depends_on.keys().map(String::as_str).collect();
            (spec.name.as_str(), dependencies)
        })
        .collect()
}

/// The API name of the instance under `key`.
fn api_name(workspace: &str, key: &str, entry: &InstanceEntry) -> String {
    entry
        .name
        .clone()
        .unwrap_or_else(|| format!("{workspace}.{key}"))
}

/// The dependencies as written, keys of the file turned into API names.
fn depends_on(
    names: &BTreeMap<&str, String>,
    entry: Option<&DependsOnEntry>,
) -> Result<BTreeMap<String, Condition>, String> {
    let named = |name: &String| names.get(name.as_str()).unwrap_or(name).clone();
    match entry {
        None => Ok(BTreeMap::new()),
        Some(DependsOnEntry::Names(list)) => {
            Ok(list.iter().map(|n| (named(n), Condition::Ready)).collect())
        }
        Some(DependsOnEntry::Conditions(map)) => map
            .iter()
            .map(|(name, condition)| {
                let condition = Condition::parse(condition)
                    .map_err(|err| format!("depends_on.{}: {err}", cut(name)))?;
                Ok((named(name), condition))
            })
            .collect(),
    }
}

/// Builds and validates one instance spec, defaults merged; `names` maps
/// the file's keys to API names.
fn instance(
    names: &BTreeMap<&str, String>,
    key: &str,
    entry: &InstanceEntry,
    defaults: &Defaults,
) -> Result<InstanceSpec, String> {
    let (program, args) = entry
        .command
        .split_first()
        .ok_or("command: must name a program")?;
    let port = match &entry.port {
        None => PortChoice::None,
        Some(PortEntry::Word(word)) if word == "auto" => PortChoice::Auto,
        Some(PortEntry::Number(number)) => match u16::try_from(*number) {
            Ok(port) if port > 0 => PortChoice::Fixed(port),
            _ => return Err(format!("port: {number} is not a port from 1 to 65535")),
        },
        Some(PortEntry::Word(word)) => {
            return Err(format!(
                "port: {} is neither \"auto\" nor a number",
                quoted(word)
            ));
        }
    };
    let mut env = defaults.env.clone();
    env.extend(entry.env.clone());
    let mut labels = defaults.labels.clone();
    labels.extend(entry.labels.clone());
    let health = match entry.health.as_ref().or(defaults.health.as_ref()) {
        Some(health) => health_check(health)?,
        None => HealthCheck::default(),
    };
    let restart = restart_policy(&restart_entry!(entry), &restart_entry!(defaults))?;
    let input = SpecInput {
        name: names[key].clone(),
        project_path: entry.project.clone().unwrap_or_default(),
        command: program.clone(),
        args: args.to_vec(),
        env,
        working_dir: entry.cwd.clone().unwrap_or_default(),
        port,
        stop_signal: entry.stop_signal.clone().unwrap_or_default(),
        stop_grace: duration("stop_grace", entry.stop_grace.as_ref())?,
        labels,
        health,
        restart,
        idle_timeout: duration("idle_timeout", entry.idle_timeout.as_ref())?,
        startup_timeout: duration("startup_timeout", entry.startup_timeout.as_ref())?,
        readiness: Readiness {
            log_pattern: entry.ready_log.clone(),
            notify: entry.ready_notify,
            watchdog: duration("watchdog", entry.watchdog.as_ref())?,
        },
        limits: Limits {
            memory_max: (entry.memory_max.as_deref())
                .map(parse_bytes)
                .transpose()
                .map_err(|err| format!("memory_max: {err}"))?,
            cpu_max_percent: (entry.cpu_max.as_deref())
                .map(parse_percent)
                .transpose()
                .map_err(|err| format!("cpu_max: {err}"))?,
        },
        depends_on: depends_on(names, entry.depends_on.as_ref())?,
        restart_dependents: entry.restart_dependents,
    };
    InstanceSpec::validate(input).map_err(|err| {
        let field = err.field.strip_prefix("spec.").unwrap_or(&err.field);
        format!("{}: {}", file_field(field), err.reason)
    })
}

/// A spec field as a workspace file names it (`backoff` for both
/// delays, `stop_grace`, `health.failures`, …), so that an error points
/// at what the file says.
fn file_field(field: &str) -> &str {
    match field {
        "project_path" => "project",
        "working_dir" => "cwd",
        "args" => "command",
        "stop_grace_period" => "stop_grace",
        "restart.initial_delay" | "restart.max_delay" => "backoff",
        "restart.max_restarts" => "max_restarts",
        "restart.reset_after" => "reset_after",
        "restart.cooldown" => "cooldown",
        "health.failure_threshold" => "health.failures",
        "health.success_threshold" => "health.successes",
        "health.exec.command" => "health.exec",
        "health.http.path" | "health.http.url" => "health.http",
        "readiness.log_pattern" => "ready_log",
        "readiness" => "ready_log, ready_notify",
        "readiness.watchdog" => "watchdog",
        "limits.memory_max_bytes" => "memory_max",
        "limits.cpu_max_percent" => "cpu_max",
        other => other,
    }
}

fn health_check(entry: &HealthEntry) -> Result<HealthCheck, String> {
    let defaults = HealthCheck::default();
    let kinds = [
        entry.tcp.is_some(),
        entry.http.is_some(),
        entry.exec.is_some(),
    ];
    if kinds.iter().filter(|&&set| set).count() != 1 {
        return Err("health: give exactly one of tcp, http or exec".to_owned());
    }
    let probe = if let Some(tcp) = &entry.tcp {
        let port = match tcp {
            TcpEntry::Own(true) => None,
            TcpEntry::Own(false) => return Err("health.tcp: use true or a port number".to_owned()),
            TcpEntry::Port(port) => Some(
                u16::try_from(*port)
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("health.tcp: {port} is not a port from 1 to 65535"))?,
            ),
        };
        Probe::Tcp {
            host: "127.0.0.1".to_owned(),
            port,
        }
    } else if let Some(http) = &entry.http {
        Probe::Http {
            target: if http.starts_with("http://") {
                HttpTarget::Url(http.clone())
            } else {
                HttpTarget::Path(http.clone())
            },
        }
    } else {
        let command = entry.exec.clone().unwrap_or_default();
        Probe::Exec {
            command: vec!["sh".to_owned(), "-c".to_owned(), command],
        }
    };
    Ok(HealthCheck {
        probe,
        interval: duration("health.interval", entry.interval.as_ref())?
            .unwrap_or(defaults.interval),
        timeout: duration("health.timeout", entry.timeout.as_ref())?.unwrap_or(defaults.timeout),
        failure_threshold: entry.failures.unwrap_or(defaults.failure_threshold),
        success_threshold: entry.successes.unwrap_or(defaults.success_threshold),
    })
}

fn restart_policy(
    entry: &RestartEntry<'_>,
    defaults: &RestartEntry<'_>,
) -> Result<RestartPolicy, String> {
    let base = RestartPolicy::default();
    let mode = match entry.restart.or(defaults.restart).map(String::as_str) {
        None | Some("never") => RestartMode::Never,
        Some("on-failure") => RestartMode::OnFailure,
        Some("always") => RestartMode::Always,
        Some(other) => {
            return Err(format!(
                "restart: {} is not never, on-failure or always",
                quoted(other)
            ));
        }
    };
    let (initial_delay, max_delay) = match entry.backoff.or(defaults.backoff) {
        None => (base.initial_delay, base.max_delay),
        Some(range) => {
            let (first, last) = range.split_once("..").ok_or_else(|| {
                format!("backoff: {} is not MIN..MAX, e.g. 1s..16s", quoted(range))
            })?;
            let first = first.to_owned();
            let last = last.to_owned();
            (
                duration("backoff", Some(&first))?.unwrap_or_default(),
                duration("backoff", Some(&last))?.unwrap_or_default(),
            )
        }
    };
    Ok(RestartPolicy {
        mode,
        initial_delay,
        max_delay,
        max_restarts: entry
            .max_restarts
            .or(defaults.max_restarts)
            .unwrap_or(base.max_restarts),
        reset_after: duration("reset_after", entry.reset_after.or(defaults.reset_after))?
            .unwrap_or(base.reset_after),
        cooldown: duration("cooldown", entry.cooldown.or(defaults.cooldown))?
            .unwrap_or(base.cooldown),
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
