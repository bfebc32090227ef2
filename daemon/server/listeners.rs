//! Binding the daemon's listeners safely.
//!
//! The Unix socket lives in a 0700 directory (when the daemon creates it),
//! is itself 0600, and is guarded by an advisory lock next to it: holding
//! the lock proves no other daemon serves there, so a leftover socket file is
//! stale and may be replaced.

use std::{
    fs, io,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
};

use tokio::net::{TcpListener, UnixListener};

use super::{ServerError, activation::Inherited};
use crate::{
    config::{ConfigError, ListenAddr, setting},
    pid_lock::{AlreadyRunning, PidLock, create_private_dir},
};

/// The longest socket path Linux accepts (`sun_path` minus the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A bound Unix socket. Dropping it removes the socket file (unless the
/// service manager made it, and keeps it for the next daemon), then
/// releases the lock.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    inherited: bool,
    _lock: PidLock,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.inherited {
            return;
        }
        if let Err(err) = fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %err, "could not remove the socket file");
        }
    }
}

/// Binds the Unix socket at `path`, replacing a stale socket file left by
/// a dead daemon, and refusing while another daemon holds it. A socket the
/// service manager passed for `path` is used as it is (its file and mode
/// are the socket unit's), under the same lock.
pub(crate) fn bind_unix(
    path: &Path,
    inherited: &mut Inherited,
) -> Result<(UnixListener, SocketFile), ServerError> {
    let invalid = |reason: String| ServerError::from(ConfigError::new(setting::SOCKET, reason));
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(invalid(format!(
            "{} is longer than the {MAX_SOCKET_PATH} bytes a socket path may have",
            path.display()
        )));
    }
    let dir = path
        .parent()
        .ok_or_else(|| invalid(format!("{} has no parent directory", path.display())))?;
    create_private_dir(setting::SOCKET, dir)?;

    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = match PidLock::acquire(Path::new(&lock_path)) {
        Ok(Ok(lock)) => lock,
        Ok(Err(pid)) => {
            return Err(AlreadyRunning {
                what: format!("unix://{}", path.display()),
                pid,
            }
            .into());
        }
        Err(err) => {
            return Err(invalid(format!(
                "cannot lock {}: {err}",
                Path::new(&lock_path).display()
            )));
        }
    };

    if let Some(listener) = inherited.unix(path)? {
        let listener = UnixListener::from_std(listener)
            .map_err(|err| invalid(format!("cannot use unix://{}: {err}", path.display())))?;
        let socket = SocketFile {
            path: path.to_owned(),
            inherited: true,
            _lock: lock,
        };
        return Ok((listener, socket));
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            tracing::info!(path = %path.display(), "replacing the stale socket of a daemon that is gone");
            fs::remove_file(path)
                .map_err(|err| invalid(format!("cannot remove stale {}: {err}", path.display())))?;
        }
        Ok(_) => {
            return Err(invalid(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            )));
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(invalid(format!("cannot inspect {}: {err}", path.display()))),
    }

    let listener = UnixListener::bind(path)
        .map_err(|err| invalid(format!("cannot bind {}: {err}", path.display())))?;
    let socket = SocketFile {
        path: path.to_owned(),
        inherited: false,
        _lock: lock,
    };
    // Peer credentials are checked on every request too, which covers the
    // moment between bind and chmod.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|err| invalid(format!("cannot chmod {}: {err}", path.display())))?;
    Ok((listener, socket))
}

/// Binds one TCP (or TLS) listener, or takes the one the service manager
/// passed for its address; port 0 binds a free port.
pub(crate) async fn bind_tcp(
    addr: ListenAddr,
    inherited: &mut Inherited,
) -> Result<TcpListener, ServerError> {
    let cannot =
        |err: io::Error| ConfigError::new(setting::LISTEN, format!("cannot bind {addr}: {err}"));
    match inherited.tcp(addr.addr)? {
        Some(listener) => Ok(TcpListener::from_std(listener).map_err(cannot)?),
        None => Ok(TcpListener::bind(addr.addr).await.map_err(cannot)?),
    }
}
