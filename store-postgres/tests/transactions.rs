//! What the store's transactions guarantee on PostgreSQL beyond the shared
//! suite: a call that timed out never commits later, a session a kept
//! marker hides is never stored (not even racing a revocation on another
//! pool), a serializable pool default changes nothing, and the injected
//! clock alone decides expiry, revocation and purge.

mod common;

use std::sync::Arc;
use std::time::Duration;

use broker_core::clock::{Clock as _, ManualClock};
use broker_core::{BrokerStore, Namespace, Revocation, SessionRecord, StoreError, unix_now};
use common::{Flavor, flavored_pool, flavored_store};
use sqlx::{Connection as _, Executor as _};
use store_postgres::PostgresStore;

macro_rules! server {
    () => {
        match common::postgres_url().await {
            Some(url) => url,
            None => return,
        }
    };
}

fn session(jti: &str, sub: &str, expires_at: i64, auth_time: i64) -> SessionRecord {
    SessionRecord {
        jti: jti.into(),
        sub: sub.into(),
        expires_at,
        auth_time,
        sealed: format!("sealed-{jti}").into_bytes().into(),
    }
}

async fn rows_of(pool: &sqlx::PgPool, ns: &Namespace, sub: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM \"{ns}_sessions\" WHERE sub = $1");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(sub)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A store on a pool of one connection, with a 400 ms operation timeout.
async fn one_connection_store(url: &str, ns: &Namespace) -> PostgresStore {
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    PostgresStore::new(one)
        .with_namespace(ns.clone())
        .with_operation_timeout(Duration::from_millis(400))
}

/// Another connection that runs `lock` in a transaction it keeps open, as a
/// write in flight.
async fn hold_in_transaction(url: &str, lock: String) -> sqlx::PgConnection {
    let mut blocker = sqlx::PgConnection::connect(url).await.unwrap();
    blocker.execute("BEGIN").await.unwrap();
    blocker.execute(sqlx::AssertSqlSafe(lock)).await.unwrap();
    blocker
}

/// Well past the 400 ms timeout, release `blocker`'s locks, then give what
/// waited on them time to finish.
async fn release_well_past_the_timeout(mut blocker: sqlx::PgConnection) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    blocker.execute("ROLLBACK").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
}

/// A save whose statement waits on a lock past the client's timeout fails
/// with `Unavailable`, and its row never appears, not after the lock is
/// released either: the server cancels the statement (`statement_timeout`)
/// and nothing ever sent `COMMIT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_timed_out_never_commits_later() {
    let url = server!();
    let (pool, ns, _) = common::fresh_store(&url).await;
    // One connection, on which the save statement is prepared already, so
    // the lock holds up its execution (not its parsing).
    let store = one_connection_store(&url, &ns).await;
    let now = unix_now();
    store
        .save_session(&session("warm-up", "walt", now + 3600, now - 5))
        .await
        .unwrap();

    // Another connection blocks every insert into the sessions table.
    let blocker =
        hold_in_transaction(&url, format!("LOCK TABLE \"{ns}_sessions\" IN SHARE MODE")).await;

    let e = store
        .save_session(&session("late", "lena", now + 3600, now - 5))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Unavailable {
                op: "save_session",
                ..
            }
        ),
        "{e:?}"
    );
    release_well_past_the_timeout(blocker).await;
    assert_eq!(
        rows_of(&pool, &ns, "lena").await,
        0,
        "a save that timed out on the client committed later"
    );
    assert!(store.get_session("late").await.unwrap().is_none());
    // The store (and its pool) works on.
    let s = session("on-time", "lena", now + 3600, now - 5);
    store.save_session(&s).await.unwrap();
    assert_eq!(store.get_session("on-time").await.unwrap(), Some(s));
    common::drop_tables(&pool, None, &ns).await.unwrap();
}

