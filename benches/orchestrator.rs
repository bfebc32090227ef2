//! Orchestrator benchmark: how fast `outpostd` notices a dead process, how
//! fast it answers instance reads, and what 1,000 instances cost it.
//!
//! Run with `cargo bench --bench orchestrator`. It starts release `outpostd`
//! processes on Unix sockets in a temporary directory and prints, for a
//! daemon holding 100 instances of `sleep 1000`:
//!
//! * the latency from `kill -KILL` of an instance's process until the
//!   `WatchStatus` event that shows the instance FAILED (the instance is
//!   started again after each round);
//! * sequential `ListInstances` calls per second, in the default view
//!   (BASIC: no spec) and in the FULL view;
//! * `GetInstance` throughput at 1 and 16 calls in flight against the bare
//!   tonic baseline (this binary re-executed as a server offering only
//!   `grpc.health.v1.Health`), measured as `benches/rpc.rs` measures
//!   `GetDaemonStatus`;
//! * the wall time of `outpostctl ls`, one process per call;
//!
//! and, for a fresh daemon started with `--max-instances 2000`:
//!
//! * the wall time to create 1,000 instances of `sleep 1000`, all RUNNING;
//! * the daemon's resident memory afterwards;
//! * the daemon's CPU use while it sits idle with them for 30 s;
//! * the wall time to stop all 1,000 with concurrent `StopInstance` calls,
//!   and the slowest `GetDaemonStatus` answer meanwhile.
//!
//! Each target is printed as met or not; nothing here asserts on timing.

use outpost_bench_support as support;

use std::{
    path::Path,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use outpost::{
    endpoint::{AuthChannel, Connection},
    proto::v1::{self as pb, orchestrator_client::OrchestratorClient},
};
use prost::Message;
use tokio::runtime::Runtime;
use tonic::Status;

use support::{
    BoxError,
    cli::{print_cli, time_cli},
    connect,
    fleet::{Calls, create_fleet, expect_state, run_calls, sleeper},
    kernel::{cpu_use, mib, peak_rss, rss},
    load::{LoadStats, Samples, UnaryCall, WARM_UP, WINDOW, compare_at},
    report::{micros, millis, percentile, print_header, print_load, print_ratio, verdict},
    runtime,
    server::{ServerProcess, baseline_command, daemon_socket, start_fleet_daemon},
    watch::{Watch, is, open_watch, wait_for},
};

/// Every instance is a `sleep 1000` without a health check: RUNNING as soon
/// as it is spawned.
const RUNNING: pb::InstanceState = pb::InstanceState::Running;
/// Instances of the daemon that the reads are measured on.
const SMALL_FLEET: usize = 100;
/// Instances of the daemon whose footprint is measured.
const LARGE_FLEET: usize = 1000;
/// `--max-instances` of both daemons.
const MAX_INSTANCES: &str = "2000";
/// `--port-range` of both daemons; the instances ask for no port, so it
/// only keeps the daemons clear of a real daemon's default pool.
const PORT_RANGE: &str = "47100-47199";
/// Kill rounds made, unmeasured, before the measured ones.
const KILL_WARM_UP: usize = 10;
/// Measured kill rounds.
const KILL_ROUNDS: usize = 200;
/// Time between two `GetDaemonStatus` probes while the large fleet stops.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// How long the daemon with the large fleet is watched while idle.
const IDLE_WINDOW: Duration = Duration::from_secs(30);
/// `GetInstance` load levels: calls in flight.
const GET_IN_FLIGHT: [usize; 2] = [1, 16];
/// What `outpostctl` is timed with.
const CLI_ARGS: [&str; 1] = ["ls"];
/// How long the baseline may take to exit after SIGTERM.
const BASELINE_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Target: p99 of kill → FAILED event at most this.
const TARGET_KILL_P99: Duration = Duration::from_millis(5);
/// `ListInstances` views measured: the default (BASIC, the spec left
/// out), which the target is for, and FULL for comparison.
const LIST_VIEWS: [pb::InstanceView; 2] = [pb::InstanceView::Unspecified, pb::InstanceView::Full];
/// Target: sequential `ListInstances` calls per second with 100 instances,
/// in the default view.
const TARGET_LIST_RATE: f64 = 4000.0;
/// Target: wall time to create the large fleet at most this.
const TARGET_CREATE_ALL: Duration = Duration::from_secs(2);
/// Target: daemon RSS with the large fleet at most this many bytes.
const TARGET_RSS: u64 = 25 << 20;
/// Target: idle daemon CPU use with the large fleet, in % of one core.
const TARGET_IDLE_CPU: f64 = 0.1;
/// Target: median wall time of `outpostctl ls` with 100 instances.
const TARGET_CLI_MEDIAN: Duration = Duration::from_millis(5);

/// Runs the benchmark, or the baseline server when re-executed as one.
fn main() -> ExitCode {
    support::run("orchestrator", bench)
}

/// Runs the whole benchmark and prints its results.
fn bench() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let runtime = runtime()?;
    small_fleet(&runtime, dir.path())?;
    println!();
    large_fleet(&runtime, dir.path())
}

