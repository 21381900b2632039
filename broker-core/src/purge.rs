//! [`spawn_purge_task`]: purge expired sessions (and forgotten revocation
//! markers) periodically, for every backend, without writing your own loop.
//!
//! Unlike a loop that ends at the first error, the task logs a failed purge
//! and tries again after a backoff (1 s, doubling, at most the period), so a
//! database that is down for a while costs a few log lines, not the purging.
//! It stops when its [`PurgeTask`] handle is dropped or stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::store::BrokerStore;

/// The first retry delay after a failed purge.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The running purge task; dropping it stops the task.
#[derive(Debug)]
#[must_use = "the purge task stops when this handle is dropped"]
pub struct PurgeTask {
    handle: JoinHandle<()>,
}

impl PurgeTask {
    /// Stop the task and wait until it has stopped (a purge under way is
    /// abandoned; the next one, by any worker, finishes its work).
    pub async fn stop(self) {
        self.handle.abort();
        let _ = (&mut { self }.handle).await;
    }
}

impl Drop for PurgeTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Purge `store` now and then every `every`, on the current tokio runtime,
/// until the returned handle is dropped. Errors are logged (`warn`, kind and
/// operation only) and retried with backoff.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::{sync::Arc, time::Duration};
/// use broker_core::{MemoryStore, purge::spawn_purge_task};
///
/// let store = Arc::new(MemoryStore::new());
/// let purging = spawn_purge_task(store, Duration::from_secs(300));
/// // ... serve requests ...
/// purging.stop().await;
/// # });
/// ```
///
/// # Panics
/// If called outside a tokio runtime, or with `every` of zero.
pub fn spawn_purge_task(store: Arc<dyn BrokerStore>, every: Duration) -> PurgeTask {
    assert!(
        !every.is_zero(),
        "spawn_purge_task: the period must not be zero"
    );
    let handle = tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF.min(every);
        loop {
            let wait = match store.purge_expired().await {
                Ok(removed) => {
                    tracing::debug!(removed, "purged expired sessions");
                    backoff = FIRST_BACKOFF.min(every);
                    every
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "purge failed; retrying");
                    let wait = backoff;
                    backoff = (backoff * 2).min(every);
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    });
    PurgeTask { handle }
}
