//! Log directories made ahead of time, or kept from deleted instances. A
//! new instance's directory and its two files are made in the logs root
//! as `.spare-N` on the blocking pool, and a create only renames one into
//! place. Making three new inodes took 56 µs to 2.4 ms of CPU on this
//! machine's ext4 (the more files were deleted recently, the longer: its
//! allocator skips recently deleted inodes); a rename and two opens of
//! existing files took 32–43 µs throughout.
//!
//! The same allocator is why a deleted instance's directory is recycled
//! rather than removed (see [`LogSpares::recycle`]): without a journal,
//! ext4 will not hand out an inode freed in the last minute or more, and
//! looks at every such inode (in its inode table) before it finds another.
//! A burst of creates right after a burst of deletes — a workspace applied
//! again, the dependencies benchmark — then costs 0.7–2.3 ms per directory,
//! growing with every round (docs/benchmarks.md, "Dependencies (issue 20)").
//! Renamed and emptied, the old directory costs 45 µs and frees nothing.
//!
//! The pool is behind a lock rather than in a task: a create takes a spare
//! in the middle of its spawn, under the registry's lock, where it cannot
//! wait for a task's answer.

use std::{
    fs::{self, OpenOptions},
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use super::{LogFiles, Stream};

/// Spare directories made ahead when fewer are ready.
const SPARES: usize = 4;
/// Spare directories kept at most, recycled ones included: enough for a
/// large workspace deleted and applied again; each is an empty directory
/// and two empty files.
const KEPT: usize = 256;
/// Name prefix of spare directories in the logs root (instance ids never
/// start with a dot).
const SPARE_PREFIX: &str = ".spare-";

/// Log directories (with both files, empty) made ahead of time in the logs
/// root, named `.spare-N`, for new instances to take by a rename.
pub struct LogSpares {
    root: PathBuf,
    state: Mutex<SparesState>,
}

#[derive(Default)]
struct SparesState {
    ready: Vec<PathBuf>,
    /// Whether a task is making spares now.
    making: bool,
    /// Number of the next spare's name.
    next: u64,
}

impl LogSpares {
    /// Spares in `root`: those an earlier daemon left are emptied and kept
    /// (a crash may have left one half made, or half emptied; a spawn makes
    /// a missing file), then new ones are made while fewer than [`SPARES`]
    /// are ready. Must be called inside the tokio runtime.
    pub fn start(root: &Path) -> io::Result<Arc<Self>> {
        let mut state = SparesState::default();
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|name| name.strip_prefix(SPARE_PREFIX))
            else {
                continue;
            };
            state.next = state.next.max(number.parse().unwrap_or(0));
            let path = entry.path();
            if !entry.file_type()?.is_dir() {
                fs::remove_file(&path)?;
            } else if state.ready.len() < KEPT && empty(&path).is_ok() {
                state.ready.push(path);
            } else {
                fs::remove_dir_all(&path)?;
            }
        }
        let spares = Arc::new(Self {
            root: root.to_owned(),
            state: Mutex::new(state),
        });
        spares.replenish();
        Ok(spares)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SparesState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves a spare to `dir`, which must not exist; whether it did (when
    /// no spare is ready, or the move fails, the caller makes `dir`
    /// itself). Either way, more are made.
    pub(super) fn place(self: &Arc<Self>, dir: &Path) -> bool {
        let spare = self.state().ready.pop();
        let placed = spare.is_some_and(|spare| match fs::rename(&spare, dir) {
            Ok(()) => true,
            Err(err) => {
                tracing::debug!(spare = %spare.display(), %err, "cannot use a spare log directory");
                let _ = fs::remove_dir_all(&spare);
                false
            }
        });
        self.replenish();
        placed
    }

    /// Keeps `dir`, the log directory of a deleted instance, as a spare:
    /// renamed to `.spare-N`, then emptied. Whether it did: not when
    /// [`KEPT`] are ready, or `dir` does not exist (the caller removes
    /// what is left). Renamed first, so that a follower of the deleted
    /// instance sees its directory leave (see [`super::follow`]).
    pub(super) fn recycle(&self, dir: &Path) -> io::Result<bool> {
        let number = {
            let mut state = self.state();
            if state.ready.len() >= KEPT {
                return Ok(false);
            }
            state.next += 1;
            state.next
        };
        let spare = self.root.join(format!("{SPARE_PREFIX}{number}"));
        match fs::rename(dir, &spare) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            result => result?,
        }
        if let Err(err) = empty(&spare) {
            let _ = fs::remove_dir_all(&spare);
            return Err(err);
        }
        self.state().ready.push(spare);
        Ok(true)
    }

    /// Makes spares on the blocking pool until [`SPARES`] are ready, unless
    /// that is already under way. A failure (a full disk) ends the round:
    /// creates then make their directories themselves (and report the
    /// error), and the next create that finds no spare starts another.
    fn replenish(self: &Arc<Self>) {
        {
            let mut state = self.state();
            if state.making || state.ready.len() >= SPARES {
                return;
            }
            state.making = true;
        }
        let spares = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            loop {
                let number = {
                    let mut state = spares.state();
                    if state.ready.len() >= SPARES {
                        state.making = false;
                        return;
                    }
                    state.next += 1;
                    state.next
                };
                let dir = spares.root.join(format!("{SPARE_PREFIX}{number}"));
                match make_spare(&dir) {
                    Ok(()) => spares.state().ready.push(dir),
                    Err(err) => {
                        tracing::warn!(dir = %dir.display(), %err, "cannot make a spare log directory");
                        let _ = fs::remove_dir_all(&dir);
                        spares.state().making = false;
                        return;
                    }
                }
            }
        });
    }
}

