//! Test harness: starts a real `outpostd` binary on a temporary socket and
//! data directory, captures its log, and drives it over gRPC or through the
//! real `outpostctl` binary.

use std::{
    ffi::OsString,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use outpost::{
    endpoint::{Address, ConnectOptions, Connection},
    proto::v1::{self as pb, status_event::Change, watch_status_response::Payload},
};
use outpostd::orchestrator::process;
use tempfile::TempDir;
use tonic::Streaming;

/// How long a daemon may take to start on a loaded machine.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// A token long enough to be accepted.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// Path of the built `outpostd`.
pub fn outpostd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_outpostd")
}

/// Path of the built `outpostctl`: beside `outpostd`, where building the
/// workspace (`cargo nextest run`) puts it; the CLI is a crate of its own.
pub fn outpostctl_bin() -> PathBuf {
    let path = Path::new(outpostd_bin()).with_file_name("outpostctl");
    assert!(
        path.exists(),
        "{} is missing: run the tests of the whole workspace (cargo nextest run), which builds it",
        path.display()
    );
    path
}

/// Lines a process wrote to stderr, shared with the thread reading them.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<(Mutex<String>, Condvar)>);

impl LogBuffer {
    /// Starts a thread copying `stream` line by line into a new buffer.
    pub fn capture(stream: impl std::io::Read + Send + 'static) -> Self {
        let buffer = Self::default();
        let shared = buffer.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let (text, changed) = &*shared.0;
                let mut text = text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                changed.notify_all();
            }
        });
        buffer
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        self.0.0.lock().unwrap().clone()
    }

    /// Waits until the captured text contains `needle`; panics with the log
    /// after `deadline`.
    pub fn wait_for(&self, needle: &str, deadline: Duration) -> String {
        let (text, changed) = &*self.0;
        let end = Instant::now() + deadline;
        let mut guard = text.lock().unwrap();
        while !guard.contains(needle) {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {needle:?} in the log within {deadline:?}:\n{guard}"
            );
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
        guard.clone()
    }
}

/// How to start a daemon.
pub struct DaemonBuilder {
    dir: TempDir,
    data_dir: Option<PathBuf>,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    wrap: Option<Wrap>,
}

/// Makes the command that runs a daemon's command (a launcher such as
/// `systemd-socket-activate`).
pub type Wrap = fn(&Command) -> Command;

impl DaemonBuilder {
    /// Adds a command-line argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable for the daemon.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Keeps the daemon's data in `dir` instead of the test's directory.
    pub fn data_dir(mut self, dir: PathBuf) -> Self {
        self.data_dir = Some(dir);
        self
    }

    /// Runs the daemon through the command `wrap` makes of it.
    pub fn wrapped(mut self, wrap: Wrap) -> Self {
        self.wrap = Some(wrap);
        self
    }

    /// Also listens on a free TCP port of 127.0.0.1, with [`TOKEN`].
    pub fn tcp(self) -> Self {
        self.arg("--listen")
            .arg("tcp://127.0.0.1:0")
            .env("OUTPOST_TOKEN", TOKEN)
    }

    /// Also listens with TLS on a free port of 127.0.0.1, with [`TOKEN`].
    pub fn tls(self) -> Self {
        self.arg("--listen")
            .arg("tls://127.0.0.1:0")
            .env("OUTPOST_TOKEN", TOKEN)
    }

    /// Spawns the daemon without waiting for it to serve.
    pub fn spawn(mut self) -> Daemon {
        if !self.args.iter().any(|arg| arg == "--port-range") {
            // Each test process gets its own pool, so daemons of tests
            // running in parallel never race for the same port.
            let first = 20_000 + (std::process::id() % 800) * 50;
            self.args.push("--port-range".into());
            self.args.push(format!("{first}-{}", first + 49).into());
        }
        let socket = self.dir.path().join("run").join("outpostd.sock");
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| self.dir.path().join("data"));
        let (child, log) = spawn_daemon(&data_dir, &socket, &self.args, &self.envs, self.wrap);
        Daemon {
            child,
            dir: self.dir,
            socket,
            data_dir,
            log,
            args: self.args,
            envs: self.envs,
            wrap: self.wrap,
        }
    }

    /// Spawns the daemon and waits until it serves.
    pub fn start(self) -> Daemon {
        let daemon = self.spawn();
        daemon.log.wait_for(" serving ", START_DEADLINE);
        daemon
    }
}

/// Spawns outpostd with `args` and `envs` (through `wrap`'s launcher),
/// capturing its stderr.
fn spawn_daemon(
    data_dir: &Path,
    socket: &Path,
    args: &[OsString],
    envs: &[(String, String)],
    wrap: Option<Wrap>,
) -> (Child, LogBuffer) {
    let mut command = daemon_command(data_dir, socket);
    command.args(args);
    for (key, value) in envs {
        command.env(key, value);
    }
    if let Some(wrap) = wrap {
        command = wrap(&command);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
    }
    let mut child = command.spawn().expect("spawn outpostd");
    let log = LogBuffer::capture(child.stderr.take().unwrap());
    (child, log)
}

