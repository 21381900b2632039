//! The [`BrokerStore`] trait: what every store offers its callers (store
//! authors implement [`StoreBackend`](crate::StoreBackend)).
//!
//! Stores keep sealed bytes only; applications use
//! [`TokenVault`](crate::TokenVault), which seals on the way in and verifies
//! on the way out. The numbered rules of the contract (`shared/CONTRACT.md`)
//! are checked by the `conformance` crate.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::{Clock, system_clock};
use crate::error::Result;
use crate::record::{
    Namespace, PeerJwks, Revocation, RevocationPage, SessionPage, SessionRecord, StoreStats,
};

/// Storage for a token broker's state in one namespace.
///
/// Every method validates its input with [`crate::validate`] before any I/O
/// and returns [`StoreError::InvalidInput`](crate::StoreError::InvalidInput)
/// for bad input. A session is *live* while `expires_at > now` and no
/// [`Revocation`] of its subject hides it; reads return live sessions only,
/// whether or not anything purged the others yet.
///
/// # Revocation never wears off
///
/// A revocation marker of `sub` is *kept* until its `keep_until`. A session
/// of `sub` with `auth_time <= revoked_at` that is saved or created while
/// the marker is kept is *hidden*, and a store never returns it, not while
/// the marker is kept, not after `keep_until`, not after purge forgot the
/// marker:
/// - where the backend can check the marker atomically with the write, such
///   a save or create is not stored (it returns `Ok`: the session is simply
///   never returned);
/// - where it cannot (a revoke racing a save on another connection), the
///   session may be stored, every read hides it (also once `keep_until` has
///   passed), and [`BrokerStore::purge_expired`] deletes it no later than,
///   and atomically with or before, the marker itself.
///
/// So the marker's `keep_until` bounds only how long a refresh may stay in
/// flight (take, then save) and still be caught; it is not a security
/// parameter of what is stored. A session saved after `keep_until` is not
/// covered: that refresh took longer than the marker's keep time.
///
/// The trait is object safe: hold stores as `Arc<dyn BrokerStore>`.
///
/// To write a store, implement [`StoreBackend`](crate::StoreBackend)
/// instead: every `StoreBackend` is a `BrokerStore` through a blanket impl
/// that checks the input and enforces the operation timeout first.
/// Implement `BrokerStore` directly only for a wrapper around another store
/// (it validates already).
#[async_trait]
pub trait BrokerStore: fmt::Debug + Send + Sync + 'static {
    /// The namespace this store reads and writes (bound into every sealed blob).
    fn namespace(&self) -> &Namespace;

    /// A store on the same database, sharing this one's pool, client or
    /// handle (and settings such as clock and timeouts), under `namespace`.
    /// Not set up yet: call [`BrokerStore::setup`] before use.
    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore>;

    /// The clock this store decides expiry and revocation by; the vault
    /// dates revocations with it. The system clock unless the store was
    /// given another.
    fn clock(&self) -> Arc<dyn Clock> {
        system_clock()
    }

    /// Create tables, indexes or trees. Idempotent and safe to call from
    /// many tasks and processes at once.
    async fn setup(&self) -> Result<()>;

    /// A cheap round trip proving the database answers.
    async fn health(&self) -> Result<()>;

    /// Insert a new session; a live session with the same `jti` is a
    /// [`StoreError::Conflict`](crate::StoreError::Conflict) and stays unchanged.
    /// A session a kept revocation hides is not stored (see the trait docs).
    async fn create_session(&self, session: &SessionRecord) -> Result<()>;

    /// Insert or replace the session with this `jti` (every field). A
    /// session a kept revocation hides is not stored (see the trait docs).
    async fn save_session(&self, session: &SessionRecord) -> Result<()>;

    /// The live session with this `jti`, if any.
    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>>;

    /// Atomically remove and return the live session with this `jti`: of
    /// many concurrent takers exactly one gets `Some`.
    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>>;

    /// Remove the session with this `jti`; true if one was stored.
    async fn delete_session(&self, jti: &str) -> Result<bool>;

    /// Replace a session's sealed blob only if it still equals `expected`
    /// (compare-and-set, for re-encryption); true if replaced.
    async fn replace_session_blob(&self, jti: &str, expected: &[u8], sealed: &[u8])
    -> Result<bool>;

    /// Delete every session of `revocation.sub` and remember the revocation
    /// until `keep_until`, so a session of that subject saved later with
    /// `auth_time <= revoked_at` is never returned (the boundary is
    /// inclusive). A revocation of a subject already revoked merges into
    /// the marker: the later `revoked_at` and the later `keep_until` win, so
    /// it only ever widens. Returns how many sessions were deleted.
    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64>;

    /// In bounded batches: remove expired sessions, remove every stored
    /// session a kept revocation hides, and forget the markers whose
    /// `keep_until` has passed, each only together with or after the
    /// sessions it hides, so forgetting a marker never revives one. Returns
    /// how many sessions were removed.
    async fn purge_expired(&self) -> Result<u64>;

    /// One page of at most `limit` live sessions after `cursor` (`None` for
    /// the first page). Paging to the end returns every session that was
    /// live throughout exactly once, in bounded memory.
    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage>;

    /// One page of at most `limit` kept revocation markers after `cursor`
    /// (`None` for the first page), in subject order; for migrations, which
    /// copy them so no revoked session comes back on the new store.
    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage>;

    /// Store `value` under `name` unless a value is there already; returns
    /// the stored value (ours or the earlier winner's). Of racing callers
    /// exactly one value wins, and it never changes after except through
    /// [`BrokerStore::replace_record`].
    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>>;

    /// The value stored under `name`, if any.
    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Replace the value under `name` only if it still equals `expected`
    /// (key rotation, re-encryption); true if replaced.
    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool>;

    /// Every create-once record as `(name, value)`, sorted by name.
    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>>;

    /// Insert or replace a peer's JWKS by issuer.
    async fn save_peer(&self, peer: &PeerJwks) -> Result<()>;

    /// Every stored peer JWKS, once per issuer, sorted by issuer.
    async fn load_peers(&self) -> Result<Vec<PeerJwks>>;

    /// Remove a peer's JWKS; true if one was stored.
    async fn delete_peer(&self, issuer: &str) -> Result<bool>;

    /// Counts for operators.
    async fn stats(&self) -> Result<StoreStats>;

    /// Remove everything kept under this store's namespace: sessions and
    /// their indexes, revocation markers, create-once records (the signing
    /// key and the key-check records among them), peers, and the
    /// namespace's own tables, collections or trees. Other namespaces are
    /// untouched. Irreversible and idempotent; `setup` makes the namespace
    /// usable again. For throwaway namespaces (tests, `brokerctl check`).
    /// Deleted bytes may linger in the database's own files until it
    /// compacts them (sled segments, PostgreSQL dead tuples); they were
    /// sealed.
    async fn drop_namespace(&self) -> Result<()>;
}

