//! The suite must be able to fail: each store below plants one classic bug,
//! and the case for that rule must fail on it (while passing on the
//! unbroken store, so the failure is the bug's doing).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use broker_core::{
    BrokerStore, MemoryStore, Namespace, PeerJwks, Result, Revocation, SessionPage, SessionRecord,
    StoreStats,
};
use common::MemoryFactory;
use conformance::{CASES, Outcome, StoreFactory, run_case};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// take = get, then delete: two takers can both win.
    TakeIsGetThenDelete,
    /// get keeps answering from a copy that ignores expiry.
    GetReturnsExpired,
    /// create-once overwrites what is there.
    CreateOnceOverwrites,
    /// create_session is a plain upsert.
    CreateSessionUpserts,
    /// revoke matches subjects by prefix, like a careless `LIKE 'sub%'`,
    /// and keeps no revocation marker.
    RevokeByPrefix,
    /// purge removes everything.
    PurgeRemovesLive,
    /// scan pages overlap by one session.
    ScanRepeatsLastOfPage,
    /// every namespace shares one space.
    IgnoresNamespace,
    /// save keeps the first sub of a jti.
    SaveKeepsOldSubject,
    /// replace_record ignores the expected value.
    ReplaceIgnoresExpected,
    /// peers are appended, not upserted.
    PeersAppend,
}

#[derive(Debug)]
struct Faulty {
    inner: MemoryStore,
    fault: Fault,
    shadow: Mutex<HashMap<String, SessionRecord>>,
    peers: Mutex<Vec<PeerJwks>>,
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
        self.shadow.lock().unwrap().insert(s.jti.clone(), s.clone());
        if self.fault == Fault::CreateSessionUpserts {
            return self.inner.save_session(s).await;
        }
        self.inner.create_session(s).await
    }
    async fn save_session(&self, s: &SessionRecord) -> Result<()> {
        self.shadow.lock().unwrap().insert(s.jti.clone(), s.clone());
        if self.fault == Fault::SaveKeepsOldSubject
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
        if self.fault == Fault::GetReturnsExpired && found.is_none() {
            return Ok(self.shadow.lock().unwrap().get(jti).cloned());
        }
        Ok(found)
    }
    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        self.shadow.lock().unwrap().remove(jti);
        if self.fault == Fault::TakeIsGetThenDelete {
            let found = self.inner.get_session(jti).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.inner.delete_session(jti).await?;
            return Ok(found);
        }
        self.inner.take_session(jti).await
    }
    async fn delete_session(&self, jti: &str) -> Result<bool> {
        self.shadow.lock().unwrap().remove(jti);
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
        match self.fault {
            Fault::RevokeByPrefix => {
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
        if self.fault == Fault::PurgeRemovesLive {
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
        if self.fault == Fault::ScanRepeatsLastOfPage
            && let (Some(_), Some(last)) = (&page.next, page.sessions.len().checked_sub(2))
        {
            page.next = Some(page.sessions[last].jti.clone());
        }
        Ok(page)
    }
    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        if self.fault == Fault::CreateOnceOverwrites
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
        if self.fault == Fault::ReplaceIgnoresExpected
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
        if self.fault == Fault::PeersAppend {
            self.peers.lock().unwrap().push(p.clone());
            return Ok(());
        }
        self.inner.save_peer(p).await
    }
    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        if self.fault == Fault::PeersAppend {
            return Ok(self.peers.lock().unwrap().clone());
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

fn factory(fault: Option<Fault>) -> Arc<dyn StoreFactory> {
    let db = MemoryStore::new();
    match fault {
        None => Arc::new(MemoryFactory {
            db,
            wrap: |s: MemoryStore| Arc::new(s) as Arc<dyn BrokerStore>,
        }),
        Some(Fault::IgnoresNamespace) => Arc::new(MemoryFactory {
            db,
            wrap: |s: MemoryStore| {
                Arc::new(s.with_namespace(Namespace::default())) as Arc<dyn BrokerStore>
            },
        }),
        Some(fault) => Arc::new(MemoryFactory {
            db,
            wrap: move |inner: MemoryStore| {
                Arc::new(Faulty {
                    inner,
                    fault,
                    shadow: Mutex::default(),
                    peers: Mutex::default(),
                }) as Arc<dyn BrokerStore>
            },
        }),
    }
}

/// Run `case` on the store with `fault` (must fail) and without (must pass).
async fn assert_caught(fault: Fault, case_name: &str) {
    let case = CASES
        .iter()
        .find(|c| c.name == case_name)
        .expect("a case of that name");
    let clean = run_case(factory(None), case).await;
    assert_eq!(
        clean,
        Ok(Outcome::Passed),
        "{case_name} on the unbroken store"
    );
    match run_case(factory(Some(fault)), case).await {
        Err(failure) => {
            conformance::loud(&format!("caught {fault:?} with {case_name}: {failure}"));
        }
        Ok(outcome) => panic!("{case_name} did not catch {fault:?}: {outcome:?}"),
    }
}

macro_rules! caught {
    ($($test:ident: $fault:ident by $case:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $test() {
            assert_caught(Fault::$fault, stringify!($case)).await;
        }
    )*};
}

caught! {
    take_that_is_get_then_delete: TakeIsGetThenDelete by rule_09_take_is_atomic_under_64_takers;
    get_that_returns_expired: GetReturnsExpired by rule_07_expired_session_is_never_returned;
    get_that_returns_sessions_expired_while_stored: GetReturnsExpired by rule_07_session_expiring_while_stored_is_gone;
    create_once_that_overwrites: CreateOnceOverwrites by rule_13_create_once_has_one_winner;
    create_session_that_upserts: CreateSessionUpserts by rule_05_create_conflicts_and_keeps_the_first;
    revoke_by_prefix: RevokeByPrefix by rule_10_revoke_removes_exactly_that_subject;
    revoke_without_marker: RevokeByPrefix by rule_10_revocation_beats_refresh_in_flight;
    purge_of_live_sessions: PurgeRemovesLive by rule_11_purge_removes_only_expired;
    scan_with_overlapping_pages: ScanRepeatsLastOfPage by rule_12_scan_returns_every_live_session_once;
    shared_namespace: IgnoresNamespace by rule_03_namespaces_are_isolated;
    save_that_keeps_old_subject: SaveKeepsOldSubject by rule_05_save_replaces_every_field;
    replace_without_compare: ReplaceIgnoresExpected by rule_14_replace_is_explicit_compare_and_set;
    peers_appended: PeersAppend by rule_15_peer_jwks_upsert_and_load_preserve_json;
}

#[test]
fn every_case_has_a_unique_rule_named_name() {
    let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    for c in CASES {
        assert!(
            c.name.starts_with(&format!("rule_{:02}_", c.rule)),
            "{}",
            c.name
        );
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), CASES.len());
}
