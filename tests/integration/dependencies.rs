//! Dependencies between real instances: a chain and a diamond whose links
//! become ready by a log line, an sd_notify READY and a health probe; a
//! migration that must complete; a dependency that fails; cycles and
//! unknown names refused; stops that respect the graph; dependents
//! restarted with their dependency; workspaces. Each dependency is held
//! back by a FIFO until the test lets it go, and "started after" is read
//! from the order of events on the bus, never from timing.

use outpost::{endpoint::Connection, proto::v1 as pb};
use tonic::{Code, Streaming};

use crate::{
    harness::{Daemon, changed, events, next, spec, stderr, stop, try_create},
    readiness::{gate, get, notifier, open, readiness, watching},
};

use pb::InstanceState as S;

/// One instance event, as the tests compare them.
#[derive(Clone, Debug)]
struct Seen {
    revision: u64,
    name: String,
    state: S,
    reason: pb::TransitionReason,
    instance: pb::Instance,
}

/// The events read so far, in bus order.
struct Timeline {
    stream: Streaming<pb::WatchStatusResponse>,
    seen: Vec<Seen>,
}

impl Timeline {
    async fn start(connection: &Connection) -> Self {
        Self {
            stream: watching(connection).await,
            seen: Vec::new(),
        }
    }

    /// Reads events until `name` is in `state`; the revision of the first
    /// such event.
    async fn until(&mut self, name: &str, state: S) -> u64 {
        self.until_after(0, name, state).await.revision
    }

    /// Reads events until `name` is in `state` after revision `since`;
    /// the first such event.
    async fn until_after(&mut self, since: u64, name: &str, state: S) -> Seen {
        loop {
            let found = self
                .seen
                .iter()
                .find(|seen| seen.revision > since && seen.name == name && seen.state == state);
            if let Some(found) = found {
                return found.clone();
            }
            for event in events(next(&mut self.stream).await) {
                if let Some(change) = changed(&event) {
                    let instance = change.instance.clone().unwrap();
                    self.seen.push(Seen {
                        revision: event.revision,
                        name: instance.name.clone(),
                        state: instance.state(),
                        reason: change.reason(),
                        instance,
                    });
                }
            }
        }
    }

    /// The revision of the first event read that shows `name` in `state`.
    fn at(&self, name: &str, state: S) -> Option<u64> {
        self.find(name, state).map(|seen| seen.revision)
    }

    fn find(&self, name: &str, state: S) -> Option<&Seen> {
        self.seen
            .iter()
            .find(|seen| seen.name == name && seen.state == state)
    }

    /// The states `name` went through, in order.
    fn states(&self, name: &str) -> Vec<S> {
        let mut states: Vec<S> = (self.seen.iter())
            .filter(|seen| seen.name == name)
            .map(|seen| seen.state)
            .collect();
        states.dedup();
        states
    }
}

fn after(
    mut spec: pb::InstanceSpec,
    dependencies: &[(&str, pb::DependencyCondition)],
) -> pb::InstanceSpec {
    spec.depends_on = dependencies
        .iter()
        .map(|(name, condition)| ((*name).to_owned(), *condition as i32))
        .collect();
    spec
}

const READY: pb::DependencyCondition = pb::DependencyCondition::Ready;
const COMPLETED: pb::DependencyCondition = pb::DependencyCondition::Completed;

/// An instance that waits at `gate`, then prints `line` and stays up;
/// ready by that line.
fn gated(name: &str, go: &std::path::Path, line: &str) -> pb::InstanceSpec {
    let script = format!("read _ < {}; echo '{line}'; exec sleep 600", go.display());
    let mut gated = spec(name, "sh", &["-c", &script]);
    gated.readiness = readiness(line, false, 0);
    gated
}

/// A long-running instance with no readiness condition: ready when started.
fn sleeper(name: &str) -> pb::InstanceSpec {
    spec(name, "sleep", &["600"])
}

