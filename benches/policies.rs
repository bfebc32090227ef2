//! Policies benchmark: how fast `outpostd` restarts a killed process, and
//! what health checks of 1,000 instances cost it.
//!
//! Run with `cargo bench --bench policies`. It starts a release `outpostd`
//! on a Unix socket in a temporary directory and prints:
//!
//! * the latency from `kill -KILL` of an instance's process until the
//!   `WatchStatus` event that shows the instance RUNNING again with a new
//!   process, for an instance restarted on failure with an initial delay
//!   of 0;
//! * the daemon's CPU use over 30 s with 1,000 instances of `sleep 1000`,
//!   each with a TCP health check every 5 s. All checks connect to one
//!   listener in this process, which accepts and closes every connection:
//!   the daemon's work per check (a connect, a result, a timer) is the same
//!   as with a listener per instance, without 1,000 server processes.
//!
//! The daemon's CPU use with the same fleet and no checks is the idle CPU of
//! `cargo bench --bench orchestrator`. Each target is printed as met or not;
//! nothing here asserts on timing.

use outpost_bench_support as support;

use std::{
    net::TcpListener,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use outpost::{endpoint::Connection, proto::v1 as pb};

use support::{
    BoxError, connect,
    fleet::{create_fleet, expect_state},
    kernel::{cpu_use, mib, rss},
    report::{micros, millis, percentile, verdict},
    runtime,
    server::{daemon_socket, start_fleet_daemon},
    watch::{Watch, is, open_watch, wait_for},
};

/// Instances with a health check.
const CHECKED_FLEET: usize = 1000;
/// Names of the checked instances start with this.
const CHECKED_PREFIX: &str = "checked";
/// Time between two checks of one instance.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long the checked fleet runs before its CPU use is measured (every
/// instance has passed its first check by then).
const SETTLE: Duration = Duration::from_secs(5);
/// How long the checked fleet may take to become RUNNING.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the checked fleet is looked at until it is RUNNING.
const READY_POLL: Duration = Duration::from_millis(100);
/// How long the daemon's CPU use is measured.
const CPU_WINDOW: Duration = Duration::from_secs(30);
/// Kill rounds made, unmeasured, before the measured ones.
const KILL_WARM_UP: usize = 10;
/// Measured kill rounds.
const KILL_ROUNDS: usize = 100;
/// `--max-instances` of the daemon.
const MAX_INSTANCES: &str = "2000";
/// `--port-range` of the daemon (no instance asks for a port).
const PORT_RANGE: &str = "47200-47299";
/// Target: p50 of kill → RUNNING again at most this.
const TARGET_RESTART_P50: Duration = Duration::from_millis(3);
/// Target: p90 of kill → RUNNING again at most this.
const TARGET_RESTART_P90: Duration = Duration::from_millis(5);
/// Target: daemon CPU with the checked fleet, in % of one core.
const TARGET_CHECKED_CPU: f64 = 2.0;

/// Runs the benchmark, or the baseline server when re-executed as one.
fn main() -> ExitCode {
    support::run("policies", bench)
}

/// Runs the whole benchmark and prints its results.
fn bench() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let daemon = start_fleet_daemon(
        env!("CARGO_BIN_EXE_outpostd"),
        dir.path(),
        MAX_INSTANCES,
        PORT_RANGE,
    )?;
    runtime()?.block_on(async {
        let connection = connect(&daemon_socket(dir.path())).await?;
        restarts(&connection).await?;
        println!();
        checked_fleet(&connection).await
    })?;
    drop(daemon);
    Ok(())
}

// ---------------------------------------------------------------------------
// kill → restarted
// ---------------------------------------------------------------------------

