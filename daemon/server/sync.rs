//! gRPC front of the Sync service. The content RPCs (the "database side")
//! work against a [`ContentStore`]; export, the watcher and the reconciler
//! do not exist yet, and their RPCs answer UNIMPLEMENTED naming them.

use std::{path::PathBuf, sync::Arc};

use tonic::{Request, Response, Status, codegen::BoxStream};

use super::{not_yet, timestamp};
use crate::{
    proto::v1::{self as pb, sync_server::Sync},
    store::Store,
    sync::{
        ContentError, ContentStore, Item, Key, Kind,
        export::{ExportSummary, export},
        gate::PauseGate,
        names, template_group, validate_content,
    },
};

/// The file watcher.
const WATCHER: &str = "the sync file watcher";
/// Three-way reconciliation.
const RECONCILER: &str = "the sync reconciler";

/// Serves `outpost.v1.Sync` over a content store.
pub(crate) struct SyncApi<S> {
    /// The database side.
    store: Arc<S>,
    /// The daemon's own database, which keeps the sync base state.
    state: Arc<Store>,
    /// The sync root.
    root: PathBuf,
    /// Pauses the watcher while exports run.
    gate: PauseGate,
}

impl<S> SyncApi<S> {
    pub(crate) fn new(store: Arc<S>, state: Arc<Store>, root: PathBuf) -> Self {
        Self {
            store,
            state,
            root,
            gate: PauseGate::default(),
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
    key(
        Kind::Template,
        ["key.set", "key.title"],
        message.set,
        message.title,
    )
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

impl<S: ContentStore> SyncApi<S> {
    async fn put(
        &self,
        key: &Key,
        content: &str,
        expected: Option<u64>,
    ) -> Result<(Item, bool), Status> {
        validate_content(content).map_err(status)?;
        self.store.put(key, content, expected).await.map_err(status)
    }

    async fn export(
        &self,
        kind: Kind,
        field: &'static str,
        collection: &str,
    ) -> Result<pb::ExportSummary, Status> {
        names::validate(field, collection).map_err(status)?;
        export(
            &*self.store,
            &self.state,
            &self.gate,
            &self.root,
            kind,
            collection,
        )
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
impl<S: ContentStore> Sync for SyncApi<S> {
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
        let deleted_version = self
            .store
            .delete(&key, request.expected_version)
            .await
            .map_err(status)?;
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
        let deleted_version = self
            .store
            .delete(&key, request.expected_version)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteStylesheetResponse {
            deleted_version,
        }))
    }

    type WatchSyncEventsStream = BoxStream<pb::WatchSyncEventsResponse>;

    async fn watch_sync_events(
        &self,
        _: Request<pb::WatchSyncEventsRequest>,
    ) -> Reply<Self::WatchSyncEventsStream> {
        Err(not_yet("WatchSyncEvents", WATCHER))
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
        Err(not_yet("Rescan", WATCHER))
    }

    async fn pause_watcher(
        &self,
        _: Request<pb::PauseWatcherRequest>,
    ) -> Reply<pb::PauseWatcherResponse> {
        Err(not_yet("PauseWatcher", WATCHER))
    }

    async fn resume_watcher(
        &self,
        _: Request<pb::ResumeWatcherRequest>,
    ) -> Reply<pb::ResumeWatcherResponse> {
        Err(not_yet("ResumeWatcher", WATCHER))
    }

    async fn get_sync_status(
        &self,
        _: Request<pb::GetSyncStatusRequest>,
    ) -> Reply<pb::GetSyncStatusResponse> {
        Err(not_yet("GetSyncStatus", WATCHER))
    }

    async fn list_conflicts(
        &self,
        _: Request<pb::ListConflictsRequest>,
    ) -> Reply<pb::ListConflictsResponse> {
        Err(not_yet("ListConflicts", RECONCILER))
    }

    async fn resolve_conflict(
        &self,
        _: Request<pb::ResolveConflictRequest>,
    ) -> Reply<pb::ResolveConflictResponse> {
        Err(not_yet("ResolveConflict", RECONCILER))
    }
}
