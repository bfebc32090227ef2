//! outpostctl's behaviour without a daemon: usage errors, connection
//! errors, completions.

use crate::harness::{ctl_command, stderr, stdout};

#[test]
fn usage_errors_exit_2() {
    let output = ctl_command().arg("frobnicate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = ctl_command()
        .args(["--addr", "tcp://127.0.0.1:1", "status"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("expected unix:///PATH or http://HOST:PORT"));
}

#[test]
fn missing_daemon_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix://{}/outpostd.sock", dir.path().display());
    let output = ctl_command()
        .args(["--addr", &address, "status"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert_eq!(
        message.trim_end(),
        format!("outpostctl: cannot connect to {address}: no such file — is outpostd running?")
    );
}

#[test]
fn closed_tcp_port_is_one_clear_line() {
    // Bind and drop to find a port with nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("http://127.0.0.1:{port}");
    let output = ctl_command()
        .args(["--addr", &address, "status"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("connection refused — is outpostd running?"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1);
}

#[test]
fn completions_are_generated_without_a_daemon() {
    let output = ctl_command()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(stdout(&output).contains("outpostctl"));
}
