//! The status stream and the log stream: exit events, gap-free resume,
//! bursts, tail and follow; a deleted instance's log files reused, empty.

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use outpost::proto::v1::{self as pb, watch_status_response::Payload};

use crate::harness::{
    Daemon, START_DEADLINE, changed, create, events_until, next, spec, stop, watch,
};

#[tokio::test]
async fn kill_9_from_outside_arrives_as_an_exit_event() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = watch(&connection, 0).await;
    let Some(Payload::Snapshot(snapshot)) = next(&mut stream).await.payload else {
        panic!("a stream starts with a snapshot");
    };
    assert_eq!(snapshot.kind, pb::SnapshotKind::Initial as i32);
    let instance = create(&connection, spec("victim", "sleep", &["1000"])).await;
    kill(Pid::from_raw(instance.pid as i32), Signal::SIGKILL).unwrap();
    let seen = events_until(&mut stream, |event| {
        changed(event)
            .is_some_and(|c| c.instance.as_ref().unwrap().state == pb::InstanceState::Failed as i32)
    })
    .await;
    let failed = changed(seen.last().unwrap()).unwrap();
    assert_eq!(failed.reason, pb::TransitionReason::ProcessExit as i32);
    assert_eq!(failed.detail, "process exited with signal SIGKILL");
    let exit = failed
        .instance
        .as_ref()
        .unwrap()
        .last_exit
        .as_ref()
        .unwrap();
    assert_eq!(exit.outcome, Some(pb::exit_status::Outcome::Signal(9)));
}

#[tokio::test]
async fn a_resuming_client_sees_every_event_in_order_without_a_gap() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut steady = watch(&connection, 0).await;
    let mut resumer = watch(&connection, 0).await;
    let Some(Payload::Snapshot(start)) = next(&mut steady).await.payload else {
        panic!("snapshot first");
    };
    next(&mut resumer).await;

    create(&connection, spec("one", "sleep", &["1000"])).await;
    let is_running = |name: &'static str| {
        move |event: &pb::StatusEvent| {
            changed(event).is_some_and(|c| {
                let instance = c.instance.as_ref().unwrap();
                instance.name == name && instance.state == pb::InstanceState::Running as i32
            })
        }
    };
    let before = events_until(&mut resumer, is_running("one")).await;
    let last_seen = before.last().unwrap().revision;
    drop(resumer);

    // Events the resumer misses while it is away.
    create(&connection, spec("two", "sleep", &["1000"])).await;
    stop(&connection, "one").await;
    create(&connection, spec("three", "sleep", &["1000"])).await;

    let mut resumed = watch(&connection, last_seen).await;
    let after = events_until(&mut resumed, is_running("three")).await;
    let steady_events = events_until(&mut steady, is_running("three")).await;

    let revisions =
        |events: &[pb::StatusEvent]| events.iter().map(|e| e.revision).collect::<Vec<_>>();
    let mut joined = revisions(&before);
    joined.extend(revisions(&after));
    assert_eq!(
        joined,
        revisions(&steady_events),
        "both saw the same events"
    );
    let expected: Vec<u64> = (start.revision + 1..=start.revision + joined.len() as u64).collect();
    assert_eq!(joined, expected, "consecutive revisions: no gap, no repeat");
}

