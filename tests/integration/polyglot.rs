//! The "any language" promise, checked against a real daemon with clients
//! that share no code with it: grpcurl, which learns the API through server
//! reflection, and a Python client whose stubs `tests/python/daemon_status.py`
//! generates from `proto/` at test time.
//!
//! Both use their default options on the Unix socket: grpcurl 1.8.6 (Go,
//! grpc-go 1.44) sends the socket path as `:authority` and grpcio 1.85 its
//! percent-encoding (`run%2Fuser%2F…`), which the daemon accepts there and
//! only there (`daemon/server/unix_authority/`).
//!
//! These tests need the packages of `tests/requirements.txt`; without them
//! they fail, saying to `pip install -r tests/requirements.txt`.

use std::{
    io,
    process::{Command, Output},
};

use serde_json::Value;

use crate::harness::{Daemon, TOKEN, stderr, stdout};

/// What to do when a tool the tests need is missing.
const SETUP_HINT: &str = "install the test requirements: pip install -r tests/requirements.txt";

/// The Python client: `python3 daemon_status.py TARGET` prints the daemon's
/// status as JSON.
const PYTHON_CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/python/daemon_status.py"
);

/// Upper bound, in seconds, on one grpcurl invocation, so that a stuck call
/// fails the test instead of hanging it.
pub(crate) const GRPCURL_MAX_SECONDS: &str = "30";

/// How a client reaches the daemon.
#[derive(Clone, Copy)]
enum Via<'a> {
    /// The Unix socket.
    Socket,
    /// The TCP listener, sending `authorization: Bearer <token>` when a
    /// token is given.
    Tcp(Option<&'a str>),
}

/// Runs `command` to completion; panics with [`SETUP_HINT`] when its program
/// is not installed.
pub(crate) fn run(command: &mut Command) -> Output {
    match command.output() {
        Ok(output) => output,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            panic!("{:?} is not installed: {SETUP_HINT}", command.get_program())
        }
        Err(err) => panic!("cannot run {:?}: {err}", command.get_program()),
    }
}

/// `127.0.0.1:PORT` of the daemon's TCP listener, as grpcurl and Python
/// grpc take it.
fn tcp_target(daemon: &Daemon) -> String {
    let address = daemon.tcp_address().to_string();
    address
        .strip_prefix("http://")
        .expect("an http:// address")
        .to_owned()
}

/// Runs `grpcurl -plaintext FLAGS… ADDRESS ARGS…` against `daemon`, adding
/// the flags that `via` needs (the Unix socket needs `-unix`; TCP gets the
/// token header if there is one).
fn grpcurl(daemon: &Daemon, via: Via, flags: &[&str], args: &[&str]) -> Output {
    let mut command = Command::new("grpcurl");
    command
        .args(["-plaintext", "-max-time", GRPCURL_MAX_SECONDS])
        .args(flags);
    match via {
        Via::Socket => {
            command.arg("-unix").arg(&daemon.socket);
        }
        Via::Tcp(token) => {
            if let Some(token) = token {
                command
                    .arg("-H")
                    .arg(format!("authorization: Bearer {token}"));
            }
            command.arg(tcp_target(daemon));
        }
    }
    run(command.args(args))
}

/// Runs the Python client against `daemon`; over TCP the token, if any, goes
/// in `OUTPOST_TOKEN`, which the client sends as bearer metadata. The socket
/// is named `unix:///path`.
fn python_daemon_status(daemon: &Daemon, via: Via) -> Output {
    let target = match via {
        Via::Socket => daemon.unix_address().to_string(),
        Via::Tcp(_) => tcp_target(daemon),
    };
    python_daemon_status_at(&target, via)
}

/// Runs the Python client against `target`, with the token of `via`.
fn python_daemon_status_at(target: &str, via: Via) -> Output {
    let mut command = Command::new("python3");
    command.arg(PYTHON_CLIENT).env_remove("OUTPOST_TOKEN");
    match via {
        Via::Socket => command.arg(target),
        Via::Tcp(token) => {
            if let Some(token) = token {
                command.env("OUTPOST_TOKEN", token);
            }
            command.arg(target)
        }
    };
    run(&mut command)
}

