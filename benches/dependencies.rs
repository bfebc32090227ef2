//! Dependencies benchmark (issue 20): what waiting for dependencies adds
//! to the start of a workspace.
//!
//! Run with `cargo bench --bench dependencies`. It starts one release
//! `outpostd` with a fresh data directory and applies workspace files to
//! it (each written beside the workspaces directory and renamed into it,
//! as an editor saves). Every instance is `sleep 600` without a readiness
//! condition, so it is ready (RUNNING) as soon as it is spawned. Three
//! workspaces, applied in turn in each round so that a machine whose speed
//! drifts affects all three alike:
//!
//! 1. one level: 10 independent instances;
//! 2. the same 100 instances as (3), without dependencies;
//! 3. 100 instances in 10 levels of 10: instance `i` of level `k` depends
//!    on instances `i`, `i + 1` and, for even `i`, `i + 5` (mod 10) of
//!    level `k - 1`.
//!
//! Each is timed from the rename of its file until the `WatchStatus` event
//! that shows its last instance RUNNING arrives. Between runs the file is
//! deleted and the benchmark waits for every instance's deletion event; a
//! workspace's name is new in every run, so each apply is the daemon's
//! first look at that file (not debounced). From the second round on, the
//! instances' log directories are those of the round before's deleted
//! instances, kept as spares (as on any daemon that deletes and creates
//! instances). From the events' own times it
//! also prints, per level of (3), the time from the last instance of the
//! level before becoming RUNNING to the first and last instance of the
//! level becoming STARTING, and the coordinator's reaction: a dependent's
//! STARTING after the later of its last dependency's RUNNING and its own
//! WAITING (it cannot start before the apply has created it).
//!
//! The target, "(3) ≤ 10 × (1) + 50 ms", is printed as met or not with
//! medians; nothing here asserts on timing.

use outpost_bench_support as support;

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant, SystemTime},
};

use outpost::proto::v1::{self as pb, status_event::Change, watch_status_response::Payload};
use tokio::time::timeout;

use support::{
    BoxError, connect,
    delivery::instant_of,
    report::{cores, millis, percentile, verdict},
    runtime,
    server::{daemon_socket, start_fleet_daemon},
    watch::{Watch, open_watch},
};

/// Instances per level.
const WIDTH: usize = 10;
/// Levels of the layered workspace.
const LEVELS: usize = 10;
/// Rounds run before the measured ones, and not counted.
const WARM_UP_ROUNDS: usize = 1;
/// Measured rounds; each applies and removes all three workspaces.
const ROUNDS: usize = 10;
/// `--max-instances` of the daemon: one workspace at a time, with room.
const MAX_INSTANCES: &str = "300";
/// `--port-range` of the daemon (no instance asks for a port).
const PORT_RANGE: &str = "47500-47599";
/// How long a workspace may take to be all RUNNING, or all gone.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// The slack of the target: (3) ≤ LEVELS × (1) + this.
const TARGET_SLACK: Duration = Duration::from_millis(50);

/// Runs the benchmark.
fn main() -> ExitCode {
    support::run("dependencies", bench)
}

/// The three workspaces.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// (1): one level of independent instances.
    OneLevel,
    /// (2): all levels' instances, without dependencies.
    Flat,
    /// (3): all levels, each instance depending on 2–3 of the level before.
    Layered,
}

impl Shape {
    const ALL: [Self; 3] = [Self::OneLevel, Self::Flat, Self::Layered];

