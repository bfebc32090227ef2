//! gRPC front of the Sync service: the content RPCs (the "database side")
//! over a [`ContentStore`], and the watcher, reconciler and export through
//! the [`SyncEngine`].

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, codegen::BoxStream};

use super::timestamp;
use outpost::proto::v1::{self as pb, sync_server::Sync};

use crate::sync::{
    Conflict, ContentError, ContentStore, Item, Key, Kind,
    engine::{RescanSummary, SyncEngine, WatcherState},
    events::{EventKind, Start, SyncEvent, Tally},
    export::ExportSummary,
    ledger::Ledger,
    names, template_group, validate_content,
};

/// Most events sent in one message of a sync event stream.
const EVENT_BATCH: usize = 256;

/// Serves `outpost.v1.Sync` over a content store.
pub(crate) struct SyncApi<S, L> {
    /// The database side.
    store: Arc<S>,
    /// Watcher, reconciler and export.
    engine: Arc<SyncEngine<S, L>>,
    /// Ends event streams when the daemon stops.
    stop: CancellationToken,
}

impl<S, L> SyncApi<S, L> {
    pub(crate) fn new(
        store: Arc<S>,
        engine: Arc<SyncEngine<S, L>>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            store,
            engine,
            stop,
        }
    }
}

fn summary(summary: ExportSummary) -> pb::ExportSummary {
    pb::ExportSummary {
        written: summary.written,
        unchanged: summary.unchanged,
        conflicts: summary.conflicts,
        elapsed: Some(summary.elapsed.into()),
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// Maps a content error to its gRPC status.
fn status(err: ContentError) -> Status {
    let message = err.to_string();
    match err {
        ContentError::Invalid { .. } => Status::invalid_argument(message),
        ContentError::NotFound(_) => Status::not_found(message),
        ContentError::VersionMismatch { .. } => Status::aborted(message),
        ContentError::Refused(_) => Status::failed_precondition(message),
        ContentError::Storage(_) => Status::unavailable(message),
    }
}

/// A validated key from the two names of a request.
fn key(
    kind: Kind,
    fields: [&'static str; 2],
    collection: String,
    name: String,
) -> Result<Key, Status> {
    names::validate(fields[0], &collection).map_err(status)?;
    names::validate(fields[1], &name).map_err(status)?;
    Ok(Key {
        kind,
        collection,
        name,
    })
}

fn template_key(key_message: Option<pb::TemplateKey>) -> Result<Key, Status> {
    let message = key_message.ok_or_else(|| Status::invalid_argument("key: is required"))?;
    let key = key(
        Kind::Template,
        ["key.set", "key.title"],
        message.set,
        message.title,
    )?;
    // The group becomes a directory name too.
    let group = template_group(&key.name);
    if crate::sync::layout::is_ignored(group) {
        return Err(Status::invalid_argument(format!(
            "key.title: its group {group:?} (the part before the first '_') looks like an editor's temporary file name, which sync ignores"
        )));
    }
    Ok(key)
}

fn stylesheet_key(key_message: Option<pb::StylesheetKey>) -> Result<Key, Status> {
    let message = key_message.ok_or_else(|| Status::invalid_argument("key: is required"))?;
    key(
        Kind::Stylesheet,
        ["key.theme", "key.name"],
        message.theme,
        message.name,
    )
}

fn template(item: Item) -> pb::Template {
    pb::Template {
        group: template_group(&item.key.name).to_owned(),
        key: Some(pb::TemplateKey {
            set: item.key.collection,
            title: item.key.name,
        }),
        content: item.content,
        version: item.version,
        updated_at: Some(timestamp(item.updated_at)),
        size_bytes: item.size,
        sha256: item.sha256,
    }
}

fn stylesheet(item: Item) -> pb::Stylesheet {
    pb::Stylesheet {
        key: Some(pb::StylesheetKey {
            theme: item.key.collection,
            name: item.key.name,
        }),
        content: item.content,
        version: item.version,
        updated_at: Some(timestamp(item.updated_at)),
        size_bytes: item.size,
        sha256: item.sha256,
    }
}

impl<S: ContentStore, L: Ledger> SyncApi<S, L> {
    async fn put(
        &self,
        key: &Key,
        content: &str,
        expected: Option<u64>,
    ) -> Result<(Item, bool), Status> {
        validate_content(content).map_err(status)?;
        let (item, created) = self
            .store
            .put(key, content, expected)
            .await
            .map_err(status)?;
        let what = if created { "created" } else { "updated" };
        self.engine
            .content_changed(key, item.version, &format!("{key} {what} through the API"));
        Ok((item, created))
    }

    async fn delete(&self, key: &Key, expected: Option<u64>) -> Result<u64, Status> {
        let version = self.store.delete(key, expected).await.map_err(status)?;
        self.engine
            .content_changed(key, 0, &format!("{key} deleted through the API"));
        Ok(version)
    }

    async fn export(
        &self,
        kind: Kind,
        field: &'static str,
        collection: &str,
    ) -> Result<pb::ExportSummary, Status> {
        names::validate(field, collection).map_err(status)?;
        self.engine
            .export(kind, collection)
            .await
            .map(summary)
            .map_err(status)
    }

    async fn items(
        &self,
        kind: Kind,
        field: &'static str,
        collection: &str,
        with_content: bool,
    ) -> Result<Vec<Item>, Status> {
        names::validate(field, collection).map_err(status)?;
        self.store
            .items(kind, collection, with_content)
            .await
            .map_err(status)
    }
}

#[tonic::async_trait]
impl<S: ContentStore, L: Ledger> Sync for SyncApi<S, L> {
    async fn list_template_sets(
        &self,
        _: Request<pb::ListTemplateSetsRequest>,
    ) -> Reply<pb::ListTemplateSetsResponse> {
        let sets = self
            .store
            .collections(Kind::Template)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListTemplateSetsResponse {
            sets: sets
                .into_iter()
                .map(|set| pb::TemplateSet {
                    name: set.name,
                    template_count: set.items,
                    updated_at: set.updated_at.map(timestamp),
                })
                .collect(),
        }))
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Reply<pb::ListTemplatesResponse> {
        let request = request.into_inner();
        let items = self
            .items(Kind::Template, "set", &request.set, request.include_content)
            .await?;
        Ok(Response::new(pb::ListTemplatesResponse {
            templates: items.into_iter().map(template).collect(),
        }))
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Reply<pb::GetTemplateResponse> {
        let key = template_key(request.into_inner().key)?;
        let item = self.store.get(&key).await.map_err(status)?;
        Ok(Response::new(pb::GetTemplateResponse {
            template: Some(template(item)),
        }))
    }

    async fn put_template(
        &self,
        request: Request<pb::PutTemplateRequest>,
    ) -> Reply<pb::PutTemplateResponse> {
        let request = request.into_inner();
        let key = template_key(request.key)?;
        let (item, created) = self
            .put(&key, &request.content, request.expected_version)
            .await?;
        Ok(Response::new(pb::PutTemplateResponse {
            template: Some(template(item)),
            created,
        }))
    }

    async fn delete_template(
        &self,
        request: Request<pb::DeleteTemplateRequest>,
    ) -> Reply<pb::DeleteTemplateResponse> {
        let request = request.into_inner();
        let key = template_key(request.key)?;
        let deleted_version = self.delete(&key, request.expected_version).await?;
        Ok(Response::new(pb::DeleteTemplateResponse {
            deleted_version,
        }))
    }

    async fn list_themes(
        &self,
        _: Request<pb::ListThemesRequest>,
    ) -> Reply<pb::ListThemesResponse> {
        let themes = self
            .store
            .collections(Kind::Stylesheet)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListThemesResponse {
            themes: themes
                .into_iter()
                .map(|theme| pb::Theme {
                    name: theme.name,
                    stylesheet_count: theme.items,
                    updated_at: theme.updated_at.map(timestamp),
                })
                .collect(),
        }))
    }

    async fn list_stylesheets(
        &self,
        request: Request<pb::ListStylesheetsRequest>,
    ) -> Reply<pb::ListStylesheetsResponse> {
        let request = request.into_inner();
        let items = self
            .items(
                Kind::Stylesheet,
                "theme",
                &request.theme,
                request.include_content,
            )
            .await?;
        Ok(Response::new(pb::ListStylesheetsResponse {
            stylesheets: items.into_iter().map(stylesheet).collect(),
        }))
    }

    async fn get_stylesheet(
        &self,
        request: Request<pb::GetStylesheetRequest>,
    ) -> Reply<pb::GetStylesheetResponse> {
        let key = stylesheet_key(request.into_inner().key)?;
        let item = self.store.get(&key).await.map_err(status)?;
        Ok(Response::new(pb::GetStylesheetResponse {
            stylesheet: Some(stylesheet(item)),
        }))
    }

    async fn put_stylesheet(
        &self,
        request: Request<pb::PutStylesheetRequest>,
    ) -> Reply<pb::PutStylesheetResponse> {
        let request = request.into_inner();
        let key = stylesheet_key(request.key)?;
        let (item, created) = self
            .put(&key, &request.content, request.expected_version)
            .await?;
        Ok(Response::new(pb::PutStylesheetResponse {
            stylesheet: Some(stylesheet(item)),
            created,
        }))
    }

    async fn delete_stylesheet(
        &self,
        request: Request<pb::DeleteStylesheetRequest>,
    ) -> Reply<pb::DeleteStylesheetResponse> {
        let request = request.into_inner();
        let key = stylesheet_key(request.key)?;
        let deleted_version = self.delete(&key, request.expected_version).await?;
        Ok(Response::new(pb::DeleteStylesheetResponse {
            deleted_version,
        }))
    }

    type WatchSyncEventsStream = BoxStream<pb::WatchSyncEventsResponse>;

    async fn watch_sync_events(
        &self,
        request: Request<pb::WatchSyncEventsRequest>,
    ) -> Reply<Self::WatchSyncEventsStream> {
        let request = request.into_inner();
        let mut kinds = Vec::new();
        for &kind in &request.kinds {
            match pb::SyncEventKind::try_from(kind) {
                Ok(pb::SyncEventKind::Unspecified) | Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "kinds: {kind} is not a sync event kind"
                    )));
                }
                Ok(kind) => kinds.push(kind as i32),
            }
        }
        let since = Some(request.since_revision).filter(|&revision| revision > 0);
        let (sender, receiver) = mpsc::channel(16);
        let engine = self.engine.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = sender.closed() => {}
                () = pump_events(&engine, since, &kinds, &sender) => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn export_templates(
        &self,
        request: Request<pb::ExportTemplatesRequest>,
    ) -> Reply<pb::ExportTemplatesResponse> {
        let summary = self
            .export(Kind::Template, "set", &request.into_inner().set)
            .await?;
        Ok(Response::new(pb::ExportTemplatesResponse {
            summary: Some(summary),
        }))
    }

    async fn export_stylesheets(
        &self,
        request: Request<pb::ExportStylesheetsRequest>,
    ) -> Reply<pb::ExportStylesheetsResponse> {
        let summary = self
            .export(Kind::Stylesheet, "theme", &request.into_inner().theme)
            .await?;
        Ok(Response::new(pb::ExportStylesheetsResponse {
            summary: Some(summary),
        }))
    }

    async fn rescan(&self, _: Request<pb::RescanRequest>) -> Reply<pb::RescanResponse> {
        let summary: RescanSummary = self.engine.rescan().await.map_err(status)?;
        Ok(Response::new(pb::RescanResponse {
            scanned: summary.scanned,
            imported: summary.imported,
            exported: summary.exported,
            conflicts: summary.conflicts,
            skipped: summary.skipped,
            elapsed: Some(summary.elapsed.into()),
        }))
    }

    async fn pause_watcher(
        &self,
        _: Request<pb::PauseWatcherRequest>,
    ) -> Reply<pb::PauseWatcherResponse> {
        let was_paused = self.engine.pause();
        Ok(Response::new(pb::PauseWatcherResponse {
            state: watcher_state(self.engine.watcher_state()) as i32,
            was_paused,
        }))
    }

    async fn resume_watcher(
        &self,
        _: Request<pb::ResumeWatcherRequest>,
    ) -> Reply<pb::ResumeWatcherResponse> {
        let queued_changes = self.engine.dirty() as u32;
        self.engine.resume();
        Ok(Response::new(pb::ResumeWatcherResponse {
            state: watcher_state(self.engine.watcher_state()) as i32,
            queued_changes,
        }))
    }

    async fn get_sync_status(
        &self,
        _: Request<pb::GetSyncStatusRequest>,
    ) -> Reply<pb::GetSyncStatusResponse> {
        let (_, tally) = self.engine.board().tally();
        Ok(Response::new(sync_status(&self.engine, tally)))
    }

    async fn list_conflicts(
        &self,
        _: Request<pb::ListConflictsRequest>,
    ) -> Reply<pb::ListConflictsResponse> {
        let conflicts = self.engine.conflicts().await.map_err(status)?;
        Ok(Response::new(pb::ListConflictsResponse {
            conflicts: conflicts.into_iter().map(conflict).collect(),
        }))
    }

    async fn resolve_conflict(
        &self,
        request: Request<pb::ResolveConflictRequest>,
    ) -> Reply<pb::ResolveConflictResponse> {
        let request = request.into_inner();
        if request.conflict_id.is_empty() {
            return Err(Status::invalid_argument("conflict_id: is required"));
        }
        let keep_disk = match pb::Resolution::try_from(request.resolution) {
            Ok(pb::Resolution::KeepDisk) => true,
            Ok(pb::Resolution::KeepDatabase) => false,
            _ => {
                return Err(Status::invalid_argument(
                    "resolution: must be KEEP_DISK or KEEP_DATABASE",
                ));
            }
        };
        let (key, version) = self
            .engine
            .resolve(&request.conflict_id, keep_disk)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ResolveConflictResponse {
            key: Some(content_key(&key)),
            version,
        }))
    }
}

