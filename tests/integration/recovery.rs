//! Crash recovery against a real daemon killed with SIGKILL: re-adoption,
//! restarts of what died meanwhile, pid reuse, handover on exit, and a
//! damaged database.

use std::{collections::BTreeMap, fs, process::Command};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use outpost::{endpoint::Connection, proto::v1 as pb};

use crate::harness::{
    Daemon, START_DEADLINE, create, eventually, exists, marked_processes, spec, stderr, stop,
    wait_until,
};

/// Every instance, by name.
async fn instances(connection: &Connection) -> BTreeMap<String, pb::Instance> {
    let list = connection
        .orchestrator()
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap()
        .into_inner();
    list.instances
        .into_iter()
        .map(|i| (i.name.clone(), i))
        .collect()
}

fn on_failure(initial_ms: u64) -> Option<pb::RestartPolicy> {
    Some(pb::RestartPolicy {
        mode: pb::RestartMode::OnFailure.into(),
        initial_delay: Some(std::time::Duration::from_millis(initial_ms).into()),
        max_delay: Some(std::time::Duration::from_millis(initial_ms.max(1)).into()),
        ..Default::default()
    })
}

/// Kills the daemon with SIGKILL and waits until it is gone.
pub fn crash(daemon: &mut Daemon) {
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(START_DEADLINE);
}

/// Waits until `name` runs with a process other than `old_pid`.
async fn wait_restarted(connection: &Connection, name: &str, old_pid: u32) -> pb::Instance {
    eventually(&format!("{name} to run again"), START_DEADLINE, || async {
        let instance = instances(connection).await.remove(name).unwrap();
        let restarted =
            instance.state == pb::InstanceState::Running as i32 && instance.pid != old_pid;
        restarted.then_some(instance)
    })
    .await
}

#[tokio::test]
async fn fifty_instances_are_re_adopted_after_a_kill_9_of_the_daemon() {
    let mut daemon = Daemon::builder().arg("--max-instances").arg("100").start();
    let connection = daemon.connect().await;
    for i in 0..48 {
        let mut sleeper = spec(&format!("sleeper-{i:02}"), "sleep", &["1000"]);
        if i < 20 {
            sleeper.port = Some(pb::PortRequest {
                mode: pb::PortMode::Auto.into(),
                number: 0,
            });
        }
        if (20..30).contains(&i) {
            sleeper.health = Some(pb::HealthCheck {
                probe: Some(pb::health_check::Probe::Exec(pb::ExecProbe {
                    command: vec!["true".to_owned()],
                })),
                interval: Some(std::time::Duration::from_millis(200).into()),
                ..Default::default()
            });
        }
        if i >= 40 {
            sleeper.restart = on_failure(50);
        }
        create(&connection, sleeper).await;
    }
    let mut crasher = spec("crasher", "sh", &["-c", "exit 1"]);
    crasher.restart = Some(pb::RestartPolicy {
        mode: pb::RestartMode::OnFailure.into(),
        initial_delay: Some(std::time::Duration::from_secs(30).into()),
        max_delay: Some(std::time::Duration::from_secs(30).into()),
        ..Default::default()
    });
    create(&connection, crasher).await;
    create(&connection, spec("resting", "sleep", &["1000"])).await;
    stop(&connection, "resting").await;
    let before = eventually(
        "every sleeper to run and the crasher to back off",
        START_DEADLINE,
        || async {
            let all = instances(&connection).await;
            let running = all
                .values()
                .filter(|i| i.state == pb::InstanceState::Running as i32)
                .count();
            (running == 48 && all["crasher"].state == pb::InstanceState::Backoff as i32)
                .then_some(all)
        },
    )
    .await;
    drop(connection);

    crash(&mut daemon);
    daemon.respawn(&[]);
    let connection = daemon.connect().await;
    let after = instances(&connection).await;
    assert_eq!(after.len(), 50);
    for (name, old) in before
        .iter()
        .filter(|(name, _)| name.starts_with("sleeper"))
    {
        let new = &after[name];
        assert_eq!(new.state, pb::InstanceState::Running as i32, "{name}");
        assert_eq!(new.pid, old.pid, "{name} keeps its process");
        assert_eq!(new.port, old.port, "{name} keeps its port");
        assert_eq!(new.kind, pb::InstanceKind::Discovered as i32, "{name}");
    }
    assert_eq!(
        after["resting"].state,
        pb::InstanceState::Stopped as i32,
        "a user's stop survives"
    );
    let backoff = &after["crasher"];
    assert_eq!(backoff.state, pb::InstanceState::Backoff as i32);
    assert_eq!(
        backoff.backoff.unwrap().next_attempt_at.unwrap().seconds,
        before["crasher"]
            .backoff
            .unwrap()
            .next_attempt_at
            .unwrap()
            .seconds,
        "the backoff keeps its schedule"
    );
    // Counted from /proc: one process per running instance, none twice.
    let marked = marked_processes();
    for instance in after.values().filter(|i| i.name.starts_with("sleeper")) {
        assert_eq!(
            marked.get(&instance.id),
            Some(&vec![instance.pid]),
            "{}",
            instance.name
        );
    }

    // A re-adopted process that dies is noticed and restarted as usual.
    let victim = &after["sleeper-45"];
    kill(Pid::from_raw(victim.pid as i32), Signal::SIGKILL).unwrap();
    let restarted = wait_restarted(&connection, "sleeper-45", victim.pid).await;
    assert_eq!(restarted.kind, pb::InstanceKind::Managed as i32);
    assert_eq!(marked_processes()[&victim.id], vec![restarted.pid]);
}

