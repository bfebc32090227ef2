//! Instance lifecycle against real processes: spawning, ports, stopping
//! whole process trees, SIGKILL after the grace period, serialised
//! restarts, external instances, validation.

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};
use outpost::proto::v1 as pb;
use tonic::Code;

use crate::harness::{
    Daemon, START_DEADLINE, create, eventually, exists, parent_of, pid_file, spec, stderr, stdout,
    stop, wait_until,
};

/// Sends GET / to 127.0.0.1:port and returns the status line.
fn http_status_line(port: u32) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port as u16)).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn http_server_with_an_auto_port_answers_on_the_reported_port() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut web = spec(
        "web",
        "python3",
        &["-m", "http.server", "{port}", "--bind", "127.0.0.1"],
    );
    web.port = Some(pb::PortRequest {
        mode: pb::PortMode::Auto.into(),
        number: 0,
    });
    let instance = create(&connection, web).await;
    assert_eq!(instance.state, pb::InstanceState::Running as i32);
    assert_ne!(instance.port, 0);
    let mut status = None;
    wait_until("the HTTP server to answer", START_DEADLINE, || {
        status = http_status_line(instance.port);
        status.is_some()
    });
    assert!(
        status.unwrap().contains("200"),
        "HTTP answer on the reported port"
    );
}

#[tokio::test]
async fn stop_leaves_no_process_of_the_tree_and_no_zombie() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let dir = daemon.dir.path().join("tree");
    fs::create_dir(&dir).unwrap();
    // A background child whose own child double-forks (the sleep's parent
    // exits at once), and a descendant that leaves the group with setsid.
    let script = r#"
        ( sh -c 'sleep 1000 & echo $! > "$0/double-forked"' "$1"; exec sleep 1000 ) &
        echo $! > "$1/child"
        setsid sh -c 'echo $$ > "$0/setsid"; exec sleep 1000' "$1" &
        exec sleep 1000
    "#;
    let instance = create(
        &connection,
        spec("tree", "sh", &["-c", script, "sh", dir.to_str().unwrap()]),
    )
    .await;
    let names = ["child", "double-forked", "setsid"];
    let mut pids: Vec<u32> = eventually("the tree to start", START_DEADLINE, || async {
        names.iter().map(|name| pid_file(&dir.join(name))).collect()
    })
    .await;
    pids.push(instance.pid);
    assert!(
        pids.iter().all(|&pid| exists(pid)),
        "every process runs: {pids:?}"
    );
    let setsid_pid = pids[2] as i32;
    assert_ne!(
        nix::unistd::getpgid(Some(Pid::from_raw(setsid_pid))).unwrap(),
        Pid::from_raw(instance.pgid as i32),
        "the setsid process left the group"
    );

    let stopped = stop(&connection, "tree").await;
    assert_eq!(stopped.state, pb::InstanceState::Stopped as i32);
    let left: Vec<u32> = pids.iter().copied().filter(|&pid| exists(pid)).collect();
    assert!(left.is_empty(), "still present (alive or zombie): {left:?}");
}

#[tokio::test]
async fn a_daemonized_descendant_gets_the_stop_signal_not_only_the_kill() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let dir = daemon.dir.path().join("daemonized");
    fs::create_dir(&dir).unwrap();
    // The subshell starts a new session and exits at once: the daemonized
    // process is orphaned (re-parented to the daemon) outside the group,
    // and notes the SIGTERM it gets.
    let script = r#"
        ( setsid sh -c 'trap "echo term > \"$0/got-term\"; exit 0" TERM
                        echo $$ > "$0/orphan"
                        while :; do sleep 0.05; done' "$1" & )
        exec sleep 1000
    "#;
    let mut daemonized = spec(
        "daemonized",
        "sh",
        &["-c", script, "sh", dir.to_str().unwrap()],
    );
    daemonized.stop_grace_period = Some(Duration::from_secs(5).into());
    create(&connection, daemonized).await;
    let orphan_file = dir.join("orphan");
    let orphan = eventually(
        "the daemonized process to start",
        START_DEADLINE,
        || async { pid_file(&orphan_file) },
    )
    .await;
    wait_until(
        "the orphan to be re-parented to the daemon",
        START_DEADLINE,
        || parent_of(orphan) == Some(daemon.pid()),
    );

    let stopped = stop(&connection, "daemonized").await;
    assert_eq!(stopped.state, pb::InstanceState::Stopped as i32);
    assert!(!exists(orphan), "the daemonized process is gone");
    assert_eq!(
        fs::read_to_string(dir.join("got-term")).ok().as_deref(),
        Some("term\n"),
        "it was stopped with SIGTERM, not killed after the grace period"
    );
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_after_its_grace_period() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let dir = daemon.dir.path();
    // Ignored signals stay ignored across exec: sleep ignores TERM too.
    let script = r#"trap '' TERM; echo ready > "$0/ready"; while :; do sleep 1; done"#;
    let mut stubborn = spec("stubborn", "sh", &["-c", script, dir.to_str().unwrap()]);
    stubborn.stop_grace_period = Some(Duration::from_millis(300).into());
    create(&connection, stubborn).await;
    wait_until("the trap to be set", START_DEADLINE, || {
        dir.join("ready").exists()
    });

    let started = Instant::now();
    let stopped = stop(&connection, "stubborn").await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited the grace period"
    );
    let exit = stopped.last_exit.unwrap();
    assert_eq!(exit.outcome, Some(pb::exit_status::Outcome::Signal(9)));
    assert_eq!(exit.signal_name, "SIGKILL");
}

