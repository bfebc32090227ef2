//! What both database servers' harnesses do alike: the waits, the rule
//! for a component that is not installed, free ports, and running a
//! client program.

use std::{
    env,
    io::Write,
    net::TcpListener,
    process::{Command, Output, Stdio},
    thread,
    time::Duration,
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
