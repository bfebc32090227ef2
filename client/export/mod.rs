//! `outpostctl export kubernetes|nomad|systemd WORKSPACE`: a workspace as
//! the manifests of an engine that runs it on more machines than one. The
//! workspace is a file (read here, no daemon needed) or a name (the daemon
//! says which file). Each format maps what it can express; everything
//! else is listed — as comments at the top of the output and as one line
//! per item on stderr — never dropped in silence.

mod kubernetes;
mod nomad;
mod systemd;
mod yaml;

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, ValueEnum};
use outpost::{
    endpoint::Connection,
    proto::v1 as pb,
    spec::{Condition, InstanceSpec, PortChoice, RestartMode},
    workspace_file::{self, Workspace},
};

use crate::{
    failure::Failure,
    output::{self, errln},
};

/// `outpostctl export …`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// What to write
    format: Format,
    /// A workspace name (its file, as the daemon knows it) or a workspace file
    workspace: String,
    /// Kubernetes: the container image the commands run in
    #[arg(long, default_value = "debian:bookworm-slim")]
    image: String,
    /// systemd: write one file per unit into DIR instead of printing them
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

/// The engines a workspace can be exported to.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// Deployments, Jobs and Services (YAML)
    Kubernetes,
    /// One Nomad job (HCL)
    Nomad,
    /// One systemd service unit per instance
    Systemd,
}

/// What an export produced: files (name, text), and what it could not map.
pub(crate) struct Exported {
    files: Vec<(String, String)>,
    unmapped: Vec<String>,
}

impl ExportArgs {
    /// Whether the workspace is a file, so that no daemon is needed.
    pub fn is_file(&self) -> bool {
        Path::new(&self.workspace).is_file()
    }

    /// Exports a workspace file.
    pub fn run_file(&self) -> Result<ExitCode, Failure> {
        let workspace = workspace_file::load(Path::new(&self.workspace))
            .map_err(|errors| Failure::Input(errors.join("; ")))?;
        self.write(&workspace)
    }

    /// Exports the workspace the daemon knows by this name.
    pub async fn run(&self, connection: &Connection) -> Result<ExitCode, Failure> {
        let request = pb::GetWorkspaceRequest {
            name: self.workspace.clone(),
        };
        let answer = (connection.orchestrator().get_workspace(request).await)
            .map_err(Failure::Rpc)?
            .into_inner();
        let file = answer.workspace.map(|w| w.file).unwrap_or_default();
        let workspace = workspace_file::load(Path::new(&file)).map_err(|errors| {
            Failure::Input(format!(
                "workspace {}: {}",
                self.workspace,
                errors.join("; ")
            ))
        })?;
        self.write(&workspace)
    }

