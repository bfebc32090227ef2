//! Readiness other than the health probe, against real processes: a line
//! of output matching a pattern, sd_notify's READY=1 (with STATUS= and the
//! watchdog), the startup deadline when neither comes, and the refusals.
//! Each process is held back by a FIFO until the test lets it go, so that
//! "not ready before" is a fact, not a hope.

use std::path::{Path, PathBuf};

use outpost::proto::v1 as pb;
use tonic::Code;

use crate::harness::{Daemon, changed, events_until, spec, watch};

/// A FIFO the test writes a line into to let a process go on.
pub(crate) fn gate(daemon: &Daemon, name: &str) -> PathBuf {
    let path = daemon.dir.path().join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    path
}

pub(crate) fn open(gate: &Path) {
    std::fs::write(gate, "go\n").unwrap();
}

pub(crate) fn readiness(
    log_pattern: &str,
    notify: bool,
    watchdog_ms: u64,
) -> Option<pb::Readiness> {
    Some(pb::Readiness {
        log_pattern: log_pattern.to_owned(),
        notify,
        watchdog: (watchdog_ms > 0).then(|| pbjson_types::Duration {
            seconds: 0,
            nanos: (watchdog_ms * 1_000_000) as i32,
        }),
    })
}

pub(crate) async fn get(daemon: &Daemon, name: &str) -> pb::Instance {
    crate::harness::instance(&daemon.connect().await, name).await
}

async fn create(daemon: &Daemon, spec: pb::InstanceSpec) -> Result<pb::Instance, tonic::Status> {
    crate::harness::try_create(&daemon.connect().await, spec).await
}

/// The status stream, its snapshot read.
pub(crate) async fn watching(
    connection: &outpost::endpoint::Connection,
) -> tonic::Streaming<pb::WatchStatusResponse> {
    let mut stream = watch(connection, 0).await;
    crate::harness::next(&mut stream).await;
    stream
}

/// Waits for the instance's next move to `state`; its event.
pub(crate) async fn reaches(
    stream: &mut tonic::Streaming<pb::WatchStatusResponse>,
    name: &str,
    state: pb::InstanceState,
) -> pb::InstanceChanged {
    let seen = events_until(stream, |event| {
        changed(event).is_some_and(|c| {
            let instance = c.instance.as_ref().unwrap();
            instance.name == name && instance.state() == state
        })
    })
    .await;
    changed(seen.last().unwrap()).unwrap().clone()
}

#[tokio::test]
async fn a_log_line_makes_it_ready() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = watching(&connection).await;
    let go = gate(&daemon, "go");
    // An old line that matches, from before this process: never counts.
    let script = format!(
        "echo 'warming up'; echo 'noise' >&2; read line < {}; echo 'server listening on :8080' >&2; exec sleep 600",
        go.display()
    );
    let mut web = spec("web", "sh", &["-c", &script]);
    web.readiness = readiness("listening on :\\d+", false, 0);
    let created = create(&daemon, web).await.unwrap();
    assert_eq!(created.state(), pb::InstanceState::Starting);
    let before = get(&daemon, "web").await;
    assert_eq!(before.state(), pb::InstanceState::Starting);
    assert!(before.ready_by.is_empty());

    open(&go);
    let ready = reaches(&mut stream, "web", pb::InstanceState::Running).await;
    assert_eq!(ready.reason(), pb::TransitionReason::Ready);
    assert_eq!(ready.detail, "log line: server listening on :8080");
    assert_eq!(
        get(&daemon, "web").await.ready_by,
        "log line: server listening on :8080"
    );

    // A restart waits for a new line: the old one is in the file already.
    let restarted = daemon.ctl(&["restart", "web"]);
    assert!(restarted.status.success());
    let again = get(&daemon, "web").await;
    assert_eq!(again.state(), pb::InstanceState::Starting, "{again:?}");
    open(&go);
    reaches(&mut stream, "web", pb::InstanceState::Running).await;
}

