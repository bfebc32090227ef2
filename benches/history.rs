//! History benchmark (issue 22): what keeping every version in the history
//! repository costs the operations it records, how soon a version shows
//! up, and how fast one subject's versions are listed.
//!
//! Run with `cargo bench --bench history`. It starts release `outpostd`
//! processes on Unix sockets in a temporary directory, one with history on
//! and one with `--history off`, side by side, and prints:
//!
//! * the wall time of `ExportTemplates` for 1,000 new templates of about
//!   5 KiB, history on against off, median of several runs taking turns.
//!   The sets are put while both daemons run with history off, and the
//!   first daemon is then restarted with history on: otherwise each
//!   `PutTemplate` would already have kept its content and the export's
//!   commit would hold nothing new. So every export here commits 1,000 new
//!   files, the most an export can ask of the history. The file system
//!   is flushed before each export (the two daemons share it, and an
//!   export's `syncfs` writes out whatever anyone left), and the flush
//!   after each is timed: what the export, and its commit with history on,
//!   left for a later `fsync` or `syncfs` to write;
//! * how long the writer takes to commit such an export: from the
//!   export's return until `ListHistory` of one of its templates shows the
//!   export's commit;
//! * the latency from closing an edited file until its `IMPORTED` event on
//!   `WatchSyncEvents`, p50 and p99, history on against off, the two
//!   daemons taking turns edit by edit; and, with history on, how long
//!   after the `IMPORTED` event the file save shows up in `ListHistory`;
//! * the wall time of `ListHistory { limit: 1000 }` over 1,000 versions of
//!   one template (put through the API), median and p99, and of
//!   `git log --format=%H -- <path>` on the same repository: once on a
//!   repository holding the exports and edits above as well, once on a
//!   fresh one holding only those versions. It also prints how long the
//!   writer took to catch up with the 1,000 puts.
//!
//! Each target is printed as met or not; nothing here asserts on timing.

use outpost_bench_support as support;