// ---------------------------------------------------------------------------
// 100 instances: exit events, reads, outpostctl ls
// ---------------------------------------------------------------------------

/// Measures exit-event latency, reads and `outpostctl ls` on a daemon with
/// [`SMALL_FLEET`] instances.
fn small_fleet(runtime: &Runtime, dir: &Path) -> Result<(), BoxError> {
    let daemon_dir = dir.join("small");
    let socket = daemon_socket(&daemon_dir);
    let baseline_socket = dir.join("baseline.sock");
    let daemon = start_fleet_daemon(
        env!("CARGO_BIN_EXE_outpostd"),
        &daemon_dir,
        MAX_INSTANCES,
        PORT_RANGE,
    )?;
    let baseline = ServerProcess::start(
        "baseline",
        baseline_command(&baseline_socket)?,
        BASELINE_STOP_TIMEOUT,
    )?;
    println!("Daemon with {SMALL_FLEET} instances of `sleep 1000`, over its Unix socket");
    runtime.block_on(small_fleet_rpc(&socket, &baseline_socket))?;
    drop(baseline);

    let times = time_cli(env!("CARGO_BIN_EXE_outpostd"), &socket, &CLI_ARGS)?;
    print_cli(&CLI_ARGS, &times, TARGET_CLI_MEDIAN);
    drop(daemon);
    Ok(())
}

/// The RPC part of [`small_fleet`]: creates the instances with a
/// `WatchStatus` stream open, then measures exit events, `ListInstances`
/// and `GetInstance`.
async fn small_fleet_rpc(socket: &Path, baseline_socket: &Path) -> Result<(), BoxError> {
    let connection = connect(socket).await?;
    let mut watch = open_watch(&connection).await?;
    let created = create_fleet(&connection, "small", SMALL_FLEET, sleeper, RUNNING).await?;
    created.print("created");

    let target = created.instances.first().ok_or("no instance created")?;
    let latencies = kill_rounds(&connection, &mut watch, target).await?;
    print_kill(&latencies);

    for view in LIST_VIEWS {
        let list = ListCall {
            client: connection.orchestrator(),
            view,
        };
        let (count, bytes) = list_size(&list).await?;
        print_list(&list, count, bytes, &measure_alone(&list).await?);
    }

    let health = connect(baseline_socket).await?.health();
    let get = GetCall {
        client: connection.orchestrator(),
        instance: target.id.clone(),
    };
    println!();
    print_header();
    for in_flight in GET_IN_FLIGHT {
        let (base, ours) = compare_at(in_flight, &health, &get).await?;
        print_load("bare tonic Health/Check", in_flight, &base);
        print_load("outpostd GetInstance", in_flight, &ours);
        print_ratio(in_flight, ours.throughput() / base.throughput());
    }
    println!();
    Ok(())
}

