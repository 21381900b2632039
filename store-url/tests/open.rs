//! Opening stores from URLs: sled always; PostgreSQL, MongoDB, Redis and
//! Redis Cluster when their feature is on and a server is found
//! (`BROKER_TEST_*_URL`; skipped loudly otherwise, a failure under
//! `CI=true`).

use std::sync::Arc;

use broker_core::secrecy::SecretString;
use broker_core::{
    BrokerStore, EncryptionKey, KeyConfig, Namespace, Session, TokenVault, unix_now,
};
use store_url::{OpenError, StoreOpener, open_store};

/// Every way an error can be shown, with its causes.
fn shown(e: &dyn std::error::Error) -> String {
    let mut text = format!("{e} {e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    text
}

/// The listing, `open_existing` and what neither may do (create), on any
/// store the opener reaches. Leaves nothing behind.
#[cfg_attr(not(feature = "sled"), allow(dead_code))]
async fn namespaces_are_listed_and_never_created(opener: &StoreOpener) {
    let ns = Namespace::random("urlns").unwrap();
    let typo = Namespace::random("urltypo").unwrap();
    let store = opener.open(ns.clone()).await.unwrap();
    store.setup().await.unwrap();
    // A vault sealing a session counts its key's nonces in the reserved
    // namespace, which is not a namespace of sessions.
    let vault = TokenVault::open(
        Arc::clone(&store),
        KeyConfig::new(EncryptionKey::from_bytes(&[9; 32]).unwrap()),
    )
    .await
    .unwrap();
    let now = unix_now();
    vault
        .save_session(&Session {
            jti: "j1".into(),
            sub: "s1".into(),
            refresh_token: SecretString::from("rt".to_owned()),
            user_info: broker_core::serde_json::json!({}).into(),
            expires_at: now + 600,
            auth_time: now,
        })
        .await
        .unwrap();
    drop(vault);

    let listed = opener.namespaces().await.unwrap();
    assert!(listed.contains(&ns), "{ns} not in {listed:?}");
    assert!(!listed.contains(&typo));
    assert!(
        !listed
            .iter()
            .any(|n| n.as_str() == broker_core::vault::KEY_BUDGET_NAMESPACE),
        "{listed:?}"
    );
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(listed, sorted);

    let again = opener.open_existing(ns.clone()).await.unwrap();
    assert_eq!(again.stats().await.unwrap().live_sessions, 1);
    match opener.open_existing(typo.clone()).await {
        Err(OpenError::NoNamespace {
            namespace,
            existing,
        }) => {
            assert_eq!(namespace, typo);
            assert!(existing.contains(&ns));
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a missing namespace opened"),
    }
    assert!(!opener.namespaces().await.unwrap().contains(&typo));

    store.drop_namespace().await.unwrap();
    assert!(!opener.namespaces().await.unwrap().contains(&ns));
}

#[cfg(feature = "sled")]
mod sled {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn open_store_sets_up_a_sled_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sled://{}", dir.path().join("my db").display());
        let store = open_store(&url, Namespace::default()).await.unwrap();
        store.setup().await.unwrap();
        assert!(dir.path().join("my db").join("conf").exists());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn namespaces_on_sled() {
        let dir = tempfile::tempdir().unwrap();
        let opener =
            StoreOpener::new(&format!("sled://{}?cache_mb=16", dir.path().display())).unwrap();
        namespaces_are_listed_and_never_created(&opener).await;
        assert_eq!(opener.namespaces().await.unwrap(), []);
    }

    /// `create_if_missing(false)`: a path without a database is an error
    /// and stays absent; with a database there, it opens.
    #[tokio::test(flavor = "multi_thread")]
    async fn no_database_is_created_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let url = format!("sled://{}", path.display());
        let existing = || StoreOpener::new(&url).unwrap().create_if_missing(false);
        assert!(matches!(
            existing().open(Namespace::default()).await,
            Err(OpenError::NoDatabase)
        ));
        assert!(matches!(
            existing().namespaces().await,
            Err(OpenError::NoDatabase)
        ));
        assert!(!path.exists());

        let creator = StoreOpener::new(&url).unwrap();
        creator
            .open(Namespace::default())
            .await
            .unwrap()
            .setup()
            .await
            .unwrap();
        drop(creator); // sled lets one handle open a database
        assert_eq!(
            existing().namespaces().await.unwrap(),
            [Namespace::default()]
        );
    }

    /// `sled://` is the platform data directory of the opener's application
    /// name; nothing is created there without a database.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_default_directory_follows_the_app_name() {
        let app = format!("store-url-test-{}", std::process::id());
        let opener = StoreOpener::new("sled://")
            .unwrap()
            .with_app_name(&app)
            .create_if_missing(false);
        assert!(matches!(
            opener.open(Namespace::default()).await,
            Err(OpenError::NoDatabase)
        ));
        let path = store_url::store_sled::SledStore::default_path(&app).unwrap();
        assert!(!path.exists(), "{}", path.display());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_second_opener_of_a_locked_database_is_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sled://{}", dir.path().display());
        let first = StoreOpener::new(&url).unwrap();
        first.connection().await.unwrap();
        let e = StoreOpener::new(&url)
            .unwrap()
            .open(Namespace::default())
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(matches!(e, OpenError::Store(_)));
    }
}

