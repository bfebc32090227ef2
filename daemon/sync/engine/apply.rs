//! Looking at one entity: whatever a path stands for (an item, a new
//! directory, a rejected name), and for an item the three-way reconcile —
//! gather the settled file, the database row and the base, decide with
//! [`reconcile::decide`], and carry the decision out: import with
//! compare-and-swap, an atomic file write under a stat precondition, a
//! conflict copy, a removal, or only a new base.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{
    Hint,
    queue::Signal,
    worker::{Effect, Outcome, Report, Worker, blocking, storage},
};
use crate::sync::{
    Conflict, ContentError, ContentStore, Item, Key, Written,
    events::{EventKind, Notice},
    file::{self, Disk, Stat},
    layout::{self, Blocked, Target},
    ledger::Ledger,
    names,
    reconcile::{DbSide, Decision, FileSide, decide},
};

impl<C: ContentStore, L: Ledger> Worker<C, L> {
    /// Reconciles whatever `path` stands for.
    pub(super) async fn look_at(
        &self,
        path: &Path,
        tries: u8,
        report: &mut Report,
    ) -> Result<Outcome, ContentError> {
        match self.layout.classify(path) {
            Target::Item(key) => self.reconcile(&key, tries, report).await,
            Target::Rejected(reason) => {
                if fs::symlink_metadata(path).is_ok() {
                    self.reject(path, &reason);
                }
                Ok(Outcome::Settled(Effect::Skipped))
            }
            Target::Ignored => {
                match fs::symlink_metadata(path) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        self.reject(path, "is a symbolic link; links are never followed");
                    }
                    Ok(meta) if meta.is_dir() => {
                        // Files may have landed before the directory was watched.
                        let dir = path.to_owned();
                        let files = blocking(move || files_under(&dir)).await.map_err(|err| {
                            storage(format!("cannot list {}: {err}", path.display()))
                        })?;
                        for file in files {
                            report.hints.push(Hint::Path(file, Signal::Changed));
                        }
                    }
                    // A set, group or theme directory renamed or removed:
                    // its files sent no event of their own.
                    Err(err)
                        if err.kind() == io::ErrorKind::NotFound
                            && self.layout.is_content_dir(path) =>
                    {
                        report.hints.push(Hint::Rescan);
                    }
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => {
                        return Err(storage(format!("cannot look at {}: {err}", path.display())));
                    }
                    _ => {}
                }
                Ok(Outcome::Settled(Effect::Nothing))
            }
        }
    }

    /// The three-way reconcile of one entity.
    pub(super) async fn reconcile(
        &self,
        key: &Key,
        tries: u8,
        report: &mut Report,
    ) -> Result<Outcome, ContentError> {
        // A forum's database can hold any title: one that cannot be a
        // file name never becomes a path.
        let named = names::validate("collection", &key.collection)
            .and_then(|()| names::validate("name", &key.name));
        if let Err(err) = named {
            tracing::warn!(%key, %err, "not synced: the name cannot be a file name");
            return Ok(Outcome::Settled(Effect::Skipped));
        }
        let path = self.layout.path(key);
        match layout::check_dirs(self.layout.root(), &path) {
            Ok(()) => {}
            Err(Blocked::Link(reason)) => {
                self.reject(&path, &reason);
                return Ok(Outcome::Settled(Effect::Skipped));
            }
            // A file where a directory must be, a directory that cannot
            // be looked at: neither side can be seen or written, and
            // either may be put right.
            Err(Blocked::Now(reason)) => return Err(storage(reason)),
        }
        let read_path = path.clone();
        let trim = self.content.trim(key.kind);
        let disk = blocking(move || file::read(&read_path).trimmed(trim)).await;
        let db = match self.content.get(key).await {
            Ok(item) => Some(item),
            Err(ContentError::NotFound(_)) => None,
            // The database holds what cannot be synced (duplicate rows).
            Err(ContentError::Refused(reason)) => {
                self.reject(&path, &reason);
                return Ok(Outcome::Settled(Effect::Skipped));
            }
            Err(err) => return Err(err),
        };
        let base = self.ledger.base(key).await?;
        let later = |after| Outcome::Retry {
            after,
            tries: tries.saturating_add(1),
        };
        let file_side = match &disk {
            // Not a look at settled content: the count stays.
            Disk::Changing => {
                return Ok(Outcome::Retry {
                    after: self.settings.debounce,
                    tries,
                });
            }
            Disk::Rejected(reason) => {
                self.reject(&path, reason);
                return Ok(Outcome::Settled(Effect::Skipped));
            }
            // The change it may hold waits until it can be read.
            Disk::Unreadable(reason) => return Err(storage(reason)),
            Disk::Empty if tries == 0 => return Ok(later(self.settings.settle)),
            Disk::Empty => {
                self.board.publish(
                    Notice::new(
                        EventKind::SkippedEmpty,
                        format!(
                            "{} is empty: not imported; the database is left as it is",
                            path.display()
                        ),
                    )
                    .key(key)
                    .path(&path),
                );
                return Ok(Outcome::Settled(Effect::Skipped));
            }
            Disk::Missing => FileSide::Missing,
            Disk::Content { sha256, stat, .. } => FileSide::Content {
                sha256,
                stat: *stat,
            },
        };
        let collection_dir = layout::collection_dir(self.layout.root(), key.kind, &key.collection);
        let mirrored = fs::symlink_metadata(&collection_dir).is_ok_and(|meta| meta.is_dir());
        let db_side = db.as_ref().map(|item| DbSide {
            version: item.version,
            sha256: &item.sha256,
        });
        let decision = decide(file_side, db_side, base.as_ref(), mirrored);
        if disk == Disk::Missing {
            // Editors remove a file for a moment while saving.
            if base.is_some() && tries == 0 && decision != Decision::Forget {
                return Ok(later(self.settings.settle));
            }
        } else {
            report.orphans.remove(key);
        }
        let expected_stat = match &disk {
            Disk::Content { stat, .. } => Some(*stat),
            _ => None,
        };
        let effect = match decision {
            Decision::Nothing => Effect::Nothing,
            Decision::Agree => {
                let (Some(item), Some(stat)) = (&db, expected_stat) else {
                    return Ok(Outcome::Settled(Effect::Nothing));
                };
                self.agree(key, item, stat).await?;
                report
                    .history
                    .push((Self::saved(&path), self.change(key, Some(&item.content))));
                Effect::Nothing
            }
            Decision::Import => {
                let Disk::Content { text, stat, .. } = &disk else {
                    return Ok(Outcome::Settled(Effect::Nothing));
                };
                let expected = db.as_ref().map_or(0, |item| item.version);
                match self.content.put(key, text, Some(expected)).await {
                    Ok(Written {
                        item,
                        created,
                        warnings,
                    }) => {
                        self.agree(key, &item, *stat).await?;
                        report
                            .history
                            .push((Self::saved(&path), self.change(key, Some(&item.content))));
                        for warning in warnings {
                            self.board.publish(
                                Notice::new(EventKind::Warning, warning)
                                    .key(key)
                                    .path(&path),
                            );
                        }
                        let what = if created {
                            "created from"
                        } else {
                            "updated from"
                        };
                        self.board.publish(
                            Notice::new(
                                EventKind::Imported,
                                format!("{key} {what} {}", path.display()),
                            )
                            .key(key)
                            .path(&path)
                            .version(item.version),
                        );
                        Effect::Imported
                    }
                    // Changed in the database meanwhile: decide again.
                    Err(ContentError::VersionMismatch { .. }) => {
                        return Ok(Outcome::Retry {
                            after: Duration::ZERO,
                            tries,
                        });
                    }
                    // Content the store will never take (MyBB's template
                    // check, a column's limits, a set the forum does not
                    // have): trying again cannot help.
                    Err(
                        err @ (ContentError::Invalid { .. }
                        | ContentError::Refused(_)
                        | ContentError::NotFound(_)),
                    ) => {
                        self.reject(&path, &format!("cannot be stored: {err}"));
                        return Ok(Outcome::Settled(Effect::Skipped));
                    }
                    Err(err) => return Err(err),
                }
            }
            Decision::WriteFile => {
                let Some(item) = &db else {
                    return Ok(Outcome::Settled(Effect::Nothing));
                };
                let Some(stat) = self.write(&path, item, expected_stat, None).await? else {
                    return Ok(later(self.settings.debounce));
                };
                self.agree(key, item, stat).await?;
                report
                    .history
                    .push((Self::from_database(), self.change(key, Some(&item.content))));
                self.board.publish(
                    Notice::new(
                        EventKind::Exported,
                        format!("{key} written to {}", path.display()),
                    )
                    .key(key)
                    .path(&path)
                    .version(item.version),
                );
                Effect::Exported
            }
            Decision::Conflict => {
                let (Some(item), Disk::Content { text, sha256, .. }) = (&db, &disk) else {
                    return Ok(Outcome::Settled(Effect::Nothing));
                };
                let outcome = self
                    .conflict(key, &path, item, text, sha256, expected_stat)
                    .await?;
                if outcome == Outcome::Settled(Effect::Conflict) {
                    // The database's version is the one in effect.
                    report
                        .history
                        .push((Self::from_database(), self.change(key, Some(&item.content))));
                }
                return Ok(outcome);
            }
            Decision::RemoveFile => {
                let remove_path = path.clone();
                let removed = blocking(move || remove_if_unchanged(&remove_path, expected_stat))
                    .await
                    .map_err(|err| storage(format!("cannot remove {}: {err}", path.display())))?;
                if !removed {
                    return Ok(later(self.settings.debounce));
                }
                self.ledger.forget_base(key).await?;
                report
                    .history
                    .push((Self::from_database(), self.change(key, None)));
                self.board.publish(
                    Notice::new(
                        EventKind::Exported,
                        format!(
                            "{key} was deleted in the database: {} removed",
                            path.display()
                        ),
                    )
                    .key(key)
                    .path(&path),
                );
                Effect::Exported
            }
            Decision::Orphaned => {
                if report.orphans.insert(key.clone()) {
                    self.board.publish(
                        Notice::new(
                            EventKind::Orphaned,
                            format!(
                                "{} is gone; the database keeps {key} (delete it through the API to remove it)",
                                path.display()
                            ),
                        )
                        .key(key)
                        .path(&path)
                        .version(db.as_ref().map_or(0, |item| item.version)),
                    );
                }
                Effect::Nothing
            }
            Decision::Forget => {
                self.ledger.forget_base(key).await?;
                Effect::Nothing
            }
        };
        Ok(Outcome::Settled(effect))
    }

    /// Keeps the database version in the file and the disk version in a
    /// conflict copy, and records the conflict.
    async fn conflict(
        &self,
        key: &Key,
        path: &Path,
        item: &Item,
        disk_text: &str,
        disk_sha256: &str,
        expected: Option<Stat>,
    ) -> Result<Outcome, ContentError> {
        let id = conflict_id();
        let copy_path = layout::conflict_copy(path, &id);
        // Recorded first: a crash between the two never leaves a copy
        // nobody knows about.
        let conflict = Conflict {
            id: id.clone(),
            key: key.clone(),
            path: path.to_owned(),
            copy_path: copy_path.clone(),
            db_version: item.version,
            db_sha256: item.sha256.clone(),
            disk_sha256: disk_sha256.to_owned(),
            detected_at: SystemTime::now(),
        };
        self.ledger.add_conflict(&conflict).await?;
        let copy = Some((copy_path.clone(), disk_text.to_owned()));
        let written = self.write(path, item, expected, copy).await;
        let Ok(Some(stat)) = written else {
            // Not written (the file changed again first, or an error):
            // no conflict, no copy; decide afresh.
            let _ = fs::remove_file(&copy_path);
            self.ledger.remove_conflict(&id).await?;
            return match written {
                Err(err) => Err(err),
                _ => Ok(Outcome::Retry {
                    after: self.settings.debounce,
                    tries: 0,
                }),
            };
        };
        self.agree(key, item, stat).await?;
        self.board.publish(
            Notice::new(
                EventKind::Conflict,
                format!(
                    "{key} changed on disk and in the database: the file holds the database version, {} the disk version (conflict {id})",
                    copy_path.display()
                ),
            )
            .key(key)
            .path(path)
            .version(item.version),
        );
        Ok(Outcome::Settled(Effect::Conflict))
    }
}

/// An identifier for a new conflict: unique, and ordered by time.
fn conflict_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos:x}")
}

/// Removes `path` if its stat is still `expected`; false if it changed.
fn remove_if_unchanged(path: &Path, expected: Option<Stat>) -> io::Result<bool> {
    if file::stat(path).ok() != expected {
        return Ok(false);
    }
    fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(true)
}

/// Every file at most two levels below `dir` (a new set or group). A
/// directory that cannot be listed is an error (its files would be
/// missed); one that is gone meanwhile is not.
fn files_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut level = vec![dir.to_owned()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for dir in level {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            for entry in entries {
                let entry = entry?;
                match entry.file_type() {
                    Ok(kind) if kind.is_dir() => next.push(entry.path()),
                    Ok(_) => files.push(entry.path()),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err),
                }
            }
        }
        level = next;
    }
    Ok(files)
}
