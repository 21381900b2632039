//! The whole conformance suite on `SqliteStore`: one named test per
//! contract case, each on a fresh database file in a temporary directory
//! (nothing to install, so nothing is ever skipped).

use std::path::PathBuf;
use std::sync::Arc;

use broker_core::{BrokerStore, ManualClock, Namespace, Revocation, SessionRecord, StoreError};
use custom_store::SqliteStore;
use custom_store::sqlx::SqlitePool;

/// Opens stores on one database file.
struct SqliteFactory {
    dir: tempfile::TempDir,
    /// The pool an application would hand in (rule 2).
    shared: SqlitePool,
}

impl SqliteFactory {
    fn path(&self) -> PathBuf {
        self.dir.path().join("broker.db")
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }
}

#[conformance::async_trait]
impl conformance::StoreFactory for SqliteFactory {
    fn name(&self) -> String {
        "sqlite".into()
    }

    /// A store on a pool of its own, so the cross-object cases race
    /// separate connections, as separate processes would.
    async fn open(&self, namespace: &Namespace) -> Result<Arc<dyn BrokerStore>, StoreError> {
        let store = SqliteStore::connect(&self.url()).await?;
        Ok(Arc::new(store.with_namespace(namespace.clone())))
    }

    /// A store on the pool the application already holds.
    async fn open_from_handle(
        &self,
        namespace: &Namespace,
    ) -> Result<Option<Arc<dyn BrokerStore>>, StoreError> {
        let store = SqliteStore::new(self.shared.clone()).with_namespace(namespace.clone());
        Ok(Some(Arc::new(store)))
    }

    /// The database file and its write-ahead log, byte for byte: what a
    /// backup or a stolen disk holds.
    async fn raw_contents(
        &self,
        _namespace: &Namespace,
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let mut raw = Vec::new();
        for suffix in ["", "-wal"] {
            let mut path = self.path().into_os_string();
            path.push(suffix);
            match std::fs::read(&path) {
                Ok(bytes) => raw.push(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::backend("raw_contents", e)),
            }
        }
        Ok(Some(raw))
    }
}

async fn factory() -> Option<SqliteFactory> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("broker.db").display());
    let shared = SqliteStore::connect(&url)
        .await
        .expect("a new database file")
        .pool()
        .clone();
    Some(SqliteFactory { dir, shared })
}

conformance::test_suite!(factory);

/// The store decides expiry and revocation by the clock it is given. The
/// suite runs on the system clock, so this is checked here: with the
/// system clock, everything below is long expired.
#[tokio::test(flavor = "multi_thread")]
async fn expiry_and_revocation_follow_the_injected_clock() {
    let f = factory().await.expect("a factory");
    let clock = ManualClock::new(1_000_000);
    let store = SqliteStore::connect(&f.url())
        .await
        .expect("a store")
        .with_clock(Arc::new(clock.clone()));
    store.setup().await.expect("setup");
    let session = |jti: &str| SessionRecord {
        jti: jti.into(),
        sub: "alice".into(),
        expires_at: 1_000_010,
        auth_time: 999_000,
        sealed: vec![1, 2, 3].into(),
    };
    store.save_session(&session("a")).await.expect("save");
    assert!(store.get_session("a").await.expect("get").is_some());
    clock.advance(10);
    assert!(store.get_session("a").await.expect("get").is_none());

    clock.set(1_000_000);
    let marker = Revocation {
        sub: "alice".into(),
        revoked_at: 1_000_000,
        keep_until: 1_000_005,
    };
    store.revoke_subject(&marker).await.expect("revoke");
    store.save_session(&session("b")).await.expect("save");
    assert!(store.get_session("b").await.expect("get").is_none());
    let kept = store.scan_revocations(None, 10).await.expect("scan");
    assert_eq!(kept.revocations, vec![marker]);
    clock.advance(5);
    let kept = store.scan_revocations(None, 10).await.expect("scan");
    assert!(kept.revocations.is_empty(), "{kept:?}");
}