    /// The prefix of its workspaces' names.
    fn prefix(self) -> &'static str {
        match self {
            Self::OneLevel => "one",
            Self::Flat => "flat",
            Self::Layered => "deep",
        }
    }

    /// What it is, for the printed table.
    fn label(self) -> &'static str {
        match self {
            Self::OneLevel => "(1) one level: 10 independent",
            Self::Flat => "(2) 100, no dependencies",
            Self::Layered => "(3) 100, 10 levels of 10, fan-out",
        }
    }

    /// Its number of levels.
    fn levels(self) -> usize {
        match self {
            Self::OneLevel => 1,
            Self::Flat | Self::Layered => LEVELS,
        }
    }

    /// Its workspace file (TOML).
    fn file(self) -> String {
        let mut text = String::new();
        for level in 0..self.levels() {
            for index in 0..WIDTH {
                let _ = writeln!(text, "[instances.{}]", key(level, index));
                text.push_str("command = [\"sleep\", \"600\"]\n");
                if self == Self::Layered && level > 0 {
                    let needs: Vec<String> = dependencies(index)
                        .map(|of| format!("\"{}\"", key(level - 1, of)))
                        .collect();
                    let _ = writeln!(text, "depends_on = [{}]", needs.join(", "));
                }
            }
        }
        text
    }
}

/// The key of instance `index` of level `level`.
fn key(level: usize, index: usize) -> String {
    format!("l{level}-{index}")
}

/// The indices, in the level before, of what instance `index` depends on:
/// 2 or 3 of them, together covering the whole level.
fn dependencies(index: usize) -> impl Iterator<Item = usize> {
    let third = index.is_multiple_of(2).then_some((index + 5) % WIDTH);
    [index, (index + 1) % WIDTH].into_iter().chain(third)
}

/// When one instance reached each state, by the events' own times.
#[derive(Default)]
struct Times {
    waiting: Option<SystemTime>,
    starting: Option<SystemTime>,
    running: Option<SystemTime>,
}

/// One apply of a workspace.
struct Run {
    /// From the rename of the file until each RUNNING event arrived, in
    /// order: the last is the run's time, every [`WIDTH`]th shows the pace.
    ups: Vec<Duration>,
    /// From the rename until the daemon's WorkspaceApplied event (its time).
    applied: Duration,
    /// Each instance's times, by key.
    instances: HashMap<String, Times>,
}

impl Run {
    /// From the rename until the last RUNNING event arrived.
    fn total(&self) -> Duration {
        self.ups.last().copied().unwrap_or_default()
    }

    /// From the rename until the `n`th RUNNING event arrived.
    fn up(&self, n: usize) -> Duration {
        self.ups.get(n - 1).copied().unwrap_or_default()
    }

    /// The times of instance `index` of level `level`.
    fn at(&self, level: usize, index: usize) -> Result<&Times, BoxError> {
        let key = key(level, index);
        self.instances
            .get(&key)
            .ok_or_else(|| format!("no events of {key}").into())
    }
}

/// The figures of the layered workspace's runs, taken from event times.
#[derive(Default)]
struct Cascade {
    /// Per level (from 1): last RUNNING of the level before → first
    /// STARTING of this one, in ms (negative: it started before the level
    /// before was all up), one value per run.
    first: Vec<Vec<f64>>,
    /// Likewise, to the last STARTING of the level.
    last: Vec<Vec<f64>>,
    /// Every dependent's reaction, ascending once complete.
    reactions: Vec<Duration>,
}

impl Cascade {
    /// Adds the figures of one run.
    fn add(&mut self, run: &Run) -> Result<(), BoxError> {
        self.first.resize_with(LEVELS, Vec::new);
        self.last.resize_with(LEVELS, Vec::new);
        for level in 1..LEVELS {
            let mut previous_up = SystemTime::UNIX_EPOCH;
            let (mut first, mut last) = (None::<SystemTime>, None::<SystemTime>);
            for index in 0..WIDTH {
                previous_up = previous_up.max(running(run.at(level - 1, index)?)?);
                let started = starting(run.at(level, index)?)?;
                first = Some(first.map_or(started, |first| first.min(started)));
                last = Some(last.map_or(started, |last| last.max(started)));
                self.reactions.push(reaction(run, level, index)?);
            }
            let (first, last) = (first.ok_or("empty level")?, last.ok_or("empty level")?);
            self.first[level].push(signed_ms(previous_up, first));
            self.last[level].push(signed_ms(previous_up, last));
        }
        Ok(())
    }
}

