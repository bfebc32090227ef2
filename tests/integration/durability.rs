//! Nothing acknowledged is lost, nothing refused is kept: a full disk, the
//! state file deleted or replaced under a running daemon, and processes
//! left behind when the state file was lost. Each fault test looks at what
//! the caller heard, then at what a new daemon finds after a SIGKILL.

use std::{collections::BTreeMap, fs, os::unix::fs::PermissionsExt};

use nix::sys::signal::Signal;
use outpost::{endpoint::Connection, proto::v1 as pb};
use outpost_test_support::small_disk::SmallDisk;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::{
    harness::{
        Daemon, START_DEADLINE, assert_no_stray_processes, create, eventually, exists, spec,
        stderr, stdout, wait_until,
    },
    sync_support::put,
};

/// The names of every instance.
async fn instance_names(connection: &Connection) -> Vec<String> {
    let list = connection
        .orchestrator()
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap()
        .into_inner();
    list.instances.into_iter().map(|i| i.name).collect()
}

/// Every template of set `set`, by title, with its content.
async fn templates(connection: &Connection, set: &str) -> BTreeMap<String, String> {
    let listed = connection
        .sync()
        .list_templates(pb::ListTemplatesRequest {
            set: set.to_owned(),
            include_content: true,
        })
        .await;
    match listed {
        Ok(listed) => listed
            .into_inner()
            .templates
            .into_iter()
            .map(|t| (t.key.unwrap().title, t.content))
            .collect(),
        Err(status) if status.code() == Code::NotFound => BTreeMap::new(),
        Err(status) => panic!("listing templates: {status:?}"),
    }
}

/// The whole server's health.
async fn health(connection: &Connection) -> ServingStatus {
    let reply = connection
        .health()
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(reply.status).unwrap()
}

