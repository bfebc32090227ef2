//! Who may call what.
//!
//! On the Unix socket every call must come from the daemon's own uid (or
//! root), checked through `SO_PEERCRED`. On TCP every call must carry the
//! bearer token, except the health service, which is open; TLS is TCP
//! here. With `--tls-client-ca`, a TLS call must also come over a
//! connection that presented a client certificate: the handshake checks
//! any certificate presented against the CA, and lets one without a
//! certificate through only so that this gate can refuse it in words
//! (with TLS 1.3 a refused handshake reaches the client after its first
//! request as a bare "transport error"). A certificate does not replace
//! the token.

use std::sync::Arc;

use tonic::{
    Request, Status,
    service::Interceptor,
    transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo},
};

use outpost::{tls::CLIENT_CERT_REQUIRED, token::Token};

/// The access check in front of a service.
#[derive(Clone, Debug)]
pub(crate) struct Gate {
    owner_uid: u32,
    token: Option<Arc<Token>>,
    open_on_tcp: bool,
    client_certs: bool,
}

impl Gate {
    /// A gate for services that need the token on TCP.
    pub(crate) fn protected(owner_uid: u32, token: Option<Arc<Token>>) -> Self {
        Self {
            owner_uid,
            token,
            open_on_tcp: false,
            client_certs: false,
        }
    }

    /// The same gate, requiring a client certificate on TLS connections.
    pub(crate) fn requiring_client_certs(self, required: bool) -> Self {
        Self {
            client_certs: required,
            ..self
        }
    }

    /// The same gate, but open to anyone who reaches it over TCP.
    pub(crate) fn open_on_tcp(&self) -> Self {
        Self {
            open_on_tcp: true,
            ..self.clone()
        }
    }

    fn check_peer_uid(&self, info: &UdsConnectInfo) -> Result<(), Status> {
        match info.peer_cred.map(|cred| cred.uid()) {
            Some(uid) if uid == self.owner_uid || uid == 0 => Ok(()),
            Some(uid) => {
                tracing::warn!(uid, "refused a socket client of another user");
                Err(Status::permission_denied(format!(
                    "uid {uid} may not use this daemon (it runs as uid {})",
                    self.owner_uid
                )))
            }
            None => Err(Status::permission_denied(
                "the socket peer's credentials are unavailable",
            )),
        }
    }

    fn check_token<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let presented = request.metadata().get("authorization");
        match (&self.token, presented) {
            (Some(token), Some(value)) if token.matches_header(value.as_bytes()) => Ok(()),
            (_, None) => Err(Status::unauthenticated(
                "missing bearer token: send 'authorization: Bearer <token>'",
            )),
            _ => {
                tracing::warn!(peer = ?request.remote_addr(), "refused a TCP call with a wrong token");
                Err(Status::unauthenticated("wrong bearer token"))
            }
        }
    }
}

/// Who made a call, as the history names them: the peer's user over the
/// socket, the peer's address over TCP or TLS; a call with no transport
/// of its own came through the HTTP API.
pub(crate) fn caller<T>(request: &Request<T>) -> String {
    let extensions = request.extensions();
    if let Some(info) = extensions.get::<UdsConnectInfo>() {
        return match info.peer_cred.map(|cred| cred.uid()) {
            Some(uid) => format!("uid {uid} (unix socket)"),
            None => "unix socket".into(),
        };
    }
    let address = request
        .remote_addr()
        .map_or_else(|| "unknown".to_owned(), |addr| addr.to_string());
    if extensions.get::<TlsConnectInfo<TcpConnectInfo>>().is_some() {
        format!("{address} (tls)")
    } else if extensions.get::<TcpConnectInfo>().is_some() {
        format!("{address} (tcp)")
    } else {
        "HTTP API".into()
    }
}

impl Interceptor for Gate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let extensions = request.extensions();
        if let Some(info) = extensions.get::<UdsConnectInfo>() {
            self.check_peer_uid(info)?;
        } else if let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
            if !self.open_on_tcp {
                let presented = tls.peer_certs().is_some_and(|certs| !certs.is_empty());
                if self.client_certs && !presented {
                    tracing::warn!(peer = ?request.remote_addr(), "refused a TLS call without a client certificate");
                    return Err(Status::unauthenticated(CLIENT_CERT_REQUIRED));
                }
                self.check_token(&request)?;
            }
        } else if extensions.get::<TcpConnectInfo>().is_some() {
            if !self.open_on_tcp {
                self.check_token(&request)?;
            }
        } else {
            return Err(Status::permission_denied("unknown transport"));
        }
        Ok(request)
    }
}
