//! gRPC front of the Sync service. Nothing of content sync exists yet, so
//! every RPC answers UNIMPLEMENTED naming what it is waiting for.

use tonic::{Request, Response, Status, codegen::BoxStream};

use super::not_yet;
use crate::proto::v1::{self as pb, sync_server::Sync};

/// The database side of sync.
const CONTENT: &str = "the template and stylesheet content store";
/// Atomic exports.
const EXPORT: &str = "atomic template and stylesheet export";
/// The file watcher.
const WATCHER: &str = "the sync file watcher";
/// Three-way reconciliation.
const RECONCILER: &str = "the sync reconciler";

/// Serves `outpost.v1.Sync`.
pub(crate) struct SyncApi;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Sync for SyncApi {
    async fn export_templates(
        &self,
        _: Request<pb::ExportTemplatesRequest>,
    ) -> Reply<pb::ExportTemplatesResponse> {
        Err(not_yet("ExportTemplates", EXPORT))
    }

    async fn export_stylesheets(
        &self,
        _: Request<pb::ExportStylesheetsRequest>,
    ) -> Reply<pb::ExportStylesheetsResponse> {
        Err(not_yet("ExportStylesheets", EXPORT))
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

    type WatchSyncEventsStream = BoxStream<pb::WatchSyncEventsResponse>;

    async fn watch_sync_events(
        &self,
        _: Request<pb::WatchSyncEventsRequest>,
    ) -> Reply<Self::WatchSyncEventsStream> {
        Err(not_yet("WatchSyncEvents", WATCHER))
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

    async fn list_template_sets(
        &self,
        _: Request<pb::ListTemplateSetsRequest>,
    ) -> Reply<pb::ListTemplateSetsResponse> {
        Err(not_yet("ListTemplateSets", CONTENT))
    }

    async fn list_templates(
        &self,
        _: Request<pb::ListTemplatesRequest>,
    ) -> Reply<pb::ListTemplatesResponse> {
        Err(not_yet("ListTemplates", CONTENT))
    }

    async fn get_template(
        &self,
        _: Request<pb::GetTemplateRequest>,
    ) -> Reply<pb::GetTemplateResponse> {
        Err(not_yet("GetTemplate", CONTENT))
    }

    async fn put_template(
        &self,
        _: Request<pb::PutTemplateRequest>,
    ) -> Reply<pb::PutTemplateResponse> {
        Err(not_yet("PutTemplate", CONTENT))
    }

    async fn delete_template(
        &self,
        _: Request<pb::DeleteTemplateRequest>,
    ) -> Reply<pb::DeleteTemplateResponse> {
        Err(not_yet("DeleteTemplate", CONTENT))
    }

    async fn list_themes(
        &self,
        _: Request<pb::ListThemesRequest>,
    ) -> Reply<pb::ListThemesResponse> {
        Err(not_yet("ListThemes", CONTENT))
    }

    async fn list_stylesheets(
        &self,
        _: Request<pb::ListStylesheetsRequest>,
    ) -> Reply<pb::ListStylesheetsResponse> {
        Err(not_yet("ListStylesheets", CONTENT))
    }

    async fn get_stylesheet(
        &self,
        _: Request<pb::GetStylesheetRequest>,
    ) -> Reply<pb::GetStylesheetResponse> {
        Err(not_yet("GetStylesheet", CONTENT))
    }

    async fn put_stylesheet(
        &self,
        _: Request<pb::PutStylesheetRequest>,
    ) -> Reply<pb::PutStylesheetResponse> {
        Err(not_yet("PutStylesheet", CONTENT))
    }

    async fn delete_stylesheet(
        &self,
        _: Request<pb::DeleteStylesheetRequest>,
    ) -> Reply<pb::DeleteStylesheetResponse> {
        Err(not_yet("DeleteStylesheet", CONTENT))
    }
}
