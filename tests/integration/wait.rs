//! `outpostctl wait` against a real daemon: it returns the moment the
//! instances reach the condition, exit 1 when one never will, 124 when the
//! deadline passes first.

use std::{
    process::{Child, Stdio},
    time::Duration,
};

use crate::harness::{Daemon, START_DEADLINE, ctl_command, stderr, stdout, wait_until};

/// `outpostctl --addr SOCKET ARGS…` started in the background.
fn ctl_spawn(daemon: &Daemon, args: &[&str]) -> Child {
    ctl_command()
        .arg("--addr")
        .arg(daemon.unix_address().to_string())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run outpostctl")
}

fn run_ok(daemon: &Daemon, args: &[&str]) {
    let output = daemon.ctl(args);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
}

#[test]
fn wait_returns_once_every_instance_is_ready() {
    let daemon = Daemon::start();
    let flag = daemon.dir.path().join("ready");
    let check = format!("exec:test -e {}", flag.display());
    for name in ["api", "db"] {
        run_ok(
            &daemon,
            &[
                "run",
                name,
                "--health",
                &check,
                "--health-interval",
                "20ms",
                "--",
                "sleep",
                "600",
            ],
        );
    }
    let mut waiting = ctl_spawn(&daemon, &["--timeout", "60s", "wait", "api", "db"]);
    let get = stdout(&daemon.ctl(&["get", "api"]));
    assert!(get.contains("starting"), "not ready before the flag: {get}");
    assert!(waiting.try_wait().unwrap().is_none(), "wait returned early");

    std::fs::write(&flag, "").unwrap();
    let output = wait_output(waiting);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "api, db ready");
    for name in ["api", "db"] {
        assert!(stdout(&daemon.ctl(&["get", name])).contains("running"));
    }
}

/// The finished command's output, within the start deadline.
fn wait_output(mut child: Child) -> std::process::Output {
    wait_until("outpostctl wait to return", START_DEADLINE, || {
        child.try_wait().unwrap().is_some()
    });
    child.wait_with_output().unwrap()
}

#[test]
fn wait_times_out_with_what_it_waited_for() {
    let daemon = Daemon::start();
    run_ok(
        &daemon,
        &[
            "run",
            "api",
            "--health",
            "exec:false",
            "--health-interval",
            "20ms",
            "--",
            "sleep",
            "600",
        ],
    );
    let started = std::time::Instant::now();
    let output = daemon.ctl(&["--timeout", "500ms", "wait", "api"]);
    assert_eq!(output.status.code(), Some(124), "{}", stderr(&output));
    assert!(started.elapsed() >= Duration::from_millis(500));
    let message = stderr(&output);
    assert!(
        message.contains("timed out after 500ms waiting for api (starting) to be ready"),
        "{message}"
    );
}

#[test]
fn wait_fails_at_once_when_the_condition_cannot_come() {
    let daemon = Daemon::start();
    run_ok(&daemon, &["run", "migrate", "--", "sh", "-c", "exit 3"]);
    let output = daemon.ctl(&["--timeout", "60s", "wait", "migrate", "--for", "completed"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("migrate will not be completed: it exited with status 3"),
        "{}",
        stderr(&output)
    );
    let ready = daemon.ctl(&["--timeout", "60s", "wait", "migrate"]);
    assert_eq!(ready.status.code(), Some(1));
    assert!(
        stderr(&ready).contains("will not be ready"),
        "{}",
        stderr(&ready)
    );

    let unknown = daemon.ctl(&["wait", "nobody"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("nobody does not exist"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn wait_for_completed_and_stopped() {
    let daemon = Daemon::start();
    // The task ends when the test writes a line into its FIFO.
    let fifo = daemon.dir.path().join("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let script = format!("read line < {}", fifo.display());
    run_ok(&daemon, &["run", "migrate", "--", "sh", "-c", &script]);
    run_ok(&daemon, &["run", "web", "--", "sleep", "600"]);
    let completed = ctl_spawn(
        &daemon,
        &["--timeout", "60s", "wait", "migrate", "--for", "completed"],
    );
    let stopped = ctl_spawn(
        &daemon,
        &[
            "--timeout",
            "60s",
            "--json",
            "wait",
            "web",
            "--for",
            "stopped",
        ],
    );
    assert!(stdout(&daemon.ctl(&["get", "migrate"])).contains("running"));

    std::fs::write(&fifo, "go\n").unwrap();
    let output = wait_output(completed);
    assert!(output.status.success(), "{}", stderr(&output));
    run_ok(&daemon, &["stop", "web"]);
    let output = wait_output(stopped);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["web"]["state"], "INSTANCE_STATE_STOPPED");
}
