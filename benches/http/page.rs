//! The page-load and idle parts of the HTTP benchmark: what loading the
//! dashboard transfers and how soon it shows the instances, and what an
//! open page or idle event streams cost the daemon.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use outpost::proto::v1 as pb;
use outpost_test_support::browser::Browser;
use serde_json::Value;
use tokio::runtime::Runtime;

use super::{Daemon, IDLE_CLIENTS, IDLE_WINDOW, median};
use outpost_bench_support::{
    BoxError,
    fleet::{create_fleet, sleeper},
    http::Front,
    kernel::{CpuUse, cpu_use},
    report::{micros, millis, percentile, verdict},
};

/// Instances the page shows.
const PAGE_INSTANCES: usize = 10;
/// Measured page loads in the browser (after the login's, unmeasured).
const PAGE_LOADS: usize = 20;
/// Requests per path when timing the server alone.
const SERVER_ROUNDS: usize = 50;
/// How long a load may take to show every instance and paint.
const ROWS_TIMEOUT: Duration = Duration::from_secs(5);
/// What the page is and its first answers, read with a plain client.
const PAGE_PATHS: [&str; 3] = ["/", "/assets/app.js", "/assets/app.css"];
/// The page's event stream, whose first event (a snapshot) a plain client
/// reads.
const STREAM_PATHS: [&str; 1] = ["/api/v1/stream"];
/// Target: bytes transferred to load the page.
const TARGET_BYTES: u64 = 100 * 1024;
/// Target: first render.
const TARGET_RENDER: Duration = Duration::from_millis(200);
/// Target: idle cost, % of one core above the quiet daemon, when the quiet
/// windows themselves agree more closely than that.
const TARGET_IDLE_EXTRA: f64 = 0.01;

/// Installed in every document before the page's own script: notes when
/// the instance table first has a row and when it has all `EXPECTED`
/// (rows carry `data-instance`), and which event streams the page opens.
const OBSERVER: &str = r#"(() => {
  const bench = (window.__bench = { firstRow: null, rows: null, streams: [] });
  const Source = window.EventSource;
  window.EventSource = new Proxy(Source, {
    construct(target, args) {
      bench.streams.push(String(args[0]));
      return Reflect.construct(target, args);
    },
  });
  const observer = new MutationObserver(() => {
    const rows = document.querySelectorAll('[data-instance]').length;
    if (rows > 0 && bench.firstRow === null) bench.firstRow = performance.now();
    if (rows >= EXPECTED) {
      bench.rows = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document, { childList: true, subtree: true });
})();"#;

/// Reads one load's figures (milliseconds from the navigation's start).
const READ_LOAD: &str = r#"
const bench = window.__bench || {};
const nav = performance.getEntriesByType('navigation')[0];
const paint = performance.getEntriesByType('paint')
  .find((entry) => entry.name === 'first-contentful-paint');
return {
  done: bench.rows != null && paint !== undefined,
  fcp: paint ? paint.startTime : null,
  firstRow: bench.firstRow ?? null,
  rows: bench.rows ?? null,
  domReady: nav ? nav.domContentLoadedEventEnd : null,
  navigationBytes: nav ? nav.transferSize : 0,
  resources: performance.getEntriesByType('resource').map((r) => [r.name, r.transferSize]),
  streams: bench.streams ?? [],
};"#;

/// Page load, then the idle cases, on one daemon showing
/// [`PAGE_INSTANCES`] instances.
pub(super) fn page_and_idle(runtime: &Runtime, dir: &Path) -> Result<(), BoxError> {
    let daemon = Daemon::start(runtime, &dir.join("page"))?;
    runtime.block_on(async {
        let running = pb::InstanceState::Running;
        create_fleet(&daemon.connection, "page", PAGE_INSTANCES, sleeper, running).await?;
        println!("Page load: a daemon with {PAGE_INSTANCES} instances of `sleep 1000`");
        plain_bytes(&daemon.front).await?;
        server_times(&daemon.front).await?;
        // No browser: the reason is printed, and first render not measured.
        let browser = match Browser::start().await {
            Some(browser) => Some(browser_loads(&daemon, browser).await?),
            None => None,
        };
        println!();
        idle(&daemon, browser).await
    })
}

/// The bytes a plain client receives for the page, its assets and the
/// first event of each event stream; prints them against the target.
async fn plain_bytes(front: &Front) -> Result<(), BoxError> {
    let mut total = 0;
    let mut parts = Vec::new();
    for path in PAGE_PATHS {
        let (_, received) = front.get(path).await?;
        parts.push(format!("{path} {received}"));
        total += received;
    }
    for path in STREAM_PATHS {
        let received = first_event_bytes(front, path).await?;
        parts.push(format!("{path} (first event) {received}"));
        total += received;
    }
    println!(
        "bytes on the wire, plain client (headers included): {}; total {:.1} KiB",
        parts.join(", "),
        total as f64 / 1024.0
    );
    print_target("page bytes", total <= TARGET_BYTES, "<= 100 KiB");
    Ok(())
}

