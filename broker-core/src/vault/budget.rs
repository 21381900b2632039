//! The nonce budget: seals per key, counted against [`NONCE_LIMIT`]; and
//! the check that the key sealing has not been closed by a rekey.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::crypto::KeyId;
use crate::error::{Corruption, Result, StoreError};
use crate::keys::key_closed_record;
use crate::record::Namespace;
use crate::store::BrokerStore;

use super::{KEY_BUDGET_NAMESPACE, NONCE_BATCH, NONCE_COUNTER_PREFIX, NONCE_LIMIT, NONCE_WARNING};

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
///
/// The counter of a key is the record `nonces.<key id>` in the database's
/// [`KEY_BUDGET_NAMESPACE`], shared by every namespace (and so by every
/// vault, process and tool) on that database: one raw key used in several
/// namespaces, a namespace dropped and created again, a `migrate` or a
/// `bench` on the same database all draw on one budget. A database cannot
/// see another database's counter: a key used on two databases has two
/// budgets (the tools warn). A counter left in the vault's own namespace
/// by an earlier version still counts (the larger of the two is used).
#[derive(Default)]
pub(super) struct NonceBudget {
    remaining: AtomicU64,
    /// Until when (on [`monotonic_ms`]) the key is known not to be closed.
    open_until_ms: AtomicU64,
    refill: tokio::sync::Mutex<()>,
    /// The counters' store, set up on the first refill.
    counters: tokio::sync::OnceCell<Arc<dyn BrokerStore>>,
    /// The counter an earlier version kept in the vault's own namespace.
    legacy: tokio::sync::OnceCell<u64>,
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
        let counters = self
            .counters
            .get_or_try_init(|| async {
                let counters = store.sibling(Namespace::new(KEY_BUDGET_NAMESPACE)?);
                counters.setup().await.map_err(|e| e.with_op(op))?;
                Ok::<_, StoreError>(counters)
            })
            .await?;
        let legacy = *self
            .legacy
            .get_or_try_init(|| async {
                match store.get_record(&name).await.map_err(|e| e.with_op(op))? {
                    Some(stored) => decode_counter(op, &stored),
                    None => Ok(0),
                }
            })
            .await?;
        loop {
            let stored = counters
                .create_record(&name, &legacy.to_be_bytes())
                .await
                .map_err(|e| e.with_op(op))?;
            let used = decode_counter(op, &stored)?.max(legacy);
            if used >= NONCE_LIMIT {
                return Err(StoreError::KeyExhausted { op, key_id: key });
            }
            let grant = NONCE_BATCH.min(NONCE_LIMIT - used);
            let next = used + grant;
            if counters
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

/// A stored nonce counter: a u64, big-endian.
fn decode_counter(op: &'static str, stored: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(stored.try_into().map_err(|_| {
        StoreError::corrupt(op, Corruption::Malformed("nonce counter"))
    })?))
}