async fn daemon_status(connection: &Connection) -> pb::GetDaemonStatusResponse {
    connection
        .orchestrator()
        .get_daemon_status(pb::GetDaemonStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Kills the daemon with SIGKILL, then starts a new one on its state.
fn crash_and_restart(daemon: &mut Daemon) {
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(START_DEADLINE);
    daemon.respawn(&[]);
}

/// Content of about 300 KiB that names `i`: each needs room of its own.
fn bulky(i: usize) -> String {
    let line = format!("<p>bulky {i}</p>\n");
    line.repeat((300 << 10) / line.len())
}

#[tokio::test]
async fn a_full_disk_refuses_changes_loses_nothing_acknowledged_and_recovers_by_itself() {
    let Some(disk) = SmallDisk::mount(16 << 20) else {
        return;
    };
    let mut daemon = Daemon::builder().data_dir(disk.path().join("data")).start();
    let connection = daemon.connect().await;
    create(&connection, spec("before", "sleep", &["1000"])).await;
    let filler = disk.fill();

    // Until one is refused, content is written; each write either is
    // acknowledged (then it must survive) or is refused (then it must not).
    let mut kept = BTreeMap::new();
    let mut refused = Vec::new();
    for i in 0..60 {
        let title = format!("bulky_{i}");
        match connection
            .sync()
            .put_template(put("Default", &title, &bulky(i), None))
            .await
        {
            Ok(_) => {
                kept.insert(title, bulky(i));
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(
                    status.message().contains("disk is full"),
                    "names the cause: {}",
                    status.message()
                );
                refused.push(title);
                if refused.len() == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused.len(), 3, "a full disk refused no write");
    let mut created = vec!["before".to_owned()];
    let mut not_created = Vec::new();
    for i in 0..3 {
        let name = format!("during-{i}");
        match connection
            .orchestrator()
            .create_instance(pb::CreateInstanceRequest {
                spec: Some(spec(&name, "sleep", &["1000"])),
                start: Some(true),
            })
            .await
        {
            Ok(_) => created.push(name),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(
                    status.message().contains("was not created"),
                    "{}",
                    status.message()
                );
                not_created.push(name);
            }
        }
    }

    // While it fails, health says so and the daemon's status names why.
    assert_eq!(health(&connection).await, ServingStatus::NotServing);
    let status = daemon_status(&connection).await;
    assert!(
        status.store_error.contains("state database"),
        "{}",
        status.store_error
    );
    assert!(status.store_failing_since.is_some());
    let output = daemon.ctl(&["status"]);
    assert!(
        stdout(&output).contains("NOT WRITABLE"),
        "{}",
        stdout(&output)
    );

    // Room again: the daemon notices by itself, and takes changes again.
    fs::remove_file(filler).unwrap();
    eventually("health to be SERVING again", START_DEADLINE, || async {
        (health(&connection).await == ServingStatus::Serving).then_some(())
    })
    .await;
    assert!(daemon_status(&connection).await.store_error.is_empty());
    create(&connection, spec("after", "sleep", &["1000"])).await;
    created.push("after".to_owned());
    connection
        .sync()
        .put_template(put("Default", "after", "<p>after</p>", None))
        .await
        .unwrap();
    kept.insert("after".to_owned(), "<p>after</p>".to_owned());
    let log = daemon.log.text();
    assert!(
        log.contains("ERROR") && log.contains("a write to the state database failed"),
        "logged at error level:\n{log}"
    );
    drop(connection);

    // A new daemon has exactly what was acknowledged.
    crash_and_restart(&mut daemon);
    let connection = daemon.connect().await;
    created.sort();
    assert_eq!(instance_names(&connection).await, created);
    assert_eq!(templates(&connection, "Default").await, kept);
    // No process is left of an instance that was refused.
    assert_no_stray_processes(&daemon, &connection).await;
}

/// The files of the state database in `data_dir`.
fn state_files(data_dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    ["state.db", "state.db-wal", "state.db-shm"].map(|name| data_dir.join(name))
}

#[tokio::test]
async fn a_state_file_deleted_or_replaced_under_the_daemon_is_written_again() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let first = create(&connection, spec("first", "sleep", &["1000"])).await;
    connection
        .sync()
        .put_template(put("Default", "kept", "<p>kept</p>", None))
        .await
        .unwrap();
    for file in state_files(&daemon.data_dir) {
        let _ = fs::remove_file(file);
    }
    let rewritten = |log: &str| log.matches("written again from the daemon's state").count();
    wait_until("the state file to be written again", START_DEADLINE, || {
        rewritten(&daemon.log.text()) >= 1
    });
    assert!(daemon.data_dir.join("state.db").exists());
    create(&connection, spec("second", "sleep", &["1000"])).await;

    // Replaced by something else: that is kept aside, not destroyed.
    let database = daemon.data_dir.join("state.db");
    let stranger = daemon.data_dir.join("stranger");
    fs::write(&stranger, "not the daemon's state").unwrap();
    fs::rename(&stranger, &database).unwrap();
    wait_until(
        "the replaced state file to be written again",
        START_DEADLINE,
        || rewritten(&daemon.log.text()) >= 2,
    );
    let aside: Vec<_> = fs::read_dir(&daemon.data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains("state.db.replaced-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        fs::read_to_string(&aside[0]).unwrap(),
        "not the daemon's state"
    );
    let log = daemon.log.text();
    assert!(
        log.contains("was deleted") && log.contains("was replaced"),
        "{log}"
    );
    drop(connection);

    crash_and_restart(&mut daemon);
    let connection = daemon.connect().await;
    assert_eq!(instance_names(&connection).await, ["first", "second"]);
    let adopted = connection
        .orchestrator()
        .get_instance(pb::GetInstanceRequest {
            instance: "first".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(adopted.pid, first.pid, "re-adopted, not started again");
    assert_eq!(
        templates(&connection, "Default").await,
        BTreeMap::from([("kept".to_owned(), "<p>kept</p>".to_owned())])
    );
}

#[tokio::test]
async fn processes_no_record_explains_are_reported_and_stopped_by_validate_fix() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let lost = create(&connection, spec("lost", "sleep", &["1000"])).await;
    drop(connection);
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(START_DEADLINE);
    for file in state_files(&daemon.data_dir) {
        let _ = fs::remove_file(file);
    }
    daemon.respawn(&[]);
    daemon
        .log
        .wait_for("belongs to no stored instance", START_DEADLINE);
    assert!(exists(lost.pid), "start-up reports, it does not kill");

    let output = daemon.ctl(&["validate"]);
    let report = stdout(&output);
    assert!(
        report.contains(&format!("pid {}", lost.pid)) && report.contains("does not know"),
        "{report}{}",
        stderr(&output)
    );
    let output = daemon.ctl(&["validate", "--fix"]);
    assert!(stdout(&output).contains("[fixed]"), "{}", stdout(&output));
    wait_until("the orphan to be stopped", START_DEADLINE, || {
        !exists(lost.pid)
    });
}

#[tokio::test]
async fn the_data_directory_and_the_state_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fs::create_dir(&data_dir).unwrap();
    fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = Daemon::builder().data_dir(data_dir.clone()).start();
    let connection = daemon.connect().await;
    create(&connection, spec("any", "sleep", &["1000"])).await;
    let mode = |path: &std::path::Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir), 0o700);
    for file in state_files(&data_dir) {
        if file.exists() {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
    assert_eq!(mode(&data_dir.join("state.db")), 0o600);
}
