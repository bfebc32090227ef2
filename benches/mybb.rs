//! MyBB store benchmark (issue 17): how fast `outpostd --mybb` writes a
//! forum's template set to disk, how soon a saved file reaches the forum's
//! database and a row changed in the database reaches its file, and what
//! polling an idle forum costs.
//!
//! Run with `cargo bench --bench mybb`. It starts a private MariaDB server
//! (`tests/support/mariadb.rs`: its own data directory and socket, strict
//! SQL mode) holding a synthetic MyBB 1.8 forum with 974 master templates,
//! MyBB's real count, and one set, "Default Templates", that inherits
//! them. Release `outpostd` processes sync with it over the socket as the
//! forum's own account (`--mybb` on the forum's directory, the database
//! URL in `OUTPOST_MYBB_DATABASE`), with `--sync-debounce 100ms` and
//! `--mybb-poll 1s` (both the defaults, spelt out because targets depend
//! on them), each with its data directory, socket and sync root in a
//! temporary directory. It prints:
//!
//! * the wall time of `ExportTemplates` of "Default Templates" (974 files,
//!   durable), median of several runs; each run is a new daemon with an
//!   empty sync root, so every file is really written;
//! * on the last of those daemons, the latency from closing a template's
//!   file rewritten in place (truncate, write, close) until the `IMPORTED`
//!   event of that template arrives on `WatchSyncEvents` (published after
//!   the database write returned), p50 and p99 over 100 edits made one
//!   after another;
//! * the latency from an `UPDATE` of a template's row (new `template` and
//!   `dateline`, as MyBB's admin panel saves one), sent over a connection
//!   the benchmark keeps open, until the `EXPORTED` event of that template
//!   arrives (the file is then checked to hold the new content), p50, p99
//!   and max over 50 edits. Each edit waits a different fraction of the
//!   poll interval first, so that edits fall evenly over the poll's phase.
//!   Beside them: the part of each latency after the poll that found the
//!   change (the event's arrival less `last_poll_at` of `GetSyncStatus`,
//!   read right after it), and the five slowest edits with that part;
//! * with the set exported and nothing changing for 20 s: the daemon's CPU
//!   time (`/proc/PID/stat`) in percent of one core, the statements it
//!   sent per poll (the server's `Questions` and `Com_select` counters,
//!   read before and after from the benchmark's connection, less what that
//!   reading itself adds) and the MariaDB server's CPU time.
//!
//! Between measurements the benchmark waits until the daemon reports no
//! dirty path. Each target is printed as met or not; nothing here asserts
//! on timing. Without MariaDB installed it measures nothing and says so
//! (with `OUTPOST_REQUIRE_REAL` set, the harness fails instead).

use outpost_bench_support as support;

use outpost_test_support::mariadb;

