//! Retried requests change nothing the caller sees (issue 15, item 5):
//! redis-rs re-sends a request on Redis Cluster after a response timeout,
//! and the first copy may have run (a single server's connections never
//! re-send: `Topology::SingleNode` leaves no receipts). A create that ran reports success, a
//! take that ran returns the session, a `replace_record` that ran returns
//! true.

mod common;

use std::sync::Arc;
use std::time::Duration;

use broker_core::{BrokerStore, Namespace, SessionRecord, StoreError, unix_now};
use common::{Duplicating, Hook, Hooked, Raw, Topology};
use store_redis::redis;
use store_redis::{RedisStore, Topology as Mode};

/// The two tests pause or flood the same servers: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn session(jti: &str) -> SessionRecord {
    let now = unix_now();
    SessionRecord {
        jti: jti.into(),
        sub: "retried-user".into(),
        expires_at: now + 600,
        auth_time: now - 5,
        sealed: format!("sealed-{jti}").into_bytes().into(),
    }
}

async fn topologies() -> Vec<Topology> {
    let mut out = Vec::new();
    out.extend(Topology::single().await);
    out.extend(Topology::cluster().await);
    out
}

/// Each request sent twice, the second answer returned: every operation
/// answers as if it had been sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_run_twice_answers_as_if_run_once() {
    let _serial = SERIAL.lock().await;
    for topology in topologies().await {
        let raw = Raw::open(&topology).await;
        // Receipts only where redis-rs re-sends a request: the cluster-safe
        // mode (also the default on one server for a connection the store
        // was given). `Mode::SingleNode` asserts a single server's
        // connection (`ConnectionManager`, `MultiplexedConnection`), which
        // never re-sends, so its take, delete and compare-and-set leave none
        // (see the crate docs, "Retries").
        for mode in [Mode::Cluster] {
            let ns = Namespace::random("rt").expect("ns");
            let plain = RedisStore::new(raw.clone()).with_namespace(ns.clone());
            let store = RedisStore::new(Duplicating(raw.clone()))
                .with_namespace(ns.clone())
                .with_topology(mode);
            store.setup().await.expect("setup");
            let what = format!("{} {mode:?}", topology.name());

            let s = session("dup");
            store
                .create_session(&s)
                .await
                .unwrap_or_else(|e| panic!("{what}: a create that ran: {e:?}"));
            assert_eq!(
                store.take_session("dup").await.expect("take"),
                Some(s.clone()),
                "{what}: a take that ran"
            );
            assert_eq!(plain.get_session("dup").await.expect("get"), None, "{what}");

            store.create_record("key", b"v1").await.expect("record");
            assert!(
                store
                    .replace_record("key", b"v1", b"v2")
                    .await
                    .expect("replace"),
                "{what}: a replace_record that ran returned false"
            );
            assert_eq!(
                plain.get_record("key").await.expect("get").as_deref(),
                Some(&b"v2"[..])
            );

            store.save_session(&session("gone")).await.expect("save");
            assert!(
                store
                    .replace_session_blob("gone", b"sealed-gone", b"resealed")
                    .await
                    .expect("cas"),
                "{what}: a replace_session_blob that ran"
            );
            assert!(
                store.delete_session("gone").await.expect("delete"),
                "{what}: a delete that ran"
            );
            for jti in ["r1", "r2"] {
                let s = SessionRecord {
                    sub: "revoked-user".into(),
                    ..session(jti)
                };
                plain.save_session(&s).await.expect("save");
            }
            assert_eq!(
                store
                    .revoke_subject(&broker_core::Revocation::now("revoked-user"))
                    .await
                    .expect("revoke"),
                2,
                "{what}: a revoke that ran counts what it deleted"
            );

            // What did not run still says so.
            assert!(
                !store
                    .replace_record("key", b"v1", b"v3")
                    .await
                    .expect("replace"),
                "{what}: a stale compare-and-set"
            );
            plain
                .create_session(&session("held"))
                .await
                .expect("create");
            assert!(
                matches!(
                    store.create_session(&session("held")).await,
                    Err(StoreError::Conflict { .. })
                ),
                "{what}: a create on a taken jti"
            );
            assert!(plain.take_session("held").await.expect("take").is_some());
            assert_eq!(
                store.take_session("held").await.expect("take"),
                None,
                "{what}: a take after another taker"
            );
            topology.teardown(&ns).await.expect("teardown");
        }
    }
}

