//! The status board: the one event bus of instance changes, and the current
//! status of every instance it implies.
//!
//! Every change is published here under one lock, which assigns the next
//! revision, applies it to the board's copy of the instance, appends it to a
//! bounded history and broadcasts it. A subscriber therefore gets either a
//! snapshot that is exactly the board at some revision, or a gap-free replay
//! from the revision it asks for; everything after comes from the broadcast.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use super::{
    status::{InstanceKind, InstanceState, InstanceStatus, Reason},
    usage::Running,
};
use crate::bus::{self, Bus, Revisioned};

/// Events kept for resuming subscribers (and the broadcast buffer size).
pub const HISTORY: usize = 8192;

/// One change on the bus.
#[derive(Clone, Debug)]
pub struct Event {
    /// Monotonically increasing revision (see [`crate::bus`]).
    pub revision: u64,
    /// When it happened.
    pub time: SystemTime,
    /// What happened.
    pub change: Change,
}

/// What an event says happened.
#[derive(Clone, Debug)]
pub enum Change {
    /// An instance was created or changed.
    Instance {
        /// Its status after the change.
        status: InstanceStatus,
        /// Its state before (None on creation).
        previous: Option<InstanceState>,
        /// Why.
        reason: Reason,
        /// Details (exit code, error).
        detail: String,
    },
    /// An instance was deleted.
    Deleted {
        /// Its last status.
        status: InstanceStatus,
    },
    /// A workspace file was applied or rejected.
    Workspace(WorkspaceChange),
}

/// What happened to a workspace.
#[derive(Clone, Debug)]
pub struct WorkspaceChange {
    /// The workspace.
    pub name: String,
    pub file: std::path::PathBuf,
    /// What applying it changed; `None` when the file was rejected.
    pub diff: Option<WorkspaceDiff>,
    /// Problems: why it was rejected, or what failed while applying it.
    pub errors: Vec<String>,
}

/// What applying a workspace changes, by instance name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceDiff {
    /// Instances to create.
    pub created: Vec<String>,
    /// Instances to delete.
    pub deleted: Vec<String>,
    /// Instances whose spec changed.
    pub changed: Vec<String>,
    /// Instances left alone.
    pub unchanged: Vec<String>,
}

impl Change {
    /// The instance status the change concerns, if it is about one.
    pub fn status(&self) -> Option<&InstanceStatus> {
        match self {
            Self::Instance { status, .. } | Self::Deleted { status } => Some(status),
            Self::Workspace(_) => None,
        }
    }
}

/// Which events and instances a watcher wants; empty fields match all.
#[derive(Debug, Default)]
pub struct EventFilter {
    /// These instances (ids or names).
    pub instances: HashSet<String>,
    /// Instances of these workspaces, and their workspace events.
    pub workspaces: HashSet<String>,
    /// Instances in these states.
    pub states: Vec<InstanceState>,
}

impl EventFilter {
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

    /// Whether an instance of a snapshot is shown.
    pub fn shows(&self, status: &InstanceStatus) -> bool {
        self.instance(status) && (self.states.is_empty() || self.states.contains(&status.state))
    }

    /// Whether an event is sent.
    pub fn passes(&self, event: &Event) -> bool {
        match &event.change {
            Change::Instance { status, .. } => self.shows(status),
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

/// Why a subscription starts with a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotKind {
    /// A new subscription.
    Initial,
    /// The asked-for history is gone (or the subscriber fell behind).
    Resync,
}

/// The board at one revision.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The revision it reflects.
    pub revision: u64,
    /// Why it was taken.
    pub kind: SnapshotKind,
    /// Every instance, ordered by id.
    pub instances: Vec<InstanceStatus>,
}

/// A subscription to the board: a snapshot or a replay, then live events.
pub type Subscription = bus::Subscription<Event, Snapshot>;

impl bus::Snapshot for Snapshot {
    fn revision(&self) -> u64 {
        self.revision
    }
}

impl Revisioned for Event {
    fn revision(&self) -> u64 {
        self.revision
    }
}

struct Board {
    bus: Bus<Event>,
    instances: BTreeMap<String, InstanceStatus>,
}

/// The event bus and the current status of every instance.
pub struct StatusBoard {
    board: Mutex<Board>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        Self {
            board: Mutex::new(Board {
                bus: Bus::new(HISTORY),
                instances: BTreeMap::new(),
            }),
        }
    }
}

impl StatusBoard {
    fn lock(&self) -> MutexGuard<'_, Board> {
        self.board
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes a change and returns its event.
    pub fn publish(&self, change: Change) -> Arc<Event> {
        let mut board = self.lock();
        match &change {
            Change::Instance { status, .. } => {
                board.instances.insert(status.id.clone(), status.clone());
            }
            Change::Deleted { status } => {
                board.instances.remove(&status.id);
            }
            Change::Workspace(_) => {}
        }
        board.bus.publish(|revision| Event {
            revision,
            time: SystemTime::now(),
            change,
        })
    }

    /// Records activity on an instance. Not an event: activity is not a
    /// state change, and a busy instance would flood every watcher.
    pub fn touch(&self, id: &str, at: SystemTime) {
        if let Some(status) = self.lock().instances.get_mut(id) {
            status.last_activity_at = at;
        }
    }

    /// Replaces an instance's status without an event, for changes that
    /// are not transitions (a counter reset).
    pub fn refresh(&self, status: &InstanceStatus) {
        if let Some(current) = self.lock().instances.get_mut(&status.id) {
            let last_activity_at = current.last_activity_at;
            *current = status.clone();
            current.last_activity_at = last_activity_at;
        }
    }

    /// Runs `look` over every instance's current status, under the lock:
    /// for questions about a few instances that need to see all of them,
    /// without copying the board.
    pub fn read<T>(&self, look: impl FnOnce(&mut dyn Iterator<Item = &InstanceStatus>) -> T) -> T {
        look(&mut self.lock().instances.values())
    }

    /// The current status of one instance.
    pub fn get(&self, id: &str) -> Option<InstanceStatus> {
        self.lock().instances.get(id).cloned()
    }

    /// The instances with a process tree a daemon spawned (managed or
    /// re-adopted, not external): those a usage sample measures.
    pub fn running(&self) -> Vec<Running> {
        let board = self.lock();
        let instances = board.instances.values();
        instances
            .filter(|status| status.kind != InstanceKind::External)
            .filter_map(|status| {
                let leader = status.process?;
                let id = status.id.clone();
                Some(Running { id, leader })
            })
            .collect()
    }

    /// Number of instances in each state (every state listed).
    pub fn counts(&self) -> BTreeMap<InstanceState, u32> {
        let mut counts: BTreeMap<InstanceState, u32> =
            InstanceState::ALL.iter().map(|&state| (state, 0)).collect();
        for status in self.lock().instances.values() {
            *counts.entry(status.state).or_default() += 1;
        }
        counts
    }

    /// The current board.
    pub fn snapshot(&self, kind: SnapshotKind) -> Snapshot {
        let board = self.lock();
        Snapshot {
            revision: board.bus.revision(),
            kind,
            instances: board.instances.values().cloned().collect(),
        }
    }

    /// Subscribes; `since` resumes after that revision when the history
    /// still holds every event after it.
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        let board = self.lock();
        board.bus.subscribe(since, |resync| Snapshot {
            revision: board.bus.revision(),
            kind: if resync {
                SnapshotKind::Resync
            } else {
                SnapshotKind::Initial
            },
            instances: board.instances.values().cloned().collect(),
        })
    }
}
