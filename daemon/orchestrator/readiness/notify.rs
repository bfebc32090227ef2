//! The sd_notify protocol, from the receiving side: a datagram socket per
//! process (its path in `$NOTIFY_SOCKET`), each datagram newline-separated
//! `KEY=VALUE` assignments. The socket lives in the daemon's private data
//! directory, so only the owner's processes can reach it (an abstract
//! socket could be found in /proc/net/unix and spoofed by anyone), and its
//! name carries the process generation, so a leftover of an earlier
//! process never speaks for the new one.

use std::{
    io,
    os::unix::{ffi::OsStrExt, net::UnixDatagram as StdDatagram},
    path::{Path, PathBuf},
};

use tokio::net::UnixDatagram;

use super::Note;

/// The longest socket path a `sockaddr_un` holds (108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Longest STATUS= kept: it is shown in one line by `get`.
const MAX_STATUS: usize = 256;
/// Largest datagram read (systemd accepts up to its page size too).
const MAX_DATAGRAM: usize = 4096;

/// A bound notify socket; its file goes with it.
#[derive(Debug)]
pub struct NotifySocket {
    path: PathBuf,
    socket: Option<StdDatagram>,
}

impl NotifySocket {
    /// Binds `DIR/notify/ID-GENERATION.sock`.
    pub fn bind(data_dir: &Path, id: &str, generation: u64) -> io::Result<Self> {
        let dir = data_dir.join("notify");
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&dir)?;
        Self::bind_at(dir.join(format!("{id}-{generation}.sock")))
    }

    /// Binds again the socket an earlier daemon made for process `pid` of
    /// instance `id`, at the path in that process's `$NOTIFY_SOCKET`, so
    /// what it sends from now on reaches this daemon. Only a path of the
    /// instance's own in the data directory is taken.
    pub fn rebind(data_dir: &Path, id: &str, pid: u32) -> io::Result<Self> {
        let environment = std::fs::read(format!("/proc/{pid}/environ"))?;
        let path = environment
            .split(|&byte| byte == 0)
            .find_map(|entry| entry.strip_prefix(b"NOTIFY_SOCKET="))
            .map(|value| PathBuf::from(std::ffi::OsStr::from_bytes(value)))
            .ok_or_else(|| io::Error::other(format!("process {pid} has no NOTIFY_SOCKET")))?;
        let ours = path.parent() == Some(&data_dir.join("notify"))
            && (path.file_name().and_then(|name| name.to_str()))
                .is_some_and(|name| name.starts_with(&format!("{id}-")) && name.ends_with(".sock"));
        if !ours {
            return Err(io::Error::other(format!(
                "process {pid}'s NOTIFY_SOCKET {} is not one of instance {id}'s",
                path.display()
            )));
        }
        Self::bind_at(path)
    }

    fn bind_at(path: PathBuf) -> io::Result<Self> {
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(io::Error::other(format!(
                "the notify socket {} is longer than {MAX_SOCKET_PATH} bytes; use a shorter --data-dir",
                path.display()
            )));
        }
        let _ = std::fs::remove_file(&path);
        let socket = StdDatagram::bind(&path)?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            path,
            socket: Some(socket),
        })
    }

    /// What the process finds in `$NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Receives datagrams until the socket is dropped, handing each note
    /// to `deliver`; ends when `deliver` says the listener is gone.
    pub async fn listen(mut self, mut deliver: impl FnMut(Note) -> bool) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        let socket = match UnixDatagram::from_std(socket) {
            Ok(socket) => socket,
            Err(err) => {
                tracing::warn!(path = %self.path.display(), %err, "cannot listen on the notify socket");
                return;
            }
        };
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        loop {
            let Ok(len) = socket.recv(&mut buffer).await else {
                return;
            };
            for note in parse(&buffer[..len]) {
                if !deliver(note) {
                    return;
                }
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The notes of one datagram; unknown assignments are ignored, as
/// systemd does.
pub fn parse(datagram: &[u8]) -> Vec<Note> {
    let text = String::from_utf8_lossy(datagram);
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            match (key, value) {
                ("READY", "1") => Some(Note::Ready),
                ("STOPPING", "1") => Some(Note::Stopping),
                ("WATCHDOG", "1") => Some(Note::Watchdog),
                ("WATCHDOG", "trigger") => Some(Note::WatchdogTrigger),
                ("STATUS", status) => Some(Note::Status(status.chars().take(MAX_STATUS).collect())),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_carries_several_notes() {
        let notes = parse(b"STATUS=warming caches\nREADY=1\nMAINPID=42\nWATCHDOG=1\n");
        assert_eq!(
            notes,
            [
                Note::Status("warming caches".to_owned()),
                Note::Ready,
                Note::Watchdog
            ]
        );
        assert_eq!(parse(b"READY=0\nSTOPPING=1"), [Note::Stopping]);
        assert_eq!(parse(b"WATCHDOG=trigger"), [Note::WatchdogTrigger]);
        let long = format!("STATUS={}", "x".repeat(1000));
        assert_eq!(
            parse(long.as_bytes()),
            [Note::Status("x".repeat(MAX_STATUS))]
        );
        assert!(parse(b"\xff\xfe garbage").is_empty());
    }

    #[tokio::test]
    async fn notes_arrive_and_the_file_goes_with_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = NotifySocket::bind(dir.path(), "i-1", 3).unwrap();
        let path = socket.path().to_owned();
        assert!(path.ends_with("notify/i-1-3.sock"));
        let (sender, mut notes) = tokio::sync::mpsc::unbounded_channel();
        let listener = tokio::spawn(socket.listen(move |note| sender.send(note).is_ok()));
        let client = StdDatagram::unbound().unwrap();
        client.send_to(b"READY=1\nSTATUS=up", &path).unwrap();
        assert_eq!(notes.recv().await, Some(Note::Ready));
        assert_eq!(notes.recv().await, Some(Note::Status("up".to_owned())));
        listener.abort();
        let _ = listener.await;
        assert!(!path.exists(), "the socket file is removed");
    }
}
