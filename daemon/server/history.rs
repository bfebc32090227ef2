//! The History service: each RPC checks its request
//! ([`convert::history`]), calls the history (listing, showing) or the
//! domain that writes (sync for a restore, workspaces for a rollback), and
//! converts the answer.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use outpost::proto::v1::{self as pb, history_server::History as HistoryRpc};

use super::{
    access::caller,
    convert::{history as to, orchestrator},
};
use crate::{
    history::History,
    sync::{ContentStore, service::SyncService},
    workspaces::Workspaces,
};

/// Serves `outpost.v1.History`.
pub(crate) struct HistoryApi<C> {
    pub(crate) sync: Arc<SyncService<C>>,
    pub(crate) workspaces: Workspaces,
}

type Reply<T> = Result<Response<T>, Status>;

impl<C: ContentStore> HistoryApi<C> {
    fn history(&self) -> &History {
        self.sync.history()
    }
}

#[tonic::async_trait]
impl<C: ContentStore> HistoryRpc for HistoryApi<C> {
    async fn list_history(
        &self,
        request: Request<pb::ListHistoryRequest>,
    ) -> Reply<pb::ListHistoryResponse> {
        let request = request.into_inner();
        let subject = to::subject(request.subject)?;
        let versions = self.history().versions(&subject, request.limit).await?;
        Ok(Response::new(pb::ListHistoryResponse {
            versions: versions.into_iter().map(to::version).collect(),
        }))
    }

    async fn get_history_version(
        &self,
        request: Request<pb::GetHistoryVersionRequest>,
    ) -> Reply<pb::GetHistoryVersionResponse> {
        let request = request.into_inner();
        let subject = to::subject(request.subject)?;
        let (version, content) = self.history().show(&subject, &request.rev).await?;
        Ok(Response::new(pb::GetHistoryVersionResponse {
            version: Some(to::version(version)),
            content,
        }))
    }

    async fn restore_content(
        &self,
        request: Request<pb::RestoreContentRequest>,
    ) -> Reply<pb::RestoreContentResponse> {
        let actor = caller(&request);
        let request = request.into_inner();
        let key = to::content_key(request.key)?;
        let (restored, written) = self
            .sync
            .restore(&key, &request.rev, request.expected_version, actor)
            .await?;
        Ok(Response::new(pb::RestoreContentResponse {
            restored: Some(to::version(restored)),
            version: written.item.version,
            created: written.created,
        }))
    }

    async fn rollback_workspace(
        &self,
        request: Request<pb::RollbackWorkspaceRequest>,
    ) -> Reply<pb::RollbackWorkspaceResponse> {
        let actor = caller(&request);
        let request = request.into_inner();
        to::workspace_name("name", &request.name)?;
        let (restored, applied) = self
            .workspaces
            .rollback(&request.name, &request.rev, actor)
            .await?;
        Ok(Response::new(pb::RollbackWorkspaceResponse {
            restored: Some(to::version(restored)),
            workspace: Some(orchestrator::workspace(
                &applied.name,
                &applied.status,
                self.workspaces.instance_count(&applied.name),
            )),
            diff: Some(orchestrator::workspace_diff(&applied.diff)),
        }))
    }
}
