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

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
};

use outpost::proto::v1 as pb;
use outpost_test_support::process::{find_program, free_port, skip};
use tempfile::TempDir;

use crate::harness::{
    Daemon, START_DEADLINE, TOKEN, create, ctl_command, outpostd_bin, spec, stderr, stdout,
};

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

/// Whether `systemd-socket-activate` is here; a skip with the reason
/// where it is not (a failure under `OUTPOST_REQUIRE_REAL`).
fn socket_activate_installed() -> bool {
    find_program("systemd-socket-activate")
        .map(drop)
        .or_else(|| {
            skip("systemd-socket-activate is not installed (Debian: apt-get install systemd)")
        })
        .is_some()
}

/// `systemd-socket-activate` listening on the daemon's own addresses
/// (`--socket`, each `--listen`) and starting it on the first connection
/// with those sockets, and the daemon's environment.
fn socket_activated(daemon: &Command) -> Command {
    let mut command = Command::new("systemd-socket-activate");
    let args: Vec<&str> = daemon.get_args().map(|arg| arg.to_str().unwrap()).collect();
    for pair in args.windows(2) {
        match pair {
            ["--socket", socket] => {
                let dir = Path::new(socket).parent().unwrap();
                fs::create_dir_all(dir).unwrap();
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
                command.arg("-l").arg(socket);
            }
            ["--listen", address] => {
                command.arg("-l").arg(address.trim_start_matches("tcp://"));
            }
            _ => {}
        }
    }
    for (key, value) in daemon.get_envs() {
        if let Some(value) = value {
            let mut setting = key.to_owned();
            setting.push("=");
            setting.push(value);
            command.arg("-E").arg(setting);
        }
    }
    command.arg(daemon.get_program()).args(daemon.get_args());
    command
}

/// [`socket_activated`], with one more socket that the daemon has no
/// listener for.
fn with_a_stray_socket(daemon: &Command) -> Command {
    let mut command = socket_activated(daemon);
    let socket = Path::new(command.get_args().nth(1).unwrap()).with_file_name("stray.sock");
    let mut stray = Command::new(command.get_program());
    stray.arg("-l").arg(socket).args(command.get_args());
    command = stray;
    command
}

fn ctl_over_tcp(port: u16, args: &[&str]) -> Output {
    ctl_command()
        .args(["--addr", &format!("http://127.0.0.1:{port}")])
        .args(args)
        .env("OUTPOST_TOKEN", TOKEN)
        .output()
        .unwrap()
}

#[tokio::test]
async fn socket_activation_serves_the_inherited_unix_and_tcp_sockets() {
    if !socket_activate_installed() {
        return;
    }
    let port = free_port();
    let mut daemon = Daemon::builder()
        .arg("--listen")
        .arg(format!("tcp://127.0.0.1:{port}"))
        .env("OUTPOST_TOKEN", TOKEN)
        .wrapped(socket_activated)
        .spawn();
    // It says so once both sockets listen (a socket file exists from its
    // bind on, a moment before).
    daemon.log.wait_for(
        &format!("Listening on 127.0.0.1:{port} as 4."),
        START_DEADLINE,
    );
    // The first connection starts the daemon, which takes it from the
    // socket it inherits.
    let connection = daemon.connect().await;
    let status = (connection.orchestrator())
        .get_daemon_status(pb::GetDaemonStatusRequest {})
        .await
        .expect("the socket-activated daemon answers")
        .into_inner();
    assert_eq!(
        status.listen_addresses,
        [
            format!("unix://{}", daemon.socket.display()),
            format!("tcp://127.0.0.1:{port}")
        ]
    );
    let log = daemon.log.wait_for(" serving ", START_DEADLINE);
    assert_eq!(
        log.matches("inherited a listening socket").count(),
        2,
        "{log}"
    );
    let over_tcp = ctl_over_tcp(port, &["status"]);
    assert!(over_tcp.status.success(), "{}", stderr(&over_tcp));
    assert!(stdout(&over_tcp).contains(&format!("tcp://127.0.0.1:{port}")));

    let output = daemon.ctl(&["shutdown"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(daemon.wait_exit(START_DEADLINE).success());
    assert!(
        daemon.socket.exists(),
        "the socket file is the service manager's: kept for the next daemon"
    );
}

#[tokio::test]
async fn an_inherited_socket_no_listener_claims_stops_the_start() {
    if !socket_activate_installed() {
        return;
    }
    let mut daemon = Daemon::builder().wrapped(with_a_stray_socket).spawn();
    let stray = daemon.socket.with_file_name("stray.sock");
    daemon.log.wait_for(
        &format!("Listening on {} as 4.", daemon.socket.display()),
        START_DEADLINE,
    );
    // Any connection starts the daemon.
    drop(std::os::unix::net::UnixStream::connect(&stray).unwrap());
    let status = daemon.wait_exit(START_DEADLINE);
    assert_eq!(status.code(), Some(2), "a setting that cannot be used");
    let log = daemon.log.text();
    assert!(
        log.contains(&format!(
            "LISTEN_FDS: the service manager passed unix://{}",
            stray.display()
        )),
        "{log}"
    );
}

/// `systemd-analyze verify` of `units` (`--user` ones with `runtime_dir`
/// as `%t`): passes only when it exits 0 *and* says nothing, since it
/// reports a setting it cannot parse as a warning and still exits 0.
fn verify(units: &[PathBuf], runtime_dir: Option<&Path>) {
    let mut command = Command::new("systemd-analyze");
    if let Some(dir) = runtime_dir {
        command.arg("--user").env("XDG_RUNTIME_DIR", dir);
    }
    let output = command.arg("verify").args(units).output().unwrap();
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {units:?}: {said}"
    );
}

#[test]
fn service_units_pass_systemd_analyze_verify() {
    if find_program("systemd-analyze")
        .map(drop)
        .or_else(|| skip("systemd-analyze is not installed (Debian: apt-get install systemd)"))
        .is_none()
    {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("outpost-units")
        .tempdir()
        .unwrap();
    let service = |args: &[&str]| {
        let output = ctl_command()
            .arg("service")
            .args(args)
            .env("XDG_CONFIG_HOME", dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };

    // A user's units, written where systemd --user looks.
    service(&["install", "--user", "--daemon", outpostd_bin()]);
    let user_dir = dir.path().join("systemd/user");
    let units = [
        user_dir.join("outpostd.socket"),
        user_dir.join("outpostd.service"),
    ];
    let text = fs::read_to_string(&units[1]).unwrap();
    for setting in ["Type=notify", "KillMode=process", "Restart=on-failure"] {
        assert!(
            text.lines().any(|line| line == setting),
            "{setting}: {text}"
        );
    }
    verify(&units, Some(dir.path()));

    // System units, as --dry-run prints them.
    let printed = service(&[
        "install",
        "--system",
        "--run-as",
        "daemon",
        "--dry-run",
        "--daemon",
        outpostd_bin(),
    ]);
    let system_dir = dir.path().join("system");
    fs::create_dir(&system_dir).unwrap();
    let mut written = Vec::new();
    for unit in printed.split("# /etc/systemd/system/").skip(1) {
        let (name, text) = unit.split_once('\n').unwrap();
        written.push(system_dir.join(name));
        fs::write(written.last().unwrap(), text).unwrap();
    }
    assert_eq!(written.len(), 2, "{printed}");
    verify(&written, None);

    service(&["uninstall", "--user"]);
    assert!(!units.iter().any(|unit| unit.exists()), "removed");
}