/// How long instance `index` of `level` took to start once it could: its
/// STARTING after the later of its dependencies' last RUNNING and its own
/// WAITING.
fn reaction(run: &Run, level: usize, index: usize) -> Result<Duration, BoxError> {
    let own = run.at(level, index)?;
    let mut could = own.waiting.ok_or("a dependent never WAITING")?;
    for of in dependencies(index) {
        could = could.max(running(run.at(level - 1, of)?)?);
    }
    Ok(starting(own)?.duration_since(could).unwrap_or_default())
}

fn running(times: &Times) -> Result<SystemTime, BoxError> {
    times
        .running
        .ok_or_else(|| "an instance never RUNNING".into())
}

fn starting(times: &Times) -> Result<SystemTime, BoxError> {
    times
        .starting
        .ok_or_else(|| "an instance never STARTING".into())
}

/// `to − from` in milliseconds, negative when `to` is earlier.
fn signed_ms(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(after) => millis(after),
        Err(before) => -millis(before.duration()),
    }
}

/// Runs the whole benchmark and prints its results.
fn bench() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let daemon_dir = dir.path().join("daemon");
    let workspaces = daemon_dir.join("workspaces");
    let staging = dir.path().join("staging");
    fs::create_dir_all(&workspaces)?;
    fs::create_dir_all(&staging)?;
    let _daemon = start_fleet_daemon(
        env!("CARGO_BIN_EXE_outpostd"),
        &daemon_dir,
        MAX_INSTANCES,
        PORT_RANGE,
    )?;
    let files = Files {
        staging,
        workspaces,
    };
    runtime()?.block_on(async {
        let connection = connect(&daemon_socket(&daemon_dir)).await?;
        let mut watch = open_watch(&connection).await?;
        let mut runs: HashMap<&str, Vec<Run>> = HashMap::new();
        let mut cascade = Cascade::default();
        for round in 0..WARM_UP_ROUNDS + ROUNDS {
            for shape in Shape::ALL {
                let name = format!("{}-{round:02}", shape.prefix());
                let run = apply_and_remove(&mut watch, &files, shape, &name).await?;
                if round < WARM_UP_ROUNDS {
                    continue;
                }
                if shape == Shape::Layered {
                    cascade.add(&run)?;
                }
                runs.entry(shape.prefix()).or_default().push(run);
            }
        }
        print(&runs, cascade)
    })
}

/// Where workspace files are written, and where they are renamed to.
struct Files {
    staging: PathBuf,
    workspaces: PathBuf,
}

/// Applies workspace `name` of `shape`, waits for all its instances to be
/// RUNNING, then removes it and waits for all of them to be gone.
async fn apply_and_remove(
    watch: &mut Watch,
    files: &Files,
    shape: Shape,
    name: &str,
) -> Result<Run, BoxError> {
    let count = shape.levels() * WIDTH;
    let file_name = format!("{name}.toml");
    let written = files.staging.join(&file_name);
    let file = files.workspaces.join(&file_name);
    fs::write(&written, shape.file())?;
    let (since, wall) = (Instant::now(), SystemTime::now());
    fs::rename(&written, &file)?;
    let run = timeout(RUN_TIMEOUT, until_running(watch, name, count, since, wall))
        .await
        .map_err(|_| format!("workspace {name} not all RUNNING within {RUN_TIMEOUT:?}"))??;
    fs::remove_file(&file)?;
    timeout(RUN_TIMEOUT, until_deleted(watch, name, count))
        .await
        .map_err(|_| format!("workspace {name} not all deleted within {RUN_TIMEOUT:?}"))??;
    Ok(run)
}

