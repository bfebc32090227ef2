//! `outpostctl`: drives an outpost daemon over its Unix socket or TCP.

mod daemon;
mod failure;
mod output;

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
    let connection = connect(&cli).await?;
    match cli.command {
        Command::Status => daemon::status(&connection, cli.json).await,
        Command::Health { service } => daemon::health(&connection, service, cli.json).await,
        Command::Completions { .. } => unreachable!("handled before connecting"),
    }
}

/// Opens the connection the global flags describe.
async fn connect(cli: &Cli) -> Result<Connection, Failure> {
    let address = match &cli.addr {
        Some(address) => address.clone(),
        None => Address::Unix(paths::default_socket_path().ok_or(Failure::NoDefaultAddress)?),
    };
    let token = Token::load(cli.token_file.as_deref()).map_err(Failure::Token)?;
    let options = ConnectOptions {
        connect_timeout: cli.timeout,
        request_timeout: Some(cli.timeout),
    };
    Connection::open(&address, token.as_ref(), &options)
        .await
        .map_err(|source| Failure::Connect { address, source })
}
