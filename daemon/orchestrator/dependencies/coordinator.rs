//! The coordinator: one task on the status bus that starts each WAITING
//! instance the moment its dependencies' conditions hold. It keeps what
//! the judgement needs of every instance (by name) and who depends on
//! whom, both rebuilt from the bus alone, so an event — not a poll —
//! wakes a dependent: a dependency's change is judged for its waiting
//! dependents, and an instance that starts waiting is judged at once
//! against what the bus has shown so far (nothing it missed). It tells
//! actors what to do and never changes an instance itself:
//! `DependenciesMet` starts one, `Waiting` updates what it waits for (a
//! dependency failed or gone), and `Requeue` sends a running dependent
//! back to waiting when a dependency with `restart_dependents` restarts.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Weak},
};

use outpost::spec::{Condition, InstanceSpec};

use super::{Judgement, Seen, judge};
use crate::{
    bus::{Start, next_batch},
    orchestrator::{
        Orchestrator,
        actor::Command,
        events::{Change, SnapshotKind, Subscription},
        status::{InstanceState, InstanceStatus, Reason},
    },
};

/// Events handled in one go.
const BATCH: usize = 256;

/// What the coordinator knows of one instance.
struct Known {
    id: String,
    spec: Arc<InstanceSpec>,
    seen: Seen,
    waiting_for: Option<String>,
}

struct Coordinator {
    orchestrator: Weak<Orchestrator>,
    /// Every instance, by name.
    instances: HashMap<String, Known>,
    /// The instances that depend on each name.
    dependents: HashMap<String, BTreeSet<String>>,
}

/// Runs the coordinator over `subscription` (taken before any instance
/// exists, so it sees every one) until the orchestrator or the bus is gone.
pub fn start(orchestrator: Weak<Orchestrator>, subscription: Subscription) {
    let mut coordinator = Coordinator {
        orchestrator,
        instances: HashMap::new(),
        dependents: HashMap::new(),
    };
    tokio::spawn(async move {
        let Subscription { start, mut events } = subscription;
        let mut last = match start {
            Start::Snapshot(snapshot) => {
                coordinator.reset(&snapshot.instances);
                snapshot.revision
            }
            Start::Replay(replayed) => {
                let last = replayed.last().map_or(0, |event| event.revision);
                for event in replayed {
                    coordinator.on(&event.change);
                }
                last
            }
        };
        while let Some(batch) = next_batch(&mut events, &mut last, BATCH).await {
            if batch.lagged {
                let Some(orchestrator) = coordinator.orchestrator.upgrade() else {
                    break;
                };
                let snapshot = orchestrator.snapshot(SnapshotKind::Resync);
                last = snapshot.revision;
                coordinator.reset(&snapshot.instances);
                continue;
            }
            for event in batch.events {
                coordinator.on(&event.change);
            }
        }
    });
}

impl Coordinator {
    /// Starts over from a snapshot, and judges every waiting instance.
    fn reset(&mut self, statuses: &[InstanceStatus]) {
        self.instances.clear();
        self.dependents.clear();
        for status in statuses {
            self.learn(status);
        }
        let waiting: Vec<String> = (self.instances.iter())
            .filter(|(_, known)| known.seen.state == InstanceState::Waiting)
            .map(|(name, _)| name.clone())
            .collect();
        for name in waiting {
            self.judge(&name);
        }
    }

    fn on(&mut self, change: &Change) {
        match change {
            Change::Instance {
                status,
                previous,
                reason,
                ..
            } => {
                let name = &status.spec.name;
                self.learn(status);
                if restarted(status, *previous, *reason) {
                    self.requeue_dependents(name);
                }
                if status.state == InstanceState::Waiting {
                    self.judge(name);
                }
                self.judge_dependents(name);
            }
            Change::Deleted { status } => {
                let name = &status.spec.name;
                if let Some(known) = self.instances.remove(name) {
                    self.forget_edges(name, &known.spec);
                }
                self.judge_dependents(name);
            }
            Change::Workspace(_) => {}
        }
    }

