//! The HTTP front, a leaf beside the gRPC transport: the dashboard page,
//! the JSON API and Server-Sent Events on the `--http` listener (axum, on
//! the daemon's runtime). It translates only: every API route calls the
//! gRPC service's own method with the same request message, so no rule,
//! validation or error is written twice. What it adds is the browser's
//! access: one-time login codes, session cookies, and the Host and Origin
//! checks ([`access`]).

mod access;
mod api;
mod logins;
mod page;
mod renders;
mod session;
mod sse;

use std::{io, net::SocketAddr, sync::Arc};

use axum::{Router, middleware};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    server::{OrchestratorApi, SyncApi},
    store::backend::ContentBackend,
};
use access::Access;
pub(crate) use logins::Logins;
use session::Sessions;

/// The dashboard's listener, bound.
pub struct HttpListener {
    listener: TcpListener,
    port: u16,
    /// The URL the dashboard is reached at.
    pub(crate) url: String,
}

impl HttpListener {
    /// The access rules of this listener, for a daemon with `config`: its
    /// session key is loaded from the data directory (made on first use),
    /// which must exist by now.
    pub(crate) fn access(&self, config: &Config) -> io::Result<Arc<Access>> {
        Ok(Arc::new(Access {
            port: self.port,
            token: config.token.clone(),
            sessions: Sessions::load(&config.data_dir, self.port)?,
        }))
    }
}

/// Binds `--http` if given.
pub async fn bind(config: &Config) -> io::Result<Option<HttpListener>> {
    let Some(addr) = config.http else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}")))?;
    let local = listener.local_addr()?;
    Ok(Some(HttpListener {
        listener,
        port: local.port(),
        url: format!("http://{}", browsable(local)),
    }))
}

/// The address a browser can open: an unspecified address (all
/// interfaces) is reached through loopback.
fn browsable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, v4.port()))
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6.port()))
        }
        other => other,
    }
}

/// What every route reaches.
#[derive(Clone)]
pub(crate) struct Front {
    pub(crate) orchestrator: Arc<OrchestratorApi>,
    pub(crate) sync: Arc<SyncApi<ContentBackend>>,
    pub(crate) access: Arc<Access>,
    pub(crate) logins: Logins,
    /// Bus events' JSON, rendered once for every SSE stream.
    pub(crate) renders: Arc<renders::Renders>,
}

impl axum::extract::FromRef<Front> for Arc<Access> {
    fn from_ref(front: &Front) -> Self {
        front.access.clone()
    }
}

/// What no route serves: an API caller gets the JSON error it expects.
async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    let status = tonic::Status::not_found(format!(
        "no such resource: {}",
        outpost::limits::cut(uri.path())
    ));
    api::failure(&status)
}

/// Serves the front on `listener` until `stop` is cancelled; streams end
/// then (the services' own streams watch the same token), and the
/// connections close once their responses are done.
pub(crate) async fn serve(
    listener: HttpListener,
    front: Front,
    tracked: crate::server::InFlight,
    stop: CancellationToken,
) -> io::Result<()> {
    let access = front.access.clone();
    let api = api::routes().route_layer(middleware::from_fn_with_state(
        access.clone(),
        access::authenticated,
    ));
    let router = Router::new()
        .merge(api)
        .merge(page::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(access, access::own_host))
        .layer(middleware::map_response(page::hardened))
        .layer(tracked)
        .with_state(front);
    axum::serve(listener.listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}
