//! Instance log files: stdout and stderr go straight from the process to
//! append-mode files under the data dir; the daemon only rotates and reads
//! them.
//!
//! Rotation copies the file to `.1` (shifting older generations) and then
//! truncates it. Because the process writes with O_APPEND, its next write
//! lands at the new end of the file, so the process never needs to reopen
//! anything (logrotate's "copytruncate").
//!
//! Reading is bounded: a line longer than [`LOG_PIECE`] is handed out in
//! pieces (all but the last marked partial), a follower reads at most
//! [`READ_AT_ONCE`] at a time and a tail at most [`TAIL_BYTES`], so one
//! 64 MB line without a newline never sits in memory or in one message.
//!
//! A new instance's directory and its two files are made ahead of time,
//! and a deleted one's kept for the next ([`spares`]); [`rotation`] decides when the files are looked at,
//! [`follow`] streams what is appended to them.

pub mod follow;
pub mod rotation;
pub mod spares;

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use outpost::limits::LOG_PIECE;
use spares::LogSpares;

/// Which output of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn file_name(self) -> &'static str {
        match self {
            Self::Stdout => "stdout.log",
            Self::Stderr => "stderr.log",
        }
    }
}

/// Both files, open for appending: a new process's stdout and stderr.
#[derive(Debug)]
pub struct Outputs {
    /// Where stdout goes.
    pub stdout: File,
    /// Where stderr goes.
    pub stderr: File,
}

/// Most bytes a follower reads from a file at once; what is left is read
/// right after, once the reader took what was read.
const READ_AT_ONCE: usize = 1 << 20;
/// Most bytes read backwards from the end of a file for a tail.
const TAIL_BYTES: u64 = 4 << 20;

/// A line without its newline, or a piece of at most [`LOG_PIECE`] bytes
/// of a longer one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPiece {
    /// The text; invalid UTF-8 replaced by U+FFFD.
    pub text: String,
    /// Whether the line goes on in the next piece.
    pub partial: bool,
}

/// Lines read from a log file.
#[derive(Debug, Default)]
pub struct Lines {
    /// The lines, long ones in pieces.
    pub lines: Vec<LogPiece>,
    /// Where a follower continues reading.
    pub offset: u64,
    /// Whether the file holds more than was read (read again at once).
    pub more: bool,
}

