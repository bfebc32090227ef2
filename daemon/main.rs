//! `outpostd`: the outpost daemon.

use std::{ffi::OsString, io::IsTerminal, os::unix::process::CommandExt, process::ExitCode};

use clap::Parser;
use outpostd::{
    config::{Config, DaemonArgs, MYBB_DATABASE_ENV},
    daemon::{Daemon, DaemonError},
    server::{self, ServerError},
    service_manager::ServiceManager,
    shutdown::{self, AtExit, Request, Shutdown},
};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Exit status for a setting that cannot be used (as clap's usage errors).
const EXIT_CONFIG: u8 = 2;
/// Free memory at the top of a malloc heap that glibc keeps instead of
/// returning it to the kernel. The default (128 KiB) is less than what one
/// `ListInstances` of a few hundred instances allocates and frees, so every
/// such call paid for giving pages back and faulting them in again.
const MALLOC_TRIM_THRESHOLD: i32 = 4 << 20;

#[tokio::main]
async fn main() -> ExitCode {
    // SAFETY: mallopt only sets an allocator tuning parameter.
    unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD) };
    hide_database_url();
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
    match run(config).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("outpostd: {err}");
            match err {
                Failure::Daemon(DaemonError::Config(_))
                | Failure::Server(ServerError::Config(_)) => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// A database URL on the command line holds a password that every user
/// sees in `ps`: the daemon runs itself again with the URL moved into its
/// environment (readable by its own user only), and the arguments without
/// it. If that cannot be done, it carries on as it was started.
fn hide_database_url() {
    const FLAG: &str = "--mybb-database";
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut kept = Vec::with_capacity(args.len());
    let mut url = None;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            kept.push(arg.clone());
            kept.extend(rest.by_ref().cloned());
        } else if text == FLAG {
            url = rest.next().cloned();
        } else if let Some(value) = text.strip_prefix("--mybb-database=") {
            url = Some(OsString::from(value));
        } else {
            kept.push(arg.clone());
        }
    }
    let (Some(url), Ok(exe)) = (url, std::env::current_exe()) else {
        return;
    };
    let err = std::process::Command::new(exe)
        .arg0(&args[0])
        .args(kept)
        .env(MYBB_DATABASE_ENV, url)
        .exec();
    eprintln!(
        "outpostd: cannot move --mybb-database out of the arguments ({err}); it stays visible in ps"
    );
}

/// Why the daemon stopped early.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Binds, starts the domains, serves until asked to stop (by a signal or
/// the `Shutdown` RPC, the same way), and stops them.
async fn run(config: Config) -> Result<(), Failure> {
    let (shutdown, mut requests) = shutdown::channel();
    let at_exit = if config.keep_instances_on_exit {
        AtExit::KeepInstances
    } else {
        AtExit::StopInstances
    };
    on_signal(shutdown.clone(), at_exit);
    let service_manager = ServiceManager::start();
    let listeners = server::bind(&config).await?;
    let daemon = Daemon::start(config).await?;
    let mut serving = server::serve(listeners, &daemon, shutdown).await?;
    service_manager.serving(daemon.orchestrator.clone());
    let request = tokio::select! {
        request = requests.first() => request,
        () = serving.failed() => Request::from_daemon(at_exit),
    };
    service_manager.stopping();
    serving.drain().await;
    let stopped = daemon.stop(request.at_exit).await;
    requests.answer(request, &stopped);
    serving.close().await;
    Ok(())
}

/// Installs SIGINT and SIGTERM handlers now (so that a signal arriving the
/// moment the daemon serves is not fatal); the first of them asks the
/// daemon to stop, leaving the instances as `at_exit` says.
fn on_signal(shutdown: Shutdown, at_exit: AtExit) {
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    tokio::spawn(async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = handlers else {
            tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
            return;
        };
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
        }
        shutdown.ask(at_exit).await;
    });
}
