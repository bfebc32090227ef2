//! Listeners inherited from a service manager (systemd's socket
//! activation: `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`).
//!
//! The rule: an inherited socket serves the listener configured for the
//! address it is bound to — a Unix stream socket the `--socket` with the
//! same path, a TCP socket the listener (`--listen`, or any other TCP
//! listener that asks) with the same IP and port. Names from
//! `LISTEN_FDNAMES` are only logged: the address alone decides, so the
//! socket unit and the daemon's flags cannot disagree silently. A socket
//! that is not a listening stream socket, or that no listener claims, stops
//! the start with an error naming its address.

use std::{
    net::SocketAddr,
    os::fd::{FromRawFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
};

use nix::sys::socket::{SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt};

use super::ServerError;
use crate::config::ConfigError;

/// The environment variable the errors name.
const LISTEN_FDS: &str = "LISTEN_FDS";

/// One inherited listening socket.
#[derive(Debug)]
struct Socket {
    fd: OwnedFd,
    name: String,
    address: Address,
}

/// Where an inherited socket listens.
#[derive(Debug, PartialEq, Eq)]
enum Address {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

/// The sockets inherited and not claimed yet.
#[derive(Debug, Default)]
pub(crate) struct Inherited(Vec<Socket>);

impl Inherited {
    /// Takes the sockets passed to this process (none unless `LISTEN_PID`
    /// is ours); they are close-on-exec from here on, so no instance
    /// inherits them.
    pub(crate) fn take() -> Result<Self, ServerError> {
        let fds = sd_notify::listen_fds_with_names().map_err(|err| invalid(err.to_string()))?;
        let mut sockets = Vec::new();
        for (raw, name) in fds {
            // SAFETY: the service manager passed this descriptor to us
            // alone; nothing else in the process owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let address = address_of(&fd, raw)?;
            tracing::info!(fd = raw, %name, %address, "inherited a listening socket");
            sockets.push(Socket { fd, name, address });
        }
        Ok(Self(sockets))
    }

    /// The inherited Unix socket bound to `path`, ready for tokio.
    pub(crate) fn unix(
        &mut self,
        path: &Path,
    ) -> Result<Option<std::os::unix::net::UnixListener>, ServerError> {
        let Some(fd) = self.claim(&Address::Unix(path.to_owned())) else {
            return Ok(None);
        };
        let listener = std::os::unix::net::UnixListener::from(fd);
        listener
            .set_nonblocking(true)
            .map_err(|err| invalid(format!("cannot use unix://{}: {err}", path.display())))?;
        Ok(Some(listener))
    }

    /// The inherited TCP socket bound to `address`, ready for tokio.
    pub(crate) fn tcp(
        &mut self,
        address: SocketAddr,
    ) -> Result<Option<std::net::TcpListener>, ServerError> {
        let Some(fd) = self.claim(&Address::Tcp(address)) else {
            return Ok(None);
        };
        let listener = std::net::TcpListener::from(fd);
        listener
            .set_nonblocking(true)
            .map_err(|err| invalid(format!("cannot use tcp://{address}: {err}")))?;
        Ok(Some(listener))
    }

    /// Refuses sockets that no listener claimed.
    pub(crate) fn finish(self) -> Result<(), ServerError> {
        match self.0.first() {
            None => Ok(()),
            Some(socket) => Err(invalid(format!(
                "the service manager passed {} (named {:?}), which no listener is configured for: \
                 give the daemon --socket PATH or --listen tcp://HOST:PORT with that address",
                socket.address, socket.name
            ))),
        }
    }

    fn claim(&mut self, address: &Address) -> Option<OwnedFd> {
        let index = self
            .0
            .iter()
            .position(|socket| socket.address == *address)?;
        Some(self.0.swap_remove(index).fd)
    }
}

/// What `fd` is bound to, if it is a listening stream socket.
fn address_of(fd: &OwnedFd, raw: RawFd) -> Result<Address, ServerError> {
    let not_usable = |why: String| invalid(format!("inherited descriptor {raw}: {why}"));
    let listening = getsockopt(fd, sockopt::AcceptConn)
        .map_err(|err| not_usable(format!("not a socket ({err})")))?;
    if !listening {
        return Err(not_usable("not a listening stream socket".to_owned()));
    }
    let bound: SockaddrStorage =
        getsockname(raw).map_err(|err| not_usable(format!("no address ({err})")))?;
    if let Some(path) = bound.as_unix_addr().and_then(|unix| unix.path()) {
        return Ok(Address::Unix(path.to_owned()));
    }
    if let Some(v4) = bound.as_sockaddr_in() {
        return Ok(Address::Tcp(SocketAddr::V4((*v4).into())));
    }
    if let Some(v6) = bound.as_sockaddr_in6() {
        return Ok(Address::Tcp(SocketAddr::V6((*v6).into())));
    }
    Err(not_usable(format!(
        "bound to an address of family {:?}, neither a socket path nor TCP",
        bound.family()
    )))
}

fn invalid(reason: String) -> ServerError {
    ConfigError::new(LISTEN_FDS, reason).into()
}
