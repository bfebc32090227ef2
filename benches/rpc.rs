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
//! same client ([`Connection`]), so the ratio shows what the daemon adds on
//! the server side: routing among its services, the access gate and building
//! the response. Absolute numbers vary between runs on shared machines;
//! compare the ratios printed by one run. Nothing here asserts on timing.

use std::{
    env,
    error::Error,
    future::Future,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, ExitCode, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use outpost::{
    endpoint::{Address, AuthChannel, ConnectOptions, Connection},
    proto::v1::{GetDaemonStatusRequest, orchestrator_client::OrchestratorClient},
};
use tokio::{net::UnixListener, runtime::Runtime, task::JoinSet};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Status, transport::Server};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Any error, movable between tasks.
type BoxError = Box<dyn Error + Send + Sync>;

/// Set (to a socket path) when this binary is re-executed as the baseline server.
const BASELINE_SOCKET_ENV: &str = "RPC_BENCH_BASELINE_SOCKET";
/// What both servers write to stderr once they accept calls.
const READY_MARKER: &str = " serving ";
/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls made, unmeasured, before each measuring window.
const WARM_UP: Duration = Duration::from_millis(500);
/// How long each load level is measured, per server.
const WINDOW: Duration = Duration::from_secs(3);
/// Slices each window is cut into; the two servers take turns by slice.
const ROUNDS: u32 = 6;
/// The load levels: how many calls are kept in flight at once.
const IN_FLIGHT: [usize; 2] = [1, 16];
/// Unmeasured `outpostctl status` invocations before the measured ones.
const CLI_WARM_UP: usize = 20;
/// Measured `outpostctl status` invocations.
const CLI_RUNS: usize = 200;

/// Target: daemon throughput at least this fraction of the baseline's.
const TARGET_RATIO: f64 = 0.70;
/// Target: median wall time of `outpostctl status` at most this.
const TARGET_CLI_MEDIAN: Duration = Duration::from_millis(4);

/// Runs the benchmark, or the baseline server when [`BASELINE_SOCKET_ENV`]
/// is set.
fn main() -> ExitCode {
    let result = match env::var_os(BASELINE_SOCKET_ENV) {
        Some(socket) => serve_baseline(PathBuf::from(socket)),
        None => bench(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rpc bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the whole benchmark and prints its results.
fn bench() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let daemon_dir = dir.path().join("daemon");
    let daemon_socket = daemon_socket(&daemon_dir);
    let baseline_socket = dir.path().join("baseline.sock");
    let daemon = ServerProcess::start("outpostd", daemon_command(&daemon_dir))?;
    let baseline = ServerProcess::start("baseline", baseline_command(&baseline_socket)?)?;

    print_header();
    runtime()?.block_on(compare_rpc(&baseline_socket, &daemon_socket))?;
    // Only the daemon is needed from here on.
    drop(baseline);

    println!();
    let cli = time_cli(&daemon_socket)?;
    print_cli(&cli);
    drop(daemon);
    Ok(())
}

/// The multi-thread runtime used by the client and by the baseline server,
/// configured as `#[tokio::main]` configures `outpostd`'s.
fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

// ---------------------------------------------------------------------------
// The two servers
// ---------------------------------------------------------------------------

/// Acts as the baseline server: only `grpc.health.v1.Health`, on `socket`,
/// until killed. It announces readiness on stderr as `outpostd` does.
fn serve_baseline(socket: PathBuf) -> Result<(), BoxError> {
    runtime()?.block_on(async {
        let listener = UnixListener::bind(&socket)
            .map_err(|err| format!("cannot bind {}: {err}", socket.display()))?;
        let (_reporter, health) = tonic_health::server::health_reporter();
        eprintln!("baseline serving on {}", socket.display());
        Server::builder()
            .tcp_nodelay(true)
            .add_service(health)
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await?;
        Ok(())
    })
}

/// This binary, told to act as the baseline server on `socket`.
fn baseline_command(socket: &Path) -> std::io::Result<Command> {
    let mut command = Command::new(env::current_exe()?);
    command.env(BASELINE_SOCKET_ENV, socket);
    Ok(command)
}

/// `outpostd` with everything under `dir`, free of the caller's `OUTPOST_*`
/// settings.
fn daemon_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outpostd"));
    command
        .arg("--data-dir")
        .arg(dir)
        .arg("--socket")
        .arg(daemon_socket(dir))
        .arg("--workspaces-dir")
        .arg(dir.join("workspaces"))
        .env("RUST_LOG", "info");
    without_outpost_env(&mut command);
    command
}

/// Where the daemon whose data directory is `dir` listens.
fn daemon_socket(dir: &Path) -> PathBuf {
    dir.join("run").join("o.sock")
}

/// Removes every `OUTPOST_*` variable from the environment of `command`.
fn without_outpost_env(command: &mut Command) {
    for (name, _) in env::vars_os() {
        if name.to_string_lossy().starts_with("OUTPOST_") {
            command.env_remove(name);
        }
    }
}

/// A server running as a child process; stopped (SIGTERM, then SIGKILL)
/// when dropped, including when the benchmark fails or panics.
struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// Spawns `command` and waits until it reports that it is serving.
    fn start(name: &str, mut command: Command) -> Result<Self, BoxError> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot start {name}: {err}"))?;
        let stderr = child.stderr.take().ok_or("stderr is not piped")?;
        // From here on, the guard stops the child whatever happens.
        let server = Self { child };
        wait_until_serving(stderr, READY_TIMEOUT).map_err(|err| format!("{name}: {err}"))?;
        Ok(server)
    }

    /// Whether the child exits within `timeout`.
    fn exits_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let terminated = i32::try_from(self.child.id())
            .is_ok_and(|pid| kill(Pid::from_raw(pid), Signal::SIGTERM).is_ok());
        if !(terminated && self.exits_within(STOP_TIMEOUT)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until a line of `stderr` contains [`READY_MARKER`]. A thread reads
/// the pipe and keeps draining it afterwards, so the server never blocks on a
/// full pipe.
fn wait_until_serving(stderr: ChildStderr, timeout: Duration) -> Result<(), String> {
    let (ready_tx, ready_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
        let mut before_ready = Vec::new();
        for line in lines.by_ref() {
            if line.contains(READY_MARKER) {
                let _ = ready_tx.send(Ok(()));
                lines.for_each(drop);
                return;
            }
            before_ready.push(line);
        }
        let _ = ready_tx.send(Err(before_ready.join("\n")));
    });
    match ready_rx.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(output)) => Err(format!("exited before serving; its stderr:\n{output}")),
        Err(_) => Err(format!("not serving after {timeout:?}")),
    }
}