#[tokio::test]
async fn a_chain_starts_each_link_once_the_one_before_is_ready() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut timeline = Timeline::start(&connection).await;
    let db_go = gate(&daemon, "db-go");
    let api_go = gate(&daemon, "api-go");

    // db: ready by a log line; api: by sd_notify READY=1; web: by its probe.
    try_create(&connection, gated("db", &db_go, "accepting connections"))
        .await
        .unwrap();
    let args = notifier(&api_go, 0);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut api = after(spec("api", "python3", &args), &[("db", READY)]);
    api.readiness = readiness("", true, 0);
    let api = try_create(&connection, api).await.unwrap();
    assert_eq!(api.state(), S::Waiting);
    assert_eq!(api.waiting_for, "db to be ready");
    assert_eq!(api.pid, 0);
    let mut web = after(
        spec(
            "web",
            "python3",
            &["-m", "http.server", "--bind", "127.0.0.1", "{port}"],
        ),
        &[("api", READY)],
    );
    web.port = Some(pb::PortRequest {
        mode: pb::PortMode::Auto.into(),
        number: 0,
    });
    web.health = Some(pb::HealthCheck {
        probe: Some(pb::health_check::Probe::Tcp(pb::TcpProbe::default())),
        interval: Some(pbjson_types::Duration {
            seconds: 0,
            nanos: 50_000_000,
        }),
        ..Default::default()
    });
    try_create(&connection, web).await.unwrap();
    let shown = crate::harness::stdout(&daemon.ctl(&["get", "web"]));
    assert!(
        shown.contains("waiting for") && shown.contains("api to be ready"),
        "{shown}"
    );
    assert!(
        shown.contains("after") && shown.contains("api (ready)"),
        "{shown}"
    );

    // db starting is not db ready: api must still wait.
    assert_eq!(get(&daemon, "db").await.state(), S::Starting);
    assert_eq!(get(&daemon, "api").await.state(), S::Waiting);

    open(&db_go);
    let db_ready = timeline.until("db", S::Running).await;
    let api_started = timeline.until("api", S::Starting).await;
    assert!(api_started > db_ready);
    let started = timeline.find("api", S::Starting).unwrap();
    assert_eq!(started.reason, pb::TransitionReason::DependenciesReady);
    assert!(started.instance.pid > 0);
    assert_eq!(get(&daemon, "web").await.state(), S::Waiting);

    open(&api_go);
    let api_ready = timeline.until("api", S::Running).await;
    let web_started = timeline.until("web", S::Starting).await;
    let web_ready = timeline.until("web", S::Running).await;
    assert!(web_started > api_ready && web_ready > web_started);
    assert_eq!(
        timeline.find("web", S::Running).unwrap().instance.ready_by,
        "health probe"
    );
    for name in ["api", "web"] {
        assert_eq!(
            timeline.states(name)[..3],
            [S::Waiting, S::Starting, S::Running],
            "{name} went straight from waiting to starting to running"
        );
    }
}

#[tokio::test]
async fn a_diamond_starts_its_top_once_both_sides_are_ready() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut timeline = Timeline::start(&connection).await;
    let base_go = gate(&daemon, "base-go");
    let right_go = gate(&daemon, "right-go");
    try_create(&connection, gated("base", &base_go, "base up"))
        .await
        .unwrap();
    let left = after(sleeper("left"), &[("base", READY)]);
    let right = after(gated("right", &right_go, "right up"), &[("base", READY)]);
    let top = after(sleeper("top"), &[("left", READY), ("right", READY)]);
    for spec in [left, right, top] {
        try_create(&connection, spec).await.unwrap();
    }

    open(&base_go);
    let base_ready = timeline.until("base", S::Running).await;
    let left_ready = timeline.until("left", S::Running).await;
    let right_started = timeline.until("right", S::Starting).await;
    assert!(right_started > base_ready && left_ready > base_ready);
    // Left is ready, right is not: top waits for right alone.
    let top = get(&daemon, "top").await;
    assert_eq!(top.state(), S::Waiting);
    assert_eq!(top.waiting_for, "right to be ready");

    open(&right_go);
    let right_ready = timeline.until("right", S::Running).await;
    let top_started = timeline.until("top", S::Starting).await;
    assert!(top_started > right_ready && top_started > left_ready);
    timeline.until("top", S::Running).await;
}

