//! Several instances stopped or started in dependency order: the daemon's
//! shutdown, a workspace's stop and start, and a stop with dependents. Each
//! goes in layers ([`super::dependencies`]) — dependents stop before what
//! they depend on, dependencies start before their dependents — with the
//! instances of one layer at once.

use super::{
    InstanceStatus, ListFilter, Orchestrator, OrchestratorError, Reason, actor::Command,
    dependencies, events, send_command,
};

impl Orchestrator {
    /// Stops every instance `workspace` owns, dependents first; their
    /// statuses after.
    pub async fn stop_workspace(
        &self,
        workspace: &str,
    ) -> Result<Vec<InstanceStatus>, OrchestratorError> {
        let owned = self.owned_by(workspace);
        self.stop_in_order(&owned, Reason::UserStop).await?;
        Ok(self.owned_by(workspace))
    }

    /// Starts every instance `workspace` owns, in layers (dependencies
    /// first, each layer at once; those with dependencies wait for them);
    /// their statuses after.
    pub async fn start_workspace(
        &self,
        workspace: &str,
    ) -> Result<Vec<InstanceStatus>, OrchestratorError> {
        let owned = self.owned_by(workspace);
        let mut failed = Vec::new();
        for layer in dependencies::start_order(&owned) {
            let mut starts = tokio::task::JoinSet::new();
            for status in layer {
                let Ok(handle) = self.handle(&status.id) else {
                    continue;
                };
                starts.spawn(async move {
                    send_command(&handle, |reply| Command::Start {
                        reason: Reason::UserStart,
                        wait_ready: false,
                        reply,
                    })
                    .await
                });
            }
            while let Some(result) = starts.join_next().await {
                if let Ok(Err(err)) = result {
                    failed.push(err.to_string());
                }
            }
        }
        self.flush().await?;
        if !failed.is_empty() {
            return Err(OrchestratorError::StartFailed(failed.join("; ")));
        }
        Ok(self.owned_by(workspace))
    }

    fn owned_by(&self, workspace: &str) -> Vec<InstanceStatus> {
        let filter = ListFilter {
            workspace: Some(workspace.to_owned()),
            ..Default::default()
        };
        self.list(&filter).instances
    }

    /// Stops every instance (for daemon shutdown): dependents before
    /// what they depend on, all at once where nothing depends on another.
    /// An error means the stops were not all stored.
    pub async fn shutdown(&self) -> Result<(), OrchestratorError> {
        let snapshot = self.context.board.snapshot(events::SnapshotKind::Initial);
        self.stop_in_order(&snapshot.instances, Reason::DaemonShutdown)
            .await
    }

    /// Stops `statuses` in layers, dependents first (see
    /// [`dependencies::stop_order`]), each layer at once; returns once all
    /// of it is stored. An external instance is left running, as a stop
    /// without `signal_external` leaves it; other failures are logged.
    pub(super) async fn stop_in_order(
        &self,
        statuses: &[InstanceStatus],
        reason: Reason,
    ) -> Result<(), OrchestratorError> {
        for layer in dependencies::stop_order(statuses) {
            let mut stops = tokio::task::JoinSet::new();
            for status in layer {
                let Ok(handle) = self.handle(&status.id) else {
                    continue;
                };
                stops.spawn(async move {
                    send_command(&handle, |reply| Command::Stop {
                        grace: None,
                        signal_external: false,
                        reason,
                        reply,
                    })
                    .await
                });
            }
            while let Some(result) = stops.join_next().await {
                if let Ok(Err(err)) = result
                    && !matches!(err, OrchestratorError::Refused(_))
                {
                    tracing::warn!(%err, "stopping an instance");
                }
            }
        }
        self.flush().await
    }
}