#[tokio::test]
async fn instances_that_died_while_the_daemon_was_down_follow_their_policy() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut phoenix = spec("phoenix", "sleep", &["1000"]);
    phoenix.restart = on_failure(0);
    let phoenix = create(&connection, phoenix).await;
    let mortal = create(&connection, spec("mortal", "sleep", &["1000"])).await;
    drop(connection);
    crash(&mut daemon);
    for pid in [phoenix.pid, mortal.pid] {
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        // Nobody reaps them but init; wait until they are really gone.
        wait_until("the process to vanish", START_DEADLINE, || !exists(pid));
    }
    daemon.respawn(&[]);
    let connection = daemon.connect().await;
    wait_restarted(&connection, "phoenix", phoenix.pid).await;
    let mortal = instances(&connection).await.remove("mortal").unwrap();
    assert_eq!(mortal.state, pb::InstanceState::Failed as i32);
    assert!(
        mortal.last_error.contains("while the daemon was down")
            || mortal.last_error.contains("exited"),
        "{}",
        mortal.last_error
    );
}

#[tokio::test]
async fn a_reused_pid_is_neither_adopted_nor_signalled() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let instance = create(&connection, spec("ghost", "sleep", &["1000"])).await;
    drop(connection);
    crash(&mut daemon);
    kill(Pid::from_raw(instance.pid as i32), Signal::SIGKILL).unwrap();
    wait_until("the process to vanish", START_DEADLINE, || {
        !exists(instance.pid)
    });
    // An unrelated process now has the recorded pid (simulated by
    // pointing the record at it: same pid column, different start time).
    let mut stranger = Command::new("sleep").arg("1000").spawn().unwrap();
    point_record_at(&daemon, "ghost", stranger.id());

    daemon.respawn(&[]);
    let connection = daemon.connect().await;
    let ghost = instances(&connection).await.remove("ghost").unwrap();
    assert_eq!(ghost.state, pb::InstanceState::Failed as i32, "not adopted");
    assert_ne!(ghost.pid, stranger.id());
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the stranger was not signalled"
    );
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