/// A take or delete that finds its session locked by another transaction
/// (a save, compare-and-set or revocation of that session in flight) and
/// waits past the client's timeout fails with `Unavailable`; the session is
/// still stored once the lock is released: the call never deletes it later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_or_delete_that_timed_out_never_deletes_later() {
    let url = server!();
    let (pool, ns, _) = common::fresh_store(&url).await;
    let store = one_connection_store(&url, &ns).await;
    let now = unix_now();
    let s = session("locked", "lou", now + 3600, now - 5);
    store.save_session(&s).await.unwrap();
    for op in ["take_session", "delete_session"] {
        let call = async |jti| match op {
            "take_session" => store.take_session(jti).await.map(|s| s.is_some()),
            _ => store.delete_session(jti).await,
        };
        // Warm the statement up on the store's one connection.
        assert!(!call("absent").await.unwrap());

        // Another connection holds the session's row lock, as a write in flight.
        let lock = format!("SELECT 1 FROM \"{ns}_sessions\" WHERE jti = 'locked' FOR UPDATE");
        let blocker = hold_in_transaction(&url, lock).await;

        let e = call("locked").await.unwrap_err();
        assert!(
            matches!(e, StoreError::Unavailable { op: o, .. } if o == op),
            "{op}: {e:?}"
        );
        release_well_past_the_timeout(blocker).await;
        assert_eq!(
            rows_of(&pool, &ns, "lou").await,
            1,
            "{op} timed out on the client, then deleted the session later"
        );
    }
    // The store works on, and the session is still there to take.
    assert_eq!(store.take_session("locked").await.unwrap(), Some(s));
    common::drop_tables(&pool, None, &ns).await.unwrap();
}

/// Of 64 takers on a pool whose connections default to `SERIALIZABLE`,
/// one gets the session and 63 get `None`, round after round; none gets
/// an error (a serialization failure would be `Unavailable`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn takers_on_a_serializable_pool_get_one_some_and_no_error() {
    let url = server!();
    let pool = flavored_pool(&url, Flavor::Serializable).await.unwrap();
    let ns = Namespace::random("pgs").unwrap();
    let store =
        Arc::new(flavored_store(pool.clone(), Flavor::Serializable).with_namespace(ns.clone()));
    store.setup().await.unwrap();
    let now = unix_now();
    for round in 0..10 {
        let jti = format!("contested-{round}");
        store
            .save_session(&session(&jti, "tess", now + 3600, now - 5))
            .await
            .unwrap();
        // Every taker holds a connection first, then all go at once.
        let ready = Arc::new(tokio::sync::Barrier::new(10));
        let takers: Vec<_> = (0..64)
            .map(|i| {
                let store = Arc::clone(&store);
                let jti = jti.clone();
                let ready = Arc::clone(&ready);
                tokio::spawn(async move {
                    if i < 10 {
                        ready.wait().await;
                    }
                    store.take_session(&jti).await
                })
            })
            .collect();
        let (mut some, mut none, mut errors) = (0, 0, Vec::new());
        for t in takers {
            match t.await.unwrap() {
                Ok(Some(_)) => some += 1,
                Ok(None) => none += 1,
                Err(e) => errors.push(format!("{e:?}")),
            }
        }
        assert!(
            errors.is_empty(),
            "round {round}: takers failed: {errors:?}"
        );
        assert_eq!((some, none), (1, 63), "round {round}");
    }
    let admin = common::admin_pool(&url).await;
    common::drop_tables(&admin, None, &ns).await.unwrap();
}

/// A revocation on one pool racing saves of its subject on another: the
/// saved session is not only never returned, it is never stored (the
/// raw table holds no row of the subject after each round).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_save_racing_a_revocation_is_never_stored() {
    let url = server!();
    let (admin, ns, a) = common::fresh_store(&url).await;
    let b = PostgresStore::connect(&url)
        .await
        .unwrap()
        .with_namespace(ns.clone());
    let (a, b) = (Arc::new(a), Arc::new(b));
    let now = unix_now();
    for round in 0..40u32 {
        let sub = format!("racer-{round}");
        let revoke = {
            let a = Arc::clone(&a);
            let rv = Revocation {
                sub: sub.clone(),
                revoked_at: now,
                keep_until: now + 3600,
            };
            tokio::spawn(async move { a.revoke_subject(&rv).await })
        };
        let saves: Vec<_> = (0..4u64)
            .map(|i| {
                let b = Arc::clone(&b);
                let s = session(&format!("{sub}-{i}"), &sub, now + 3600, now - 5);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_micros(i * 300)).await;
                    b.save_session(&s).await
                })
            })
            .collect();
        revoke.await.unwrap().unwrap();
        for s in saves {
            s.await.unwrap().unwrap();
        }
        assert_eq!(
            rows_of(&admin, &ns, &sub).await,
            0,
            "round {round}: a session the revocation hides was stored"
        );
    }
    common::drop_tables(&admin, None, &ns).await.unwrap();
}

