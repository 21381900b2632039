//! Deliberately broken stores ("mutants"): an in-memory store with one
//! classic bug planted. A suite that passes on a mutant has a blind spot, so
//! these check the checker: the conformance crate's own tests run each
//! mutant against the case for its rule, and `brokerctl check --store
//! mutant://<name>` shows what a failing store looks like.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use broker_core::{BrokerStore, MemoryStore, SessionRecord};
//! use conformance::mutants::Mutant;
//!
//! let store = Mutant::PurgeRemovesLive.wrap(MemoryStore::new());
//! store.setup().await.unwrap();
//! let live = SessionRecord {
//!     jti: "j".into(), sub: "s".into(), expires_at: broker_core::unix_now() + 60,
//!     auth_time: 0, sealed: vec![1].into(),
//! };
//! store.save_session(&live).await.unwrap();
//! store.purge_expired().await.unwrap();
//! assert!(store.get_session("j").await.unwrap().is_none()); // the planted bug
//! assert_eq!(Mutant::from_name("purge-removes-live"), Some(Mutant::PurgeRemovesLive));
//! # });
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use broker_core::{
    BrokerStore, MemoryStore, Namespace, PeerJwks, Result, Revocation, RevocationPage, SessionPage,
    SessionRecord, StoreStats,
};

/// One planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mutant {
    /// take = get, then delete: two takers can both win (rule 9).
    TakeIsGetThenDelete,
    /// get keeps answering from a copy that ignores expiry (rule 7).
    GetReturnsExpired,
    /// create-once overwrites what is there (rule 13).
    CreateOnceOverwrites,
    /// create_session is a plain upsert (rule 5).
    CreateSessionUpserts,
    /// revoke matches subjects by prefix, like a careless `LIKE 'sub%'`,
    /// and keeps no revocation marker (rule 10).
    RevokeByPrefix,
    /// purge removes everything (rule 11).
    PurgeRemovesLive,
    /// scan pages overlap by one session (rule 12).
    ScanRepeatsLastOfPage,
    /// every namespace shares one space (rule 3).
    IgnoresNamespace,
    /// save keeps the first sub of a jti (rule 5).
    SaveKeepsOldSubject,
    /// replace_record ignores the expected value (rule 14).
    ReplaceIgnoresExpected,
    /// peers are appended, not upserted (rule 15).
    PeersAppend,
    /// take is get-then-delete under a lock of its store object: atomic
    /// for takers sharing one object, not across objects (rule 9).
    TakeAtomicPerObject,
    /// the pre-2026-12 revocation: a marker hides sessions saved later only
    /// while it is kept, and purge forgets it, so they come back (rule 10).
    RevocationWearsOff,
    /// a revocation hides `auth_time < revoked_at` only (rule 10).
    RevocationBoundaryExclusive,
    /// a second revocation of a subject replaces the first, narrowing it (rule 10).
    RevocationReplaces,
    /// save and revoke are atomic against each other only within one store
    /// object (rule 10).
    RevokeAtomicPerObject,
    /// purge keeps revocation markers past their keep time (rule 11).
    PurgeKeepsMarkers,
    /// drop_namespace leaves the revocation markers behind (rule 3).
    DropKeepsMarkers,
    /// scan pages by offset, so writes during a scan shift it (rule 12).
    ScanByOffset,
}

impl Mutant {
    /// Every mutant.
    pub const ALL: &[Mutant] = &[
        Mutant::TakeIsGetThenDelete,
        Mutant::GetReturnsExpired,
        Mutant::CreateOnceOverwrites,
        Mutant::CreateSessionUpserts,
        Mutant::RevokeByPrefix,
        Mutant::PurgeRemovesLive,
        Mutant::ScanRepeatsLastOfPage,
        Mutant::IgnoresNamespace,
        Mutant::SaveKeepsOldSubject,
        Mutant::ReplaceIgnoresExpected,
        Mutant::PeersAppend,
        Mutant::TakeAtomicPerObject,
        Mutant::RevocationWearsOff,
        Mutant::RevocationBoundaryExclusive,
        Mutant::RevocationReplaces,
        Mutant::RevokeAtomicPerObject,
        Mutant::PurgeKeepsMarkers,
        Mutant::DropKeepsMarkers,
        Mutant::ScanByOffset,
    ];