    fn write(&self, workspace: &Workspace) -> Result<ExitCode, Failure> {
        let exported = match self.format {
            Format::Kubernetes => kubernetes::export(workspace, &self.image),
            Format::Nomad => nomad::export(workspace),
            Format::Systemd => systemd::export(workspace),
        };
        for item in &exported.unmapped {
            errln!("outpostctl: not mapped: {item}");
        }
        match &self.output_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|err| Failure::Input(format!("{}: {err}", dir.display())))?;
                for (name, text) in &exported.files {
                    let path = dir.join(name);
                    std::fs::write(&path, text)
                        .map_err(|err| Failure::Input(format!("{}: {err}", path.display())))?;
                }
            }
            None => {
                let mut stdout = std::io::stdout().lock();
                for (_, text) in &exported.files {
                    output::done(stdout.write_all(text.as_bytes()))?;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Notes on what an export cannot express, each naming its instance.
#[derive(Default)]
pub(crate) struct Unmapped(Vec<String>);

impl Unmapped {
    fn note(&mut self, spec: &InstanceSpec, what: impl std::fmt::Display) {
        self.0.push(format!("{}: {what}", spec.name));
    }

    /// The notes as comment lines (`# not mapped: …`).
    fn comments(&self) -> String {
        self.0
            .iter()
            .map(|note| format!("# not mapped: {note}\n"))
            .collect()
    }
}

/// The instances that some instance needs `completed`: one-shot tasks.
fn one_shots(workspace: &Workspace) -> Vec<&str> {
    let mut names: Vec<&str> = (workspace.instances.iter())
        .flat_map(|spec| spec.depends_on.iter())
        .filter(|(_, condition)| **condition == Condition::Completed)
        .map(|(name, _)| name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The port each instance listens on once exported: its fixed port, or
/// for `auto` one chosen here (noted), distinct from the others.
fn ports(workspace: &Workspace, unmapped: &mut Unmapped) -> BTreeMap<String, u16> {
    let taken: Vec<u16> = (workspace.instances.iter())
        .filter_map(|spec| match spec.port {
            PortChoice::Fixed(port) => Some(port),
            _ => None,
        })
        .collect();
    let mut next = 8000u16;
    let mut ports = BTreeMap::new();
    for spec in &workspace.instances {
        let port = match spec.port {
            PortChoice::None => continue,
            PortChoice::Fixed(port) => port,
            PortChoice::Auto => {
                while taken.contains(&next) || ports.values().any(|&p| p == next) {
                    next += 1;
                }
                unmapped.note(
                    spec,
                    format!("port = \"auto\" (outpost's pool) became the fixed port {next}"),
                );
                next
            }
        };
        ports.insert(spec.name.clone(), port);
    }
    ports
}

/// `text` with `{port}` replaced by `port`.
fn with_port(text: &str, port: Option<String>) -> String {
    match port {
        Some(port) => text.replace("{port}", &port),
        None => text.to_owned(),
    }
}

/// The notes every format shares: what outpost does that no engine
/// here has a word for.
fn common_notes(spec: &InstanceSpec, unmapped: &mut Unmapped) {
    if let Some(idle) = spec.idle_timeout {
        unmapped.note(
            spec,
            format!(
                "idle_timeout ({}): engines keep services running",
                humantime::format_duration(idle)
            ),
        );
    }
    if spec.readiness.log_pattern.is_some() {
        unmapped.note(
            spec,
            "ready_log: readiness by a line of output has no equivalent; use a health check",
        );
    }
}

/// A name as a DNS label (Kubernetes names, Nomad groups): dots become
/// dashes, at most 63 characters (noted when cut).
fn label(spec: &InstanceSpec, name: &str, unmapped: &mut Unmapped) -> String {
    let dashed = name.replace('.', "-");
    if dashed.len() <= 63 {
        return dashed;
    }
    let cut = dashed[..63].trim_end_matches('-').to_owned();
    unmapped.note(spec, format!("the name {name} was cut to {cut}"));
    cut
}

/// The whole command line, for formats that take one string.
fn command_line(spec: &InstanceSpec, port: Option<String>) -> Vec<String> {
    std::iter::once(&spec.command)
        .chain(&spec.args)
        .map(|arg| with_port(arg, port.clone()))
        .collect()
}

/// A restart mode as workspace files write it.
fn restart_word(mode: RestartMode) -> &'static str {
    match mode {
        RestartMode::Never => "never",
        RestartMode::OnFailure => "on-failure",
        RestartMode::Always => "always",
    }
}

/// Whole seconds, at least `min`, for fields that count seconds.
fn seconds(duration: std::time::Duration, min: u64) -> u64 {
    duration.as_secs_f64().ceil().max(min as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace(text: &str) -> Workspace {
        workspace_file::parse(Path::new("/w/shop.toml"), text).unwrap()
    }

    #[test]
    fn auto_ports_become_distinct_fixed_ones_and_are_noted() {
        let shop = workspace(
            "[instances.a]\ncommand = [\"x\"]\nport = \"auto\"\n\
             [instances.b]\ncommand = [\"x\"]\nport = 8000\n\
             [instances.c]\ncommand = [\"x\"]\nport = \"auto\"\n\
             [instances.d]\ncommand = [\"x\"]\n",
        );
        let mut unmapped = Unmapped::default();
        let ports = ports(&shop, &mut unmapped);
        assert_eq!(ports["shop.a"], 8001);
        assert_eq!(ports["shop.b"], 8000);
        assert_eq!(ports["shop.c"], 8002);
        assert!(!ports.contains_key("shop.d"));
        assert_eq!(unmapped.0.len(), 2);
        assert!(
            unmapped
                .comments()
                .starts_with("# not mapped: shop.a: port")
        );
    }

    #[test]
    fn one_shots_are_what_others_need_completed() {
        let shop = workspace(
            "[instances.migrate]\ncommand = [\"x\"]\n\
             [instances.db]\ncommand = [\"x\"]\n\
             [instances.api]\ncommand = [\"x\"]\ndepends_on = { migrate = \"completed\", db = \"ready\" }\n",
        );
        assert_eq!(one_shots(&shop), vec!["shop.migrate"]);
    }
}
