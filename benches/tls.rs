//! TLS benchmark (issue 21): what TLS costs against plaintext TCP, side by
//! side in one run on one daemon.
//!
//! Run with `cargo bench --bench tls`. One `outpostd` listens on
//! `tcp://127.0.0.1:0` and `tls://127.0.0.1:0` (its self-signed
//! certificate) with a token. The run prints:
//!
//! * throughput and latency (p50, p99) of unary `GetDaemonStatus` calls at
//!   1 and at 16 in flight over each listener, the two taking turns by
//!   slice (as `benches/rpc.rs` compares against its baseline), and the
//!   throughput ratio TLS/TCP against the target (at least 0.85: TLS
//!   within 15 %);
//! * the wall time of `outpostctl status` over each, one process per call
//!   (so every call pays for its connection, and over TLS for its
//!   handshake and reading the pin from known_hosts), the two alternating
//!   call by call, and the difference of the medians against the target
//!   (at most 2 ms).
//!
//! Absolute numbers vary between runs on shared machines; compare the
//! ratios and differences printed by one run. Nothing here asserts on
//! timing.

use outpost_bench_support as support;

use std::{path::Path, process::ExitCode, time::Duration};

use outpost::{
    endpoint::{Address, AuthChannel, ConnectOptions, Connection},
    proto::v1::{GetDaemonStatusRequest, orchestrator_client::OrchestratorClient},
    tls::{ClientTls, ServerTrust},
    token::Token,
};
use tonic::Status;

use support::{
    BoxError,
    cli::{CLI_RUNS, CLI_WARM_UP, cli_command, run_once},
    connect,
    load::{ROUNDS, UnaryCall, WARM_UP, WINDOW, compare_at},
    report::{cores, millis, percentile, print_load, verdict},
    runtime,
    server::{ServerProcess, daemon_command, daemon_socket},
};

/// How long the daemon may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The load levels: how many calls are kept in flight at once.
const IN_FLIGHT: [usize; 2] = [1, 16];
/// The token both listeners require.
const TOKEN: &str = "bench-token-0123456789abcdef";
/// Target: TLS throughput at least this fraction of plaintext TCP's.
const TARGET_RATIO: f64 = 0.85;
/// Target: the median `outpostctl status` over TLS at most this much
/// slower than over TCP.
const TARGET_CLI_EXTRA: Duration = Duration::from_millis(2);

fn main() -> ExitCode {
    support::run("tls", bench)
}

/// Runs the whole benchmark and prints its results.
fn bench() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let daemon_dir = dir.path().join("daemon");
    let outpostd = env!("CARGO_BIN_EXE_outpostd");
    let mut command = daemon_command(outpostd, &daemon_dir);
    command
        .args(["--listen", "tcp://127.0.0.1:0,tls://127.0.0.1:0"])
        .env("OUTPOST_TOKEN", TOKEN);
    let daemon = ServerProcess::start("outpostd", command, STOP_TIMEOUT)?;

    let runtime = runtime()?;
    let (tcp, tls, fingerprint) = runtime.block_on(listeners(&daemon_socket(&daemon_dir)))?;
    println!(
        "GetDaemonStatus over plaintext TCP and TLS (one daemon, {} CPUs); per row: warm-up {:.1} s, then {:.1} s measured in {ROUNDS} slices taking turns with the other listener.",
        cores(),
        WARM_UP.as_secs_f64(),
        WINDOW.as_secs_f64()
    );
    println!(
        "{:<26} {:>9} {:>10} {:>9} {:>9}",
        "listener / method", "in flight", "req/s", "p50 µs", "p99 µs"
    );
    runtime.block_on(compare_rpc(&tcp, &tls, &fingerprint))?;

    println!();
    let config = dir.path().join("config");
    let mut trust = cli_command(
        outpostd,
        &tls.to_string(),
        &["trust", &tls.to_string(), "--yes"],
    )?;
    trust.env("XDG_CONFIG_HOME", &config);
    run_once(&mut trust, &["trust"])?;
    compare_cli(outpostd, &tcp, &tls, &config)?;
    drop(daemon);
    Ok(())
}