/// stdout of a command that must have succeeded; panics with its stderr
/// otherwise.
fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Asserts that a command failed with a gRPC UNAUTHENTICATED status whose
/// message mentions the bearer token.
fn assert_unauthenticated(output: &Output) {
    let error = stderr(output);
    assert!(
        !output.status.success()
            && error.to_lowercase().contains("unauthenticated")
            && error.contains("bearer token"),
        "expected UNAUTHENTICATED about the bearer token, got {}\nstdout:\n{}\nstderr:\n{error}",
        output.status,
        stdout(output)
    );
}

/// Parses the JSON GetDaemonStatus response a client printed and checks it
/// describes `daemon`: its pid, and its socket among the listen addresses.
fn assert_status_of(daemon: &Daemon, output: &Output) {
    let text = succeeded(output);
    let status: Value =
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}):\n{text}"));
    assert_eq!(status["pid"], daemon.pid(), "{text}");
    let socket = daemon.unix_address().to_string();
    let addresses = status["listenAddresses"]
        .as_array()
        .unwrap_or_else(|| panic!("no listenAddresses:\n{text}"));
    assert!(
        addresses.iter().any(|address| *address == *socket),
        "{socket} missing:\n{text}"
    );
}

#[test]
fn grpcurl_lists_services_through_reflection() {
    let daemon = Daemon::start();
    let listed = succeeded(&grpcurl(&daemon, Via::Socket, &[], &["list"]));
    let services: Vec<&str> = listed.lines().collect();
    for service in [
        "outpost.v1.Orchestrator",
        "outpost.v1.Sync",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.contains(&service),
            "{service} not listed:\n{listed}"
        );
    }
}

#[test]
fn grpcurl_describes_get_daemon_status_with_its_documentation() {
    let daemon = Daemon::start();
    let method = succeeded(&grpcurl(
        &daemon,
        Via::Socket,
        &[],
        &["describe", "outpost.v1.Orchestrator.GetDaemonStatus"],
    ));
    assert!(
        method.contains(
            "rpc GetDaemonStatus ( .outpost.v1.GetDaemonStatusRequest ) returns ( .outpost.v1.GetDaemonStatusResponse )"
        ),
        "{method}"
    );
    assert!(
        method.contains("// Reports the daemon's version"),
        "no proto comment:\n{method}"
    );
    let message = succeeded(&grpcurl(
        &daemon,
        Via::Socket,
        &[],
        &["describe", "outpost.v1.GetDaemonStatusResponse"],
    ));
    assert!(message.contains("uint32 pid = 2;"), "{message}");
    assert!(
        message.contains("repeated string listen_addresses = 5;"),
        "{message}"
    );
}

#[test]
fn grpcurl_gets_daemon_status_over_the_socket() {
    let daemon = Daemon::start();
    let output = grpcurl(
        &daemon,
        Via::Socket,
        &[],
        &["outpost.v1.Orchestrator/GetDaemonStatus"],
    );
    assert_status_of(&daemon, &output);
}

#[test]
fn grpcurl_checks_health_over_tcp_without_a_token() {
    let daemon = Daemon::builder().tcp().start();
    // Reflection needs the token on TCP, so a client without one brings the
    // health service's descriptors itself, as health probes do.
    let protoset = daemon.dir.path().join("health.protoset");
    std::fs::write(&protoset, tonic_health::pb::FILE_DESCRIPTOR_SET).unwrap();
    let protoset = protoset.to_str().unwrap();
    for service in ["", "outpost.v1.Orchestrator", "outpost.v1.Sync"] {
        let request = format!(r#"{{"service": "{service}"}}"#);
        let output = grpcurl(
            &daemon,
            Via::Tcp(None),
            &["-protoset", protoset, "-d", &request],
            &["grpc.health.v1.Health/Check"],
        );
        let text = succeeded(&output);
        let reply: Value =
            serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}):\n{text}"));
        assert_eq!(reply["status"], "SERVING", "service {service:?}: {text}");
    }
}

