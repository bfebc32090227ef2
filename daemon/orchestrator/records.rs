//! What the orchestrator keeps across daemon restarts, and the interface of
//! whatever keeps it. The orchestrator never names a database: the daemon
//! hands it an [`InstanceRecords`] (the SQLite store) at start, and the
//! [`writer`](super::writer) is the only one that writes through it.

use std::{future::Future, time::SystemTime};

use super::status::{InstanceStatus, Reason};

/// One change to persist.
#[derive(Debug)]
pub enum Op {
    /// Insert or update an instance's record, and append a transition.
    Upsert {
        /// The status to store.
        status: Box<InstanceStatus>,
        /// The transition that led to it, if this is one.
        transition: Option<Transition>,
    },
    /// Remove an instance (its transitions and port go with it).
    Delete { id: String },
}

/// A recorded state transition.
#[derive(Debug)]
pub struct Transition {
    /// When.
    pub at: SystemTime,
    /// Why.
    pub reason: Reason,
    pub detail: String,
}

/// An instance as stored, with the identity of its process's machine.
#[derive(Debug)]
pub struct StoredInstance {
    /// Its status when last written.
    pub status: InstanceStatus,
    /// Boot id of the machine its process was started on.
    pub boot_id: Option<String>,
}

/// Why records could not be read or written; the text names the file and
/// the cause.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct RecordsError(pub String);

/// Where instances are kept.
pub trait InstanceRecords: Send + Sync + 'static {
    /// Every stored instance, oldest first.
    fn load(&self) -> impl Future<Output = Result<Vec<StoredInstance>, RecordsError>> + Send;

    /// Applies `ops` in order, all or none; `boot_id` is recorded with
    /// every process identity.
    fn apply(
        &self,
        ops: &[Op],
        boot_id: &str,
    ) -> impl Future<Output = Result<(), RecordsError>> + Send;
}