/// Kills the process of `target` [`KILL_WARM_UP`] + [`KILL_ROUNDS`] times,
/// starting it again after each kill; returns the measured latencies from
/// the kill until the FAILED event arrived on `watch`, ascending.
async fn kill_rounds(
    connection: &Connection,
    watch: &mut Watch,
    target: &pb::Instance,
) -> Result<Vec<Duration>, BoxError> {
    let mut orchestrator = connection.orchestrator();
    let mut pid = target.pid;
    let mut latencies = Vec::with_capacity(KILL_ROUNDS);
    for round in 0..KILL_WARM_UP + KILL_ROUNDS {
        // Every event so far has been read, so the daemon is idle.
        wait_for(watch, "RUNNING", |i| {
            is(i, &target.id, pb::InstanceState::Running)
        })
        .await?;
        let latency = kill_until_failed(watch, &target.id, pid).await?;
        if round >= KILL_WARM_UP {
            latencies.push(latency);
        }
        pid = start_again(&mut orchestrator, &target.id).await?;
    }
    latencies.sort_unstable();
    Ok(latencies)
}

/// Sends SIGKILL to `pid` (the process of instance `id`) and waits for the
/// event in which the instance becomes FAILED; returns the time between.
async fn kill_until_failed(watch: &mut Watch, id: &str, pid: u32) -> Result<Duration, BoxError> {
    // Never 0 or negative: kill(2) would signal a whole process group.
    let pid = i32::try_from(pid)
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| format!("instance {id} has no process to kill (pid {pid})"))?;
    let start = Instant::now();
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    wait_for(watch, "FAILED", |i| is(i, id, pb::InstanceState::Failed)).await?;
    Ok(start.elapsed())
}

/// Starts instance `id` again; returns the pid of its new process.
async fn start_again(
    orchestrator: &mut OrchestratorClient<AuthChannel>,
    id: &str,
) -> Result<u32, BoxError> {
    let instance = orchestrator
        .start_instance(pb::StartInstanceRequest {
            instance: id.to_owned(),
        })
        .await?
        .into_inner()
        .instance
        .ok_or("StartInstance returned no instance")?;
    expect_state(&instance, pb::InstanceState::Running)?;
    Ok(instance.pid)
}

/// `ListInstances` of every instance in one view.
#[derive(Clone)]
struct ListCall {
    client: OrchestratorClient<AuthChannel>,
    view: pb::InstanceView,
}

impl ListCall {
    fn request(&self) -> pb::ListInstancesRequest {
        pb::ListInstancesRequest {
            view: self.view.into(),
            ..Default::default()
        }
    }
}

impl UnaryCall for ListCall {
    async fn call(&mut self) -> Result<(), Status> {
        let request = self.request();
        self.client.list_instances(request).await.map(drop)
    }
}

/// How many instances one `ListInstances` returns, and its encoded size.
async fn list_size(list: &ListCall) -> Result<(usize, usize), BoxError> {
    let response = list
        .client
        .clone()
        .list_instances(list.request())
        .await?
        .into_inner();
    Ok((response.instances.len(), response.encoded_len()))
}

/// `GetInstance` of one instance.
#[derive(Clone)]
struct GetCall {
    client: OrchestratorClient<AuthChannel>,
    instance: String,
}

impl UnaryCall for GetCall {
    async fn call(&mut self) -> Result<(), Status> {
        let request = pb::GetInstanceRequest {
            instance: self.instance.clone(),
        };
        self.client.get_instance(request).await.map(drop)
    }
}

/// Measures `client` alone, one call at a time: a [`WARM_UP`], then one
/// [`WINDOW`].
async fn measure_alone<C: UnaryCall>(client: &C) -> Result<LoadStats, BoxError> {
    Samples::default().add(client, 1, WARM_UP).await?;
    let mut samples = Samples::default();
    samples.add(client, 1, WINDOW).await?;
    Ok(samples.into_stats())
}

