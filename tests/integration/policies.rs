//! Health checks, restart policy with backoff and breaker, idle timeout,
//! with real processes; durations are scaled down through the spec.

use std::{
    fs,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, SystemTime},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use outpost::{
    endpoint::{AuthChannel, Connection},
    proto::v1::{
        self as pb, orchestrator_client::OrchestratorClient, watch_status_response::Payload,
    },
};
use tokio::{
    io::AsyncWriteExt,
    net::TcpListener,
    time::{Instant, timeout},
};
use tonic::{Code, Streaming};

use crate::harness::{
    Daemon, START_DEADLINE, changed, create, events_until, eventually, exists, next, spec, stop,
    watch,
};

fn ms(millis: u64) -> Option<pbjson_types::Duration> {
    Some(Duration::from_millis(millis).into())
}

fn restart(
    mode: pb::RestartMode,
    initial: u64,
    max: u64,
    max_restarts: u32,
) -> Option<pb::RestartPolicy> {
    Some(pb::RestartPolicy {
        mode: mode.into(),
        initial_delay: ms(initial),
        max_delay: ms(max),
        max_restarts: Some(max_restarts),
        ..Default::default()
    })
}

fn http_check(path: &str, interval: u64, timeout: u64, failures: u32) -> Option<pb::HealthCheck> {
    Some(pb::HealthCheck {
        probe: Some(pb::health_check::Probe::Http(pb::HttpProbe {
            path: path.to_owned(),
            url: String::new(),
        })),
        interval: ms(interval),
        timeout: ms(timeout),
        failure_threshold: Some(failures),
        success_threshold: None,
    })
}

fn auto_port() -> Option<pb::PortRequest> {
    Some(pb::PortRequest {
        mode: pb::PortMode::Auto.into(),
        number: 0,
    })
}

/// A stream positioned after its initial snapshot.
async fn live_stream(connection: &Connection) -> Streaming<pb::WatchStatusResponse> {
    let mut stream = watch(connection, 0).await;
    assert!(matches!(
        next(&mut stream).await.payload,
        Some(Payload::Snapshot(_))
    ));
    stream
}

/// The instance after an event, if the event is about `name`.
fn instance_of<'a>(event: &'a pb::StatusEvent, name: &str) -> Option<&'a pb::Instance> {
    changed(event)
        .and_then(|c| c.instance.as_ref())
        .filter(|i| i.name == name)
}

fn state_of(event: &pb::StatusEvent, name: &str) -> Option<pb::InstanceState> {
    instance_of(event, name).and_then(|i| pb::InstanceState::try_from(i.state).ok())
}

fn reason_of(event: &pb::StatusEvent) -> pb::TransitionReason {
    changed(event)
        .and_then(|c| pb::TransitionReason::try_from(c.reason).ok())
        .unwrap_or_default()
}

fn time_of(event: &pb::StatusEvent) -> SystemTime {
    let time = event.time.unwrap();
    SystemTime::UNIX_EPOCH + Duration::new(time.seconds as u64, time.nanos as u32)
}

/// Asserts `gap` is the nominal delay (jitter shortens it by up to 20 %),
/// allowing for a loaded machine on the late side.
fn assert_delay(gap: Duration, nominal: Duration, what: &str) {
    let low = nominal
        .mul_f64(0.8)
        .saturating_sub(Duration::from_millis(5));
    let high = nominal + Duration::from_millis(400);
    assert!(
        gap >= low && gap <= high,
        "{what}: waited {gap:?}, expected about {nominal:?}"
    );
}

