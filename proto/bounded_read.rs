//! Reading a file that someone else named, without trusting it: only a
//! regular file is read, never more than a limit, and nothing about the
//! file can make the open or the read wait.
//!
//! The daemon reads files on a user's behalf (workspace files, the token
//! file, `--mybb-database-file`) and `outpostctl` reads files it is given
//! (`workspace check`); a FIFO would block the open and every read after
//! it, `/dev/zero` would be read until memory runs out, and a file that
//! keeps growing would be read for as long as it grows.
//!
//! How: the path is looked at first (`stat`, following links), so that a
//! device or a FIFO is refused before it is opened at all (opening some
//! devices has effects of its own); then it is opened with `O_NONBLOCK`
//! (a FIFO swapped in after the look cannot block the open) and
//! `O_NOCTTY`, and the type is checked again with `fstat` on the open
//! descriptor, which is what decides. At most `limit + 1` bytes are read,
//! so a file that grows while being read is refused too.
//!
//! Symbolic links are followed, wherever they point: a link to a regular
//! file is read like the file (dotfile repositories link configuration
//! into place), a link to anything else is refused like that thing. The
//! reader runs as the user who could read the target anyway, so following
//! a link reveals nothing new; what matters is what the target is.
//!
//! These are blocking calls: async code runs them off its core threads
//! (`spawn_blocking`).

use std::{
    fs::{self, File, Metadata, OpenOptions},
    io::{self, Read},
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::Path,
};

/// Opens `path` for reading if it is a regular file (after following
/// links), and returns it with the `fstat` of the open descriptor (for
/// callers that check more, such as permissions, on the same file that
/// they read).
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    regular(&fs::metadata(path)?)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    let metadata = file.metadata()?;
    regular(&metadata)?;
    Ok((file, metadata))
}

/// The content of the regular file `path`, refused when larger than
/// `limit` bytes.
pub fn read(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let (file, metadata) = open_regular(path)?;
    if metadata.len() > limit {
        return Err(too_large(limit));
    }
    let mut content = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut content)?;
    if content.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(content)
}

/// Like [`read`], for a file that must be UTF-8 text.
pub fn read_to_string(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Refuses anything but a regular file, naming what it is.
fn regular(metadata: &Metadata) -> io::Result<()> {
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("refused: {what}, and only regular files are read"),
    ))
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("refused: larger than the limit of {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "12345").unwrap();
        assert_eq!(read_to_string(&file, 5).unwrap(), "12345");
        let err = read(&file, 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("limit of 4 bytes"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_to_string(&link, 5).unwrap(), "12345");
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        for (path, what) in [
            (fifo.as_path(), "a FIFO"),
            (&zero, "a character device"),
            (dir.path(), "a directory"),
        ] {
            let err = read(path, 1 << 20).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{what}");
            assert!(err.to_string().contains(what), "{err}");
        }
    }
}