fn watcher_state(state: WatcherState) -> pb::WatcherState {
    match state {
        WatcherState::Watching => pb::WatcherState::Watching,
        WatcherState::Paused => pb::WatcherState::Paused,
        WatcherState::Stopped => pb::WatcherState::Stopped,
    }
}

fn sync_status<S: ContentStore, L: Ledger>(
    engine: &SyncEngine<S, L>,
    tally: Tally,
) -> pb::GetSyncStatusResponse {
    let gate = engine.gate();
    pb::GetSyncStatusResponse {
        state: watcher_state(engine.watcher_state()) as i32,
        root: engine.root().display().to_string(),
        paused_by_user: gate.paused_by_user(),
        active_exports: gate.active_exports(),
        dirty_count: engine.dirty() as u32,
        last_rescan_at: tally.last_rescan_at.map(timestamp),
        counters: Some(pb::SyncCounters {
            synced: tally.synced,
            skipped_empty: tally.skipped_empty,
            rejected: tally.rejected,
            conflicts: tally.conflicts,
        }),
        open_conflicts: tally.open_conflicts,
        last_error: tally.last_error.unwrap_or_default(),
    }
}

fn content_key(key: &Key) -> pb::ContentKey {
    let key_message = match key.kind {
        Kind::Template => pb::content_key::Key::Template(pb::TemplateKey {
            set: key.collection.clone(),
            title: key.name.clone(),
        }),
        Kind::Stylesheet => pb::content_key::Key::Stylesheet(pb::StylesheetKey {
            theme: key.collection.clone(),
            name: key.name.clone(),
        }),
    };
    pb::ContentKey {
        key: Some(key_message),
    }
}

