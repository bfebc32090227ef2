//! Export: writes a collection's content to disk, atomically and durably,
//! without ever overwriting a change made on disk.
//!
//! Per file, from content and base state (what both sides last agreed on):
//! missing, or unchanged on disk since the base → written; already equal
//! to the database → unchanged; changed on disk (or unknown, with no base)
//! and different from the database → a conflict: the file is left alone.

use std::{
    collections::HashMap,
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{
    ContentError, ContentStore, Item, Key, Kind, atomic::Batch, gate::PauseGate, layout, sha256,
};
use crate::store::Store;

/// What an export did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Files written.
    pub written: u32,
    /// Files already equal to the database.
    pub unchanged: u32,
    /// Files changed on disk and left alone.
    pub conflicts: u32,
    /// How long it took.
    pub elapsed: Duration,
}

/// What both sides last agreed on for one entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    /// SHA-256 of the agreed content.
    pub sha256: String,
    /// The database version it came from.
    pub db_version: u64,
    /// The file's size, mtime (ns) and inode right after.
    pub stat: (u64, i64, u64),
}

/// The stat tuple of a file.
fn stat(path: &Path) -> io::Result<(u64, i64, u64)> {
    let meta = fs::metadata(path)?;
    Ok((
        meta.len(),
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        meta.ino(),
    ))
}

/// Exports collection `collection` of `kind` under `root`. The watcher
/// gate is held paused for the whole export.
pub async fn export<C: ContentStore>(
    content: &C,
    store: &Store,
    gate: &PauseGate,
    root: &Path,
    kind: Kind,
    collection: &str,
) -> Result<ExportSummary, ContentError> {
    let started = Instant::now();
    let _paused = gate.pause_for_export();
    let items = content.items(kind, collection, true).await?;
    let bases = store.bases(kind, collection).await?;
    let root = root.to_owned();
    let (mut summary, agreed) = tokio::task::spawn_blocking(move || write(&root, items, &bases))
        .await
        .map_err(|err| ContentError::Storage(format!("export failed: {err}")))?
        .map_err(|err| ContentError::Storage(format!("cannot export: {err}")))?;
    store.set_bases(&agreed).await?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Decides and writes; returns the summary and the new bases.
fn write(
    root: &Path,
    items: Vec<Item>,
    bases: &HashMap<String, Base>,
) -> io::Result<(ExportSummary, Vec<(Key, Base)>)> {
    let mut summary = ExportSummary::default();
    let mut batch = Batch::default();
    let mut staged: Vec<(PathBuf, Item)> = Vec::new();
    let mut agreed = Vec::new();
    for item in items {
        let path = layout::path(root, &item.key);
        match fs::read(&path) {
            Ok(bytes) if bytes == item.content.as_bytes() => {
                summary.unchanged += 1;
                agreed.push((item.key.clone(), base(&item, stat(&path)?)));
            }
            Ok(bytes) => {
                let untouched = bases
                    .get(&item.key.name)
                    .is_some_and(|base| base.sha256 == sha256(&String::from_utf8_lossy(&bytes)));
                if untouched {
                    batch.stage(&path, item.content.as_bytes())?;
                    staged.push((path, item));
                } else {
                    summary.conflicts += 1;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                batch.stage(&path, item.content.as_bytes())?;
                staged.push((path, item));
            }
            Err(err) => return Err(err),
        }
    }
    batch.commit()?;
    for (path, item) in staged {
        summary.written += 1;
        agreed.push((item.key.clone(), base(&item, stat(&path)?)));
    }
    Ok((summary, agreed))
}

fn base(item: &Item, stat: (u64, i64, u64)) -> Base {
    Base {
        sha256: item.sha256.clone(),
        db_version: item.version,
        stat,
    }
}
