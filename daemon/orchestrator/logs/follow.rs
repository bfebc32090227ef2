//! Streaming an instance's output: the last lines of each file, then, when
//! following, every complete line appended — read when inotify says the
//! directory's files changed, not on a timer. A follower ends when its
//! reader goes away or the directory is removed or moved away (the
//! instance was deleted: its directory is kept as a spare, see
//! [`super::spares`]). Rotation needs no special case: a file shorter than the
//! offset read so far is read again from its start.
//!
//! Each follower has an inotify descriptor of its own, polled on tokio's
//! reactor (the `inotify` crate's event stream): no thread per follower,
//! as a `notify` watcher would have.

use std::io;

use inotify::{EventMask, Inotify, WatchMask};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use outpost::{
    limits::{self, MAX_TAIL_LINES},
    spec::InvalidField,
};

use super::{LogFiles, LogPiece, Stream, read_new_lines, tail};

/// Lines of one stream (long ones in pieces), in the order they were
/// written.
#[derive(Debug)]
pub struct LogLines {
    /// Which stream.
    pub stream: Stream,
    /// The lines, without their newlines.
    pub lines: Vec<LogPiece>,
}

/// What to stream.
#[derive(Clone, Debug)]
pub struct LogRequest {
    /// The streams, in this order.
    pub streams: Vec<Stream>,
    /// Lines of history per stream.
    pub tail: usize,
    /// Whether to go on with what is appended.
    pub follow: bool,
}

impl LogRequest {
    /// A request for `tail` lines of history (at most [`MAX_TAIL_LINES`])
    /// of `streams`, and what follows if `follow`.
    pub fn new(streams: Vec<Stream>, tail: u32, follow: bool) -> Result<Self, InvalidField> {
        limits::count("tail_lines", tail.into(), MAX_TAIL_LINES.into())?;
        Ok(Self {
            streams,
            tail: tail as usize,
            follow,
        })
    }
}

/// Sends what `request` asks of `files` to `sender`. Returns when done
/// (not following), when the reader is gone, or when the directory is
/// removed or moved.
pub async fn stream(files: LogFiles, request: LogRequest, sender: mpsc::Sender<LogLines>) {
    let mut offsets = Vec::with_capacity(request.streams.len());
    for &stream in &request.streams {
        let last = tail(&files.path(stream), request.tail).unwrap_or_default();
        offsets.push((stream, last.offset));
        if !send(&sender, stream, last.lines).await {
            return;
        }
    }
    if request.follow {
        follow(files, offsets, sender).await;
    }
}

/// Sends every line appended to each stream after its offset, as it is
/// written, until the reader is gone or the directory is removed or moved.
pub async fn follow(
    files: LogFiles,
    mut offsets: Vec<(Stream, u64)>,
    sender: mpsc::Sender<LogLines>,
) {
    let mut changes = match watch(&files) {
        Ok(changes) => changes,
        Err(err) => {
            tracing::debug!(dir = %files.dir.display(), %err, "cannot follow logs");
            return;
        }
    };
    loop {
        // Also after the watch was added: nothing appended between the
        // offsets and the watch is missed. A file with more than one read
        // holds is read again at once, each read sent before the next
        // (the channel holds the follower back while the reader is slow).
        let mut more = true;
        while more {
            more = false;
            for (stream, offset) in &mut offsets {
                let new = read_new_lines(&files.path(*stream), *offset).unwrap_or_default();
                *offset = new.offset;
                more |= new.more;
                if !send(&sender, *stream, new.lines).await {
                    return;
                }
            }
        }
        let event = tokio::select! {
            () = sender.closed() => return,
            event = changes.next() => event,
        };
        match event {
            Some(Ok(event))
                if event.mask.intersects(
                    EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED,
                ) =>
            {
                return;
            }
            // A file removed with the directory: its DELETE_SELF waits
            // until nothing holds a file of it open any more.
            Some(Ok(_)) if !files.dir.exists() => return,
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                tracing::debug!(dir = %files.dir.display(), %err, "log watch failed");
                return;
            }
            None => return,
        }
    }
}