    /// Takes in an instance's status, and its edges if its spec changed.
    fn learn(&mut self, status: &InstanceStatus) {
        let name = &status.spec.name;
        let known = Known {
            id: status.id.clone(),
            spec: status.spec.clone(),
            seen: Seen::of(status),
            waiting_for: status.waiting_for.clone(),
        };
        let old = self.instances.insert(name.clone(), known);
        let old_spec = old.map(|old| old.spec);
        if old_spec
            .as_ref()
            .is_some_and(|old| Arc::ptr_eq(old, &status.spec))
        {
            return;
        }
        if let Some(old) = old_spec {
            self.forget_edges(name, &old);
        }
        for dependency in status.spec.depends_on.keys() {
            (self.dependents.entry(dependency.clone()).or_default()).insert(name.clone());
        }
    }

    fn forget_edges(&mut self, name: &str, spec: &InstanceSpec) {
        for dependency in spec.depends_on.keys() {
            if let Some(dependents) = self.dependents.get_mut(dependency) {
                dependents.remove(name);
                if dependents.is_empty() {
                    self.dependents.remove(dependency);
                }
            }
        }
    }

    fn judge_dependents(&mut self, name: &str) {
        let Some(dependents) = self.dependents.get(name) else {
            return;
        };
        let waiting: Vec<String> = (dependents.iter())
            .filter(|dependent| {
                (self.instances.get(*dependent))
                    .is_some_and(|known| known.seen.state == InstanceState::Waiting)
            })
            .cloned()
            .collect();
        for dependent in waiting {
            self.judge(&dependent);
        }
    }

    /// Starts a waiting instance whose conditions hold, or tells it what
    /// it waits for when that changed.
    fn judge(&self, name: &str) {
        let Some(known) = self.instances.get(name) else {
            return;
        };
        let judgement = judge(&known.spec.depends_on, |dependency| {
            self.instances.get(dependency).map(|known| &known.seen)
        });
        match judgement {
            Judgement::Met => self.tell(&known.id, Command::DependenciesMet),
            Judgement::Waiting { text, blocked } => {
                if known.waiting_for.as_deref() != Some(text.as_str()) {
                    self.tell(&known.id, Command::Waiting { text, blocked });
                }
            }
        }
    }

    /// Sends the running dependents of `name` that need it started or
    /// ready back to waiting.
    fn requeue_dependents(&self, name: &str) {
        let Some(dependents) = self.dependents.get(name) else {
            return;
        };
        for dependent in dependents {
            let Some(known) = self.instances.get(dependent) else {
                continue;
            };
            let needs_it_running = known.spec.depends_on.get(name) != Some(&Condition::Completed);
            let active = matches!(
                known.seen.state,
                InstanceState::Starting | InstanceState::Running
            );
            if needs_it_running && active {
                self.tell(&known.id, Command::Requeue);
            }
        }
    }

    /// Sends `command` to an actor without waiting for room in its queue
    /// (an actor busy stopping a process must not hold up the others).
    fn tell(&self, id: &str, command: Command) {
        let Some(orchestrator) = self.orchestrator.upgrade() else {
            return;
        };
        let Ok(handle) = orchestrator.handle(id) else {
            return;
        };
        tokio::spawn(async move {
            let _ = handle.commands.send(command).await;
        });
    }
}

/// Whether this change is a restart of an instance that was ready: one
/// after which its dependents restart too when it asks for that. A stop
/// by a user, the idle timeout or the daemon's shutdown is no restart.
fn restarted(status: &InstanceStatus, previous: Option<InstanceState>, reason: Reason) -> bool {
    status.spec.restart_dependents
        && previous == Some(InstanceState::Running)
        && status.state != InstanceState::Running
        && !matches!(
            reason,
            Reason::UserStop | Reason::UserDelete | Reason::DaemonShutdown | Reason::IdleTimeout
        )
}
