//! HTTP front benchmark (issue 19): what the dashboard's event stream, its
//! page and an idle open page cost `outpostd`.
//!
//! Run with `cargo bench --bench http` (or `-- fan-out`, `-- page` for one
//! part: page load and idle). It starts release `outpostd`
//! processes with `--http 127.0.0.1:0` in a temporary directory and prints:
//!
//! * **fan-out**: 1,000 status changes a second for [`FAN_OUT_WINDOW`]
//!   — [`FLIPPERS`] instances of `sleep 1000`, each stopped and started
//!   again on a steady tick (a stop publishes STOPPING and STOPPED, a start
//!   STARTING and RUNNING) — with 100 clients on `GET /api/v1/events`,
//!   with 100 `WatchStatus` streams, and with none (the baseline: the same
//!   load, so the difference is what the subscribers cost). A fresh daemon
//!   per run; the three take turns for [`FAN_OUT_ROUNDS`] rounds. Each run
//!   prints the rate the bus reached (its revisions over the window), the
//!   driver's stop + start cycle time, the daemon's CPU and RSS, the
//!   machine's idle CPU (whether the daemon could have had more), each
//!   client's events and resyncs, and the delay from each event's `time`
//!   (its publication) to its arrival.
//!   Every client must have every revision in order, or a RESYNC snapshot
//!   in place of what it missed; anything else is reported and the
//!   benchmark fails;
//! * **page load**: the bytes of `GET /`, its script and style and the
//!   first event of each event stream, read with a plain client; then the
//!   page in a headless Chromium (when installed): first contentful paint
//!   and the time until the instance table shows every instance, from the
//!   Paint Timing API and a DOM observer installed before the page's
//!   script, and the bytes the browser fetched (Resource Timing);
//! * **idle**: the daemon's CPU over [`IDLE_WINDOW`] with nothing
//!   connected, with [`IDLE_CLIENTS`] idle event streams, and with the page
//!   open in Chromium.
//!
//! Each target is printed as met or not; a delivery failure fails the run.

use outpost_bench_support as support;

use std::{
    path::Path,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use outpost::{
    endpoint::{AuthChannel, Connection},
    proto::v1::{self as pb, orchestrator_client::OrchestratorClient, watch_status_response},
};
use tokio::{runtime::Runtime, sync::watch, task::JoinSet, time::MissedTickBehavior};

use support::{
    BoxError, connect,
    delivery::{Delivery, instant_of, published_in_json},
    fleet::{create_fleet, expect_state, sleeper},
    http::Front,
    kernel::{CpuTimes, cpu_use, idle, mib, peak_rss, rss},
    report::{millis, percentile, verdict},
    runtime,
    server::{daemon_socket, start_http_daemon},
    watch::bus_revision,
};

#[path = "http/page.rs"]
mod page;

/// The daemons' bearer token.
const TOKEN: &str = "bench-http-token-0123456789";
/// `--max-instances` of every daemon.
const MAX_INSTANCES: &str = "1000";
/// `--port-range` of every daemon (no instance asks for a port).
const PORT_RANGE: &str = "47400-47499";
/// Instances stopped and started again to make the load.
const FLIPPERS: usize = 100;
/// Status changes a second the flippers aim at.
const TARGET_RATE: f64 = 1000.0;
/// Status events one stop + start makes.
const EVENTS_PER_CYCLE: f64 = 4.0;
/// Subscribers in the loaded runs.
const CLIENTS: usize = 100;
/// Load before the window, unmeasured.
const FAN_OUT_WARM_UP: Duration = Duration::from_secs(3);
/// How long a fan-out run is measured.
const FAN_OUT_WINDOW: Duration = Duration::from_secs(15);
/// Rounds of the three kinds of run.
const FAN_OUT_ROUNDS: usize = 3;
/// How long the clients may take to receive the last event once the load
/// stopped.
const CATCH_UP: Duration = Duration::from_secs(30);
/// Idle event streams.
const IDLE_CLIENTS: usize = 10;
/// How long the daemon is watched idle, per case.
const IDLE_WINDOW: Duration = Duration::from_secs(30);

/// Who subscribes to the bus in a fan-out run.
#[derive(Clone, Copy, PartialEq)]
enum Subscribers {
    None,
    Sse,
    Grpc,
}

impl Subscribers {
    fn label(self) -> &'static str {
        match self {
            Self::None => "no subscriber",
            Self::Sse => "100 SSE clients",
            Self::Grpc => "100 WatchStatus",
        }
    }
}

