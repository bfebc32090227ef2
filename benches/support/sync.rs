//! What the sync benchmarks share: the Sync client and waiting until a
//! daemon has nothing left to reconcile, so that one measurement's
//! aftermath is not timed in the next.

use std::time::{Duration, Instant};

use outpost::{
    endpoint::AuthChannel,
    proto::v1::{self as pb, sync_client::SyncClient},
};

use super::BoxError;

/// A Sync client.
pub type Sync = SyncClient<AuthChannel>;

/// How long to wait for one expected event, or for a daemon to settle.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until the daemon reports no dirty path; fails after
/// [`EVENT_TIMEOUT`].
pub async fn settle(sync: &mut Sync) -> Result<(), BoxError> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let status = sync
            .get_sync_status(pb::GetSyncStatusRequest {})
            .await?
            .into_inner();
        if status.dirty_count == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} paths still dirty after {EVENT_TIMEOUT:?}",
                status.dirty_count
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