/// The daemon's TCP and TLS addresses and its certificate's fingerprint,
/// from its status.
async fn listeners(socket: &Path) -> Result<(Address, Address, String), BoxError> {
    let status = connect(socket)
        .await?
        .orchestrator()
        .get_daemon_status(GetDaemonStatusRequest {})
        .await?
        .into_inner();
    let find = |scheme: &str, client: &str| -> Result<Address, BoxError> {
        let listener = (status.listen_addresses.iter())
            .find_map(|address| address.strip_prefix(scheme))
            .ok_or_else(|| format!("the daemon reports no {scheme} listener"))?;
        Ok(format!("{client}{listener}").parse()?)
    };
    Ok((
        find("tcp://", "http://")?,
        find("tls://", "https://")?,
        status.tls_fingerprint,
    ))
}

/// The method under test: `GetDaemonStatus`.
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

/// A connection to `address` with the token; over TLS the daemon's
/// certificate is pinned by the fingerprint it reports.
async fn open(address: &Address, fingerprint: &str) -> Result<DaemonStatusCall, BoxError> {
    let token = Token::parse(TOKEN)?;
    let mut options = ConnectOptions::default();
    if let Address::Tls(_) = address {
        options.tls = ClientTls {
            trust: ServerTrust::Fingerprint {
                expected: fingerprint.parse()?,
                pinned: true,
            },
            identity: None,
        };
    }
    let connection = Connection::open(address, Some(&token), &options).await?;
    Ok(DaemonStatusCall(connection.orchestrator()))
}

/// Measures TCP and TLS at each load level.
async fn compare_rpc(tcp: &Address, tls: &Address, fingerprint: &str) -> Result<(), BoxError> {
    let (plain, secure) = (open(tcp, fingerprint).await?, open(tls, fingerprint).await?);
    for in_flight in IN_FLIGHT {
        let (plain_stats, secure_stats) = compare_at(in_flight, &plain, &secure).await?;
        print_load("tcp:// GetDaemonStatus", in_flight, &plain_stats);
        print_load("tls:// GetDaemonStatus", in_flight, &secure_stats);
        let ratio = secure_stats.throughput() / plain_stats.throughput();
        println!(
            "  throughput TLS/TCP at {in_flight} in flight: {ratio:.2} (target >= {TARGET_RATIO:.2}: {})",
            verdict(ratio >= TARGET_RATIO)
        );
    }
    Ok(())
}

/// Times `outpostctl status` over TCP and TLS, alternating call by call.
fn compare_cli(
    outpostd: &str,
    tcp: &Address,
    tls: &Address,
    config: &Path,
) -> Result<(), BoxError> {
    let args = ["status"];
    let mut plain = cli_command(outpostd, &tcp.to_string(), &args)?;
    let mut secure = cli_command(outpostd, &tls.to_string(), &args)?;
    for command in [&mut plain, &mut secure] {
        command
            .env("OUTPOST_TOKEN", TOKEN)
            .env("XDG_CONFIG_HOME", config);
    }
    for _ in 0..CLI_WARM_UP {
        run_once(&mut plain, &args)?;
        run_once(&mut secure, &args)?;
    }
    let (mut plain_times, mut secure_times) = (Vec::new(), Vec::new());
    for _ in 0..CLI_RUNS {
        plain_times.push(run_once(&mut plain, &args)?);
        secure_times.push(run_once(&mut secure, &args)?);
    }
    plain_times.sort_unstable();
    secure_times.sort_unstable();
    for (label, times) in [("tcp://", &plain_times), ("tls://", &secure_times)] {
        println!(
            "outpostctl status over {label}, {} runs alternating: median {:.2} ms, p90 {:.2} ms, min {:.2} ms",
            times.len(),
            millis(percentile(times, 0.50)),
            millis(percentile(times, 0.90)),
            millis(times.first().copied().unwrap_or_default())
        );
    }
    let extra = percentile(&secure_times, 0.50).saturating_sub(percentile(&plain_times, 0.50));
    println!(
        "  median TLS - TCP: {:.2} ms (target <= {:.0} ms: {})",
        millis(extra),
        millis(TARGET_CLI_EXTRA),
        verdict(extra <= TARGET_CLI_EXTRA)
    );
    Ok(())
}
