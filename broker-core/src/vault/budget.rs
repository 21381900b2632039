//! The nonce budget: seals per key, counted against [`NONCE_LIMIT`]; and
//! the check that the key sealing has not been closed by a rekey.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::crypto::KeyId;
use crate::error::{Corruption, Result, StoreError};
use crate::keys::key_closed_record;
use crate::store::BrokerStore;

use super::{NONCE_BATCH, NONCE_COUNTER_PREFIX, NONCE_LIMIT, NONCE_WARNING};

/// How long a vault trusts that its primary key is still open for sealing
/// before it reads the store again: a rekey that closes the key is seen by
/// every sealing process within this interval (one record read per
/// interval per vault, on the sealing path).
pub const SEAL_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Milliseconds on a process-wide monotonic clock.
fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Counts seals per key against [`NONCE_LIMIT`], persisted in batches, and
/// refuses to seal under a key a rekey closed.
#[derive(Default)]
pub(super) struct NonceBudget {
    remaining: AtomicU64,
    /// Until when (on [`monotonic_ms`]) the key is known not to be closed.
    open_until_ms: AtomicU64,
    refill: tokio::sync::Mutex<()>,
}

impl NonceBudget {
    fn try_take(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1))
            .is_ok()
    }

    /// Take one seal under `key`: refused with [`StoreError::KeyRetired`]
    /// once a rekey closed the key (seen within [`SEAL_CHECK_INTERVAL`]),
    /// with [`StoreError::KeyExhausted`] past [`NONCE_LIMIT`].
    pub(super) async fn take(&self, store: &dyn BrokerStore, key: KeyId) -> Result<()> {
        if monotonic_ms() < self.open_until_ms.load(Ordering::Acquire) && self.try_take() {
            return Ok(());
        }
        let op = "seal";
        let _guard = self.refill.lock().await;
        let now = monotonic_ms();
        if now >= self.open_until_ms.load(Ordering::Acquire) {
            // The lease starts before the read: a close written after the
            // read began is seen by the next check, at most one interval on.
            if store
                .get_record(&key_closed_record(key))
                .await
                .map_err(|e| e.with_op(op))?
                .is_some()
            {
                return Err(StoreError::KeyRetired { op, key_id: key });
            }
            self.open_until_ms.store(
                now + SEAL_CHECK_INTERVAL.as_millis() as u64,
                Ordering::Release,
            );
        }
        if self.try_take() {
            return Ok(());
        }
        let name = format!("{NONCE_COUNTER_PREFIX}{key}");
        loop {
            let stored = store
                .create_record(&name, &0u64.to_be_bytes())
                .await
                .map_err(|e| e.with_op(op))?;
            let used =
                u64::from_be_bytes(stored.as_slice().try_into().map_err(|_| {
                    StoreError::corrupt(op, Corruption::Malformed("nonce counter"))
                })?);
            if used >= NONCE_LIMIT {
                return Err(StoreError::KeyExhausted { op, key_id: key });
            }
            let grant = NONCE_BATCH.min(NONCE_LIMIT - used);
            let next = used + grant;
            if store
                .replace_record(&name, &stored, &next.to_be_bytes())
                .await
                .map_err(|e| e.with_op(op))?
            {
                if next >= NONCE_WARNING {
                    tracing::warn!(key_id = %key, sealed = next, "key nears its nonce budget; rotate to a new primary key");
                }
                // One seal of the grant is ours now.
                self.remaining.fetch_add(grant - 1, Ordering::AcqRel);
                return Ok(());
            }
        }
    }
}
