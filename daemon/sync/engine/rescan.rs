//! A rescan: every entity with a file, a base, or a row in a mirrored
//! collection is looked at — on start-up (edits made while the daemon was
//! down), on request, and when events were lost. The root is walked
//! without following links, and an entity whose file stat, row version
//! and content hash all equal its base is unchanged without a file being
//! read or hashed. A directory that cannot be listed hides what is in
//! it: its collection is left alone (nothing in it counts as missing) and
//! the rescan fails once it has done the rest, to be tried again.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fs, io,
    path::{Path, PathBuf},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::watch;

use super::{
    Hint, RescanSummary,
    failures::Subject,
    queue::Signal,
    worker::{Effect, Hold, Next, Outcome, Report, Worker, blocking},
};
use crate::sync::{
    ContentError, ContentStore, Key, Kind,
    events::{EventKind, Notice},
    file::{self, Stat},
    layout::{self, Layout, Target},
    ledger::Ledger,
    names,
};

impl<C: ContentStore, L: Ledger> Worker<C, L> {
    /// Looks at every entity with a file, a base, or a row in a mirrored
    /// collection. An entity whose file stat and database version are
    /// those of its base is unchanged without reading anything.
    pub(super) async fn rescan(
        &self,
        hold: &watch::Receiver<Hold>,
        report: &mut Report,
    ) -> Result<RescanSummary, ContentError> {
        let started = Instant::now();
        let mut summary = RescanSummary::default();
        let layout = self.layout.clone();
        let walked = blocking(move || walk(&layout)).await;
        for (path, reason) in &walked.rejected {
            self.reject(path, reason);
            summary.skipped += 1;
        }
        let mut keys: BTreeSet<Key> = walked.keys.into_iter().collect();
        let hidden = |kind: Kind, collection: &str| {
            walked.hidden.contains(&(kind, None))
                || walked.hidden.contains(&(kind, Some(collection.to_owned())))
        };
        keys.retain(|key| !hidden(key.kind, &key.collection));
        for kind in [Kind::Template, Kind::Stylesheet] {
            let mut collections: BTreeSet<String> = self
                .ledger
                .synced_collections(kind)
                .await?
                .into_iter()
                .collect();
            collections.extend(walked.collections.get(&kind).into_iter().flatten().cloned());
            collections.retain(|collection| !hidden(kind, collection));
            for collection in collections {
                let bases = self.ledger.bases(kind, &collection).await?;
                let items = match self.content.items(kind, &collection, false).await {
                    Ok(items) => items,
                    Err(ContentError::NotFound(_)) => Vec::new(),
                    Err(err) => return Err(err),
                };
                let rows: HashMap<&str, (u64, &str)> = items
                    .iter()
                    .map(|item| (item.key.name.as_str(), (item.version, item.sha256.as_str())))
                    .collect();
                let mirrored = walked
                    .collections
                    .get(&kind)
                    .is_some_and(|names| names.contains(&collection));
                let make_key = |name: &str| Key {
                    kind,
                    collection: collection.clone(),
                    name: name.to_owned(),
                };
                if mirrored {
                    keys.extend(items.iter().map(|item| item.key.clone()));
                }
                keys.extend(bases.keys().map(|name| make_key(name)));
                // Drop what is unchanged on both sides.
                keys.retain(|key| {
                    if key.kind != kind || key.collection != collection {
                        return true;
                    }
                    let unchanged = bases.get(&key.name).is_some_and(|base| {
                        rows.get(key.name.as_str())
                            == Some(&(base.db_version, base.sha256.as_str()))
                            && walked.stats.get(key).is_some_and(|stat| *stat == base.stat)
                    });
                    if unchanged {
                        summary.scanned += 1;
                    }
                    !unchanged
                });
            }
        }
        let settle_ns = i64::try_from(self.settings.settle.as_nanos()).unwrap_or(i64::MAX);
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as i64);
        for key in keys {
            if hold.borrow().stopping {
                break;
            }
            summary.scanned += 1;
            let path = self.layout.path(&key);
            // A file written to within the settle period may still be
            // being written: the watcher's hints or a later look decide.
            let recent = walked
                .stats
                .get(&key)
                .is_some_and(|stat| now_ns.saturating_sub(stat.mtime_ns) < settle_ns);
            if recent {
                summary.skipped += 1;
                report.hints.push(Hint::Path(
                    path,
                    Signal::Later {
                        after: self.settings.settle,
                        tries: 0,
                    },
                ));
                continue;
            }
            let outcome = match self.reconcile(&key, 0, report).await {
                Ok(outcome) => {
                    report.results.push((Subject::Path(path.clone()), Ok(())));
                    outcome
                }
                Err(err) => {
                    let fault = self.fault(&path, &err);
                    report
                        .results
                        .push((Subject::Path(path.clone()), Err(fault)));
                    report.next.push((path, Next::Failed { tries: 0 }));
                    summary.skipped += 1;
                    continue;
                }
            };
            match outcome {
                Outcome::Settled(Effect::Imported) => summary.imported += 1,
                Outcome::Settled(Effect::Exported) => summary.exported += 1,
                Outcome::Settled(Effect::Conflict) => summary.conflicts += 1,
                Outcome::Settled(Effect::Skipped) => summary.skipped += 1,
                Outcome::Settled(Effect::Nothing) => {}
                Outcome::Retry { after, tries } => {
                    summary.skipped += 1;
                    report.next.push((path, Next::Retry { after, tries }));
                }
            }
        }
        summary.elapsed = started.elapsed();
        let unlisted = match walked.unlisted.as_slice() {
            [] => String::new(),
            [(dir, err)] => format!("; cannot list {}: {err}", dir.display()),
            [(dir, err), more @ ..] => format!(
                "; cannot list {}: {err} (and {} more directories)",
                dir.display(),
                more.len()
            ),
        };
        self.board.publish(Notice::new(
            EventKind::Rescanned,
            format!(
                "rescanned {} in {:?}: {} imported, {} exported, {} conflicts, {} skipped{unlisted}",
                summary.scanned,
                summary.elapsed,
                summary.imported,
                summary.exported,
                summary.conflicts,
                summary.skipped
            ),
        ));
        if !unlisted.is_empty() {
            return Err(ContentError::Storage(format!(
                "{}; what is in it was left as it is",
                unlisted.trim_start_matches("; ")
            )));
        }
        Ok(summary)
    }
}