/// Makes one spare: the directory and both (empty) files.
fn make_spare(dir: &Path) -> io::Result<()> {
    fs::create_dir(dir)?;
    LogFiles::at(dir.to_owned()).open_streams().map(drop)
}

/// Empties a log directory for its next instance: both files cut to
/// nothing (their inodes kept), anything else (rotated generations)
/// removed.
fn empty(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        let stream_file = [Stream::Stdout, Stream::Stderr]
            .iter()
            .any(|stream| entry.file_name() == stream.file_name());
        if kind.is_file() && stream_file {
            OpenOptions::new().write(true).open(&path)?.set_len(0)?;
        } else if kind.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// Waits (with a deadline) until `count` spares are ready.
    async fn ready(spares: &LogSpares, count: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while spares.state().ready.len() < count {
            assert!(std::time::Instant::now() < deadline, "spares not made");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn new_instances_take_spares_and_leftovers_are_emptied_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        // Left by a daemon that died while recycling it (renamed, not yet
        // emptied), and a stray file of that name.
        let left = dir.path().join(".spare-7");
        fs::create_dir(&left).unwrap();
        fs::write(left.join("stdout.log"), "old\n").unwrap();
        fs::write(left.join("stdout.log.1"), "older\n").unwrap();
        fs::write(dir.path().join(".spare-9"), "").unwrap();
        let spares = LogSpares::start(dir.path()).unwrap();
        assert_eq!(fs::read(left.join("stdout.log")).unwrap(), b"");
        assert!(!left.join("stdout.log.1").exists());
        assert!(!dir.path().join(".spare-9").exists());
        ready(&spares, SPARES).await;
        assert!(spares.state().ready.contains(&left));
        assert!(
            !dir.path().join(".spare-8").exists(),
            "numbers go on after 9"
        );
        let spare = spares.state().ready.last().cloned().unwrap();

        let logs = LogFiles::new(dir.path(), "i-1");
        let mut out = logs.open_for_child(&spares).unwrap().stdout;
        writeln!(out, "hello").unwrap();
        assert!(!spare.exists(), "the spare was moved into place");
        assert_eq!(
            fs::read_to_string(logs.path(Stream::Stdout)).unwrap(),
            "hello\n"
        );
        assert!(logs.path(Stream::Stderr).exists());

        // An instance that has logs keeps them; no spare is spent on it.
        ready(&spares, SPARES).await;
        logs.open_for_child(&spares).unwrap();
        assert_eq!(spares.state().ready.len(), SPARES);
        assert_eq!(
            fs::read_to_string(logs.path(Stream::Stdout)).unwrap(),
            "hello\n"
        );
    }

    #[tokio::test]
    async fn a_deleted_instances_directory_serves_the_next_one_empty() {
        let dir = tempfile::tempdir().unwrap();
        let spares = LogSpares::start(dir.path()).unwrap();
        ready(&spares, SPARES).await;
        let old = LogFiles::new(dir.path(), "i-old");
        writeln!(old.open_for_child(&spares).unwrap().stderr, "old").unwrap();
        fs::write(old.path(Stream::Stderr).with_extension("log.1"), "rotated").unwrap();
        let inode = fs::metadata(old.path(Stream::Stderr)).unwrap().ino();
        ready(&spares, SPARES).await;

        old.retire(&spares).unwrap();
        assert!(!old.dir.exists());
        assert_eq!(spares.state().ready.len(), SPARES + 1);
        let new = LogFiles::new(dir.path(), "i-new");
        new.open_for_child(&spares).unwrap();
        assert_eq!(
            fs::metadata(new.path(Stream::Stderr)).unwrap().ino(),
            inode,
            "the old file was reused, not a new inode made"
        );
        assert_eq!(fs::read(new.path(Stream::Stderr)).unwrap(), b"");
        assert_eq!(fs::read_dir(&new.dir).unwrap().count(), 2, "rotated gone");

        // With as many ready as are kept, a deleted instance's logs go.
        ready(&spares, SPARES).await;
        spares.state().ready.resize(KEPT, PathBuf::new());
        new.retire(&spares).unwrap();
        assert!(!new.dir.exists());
        assert_eq!(spares.state().ready.len(), KEPT);
    }
}
