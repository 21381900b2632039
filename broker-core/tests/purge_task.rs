//! `spawn_purge_task` keeps purging through errors (with backoff), and
//! stops when its handle is dropped. Time is tokio's paused clock: no
//! sleeping in real time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use broker_core::purge::spawn_purge_task;
use broker_core::{
    BrokerStore, MemoryStore, Namespace, PeerJwks, Result, Revocation, RevocationPage, SessionPage,
    SessionRecord, StoreError, StoreStats, unix_now,
};
use tokio::time::Instant;

/// A `MemoryStore` whose first `failures` purges fail as unavailable, and
/// which notes when each purge was called.
#[derive(Debug)]
struct FlakyPurge {
    inner: MemoryStore,
    failures: AtomicU32,
    calls: Mutex<Vec<Instant>>,
}

#[async_trait]
impl BrokerStore for FlakyPurge {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        self.inner.sibling(namespace)
    }
    async fn setup(&self) -> Result<()> {
        self.inner.setup().await
    }
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }
    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
        self.inner.create_session(s).await
    }
    async fn save_session(&self, s: &SessionRecord) -> Result<()> {
        self.inner.save_session(s).await
    }
    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        self.inner.get_session(jti).await
    }
    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        self.inner.take_session(jti).await
    }
    async fn delete_session(&self, jti: &str) -> Result<bool> {
        self.inner.delete_session(jti).await
    }
    async fn replace_session_blob(&self, jti: &str, old: &[u8], new: &[u8]) -> Result<bool> {
        self.inner.replace_session_blob(jti, old, new).await
    }
    async fn revoke_subject(&self, r: &Revocation) -> Result<u64> {
        self.inner.revoke_subject(r).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        self.calls.lock().unwrap().push(Instant::now());
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::Unavailable {
                op: "purge_expired",
                source: "the test database is down".into(),
            });
        }
        self.inner.purge_expired().await
    }
    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        self.inner.scan_sessions(cursor, limit).await
    }
    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        self.inner.scan_revocations(cursor, limit).await
    }
    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        self.inner.create_record(name, value).await
    }
    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_record(name).await
    }
    async fn replace_record(&self, name: &str, old: &[u8], new: &[u8]) -> Result<bool> {
        self.inner.replace_record(name, old, new).await
    }
    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.inner.list_records().await
    }
    async fn save_peer(&self, p: &PeerJwks) -> Result<()> {
        self.inner.save_peer(p).await
    }
    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
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

#[tokio::test(start_paused = true)]
async fn purging_survives_errors_with_backoff_and_stops_on_drop() {
    let inner = MemoryStore::new();
    let now = unix_now();
    inner
        .save_session(&SessionRecord {
            jti: "expired".into(),
            sub: "alice".into(),
            expires_at: now - 10,
            auth_time: now - 100,
            sealed: vec![1, 2, 3].into(),
        })
        .await
        .unwrap();
    let store = Arc::new(FlakyPurge {
        inner: inner.clone(),
        failures: AtomicU32::new(3),
        calls: Mutex::default(),
    });
    let start = Instant::now();
    let task = spawn_purge_task(store.clone(), Duration::from_secs(60));

    tokio::time::sleep(Duration::from_secs(200)).await;
    let gaps: Vec<Duration> = {
        let calls = store.calls.lock().unwrap();
        std::iter::once(start)
            .chain(calls.iter().copied())
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect()
    };
    // Three failures (retried after 1, 2, 4 s), then success every 60 s.
    let secs: Vec<u64> = gaps.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, vec![0, 1, 2, 4, 60, 60, 60], "gaps between purges");
    assert_eq!(
        inner.stats().await.unwrap().expired_sessions,
        0,
        "the purge after the failures removed the expired session"
    );

    drop(task);
    let calls_at_drop = store.calls.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        store.calls.lock().unwrap().len(),
        calls_at_drop,
        "the task purged after its handle was dropped"
    );
}
