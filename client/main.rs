//! `outpostctl`: drives an outpost daemon over its Unix socket or TCP.

mod content;
mod contexts;
mod daemon;
mod export;
mod failure;
mod history;
mod instances;
mod output;
mod service;
mod sync;
mod trust;
mod wait;
mod workspaces;

use std::{
    io::{self, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use clap::{CommandFactory, Parser, Subcommand};
use outpost::endpoint::{Address, ConnectOptions, Connection};

use failure::Failure;

#[derive(Debug, Parser)]
#[command(
    name = "outpostctl",
    version,
    about = "Control an outpost daemon.",
    after_help = "TCP addresses need the daemon's token: --token-file FILE, or the token itself in $OUTPOST_TOKEN."
)]
struct Cli {
    /// Daemon address: unix:///PATH, http://HOST:PORT or https://HOST:PORT [default: the daemon's default socket]
    #[arg(long, env = "OUTPOST_ADDR", global = true, value_name = "ADDR")]
    addr: Option<Address>,

    /// File holding the bearer token for TCP
    #[arg(long, env = "OUTPOST_TOKEN_FILE", global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Talk to this context's daemon (see `outpostctl context`) [default: the context in use]
    #[arg(long, env = "OUTPOST_CONTEXT", global = true, value_name = "NAME")]
    context: Option<String>,

    /// Print responses as JSON (canonical proto3 mapping, .proto field names); every command but completions
    #[arg(long, global = true)]
    json: bool,

    /// Deadline for connecting and for each call
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,

    #[command(flatten)]
    tls: trust::TlsArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // Boxed: `run` and `up` carry every spec flag, the other commands a few.
    #[command(flatten)]
    Instance(Box<instances::InstanceCommand>),
    /// Templates in template sets: ls [SET], get SET TITLE, put SET TITLE, rm SET TITLE
    #[command(subcommand)]
    Template(content::ContentCommand),
    /// Stylesheets in themes: ls [THEME], get THEME NAME, put THEME NAME, rm THEME NAME
    #[command(subcommand)]
    Stylesheet(content::ContentCommand),
    /// Template and stylesheet sync with files: status, events, conflicts, resolve, pause, resume, rescan, export
    #[command(subcommand)]
    Sync(sync::SyncCommand),
    /// Declarative workspaces: ls, show, apply, stop, start, check, rollback
    #[command(subcommand)]
    Workspace(workspaces::WorkspaceCommand),
    /// Versions of a template, stylesheet or workspace: history template SET TITLE, history show REV …
    History(history::HistoryArgs),
    /// Bring a template or stylesheet back to a version: restore template SET TITLE --to REV
    Restore(history::RestoreArgs),
    /// Named daemons: add, ls, use, rm (then --context NAME, or ls --contexts/--all-contexts)
    #[command(subcommand)]
    Context(contexts::ContextCommand),
    /// Wait until instances are ready, stopped or completed (exit 1 if one never will, 124 on --timeout)
    Wait(wait::WaitArgs),
    /// Write a workspace as Kubernetes objects, a Nomad job or systemd units (to stdout)
    Export(export::ExportArgs),
    #[command(flatten)]
    Daemon(daemon::DaemonCommand),
    /// systemd units for the daemon: install, uninstall (no daemon needed)
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Pin an https:// daemon's certificate: shows its SHA-256 fingerprint, asks, stores it in $XDG_CONFIG_HOME/outpost/known_hosts
    Trust(trust::TrustArgs),
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
        // Nobody reads the output any more (`| head`): a quiet end.
        Err(Failure::Output(err)) if output::closed_pipe(&err) => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = writeln!(io::stderr(), "outpostctl: {failure}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    if let Command::Completions { shell } = cli.command {
        // Written by us, not by clap_complete, which panics on a closed pipe.
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "outpostctl", &mut script);
        return output::done(io::stdout().write_all(&script));
    }
    if let Command::Trust(args) = cli.command {
        return trust::trust(args, &cli.tls, cli.timeout).await;
    }
    // Checking or exporting a file needs no daemon.
    if let Command::Workspace(workspaces::WorkspaceCommand::Check { file }) = &cli.command {
        return workspaces::check(file, cli.json);
    }
    if let Command::Export(args) = &cli.command
        && args.is_file()
    {
        return args.run_file();
    }
    if let Command::Context(command) = cli.command {
        return contexts::run(command, cli.json);
    }
    if let Command::Instance(command) = &cli.command
        && let Some((selection, request)) = command.across()
    {
        let tls = |address: &Address| trust::client_tls(&cli.tls, address);
        return contexts::list(selection, request, cli.timeout, tls, cli.json).await;
    }
    // Nor does writing its units.
    if let Command::Service(command) = cli.command {
        return service::run(command);
    }
    let streaming = matches!(&cli.command, Command::Wait(_))
        || matches!(&cli.command, Command::Instance(command) if command.streams())
        || matches!(&cli.command, Command::Daemon(command) if command.waits());
    let connection = connect(&cli, streaming).await?;
    let json = cli.json;
    match cli.command {
        Command::Instance(command) => instances::run(&connection, json, *command).await,
        Command::Template(command) => {
            content::run(&connection, json, content::Content::Templates, command).await
        }
        Command::Stylesheet(command) => {
            content::run(&connection, json, content::Content::Stylesheets, command).await
        }
        Command::Sync(command) => sync::run(&connection, json, command).await,
        Command::Workspace(command) => workspaces::run(&connection, json, command).await,
        Command::History(args) => history::run(&connection, json, args).await,
        Command::Restore(args) => history::restore(&connection, json, args).await,
        Command::Wait(args) => wait::run(&connection, json, args, cli.timeout).await,
        Command::Export(args) => args.run(&connection).await,
        Command::Daemon(command) => daemon::run(&connection, json, command).await,
        Command::Completions { .. }
        | Command::Context(_)
        | Command::Service(_)
        | Command::Trust(_) => {
            unreachable!("handled before connecting")
        }
    }
}

/// Opens the connection the global flags describe. Streams get no request
/// deadline: they last until the user stops them.
async fn connect(cli: &Cli, streaming: bool) -> Result<Connection, Failure> {
    let target = contexts::resolve(
        cli.addr.as_ref(),
        cli.context.as_deref(),
        cli.token_file.as_deref(),
    )?;
    let options = ConnectOptions {
        connect_timeout: cli.timeout,
        request_timeout: (!streaming).then_some(cli.timeout),
        tls: trust::client_tls(&cli.tls, &target.address)?,
    };
    contexts::open(&target, &options).await
}
