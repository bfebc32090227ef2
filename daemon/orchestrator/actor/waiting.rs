//! How an instance waits for its dependencies: it has no process while
//! WAITING, and the coordinator
//! ([`crate::orchestrator::dependencies::coordinator`]) tells it when the
//! conditions hold (it starts), when what it waits for changed, and when a
//! dependency that restarts its dependents restarted (it stops and waits
//! again).

use super::{Actor, InstanceState, Reason};
use crate::orchestrator::dependencies::needs;

impl Actor {
    /// Moves to WAITING until the coordinator says its dependencies hold.
    pub(super) fn wait_for_dependencies(&mut self, reason: Reason) {
        let text = needs(&self.status.spec.depends_on);
        self.status.waiting_for = Some(text.clone());
        self.waiting_reason = reason;
        self.transition(
            InstanceState::Waiting,
            reason,
            format!("waiting for {text}"),
        );
    }

    /// The coordinator found its dependencies' conditions hold.
    pub(super) fn on_dependencies_met(&mut self) {
        if self.status.state == InstanceState::Waiting {
            // A spawn that fails is a failure like any other (the restart
            // policy applies); nobody waits for an answer here.
            let _ = self.spawn(Reason::DependenciesReady);
        }
    }

    /// What a WAITING instance waits for changed (a dependency failed,
    /// recovered, or is gone): shown, and published.
    pub(super) fn on_waiting_news(&mut self, text: String, blocked: bool) {
        if self.status.state != InstanceState::Waiting
            || self.status.waiting_for.as_deref() == Some(text.as_str())
        {
            return;
        }
        let reason = if blocked {
            Reason::DependencyBlocked
        } else {
            self.waiting_reason
        };
        self.status.reason = reason;
        self.status.waiting_for = Some(text.clone());
        self.publish(
            InstanceState::Waiting,
            reason,
            format!("waiting for {text}"),
        );
    }

    /// A dependency restarted: a starting or running instance stops and
    /// waits for it again.
    pub(super) async fn requeue(&mut self) {
        let active = matches!(
            self.status.state,
            InstanceState::Starting | InstanceState::Running
        );
        if active
            && self
                .stop(None, false, Reason::DependencyRestart)
                .await
                .is_ok()
        {
            self.wait_for_dependencies(Reason::DependencyRestart);
        }
    }
}
