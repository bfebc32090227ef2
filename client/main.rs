//! `outpostctl`: drives an outpost daemon over its Unix socket or TCP.

mod content;
mod daemon;
mod failure;
mod instances;
mod output;
mod sync;
mod workspaces;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{CommandFactory, Parser, Subcommand};
use outpost::{
    endpoint::{Address, ConnectOptions, Connection},
    paths,
    token::Token,
};

use failure::Failure;

/// Command-line interface of `outpostctl`.
#[derive(Debug, Parser)]
#[command(
    name = "outpostctl",
    version,
    about = "Control an outpost daemon.",
    after_help = "TCP addresses need the daemon's token: --token-file FILE, or the token itself in $OUTPOST_TOKEN."
)]
struct Cli {
    /// Daemon address: unix:///PATH or http://HOST:PORT [default: the daemon's default socket]
    #[arg(long, env = "OUTPOST_ADDR", global = true, value_name = "ADDR")]
    addr: Option<Address>,

    /// File holding the bearer token for TCP
    #[arg(long, env = "OUTPOST_TOKEN_FILE", global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Print responses as JSON (canonical proto3 mapping, .proto field names)
    #[arg(long, global = true)]
    json: bool,

    /// Deadline for connecting and for each call
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
        spec: instances::SpecArgs,
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
        spec: instances::SpecArgs,
        /// The program and its arguments, for a new instance
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// List instances
    Ls {
        /// Only instances in this state (repeatable)
        #[arg(long = "state", value_enum)]
        states: Vec<instances::StateArg>,
        /// Only instances of this workspace
        #[arg(long)]
        workspace: Option<String>,
        /// Only instances with this label (repeatable)
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = key_value)]
        labels: Vec<(String, String)>,
        /// Include each instance's spec (shown with --json)
        #[arg(long)]
        full: bool,
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
        stream: Option<instances::StreamArg>,
    },
    /// Print status changes as they happen, one line per event
    Watch {
        /// Only these instances (ids or names)
        instances: Vec<String>,
        /// Resume after this revision
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Templates in template sets: ls [SET], get SET TITLE, put SET TITLE, rm SET TITLE
    #[command(subcommand)]
    Template(content::ContentCommand),
    /// Stylesheets in themes: ls [THEME], get THEME NAME, put THEME NAME, rm THEME NAME
    #[command(subcommand)]
    Stylesheet(content::ContentCommand),
    /// Template and stylesheet sync with files: status, events, conflicts, resolve, pause, resume, rescan, export
    #[command(subcommand)]
    Sync(sync::SyncCommand),
    /// Declarative workspaces: ls, show, apply, check
    #[command(subcommand)]
    Workspace(workspaces::WorkspaceCommand),
    /// Compare the daemon's state with the processes and ports that exist (exit 1 if they disagree)
    Validate {
        /// Apply the safe fixes (never kills a process it cannot prove is outpost's)
        #[arg(long)]
        fix: bool,
    },
    /// Show the daemon's version, uptime, listeners and instance counts
    Status,
    /// Check the gRPC health of the daemon and its services (exit 1 unless all serve)
    Health {
        /// Check only this service (e.g. outpost.v1.Sync); "" is the daemon as a whole
        service: Option<String>,
    },
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("outpostctl: {failure}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "outpostctl",
            &mut std::io::stdout(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Checking a file needs no daemon.
    if let Command::Workspace(workspaces::WorkspaceCommand::Check { file }) = &cli.command {
        return Ok(workspaces::check(file));
    }
    let streaming = matches!(
        cli.command,
        Command::Watch { .. } | Command::Logs { follow: true, .. }
    );
    let connection = connect(&cli, streaming).await?;
    let json = cli.json;
    use instances::Action;
    match cli.command {
        Command::Run {
            name,
            project,
            no_start,
            spec,
            command,
        } => instances::run(&connection, json, name, project, no_start, spec, command).await,
        Command::Up {
            project,
            name,
            spec,
            command,
        } => instances::up(&connection, json, project, name, spec, command).await,
        Command::Ls {
            states,
            workspace,
            labels,
            full,
        } => instances::list(&connection, json, states, workspace, labels, full).await,
        Command::Get { instance } => instances::act(&connection, json, Action::Get, instance).await,
        Command::Start { instance } => {
            instances::act(&connection, json, Action::Start, instance).await
        }
        Command::Restart { instance } => {
            instances::act(&connection, json, Action::Restart, instance).await
        }
        Command::Touch { instance } => {
            instances::act(&connection, json, Action::Touch, instance).await
        }
        Command::Stop {
            instance,
            grace,
            signal_external,
        } => instances::stop(&connection, json, instance, grace, signal_external).await,
        Command::Rm {
            instance,
            force,
            signal_external,
        } => instances::remove(&connection, json, instance, force, signal_external).await,
        Command::Register {
            name,
            pid,
            port,
            project,
        } => instances::register(&connection, json, name, pid, port, project).await,
        Command::Logs {
            instance,
            follow,
            lines,
            stream,
        } => instances::logs(&connection, json, instance, follow, lines, stream).await,
        Command::Watch { instances, since } => {
            instances::watch(&connection, json, instances, since).await
        }
        Command::Validate { fix } => daemon::validate(&connection, fix, json).await,
        Command::Workspace(command) => workspaces::run(&connection, json, command).await,
        Command::Sync(command) => sync::run(&connection, json, command).await,
        Command::Template(command) => {
            content::run(&connection, json, content::Content::Templates, command).await
        }
        Command::Stylesheet(command) => {
            content::run(&connection, json, content::Content::Stylesheets, command).await
        }
        Command::Status => daemon::status(&connection, json).await,
        Command::Health { service } => daemon::health(&connection, service, json).await,
        Command::Completions { .. } => unreachable!("handled before connecting"),
    }
}

/// "KEY=VALUE" → (KEY, VALUE).
fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// Opens the connection the global flags describe. Streams get no request
/// deadline: they last until the user stops them.
async fn connect(cli: &Cli, streaming: bool) -> Result<Connection, Failure> {
    let address = match &cli.addr {
        Some(address) => address.clone(),
        None => Address::Unix(paths::default_socket_path().ok_or(Failure::NoDefaultAddress)?),
    };
    let token = Token::load(cli.token_file.as_deref()).map_err(Failure::Token)?;
    let options = ConnectOptions {
        connect_timeout: cli.timeout,
        request_timeout: (!streaming).then_some(cli.timeout),
    };
    Connection::open(&address, token.as_ref(), &options)
        .await
        .map_err(|source| Failure::Connect { address, source })
}