/// Reads `watch` until all `count` instances of workspace `workspace` are
/// RUNNING and the workspace was applied; `since` and `wall` are when its
/// file was renamed into place.
async fn until_running(
    watch: &mut Watch,
    workspace: &str,
    count: usize,
    since: Instant,
    wall: SystemTime,
) -> Result<Run, BoxError> {
    let prefix = format!("{workspace}.");
    let mut instances: HashMap<String, Times> = HashMap::new();
    let (mut ups, mut applied) = (Vec::with_capacity(count), None);
    while ups.len() < count || applied.is_none() {
        for event in next_events(watch).await? {
            let time = event.time.as_ref().and_then(instant_of);
            let time = time.ok_or("an event without a time")?;
            match event.change {
                Some(Change::InstanceChanged(changed)) => {
                    let instance = changed.instance.ok_or("an event without its instance")?;
                    let Some(key) = instance.name.strip_prefix(&prefix) else {
                        continue;
                    };
                    let times = instances.entry(key.to_owned()).or_default();
                    let slot = match pb::InstanceState::try_from(instance.state) {
                        Ok(pb::InstanceState::Waiting) => &mut times.waiting,
                        Ok(pb::InstanceState::Starting) => &mut times.starting,
                        Ok(pb::InstanceState::Running) => &mut times.running,
                        Ok(
                            state @ (pb::InstanceState::Failed
                            | pb::InstanceState::Backoff
                            | pb::InstanceState::Error),
                        ) => {
                            return Err(format!(
                                "{} became {state:?}: {}",
                                instance.name, instance.last_error
                            )
                            .into());
                        }
                        _ => continue,
                    };
                    if slot.is_none() {
                        *slot = Some(time);
                        if instance.state == pb::InstanceState::Running as i32 {
                            ups.push(since.elapsed());
                        }
                    }
                }
                Some(Change::WorkspaceApplied(done))
                    if done.workspace.as_ref().is_some_and(|w| w.name == workspace) =>
                {
                    applied = Some(time.duration_since(wall).unwrap_or_default());
                }
                Some(Change::WorkspaceRejected(rejected)) if rejected.workspace == workspace => {
                    return Err(format!(
                        "workspace {workspace} rejected: {}",
                        rejected.errors.join("; ")
                    )
                    .into());
                }
                _ => {}
            }
        }
    }
    Ok(Run {
        ups,
        applied: applied.ok_or("never applied")?,
        instances,
    })
}

/// Reads `watch` until `count` instances of workspace `workspace` were
/// deleted.
async fn until_deleted(watch: &mut Watch, workspace: &str, count: usize) -> Result<(), BoxError> {
    let mut deleted = 0;
    while deleted < count {
        for event in next_events(watch).await? {
            if let Some(Change::InstanceDeleted(gone)) = event.change
                && gone.workspace == workspace
            {
                deleted += 1;
            }
        }
    }
    Ok(())
}

/// The next batch of events of `watch`. A RESYNC snapshot (the stream fell
/// behind and events were skipped) fails the benchmark: the figures need
/// every event's time.
async fn next_events(watch: &mut Watch) -> Result<Vec<pb::StatusEvent>, BoxError> {
    match watch.message().await?.ok_or("WatchStatus ended")?.payload {
        Some(Payload::Events(batch)) => Ok(batch.events),
        Some(Payload::Snapshot(_)) => Err("WatchStatus fell behind (a RESYNC snapshot)".into()),
        None => Ok(Vec::new()),
    }
}

// ---------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------