/// Stores are usually shared; an `Arc` of one is a store too.
#[async_trait]
impl<S: BrokerStore + ?Sized> BrokerStore for Arc<S> {
    fn namespace(&self) -> &Namespace {
        (**self).namespace()
    }
    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        (**self).sibling(namespace)
    }
    fn clock(&self) -> Arc<dyn Clock> {
        (**self).clock()
    }
    async fn setup(&self) -> Result<()> {
        (**self).setup().await
    }
    async fn health(&self) -> Result<()> {
        (**self).health().await
    }
    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        (**self).create_session(session).await
    }
    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        (**self).save_session(session).await
    }
    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        (**self).get_session(jti).await
    }
    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        (**self).take_session(jti).await
    }
    async fn delete_session(&self, jti: &str) -> Result<bool> {
        (**self).delete_session(jti).await
    }
    async fn replace_session_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        (**self).replace_session_blob(jti, expected, sealed).await
    }
    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64> {
        (**self).revoke_subject(revocation).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        (**self).purge_expired().await
    }
    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        (**self).scan_sessions(cursor, limit).await
    }
    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        (**self).scan_revocations(cursor, limit).await
    }
    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        (**self).create_record(name, value).await
    }
    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        (**self).get_record(name).await
    }
    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        (**self).replace_record(name, expected, value).await
    }
    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        (**self).list_records().await
    }
    async fn save_peer(&self, peer: &PeerJwks) -> Result<()> {
        (**self).save_peer(peer).await
    }
    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        (**self).load_peers().await
    }
    async fn delete_peer(&self, issuer: &str) -> Result<bool> {
        (**self).delete_peer(issuer).await
    }
    async fn stats(&self) -> Result<StoreStats> {
        (**self).stats().await
    }
    async fn drop_namespace(&self) -> Result<()> {
        (**self).drop_namespace().await
    }
}
