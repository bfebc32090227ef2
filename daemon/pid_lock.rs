//! Advisory locks that prove a daemon owns something — its data
//! directory, its socket — for as long as it runs: held on a file holding
//! the owner's pid, released when dropped or when the process dies.

use std::{
    fs::{self, DirBuilder, File, OpenOptions, TryLockError},
    io::{self, Read, Seek, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

use crate::config::ConfigError;

/// Another daemon holds a lock this one needs.
#[derive(Debug, thiserror::Error)]
#[error("another outpostd{} is already serving {what}", pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default())]
pub struct AlreadyRunning {
    /// What is taken: the socket address or the data directory.
    pub what: String,
    /// The other daemon's pid, when known.
    pub pid: Option<u32>,
}

/// An exclusive advisory lock on a file holding the owner's pid, released
/// when dropped (or when the process dies).
#[derive(Debug)]
pub struct PidLock {
    _file: File,
}

impl PidLock {
    /// Takes the lock at `path`, or reports the pid of the process holding it.
    pub fn acquire(path: &Path) -> Result<Result<Self, Option<u32>>, io::Error> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)?;
                file.rewind()?;
                writeln!(file, "{}", std::process::id())?;
                Ok(Ok(Self { _file: file }))
            }
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                file.read_to_string(&mut pid)?;
                Ok(Err(pid.trim().parse().ok()))
            }
            Err(TryLockError::Error(err)) => Err(err),
        }
    }
}

/// Creates `dir` (and missing parents) with mode 0700. An existing
/// directory is left as it is.
pub fn create_private_dir(setting: &'static str, dir: &Path) -> Result<(), ConfigError> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o700)))
        .map_err(|err| {
            ConfigError::new(
                setting,
                format!("cannot create directory {}: {err}", dir.display()),
            )
        })
}
