//! Reading a synced file only once it is settled. A read counts only if
//! the file's stat tuple is the same before and after it and the bytes
//! read match its size; symbolic links are never followed; what is read
//! must be content the database may hold.

use std::{
    fs::{self, File, Metadata},
    io::{self, Read},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
};

use super::{MAX_CONTENT, Trim, sha256, validate_content};

/// A file's size, mtime and inode: when one changes, the file may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Inode number (a rename over the file changes it).
    pub inode: u64,
}

/// The stat tuple of `meta`.
pub fn stat_of(meta: &Metadata) -> Stat {
    Stat {
        size: meta.len(),
        // Saturating: an mtime past 2262 must not overflow.
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        inode: meta.ino(),
    }
}

/// The stat tuple of the file at `path`, not following a symbolic link.
pub fn stat(path: &Path) -> io::Result<Stat> {
    fs::symlink_metadata(path).map(|meta| stat_of(&meta))
}

/// What a file holds, as far as sync is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Disk {
    /// There is no such file.
    Missing,
    /// The file has 0 bytes: a writer has truncated it and may not be done.
    Empty,
    /// The file changed while it was read.
    Changing,
    /// The file can never be content; says why.
    Rejected(String),
    /// The file cannot be read now (permissions, an I/O error, a
    /// directory on the way that is not one); says why. Unlike a
    /// rejection, this may go away: the look is tried again.
    Unreadable(String),
    /// Settled content.
    Content {
        text: String,
        sha256: String,
        /// The stat tuple it was read under.
        stat: Stat,
    },
}

impl Disk {
    /// The same, with content hashed as a store that strips `trim` keeps
    /// it.
    pub fn trimmed(self, trim: Trim) -> Self {
        match self {
            Self::Content { text, sha256, stat } => {
                let kept = trim.apply(&text);
                let sha256 = if kept.len() == text.len() {
                    sha256
                } else {
                    super::sha256(kept)
                };
                Self::Content { text, sha256, stat }
            }
            other => other,
        }
    }
}

/// Reads the file at `path`.
pub fn read(path: &Path) -> Disk {
    match try_read(path) {
        Ok(disk) => disk,
        Err(err) if err.kind() == io::ErrorKind::NotFound => Disk::Missing,
        // O_NOFOLLOW on a link that appeared after the first look.
        Err(err) if err.raw_os_error() == Some(nix::libc::ELOOP) => {
            Disk::Rejected("is a symbolic link; links are never followed".to_owned())
        }
        Err(err) => Disk::Unreadable(format!("cannot be read: {err}")),
    }
}

fn try_read(path: &Path) -> io::Result<Disk> {
    let before = fs::symlink_metadata(path)?;
    if before.file_type().is_symlink() {
        return Ok(Disk::Rejected(
            "is a symbolic link; links are never followed".to_owned(),
        ));
    }
    if !before.is_file() {
        return Ok(Disk::Rejected("is not a regular file".to_owned()));
    }
    if before.len() == 0 {
        return Ok(Disk::Empty);
    }
    if before.len() > MAX_CONTENT as u64 {
        return Ok(Disk::Rejected(format!(
            "{} bytes is more than the {MAX_CONTENT} allowed",
            before.len()
        )));
    }
    let mut file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    let mut bytes = Vec::with_capacity(before.len() as usize);
    (&mut file)
        .take(MAX_CONTENT as u64 + 1)
        .read_to_end(&mut bytes)?;
    let stat = stat_of(&before);
    let after = fs::symlink_metadata(path)?;
    if stat_of(&file.metadata()?) != stat
        || stat_of(&after) != stat
        || bytes.len() as u64 != stat.size
    {
        return Ok(Disk::Changing);
    }
    if bytes.is_empty() {
        return Ok(Disk::Empty);
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            return Ok(Disk::Rejected(format!(
                "is not valid UTF-8 (at byte {})",
                err.utf8_error().valid_up_to()
            )));
        }
    };
    if let Err(err) = validate_content(&text) {
        return Ok(Disk::Rejected(err.to_string()));
    }
    Ok(Disk::Content {
        sha256: sha256(&text),
        text,
        stat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_content_is_read_with_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.html");
        fs::write(&path, "x").unwrap();
        let Disk::Content {
            text,
            sha256: hash,
            stat,
        } = read(&path)
        else {
            panic!("{:?}", read(&path));
        };
        assert_eq!((text.as_str(), hash), ("x", sha256("x")));
        assert_eq!(stat.size, 1);
    }

    #[test]
    fn what_is_not_content_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.html");
        assert_eq!(read(&path), Disk::Missing);
        fs::write(&path, "").unwrap();
        assert_eq!(read(&path), Disk::Empty);
        fs::write(&path, [0x66, 0xff, 0x66]).unwrap();
        assert!(matches!(read(&path), Disk::Rejected(reason) if reason.contains("UTF-8")));
        fs::write(&path, "a\0b").unwrap();
        assert!(matches!(read(&path), Disk::Rejected(reason) if reason.contains("NUL")));
        let outside = dir.path().join("outside");
        fs::write(&outside, "secret").unwrap();
        let link = dir.path().join("link.html");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(matches!(read(&link), Disk::Rejected(reason) if reason.contains("symbolic link")));
        assert!(matches!(read(dir.path()), Disk::Rejected(_)));
    }
}
