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
//!   pairs per second, every change stored before each call returns, from
//!   a client on one thread (as `outpostctl`), on two daemons: one that
//!   starts empty and one with 1,000 instances stored first. The two take
//!   turns in slices of 100 pairs, so that both rows see the machine at
//!   the same minutes and their ratio means something on a VM whose speed
//!   moves by several times within a quarter of an hour. Then both again
//!   without a process (`start: false`; the stop is then a no-op), which
//!   leaves the store's part alone. Each row also prints the CPU time one
//!   pair cost the daemon, the processes it started (reaped, so counted as
//!   its children's) and the client, from `/proc/PID/stat`; how often the
//!   daemon's threads were put on a CPU per pair (their scheduler
//!   statistics: on this VM every hop between threads costs a wake-up of
//!   tens of microseconds); and how much of the cores the hypervisor took
//!   meanwhile (steal time);
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
    kernel::{CpuTimes, mib, rss, stolen, times_scheduled},
    report::{cores, millis, percentile, verdict},
    runtime,
    server::{daemon_socket, start_fleet_daemon},
};

/// Instances the re-adopting daemon finds running.
const FLEET: usize = 1000;
/// Instances the grown daemon has stored before its pairs.
const STORED: usize = 1000;
/// Measured create + stop pairs per row.
const PAIRS: usize = 1000;
/// Slices each row is measured in, taking turns between the daemons.
const SLICES: usize = 10;
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
    let start = |name: &str| {
        let daemon_dir = dir.path().join(name);
        start_fleet_daemon(
            env!("CARGO_BIN_EXE_outpostd"),
            &daemon_dir,
            MAX_INSTANCES,
            PORT_RANGE,
        )
        .map(|daemon| (daemon_dir, daemon))
    };
    let (fresh_dir, fresh) = start("fresh")?;
    let (grown_dir, grown) = start("grown")?;
    // One call at a time needs one thread, as in outpostctl: a client with
    // worker threads of its own would compete with the daemon for the cores.
    let sequential = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    sequential.block_on(async {
        let daemons = [
            Daemon {
                name: "fresh",
                connection: connect(&daemon_socket(&fresh_dir)).await?,
                pid: fresh.pid(),
            },
            Daemon {
                name: "grown",
                connection: connect(&daemon_socket(&grown_dir)).await?,
                pid: grown.pid(),
            },
        ];
        write_cost(&daemons, &dir.path().join("cycles")).await
    })?;
    drop((fresh, grown));
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

/// A daemon the pairs are made on.
struct Daemon {
    /// `fresh` or `grown`, for the printed rows.
    name: &'static str,
    connection: Connection,
    pid: u32,
}

/// Measures create + stop pairs on two daemons, one that starts empty
/// (`fresh`) and one with [`STORED`] instances stored first (`grown`), in
/// [`SLICES`] slices taking turns, so that both see the machine as it is
/// at the same minutes (a shared VM changes speed by several times within
/// a quarter of an hour); then what the started pairs are made of,
/// measured alone.
async fn write_cost(daemons: &[Daemon; 2], cycle_dir: &Path) -> Result<(), BoxError> {
    let [fresh, grown] = daemons;
    let stopped = pb::InstanceState::Stopped;
    let stored = create_fleet(&grown.connection, "stored", STORED, sleeper, stopped).await?;
    stored.print(&format!(
        "{} daemon: stored (created with start: false)",
        grown.name
    ));
    println!(
        "Sequential CreateInstance + StopInstance pairs, {PAIRS} per row, in {SLICES} slices \
         taking turns between the {} daemon and the {} one ({STORED} more stored)",
        fresh.name, grown.name
    );
    for daemon in daemons {
        let mut warm_up = Row::default();
        slice(daemon, "warm-up", 0..PAIR_WARM_UP, true, &mut warm_up).await?;
    }
    let started = compare(daemons, "started", true).await?;
    let stored_only = compare(daemons, "stored only", false).await?;
    println!();
    let cycle = process_cycles(cycle_dir)?;
    let floor = stored_only + cycle;
    println!(
        "a started pair holds a stored-only pair and a bare process cycle: \
         p50 {:.2} + {:.2} = {:.2} ms, so at most {:.0} pairs/s on this machine \
         (a started pair took {:.2} ms)",
        millis(stored_only),
        millis(cycle),
        millis(floor),
        1.0 / floor.as_secs_f64(),
        millis(started),
    );
    Ok(())
}

