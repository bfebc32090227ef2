//! The gRPC transport, a leaf: it binds the listeners, puts the access
//! gate in front of every service, serves the daemon's domains until told
//! to stop, then drains the calls in flight and removes its socket. The
//! services only translate between gRPC and the domain ([`convert`]); the
//! order in which the domains start and stop is the
//! [`Daemon`](crate::daemon::Daemon)'s.

mod access;
mod activation;
mod convert;
mod health;
mod history;
mod in_flight;
mod listeners;
mod orchestrator;
mod stream;
mod sync;
mod tls;
mod unix_authority;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use thiserror::Error;
use tokio::{
    net::{TcpListener, UnixListener},
    task::JoinSet,
};
use tokio_stream::{StreamExt, wrappers::UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{
    server::NamedService,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Server, server::TcpIncoming},
};

use outpost::proto::{
    self,
    v1::{
        history_server::HistoryServer, orchestrator_server::OrchestratorServer,
        sync_server::SyncServer,
    },
};

use crate::{
    config::{Config, ConfigError},
    daemon::Daemon,
    http::{self, HttpListener, Logins},
    orchestrator::ports::PortRange,
    pid_lock::AlreadyRunning,
    shutdown::Shutdown,
    store::backend::ContentBackend,
};
use access::Gate;
pub(crate) use in_flight::InFlight;
use listeners::SocketFile;
pub(crate) use orchestrator::OrchestratorApi;
pub(crate) use sync::SyncApi;
use unix_authority::UnixAuthority;