/// What is on disk under the root.
#[derive(Default)]
struct Walked {
    keys: Vec<Key>,
    stats: HashMap<Key, Stat>,
    collections: HashMap<Kind, BTreeSet<String>>,
    rejected: Vec<(PathBuf, String)>,
    /// Directories that could not be listed, and why.
    unlisted: Vec<(PathBuf, io::Error)>,
    /// What they hide: every collection of a kind (None), or one.
    hidden: HashSet<(Kind, Option<String>)>,
}

/// Walks the sync root without following links.
fn walk(layout: &Layout) -> Walked {
    let root = layout.root();
    let mut walked = Walked::default();
    for kind in [Kind::Template, Kind::Stylesheet] {
        let depth = if kind == Kind::Template { 2 } else { 1 };
        let kind_dir = root.join(layout::kind_dir(kind));
        let collections = match dirs_in(&kind_dir, &mut walked.rejected) {
            Ok(collections) => collections,
            Err(err) => {
                walked.unlisted.push((kind_dir, err));
                walked.hidden.insert((kind, None));
                continue;
            }
        };
        for collection in collections {
            let Some(name) = collection.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let name = name.to_owned();
            walked
                .collections
                .entry(kind)
                .or_default()
                .insert(name.clone());
            if let Err((dir, err)) = walk_collection(layout, &collection, depth, &mut walked) {
                walked.unlisted.push((dir, err));
                walked.hidden.insert((kind, Some(name)));
            }
        }
    }
    walked
}

/// Adds the files of one collection to `walked`, `depth` levels down;
/// the directory that could not be listed, if one could not.
fn walk_collection(
    layout: &Layout,
    collection: &Path,
    depth: usize,
    walked: &mut Walked,
) -> Result<(), (PathBuf, io::Error)> {
    let mut dirs = vec![collection.to_owned()];
    for _ in 1..depth {
        let mut next = Vec::new();
        for dir in &dirs {
            next.extend(dirs_in(dir, &mut walked.rejected).map_err(|err| (dir.clone(), err))?);
        }
        dirs = next;
    }
    for dir in dirs {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err((dir, err)),
        };
        for entry in entries {
            let entry = entry.map_err(|err| (dir.clone(), err))?;
            let path = entry.path();
            match layout.classify(&path) {
                Target::Item(key) => {
                    if let Ok(meta) = entry.metadata() {
                        walked.stats.insert(key.clone(), file::stat_of(&meta));
                    }
                    walked.keys.push(key);
                }
                Target::Rejected(reason) => walked.rejected.push((path, reason)),
                Target::Ignored => {}
            }
        }
    }
    Ok(())
}

/// The real directories in `dir` (none if it is missing); symbolic links
/// among them are rejected.
fn dirs_in(dir: &Path, rejected: &mut Vec<(PathBuf, String)>) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry?;
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        let name = entry.file_name();
        if names::is_ignored(&name.to_string_lossy()) {
            continue;
        }
        if kind.is_symlink() {
            rejected.push((
                entry.path(),
                "is a symbolic link; links are never followed".to_owned(),
            ));
        } else if kind.is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}