#[tokio::test]
async fn a_migration_must_complete_and_a_failed_one_blocks_its_dependents() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut timeline = Timeline::start(&connection).await;
    let go = gate(&daemon, "migrate-go");
    let script = format!("read _ < {}; exit 0", go.display());
    try_create(&connection, spec("migrate", "sh", &["-c", &script]))
        .await
        .unwrap();
    try_create(
        &connection,
        after(sleeper("api"), &[("migrate", COMPLETED)]),
    )
    .await
    .unwrap();
    // Running is not completed.
    timeline.until("migrate", S::Running).await;
    assert_eq!(get(&daemon, "api").await.state(), S::Waiting);
    open(&go);
    let completed = timeline.until("migrate", S::Stopped).await;
    assert!(timeline.until("api", S::Starting).await > completed);

    // Created after the migration completed: starts at once, from the CLI.
    let run = daemon.ctl(&[
        "run",
        "worker",
        "--after",
        "migrate:completed",
        "--",
        "sleep",
        "600",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    timeline.until("worker", S::Running).await;

    // A migration that fails leaves its dependents waiting, saying why.
    try_create(&connection, spec("broken", "sh", &["-c", "exit 3"]))
        .await
        .unwrap();
    timeline.until("broken", S::Failed).await;
    try_create(
        &connection,
        after(sleeper("blocked"), &[("broken", COMPLETED)]),
    )
    .await
    .unwrap();
    timeline.until("blocked", S::Waiting).await;
    let blocked = crate::harness::eventually(
        "the dependent to say its dependency failed",
        crate::harness::START_DEADLINE,
        || async {
            let instance = get(&daemon, "blocked").await;
            (instance.state_reason() == pb::TransitionReason::DependencyBlocked).then_some(instance)
        },
    )
    .await;
    assert_eq!(blocked.state(), S::Waiting);
    assert_eq!(blocked.pid, 0);
    assert!(
        blocked
            .waiting_for
            .contains("broken to complete, but it failed")
            && blocked.waiting_for.contains("exit code 3"),
        "{}",
        blocked.waiting_for
    );
    // `wait` gives up on it at once, saying what it waits for.
    let waited = daemon.ctl(&["--timeout", "60s", "wait", "blocked"]);
    assert_eq!(waited.status.code(), Some(1), "{}", stderr(&waited));
    let message = stderr(&waited);
    assert!(
        message.contains("broken to complete, but it failed"),
        "{message}"
    );
    // One waiting for a dependency that may still come is waited for.
    connection
        .orchestrator()
        .create_instance(pb::CreateInstanceRequest {
            spec: Some(sleeper("idle")),
            start: Some(false),
        })
        .await
        .unwrap();
    try_create(&connection, after(sleeper("pending"), &[("idle", READY)]))
        .await
        .unwrap();
    let waited = daemon.ctl(&["--timeout", "300ms", "wait", "pending"]);
    assert_eq!(waited.status.code(), Some(124), "{}", stderr(&waited));
    let message = stderr(&waited);
    assert!(
        message.contains("pending (waiting, for idle to be ready (it is stopped))"),
        "{message}"
    );
    // Nothing of it ever ran.
    assert!(timeline.at("blocked", S::Starting).is_none());
}

#[tokio::test]
async fn cycles_and_unknown_names_are_refused_naming_them() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let unknown = try_create(&connection, after(sleeper("api"), &[("ghost", READY)]))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(
        unknown
            .message()
            .contains("spec.depends_on: no instance is named ghost"),
        "{}",
        unknown.message()
    );
    let own = try_create(&connection, after(sleeper("api"), &[("api", READY)]))
        .await
        .unwrap_err();
    assert_eq!(own.code(), Code::InvalidArgument);

    // b depends on a; a is deleted and made again depending on b.
    try_create(&connection, sleeper("a")).await.unwrap();
    try_create(&connection, after(sleeper("b"), &[("a", READY)]))
        .await
        .unwrap();
    let rm = daemon.ctl(&["rm", "a"]);
    assert!(rm.status.success(), "{}", stderr(&rm));
    let cycle = try_create(&connection, after(sleeper("a"), &[("b", READY)]))
        .await
        .unwrap_err();
    assert_eq!(cycle.code(), Code::InvalidArgument);
    assert!(
        cycle.message().contains("a → b → a is a cycle"),
        "{}",
        cycle.message()
    );
    let cli = daemon.ctl(&["run", "c", "--after", "c:ready", "--", "sleep", "1"]);
    assert!(!cli.status.success());
    assert!(
        stderr(&cli).contains("cannot depend on itself"),
        "{}",
        stderr(&cli)
    );
    let word = daemon.ctl(&["run", "c", "--after", "b:up", "--", "sleep", "1"]);
    assert!(
        stderr(&word).contains("started, ready or completed"),
        "{}",
        stderr(&word)
    );
}

