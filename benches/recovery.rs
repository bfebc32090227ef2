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
//!   call returns, from a client on one thread (as `outpostctl`); then the same after 1,000 more instances were stored.
//!   Both also without a process (`start: false`; the stop is then a
//!   no-op), which leaves the store's part alone.
//!
//! Each target is printed as met or not; nothing here asserts on timing.

use outpost_bench_support as support;

use std::{
    collections::HashMap,
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use outpost::{endpoint::Connection, proto::v1 as pb};

use support::{
    BoxError, connect,
    fleet::{create_fleet, expect_state, sleeper},
    kernel::{mib, rss},
    report::{millis, percentile, verdict},
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
    sequential.block_on(write_cost(&daemon_socket(&daemon_dir)))?;
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

/// Measures create + stop pairs on a fresh daemon, then again with
/// [`STORED`] more instances stored.
async fn write_cost(socket: &Path) -> Result<(), BoxError> {
    let connection = connect(socket).await?;
    println!("Sequential CreateInstance + StopInstance pairs, {PAIRS} per row");
    pairs(&connection, "warm-up", PAIR_WARM_UP, true).await?;
    let fresh = pairs(&connection, "fresh", PAIRS, true).await?;
    print_pairs_target(fresh);
    pairs(&connection, "fresh-stored", PAIRS, false).await?;
    let stopped = pb::InstanceState::Stopped;
    let stored = create_fleet(&connection, "stored", STORED, sleeper, stopped).await?;
    stored.print("stored (created with start: false)");
    let grown = pairs(&connection, "grown", PAIRS, true).await?;
    print_pairs_target(grown);
    pairs(&connection, "grown-stored", PAIRS, false).await?;
    println!(
        "  with {STORED} more stored / fresh, started pairs: {:.2}",
        grown / fresh
    );
    Ok(())
}

/// Makes `count` create + stop pairs one after another, the instance
/// started (`start`) or only stored; prints and returns the pairs per
/// second. Every instance is named `PREFIX-NNNN` and stays stored, stopped.
async fn pairs(
    connection: &Connection,
    prefix: &str,
    count: usize,
    start: bool,
) -> Result<f64, BoxError> {
    let mut orchestrator = connection.orchestrator();
    let (created, stopped) = if start {
        (pb::InstanceState::Running, pb::InstanceState::Stopped)
    } else {
        (pb::InstanceState::Stopped, pb::InstanceState::Stopped)
    };
    let mut latencies = Vec::with_capacity(count);
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
    let rate = count as f64 / begin.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let kind = if start { "started" } else { "stored only" };
    println!(
        "  {prefix:<13} {kind:<12} {rate:>6.0} pairs/s (per pair p50 {:.2} ms, p99 {:.2} ms)",
        millis(percentile(&latencies, 0.50)),
        millis(percentile(&latencies, 0.99)),
    );
    Ok(rate)
}

/// Prints whether `rate` (started pairs per second) meets the target.
fn print_pairs_target(rate: f64) {
    println!(
        "    target >= {TARGET_PAIRS:.0} pairs/s: {}",
        verdict(rate >= TARGET_PAIRS)
    );
}
