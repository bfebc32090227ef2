//! Instance commands: run, up, ls, get, start, stop, restart, rm, register,
//! touch, logs, watch.

mod render;

pub use render::{print_across, print_table};
mod spec;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Subcommand, ValueEnum};
use outpost::{endpoint::Connection, proto::v1 as pb};

use self::{
    render::{print_details, print_instance, print_log_lines, print_watch},
    spec::{SpecArgs, absolute, key_value, name_from_path},
};
use crate::{contexts::Selection, failure::Failure, output};

/// The instance commands, at the top level of the command line.
#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Create an instance and start it
    Run {
        /// Unique name (lowercase letters, digits, '-', dots)
        name: String,
        /// Project directory (unique among instances)
        #[arg(long, value_name = "PATH")]
        project: Option<PathBuf>,
        /// Create it stopped
        #[arg(long)]
        no_start: bool,
        #[command(flatten)]
        spec: SpecArgs,
        /// The program and its arguments
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Make sure the instance of a project runs: start it, or create it from CMD
    Up {
        /// Project directory
        project: PathBuf,
        /// Name for a new instance [default: the directory's name]
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        spec: SpecArgs,
        /// The program and its arguments, for a new instance
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// List instances
    Ls {
        /// Only instances in this state (repeatable)
        #[arg(long = "state", value_enum)]
        states: Vec<StateArg>,
        /// Only instances of this workspace
        #[arg(long)]
        workspace: Option<String>,
        /// Only instances with this label (repeatable)
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = key_value)]
        labels: Vec<(String, String)>,
        /// Include each instance's spec (shown with --json)
        #[arg(long)]
        full: bool,
        /// Ask these contexts' daemons (comma-separated), one table with a CONTEXT column
        #[arg(
            long,
            value_delimiter = ',',
            value_name = "NAME,…",
            conflicts_with = "all_contexts"
        )]
        contexts: Vec<String>,
        /// Ask every context's daemon
        #[arg(long)]
        all_contexts: bool,
    },
    /// Show one instance
    Get {
        /// Id or name
        instance: String,
    },
    /// Start an instance
    Start {
        /// Id or name
        instance: String,
    },
    /// Stop an instance and every process of its group
    Stop {
        /// Id or name
        instance: String,
        /// Time between the stop signal and SIGKILL [default: the instance's]
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        grace: Option<Duration>,
        /// Really signal an external (registered) process
        #[arg(long)]
        signal_external: bool,
        /// Also stop the instances that depend on it, dependents first
        #[arg(long)]
        with_dependents: bool,
    },
    /// Restart an instance
    Restart {
        /// Id or name
        instance: String,
    },
    /// Stop and delete an instance
    Rm {
        /// Id or name
        instance: String,
        /// Delete even if a workspace owns it
        #[arg(long)]
        force: bool,
        /// Also signal an external (registered) process
        #[arg(long)]
        signal_external: bool,
    },
    /// Watch a process the daemon did not start
    Register {
        /// Unique name
        name: String,
        /// Its process id
        #[arg(long)]
        pid: Option<u32>,
        /// Its port
        #[arg(long)]
        port: Option<u32>,
        /// Its project directory
        #[arg(long, value_name = "PATH")]
        project: Option<PathBuf>,
    },
    /// Record activity (postpones the idle timeout)
    Touch {
        /// Id or name
        instance: String,
    },
    /// Show an instance's output
    Logs {
        /// Id or name
        instance: String,
        /// Keep printing new lines
        #[arg(short, long)]
        follow: bool,
        /// Lines of history to show first (per stream)
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: u32,
        /// Only this stream
        #[arg(long, value_enum)]
        stream: Option<StreamArg>,
    },
    /// Print status changes as they happen, one line per event
    Watch {
        /// Only these instances (ids or names)
        instances: Vec<String>,
        /// Resume after this revision
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
}

impl InstanceCommand {
    /// Whether the command streams until the user stops it, and so must get
    /// no request deadline.
    pub fn streams(&self) -> bool {
        matches!(self, Self::Watch { .. } | Self::Logs { follow: true, .. })
    }

    /// For `ls --contexts`/`--all-contexts`: which daemons, and what to ask
    /// each.
    pub fn across(&self) -> Option<(Selection, pb::ListInstancesRequest)> {
        let Self::Ls {
            states,
            workspace,
            labels,
            full,
            contexts,
            all_contexts,
        } = self
        else {
            return None;
        };
        let selection = match (all_contexts, contexts.is_empty()) {
            (true, _) => Selection::All,
            (false, false) => Selection::Named(contexts.clone()),
            (false, true) => return None,
        };
        let request = list_request(states, workspace.clone(), labels.clone(), *full);
        Some((selection, request))
    }
}

