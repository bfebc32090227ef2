//! Durable atomic writes of many files at once. Every file is first
//! written to a unique hidden temp file in its own directory; then the
//! temps are made durable together (one `syncfs` per file system, instead
//! of one fsync per file, for a batch of more than a few; a few are
//! fsynced one by one); then all are renamed over their targets; then
//! each directory is fsynced once. A reader (or a crash) sees each target
//! either whole and old or whole and new, never a prefix. Temps still
//! staged when a batch is dropped — after an error, or a panic — are
//! removed.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// Temp files are `.outpost-<pid>-<n>-<name>.tmp`; the watcher ignores
/// them and start-up removes leftovers.
const TEMP_PREFIX: &str = ".outpost-";
const TEMP_SUFFIX: &str = ".tmp";

/// Whether a file name is one of our temp files.
pub fn is_temp(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// Batches up to this many files are made durable with one fsync each:
/// `syncfs` waits for everything dirty on the file system, other
/// programs' writes included, which on a busy disk takes far longer than
/// a few fsyncs (the reconciler writes one file at a time).
const FSYNC_EACH_UP_TO: usize = 8;

/// Files staged for one atomic, durable write.
#[derive(Default)]
pub struct Batch {
    staged: Vec<(PathBuf, PathBuf)>,
}

impl Batch {
    /// Writes `content` to a temp file beside `target`.
    pub fn stage(&mut self, target: &Path, content: &[u8]) -> io::Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = target
            .parent()
            .ok_or_else(|| io::Error::other("target has no directory"))?;
        fs::create_dir_all(dir)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{}-{}-{name}{TEMP_SUFFIX}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        self.staged.push((temp, target.to_owned()));
        file.write_all(content)
    }

    /// Makes the staged temps durable, renames each over its target, then
    /// fsyncs each directory once.
    pub fn commit(self) -> io::Result<()> {
        self.commit_if(|_| true).map(drop)
    }

    /// Like [`Batch::commit`], but a target for which `unchanged` says no
    /// (asked after the temps are durable, right before the renames) is
    /// left alone and its temp removed. Returns those targets.
    pub fn commit_if(mut self, unchanged: impl Fn(&Path) -> bool) -> io::Result<Vec<PathBuf>> {
        if self.staged.len() <= FSYNC_EACH_UP_TO {
            for (temp, _) in &self.staged {
                File::open(temp)?.sync_all()?;
            }
        } else {
            // One directory per file system: syncfs there flushes every temp.
            let mut file_systems = BTreeMap::new();
            for (temp, _) in &self.staged {
                if let Some(dir) = temp.parent() {
                    let device = fs::metadata(dir)?.dev();
                    file_systems.entry(device).or_insert_with(|| dir.to_owned());
                }
            }
            for dir in file_systems.values() {
                nix::unistd::syncfs(File::open(dir)?)?;
            }
        }
        let mut dirs = BTreeSet::new();
        let mut left_alone = Vec::new();
        while let Some((temp, target)) = self.staged.pop() {
            if !unchanged(&target) {
                fs::remove_file(&temp)?;
                left_alone.push(target);
                continue;
            }
            if let Err(err) = fs::rename(&temp, &target) {
                let _ = fs::remove_file(&temp);
                return Err(err);
            }
            if let Some(dir) = target.parent() {
                dirs.insert(dir.to_owned());
            }
        }
        for dir in dirs {
            File::open(&dir)?.sync_all()?;
        }
        Ok(left_alone)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        for (temp, _) in self.staged.drain(..) {
            let _ = fs::remove_file(temp);
        }
    }
}

/// Removes temp files left under `root` by a crash; returns how many.
pub fn remove_stale_temps(root: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        for entry in entries.flatten() {
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() && is_temp(&entry.file_name().to_string_lossy()) {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temps(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| is_temp(name))
            .collect()
    }

    #[test]
    fn atomic_write_creates_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.html");
        let mut batch = Batch::default();
        batch.stage(&target, b"new").unwrap();
        assert_eq!(
            temps(dir.path()).len(),
            1,
            "a hidden temp in the same directory"
        );
        assert!(!target.exists(), "the target appears only on commit");
        batch.commit().unwrap();
    }

    #[test]
    fn atomic_rename_completes() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub").join("a.html");
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(&target, "old").unwrap();
        let mut batch = Batch::default();
        batch.stage(&target, b"new content").unwrap();
        batch.commit().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new content");
        assert!(temps(target.parent().unwrap()).is_empty());
    }

    #[test]
    fn temp_file_cleaned_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, "").unwrap();
        let mut batch = Batch::default();
        batch.stage(&dir.path().join("a.html"), b"a").unwrap();
        // The second target's directory cannot exist: staging fails.
        assert!(batch.stage(&blocker.join("b.html"), b"b").is_err());
        drop(batch);
        assert!(temps(dir.path()).is_empty(), "no temp left behind");
        assert!(!dir.path().join("a.html").exists(), "nothing half-exported");
    }

    #[test]
    fn a_target_changed_before_the_rename_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, changed) = (dir.path().join("a.html"), dir.path().join("b.html"));
        let mut batch = Batch::default();
        batch.stage(&kept, b"new a").unwrap();
        batch.stage(&changed, b"new b").unwrap();
        fs::write(&changed, "edited meanwhile").unwrap();
        let left_alone = batch.commit_if(|target| target != changed).unwrap();
        assert_eq!(left_alone, std::slice::from_ref(&changed));
        assert_eq!(fs::read_to_string(&kept).unwrap(), "new a");
        assert_eq!(fs::read_to_string(&changed).unwrap(), "edited meanwhile");
        assert!(temps(dir.path()).is_empty());
    }

    #[test]
    fn stale_temps_are_found_anywhere_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("templates").join("Default").join("header");
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join(".outpost-1-2-header.html.tmp"), "x").unwrap();
        fs::write(deep.join("header.html"), "keep").unwrap();
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
        assert!(deep.join("header.html").exists());
    }
}
