//! The daemon serves its contract: health, GetDaemonStatus, honest
//! UNIMPLEMENTED answers, and outpostctl's view of it.

use outpost::proto::v1::{
    GetDaemonStatusRequest, GetSyncStatusRequest, InstanceState, WatcherState,
};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::harness::{Daemon, stderr, stdout};

#[tokio::test]
async fn health_is_serving_overall_and_per_service() {
    let daemon = Daemon::start();
    let mut health = daemon.connect().await.health();
    for service in ["", "outpost.v1.Orchestrator", "outpost.v1.Sync"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap_or_else(|status| panic!("health of {service:?}: {status}"))
            .into_inner();
        assert_eq!(
            response.status,
            ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "outpost.v1.Nope".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn daemon_status_describes_this_daemon() {
    let daemon = Daemon::builder()
        .arg("--port-range")
        .arg("30000-30099")
        .start();
    let status = daemon
        .connect()
        .await
        .orchestrator()
        .get_daemon_status(GetDaemonStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.pid, daemon.pid());
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        status.listen_addresses,
        vec![format!("unix://{}", daemon.socket.display())]
    );
    assert_eq!(status.data_dir, daemon.data_dir.display().to_string());
    assert!(status.started_at.is_some() && status.uptime.is_some());
    assert_eq!(status.instance_count, 0);
    let states: Vec<i32> = status.instance_counts.iter().map(|c| c.state).collect();
    assert_eq!(states.len(), 8, "one count per state");
    assert!(!states.contains(&(InstanceState::Unspecified as i32)));
    assert!(status.instance_counts.iter().all(|c| c.count == 0));
    let range = status.port_range.unwrap();
    assert_eq!((range.first, range.last), (30000, 30099));
    assert_eq!(status.max_instances, 1000);
}

#[tokio::test]
async fn sync_status_reports_a_watching_watcher_on_the_configured_root() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let status = connection
        .sync()
        .get_sync_status(GetSyncStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state(), WatcherState::Watching);
    assert_eq!(
        status.root,
        daemon.data_dir.join("sync").display().to_string()
    );
    assert!(status.last_error.is_empty(), "{}", status.last_error);
    let output = daemon.ctl(&["sync", "status", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(json["state"], "WATCHER_STATE_WATCHING");
}

#[test]
fn ctl_status_json_uses_proto_field_names() {
    let daemon = Daemon::start();
    let output = daemon.ctl(&["status", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(json["pid"], daemon.pid());
    assert_eq!(json["instance_count"], 0, "default values are emitted");
    assert_eq!(
        json["listen_addresses"][0],
        format!("unix://{}", daemon.socket.display())
    );
    assert_eq!(
        json["instance_counts"][1]["state"],
        "INSTANCE_STATE_RUNNING"
    );
    assert!(json["port_range"]["first"].is_u64());
    // Canonical mapping: Duration as "<seconds>s", Timestamp as RFC 3339.
    assert!(json["uptime"].as_str().unwrap().ends_with('s'));
    assert!(json["started_at"].as_str().unwrap().contains('T'));
}

#[test]
fn ctl_status_and_health_print_readable_text() {
    let daemon = Daemon::start();
    let output = daemon.ctl(&["status"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains(&format!("(pid {})", daemon.pid())), "{text}");
    assert!(
        text.contains(&daemon.socket.display().to_string()),
        "{text}"
    );

    let output = daemon.ctl(&["health"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.matches("SERVING").count(), 3, "{text}");

    let output = daemon.ctl(&["health", "outpost.v1.Nope"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "one line: {message}");
    assert!(message.starts_with("outpostctl: not found"), "{message}");
}