#[tokio::test]
async fn a_client_far_behind_gets_a_resync_snapshot() {
    let daemon = Daemon::builder()
        .arg("--max-instances")
        .arg("10000")
        .start();
    let connection = daemon.connect().await;
    for i in 0..2 {
        create(&connection, spec(&format!("early-{i}"), "sleep", &["1000"])).await;
    }
    // Push the early events out of the bounded history (ten clients at once).
    let fillers: Vec<_> = (0..10)
        .map(|client| {
            let mut orchestrator = connection.orchestrator();
            tokio::spawn(async move {
                for i in 0..900 {
                    orchestrator
                        .create_instance(pb::CreateInstanceRequest {
                            spec: Some(spec(&format!("filler-{client}-{i}"), "true", &[])),
                            start: Some(false),
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for filler in fillers {
        filler.await.unwrap();
    }
    let mut stream = watch(&connection, 1).await;
    let Some(Payload::Snapshot(snapshot)) = next(&mut stream).await.payload else {
        panic!("a lost history is announced with a snapshot");
    };
    assert_eq!(snapshot.kind, pb::SnapshotKind::Resync as i32);
    assert_eq!(snapshot.instances.len(), 9002);
}

#[tokio::test]
async fn a_burst_of_10000_events_reaches_a_tonic_client() {
    let daemon = Daemon::builder()
        .arg("--max-instances")
        .arg("10000")
        .start();
    let connection = daemon.connect().await;
    let mut stream = watch(&connection, 0).await;
    let Some(Payload::Snapshot(start)) = next(&mut stream).await.payload else {
        panic!("snapshot first");
    };
    // Ten clients at once, each creating and deleting 500 instances: one
    // event per create and per delete.
    let producers: Vec<_> = (0..10)
        .map(|client| {
            let mut orchestrator = connection.orchestrator();
            tokio::spawn(async move {
                for i in 0..500 {
                    let name = format!("burst-{client}-{i}");
                    orchestrator
                        .create_instance(pb::CreateInstanceRequest {
                            spec: Some(spec(&name, "true", &[])),
                            start: Some(false),
                        })
                        .await
                        .unwrap();
                    orchestrator
                        .delete_instance(pb::DeleteInstanceRequest {
                            instance: name,
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let target = start.revision + 10_000;
    let mut expected = start.revision + 1;
    while expected <= target {
        match next(&mut stream).await.payload {
            Some(Payload::Events(batch)) => {
                for event in batch.events {
                    assert_eq!(
                        event.revision, expected,
                        "events arrive in order, without a gap"
                    );
                    expected += 1;
                }
            }
            other => panic!("a fast client never needs a resync: {other:?}"),
        }
    }
    for producer in producers {
        producer.await.unwrap();
    }
}

#[tokio::test]
async fn logs_show_the_tail_and_then_follow() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let dir = daemon.dir.path();
    let script = r#"for i in 1 2 3 4 5; do echo "out $i"; done; echo "err 1" >&2
        while [ ! -e "$0/go" ]; do sleep 0.05; done; echo "out 6"; exec sleep 1000"#;
    create(
        &connection,
        spec("talker", "sh", &["-c", script, dir.to_str().unwrap()]),
    )
    .await;
    let files = daemon.data_dir.join("logs");
    crate::harness::wait_until("the first lines to be written", START_DEADLINE, || {
        std::fs::read_dir(&files)
            .unwrap()
            .flatten()
            .any(|instance| {
                std::fs::read_to_string(instance.path().join("stderr.log"))
                    .is_ok_and(|text| text.contains("err 1"))
            })
    });

    let mut logs = connection
        .orchestrator()
        .stream_logs(pb::StreamLogsRequest {
            instance: "talker".to_owned(),
            tail_lines: 2,
            follow: true,
            stream: pb::LogStream::Unspecified.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut lines = Vec::new();
    while lines.len() < 3 {
        let batch = tokio::time::timeout(START_DEADLINE, logs.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        lines.extend(batch.lines.into_iter().map(|line| (line.stream, line.text)));
    }
    let stdout = pb::LogStream::Stdout as i32;
    let stderr = pb::LogStream::Stderr as i32;
    assert_eq!(
        lines,
        [
            (stdout, "out 4".to_owned()),
            (stdout, "out 5".to_owned()),
            (stderr, "err 1".to_owned())
        ]
    );

    std::fs::write(dir.join("go"), "").unwrap();
    let batch = tokio::time::timeout(START_DEADLINE, logs.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(batch.lines[0].text, "out 6");
}

#[tokio::test]
async fn a_new_instance_gets_a_deleted_ones_log_files_empty() {
    use std::os::unix::fs::MetadataExt;

    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let logs = daemon.data_dir.join("logs");
    let script = "echo old output; echo old error >&2; exec sleep 1000";
    let old = create(&connection, spec("old", "sh", &["-c", script])).await;
    let old_stdout = logs.join(&old.id).join("stdout.log");
    crate::harness::wait_until("the old instance's output", START_DEADLINE, || {
        std::fs::read_to_string(&old_stdout).is_ok_and(|text| text.contains("old output"))
    });
    let inode = std::fs::metadata(&old_stdout).unwrap().ino();
    let rm = daemon.ctl(&["rm", "old"]);
    assert!(rm.status.success(), "{rm:?}");
    assert!(!logs.join(&old.id).exists());

    let script = "echo new output; exec sleep 1000";
    let new = create(&connection, spec("new", "sh", &["-c", script])).await;
    let new_dir = logs.join(&new.id);
    crate::harness::wait_until("the new instance's output", START_DEADLINE, || {
        std::fs::read_to_string(new_dir.join("stdout.log")).is_ok_and(|text| !text.is_empty())
    });
    assert_eq!(
        std::fs::read_to_string(new_dir.join("stdout.log")).unwrap(),
        "new output\n"
    );
    assert_eq!(
        std::fs::read_to_string(new_dir.join("stderr.log")).unwrap(),
        ""
    );
    // The old file lives on, emptied: in the new instance's directory, or
    // still a spare when a spare made meanwhile was taken first.
    let kept = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|dir| dir.path().join("stdout.log"))
        .find(|file| std::fs::metadata(file).is_ok_and(|meta| meta.ino() == inode))
        .expect("the deleted instance's stdout.log kept, not removed");
    let text = std::fs::read_to_string(&kept).unwrap();
    assert!(text.is_empty() || text == "new output\n", "{text:?}");
}