use std::{
    collections::BTreeMap,
    fs::{self, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use outpost::{
    endpoint::Connection,
    proto::v1::{self as pb, SyncEventKind, content_key, watch_sync_events_response::Payload},
};
use sqlx::{AssertSqlSafe, Connection as _, MySqlConnection, Row, mysql::MySqlConnectOptions};
use tokio::time::timeout;
use tonic::Streaming;

use mariadb::{Forum, ForumSpec, MariaDb, SqlMode};
use support::{
    BoxError, connect,
    kernel::{CpuTimes, cpu_use},
    report::{millis, percentile, verdict},
    runtime,
    server::{ServerProcess, daemon_command, daemon_socket},
    sync::{EVENT_TIMEOUT, Sync, settle},
};

/// Master templates of the forum: MyBB 1.8's real count.
const MASTER_TEMPLATES: usize = 974;
/// The forum's template set, which inherits every master template.
const SET: &str = "Default Templates";
/// Exports measured, each by a new daemon into an empty sync root.
const EXPORT_RUNS: usize = 5;
/// Templates whose files, then rows, are edited in turn.
const EDIT_TEMPLATES: usize = 20;
/// File edits made, unmeasured, before the measured ones: one per
/// template, whose first save inserts the set's own row (later saves
/// update it, as most saves in MyBB do).
const EDIT_WARM_UP: usize = EDIT_TEMPLATES;
/// Measured file edits.
const EDITS: usize = 100;
/// Database edits made, unmeasured, before the measured ones.
const DB_EDIT_WARM_UP: usize = 2;
/// Measured database edits.
const DB_EDITS: usize = 50;
/// How long the daemon is left idle while its cost is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(20);
/// The tables the poller watches: templates, templatesets,
/// templategroups, themes, themestylesheets.
const POLLED_TABLES: u64 = 5;
/// `--sync-debounce` of the daemons (the default).
const DEBOUNCE: Duration = Duration::from_millis(100);
/// `--mybb-poll` of the daemons (the default).
const POLL: Duration = Duration::from_secs(1);
/// How long a daemon may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The `version` column MyBB 1.8.37's admin panel writes.
const VERSION_CODE: &str = "1837";

/// Target: median export of the set.
const TARGET_EXPORT: Duration = Duration::from_secs(1);
/// Target: p50 file save → `IMPORTED` at most the debounce plus this.
const TARGET_EDIT_OVER_DEBOUNCE: Duration = Duration::from_millis(30);
/// Target: database edit → file at most the poll interval plus this.
const TARGET_DB_OVER_POLL: Duration = Duration::from_millis(100);
/// Target: idle CPU of the daemon, percent of one core (below).
const TARGET_IDLE_CPU: f64 = 0.5;
/// Target: statements per poll, one per polled table at most.
const TARGET_STATEMENTS_PER_POLL: u64 = POLLED_TABLES;

/// Runs the benchmark.
fn main() -> ExitCode {
    support::run("mybb", bench)
}

/// Starts the database and the daemons, runs every measurement and prints
/// the results.
fn bench() -> Result<(), BoxError> {
    let Some(db) = MariaDb::start(SqlMode::Strict) else {
        println!("MariaDB is not installed: nothing measured");
        return Ok(());
    };
    let forum = db.create_forum(&ForumSpec {
        master_templates: MASTER_TEMPLATES,
        ..ForumSpec::default()
    });
    let dir = tempfile::tempdir()?;
    let forum_root = dir.path().join("forum");
    forum.write_root(&forum_root, "localhost");
    let url = forum.socket_url(&db);
    let runtime = runtime()?;
    let mut sql = runtime.block_on(connect_sql(&forum, &db))?;
    println!(
        "MariaDB {} on a socket, forum {:?} with {MASTER_TEMPLATES} master templates; \
         daemons with --sync-debounce {}ms --mybb-poll {}ms",
        runtime.block_on(server_version(&mut sql))?,
        forum.database,
        DEBOUNCE.as_millis(),
        POLL.as_millis()
    );

    let mut walls = Vec::with_capacity(EXPORT_RUNS);
    let mut reported = Vec::with_capacity(EXPORT_RUNS);
    let mut last = None;
    for run in 0..EXPORT_RUNS {
        let data = dir.path().join(format!("daemon{run}"));
        let daemon = start_daemon(&data, &forum_root, &url)?;
        let (wall, own) = runtime.block_on(export(&daemon_socket(&data)))?;
        walls.push(wall);
        reported.push(own);
        last = Some((daemon, data));
    }
    print_exports(walls, reported);

    let (daemon, data) = last.ok_or("no export ran")?;
    runtime.block_on(async {
        let connection = connect(&daemon_socket(&data)).await?;
        let mut sync = connection.sync();
        let edited = pick_templates(&mut sync).await?;
        measure_file_edits(&connection, &mut sync, &edited, &forum, &mut sql).await?;
        measure_db_edits(&connection, &mut sync, &edited, &forum, &mut sql).await?;
        measure_idle(&mut sync, daemon.pid(), &mut sql).await
    })?;
    drop(daemon);
    Ok(())
}

/// Starts a release `outpostd` syncing with the forum at `forum_root`
/// through `url`, its data (and sync root) under `dir`.
fn start_daemon(dir: &Path, forum_root: &Path, url: &str) -> Result<ServerProcess, BoxError> {
    let mut command = daemon_command(env!("CARGO_BIN_EXE_outpostd"), dir);
    command
        .arg("--mybb")
        .arg(forum_root)
        .arg("--sync-debounce")
        .arg(format!("{}ms", DEBOUNCE.as_millis()))
        .arg("--mybb-poll")
        .arg(format!("{}ms", POLL.as_millis()))
        // In the environment, not the arguments: a URL given as an
        // argument makes the daemon run itself again to hide it.
        .env("OUTPOST_MYBB_DATABASE", url);
    ServerProcess::start("outpostd", command, STOP_TIMEOUT)
}

// ---------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------

/// Waits until the new daemon at `socket` has polled the forum and
/// settled, then times one `ExportTemplates` of [`SET`]; returns the wall
/// time and the daemon's own `elapsed`.
async fn export(socket: &Path) -> Result<(Duration, Duration), BoxError> {
    let connection = connect(socket).await?;
    let mut sync = connection.sync();
    wait_for_first_poll(&mut sync).await?;
    settle(&mut sync).await?;
    let start = Instant::now();
    let summary = sync
        .export_templates(pb::ExportTemplatesRequest {
            set: SET.to_owned(),
        })
        .await?
        .into_inner()
        .summary
        .ok_or("ExportTemplates returned no summary")?;
    let wall = start.elapsed();
    if summary.written as usize != MASTER_TEMPLATES {
        return Err(format!(
            "the export of {SET:?} wrote {} files, not {MASTER_TEMPLATES}: {summary:?}",
            summary.written
        )
        .into());
    }
    let root = sync_root(&mut sync).await?;
    let files = count_files(&root.join("templates").join(SET))?;
    if files != MASTER_TEMPLATES {
        return Err(
            format!("{files} files on disk after the export, not {MASTER_TEMPLATES}").into(),
        );
    }
    settle(&mut sync).await?;
    Ok((
        wall,
        Duration::try_from(summary.elapsed.unwrap_or_default())?,
    ))
}

/// Prints the export figures.
fn print_exports(mut walls: Vec<Duration>, mut reported: Vec<Duration>) {
    let in_order: Vec<String> = walls
        .iter()
        .map(|wall| format!("{:.0}", millis(*wall)))
        .collect();
    walls.sort_unstable();
    reported.sort_unstable();
    let median = percentile(&walls, 0.50);
    println!(
        "ExportTemplates of {SET:?} ({MASTER_TEMPLATES} templates), {EXPORT_RUNS} runs, \
         each a new daemon and an empty sync root: median {:.0} ms, min {:.0} ms, max {:.0} ms \
         (the daemon's own elapsed: median {:.0} ms); in run order: {} ms",
        millis(median),
        millis(walls[0]),
        millis(walls[walls.len() - 1]),
        millis(percentile(&reported, 0.50)),
        in_order.join(", "),
    );
    print_target(
        "median",
        median <= TARGET_EXPORT,
        &format!("<= {} ms", TARGET_EXPORT.as_millis()),
    );
}

/// The files under `dir`, recursively.
fn count_files(dir: &Path) -> Result<usize, BoxError> {
    let mut count = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            count += count_files(&entry.path())?;
        } else {
            count += 1;
        }
    }
    Ok(count)
}

