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
//!     auth_time: 0, sealed: vec![1],
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
    BrokerStore, MemoryStore, Namespace, PeerJwks, Result, Revocation, SessionPage, SessionRecord,
    StoreStats,
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
        })
    }
}

#[derive(Debug)]
struct Faulty {
    inner: MemoryStore,
    mutant: Mutant,
    shadow: Mutex<HashMap<String, SessionRecord>>,
    peers: Mutex<Vec<PeerJwks>>,
}

impl Faulty {
    fn shadow(&self) -> MutexGuard<'_, HashMap<String, SessionRecord>> {
        self.shadow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn peers(&self) -> MutexGuard<'_, Vec<PeerJwks>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl BrokerStore for Faulty {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    async fn setup(&self) -> Result<()> {
        self.inner.setup().await
    }
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }
    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
        self.shadow().insert(s.jti.clone(), s.clone());
        if self.mutant == Mutant::CreateSessionUpserts {
            return self.inner.save_session(s).await;
        }
        self.inner.create_session(s).await
    }
    async fn save_session(&self, s: &SessionRecord) -> Result<()> {
        self.shadow().insert(s.jti.clone(), s.clone());
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
        Ok(found)
    }
    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        self.shadow().remove(jti);
        if self.mutant == Mutant::TakeIsGetThenDelete {
            let found = self.inner.get_session(jti).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.inner.delete_session(jti).await?;
            return Ok(found);
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
            _ => self.inner.revoke_subject(r).await,
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
        self.inner.purge_expired().await
    }
    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        let mut page = self.inner.scan_sessions(cursor, limit).await?;
        if self.mutant == Mutant::ScanRepeatsLastOfPage
            && let (Some(_), Some(last)) = (&page.next, page.sessions.len().checked_sub(2))
        {
            page.next = Some(page.sessions[last].jti.clone());
        }
        Ok(page)
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
        self.inner.drop_namespace().await
    }
}