/// Runs the benchmark.
fn main() -> ExitCode {
    support::run("http", bench)
}

/// Runs the parts named on the command line (`fan-out`, `page`: page load
/// and idle), or all of them, and prints their results.
fn bench() -> Result<(), BoxError> {
    // cargo bench passes `--bench`; only plain words name parts.
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|name| name == part);
    let dir = tempfile::tempdir()?;
    let runtime = runtime()?;
    print_machine();
    let fan_out = if wanted("fan-out") {
        let result = fan_out(&runtime, dir.path());
        println!();
        result
    } else {
        Ok(())
    };
    if wanted("page") {
        page::page_and_idle(&runtime, dir.path())?;
    }
    fan_out
}

/// Load average and cores, so that a reader knows how busy the machine was.
fn print_machine() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!(
        "{} CPUs, load average {} at the start",
        support::report::cores(),
        load.join(" ")
    );
}

/// A daemon with its HTTP front, for one run.
struct Daemon {
    _process: support::server::ServerProcess,
    connection: Connection,
    front: Front,
    pid: u32,
    socket: std::path::PathBuf,
}

impl Daemon {
    /// Starts a fresh daemon in `dir` (blocking, outside the runtime) and
    /// connects to it.
    fn start(runtime: &Runtime, dir: &Path) -> Result<Self, BoxError> {
        let outpostd = env!("CARGO_BIN_EXE_outpostd");
        let process = start_http_daemon(outpostd, dir, MAX_INSTANCES, PORT_RANGE, TOKEN)?;
        let socket = daemon_socket(dir);
        runtime.block_on(async {
            let connection = connect(&socket).await?;
            let status = connection
                .orchestrator()
                .get_daemon_status(pb::GetDaemonStatusRequest {})
                .await?
                .into_inner();
            Ok(Self {
                _process: process,
                front: Front::new(&status.http_address, TOKEN)?,
                connection,
                pid: status.pid,
                socket,
            })
        })
    }
}

// ---------------------------------------------------------------------------
// Fan-out
// ---------------------------------------------------------------------------

/// What one fan-out run measured.
struct Run {
    subscribers: Subscribers,
    rate: f64,
    cpu: f64,
    peak_rss: u64,
    end_rss: u64,
    bench_cpu: f64,
    /// Of the machine's CPU time in the window, the part no process used.
    idle: f64,
    /// Stop + start cycles of the flippers in the window, ascending.
    cycles: Vec<Duration>,
    deliveries: Vec<Delivery>,
}