/// How long in-flight calls may take to finish once the daemon stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request the Sync service decodes (content is limited to less).
const MAX_REQUEST: usize = 16 << 20;
/// How long idle connections get to close after GOAWAY before they are
/// dropped.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// Why the transport could not serve.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A setting cannot be used (the error names it).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another daemon already holds the socket.
    #[error(transparent)]
    AlreadyRunning(#[from] AlreadyRunning),
    /// The dashboard's listener or its session key cannot be set up.
    #[error("--http: {0}")]
    Http(std::io::Error),
    /// Reflection could not be built from the descriptor sets.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Facts about this daemon process, reported by `GetDaemonStatus`.
#[derive(Debug)]
pub(crate) struct DaemonInfo {
    pub(crate) started_at: SystemTime,
    pub(crate) started: Instant,
    pub(crate) listen_addresses: Vec<String>,
    pub(crate) data_dir: PathBuf,
    pub(crate) port_range: PortRange,
    pub(crate) max_instances: u32,
    pub(crate) sync_root: PathBuf,
    pub(crate) workspaces_dir: PathBuf,
    /// The TLS certificate's fingerprint, empty without TLS listeners.
    pub(crate) tls_fingerprint: String,
    /// The history repository, when history is on.
    pub(crate) history_path: Option<PathBuf>,
    pub(crate) store_health: tokio::sync::watch::Receiver<crate::store::health::StoreHealth>,
    /// The dashboard, when the daemon serves one.
    pub(crate) dashboard: Option<Dashboard>,
}

/// Where the dashboard is and who hands out its login codes.
#[derive(Debug)]
pub(crate) struct Dashboard {
    pub(crate) url: String,
    pub(crate) logins: Logins,
}

/// The daemon's listeners, bound but not serving yet.
pub struct Listeners {
    unix: UnixListener,
    socket: SocketFile,
    tcp: Vec<TcpListener>,
    tls: Vec<TcpListener>,
    tls_setup: Option<tls::TlsSetup>,
    http: Option<HttpListener>,
    addresses: Vec<String>,
}

/// Loads the TLS certificate (making a self-signed one on the first
/// start), binds the Unix socket (refusing while another daemon holds it)
/// and the TCP and TLS listeners of `config`, or takes them from the
/// service manager ([`activation`]). Clients that connect now wait until
/// [`serve`] accepts them.
pub async fn bind(config: &Config) -> Result<Listeners, ServerError> {
    let tls_setup = tls::load(config)?;
    if let Some(setup) = &tls_setup {
        tracing::info!(fingerprint = %setup.fingerprint, "TLS certificate (SHA-256)");
    }
    let mut inherited = activation::Inherited::take()?;
    let (unix, socket) = listeners::bind_unix(&config.socket, &mut inherited)?;
    let mut addresses = vec![format!("unix://{}", config.socket.display())];
    let (mut tcp, mut tls) = (Vec::new(), Vec::new());
    for addr in &config.listen {
        let listener = listeners::bind_tcp(*addr, &mut inherited).await?;
        if let Ok(local) = listener.local_addr() {
            addresses.push(format!("{}://{local}", addr.scheme()));
        }
        if addr.tls { &mut tls } else { &mut tcp }.push(listener);
    }
    inherited.finish()?;
    let http = http::bind(config).await.map_err(ServerError::Http)?;
    Ok(Listeners {
        unix,
        socket,
        tcp,
        tls,
        tls_setup,
        http,
        addresses,
    })
}

/// Serves `daemon` on `listeners`; every listener accepts once this
/// returns. `shutdown` is what the `Shutdown` RPC asks; stopping is then
/// [`Serving::drain`], the daemon's stop, and [`Serving::close`].
pub async fn serve(
    listeners: Listeners,
    daemon: &Daemon,
    shutdown: Shutdown,
) -> Result<Serving, ServerError> {
    let config = &daemon.config;
    let gate = Gate::protected(
        nix::unistd::getuid().as_raw(),
        config.token.clone().map(Arc::new),
    )
    .requiring_client_certs(config.tls.client_ca.is_some());
    let http_access = (listeners.http.as_ref())
        .map(|http| http.access(config))
        .transpose()
        .map_err(ServerError::Http)?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let orchestrator_name = <OrchestratorServer<orchestrator::OrchestratorApi>>::NAME;
    let sync_name = <SyncServer<sync::SyncApi<ContentBackend>>>::NAME;
    let history_name = <HistoryServer<history::HistoryApi<ContentBackend>>>::NAME;
    let stop = CancellationToken::new();
    let health = tokio::spawn(health::follow_store(
        health_reporter,
        [orchestrator_name, sync_name, history_name],
        daemon.store_health.clone(),
        stop.clone(),
    ));
    let info = Arc::new(DaemonInfo {
        started_at: daemon.started_at,
        started: daemon.started,
        listen_addresses: listeners.addresses.clone(),
        data_dir: config.data_dir.clone(),
        port_range: config.port_range,
        max_instances: config.max_instances,
        sync_root: config.sync_root.clone(),
        workspaces_dir: config.workspaces_dir.clone(),
        tls_fingerprint: (listeners.tls_setup.as_ref())
            .map(|setup| setup.fingerprint.to_string())
            .unwrap_or_default(),
        history_path: daemon.sync.history().dir().map(Into::into),
        store_health: daemon.store_health.clone(),
        dashboard: listeners.http.as_ref().map(|http| Dashboard {
            url: http.url.clone(),
            logins: Logins::start(),
        }),
    });
    let orchestrator_api = Arc::new(orchestrator::OrchestratorApi {
        info: info.clone(),
        orchestrator: daemon.orchestrator.clone(),
        workspaces: daemon.workspaces.clone(),
        stop: stop.clone(),
        shutdown,
    });
    let sync_api = Arc::new(sync::SyncApi {
        sync: daemon.sync.clone(),
        stop: stop.clone(),
    });
    let history_api = Arc::new(history::HistoryApi {
        sync: daemon.sync.clone(),
        workspaces: daemon.workspaces.clone(),
    });
    let in_flight = in_flight::InFlight::default();
    // One set of routes; TLS is a setting of tonic's server, so TLS
    // listeners get a second server with the same routes.
    let routes = |server: Server| -> Result<_, ServerError> {
        Ok(server
            .tcp_nodelay(true)
            .layer(in_flight.clone())
            .add_service(guarded(health_service.clone(), gate.open_on_tcp()))
            // grpcurl 1.8 speaks only v1alpha; newer clients use v1.
            .add_service(guarded(reflection().build_v1()?, gate.clone()))
            .add_service(guarded(reflection().build_v1alpha()?, gate.clone()))
            .add_service(guarded(
                OrchestratorServer::from_arc(orchestrator_api.clone()),
                gate.clone(),
            ))
            // Content larger than the store accepts must still arrive, so that
            // the answer names the limit rather than the transport's.
            .add_service(guarded(
                SyncServer::from_arc(sync_api.clone()).max_decoding_message_size(MAX_REQUEST),
                gate.clone(),
            ))
            .add_service(guarded(
                HistoryServer::from_arc(history_api.clone()),
                gate.clone(),
            )))
    };
    let router = routes(Server::builder())?;

    let mut servers = JoinSet::new();
    // Socket clients may name the socket as :authority; TCP clients keep
    // h2's validation. The wrapper assumes h2's default frame size and
    // header table size, which this builder leaves alone.
    let unix =
        UnixListenerStream::new(listeners.unix).map(|accepted| accepted.map(UnixAuthority::new));
    servers.spawn(
        router
            .clone()
            .serve_with_incoming_shutdown(unix, stop.clone().cancelled_owned()),
    );
    for listener in listeners.tcp {
        servers.spawn(
            router
                .clone()
                .serve_with_incoming_shutdown(nodelay(listener), stop.clone().cancelled_owned()),
        );
    }
    if let Some(setup) = listeners.tls_setup {
        // Checked at bind: the configuration is known to build.
        let tls_router =
            routes(Server::builder().tls_config(setup.config).map_err(|err| {
                ConfigError::new(crate::config::setting::TLS_CERT, err.to_string())
            })?)?;
        for listener in listeners.tls {
            servers.spawn(
                tls_router.clone().serve_with_incoming_shutdown(
                    nodelay(listener),
                    stop.clone().cancelled_owned(),
                ),
            );
        }
    }
    let mut front = None;
    if let (Some(listener), Some(access), Some(dashboard)) =
        (listeners.http, http_access, &info.dashboard)
    {
        let routes = http::Front {
            orchestrator: orchestrator_api,
            sync: sync_api,
            access,
            logins: dashboard.logins.clone(),
            renders: Arc::default(),
        };
        front = Some(tokio::spawn(http::serve(
            listener,
            routes,
            in_flight.clone(),
            stop.clone(),
        )));
    }
    tracing::info!(
        pid = std::process::id(),
        version = env!("CARGO_PKG_VERSION"),
        addresses = %info.listen_addresses.join(", "),
        http = info.dashboard.as_ref().map_or("none", |dashboard| dashboard.url.as_str()),
        "serving"
    );

    Ok(Serving {
        servers,
        front,
        stop,
        health,
        in_flight,
        socket: Some(listeners.socket),
    })
}

/// The transport while it serves, and while it stops.
pub struct Serving {
    servers: JoinSet<Result<(), tonic::transport::Error>>,
    front: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    stop: CancellationToken,
    health: tokio::task::JoinHandle<()>,
    in_flight: InFlight,
    socket: Option<SocketFile>,
}

impl Serving {
    /// Completes if a listener stops by itself (it should not).
    pub async fn failed(&mut self) {
        match self.servers.join_next().await {
            Some(result) => {
                tracing::error!(?result, "a listener stopped unexpectedly; shutting down");
            }
            None => std::future::pending().await,
        }
    }

    /// Stops taking calls: health turns NOT_SERVING, the listeners stop
    /// accepting, every stream ends, calls in flight get [`DRAIN_TIMEOUT`]
    /// (except `Shutdown` calls, which wait for the shutdown itself), and
    /// the socket file is removed and its lock released.
    pub async fn drain(&mut self) {
        tracing::info!("shutting down");
        self.stop.cancel();
        let _ = (&mut self.health).await;
        if tokio::time::timeout(DRAIN_TIMEOUT, self.in_flight.idle())
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "calls still in flight after the drain timeout; closing them");
        }
        self.socket.take();
    }

    /// Closes what is left once the daemon has stopped: the answered
    /// `Shutdown` calls get [`DRAIN_TIMEOUT`] to be sent, idle connections
    /// [`CLOSE_GRACE`] (responsive clients close them at once after GOAWAY;
    /// the rest are closed for them).
    pub async fn close(mut self) {
        if tokio::time::timeout(DRAIN_TIMEOUT, self.in_flight.answered())
            .await
            .is_err()
        {
            tracing::warn!("a Shutdown call could not be answered in time");
        }
        let closed = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(result) = self.servers.join_next().await {
                if let Ok(Err(err)) = result {
                    tracing::warn!(%err, "listener ended with an error");
                }
            }
        })
        .await;
        if closed.is_err() {
            self.servers.abort_all();
        }
        if let Some(front) = self.front {
            let abort = front.abort_handle();
            match tokio::time::timeout(CLOSE_GRACE, front).await {
                Ok(Ok(Err(err))) => tracing::warn!(%err, "the HTTP listener ended with an error"),
                Ok(_) => {}
                Err(_) => abort.abort(),
            }
        }
    }
}

/// Accepted TCP connections with TCP_NODELAY: the builder's `tcp_nodelay`
/// applies only to listeners tonic binds itself, and without it a small
/// response waited for the peer's delayed ACK (about 40 ms a call).
fn nodelay(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Reflection over our contract and the health service.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Puts `gate` in front of `service`.
fn guarded<S: NamedService, G: Interceptor>(service: S, gate: G) -> InterceptedService<S, G> {
    InterceptedService::new(service, gate)
}
