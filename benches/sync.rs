//! Sync benchmark: how fast `outpostd` writes a template set to disk, how
//! soon an edited file reaches the database, and what a rescan of many
//! unchanged files costs.
//!
//! Run with `cargo bench --bench sync`. It starts release `outpostd`
//! processes on Unix sockets in a temporary directory (sync root included)
//! and prints:
//!
//! * the wall time of `ExportTemplates` for 1,000 templates of about 5 KiB
//!   each, durable (temp files, fsync, rename, directory fsync), median of
//!   several runs; each run exports a set never exported before, so every
//!   file is really written;
//! * the latency from closing a file rewritten in place (truncate, write,
//!   close) until the `IMPORTED` event of its template arrives on
//!   `WatchSyncEvents`, p50 and p99 over 200 edits made one after another,
//!   with `--sync-debounce` at its default of 100 ms;
//! * on a fresh daemon, the wall time of the `Rescan` RPC over 10,000
//!   unchanged files, median of several runs.
//!
//! Between measurements the benchmark waits until the daemon reports no
//! dirty path, so that one measurement's aftermath is not timed in the
//! next. Each target is printed as met or not; nothing here asserts on
//! timing.

use outpost_bench_support as support;

use std::{
    fs::OpenOptions,
    io::Write,
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use outpost::{endpoint::Connection, proto::v1 as pb};

use support::{
    BoxError, connect,
    report::{millis, percentile, verdict},
    runtime,
    server::{ServerProcess, daemon_command, daemon_socket},
    sync::{Sync, put_many, settle, wait_for_import, watch_imports},
};

/// Templates of each exported set.
const EXPORT_TEMPLATES: usize = 1000;
/// Exports measured, each of a new set.
const EXPORT_RUNS: usize = 5;
/// Templates whose files are edited, in turn.
const EDIT_TEMPLATES: usize = 20;
/// Edits made, unmeasured, before the measured ones.
const EDIT_WARM_UP: usize = 10;
/// Measured edits.
const EDITS: usize = 200;
/// Unchanged files rescanned.
const RESCAN_FILES: usize = 10_000;
/// Template groups the rescanned files are spread over (directories).
const RESCAN_GROUPS: usize = 100;
/// Rescans measured, after one unmeasured.
const RESCAN_RUNS: usize = 5;
/// `--sync-debounce` of the daemons (the default, spelt out because the
/// edit target depends on it).
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How long a daemon may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Target: median export of [`EXPORT_TEMPLATES`] templates.
const TARGET_EXPORT: Duration = Duration::from_secs(1);
/// Target: p50 edit → `IMPORTED` at most the debounce plus this.
const TARGET_EDIT_OVER_DEBOUNCE: Duration = Duration::from_millis(20);
/// Target: median rescan of [`RESCAN_FILES`] unchanged files.
const TARGET_RESCAN: Duration = Duration::from_secs(1);

/// Runs the benchmark, or the baseline server when re-executed as one.
fn main() -> ExitCode {
    support::run("sync", bench)
}

/// Runs the whole benchmark and prints its results.
fn bench() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let runtime = runtime()?;

    let export_dir = dir.path().join("export");
    let daemon = start_daemon(&export_dir)?;
    runtime.block_on(export_and_edit(&daemon_socket(&export_dir)))?;
    drop(daemon);

    println!();
    let rescan_dir = dir.path().join("rescan");
    let daemon = start_daemon(&rescan_dir)?;
    runtime.block_on(rescan(&daemon_socket(&rescan_dir)))?;
    drop(daemon);
    Ok(())
}

/// Starts a release `outpostd` with its data (and sync root) under `dir`.
fn start_daemon(dir: &Path) -> Result<ServerProcess, BoxError> {
    let mut command = daemon_command(env!("CARGO_BIN_EXE_outpostd"), dir);
    command
        .arg("--sync-debounce")
        .arg(format!("{}ms", DEBOUNCE.as_millis()));
    ServerProcess::start("outpostd", command, STOP_TIMEOUT)
}

/// Measures exports, then edits, on the daemon at `socket`.
async fn export_and_edit(socket: &Path) -> Result<(), BoxError> {
    let connection = connect(socket).await?;
    let mut sync = connection.sync();
    let root = sync_root(&mut sync).await?;
    println!(
        "Sync root {} on a daemon with --sync-debounce {}ms",
        root.display(),
        DEBOUNCE.as_millis()
    );
    measure_exports(&mut sync).await?;
    measure_edits(&connection, &mut sync, &root).await
}

// ---------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------

/// The content of exported template `i` of run `run`: about 5 KiB.
fn export_content(run: usize, i: usize) -> String {
    format!(
        "<!-- run {run}, template {i} -->\n{}\n",
        "<div class=\"post\">{$post['message']}</div>\n".repeat(120)
    )
}