/// The real thing on Redis Cluster: the nodes are paused (`CLIENT PAUSE
/// WRITE`, which holds scripts) just before each request of an operation,
/// the client times out and re-sends, and every copy runs once the pause
/// ends. (redis-rs 1.8 sends a retry only when the connection is next
/// used, so other tasks keep reading through it meanwhile, as in a busy
/// application; reads are not paused.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_response_timeout_changes_nothing_on_a_cluster() {
    let _serial = SERIAL.lock().await;
    let Some(topology) = Topology::cluster().await else {
        return;
    };
    let Topology::Cluster(urls) = &topology else {
        unreachable!()
    };
    let client = redis::cluster::ClusterClient::builder(urls.clone())
        .response_timeout(Duration::from_millis(250))
        .overall_response_timeout(Some(Duration::from_secs(10)))
        .retries(20)
        .min_retry_wait(10)
        .max_retry_wait(50)
        .build()
        .expect("client");
    let inner = client.get_async_connection().await.expect("connect");
    let conn = Hooked::new(inner.clone());
    // Reads of other tasks, each on its own (one stuck behind the pause must
    // not hold up the next).
    let busy = inner.clone();
    let reader = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut busy = busy.clone();
            tokio::spawn(async move {
                let _: redis::RedisResult<Option<Vec<u8>>> =
                    redis::cmd("GET").arg("busy").query_async(&mut busy).await;
            });
        }
    });
    let ns = Namespace::random("rt").expect("ns");
    let store = RedisStore::new(conn.clone()).with_namespace(ns.clone());
    store.setup().await.expect("setup");
    let masters = common::masters(&topology).await;
    let pause: Hook = Arc::new(move || {
        let masters = masters.clone();
        Box::pin(async move {
            for mut m in masters {
                let _: () = redis::cmd("CLIENT")
                    .arg("PAUSE")
                    .arg(900)
                    .arg("WRITE")
                    .query_async(&mut m)
                    .await
                    .expect("CLIENT PAUSE");
            }
        })
    });
    // Warm up (scripts loaded), and learn how many requests each sends.
    let requests = |before: usize| conn.count() - before;
    let before = conn.count();
    store
        .create_session(&session("warm"))
        .await
        .expect("create");
    let creates = requests(before);
    let before = conn.count();
    assert!(store.take_session("warm").await.expect("take").is_some());
    let takes = requests(before);
    store.create_record("warm", b"a").await.expect("record");
    let before = conn.count();
    assert!(store.replace_record("warm", b"a", b"b").await.expect("cas"));
    let replaces = requests(before);
    eprintln!("requests per create/take/replace_record: {creates}/{takes}/{replaces}");

    // A paused call answers right, or (should the client give up) fails as
    // unavailable, and is then tried again; it never answers wrong.
    let mut timeouts = 0;
    for (op, requests) in [("create", creates), ("take", takes), ("replace", replaces)] {
        for k in 0..requests {
            let mut answered = false;
            for attempt in 0..5 {
                let id = format!("{op}-{k}-{attempt}");
                let s = session(&id);
                match op {
                    "take" => store.create_session(&s).await.expect("create"),
                    "replace" => {
                        store.create_record(&id, b"old").await.expect("record");
                    }
                    _ => {}
                }
                conn.arm(k, Arc::clone(&pause));
                let got: Result<bool, StoreError> = match op {
                    "create" => store.create_session(&s).await.map(|()| true),
                    "take" => store
                        .take_session(&id)
                        .await
                        .map(|got| got.as_ref() == Some(&s)),
                    _ => store.replace_record(&id, b"old", b"new").await,
                };
                conn.disarm();
                match got {
                    Ok(right) => {
                        assert!(right, "{op} paused before request {k}: a wrong answer");
                        answered = true;
                        break;
                    }
                    Err(StoreError::Unavailable { .. }) => {
                        timeouts += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => panic!("{op} paused before request {k}: {e:?}"),
                }
            }
            assert!(answered, "{op} paused before request {k}: never answered");
        }
    }
    eprintln!("paused calls that timed out instead (and were tried again): {timeouts}");
    let check = session("create-0-0");
    assert_eq!(
        store
            .get_session(&check.jti)
            .await
            .expect("get")
            .map(|s| s.jti),
        Some(check.jti)
    );
    reader.abort();
    topology.teardown(&ns).await.expect("teardown");
}