fn conflict(conflict: Conflict) -> pb::Conflict {
    pb::Conflict {
        key: Some(content_key(&conflict.key)),
        id: conflict.id,
        path: conflict.path.display().to_string(),
        conflict_copy_path: conflict.copy_path.display().to_string(),
        database_version: conflict.db_version,
        database_sha256: conflict.db_sha256,
        disk_sha256: conflict.disk_sha256,
        detected_at: Some(timestamp(conflict.detected_at)),
    }
}

fn event_kind(kind: EventKind) -> pb::SyncEventKind {
    match kind {
        EventKind::Imported => pb::SyncEventKind::Imported,
        EventKind::Exported => pb::SyncEventKind::Exported,
        EventKind::SkippedEmpty => pb::SyncEventKind::SkippedEmpty,
        EventKind::Rejected => pb::SyncEventKind::Rejected,
        EventKind::Conflict => pb::SyncEventKind::Conflict,
        EventKind::ConflictResolved => pb::SyncEventKind::ConflictResolved,
        EventKind::Orphaned => pb::SyncEventKind::Orphaned,
        EventKind::Paused => pb::SyncEventKind::Paused,
        EventKind::Resumed => pb::SyncEventKind::Resumed,
        EventKind::Rescanned => pb::SyncEventKind::Rescanned,
        EventKind::ExportFinished => pb::SyncEventKind::ExportFinished,
        EventKind::WatcherError => pb::SyncEventKind::WatcherError,
        EventKind::ContentChanged => pb::SyncEventKind::ContentChanged,
    }
}

