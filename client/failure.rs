//! Turning what went wrong into one readable line.

use std::{error::Error as _, fmt, io};

use outpost::{endpoint::Address, token::TokenError};
use tonic::Code;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// No `--addr` and no default socket location (HOME unset).
    NoDefaultAddress,
    /// The token could not be loaded.
    Token(TokenError),
    /// The daemon could not be reached.
    Connect {
        /// Where we tried.
        address: Address,
        /// What the transport said.
        source: tonic::transport::Error,
    },
    /// The daemon answered with an error.
    Rpc(tonic::Status),
    /// Writing the output failed.
    Output(io::Error),
    /// Input (a file, stdin) could not be read.
    Input(String),
    /// A browser could not be opened.
    Browser(String),
    /// What `wait` waited for will not happen.
    Wait(String),
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Self::Rpc(status)
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        Self::Output(err)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDefaultAddress => {
                f.write_str("no daemon address: HOME is not set; pass --addr unix:///PATH")
            }
            Self::Token(err) => write!(f, "token: {err}"),
            Self::Connect { address, source } => write!(
                f,
                "cannot connect to {address}: {}",
                crate::trust::explain(source, Some(address))
                    .unwrap_or_else(|| connect_cause(source))
            ),
            Self::Rpc(status) => write_status(f, status),
            Self::Output(err) => write!(f, "cannot write output: {err}"),
            Self::Input(message) | Self::Browser(message) | Self::Wait(message) => {
                f.write_str(message)
            }
        }
    }
}

/// The root cause of a connection failure, with a hint where one helps.
fn connect_cause(err: &tonic::transport::Error) -> String {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::NotFound => "no such file — is outpostd running?".to_owned(),
                io::ErrorKind::ConnectionRefused => {
                    "connection refused — is outpostd running?".to_owned()
                }
                io::ErrorKind::PermissionDenied => {
                    "permission denied — the socket belongs to another user".to_owned()
                }
                _ => io.to_string(),
            };
        }
        source = cause.source();
    }
    match err.source() {
        Some(cause) => cause.to_string(),
        None => err.to_string(),
    }
}

fn write_status(f: &mut fmt::Formatter<'_>, status: &tonic::Status) -> fmt::Result {
    let message = status.message();
    if let Some(line) = crate::trust::explain_status(status) {
        return f.write_str(&line);
    }
    match status.code() {
        Code::Unauthenticated => write!(
            f,
            "unauthenticated: wrong or missing token ({message}); pass --token-file FILE or set OUTPOST_TOKEN"
        ),
        Code::DeadlineExceeded => write!(f, "deadline exceeded: no answer within --timeout"),
        code => write!(f, "{}: {message}", code_words(code)),
    }
}

/// `NotFound` → "not found".
fn code_words(code: Code) -> String {
    let name = format!("{code:?}");
    let mut words = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            words.push(' ');
        }
        words.push(c.to_ascii_lowercase());
    }
    words
}