/// Rewrites the stored pid and pgid of instance `name` of the stopped
/// `daemon` to `pid`, the way another program would edit the database.
fn point_record_at(daemon: &Daemon, name: &str, pid: u32) {
    let database = daemon.data_dir.join("state.db");
    let update = format!(
        "import sqlite3; db = sqlite3.connect('{}'); db.execute('UPDATE instances SET pid = {pid}, pgid = {pid} WHERE name = \"{name}\"'); db.commit()",
        database.display(),
    );
    assert!(
        Command::new("python3")
            .args(["-c", &update])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn a_process_spawned_but_not_recorded_is_adopted_not_duplicated() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut sleeper = spec("unrecorded", "sleep", &["1000"]);
    sleeper.restart = on_failure(0);
    let instance = create(&connection, sleeper).await;
    drop(connection);
    crash(&mut daemon);
    // A daemon that dies between spawning a restart and storing it leaves
    // the record naming a process that is gone (simulated: the record
    // points at a pid that has exited) while the new one runs.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    point_record_at(&daemon, "unrecorded", gone.id());

    daemon.respawn(&[]);
    let connection = daemon.connect().await;
    let adopted = instances(&connection).await.remove("unrecorded").unwrap();
    assert_eq!(adopted.state, pb::InstanceState::Running as i32);
    assert_eq!(adopted.pid, instance.pid, "the running process was adopted");
    assert_eq!(
        marked_processes().get(&instance.id),
        Some(&vec![instance.pid]),
        "no duplicate was started"
    );
    stop(&connection, "unrecorded").await;
}

#[tokio::test]
async fn twenty_crash_cycles_leave_exactly_one_process_per_instance() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut sleeper = spec(&format!("cycle-{i}"), "sleep", &["1000"]);
        sleeper.restart = on_failure(0);
        ids.push(create(&connection, sleeper).await.id);
    }
    drop(connection);
    for cycle in 0..20 {
        crash(&mut daemon);
        daemon.respawn(&[]);
        let connection = daemon.connect().await;
        let name = format!("cycle-{}", (cycle * 3) % 5);
        let victim = instances(&connection).await.remove(&name).unwrap();
        kill(Pid::from_raw(victim.pid as i32), Signal::SIGKILL).unwrap();
        wait_restarted(&connection, &name, victim.pid).await;
    }
    let marked = marked_processes();
    for id in &ids {
        assert_eq!(
            marked.get(id).map(Vec::len),
            Some(1),
            "instance {id}: {marked:?}"
        );
    }
}

#[tokio::test]
async fn keep_instances_on_exit_hands_them_to_the_next_daemon() {
    let mut daemon = Daemon::builder().arg("--keep-instances-on-exit").start();
    let connection = daemon.connect().await;
    let kept = create(&connection, spec("kept", "sleep", &["1000"])).await;
    drop(connection);
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.wait_exit(START_DEADLINE).success());
    assert!(exists(kept.pid), "left running");
    daemon.respawn(&[]);
    let connection = daemon.connect().await;
    let adopted = instances(&connection).await.remove("kept").unwrap();
    assert_eq!(
        (adopted.pid, adopted.state),
        (kept.pid, pb::InstanceState::Running as i32)
    );
}

#[tokio::test]
async fn a_damaged_database_stops_the_daemon_and_leaves_processes_alone() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let survivor = create(&connection, spec("survivor", "sleep", &["1000"])).await;
    drop(connection);
    crash(&mut daemon);
    let database = daemon.data_dir.join("state.db");
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", database.display()));
    }
    fs::write(&database, vec![0x5a; 64 * 1024]).unwrap();

    let output = crate::harness::daemon_command(&daemon.data_dir, &daemon.socket)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&database.display().to_string()),
        "names the file: {message}"
    );
    assert!(exists(survivor.pid), "the instance's process is untouched");
    kill(Pid::from_raw(survivor.pid as i32), Signal::SIGKILL).unwrap();
}

