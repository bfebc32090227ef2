//! A small file system of its own (a tmpfs of a given size) for tests of
//! what happens when the disk is full. Mounting needs root (CAP_SYS_ADMIN),
//! which CI has; elsewhere the test is skipped with the reason, unless
//! `OUTPOST_REQUIRE_REAL` is set.

use std::{
    fs::File,
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
    process::Command,
};

use tempfile::TempDir;

use crate::process::{run, skip};

/// A tmpfs mounted on a directory; unmounted when dropped.
pub struct SmallDisk {
    dir: PathBuf,
    /// The temporary mount point, when it is one of ours.
    _owned: Option<TempDir>,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` on a new temporary directory, or None
    /// (skipped) where mounting is not permitted.
    pub fn mount(bytes: u64) -> Option<Self> {
        let dir = tempfile::Builder::new()
            .prefix("outpost-small-disk")
            .tempdir()
            .expect("make a mount point");
        let mut disk = Self::mount_on(dir.path(), bytes)?;
        disk._owned = Some(dir);
        Some(disk)
    }

    /// Mounts a tmpfs of `bytes` on the existing directory `dir` (hiding
    /// what it holds until unmounted), or None (skipped) where mounting is
    /// not permitted.
    pub fn mount_on(dir: &Path, bytes: u64) -> Option<Self> {
        let output = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0755"))
            .arg("tmpfs")
            .arg(dir));
        if !output.status.success() {
            return skip(&format!(
                "cannot mount a tmpfs to fill (needs root): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Some(Self {
            dir: dir.to_owned(),
            _owned: None,
        })
    }

    /// The root of the file system.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Fills the file system with one hidden file (which sync ignores)
    /// until a write fails for want of room; returns the file, whose
    /// removal makes the room again.
    pub fn fill(&self) -> PathBuf {
        let path = self.dir.join(".filler");
        let mut file = File::create(&path).expect("create the filler");
        let chunk = vec![0u8; 64 << 10];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.kind() == ErrorKind::StorageFull => break,
                Err(err) => panic!("filling {}: {err}", path.display()),
            }
        }
        // What is left is less than a chunk: fill it byte-wise too.
        while matches!(file.write(&[0]), Ok(1)) {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            // Still busy (a process that has not let go yet): detached
            // now, gone once unused.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
