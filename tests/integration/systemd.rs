//! systemd's protocols, for real: `sd_notify` to a test-side
//! `NOTIFY_SOCKET` (READY=1, STATUS=, STOPPING=1, WATCHDOG=1), socket
//! activation through `systemd-socket-activate`, and the units of
//! `outpostctl service` checked by `systemd-analyze verify`.

use std::{
    collections::VecDeque,
    os::unix::net::UnixDatagram,
    path::PathBuf,
    time::{Duration, Instant},
};

use outpost::proto::v1 as pb;
use tempfile::TempDir;

use crate::harness::{Daemon, START_DEADLINE, create, spec, stderr};

/// A service manager's notification socket, on the test's side.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// Lines received and not looked at yet.
    unread: VecDeque<String>,
    _dir: TempDir,
}

impl NotifySocket {
    fn bind() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("outpost-notify")
            .tempdir()
            .unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        Self {
            socket,
            path,
            unread: VecDeque::new(),
            _dir: dir,
        }
    }

    /// Reads datagrams until a line satisfies `wanted`; returns every line
    /// read, that one last. Panics after [`START_DEADLINE`].
    fn until(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let end = Instant::now() + START_DEADLINE;
        let mut lines = Vec::new();
        let mut buffer = [0; 4096];
        loop {
            while let Some(line) = self.unread.pop_front() {
                let found = wanted(&line);
                lines.push(line);
                if found {
                    return lines;
                }
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what} within {START_DEADLINE:?}: {lines:?}"
            );
            self.socket.set_read_timeout(Some(left)).unwrap();
            if let Ok(length) = self.socket.recv(&mut buffer) {
                let datagram = String::from_utf8_lossy(&buffer[..length]).into_owned();
                self.unread.extend(datagram.lines().map(str::to_owned));
            }
        }
    }
}

#[tokio::test]
async fn sd_notify_ready_once_serving_then_status_and_stopping() {
    let mut notify = NotifySocket::bind();
    let mut daemon = Daemon::builder()
        .env("NOTIFY_SOCKET", notify.path.to_str().unwrap())
        .spawn();
    let mut seen = notify.until("READY=1", |line| line == "READY=1");
    // Ready means ready: the socket answers the moment it says so.
    let connection = daemon.connect().await;
    (connection.orchestrator())
        .get_daemon_status(pb::GetDaemonStatusRequest {})
        .await
        .expect("the daemon answers once it said READY=1");
    seen.extend(notify.until("the first STATUS=", |line| line.starts_with("STATUS=")));
    assert_eq!(seen.last().unwrap(), "STATUS=serving; 0 instances");

    create(&connection, spec("web", "sleep", &["1000"])).await;
    seen.extend(notify.until("STATUS= with the instance", |line| {
        line == "STATUS=serving; 1 instance: 1 running"
    }));

    let output = daemon.ctl(&["shutdown", "--stop-instances"]);
    assert!(output.status.success(), "{}", stderr(&output));
    seen.extend(notify.until("STOPPING=1", |line| line == "STOPPING=1"));
    assert!(daemon.wait_exit(START_DEADLINE).success());
    assert!(
        !seen.iter().any(|line| line == "WATCHDOG=1"),
        "no watchdog without WATCHDOG_USEC: {seen:?}"
    );
}

#[tokio::test]
async fn sd_notify_pings_the_watchdog_at_half_its_timeout() {
    let mut notify = NotifySocket::bind();
    let timeout = Duration::from_secs(1);
    let _daemon = Daemon::builder()
        .env("NOTIFY_SOCKET", notify.path.to_str().unwrap())
        .env("WATCHDOG_USEC", &timeout.as_micros().to_string())
        .spawn();
    notify.until("READY=1", |line| line == "READY=1");
    notify.until("WATCHDOG=1", |line| line == "WATCHDOG=1");
    let first = Instant::now();
    for _ in 0..3 {
        notify.until("WATCHDOG=1", |line| line == "WATCHDOG=1");
    }
    // Three intervals at half the timeout take 1.5 s; pinging once per
    // timeout (too late for systemd) would take 3 s.
    let elapsed = first.elapsed();
    assert!(elapsed < timeout * 3, "three intervals took {elapsed:?}");
}
