//! gRPC front of the Orchestrator service: validates requests, calls the
//! orchestrator, maps results and errors back.

use std::{collections::HashSet, sync::Arc};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, codegen::BoxStream};

use super::{
    DaemonInfo,
    convert::{self, instance_key, invalid},
};
use outpost::{
    proto::v1::{self as pb, orchestrator_server::Orchestrator as OrchestratorRpc},
    spec,
};

use crate::{
    orchestrator::{
        ListFilter, Orchestrator, OrchestratorError,
        events::{Change, Event, Start},
        logs::{Stream, follow::LogRequest},
        status::{InstanceState, InstanceStatus},
    },
    workspaces::{ApplyError, WorkspaceStatus, Workspaces},
};

/// Most events sent in one WatchStatus message.
const EVENT_BATCH: usize = 256;
/// Most log lines sent in one StreamLogs message.
const LOG_BATCH: usize = 1000;

/// Serves `outpost.v1.Orchestrator`.
pub(crate) struct OrchestratorApi {
    info: Arc<DaemonInfo>,
    orchestrator: Arc<Orchestrator>,
    workspaces: Arc<Workspaces>,
    /// Cancelled at shutdown: ends every stream.
    stop: CancellationToken,
}

impl OrchestratorApi {
    pub(crate) fn new(
        info: Arc<DaemonInfo>,
        orchestrator: Arc<Orchestrator>,
        workspaces: Arc<Workspaces>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            info,
            orchestrator,
            workspaces,
            stop,
        }
    }

    fn daemon_status(&self) -> pb::GetDaemonStatusResponse {
        let info = &self.info;
        let config = &info.config;
        let counts = self.orchestrator.counts();
        let instance_counts = counts
            .iter()
            .map(|(&state, &count)| pb::InstanceStateCount {
                state: convert::state(state).into(),
                count,
            })
            .collect();
        pb::GetDaemonStatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            started_at: Some(super::timestamp(info.started_at)),
            uptime: Some(info.started.elapsed().into()),
            listen_addresses: info.listen_addresses.clone(),
            data_dir: config.data_dir.display().to_string(),
            instance_count: counts.values().sum(),
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

impl OrchestratorApi {
    fn workspace(&self, name: &str, status: &WorkspaceStatus) -> pb::Workspace {
        pb::Workspace {
            name: name.to_owned(),
            file: status.file.display().to_string(),
            last_applied_at: status.last_applied_at.map(super::timestamp),
            last_errors: status.last_errors.clone(),
            instance_count: self.workspaces.instance_count(name) as u32,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply_instance(
    result: Result<InstanceStatus, OrchestratorError>,
) -> Result<pb::Instance, Status> {
    result
        .map(|status| convert::instance(&status))
        .map_err(convert::status)
}

#[tonic::async_trait]
impl OrchestratorRpc for OrchestratorApi {
    async fn create_instance(
        &self,
        request: Request<pb::CreateInstanceRequest>,
    ) -> Reply<pb::CreateInstanceResponse> {
        let request = request.into_inner();
        let spec = convert::spec(request.spec)?;
        let instance = reply_instance(
            self.orchestrator
                .create(spec, request.start.unwrap_or(true), None)
                .await,
        )?;
        Ok(Response::new(pb::CreateInstanceResponse {
            instance: Some(instance),
        }))
    }

    async fn get_or_create_instance(
        &self,
        request: Request<pb::GetOrCreateInstanceRequest>,
    ) -> Reply<pb::GetOrCreateInstanceResponse> {
        let input = convert::spec_input(request.into_inner().spec)?;
        let ensured = self.orchestrator.get_or_create(input).await?;
        let (status, created, started) = (ensured.status, ensured.created, ensured.started);
        Ok(Response::new(pb::GetOrCreateInstanceResponse {
            instance: Some(convert::instance(&status)),
            created,
            started,
        }))
    }

    async fn get_instance(
        &self,
        request: Request<pb::GetInstanceRequest>,
    ) -> Reply<pb::GetInstanceResponse> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let instance = reply_instance(self.orchestrator.get(key))?;
        Ok(Response::new(pb::GetInstanceResponse {
            instance: Some(instance),
        }))
    }

    async fn list_instances(
        &self,
        request: Request<pb::ListInstancesRequest>,
    ) -> Reply<pb::ListInstancesResponse> {
        let request = request.into_inner();
        let filter = ListFilter {
            states: convert::states("states", &request.states)?,
            workspace: Some(request.workspace).filter(|w| !w.is_empty()),
            labels: request.labels.into_iter().collect(),
        };
        let convert = if convert::full_view("view", request.view)? {
            convert::instance
        } else {
            convert::instance_basic
        };
        let (instances, revision) = self.orchestrator.list(&filter);
        Ok(Response::new(pb::ListInstancesResponse {
            instances: instances.iter().map(convert).collect(),
            revision,
        }))
    }

    async fn start_instance(
        &self,
        request: Request<pb::StartInstanceRequest>,
    ) -> Reply<pb::StartInstanceResponse> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let instance = reply_instance(self.orchestrator.start_instance(key).await)?;
        Ok(Response::new(pb::StartInstanceResponse {
            instance: Some(instance),
        }))
    }

    async fn stop_instance(
        &self,
        request: Request<pb::StopInstanceRequest>,
    ) -> Reply<pb::StopInstanceResponse> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let grace = convert::duration("grace_period", request.grace_period.as_ref())?;
        let result = self
            .orchestrator
            .stop_instance(key, grace, request.signal_external)
            .await;
        Ok(Response::new(pb::StopInstanceResponse {
            instance: Some(reply_instance(result)?),
        }))
    }

    async fn restart_instance(
        &self,
        request: Request<pb::RestartInstanceRequest>,
    ) -> Reply<pb::RestartInstanceResponse> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let instance = reply_instance(self.orchestrator.restart_instance(key).await)?;
        Ok(Response::new(pb::RestartInstanceResponse {
            instance: Some(instance),
        }))
    }

    async fn delete_instance(
        &self,
        request: Request<pb::DeleteInstanceRequest>,
    ) -> Reply<pb::DeleteInstanceResponse> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let result = self
            .orchestrator
            .delete_instance(key, request.signal_external, request.force)
            .await;
        Ok(Response::new(pb::DeleteInstanceResponse {
            instance: Some(reply_instance(result)?),
        }))
    }

    async fn register_external_instance(
        &self,
        request: Request<pb::RegisterExternalInstanceRequest>,
    ) -> Reply<pb::RegisterExternalInstanceResponse> {
        let request = request.into_inner();
        let input = spec::ExternalInput {
            name: request.name,
            pid: request.pid,
            port: request.port,
            project_path: request.project_path,
            labels: request.labels.into_iter().collect(),
            health: convert::health_check("health", request.health)?,
        };
        let input = input.validate().map_err(convert::invalid_field)?;
        let instance = reply_instance(self.orchestrator.register_external(input).await)?;
        Ok(Response::new(pb::RegisterExternalInstanceResponse {
            instance: Some(instance),
        }))
    }

    async fn record_activity(
        &self,
        request: Request<pb::RecordActivityRequest>,
    ) -> Reply<pb::RecordActivityResponse> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let status = self.orchestrator.record_activity(key)?;
        let idle_deadline = status
            .spec
            .idle_timeout
            .filter(|_| status.state.is_active())
            .map(|timeout| super::timestamp(status.last_activity_at + timeout));
        Ok(Response::new(pb::RecordActivityResponse {
            instance: Some(convert::instance(&status)),
            idle_deadline,
        }))
    }

    type WatchStatusStream = BoxStream<pb::WatchStatusResponse>;

    async fn watch_status(
        &self,
        request: Request<pb::WatchStatusRequest>,
    ) -> Reply<Self::WatchStatusStream> {
        let request = request.into_inner();
        let filter = WatchFilter {
            instances: request.instances.into_iter().collect(),
            workspaces: request.workspaces.into_iter().collect(),
            states: convert::states("states", &request.states)?,
        };
        let since = Some(request.since_revision).filter(|&revision| revision > 0);
        let subscription = self.orchestrator.subscribe(since);
        let (sender, receiver) = mpsc::channel(16);
        let orchestrator = self.orchestrator.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = sender.closed() => {}
                () = pump_status(subscription, since.unwrap_or(0), &filter, &orchestrator, &sender) => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    type StreamLogsStream = BoxStream<pb::StreamLogsResponse>;

    async fn stream_logs(
        &self,
        request: Request<pb::StreamLogsRequest>,
    ) -> Reply<Self::StreamLogsStream> {
        let request = request.into_inner();
        let key = instance_key("instance", &request.instance)?;
        let streams: Vec<Stream> = match pb::LogStream::try_from(request.stream) {
            Ok(pb::LogStream::Unspecified) => vec![Stream::Stdout, Stream::Stderr],
            Ok(pb::LogStream::Stdout) => vec![Stream::Stdout],
            Ok(pb::LogStream::Stderr) => vec![Stream::Stderr],
            Err(_) => {
                return Err(invalid(
                    "stream",
                    format!("{} is not a log stream", request.stream),
                ));
            }
        };
        let log_request = LogRequest {
            streams,
            tail: request.tail_lines as usize,
            follow: request.follow,
        };
        let mut lines = self.orchestrator.stream_logs(key, log_request)?;
        let (sender, receiver) = mpsc::channel(16);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    () = stop.cancelled() => return,
                    () = sender.closed() => return,
                    batch = lines.recv() => batch,
                };
                let Some(batch) = batch else { return };
                if !send_lines(&sender, batch.stream, batch.lines).await {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn get_daemon_status(
        &self,
        _: Request<pb::GetDaemonStatusRequest>,
    ) -> Reply<pb::GetDaemonStatusResponse> {
        Ok(Response::new(self.daemon_status()))
    }

    async fn validate_state(
        &self,
        request: Request<pb::ValidateStateRequest>,
    ) -> Reply<pb::ValidateStateResponse> {
        let issues = self.orchestrator.validate(request.into_inner().fix).await;
        Ok(Response::new(pb::ValidateStateResponse {
            inconsistencies: issues.iter().map(convert::inconsistency).collect(),
            checked_at: Some(super::timestamp(std::time::SystemTime::now())),
        }))
    }

    async fn list_workspaces(
        &self,
        _: Request<pb::ListWorkspacesRequest>,
    ) -> Reply<pb::ListWorkspacesResponse> {
        let workspaces = self
            .workspaces
            .list()
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
        if name.is_empty() {
            return Err(invalid("name", "must name a workspace"));
        }
        let all = self.workspaces.list();
        let status = all
            .get(&name)
            .ok_or_else(|| Status::not_found(format!("no workspace {name:?}")))?;
        let definition = status
            .definition
            .as_ref()
            .map(|workspace| pb::WorkspaceDefinition {
                defaults: Some(pb::WorkspaceDefaults {
                    env: workspace.defaults.env.clone().into_iter().collect(),
                    labels: workspace.defaults.labels.clone().into_iter().collect(),
                    health: None,
                    restart: None,
                }),
                instances: workspace
                    .instances
                    .iter()
                    .map(convert::spec_message)
                    .collect(),
            });
        Ok(Response::new(pb::GetWorkspaceResponse {
            workspace: Some(self.workspace(&name, status)),
            definition,
        }))
    }

    async fn apply_workspace(
        &self,
        request: Request<pb::ApplyWorkspaceRequest>,
    ) -> Reply<pb::ApplyWorkspaceResponse> {
        let request = request.into_inner();
        let source = match request.source {
            Some(pb::apply_workspace_request::Source::Name(name)) if !name.is_empty() => name,
            Some(pb::apply_workspace_request::Source::File(file)) if file.starts_with('/') => file,
            Some(pb::apply_workspace_request::Source::File(file)) => {
                return Err(invalid("file", format!("{file:?} is not an absolute path")));
            }
            _ => {
                return Err(invalid(
                    "source",
                    "give a workspace name or an absolute file path",
                ));
            }
        };
        let (name, diff) = self
            .workspaces
            .apply(&source, request.dry_run)
            .await
            .map_err(|err| match err {
                ApplyError::Invalid(errors) => Status::invalid_argument(errors.join("; ")),
                ApplyError::NotFound(message) => Status::not_found(message),
                ApplyError::ShuttingDown => Status::unavailable(err.to_string()),
            })?;
        let status = self.workspaces.list().remove(&name).unwrap_or_default();
        Ok(Response::new(pb::ApplyWorkspaceResponse {
            workspace: Some(self.workspace(&name, &status)),
            diff: Some(convert::workspace_diff(&diff)),
            applied: !request.dry_run,
        }))
    }
}

/// Sends log lines in batches; false when the client is gone.
async fn send_lines(
    sender: &mpsc::Sender<Result<pb::StreamLogsResponse, Status>>,
    stream: Stream,
    lines: Vec<String>,
) -> bool {
    let kind = match stream {
        Stream::Stdout => pb::LogStream::Stdout,
        Stream::Stderr => pb::LogStream::Stderr,
    };
    for chunk in lines.chunks(LOG_BATCH) {
        let message = pb::StreamLogsResponse {
            lines: chunk
                .iter()
                .map(|text| pb::LogLine {
                    stream: kind.into(),
                    text: text.clone(),
                })
                .collect(),
        };
        if sender.send(Ok(message)).await.is_err() {
            return false;
        }
    }
    true
}

/// Server-side filter of a WatchStatus stream.
struct WatchFilter {
    instances: HashSet<String>,
    workspaces: HashSet<String>,
    states: Vec<InstanceState>,
}

impl WatchFilter {
    fn instance(&self, status: &InstanceStatus) -> bool {
        (self.instances.is_empty()
            || self.instances.contains(&status.id)
            || self.instances.contains(&status.spec.name))
            && (self.workspaces.is_empty()
                || status
                    .workspace
                    .as_ref()
                    .is_some_and(|w| self.workspaces.contains(w)))
    }

    fn snapshot(&self, status: &InstanceStatus) -> bool {
        self.instance(status) && (self.states.is_empty() || self.states.contains(&status.state))
    }

    fn event(&self, event: &Event) -> bool {
        match &event.change {
            Change::Instance { status, .. } => self.snapshot(status),
            Change::Deleted { status } => self.instance(status),
            // Workspace events concern no single instance or state.
            Change::Workspace(change) => {
                self.instances.is_empty()
                    && self.states.is_empty()
                    && (self.workspaces.is_empty() || self.workspaces.contains(&change.name))
            }
        }
    }
}

type StatusSender = mpsc::Sender<Result<pb::WatchStatusResponse, Status>>;

/// Feeds a WatchStatus client: its start (snapshot or replay), then every
/// event in revision order, batching what is already waiting. A client that
/// falls so far behind that the bus drops events for it gets a RESYNC
/// snapshot, never a silent gap. Returns when the client or bus is gone.
async fn pump_status(
    subscription: crate::orchestrator::events::Subscription,
    since: u64,
    filter: &WatchFilter,
    orchestrator: &Orchestrator,
    sender: &StatusSender,
) {
    let mut events = subscription.events;
    let mut last = since;
    match subscription.start {
        Start::Snapshot(snapshot) => {
            last = snapshot.revision;
            if !send_snapshot(sender, &snapshot, filter).await {
                return;
            }
        }
        Start::Replay(replay) => {
            for chunk in replay.chunks(EVENT_BATCH) {
                last = chunk.last().map_or(last, |event| event.revision);
                if !send_events(sender, chunk.iter().map(AsRef::as_ref), filter).await {
                    return;
                }
            }
        }
    }
    while let Some(batch) = crate::bus::next_batch(&mut events, &mut last, EVENT_BATCH).await {
        if !send_events(sender, batch.events.iter().map(AsRef::as_ref), filter).await {
            return;
        }
        if batch.lagged {
            let snapshot = orchestrator.resync();
            last = snapshot.revision;
            if !send_snapshot(sender, &snapshot, filter).await {
                return;
            }
        }
    }
}

async fn send_snapshot(
    sender: &StatusSender,
    snapshot: &crate::orchestrator::events::Snapshot,
    filter: &WatchFilter,
) -> bool {
    let message = pb::WatchStatusResponse {
        payload: Some(pb::watch_status_response::Payload::Snapshot(
            convert::snapshot(snapshot, |s| filter.snapshot(s)),
        )),
    };
    sender.send(Ok(message)).await.is_ok()
}

async fn send_events<'a>(
    sender: &StatusSender,
    events: impl Iterator<Item = &'a Event>,
    filter: &WatchFilter,
) -> bool {
    let events: Vec<pb::StatusEvent> = events
        .filter(|e| filter.event(e))
        .map(convert::event)
        .collect();
    if events.is_empty() {
        return true;
    }
    let message = pb::WatchStatusResponse {
        payload: Some(pb::watch_status_response::Payload::Events(
            pb::StatusEvents { events },
        )),
    };
    sender.send(Ok(message)).await.is_ok()
}
