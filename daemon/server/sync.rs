//! The Sync service: each RPC parses its request ([`convert::sync`]),
//! calls the sync service of the domain, and converts the answer.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, codegen::BoxStream};

use outpost::proto::v1::{self as pb, sync_server::Sync};

use super::{
    access::caller,
    convert::sync as to,
    stream::{self, Feed},
};
use crate::history::{Origin, Source};
use crate::sync::{
    ContentStore, Kind,
    events::{SyncEvent, TallySnapshot},
    service::SyncService,
};

/// Serves `outpost.v1.Sync` over a content store.
pub(crate) struct SyncApi<C> {
    pub(crate) sync: Arc<SyncService<C>>,
    /// Cancelled at shutdown: ends every stream.
    pub(crate) stop: CancellationToken,
}

type Reply<T> = Result<Response<T>, Status>;

/// A write through the API, by whoever made the call.
fn api_origin<T>(request: &Request<T>) -> Origin {
    Origin {
        source: Source::Api,
        actor: caller(request),
        note: None,
    }
}

/// WatchSyncEvents: the sync board's events of the kinds a client asked.
struct EventFeed<C> {
    sync: Arc<SyncService<C>>,
    kinds: Vec<i32>,
}

impl<C: ContentStore> Feed for EventFeed<C> {
    type Event = SyncEvent;
    type Snapshot = TallySnapshot;
    type Message = pb::WatchSyncEventsResponse;

    fn snapshot(&self, snapshot: &TallySnapshot) -> pb::WatchSyncEventsResponse {
        let status = self.sync.status_with(snapshot.tally.clone());
        let root = self.sync.engine().root();
        to::status_snapshot(snapshot.revision, snapshot.resync, to::status(status, root))
    }

    fn events(&self, events: &[Arc<SyncEvent>]) -> Option<pb::WatchSyncEventsResponse> {
        to::events(events, &self.kinds)
    }

    fn resync(&self) -> TallySnapshot {
        self.sync.resync()
    }
}