/// A `Command` for outpostd on `data_dir` and `socket`, with a clean
/// environment (no inherited OUTPOST_* settings) and piped stderr.
pub fn daemon_command(data_dir: &Path, socket: &Path) -> Command {
    let mut command = Command::new(outpostd_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OUTPOST_") {
            command.env_remove(key);
        }
    }
    command
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--socket")
        .arg(socket)
        .arg("--workspaces-dir")
        .arg(data_dir.with_file_name("workspaces"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A running `outpostd` child process; killed when dropped.
pub struct Daemon {
    child: Child,
    /// Temporary directory holding the socket and data dir.
    pub dir: TempDir,
    /// The Unix socket.
    pub socket: PathBuf,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The daemon's stderr.
    pub log: LogBuffer,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    wrap: Option<Wrap>,
}

impl Daemon {
    /// A builder with a fresh temporary directory.
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder {
            dir: tempfile::Builder::new()
                .prefix("outpost-test")
                .tempdir()
                .unwrap(),
            data_dir: None,
            args: Vec::new(),
            envs: Vec::new(),
            wrap: None,
        }
    }

    /// Starts a daemon with default settings and waits until it serves.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `unix://…` address of the socket.
    pub fn unix_address(&self) -> Address {
        Address::Unix(self.socket.clone())
    }

    /// `http://127.0.0.1:PORT` of the TCP listener, read from the log line
    /// that announces the bound addresses.
    pub fn tcp_address(&self) -> Address {
        self.listener_address("tcp", "http")
    }

    /// `https://127.0.0.1:PORT` of the TLS listener, read as
    /// [`Daemon::tcp_address`] is.
    pub fn tls_address(&self) -> Address {
        self.listener_address("tls", "https")
    }

    /// The first 127.0.0.1 listener of `scheme` in the log, as a client
    /// address of `client_scheme`.
    fn listener_address(&self, scheme: &str, client_scheme: &str) -> Address {
        let log = self.log.text();
        let serving = log
            .lines()
            .find(|line| line.contains(" serving "))
            .expect("daemon is not serving");
        let prefix = format!("{scheme}://127.0.0.1:");
        let start = serving
            .find(&prefix)
            .unwrap_or_else(|| panic!("no {scheme} listener in the log"));
        let port: String = serving[start + prefix.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        format!("{client_scheme}://127.0.0.1:{port}")
            .parse()
            .unwrap()
    }

    /// Connects over the Unix socket.
    pub async fn connect(&self) -> Connection {
        Connection::open(&self.unix_address(), None, &ConnectOptions::default())
            .await
            .expect("connect to the daemon's socket")
    }

    /// Runs `outpostctl --addr <socket> ARGS…` to completion.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let address = self.unix_address().to_string();
        ctl_command()
            .arg("--addr")
            .arg(address)
            .args(args)
            .output()
            .expect("run outpostctl")
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).expect("signal the daemon");
    }

    /// Starts a new daemon process on the same data dir, socket and
    /// settings (plus `extra` arguments) after this one has exited, and
    /// waits until it serves.
    pub fn respawn(&mut self, extra: &[&str]) {
        assert!(
            self.child.try_wait().unwrap().is_some(),
            "the old daemon still runs"
        );
        let mut args = self.args.clone();
        args.extend(extra.iter().map(OsString::from));
        let (child, log) = spawn_daemon(&self.data_dir, &self.socket, &args, &self.envs, self.wrap);
        self.child = child;
        self.log = log;
        self.log.wait_for(" serving ", START_DEADLINE);
    }

    /// Waits for the daemon to exit, panicking after `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let mut status = None;
        wait_until("the daemon to exit", deadline, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for Daemon {
    /// Stops the daemon gracefully (so it stops its instances), and kills
    /// it if that takes too long.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
            let end = Instant::now() + START_DEADLINE;
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < end {
                thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A test that crashed its daemon, or kept its instances on exit,
        // leaves them running: nothing of a test outlives it.
        for pid in processes_of(&self.data_dir) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// An `outpostctl` command with a clean environment (no inherited OUTPOST_*).
pub fn ctl_command() -> Command {
    let mut command = Command::new(outpostctl_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OUTPOST_") {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// stdout of a finished command as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// stderr of a finished command as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A spec running `command ARGS…` under `name`.
pub fn spec(name: &str, command: &str, args: &[&str]) -> pb::InstanceSpec {
    pb::InstanceSpec {
        name: name.to_owned(),
        command: command.to_owned(),
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        ..Default::default()
    }
}

/// Creates and starts an instance, panicking on error.
pub async fn create(connection: &Connection, spec: pb::InstanceSpec) -> pb::Instance {
    try_create(connection, spec)
        .await
        .unwrap_or_else(|status| panic!("create: {status}"))
}

/// Creates and starts an instance; the daemon's refusal as it is.
pub async fn try_create(
    connection: &Connection,
    spec: pb::InstanceSpec,
) -> Result<pb::Instance, tonic::Status> {
    connection
        .orchestrator()
        .create_instance(pb::CreateInstanceRequest {
            spec: Some(spec),
            start: None,
        })
        .await
        .map(|response| response.into_inner().instance.unwrap())
}

/// Instance `name` as `GetInstance` shows it, panicking on error.
pub async fn instance(connection: &Connection, name: &str) -> pb::Instance {
    connection
        .orchestrator()
        .get_instance(pb::GetInstanceRequest {
            instance: name.to_owned(),
        })
        .await
        .unwrap_or_else(|status| panic!("get {name}: {status}"))
        .into_inner()
        .instance
        .unwrap()
}

/// Stops an instance by name, panicking on error; returns it stopped.
pub async fn stop(connection: &Connection, name: &str) -> pb::Instance {
    connection
        .orchestrator()
        .stop_instance(pb::StopInstanceRequest {
            instance: name.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("stop {name}: {status}"))
        .into_inner()
        .instance
        .unwrap()
}

/// Whether a process with this pid exists (zombies included).
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid a script wrote to `path` (`echo $$ > path`), once its line is
/// complete.
pub fn pid_file(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.strip_suffix('\n')?.parse().ok()
}

/// The parent of process `pid`, from /proc/PID/stat.
pub fn parent_of(pid: u32) -> Option<u32> {
    let entry = process::read_entry(i32::try_from(pid).ok()?)?;
    u32::try_from(entry.ppid).ok()
}

/// Polls an async `attempt` every few milliseconds until it gives a
/// value; panics with `what` after `deadline`.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    deadline: Duration,
    mut attempt: impl FnMut() -> F,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `condition` every few milliseconds until it holds; panics with
/// `what` after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !condition() {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Reads the next message of a stream within the start deadline.
pub async fn next(stream: &mut Streaming<pb::WatchStatusResponse>) -> pb::WatchStatusResponse {
    tokio::time::timeout(START_DEADLINE, stream.message())
        .await
        .expect("a message within the deadline")
        .expect("the stream stays healthy")
        .expect("the stream stays open")
}

/// Opens a WatchStatus stream.
pub async fn watch(
    connection: &Connection,
    since_revision: u64,
) -> Streaming<pb::WatchStatusResponse> {
    connection
        .orchestrator()
        .watch_status(pb::WatchStatusRequest {
            since_revision,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// The events of a message (empty for a snapshot).
pub fn events(message: pb::WatchStatusResponse) -> Vec<pb::StatusEvent> {
    match message.payload {
        Some(Payload::Events(events)) => events.events,
        other => panic!("expected events, got {other:?}"),
    }
}

/// Reads events until one satisfies `done`; returns all read.
pub async fn events_until(
    stream: &mut Streaming<pb::WatchStatusResponse>,
    mut done: impl FnMut(&pb::StatusEvent) -> bool,
) -> Vec<pb::StatusEvent> {
    let mut seen = Vec::new();
    loop {
        for event in events(next(stream).await) {
            let finished = done(&event);
            seen.push(event);
            if finished {
                return seen;
            }
        }
    }
}

pub fn changed(event: &pb::StatusEvent) -> Option<&pb::InstanceChanged> {
    match &event.change {
        Some(Change::InstanceChanged(changed)) => Some(changed),
        _ => None,
    }
}

/// Live (not zombie) processes and their environment blocks.
fn live_environments() -> Vec<(u32, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let live = i32::try_from(pid)
            .ok()
            .and_then(process::read_entry)
            .is_some_and(|entry| entry.state != 'Z');
        if live {
            found.push((
                pid,
                std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default(),
            ));
        }
    }
    found
}

/// Live processes carrying an instance marker, by instance id (read from
/// /proc, independently of any daemon).
pub fn marked_processes() -> std::collections::BTreeMap<String, Vec<u32>> {
    let mut found: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for (pid, environ) in live_environments() {
        if let Some(id) = process::env_value(&environ, "OUTPOST_INSTANCE_ID") {
            found
                .entry(String::from_utf8_lossy(id).into_owned())
                .or_default()
                .push(pid);
        }
    }
    found
}

/// Live processes spawned by the daemon of `data_dir` (they carry its
/// data directory marker).
fn processes_of(data_dir: &Path) -> Vec<u32> {
    let marker = data_dir.as_os_str().as_encoded_bytes();
    live_environments()
        .into_iter()
        .filter(|(_, environ)| process::env_value(environ, "OUTPOST_DATA_DIR") == Some(marker))
        .map(|(pid, _)| pid)
        .collect()
}

/// Panics unless every live process the daemon started is the process of
/// an instance it lists: nothing outlives its instance (a refused create,
/// a delete, a rollback).
pub async fn assert_no_stray_processes(daemon: &Daemon, connection: &Connection) {
    let pids: Vec<u32> = connection
        .orchestrator()
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .instances
        .into_iter()
        .map(|i| i.pid)
        .collect();
    for pid in processes_of(&daemon.data_dir) {
        assert!(pids.contains(&pid), "process {pid} belongs to no instance");
    }
}
