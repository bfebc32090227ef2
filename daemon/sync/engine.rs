//! The sync engine: one reconciler for the whole sync root.
//!
//! File events (from [`super::watcher`]) and API changes are only hints:
//! each marks a path as possibly changed, with a trailing debounce per
//! path. When a path is due, the reconciler reads the file (only if it is
//! settled), the database row and the base both last agreed on, and
//! carries out [`reconcile::decide`]. A file still open for writing, a
//! 0-byte file and a vanished one are looked at again after the settle
//! period before anything is decided about them.
//!
//! Everything that writes under the root or changes the base — the
//! reconciler, exports, rescans, resolving conflicts — holds one lock, so
//! none ever acts on what another is halfway through. While the watcher
//! is paused (by a user or an export) hints are kept, up to a bound past
//! which a rescan replaces them, and processed on resume.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fs, io,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::{Mutex, mpsc};

use super::{
    Conflict, ContentError, ContentStore, Item, Key, Kind,
    atomic::{Batch, remove_stale_temps},
    events::{EventKind, Notice, SyncBoard},
    export::{self, ExportSummary},
    file::{self, Disk, Stat},
    gate::PauseGate,
    layout::{self, Target},
    ledger::Ledger,
    reconcile::{Base, DbSide, Decision, FileSide, decide},
    watcher,
};

/// Paths kept while paused; past this, a rescan replaces them.
const MAX_PENDING: usize = 10_000;

/// How the engine waits for writers.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Trailing debounce per path.
    pub debounce: Duration,
    /// How long a file still being written, empty or missing is given
    /// before a final decision.
    pub settle: Duration,
}

/// What a file event says about a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Signal {
    /// Something happened to it (created, renamed, removed).
    Changed,
    /// Its data is being written.
    Writing,
    /// A writer closed it.
    Closed,
    /// A directory appeared: what is in it may be new.
    Dir,
    /// Look now, without debounce (a database-side change).
    Now,
    /// Look again after a delay, the `tries`-th time.
    Later {
        /// The delay.
        after: Duration,
        /// Looks so far.
        tries: u8,
    },
}

/// Work for the engine's loop.
#[derive(Debug)]
pub(super) enum Hint {
    /// A path may have changed.
    Path(PathBuf, Signal),
    /// Events were lost: look at everything.
    Rescan,
    /// The watcher failed; the message says how.
    Failed(String),
    /// The pause may have ended.
    Wake,
    /// The daemon is stopping.
    Stop,
}

/// What a rescan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RescanSummary {
    /// Entities looked at.
    pub scanned: u32,
    /// Written to the database.
    pub imported: u32,
    /// Written to disk.
    pub exported: u32,
    /// Conflicts found.
    pub conflicts: u32,
    /// Skipped (empty, rejected, not settled).
    pub skipped: u32,
    /// How long it took.
    pub elapsed: Duration,
}

/// The watcher's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatcherState {
    /// Watching and reconciling.
    Watching,
    /// Paused by a user or an export.
    Paused,
    /// Not watching: it failed to start.
    Stopped,
}

/// What one look at an entity came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Nothing,
    Imported,
    Exported,
    Conflict,
    Skipped,
}

/// Whether an entity is settled or must be looked at again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Settled(Effect),
    Retry { after: Duration, tries: u8 },
}

/// State kept under the engine's lock.
#[derive(Default)]
struct Held {
    /// Entities whose missing file was reported, so it is reported once.
    orphans: HashSet<Key>,
}

/// A path waiting to be reconciled.
#[derive(Clone, Copy, Debug)]
struct Pending {
    due: Instant,
    /// Since when a writer has it open (data written, not closed yet).
    writing_since: Option<Instant>,
    tries: u8,
}

/// The sync engine of one sync root.
pub struct SyncEngine<S, L> {
    content: Arc<S>,
    state: Arc<L>,
    root: PathBuf,
    settings: Settings,
    gate: PauseGate,
    board: SyncBoard,
    held: Mutex<Held>,
    hints: mpsc::UnboundedSender<Hint>,
    dirty: AtomicUsize,
    watching: AtomicBool,
    /// Set by [`SyncEngine::stop`]: nothing more is looked at.
    stopping: AtomicBool,
}