/// Where the first piece of `bytes` (longer than [`LOG_PIECE`]) ends: at
/// [`LOG_PIECE`], moved back to the start of a UTF-8 character that would
/// be cut.
fn piece_end(bytes: &[u8]) -> usize {
    let mut end = LOG_PIECE;
    while end > LOG_PIECE - 3 && bytes[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    end
}

/// Hands out the full pieces of `bytes` (an unfinished line) as partial
/// pieces; returns how many bytes they took.
fn full_pieces(bytes: &[u8], out: &mut Vec<LogPiece>) -> usize {
    let mut start = 0;
    while bytes.len() - start > LOG_PIECE {
        let end = start + piece_end(&bytes[start..]);
        out.push(LogPiece {
            text: String::from_utf8_lossy(&bytes[start..end]).into_owned(),
            partial: true,
        });
        start = end;
    }
    start
}

/// Hands out one line (without its newline) in pieces.
fn line_pieces(line: &[u8], out: &mut Vec<LogPiece>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let start = full_pieces(line, out);
    out.push(LogPiece {
        text: String::from_utf8_lossy(&line[start..]).into_owned(),
        partial: false,
    });
}

/// The log files of one instance.
#[derive(Clone, Debug)]
pub struct LogFiles {
    dir: PathBuf,
}

/// Size above which a log file is rotated.
pub const ROTATE_AT: u64 = 10 << 20;
/// Rotated generations kept (`.1` … `.N`).
pub const GENERATIONS: u32 = 3;

impl LogFiles {
    /// The log files of instance `id` under `logs_root`.
    pub fn new(logs_root: &Path, id: &str) -> Self {
        Self::at(logs_root.join(id))
    }

    /// The log files in `dir`.
    fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Path of one stream's current file.
    pub fn path(&self, stream: Stream) -> PathBuf {
        self.dir.join(stream.file_name())
    }

    /// Opens both files for a new process, creating them if needed: for
    /// an instance without logs yet, by moving a spare directory into place
    /// when one is ready.
    pub fn open_for_child(&self, spares: &Arc<LogSpares>) -> io::Result<Outputs> {
        let placed = fs::symlink_metadata(&self.dir).is_err() && spares.place(&self.dir);
        if !placed {
            fs::create_dir_all(&self.dir)?;
        }
        self.open_streams()
    }

    /// Opens both files for appending, creating missing ones (0600).
    pub(super) fn open_streams(&self) -> io::Result<Outputs> {
        let open = |stream| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(self.path(stream))
        };
        Ok(Outputs {
            stdout: open(Stream::Stdout)?,
            stderr: open(Stream::Stderr)?,
        })
    }

    /// Rotates every stream that has grown past `limit` bytes; returns the
    /// sizes of both streams as they were found.
    pub fn rotate_if_larger(&self, limit: u64) -> io::Result<[u64; 2]> {
        let mut sizes = [0; 2];
        for (size, stream) in sizes.iter_mut().zip([Stream::Stdout, Stream::Stderr]) {
            let path = self.path(stream);
            match fs::metadata(&path) {
                Ok(meta) => {
                    *size = meta.len();
                    if meta.len() > limit {
                        rotate(&path, GENERATIONS)?;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        Ok(sizes)
    }

    /// Makes the directory (for a follower of an instance that has not run
    /// yet); a spawn later finds it and opens the files in it.
    pub fn create_dir(&self) -> io::Result<()> {
        fs::create_dir_all(&self.dir)
    }

    /// Gives up the logs of a deleted instance: its directory becomes a
    /// spare for a later instance ([`LogSpares::recycle`]), or is removed.
    pub fn retire(&self, spares: &LogSpares) -> io::Result<()> {
        if spares.recycle(&self.dir)? {
            return Ok(());
        }
        self.remove()
    }

    /// Removes the instance's logs.
    fn remove(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// `path` → `path.1` → … → `path.N` (dropping the oldest), then empties
/// `path` in place.
fn rotate(path: &Path, generations: u32) -> io::Result<()> {
    let generation = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    for n in (1..generations).rev() {
        match fs::rename(generation(n), generation(n + 1)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    fs::copy(path, generation(1))?;
    OpenOptions::new().write(true).open(path)?.set_len(0)
}

/// The last `count` lines of `path`; reads backwards so a large file costs
/// only what the lines need, and at most [`TAIL_BYTES`] (then the first
/// line is the end of a longer one). A follower continues from the file's
/// end.
pub fn tail(path: &Path, count: usize) -> io::Result<Lines> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Lines::default()),
        Err(err) => return Err(err),
    };
    let len = file.metadata()?.len();
    let mut lines = Vec::new();
    if count == 0 {
        return Ok(Lines {
            lines,
            offset: len,
            more: false,
        });
    }
    let floor = len.saturating_sub(TAIL_BYTES);
    let mut start = len;
    let mut chunk = 8 << 10;
    let mut buffer = Vec::new();
    let mut enough = false;
    while start > floor {
        let read_from = start.saturating_sub(chunk).max(floor);
        let mut piece = vec![0; (start - read_from) as usize];
        file.seek(SeekFrom::Start(read_from))?;
        file.read_exact(&mut piece)?;
        piece.extend_from_slice(&buffer);
        buffer = piece;
        start = read_from;
        // count + 1 newlines guarantee `count` complete lines.
        if buffer.iter().filter(|&&b| b == b'\n').count() > count {
            enough = true;
            break;
        }
        chunk *= 2;
    }
    // An empty file has no lines, not one empty line.
    let mut segments: Vec<&[u8]> = if buffer.is_empty() {
        Vec::new()
    } else {
        buffer.split(|&b| b == b'\n').collect()
    };
    if buffer.ends_with(b"\n") {
        segments.pop(); // the empty segment after the last newline
    }
    if start > 0 && enough && !segments.is_empty() {
        segments.remove(0); // a partial first line
    }
    let skip = segments.len().saturating_sub(count);
    for segment in &segments[skip..] {
        line_pieces(segment, &mut lines);
    }
    Ok(Lines {
        lines,
        offset: len,
        more: false,
    })
}

/// Lines appended to `path` since `offset`, read [`READ_AT_ONCE`] at most:
/// complete lines, and the full pieces of a line still without its
/// newline; the rest of it waits for more. A file shorter than `offset`
/// was rotated: reading restarts at 0.
pub fn read_new_lines(path: &Path, offset: u64) -> io::Result<Lines> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Lines::default()),
        Err(err) => return Err(err),
    };
    let len = file.metadata()?.len();
    let offset = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(offset))?;
    let available = len - offset;
    let mut buffer = Vec::new();
    file.take(available.min(READ_AT_ONCE as u64))
        .read_to_end(&mut buffer)?;
    let complete = buffer
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let mut lines = Vec::new();
    if complete > 0 {
        for line in buffer[..complete - 1].split(|&b| b == b'\n') {
            line_pieces(line, &mut lines);
        }
    }
    let taken = complete + full_pieces(&buffer[complete..], &mut lines);
    Ok(Lines {
        lines,
        offset: offset + taken as u64,
        more: (buffer.len() as u64) < available,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn texts(lines: &Lines) -> Vec<&str> {
        lines
            .lines
            .iter()
            .map(|piece| piece.text.as_str())
            .collect()
    }

    #[test]
    fn a_long_line_comes_in_bounded_pieces_read_a_megabyte_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        // 3 MiB and a bit without a newline, a two-byte character across
        // the first piece's end.
        let mut text = "x".repeat(LOG_PIECE - 1);
        text.push('é');
        text.push_str(&"y".repeat(3 << 20));
        fs::write(&path, &text).unwrap();
        let mut offset = 0;
        let mut pieces = Vec::new();
        loop {
            let read = read_new_lines(&path, offset).unwrap();
            assert!(read.lines.len() <= READ_AT_ONCE / LOG_PIECE + 1);
            offset = read.offset;
            pieces.extend(read.lines);
            if !read.more {
                break;
            }
        }
        assert!(
            pieces
                .iter()
                .all(|p| p.partial && p.text.len() <= LOG_PIECE)
        );
        assert_eq!(pieces[0].text, "x".repeat(LOG_PIECE - 1));
        assert!(pieces[1].text.starts_with('é'));
        // The rest (less than a piece) waits for its newline.
        let sent: usize = pieces.iter().map(|p| p.text.len()).sum();
        assert!(text.len() - sent <= LOG_PIECE);
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"z\n")
            .unwrap();
        let last = read_new_lines(&path, offset).unwrap();
        assert_eq!(last.lines.len(), 1);
        assert!(!last.lines[0].partial && last.lines[0].text.ends_with("yz"));

        // A tail reads at most TAIL_BYTES: the end of the long line.
        let tail = tail(&path, 10).unwrap();
        let shown: usize = tail.lines.iter().map(|p| p.text.len()).sum();
        assert!(shown <= TAIL_BYTES as usize && shown > (2 << 20), "{shown}");
        assert!(tail.lines.iter().all(|p| p.text.len() <= LOG_PIECE));
        assert!(!tail.lines.last().unwrap().partial);
    }

    #[test]
    fn tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut file = File::create(&path).unwrap();
        for i in 0..10_000 {
            writeln!(file, "line {i}").unwrap();
        }
        let last = tail(&path, 3).unwrap();
        assert_eq!(texts(&last), ["line 9997", "line 9998", "line 9999"]);
        assert_eq!(last.offset, fs::metadata(&path).unwrap().len());
        assert_eq!(tail(&path, 20_000).unwrap().lines.len(), 10_000);
        let empty = dir.path().join("empty");
        File::create(&empty).unwrap();
        assert!(tail(&empty, 3).unwrap().lines.is_empty());
    }

    #[tokio::test]
    async fn new_lines_wait_for_their_newline_and_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let spares = LogSpares::start(dir.path()).unwrap();
        let logs = LogFiles::new(dir.path(), "i-1");
        let mut out = logs.open_for_child(&spares).unwrap().stdout;
        let path = logs.path(Stream::Stdout);
        write!(out, "one\ntw").unwrap();
        let first = read_new_lines(&path, 0).unwrap();
        assert_eq!(texts(&first), ["one"]);
        writeln!(out, "o").unwrap();
        let second = read_new_lines(&path, first.offset).unwrap();
        assert_eq!(texts(&second), ["two"]);

        logs.rotate_if_larger(0).unwrap();
        writeln!(out, "three").unwrap();
        assert_eq!(
            texts(&read_new_lines(&path, second.offset).unwrap()),
            ["three"]
        );
        let rotated = fs::read_to_string(format!("{}.1", path.display())).unwrap();
        assert_eq!(rotated, "one\ntwo\n");
    }
}
