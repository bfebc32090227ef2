//! The Sync service as every front end calls it: content reads and
//! writes with their rules (names, limits), a write or delete told to the
//! engine so that the file follows, and the engine's own commands. A front
//! end only translates between its wire and these calls.

use std::sync::Arc;

use crate::history::{
    Batch, Change, History, HistoryError, Origin, Source, Subject, Version, short,
};

use super::{
    Backend, Collection, Conflict, ContentError, ContentStore, Item, Key, Kind, Written,
    engine::{EngineStatus, ExportSummary, RescanSummary, Resolved, Resumed, SyncEngine},
    events::{Subscription, Tally, TallySnapshot},
    file::{self, Disk},
    names, validate_content,
};

/// Everything a status report shows.
#[derive(Clone, Debug)]
pub struct SyncStatus {
    /// The engine: watcher state and queued changes.
    pub engine: EngineStatus,
    /// What the reconciler did since the daemon started.
    pub tally: Tally,
    /// The database behind it.
    pub backend: Backend,
}

/// Both sides of an open conflict, for a side-by-side comparison.
#[derive(Debug)]
pub struct ConflictSides {
    pub conflict: Conflict,
    /// The conflict copy's content (the editor's save), or why it cannot be
    /// read — then only the database side can be kept.
    pub disk: Result<String, String>,
    /// What the database holds now; None once the entity was deleted.
    pub database: Option<String>,
}

/// Content in a [`ContentStore`], mirrored on disk by a [`SyncEngine`],
/// its versions kept by [`History`].
pub struct SyncService<C> {
    content: Arc<C>,
    engine: SyncEngine,
    history: History,
}

impl<C: ContentStore> SyncService<C> {
    /// The service over `content`, whose changes `engine` mirrors and
    /// `history` keeps.
    pub fn new(content: Arc<C>, engine: SyncEngine, history: History) -> Self {
        Self {
            content,
            engine,
            history,
        }
    }

    /// The history of content (and workspaces).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The engine (for daemon shutdown).
    pub fn engine(&self) -> &SyncEngine {
        &self.engine
    }

    /// Every collection of `kind`.
    pub async fn collections(&self, kind: Kind) -> Result<Vec<Collection>, ContentError> {
        self.content.collections(kind).await
    }

    /// The items of one collection, with or without their content.
    pub async fn items(
        &self,
        kind: Kind,
        collection: &str,
        with_content: bool,
    ) -> Result<Vec<Item>, ContentError> {
        names::validate(kind.collection_field(), collection)?;
        self.content.items(kind, collection, with_content).await
    }

    /// One item with its content.
    pub async fn get(&self, key: &Key) -> Result<Item, ContentError> {
        self.content.get(key).await
    }

    /// Creates or replaces an item, if its version is `expected` when given
    /// (0: it must not exist); the file follows, the history keeps it as
    /// made by `origin`.
    pub async fn put(
        &self,
        key: &Key,
        content: &str,
        expected: Option<u64>,
        origin: Origin,
    ) -> Result<Written, ContentError> {
        validate_content(content)?;
        let written = self.content.put(key, content, expected).await?;
        self.keep(origin, key, Some(&written.item.content));
        let what = if written.created {
            "created"
        } else {
            "updated"
        };
        self.engine.changed(
            key,
            written.item.version,
            &format!("{key} {what} through the API"),
        );
        for warning in &written.warnings {
            self.engine.warn(Some(key), warning);
        }
        Ok(written)
    }

    /// Deletes an item, if its version is `expected` when given; returns
    /// the deleted version. Its file goes only if nobody edited it.
    pub async fn delete(
        &self,
        key: &Key,
        expected: Option<u64>,
        origin: Origin,
    ) -> Result<u64, ContentError> {
        let version = self.content.delete(key, expected).await?;
        self.keep(origin, key, None);
        self.engine
            .changed(key, 0, &format!("{key} deleted through the API"));
        Ok(version)
    }