// ---------------------------------------------------------------------------
// Unary load
// ---------------------------------------------------------------------------

/// One unary call of the method under test; clones share one connection.
trait UnaryCall: Clone + Send + 'static {
    /// Makes one call and discards the response.
    fn call(&mut self) -> impl Future<Output = Result<(), Status>> + Send;
}

impl UnaryCall for HealthClient<AuthChannel> {
    async fn call(&mut self) -> Result<(), Status> {
        self.check(HealthCheckRequest::default()).await.map(drop)
    }
}

impl UnaryCall for OrchestratorClient<AuthChannel> {
    async fn call(&mut self) -> Result<(), Status> {
        self.get_daemon_status(GetDaemonStatusRequest {})
            .await
            .map(drop)
    }
}

/// Throughput and latency of one load level.
struct LoadStats {
    /// Calls completed in the measuring window.
    calls: usize,
    /// Time under load: from the first call of each slice until its last
    /// call completed, summed.
    elapsed: Duration,
    /// Median latency.
    p50: Duration,
    /// 99th-percentile latency.
    p99: Duration,
}

impl LoadStats {
    /// Completed calls per second.
    fn throughput(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// Measures the baseline and the daemon at each load level.
async fn compare_rpc(baseline: &Path, daemon: &Path) -> Result<(), BoxError> {
    let health = connect(baseline).await?.health();
    let orchestrator = connect(daemon).await?.orchestrator();
    for in_flight in IN_FLIGHT {
        let (base, ours) = compare_at(in_flight, &health, &orchestrator).await?;
        print_load("bare tonic Health/Check", in_flight, &base);
        print_load("outpostd GetDaemonStatus", in_flight, &ours);
        print_ratio(in_flight, ours.throughput() / base.throughput());
    }
    Ok(())
}

/// Opens a connection to the Unix socket `socket`.
async fn connect(socket: &Path) -> Result<Connection, BoxError> {
    let address = Address::Unix(socket.to_owned());
    Ok(Connection::open(&address, None, &ConnectOptions::default()).await?)
}

/// Measures one load level on both servers: a warm-up each, then [`ROUNDS`]
/// slices of `WINDOW / ROUNDS` each, alternating which server goes first, so
/// that a machine whose speed drifts affects both sides of the ratio alike.
async fn compare_at<B: UnaryCall, D: UnaryCall>(
    in_flight: usize,
    baseline: &B,
    daemon: &D,
) -> Result<(LoadStats, LoadStats), BoxError> {
    drive(baseline, in_flight, WARM_UP).await?;
    drive(daemon, in_flight, WARM_UP).await?;
    let slice = WINDOW / ROUNDS;
    let (mut base, mut ours) = (Samples::default(), Samples::default());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            base.add(baseline, in_flight, slice).await?;
            ours.add(daemon, in_flight, slice).await?;
        } else {
            ours.add(daemon, in_flight, slice).await?;
            base.add(baseline, in_flight, slice).await?;
        }
    }
    Ok((base.into_stats(), ours.into_stats()))
}