// ---------------------------------------------------------------------------
// File save → row
// ---------------------------------------------------------------------------

/// A template edited in turn: its title, file and content as exported.
struct Edited {
    title: String,
    path: PathBuf,
    original: String,
}

/// [`EDIT_TEMPLATES`] templates of the exported set, spread over its
/// titles (and so over its groups), with their files.
async fn pick_templates(sync: &mut Sync) -> Result<Vec<Edited>, BoxError> {
    let root = sync_root(sync).await?;
    let templates = sync
        .list_templates(pb::ListTemplatesRequest {
            set: SET.to_owned(),
            include_content: true,
        })
        .await?
        .into_inner()
        .templates;
    let step = (templates.len() / EDIT_TEMPLATES).max(1);
    let mut edited = Vec::with_capacity(EDIT_TEMPLATES);
    for template in templates.into_iter().step_by(step).take(EDIT_TEMPLATES) {
        let title = template.key.ok_or("a template without a key")?.title;
        let path = root
            .join("templates")
            .join(SET)
            .join(&template.group)
            .join(format!("{title}.html"));
        if !path.is_file() {
            return Err(format!("no file {} for template {title:?}", path.display()).into());
        }
        edited.push(Edited {
            title,
            path,
            original: template.content,
        });
    }
    if edited.len() < EDIT_TEMPLATES {
        return Err(format!("only {} templates to edit", edited.len()).into());
    }
    Ok(edited)
}

