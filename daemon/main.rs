//! `outpostd`: the outpost daemon.

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use outpost::{
    config::{Config, DaemonArgs},
    server::{self, ServerError},
};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Exit status for a setting that cannot be used (as clap's usage errors).
const EXIT_CONFIG: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let args = DaemonArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let config = match Config::resolve(args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("outpostd: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    tracing::info!(%config, "starting");
    let shutdown = shutdown_signal();
    match server::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("outpostd: {err}");
            match err {
                ServerError::Config(_) => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Installs SIGINT and SIGTERM handlers now (so that a signal arriving the
/// moment the daemon serves is not fatal) and returns a future that
/// completes on the first of them.
fn shutdown_signal() -> impl Future<Output = ()> {
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = handlers else {
            tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
        }
    }
}