#[test]
fn grpcurl_over_tcp_without_the_right_token_is_unauthenticated() {
    let daemon = Daemon::builder().tcp().start();
    let wrong = "wrong-token-0123456789abcdef";
    for token in [None, Some(wrong)] {
        assert_unauthenticated(&grpcurl(&daemon, Via::Tcp(token), &[], &["list"]));
        assert_unauthenticated(&grpcurl(
            &daemon,
            Via::Tcp(token),
            &[],
            &["outpost.v1.Orchestrator/GetDaemonStatus"],
        ));
    }
}

#[test]
fn grpcurl_over_tcp_with_the_token_lists_and_gets_daemon_status() {
    let daemon = Daemon::builder().tcp().start();
    let listed = succeeded(&grpcurl(&daemon, Via::Tcp(Some(TOKEN)), &[], &["list"]));
    assert!(
        listed.lines().any(|line| line == "outpost.v1.Orchestrator"),
        "{listed}"
    );
    let output = grpcurl(
        &daemon,
        Via::Tcp(Some(TOKEN)),
        &[],
        &["outpost.v1.Orchestrator/GetDaemonStatus"],
    );
    assert_status_of(&daemon, &output);
}

#[test]
fn python_gets_daemon_status_over_the_socket() {
    let daemon = Daemon::start();
    assert_status_of(&daemon, &python_daemon_status(&daemon, Via::Socket));
}

#[test]
fn python_with_default_options_works_with_either_form_of_unix_target() {
    let daemon = Daemon::start();
    let path = daemon.socket.to_str().expect("a UTF-8 socket path");
    for target in [format!("unix:{path}"), format!("unix://{path}")] {
        assert_status_of(&daemon, &python_daemon_status_at(&target, Via::Socket));
    }
}

/// `:authority` values clients send on a Unix socket: the path (grpc-go
/// 1.44, grpc-java), grpcio's percent-encoding of it without the leading
/// slash, a percent-encoding with it (grpc-swift), and a relative path.
const SOCKET_AUTHORITIES: [&str; 4] = [
    "/run/user/1000/outpost/outpostd.sock",
    "run%2Fuser%2F1000%2Foutpost%2Foutpostd.sock",
    "%2Frun%2Fuser%2F1000%2Foutpost%2Foutpostd.sock",
    "./outpostd.sock",
];

#[test]
fn socket_accepts_path_like_authorities_and_tcp_still_rejects_them() {
    let daemon = Daemon::builder().tcp().start();
    let protoset = daemon.dir.path().join("health.protoset");
    std::fs::write(&protoset, tonic_health::pb::FILE_DESCRIPTOR_SET).unwrap();
    let protoset = protoset.to_str().unwrap();
    for authority in SOCKET_AUTHORITIES {
        let flags = ["-protoset", protoset, "-authority", authority];
        let over_socket = grpcurl(
            &daemon,
            Via::Socket,
            &flags,
            &["grpc.health.v1.Health/Check"],
        );
        assert!(
            succeeded(&over_socket).contains("SERVING"),
            "{authority}: {}",
            stdout(&over_socket)
        );
        // TCP keeps h2's validation: the stream is reset as malformed, as
        // before the socket learned to accept these.
        let over_tcp = grpcurl(
            &daemon,
            Via::Tcp(None),
            &flags,
            &["grpc.health.v1.Health/Check"],
        );
        let error = stderr(&over_tcp);
        assert!(
            !over_tcp.status.success()
                && error.contains("RST_STREAM")
                && error.contains("PROTOCOL_ERROR"),
            "{authority} over TCP: {}\nstdout:\n{}\nstderr:\n{error}",
            over_tcp.status,
            stdout(&over_tcp)
        );
    }
}

#[test]
fn python_gets_daemon_status_over_tcp_with_the_token() {
    let daemon = Daemon::builder().tcp().start();
    assert_status_of(
        &daemon,
        &python_daemon_status(&daemon, Via::Tcp(Some(TOKEN))),
    );
}

#[test]
fn python_over_tcp_without_a_token_is_unauthenticated() {
    let daemon = Daemon::builder().tcp().start();
    let output = python_daemon_status(&daemon, Via::Tcp(None));
    assert_unauthenticated(&output);
    assert!(
        stderr(&output).starts_with("UNAUTHENTICATED: "),
        "{}",
        stderr(&output)
    );
}
