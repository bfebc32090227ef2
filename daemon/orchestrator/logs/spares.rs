//! Log directories made ahead of time. A new instance's directory and its
//! two files are made in the logs root as `.spare-N` on the blocking pool,
//! and a create only renames one into place. Making three new inodes took
//! 56 µs to 2.4 ms of CPU on this machine's ext4 (the more files were
//! deleted recently, the longer: its allocator skips recently deleted
//! inodes); a rename and two opens of existing files took 32–43 µs
//! throughout.
//!
//! The pool is behind a lock rather than in a task: a create takes a spare
//! in the middle of its spawn, under the registry's lock, where it cannot
//! wait for a task's answer.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use super::LogFiles;

/// Spare directories kept ready.
const SPARES: usize = 4;
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
    /// Spares in `root`: removes those an earlier daemon left (a crash may
    /// have left one half made) and starts making new ones. Must be called
    /// inside the tokio runtime.
    pub fn start(root: &Path) -> io::Result<Arc<Self>> {
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(SPARE_PREFIX)
            {
                fs::remove_dir_all(entry.path())?;
            }
        }
        let spares = Arc::new(Self {
            root: root.to_owned(),
            state: Mutex::default(),
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::{super::Stream, *};

    /// Waits (with a deadline) until `count` spares are ready.
    async fn ready(spares: &LogSpares, count: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while spares.state().ready.len() < count {
            assert!(std::time::Instant::now() < deadline, "spares not made");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn new_instances_take_spares_and_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // Left by a daemon that died while making it.
        fs::create_dir(dir.path().join(".spare-7")).unwrap();
        let spares = LogSpares::start(dir.path()).unwrap();
        ready(&spares, SPARES).await;
        assert!(!dir.path().join(".spare-7").exists());
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
}