/// Every fan-out run, then the medians per kind; an error when a client
/// missed an event without a resync.
fn fan_out(runtime: &Runtime, dir: &Path) -> Result<(), BoxError> {
    let period = FLIPPERS as f64 * EVENTS_PER_CYCLE / TARGET_RATE;
    println!(
        "Fan-out: {FLIPPERS} instances of `sleep 1000`, each stopped and started every {:.0} ms \
         (aiming at {TARGET_RATE:.0} status events/s); warm-up {} s, window {} s, fresh daemon per run",
        period * 1e3,
        FAN_OUT_WARM_UP.as_secs(),
        FAN_OUT_WINDOW.as_secs()
    );
    println!(
        "{:<16} {:>6} {:>7} {:>7} {:>6} {:>10} {:>10} {:>7} {:>6} {:>10} {:>7} {:>7} {:>7} {:>7}",
        "subscribers",
        "ev/s",
        "cyc p50",
        "cyc p99",
        "CPU %",
        "RSS peak",
        "RSS end",
        "bench %",
        "idle %",
        "min events",
        "resyncs",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    let kinds = [Subscribers::None, Subscribers::Sse, Subscribers::Grpc];
    let mut runs = Vec::new();
    for round in 0..FAN_OUT_ROUNDS {
        // Turns alternate, so that a drifting machine weighs on all alike.
        let order: Vec<_> = if round % 2 == 0 {
            kinds.to_vec()
        } else {
            kinds.iter().rev().copied().collect()
        };
        for subscribers in order {
            let daemon_dir = dir.join(format!("fan-{}", runs.len()));
            let daemon = Daemon::start(runtime, &daemon_dir)?;
            let run = runtime.block_on(fan_out_run(&daemon, subscribers))?;
            print_run(&run);
            runs.push(run);
        }
    }
    print_fan_out_summary(&runs)
}

/// One run: the flippers on `daemon`, `subscribers` reading.
async fn fan_out_run(daemon: &Daemon, subscribers: Subscribers) -> Result<Run, BoxError> {
    let created = create_fleet(
        &daemon.connection,
        "flip",
        FLIPPERS,
        sleeper,
        pb::InstanceState::Running,
    )
    .await?;
    let measuring = Arc::new(AtomicBool::new(false));
    let (stop_clients, clients_stopped) = watch::channel(false);
    let mut clients = JoinSet::new();
    let mut progress = Vec::new();
    let count = if subscribers == Subscribers::None {
        0
    } else {
        CLIENTS
    };
    for _ in 0..count {
        let reached = Arc::new(AtomicU64::new(0));
        progress.push(Arc::clone(&reached));
        let delivery = Delivery::new(reached);
        let (measuring, stop) = (Arc::clone(&measuring), clients_stopped.clone());
        match subscribers {
            Subscribers::Sse => {
                let stream = daemon.front.events("/api/v1/events").await?;
                clients.spawn(read_sse(stream, delivery, measuring, stop));
            }
            Subscribers::Grpc => {
                let connection = connect(&daemon.socket).await?;
                let stream = connection
                    .orchestrator()
                    .watch_status(pb::WatchStatusRequest::default())
                    .await?
                    .into_inner();
                clients.spawn(read_grpc(connection, stream, delivery, measuring, stop));
            }
            Subscribers::None => unreachable!("no client is made without subscribers"),
        }
    }

    let flipping = Arc::new(AtomicBool::new(true));
    let mut flippers = JoinSet::new();
    let period = Duration::from_secs_f64(FLIPPERS as f64 * EVENTS_PER_CYCLE / TARGET_RATE);
    for (index, instance) in created.instances.iter().enumerate() {
        let offset = period.mul_f64(index as f64 / FLIPPERS as f64);
        flippers.spawn(flip(
            daemon.connection.orchestrator(),
            instance.id.clone(),
            offset,
            period,
            Arc::clone(&flipping),
            Arc::clone(&measuring),
        ));
    }
    tokio::time::sleep(FAN_OUT_WARM_UP).await;

    let bench_pid = std::process::id();
    let (start_revision, bench_before, idle_before) = (
        bus_revision(&daemon.connection).await?,
        CpuTimes::of(bench_pid)?,
        idle()?,
    );
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let cpu = cpu_use(daemon.pid, FAN_OUT_WINDOW).await?;
    let end_revision = bus_revision(&daemon.connection).await?;
    let elapsed = start.elapsed().as_secs_f64();
    measuring.store(false, Ordering::Relaxed);
    let bench_cpu = CpuTimes::of(bench_pid)?.since(bench_before).own;
    let idle_cpu = idle()?.saturating_sub(idle_before);
    let (peak, end_rss) = (peak_rss(daemon.pid)?, rss(daemon.pid)?);

    flipping.store(false, Ordering::Relaxed);
    let mut cycles = Vec::new();
    while let Some(flipper) = flippers.join_next().await {
        cycles.extend(flipper??);
    }
    cycles.sort_unstable();
    let last = bus_revision(&daemon.connection).await?;
    let deadline = Instant::now() + CATCH_UP;
    while progress
        .iter()
        .any(|reached| reached.load(Ordering::Relaxed) < last)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_clients.send(true)?;
    let mut deliveries = Vec::with_capacity(count);
    while let Some(client) = clients.join_next().await {
        let mut delivery = client?;
        let reached = delivery.progress();
        if reached < last {
            delivery.fail(format!(
                "had revision {reached} of {last} {} s after the load stopped",
                CATCH_UP.as_secs()
            ));
        }
        deliveries.push(delivery);
    }
    Ok(Run {
        subscribers,
        rate: (end_revision - start_revision) as f64 / elapsed,
        cpu: cpu.percent,
        peak_rss: peak,
        end_rss,
        bench_cpu: bench_cpu.as_secs_f64() / elapsed * 100.0,
        idle: idle_cpu.as_secs_f64() / (elapsed * support::report::cores() as f64) * 100.0,
        cycles,
        deliveries,
    })
}

/// Stops and starts instance `id` every `period`, from `offset` on, while
/// `flipping` holds; a late cycle delays the next rather than bunching.
/// Returns how long each cycle took (the two calls) while `measuring`.
async fn flip(
    mut orchestrator: OrchestratorClient<AuthChannel>,
    id: String,
    offset: Duration,
    period: Duration,
    flipping: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
) -> Result<Vec<Duration>, BoxError> {
    tokio::time::sleep(offset).await;
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut cycles = Vec::new();
    while flipping.load(Ordering::Relaxed) {
        ticks.tick().await;
        let cycle = Instant::now();
        let stop = pb::StopInstanceRequest {
            instance: id.clone(),
            ..Default::default()
        };
        let stopped = orchestrator.stop_instance(stop).await?.into_inner();
        expect_state(
            &stopped
                .instance
                .ok_or("StopInstance returned no instance")?,
            pb::InstanceState::Stopped,
        )?;
        let start = pb::StartInstanceRequest {
            instance: id.clone(),
        };
        let started = orchestrator.start_instance(start).await?.into_inner();
        expect_state(
            &started
                .instance
                .ok_or("StartInstance returned no instance")?,
            pb::InstanceState::Running,
        )?;
        if measuring.load(Ordering::Relaxed) {
            cycles.push(cycle.elapsed());
        }
    }
    Ok(cycles)
}

/// Reads an SSE client's stream until told to stop.
async fn read_sse(
    mut stream: support::http::EventStream,
    mut delivery: Delivery,
    measuring: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) -> Delivery {
    loop {
        let event = tokio::select! {
            _ = stop.changed() => return delivery,
            event = stream.next() => event,
        };
        let event = match event {
            Ok(Some(event)) => event,
            Ok(None) => {
                delivery.fail("the stream ended".to_owned());
                return delivery;
            }
            Err(err) => {
                delivery.fail(format!("the stream failed: {err}"));
                return delivery;
            }
        };
        let revision = event.id.as_deref().and_then(|id| id.parse().ok());
        match (event.kind.as_str(), revision) {
            ("snapshot", Some(revision)) => delivery.snapshot(revision),
            ("status", Some(revision)) => {
                let measuring = measuring.load(Ordering::Relaxed);
                let published = measuring.then(|| published_in_json(&event.data)).flatten();
                delivery.event(revision, published, measuring);
            }
            (kind, _) => delivery.fail(format!("unexpected event {kind:?}: {:.200}", event.data)),
        }
    }
}

/// Reads a `WatchStatus` stream until told to stop; `connection` is its
/// own, kept open as long as it reads.
async fn read_grpc(
    connection: Connection,
    mut stream: tonic::Streaming<pb::WatchStatusResponse>,
    mut delivery: Delivery,
    measuring: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) -> Delivery {
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            message = stream.message() => message,
        };
        match message {
            Ok(Some(message)) => match message.payload {
                Some(watch_status_response::Payload::Snapshot(snapshot)) => {
                    delivery.snapshot(snapshot.revision);
                }
                Some(watch_status_response::Payload::Events(batch)) => {
                    let measuring = measuring.load(Ordering::Relaxed);
                    for event in batch.events {
                        let published = event.time.as_ref().and_then(instant_of);
                        delivery.event(event.revision, published, measuring);
                    }
                }
                None => delivery.fail("a message without payload".to_owned()),
            },
            Ok(None) => {
                delivery.fail("the stream ended".to_owned());
                break;
            }
            Err(status) => {
                delivery.fail(format!("the stream failed: {status}"));
                break;
            }
        }
    }
    drop(connection);
    delivery
}

