//! What the harnesses of real programs (both database servers,
//! chromedriver) do alike: the waits, finding a program, the rule for a
//! component that is not installed, free ports, running a client program,
//! and the names and URLs they build.

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use std::{
    env,
    fmt::Write as _,
    io::Write,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

/// How long the server may take to start or stop: generous, because tests
/// run in parallel on loaded machines; waits poll, so a fast server is not
/// slowed down by it.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often a wait looks again.
pub const POLL: Duration = Duration::from_millis(10);

/// How many free ports a start tries: another process may take the port
/// between our probe and the server's bind.
pub const PORT_ATTEMPTS: usize = 5;

/// Asks `attempt` every [`POLL`] until it has an answer; None once
/// `deadline` passed without one. Every wait of the harnesses (a server
/// that starts, one that exits, a port that accepts) is this one: no
/// process here tells when it is ready other than by being asked.
pub fn poll<T>(deadline: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(answer) = attempt() {
            return Some(answer);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(POLL);
    }
}

/// Whether `child` exited within `deadline`.
fn wait_for_exit(child: &mut Child, deadline: Duration) -> bool {
    poll(deadline, || {
        child
            .try_wait()
            .expect("cannot wait for a server")
            .map(drop)
    })
    .is_some()
}

/// Sends `signal` to the server `child` (it may have exited already) and
/// waits up to [`DEADLINE`] for it to exit; if it does not, kills it and
/// says so (false).
pub fn stop_server(child: &mut Child, signal: Signal) -> bool {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
    let _ = kill(pid, signal);
    if wait_for_exit(child, DEADLINE) {
        return true;
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// How the wait for a server that was just started ended.
#[derive(Debug)]
pub enum Started {
    /// It answers.
    Ready,
    /// It exited first.
    Exited(ExitStatus),
    /// It neither answered nor exited within the deadline.
    TimedOut,
}

/// Waits up to `deadline` until `ready` holds for the server `child`, or
/// it exits.
pub fn wait_started(
    child: &mut Child,
    deadline: Duration,
    mut ready: impl FnMut() -> bool,
) -> Started {
    poll(deadline, || {
        match child.try_wait().expect("cannot wait for a server") {
            Some(status) => Some(Started::Exited(status)),
            None => ready().then_some(Started::Ready),
        }
    })
    .unwrap_or(Started::TimedOut)
}

/// Whether the real servers are required (`OUTPOST_REQUIRE_REAL` set, not
/// empty or `0`).
pub fn require_real() -> bool {
    env::var_os("OUTPOST_REQUIRE_REAL").is_some_and(|v| !v.is_empty() && v != "0")
}

/// None with a reason on stderr, or a panic if the real servers are
/// required: the rule for every real component a test needs.
pub fn skip<T>(reason: &str) -> Option<T> {
    assert!(
        !require_real(),
        "{reason} (and OUTPOST_REQUIRE_REAL is set)"
    );
    eprintln!("skipping: {reason}");
    None
}

/// A program on `PATH`, or in the sbin directories where distributions put
/// servers (`mariadbd`) and which a non-root `PATH` often lacks.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A TCP port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("cannot bind a free port")
        .port()
}

/// Runs `command` without input, panicking if it cannot be started.
pub fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"))
}

/// Runs `command` with `input` on its stdin, written by a thread so that a
/// large input cannot deadlock with a large output.
pub fn run_with_input(command: &mut Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_owned();
    let writer = thread::spawn(move || {
        // A client that exits early (an error) closes the pipe: its status
        // says why.
        let _ = stdin.write_all(input.as_bytes());
    });
    let output = child
        .wait_with_output()
        .expect("cannot wait for the client");
    let _ = writer.join();
    output
}

/// The start of a long SQL script, for failure messages.
pub fn excerpt(sql: &str) -> String {
    match sql.char_indices().nth(2000) {
        Some((at, _)) => format!("{}…", &sql[..at]),
        None => sql.to_owned(),
    }
}

/// Whether `name` is letters, digits and `_` only: what the harnesses
/// accept as a database name or table prefix (MyBB's installer requires
/// it of a prefix), so that neither needs quoting.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `s` percent-encoded for a URL: everything but unreserved characters and
/// those in `keep`.
pub fn percent_encode(s: &str, keep: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.as_bytes().contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