/// Rewrites the files of `edited` in place one at a time, in turn, timing
/// each from the file's close to its `IMPORTED` event; checks that the
/// rows hold the last content written and prints the figures.
async fn measure_file_edits(
    connection: &Connection,
    sync: &mut Sync,
    edited: &[Edited],
    forum: &Forum,
    sql: &mut MySqlConnection,
) -> Result<(), BoxError> {
    settle(sync).await?;
    let mut imports = watch_events(connection, SyncEventKind::Imported).await?;
    let mut last_content = BTreeMap::new();
    let mut latencies = Vec::with_capacity(EDITS);
    for edit in 0..EDIT_WARM_UP + EDITS {
        let template = &edited[edit % edited.len()];
        // Without a trailing newline: MyBB stores content rtrimmed.
        let content = format!("{}\n<!-- file edit {edit} -->", template.original);
        // Rewritten in place: truncate, write, close.
        let mut file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&template.path)?;
        file.write_all(content.as_bytes())?;
        drop(file);
        let closed = Instant::now();
        wait_for_event(&mut imports, SyncEventKind::Imported, &template.title).await?;
        if edit >= EDIT_WARM_UP {
            latencies.push(closed.elapsed());
        }
        last_content.insert(template.title.clone(), content);
    }
    for (title, content) in &last_content {
        let row = own_row(sql, forum, title).await?;
        if row.as_ref().map(|(_, template)| template) != Some(content) {
            return Err(format!("the row of {title:?} does not hold its file's content").into());
        }
    }
    latencies.sort_unstable();
    let p50 = percentile(&latencies, 0.50);
    println!(
        "in-place file edit (truncate, write, close) -> IMPORTED event (row written), \
         {EDITS} edits one after another: p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
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
// Database edit → file
// ---------------------------------------------------------------------------

/// Updates the rows of `edited` (each has its set's own row after the file
/// edits) one at a time, in turn, as MyBB's admin panel saves a template,
/// timing each from the `UPDATE`'s return to the template's `EXPORTED`
/// event; checks each file and prints the figures.
async fn measure_db_edits(
    connection: &Connection,
    sync: &mut Sync,
    edited: &[Edited],
    forum: &Forum,
    sql: &mut MySqlConnection,
) -> Result<(), BoxError> {
    settle(sync).await?;
    let mut tids = Vec::with_capacity(edited.len());
    for template in edited {
        let (tid, _) = own_row(sql, forum, &template.title)
            .await?
            .ok_or_else(|| format!("{:?} has no row of its set", template.title))?;
        tids.push(tid);
    }
    let update = format!(
        "UPDATE {} SET template = ?, version = ?, status = '', dateline = ? WHERE tid = ?",
        forum.table("templates")
    );
    let mut exports = watch_events(connection, SyncEventKind::Exported).await?;
    let mut latencies = Vec::with_capacity(DB_EDITS);
    let mut after_polls = Vec::with_capacity(DB_EDITS);
    // Each measured edit's latency, and its part after the poll if known.
    let mut edits = Vec::with_capacity(DB_EDITS);
    for edit in 0..DB_EDIT_WARM_UP + DB_EDITS {
        let i = edit % edited.len();
        let template = &edited[i];
        // Spread the edits over the poll's phase (golden-ratio steps): an
        // edit made right after the previous export would always land just
        // after a poll and wait a whole interval.
        let phase = (edit as f64 * 0.618_033_988_75).fract();
        tokio::time::sleep(POLL.mul_f64(phase)).await;
        let content = format!("{}\n<!-- database edit {edit} -->", template.original);
        let result = sqlx::query(AssertSqlSafe(update.clone()))
            .bind(&content)
            .bind(VERSION_CODE)
            .bind(unix_now())
            .bind(tids[i])
            .execute(&mut *sql)
            .await?;
        if result.rows_affected() != 1 {
            return Err(format!("the UPDATE of {:?} changed no row", template.title).into());
        }
        let updated = Instant::now();
        wait_for_event(&mut exports, SyncEventKind::Exported, &template.title).await?;
        let latency = updated.elapsed();
        let arrived = SystemTime::now();
        let on_disk = fs::read_to_string(&template.path)?;
        if on_disk.trim_end() != content {
            return Err(format!("{} does not hold the new row", template.path.display()).into());
        }
        if edit >= DB_EDIT_WARM_UP {
            latencies.push(latency);
            // From the end of the poll that found the change to the event,
            // when no later poll ended meanwhile.
            let status = sync
                .get_sync_status(pb::GetSyncStatusRequest {})
                .await?
                .into_inner();
            let after_poll = status
                .backend
                .and_then(|backend| backend.last_poll_at)
                .and_then(|at| {
                    let seconds = u64::try_from(at.seconds).ok()?;
                    Some(UNIX_EPOCH + Duration::new(seconds, u32::try_from(at.nanos).ok()?))
                })
                .and_then(|polled| arrived.duration_since(polled).ok())
                .filter(|after| *after < latency);
            after_polls.extend(after_poll);
            edits.push((latency, after_poll));
        }
    }
    edits.sort_unstable_by_key(|(latency, _)| std::cmp::Reverse(*latency));
    latencies.sort_unstable();
    after_polls.sort_unstable();
    let (p99, max) = (percentile(&latencies, 0.99), latencies[latencies.len() - 1]);
    println!(
        "UPDATE of a template row -> EXPORTED event (file written), {DB_EDITS} edits spread over \
         the poll's phase: p50 {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms; \
         from the end of the poll that saw it: p50 {:.1} ms, max {:.1} ms ({} of {DB_EDITS} edits)",
        millis(percentile(&latencies, 0.50)),
        millis(p99),
        millis(latencies[0]),
        millis(max),
        millis(percentile(&after_polls, 0.50)),
        millis(after_polls.last().copied().unwrap_or_default()),
        after_polls.len(),
    );
    let slowest: Vec<String> = edits
        .iter()
        .take(5)
        .map(|(latency, after)| match after {
            Some(after) => format!(
                "{:.0} ms ({:.0} ms after the poll)",
                millis(*latency),
                millis(*after)
            ),
            None => format!("{:.0} ms", millis(*latency)),
        })
        .collect();
    println!("  slowest: {}", slowest.join(", "));
    let target = POLL + TARGET_DB_OVER_POLL;
    let words = format!(
        "<= poll + {} ms = {} ms",
        TARGET_DB_OVER_POLL.as_millis(),
        target.as_millis()
    );
    print_target("p99", p99 <= target, &words);
    print_target("max", max <= target, &words);
    Ok(())
}

// ---------------------------------------------------------------------------
// Idle
// ---------------------------------------------------------------------------

/// The server's statement counters this benchmark reads.
const COUNTERS: [&str; 4] = [
    "Questions",
    "Com_select",
    "Com_stmt_execute",
    "Com_stmt_prepare",
];

/// Leaves the daemon `pid` idle for [`IDLE_WINDOW`] with the set exported;
/// prints its CPU use, the statements it sent per poll and the server's
/// CPU use.
async fn measure_idle(
    sync: &mut Sync,
    pid: u32,
    sql: &mut MySqlConnection,
) -> Result<(), BoxError> {
    settle(sync).await?;
    // Let the polls after the last edit find what it changed.
    tokio::time::sleep(POLL * 3).await;
    settle(sync).await?;
    let server_pid = server_pid(sql).await?;
    // What reading the counters adds by itself.
    let first = counters(sql).await?;
    let own = difference(&counters(sql).await?, &first);

    let before = counters(sql).await?;
    let server_before = CpuTimes::of(server_pid)?;
    let start = Instant::now();
    let cpu = cpu_use(pid, IDLE_WINDOW).await?;
    let server_used = CpuTimes::of(server_pid)?.since(server_before).own;
    let elapsed = start.elapsed();
    let after = counters(sql).await?;
    let sent: Vec<u64> = difference(&after, &before)
        .iter()
        .zip(&own)
        .map(|(delta, own)| delta.saturating_sub(*own))
        .collect();
    let polls = (elapsed.as_secs_f64() / POLL.as_secs_f64())
        .round()
        .max(1.0);

    let window = IDLE_WINDOW.as_secs();
    cpu.print(&format!("daemon CPU over {window} s idle"));
    print_target(
        "idle CPU",
        cpu.percent < TARGET_IDLE_CPU,
        &format!("< {TARGET_IDLE_CPU} % of one core"),
    );
    let per_poll: Vec<String> = COUNTERS
        .iter()
        .zip(&sent)
        .map(|(name, count)| format!("{name} {count} ({:.2}/poll)", *count as f64 / polls))
        .collect();
    println!(
        "statements the daemon sent over {window} s idle ({polls:.0} polls of {} ms): {}",
        POLL.as_millis(),
        per_poll.join(", ")
    );
    let questions_per_poll = sent[0] as f64 / polls;
    print_target(
        "statements per poll (Questions)",
        questions_per_poll <= TARGET_STATEMENTS_PER_POLL as f64,
        &format!("<= 1 per polled table = {TARGET_STATEMENTS_PER_POLL}"),
    );
    println!(
        "MariaDB server CPU over the same {window} s: {:.0} ms, {:.2} % of one core",
        millis(server_used),
        server_used.as_secs_f64() / elapsed.as_secs_f64() * 100.0
    );
    Ok(())
}

/// The server's [`COUNTERS`], in that order.
async fn counters(sql: &mut MySqlConnection) -> Result<Vec<u64>, BoxError> {
    let rows = sqlx::query(
        "SHOW GLOBAL STATUS WHERE Variable_name IN \
         ('Questions', 'Com_select', 'Com_stmt_execute', 'Com_stmt_prepare')",
    )
    .fetch_all(&mut *sql)
    .await?;
    let mut values = BTreeMap::new();
    for row in rows {
        let name: String = row.try_get(0)?;
        let value: String = row.try_get(1)?;
        values.insert(name.to_ascii_lowercase(), value.parse::<u64>()?);
    }
    COUNTERS
        .iter()
        .map(|name| {
            values
                .get(&name.to_ascii_lowercase())
                .copied()
                .ok_or_else(|| format!("no {name} in SHOW GLOBAL STATUS").into())
        })
        .collect()
}

/// `after` − `before`, counter by counter.
fn difference(after: &[u64], before: &[u64]) -> Vec<u64> {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect()
}

/// The server's process id, from its pid file.
async fn server_pid(sql: &mut MySqlConnection) -> Result<u32, BoxError> {
    let path: String = sqlx::query_scalar("SELECT @@pid_file")
        .fetch_one(&mut *sql)
        .await?;
    Ok(fs::read_to_string(&path)?.trim().parse()?)
}

// ---------------------------------------------------------------------------
// Shared
// ---------------------------------------------------------------------------

/// A connection to the forum's database as its own account, over the
/// server's socket, kept open so that no measurement times a connect.
async fn connect_sql(forum: &Forum, db: &MariaDb) -> Result<MySqlConnection, BoxError> {
    let options = MySqlConnectOptions::new()
        .socket(db.socket())
        .username(&forum.user)
        .password(&forum.password)
        .database(&forum.database);
    Ok(MySqlConnection::connect_with(&options).await?)
}

/// The server's version.
async fn server_version(sql: &mut MySqlConnection) -> Result<String, BoxError> {
    Ok(sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut *sql)
        .await?)
}

