//! The Orchestrator service: each RPC parses its request
//! ([`convert::orchestrator`]), calls the orchestrator or the workspace
//! engine, and converts the answer.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, codegen::BoxStream};

use outpost::proto::v1::{self as pb, orchestrator_server::Orchestrator as OrchestratorRpc};

use super::{
    DaemonInfo,
    access::caller,
    convert::{
        self,
        orchestrator::{self as to, instance_key},
    },
    stream::{self, Feed},
};
use crate::{
    history::{Origin, Source},
    orchestrator::{
        Orchestrator,
        events::{Event, EventFilter, Snapshot, SnapshotKind},
    },
    shutdown::{AtExit, Shutdown},
    workspaces::Workspaces,
};

/// Serves `outpost.v1.Orchestrator`.
pub(crate) struct OrchestratorApi {
    pub(crate) info: Arc<DaemonInfo>,
    pub(crate) orchestrator: Arc<Orchestrator>,
    pub(crate) workspaces: Workspaces,
    /// Cancelled at shutdown: ends every stream.
    pub(crate) stop: CancellationToken,
    /// Asks the daemon to stop, as a signal does.
    pub(crate) shutdown: Shutdown,
}

type Reply<T> = Result<Response<T>, Status>;

/// WatchStatus: the board's events through a client's filter.
struct StatusFeed {
    orchestrator: Arc<Orchestrator>,
    filter: EventFilter,
}

impl Feed for StatusFeed {
    type Event = Event;
    type Snapshot = Snapshot;
    type Message = pb::WatchStatusResponse;

    fn snapshot(&self, snapshot: &Snapshot) -> pb::WatchStatusResponse {
        to::status_snapshot(snapshot, &self.filter)
    }

    fn events(&self, events: &[Arc<Event>]) -> Option<pb::WatchStatusResponse> {
        to::status_events(events, &self.filter)
    }

    fn resync(&self) -> Snapshot {
        self.orchestrator.snapshot(SnapshotKind::Resync)
    }
}

impl OrchestratorApi {
    /// The status of workspace `name`; NOT_FOUND when the daemon does not
    /// know it.
    async fn workspace_status(
        &self,
        name: &str,
    ) -> Result<crate::workspaces::WorkspaceStatus, Status> {
        if name.is_empty() {
            return Err(convert::invalid("name", "must name a workspace"));
        }
        self.workspaces.get(name).await?.ok_or_else(|| {
            let name = outpost::limits::quoted(name);
            Status::not_found(format!("no workspace {name}"))
        })
    }

    /// `name`, once it is known to be a workspace.
    async fn known_workspace(&self, name: String) -> Result<String, Status> {
        self.workspace_status(&name).await?;
        Ok(name)
    }

    fn workspace(&self, name: &str, status: &crate::workspaces::WorkspaceStatus) -> pb::Workspace {
        to::workspace(name, status, self.workspaces.instance_count(name))
    }
}

#[tonic::async_trait]
impl OrchestratorRpc for OrchestratorApi {
    async fn create_instance(
        &self,
        request: Request<pb::CreateInstanceRequest>,
    ) -> Reply<pb::CreateInstanceResponse> {
        let request = request.into_inner();
        let spec = convert::spec::spec(request.spec)?;
        let status = self
            .orchestrator
            .create(spec, request.start.unwrap_or(true), None)
            .await?;
        Ok(Response::new(pb::CreateInstanceResponse {
            instance: Some(to::instance(&status)),
        }))
    }

    async fn get_or_create_instance(
        &self,
        request: Request<pb::GetOrCreateInstanceRequest>,
    ) -> Reply<pb::GetOrCreateInstanceResponse> {
        let input = convert::spec::spec_input(request.into_inner().spec)?;
        let ensured = self.orchestrator.get_or_create(input).await?;
        Ok(Response::new(pb::GetOrCreateInstanceResponse {
            instance: Some(to::instance(&ensured.status)),
            created: ensured.created,
            started: ensured.started,
        }))
    }

    async fn get_instance(
        &self,
        request: Request<pb::GetInstanceRequest>,
    ) -> Reply<pb::GetInstanceResponse> {
        let request = request.into_inner();
        let status = self
            .orchestrator
            .get(instance_key("instance", &request.instance)?)?;
        Ok(Response::new(pb::GetInstanceResponse {
            instance: Some(to::instance(&status)),
        }))
    }

