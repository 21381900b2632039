//! The nonce budget: seals per key, counted against [`NONCE_LIMIT`].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::crypto::KeyId;
use crate::error::{Corruption, Result, StoreError};
use crate::store::BrokerStore;

use super::{NONCE_BATCH, NONCE_COUNTER_PREFIX, NONCE_LIMIT, NONCE_WARNING};

/// Counts seals per key against [`NONCE_LIMIT`], persisted in batches.
#[derive(Default)]
pub(super) struct NonceBudget {
    remaining: AtomicU64,
    refill: tokio::sync::Mutex<()>,
}

impl NonceBudget {
    fn try_take(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1))
            .is_ok()
    }

    pub(super) async fn take(&self, store: &dyn BrokerStore, key: KeyId) -> Result<()> {
        if self.try_take() {
            return Ok(());
        }
        let _guard = self.refill.lock().await;
        if self.try_take() {
            return Ok(());
        }
        let name = format!("{NONCE_COUNTER_PREFIX}{key}");
        let op = "seal";
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