/// The `tid` and content of the set's own row of `title`, if it has one.
async fn own_row(
    sql: &mut MySqlConnection,
    forum: &Forum,
    title: &str,
) -> Result<Option<(i64, String)>, BoxError> {
    let query = format!(
        "SELECT CAST(tid AS SIGNED), template FROM {templates} \
         WHERE sid = (SELECT sid FROM {sets} WHERE title = ?) AND title = ?",
        templates = forum.table("templates"),
        sets = forum.table("templatesets"),
    );
    Ok(sqlx::query_as(AssertSqlSafe(query))
        .bind(SET)
        .bind(title)
        .fetch_optional(&mut *sql)
        .await?)
}

/// Now in Unix seconds, as MyBB's `TIME_NOW`.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

/// The sync root, as the daemon reports it.
async fn sync_root(sync: &mut Sync) -> Result<PathBuf, BoxError> {
    let status = sync.get_sync_status(pb::GetSyncStatusRequest {}).await?;
    Ok(status.into_inner().root.into())
}

/// Waits until the daemon has polled the forum's database once and
/// finished its first rescan; fails after [`EVENT_TIMEOUT`].
async fn wait_for_first_poll(sync: &mut Sync) -> Result<(), BoxError> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let status = sync
            .get_sync_status(pb::GetSyncStatusRequest {})
            .await?
            .into_inner();
        let polled = status
            .backend
            .as_ref()
            .is_some_and(|backend| backend.last_poll_at.is_some());
        if polled && status.last_rescan_at.is_some() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the daemon has not polled the forum within {EVENT_TIMEOUT:?}: {:?}",
                status.backend
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Opens a `WatchSyncEvents` stream of events of `kind` and reads its
/// initial snapshot.
async fn watch_events(
    connection: &Connection,
    kind: SyncEventKind,
) -> Result<Streaming<pb::WatchSyncEventsResponse>, BoxError> {
    let mut stream = connection
        .sync()
        .watch_sync_events(pb::WatchSyncEventsRequest {
            since_revision: 0,
            kinds: vec![kind as i32],
        })
        .await?
        .into_inner();
    match stream.message().await? {
        Some(pb::WatchSyncEventsResponse {
            payload: Some(Payload::Snapshot(_)),
        }) => Ok(stream),
        other => Err(format!("WatchSyncEvents began with {other:?}, not a snapshot").into()),
    }
}

