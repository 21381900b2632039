//! PostgreSQL-specific tests (the shared contract runs in `conformance.rs`).
//! They need the test server: `eval "$(scripts/servers/postgres.sh start)"`.

#[path = "../common/mod.rs"]
mod common;
mod format;

use std::collections::BTreeSet;
use std::error::Error as _;
use std::time::{Duration, Instant};

use broker_core::{BrokerStore, Namespace, SessionRecord, StoreError, unix_now};
use sqlx::postgres::PgPoolOptions;
use store_postgres::{DatabaseError, OperationTimedOut, PostgresStore};

fn session(jti: &str, sub: &str, expires_at: i64) -> SessionRecord {
    SessionRecord {
        jti: jti.into(),
        sub: sub.into(),
        expires_at,
        auth_time: unix_now() - 10,
        sealed: format!("sealed-{jti}").into_bytes().into(),
    }
}

macro_rules! server {
    () => {
        match common::postgres_url().await {
            Some(url) => url,
            None => return,
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_from_16_tasks_on_4_pools_leaves_one_table_and_index_set() {
    let url = server!();
    let ns = Namespace::random("pgt").unwrap();
    let mut pools = Vec::new();
    for _ in 0..4 {
        pools.push(common::admin_pool(&url).await);
    }
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = PostgresStore::new(pools[i % 4].clone()).with_namespace(ns.clone());
        // Half take the fast-path check, half force the locked DDL.
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                store.setup().await
            } else {
                store.migrate().await
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("concurrent setup succeeds");
    }
    let admin = &pools[0];
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
         AND tablename = ANY($1) ORDER BY 1",
    )
    .bind(common::tables(&ns).to_vec())
    .fetch_all(admin)
    .await
    .unwrap();
    // Five primary keys plus expiry, subject and revocation-expiry indexes.
    assert_eq!(indexes.len(), 8, "{indexes:?}");
    for wanted in [
        "sessions_expires_at_idx",
        "sessions_sub_idx",
        "revocations_keep_until_idx",
    ] {
        assert!(
            indexes.contains(&format!("{ns}_{wanted}")),
            "{wanted} missing from {indexes:?}"
        );
    }
    let store = PostgresStore::new(admin.clone()).with_namespace(ns.clone());
    store.setup().await.unwrap();
    store.migrate().await.unwrap();
    common::drop_tables(admin, None, &ns).await.unwrap();
}

#[tokio::test]
async fn schema_is_created_and_used() {
    let url = server!();
    let pool = common::admin_pool(&url).await;
    let ns = Namespace::random("pgt").unwrap();
    let schema = format!("bt_{}", ns.as_str());
    let store = PostgresStore::new(pool.clone())
        .with_schema(&schema)
        .unwrap()
        .with_namespace(ns.clone());
    store.setup().await.unwrap();
    store.setup().await.unwrap();
    store
        .save_session(&session("j1", "alice", unix_now() + 60))
        .await
        .unwrap();
    let schema_of: String = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = $1",
    )
    .bind(format!("{ns}_sessions"))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(schema_of, schema);
    // Plain SQL sees the row in that schema.
    let raw = common::raw_rows(&pool, Some(&schema), &ns).await.unwrap();
    assert!(raw.contains(&b"j1".to_vec()));
    // A store in the default schema with the same namespace sees nothing.
    let other = PostgresStore::new(pool.clone()).with_namespace(ns.clone());
    other.setup().await.unwrap();
    assert!(other.get_session("j1").await.unwrap().is_none());
    common::drop_tables(&pool, None, &ns).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_pool_handed_in_still_works_after_the_store_is_dropped() {
    let url = server!();
    let pool = common::admin_pool(&url).await;
    let ns = Namespace::random("pgt").unwrap();
    {
        let store = PostgresStore::from_pool(pool.clone()).with_namespace(ns.clone());
        store.setup().await.unwrap();
        store
            .save_session(&session("kept", "bob", unix_now() + 60))
            .await
            .unwrap();
        let clone = store.clone();
        drop(store);
        clone.health().await.unwrap();
    }
    assert!(!pool.is_closed());
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let again = PostgresStore::new(pool.clone()).with_namespace(ns.clone());
    let got = again
        .get_session("kept")
        .await
        .unwrap()
        .expect("still stored");
    assert_eq!(got.sub, "bob");
    drop(again);
    assert!(!pool.is_closed());
    common::drop_tables(&pool, None, &ns).await.unwrap();
}

#[tokio::test]
async fn raw_reader_sees_every_column() {
    // The "no plaintext at rest" case relies on this reader; prove it is not blind.
    let url = server!();
    let (pool, ns, store) = common::fresh_store(&url).await;
    let s = session("raw-jti", "raw-sub", 4_000_000_000);
    store.save_session(&s).await.unwrap();
    store
        .create_record("raw-name", b"\x01raw-value\x00\xff")
        .await
        .unwrap();
    store
        .save_peer(&broker_core::PeerJwks {
            issuer: "https://raw-issuer".into(),
            jwks: r#"{"keys":[],"z":1,"a":2}"#.into(),
            fetched_at: 1234,
        })
        .await
        .unwrap();
    store
        .revoke_subject(&broker_core::Revocation {
            sub: "raw-revoked".into(),
            revoked_at: 1,
            keep_until: 4_000_000_001,
        })
        .await
        .unwrap();
    let raw = common::raw_rows(&pool, None, &ns).await.unwrap();
    let expected: [&[u8]; 9] = [
        b"raw-jti",
        b"raw-sub",
        b"4000000000",
        b"sealed-raw-jti",
        b"raw-name",
        b"\x01raw-value\x00\xff",
        br#"{"keys":[],"z":1,"a":2}"#,
        b"raw-revoked",
        b"4000000001",
    ];
    for e in expected {
        assert!(
            raw.iter().any(|v| v.as_slice() == e),
            "raw reader missed {:?}",
            String::from_utf8_lossy(e)
        );
    }
    common::drop_tables(&pool, None, &ns).await.unwrap();
}

#[tokio::test]
async fn purge_works_in_batches_and_keeps_live_sessions() {
    let url = server!();
    let (pool, ns, store) = common::fresh_store(&url).await;
    let now = unix_now();
    // 2500 expired rows (more than two purge batches), inserted in one statement.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{ns}_sessions\" (jti, sub, expires_at, auth_time, sealed) \
         SELECT 'old-' || g, 'sub-' || (g % 7), $1 - g % 100, 0, '\\x01'::bytea \
         FROM generate_series(1, 2500) g"
    )))
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    for i in 0..5 {
        store
            .save_session(&session(&format!("live-{i}"), "alice", now + 3600))
            .await
            .unwrap();
    }
    assert_eq!(store.purge_expired().await.unwrap(), 2500);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.live_sessions, 5);
    assert_eq!(stats.expired_sessions, 0);
    assert_eq!(stats.subjects, Some(1));
    common::drop_tables(&pool, None, &ns).await.unwrap();
}