/// Measures one row of pairs (started, or only stored) on each daemon,
/// taking turns slice by slice, and prints both rows and their ratio;
/// returns the first daemon's median pair.
async fn compare(daemons: &[Daemon; 2], kind: &str, start: bool) -> Result<Duration, BoxError> {
    let prefix = if start { "pair-started" } else { "pair-stored" };
    let mut rows = [Row::default(), Row::default()];
    let per_slice = PAIRS / SLICES;
    for number in 0..SLICES {
        let names = number * per_slice..(number + 1) * per_slice;
        for (daemon, row) in daemons.iter().zip(&mut rows) {
            slice(daemon, prefix, names.clone(), start, row).await?;
        }
    }
    for (daemon, row) in daemons.iter().zip(&mut rows) {
        row.print(daemon.name, kind);
        if start {
            println!(
                "    target >= {TARGET_PAIRS:.0} pairs/s: {}",
                verdict(row.rate() >= TARGET_PAIRS)
            );
        }
    }
    println!(
        "  {kind} pairs with {STORED} more stored / fresh: {:.2}",
        rows[1].rate() / rows[0].rate()
    );
    Ok(rows[0].p50())
}

/// What one row of pairs measured, summed over its slices.
#[derive(Default)]
struct Row {
    latencies: Vec<Duration>,
    elapsed: Duration,
    daemon_cpu: Duration,
    instances_cpu: Duration,
    client_cpu: Duration,
    /// Times the daemon's threads were put on a CPU.
    scheduled: u64,
    /// CPU time the hypervisor took from the machine.
    stolen: Duration,
}

impl Row {
    /// Pairs per second.
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The median pair.
    fn p50(&mut self) -> Duration {
        self.latencies.sort_unstable();
        percentile(&self.latencies, 0.50)
    }

    /// Prints the pairs per second, their latency, and per pair the CPU
    /// time of the daemon, the processes it started and this client, the
    /// daemon's wake-ups and the share of the cores the hypervisor took.
    fn print(&mut self, daemon: &str, kind: &str) {
        let p50 = self.p50();
        let count = self.latencies.len() as f64;
        println!(
            "  {daemon:<6} {kind:<12} {:>6.0} pairs/s (per pair p50 {:.2} ms, p99 {:.2} ms)",
            self.rate(),
            millis(p50),
            millis(percentile(&self.latencies, 0.99)),
        );
        let per_pair = |time: Duration| millis(time) / count;
        let busy = self.daemon_cpu + self.instances_cpu + self.client_cpu;
        let elapsed = self.elapsed.as_secs_f64();
        println!(
            "  {:<19} CPU per pair: daemon {:.2} ms, its instances {:.2} ms, client {:.2} ms \
             ({:.1} of the {} cores busy, {:.1} taken by the hypervisor); \
             daemon threads put on a CPU {:.1} times a pair",
            "",
            per_pair(self.daemon_cpu),
            per_pair(self.instances_cpu),
            per_pair(self.client_cpu),
            busy.as_secs_f64() / elapsed,
            cores(),
            self.stolen.as_secs_f64() / elapsed,
            self.scheduled as f64 / count,
        );
    }
}

/// Makes the create + stop pairs numbered `names` on `daemon`, one after
/// another, the instance started (`start`) or only stored, and adds what
/// they took to `row`. Every instance is named `PREFIX-NNNN` and stays
/// stored, stopped.
async fn slice(
    daemon: &Daemon,
    prefix: &str,
    names: std::ops::Range<usize>,
    start: bool,
    row: &mut Row,
) -> Result<(), BoxError> {
    let mut orchestrator = daemon.connection.orchestrator();
    let (created, stopped) = if start {
        (pb::InstanceState::Running, pb::InstanceState::Stopped)
    } else {
        (pb::InstanceState::Stopped, pb::InstanceState::Stopped)
    };
    let daemon_before = CpuTimes::of(daemon.pid)?;
    let client_before = CpuTimes::of(std::process::id())?;
    let scheduled_before = times_scheduled(daemon.pid)?;
    let stolen_before = stolen()?;
    let begin = Instant::now();
    for index in names {
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
        row.latencies.push(sent.elapsed());
    }
    row.elapsed += begin.elapsed();
    let daemon_cpu = CpuTimes::of(daemon.pid)?.since(daemon_before);
    row.daemon_cpu += daemon_cpu.own;
    row.instances_cpu += daemon_cpu.children;
    row.client_cpu += CpuTimes::of(std::process::id())?.since(client_before).own;
    row.scheduled += times_scheduled(daemon.pid)?.saturating_sub(scheduled_before);
    row.stolen += stolen()?.saturating_sub(stolen_before);
    Ok(())
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
    let stolen_before = stolen()?;
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
    let steal = stolen()?.saturating_sub(stolen_before);
    cycles.sort_unstable();
    let p50 = percentile(&cycles, 0.50);
    println!(
        "bare process cycle (spawn sleep in its own group with two log files, SIGTERM \
         the group, wait): {:.0}/s, p50 {:.2} ms, CPU per cycle {:.2} ms with the process's own \
         ({:.1} of the {} cores taken by the hypervisor)",
        PAIRS as f64 / elapsed.as_secs_f64(),
        millis(p50),
        millis(cpu.own + cpu.children) / PAIRS as f64,
        steal.as_secs_f64() / elapsed.as_secs_f64(),
        cores(),
    );
    Ok(p50)
}