#[tokio::test]
async fn a_crashing_process_follows_the_backoff_schedule_into_the_breaker_and_one_half_open_try() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = live_stream(&connection).await;
    let mut crasher = spec("crasher", "sh", &["-c", "exit 1"]);
    crasher.restart = Some(pb::RestartPolicy {
        cooldown: ms(1000),
        ..restart(pb::RestartMode::OnFailure, 200, 800, 3).unwrap()
    });
    create(&connection, crasher).await;

    let mut errors = 0;
    let seen = events_until(&mut stream, |event| {
        if state_of(event, "crasher") == Some(pb::InstanceState::Error) {
            errors += 1;
        }
        errors == 2
    })
    .await;
    let transitions: Vec<(
        pb::InstanceState,
        pb::TransitionReason,
        SystemTime,
        &pb::Instance,
    )> = seen
        .iter()
        .filter_map(|e| {
            Some((
                state_of(e, "crasher")?,
                reason_of(e),
                time_of(e),
                instance_of(e, "crasher")?,
            ))
        })
        .collect();
    // Each wait runs from entering BACKOFF (or ERROR) to the next start.
    let mut waits = Vec::new();
    for pair in transitions.windows(2) {
        let ((from, _, left, _), (to, reason, right, instance)) = (&pair[0], &pair[1]);
        if *to == pb::InstanceState::Starting
            && matches!(from, pb::InstanceState::Backoff | pb::InstanceState::Error)
        {
            waits.push((
                *reason,
                right.duration_since(*left).unwrap(),
                instance.backoff.unwrap(),
            ));
        }
    }
    let reasons: Vec<_> = waits.iter().map(|(reason, _, _)| *reason).collect();
    use pb::TransitionReason::{BackoffElapsed, BreakerHalfOpen};
    assert_eq!(
        reasons,
        [
            BackoffElapsed,
            BackoffElapsed,
            BackoffElapsed,
            BreakerHalfOpen
        ]
    );
    for ((_, gap, _), nominal) in waits.iter().zip([200, 400, 800]) {
        assert_delay(*gap, Duration::from_millis(nominal), "backoff");
    }
    let (_, cooldown, half_open) = &waits[3];
    assert!(
        *cooldown >= Duration::from_millis(995) && *cooldown <= Duration::from_millis(1400),
        "cooldown {cooldown:?}"
    );
    assert_eq!(half_open.breaker, pb::BreakerState::HalfOpen as i32);

    let errors: Vec<&(
        pb::InstanceState,
        pb::TransitionReason,
        SystemTime,
        &pb::Instance,
    )> = transitions
        .iter()
        .filter(|(state, ..)| *state == pb::InstanceState::Error)
        .collect();
    for (_, reason, _, instance) in &errors {
        assert_eq!(*reason, pb::TransitionReason::BreakerOpen);
        let backoff = instance.backoff.as_ref().unwrap();
        assert_eq!(backoff.breaker, pb::BreakerState::Open as i32);
        assert!(
            backoff.next_attempt_at.is_some(),
            "the next attempt is announced"
        );
    }
    let last = errors.last().unwrap().3;
    assert_eq!(last.restart_count, 3);
    assert!(!last.recent_failures.is_empty());
    assert!(
        last.last_error.contains("exit code 1"),
        "{}",
        last.last_error
    );
}

#[tokio::test]
async fn a_server_that_stops_answering_is_detected_and_replaced() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = live_stream(&connection).await;
    let mut web = spec(
        "web",
        "python3",
        &["-m", "http.server", "{port}", "--bind", "127.0.0.1"],
    );
    web.port = auto_port();
    web.health = http_check("/", 100, 300, 3);
    web.restart = restart(pb::RestartMode::OnFailure, 100, 100, 5);
    web.stop_grace_period = ms(300);
    create(&connection, web).await;
    let ready = events_until(&mut stream, |e| {
        state_of(e, "web") == Some(pb::InstanceState::Running)
    })
    .await;
    let first_pid = instance_of(ready.last().unwrap(), "web").unwrap().pid;
    assert_eq!(
        instance_of(ready.last().unwrap(), "web")
            .unwrap()
            .health
            .as_ref()
            .unwrap()
            .state,
        pb::HealthState::Healthy as i32
    );

    // Alive but not answering.
    kill(Pid::from_raw(first_pid as i32), Signal::SIGSTOP).unwrap();
    let replaced = events_until(&mut stream, |e| {
        state_of(e, "web") == Some(pb::InstanceState::Running)
            && instance_of(e, "web").unwrap().pid != first_pid
    })
    .await;
    let unhealthy = replaced
        .iter()
        .find(|e| reason_of(e) == pb::TransitionReason::HealthFailure)
        .expect("a health failure event");
    let instance = instance_of(unhealthy, "web").unwrap();
    assert_eq!(
        instance.health.as_ref().unwrap().state,
        pb::HealthState::Unhealthy as i32
    );
    assert!(!instance.health.as_ref().unwrap().last_failure.is_empty());
    assert!(!exists(first_pid), "the hung process is gone");
}

#[tokio::test]
async fn a_server_that_never_becomes_ready_fails_its_start() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = live_stream(&connection).await;
    let mut mute = spec("mute", "sleep", &["1000"]);
    mute.port = auto_port();
    mute.health = http_check("/", 100, 100, 3);
    mute.startup_timeout = ms(500);
    let created = create(&connection, mute).await;
    assert_eq!(
        created.state,
        pb::InstanceState::Starting as i32,
        "not ready before its check passes"
    );
    let seen = events_until(&mut stream, |e| {
        state_of(e, "mute") == Some(pb::InstanceState::Failed)
    })
    .await;
    let failed = seen.last().unwrap();
    assert_eq!(reason_of(failed), pb::TransitionReason::StartupTimeout);
    assert!(
        instance_of(failed, "mute")
            .unwrap()
            .last_error
            .contains("not ready within 500ms")
    );
    assert!(
        !exists(created.pid),
        "the process of a failed start is stopped"
    );
}