/// Time moves only with the store's `ManualClock`: no sleeping. A session
/// expires exactly at `expires_at`; a marker hides sessions until its keep
/// time, counts in `stats` until purged, and purge forgets it only
/// together with the sessions it hides (here one planted with raw SQL, as
/// a store of an older version or a worker whose clock ran ahead could
/// have left it).
#[tokio::test]
async fn the_injected_clock_decides_expiry_revocation_and_purge() {
    let url = server!();
    let (admin, ns, store) = common::fresh_store(&url).await;
    let t = unix_now() + 1_000_000; // far from the system clock on purpose
    let clock = ManualClock::new(t);
    let store = store.with_clock(Arc::new(clock.clone()));

    // Expiry: live before t+60, gone at t+60, purged then.
    let s = session("short", "sam", t + 60, t - 5);
    store.save_session(&s).await.unwrap();
    clock.set(t + 59);
    assert_eq!(store.get_session("short").await.unwrap(), Some(s));
    clock.set(t + 60);
    assert!(store.get_session("short").await.unwrap().is_none());
    assert_eq!(store.stats().await.unwrap().expired_sessions, 1);
    assert_eq!(store.purge_expired().await.unwrap(), 1);

    // Revocation at t+100, kept until t+200.
    clock.set(t + 100);
    let rv = Revocation {
        sub: "rita".into(),
        revoked_at: t + 100,
        keep_until: t + 200,
    };
    store.revoke_subject(&rv).await.unwrap();
    store
        .save_session(&session("refused", "rita", t + 9999, t + 100))
        .await
        .unwrap();
    assert_eq!(
        rows_of(&admin, &ns, "rita").await,
        0,
        "a hidden save was stored"
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{ns}_sessions\" VALUES ('planted', 'rita', $1, $2, '\\x00')"
    )))
    .bind(t + 9999)
    .bind(t + 50)
    .execute(&admin)
    .await
    .unwrap();
    assert!(store.get_session("planted").await.unwrap().is_none());
    assert_eq!(
        store.scan_revocations(None, 10).await.unwrap().revocations,
        vec![rv.clone()]
    );

    // Past the keep time: no longer listed, still counted until purged.
    clock.set(t + 200);
    assert!(
        store
            .scan_revocations(None, 10)
            .await
            .unwrap()
            .revocations
            .is_empty()
    );
    assert_eq!(store.stats().await.unwrap().revocations, 1);
    assert_eq!(
        store.purge_expired().await.unwrap(),
        1,
        "the planted session"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.revocations, stats.live_sessions), (0, 0));
    assert!(store.get_session("planted").await.unwrap().is_none());

    // The marker forgotten, a session with an old auth_time may be saved.
    let back = session("back", "rita", t + 9999, t + 50);
    store.save_session(&back).await.unwrap();
    assert_eq!(store.get_session("back").await.unwrap(), Some(back));
    common::drop_tables(&admin, None, &ns).await.unwrap();
}

/// `sibling` shares the pool, clock and timeout, in another namespace.
#[tokio::test]
async fn a_sibling_shares_pool_clock_and_timeout_in_another_namespace() {
    let url = server!();
    let (admin, ns, store) = common::fresh_store(&url).await;
    let clock = ManualClock::new(unix_now() + 500_000);
    let store = store
        .with_clock(Arc::new(clock.clone()))
        .with_operation_timeout(Duration::from_millis(4321));
    let other = Namespace::random("pgsib").unwrap();
    let sibling = store.sibling(other.clone());
    assert_eq!(sibling.namespace(), &other);
    assert_eq!(sibling.clock().now(), clock.now());
    assert!(format!("{sibling:?}").contains("4.321s"), "{sibling:?}");
    sibling.setup().await.unwrap();
    let now = clock.now();
    sibling
        .save_session(&session("sib", "sue", now + 60, now - 5))
        .await
        .unwrap();
    assert!(store.get_session("sib").await.unwrap().is_none());
    assert!(sibling.get_session("sib").await.unwrap().is_some());
    // The sibling's clock is the manual one: it expires at now + 60.
    clock.advance(60);
    assert!(sibling.get_session("sib").await.unwrap().is_none());
    common::drop_tables(&admin, None, &ns).await.unwrap();
    common::drop_tables(&admin, None, &other).await.unwrap();
}