    /// Brings `key` back to its version at commit `rev` through the
    /// normal write path: compare-and-swap against `expected` (or the
    /// version it is at when read), the content's rules, the file
    /// following. Returns the version restored and the write.
    pub async fn restore(
        &self,
        key: &Key,
        rev: &str,
        expected: Option<u64>,
        actor: String,
    ) -> Result<(Version, Written), ContentError> {
        let (version, content) = self
            .history
            .show(&Subject::Content(key.clone()), rev)
            .await
            .map_err(|err| match err {
                HistoryError::NotFound(message) => ContentError::NotFound(message),
                HistoryError::Invalid { field, reason } => ContentError::Invalid { field, reason },
                HistoryError::Off => ContentError::Refused(err.to_string()),
                HistoryError::Failed(message) => ContentError::Storage(message),
            })?;
        let expected = match expected {
            Some(expected) => expected,
            None => match self.content.get(key).await {
                Ok(item) => item.version,
                Err(ContentError::NotFound(_)) => 0,
                Err(err) => return Err(err),
            },
        };
        let origin = Origin {
            source: Source::Restore,
            actor,
            note: Some(format!("to {}", short(&version.rev))),
        };
        let written = self.put(key, &content, Some(expected), origin).await?;
        Ok((version, written))
    }

    fn keep(&self, origin: Origin, key: &Key, content: Option<&str>) {
        self.history.record(Batch {
            origin,
            changes: vec![Change {
                path: self.engine.history_path(key),
                content: content.map(str::to_owned),
            }],
        });
    }

    /// Mirrors a collection on disk (see [`SyncEngine::export`]).
    pub async fn export(
        &self,
        kind: Kind,
        collection: &str,
    ) -> Result<ExportSummary, ContentError> {
        names::validate(kind.collection_field(), collection)?;
        self.engine.export(kind, collection).await
    }

    /// Looks at every file and every synced entity.
    pub async fn rescan(&self) -> Result<RescanSummary, ContentError> {
        self.engine.rescan().await
    }

    /// Pauses the watcher for a user; returns whether it was paused.
    pub async fn pause(&self) -> Result<bool, ContentError> {
        self.engine.pause().await
    }

    /// Resumes the watcher.
    pub async fn resume(&self) -> Result<Resumed, ContentError> {
        self.engine.resume().await
    }

    /// The watcher's state and the tallies.
    pub fn status(&self) -> SyncStatus {
        self.status_with(self.engine.board().tally(false).tally)
    }

    /// The watcher's state now, with `tally` (of an event stream's
    /// snapshot).
    pub fn status_with(&self, tally: Tally) -> SyncStatus {
        SyncStatus {
            engine: self.engine.status(),
            tally,
            backend: self.content.backend(),
        }
    }

    /// The group directory of template `title`.
    pub fn template_group(&self, title: &str) -> String {
        self.engine.template_group(title)
    }

    /// Every open conflict, oldest first.
    pub async fn conflicts(&self) -> Result<Vec<Conflict>, ContentError> {
        self.engine.conflicts().await
    }

    /// Conflict `id` with the content of both sides.
    pub async fn conflict_sides(&self, id: &str) -> Result<ConflictSides, ContentError> {
        conflict_id(id)?;
        let conflict = self
            .engine
            .conflicts()
            .await?
            .into_iter()
            .find(|conflict| conflict.id == id)
            .ok_or_else(|| ContentError::NotFound(format!("no conflict {id:?}")))?;
        let copy = conflict.copy_path.clone();
        let disk = match tokio::task::spawn_blocking(move || file::read(&copy)).await {
            Ok(Disk::Content { text, .. }) => Ok(text),
            Ok(Disk::Empty) => Ok(String::new()),
            Ok(Disk::Missing) => Err("the conflict copy is gone".to_owned()),
            Ok(Disk::Unreadable(reason) | Disk::Rejected(reason)) => Err(reason),
            Ok(Disk::Changing) => Err("the conflict copy is being written".to_owned()),
            Err(err) => Err(format!("reading the conflict copy failed: {err}")),
        };
        let database = match self.content.get(&conflict.key).await {
            Ok(item) => Some(item.content),
            Err(ContentError::NotFound(_)) => None,
            Err(err) => return Err(err),
        };
        Ok(ConflictSides {
            conflict,
            disk,
            database,
        })
    }

    /// Resolves conflict `id`, keeping the disk side or the database side.
    pub async fn resolve(&self, id: &str, keep_disk: bool) -> Result<Resolved, ContentError> {
        conflict_id(id)?;
        self.engine.resolve(id, keep_disk).await
    }

    /// Subscribes to sync events (see [`crate::bus`]).
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        self.engine.board().subscribe(since)
    }

    /// The tallies now, for a subscriber that fell behind.
    pub fn resync(&self) -> TallySnapshot {
        self.engine.board().tally(true)
    }
}

/// A conflict id must be given.
fn conflict_id(id: &str) -> Result<(), ContentError> {
    if id.is_empty() {
        return Err(ContentError::Invalid {
            field: "conflict_id",
            reason: "is required".to_owned(),
        });
    }
    Ok(())
}