use std::{
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use outpost::{
    endpoint::{AuthChannel, Connection},
    proto::v1::{self as pb, HistorySource, history_client::HistoryClient, history_subject},
};

use support::{
    BoxError, connect,
    report::{millis, percentile, verdict},
    runtime,
    server::{ServerProcess, daemon_command, daemon_socket},
    sync::{Sync, put_many, settle, wait_for_import, watch_imports},
};

/// Templates of each exported set.
const EXPORT_TEMPLATES: usize = 1000;
/// Exports measured on each daemon, each of a new set.
const EXPORT_RUNS: usize = 11;
/// Templates whose files are edited, in turn.
const EDIT_TEMPLATES: usize = 20;
/// Edits made on each daemon, unmeasured, before the measured ones.
const EDIT_WARM_UP: usize = 10;
/// Measured edits on each daemon.
const EDITS: usize = 200;
/// Versions of the one template whose history is listed.
const VERSIONS: usize = 1000;
/// Listings made, unmeasured, before the measured ones.
const LIST_WARM_UP: usize = 3;
/// Measured listings.
const LIST_CALLS: usize = 30;
/// Measured runs of `git log`.
const GIT_LOG_RUNS: usize = 10;
/// `--sync-debounce` of the daemons (the default, spelt out: the edit
/// latency is mostly this).
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How long a daemon may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `ListHistory` is asked whether one version has shown up (the
/// resolution of the commit latencies).
const POLL: Duration = Duration::from_millis(1);
/// How often `ListHistory` is asked whether all [`VERSIONS`] have shown
/// up: each such call lists up to 1,000 versions, so less often.
const POLL_ALL: Duration = Duration::from_millis(20);
/// How long the history may take to show what was recorded.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(300);

/// Target: history adds at most this fraction to the median export.
const TARGET_EXPORT_OVERHEAD: f64 = 0.10;
/// Target ("nothing measurable"): history on moves the edit latency's p50
/// by at most this (the run-to-run spread of the p50 on this machine).
const TARGET_EDIT_P50: Duration = Duration::from_millis(1);
/// Target: the median listing of [`VERSIONS`] versions.
const TARGET_LIST: Duration = Duration::from_millis(50);

/// A History client.
type History = HistoryClient<AuthChannel>;

/// Runs the benchmark, or the baseline server when re-executed as one.
fn main() -> ExitCode {
    support::run("history", bench)
}

/// Runs the whole benchmark and prints its results.
fn bench() -> Result<(), BoxError> {
    println!("load average at the start: {}", load_average());
    let dir = tempfile::tempdir()?;
    let runtime = runtime()?;
    let (on_dir, off_dir) = (dir.path().join("on"), dir.path().join("off"));

    // Both filled with history off, so that each export commits 1,000 new
    // files once history is on.
    let off = start_daemon(&off_dir, false)?;
    let filling = start_daemon(&on_dir, false)?;
    runtime.block_on(async {
        fill_exports(&daemon_socket(&on_dir)).await?;
        fill_exports(&daemon_socket(&off_dir)).await
    })?;
    drop(filling);
    let on = start_daemon(&on_dir, true)?;
    runtime.block_on(async {
        let on = Daemon::open(&on_dir).await?;
        let off = Daemon::open(&off_dir).await?;
        measure_exports(&on, &off).await?;
        measure_edits(&on, &off).await?;
        println!();
        measure_listing(&on, "on the repository holding the exports and edits above").await
    })?;
    drop((on, off));

    println!();
    let lone_dir = dir.path().join("lone");
    let lone = start_daemon(&lone_dir, true)?;
    runtime.block_on(async {
        let lone = Daemon::open(&lone_dir).await?;
        measure_listing(&lone, "on a fresh repository holding only them").await
    })?;
    drop(lone);
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// Starts a release `outpostd` with its data (and sync root) under `dir`,
/// history on or off.
fn start_daemon(dir: &Path, history: bool) -> Result<ServerProcess, BoxError> {
    let mut command = daemon_command(env!("CARGO_BIN_EXE_outpostd"), dir);
    command
        .arg("--sync-debounce")
        .arg(format!("{}ms", DEBOUNCE.as_millis()))
        .args(["--history", if history { "on" } else { "off" }]);
    ServerProcess::start("outpostd", command, STOP_TIMEOUT)
}

/// The clients of one running daemon, and where it keeps things.
struct Daemon {
    connection: Connection,
    sync: Sync,
    history: History,
    /// The sync root.
    root: PathBuf,
    /// The history repository (empty when history is off).
    repository: PathBuf,
}

impl Daemon {
    /// Connects to the daemon whose data directory is `dir`.
    async fn open(dir: &Path) -> Result<Self, BoxError> {
        let connection = connect(&daemon_socket(dir)).await?;
        let mut sync = connection.sync();
        let root = sync
            .get_sync_status(pb::GetSyncStatusRequest {})
            .await?
            .into_inner()
            .root
            .into();
        let repository = connection
            .orchestrator()
            .get_daemon_status(pb::GetDaemonStatusRequest {})
            .await?
            .into_inner()
            .history_path
            .into();
        Ok(Self {
            history: connection.history(),
            connection,
            sync,
            root,
            repository,
        })
    }

    /// The newest version of template `set`/`title`, if it has one.
    async fn newest(&self, set: &str, title: &str) -> Result<Option<pb::HistoryVersion>, BoxError> {
        Ok(self.list(set, title, 1).await?.into_iter().next())
    }

    /// Up to `limit` versions of template `set`/`title`, newest first.
    async fn list(
        &self,
        set: &str,
        title: &str,
        limit: u32,
    ) -> Result<Vec<pb::HistoryVersion>, BoxError> {
        let subject = pb::HistorySubject {
            subject: Some(history_subject::Subject::Template(pb::TemplateKey {
                set: set.to_owned(),
                title: title.to_owned(),
            })),
        };
        Ok(self
            .history
            .clone()
            .list_history(pb::ListHistoryRequest {
                subject: Some(subject),
                limit,
            })
            .await?
            .into_inner()
            .versions)
    }

    /// Asks every [`POLL`] until the newest version of `set`/`title` is one
    /// `wanted` accepts, and returns when it saw it; fails after
    /// [`HISTORY_TIMEOUT`].
    async fn wait_for_version(
        &self,
        set: &str,
        title: &str,
        wanted: impl Fn(&pb::HistoryVersion) -> bool,
    ) -> Result<(Instant, pb::HistoryVersion), BoxError> {
        let deadline = Instant::now() + HISTORY_TIMEOUT;
        loop {
            if let Some(version) = self.newest(set, title).await?
                && wanted(&version)
            {
                return Ok((Instant::now(), version));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the awaited version of {set}/{title} not in the history after {HISTORY_TIMEOUT:?}"
                )
                .into());
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The content of template `i` of set `set`: about 5 KiB.
fn content(set: &str, i: usize) -> String {
    format!(
        "<!-- {set}, template {i} -->\n{}\n",
        "<div class=\"post\">{$post['message']}</div>\n".repeat(120)
    )
}

/// The name of exported set `run`.
fn export_set(run: usize) -> String {
    format!("Export{run}")
}

/// The title of exported template `i`.
fn export_title(i: usize) -> String {
    format!("t_{i:04}")
}

/// The load average, as /proc/loadavg has it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |err| format!("unknown ({err})"),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

// ---------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------

/// Puts the [`EXPORT_RUNS`] sets of [`EXPORT_TEMPLATES`] templates into the
/// daemon at `socket`.
async fn fill_exports(socket: &Path) -> Result<(), BoxError> {
    let mut sync = connect(socket).await?.sync();
    for run in 0..EXPORT_RUNS {
        let set = export_set(run);
        put_many(&mut sync, &set, EXPORT_TEMPLATES, |i| {
            (export_title(i), content(&set, i))
        })
        .await?;
    }
    settle(&mut sync).await
}

/// Exports each set on both daemons, taking turns, and times each export;
/// on `on`, also the time until its commit is listed. After each, times
/// a flush of the file system: what the export (and, with history on,
/// its commit) left for a later `fsync` or `syncfs` to write. Prints the
/// figures.
async fn measure_exports(on: &Daemon, off: &Daemon) -> Result<(), BoxError> {
    let mut walls = [Vec::new(), Vec::new()];
    let mut flushes = [Vec::new(), Vec::new()];
    let mut commits = Vec::new();
    // Each run's two walls (on, off), taken one right after the other.
    let mut pairs = Vec::with_capacity(EXPORT_RUNS);
    let last = export_title(EXPORT_TEMPLATES - 1);
    for run in 0..EXPORT_RUNS {
        let set = export_set(run);
        let mut pair = [Duration::ZERO; 2];
        // The first in a run may find the machine quieter: alternate.
        for history in [run % 2 == 0, run % 2 == 1] {
            let (daemon, side) = if history { (on, 0) } else { (off, 1) };
            let wall = export(daemon, &set).await?;
            walls[side].push(wall);
            if history {
                let returned = Instant::now();
                let (seen, _) = daemon
                    .wait_for_version(&set, &last, |version| {
                        version.source == HistorySource::Export as i32
                    })
                    .await?;
                commits.push(seen - returned);
            }
            flushes[side].push(flush(&daemon.root)?);
            pair[side] = wall;
        }
        pairs.push(pair);
    }
    for figures in walls.iter_mut().chain(&mut flushes) {
        figures.sort_unstable();
    }
    commits.sort_unstable();
    println!(
        "ExportTemplates of {EXPORT_TEMPLATES} new templates of {:.1} KiB, {EXPORT_RUNS} runs each, \
         the daemons taking turns, each export from a flushed file system:",
        content("Export0", 0).len() as f64 / 1024.0
    );
    for (label, side) in [("history on ", 0), ("history off", 1)] {
        let walls = &walls[side];
        println!(
            "  {label}: median {:.0} ms, min {:.0} ms, max {:.0} ms; \
             then `sync -f` (what is left to write): median {:.0} ms",
            millis(percentile(walls, 0.5)),
            millis(walls[0]),
            millis(walls[walls.len() - 1]),
            millis(percentile(&flushes[side], 0.5)),
        );
    }
    let overhead =
        percentile(&walls[0], 0.5).as_secs_f64() / percentile(&walls[1], 0.5).as_secs_f64() - 1.0;
    println!(
        "  history adds {:+.1} % to the median (target <= {:.0} %): {}; \
         median of the runs' own on/off ratios {:+.1} %",
        overhead * 100.0,
        TARGET_EXPORT_OVERHEAD * 100.0,
        verdict(overhead <= TARGET_EXPORT_OVERHEAD),
        (median_ratio(&pairs) - 1.0) * 100.0,
    );
    println!(
        "  export returned -> its commit of {EXPORT_TEMPLATES} files listed: median {:.0} ms, \
         min {:.0} ms, max {:.0} ms",
        millis(percentile(&commits, 0.5)),
        millis(commits[0]),
        millis(commits[commits.len() - 1]),
    );
    Ok(())
}

/// The median of the ratios on/off of `pairs` (on, off): each run's two
/// exports share the machine's moment, so their ratio moves less with
/// the load than the ratio of the medians does.
fn median_ratio(pairs: &[[Duration; 2]]) -> f64 {
    let mut ratios: Vec<f64> = pairs
        .iter()
        .map(|[on, off]| on.as_secs_f64() / off.as_secs_f64())
        .collect();
    ratios.sort_unstable_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// Flushes the file system holding `dir` (`sync -f`, a `syncfs`) and
/// says how long it took.
fn flush(dir: &Path) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let status = Command::new("sync")
        .arg("-f")
        .arg(dir)
        .status()
        .map_err(|err| format!("cannot run sync: {err}"))?;
    if !status.success() {
        return Err(format!("sync -f {} failed: {status}", dir.display()).into());
    }
    Ok(start.elapsed())
}

/// Times one `ExportTemplates` of `set`, after the daemon has settled and
/// the file system was flushed; checks that every template was written.
async fn export(daemon: &Daemon, set: &str) -> Result<Duration, BoxError> {
    let mut sync = daemon.sync.clone();
    settle(&mut sync).await?;
    // What others left unwritten is not this export's to write.
    flush(&daemon.root)?;
    let start = Instant::now();
    let summary = sync
        .export_templates(pb::ExportTemplatesRequest {
            set: set.to_owned(),
        })
        .await?
        .into_inner()
        .summary
        .ok_or("ExportTemplates returned no summary")?;
    let wall = start.elapsed();
    if summary.written as usize != EXPORT_TEMPLATES {
        return Err(format!(
            "export of {set} wrote {} files: {summary:?}",
            summary.written
        )
        .into());
    }
    Ok(wall)
}

// ---------------------------------------------------------------------------
// File save → database, and → history
// ---------------------------------------------------------------------------

/// The set whose files are edited.
const EDIT_SET: &str = "Edits";

/// The title of edited template `i`.
fn edit_title(i: usize) -> String {
    format!("edit_{i:02}")
}

/// Edits the files of [`EDIT_TEMPLATES`] mirrored templates in turn on
/// both daemons, taking turns edit by edit, and times each from the
/// file's close to its `IMPORTED` event; on `on`, also from that event
/// until the file save is listed. Prints the figures.
async fn measure_edits(on: &Daemon, off: &Daemon) -> Result<(), BoxError> {
    let mut streams = Vec::new();
    for daemon in [on, off] {
        let mut sync = daemon.sync.clone();
        put_many(&mut sync, EDIT_SET, EDIT_TEMPLATES, |i| {
            (edit_title(i), content(EDIT_SET, i))
        })
        .await?;
        sync.export_templates(pb::ExportTemplatesRequest {
            set: EDIT_SET.to_owned(),
        })
        .await?;
        settle(&mut sync).await?;
        streams.push(watch_imports(&daemon.connection).await?);
    }
    // The revision each template's history ends at, once the puts are in.
    let mut newest = Vec::with_capacity(EDIT_TEMPLATES);
    for i in 0..EDIT_TEMPLATES {
        let (_, version) = on
            .wait_for_version(EDIT_SET, &edit_title(i), |_| true)
            .await?;
        newest.push(version.rev);
    }

    let (mut on_latencies, mut off_latencies, mut commits) = (Vec::new(), Vec::new(), Vec::new());
    for edit in 0..EDIT_WARM_UP + EDITS {
        let i = edit % EDIT_TEMPLATES;
        let title = edit_title(i);
        let measured = edit >= EDIT_WARM_UP;
        for history in [edit % 2 == 0, edit % 2 == 1] {
            let (daemon, imports) = if history {
                (on, &mut streams[0])
            } else {
                (off, &mut streams[1])
            };
            let path = daemon
                .root
                .join("templates")
                .join(EDIT_SET)
                .join("edit")
                .join(format!("{title}.html"));
            let text = format!("<!-- edit {edit} -->\n{}", content(EDIT_SET, i));
            // Rewritten in place: truncate, write, close.
            let mut file = OpenOptions::new().write(true).truncate(true).open(&path)?;
            file.write_all(text.as_bytes())?;
            drop(file);
            let closed = Instant::now();
            wait_for_import(imports, &title).await?;
            let imported = Instant::now();
            if !history {
                if measured {
                    off_latencies.push(imported - closed);
                }
                continue;
            }
            let before = std::mem::take(&mut newest[i]);
            let (seen, version) = daemon
                .wait_for_version(EDIT_SET, &title, |version| {
                    version.rev != before && version.source == HistorySource::FileSave as i32
                })
                .await?;
            newest[i] = version.rev;
            if measured {
                on_latencies.push(imported - closed);
                commits.push(seen - imported);
            }
        }
    }
    for latencies in [&mut on_latencies, &mut off_latencies, &mut commits] {
        latencies.sort_unstable();
    }
    println!(
        "in-place edit (truncate, write, close) -> IMPORTED event, {EDITS} edits on each daemon, \
         taking turns, --sync-debounce {}ms:",
        DEBOUNCE.as_millis()
    );
    for (label, latencies) in [
        ("history on ", &on_latencies),
        ("history off", &off_latencies),
    ] {
        println!(
            "  {label}: p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
            millis(percentile(latencies, 0.50)),
            millis(percentile(latencies, 0.99)),
            millis(latencies[0]),
            millis(latencies[latencies.len() - 1]),
        );
    }
    let p50_on = percentile(&on_latencies, 0.50);
    let p50_off = percentile(&off_latencies, 0.50);
    let moved = p50_on.abs_diff(p50_off);
    println!(
        "  history moves the p50 by {:+.1} ms, the p99 by {:+.1} ms (target p50 within {} ms): {}",
        millis(p50_on) - millis(p50_off),
        millis(percentile(&on_latencies, 0.99)) - millis(percentile(&off_latencies, 0.99)),
        TARGET_EDIT_P50.as_millis(),
        verdict(moved <= TARGET_EDIT_P50)
    );
    println!(
        "  IMPORTED event -> the file save listed by ListHistory: p50 {:.1} ms, p99 {:.1} ms, \
         min {:.1} ms, max {:.1} ms (asked every {} ms)",
        millis(percentile(&commits, 0.50)),
        millis(percentile(&commits, 0.99)),
        millis(commits[0]),
        millis(commits[commits.len() - 1]),
        POLL.as_millis(),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------

/// The set and title of the template with [`VERSIONS`] versions.
const VERSIONED: (&str, &str) = ("Versions", "versioned");

/// Puts [`VERSIONS`] versions of one template into `daemon`, one after
/// another, waits until they are all listed, then times listings of them
/// and `git log` of its path; `label` says which repository this is.
/// Prints the figures.
async fn measure_listing(daemon: &Daemon, label: &str) -> Result<(), BoxError> {
    let (set, title) = VERSIONED;
    let mut sync = daemon.sync.clone();
    let started = Instant::now();
    for i in 0..VERSIONS {
        sync.put_template(pb::PutTemplateRequest {
            key: Some(pb::TemplateKey {
                set: set.to_owned(),
                title: title.to_owned(),
            }),
            content: format!("<!-- version {i} -->\n{}", content(set, 0)),
            expected_version: None,
        })
        .await?;
    }
    let put = started.elapsed();
    let deadline = Instant::now() + HISTORY_TIMEOUT;
    let limit = VERSIONS as u32;
    let path = loop {
        let versions = daemon.list(set, title, limit).await?;
        if versions.len() == VERSIONS {
            break versions[0].path.clone();
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} of {VERSIONS} versions listed after {HISTORY_TIMEOUT:?}",
                versions.len()
            )
            .into());
        }
        tokio::time::sleep(POLL_ALL).await;
    };
    let listed = started.elapsed();
    println!("{VERSIONS} versions of one template, {label}:");
    println!(
        "  {VERSIONS} PutTemplate calls one after another took {:.0} ms; all listed {:.0} ms \
         after the first call, {:.0} ms after the last returned (asked every {} ms)",
        millis(put),
        millis(listed),
        millis(listed - put),
        POLL_ALL.as_millis(),
    );

    let mut walls = Vec::with_capacity(LIST_CALLS);
    for call in 0..LIST_WARM_UP + LIST_CALLS {
        let start = Instant::now();
        let versions = daemon.list(set, title, limit).await?;
        let wall = start.elapsed();
        if versions.len() != VERSIONS {
            return Err(format!("ListHistory listed {} versions", versions.len()).into());
        }
        if call >= LIST_WARM_UP {
            walls.push(wall);
        }
    }
    walls.sort_unstable();
    let median = percentile(&walls, 0.50);
    println!(
        "  ListHistory {{ limit: {limit} }}, {LIST_CALLS} calls after {LIST_WARM_UP} unmeasured: \
         median {:.1} ms, p99 {:.1} ms, min {:.1} ms (target median <= {} ms): {}",
        millis(median),
        millis(percentile(&walls, 0.99)),
        millis(walls[0]),
        TARGET_LIST.as_millis(),
        verdict(median <= TARGET_LIST),
    );

    let mut walls = Vec::with_capacity(GIT_LOG_RUNS);
    for _ in 0..GIT_LOG_RUNS {
        walls.push(git_log(&daemon.repository, &path)?);
    }
    walls.sort_unstable();
    println!(
        "  git log --format=%H -- {path}, {GIT_LOG_RUNS} runs: median {:.1} ms, max {:.1} ms, \
         min {:.1} ms (same repository, for comparison)",
        millis(percentile(&walls, 0.50)),
        millis(walls[walls.len() - 1]),
        millis(walls[0]),
    );
    Ok(())
}

/// Times one `git log --format=%H -- path` in `repository`; checks that
/// it names [`VERSIONS`] commits.
fn git_log(repository: &Path, path: &str) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let output = Command::new("git")
        .arg("--git-dir")
        .arg(repository)
        .args(["log", "--format=%H", "--", path])
        .output()
        .map_err(|err| format!("cannot run git: {err}"))?;
    let wall = start.elapsed();
    if !output.status.success() {
        return Err(format!(
            "git log failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let commits = output
        .stdout
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .count();
    if commits != VERSIONS {
        return Err(format!("git log named {commits} commits of {path}, not {VERSIONS}").into());
    }
    Ok(wall)
}
