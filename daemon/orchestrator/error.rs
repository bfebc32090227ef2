//! Why an orchestrator call failed, by what it means; the gRPC front maps
//! each to a status code in one place (`server::convert`).

use outpost::spec::InvalidField;

use super::{ports::PortError, records::RecordsError};

/// Why an orchestrator call failed.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// A field of the request cannot be used.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, as named in the API (`spec.name`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No instance has that id or name (any more).
    #[error("{0}")]
    NoSuchInstance(String),
    /// The name or project belongs to another instance.
    #[error("{0}")]
    Taken(String),
    /// The instance cannot do that: it is external, or a workspace owns it.
    #[error("{0}")]
    Refused(String),
    /// The process could not be started, or did not become ready.
    #[error("{0}")]
    StartFailed(String),
    /// The fixed port is allocated to another instance or used by another
    /// process.
    #[error("{0}")]
    PortTaken(String),
    /// A limit is reached: the most instances, or every port of the pool.
    #[error("{0}")]
    LimitReached(String),
    /// The change happened but could not be stored.
    #[error("{0}")]
    Storage(String),
}

/// Why the orchestrator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The stored instances could not be read.
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// The subreaper or the log directory could not be set up.
    #[error("{0}")]
    Io(std::io::Error),
}

impl From<InvalidField> for OrchestratorError {
    fn from(err: InvalidField) -> Self {
        Self::Invalid {
            field: err.field,
            reason: err.reason,
        }
    }
}

impl From<PortError> for OrchestratorError {
    fn from(err: PortError) -> Self {
        match err {
            PortError::Exhausted(_) => Self::LimitReached(err.to_string()),
            PortError::Allocated { .. } | PortError::InUse(_) => Self::PortTaken(err.to_string()),
        }
    }
}

impl From<RecordsError> for OrchestratorError {
    fn from(err: RecordsError) -> Self {
        Self::Storage(err.0)
    }
}
