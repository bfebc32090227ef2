//! outpostctl's behaviour without a daemon: usage errors, connection
//! errors, completions. The tests with a daemon are the daemon crate's
//! (`tests/integration`); this target also makes cargo build the
//! `outpostctl` binary that those tests run.

use std::process::{Command, Output, Stdio};

/// An `outpostctl` command with a clean environment (no inherited OUTPOST_*).
fn ctl_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outpostctl"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OUTPOST_") {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::null());
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What `outpostctl status` against `address` prints when it fails, as
/// it must: exit status 1.
fn status_failure(address: &str) -> String {
    let output = ctl_command()
        .args(["--addr", address, "status"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    stderr(&output)
}

#[test]
fn usage_errors_exit_2() {
    let output = ctl_command().arg("frobnicate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = ctl_command()
        .args(["--addr", "tcp://127.0.0.1:1", "status"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("expected unix:///PATH, http://HOST:PORT or https://HOST:PORT")
    );
}

#[test]
fn missing_daemon_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix://{}/outpostd.sock", dir.path().display());
    let message = status_failure(&address);
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
    let message = status_failure(&format!("http://127.0.0.1:{port}"));
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

#[test]
fn workspace_check_prints_json_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("shop.toml");
    std::fs::write(&good, "[instances.web]\ncommand = [\"sleep\", \"1\"]\n").unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[instances.web]\ncomand = [\"sleep\"]\n").unwrap();
    for (file, valid) in [(&good, true), (&bad, false)] {
        let output = ctl_command()
            .args(["--json", "workspace", "check"])
            .arg(file)
            .output()
            .unwrap();
        assert_eq!(output.status.success(), valid, "{}", stderr(&output));
        let json: serde_json::Value = serde_json::from_str(&stdout(&output))
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", stdout(&output)));
        assert_eq!(json["valid"], valid);
        if valid {
            assert_eq!(json["workspace"], "shop");
            assert_eq!(json["instances"][0], "shop.web");
        } else {
            assert!(json["errors"][0].as_str().unwrap().contains("comand"));
        }
    }
}

#[test]
fn workspace_check_refuses_a_fifo_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("x.toml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // Nobody ever writes to it: a read would wait forever.
    let output = ctl_command()
        .args(["workspace", "check"])
        .arg(&fifo)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim_end(),
        format!(
            "{}: refused: a FIFO, and only regular files are read",
            fifo.display()
        )
    );
}

#[test]
fn completions_into_a_closed_pipe_end_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = ctl_command()
        .args(["completions", "bash"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}
