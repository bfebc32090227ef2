//! The servers under test, each in a child process: a real release
//! `outpostd`, and the baseline — the benchmark binary itself, re-executed
//! as a bare tonic server that offers only `grpc.health.v1.Health`.
//!
//! Re-executing works for every benchmark binary because each one starts in
//! [`super::run`], which checks [`BASELINE_SOCKET_ENV`] before anything
//! else: the child is always the same binary as its parent, so the two
//! benchmarks never start each other's code. The variable is set only on
//! the baseline's own command, never in the benchmark's environment, so the
//! daemon and the processes it spawns do not inherit it.

use std::{
    env,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;

use super::{BoxError, runtime};

/// Set (to a socket path) when a benchmark binary is re-executed as the
/// baseline server.
const BASELINE_SOCKET_ENV: &str = "BENCH_BASELINE_SOCKET";
/// What both servers write to stderr once they accept calls.
const READY_MARKER: &str = " serving ";
/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket to serve the baseline on, when this process was started as
/// the baseline server.
pub fn baseline_socket() -> Option<PathBuf> {
    env::var_os(BASELINE_SOCKET_ENV).map(PathBuf::from)
}

/// Acts as the baseline server: only `grpc.health.v1.Health`, on `socket`,
/// until killed. It announces readiness on stderr as `outpostd` does.
pub fn serve_baseline(socket: &Path) -> Result<(), BoxError> {
    runtime()?.block_on(async {
        let listener = UnixListener::bind(socket)
            .map_err(|err| format!("cannot bind {}: {err}", socket.display()))?;
        let (_reporter, health) = tonic_health::server::health_reporter();
        eprintln!("baseline serving on {}", socket.display());
        Server::builder()
            .tcp_nodelay(true)
            .add_service(health)
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await?;
        Ok(())
    })
}

/// This binary, told to act as the baseline server on `socket`.
pub fn baseline_command(socket: &Path) -> std::io::Result<Command> {
    let mut command = Command::new(env::current_exe()?);
    command.env(BASELINE_SOCKET_ENV, socket);
    Ok(command)
}

/// The `outpostd` binary at `outpostd` with everything under `dir`, free of
/// the caller's `OUTPOST_*` settings. Callers may add arguments.
pub fn daemon_command(outpostd: &str, dir: &Path) -> Command {
    let mut command = Command::new(outpostd);
    command
        .arg("--data-dir")
        .arg(dir)
        .arg("--socket")
        .arg(daemon_socket(dir))
        .arg("--workspaces-dir")
        .arg(dir.join("workspaces"))
        .env("RUST_LOG", "info");
    without_outpost_env(&mut command);
    command
}

/// How long a daemon running a fleet may take to exit after SIGTERM; it
/// stops every instance it still runs first.
const FLEET_STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts the `outpostd` binary at `outpostd` for a fleet of instances:
/// data under `dir`, at most `max_instances`, ports from `port_range`.
pub fn start_fleet_daemon(
    outpostd: &str,
    dir: &Path,
    max_instances: &str,
    port_range: &str,
) -> Result<ServerProcess, BoxError> {
    let command = fleet_command(outpostd, dir, max_instances, port_range);
    ServerProcess::start("outpostd", command, FLEET_STOP_TIMEOUT)
}

/// Starts a fleet daemon as [`start_fleet_daemon`] does that also serves
/// its HTTP front (`--http`) on a free loopback port, accepting `token`
/// as a bearer token. The bound URL is its `GetDaemonStatus.http_address`.
pub fn start_http_daemon(
    outpostd: &str,
    dir: &Path,
    max_instances: &str,
    port_range: &str,
    token: &str,
) -> Result<ServerProcess, BoxError> {
    let mut command = fleet_command(outpostd, dir, max_instances, port_range);
    command
        .args(["--http", "127.0.0.1:0"])
        .env("OUTPOST_TOKEN", token);
    ServerProcess::start("outpostd", command, FLEET_STOP_TIMEOUT)
}

/// The command of a daemon for a fleet of instances.
fn fleet_command(outpostd: &str, dir: &Path, max_instances: &str, port_range: &str) -> Command {
    let mut command = daemon_command(outpostd, dir);
    command
        .args(["--max-instances", max_instances])
        .args(["--port-range", port_range]);
    command
}

/// Where the daemon whose data directory is `dir` listens.
pub fn daemon_socket(dir: &Path) -> PathBuf {
    dir.join("run").join("o.sock")
}

/// Removes every `OUTPOST_*` variable from the environment of `command`.
pub fn without_outpost_env(command: &mut Command) {
    for (name, _) in env::vars_os() {
        if name.to_string_lossy().starts_with("OUTPOST_") {
            command.env_remove(name);
        }
    }
}

/// A server running as a child process; stopped (SIGTERM, then SIGKILL
/// after its stop timeout) when dropped, including when the benchmark fails
/// or panics.
pub struct ServerProcess {
    child: Child,
    stop_timeout: Duration,
}

impl ServerProcess {
    /// Spawns `command` and waits until it reports that it is serving.
    /// When dropped, the server gets `stop_timeout` to exit after SIGTERM.
    pub fn start(
        name: &str,
        mut command: Command,
        stop_timeout: Duration,
    ) -> Result<Self, BoxError> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot start {name}: {err}"))?;
        let stderr = child.stderr.take().ok_or("stderr is not piped")?;
        // From here on, the guard stops the child whatever happens.
        let server = Self {
            child,
            stop_timeout,
        };
        wait_until_serving(stderr, READY_TIMEOUT).map_err(|err| format!("{name}: {err}"))?;
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    pub fn crash(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(drop)
    }

    /// Whether the child exits within `timeout`.
    fn exits_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let terminated = i32::try_from(self.child.id())
            .is_ok_and(|pid| kill(Pid::from_raw(pid), Signal::SIGTERM).is_ok());
        if !(terminated && self.exits_within(self.stop_timeout)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until a line of `stderr` contains [`READY_MARKER`]. A thread reads
/// the pipe and keeps draining it afterwards, so the server never blocks on a
/// full pipe.
fn wait_until_serving(stderr: ChildStderr, timeout: Duration) -> Result<(), String> {
    let (ready_tx, ready_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
        let mut before_ready = Vec::new();
        for line in lines.by_ref() {
            if line.contains(READY_MARKER) {
                let _ = ready_tx.send(Ok(()));
                lines.for_each(drop);
                return;
            }
            before_ready.push(line);
        }
        let _ = ready_tx.send(Err(before_ready.join("\n")));
    });
    match ready_rx.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(output)) => Err(format!("exited before serving; its stderr:\n{output}")),
        Err(_) => Err(format!("not serving after {timeout:?}")),
    }
}
