//! Every duration, count and size is bounded where it enters: over RPC,
//! through `outpostctl`'s flags and in a workspace file, a value over its
//! limit is INVALID_ARGUMENT naming the field and the limit, nothing is
//! created, and the daemon goes on serving. Input quoted back in an error
//! is cut; one huge log line reaches a follower in bounded pieces.

use std::{
    collections::HashMap,
    fs,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use outpost::proto::v1 as pb;
use tonic::Code;

use crate::harness::{Daemon, create, eventually, spec, stderr, stdout};

/// A protobuf duration of `seconds`.
fn seconds(seconds: i64) -> Option<pbjson_types::Duration> {
    Some(pbjson_types::Duration { seconds, nanos: 0 })
}

/// Just over the one-year limit of timeouts and delays.
const OVER_A_YEAR: i64 = 365 * 24 * 3600 + 1;
/// The longest duration protobuf allows: 10 000 years.
const PROTO_MAX: i64 = 315_576_000_000;

/// A spec with a probe and a restart policy, changed by `change`.
fn with(change: impl Fn(&mut pb::InstanceSpec)) -> pb::InstanceSpec {
    let mut spec = spec("bounded", "sleep", &["1000"]);
    spec.health = Some(pb::HealthCheck {
        probe: Some(pb::health_check::Probe::Exec(pb::ExecProbe {
            command: vec!["true".to_owned()],
        })),
        ..Default::default()
    });
    spec.restart = Some(pb::RestartPolicy {
        mode: pb::RestartMode::OnFailure.into(),
        ..Default::default()
    });
    change(&mut spec);
    spec
}

fn health(spec: &mut pb::InstanceSpec) -> &mut pb::HealthCheck {
    spec.health.as_mut().unwrap()
}

fn restart(spec: &mut pb::InstanceSpec) -> &mut pb::RestartPolicy {
    spec.restart.as_mut().unwrap()
}

/// The daemon answers and holds exactly `count` instances.
async fn healthy(connection: &outpost::endpoint::Connection, count: u32) {
    let status = connection
        .orchestrator()
        .get_daemon_status(pb::GetDaemonStatusRequest {})
        .await
        .expect("the daemon still answers")
        .into_inner();
    assert_eq!(status.instance_count, count);
}

#[tokio::test]
async fn over_limit_spec_values_are_refused_over_rpc_naming_field_and_limit() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut orchestrator = connection.orchestrator();
    let big = |len: usize| "a".repeat(len);
    type Change = Box<dyn Fn(&mut pb::InstanceSpec)>;
    let cases: Vec<(Change, &str, &str)> = vec![
        (
            Box::new(|s| s.idle_timeout = seconds(PROTO_MAX)),
            "spec.idle_timeout",
            "365 days",
        ),
        (
            // Before the bounds, this one panicked the actor ("overflow
            // when adding duration to instant") and its process outlived
            // a delete.
            Box::new(|s| s.idle_timeout = seconds(i64::MAX)),
            "spec.idle_timeout",
            "365 days",
        ),
        (
            Box::new(|s| s.idle_timeout = seconds(OVER_A_YEAR)),
            "spec.idle_timeout",
            "365 days",
        ),
        (
            Box::new(|s| s.startup_timeout = seconds(PROTO_MAX)),
            "spec.startup_timeout",
            "365 days",
        ),
        (
            Box::new(|s| s.stop_grace_period = seconds(3601)),
            "spec.stop_grace_period",
            "1 hour",
        ),
        (
            Box::new(|s| health(s).interval = seconds(PROTO_MAX)),
            "spec.health.interval",
            "365 days",
        ),
        (
            Box::new(|s| {
                health(s).interval = Some(pbjson_types::Duration {
                    seconds: 0,
                    nanos: 1,
                })
            }),
            "spec.health.interval",
            "at least 10ms",
        ),
        (
            Box::new(|s| health(s).timeout = seconds(OVER_A_YEAR)),
            "spec.health.timeout",
            "365 days",
        ),
        (
            Box::new(|s| health(s).failure_threshold = Some(u32::MAX)),
            "spec.health.failure_threshold",
            "at most 1000",
        ),
        (
            Box::new(|s| health(s).success_threshold = Some(1001)),
            "spec.health.success_threshold",
            "at most 1000",
        ),
        (
            Box::new(|s| {
                restart(s).initial_delay = seconds(OVER_A_YEAR);
                restart(s).max_delay = seconds(PROTO_MAX);
            }),
            "spec.restart.initial_delay",
            "365 days",
        ),
        (
            Box::new(|s| restart(s).max_delay = seconds(PROTO_MAX)),
            "spec.restart.max_delay",
            "365 days",
        ),
        (
            Box::new(|s| restart(s).reset_after = seconds(PROTO_MAX)),
            "spec.restart.reset_after",
            "365 days",
        ),
        (
            Box::new(|s| restart(s).cooldown = seconds(PROTO_MAX)),
            "spec.restart.cooldown",
            "365 days",
        ),
        (
            Box::new(|s| restart(s).max_restarts = Some(u32::MAX)),
            "spec.restart.max_restarts",
            "at most 10000",
        ),
        (
            Box::new(move |s| s.command = big(4096)),
            "spec.command",
            "limit of 4095 bytes",
        ),
        (
            Box::new(|s| s.args = vec![String::new(); 4097]),
            "spec.args",
            "at most 4096",
        ),
        (
            Box::new(move |s| s.args = vec![big(128 * 1024)]),
            "spec.args",
            "limit of 131071 bytes",
        ),
        (
            Box::new(move |s| s.args = vec![big(100_000); 11]),
            "spec.args",
            "limit of 1048576 bytes",
        ),
        (
            Box::new(|s| {
                s.env = (0..1025)
                    .map(|i| (format!("V{i}"), String::new()))
                    .collect()
            }),
            "spec.env",
            "at most 1024",
        ),
        (
            Box::new(move |s| s.env = HashMap::from([("K".to_owned(), big(128 * 1024))])),
            "spec.env",
            "limit of 131071 bytes",
        ),
        (
            Box::new(move |s| s.project_path = format!("/{}", big(5000))),
            "spec.project_path",
            "limit of 4095 bytes",
        ),
        (
            Box::new(move |s| s.working_dir = format!("/{}", big(5000))),
            "spec.working_dir",
            "limit of 4095 bytes",
        ),
        (
            Box::new(|s| s.labels = (0..65).map(|i| (format!("l{i}"), String::new())).collect()),
            "spec.labels",
            "at most 64",
        ),
        (
            Box::new(move |s| s.labels = HashMap::from([("k".to_owned(), big(1025))])),
            "spec.labels",
            "limit of 1024 bytes",
        ),
        (
            Box::new(move |s| {
                health(s).probe = Some(pb::health_check::Probe::Http(pb::HttpProbe {
                    url: format!("http://{}", big(9000)),
                    path: String::new(),
                }))
            }),
            "spec.health.http.url",
            "limit of 8192 bytes",
        ),
        (
            Box::new(move |s| {
                health(s).probe = Some(pb::health_check::Probe::Tcp(pb::TcpProbe {
                    host: big(300),
                    port: 80,
                }))
            }),
            "spec.health.tcp.host",
            "limit of 253 bytes",
        ),
    ];
    for (change, field, limit) in cases {
        let status = orchestrator
            .create_instance(pb::CreateInstanceRequest {
                spec: Some(with(change)),
                start: None,
            })
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let message = status.message();
        assert!(
            message.starts_with(&format!("{field}: ")) && message.contains(limit),
            "{field} and {limit:?} named in {message:?}"
        );
    }
    healthy(&connection, 0).await;

    // At the limits themselves, everything is accepted, runs, and every
    // time it reports fits a timestamp (`ls --json` renders them all).
    let at_limit = with(|s| {
        s.name = "at-limit".to_owned();
        s.command = "false".to_owned();
        s.args.clear();
        s.idle_timeout = seconds(OVER_A_YEAR - 1);
        s.startup_timeout = seconds(OVER_A_YEAR - 1);
        s.stop_grace_period = seconds(3600);
        health(s).interval = seconds(OVER_A_YEAR - 1);
        let policy = restart(s);
        policy.initial_delay = seconds(OVER_A_YEAR - 1);
        policy.max_delay = seconds(OVER_A_YEAR - 1);
        policy.reset_after = seconds(OVER_A_YEAR - 1);
        policy.cooldown = seconds(OVER_A_YEAR - 1);
    });
    create(&connection, at_limit).await;
    let waiting = eventually("a year's backoff", Duration::from_secs(10), || {
        let mut orchestrator = connection.orchestrator();
        async move {
            let instance = orchestrator
                .get_instance(pb::GetInstanceRequest {
                    instance: "at-limit".to_owned(),
                })
                .await
                .ok()?
                .into_inner()
                .instance?;
            (instance.state == pb::InstanceState::Backoff as i32).then_some(instance)
        }
    })
    .await;
    let next = waiting.backoff.unwrap().next_attempt_at.unwrap();
    let in_250_days = SystemTime::now() + Duration::from_secs(250 * 24 * 3600);
    let in_250_days = in_250_days.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(next.seconds as u64 > in_250_days, "{next:?}");
    let listed = daemon.ctl(&["--json", "ls", "--full"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains("at-limit"));
    healthy(&connection, 1).await;
}

#[tokio::test]
async fn over_limit_request_fields_are_refused_and_the_daemon_keeps_serving() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut orchestrator = connection.orchestrator();
    create(&connection, spec("web", "sleep", &["1000"])).await;
    let expect = |result: Result<(), tonic::Status>, field: &str, limit: &str| {
        let status = result.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(&format!("{field}: ")) && status.message().contains(limit),
            "{field} and {limit:?} named in {:?}",
            status.message()
        );
    };
    expect(
        orchestrator
            .stop_instance(pb::StopInstanceRequest {
                instance: "web".to_owned(),
                grace_period: seconds(PROTO_MAX),
                ..Default::default()
            })
            .await
            .map(drop),
        "grace_period",
        "1 hour",
    );
    expect(
        orchestrator
            .stream_logs(pb::StreamLogsRequest {
                instance: "web".to_owned(),
                tail_lines: u32::MAX,
                ..Default::default()
            })
            .await
            .map(drop),
        "tail_lines",
        "at most 100000",
    );
    expect(
        orchestrator
            .get_instance(pb::GetInstanceRequest {
                instance: "x".repeat(1 << 20),
            })
            .await
            .map(drop),
        "instance",
        "limit of 128 bytes",
    );
    expect(
        orchestrator
            .list_instances(pb::ListInstancesRequest {
                labels: (0..100).map(|i| (format!("k{i}"), String::new())).collect(),
                ..Default::default()
            })
            .await
            .map(drop),
        "labels",
        "at most 64",
    );
    expect(
        orchestrator
            .list_instances(pb::ListInstancesRequest {
                states: vec![1; 2000],
                ..Default::default()
            })
            .await
            .map(drop),
        "states",
        "at most 1024",
    );
    expect(
        orchestrator
            .watch_status(pb::WatchStatusRequest {
                instances: vec!["web".to_owned(); 2000],
                ..Default::default()
            })
            .await
            .map(drop),
        "instances",
        "at most 1024",
    );
    expect(
        orchestrator
            .register_external_instance(pb::RegisterExternalInstanceRequest {
                name: "outside".to_owned(),
                pid: u32::MAX,
                ..Default::default()
            })
            .await
            .map(drop),
        "pid",
        "at most 4194304",
    );
    let mut sync = connection.sync();
    expect(
        sync.resolve_conflict(pb::ResolveConflictRequest {
            conflict_id: "c".repeat(1 << 20),
            resolution: pb::Resolution::KeepDisk.into(),
        })
        .await
        .map(drop),
        "conflict_id",
        "limit of 128 bytes",
    );
    expect(
        sync.watch_sync_events(pb::WatchSyncEventsRequest {
            since_revision: 0,
            kinds: vec![1; 2000],
        })
        .await
        .map(drop),
        "kinds",
        "at most 1024",
    );
    // The instance is untouched: a stop within the limit works.
    let stopped = orchestrator
        .stop_instance(pb::StopInstanceRequest {
            instance: "web".to_owned(),
            grace_period: seconds(3600),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(stopped.state, pb::InstanceState::Stopped as i32);
    healthy(&connection, 1).await;
}

#[tokio::test]
async fn echoed_input_is_cut_in_errors() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let huge = "Q".repeat(1 << 20);
    let status = connection
        .orchestrator()
        .create_instance(pb::CreateInstanceRequest {
            spec: Some(with(|s| s.stop_signal = huge.clone())),
            start: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let message = status.message();
    assert!(message.starts_with("spec.stop_signal: "), "{message}");
    assert!(message.contains("… (1048576 bytes)"), "{message}");
    assert!(message.len() < 400, "{} bytes echoed", message.len());
    // A command that cannot be spawned is named cut, too.
    let missing = format!("/no/such/{}", "c".repeat(4000));
    let status = connection
        .orchestrator()
        .create_instance(pb::CreateInstanceRequest {
            spec: Some(spec("missing", &missing, &[])),
            start: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("… (4009 bytes)"),
        "{}",
        status.message()
    );
    assert!(
        status.message().len() < 400,
        "{} bytes echoed",
        status.message().len()
    );
    healthy(&connection, 0).await;
}

#[test]
fn outpostctl_flags_over_their_limits_get_one_line_naming_field_and_limit() {
    let daemon = Daemon::start();
    let run = |flag: &str, value: &str| {
        daemon.ctl(&["run", "flagged", flag, value, "--", "sleep", "1000"])
    };
    let cases = [
        (
            run("--idle-timeout", "20000years"),
            "spec.idle_timeout",
            "365 days",
        ),
        (
            run("--idle-timeout", "366days"),
            "spec.idle_timeout",
            "365 days",
        ),
        (
            run("--startup-timeout", "400days"),
            "spec.startup_timeout",
            "365 days",
        ),
        (
            run("--reset-after", "5000years"),
            "spec.restart.reset_after",
            "365 days",
        ),
        (
            run("--cooldown", "5000years"),
            "spec.restart.cooldown",
            "365 days",
        ),
        (
            run("--backoff", "1s..9000years"),
            "spec.restart.max_delay",
            "365 days",
        ),
        (
            run("--stop-grace", "2h"),
            "spec.stop_grace_period",
            "1 hour",
        ),
        (
            run("--max-restarts", "4000000000"),
            "spec.restart.max_restarts",
            "10000",
        ),
        (
            daemon.ctl(&[
                "run",
                "flagged",
                "--health",
                "tcp",
                "--port",
                "auto",
                "--health-interval",
                "20000years",
                "--",
                "sleep",
                "1000",
            ]),
            "spec.health.interval",
            "365 days",
        ),
        (
            daemon.ctl(&["logs", "flagged", "-n", "4000000000"]),
            "tail_lines",
            "100000",
        ),
    ];
    for (output, field, limit) in cases {
        assert!(!output.status.success(), "{field} accepted");
        let error = stderr(&output);
        assert_eq!(error.trim_end().lines().count(), 1, "one line: {error}");
        assert!(
            error.contains(field) && error.contains(limit),
            "{field} and {limit} in {error:?}"
        );
    }
    let stop = daemon.ctl(&["stop", "nothing", "--grace", "20000years"]);
    assert!(
        stderr(&stop).contains("grace_period") && stderr(&stop).contains("1 hour"),
        "{}",
        stderr(&stop)
    );
    let status = daemon.ctl(&["status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let listed = daemon.ctl(&["--json", "ls"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(!stdout(&listed).contains("flagged"), "nothing was created");
}

#[tokio::test]
async fn workspace_files_over_the_limits_are_refused_by_check_and_apply() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("idle_timeout = \"20000years\"", "idle_timeout", "365 days"),
        (
            "startup_timeout = \"400days\"",
            "startup_timeout",
            "365 days",
        ),
        ("stop_grace = \"2h\"", "stop_grace", "1 hour"),
        ("reset_after = \"9000years\"", "reset_after", "365 days"),
        ("cooldown = \"9000years\"", "cooldown", "365 days"),
        (
            "restart = \"always\"\nbackoff = \"1s..9000years\"",
            "backoff",
            "365 days",
        ),
        ("max_restarts = 4000000000", "max_restarts", "10000"),
        (
            "health = { exec = \"true\", interval = \"20000years\" }",
            "health.interval",
            "365 days",
        ),
        (
            "health = { exec = \"true\", failures = 5000 }",
            "health.failures",
            "1000",
        ),
    ];
    for (index, (line, field, limit)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("bounds{index}.toml"));
        fs::write(
            &file,
            format!("[instances.web]\ncommand = [\"sleep\", \"1000\"]\n{line}\n"),
        )
        .unwrap();
        let check = daemon.ctl(&["workspace", "check", file.to_str().unwrap()]);
        assert!(!check.status.success(), "{field} passed check");
        let error = format!("{}{}", stdout(&check), stderr(&check));
        assert!(
            error.contains(&format!("instances.web: {field}: ")) && error.contains(limit),
            "{field} and {limit} in {error:?}"
        );
        let status = connection
            .orchestrator()
            .apply_workspace(pb::ApplyWorkspaceRequest {
                source: Some(pb::apply_workspace_request::Source::File(
                    file.display().to_string(),
                )),
                dry_run: false,
            })
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(field) && status.message().contains(limit),
            "{field} and {limit} in {:?}",
            status.message()
        );
    }
    healthy(&connection, 0).await;
}

#[tokio::test]
async fn a_64_mb_line_reaches_a_follower_in_bounded_pieces() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let marker = daemon.dir.path().join("go");
    // "done" again and again: a rotation (copy and truncate at 10 MiB)
    // may take a line away from a follower that is behind.
    let script = format!(
        "while [ ! -e {0} ]; do sleep 0.01; done; head -c 67108864 /dev/zero | tr '\\0' x; echo; while true; do echo done; sleep 0.2; done",
        marker.display()
    );
    create(&connection, spec("chatty", "sh", &["-c", &script])).await;
    let mut stream = connection
        .orchestrator()
        .stream_logs(pb::StreamLogsRequest {
            instance: "chatty".to_owned(),
            tail_lines: 10,
            follow: true,
            stream: pb::LogStream::Stdout.into(),
        })
        .await
        .unwrap()
        .into_inner();
    fs::write(&marker, "").unwrap();
    let mut received = 0usize;
    let mut partial = 0usize;
    let mut largest_message = 0usize;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(120), stream.message())
            .await
            .expect("log messages keep coming")
            .expect("the stream stays healthy")
            .expect("the stream stays open");
        let size: usize = message.lines.iter().map(|line| line.text.len()).sum();
        largest_message = largest_message.max(size);
        for line in &message.lines {
            assert!(
                line.text.len() <= 64 * 1024,
                "a piece of {} bytes",
                line.text.len()
            );
            partial += usize::from(line.partial);
        }
        received += size;
        if message.lines.iter().any(|line| line.text == "done") {
            break;
        }
    }
    assert!(
        largest_message <= 1 << 20,
        "a message of {largest_message} bytes"
    );
    // Rotation (copy and truncate at 10 MiB) may take part of the line
    // away from a follower, never all of it.
    assert!(received > 4 << 20, "only {received} bytes arrived");
    assert!(partial > 64, "{partial} partial pieces");
    healthy(&connection, 1).await;
}