    /// The kebab-case name, e.g. `"take-is-get-then-delete"`.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::TakeIsGetThenDelete => "take-is-get-then-delete",
            Mutant::GetReturnsExpired => "get-returns-expired",
            Mutant::CreateOnceOverwrites => "create-once-overwrites",
            Mutant::CreateSessionUpserts => "create-session-upserts",
            Mutant::RevokeByPrefix => "revoke-by-prefix",
            Mutant::PurgeRemovesLive => "purge-removes-live",
            Mutant::ScanRepeatsLastOfPage => "scan-repeats-last-of-page",
            Mutant::IgnoresNamespace => "ignores-namespace",
            Mutant::SaveKeepsOldSubject => "save-keeps-old-subject",
            Mutant::ReplaceIgnoresExpected => "replace-ignores-expected",
            Mutant::PeersAppend => "peers-append",
            Mutant::TakeAtomicPerObject => "take-atomic-per-object",
            Mutant::RevocationWearsOff => "revocation-wears-off",
            Mutant::RevocationBoundaryExclusive => "revocation-boundary-exclusive",
            Mutant::RevocationReplaces => "revocation-replaces",
            Mutant::RevokeAtomicPerObject => "revoke-atomic-per-object",
            Mutant::PurgeKeepsMarkers => "purge-keeps-markers",
            Mutant::DropKeepsMarkers => "drop-keeps-markers",
            Mutant::ScanByOffset => "scan-by-offset",
        }
    }

    /// The mutant called `name` (see [`Mutant::name`]).
    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// `inner` with this bug planted.
    pub fn wrap(self, inner: MemoryStore) -> Arc<dyn BrokerStore> {
        if self == Mutant::IgnoresNamespace {
            return Arc::new(inner.with_namespace(Namespace::default()));
        }
        Arc::new(Faulty {
            inner,
            mutant: self,
            shadow: Mutex::default(),
            peers: Mutex::default(),
            revoked: Mutex::default(),
            object_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether revocation is the wrapper's own (markers kept as records of
    /// the inner store, shared by every object on it), with the old bugs.
    fn legacy_revocation(self) -> Option<Legacy> {
        let legacy = |hide_on_read, refuse_save, merge| Legacy {
            hide_on_read,
            refuse_save,
            merge,
        };
        match self {
            Mutant::RevocationWearsOff => Some(legacy(true, false, true)),
            Mutant::RevocationReplaces => Some(legacy(true, false, false)),
            Mutant::RevokeAtomicPerObject => Some(legacy(false, true, true)),
            _ => None,
        }
    }
}

/// How a wrapper-side ("legacy") revocation behaves.
#[derive(Debug, Clone, Copy)]
struct Legacy {
    /// Reads skip sessions a kept marker hides.
    hide_on_read: bool,
    /// A save or create a kept marker hides is dropped (checked under the
    /// store object's own lock only).
    refuse_save: bool,
    /// A second revocation merges into the first (else replaces it).
    merge: bool,
}

/// Record-name prefix of a legacy marker.
const LEGACY_MARKER: &str = "mutant.revoked.";

#[derive(Debug)]
struct Faulty {
    inner: MemoryStore,
    mutant: Mutant,
    shadow: Mutex<HashMap<String, SessionRecord>>,
    peers: Mutex<Vec<PeerJwks>>,
    /// Every revocation this object passed on (to re-plant markers).
    revoked: Mutex<Vec<Revocation>>,
    /// The per-object lock of `TakeAtomicPerObject` and `RevokeAtomicPerObject`.
    object_lock: tokio::sync::Mutex<()>,
}

impl Faulty {
    fn shadow(&self) -> MutexGuard<'_, HashMap<String, SessionRecord>> {
        self.shadow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn peers(&self) -> MutexGuard<'_, Vec<PeerJwks>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn revoked(&self) -> MutexGuard<'_, Vec<Revocation>> {
        self.revoked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Plant every revocation this object passed on again, kept for an hour.
    async fn replant_markers(&self) -> Result<()> {
        let now = self.inner.clock().now();
        let planted = self.revoked().clone();
        for r in planted {
            let kept = Revocation {
                keep_until: now + 3600,
                ..r
            };
            self.inner.revoke_subject(&kept).await?;
        }
        Ok(())
    }

    /// The legacy marker of `sub`, if kept.
    async fn legacy_marker(&self, sub: &str) -> Result<Option<Revocation>> {
        let Some(bytes) = self
            .inner
            .get_record(&format!("{LEGACY_MARKER}{sub}"))
            .await?
        else {
            return Ok(None);
        };
        let Ok(times) = <[u8; 16]>::try_from(bytes.as_slice()) else {
            return Ok(None); // forgotten
        };
        let r = Revocation {
            sub: sub.to_owned(),
            revoked_at: i64::from_be_bytes(times[..8].try_into().expect("8 bytes")),
            keep_until: i64::from_be_bytes(times[8..].try_into().expect("8 bytes")),
        };
        Ok((r.keep_until > self.inner.clock().now()).then_some(r))
    }

    async fn legacy_hidden(&self, s: &SessionRecord) -> Result<bool> {
        let now = self.inner.clock().now();
        Ok(self
            .legacy_marker(&s.sub)
            .await?
            .is_some_and(|r| r.hides(s.auth_time, now)))
    }

    /// Every session of the inner store (small test data only).
    async fn all_sessions(&self) -> Result<Vec<SessionRecord>> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.inner.scan_sessions(cursor.as_deref(), 10_000).await?;
            all.extend(page.sessions);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    async fn legacy_revoke(&self, legacy: Legacy, r: &Revocation) -> Result<u64> {
        let _lock = self.object_lock.lock().await;
        let name = format!("{LEGACY_MARKER}{}", r.sub);
        let mut merged = r.clone();
        if legacy.merge
            && let Some(old) = self.legacy_marker(&r.sub).await?
        {
            merged.merge(&old);
        }
        let mut value = merged.revoked_at.to_be_bytes().to_vec();
        value.extend(merged.keep_until.to_be_bytes());
        let stored = self.inner.create_record(&name, &value).await?;
        self.inner.replace_record(&name, &stored, &value).await?;
        let mut n = 0;
        for s in self.all_sessions().await?.iter().filter(|s| s.sub == r.sub) {
            n += u64::from(self.inner.delete_session(&s.jti).await?);
        }
        Ok(n)
    }

    /// Save through the legacy revocation: dropped if refused.
    async fn legacy_put(&self, legacy: Legacy, s: &SessionRecord, create: bool) -> Result<()> {
        let _lock = self.object_lock.lock().await;
        if legacy.refuse_save && self.legacy_hidden(s).await? {
            return Ok(());
        }
        // The gap between check and write that only the object lock covers.
        tokio::time::sleep(Duration::from_millis(5)).await;
        if create {
            self.inner.create_session(s).await
        } else {
            self.inner.save_session(s).await
        }
    }

    /// `found` unless a legacy marker hides it on read.
    async fn legacy_visible(&self, found: Option<SessionRecord>) -> Result<Option<SessionRecord>> {
        match (self.mutant.legacy_revocation(), found) {
            (Some(l), Some(s)) if l.hide_on_read && self.legacy_hidden(&s).await? => Ok(None),
            (_, found) => Ok(found),
        }
    }

    async fn scan_by_offset(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        let offset = cursor
            .and_then(|c| c.strip_prefix('@'))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        let all = self.all_sessions().await?;
        let sessions: Vec<SessionRecord> = all.iter().skip(offset).take(limit).cloned().collect();
        let end = offset + sessions.len();
        Ok(SessionPage {
            next: (end < all.len()).then(|| format!("@{end}")),
            sessions,
        })
    }
}

#[async_trait]
impl BrokerStore for Faulty {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        self.mutant.wrap(self.inner.with_namespace(namespace))
    }
    fn clock(&self) -> Arc<dyn broker_core::Clock> {
        self.inner.clock()
    }
    async fn setup(&self) -> Result<()> {
        self.inner.setup().await
    }
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }
    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
        self.shadow().insert(s.jti.clone(), s.clone());
        if let Some(legacy) = self.mutant.legacy_revocation() {
            return self.legacy_put(legacy, s, true).await;
        }
        if self.mutant == Mutant::CreateSessionUpserts {
            return self.inner.save_session(s).await;
        }
        self.inner.create_session(s).await
    }
    async fn save_session(&self, s: &SessionRecord) -> Result<()> {
        self.shadow().insert(s.jti.clone(), s.clone());
        if let Some(legacy) = self.mutant.legacy_revocation() {
            return self.legacy_put(legacy, s, false).await;
        }
        if self.mutant == Mutant::SaveKeepsOldSubject
            && let Some(old) = self.inner.get_session(&s.jti).await?
        {
            return self
                .inner
                .save_session(&SessionRecord {
                    sub: old.sub,
                    ..s.clone()
                })
                .await;
        }
        self.inner.save_session(s).await
    }
    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        let found = self.inner.get_session(jti).await?;
        if self.mutant == Mutant::GetReturnsExpired && found.is_none() {
            return Ok(self.shadow().get(jti).cloned());
        }
        self.legacy_visible(found).await
    }
    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        self.shadow().remove(jti);
        if self.mutant == Mutant::TakeIsGetThenDelete {
            let found = self.inner.get_session(jti).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.inner.delete_session(jti).await?;
            return Ok(found);
        }
        if self.mutant == Mutant::TakeAtomicPerObject {
            let _lock = self.object_lock.lock().await;
            let found = self.inner.get_session(jti).await?;
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.inner.delete_session(jti).await?;
            return Ok(found);
        }
        if let Some(legacy) = self.mutant.legacy_revocation()
            && legacy.hide_on_read
        {
            let Some(s) = self.inner.get_session(jti).await? else {
                return Ok(None);
            };
            if self.legacy_hidden(&s).await? {
                return Ok(None);
            }
        }
        self.inner.take_session(jti).await
    }
    async fn delete_session(&self, jti: &str) -> Result<bool> {
        self.shadow().remove(jti);
        self.inner.delete_session(jti).await
    }
    async fn replace_session_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        self.inner.replace_session_blob(jti, expected, sealed).await
    }
    async fn revoke_subject(&self, r: &Revocation) -> Result<u64> {
        match self.mutant {
            Mutant::RevokeByPrefix => {
                let page = self.inner.scan_sessions(None, 10_000).await?;
                let mut n = 0;
                for s in page.sessions.iter().filter(|s| s.sub.starts_with(&r.sub)) {
                    n += u64::from(self.inner.delete_session(&s.jti).await?);
                }
                Ok(n)
            }
            Mutant::RevocationBoundaryExclusive => {
                let narrower = Revocation {
                    revoked_at: r.revoked_at - 1,
                    ..r.clone()
                };
                self.inner.revoke_subject(&narrower).await
            }
            m => {
                if let Some(legacy) = m.legacy_revocation() {
                    return self.legacy_revoke(legacy, r).await;
                }
                self.revoked().push(r.clone());
                self.inner.revoke_subject(r).await
            }
        }
    }
    async fn purge_expired(&self) -> Result<u64> {
        if self.mutant == Mutant::PurgeRemovesLive {
            let page = self.inner.scan_sessions(None, 10_000).await?;
            for s in &page.sessions {
                self.inner.delete_session(&s.jti).await?;
            }
            return Ok(self.inner.purge_expired().await? + page.sessions.len() as u64);
        }
        let purged = self.inner.purge_expired().await?;
        if self.mutant == Mutant::PurgeKeepsMarkers {
            self.replant_markers().await?;
        }
        if self.mutant.legacy_revocation().is_some() {
            // Forget legacy markers past their keep time (and nothing else).
            let now = self.inner.clock().now();
            for (name, value) in self.inner.list_records().await? {
                if let Some(sub) = name.strip_prefix(LEGACY_MARKER)
                    && value.len() == 16
                    && self
                        .legacy_marker(sub)
                        .await?
                        .is_none_or(|r| r.keep_until <= now)
                {
                    self.inner.replace_record(&name, &value, &[0]).await?;
                }
            }
        }
        Ok(purged)
    }
    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        if self.mutant == Mutant::ScanByOffset {
            return self.scan_by_offset(cursor, limit).await;
        }
        let mut page = self.inner.scan_sessions(cursor, limit).await?;
        if let Some(legacy) = self.mutant.legacy_revocation()
            && legacy.hide_on_read
        {
            let mut visible = Vec::with_capacity(page.sessions.len());
            for s in page.sessions {
                if !self.legacy_hidden(&s).await? {
                    visible.push(s);
                }
            }
            page.sessions = visible;
        }
        if self.mutant == Mutant::ScanRepeatsLastOfPage
            && let (Some(_), Some(last)) = (&page.next, page.sessions.len().checked_sub(2))
        {
            page.next = Some(page.sessions[last].jti.clone());
        }
        Ok(page)
    }
    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        if self.mutant.legacy_revocation().is_some() {
            let mut kept = Vec::new();
            for (name, _) in self.inner.list_records().await? {
                if let Some(sub) = name.strip_prefix(LEGACY_MARKER)
                    && cursor.is_none_or(|c| sub > c)
                    && let Some(r) = self.legacy_marker(sub).await?
                {
                    kept.push(r);
                }
            }
            let more = kept.len() > limit;
            kept.truncate(limit);
            return Ok(RevocationPage {
                next: more.then(|| kept.last().map(|r| r.sub.clone())).flatten(),
                revocations: kept,
            });
        }
        self.inner.scan_revocations(cursor, limit).await
    }
    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        if self.mutant == Mutant::CreateOnceOverwrites
            && let Some(old) = self.inner.get_record(name).await?
        {
            tokio::task::yield_now().await;
            self.inner.replace_record(name, &old, value).await?;
            return Ok(value.to_vec());
        }
        self.inner.create_record(name, value).await
    }
    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_record(name).await
    }
    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        if self.mutant == Mutant::ReplaceIgnoresExpected
            && let Some(current) = self.inner.get_record(name).await?
        {
            return self.inner.replace_record(name, &current, value).await;
        }
        self.inner.replace_record(name, expected, value).await
    }
    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.inner.list_records().await
    }
    async fn save_peer(&self, p: &PeerJwks) -> Result<()> {
        if self.mutant == Mutant::PeersAppend {
            self.peers().push(p.clone());
            return Ok(());
        }
        self.inner.save_peer(p).await
    }
    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        if self.mutant == Mutant::PeersAppend {
            return Ok(self.peers().clone());
        }
        self.inner.load_peers().await
    }
    async fn delete_peer(&self, issuer: &str) -> Result<bool> {
        self.inner.delete_peer(issuer).await
    }
    async fn stats(&self) -> Result<StoreStats> {
        self.inner.stats().await
    }
    async fn drop_namespace(&self) -> Result<()> {
        self.inner.drop_namespace().await?;
        if self.mutant == Mutant::DropKeepsMarkers {
            self.replant_markers().await?;
        }
        Ok(())
    }
}
