//! Export: writes a collection's content to disk, atomically and durably,
//! without ever overwriting a change made on disk, and never through a
//! symbolic link.
//!
//! Per file, from content and base state (what both sides last agreed on):
//! missing, or unchanged on disk since the base → written; already equal
//! to the database → unchanged; changed on disk (or unknown, with no base)
//! and different from the database → a conflict: the file is left alone.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::history::Change;
use crate::sync::{
    ContentError, ContentStore, Item, Key, Kind, Trim,
    atomic::Batch,
    file::{self, Disk, Stat},
    layout::{self, Blocked, Layout},
    ledger::Ledger,
    names,
    reconcile::Base,
};

/// What an export did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Files written.
    pub written: u32,
    /// Files already equal to the database.
    pub unchanged: u32,
    /// Files changed on disk and left alone.
    pub conflicts: u32,
    /// Items whose names cannot be file names (a forum's database can
    /// hold any title): never written.
    pub skipped: u32,
    /// How long it took.
    pub elapsed: Duration,
}

/// Exports collection `collection` of `kind` under `root`, and says what
/// the files now hold, for the history. The caller (the engine, running it
/// as a job) keeps every other writer of the root out.
pub async fn export<C: ContentStore, L: Ledger>(
    content: &C,
    store: &L,
    layout: &Layout,
    kind: Kind,
    collection: &str,
) -> Result<(ExportSummary, Vec<Change>), ContentError> {
    let started = Instant::now();
    let items = content.items(kind, collection, true).await?;
    let bases = store.bases(kind, collection).await?;
    let layout = layout.clone();
    let trim = content.trim(kind);
    let Written {
        mut summary,
        agreed,
        kept,
    } = tokio::task::spawn_blocking(move || write(&layout, trim, items, &bases))
        .await
        .map_err(|err| ContentError::Storage(format!("export failed: {err}")))??;
    store.set_bases(&agreed).await?;
    summary.elapsed = started.elapsed();
    Ok((summary, kept))
}

/// What writing the files came to.
struct Written {
    summary: ExportSummary,
    /// The new bases.
    agreed: Vec<(Key, Base)>,
    /// What the files agreed on now hold, for the history.
    kept: Vec<Change>,
}

/// Decides and writes.
fn write(
    layout: &Layout,
    trim: Trim,
    items: Vec<Item>,
    bases: &HashMap<String, Base>,
) -> Result<Written, ContentError> {
    let failed = |err: io::Error| ContentError::Storage(format!("cannot export: {err}"));
    // A failure before the commit leaves every file as it was (the batch
    // removes its temps); the export is then tried again as a whole.
    let mut summary = ExportSummary::default();
    let mut batch = Batch::default();
    // What was staged, with the stat its target had when it was read.
    let mut staged: Vec<(PathBuf, Item, Option<Stat>)> = Vec::new();
    let mut agreed = Vec::new();
    let mut kept = Vec::new();
    // The content moves into the history's change: the item is done with.
    let keep = |item: Item| Change {
        path: layout.relative(&item.key),
        content: Some(item.content),
    };
    for item in items {
        if let Err(err) = names::validate("name", &item.key.name) {
            tracing::warn!(key = %item.key, %err, "not exported: the name cannot be a file name");
            summary.skipped += 1;
            continue;
        }
        let path = layout.path(&item.key);
        layout::check_dirs(layout.root(), &path).map_err(|blocked| match blocked {
            Blocked::Link(reason) => ContentError::Refused(format!("cannot export: {reason}")),
            Blocked::Now(reason) => ContentError::Storage(format!("cannot export: {reason}")),
        })?;
        match file::read(&path).trimmed(trim) {
            Disk::Content { sha256, stat, .. } if sha256 == item.sha256 => {
                summary.unchanged += 1;
                agreed.push((item.key.clone(), base(&item, stat)));
                kept.push(keep(item));
            }
            Disk::Content { sha256, stat, .. }
                if bases
                    .get(&item.key.name)
                    .is_some_and(|base| base.sha256 == sha256) =>
            {
                batch
                    .stage(&path, item.content.as_bytes())
                    .map_err(failed)?;
                staged.push((path, item, Some(stat)));
            }
            Disk::Missing => {
                batch
                    .stage(&path, item.content.as_bytes())
                    .map_err(failed)?;
                staged.push((path, item, None));
            }
            // Whether it was changed on disk cannot be known yet.
            Disk::Unreadable(reason) => {
                return Err(ContentError::Storage(format!(
                    "cannot export: {} {reason}",
                    path.display()
                )));
            }
            // Changed on disk, being written, or not content at all (a
            // link, a directory): never overwritten.
            _ => summary.conflicts += 1,
        }
    }
    // A file edited while the export ran is left alone too.
    let expected: HashMap<&Path, Option<Stat>> = staged
        .iter()
        .map(|(path, _, stat)| (path.as_path(), *stat))
        .collect();
    let left_alone = batch
        .commit_if(|target| file::stat(target).ok() == expected[target])
        .map_err(failed)?;
    for (path, item, _) in staged {
        if left_alone.contains(&path) {
            summary.conflicts += 1;
            continue;
        }
        summary.written += 1;
        let stat = file::stat(&path).map_err(failed)?;
        agreed.push((item.key.clone(), base(&item, stat)));
        kept.push(keep(item));
    }
    Ok(Written {
        summary,
        agreed,
        kept,
    })
}

fn base(item: &Item, stat: Stat) -> Base {
    Base {
        sha256: item.sha256.clone(),
        db_version: item.version,
        stat,
    }
}