    async fn list_instances(
        &self,
        request: Request<pb::ListInstancesRequest>,
    ) -> Reply<pb::ListInstancesResponse> {
        let request = request.into_inner();
        let render = if to::full_view("view", request.view)? {
            to::instance
        } else {
            to::instance_basic
        };
        let filter = to::list_filter(request)?;
        let listing = self.orchestrator.list(&filter);
        Ok(Response::new(pb::ListInstancesResponse {
            instances: listing.instances.iter().map(render).collect(),
            revision: listing.revision,
        }))
    }

    async fn start_instance(
        &self,
        request: Request<pb::StartInstanceRequest>,
    ) -> Reply<pb::StartInstanceResponse> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let status = self.orchestrator.start_instance(key).await?;
        Ok(Response::new(pb::StartInstanceResponse {
            instance: Some(to::instance(&status)),
        }))
    }

    async fn stop_instance(
        &self,
        request: Request<pb::StopInstanceRequest>,
    ) -> Reply<pb::StopInstanceResponse> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let grace = convert::duration("grace_period", request.grace_period.as_ref())?;
        let status = self
            .orchestrator
            .stop_instance(key, grace, request.signal_external, request.with_dependents)
            .await?;
        Ok(Response::new(pb::StopInstanceResponse {
            instance: Some(to::instance(&status)),
        }))
    }

    async fn restart_instance(
        &self,
        request: Request<pb::RestartInstanceRequest>,
    ) -> Reply<pb::RestartInstanceResponse> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let status = self.orchestrator.restart_instance(key).await?;
        Ok(Response::new(pb::RestartInstanceResponse {
            instance: Some(to::instance(&status)),
        }))
    }

    async fn delete_instance(
        &self,
        request: Request<pb::DeleteInstanceRequest>,
    ) -> Reply<pb::DeleteInstanceResponse> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let status = self
            .orchestrator
            .delete_instance(key, request.signal_external, request.force)
            .await?;
        Ok(Response::new(pb::DeleteInstanceResponse {
            instance: Some(to::instance(&status)),
        }))
    }

    async fn register_external_instance(
        &self,
        request: Request<pb::RegisterExternalInstanceRequest>,
    ) -> Reply<pb::RegisterExternalInstanceResponse> {
        let input = convert::spec::external_input(request.into_inner())?;
        let status = self.orchestrator.register_external(input).await?;
        Ok(Response::new(pb::RegisterExternalInstanceResponse {
            instance: Some(to::instance(&status)),
        }))
    }

    async fn record_activity(
        &self,
        request: Request<pb::RecordActivityRequest>,
    ) -> Reply<pb::RecordActivityResponse> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let status = self.orchestrator.record_activity(key)?;
        Ok(Response::new(to::activity(&status)))
    }

    type WatchStatusStream = BoxStream<pb::WatchStatusResponse>;

    async fn watch_status(
        &self,
        request: Request<pb::WatchStatusRequest>,
    ) -> Reply<Self::WatchStatusStream> {
        let request = request.into_inner();
        let since = Some(request.since_revision).filter(|&revision| revision > 0);
        let feed = StatusFeed {
            orchestrator: self.orchestrator.clone(),
            filter: to::event_filter(request)?,
        };
        let subscription = self.orchestrator.subscribe(since);
        Ok(Response::new(stream::events(
            subscription,
            since.unwrap_or(0),
            feed,
            self.stop.clone(),
        )))
    }

    type StreamLogsStream = BoxStream<pb::StreamLogsResponse>;

    async fn stream_logs(
        &self,
        request: Request<pb::StreamLogsRequest>,
    ) -> Reply<Self::StreamLogsStream> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let lines = self
            .orchestrator
            .stream_logs(key, to::log_request(&request)?)?;
        Ok(Response::new(stream::forward(
            lines,
            to::log_messages,
            self.stop.clone(),
        )))
    }

    async fn get_daemon_status(
        &self,
        _: Request<pb::GetDaemonStatusRequest>,
    ) -> Reply<pb::GetDaemonStatusResponse> {
        Ok(Response::new(to::daemon_status(
            &self.info,
            &self.orchestrator.counts(),
        )))
    }

    async fn validate_state(
        &self,
        request: Request<pb::ValidateStateRequest>,
    ) -> Reply<pb::ValidateStateResponse> {
        let issues = self.orchestrator.validate(request.into_inner().fix).await;
        Ok(Response::new(pb::ValidateStateResponse {
            inconsistencies: issues.iter().map(to::inconsistency).collect(),
            checked_at: Some(convert::timestamp(std::time::SystemTime::now())),
        }))
    }

    async fn list_workspaces(
        &self,
        _: Request<pb::ListWorkspacesRequest>,
    ) -> Reply<pb::ListWorkspacesResponse> {
        let workspaces = self
            .workspaces
            .list()
            .await
            .iter()
            .map(|(name, status)| self.workspace(name, status))
            .collect();
        Ok(Response::new(pb::ListWorkspacesResponse { workspaces }))
    }

    async fn get_workspace(
        &self,
        request: Request<pb::GetWorkspaceRequest>,
    ) -> Reply<pb::GetWorkspaceResponse> {
        let name = request.into_inner().name;
        let status = self.workspace_status(&name).await?;
        Ok(Response::new(pb::GetWorkspaceResponse {
            workspace: Some(self.workspace(&name, &status)),
            definition: status.definition.as_ref().map(to::workspace_definition),
        }))
    }

    async fn stop_workspace(
        &self,
        request: Request<pb::StopWorkspaceRequest>,
    ) -> Reply<pb::StopWorkspaceResponse> {
        let name = self.known_workspace(request.into_inner().name).await?;
        let stopped = self.orchestrator.stop_workspace(&name).await?;
        Ok(Response::new(pb::StopWorkspaceResponse {
            instances: stopped.iter().map(to::instance_basic).collect(),
        }))
    }

    async fn start_workspace(
        &self,
        request: Request<pb::StartWorkspaceRequest>,
    ) -> Reply<pb::StartWorkspaceResponse> {
        let name = self.known_workspace(request.into_inner().name).await?;
        let started = self.orchestrator.start_workspace(&name).await?;
        Ok(Response::new(pb::StartWorkspaceResponse {
            instances: started.iter().map(to::instance_basic).collect(),
        }))
    }

    async fn apply_workspace(
        &self,
        request: Request<pb::ApplyWorkspaceRequest>,
    ) -> Reply<pb::ApplyWorkspaceResponse> {
        let origin = Origin {
            source: Source::WorkspaceApply,
            actor: caller(&request),
            note: None,
        };
        let request = request.into_inner();
        let source = to::workspace_source(request.source);
        let applied = self
            .workspaces
            .apply(source, request.dry_run, origin)
            .await?;
        Ok(Response::new(pb::ApplyWorkspaceResponse {
            workspace: Some(self.workspace(&applied.name, &applied.status)),
            diff: Some(to::workspace_diff(&applied.diff)),
            applied: !request.dry_run,
        }))
    }

    async fn create_dashboard_login(
        &self,
        _: Request<pb::CreateDashboardLoginRequest>,
    ) -> Reply<pb::CreateDashboardLoginResponse> {
        let dashboard = self.info.dashboard.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this daemon serves no dashboard: start it with --http 127.0.0.1:7878 (port 0 picks one)",
            )
        })?;
        let issued = dashboard
            .logins
            .issue()
            .await
            .ok_or_else(|| Status::unavailable("cannot make a login code now"))?;
        Ok(Response::new(pb::CreateDashboardLoginResponse {
            url: format!("{}/login?code={}", dashboard.url, issued.code),
            expires_at: Some(convert::timestamp(issued.expires_at)),
        }))
    }

    async fn shutdown(&self, request: Request<pb::ShutdownRequest>) -> Reply<pb::ShutdownResponse> {
        let at_exit = if request.into_inner().stop_instances {
            AtExit::StopInstances
        } else {
            AtExit::KeepInstances
        };
        let stopped = (self.shutdown.request(at_exit).await)
            .map_err(|err| Status::unavailable(err.to_string()))?;
        if let Some(unsaved) = stopped.unsaved {
            return Err(Status::unavailable(format!(
                "the daemon stopped, but its state was not stored: {unsaved}"
            )));
        }
        Ok(Response::new(pb::ShutdownResponse {
            active_instances: stopped.active_instances,
            instances_stopped: stopped.at_exit == AtExit::StopInstances,
        }))
    }
}
