//! The JSON API under `/api/v1/`: every route calls the same service
//! method a gRPC client reaches, with the same request message, so the
//! validation, the rules and the errors are the gRPC service's own; only
//! the wire differs (the proto3 JSON mapping, HTTP status codes). Errors
//! are `{"code": "<gRPC code name>", "message": "…"}`.

mod combined;
mod instances;
mod sync;

use axum::{
    Json, Router,
    body::Bytes,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};
use tonic::{Code, Status};

use super::Front;

/// The API's routes.
pub(crate) fn routes() -> Router<Front> {
    Router::new()
        .merge(instances::routes())
        .merge(sync::routes())
        .merge(combined::routes())
}

/// A service's answer as an HTTP response.
pub(crate) fn reply<T: Serialize>(answer: Result<tonic::Response<T>, Status>) -> Response {
    match answer {
        Ok(response) => Json(response.into_inner()).into_response(),
        Err(status) => failure(&status),
    }
}

/// A gRPC status as an HTTP error response.
pub(crate) fn failure(status: &Status) -> Response {
    let (http, _) = code(status.code());
    (http, Json(error_body(status))).into_response()
}

/// A gRPC status as the error body.
pub(crate) fn error_body(status: &Status) -> serde_json::Value {
    error(code(status.code()).1, status.message())
}

/// The error body.
pub(crate) fn error(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "code": code, "message": message })
}

/// A request message from a JSON body; an empty body is the default
/// message (the path names what the route needs).
pub(crate) fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, Status> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|err| {
        Status::invalid_argument(format!(
            "request body: not the request message in JSON: {err}"
        ))
    })
}

/// A usage push interval from the query (`field`): whole seconds, 1 to 60.
pub(crate) fn usage_interval(field: &str, seconds: u64) -> Result<std::time::Duration, Status> {
    if (1..=60).contains(&seconds) {
        Ok(std::time::Duration::from_secs(seconds))
    } else {
        Err(Status::invalid_argument(format!(
            "{field}: {seconds} is not from 1 to 60 seconds"
        )))
    }
}

/// The HTTP status and the name of a gRPC code.
fn code(code: Code) -> (StatusCode, &'static str) {
    match code {
        Code::Ok => (StatusCode::OK, "OK"),
        Code::Cancelled => (StatusCode::REQUEST_TIMEOUT, "CANCELLED"),
        Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
        Code::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
        Code::FailedPrecondition => (StatusCode::PRECONDITION_FAILED, "FAILED_PRECONDITION"),
        Code::Aborted => (StatusCode::CONFLICT, "ABORTED"),
        Code::OutOfRange => (StatusCode::BAD_REQUEST, "OUT_OF_RANGE"),
        Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "UNIMPLEMENTED"),
        Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "DATA_LOSS"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
    }
}