fn storage(err: impl std::fmt::Display) -> ContentError {
    ContentError::Storage(err.to_string())
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("file work does not panic")
}

impl<S: ContentStore, L: Ledger> SyncEngine<S, L> {
    /// Starts syncing `root` (created if missing): removes temps an
    /// interrupted export left, watches the root, rescans it, and then
    /// reconciles whatever changes.
    pub async fn start(
        content: Arc<S>,
        state: Arc<L>,
        root: PathBuf,
        settings: Settings,
    ) -> Result<Arc<Self>, ContentError> {
        fs::create_dir_all(&root).map_err(|err| {
            ContentError::Storage(format!(
                "cannot create the sync root {}: {err}",
                root.display()
            ))
        })?;
        match remove_stale_temps(&root) {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(removed, root = %root.display(), "removed temp files of an interrupted export")
            }
            Err(err) => tracing::warn!(%err, root = %root.display(), "cannot clean the sync root"),
        }
        let open_conflicts = state.conflicts().await?.len() as u32;
        let (sender, receiver) = mpsc::unbounded_channel();
        let engine = Arc::new(Self {
            content,
            state,
            settings,
            gate: PauseGate::default(),
            board: SyncBoard::new(open_conflicts),
            held: Mutex::default(),
            hints: sender.clone(),
            dirty: AtomicUsize::new(0),
            watching: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            root,
        });
        // Watch first, then rescan: nothing changed in between is missed.
        let watcher = match watcher::watch(&engine.root, sender) {
            Ok(watcher) => Some(watcher),
            Err(message) => {
                engine.watching.store(false, Ordering::Release);
                engine
                    .board
                    .publish(Notice::new(EventKind::WatcherError, message));
                None
            }
        };
        tokio::spawn(engine.clone().run(receiver, watcher));
        Ok(engine)
    }

    /// The sync root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The event bus.
    pub fn board(&self) -> &SyncBoard {
        &self.board
    }

    /// The watcher's state.
    pub fn watcher_state(&self) -> WatcherState {
        if !self.watching.load(Ordering::Acquire) {
            WatcherState::Stopped
        } else if self.gate.is_paused() {
            WatcherState::Paused
        } else {
            WatcherState::Watching
        }
    }

    /// The pause state.
    pub fn gate(&self) -> &PauseGate {
        &self.gate
    }

    /// Paths waiting to be reconciled.
    pub fn dirty(&self) -> usize {
        self.dirty.load(Ordering::Acquire)
    }

    /// Pauses for a user; returns whether a user had paused already.
    pub fn pause(&self) -> bool {
        let was_paused = self.gate.pause();
        if !was_paused {
            self.board.publish(Notice::new(
                EventKind::Paused,
                "paused: changes are kept and processed on resume",
            ));
        }
        was_paused
    }

    /// Lifts a user's pause; returns whether one was in force.
    pub fn resume(&self) -> bool {
        let was_paused = self.gate.resume();
        if was_paused {
            self.board.publish(Notice::new(
                EventKind::Resumed,
                format!("resumed with {} changes queued", self.dirty()),
            ));
            let _ = self.hints.send(Hint::Wake);
        }
        was_paused
    }

    /// Tells the reconciler that `key` changed in the database.
    pub fn content_changed(&self, key: &Key, version: u64, message: &str) {
        self.board.publish(
            Notice::new(EventKind::ContentChanged, message)
                .key(key)
                .version(version),
        );
        let _ = self
            .hints
            .send(Hint::Path(layout::path(&self.root, key), Signal::Now));
    }

    /// Stops the reconciler: it finishes the entity it is at and looks
    /// at no other; returns once it has.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.hints.send(Hint::Stop);
        drop(self.held.lock().await);
    }

    fn holding_back(&self) -> bool {
        self.gate.is_paused() || self.stopping.load(Ordering::Acquire)
    }

    /// Exports a collection with the watcher paused. The export runs in
    /// a task of its own, so that a caller that goes away (a cancelled
    /// RPC) never cuts it short between its writes and its bases.
    pub async fn export(
        self: &Arc<Self>,
        kind: Kind,
        collection: &str,
    ) -> Result<ExportSummary, ContentError> {
        let engine = Arc::clone(self);
        let collection = collection.to_owned();
        tokio::spawn(async move { engine.export_now(kind, &collection).await })
            .await
            .map_err(|err| storage(format!("export failed: {err}")))?
    }

    async fn export_now(
        &self,
        kind: Kind,
        collection: &str,
    ) -> Result<ExportSummary, ContentError> {
        let paused = self.gate.pause_for_export();
        let held = self.held.lock().await;
        let result =
            export::export(&*self.content, &*self.state, &self.root, kind, collection).await;
        drop(held);
        drop(paused);
        let _ = self.hints.send(Hint::Wake);
        let message = match &result {
            Ok(summary) => format!(
                "exported {collection}: {} written, {} unchanged, {} conflicts",
                summary.written, summary.unchanged, summary.conflicts
            ),
            Err(err) => format!("export of {collection} failed: {err}"),
        };
        self.board
            .publish(Notice::new(EventKind::ExportFinished, message));
        result
    }

    /// Looks at every file and every synced entity.
    pub async fn rescan(&self) -> Result<RescanSummary, ContentError> {
        let mut held = self.held.lock().await;
        self.rescan_held(&mut held).await
    }

    /// Every unresolved conflict, oldest first.
    pub async fn conflicts(&self) -> Result<Vec<Conflict>, ContentError> {
        self.state.conflicts().await
    }

    /// Resolves a conflict: keeping the disk side puts the conflict copy's
    /// content in the database (the file follows); either way the copy is
    /// removed. Returns the content and its version after.
    pub async fn resolve(&self, id: &str, keep_disk: bool) -> Result<(Key, u64), ContentError> {
        let held = self.held.lock().await;
        let conflict = self.state.conflict(id).await?;
        let version = if keep_disk {
            let copy = conflict.copy_path.clone();
            let text = match blocking(move || file::read(&copy)).await {
                Disk::Content { text, .. } => text,
                Disk::Missing => {
                    return Err(ContentError::Refused(format!(
                        "the conflict copy {} is gone; keep the database side instead",
                        conflict.copy_path.display()
                    )));
                }
                other => {
                    return Err(ContentError::Refused(format!(
                        "the conflict copy {} cannot be used: {other:?}",
                        conflict.copy_path.display()
                    )));
                }
            };
            // Only over the version the conflict kept: a later change
            // in the database must be looked at first.
            let (item, _) = self
                .content
                .put(&conflict.key, &text, Some(conflict.db_version))
                .await?;
            item.version
        } else {
            match self.content.get(&conflict.key).await {
                Ok(item) => item.version,
                Err(ContentError::NotFound(_)) => 0,
                Err(err) => return Err(err),
            }
        };
        match fs::remove_file(&conflict.copy_path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(storage(format!(
                    "cannot remove the conflict copy {}: {err}",
                    conflict.copy_path.display()
                )));
            }
            _ => {}
        }
        self.state.remove_conflict(id).await?;
        drop(held);
        let side = if keep_disk { "disk" } else { "database" };
        self.board.publish(
            Notice::new(
                EventKind::ConflictResolved,
                format!("conflict {id} resolved: the {side} side kept"),
            )
            .key(&conflict.key)
            .path(&conflict.path)
            .version(version),
        );
        if keep_disk {
            let _ = self.hints.send(Hint::Path(conflict.path, Signal::Now));
        }
        Ok((conflict.key, version))
    }

    /// The loop: absorbs hints, reconciles what is due.
    async fn run(
        self: Arc<Self>,
        mut hints: mpsc::UnboundedReceiver<Hint>,
        // Kept alive as long as the loop runs.
        _watcher: Option<notify::RecommendedWatcher>,
    ) {
        let mut pending: HashMap<PathBuf, Pending> = HashMap::new();
        let mut rescan = true;
        loop {
            let due = if self.gate.is_paused() {
                None
            } else if rescan {
                Some(Instant::now())
            } else {
                pending.values().map(|p| p.due).min()
            };
            let hint = match due {
                Some(due) => tokio::select! {
                    biased;
                    hint = hints.recv() => hint,
                    () = tokio::time::sleep_until(due.into()) => {
                        if self.holding_back() {
                            // Paused (or stopping) meanwhile: wait for the
                            // resume (or the stop hint).
                            continue;
                        }
                        if std::mem::take(&mut rescan) {
                            self.rescan_logged().await;
                        } else {
                            self.process_due(&mut pending).await;
                        }
                        self.dirty.store(pending.len(), Ordering::Release);
                        continue;
                    }
                },
                None => hints.recv().await,
            };
            let mut next = hint;
            // Take every hint already queued before deciding anything.
            loop {
                match next {
                    None | Some(Hint::Stop) => return,
                    Some(hint) => self.absorb(hint, &mut pending, &mut rescan),
                }
                match hints.try_recv() {
                    Ok(hint) => next = Some(hint),
                    Err(_) => break,
                }
            }
            if self.gate.is_paused() && pending.len() > MAX_PENDING {
                pending.clear();
                rescan = true;
            }
            self.dirty.store(pending.len(), Ordering::Release);
        }
    }

    fn absorb(&self, hint: Hint, pending: &mut HashMap<PathBuf, Pending>, rescan: &mut bool) {
        let now = Instant::now();
        match hint {
            Hint::Path(path, signal) => {
                let entry = pending.entry(path).or_insert(Pending {
                    due: now,
                    writing_since: None,
                    tries: 0,
                });
                match signal {
                    Signal::Now => entry.due = now,
                    Signal::Later { after, tries } => {
                        entry.due = entry.due.max(now + after);
                        entry.tries = tries;
                    }
                    Signal::Writing => {
                        entry.writing_since.get_or_insert(now);
                        entry.due = now + self.settings.debounce;
                    }
                    Signal::Closed | Signal::Changed | Signal::Dir => {
                        entry.writing_since = None;
                        entry.due = now + self.settings.debounce;
                    }
                }
            }
            Hint::Rescan => *rescan = true,
            Hint::Failed(message) => {
                self.board
                    .publish(Notice::new(EventKind::WatcherError, message));
                *rescan = true;
            }
            Hint::Wake | Hint::Stop => {}
        }
    }

    async fn process_due(&self, pending: &mut HashMap<PathBuf, Pending>) {
        let now = Instant::now();
        let due: Vec<PathBuf> = pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(path, _)| path.clone())
            .collect();
        let mut held = self.held.lock().await;
        for path in due {
            if self.holding_back() {
                // The rest stays pending until the resume.
                break;
            }
            let Some(entry) = pending.remove(&path) else {
                continue;
            };
            if let Some(since) = entry.writing_since
                && since.elapsed() < self.settings.settle
            {
                // A writer still has it open: wait for close-write.
                pending.insert(
                    path,
                    Pending {
                        due: Instant::now() + self.settings.debounce,
                        ..entry
                    },
                );
                continue;
            }
            match self.look_at(&mut held, &path, entry.tries).await {
                Ok(Outcome::Settled(_)) => {}
                Ok(Outcome::Retry { after, tries }) => {
                    pending.insert(
                        path,
                        Pending {
                            due: Instant::now() + after,
                            writing_since: None,
                            tries,
                        },
                    );
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "cannot reconcile; retrying");
                    if entry.tries == 0 {
                        self.board.publish(
                            Notice::new(
                                EventKind::WatcherError,
                                format!("cannot sync {}: {err}; retrying", path.display()),
                            )
                            .path(&path),
                        );
                    }
                    // Backing off: settle, twice that, … up to a minute.
                    let after = self
                        .settings
                        .settle
                        .saturating_mul(1 << entry.tries.min(6))
                        .min(Duration::from_secs(60));
                    pending.insert(
                        path,
                        Pending {
                            due: Instant::now() + after,
                            writing_since: None,
                            tries: entry.tries.saturating_add(1),
                        },
                    );
                }
            }
        }
    }

    /// Reconciles whatever `path` stands for.
    async fn look_at(
        &self,
        held: &mut Held,
        path: &Path,
        tries: u8,
    ) -> Result<Outcome, ContentError> {
        match layout::classify(&self.root, path) {
            Target::Item(key) => self.reconcile(held, &key, tries).await,
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
                        for file in blocking(move || files_under(&dir)).await {
                            let _ = self.hints.send(Hint::Path(file, Signal::Changed));
                        }
                    }
                    // A set, group or theme directory renamed or removed:
                    // its files sent no event of their own.
                    Err(_) if layout::is_content_dir(&self.root, path) => {
                        let _ = self.hints.send(Hint::Rescan);
                    }
                    _ => {}
                }
                Ok(Outcome::Settled(Effect::Nothing))
            }
        }
    }

    fn reject(&self, path: &Path, reason: &str) {
        self.board.publish(
            Notice::new(
                EventKind::Rejected,
                format!("{} {reason}: not synced", path.display()),
            )
            .path(path),
        );
    }

    /// The three-way reconcile of one entity.
    async fn reconcile(
        &self,
        held: &mut Held,
        key: &Key,
        tries: u8,
    ) -> Result<Outcome, ContentError> {
        let path = layout::path(&self.root, key);
        if let Err(reason) = layout::check_dirs(&self.root, &path) {
            self.reject(&path, &reason);
            return Ok(Outcome::Settled(Effect::Skipped));
        }
        let read_path = path.clone();
        let disk = blocking(move || file::read(&read_path)).await;
        let db = match self.content.get(key).await {
            Ok(item) => Some(item),
            Err(ContentError::NotFound(_)) => None,
            Err(err) => return Err(err),
        };
        let base = self.state.base(key).await?;
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
        let collection_dir = layout::collection_dir(&self.root, key.kind, &key.collection);
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
            held.orphans.remove(key);
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
                Effect::Nothing
            }
            Decision::Import => {
                let Disk::Content { text, stat, .. } = &disk else {
                    return Ok(Outcome::Settled(Effect::Nothing));
                };
                let expected = db.as_ref().map_or(0, |item| item.version);
                match self.content.put(key, text, Some(expected)).await {
                    Ok((item, created)) => {
                        self.agree(key, &item, *stat).await?;
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
                return self
                    .conflict(key, &path, item, text, sha256, expected_stat)
                    .await;
            }
            Decision::RemoveFile => {
                let remove_path = path.clone();
                let removed = blocking(move || remove_if_unchanged(&remove_path, expected_stat))
                    .await
                    .map_err(|err| storage(format!("cannot remove {}: {err}", path.display())))?;
                if !removed {
                    return Ok(later(self.settings.debounce));
                }
                self.state.forget_base(key).await?;
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
                if held.orphans.insert(key.clone()) {
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
                self.state.forget_base(key).await?;
                Effect::Nothing
            }
        };
        Ok(Outcome::Settled(effect))
    }

    /// Records `item`, now also in the file with `stat`, as the base.
    async fn agree(&self, key: &Key, item: &Item, stat: Stat) -> Result<(), ContentError> {
        let base = Base {
            sha256: item.sha256.clone(),
            db_version: item.version,
            stat,
        };
        self.state.set_bases(&[(key.clone(), base)]).await
    }

    /// Writes `item` to `path` atomically (and `copy` beside it), if the
    /// file still has stat `expected` (None: missing). Returns the new
    /// stat, or None when the file changed first.
    async fn write(
        &self,
        path: &Path,
        item: &Item,
        expected: Option<Stat>,
        copy: Option<(PathBuf, String)>,
    ) -> Result<Option<Stat>, ContentError> {
        let (path, content) = (path.to_owned(), item.content.clone());
        let shown = path.display().to_string();
        blocking(move || {
            let mut batch = Batch::default();
            if let Some((copy_path, text)) = &copy {
                batch.stage(copy_path, text.as_bytes())?;
            }
            batch.stage(&path, content.as_bytes())?;
            let left_alone =
                batch.commit_if(|target| target != path || file::stat(&path).ok() == expected)?;
            if !left_alone.is_empty() {
                return Ok(None);
            }
            file::stat(&path).map(Some)
        })
        .await
        .map_err(|err: io::Error| storage(format!("cannot write {shown}: {err}")))
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
        self.state.add_conflict(&conflict).await?;
        let copy = Some((copy_path.clone(), disk_text.to_owned()));
        let written = self.write(path, item, expected, copy).await;
        let Ok(Some(stat)) = written else {
            // Not written (the file changed again first, or an error):
            // no conflict, no copy; decide afresh.
            let _ = fs::remove_file(&copy_path);
            self.state.remove_conflict(&id).await?;
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

    async fn rescan_logged(&self) {
        match self.rescan().await {
            Ok(summary) => tracing::info!(?summary, "sync rescan"),
            Err(err) => {
                self.board.publish(Notice::new(
                    EventKind::WatcherError,
                    format!("rescan failed: {err}"),
                ));
            }
        }
    }

    /// Looks at every entity with a file, a base, or a row in a mirrored
    /// collection. An entity whose file stat and database version are
    /// those of its base is unchanged without reading anything.
    async fn rescan_held(&self, held: &mut Held) -> Result<RescanSummary, ContentError> {
        let started = Instant::now();
        let mut summary = RescanSummary::default();
        let root = self.root.clone();
        let walked = blocking(move || walk(&root)).await;
        for (path, reason) in &walked.rejected {
            self.reject(path, reason);
            summary.skipped += 1;
        }
        let mut keys: BTreeSet<Key> = walked.keys.into_iter().collect();
        for kind in [Kind::Template, Kind::Stylesheet] {
            let mut collections: BTreeSet<String> = self
                .state
                .synced_collections(kind)
                .await?
                .into_iter()
                .collect();
            collections.extend(walked.collections.get(&kind).into_iter().flatten().cloned());
            for collection in collections {
                let bases = self.state.bases(kind, &collection).await?;
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
        let settle_ns = self.settings.settle.as_nanos() as i64;
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as i64);
        for key in keys {
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            summary.scanned += 1;
            let path = layout::path(&self.root, &key);
            // A file written to within the settle period may still be
            // being written: the watcher's hints or a later look decide.
            let recent = walked
                .stats
                .get(&key)
                .is_some_and(|stat| now_ns.saturating_sub(stat.1) < settle_ns);
            if recent {
                summary.skipped += 1;
                let _ = self.hints.send(Hint::Path(
                    path,
                    Signal::Later {
                        after: self.settings.settle,
                        tries: 0,
                    },
                ));
                continue;
            }
            let outcome = match self.reconcile(held, &key, 0).await {
                Ok(outcome) => outcome,
                Err(err) => {
                    tracing::warn!(%key, %err, "cannot reconcile; retrying after the rescan");
                    Outcome::Retry {
                        after: self.settings.settle,
                        tries: 0,
                    }
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
                    let _ = self
                        .hints
                        .send(Hint::Path(path, Signal::Later { after, tries }));
                }
            }
        }
        summary.elapsed = started.elapsed();
        self.board.publish(Notice::new(
            EventKind::Rescanned,
            format!(
                "rescanned {} in {:?}: {} imported, {} exported, {} conflicts, {} skipped",
                summary.scanned,
                summary.elapsed,
                summary.imported,
                summary.exported,
                summary.conflicts,
                summary.skipped
            ),
        ));
        Ok(summary)
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

/// What is on disk under the root.
#[derive(Default)]
struct Walked {
    keys: Vec<Key>,
    stats: HashMap<Key, Stat>,
    collections: HashMap<Kind, BTreeSet<String>>,
    rejected: Vec<(PathBuf, String)>,
}

/// Walks the sync root without following links.
fn walk(root: &Path) -> Walked {
    let mut walked = Walked::default();
    for kind in [Kind::Template, Kind::Stylesheet] {
        let depth = if kind == Kind::Template { 2 } else { 1 };
        for collection in dirs_in(&root.join(layout::kind_dir(kind)), &mut walked.rejected) {
            let Some(name) = collection.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            walked
                .collections
                .entry(kind)
                .or_default()
                .insert(name.to_owned());
            let mut dirs = vec![collection.clone()];
            for _ in 1..depth {
                dirs = dirs
                    .iter()
                    .flat_map(|dir| dirs_in(dir, &mut walked.rejected))
                    .collect();
            }
            for dir in dirs {
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    match layout::classify(root, &path) {
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
        }
    }
    walked
}

/// The real directories in `dir`; symbolic links among them are rejected.
fn dirs_in(dir: &Path, rejected: &mut Vec<(PathBuf, String)>) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        if layout::is_ignored(&name.to_string_lossy()) {
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
    dirs
}

/// Every file at most two levels below `dir` (a new set or group).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut level = vec![dir.to_owned()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for dir in level {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                match entry.file_type() {
                    Ok(kind) if kind.is_dir() => next.push(entry.path()),
                    Ok(_) => files.push(entry.path()),
                    Err(_) => {}
                }
            }
        }
        level = next;
    }
    files
}