/// Prints the table, the target, the overhead, the levels and the reaction.
fn print(runs: &HashMap<&str, Vec<Run>>, mut cascade: Cascade) -> Result<(), BoxError> {
    println!(
        "Workspaces of `sleep 600` instances (RUNNING once spawned), applied as files to one \
         release outpostd; {WARM_UP_ROUNDS} warm-up + {ROUNDS} measured rounds, the three \
         workspaces in turn each round; {} CPUs",
        cores()
    );
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>18} {:>18}",
        "file renamed → last RUNNING event",
        "median",
        "min",
        "max",
        "applied (median)",
        "10th up (median)"
    );
    let mut medians = HashMap::new();
    for shape in Shape::ALL {
        let runs = runs.get(shape.prefix()).ok_or("no runs")?;
        let totals = sorted(runs.iter().map(Run::total));
        let applied = sorted(runs.iter().map(|run| run.applied));
        let first_level = sorted(runs.iter().map(|run| run.up(WIDTH)));
        let median = percentile(&totals, 0.5);
        println!(
            "{:<36} {:>7.1} ms {:>7.1} ms {:>7.1} ms {:>15.1} ms {:>15.1} ms",
            shape.label(),
            millis(median),
            millis(totals[0]),
            millis(totals[totals.len() - 1]),
            millis(percentile(&applied, 0.5)),
            millis(percentile(&first_level, 0.5)),
        );
        medians.insert(shape.prefix(), median);
    }
    println!("every {WIDTH}th RUNNING event, ms after the rename (median over the rounds):");
    for shape in [Shape::Flat, Shape::Layered] {
        let runs = &runs[shape.prefix()];
        let pace: Vec<String> = (1..=LEVELS)
            .map(|level| {
                let at = sorted(runs.iter().map(|run| run.up(level * WIDTH)));
                format!("{:.0}", millis(percentile(&at, 0.5)))
            })
            .collect();
        println!("  {:<34} {}", shape.label(), pace.join(" "));
    }
    let (one, flat, deep) = (medians["one"], medians["flat"], medians["deep"]);
    let target = one * LEVELS as u32 + TARGET_SLACK;
    println!(
        "target (3) ≤ {LEVELS} × (1) + {} ms = {:.1} ms: (3) {:.1} ms, {}",
        TARGET_SLACK.as_millis(),
        millis(target),
        millis(deep),
        verdict(deep <= target)
    );
    let without = flat + TARGET_SLACK;
    println!(
        "for comparison, (3) ≤ (2) + {} ms = {:.1} ms (the same instances without \
         dependencies): {}",
        TARGET_SLACK.as_millis(),
        millis(without),
        verdict(deep <= without)
    );
    let paired: Vec<f64> = (runs["deep"].iter().zip(&runs["flat"]))
        .map(|(deep, flat)| millis(deep.total()) - millis(flat.total()))
        .collect();
    let overhead = millis(deep) - millis(flat);
    println!(
        "overhead (3) − (2): {overhead:.1} ms between medians ({:.1} ms per level); \
         paired by round: median {:.1} ms ({:.1} ms per level), {:.1} to {:.1} ms",
        overhead / LEVELS as f64,
        median(&paired),
        median(&paired) / LEVELS as f64,
        min(&paired),
        max(&paired),
    );
    println!();
    println!("(3) per level, by the events' times, median over the rounds (min to max):");
    println!(
        "{:<6} {:>38} {:>24}",
        "level", "last RUNNING before → first STARTING", "→ last STARTING"
    );
    for level in 1..LEVELS {
        let (first, last) = (&cascade.first[level], &cascade.last[level]);
        println!(
            "{level:<6} {:>38} {:>24}",
            format!(
                "{:.2} ms ({:.2} to {:.2})",
                median(first),
                min(first),
                max(first)
            ),
            format!(
                "{:.2} ms ({:.2} to {:.2})",
                median(last),
                min(last),
                max(last)
            ),
        );
    }
    cascade.reactions.sort_unstable();
    let reactions = &cascade.reactions;
    println!(
        "coordinator reaction (STARTING after the later of the last dependency RUNNING and its \
         own WAITING), {} dependents: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        reactions.len(),
        millis(percentile(reactions, 0.5)),
        millis(percentile(reactions, 0.99)),
        millis(percentile(reactions, 1.0)),
    );
    Ok(())
}

/// `durations`, ascending.
fn sorted(durations: impl Iterator<Item = Duration>) -> Vec<Duration> {
    let mut sorted: Vec<Duration> = durations.collect();
    sorted.sort_unstable();
    sorted
}

/// The nearest-rank median of `values` (0 when empty).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let rank = (sorted.len() as f64 * 0.5).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied().unwrap_or_default()
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}