/// Latencies and loaded time gathered over one or more slices of load.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Samples {
    /// Adds a slice of `window` with `in_flight` calls going on `client`.
    async fn add<C: UnaryCall>(
        &mut self,
        client: &C,
        in_flight: usize,
        window: Duration,
    ) -> Result<(), BoxError> {
        let (latencies, elapsed) = drive(client, in_flight, window).await?;
        self.latencies.extend(latencies);
        self.elapsed += elapsed;
        Ok(())
    }

    /// Throughput and latency percentiles of everything added.
    fn into_stats(mut self) -> LoadStats {
        self.latencies.sort_unstable();
        LoadStats {
            calls: self.latencies.len(),
            elapsed: self.elapsed,
            p50: percentile(&self.latencies, 0.50),
            p99: percentile(&self.latencies, 0.99),
        }
    }
}

/// Runs `in_flight` tasks that call back to back until `window` has passed;
/// returns every call's latency and the time until the last call completed.
async fn drive<C: UnaryCall>(
    client: &C,
    in_flight: usize,
    window: Duration,
) -> Result<(Vec<Duration>, Duration), BoxError> {
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = JoinSet::new();
    for _ in 0..in_flight {
        tasks.spawn(call_until(client.clone(), deadline));
    }
    let mut latencies = Vec::new();
    while let Some(task) = tasks.join_next().await {
        latencies.extend(task??);
    }
    Ok((latencies, start.elapsed()))
}

/// Calls back to back until `deadline`; returns each call's latency.
async fn call_until<C: UnaryCall>(
    mut client: C,
    deadline: Instant,
) -> Result<Vec<Duration>, Status> {
    let mut latencies = Vec::with_capacity(1 << 16);
    loop {
        let sent = Instant::now();
        if sent >= deadline {
            return Ok(latencies);
        }
        client.call().await?;
        latencies.push(sent.elapsed());
    }
}

/// The nearest-rank percentile (`fraction` in 0..=1) of ascending `sorted`.
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// outpostctl
// ---------------------------------------------------------------------------

/// Runs `outpostctl status` against the daemon on `socket`, one process after
/// another; returns the wall time of each measured run, ascending.
fn time_cli(socket: &Path) -> Result<Vec<Duration>, BoxError> {
    let address = format!("unix://{}", socket.display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_outpostctl"));
    command
        .args(["--addr", address.as_str(), "status"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    without_outpost_env(&mut command);

    for _ in 0..CLI_WARM_UP {
        run_once(&mut command)?;
    }
    let mut times = (0..CLI_RUNS)
        .map(|_| run_once(&mut command))
        .collect::<Result<Vec<_>, _>>()?;
    times.sort_unstable();
    Ok(times)
}

/// Runs `command` to completion; returns its wall time, or its stderr if it
/// failed.
fn run_once(command: &mut Command) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let output = command.output()?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("outpostctl status failed ({}): {stderr}", output.status).into());
    }
    Ok(elapsed)
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// Prints what is measured and the column titles.
fn print_header() {
    let cpus = thread::available_parallelism().map_or(0, usize::from);
    println!(
        "Unary calls over a Unix socket, {cpus} CPUs; per row: warm-up {:.1} s, \
         then {:.1} s measured in {ROUNDS} slices taking turns with the other server.",
        WARM_UP.as_secs_f64(),
        WINDOW.as_secs_f64()
    );
    println!(
        "{:<26} {:>9} {:>10} {:>9} {:>9}",
        "server / method", "in flight", "req/s", "p50 µs", "p99 µs"
    );
}

/// Prints one load level of one server.
fn print_load(label: &str, in_flight: usize, stats: &LoadStats) {
    println!(
        "{label:<26} {in_flight:>9} {:>10.0} {:>9.1} {:>9.1}",
        stats.throughput(),
        micros(stats.p50),
        micros(stats.p99)
    );
}

/// Prints the throughput ratio daemon/baseline at one load level.
fn print_ratio(in_flight: usize, ratio: f64) {
    println!(
        "  throughput daemon/baseline at {in_flight} in flight: {ratio:.2} (target >= {TARGET_RATIO:.2}: {})",
        verdict(ratio >= TARGET_RATIO)
    );
}

/// Prints the `outpostctl status` wall times (`times` ascending).
fn print_cli(times: &[Duration]) {
    let median = percentile(times, 0.50);
    println!(
        "outpostctl status, {} runs one after another: median {:.2} ms, p90 {:.2} ms, min {:.2} ms",
        times.len(),
        millis(median),
        millis(percentile(times, 0.90)),
        millis(times.first().copied().unwrap_or_default())
    );
    println!(
        "  median target <= {:.0} ms: {}",
        millis(TARGET_CLI_MEDIAN),
        verdict(median <= TARGET_CLI_MEDIAN)
    );
}

/// `duration` in microseconds.
fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// `duration` in milliseconds.
fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// How a target comparison reads in the output.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}
