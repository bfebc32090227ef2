//! What the benchmarks share: starting `outpostd` and the bare tonic
//! baseline server as child processes, the unary load driver, timing
//! `outpostctl` invocations, the HTTP front's client (requests and
//! Server-Sent Events), judging an event stream's delivery, and printing
//! results. (The headless Chromium is the tests' own:
//! `outpost_test_support::browser`.)
//!
//! A crate of its own (a dev-dependency of `outpost`). Each benchmark binary
//! imports it (`use outpost_bench_support as support;`) and hands its
//! work to [`run`], which also lets the binary act as the baseline server
//! when it is re-executed for that (see [`server`]).

pub mod cli;
pub mod delivery;
pub mod fleet;
pub mod http;
pub mod kernel;
pub mod load;
pub mod report;
pub mod server;
pub mod sync;
pub mod watch;

use std::{error::Error, path::Path, process::ExitCode};

use outpost::endpoint::{Address, ConnectOptions, Connection};
use tokio::runtime::Runtime;

/// Any error, movable between tasks.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// The entry point of a benchmark binary called `name`: runs `bench`, or
/// the baseline server when this process is the baseline re-executed.
/// Errors are printed as `<name> bench: <error>` and end with a failure
/// status.
pub fn run(name: &str, bench: fn() -> Result<(), BoxError>) -> ExitCode {
    let result = match server::baseline_socket() {
        Some(socket) => server::serve_baseline(&socket),
        None => bench(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name} bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The multi-thread runtime used by the client and by the baseline server,
/// configured as `#[tokio::main]` configures `outpostd`'s.
pub fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Opens a connection to the Unix socket `socket`.
pub async fn connect(socket: &Path) -> Result<Connection, BoxError> {
    let address = Address::Unix(socket.to_owned());
    Ok(Connection::open(&address, None, &ConnectOptions::default()).await?)
}