#[tokio::test]
async fn concurrent_restarts_never_leave_two_processes() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let first = create(&connection, spec("busy", "sleep", &["1000"])).await;
    let restarts = (0..8).map(|_| {
        let mut client = connection.orchestrator();
        tokio::spawn(async move {
            client
                .restart_instance(pb::RestartInstanceRequest {
                    instance: "busy".to_owned(),
                })
                .await
                .map(|response| response.into_inner().instance.unwrap().pid)
        })
    });
    let mut pids = Vec::new();
    for restart in restarts.collect::<Vec<_>>() {
        pids.push(restart.await.unwrap().unwrap());
    }
    let last = connection
        .orchestrator()
        .get_instance(pb::GetInstanceRequest {
            instance: "busy".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(last.restart_count, 8);
    let alive: Vec<u32> = pids
        .iter()
        .chain([&first.pid])
        .copied()
        .filter(|&pid| exists(pid))
        .collect();
    assert_eq!(alive, vec![last.pid], "exactly one process survives");
}

#[tokio::test]
async fn ports_stay_across_restarts_and_are_released_on_delete() {
    let daemon = Daemon::builder()
        .arg("--port-range")
        .arg("24101-24101")
        .start();
    let connection = daemon.connect().await;
    let with_port = |name: &str| {
        let mut spec = spec(name, "sleep", &["1000"]);
        spec.port = Some(pb::PortRequest {
            mode: pb::PortMode::Auto.into(),
            number: 0,
        });
        spec
    };
    let first = create(&connection, with_port("one")).await;
    assert_eq!(first.port, 24101);
    let mut orchestrator = connection.orchestrator();
    let restarted = orchestrator
        .restart_instance(pb::RestartInstanceRequest {
            instance: "one".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(restarted.port, 24101);
    let exhausted = orchestrator
        .create_instance(pb::CreateInstanceRequest {
            spec: Some(with_port("two")),
            start: None,
        })
        .await
        .unwrap_err();
    assert_eq!(exhausted.code(), Code::ResourceExhausted, "{exhausted:?}");
    orchestrator
        .delete_instance(pb::DeleteInstanceRequest {
            instance: "one".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(create(&connection, with_port("two")).await.port, 24101);
}

#[tokio::test]
async fn bad_requests_name_the_field_and_the_daemon_keeps_serving() {
    let daemon = Daemon::builder().arg("--max-instances").arg("2").start();
    let connection = daemon.connect().await;
    let mut orchestrator = connection.orchestrator();
    create(&connection, spec("taken", "sleep", &["1000"])).await;

    let project = daemon.dir.path().to_str().unwrap().to_owned();
    let with = |change: &dyn Fn(&mut pb::InstanceSpec)| {
        let mut spec = spec("fresh", "sleep", &["1000"]);
        change(&mut spec);
        spec
    };
    let cases: Vec<(pb::InstanceSpec, Code, &str)> = vec![
        (
            with(&|s| s.name = "taken".into()),
            Code::AlreadyExists,
            "taken",
        ),
        (
            with(&|s| s.name = String::new()),
            Code::InvalidArgument,
            "spec.name",
        ),
        (
            with(&|s| s.name = "a/b".into()),
            Code::InvalidArgument,
            "spec.name",
        ),
        (
            with(&|s| s.name = "two words".into()),
            Code::InvalidArgument,
            "spec.name",
        ),
        (
            with(&|s| s.project_path = "relative/dir".into()),
            Code::InvalidArgument,
            "spec.project_path",
        ),
        (
            with(&|s| s.project_path = format!("{project}/missing")),
            Code::InvalidArgument,
            "spec.project_path",
        ),
        (
            with(&|s| {
                s.port = Some(pb::PortRequest {
                    mode: pb::PortMode::Fixed.into(),
                    number: 0,
                })
            }),
            Code::InvalidArgument,
            "spec.port.number",
        ),
        (
            with(&|s| {
                s.port = Some(pb::PortRequest {
                    mode: pb::PortMode::Fixed.into(),
                    number: 70_000,
                })
            }),
            Code::InvalidArgument,
            "spec.port.number",
        ),
        (
            with(&|s| s.command = "no-such-command-here".into()),
            Code::FailedPrecondition,
            "command not found",
        ),
        (
            with(&|s| s.working_dir = format!("{project}/missing")),
            Code::FailedPrecondition,
            "working directory",
        ),
        (
            with(&|s| s.stop_signal = "SIGNOPE".into()),
            Code::InvalidArgument,
            "spec.stop_signal",
        ),
    ];
    for (spec, code, needle) in cases {
        let name = spec.name.clone();
        let status = orchestrator
            .create_instance(pb::CreateInstanceRequest {
                spec: Some(spec),
                start: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{name:?}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{needle:?} not in {:?}",
            status.message()
        );
    }
    let unknown = orchestrator
        .get_instance(pb::GetInstanceRequest {
            instance: "i-0000000000000000".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // Failed creations left nothing behind: one slot is still free.
    create(&connection, spec("second", "sleep", &["1000"])).await;
    let full = orchestrator
        .create_instance(pb::CreateInstanceRequest {
            spec: Some(spec("third", "sleep", &["1000"])),
            start: None,
        })
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted);
    let list = orchestrator
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = list.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["second", "taken"]);
    let bad_view = orchestrator
        .list_instances(pb::ListInstancesRequest {
            view: 7,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_view.code(), Code::InvalidArgument);
    assert!(bad_view.message().contains("view"), "{bad_view:?}");
}

#[tokio::test]
async fn lists_leave_out_the_spec_unless_asked_for_the_full_view() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let created = create(&connection, spec("listed", "sleep", &["1000"])).await;
    let orchestrator = connection.orchestrator();
    let list = |view: pb::InstanceView| {
        let mut orchestrator = orchestrator.clone();
        async move {
            orchestrator
                .list_instances(pb::ListInstancesRequest {
                    view: view.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .instances
        }
    };
    for view in [pb::InstanceView::Unspecified, pb::InstanceView::Basic] {
        let basic = list(view).await;
        assert_eq!(basic.len(), 1);
        assert_eq!(basic[0].spec, None, "{view:?}");
        assert_eq!(basic[0].id, created.id);
        assert_eq!(basic[0].pid, created.pid);
        assert_eq!(basic[0].state, pb::InstanceState::Running as i32);
    }
    let full = list(pb::InstanceView::Full).await;
    let spec = full[0].spec.as_ref().expect("the full view has the spec");
    assert_eq!(
        (spec.command.as_str(), spec.args.as_slice()),
        ("sleep", &["1000".to_owned()][..])
    );
    let got = orchestrator
        .clone()
        .get_instance(pb::GetInstanceRequest {
            instance: "listed".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(got.spec, full[0].spec, "GetInstance always has the spec");
}

#[tokio::test]
async fn external_processes_are_watched_and_never_killed_by_delete() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut outsider = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let mut orchestrator = connection.orchestrator();
    let registered = orchestrator
        .register_external_instance(pb::RegisterExternalInstanceRequest {
            name: "outsider".to_owned(),
            pid: outsider.id(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(registered.kind, pb::InstanceKind::External as i32);
    assert_eq!(registered.pid, outsider.id());

    let refused = orchestrator
        .stop_instance(pb::StopInstanceRequest {
            instance: "outsider".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    orchestrator
        .delete_instance(pb::DeleteInstanceRequest {
            instance: "outsider".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        outsider.try_wait().unwrap().is_none(),
        "the external process still runs"
    );
    outsider.kill().unwrap();
    outsider.wait().unwrap();
}

/// The health of an instance, as `GetInstance` reports it.
async fn health_of(connection: &outpost::endpoint::Connection, name: &str) -> (i32, i32) {
    let instance = crate::harness::instance(connection, name).await;
    (instance.state, instance.health.unwrap().state)
}

#[tokio::test]
async fn external_processes_are_probed_but_never_restarted() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tcp_probe = |port: u32| pb::HealthCheck {
        probe: Some(pb::health_check::Probe::Tcp(pb::TcpProbe {
            host: String::new(),
            port,
        })),
        interval: Some(Duration::from_millis(50).into()),
        failure_threshold: Some(1),
        ..Default::default()
    };
    let mut orchestrator = connection.orchestrator();
    orchestrator
        .register_external_instance(pb::RegisterExternalInstanceRequest {
            name: "served".to_owned(),
            port: port.into(),
            health: Some(tcp_probe(0)),
            ..Default::default()
        })
        .await
        .unwrap();
    let running = pb::InstanceState::Running as i32;
    eventually("the probe to pass", START_DEADLINE, || async {
        (health_of(&connection, "served").await == (running, pb::HealthState::Healthy as i32))
            .then_some(())
    })
    .await;
    drop(listener);
    eventually("the probe to fail", START_DEADLINE, || async {
        let unhealthy = (running, pb::HealthState::Unhealthy as i32);
        (health_of(&connection, "served").await == unhealthy).then_some(())
    })
    .await;

    // A probe that needs the instance's port, without a port, names the field.
    let refused = orchestrator
        .register_external_instance(pb::RegisterExternalInstanceRequest {
            name: "portless".to_owned(),
            pid: std::process::id(),
            health: Some(tcp_probe(0)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("health.tcp.port:"),
        "{}",
        refused.message()
    );
}

#[test]
fn sigterm_to_the_daemon_stops_its_instances() {
    let mut daemon = Daemon::start();
    let output = daemon.ctl(&["run", "child", "--json", "--", "sleep", "1000"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let pid = json["instance"]["pid"].as_u64().unwrap() as u32;
    assert!(exists(pid));
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.wait_exit(START_DEADLINE).success());
    assert!(!exists(pid), "instance process left running");
    assert!(
        !daemon.log.text().contains("drain timeout"),
        "{}",
        daemon.log.text()
    );
}

#[test]
fn cli_runs_lists_and_removes_an_instance() {
    let daemon = Daemon::start();
    let output = daemon.ctl(&[
        "run",
        "napper",
        "--port",
        "auto",
        "--env",
        "GREETING=hi",
        "--",
        "sleep",
        "1000",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("napper: running (pid "),
        "{}",
        stdout(&output)
    );

    let output = daemon.ctl(&["ls"]);
    let table = stdout(&output);
    let header = table.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "NAME", "STATE", "PID", "PORT", "UPTIME", "RESTARTS", "CPU", "MEM"
        ]
    );
    assert!(
        table.lines().nth(1).unwrap().starts_with("napper  running"),
        "{table}"
    );

    let output = daemon.ctl(&["get", "napper", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["instance"]["spec"]["env"]["GREETING"], "hi");
    assert_eq!(json["instance"]["state"], "INSTANCE_STATE_RUNNING");

    let output = daemon.ctl(&["rm", "napper"]);
    assert_eq!(stdout(&output), "napper: deleted\n");
    let output = daemon.ctl(&["get", "napper"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("outpostctl: not found"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn up_creates_then_starts_the_instance_of_a_project() {
    let daemon = Daemon::start();
    let project = daemon.dir.path().join("My Shop");
    fs::create_dir(&project).unwrap();
    let project = project.to_str().unwrap();
    let pid_of = |output: &std::process::Output| {
        assert!(output.status.success(), "{}", stderr(output));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        (
            json["instance"]["name"].as_str().unwrap().to_owned(),
            json["instance"]["pid"].as_u64().unwrap(),
        )
    };
    let (name, first) = pid_of(&daemon.ctl(&["up", project, "--json", "--", "sleep", "1000"]));
    assert_eq!(name, "my-shop", "named after the directory");
    // Running: returned as it is; no command needed once it exists.
    assert_eq!(pid_of(&daemon.ctl(&["up", project, "--json"])).1, first);
    assert!(daemon.ctl(&["stop", "my-shop"]).status.success());
    let (_, second) = pid_of(&daemon.ctl(&["up", project, "--json"]));
    assert_ne!(second, first, "a stopped instance is started again");

    let unknown = daemon.dir.path().join("elsewhere");
    fs::create_dir(&unknown).unwrap();
    let output = daemon.ctl(&["up", unknown.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("spec.command: must not be empty"),
        "{}",
        stderr(&output)
    );
}
