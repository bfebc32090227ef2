//! Who may use the HTTP front, checked before any route runs:
//! - the `Host` must be this daemon's own (an IP literal or `localhost`,
//!   with its port): a page on another name that resolves to loopback
//!   (DNS rebinding) is refused;
//! - a write must come from the dashboard's own origin: an `Origin` that
//!   names another site is refused, and a browser session's write must
//!   carry one (browsers always send it on writes);
//! - the caller must hold a session cookie or the daemon's bearer token.
//!
//! The page, its assets and the login itself need only the first check:
//! they are no secret, and the page says how to log in.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use outpost::token::Token;

use super::{api::error, session::Sessions};

/// What the checks need.
pub(crate) struct Access {
    /// The port the dashboard is served on.
    pub(crate) port: u16,
    /// The daemon's TCP token, for scripts; None when it has none.
    pub(crate) token: Option<Token>,
    pub(crate) sessions: Sessions,
}

/// How a request proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Credential {
    Session,
    Bearer,
}

impl Access {
    /// The credential `headers` carry, if any holds.
    pub(crate) fn credential(&self, headers: &HeaderMap) -> Option<Credential> {
        if let (Some(token), Some(value)) = (&self.token, headers.get(header::AUTHORIZATION))
            && token.matches_header(value.as_bytes())
        {
            return Some(Credential::Bearer);
        }
        self.sessions
            .is_valid(headers)
            .then_some(Credential::Session)
    }

    /// Whether `host` (a `Host` header or an :authority) names this
    /// daemon.
    fn is_own_host(&self, host: &str) -> bool {
        let Some((name, port)) = host.rsplit_once(':') else {
            return false;
        };
        if port.parse::<u16>() != Ok(self.port) {
            return false;
        }
        let name = name.to_ascii_lowercase();
        name == "localhost"
            || name.parse::<std::net::Ipv4Addr>().is_ok()
            || name
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
    }
}

/// The `Host` a request names: its header, or (HTTP/2) the URI's
/// authority.
pub(crate) fn host(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.as_str())
        })
}

/// Refuses requests for another host: every route sits behind this.
pub(crate) async fn own_host(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    match host(&request) {
        Some(host) if access.is_own_host(host) => next.run(request).await,
        _ => refused(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "the Host header does not name this daemon (use its IP address or localhost with its port)",
        ),
    }
}

/// Refuses unauthenticated API calls and cross-origin writes.
pub(crate) async fn authenticated(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let is_write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let origin = request.headers().get(header::ORIGIN);
    let same_origin = origin.map(|origin| {
        let expected = host(&request).map(|host| format!("http://{host}"));
        origin.to_str().is_ok_and(|origin| {
            Some(origin.to_ascii_lowercase()) == expected.map(|e| e.to_ascii_lowercase())
        })
    });
    if is_write && same_origin == Some(false) {
        return refused(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "a write must come from the dashboard's own origin",
        );
    }
    match access.credential(request.headers()) {
        None => refused(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "log in: open the URL `outpostctl dashboard` prints, or send Authorization: Bearer <token>",
        ),
        Some(Credential::Session) if is_write && same_origin.is_none() => refused(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "a browser session's write must carry an Origin header",
        ),
        Some(_) => next.run(request).await,
    }
}

fn refused(status: StatusCode, code: &'static str, message: &str) -> Response {
    (status, Json(error(code, message))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_own_hosts_pass() {
        let dir = tempfile::tempdir().unwrap();
        let access = Access {
            port: 7878,
            token: None,
            sessions: Sessions::load(dir.path(), 7878).unwrap(),
        };
        for own in [
            "127.0.0.1:7878",
            "localhost:7878",
            "LocalHost:7878",
            "[::1]:7878",
            "192.168.1.9:7878",
        ] {
            assert!(access.is_own_host(own), "{own}");
        }
        for other in [
            "evil.example:7878",
            "127.0.0.1:7879",
            "127.0.0.1",
            "localhost.evil.example:7878",
            "[::1]x:7878",
            "",
        ] {
            assert!(!access.is_own_host(other), "{other}");
        }
    }
}