/// Watches the log directory for appends, new files (rotation), and its
/// removal or move.
fn watch(files: &LogFiles) -> io::Result<inotify::EventStream<[u8; 1024]>> {
    let inotify = Inotify::init()?;
    let mask = WatchMask::MODIFY
        | WatchMask::CREATE
        | WatchMask::MOVED_TO
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF;
    inotify.watches().add(&files.dir, mask)?;
    inotify.into_event_stream([0; 1024])
}

/// Sends `lines` unless there are none; false when the reader is gone.
async fn send(sender: &mpsc::Sender<LogLines>, stream: Stream, lines: Vec<LogPiece>) -> bool {
    lines.is_empty() || sender.send(LogLines { stream, lines }).await.is_ok()
}

#[cfg(test)]
mod tests {
    use std::{fs, io::Write, time::Duration};

    use super::*;

    async fn next(receiver: &mut mpsc::Receiver<LogLines>) -> Vec<String> {
        tokio::time::timeout(Duration::from_secs(10), receiver.recv())
            .await
            .expect("lines within the deadline")
            .expect("the follower is still there")
            .lines
            .into_iter()
            .map(|piece| piece.text)
            .collect()
    }

    #[tokio::test]
    async fn follows_appends_and_rotation_and_ends_with_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::new(dir.path(), "i-1");
        fs::create_dir(&files.dir).unwrap();
        let path = files.path(Stream::Stdout);
        fs::write(&path, "old 1\nold 2\n").unwrap();
        let (sender, mut receiver) = mpsc::channel(4);
        let request = LogRequest {
            streams: vec![Stream::Stdout],
            tail: 1,
            follow: true,
        };
        let follower = tokio::spawn(stream(files.clone(), request, sender));
        assert_eq!(next(&mut receiver).await, ["old 2"]);

        let mut out = fs::OpenOptions::new().append(true).open(&path).unwrap();
        write!(out, "new 1\nhalf").unwrap();
        assert_eq!(next(&mut receiver).await, ["new 1"]);
        writeln!(out, " done").unwrap();
        assert_eq!(next(&mut receiver).await, ["half done"]);

        files.rotate_if_larger(0).unwrap();
        writeln!(out, "after rotation").unwrap();
        assert_eq!(next(&mut receiver).await, ["after rotation"]);

        // Removed while a process still has a file of it open (an orphan
        // not stopped yet): the follower ends all the same.
        files.remove().unwrap();
        tokio::time::timeout(Duration::from_secs(10), follower)
            .await
            .expect("the follower ends when the directory goes")
            .unwrap();
    }

    #[tokio::test]
    async fn a_follower_ends_when_the_directory_is_kept_as_a_spare() {
        let dir = tempfile::tempdir().unwrap();
        let spares = super::super::spares::LogSpares::start(dir.path()).unwrap();
        let files = LogFiles::new(dir.path(), "i-1");
        let mut out = files.open_for_child(&spares).unwrap().stdout;
        writeln!(out, "before").unwrap();
        let (sender, mut receiver) = mpsc::channel(4);
        let request = LogRequest {
            streams: vec![Stream::Stdout],
            tail: 1,
            follow: true,
        };
        let follower = tokio::spawn(stream(files.clone(), request, sender));
        assert_eq!(next(&mut receiver).await, ["before"]);
        // Read by the follower, so it watches the directory now.
        writeln!(out, "after").unwrap();
        assert_eq!(next(&mut receiver).await, ["after"]);
        files.retire(&spares).unwrap();
        assert!(!files.dir.exists(), "kept as a spare, not left in place");
        tokio::time::timeout(Duration::from_secs(10), follower)
            .await
            .expect("the follower ends when the directory moves away")
            .unwrap();
        drop(out);
    }
}
