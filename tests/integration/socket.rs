//! The Unix socket: permissions, peer credentials, one daemon per socket,
//! stale sockets, and a clean exit on SIGTERM.

use std::{
    fs,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use outpost::proto::v1::GetDaemonStatusRequest;

use crate::harness::{Daemon, START_DEADLINE, ctl_command, daemon_command, stderr};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn socket_is_0600_in_a_0700_directory() {
    let daemon = Daemon::start();
    assert_eq!(mode(&daemon.socket), 0o600);
    assert_eq!(mode(daemon.socket.parent().unwrap()), 0o700);
    assert_eq!(mode(&daemon.data_dir), 0o700);
}

#[tokio::test]
async fn second_daemon_on_the_same_socket_exits_and_the_first_keeps_serving() {
    let first = Daemon::start();
    let mut command = daemon_command(&first.dir.path().join("other-data"), &first.socket);
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "another outpostd (pid {}) is already serving unix://{}",
            first.pid(),
            first.socket.display()
        )),
        "{message}"
    );
    let status = first
        .connect()
        .await
        .orchestrator()
        .get_daemon_status(GetDaemonStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.pid, first.pid());
}

#[test]
fn second_daemon_on_the_same_data_dir_exits() {
    let first = Daemon::start();
    let other_socket = first.dir.path().join("other").join("o.sock");
    let output = daemon_command(&first.data_dir, &other_socket)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!(
            "is already serving data dir {}",
            first.data_dir.display()
        )),
        "{}",
        stderr(&output)
    );
    assert!(first.ctl(&["status"]).status.success());
}

#[test]
fn stale_socket_of_a_killed_daemon_is_replaced() {
    let mut first = Daemon::start();
    first.signal(Signal::SIGKILL);
    first.wait_exit(START_DEADLINE);
    assert!(
        first.socket.exists(),
        "a killed daemon leaves its socket behind"
    );

    let mut second = daemon_command(&first.data_dir, &first.socket)
        .spawn()
        .unwrap();
    let log = crate::harness::LogBuffer::capture(second.stderr.take().unwrap());
    log.wait_for("replacing the stale socket", START_DEADLINE);
    log.wait_for(" serving ", START_DEADLINE);
    let output = first.ctl(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["pid"], second.id());
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn a_file_that_is_not_a_socket_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.txt");
    fs::write(&path, "keep me").unwrap();
    let output = daemon_command(&dir.path().join("data"), &path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("exists and is not a socket"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
}

#[test]
fn sigterm_exits_0_within_a_second_and_removes_the_socket() {
    let mut daemon = Daemon::start();
    let sent = Instant::now();
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(10));
    let took = sent.elapsed();
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        daemon.log.text()
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(!daemon.socket.exists(), "socket file left behind");
}

#[test]
fn clients_of_another_uid_are_refused() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let daemon = Daemon::start();
    // Open the way for another user so that only the peer check stands.
    for dir in [daemon.dir.path(), daemon.socket.parent().unwrap()] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).unwrap();
    }
    fs::set_permissions(&daemon.socket, fs::Permissions::from_mode(0o666)).unwrap();
    let nobody = 65534;
    let output = ctl_command()
        .args(["--addr", &daemon.unix_address().to_string(), "status"])
        .uid(nobody)
        .gid(nobody)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("permission denied: uid 65534 may not use this daemon"),
        "{message}"
    );
}