// ---------------------------------------------------------------------------
// 1,000 instances: creation, footprint, stop
// ---------------------------------------------------------------------------

/// Measures creating, holding and stopping [`LARGE_FLEET`] instances on a
/// fresh daemon.
fn large_fleet(runtime: &Runtime, dir: &Path) -> Result<(), BoxError> {
    let daemon_dir = dir.join("large");
    let daemon = start_fleet_daemon(
        env!("CARGO_BIN_EXE_outpostd"),
        &daemon_dir,
        MAX_INSTANCES,
        PORT_RANGE,
    )?;
    println!(
        "Fresh daemon, --max-instances {MAX_INSTANCES}, {LARGE_FLEET} instances of `sleep 1000`"
    );
    runtime.block_on(large_fleet_rpc(&daemon_socket(&daemon_dir)))?;
    drop(daemon);
    Ok(())
}

/// The work of [`large_fleet`] once the daemon serves.
async fn large_fleet_rpc(socket: &Path) -> Result<(), BoxError> {
    let connection = connect(socket).await?;
    let pid = daemon_pid(&connection).await?;
    println!("daemon RSS before creating: {}", mib(rss(pid)?));
    let created = create_large(&connection, pid).await?;
    hold_idle(pid).await?;
    let ids = created.instances.into_iter().map(|instance| instance.id);
    stop_large(socket, &connection, ids.collect()).await?;
    println!(
        "daemon RSS after stopping: {}, peak since start: {}",
        mib(rss(pid)?),
        mib(peak_rss(pid)?)
    );
    Ok(())
}

/// Creates the large fleet on the daemon `pid`; prints the time it took,
/// how many instances run and the daemon's RSS.
async fn create_large(connection: &Connection, pid: u32) -> Result<Calls, BoxError> {
    let created = create_fleet(connection, "large", LARGE_FLEET, sleeper, RUNNING).await?;
    created.print("created");
    let target = format!("<= {:.0} s", TARGET_CREATE_ALL.as_secs_f64());
    print_target(
        "time to create all",
        created.wall <= TARGET_CREATE_ALL,
        &target,
    );
    let running = count_running(connection).await?;
    println!("RUNNING according to ListInstances: {running}");
    let resident = rss(pid)?;
    println!("daemon RSS with {LARGE_FLEET} instances: {}", mib(resident));
    let target = format!("<= {}", mib(TARGET_RSS));
    print_target("RSS", resident <= TARGET_RSS, &target);
    Ok(created)
}

/// Leaves the daemon `pid` idle for [`IDLE_WINDOW`]; prints its CPU use.
async fn hold_idle(pid: u32) -> Result<(), BoxError> {
    let cpu = cpu_use(pid, IDLE_WINDOW).await?;
    let window = IDLE_WINDOW.as_secs();
    cpu.print(&format!("daemon CPU over {window} s idle"));
    let target = format!("<= {TARGET_IDLE_CPU} %");
    print_target("idle CPU", cpu.percent <= TARGET_IDLE_CPU, &target);
    println!("daemon RSS after the idle window: {}", mib(rss(pid)?));
    Ok(())
}

/// Stops the instances `ids` while probing, over a connection of its own
/// (so that the probe never waits behind the stop calls for a stream), how
/// long the daemon takes to answer `GetDaemonStatus` meanwhile.
async fn stop_large(
    socket: &Path,
    connection: &Connection,
    ids: Vec<String>,
) -> Result<(), BoxError> {
    let finished = Arc::new(AtomicBool::new(false));
    let probe_connection = connect(socket).await?;
    let probe = tokio::spawn(probe_status(probe_connection, Arc::clone(&finished)));
    let stopped = stop_all(connection, ids).await;
    finished.store(true, Ordering::Relaxed);
    stopped?.print("stopped");
    let (slowest, probes) = probe.await??;
    println!(
        "  while stopping: slowest GetDaemonStatus {:.1} ms ({probes} calls, one every {} ms)",
        millis(slowest),
        PROBE_EVERY.as_millis()
    );
    Ok(())
}