#[tokio::test]
async fn a_dependency_stops_only_with_its_dependents_and_after_them() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut timeline = Timeline::start(&connection).await;
    try_create(&connection, sleeper("db")).await.unwrap();
    try_create(&connection, after(sleeper("api"), &[("db", READY)]))
        .await
        .unwrap();
    try_create(&connection, after(sleeper("web"), &[("api", READY)]))
        .await
        .unwrap();
    timeline.until("web", S::Running).await;

    let refused = daemon.ctl(&["stop", "db"]);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("db has running dependents: api, web")
            && message.contains("--with-dependents"),
        "{message}"
    );
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert_eq!(get(&daemon, "db").await.state(), S::Running);

    let stopped = daemon.ctl(&["stop", "db", "--with-dependents"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let db_stopping = timeline.until("db", S::Stopping).await;
    let web_stopped = timeline.until("web", S::Stopped).await;
    let api_stopped = timeline.until("api", S::Stopped).await;
    let api_stopping = timeline.at("api", S::Stopping).unwrap();
    assert!(web_stopped < api_stopping, "web stops before api");
    assert!(api_stopped < db_stopping, "api stops before db");

    // A stopped dependent does not hold its dependency.
    let started = daemon.ctl(&["start", "db"]);
    assert!(started.status.success());
    stop(&connection, "db").await;
}

#[tokio::test]
async fn dependents_restart_with_a_dependency_that_asks_for_it() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut timeline = Timeline::start(&connection).await;
    let mut db = sleeper("db");
    db.restart_dependents = true;
    try_create(&connection, db).await.unwrap();
    try_create(&connection, after(sleeper("api"), &[("db", READY)]))
        .await
        .unwrap();
    let running = timeline.until("api", S::Running).await;
    let first = get(&daemon, "api").await.pid;
    let restarted = daemon.ctl(&["restart", "db"]);
    assert!(restarted.status.success(), "{}", stderr(&restarted));
    let waits = timeline.until_after(running, "api", S::Waiting).await;
    assert_eq!(waits.reason, pb::TransitionReason::DependencyRestart);
    assert!(
        !crate::harness::exists(first),
        "the old api process is gone"
    );
    let db_again = timeline.until_after(running, "db", S::Running).await;
    let api_again = timeline
        .until_after(waits.revision, "api", S::Starting)
        .await;
    assert!(api_again.revision > db_again.revision);
    assert!(api_again.instance.pid != first && api_again.instance.pid > 0);

    // A plain dependency's restart leaves its dependents alone.
    try_create(&connection, sleeper("cache")).await.unwrap();
    try_create(&connection, after(sleeper("worker"), &[("cache", READY)]))
        .await
        .unwrap();
    let worker = timeline.until("worker", S::Running).await;
    let pid = get(&daemon, "worker").await.pid;
    assert!(daemon.ctl(&["restart", "cache"]).status.success());
    timeline.until_after(worker, "cache", S::Running).await;
    let still = get(&daemon, "worker").await;
    assert_eq!((still.state(), still.pid), (S::Running, pid));
}

