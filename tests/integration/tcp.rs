//! TCP listeners: the bearer token is required (except for health), checked
//! exactly, and never written anywhere.

use std::os::unix::fs::PermissionsExt;

use outpost::{
    endpoint::{ConnectOptions, Connection},
    proto::v1::GetDaemonStatusRequest,
    token::Token,
};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;

use crate::harness::{Daemon, TOKEN, ctl_command, daemon_command, stderr, stdout};

async fn tcp_connection(daemon: &Daemon, token: Option<&str>) -> Connection {
    let token = token.map(|text| Token::parse(text).unwrap());
    Connection::open(
        &daemon.tcp_address(),
        token.as_ref(),
        &ConnectOptions::default(),
    )
    .await
    .unwrap()
}

async fn daemon_status_code(connection: &Connection) -> Code {
    match connection
        .orchestrator()
        .get_daemon_status(GetDaemonStatusRequest {})
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn token_is_required_and_checked_exactly() {
    let daemon = Daemon::builder().tcp().start();
    let without = tcp_connection(&daemon, None).await;
    assert_eq!(daemon_status_code(&without).await, Code::Unauthenticated);
    let wrong = tcp_connection(&daemon, Some("test-token-0123456789abcdeX")).await;
    assert_eq!(daemon_status_code(&wrong).await, Code::Unauthenticated);
    let prefix = tcp_connection(&daemon, Some(&TOKEN[..TOKEN.len() - 1])).await;
    assert_eq!(daemon_status_code(&prefix).await, Code::Unauthenticated);
    let right = tcp_connection(&daemon, Some(TOKEN)).await;
    assert_eq!(daemon_status_code(&right).await, Code::Ok);
}

#[tokio::test]
async fn health_is_open_on_tcp() {
    let daemon = Daemon::builder().tcp().start();
    let connection = tcp_connection(&daemon, None).await;
    connection
        .health()
        .check(HealthCheckRequest::default())
        .await
        .expect("health needs no token");
}

#[test]
fn ctl_reports_a_missing_token_in_one_line() {
    let daemon = Daemon::builder().tcp().start();
    let address = daemon.tcp_address().to_string();
    let output = ctl_command()
        .args(["--addr", &address, "status"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.starts_with("outpostctl: unauthenticated: wrong or missing token"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1);

    // A token file others may read is refused, as ssh refuses such a key.
    let token_file = daemon.dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let with_file = || {
        ctl_command()
            .args(["--addr", &address, "--token-file"])
            .arg(&token_file)
            .arg("status")
            .output()
            .unwrap()
    };
    let output = with_file();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("chmod 600"), "{message}");
    assert!(message.contains("(mode 0644)"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");

    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = with_file();
    assert!(output.status.success(), "{}", stderr(&output));
}

#[tokio::test]
async fn token_never_appears_in_logs_or_help() {
    let daemon = Daemon::builder().env("RUST_LOG", "debug").tcp().start();
    for token in [None, Some("test-token-wrong-wrong-wrong"), Some(TOKEN)] {
        let connection = tcp_connection(&daemon, token).await;
        let _ = daemon_status_code(&connection).await;
    }
    // A failed call is logged as a warning: wait for it, then look.
    let log = daemon
        .log
        .wait_for("wrong token", crate::harness::START_DEADLINE);
    assert!(!log.contains(TOKEN), "token in the daemon log:\n{log}");
    assert!(
        !log.contains("test-token-wrong"),
        "presented token in the log:\n{log}"
    );
    assert!(
        log.contains("token=set"),
        "config is logged without its value:\n{log}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut help = daemon_command(&dir.path().join("d"), &dir.path().join("s"));
    let output = help
        .arg("--help")
        .env("OUTPOST_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(!stdout(&output).contains(TOKEN));
    let output = ctl_command()
        .arg("--help")
        .env("OUTPOST_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!stdout(&output).contains(TOKEN));
}

#[test]
fn tcp_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = daemon_command(&dir.path().join("data"), &dir.path().join("run/s.sock"))
        .args(["--listen", "tcp://127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("--listen (OUTPOST_LISTEN): tcp://127.0.0.1:0 needs a token"),
        "{message}"
    );
}

#[tokio::test]
async fn the_token_never_reaches_an_instance() {
    let daemon = Daemon::builder().tcp().start();
    let connection = daemon.connect().await;
    let instance = crate::harness::create(
        &connection,
        crate::harness::spec("child", "sleep", &["1000"]),
    )
    .await;
    let environ = std::fs::read(format!("/proc/{}/environ", instance.pid)).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains("OUTPOST_INSTANCE_ID="),
        "the instance's own marker is there: {environ}"
    );
    assert!(!environ.contains("OUTPOST_TOKEN"), "{environ}");
    assert!(!environ.contains(TOKEN), "{environ}");
}
