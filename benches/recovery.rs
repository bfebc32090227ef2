//! Recovery benchmark: how long `outpostd` takes to start when it has 1,000
//! running instances to re-adopt, and what the store costs per change.
//!
//! Run with `cargo bench --bench recovery`. It starts release `outpostd`
//! processes on Unix sockets in a temporary directory and prints:
//!
//! * **re-adoption**: a daemon creates 1,000 instances of `sleep 1000` and
//!   is killed with SIGKILL (the instances keep running); a new daemon on
//!   the same data directory is started and timed until it logs that it
//!   serves (it re-adopts before it binds its socket), and until its first
//!   `GetDaemonStatus` answers. Then `ListInstances` must show all 1,000
//!   RUNNING with the pids they had;
//! * **write cost**: sequential `CreateInstance` (started) + `StopInstance`
//!   pairs per second on a fresh daemon, every change stored before each
//!   call returns, from a client on one thread (as `outpostctl`); then
//!   the same after 1,000 more instances were stored. Both also without a
//!   process (`start: false`; the stop is then a no-op), which leaves the
//!   store's part alone. Each row also prints the CPU time one pair cost
//!   the daemon, the processes it started (reaped, so counted as its
//!   children's) and the client, from `/proc/PID/stat`;
//! * **what a started pair is made of**: the bare process cycle the daemon
//!   performs in a pair (spawn `sleep 1000` in its own group with two log
//!   files, SIGTERM the group, wait), timed alone in this process, and
//!   with the stored-only pair the least a started pair can take here.
//!
//! Each target is printed as met or not; nothing here asserts on timing.

use outpost_bench_support as support;

use std::{
    collections::HashMap,
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

use outpost::{endpoint::Connection, proto::v1 as pb};

use support::{
    BoxError, connect,
    fleet::{create_fleet, expect_state, sleeper},
    kernel::{CpuTimes, mib, rss},
    report::{cores, millis, percentile, verdict},
    runtime,
    server::{daemon_socket, start_fleet_daemon},
};

/// Instances the re-adopting daemon finds running.
const FLEET: usize = 1000;
/// Instances stored before the second write-cost measurement.
const STORED: usize = 1000;
/// Measured create + stop pairs per measurement.
const PAIRS: usize = 1000;
/// Unmeasured pairs before the first measurement.
const PAIR_WARM_UP: usize = 50;
/// `--max-instances` of every daemon.
const MAX_INSTANCES: &str = "10000";
/// `--port-range` of every daemon (no instance asks for a port).
const PORT_RANGE: &str = "47300-47399";
/// Target: from starting the daemon until it serves, with [`FLEET`]
/// instances to re-adopt.
const TARGET_START: Duration = Duration::from_secs(1);
/// Target: create + stop pairs per second.
const TARGET_PAIRS: f64 = 1000.0;

/// Runs the benchmark, or the baseline server when re-executed as one.
fn main() -> ExitCode {
    support::run("recovery", bench)
}

/// Runs the whole benchmark and prints its results.
fn bench() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let runtime = runtime()?;
    readoption(&runtime, &dir.path().join("adopt"))?;
    println!();
    let daemon_dir = dir.path().join("writes");
    let daemon = start_fleet_daemon(
        env!("CARGO_BIN_EXE_outpostd"),
        &daemon_dir,
        MAX_INSTANCES,
        PORT_RANGE,
    )?;
    // One call at a time needs one thread, as in outpostctl: a client with
    // worker threads of its own would compete with the daemon for the cores.
    let sequential = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    sequential.block_on(write_cost(
        &daemon_socket(&daemon_dir),
        daemon.pid(),
        &dir.path().join("cycles"),
    ))?;
    drop(daemon);
    Ok(())
}

// ---------------------------------------------------------------------------
// Re-adoption
// ---------------------------------------------------------------------------