fn sync_event(event: &SyncEvent) -> pb::SyncEvent {
    let notice = &event.notice;
    pb::SyncEvent {
        revision: event.revision,
        time: Some(timestamp(event.time)),
        kind: event_kind(notice.kind) as i32,
        key: notice.key.as_ref().map(content_key),
        path: notice
            .path
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_default(),
        version: notice.version,
        message: notice.message.clone(),
    }
}

type EventSender = mpsc::Sender<Result<pb::WatchSyncEventsResponse, Status>>;

/// Sends a snapshot of the status at `revision`; false when the client
/// is gone.
async fn send_snapshot<S: ContentStore, L: Ledger>(
    sender: &EventSender,
    engine: &SyncEngine<S, L>,
    revision: u64,
    tally: Tally,
    resync: bool,
) -> bool {
    let kind = if resync {
        pb::SyncSnapshotKind::Resync
    } else {
        pb::SyncSnapshotKind::Initial
    };
    let snapshot = pb::SyncSnapshot {
        revision,
        kind: kind as i32,
        status: Some(sync_status(engine, tally)),
    };
    let message = pb::WatchSyncEventsResponse {
        payload: Some(pb::watch_sync_events_response::Payload::Snapshot(snapshot)),
    };
    sender.send(Ok(message)).await.is_ok()
}