#[tokio::test]
async fn a_line_written_at_once_is_not_missed() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = watching(&connection).await;
    let mut fast = spec("fast", "sh", &["-c", "echo ready now; exec sleep 600"]);
    fast.readiness = readiness("^ready now$", false, 0);
    create(&daemon, fast).await.unwrap();
    let ready = reaches(&mut stream, "fast", pb::InstanceState::Running).await;
    assert_eq!(ready.detail, "log line: ready now");
}

/// A Python process speaking sd_notify: STATUS, then READY once its gate
/// opens, then WATCHDOG=1 every 50 ms for `feeds` times, then silence.
pub(crate) fn notifier(gate: &Path, feeds: u32) -> Vec<String> {
    let program = format!(
        r#"
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
to = os.environ["NOTIFY_SOCKET"]
s.sendto(b"STATUS=loading data", to)
open({gate:?}).read()
s.sendto(b"STATUS=serving\nREADY=1", to)
for _ in range({feeds}):
    time.sleep(0.05)
    s.sendto(b"WATCHDOG=1", to)
time.sleep(600)
"#,
        gate = gate.display().to_string()
    );
    vec!["-c".to_owned(), program]
}

#[tokio::test]
async fn ready_by_sd_notify_with_its_status() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = watching(&connection).await;
    let go = gate(&daemon, "go");
    let args = notifier(&go, 0);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut api = spec("api", "python3", &args);
    api.readiness = readiness("", true, 0);
    create(&daemon, api).await.unwrap();
    let status = crate::harness::eventually(
        "STATUS= to arrive",
        crate::harness::START_DEADLINE,
        || async {
            let instance = get(&daemon, "api").await;
            (instance.notify_status == "loading data").then_some(instance)
        },
    )
    .await;
    assert_eq!(status.state(), pb::InstanceState::Starting);

    open(&go);
    let ready = reaches(&mut stream, "api", pb::InstanceState::Running).await;
    assert_eq!(ready.detail, "sd_notify READY=1");
    let shown = crate::harness::stdout(&daemon.ctl(&["get", "api"]));
    assert!(shown.contains("sd_notify READY=1"), "{shown}");
    crate::harness::eventually(
        "the new STATUS=",
        crate::harness::START_DEADLINE,
        || async { (get(&daemon, "api").await.notify_status == "serving").then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_starved_watchdog_restarts_the_instance() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = watching(&connection).await;
    let go = gate(&daemon, "go");
    // Fed for a while (4 × 50 ms, inside a 500 ms watchdog), then hung.
    let args = notifier(&go, 4);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut worker = spec("worker", "python3", &args);
    worker.readiness = readiness("", true, 500);
    worker.restart = Some(pb::RestartPolicy {
        mode: pb::RestartMode::OnFailure.into(),
        ..Default::default()
    });
    let first = create(&daemon, worker).await.unwrap();
    open(&go);
    reaches(&mut stream, "worker", pb::InstanceState::Running).await;
    let missed = reaches(&mut stream, "worker", pb::InstanceState::Backoff).await;
    assert_eq!(missed.reason(), pb::TransitionReason::Watchdog);
    assert_eq!(missed.detail, "no WATCHDOG=1 within 500ms");
    assert!(
        !crate::harness::exists(first.pid),
        "the hung process is gone"
    );
    // The next process gets a gate of its own to wait at: it is started.
    reaches(&mut stream, "worker", pb::InstanceState::Starting).await;
}

#[tokio::test]
async fn no_readiness_within_the_startup_timeout_is_a_failure() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = watching(&connection).await;
    let mut mute = spec("mute", "sleep", &["600"]);
    mute.readiness = readiness("never printed", false, 0);
    mute.startup_timeout = Some(pbjson_types::Duration {
        seconds: 0,
        nanos: 300_000_000,
    });
    create(&daemon, mute).await.unwrap();
    let failed = reaches(&mut stream, "mute", pb::InstanceState::Failed).await;
    assert_eq!(failed.reason(), pb::TransitionReason::StartupTimeout);
}

