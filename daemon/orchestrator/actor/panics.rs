//! The actor's defence in depth: a panic while it handles an event is
//! caught, and the process it supervised is stopped rather than left
//! running unwatched.

use std::{any::Any, future::Future, panic::AssertUnwindSafe};

use futures_util::FutureExt;

use super::{
    Actor, InstanceKind, InstanceState, OrchestratorError, Process, Reason, Timers, terminate_group,
};
use crate::orchestrator::watched::Group;

/// Runs `future`, turning a panic in it into the panic's message. The
/// future's captures may be left half changed; the caller decides what of
/// them to trust (see `Actor::after_panic`).
pub(super) async fn catch_panic<F: Future>(future: F) -> Result<F::Output, String> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|panic| panic_message(panic.as_ref()))
}

/// What a panic said.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl Actor {
    /// After a panic in the middle of an event the actor's state may be
    /// half changed, so nothing of it is trusted but who the process is:
    /// the one it holds, or the one it last published (a stop that
    /// panicked had taken it). That process's whole group is stopped
    /// (never an external process, which the daemon only watches), and
    /// the instance is FAILED with the panic as its error, so that a
    /// delete or the daemon's shutdown finds nothing left to stop.
    pub(super) async fn after_panic(&mut self, panic: String) {
        let id = self.status.id.clone();
        tracing::error!(%id, name = %self.status.spec.name, %panic,
            "instance actor panicked: stopping its processes and marking it failed");
        self.timers = Timers::default();
        self.probing = false;
        self.generation += 1; // results of probes in flight are stale
        for reply in self.waiting_ready.drain(..) {
            let _ = reply.send(Err(OrchestratorError::StartFailed(
                "the instance's supervisor failed".to_owned(),
            )));
        }
        let spec = self.status.spec.clone();
        let grace = spec.stop_grace.min(outpost::limits::MAX_STOP_GRACE);
        let stop = match (self.process.take(), self.status.process) {
            (Some(Process::External { .. }), _) => None,
            (Some(process), _) => Some((process.group(), Some(process))),
            (None, Some(info)) if self.status.kind != InstanceKind::External && info.pgid != 0 => {
                let own = self.status.kind == InstanceKind::Managed;
                Some((
                    Group {
                        pgid: info.pgid,
                        own,
                    },
                    None,
                ))
            }
            (None, _) => None,
        };
        if let Some((group, leader)) = stop {
            let stopped =
                terminate_group(&self.context, &id, group, leader, spec.stop_signal, grace);
            if let Err(again) = catch_panic(stopped).await {
                tracing::error!(%id, panic = %again, "stopping the processes of a failed actor panicked");
            }
        }
        let message = format!("internal error, the instance was stopped: {panic}");
        self.status.last_error = Some(message.clone());
        self.transition(InstanceState::Failed, Reason::ProcessExit, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_caught_with_its_message_and_the_state_stays_usable() {
        let mut state = vec![1];
        let caught = catch_panic(async {
            state.push(2);
            tokio::task::yield_now().await;
            if state.len() == 2 {
                panic!("overflow when adding duration to instant");
            }
        })
        .await;
        assert_eq!(
            caught.unwrap_err(),
            "overflow when adding duration to instant"
        );
        // What the panicking future changed is still there to clean up.
        assert_eq!(state, [1, 2]);
        let formatted = catch_panic(async { panic!("pid {}", 42) }).await;
        assert_eq!(formatted.unwrap_err(), "pid 42");
        assert_eq!(catch_panic(async { 7 }).await, Ok(7));
    }
}