/// The daemon's process id, as it reports it.
async fn daemon_pid(connection: &Connection) -> Result<u32, BoxError> {
    let status = connection
        .orchestrator()
        .get_daemon_status(pb::GetDaemonStatusRequest {})
        .await?
        .into_inner();
    Ok(status.pid)
}

/// How many instances `ListInstances` reports RUNNING.
async fn count_running(connection: &Connection) -> Result<usize, BoxError> {
    let request = pb::ListInstancesRequest {
        states: vec![pb::InstanceState::Running as i32],
        ..Default::default()
    };
    let response = connection.orchestrator().list_instances(request).await?;
    Ok(response.into_inner().instances.len())
}

/// Stops every instance of `ids`, all calls issued at once.
async fn stop_all(connection: &Connection, ids: Vec<String>) -> Result<Calls, BoxError> {
    let ids = Arc::new(ids);
    let in_flight = ids.len();
    let orchestrator = connection.orchestrator();
    run_calls(ids.len(), in_flight, move |index| {
        let mut orchestrator = orchestrator.clone();
        let ids = Arc::clone(&ids);
        async move {
            let request = pb::StopInstanceRequest {
                instance: ids[index].clone(),
                ..Default::default()
            };
            let instance = orchestrator.stop_instance(request).await?.into_inner();
            let instance = instance
                .instance
                .ok_or("StopInstance returned no instance")?;
            expect_state(&instance, pb::InstanceState::Stopped)?;
            Ok(instance)
        }
    })
    .await
}

/// Calls `GetDaemonStatus` one after another, [`PROBE_EVERY`] apart, until
/// `finished` is set; returns the slowest call's latency and the number of
/// calls.
async fn probe_status(
    connection: Connection,
    finished: Arc<AtomicBool>,
) -> Result<(Duration, usize), BoxError> {
    let mut orchestrator = connection.orchestrator();
    let (mut slowest, mut calls) = (Duration::ZERO, 0);
    while !finished.load(Ordering::Relaxed) {
        let sent = Instant::now();
        orchestrator
            .get_daemon_status(pb::GetDaemonStatusRequest {})
            .await?;
        slowest = slowest.max(sent.elapsed());
        calls += 1;
        tokio::time::sleep(PROBE_EVERY).await;
    }
    Ok((slowest, calls))
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// Prints the kill → FAILED event latencies (`latencies` ascending).
fn print_kill(latencies: &[Duration]) {
    let p99 = percentile(latencies, 0.99);
    let target = format!("<= {:.0} ms", millis(TARGET_KILL_P99));
    println!(
        "kill -KILL -> FAILED event on WatchStatus, {} rounds: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        latencies.len(),
        micros(percentile(latencies, 0.50)),
        micros(p99),
        micros(latencies.last().copied().unwrap_or_default()),
    );
    print_target("p99", p99 <= TARGET_KILL_P99, &target);
}

/// Prints the sequential `ListInstances` rate; the target applies to the
/// default view.
fn print_list(list: &ListCall, count: usize, bytes: usize, stats: &LoadStats) {
    println!(
        "ListInstances, view {}, of {count} instances ({:.1} KiB each), 1 in flight: {:.0} calls/s, p50 {:.0} µs, p99 {:.0} µs",
        match list.view {
            pb::InstanceView::Unspecified => "default (BASIC)",
            view => view.as_str_name(),
        },
        bytes as f64 / 1024.0,
        stats.throughput(),
        micros(stats.p50),
        micros(stats.p99),
    );
    if list.view == pb::InstanceView::Unspecified {
        let met = stats.throughput() >= TARGET_LIST_RATE;
        print_target("calls/s", met, &format!(">= {TARGET_LIST_RATE:.0}/s"));
    }
}

/// Prints whether the target on `what` (`target` in words) is met.
fn print_target(what: &str, met: bool, target: &str) {
    println!("  {what} target {target}: {}", verdict(met));
}
