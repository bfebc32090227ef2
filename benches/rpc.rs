//! RPC benchmark: `outpostd` against a bare tonic server, and the cost of one
//! `outpostctl status` invocation.
//!
//! Run with `cargo bench --bench rpc`. One run prints:
//!
//! * throughput and latency (p50, p99) of unary calls over a Unix socket at
//!   1 and at 16 calls in flight, for the baseline — this binary re-executed
//!   as a bare tonic server that offers only `grpc.health.v1.Health` — and
//!   for `outpostd` answering `GetDaemonStatus`, with the throughput ratio
//!   daemon/baseline;
//! * the wall time of `outpostctl status`, one process per call.
//!
//! Both servers run in processes of their own and are called through the
//! same client ([`Connection`](outpost::endpoint::Connection)), so the ratio
//! shows what the daemon adds on the server side: routing among its
//! services, the access gate and building the response. Absolute numbers
//! vary between runs on shared machines; compare the ratios printed by one
//! run. Nothing here asserts on timing.

use outpost_bench_support as support;

use std::{path::Path, process::ExitCode, time::Duration};

use outpost::{
    endpoint::AuthChannel,
    proto::v1::{GetDaemonStatusRequest, orchestrator_client::OrchestratorClient},
};
use tonic::Status;

use support::{
    BoxError,
    cli::{print_cli, time_cli},
    connect,
    load::{UnaryCall, compare_at},
    report::{print_header, print_load, print_ratio},
    runtime,
    server::{ServerProcess, baseline_command, daemon_command, daemon_socket},
};

/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The load levels: how many calls are kept in flight at once.
const IN_FLIGHT: [usize; 2] = [1, 16];
/// What `outpostctl` is timed with.
const CLI_ARGS: [&str; 1] = ["status"];
/// Target: median wall time of `outpostctl status` at most this.
const TARGET_CLI_MEDIAN: Duration = Duration::from_millis(4);

/// Runs the benchmark, or the baseline server when re-executed as one.
fn main() -> ExitCode {
    support::run("rpc", bench)
}

/// Runs the whole benchmark and prints its results.
fn bench() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let daemon_dir = dir.path().join("daemon");
    let daemon_socket = daemon_socket(&daemon_dir);
    let baseline_socket = dir.path().join("baseline.sock");
    let daemon = ServerProcess::start(
        "outpostd",
        daemon_command(env!("CARGO_BIN_EXE_outpostd"), &daemon_dir),
        STOP_TIMEOUT,
    )?;
    let baseline = ServerProcess::start(
        "baseline",
        baseline_command(&baseline_socket)?,
        STOP_TIMEOUT,
    )?;

    print_header();
    runtime()?.block_on(compare_rpc(&baseline_socket, &daemon_socket))?;
    // Only the daemon is needed from here on.
    drop(baseline);

    println!();
    let cli = time_cli(env!("CARGO_BIN_EXE_outpostd"), &daemon_socket, &CLI_ARGS)?;
    print_cli(&CLI_ARGS, &cli, TARGET_CLI_MEDIAN);
    drop(daemon);
    Ok(())
}

/// The daemon's method under test: `GetDaemonStatus`.
#[derive(Clone)]
struct DaemonStatusCall(OrchestratorClient<AuthChannel>);

impl UnaryCall for DaemonStatusCall {
    async fn call(&mut self) -> Result<(), Status> {
        self.0
            .get_daemon_status(GetDaemonStatusRequest {})
            .await
            .map(drop)
    }
}

/// Measures the baseline and the daemon at each load level.
async fn compare_rpc(baseline: &Path, daemon: &Path) -> Result<(), BoxError> {
    let health = connect(baseline).await?.health();
    let orchestrator = DaemonStatusCall(connect(daemon).await?.orchestrator());
    for in_flight in IN_FLIGHT {
        let (base, ours) = compare_at(in_flight, &health, &orchestrator).await?;
        print_load("bare tonic Health/Check", in_flight, &base);
        print_load("outpostd GetDaemonStatus", in_flight, &ours);
        print_ratio(in_flight, ours.throughput() / base.throughput());
    }
    Ok(())
}
