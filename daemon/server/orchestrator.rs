//! gRPC front of the Orchestrator service.

use std::sync::Arc;

use tonic::{Request, Response, Status, codegen::BoxStream};

use super::{DaemonInfo, not_yet, timestamp};
use crate::proto::v1::{self as pb, orchestrator_server::Orchestrator};

/// What instance supervision needs before these RPCs can work.
const SUPERVISION: &str = "instance supervision (the orchestrator core)";
/// What ValidateState needs.
const PERSISTENCE: &str = "persistent instance state";
/// What the workspace RPCs need.
const WORKSPACES: &str = "declarative workspaces";

/// Every instance state, in the order counts are reported.
const STATES: [pb::InstanceState; 7] = [
    pb::InstanceState::Starting,
    pb::InstanceState::Running,
    pb::InstanceState::Stopping,
    pb::InstanceState::Stopped,
    pb::InstanceState::Failed,
    pb::InstanceState::Backoff,
    pb::InstanceState::Error,
];

/// Serves `outpost.v1.Orchestrator`.
pub(crate) struct OrchestratorApi {
    info: Arc<DaemonInfo>,
}

impl OrchestratorApi {
    pub(crate) fn new(info: Arc<DaemonInfo>) -> Self {
        Self { info }
    }

    fn daemon_status(&self) -> pb::GetDaemonStatusResponse {
        let info = &self.info;
        let config = &info.config;
        // No instance exists until supervision lands, so every count is 0.
        let instance_counts = STATES
            .iter()
            .map(|&state| pb::InstanceStateCount {
                state: state.into(),
                count: 0,
            })
            .collect();
        pb::GetDaemonStatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            started_at: Some(timestamp(info.started_at)),
            uptime: Some(info.started.elapsed().into()),
            listen_addresses: info.listen_addresses.clone(),
            data_dir: config.data_dir.display().to_string(),
            instance_count: 0,
            instance_counts,
            port_range: Some(pb::PortRange {
                first: config.port_range.first.into(),
                last: config.port_range.last.into(),
            }),
            max_instances: config.max_instances,
            sync_root: config.sync_root.display().to_string(),
            workspaces_dir: config.workspaces_dir.display().to_string(),
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Orchestrator for OrchestratorApi {
    async fn create_instance(
        &self,
        _: Request<pb::CreateInstanceRequest>,
    ) -> Reply<pb::CreateInstanceResponse> {
        Err(not_yet("CreateInstance", SUPERVISION))
    }

    async fn get_or_create_instance(
        &self,
        _: Request<pb::GetOrCreateInstanceRequest>,
    ) -> Reply<pb::GetOrCreateInstanceResponse> {
        Err(not_yet("GetOrCreateInstance", SUPERVISION))
    }

    async fn get_instance(
        &self,
        _: Request<pb::GetInstanceRequest>,
    ) -> Reply<pb::GetInstanceResponse> {
        Err(not_yet("GetInstance", SUPERVISION))
    }

    async fn list_instances(
        &self,
        _: Request<pb::ListInstancesRequest>,
    ) -> Reply<pb::ListInstancesResponse> {
        Err(not_yet("ListInstances", SUPERVISION))
    }

    async fn start_instance(
        &self,
        _: Request<pb::StartInstanceRequest>,
    ) -> Reply<pb::StartInstanceResponse> {
        Err(not_yet("StartInstance", SUPERVISION))
    }

    async fn stop_instance(
        &self,
        _: Request<pb::StopInstanceRequest>,
    ) -> Reply<pb::StopInstanceResponse> {
        Err(not_yet("StopInstance", SUPERVISION))
    }

    async fn restart_instance(
        &self,
        _: Request<pb::RestartInstanceRequest>,
    ) -> Reply<pb::RestartInstanceResponse> {
        Err(not_yet("RestartInstance", SUPERVISION))
    }

    async fn delete_instance(
        &self,
        _: Request<pb::DeleteInstanceRequest>,
    ) -> Reply<pb::DeleteInstanceResponse> {
        Err(not_yet("DeleteInstance", SUPERVISION))
    }

    async fn register_external_instance(
        &self,
        _: Request<pb::RegisterExternalInstanceRequest>,
    ) -> Reply<pb::RegisterExternalInstanceResponse> {
        Err(not_yet("RegisterExternalInstance", SUPERVISION))
    }

    async fn record_activity(
        &self,
        _: Request<pb::RecordActivityRequest>,
    ) -> Reply<pb::RecordActivityResponse> {
        Err(not_yet("RecordActivity", SUPERVISION))
    }

    type WatchStatusStream = BoxStream<pb::WatchStatusResponse>;

    async fn watch_status(
        &self,
        _: Request<pb::WatchStatusRequest>,
    ) -> Reply<Self::WatchStatusStream> {
        Err(not_yet("WatchStatus", SUPERVISION))
    }

    type StreamLogsStream = BoxStream<pb::StreamLogsResponse>;

    async fn stream_logs(
        &self,
        _: Request<pb::StreamLogsRequest>,
    ) -> Reply<Self::StreamLogsStream> {
        Err(not_yet("StreamLogs", SUPERVISION))
    }

    async fn get_daemon_status(
        &self,
        _: Request<pb::GetDaemonStatusRequest>,
    ) -> Reply<pb::GetDaemonStatusResponse> {
        Ok(Response::new(self.daemon_status()))
    }

    async fn validate_state(
        &self,
        _: Request<pb::ValidateStateRequest>,
    ) -> Reply<pb::ValidateStateResponse> {
        Err(not_yet("ValidateState", PERSISTENCE))
    }

    async fn list_workspaces(
        &self,
        _: Request<pb::ListWorkspacesRequest>,
    ) -> Reply<pb::ListWorkspacesResponse> {
        Err(not_yet("ListWorkspaces", WORKSPACES))
    }

    async fn get_workspace(
        &self,
        _: Request<pb::GetWorkspaceRequest>,
    ) -> Reply<pb::GetWorkspaceResponse> {
        Err(not_yet("GetWorkspace", WORKSPACES))
    }

    async fn apply_workspace(
        &self,
        _: Request<pb::ApplyWorkspaceRequest>,
    ) -> Reply<pb::ApplyWorkspaceResponse> {
        Err(not_yet("ApplyWorkspace", WORKSPACES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_but_unspecified_is_counted() {
        let counted: Vec<i32> = STATES.iter().map(|&s| s as i32).collect();
        assert_eq!(counted, (1..=7).collect::<Vec<_>>());
        // A state added to the proto must be added to STATES as well.
        assert!(pb::InstanceState::try_from(8).is_err());
    }
}