/// Sends the events of `kinds` (all when empty); false when the client
/// is gone.
async fn send_events(
    sender: &EventSender,
    events: &[std::sync::Arc<SyncEvent>],
    kinds: &[i32],
) -> bool {
    let events: Vec<pb::SyncEvent> = events
        .iter()
        .map(|event| sync_event(event))
        .filter(|event| kinds.is_empty() || kinds.contains(&event.kind))
        .collect();
    if events.is_empty() {
        return true;
    }
    let message = pb::WatchSyncEventsResponse {
        payload: Some(pb::watch_sync_events_response::Payload::Events(
            pb::SyncEvents { events },
        )),
    };
    sender.send(Ok(message)).await.is_ok()
}

/// Streams a subscription: its start, then live events in batches; a
/// client that falls behind the bus gets a RESYNC snapshot.
async fn pump_events<S: ContentStore, L: Ledger>(
    engine: &SyncEngine<S, L>,
    since: Option<u64>,
    kinds: &[i32],
    sender: &EventSender,
) {
    let subscription = engine.board().subscribe(since);
    let mut events = subscription.events;
    let mut last = since.unwrap_or(0);
    match subscription.start {
        Start::Snapshot {
            revision,
            tally,
            resync,
        } => {
            last = revision;
            if !send_snapshot(sender, engine, revision, tally, resync).await {
                return;
            }
        }
        Start::Replay(replay) => {
            for chunk in replay.chunks(EVENT_BATCH) {
                last = chunk.last().map_or(last, |event| event.revision);
                if !send_events(sender, chunk, kinds).await {
                    return;
                }
            }
        }
    }
    while let Some(batch) = crate::bus::next_batch(&mut events, &mut last, EVENT_BATCH).await {
        if !send_events(sender, &batch.events, kinds).await {
            return;
        }
        if batch.lagged {
            let (revision, tally) = engine.board().tally();
            last = revision;
            if !send_snapshot(sender, engine, revision, tally, true).await {
                return;
            }
        }
    }
}
