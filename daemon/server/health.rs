//! gRPC health follows the daemon: every service is SERVING while the
//! state database takes writes and NOT_SERVING while it does not (a change
//! could not be kept), and NOT_SERVING for good once the daemon shuts down.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::store::health::StoreHealth;

/// Reports `names` (and the whole server, "") as the store's `health` says
/// until `stop`; then NOT_SERVING.
pub async fn follow_store(
    reporter: HealthReporter,
    names: [&'static str; 3],
    mut health: watch::Receiver<StoreHealth>,
    stop: CancellationToken,
) {
    loop {
        let status = match *health.borrow_and_update() {
            StoreHealth::Writable => ServingStatus::Serving,
            StoreHealth::Failing { .. } => ServingStatus::NotServing,
        };
        set(&reporter, names, status).await;
        tokio::select! {
            changed = health.changed() => if changed.is_err() { break },
            () = stop.cancelled() => break,
        }
    }
    set(&reporter, names, ServingStatus::NotServing).await;
}

async fn set(reporter: &HealthReporter, names: [&'static str; 3], status: ServingStatus) {
    for name in std::iter::once("").chain(names) {
        reporter.set_service_status(name, status).await;
    }
}
