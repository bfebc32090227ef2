//! Test support: a private, real redis-server or memcached per test, for
//! the MyBB store's refresh of a forum's cache store. Each listens on a
//! free port of 127.0.0.1 and is killed when dropped; as with MariaDB, a
//! machine without the program skips the test unless
//! `OUTPOST_REQUIRE_REAL` is set ([`skip`]).

use std::{
    io::{BufRead, BufReader, ErrorKind, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::Duration,
};

use outpost_test_support::process::{
    DEADLINE, PORT_ATTEMPTS, Started, free_port, skip, wait_started,
};

/// Which cache server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Memcached,
}

/// A running cache server, killed on drop.
pub struct CacheServer {
    child: Child,
    kind: Kind,
    pub port: u16,
}

impl CacheServer {
    /// Starts a server of `kind` on a free port and waits until it
    /// accepts connections; None (with the reason on stderr) where it is
    /// not installed and that is allowed.
    pub fn start(kind: Kind) -> Option<Self> {
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut command = match kind {
                Kind::Redis => {
                    let mut command = Command::new("redis-server");
                    command.args(["--port", &port.to_string()]).args([
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--bind",
                        "127.0.0.1",
                    ]);
                    command
                }
                Kind::Memcached => {
                    let mut command = Command::new("memcached");
                    // Run as root, memcached refuses to start without -u
                    // (which it ignores otherwise); -U 0: no UDP.
                    command.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]);
                    command.args(["-u", "root"]);
                    command
                }
            };
            let child = match command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(child) => child,
                Err(err) if err.kind() == ErrorKind::NotFound => {
                    return skip(&format!(
                        "{kind:?} is not installed (apt-get install redis-server memcached)"
                    ));
                }
                Err(err) => panic!("cannot start {kind:?}: {err}"),
            };
            let mut server = CacheServer { child, kind, port };
            if server.ready() {
                return Some(server);
            }
        }
        panic!("{kind:?} did not start on any of {PORT_ATTEMPTS} free ports");
    }

    /// Waits until the server accepts a connection; false if it exited
    /// first (its port was taken).
    fn ready(&mut self) -> bool {
        let port = self.port;
        match wait_started(&mut self.child, DEADLINE, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        }) {
            Started::Ready => true,
            Started::Exited(status) => {
                eprintln!("{:?} on port {port} exited: {status}", self.kind);
                false
            }
            Started::TimedOut => panic!(
                "{:?} did not accept connections on port {port} within {DEADLINE:?}",
                self.kind
            ),
        }
    }

    /// Sends `request` and returns the first line of the answer.
    fn ask(&self, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }

    /// Stores `value` under `key`, as MyBB's handler puts a cache.
    pub fn set(&self, key: &str, value: &str) {
        let (request, stored) = match self.kind {
            Kind::Redis => (
                format!(
                    "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                    key.len(),
                    value.len()
                ),
                "+OK",
            ),
            Kind::Memcached => (
                format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()),
                "STORED",
            ),
        };
        assert_eq!(self.ask(request.as_bytes()), stored);
    }

    /// Whether the server holds `key`.
    pub fn has(&self, key: &str) -> bool {
        match self.kind {
            Kind::Redis => {
                let request = format!("*2\r\n$6\r\nEXISTS\r\n${}\r\n{key}\r\n", key.len());
                self.ask(request.as_bytes()) == ":1"
            }
            // `get` answers VALUE … for a key it holds, END alone if not.
            Kind::Memcached => self.ask(format!("get {key}\r\n").as_bytes()) != "END",
        }
    }
}

impl Drop for CacheServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
