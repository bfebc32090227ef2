//! Instance log files: stdout and stderr go straight from the process to
//! append-mode files under the data dir; the daemon only rotates and reads
//! them.
//!
//! Rotation copies the file to `.1` (shifting older generations) and then
//! truncates it. Because the process writes with O_APPEND, its next write
//! lands at the new end of the file, so the process never needs to reopen
//! anything (logrotate's "copytruncate").
//!
//! A new instance's directory and its two files are made ahead of time
//! ([`spares`]); [`rotation`] decides when the files are looked at,
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

/// Complete lines read from a log file.
#[derive(Debug, Default)]
pub struct Lines {
    /// The lines, without their newlines.
    pub lines: Vec<String>,
    /// Where a follower continues reading.
    pub offset: u64,
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

    /// Removes the instance's logs.
    pub fn remove(&self) -> io::Result<()> {
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
/// only what the lines need. A follower continues from the file's end.
pub fn tail(path: &Path, count: usize) -> io::Result<Lines> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Lines::default()),
        Err(err) => return Err(err),
    };
    let len = file.metadata()?.len();
    if count == 0 {
        return Ok(Lines {
            lines: Vec::new(),
            offset: len,
        });
    }
    let mut start = len;
    let mut chunk = 8 << 10;
    let mut buffer = Vec::new();
    while start > 0 {
        let read_from = start.saturating_sub(chunk);
        let mut piece = vec![0; (start - read_from) as usize];
        file.seek(SeekFrom::Start(read_from))?;
        file.read_exact(&mut piece)?;
        piece.extend_from_slice(&buffer);
        buffer = piece;
        start = read_from;
        // count + 1 newlines guarantee `count` complete lines.
        if buffer.iter().filter(|&&b| b == b'\n').count() > count {
            break;
        }
        chunk *= 2;
    }
    let text = String::from_utf8_lossy(&buffer);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // a partial first line
    }
    let skip = lines.len().saturating_sub(count);
    Ok(Lines {
        lines: lines.split_off(skip),
        offset: len,
    })
}

/// Complete lines appended to `path` since `offset`. A file shorter than
/// `offset` was rotated: reading restarts at 0.
pub fn read_new_lines(path: &Path, offset: u64) -> io::Result<Lines> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Lines::default()),
        Err(err) => return Err(err),
    };
    let len = file.metadata()?.len();
    let offset = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(offset))?;
    let mut buffer = Vec::new();
    file.take(len - offset).read_to_end(&mut buffer)?;
    // Only complete lines; a partial last line waits for its newline.
    let complete = buffer
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let lines = String::from_utf8_lossy(&buffer[..complete])
        .lines()
        .map(str::to_owned)
        .collect();
    Ok(Lines {
        lines,
        offset: offset + complete as u64,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut file = File::create(&path).unwrap();
        for i in 0..10_000 {
            writeln!(file, "line {i}").unwrap();
        }
        let last = tail(&path, 3).unwrap();
        assert_eq!(last.lines, ["line 9997", "line 9998", "line 9999"]);
        assert_eq!(last.offset, fs::metadata(&path).unwrap().len());
        assert_eq!(tail(&path, 20_000).unwrap().lines.len(), 10_000);
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
        assert_eq!(first.lines, ["one"]);
        writeln!(out, "o").unwrap();
        let second = read_new_lines(&path, first.offset).unwrap();
        assert_eq!(second.lines, ["two"]);

        logs.rotate_if_larger(0).unwrap();
        writeln!(out, "three").unwrap();
        assert_eq!(
            read_new_lines(&path, second.offset).unwrap().lines,
            ["three"]
        );
        let rotated = fs::read_to_string(format!("{}.1", path.display())).unwrap();
        assert_eq!(rotated, "one\ntwo\n");
    }
}
