//! The daemon as a whole: its domains, and the order they start and stop
//! in. A front end (the gRPC transport in `server`) is started after
//! [`Daemon::start`] and finished before [`Daemon::stop`].
//!
//! Start: the data directory is locked (a second daemon on it stops
//! here), the state database opened and checked, the orchestrator started —
//! which re-adopts what an earlier daemon left running — then the
//! workspace engine (which may create instances) and the sync engine. With
//! `--mybb`, the forum is read and its database looked at once (groups,
//! rows) before the sync engine's first rescan, and polled after it; a
//! database that does not answer yet is waited for, not fatal.
//!
//! Stop: the forum's poller and the sync engine first (it finishes the
//! entity it is at), then the
//! workspace engine (an apply in progress gets [`DRAIN_TIMEOUT`], later
//! ones are refused), so that nothing starts an instance while they are
//! being stopped; then every instance stops, unless they are kept for the
//! next daemon (how to stop is the request's: [`crate::shutdown`]); either
//! way every change is stored before the lock goes.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::watch;

use crate::{
    config::{Config, ConfigError, setting},
    history::{History, RepoError},
    orchestrator::{Orchestrator, OrchestratorConfig, StartError},
    pid_lock::{AlreadyRunning, PidLock, create_private_dir},
    shutdown::{AtExit, Stopped},
    store::{
        self, Store, StoreError,
        backend::ContentBackend,
        health::StoreHealth,
        mybb::{MybbStore, forum::Forum},
    },
    sync::{engine::SyncEngine, service::SyncService},
    workspaces::Workspaces,
};