#[tokio::test]
async fn staying_healthy_resets_the_failure_count() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = live_stream(&connection).await;
    let dir = daemon.dir.path().to_str().unwrap().to_owned();
    // Fails twice at once, then runs until told to crash.
    let script = r#"n=$(cat "$0/count" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$0/count"
        [ $n -le 2 ] && exit 1
        while [ ! -e "$0/crash" ]; do sleep 0.02; done; rm "$0/crash"; exit 1"#;
    let mut flaky = spec("flaky", "sh", &["-c", script, &dir]);
    flaky.restart = Some(pb::RestartPolicy {
        reset_after: ms(300),
        ..restart(pb::RestartMode::OnFailure, 100, 1000, 10).unwrap()
    });
    create(&connection, flaky).await;
    let seen = events_until(&mut stream, |e| {
        state_of(e, "flaky") == Some(pb::InstanceState::Running)
            && instance_of(e, "flaky").unwrap().restart_count == 2
    })
    .await;
    let delays: Vec<Duration> = seen
        .iter()
        .filter(|e| state_of(e, "flaky") == Some(pb::InstanceState::Backoff))
        .map(|e| {
            instance_of(e, "flaky")
                .unwrap()
                .backoff
                .as_ref()
                .unwrap()
                .current_delay
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    assert_eq!(delays.len(), 2);
    assert!(
        delays[1] > Duration::from_millis(150),
        "the second delay doubled: {delays:?}"
    );

    let client = connection.orchestrator();
    eventually("the failure count to reset", START_DEADLINE, || {
        let mut client = client.clone();
        async move { (failure_count(&mut client, "flaky").await == 0).then_some(()) }
    })
    .await;
    fs::write(daemon.dir.path().join("crash"), "").unwrap();
    let seen = events_until(&mut stream, |e| {
        state_of(e, "flaky") == Some(pb::InstanceState::Backoff)
    })
    .await;
    let backoff = instance_of(seen.last().unwrap(), "flaky")
        .unwrap()
        .backoff
        .unwrap();
    assert_eq!(backoff.consecutive_failures, 1, "counting starts over");
    let delay: Duration = backoff.current_delay.unwrap().try_into().unwrap();
    assert!(
        delay <= Duration::from_millis(100),
        "back at the initial delay: {delay:?}"
    );
}

/// The failure count an instance's restart policy has reached.
async fn failure_count(client: &mut OrchestratorClient<AuthChannel>, name: &str) -> u32 {
    let request = pb::GetInstanceRequest {
        instance: name.to_owned(),
    };
    let instance = client
        .get_instance(request)
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    instance.backoff.unwrap().consecutive_failures
}

#[tokio::test]
async fn stop_during_backoff_wins_over_the_pending_restart() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = live_stream(&connection).await;
    let mut crasher = spec("crasher", "sh", &["-c", "exit 1"]);
    crasher.restart = restart(pb::RestartMode::OnFailure, 1000, 1000, 5);
    create(&connection, crasher).await;
    events_until(&mut stream, |e| {
        state_of(e, "crasher") == Some(pb::InstanceState::Backoff)
    })
    .await;
    let stopped = stop(&connection, "crasher").await;
    assert_eq!(stopped.state, pb::InstanceState::Stopped as i32);
    events_until(&mut stream, |e| {
        state_of(e, "crasher") == Some(pb::InstanceState::Stopped)
    })
    .await;
    // Past the moment the restart was due, nothing happens.
    let quiet = timeout(Duration::from_millis(1800), stream.message()).await;
    assert!(quiet.is_err(), "no event after the stop: {quiet:?}");
}