/// Bytes received on a new stream at `path` until its first event.
async fn first_event_bytes(front: &Front, path: &str) -> Result<u64, BoxError> {
    let mut stream = front.events(path).await?;
    stream
        .next()
        .await?
        .ok_or_else(|| format!("{path} ended before its first event"))?;
    Ok(stream.received())
}

/// How long the daemon takes to serve each part of the page alone, on a
/// new connection each time (the figure a browser's load cannot go below).
async fn server_times(front: &Front) -> Result<(), BoxError> {
    let mut lines = Vec::new();
    for path in PAGE_PATHS.iter().chain(&STREAM_PATHS) {
        let mut times = Vec::with_capacity(SERVER_ROUNDS);
        for _ in 0..SERVER_ROUNDS {
            let start = Instant::now();
            if path.starts_with("/api/") {
                first_event_bytes(front, path).await?;
            } else {
                front.get(path).await?;
            }
            times.push(start.elapsed());
        }
        times.sort_unstable();
        lines.push(format!(
            "{path} p50 {:.0} µs p99 {:.0} µs",
            micros(percentile(&times, 0.50)),
            micros(percentile(&times, 0.99))
        ));
    }
    println!(
        "served alone ({SERVER_ROUNDS} requests each, connect to last byte or first event): {}",
        lines.join("; ")
    );
    Ok(())
}

/// One page load as the browser saw it.
struct Load {
    fcp: Option<f64>,
    first_row: Option<f64>,
    rows: Option<f64>,
    dom_ready: Option<f64>,
    navigation_bytes: u64,
    resources: Vec<(String, u64)>,
    streams: Vec<String>,
}

impl Load {
    fn from(value: &Value) -> Self {
        let resources = value["resources"].as_array().map_or(Vec::new(), |all| {
            all.iter()
                .map(|entry| {
                    let name = entry[0].as_str().unwrap_or_default().to_owned();
                    (name, entry[1].as_u64().unwrap_or(0))
                })
                .collect()
        });
        let streams = value["streams"].as_array().map_or(Vec::new(), |all| {
            all.iter()
                .filter_map(|url| Some(url.as_str()?.to_owned()))
                .collect()
        });
        Self {
            fcp: value["fcp"].as_f64(),
            first_row: value["firstRow"].as_f64(),
            rows: value["rows"].as_f64(),
            dom_ready: value["domReady"].as_f64(),
            navigation_bytes: value["navigationBytes"].as_u64().unwrap_or(0),
            resources,
            streams,
        }
    }
}

/// Logs a headless Chromium in through a one-time link, loads the page
/// [`PAGE_LOADS`] times and prints its timings and bytes; returns the
/// browser with the page open.
async fn browser_loads(daemon: &Daemon, browser: Browser) -> Result<Browser, BoxError> {
    let observer = OBSERVER.replace("EXPECTED", &PAGE_INSTANCES.to_string());
    browser.before_every_page(&observer).await;
    let login = daemon
        .connection
        .orchestrator()
        .create_dashboard_login(pb::CreateDashboardLoginRequest {})
        .await?
        .into_inner()
        .url;
    // Sets the session cookie and lands on the page: the unmeasured load.
    browser.goto(&login).await;
    let page = daemon.front.url("/");
    let mut loads = Vec::with_capacity(PAGE_LOADS);
    for _ in 0..PAGE_LOADS {
        browser.goto(&page).await;
        loads.push(read_load(&browser).await?);
    }
    print_loads(&loads);
    if let Some(last) = loads.last() {
        print_browser_bytes(&daemon.front, last).await?;
    }
    Ok(browser)
}