/// How long a workspace apply in progress may take to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A setting cannot be used (the error names it).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another daemon holds the data directory.
    #[error(transparent)]
    AlreadyRunning(#[from] AlreadyRunning),
    /// The state database cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The orchestrator could not start (records, subreaper, log directory).
    #[error(transparent)]
    Orchestrator(#[from] StartError),
    /// The history repository cannot be opened or indexed.
    #[error(transparent)]
    History(#[from] RepoError),
}

/// The running daemon's domains.
pub struct Daemon {
    /// Its configuration.
    pub config: Config,
    /// When it started, by the wall clock.
    pub started_at: SystemTime,
    /// When it started, for its uptime.
    pub started: Instant,
    /// Instances.
    pub orchestrator: Arc<Orchestrator>,
    /// Workspace files.
    pub workspaces: Workspaces,
    /// Content and its mirror on disk.
    pub sync: Arc<SyncService<ContentBackend>>,
    /// Whether the state database takes writes.
    pub store_health: watch::Receiver<StoreHealth>,
    /// Polls a forum's database for changes made there.
    poller: Option<tokio::task::JoinHandle<()>>,
    _data_lock: PidLock,
}

impl Daemon {
    /// Starts every domain, in order (see the module).
    pub async fn start(config: Config) -> Result<Self, DaemonError> {
        let started_at = SystemTime::now();
        let started = Instant::now();
        let data_lock = lock_data_dir(&config.data_dir)?;
        let store = Arc::new(Store::open(&config.data_dir.join(store::FILE_NAME)).await?);
        store::guard::start(store.clone());
        let history = match config.history {
            Some(retention) => History::start(&config.data_dir, store.clone(), retention).await?,
            None => History::off(),
        };
        let orchestrator = Orchestrator::start(
            OrchestratorConfig {
                data_dir: config.data_dir.clone(),
                port_range: config.port_range,
                max_instances: config.max_instances,
            },
            store.clone(),
        )
        .await?;
        let workspaces = Workspaces::start(
            config.workspaces_dir.clone(),
            orchestrator.clone(),
            config.max_instances,
            history.clone(),
        )
        .map_err(|err| {
            ConfigError::new(
                setting::WORKSPACES_DIR,
                format!("cannot watch {}: {err}", config.workspaces_dir.display()),
            )
        })?;
        let (content, poller) = match &config.mybb {
            None => (ContentBackend::Native(store.clone()), None),
            Some(mybb) => {
                let url = mybb.database_url.as_ref().map(|url| url.0.as_str());
                let forum = Forum::open(&mybb.root, url).map_err(|reason| {
                    let setting = if url.is_some() && reason.starts_with("--mybb-database") {
                        setting::MYBB_DATABASE
                    } else {
                        setting::MYBB
                    };
                    ConfigError::new(setting, reason)
                })?;
                tracing::info!(?forum, "syncing with a MyBB forum");
                let (mybb_store, mut poller) = MybbStore::open(forum, mybb.poll);
                poller.first_look().await;
                (ContentBackend::Mybb(mybb_store), Some(poller))
            }
        };
        let content = Arc::new(content);
        let engine = SyncEngine::start(
            content.clone(),
            store.clone(),
            config.sync_root.clone(),
            config.sync,
            history.clone(),
        )
        .await
        .map_err(|err| ConfigError::new(setting::SYNC_ROOT, err.to_string()))?;
        let poller = poller.map(|poller| tokio::spawn(poller.run(engine.clone())));
        Ok(Self {
            config,
            started_at,
            started,
            orchestrator,
            workspaces,
            sync: Arc::new(SyncService::new(content, engine, history)),
            store_health: store.health(),
            poller,
            _data_lock: data_lock,
        })
    }

    /// Stops every domain, in order (see the module); the instances as
    /// `at_exit` says. Returns once every change is stored (or storing it
    /// failed) and the data directory's lock is released.
    pub async fn stop(self, at_exit: AtExit) -> Stopped {
        if let Some(poller) = &self.poller {
            poller.abort();
        }
        self.sync.engine().stop().await;
        self.workspaces.stop(DRAIN_TIMEOUT).await;
        // What the engine and the applies did is committed before the
        // lock goes.
        self.sync.history().stop(DRAIN_TIMEOUT).await;
        let active_instances = (self.orchestrator.counts().iter())
            .filter(|(state, _)| state.is_active())
            .map(|(_, count)| count)
            .sum();
        let saved = match at_exit {
            AtExit::KeepInstances => {
                tracing::info!(
                    active_instances,
                    "leaving instances running for the next daemon"
                );
                self.orchestrator.flush().await
            }
            AtExit::StopInstances => self.orchestrator.shutdown().await,
        };
        let unsaved = saved.err().map(|err| {
            tracing::error!(%err, "state not saved at shutdown");
            err.to_string()
        });
        drop(self);
        Stopped {
            active_instances,
            at_exit,
            unsaved,
        }
    }
}

/// Takes group and other access away from the data directory made by
/// someone else: it holds the state, every instance's logs and the
/// instances' environment.
fn make_private(dir: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let cannot = |err: std::io::Error| {
        ConfigError::new(
            setting::DATA_DIR,
            format!("cannot make {} private (0700): {err}", dir.display()),
        )
    };
    let mode = std::fs::metadata(dir).map_err(cannot)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7700))
            .map_err(cannot)?;
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:04o}"), "the data directory was open to group or others; made private");
    }
    Ok(())
}

/// Prepares and locks the data directory.
fn lock_data_dir(dir: &Path) -> Result<PidLock, DaemonError> {
    create_private_dir(setting::DATA_DIR, dir)?;
    make_private(dir)?;
    let lock_path = dir.join("outpostd.lock");
    match PidLock::acquire(&lock_path) {
        Ok(Ok(lock)) => Ok(lock),
        Ok(Err(pid)) => Err(AlreadyRunning {
            what: format!("data dir {}", dir.display()),
            pid,
        }
        .into()),
        Err(err) => Err(ConfigError::new(
            setting::DATA_DIR,
            format!("{} is not writable: {err}", lock_path.display()),
        )
        .into()),
    }
}