#[tokio::test]
async fn instances_never_inherit_the_daemons_service_protocol() {
    let daemon = Daemon::builder()
        .env("NOTIFY_SOCKET", "/run/systemd/notify")
        .env("WATCHDOG_USEC", "1000000")
        .start();
    let connection = daemon.connect().await;
    let mut stream = watching(&connection).await;
    let mut env = spec("env", "sh", &["-c", "env; exec sleep 600"]);
    env.readiness = readiness("^PATH=", false, 0);
    create(&daemon, env).await.unwrap();
    reaches(&mut stream, "env", pb::InstanceState::Running).await;
    let logs = crate::harness::stdout(&daemon.ctl(&["logs", "env", "--lines", "500"]));
    assert!(logs.contains("PATH="), "{logs}");
    assert!(!logs.contains("NOTIFY_SOCKET"), "{logs}");
    assert!(!logs.contains("WATCHDOG_USEC"), "{logs}");
}

#[tokio::test]
async fn bad_readiness_is_refused_naming_the_field() {
    let daemon = Daemon::start();
    let cases = [
        (
            readiness("(unclosed", false, 0),
            "spec.readiness.log_pattern",
        ),
        (readiness("x", true, 0), "spec.readiness"),
        (readiness("", false, 1000), "spec.readiness.watchdog"),
        (readiness("", true, 1), "spec.readiness.watchdog"),
    ];
    for (readiness, field) in cases {
        let mut bad = spec("bad", "sleep", &["600"]);
        bad.readiness = readiness;
        let err = create(&daemon, bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with(&format!("{field}:")), "{err:?}");
    }
    let cli = daemon.ctl(&["run", "bad", "--ready-log", "(", "--", "sleep", "1"]);
    assert_eq!(cli.status.code(), Some(1));
    let message = crate::harness::stderr(&cli);
    assert!(message.contains("spec.readiness.log_pattern"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[tokio::test]
async fn a_process_readopted_while_starting_is_still_heard() {
    let mut daemon = Daemon::start();
    let notify_go = gate(&daemon, "notify-go");
    let log_go = gate(&daemon, "log-go");
    let args = notifier(&notify_go, 0);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut api = spec("api", "python3", &args);
    api.readiness = readiness("", true, 0);
    create(&daemon, api).await.unwrap();
    let script = format!(
        "read line < {}; echo 'web listening'; exec sleep 600",
        log_go.display()
    );
    let mut web = spec("web", "sh", &["-c", &script]);
    web.readiness = readiness("web listening", false, 0);
    create(&daemon, web).await.unwrap();
    crate::harness::eventually(
        "api's first STATUS=",
        crate::harness::START_DEADLINE,
        || async { (get(&daemon, "api").await.notify_status == "loading data").then_some(()) },
    )
    .await;
    let pids = (get(&daemon, "api").await.pid, get(&daemon, "web").await.pid);

    // The daemon dies while both are starting; the next one re-adopts them.
    daemon.signal(nix::sys::signal::Signal::SIGKILL);
    daemon.wait_exit(crate::harness::START_DEADLINE);
    daemon.respawn(&[]);
    let connection = daemon.connect().await;
    let mut stream = watching(&connection).await;
    for (name, pid) in [("api", pids.0), ("web", pids.1)] {
        let adopted = get(&daemon, name).await;
        assert_eq!(
            (adopted.state(), adopted.pid),
            (pb::InstanceState::Starting, pid)
        );
    }

    open(&notify_go);
    let ready = reaches(&mut stream, "api", pb::InstanceState::Running).await;
    assert_eq!(ready.detail, "sd_notify READY=1");
    open(&log_go);
    let ready = reaches(&mut stream, "web", pb::InstanceState::Running).await;
    assert_eq!(ready.detail, "log line: web listening");
}