/// Latencies of every client of `run`, ascending.
fn latencies(run: &Run) -> Vec<Duration> {
    let mut all: Vec<Duration> = run
        .deliveries
        .iter()
        .flat_map(|delivery| delivery.latencies.iter().copied())
        .collect();
    all.sort_unstable();
    all
}

fn print_run(run: &Run) {
    let all = latencies(run);
    let min_events = run.deliveries.iter().map(|d| d.events).min();
    let resyncs: u64 = run.deliveries.iter().map(Delivery::resyncs).sum();
    let latency = |fraction: f64| {
        if all.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.1}", millis(percentile(&all, fraction)))
        }
    };
    println!(
        "{:<16} {:>6.0} {:>7.1} {:>7.1} {:>6.1} {:>10} {:>10} {:>7.1} {:>6.1} {:>10} {:>7} {:>7} {:>7} {:>7}",
        run.subscribers.label(),
        run.rate,
        millis(percentile(&run.cycles, 0.50)),
        millis(percentile(&run.cycles, 0.99)),
        run.cpu,
        mib(run.peak_rss),
        mib(run.end_rss),
        run.bench_cpu,
        run.idle,
        min_events.map_or("-".to_owned(), |events| events.to_string()),
        resyncs,
        latency(0.50),
        latency(0.99),
        latency(1.0),
    );
    for delivery in run.deliveries.iter().filter(|d| d.failures > 0).take(3) {
        println!(
            "  DELIVERY FAILED: {} failures, first: {}",
            delivery.failures,
            delivery.failed.join("; ")
        );
    }
}