/// Reads `events` until one of `kind` for template `title` of [`SET`]
/// arrives; fails after [`EVENT_TIMEOUT`].
async fn wait_for_event(
    events: &mut Streaming<pb::WatchSyncEventsResponse>,
    kind: SyncEventKind,
    title: &str,
) -> Result<(), BoxError> {
    let wanted = |event: &pb::SyncEvent| {
        event.kind == kind as i32
            && matches!(event.key.as_ref().and_then(|k| k.key.as_ref()),
                Some(content_key::Key::Template(key)) if key.set == SET && key.title == title)
    };
    let read = async {
        loop {
            let message = events.message().await?.ok_or("WatchSyncEvents ended")?;
            match message.payload {
                Some(Payload::Events(batch)) if batch.events.iter().any(wanted) => return Ok(()),
                Some(Payload::Snapshot(_)) => {
                    return Err::<(), BoxError>("the event stream fell behind (RESYNC)".into());
                }
                _ => {}
            }
        }
    };
    timeout(EVENT_TIMEOUT, read)
        .await
        .map_err(|_| format!("no {kind:?} event for {title:?} within {EVENT_TIMEOUT:?}"))?
}

/// Prints whether the target on `what` (`target` in words) is met.
fn print_target(what: &str, met: bool, target: &str) {
    println!("  {what} target {target}: {}", verdict(met));
}
