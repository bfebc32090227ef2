//! The gRPC front of the daemon: binds the listeners, puts the access gate
//! in front of every service, serves until told to stop, then drains
//! in-flight calls and cleans up.
//!
//! Services here only translate between gRPC and the domain; they hold no
//! business logic.

mod access;
mod convert;
mod in_flight;
mod listeners;
mod orchestrator;
mod sync;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use thiserror::Error;
use tokio::task::JoinSet;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{
    server::NamedService,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Server,
};
use tonic_health::ServingStatus;

use outpost::proto::{
    self,
    v1::{orchestrator_server::OrchestratorServer, sync_server::SyncServer},
};

use crate::{
    config::{Config, ConfigError},
    orchestrator::{Orchestrator, OrchestratorConfig, StartError},
    store::{self, Store},
    sync::engine::SyncEngine,
    workspaces::Workspaces,
};
use access::Gate;

/// How long in-flight calls may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request the Sync service decodes (content is limited to less).
const MAX_REQUEST: usize = 16 << 20;
/// How long idle connections get to close after GOAWAY before they are
/// dropped.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// Why the daemon could not serve.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A setting cannot be used (the error names it).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another daemon already holds the socket or the data directory.
    #[error("another outpostd{} is already serving {what}", pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default())]
    AlreadyRunning {
        /// What is taken: the socket address or the data directory.
        what: String,
        /// The other daemon's pid, when known.
        pid: Option<u32>,
    },
    /// The state database cannot be used.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The orchestrator could not start (store, subreaper, log directory).
    #[error(transparent)]
    Orchestrator(#[from] StartError),
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
    pub(crate) config: Config,
}

/// Serves `config` until `shutdown` completes, then shuts down gracefully:
/// health turns NOT_SERVING, listeners stop accepting and streams end,
/// in-flight calls get [`DRAIN_TIMEOUT`] to finish, every instance is
/// stopped, and the socket file is removed.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let _data_lock = listeners::lock_data_dir(&config.data_dir)?;
    // Recover before serving: re-adopt what an earlier daemon left running.
    let store = Arc::new(Store::open(&config.data_dir.join(store::FILE_NAME)).await?);
    let orchestrator = Orchestrator::start(
        OrchestratorConfig {
            data_dir: config.data_dir.clone(),
            port_range: config.port_range,
            max_instances: config.max_instances,
        },
        store.clone(),
    )
    .await?;
    let (unix_listener, socket_file) = listeners::bind_unix(&config.socket)?;
    let mut listen_addresses = vec![format!("unix://{}", config.socket.display())];
    let mut tcp_listeners = Vec::new();
    for addr in &config.listen {
        let listener = listeners::bind_tcp(*addr).await?;
        if let Ok(local) = listener.local_addr() {
            listen_addresses.push(format!("tcp://{local}"));
        }
        tcp_listeners.push(listener);
    }

    let gate = Gate::protected(
        nix::unistd::getuid().as_raw(),
        config.token.clone().map(Arc::new),
    );
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let orchestrator_name = <OrchestratorServer<orchestrator::OrchestratorApi>>::NAME;
    let sync_name = <SyncServer<sync::SyncApi<Store, Store>>>::NAME;
    for name in [orchestrator_name, sync_name] {
        health_reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }

    let stop = CancellationToken::new();
    let workspaces = Workspaces::start(config.workspaces_dir.clone(), orchestrator.clone())
        .map_err(|err| {
            ConfigError::new(
                crate::config::setting::WORKSPACES_DIR,
                format!("cannot watch {}: {err}", config.workspaces_dir.display()),
            )
        })?;
    let sync = SyncEngine::start(
        store.clone(),
        store.clone(),
        config.sync_root.clone(),
        config.sync,
    )
    .await
    .map_err(|err| ConfigError::new(crate::config::setting::SYNC_ROOT, err.to_string()))?;
    let config_keeps_instances = config.keep_instances_on_exit;
    let info = Arc::new(DaemonInfo {
        started_at: SystemTime::now(),
        started: Instant::now(),
        listen_addresses,
        config,
    });
    let in_flight = in_flight::InFlight::default();
    let router = Server::builder()
        .tcp_nodelay(true)
        .layer(in_flight.clone())
        .add_service(guarded(health_service, gate.open_on_tcp()))
        // grpcurl 1.8 speaks only v1alpha; newer clients use v1.
        .add_service(guarded(reflection().build_v1()?, gate.clone()))
        .add_service(guarded(reflection().build_v1alpha()?, gate.clone()))
        .add_service(guarded(
            OrchestratorServer::new(orchestrator::OrchestratorApi::new(
                info.clone(),
                orchestrator.clone(),
                workspaces.clone(),
                stop.clone(),
            )),
            gate.clone(),
        ))
        // Content larger than the store accepts must still arrive, so that
        // the answer names the limit rather than the transport's.
        .add_service(guarded(
            SyncServer::new(sync::SyncApi::new(store, sync.clone(), stop.clone()))
                .max_decoding_message_size(MAX_REQUEST),
            gate,
        ));

    let mut servers = JoinSet::new();
    servers.spawn(router.clone().serve_with_incoming_shutdown(
        UnixListenerStream::new(unix_listener),
        stop.clone().cancelled_owned(),
    ));
    for listener in tcp_listeners {
        servers.spawn(router.clone().serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            stop.clone().cancelled_owned(),
        ));
    }
    tracing::info!(
        pid = std::process::id(),
        version = env!("CARGO_PKG_VERSION"),
        addresses = %info.listen_addresses.join(", "),
        "serving"
    );

    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        Some(result) = servers.join_next() => {
            tracing::error!(?result, "a listener stopped unexpectedly; shutting down");
        }
    }
    for name in ["", orchestrator_name, sync_name] {
        health_reporter
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
    stop.cancel();
    if tokio::time::timeout(DRAIN_TIMEOUT, in_flight.idle())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "calls still in flight after the drain timeout; closing them");
    }
    // What is left are idle connections: responsive clients close them at
    // once after GOAWAY; the rest are closed for them.
    let closed = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(result) = servers.join_next().await {
            if let Ok(Err(err)) = result {
                tracing::warn!(%err, "listener ended with an error");
            }
        }
    })
    .await;
    if closed.is_err() {
        servers.abort_all();
    }
    sync.stop().await;
    // No workspace apply may start an instance once they are being stopped.
    workspaces.stop(DRAIN_TIMEOUT).await;
    if config_keeps_instances {
        tracing::info!("leaving instances running for the next daemon (--keep-instances-on-exit)");
    } else {
        orchestrator.shutdown().await;
    }
    drop(socket_file);
    tracing::info!("stopped");
    Ok(())
}

/// Reflection over our contract and the health service.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Converts a wall-clock time to a protobuf timestamp.
fn timestamp(time: SystemTime) -> pbjson_types::Timestamp {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
    }
}

/// Puts `gate` in front of `service`.
fn guarded<S: NamedService, G: Interceptor>(service: S, gate: G) -> InterceptedService<S, G> {
    InterceptedService::new(service, gate)
}