/// Creates the fleet, crashes its daemon and times a new one.
fn readoption(runtime: &tokio::runtime::Runtime, dir: &Path) -> Result<(), BoxError> {
    let socket = daemon_socket(dir);
    let mut first = start_fleet_daemon(
        env!("CARGO_BIN_EXE_outpostd"),
        dir,
        MAX_INSTANCES,
        PORT_RANGE,
    )?;
    let pids = runtime.block_on(async {
        let connection = connect(&socket).await?;
        let running = pb::InstanceState::Running;
        let created = create_fleet(&connection, "adopt", FLEET, sleeper, running).await?;
        created.print("created");
        let pids: HashMap<String, u32> = created
            .instances
            .into_iter()
            .map(|instance| (instance.id, instance.pid))
            .collect();
        Ok::<_, BoxError>(pids)
    })?;
    first.crash()?;
    println!("daemon killed with SIGKILL; its {FLEET} instances keep running");

    let start = Instant::now();
    let second = start_fleet_daemon(
        env!("CARGO_BIN_EXE_outpostd"),
        dir,
        MAX_INSTANCES,
        PORT_RANGE,
    )?;
    let serving = start.elapsed();
    runtime.block_on(async {
        let connection = connect(&socket).await?;
        connection
            .orchestrator()
            .get_daemon_status(pb::GetDaemonStatusRequest {})
            .await?;
        let answered = start.elapsed();
        println!(
            "new daemon: serving after {:.0} ms, first GetDaemonStatus answered after {:.0} ms",
            millis(serving),
            millis(answered)
        );
        let target = format!("<= {:.0} ms", millis(TARGET_START));
        println!(
            "  time until serving target {target}: {}",
            verdict(serving <= TARGET_START)
        );
        count_adopted(&connection, &pids).await?;
        println!("daemon RSS after re-adopting: {}", mib(rss(second.pid())?));
        Ok::<_, BoxError>(())
    })?;
    // Dropping the daemon stops every instance.
    drop(second);
    Ok(())
}

/// Prints how many instances run with the pid they had before the crash;
/// an error unless all of them do.
async fn count_adopted(
    connection: &Connection,
    pids: &HashMap<String, u32>,
) -> Result<(), BoxError> {
    let instances = connection
        .orchestrator()
        .list_instances(pb::ListInstancesRequest::default())
        .await?
        .into_inner()
        .instances;
    let adopted = instances
        .iter()
        .filter(|instance| {
            instance.state == pb::InstanceState::Running as i32
                && pids.get(&instance.id) == Some(&instance.pid)
        })
        .count();
    println!("RUNNING with the pid they had before the crash: {adopted} of {FLEET}");
    if adopted == FLEET {
        Ok(())
    } else {
        Err(format!("only {adopted} of {FLEET} instances were re-adopted").into())
    }
}

// ---------------------------------------------------------------------------
// Write cost
// ---------------------------------------------------------------------------

/// Measures create + stop pairs on a fresh daemon (process `daemon`),
/// then again with [`STORED`] more instances stored; then what the
/// started pairs are made of, measured alone.
async fn write_cost(socket: &Path, daemon: u32, cycle_dir: &Path) -> Result<(), BoxError> {
    let connection = connect(socket).await?;
    println!("Sequential CreateInstance + StopInstance pairs, {PAIRS} per row");
    pairs(&connection, daemon, "warm-up", PAIR_WARM_UP, true).await?;
    let fresh = pairs(&connection, daemon, "fresh", PAIRS, true).await?;
    print_pairs_target(fresh.rate);
    let fresh_stored = pairs(&connection, daemon, "fresh-stored", PAIRS, false).await?;
    let stopped = pb::InstanceState::Stopped;
    let stored = create_fleet(&connection, "stored", STORED, sleeper, stopped).await?;
    stored.print("stored (created with start: false)");
    let grown = pairs(&connection, daemon, "grown", PAIRS, true).await?;
    print_pairs_target(grown.rate);
    pairs(&connection, daemon, "grown-stored", PAIRS, false).await?;
    println!(
        "  with {STORED} more stored / fresh, started pairs: {:.2}",
        grown.rate / fresh.rate
    );
    println!();
    let cycle = process_cycles(cycle_dir)?;
    let floor = fresh_stored.p50 + cycle;
    println!(
        "a started pair holds a stored-only pair and a bare process cycle: \
         p50 {:.2} + {:.2} = {:.2} ms, so at most {:.0} pairs/s on this machine \
         (a started pair took {:.2} ms)",
        millis(fresh_stored.p50),
        millis(cycle),
        millis(floor),
        1.0 / floor.as_secs_f64(),
        millis(fresh.p50),
    );
    Ok(())
}

/// What one row of pairs measured.
struct Pairs {
    /// Pairs per second.
    rate: f64,
    /// Median time of one pair.
    p50: Duration,
}

