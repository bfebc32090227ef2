//! `outpostctl` in pipelines: output into a pipe whose reader has gone
//! ends the command quietly with exit status 0 (no panic, no "Broken
//! pipe"), for one-shot commands and for streams that have nothing more to
//! print.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
};

use crate::harness::{
    Daemon, START_DEADLINE, create, ctl_command, spec, stderr, stdout, wait_until,
};

/// `outpostctl --addr <daemon> ARGS…` with stdout and stderr piped.
fn ctl(daemon: &Daemon, args: &[&str]) -> Command {
    let mut command = ctl_command();
    command
        .arg("--addr")
        .arg(daemon.unix_address().to_string())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for `child` to exit within the start deadline; its status and
/// what it wrote to stderr.
fn finish(mut child: Child) -> (ExitStatus, String) {
    let mut status = None;
    wait_until("outpostctl to end with its reader", START_DEADLINE, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let output = child.wait_with_output().unwrap();
    (status.unwrap(), stderr(&output))
}

/// `outpostctl ARGS… | head -0`, with head gone before anything is
/// written: every write meets a closed pipe.
fn into_closed_pipe(daemon: &Daemon, args: &[&str]) -> (ExitStatus, String) {
    let mut head = Command::new("head")
        .args(["-n", "0"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = head.stdin.take().unwrap();
    assert!(head.wait().unwrap().success());
    let child = ctl(daemon, args).stdout(pipe).spawn().unwrap();
    finish(child)
}

/// `outpostctl ARGS… | head -1`: real processes; returns head's line and
/// how outpostctl ended.
fn into_head_1(daemon: &Daemon, args: &[&str]) -> (String, ExitStatus, String) {
    let mut child = ctl(daemon, args).spawn().unwrap();
    let head = Command::new("head")
        .args(["-n", "1"])
        .stdin(Stdio::from(child.stdout.take().unwrap()))
        .output()
        .unwrap();
    let (status, errors) = finish(child);
    (stdout(&head), status, errors)
}

#[tokio::test]
async fn one_shot_commands_end_quietly_on_a_closed_pipe() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    create(&connection, spec("web", "sleep", &["1000"])).await;
    for args in [
        &["ls"][..],
        &["--json", "ls"],
        &["get", "web"],
        &["status"],
        &["workspace", "ls"],
        &["completions", "bash"],
    ] {
        let (status, errors) = into_closed_pipe(&daemon, args);
        assert_eq!(status.code(), Some(0), "{args:?}: {errors}");
        assert_eq!(errors, "", "{args:?}");
    }
}

#[tokio::test]
async fn streams_end_when_their_reader_goes_even_with_nothing_to_print() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    // One line, then silence: only noticing the reader's end can stop
    // `logs -f` after it.
    create(
        &connection,
        spec("talker", "sh", &["-c", "echo hello; exec sleep 1000"]),
    )
    .await;
    let (line, status, errors) = into_head_1(&daemon, &["logs", "talker", "-f"]);
    assert_eq!(line, "hello\n");
    assert_eq!(status.code(), Some(0), "{errors}");
    assert_eq!(errors, "");

    for args in [&["watch"][..], &["--json", "watch"]] {
        let (line, status, errors) = into_head_1(&daemon, args);
        assert!(!line.is_empty(), "{args:?}");
        assert_eq!(status.code(), Some(0), "{args:?}: {errors}");
        assert_eq!(errors, "", "{args:?}");
    }
}

#[tokio::test]
async fn a_log_line_after_the_reader_has_gone_ends_the_stream_quietly() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    create(
        &connection,
        spec(
            "chatter",
            "sh",
            &["-c", "while :; do echo tick; sleep 0.05; done"],
        ),
    )
    .await;
    let mut child = ctl(&daemon, &["logs", "chatter", "-f", "-n", "1"])
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "tick\n");
    drop(reader);
    let (status, errors) = finish(child);
    assert_eq!(status.code(), Some(0), "{errors}");
    assert_eq!(errors, "");
}