#[tokio::test]
async fn scan_pages_with_keyset_cursor_exactly_once() {
    let url = server!();
    let (pool, ns, store) = common::fresh_store(&url).await;
    let now = unix_now();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{ns}_sessions\" (jti, sub, expires_at, auth_time, sealed) \
         SELECT 'j-' || g, 's', CASE WHEN g % 10 = 0 THEN $1 - 1 ELSE $1 + 600 END, 0, '\\x01'::bytea \
         FROM generate_series(1, 2500) g"
    )))
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.scan_sessions(cursor.as_deref(), 1000).await.unwrap();
        pages += 1;
        assert!(page.sessions.len() <= 1000);
        for s in page.sessions {
            assert!(seen.insert(s.jti.clone()), "{} returned twice", s.jti);
            assert!(s.expires_at > now);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 2250);
    assert_eq!(pages, 3);
    let bad = store.scan_sessions(Some("a\0b"), 10).await.unwrap_err();
    assert!(matches!(bad, StoreError::InvalidInput { .. }), "{bad:?}");
    common::drop_tables(&pool, None, &ns).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_record_has_one_winner_across_pools() {
    let url = server!();
    let ns = Namespace::random("pgt").unwrap();
    let admin = common::admin_pool(&url).await;
    PostgresStore::new(admin.clone())
        .with_namespace(ns.clone())
        .setup()
        .await
        .unwrap();
    for round in 0..5 {
        let name = format!("key-{round}");
        let mut tasks = Vec::new();
        for i in 0..16u8 {
            let pool = common::admin_pool(&url).await;
            let store = PostgresStore::new(pool).with_namespace(ns.clone());
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                store.create_record(&name, &[i + 1; 40]).await
            }));
        }
        let mut winners = BTreeSet::new();
        for t in tasks {
            winners.insert(t.await.unwrap().expect("create_record succeeds"));
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let stored = PostgresStore::new(admin.clone())
            .with_namespace(ns.clone())
            .get_record(&name)
            .await
            .unwrap();
        assert_eq!(stored.as_ref(), winners.iter().next());
    }
    common::drop_tables(&admin, None, &ns).await.unwrap();
}

#[tokio::test]
async fn server_errors_keep_sqlstate_but_not_values() {
    let url = server!();
    let pool = common::admin_pool(&url).await;
    // No setup: the tables do not exist.
    let store = PostgresStore::new(pool.clone()).with_namespace(Namespace::random("pgt").unwrap());
    let e = store.get_session("secret-jti-value").await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Backend {
                op: "get_session",
                ..
            }
        ),
        "{e:?}"
    );
    let db = e
        .source()
        .and_then(|s| s.downcast_ref::<DatabaseError>())
        .expect("a DatabaseError source");
    assert_eq!(db.code(), Some("42P01"));
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("secret-jti-value"), "{shown}");
}

#[tokio::test]
async fn unreachable_server_is_unavailable_within_the_timeout() {
    // Nothing listens on port 1: connection refused until the acquire timeout.
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://nobody:hunter2@127.0.0.1:1/none")
        .unwrap();
    let store = PostgresStore::new(pool);
    let start = Instant::now();
    let e = store.get_session("j").await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Unavailable {
                op: "get_session",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(!format!("{e:?}").contains("hunter2"));
    let e = store.setup().await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
}

#[tokio::test]
async fn operation_timeout_bounds_a_slow_pool() {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap();
    let store = PostgresStore::new(pool).with_operation_timeout(Duration::from_millis(300));
    let start = Instant::now();
    let e = store.health().await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(e, StoreError::Unavailable { op: "health", .. }),
        "{e:?}"
    );
    let cause = e
        .source()
        .and_then(|s| s.downcast_ref::<OperationTimedOut>());
    assert_eq!(cause.map(|c| c.after), Some(Duration::from_millis(300)));
}

#[tokio::test]
async fn a_bad_url_is_invalid_input_without_the_password() {
    let e = PostgresStore::connect("postgres://u:hunter2@127.0.0.1:notaport/db")
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::InvalidInput { op: "connect", .. }),
        "{e:?}"
    );
    assert!(!format!("{e} {e:?}").contains("hunter2"));
}