#[tokio::test]
async fn idle_instances_stop_touch_keeps_them_and_up_brings_them_back() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = live_stream(&connection).await;
    let project = daemon.dir.path().join("site");
    fs::create_dir(&project).unwrap();
    let mut napper = spec("napper", "sleep", &["1000"]);
    napper.project_path = project.to_str().unwrap().to_owned();
    napper.idle_timeout = ms(600);
    let first = create(&connection, napper).await;
    let mut client = connection.orchestrator();

    // Touched every 150 ms for 1.5 s: it stays up well past its timeout.
    let end = Instant::now() + Duration::from_millis(1500);
    let mut ticks = tokio::time::interval(Duration::from_millis(150));
    while Instant::now() < end {
        ticks.tick().await;
        let touched = client
            .record_activity(pb::RecordActivityRequest {
                instance: "napper".to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(touched.idle_deadline.is_some());
        assert_eq!(
            touched.instance.unwrap().pid,
            first.pid,
            "still the first process"
        );
    }

    let seen = events_until(&mut stream, |e| {
        state_of(e, "napper") == Some(pb::InstanceState::Stopped)
    })
    .await;
    assert_eq!(
        reason_of(seen.last().unwrap()),
        pb::TransitionReason::IdleTimeout
    );
    assert!(!exists(first.pid));

    let up = client
        .get_or_create_instance(pb::GetOrCreateInstanceRequest {
            spec: Some(pb::InstanceSpec {
                project_path: project.to_str().unwrap().to_owned(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(up.started && !up.created);
    let instance = up.instance.unwrap();
    assert_eq!(instance.state, pb::InstanceState::Running as i32);
    assert_ne!(instance.pid, first.pid);
}

/// Serves `count` ports: answering ones reply 200 and count requests;
/// hanging ones accept and never answer.
async fn http_listeners(count: usize, hanging: bool) -> Vec<(u16, Arc<AtomicU32>)> {
    let mut listeners = Vec::new();
    for _ in 0..count {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU32::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                if hanging {
                    held.push(socket);
                    continue;
                }
                tokio::spawn(async move {
                    let mut request = [0; 1024];
                    let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut request).await;
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        listeners.push((port, hits));
    }
    listeners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_checks_never_delay_the_checks_of_other_instances() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let answering = http_listeners(90, false).await;
    let hanging = http_listeners(10, true).await;
    for (i, (port, _)) in answering.iter().chain(&hanging).enumerate() {
        let mut watched = spec(&format!("watched-{i}"), "sleep", &["1000"]);
        watched.health = Some(pb::HealthCheck {
            probe: Some(pb::health_check::Probe::Http(pb::HttpProbe {
                path: String::new(),
                url: format!("http://127.0.0.1:{port}/"),
            })),
            interval: ms(200),
            timeout: ms(1500),
            ..Default::default()
        });
        create(&connection, watched).await;
    }
    let before: Vec<u32> = answering
        .iter()
        .map(|(_, hits)| hits.load(Ordering::Relaxed))
        .collect();
    // A check every 200 ms gives 15 in 3 s; hanging neighbours must not
    // slow anyone down (a shared check loop would manage 2).
    eventually(
        "9 checks of every answering instance within 3 s",
        Duration::from_secs(3),
        || {
            let slowest = answering
                .iter()
                .zip(&before)
                .map(|((_, hits), before)| hits.load(Ordering::Relaxed) - before)
                .min()
                .unwrap();
            async move { (slowest >= 9).then_some(()) }
        },
    )
    .await;
    let list = connection
        .orchestrator()
        .list_instances(pb::ListInstancesRequest {
            states: vec![pb::InstanceState::Running.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.instances.len(),
        90,
        "the hanging ten never became ready"
    );
}

#[tokio::test]
async fn invalid_policies_name_the_field() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut client = connection.orchestrator();
    let with = |change: &dyn Fn(&mut pb::InstanceSpec)| {
        let mut spec = spec("bad", "sleep", &["1000"]);
        change(&mut spec);
        spec
    };
    let negative = Some(pbjson_types::Duration {
        seconds: -1,
        nanos: 0,
    });
    let cases = vec![
        (with(&|s| s.idle_timeout = negative), "spec.idle_timeout"),
        (
            with(&|s| s.restart = restart(pb::RestartMode::OnFailure, 2000, 1000, 3)),
            "spec.restart.max_delay",
        ),
        (
            with(&|s| {
                s.restart = Some(pb::RestartPolicy {
                    initial_delay: negative,
                    ..Default::default()
                })
            }),
            "spec.restart.initial_delay",
        ),
        (
            with(&|s| s.restart = restart(pb::RestartMode::OnFailure, 100, 1000, 0)),
            "spec.restart.max_restarts",
        ),
        (
            with(&|s| {
                s.port = auto_port();
                s.health = http_check("/", 100, 100, 0);
            }),
            "spec.health.failure_threshold",
        ),
        (
            with(&|s| s.health = http_check("/", 100, 100, 3)),
            "spec.health.http",
        ),
        (
            with(&|s| {
                s.health = Some(pb::HealthCheck {
                    probe: Some(pb::health_check::Probe::Tcp(pb::TcpProbe::default())),
                    ..Default::default()
                })
            }),
            "spec.health.tcp.port",
        ),
    ];
    for (spec, field) in cases {
        let status = client
            .create_instance(pb::CreateInstanceRequest {
                spec: Some(spec),
                start: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{field} not named in {:?}",
            status.message()
        );
    }
    let output = daemon.ctl(&[
        "run",
        "bad",
        "--health",
        "carrier-pigeon",
        "--",
        "sleep",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(crate::harness::stderr(&output).contains("unknown check kind"));
}