#[tokio::test]
async fn a_full_disk_stops_the_daemon_naming_the_file_and_the_cause() {
    let Some(disk) = outpost_test_support::small_disk::SmallDisk::mount(1 << 20) else {
        return;
    };
    let mut daemon = Daemon::builder().data_dir(disk.path().join("data")).start();
    let connection = daemon.connect().await;
    let survivor = create(&connection, spec("survivor", "sleep", &["1000"])).await;
    drop(connection);
    crash(&mut daemon);
    disk.fill();

    let output = crate::harness::daemon_command(&daemon.data_dir, &daemon.socket)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = stderr(&output);
    let database = daemon.data_dir.join("state.db");
    assert!(
        message.contains(&format!(
            "outpostd: cannot write the state database {}",
            database.display()
        )),
        "names the file: {message}"
    );
    assert!(
        message.contains("disk is full"),
        "names the cause: {message}"
    );
    assert!(exists(survivor.pid), "the instance's process is untouched");
    kill(Pid::from_raw(survivor.pid as i32), Signal::SIGKILL).unwrap();
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let mut daemon = Daemon::start();
    drop(daemon.connect().await);
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(START_DEADLINE);
    let database = daemon.data_dir.join("state.db");
    let newer = format!(
        "import sqlite3; db = sqlite3.connect('{}'); db.execute(\"INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'from the future', 1, x'00', 0)\"); db.commit()",
        database.display()
    );
    assert!(
        Command::new("python3")
            .args(["-c", &newer])
            .status()
            .unwrap()
            .success()
    );
    let output = crate::harness::daemon_command(&daemon.data_dir, &daemon.socket)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("schema version 9999"), "{message}");
    assert!(
        message.contains(&database.display().to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn validate_reports_disagreements_and_fixes_only_what_is_provably_ours() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let output = daemon.ctl(&["validate"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(crate::harness::stdout(&output), "no inconsistencies\n");

    // A process of a stopped instance that escaped, and one with a marker
    // of an instance this daemon never had.
    let left = create(&connection, spec("left", "sleep", &["1000"])).await;
    stop(&connection, "left").await;
    let marked = |id: &str| {
        Command::new("sleep")
            .arg("1000")
            .env("OUTPOST_INSTANCE_ID", id)
            .env("OUTPOST_DATA_DIR", &daemon.data_dir)
            .spawn()
            .unwrap()
    };
    let mut leftover = marked(&left.id);
    // Left when a state file was lost: its marker is this daemon's, but no
    // record names it.
    let mut stranger = marked("i-00000000000000ff");
    // Another daemon's: never this one's to report or stop.
    let mut foreign = Command::new("sleep")
        .arg("1000")
        .env("OUTPOST_INSTANCE_ID", "i-00000000000000fe")
        .env("OUTPOST_DATA_DIR", daemon.dir.path().join("elsewhere"))
        .spawn()
        .unwrap();
    // A running instance whose port someone else listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut squatted = spec("squatted", "sleep", &["1000"]);
    squatted.port = Some(pb::PortRequest {
        mode: pb::PortMode::Fixed.into(),
        number: port.into(),
    });
    create(&connection, squatted).await;
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();

    let output = daemon.ctl(&["validate", "--json"]);
    assert_eq!(output.status.code(), Some(1), "inconsistencies exit 1");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let found: Vec<(String, u64)> = json["inconsistencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_owned(),
                i["pid"].as_u64().unwrap(),
            )
        })
        .collect();
    for expected in [
        (
            "INCONSISTENCY_KIND_ORPHAN_PROCESS".to_owned(),
            u64::from(leftover.id()),
        ),
        (
            "INCONSISTENCY_KIND_ORPHAN_PROCESS".to_owned(),
            u64::from(stranger.id()),
        ),
        (
            "INCONSISTENCY_KIND_PORT_HIJACKED".to_owned(),
            u64::from(std::process::id()),
        ),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }

    assert!(
        !found.iter().any(|(_, pid)| *pid == u64::from(foreign.id())),
        "another daemon's process is not reported: {found:?}"
    );

    let output = daemon.ctl(&["validate", "--fix"]);
    assert_eq!(output.status.code(), Some(1), "the hijacked port remains");
    let text = crate::harness::stdout(&output);
    assert!(text.contains("[fixed]"), "{text}");
    assert!(
        leftover.wait().unwrap().code().is_none(),
        "the orphan of a known instance was killed"
    );
    assert!(
        stranger.wait().unwrap().code().is_none(),
        "the orphan no record explains was killed"
    );
    assert!(
        foreign.try_wait().unwrap().is_none(),
        "another daemon's process is left alone"
    );
    foreign.kill().unwrap();
    foreign.wait().unwrap();
}

#[tokio::test]
async fn a_locked_database_fails_the_call_naming_the_file_and_the_change_is_stored_later() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let database = daemon.data_dir.join("state.db");
    // Another process takes the write lock and holds it until its stdin closes.
    let lock = format!(
        "import sqlite3, sys; db = sqlite3.connect('{}', isolation_level=None); db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()",
        database.display()
    );
    let mut holder = Command::new("python3")
        .args(["-c", &lock])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");

    let status = connection
        .orchestrator()
        .create_instance(pb::CreateInstanceRequest {
            spec: Some(spec("blocked", "sleep", &["1000"])),
            start: Some(false),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains(&database.display().to_string()),
        "{}",
        status.message()
    );
    assert!(status.message().contains("locked"), "{}", status.message());
    assert!(
        status.message().contains("blocked was not created"),
        "{}",
        status.message()
    );
    drop(holder.stdin.take());
    holder.wait().unwrap();

    // The writer keeps trying: once the lock is gone, what it holds is
    // stored (a later call succeeds only after it) — the refused instance
    // undone with it, so that a new daemon knows exactly what was
    // acknowledged.
    connection
        .orchestrator()
        .create_instance(pb::CreateInstanceRequest {
            spec: Some(spec("after", "sleep", &["1000"])),
            start: Some(false),
        })
        .await
        .unwrap();
    drop(connection);
    crash(&mut daemon);
    daemon.respawn(&[]);
    let connection = daemon.connect().await;
    let names: Vec<String> = instances(&connection).await.into_keys().collect();
    assert_eq!(names, ["after"]);
}

#[tokio::test]
async fn external_instances_stay_external_after_a_crash_and_are_never_taken_for_a_group() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut outsider = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let mut orchestrator = connection.orchestrator();
    for (name, pid, port) in [("outsider", outsider.id(), 0), ("served", 0, 4999)] {
        orchestrator
            .register_external_instance(pb::RegisterExternalInstanceRequest {
                name: name.to_owned(),
                pid,
                port,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    drop(connection);
    crash(&mut daemon);
    daemon.respawn(&[]);
    let connection = daemon.connect().await;
    let found = instances(&connection).await;
    let outsider_now = &found["outsider"];
    assert_eq!(
        (outsider_now.kind, outsider_now.pid, outsider_now.state),
        (
            pb::InstanceKind::External as i32,
            outsider.id(),
            pb::InstanceState::Running as i32
        ),
        "watched again as external"
    );
    let served = &found["served"];
    assert_eq!(
        (served.kind, served.state),
        (
            pb::InstanceKind::External as i32,
            pb::InstanceState::Running as i32
        ),
        "a port-only registration is still assumed to serve"
    );

    // Deleting it leaves its process (and the daemon) alone.
    let mut orchestrator = connection.orchestrator();
    orchestrator
        .delete_instance(pb::DeleteInstanceRequest {
            instance: "outsider".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(outsider.try_wait().unwrap().is_none(), "still runs");
    orchestrator
        .get_daemon_status(pb::GetDaemonStatusRequest {})
        .await
        .expect("the daemon still serves");
    outsider.kill().unwrap();
    outsider.wait().unwrap();
}
