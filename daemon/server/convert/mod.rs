//! Translation between the `outpost.v1` messages and the domain: requests
//! into domain calls (every field error names the field), domain values
//! into messages, and every domain error into its gRPC status — here and
//! nowhere else.

pub mod history;
pub mod orchestrator;
pub mod spec;
pub mod sync;

use std::time::{Duration, SystemTime};

use tonic::Status;

/// An INVALID_ARGUMENT status naming `field`.
pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {reason}"))
}

/// A protobuf duration as a std one; negative or malformed is invalid.
pub fn duration(
    field: &str,
    value: Option<&pbjson_types::Duration>,
) -> Result<Option<Duration>, Status> {
    let Some(value) = value else { return Ok(None) };
    if value.seconds < 0 || value.nanos < 0 || value.nanos >= 1_000_000_000 {
        return Err(invalid(field, "must be a non-negative duration"));
    }
    Ok(Some(Duration::new(
        value.seconds as u64,
        value.nanos as u32,
    )))
}

/// A wall-clock time as a protobuf timestamp, clamped to what one holds.
pub fn timestamp(time: SystemTime) -> pbjson_types::Timestamp {
    outpost::limits::timestamp(time)
}

/// [`timestamp`], for optional message fields.
fn time(time: SystemTime) -> Option<pbjson_types::Timestamp> {
    Some(timestamp(time))
}