/// Waits until the loaded page shows every instance and has painted (or
/// [`ROWS_TIMEOUT`] passed), then reads its figures.
async fn read_load(browser: &Browser) -> Result<Load, BoxError> {
    let deadline = Instant::now() + ROWS_TIMEOUT;
    loop {
        let value = browser.run(READ_LOAD, Vec::new()).await;
        if value["done"] == Value::Bool(true) || Instant::now() > deadline {
            return Ok(Load::from(&value));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Median, min and max of one figure over the loads that have it.
fn print_figure(what: &str, values: Vec<f64>, target: Option<Duration>) -> bool {
    if values.is_empty() {
        println!(
            "  {what}: not seen within {} s in any load",
            ROWS_TIMEOUT.as_secs()
        );
        return false;
    }
    let (min, max) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), value| {
        (lo.min(*value), hi.max(*value))
    });
    let (count, middle) = (values.len(), median(values));
    println!("  {what}: median {middle:.0} ms (min {min:.0}, max {max:.0}; {count} loads)");
    target.is_none_or(|target| middle <= millis(target))
}

fn print_loads(loads: &[Load]) {
    println!(
        "Headless Chromium, {} loads of / after logging in (ms from navigation start):",
        loads.len()
    );
    let figure = |pick: fn(&Load) -> Option<f64>| loads.iter().filter_map(pick).collect();
    print_figure("DOMContentLoaded", figure(|load| load.dom_ready), None);
    let painted = print_figure(
        "first contentful paint",
        figure(|load| load.fcp),
        Some(TARGET_RENDER),
    );
    print_figure("first instance row", figure(|load| load.first_row), None);
    let shown = print_figure(
        &format!("all {PAGE_INSTANCES} instance rows"),
        figure(|load| load.rows),
        Some(TARGET_RENDER),
    );
    print_target("first contentful paint", painted, "<= 200 ms");
    print_target("instance table filled", shown, "<= 200 ms");
}

/// The bytes the browser fetched in `load` (Resource Timing's
/// `transferSize`: headers and body), plus the first event of each event
/// stream it opened, which Resource Timing only reports once a stream
/// ends.
async fn print_browser_bytes(front: &Front, load: &Load) -> Result<(), BoxError> {
    let mut total = load.navigation_bytes;
    let mut parts = vec![format!("/ {}", load.navigation_bytes)];
    let origin = front.url("");
    for (name, bytes) in &load.resources {
        parts.push(format!("{} {bytes}", name.trim_start_matches(&origin)));
        total += bytes;
    }
    for stream in &load.streams {
        let path = stream.trim_start_matches(&origin);
        let bytes = first_event_bytes(front, path).await?;
        parts.push(format!("{path} (first event) {bytes}"));
        total += bytes;
    }
    println!(
        "  bytes of the last load, as the browser fetched them: {}; total {:.1} KiB",
        parts.join(", "),
        total as f64 / 1024.0
    );
    print_target("page bytes (browser)", total <= TARGET_BYTES, "<= 100 KiB");
    Ok(())
}

/// The daemon's CPU over [`IDLE_WINDOW`] with the page open in `browser`
/// (if any), with nothing connected, with [`IDLE_CLIENTS`] idle event
/// streams, and with nothing again.
async fn idle(daemon: &Daemon, browser: Option<Browser>) -> Result<(), BoxError> {
    println!(
        "Idle: the daemon's CPU over {} s per case, {PAGE_INSTANCES} instances running",
        IDLE_WINDOW.as_secs()
    );
    let page = match browser {
        Some(browser) => {
            let used = measure_idle(daemon, "the page open in Chromium").await?;
            drop(browser);
            Some(used)
        }
        None => None,
    };
    let quiet = measure_idle(daemon, "nothing connected").await?;
    let mut streams = Vec::with_capacity(IDLE_CLIENTS);
    for _ in 0..IDLE_CLIENTS {
        let mut stream = daemon.front.events("/api/v1/events").await?;
        stream.next().await?.ok_or("the event stream ended")?;
        streams.push(stream);
    }
    let with_streams = measure_idle(daemon, &format!("{IDLE_CLIENTS} idle SSE clients")).await?;
    drop(streams);
    let quiet_again = measure_idle(daemon, "nothing connected, again").await?;

    let (low, high) = (
        quiet.on_cpu_percent.min(quiet_again.on_cpu_percent),
        quiet.on_cpu_percent.max(quiet_again.on_cpu_percent),
    );
    let allowance = TARGET_IDLE_EXTRA.max(high - low);
    let judge = |what: &str, used: &CpuUse| {
        let extra = used.on_cpu_percent - high;
        println!(
            "  {what}: {extra:+.4} % of a core above the busier quiet window \
             (quiet windows {low:.4}–{high:.4} %): {}",
            verdict(extra <= allowance)
        );
    };
    judge(&format!("{IDLE_CLIENTS} idle SSE clients"), &with_streams);
    if let Some(page) = &page {
        judge("the open page", page);
    }
    Ok(())
}

async fn measure_idle(daemon: &Daemon, what: &str) -> Result<CpuUse, BoxError> {
    let used = cpu_use(daemon.pid, IDLE_WINDOW).await?;
    used.print(&format!("  {what}"));
    Ok(used)
}

/// Prints whether the target on `what` (`target` in words) is met.
fn print_target(what: &str, met: bool, target: &str) {
    println!("  {what} target {target}: {}", verdict(met));
}