/// Makes `count` create + stop pairs one after another, the instance
/// started (`start`) or only stored; prints the pairs per second, their
/// latency and the CPU time one pair cost the daemon (`daemon`), the
/// processes it started, and this client. Every instance is named
/// `PREFIX-NNNN` and stays stored, stopped.
async fn pairs(
    connection: &Connection,
    daemon: u32,
    prefix: &str,
    count: usize,
    start: bool,
) -> Result<Pairs, BoxError> {
    let mut orchestrator = connection.orchestrator();
    let (created, stopped) = if start {
        (pb::InstanceState::Running, pb::InstanceState::Stopped)
    } else {
        (pb::InstanceState::Stopped, pb::InstanceState::Stopped)
    };
    let mut latencies = Vec::with_capacity(count);
    let daemon_before = CpuTimes::of(daemon)?;
    let client_before = CpuTimes::of(std::process::id())?;
    let begin = Instant::now();
    for index in 0..count {
        let sent = Instant::now();
        let instance = orchestrator
            .create_instance(pb::CreateInstanceRequest {
                spec: Some(sleeper(&format!("{prefix}-{index:04}"))),
                start: Some(start),
            })
            .await?
            .into_inner()
            .instance
            .ok_or("CreateInstance returned no instance")?;
        expect_state(&instance, created)?;
        let instance = orchestrator
            .stop_instance(pb::StopInstanceRequest {
                instance: instance.id,
                ..Default::default()
            })
            .await?
            .into_inner()
            .instance
            .ok_or("StopInstance returned no instance")?;
        expect_state(&instance, stopped)?;
        latencies.push(sent.elapsed());
    }
    let elapsed = begin.elapsed();
    let daemon_cpu = CpuTimes::of(daemon)?.since(daemon_before);
    let client_cpu = CpuTimes::of(std::process::id())?.since(client_before);
    let rate = count as f64 / elapsed.as_secs_f64();
    latencies.sort_unstable();
    let p50 = percentile(&latencies, 0.50);
    let kind = if start { "started" } else { "stored only" };
    println!(
        "  {prefix:<13} {kind:<12} {rate:>6.0} pairs/s (per pair p50 {:.2} ms, p99 {:.2} ms)",
        millis(p50),
        millis(percentile(&latencies, 0.99)),
    );
    let per_pair = |time: Duration| millis(time) / count as f64;
    let total = daemon_cpu.own + daemon_cpu.children + client_cpu.own;
    println!(
        "  {:<26} CPU per pair: daemon {:.2} ms, its instances {:.2} ms, client {:.2} ms \
         ({:.1} of the {} cores busy)",
        "",
        per_pair(daemon_cpu.own),
        per_pair(daemon_cpu.children),
        per_pair(client_cpu.own),
        total.as_secs_f64() / elapsed.as_secs_f64(),
        cores(),
    );
    Ok(Pairs { rate, p50 })
}

/// The process work of a started pair with nothing around it, as the
/// daemon does it: spawns [`sleeper`]'s `sleep 1000` in a group of its own
/// with its output appended to two log files, sends SIGTERM to the group
/// and waits for the exit, [`PAIRS`] times. Prints the cycles per second
/// and returns the median cycle.
fn process_cycles(dir: &Path) -> Result<Duration, BoxError> {
    std::fs::create_dir_all(dir)?;
    let log = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
    };
    let mut cycles = Vec::with_capacity(PAIRS);
    let before = CpuTimes::of(std::process::id())?;
    let begin = Instant::now();
    for _ in 0..PAIRS {
        let start = Instant::now();
        let mut child = Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log("stdout.log")?)
            .stderr(log("stderr.log")?)
            .spawn()?;
        let group = Pid::from_raw(i32::try_from(child.id())?);
        killpg(group, Signal::SIGTERM)?;
        child.wait()?;
        cycles.push(start.elapsed());
    }
    let elapsed = begin.elapsed();
    let cpu = CpuTimes::of(std::process::id())?.since(before);
    cycles.sort_unstable();
    let p50 = percentile(&cycles, 0.50);
    println!(
        "bare process cycle (spawn sleep in its own group with two log files, SIGTERM \
         the group, wait): {:.0}/s, p50 {:.2} ms, CPU per cycle {:.2} ms with the process's own",
        PAIRS as f64 / elapsed.as_secs_f64(),
        millis(p50),
        millis(cpu.own + cpu.children) / PAIRS as f64,
    );
    Ok(p50)
}

/// Prints whether `rate` (started pairs per second) meets the target.
fn print_pairs_target(rate: f64) {
    println!(
        "    target >= {TARGET_PAIRS:.0} pairs/s: {}",
        verdict(rate >= TARGET_PAIRS)
    );
}