/// A `sleep 1000` restarted on failure at once, with a breaker that never
/// opens within the benchmark.
fn phoenix() -> pb::InstanceSpec {
    pb::InstanceSpec {
        name: "phoenix".to_owned(),
        command: "sleep".to_owned(),
        args: vec!["1000".to_owned()],
        restart: Some(pb::RestartPolicy {
            mode: pb::RestartMode::OnFailure.into(),
            initial_delay: Some(Duration::ZERO.into()),
            max_delay: Some(Duration::ZERO.into()),
            max_restarts: Some(1_000_000),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Measures kill → RUNNING again over [`KILL_ROUNDS`] kills and prints it.
async fn restarts(connection: &Connection) -> Result<(), BoxError> {
    let mut watch = open_watch(connection).await?;
    let created = connection
        .orchestrator()
        .create_instance(pb::CreateInstanceRequest {
            spec: Some(phoenix()),
            start: Some(true),
        })
        .await?
        .into_inner()
        .instance
        .ok_or("CreateInstance returned no instance")?;
    expect_state(&created, pb::InstanceState::Running)?;
    let id = created.id;
    let mut pid = created.pid;
    // Every event up to the creation has been read once RUNNING shows.
    wait_for(&mut watch, "phoenix RUNNING", |i| {
        is(i, &id, pb::InstanceState::Running)
    })
    .await?;
    let mut latencies = Vec::with_capacity(KILL_ROUNDS);
    for round in 0..KILL_WARM_UP + KILL_ROUNDS {
        let (latency, new_pid) = kill_until_restarted(&mut watch, &id, pid).await?;
        if round >= KILL_WARM_UP {
            latencies.push(latency);
        }
        pid = new_pid;
    }
    latencies.sort_unstable();
    print_restarts(&latencies);
    Ok(())
}

/// Sends SIGKILL to `pid` (the process of instance `id`) and waits for the
/// event in which the instance runs again with another process; returns
/// the time between and the new pid.
async fn kill_until_restarted(
    watch: &mut Watch,
    id: &str,
    pid: u32,
) -> Result<(Duration, u32), BoxError> {
    // Never 0 or negative: kill(2) would signal a whole process group.
    let target = i32::try_from(pid)
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| format!("instance {id} has no process to kill (pid {pid})"))?;
    let start = Instant::now();
    kill(Pid::from_raw(target), Signal::SIGKILL)?;
    let restarted = wait_for(watch, "phoenix RUNNING again", |i| {
        is(i, id, pb::InstanceState::Running) && i.pid != pid
    })
    .await?;
    Ok((start.elapsed(), restarted.pid))
}

/// Prints the kill → RUNNING latencies (`latencies` ascending).
fn print_restarts(latencies: &[Duration]) {
    let (p50, p90) = (percentile(latencies, 0.50), percentile(latencies, 0.90));
    println!(
        "kill -KILL -> RUNNING again (restart on failure, initial delay 0), {} rounds: \
         p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        latencies.len(),
        micros(p50),
        micros(p90),
        micros(percentile(latencies, 0.99)),
        micros(latencies.last().copied().unwrap_or_default()),
    );
    let target = |what: &str, value: Duration, target: Duration| {
        let met = verdict(value <= target);
        println!("  {what} target <= {:.0} ms: {met}", millis(target));
    };
    target("p50", p50, TARGET_RESTART_P50);
    target("p90", p90, TARGET_RESTART_P90);
}

// ---------------------------------------------------------------------------
// 1,000 instances with TCP checks
// ---------------------------------------------------------------------------

/// A TCP listener on 127.0.0.1 that accepts and closes every connection
/// in a thread of its own, counting them.
struct CheckTarget {
    port: u16,
    accepted: Arc<AtomicU64>,
}

impl CheckTarget {
    fn start() -> Result<Self, BoxError> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        // The thread ends with the process.
        thread::spawn(move || {
            for connection in listener.incoming() {
                drop(connection);
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(Self { port, accepted })
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// The port every checked instance's probe connects to; set once, before
/// the fleet is created.
static CHECK_PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

/// A `sleep 1000` with a TCP check of the [`CheckTarget`] every
/// [`CHECK_INTERVAL`].
fn checked_sleeper(name: &str) -> pb::InstanceSpec {
    pb::InstanceSpec {
        name: name.to_owned(),
        command: "sleep".to_owned(),
        args: vec!["1000".to_owned()],
        health: Some(pb::HealthCheck {
            probe: Some(pb::health_check::Probe::Tcp(pb::TcpProbe {
                host: "127.0.0.1".to_owned(),
                port: CHECK_PORT.get().copied().map_or(0, u32::from),
            })),
            interval: Some(CHECK_INTERVAL.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Waits until every instance of the checked fleet is RUNNING; returns how
/// long that took.
async fn all_running(connection: &Connection) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let request = pb::ListInstancesRequest {
        states: vec![pb::InstanceState::Running.into()],
        ..Default::default()
    };
    loop {
        let running = connection
            .orchestrator()
            .list_instances(request.clone())
            .await?
            .into_inner()
            .instances
            .iter()
            .filter(|instance| instance.name.starts_with(CHECKED_PREFIX))
            .count();
        if running == CHECKED_FLEET {
            return Ok(start.elapsed());
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(
                format!("{running} of {CHECKED_FLEET} RUNNING after {READY_TIMEOUT:?}").into(),
            );
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Creates [`CHECKED_FLEET`] checked instances, lets them settle, and
/// prints the daemon's CPU use over [`CPU_WINDOW`].
async fn checked_fleet(connection: &Connection) -> Result<(), BoxError> {
    let target = CheckTarget::start()?;
    CHECK_PORT
        .set(target.port)
        .map_err(|_| "the check port is already set")?;
    let pid = connection
        .orchestrator()
        .get_daemon_status(pb::GetDaemonStatusRequest {})
        .await?
        .into_inner()
        .pid;
    println!(
        "{CHECKED_FLEET} instances of `sleep 1000`, each with a TCP check every {} s \
         (all on one listener at 127.0.0.1:{})",
        CHECK_INTERVAL.as_secs(),
        target.port
    );
    let starting = pb::InstanceState::Starting;
    let created = create_fleet(
        connection,
        "checked",
        CHECKED_FLEET,
        checked_sleeper,
        starting,
    );
    created.await?.print("created");
    let ready = all_running(connection).await?;
    println!(
        "  all RUNNING (first check passed) {:.3} s later",
        ready.as_secs_f64()
    );
    tokio::time::sleep(SETTLE).await;
    let before = target.accepted();
    let cpu = cpu_use(pid, CPU_WINDOW).await?;
    let checks = target.accepted() - before;
    cpu.print(&format!("daemon CPU over {} s", CPU_WINDOW.as_secs()));
    println!(
        "  checks answered meanwhile: {checks} ({:.0}/s; expected {:.0}/s)",
        checks as f64 / CPU_WINDOW.as_secs_f64(),
        CHECKED_FLEET as f64 / CHECK_INTERVAL.as_secs_f64()
    );
    println!(
        "  CPU target <= {TARGET_CHECKED_CPU} %: {}",
        verdict(cpu.percent <= TARGET_CHECKED_CPU)
    );
    println!("daemon RSS with the checked fleet: {}", mib(rss(pid)?));
    Ok(())
}