#[tonic::async_trait]
impl<C: ContentStore> Sync for SyncApi<C> {
    async fn list_template_sets(
        &self,
        _: Request<pb::ListTemplateSetsRequest>,
    ) -> Reply<pb::ListTemplateSetsResponse> {
        let sets = self.sync.collections(Kind::Template).await?;
        Ok(Response::new(pb::ListTemplateSetsResponse {
            sets: sets.into_iter().map(to::template_set).collect(),
        }))
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Reply<pb::ListTemplatesResponse> {
        let request = request.into_inner();
        let items = self
            .sync
            .items(Kind::Template, &request.set, request.include_content)
            .await?;
        Ok(Response::new(pb::ListTemplatesResponse {
            templates: items
                .into_iter()
                .map(|item| {
                    let group = self.sync.template_group(&item.key.name);
                    to::template(item, group)
                })
                .collect(),
        }))
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Reply<pb::GetTemplateResponse> {
        let key = to::template_key(request.into_inner().key)?;
        let item = self.sync.get(&key).await?;
        let group = self.sync.template_group(&key.name);
        Ok(Response::new(pb::GetTemplateResponse {
            template: Some(to::template(item, group)),
        }))
    }

    async fn put_template(
        &self,
        request: Request<pb::PutTemplateRequest>,
    ) -> Reply<pb::PutTemplateResponse> {
        let origin = api_origin(&request);
        let request = request.into_inner();
        let key = to::template_key(request.key)?;
        let written = self
            .sync
            .put(&key, &request.content, request.expected_version, origin)
            .await?;
        let group = self.sync.template_group(&key.name);
        Ok(Response::new(pb::PutTemplateResponse {
            template: Some(to::template(written.item, group)),
            created: written.created,
        }))
    }

    async fn delete_template(
        &self,
        request: Request<pb::DeleteTemplateRequest>,
    ) -> Reply<pb::DeleteTemplateResponse> {
        let origin = api_origin(&request);
        let request = request.into_inner();
        let key = to::template_key(request.key)?;
        let deleted_version = self
            .sync
            .delete(&key, request.expected_version, origin)
            .await?;
        Ok(Response::new(pb::DeleteTemplateResponse {
            deleted_version,
        }))
    }

    async fn list_themes(
        &self,
        _: Request<pb::ListThemesRequest>,
    ) -> Reply<pb::ListThemesResponse> {
        let themes = self.sync.collections(Kind::Stylesheet).await?;
        Ok(Response::new(pb::ListThemesResponse {
            themes: themes.into_iter().map(to::theme).collect(),
        }))
    }

    async fn list_stylesheets(
        &self,
        request: Request<pb::ListStylesheetsRequest>,
    ) -> Reply<pb::ListStylesheetsResponse> {
        let request = request.into_inner();
        let items = self
            .sync
            .items(Kind::Stylesheet, &request.theme, request.include_content)
            .await?;
        Ok(Response::new(pb::ListStylesheetsResponse {
            stylesheets: items.into_iter().map(to::stylesheet).collect(),
        }))
    }

    async fn get_stylesheet(
        &self,
        request: Request<pb::GetStylesheetRequest>,
    ) -> Reply<pb::GetStylesheetResponse> {
        let key = to::stylesheet_key(request.into_inner().key)?;
        let item = self.sync.get(&key).await?;
        Ok(Response::new(pb::GetStylesheetResponse {
            stylesheet: Some(to::stylesheet(item)),
        }))
    }

    async fn put_stylesheet(
        &self,
        request: Request<pb::PutStylesheetRequest>,
    ) -> Reply<pb::PutStylesheetResponse> {
        let origin = api_origin(&request);
        let request = request.into_inner();
        let key = to::stylesheet_key(request.key)?;
        let written = self
            .sync
            .put(&key, &request.content, request.expected_version, origin)
            .await?;
        Ok(Response::new(pb::PutStylesheetResponse {
            stylesheet: Some(to::stylesheet(written.item)),
            created: written.created,
        }))
    }

    async fn delete_stylesheet(
        &self,
        request: Request<pb::DeleteStylesheetRequest>,
    ) -> Reply<pb::DeleteStylesheetResponse> {
        let origin = api_origin(&request);
        let request = request.into_inner();
        let key = to::stylesheet_key(request.key)?;
        let deleted_version = self
            .sync
            .delete(&key, request.expected_version, origin)
            .await?;
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
        let feed = EventFeed {
            sync: self.sync.clone(),
            kinds: to::event_kinds(&request.kinds)?,
        };
        let since = Some(request.since_revision).filter(|&revision| revision > 0);
        let subscription = self.sync.subscribe(since);
        Ok(Response::new(stream::events(
            subscription,
            since.unwrap_or(0),
            feed,
            self.stop.clone(),
        )))
    }

    async fn export_templates(
        &self,
        request: Request<pb::ExportTemplatesRequest>,
    ) -> Reply<pb::ExportTemplatesResponse> {
        let set = request.into_inner().set;
        let summary = self.sync.export(Kind::Template, &set).await?;
        Ok(Response::new(pb::ExportTemplatesResponse {
            summary: Some(to::export_summary(summary)),
        }))
    }

    async fn export_stylesheets(
        &self,
        request: Request<pb::ExportStylesheetsRequest>,
    ) -> Reply<pb::ExportStylesheetsResponse> {
        let theme = request.into_inner().theme;
        let summary = self.sync.export(Kind::Stylesheet, &theme).await?;
        Ok(Response::new(pb::ExportStylesheetsResponse {
            summary: Some(to::export_summary(summary)),
        }))
    }

    async fn rescan(&self, _: Request<pb::RescanRequest>) -> Reply<pb::RescanResponse> {
        Ok(Response::new(to::rescan(self.sync.rescan().await?)))
    }

    async fn pause_watcher(
        &self,
        _: Request<pb::PauseWatcherRequest>,
    ) -> Reply<pb::PauseWatcherResponse> {
        let was_paused = self.sync.pause().await?;
        Ok(Response::new(pb::PauseWatcherResponse {
            state: to::watcher_state(self.sync.status().engine.state).into(),
            was_paused,
        }))
    }

    async fn resume_watcher(
        &self,
        _: Request<pb::ResumeWatcherRequest>,
    ) -> Reply<pb::ResumeWatcherResponse> {
        let resumed = self.sync.resume().await?;
        Ok(Response::new(pb::ResumeWatcherResponse {
            state: to::watcher_state(self.sync.status().engine.state).into(),
            queued_changes: resumed.queued as u32,
        }))
    }

    async fn get_sync_status(
        &self,
        _: Request<pb::GetSyncStatusRequest>,
    ) -> Reply<pb::GetSyncStatusResponse> {
        let root = self.sync.engine().root();
        Ok(Response::new(to::status(self.sync.status(), root)))
    }

    async fn list_conflicts(
        &self,
        _: Request<pb::ListConflictsRequest>,
    ) -> Reply<pb::ListConflictsResponse> {
        let conflicts = self.sync.conflicts().await?;
        Ok(Response::new(pb::ListConflictsResponse {
            conflicts: conflicts.into_iter().map(to::conflict).collect(),
        }))
    }

    async fn get_conflict(
        &self,
        request: Request<pb::GetConflictRequest>,
    ) -> Reply<pb::GetConflictResponse> {
        let request = request.into_inner();
        let id = to::conflict_id(&request.conflict_id)?;
        let sides = self.sync.conflict_sides(id).await?;
        Ok(Response::new(to::conflict_sides(sides)))
    }

    async fn resolve_conflict(
        &self,
        request: Request<pb::ResolveConflictRequest>,
    ) -> Reply<pb::ResolveConflictResponse> {
        let request = request.into_inner();
        let keep_disk = to::keeps_disk(request.resolution)?;
        let id = to::conflict_id(&request.conflict_id)?;
        let resolved = self.sync.resolve(id, keep_disk).await?;
        Ok(Response::new(to::resolved(&resolved.key, resolved.version)))
    }
}