/// The median of `values` (the lower middle one of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Medians per kind of run, the cost of the subscribers over the
/// baseline, and the delivery verdict (an error when any client missed an
/// event without a resync).
fn print_fan_out_summary(runs: &[Run]) -> Result<(), BoxError> {
    println!("Medians of {FAN_OUT_ROUNDS} runs each (CPU: the daemon's threads, % of one core):");
    let of = |kind: Subscribers| runs.iter().filter(move |run| run.subscribers == kind);
    let cpu = |kind| median(of(kind).map(|run| run.cpu).collect());
    for kind in [Subscribers::None, Subscribers::Sse, Subscribers::Grpc] {
        let spread: Vec<String> = of(kind).map(|run| format!("{:.1}", run.cpu)).collect();
        let pooled: Vec<Duration> = {
            let mut all: Vec<Duration> = of(kind).flat_map(latencies).collect();
            all.sort_unstable();
            all
        };
        println!(
            "  {:<16} {:>6.0} ev/s, cycle p50 {:.1} ms, machine idle {:.1} %, CPU {:>5.1} % (runs {}), RSS peak {}, delivery latency {}",
            kind.label(),
            median(of(kind).map(|run| run.rate).collect()),
            median(
                of(kind)
                    .map(|run| millis(percentile(&run.cycles, 0.5)))
                    .collect()
            ),
            median(of(kind).map(|run| run.idle).collect()),
            cpu(kind),
            spread.join(" "),
            mib(median(of(kind).map(|run| run.peak_rss as f64).collect()) as u64),
            if pooled.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "p50 {:.1} ms p99 {:.1} ms",
                    millis(percentile(&pooled, 0.50)),
                    millis(percentile(&pooled, 0.99))
                )
            },
        );
    }
    let base = cpu(Subscribers::None);
    for kind in [Subscribers::Sse, Subscribers::Grpc] {
        let extra = cpu(kind) - base;
        println!(
            "  {} cost over the baseline: {extra:.1} % of a core ({:.3} % per client)",
            kind.label(),
            extra / CLIENTS as f64
        );
    }
    let rate_met = of(Subscribers::Sse).all(|run| run.rate >= TARGET_RATE * 0.95);
    println!(
        "  rate with SSE clients >= 95 % of {TARGET_RATE:.0}/s in every run: {}",
        verdict(rate_met)
    );
    let failures: u64 = runs
        .iter()
        .flat_map(|run| &run.deliveries)
        .map(|delivery| delivery.failures)
        .sum();
    let resyncs: u64 = runs
        .iter()
        .flat_map(|run| &run.deliveries)
        .map(Delivery::resyncs)
        .sum();
    println!(
        "  every client got every event in order or a resync ({resyncs} resyncs in all): {}",
        verdict(failures == 0)
    );
    if failures > 0 {
        return Err(format!("{failures} delivery failures (gaps without a resync)").into());
    }
    Ok(())
}