/// A URL of a backend this build leaves out parses, and fails to open
/// with the feature to turn on.
#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn a_disabled_backend_names_its_feature() {
    let e = open_store("postgres://app:canary-pw@db/app", Namespace::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::Disabled {
                backend: store_url::Backend::Postgres
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("`postgres` feature"), "{e}");
    assert!(!shown(&e).contains("canary"));
}

/// Servers that cannot be reached fail as retryable store errors, and no
/// error (nor its causes, nor `Debug`) quotes the URL's password.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_servers_fail_without_the_password() {
    // Nothing listens on port 1 of the loopback address.
    let mut urls = Vec::new();
    if cfg!(feature = "postgres") {
        urls.push("postgres://app:canary-pw@127.0.0.1:1/app");
    }
    if cfg!(feature = "redis") {
        urls.push("redis://app:canary-pw@127.0.0.1:1/");
        urls.push("redis-cluster://app:canary-pw@127.0.0.1:1,127.0.0.1:2");
    }
    for url in urls {
        let e = open_store(url, Namespace::default()).await.unwrap_err();
        assert!(e.is_retryable(), "{url}: {e}");
        assert!(!shown(&e).contains("canary"), "{url}: {}", shown(&e));
    }
    #[cfg(feature = "mongo")]
    {
        // The driver connects lazily: listing namespaces is the first I/O.
        let opener = StoreOpener::new("mongodb://app:canary-pw@127.0.0.1:1/app").unwrap();
        let e = opener.namespaces().await.unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(!shown(&e).contains("canary"), "{}", shown(&e));
        opener.shutdown().await;
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread")]
async fn namespaces_on_postgres() {
    let Some(url) = conformance::provision::postgres_url().await else {
        return;
    };
    let opener = StoreOpener::new(&url).unwrap();
    assert_eq!(opener.scheme(), "postgres");
    namespaces_are_listed_and_never_created(&opener).await;
}

#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread")]
async fn namespaces_on_mongo() {
    let Some(url) = conformance::provision::mongo_url().await else {
        return;
    };
    let opener = StoreOpener::new(&url).unwrap();
    namespaces_are_listed_and_never_created(&opener).await;
    opener.shutdown().await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread")]
async fn namespaces_on_redis() {
    let Some(url) = conformance::provision::redis_url().await else {
        return;
    };
    namespaces_are_listed_and_never_created(&StoreOpener::new(&url).unwrap()).await;
}

/// `redis-cluster://h1:p1,h2:p2`, built from the test variable
/// `redis://h1:p1,redis://h2:p2`: namespaces are found on every master.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread")]
async fn namespaces_on_redis_cluster() {
    let Some(nodes) = conformance::provision::redis_cluster_urls().await else {
        return;
    };
    let hosts: Vec<&str> = nodes
        .split(',')
        .map(|n| n.trim().trim_start_matches("redis://"))
        .collect();
    let opener = StoreOpener::new(&format!("redis-cluster://{}", hosts.join(","))).unwrap();
    assert_eq!(opener.url().backend(), store_url::Backend::RedisCluster);
    // Enough namespaces that their keys land on every master.
    let extra: Vec<Arc<dyn BrokerStore>> = {
        let mut stores = Vec::new();
        for _ in 0..8 {
            let store = opener
                .open(Namespace::random("urlspread").unwrap())
                .await
                .unwrap();
            store.setup().await.unwrap();
            stores.push(store);
        }
        stores
    };
    let listed = opener.namespaces().await.unwrap();
    for store in &extra {
        assert!(listed.contains(store.namespace()), "{listed:?}");
    }
    namespaces_are_listed_and_never_created(&opener).await;
    for store in extra {
        store.drop_namespace().await.unwrap();
    }
}
