//! [`StoreBackend`]: the trait a store author implements. Every input
//! arrives validated, and methods with a correct default are provided;
//! a blanket impl makes every `StoreBackend` a [`BrokerStore`] that checks
//! its input (with [`crate::validate`]) before calling it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::{Clock, system_clock};
use crate::error::{Result, StoreError};
use crate::record::{
    Namespace, PeerJwks, Revocation, RevocationPage, SessionPage, SessionRecord, StoreStats,
};
use crate::store::BrokerStore;
use crate::validate;

/// The operation timeout server stores use unless told otherwise:
/// [`StoreBackend::operation_timeout`].
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The record name [`StoreBackend::health`] reads by default.
const HEALTH_PROBE: &str = "health";

/// What a store author implements: one method per operation of
/// [`BrokerStore`], with the same meaning (read the contract there,
/// "Revocation never wears off" included), but no input checks to write.
///
/// Every `&str`, record and limit passed in has already passed
/// [`crate::validate`]: ids are 1..=255 bytes without NUL, sealed blobs
/// non-empty and within [`validate::MAX_SEALED_BYTES`], timestamps within
/// what every backend represents, page limits within 1..=[`validate::MAX_PAGE`].
/// Cursors are passed as given: they are the store's own format, so check
/// them in `scan_sessions` / `scan_revocations`.
///
/// Implement it, and your type is a [`BrokerStore`] (blanket impl): hold it
/// as `Arc<dyn BrokerStore>`, open a `TokenVault` on it, run the
/// `conformance` suite on it. `async fn` in the impl is fine; the futures
/// must be `Send`.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use broker_core::{BrokerStore, Namespace, PeerJwks, Result, Revocation, RevocationPage,
///     SessionPage, SessionRecord, StoreBackend, StoreStats};
///
/// /// A store that refuses everything: the smallest complete impl.
/// #[derive(Debug, Default)]
/// struct Closed { ns: Namespace }
///
/// fn closed<T>(op: &'static str) -> Result<T> {
///     Err(broker_core::StoreError::backend(op, std::io::Error::other("closed")))
/// }
///
/// impl StoreBackend for Closed {
///     fn namespace(&self) -> &Namespace { &self.ns }
///     fn sibling(&self, ns: Namespace) -> Arc<dyn BrokerStore> { Arc::new(Closed { ns }) }
///     async fn create_session(&self, _: &SessionRecord) -> Result<()> { closed("create_session") }
///     async fn save_session(&self, _: &SessionRecord) -> Result<()> { closed("save_session") }
///     async fn get_session(&self, _: &str) -> Result<Option<SessionRecord>> { Ok(None) }
///     async fn take_session(&self, _: &str) -> Result<Option<SessionRecord>> { Ok(None) }
///     async fn delete_session(&self, _: &str) -> Result<bool> { Ok(false) }
///     async fn replace_session_blob(&self, _: &str, _: &[u8], _: &[u8]) -> Result<bool> { Ok(false) }
///     async fn revoke_subject(&self, _: &Revocation) -> Result<u64> { closed("revoke_subject") }
///     async fn purge_expired(&self) -> Result<u64> { Ok(0) }
///     async fn scan_sessions(&self, _: Option<&str>, _: usize) -> Result<SessionPage> { Ok(SessionPage::default()) }
///     async fn scan_revocations(&self, _: Option<&str>, _: usize) -> Result<RevocationPage> { Ok(RevocationPage::default()) }
///     async fn create_record(&self, _: &str, _: &[u8]) -> Result<Vec<u8>> { closed("create_record") }
///     async fn get_record(&self, _: &str) -> Result<Option<Vec<u8>>> { Ok(None) }
///     async fn replace_record(&self, _: &str, _: &[u8], _: &[u8]) -> Result<bool> { Ok(false) }
///     async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> { Ok(Vec::new()) }
///     async fn save_peer(&self, _: &PeerJwks) -> Result<()> { closed("save_peer") }
///     async fn load_peers(&self) -> Result<Vec<PeerJwks>> { Ok(Vec::new()) }
///     async fn delete_peer(&self, _: &str) -> Result<bool> { Ok(false) }
///     async fn stats(&self) -> Result<StoreStats> { Ok(StoreStats::default()) }
///     async fn drop_namespace(&self) -> Result<()> { Ok(()) }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store: Arc<dyn BrokerStore> = Arc::new(Closed::default());
/// // The blanket impl checked the input before Closed saw it:
/// assert!(matches!(
///     store.get_session("").await,
///     Err(broker_core::StoreError::InvalidInput { .. })
/// ));
/// # });
/// ```
pub trait StoreBackend: fmt::Debug + Send + Sync + 'static {
    /// See [`BrokerStore::namespace`].
    fn namespace(&self) -> &Namespace;

    /// See [`BrokerStore::sibling`].
    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore>;

    /// See [`BrokerStore::clock`]. Default: the system clock.
    fn clock(&self) -> Arc<dyn Clock> {
        system_clock()
    }

    /// How long one operation may take, from the call to its answer, before
    /// it fails with [`StoreError::Unavailable`] (source
    /// [`OperationTimedOut`](crate::error::OperationTimedOut)); the blanket
    /// [`BrokerStore`] impl enforces it. A write that timed out may or may
    /// not have been applied. Server stores return their
    /// `with_operation_timeout` setting ([`DEFAULT_OPERATION_TIMEOUT`] unless
    /// set); the default `None` (no limit) suits in-process stores.
    fn operation_timeout(&self) -> Option<Duration> {
        None
    }

    /// See [`BrokerStore::setup`]. Default: nothing to set up.
    fn setup(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// See [`BrokerStore::health`]. Default: one [`StoreBackend::get_record`]
    /// round trip.
    fn health(&self) -> impl Future<Output = Result<()>> + Send {
        async {
            StoreBackend::get_record(self, HEALTH_PROBE)
                .await
                .map(|_| ())
        }
    }

    /// See [`BrokerStore::create_session`].
    fn create_session(&self, session: &SessionRecord) -> impl Future<Output = Result<()>> + Send;

    /// See [`BrokerStore::save_session`].
    fn save_session(&self, session: &SessionRecord) -> impl Future<Output = Result<()>> + Send;

    /// See [`BrokerStore::get_session`].
    fn get_session(&self, jti: &str) -> impl Future<Output = Result<Option<SessionRecord>>> + Send;

    /// See [`BrokerStore::take_session`].
    fn take_session(&self, jti: &str)
    -> impl Future<Output = Result<Option<SessionRecord>>> + Send;

    /// See [`BrokerStore::delete_session`].
    fn delete_session(&self, jti: &str) -> impl Future<Output = Result<bool>> + Send;

    /// See [`BrokerStore::replace_session_blob`].
    fn replace_session_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> impl Future<Output = Result<bool>> + Send;

    /// See [`BrokerStore::revoke_subject`].
    fn revoke_subject(&self, revocation: &Revocation) -> impl Future<Output = Result<u64>> + Send;

    /// See [`BrokerStore::purge_expired`].
    fn purge_expired(&self) -> impl Future<Output = Result<u64>> + Send;

    /// See [`BrokerStore::scan_sessions`]. The cursor is unchecked: it is
    /// the store's own format.
    fn scan_sessions(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<SessionPage>> + Send;

    /// See [`BrokerStore::scan_revocations`]. The cursor is unchecked.
    fn scan_revocations(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<RevocationPage>> + Send;

    /// See [`BrokerStore::create_record`].
    fn create_record(
        &self,
        name: &str,
        value: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>>> + Send;

    /// See [`BrokerStore::get_record`].
    fn get_record(&self, name: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// See [`BrokerStore::replace_record`].
    fn replace_record(
        &self,
        name: &str,
        expected: &[u8],
        value: &[u8],
    ) -> impl Future<Output = Result<bool>> + Send;

    /// See [`BrokerStore::list_records`].
    fn list_records(&self) -> impl Future<Output = Result<Vec<(String, Vec<u8>)>>> + Send;

    /// See [`BrokerStore::save_peer`].
    fn save_peer(&self, peer: &PeerJwks) -> impl Future<Output = Result<()>> + Send;

    /// See [`BrokerStore::load_peers`].
    fn load_peers(&self) -> impl Future<Output = Result<Vec<PeerJwks>>> + Send;

    /// See [`BrokerStore::delete_peer`].
    fn delete_peer(&self, issuer: &str) -> impl Future<Output = Result<bool>> + Send;

    /// See [`BrokerStore::stats`].
    fn stats(&self) -> impl Future<Output = Result<StoreStats>> + Send;

    /// See [`BrokerStore::drop_namespace`].
    fn drop_namespace(&self) -> impl Future<Output = Result<()>> + Send;
}

/// Run `fut`, an operation `op` of `store`, within the store's operation
/// timeout, if it has one.
async fn timed<S: StoreBackend, T>(
    store: &S,
    op: &'static str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match store.operation_timeout() {
        Some(after) => tokio::time::timeout(after, fut)
            .await
            .map_err(|_| StoreError::timed_out(op, after))?,
        None => fut.await,
    }
}

/// Every [`StoreBackend`] is a [`BrokerStore`]: the input is validated,
/// then the backend runs, within its operation timeout.
#[async_trait]
impl<T: StoreBackend> BrokerStore for T {
    fn namespace(&self) -> &Namespace {
        StoreBackend::namespace(self)
    }
    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        StoreBackend::sibling(self, namespace)
    }
    fn clock(&self) -> Arc<dyn Clock> {
        StoreBackend::clock(self)
    }
    async fn setup(&self) -> Result<()> {
        timed(self, "setup", StoreBackend::setup(self)).await
    }
    async fn health(&self) -> Result<()> {
        timed(self, "health", StoreBackend::health(self)).await
    }
    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        validate::session("create_session", session)?;
        timed(
            self,
            "create_session",
            StoreBackend::create_session(self, session),
        )
        .await
    }
    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        validate::session("save_session", session)?;
        timed(
            self,
            "save_session",
            StoreBackend::save_session(self, session),
        )
        .await
    }
    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        validate::jti("get_session", jti)?;
        timed(self, "get_session", StoreBackend::get_session(self, jti)).await
    }
    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        validate::jti("take_session", jti)?;
        timed(self, "take_session", StoreBackend::take_session(self, jti)).await
    }
    async fn delete_session(&self, jti: &str) -> Result<bool> {
        validate::jti("delete_session", jti)?;
        timed(
            self,
            "delete_session",
            StoreBackend::delete_session(self, jti),
        )
        .await
    }
    async fn replace_session_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        const OP: &str = "replace_session_blob";
        validate::jti(OP, jti)?;
        validate::sealed(OP, sealed)?;
        timed(
            self,
            "replace_session_blob",
            StoreBackend::replace_session_blob(self, jti, expected, sealed),
        )
        .await
    }
    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64> {
        validate::revocation("revoke_subject", revocation)?;
        timed(
            self,
            "revoke_subject",
            StoreBackend::revoke_subject(self, revocation),
        )
        .await
    }
    async fn purge_expired(&self) -> Result<u64> {
        timed(self, "purge_expired", StoreBackend::purge_expired(self)).await
    }
    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        validate::page_limit("scan_sessions", limit)?;
        timed(
            self,
            "scan_sessions",
            StoreBackend::scan_sessions(self, cursor, limit),
        )
        .await
    }
    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        validate::page_limit("scan_revocations", limit)?;
        timed(
            self,
            "scan_revocations",
            StoreBackend::scan_revocations(self, cursor, limit),
        )
        .await
    }
    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        validate::record_name("create_record", name)?;
        validate::sealed("create_record", value)?;
        timed(
            self,
            "create_record",
            StoreBackend::create_record(self, name, value),
        )
        .await
    }
    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        validate::record_name("get_record", name)?;
        timed(self, "get_record", StoreBackend::get_record(self, name)).await
    }
    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        validate::record_name("replace_record", name)?;
        validate::sealed("replace_record", value)?;
        timed(
            self,
            "replace_record",
            StoreBackend::replace_record(self, name, expected, value),
        )
        .await
    }
    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        timed(self, "list_records", StoreBackend::list_records(self)).await
    }
    async fn save_peer(&self, peer: &PeerJwks) -> Result<()> {
        validate::peer("save_peer", peer)?;
        timed(self, "save_peer", StoreBackend::save_peer(self, peer)).await
    }
    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        timed(self, "load_peers", StoreBackend::load_peers(self)).await
    }
    async fn delete_peer(&self, issuer: &str) -> Result<bool> {
        validate::issuer("delete_peer", issuer)?;
        timed(self, "delete_peer", StoreBackend::delete_peer(self, issuer)).await
    }
    async fn stats(&self) -> Result<StoreStats> {
        timed(self, "stats", StoreBackend::stats(self)).await
    }
    async fn drop_namespace(&self) -> Result<()> {
        timed(self, "drop_namespace", StoreBackend::drop_namespace(self)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OperationTimedOut;

    /// A backend whose every call hangs, with a 50 ms operation timeout.
    #[derive(Debug, Default)]
    struct Hanging {
        ns: Namespace,
    }

    async fn hang<T>() -> Result<T> {
        std::future::pending().await
    }

    impl StoreBackend for Hanging {
        fn namespace(&self) -> &Namespace {
            &self.ns
        }
        fn sibling(&self, ns: Namespace) -> Arc<dyn BrokerStore> {
            Arc::new(Hanging { ns })
        }
        fn operation_timeout(&self) -> Option<Duration> {
            Some(Duration::from_millis(50))
        }
        async fn create_session(&self, _: &SessionRecord) -> Result<()> {
            hang().await
        }
        async fn save_session(&self, _: &SessionRecord) -> Result<()> {
            hang().await
        }
        async fn get_session(&self, _: &str) -> Result<Option<SessionRecord>> {
            hang().await
        }
        async fn take_session(&self, _: &str) -> Result<Option<SessionRecord>> {
            hang().await
        }
        async fn delete_session(&self, _: &str) -> Result<bool> {
            hang().await
        }
        async fn replace_session_blob(&self, _: &str, _: &[u8], _: &[u8]) -> Result<bool> {
            hang().await
        }
        async fn revoke_subject(&self, _: &Revocation) -> Result<u64> {
            hang().await
        }
        async fn purge_expired(&self) -> Result<u64> {
            hang().await
        }
        async fn scan_sessions(&self, _: Option<&str>, _: usize) -> Result<SessionPage> {
            hang().await
        }
        async fn scan_revocations(&self, _: Option<&str>, _: usize) -> Result<RevocationPage> {
            hang().await
        }
        async fn create_record(&self, _: &str, _: &[u8]) -> Result<Vec<u8>> {
            hang().await
        }
        async fn get_record(&self, _: &str) -> Result<Option<Vec<u8>>> {
            hang().await
        }
        async fn replace_record(&self, _: &str, _: &[u8], _: &[u8]) -> Result<bool> {
            hang().await
        }
        async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
            hang().await
        }
        async fn save_peer(&self, _: &PeerJwks) -> Result<()> {
            hang().await
        }
        async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
            hang().await
        }
        async fn delete_peer(&self, _: &str) -> Result<bool> {
            hang().await
        }
        async fn stats(&self) -> Result<StoreStats> {
            hang().await
        }
        async fn drop_namespace(&self) -> Result<()> {
            hang().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_operation_ends_at_the_operation_timeout() {
        let store: Arc<dyn BrokerStore> = Arc::new(Hanging::default());
        let timed_out = |r: Result<()>, op: &str| match r {
            Err(StoreError::Unavailable { op: got, source }) => {
                assert_eq!(got, op);
                let after = source
                    .downcast_ref::<OperationTimedOut>()
                    .expect("an OperationTimedOut source")
                    .after;
                assert_eq!(after, Duration::from_millis(50));
            }
            other => panic!("{op}: {other:?}"),
        };
        timed_out(store.health().await, "health");
        timed_out(store.get_session("j").await.map(|_| ()), "get_session");
        timed_out(store.take_session("j").await.map(|_| ()), "take_session");
        timed_out(store.purge_expired().await.map(|_| ()), "purge_expired");
        timed_out(store.stats().await.map(|_| ()), "stats");
        // Input is still checked first, without waiting.
        assert!(matches!(
            store.get_session("").await,
            Err(StoreError::InvalidInput { .. })
        ));
    }
}
