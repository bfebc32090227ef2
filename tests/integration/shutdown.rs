//! The `Shutdown` RPC and `outpostctl shutdown`: instances left for the
//! next daemon or stopped, streams ended cleanly, the answer only once the
//! state is stored, and the same access rules as every call.

use std::collections::BTreeMap;

use nix::sys::signal::Signal;
use outpost::{
    endpoint::{ConnectOptions, Connection},
    proto::v1 as pb,
};
use tonic::{Code, Streaming};

use crate::harness::{
    Daemon, START_DEADLINE, create, ctl_command, exists, next, spec, stderr, stdout, watch,
};

async fn instances(connection: &Connection) -> BTreeMap<String, pb::Instance> {
    let list = connection
        .orchestrator()
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap()
        .into_inner();
    (list.instances.into_iter())
        .map(|instance| (instance.name.clone(), instance))
        .collect()
}

/// Reads `stream` until it ends; panics if it fails instead of ending.
async fn ends_cleanly<T>(stream: &mut Streaming<T>, what: &str) {
    loop {
        match tokio::time::timeout(START_DEADLINE, stream.message()).await {
            Err(_) => panic!("{what} still open after {START_DEADLINE:?}"),
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return,
            Ok(Err(status)) => panic!("{what} failed instead of ending: {status:?}"),
        }
    }
}

#[tokio::test]
async fn shutdown_leaves_instances_for_the_next_daemon_and_ends_streams() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let kept = create(&connection, spec("kept", "sleep", &["1000"])).await;
    let mut status = watch(&connection, 0).await;
    next(&mut status).await;
    let mut logs = connection
        .orchestrator()
        .stream_logs(pb::StreamLogsRequest {
            instance: "kept".into(),
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let address = daemon.unix_address().to_string();
    let ctl = tokio::task::spawn_blocking(move || {
        ctl_command()
            .args(["--addr", &address, "shutdown"])
            .output()
            .unwrap()
    });
    ends_cleanly(&mut status, "WatchStatus").await;
    ends_cleanly(&mut logs, "StreamLogs").await;
    let output = ctl.await.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).trim(),
        "outpostd stopped; 1 instance left running for the next daemon"
    );
    assert!(daemon.wait_exit(START_DEADLINE).success(), "exit status 0");
    assert!(exists(kept.pid), "left running");
    assert!(!daemon.socket.exists(), "the socket file is removed");

    daemon.respawn(&[]);
    let connection = daemon.connect().await;
    let adopted = instances(&connection).await.remove("kept").unwrap();
    assert_eq!(
        (adopted.pid, adopted.state),
        (kept.pid, pb::InstanceState::Running as i32),
        "re-adopted"
    );
}

#[tokio::test]
async fn shutdown_with_stop_instances_answers_once_their_stop_is_stored() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let first = create(&connection, spec("first", "sleep", &["1000"])).await;
    let second = create(&connection, spec("second", "sleep", &["1000"])).await;
    let stopped = connection
        .orchestrator()
        .shutdown(pb::ShutdownRequest {
            stop_instances: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (stopped.active_instances, stopped.instances_stopped),
        (2, true)
    );
    // Stored means stored: not even a crash right after the answer loses it.
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(START_DEADLINE);
    assert!(!exists(first.pid) && !exists(second.pid), "stopped");

    daemon.respawn(&[]);
    let connection = daemon.connect().await;
    for (name, instance) in instances(&connection).await {
        assert_eq!(
            (instance.state, instance.state_reason),
            (
                pb::InstanceState::Stopped as i32,
                pb::TransitionReason::DaemonShutdown as i32
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn shutdown_needs_the_token_on_tcp_like_every_call() {
    let daemon = Daemon::builder().tcp().start();
    let anonymous = Connection::open(&daemon.tcp_address(), None, &ConnectOptions::default())
        .await
        .unwrap();
    let refused = anonymous
        .orchestrator()
        .shutdown(pb::ShutdownRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let output = daemon.ctl(&["status"]);
    assert!(
        output.status.success(),
        "still serving: {}",
        stderr(&output)
    );
}