#[tokio::test]
async fn a_workspace_starts_in_dependency_order_and_goes_in_reverse() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut timeline = Timeline::start(&connection).await;
    let file = crate::workspaces::workspace_dir(&daemon).join("shop.toml");
    // Written so that names sort against the order of dependencies.
    crate::workspaces::save(
        &file,
        r#"
[instances.a-web]
command = ["sleep", "600"]
depends_on = { z-db = "ready", m-migrate = "completed" }
[instances.m-migrate]
command = ["true"]
depends_on = ["z-db"]
[instances.z-db]
command = ["sleep", "600"]
"#,
    );
    let db_ready = timeline.until("shop.z-db", S::Running).await;
    let migrated = timeline.until("shop.m-migrate", S::Stopped).await;
    let web_started = timeline.until("shop.a-web", S::Starting).await;
    assert!(timeline.at("shop.m-migrate", S::Starting).unwrap() > db_ready);
    assert!(web_started > migrated);
    let shown = get(&daemon, "shop.a-web").await;
    assert_eq!(shown.spec.unwrap().depends_on["shop.z-db"], READY as i32);

    // Stopped as a whole: dependents first.
    let running = timeline.until("shop.a-web", S::Running).await;
    let stopped = daemon.ctl(&["workspace", "stop", "shop"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let table = crate::harness::stdout(&stopped);
    assert_eq!(table.matches("stopped").count(), 3, "{table}");
    let web_stopped = timeline
        .until_after(running, "shop.a-web", S::Stopped)
        .await;
    let db_stopping = timeline
        .until_after(running, "shop.z-db", S::Stopping)
        .await;
    assert!(web_stopped.revision < db_stopping.revision);
    // Started as a whole: the migration runs again before the web starts.
    let started = daemon.ctl(&["workspace", "start", "shop"]);
    assert!(started.status.success(), "{}", stderr(&started));
    let since = db_stopping.revision;
    let migrated = timeline
        .until_after(since, "shop.m-migrate", S::Starting)
        .await;
    let done = timeline
        .until_after(migrated.revision, "shop.m-migrate", S::Stopped)
        .await;
    let web = timeline.until_after(since, "shop.a-web", S::Starting).await;
    assert!(
        web.revision > done.revision,
        "the web started before the new migration ended"
    );
    let unknown = daemon.ctl(&["workspace", "stop", "nowhere"]);
    assert!(
        stderr(&unknown).contains("no workspace"),
        "{}",
        stderr(&unknown)
    );

    std::fs::remove_file(&file).unwrap();
    let mut deleted = Vec::new();
    while deleted.len() < 3 {
        for event in events(next(&mut timeline.stream).await) {
            if let Some(pb::status_event::Change::InstanceDeleted(gone)) = event.change {
                deleted.push(gone.name);
            }
        }
    }
    let position = |name: &str| deleted.iter().position(|n| n == name).unwrap();
    assert!(
        position("shop.a-web") < position("shop.z-db"),
        "{deleted:?}"
    );
    assert!(
        position("shop.m-migrate") < position("shop.z-db"),
        "{deleted:?}"
    );

    let cyclic = daemon.dir.path().join("loop.toml");
    std::fs::write(
        &cyclic,
        "[instances.a]\ncommand = [\"x\"]\ndepends_on = [\"b\"]\n[instances.b]\ncommand = [\"x\"]\ndepends_on = [\"a\"]\n",
    )
    .unwrap();
    let refused = daemon.ctl(&["workspace", "check", cyclic.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("loop.a → loop.b → loop.a is a cycle"),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test]
async fn a_waiting_instance_waits_on_across_a_daemon_crash() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    connection
        .orchestrator()
        .create_instance(pb::CreateInstanceRequest {
            spec: Some(sleeper("db")),
            start: Some(false),
        })
        .await
        .unwrap();
    try_create(&connection, after(sleeper("api"), &[("db", READY)]))
        .await
        .unwrap();
    assert_eq!(
        get(&daemon, "api").await.waiting_for,
        "db to be ready (it is stopped)"
    );

    daemon.signal(nix::sys::signal::Signal::SIGKILL);
    daemon.wait_exit(crate::harness::START_DEADLINE);
    daemon.respawn(&[]);
    let connection = daemon.connect().await;
    let mut timeline = Timeline::start(&connection).await;
    let api = get(&daemon, "api").await;
    assert_eq!(api.state(), S::Waiting);
    assert!(
        api.waiting_for.starts_with("db to be ready"),
        "{}",
        api.waiting_for
    );
    let started = daemon.ctl(&["start", "db"]);
    assert!(started.status.success(), "{}", stderr(&started));
    let db_ready = timeline.until("db", S::Running).await;
    assert!(timeline.until("api", S::Starting).await > db_ready);
}

#[tokio::test]
async fn the_daemon_stops_dependents_first_when_it_shuts_down() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut timeline = Timeline::start(&connection).await;
    try_create(&connection, sleeper("db")).await.unwrap();
    try_create(&connection, after(sleeper("api"), &[("db", READY)]))
        .await
        .unwrap();
    try_create(&connection, after(sleeper("web"), &[("api", READY)]))
        .await
        .unwrap();
    try_create(&connection, sleeper("docs")).await.unwrap();
    timeline.until("web", S::Running).await;

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(daemon.wait_exit(crate::harness::START_DEADLINE).success());
    // The store kept every transition in the order it happened.
    let query = format!(
        "import sqlite3; db = sqlite3.connect('{}'); \
         print('\\n'.join(n + ' ' + s for n, s in db.execute(\
         \"SELECT i.name, e.state FROM instance_events e JOIN instances i ON i.id = e.instance_id \
         WHERE e.reason = 'daemon_shutdown' ORDER BY e.seq\")))",
        daemon.data_dir.join("state.db").display()
    );
    let output = std::process::Command::new("python3")
        .args(["-c", &query])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let order: Vec<String> = crate::harness::stdout(&output)
        .lines()
        .map(str::to_owned)
        .collect();
    let at = |line: &str| {
        order
            .iter()
            .position(|seen| seen == line)
            .unwrap_or_else(|| panic!("{line} not in {order:?}"))
    };
    assert!(at("web stopped") < at("api stopping"), "{order:?}");
    assert!(at("api stopped") < at("db stopping"), "{order:?}");
    // What nothing depends on stops with the first layer.
    assert!(at("docs stopping") < at("api stopping"), "{order:?}");
}