fn list_request(
    states: &[StateArg],
    workspace: Option<String>,
    labels: Vec<(String, String)>,
    full: bool,
) -> pb::ListInstancesRequest {
    let view = if full {
        pb::InstanceView::Full
    } else {
        pb::InstanceView::Basic
    };
    pb::ListInstancesRequest {
        states: states.iter().map(|state| state.proto()).collect(),
        workspace: workspace.unwrap_or_default(),
        labels: labels.into_iter().collect(),
        view: view.into(),
    }
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
    /// WAITING for its dependencies.
    Waiting,
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
            Self::Waiting => pb::InstanceState::Waiting,
        }
        .into()
    }
}

/// Which output streams `logs` shows.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StreamArg {
    /// Standard output only.
    Stdout,
    /// Standard error only.
    Stderr,
}

pub async fn run(
    connection: &Connection,
    json: bool,
    command: InstanceCommand,
) -> Result<ExitCode, Failure> {
    let mut client = connection.orchestrator();
    match command {
        InstanceCommand::Run {
            name,
            project,
            no_start,
            spec,
            command,
        } => {
            let request = pb::CreateInstanceRequest {
                spec: Some(spec.spec(name, project.as_deref(), command)),
                start: Some(!no_start),
            };
            print_instance(json, &client.create_instance(request).await?.into_inner())
        }
        InstanceCommand::Up {
            project,
            name,
            spec,
            command,
        } => {
            let name = name.unwrap_or_else(|| name_from_path(&project));
            let request = pb::GetOrCreateInstanceRequest {
                spec: Some(spec.spec(name, Some(&project), command)),
            };
            let response = client.get_or_create_instance(request).await?;
            print_instance(json, &response.into_inner())
        }
        InstanceCommand::Ls {
            states,
            workspace,
            labels,
            full,
            ..
        } => {
            let request = list_request(&states, workspace, labels, full);
            let response = client.list_instances(request).await?.into_inner();
            if json {
                return output::done(output::json(&response));
            }
            print_table(&response.instances)
        }
        InstanceCommand::Get { instance } => {
            let request = pb::GetInstanceRequest { instance };
            let response = client.get_instance(request).await?.into_inner();
            if json {
                output::json(&response)?;
            } else if let Some(instance) = &response.instance {
                print_details(instance)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        InstanceCommand::Start { instance } => {
            let request = pb::StartInstanceRequest { instance };
            print_instance(json, &client.start_instance(request).await?.into_inner())
        }
        InstanceCommand::Stop {
            instance,
            grace,
            signal_external,
            with_dependents,
        } => {
            let request = pb::StopInstanceRequest {
                instance,
                grace_period: grace.map(outpost::limits::duration_message),
                signal_external,
                with_dependents,
            };
            print_instance(json, &client.stop_instance(request).await?.into_inner())
        }
        InstanceCommand::Restart { instance } => {
            let request = pb::RestartInstanceRequest { instance };
            print_instance(json, &client.restart_instance(request).await?.into_inner())
        }
        InstanceCommand::Rm {
            instance,
            force,
            signal_external,
        } => {
            let request = pb::DeleteInstanceRequest {
                instance,
                force,
                signal_external,
            };
            let response = client.delete_instance(request).await?.into_inner();
            if json {
                output::json(&response)?;
            } else if let Some(instance) = &response.instance {
                output::outln!("{}: deleted", instance.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        InstanceCommand::Register {
            name,
            pid,
            port,
            project,
        } => {
            let request = pb::RegisterExternalInstanceRequest {
                name,
                pid: pid.unwrap_or(0),
                port: port.unwrap_or(0),
                project_path: project.as_deref().map(absolute).unwrap_or_default(),
                ..Default::default()
            };
            let response = client.register_external_instance(request).await?;
            print_instance(json, &response.into_inner())
        }
        InstanceCommand::Touch { instance } => {
            let request = pb::RecordActivityRequest { instance };
            print_instance(json, &client.record_activity(request).await?.into_inner())
        }
        InstanceCommand::Logs {
            instance,
            follow,
            lines,
            stream,
        } => {
            let stream = match stream {
                None => pb::LogStream::Unspecified,
                Some(StreamArg::Stdout) => pb::LogStream::Stdout,
                Some(StreamArg::Stderr) => pb::LogStream::Stderr,
            };
            let request = pb::StreamLogsRequest {
                instance,
                tail_lines: lines,
                follow,
                stream: stream.into(),
            };
            let responses = client.stream_logs(request).await?.into_inner();
            output::stream(json, responses, print_log_lines).await
        }
        InstanceCommand::Watch { instances, since } => {
            let request = pb::WatchStatusRequest {
                instances,
                since_revision: since,
                ..Default::default()
            };
            let responses = client.watch_status(request).await?.into_inner();
            output::stream(json, responses, print_watch).await
        }
    }
}