/// Exports [`EXPORT_RUNS`] new sets of [`EXPORT_TEMPLATES`] templates,
/// timing each export; prints the figures.
async fn measure_exports(sync: &mut Sync) -> Result<(), BoxError> {
    let mut walls = Vec::with_capacity(EXPORT_RUNS);
    let mut reported = Vec::with_capacity(EXPORT_RUNS);
    for run in 0..EXPORT_RUNS {
        let set = format!("Export{run}");
        put_many(sync, &set, EXPORT_TEMPLATES, |i| {
            (format!("t_{i:04}"), export_content(run, i))
        })
        .await?;
        settle(sync).await?;
        let start = Instant::now();
        let summary = sync
            .export_templates(pb::ExportTemplatesRequest { set: set.clone() })
            .await?
            .into_inner()
            .summary
            .ok_or("ExportTemplates returned no summary")?;
        walls.push(start.elapsed());
        if summary.written as usize != EXPORT_TEMPLATES {
            return Err(format!(
                "export of {set} wrote {} files: {summary:?}",
                summary.written
            )
            .into());
        }
        reported.push(Duration::try_from(summary.elapsed.unwrap_or_default())?);
        settle(sync).await?;
    }
    walls.sort_unstable();
    reported.sort_unstable();
    let median = percentile(&walls, 0.50);
    println!(
        "ExportTemplates of {EXPORT_TEMPLATES} new templates of {:.1} KiB, {EXPORT_RUNS} runs: \
         median {:.0} ms, min {:.0} ms, max {:.0} ms (the daemon's own elapsed: median {:.0} ms)",
        export_content(0, 0).len() as f64 / 1024.0,
        millis(median),
        millis(walls[0]),
        millis(walls[walls.len() - 1]),
        millis(percentile(&reported, 0.50)),
    );
    print_target(
        "median",
        median <= TARGET_EXPORT,
        &format!("<= {} ms", TARGET_EXPORT.as_millis()),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Edit → database
// ---------------------------------------------------------------------------

/// Edits the files of [`EDIT_TEMPLATES`] mirrored templates in turn, one
/// at a time, and times each from the file's close to its `IMPORTED`
/// event; prints the figures.
async fn measure_edits(
    connection: &Connection,
    sync: &mut Sync,
    root: &Path,
) -> Result<(), BoxError> {
    let title = |i: usize| format!("edit_{i:02}");
    put_many(sync, "Edits", EDIT_TEMPLATES, |i| {
        (title(i), export_content(0, i))
    })
    .await?;
    sync.export_templates(pb::ExportTemplatesRequest {
        set: "Edits".to_owned(),
    })
    .await?;
    settle(sync).await?;
    let mut imports = watch_imports(connection).await?;
    let dir = root.join("templates").join("Edits").join("edit");

    let mut latencies = Vec::with_capacity(EDITS);
    for edit in 0..EDIT_WARM_UP + EDITS {
        let i = edit % EDIT_TEMPLATES;
        let content = format!("<!-- edit {edit} -->\n{}", export_content(0, i));
        // Rewritten in place: truncate, write, close.
        let mut file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(dir.join(format!("{}.html", title(i))))?;
        file.write_all(content.as_bytes())?;
        drop(file);
        let closed = Instant::now();
        wait_for_import(&mut imports, &title(i)).await?;
        if edit >= EDIT_WARM_UP {
            latencies.push(closed.elapsed());
        }
    }
    latencies.sort_unstable();
    let p50 = percentile(&latencies, 0.50);
    println!(
        "in-place edit (truncate, write, close) -> IMPORTED event, {EDITS} edits one after another: \
         p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
        millis(p50),
        millis(percentile(&latencies, 0.99)),
        millis(latencies[0]),
        millis(latencies[latencies.len() - 1]),
    );
    let target = DEBOUNCE + TARGET_EDIT_OVER_DEBOUNCE;
    print_target(
        "p50",
        p50 <= target,
        &format!(
            "<= debounce + {} ms = {} ms",
            TARGET_EDIT_OVER_DEBOUNCE.as_millis(),
            target.as_millis()
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Rescan
// ---------------------------------------------------------------------------

/// Fills and exports a set of [`RESCAN_FILES`] templates on the daemon at
/// `socket`, then times rescans of the unchanged files; prints the figures.
async fn rescan(socket: &Path) -> Result<(), BoxError> {
    let connection = connect(socket).await?;
    let mut sync = connection.sync();
    let content = "<tr><td>{$row}</td></tr>\n".repeat(40);
    put_many(&mut sync, "Rescan", RESCAN_FILES, |i| {
        (
            format!("g{:02}_t{i:05}", i % RESCAN_GROUPS),
            content.clone(),
        )
    })
    .await?;
    sync.export_templates(pb::ExportTemplatesRequest {
        set: "Rescan".to_owned(),
    })
    .await?;
    settle(&mut sync).await?;

    let mut walls = Vec::with_capacity(RESCAN_RUNS);
    let mut scanned = 0;
    for run in 0..=RESCAN_RUNS {
        let start = Instant::now();
        let response = sync.rescan(pb::RescanRequest {}).await?.into_inner();
        let wall = start.elapsed();
        if (response.imported, response.exported, response.conflicts) != (0, 0, 0) {
            return Err(
                format!("a rescan of unchanged files changed something: {response:?}").into(),
            );
        }
        scanned = response.scanned;
        // The first rescan is a warm-up.
        if run > 0 {
            walls.push(wall);
        }
    }
    walls.sort_unstable();
    let median = percentile(&walls, 0.50);
    println!(
        "Rescan of {RESCAN_FILES} unchanged files of {:.1} KiB in {RESCAN_GROUPS} directories \
         ({scanned} scanned), {RESCAN_RUNS} runs after one warm-up: median {:.0} ms, min {:.0} ms, max {:.0} ms",
        content.len() as f64 / 1024.0,
        millis(median),
        millis(walls[0]),
        millis(walls[walls.len() - 1]),
    );
    print_target(
        "median",
        median <= TARGET_RESCAN,
        &format!("<= {} ms", TARGET_RESCAN.as_millis()),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Shared
// ---------------------------------------------------------------------------

/// The sync root, as the daemon reports it.
async fn sync_root(sync: &mut Sync) -> Result<std::path::PathBuf, BoxError> {
    let status = sync.get_sync_status(pb::GetSyncStatusRequest {}).await?;
    Ok(status.into_inner().root.into())
}

/// Prints whether the target on `what` (`target` in words) is met.
fn print_target(what: &str, met: bool, target: &str) {
    println!("  {what} target {target}: {}", verdict(met));
}
