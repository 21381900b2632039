//! MongoDB-specific checks beyond the conformance suite: the stored shape
//! (BSON date + TTL index on sessions, none on markers, binary blobs, JWKS
//! as text), operators in user
//! input staying literal, the read-side expiry check, handle reuse, and error
//! mapping.

#[path = "../common/mod.rs"]
mod common;
mod format;

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_core::clock::{Clock, ManualClock};

use broker_core::{
    BrokerStore, Namespace, PeerJwks, Revocation, SessionRecord, StoreError, unix_now,
};
use futures::TryStreamExt;
use store_mongo::MongoStore;
use store_mongo::mongodb::bson::{Bson, DateTime, Document, doc};
use store_mongo::mongodb::{Client, Database};

/// A set-up store on a fresh namespace plus the database behind it, or
/// `None` when there is no server (already reported loudly).
async fn fresh() -> Option<(MongoStore, Database)> {
    let url = common::mongo_url().await?;
    let store = MongoStore::connect(&url)
        .await
        .expect("client")
        .with_namespace(Namespace::random("mt").expect("namespace"));
    store.setup().await.expect("setup");
    let db = store.database().clone();
    static ANNOUNCED: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    ANNOUNCED.call_once(|| first = true);
    if first {
        common::announce("backend tests", &db).await;
    }
    Some((store, db))
}

async fn drop_all(store: &MongoStore) {
    for name in store.collection_names() {
        store
            .database()
            .collection::<Document>(&name)
            .drop()
            .await
            .expect("drop");
    }
}

fn session(jti: &str, sub: &str, expires_at: i64) -> SessionRecord {
    SessionRecord {
        jti: jti.to_owned(),
        sub: sub.to_owned(),
        expires_at,
        auth_time: unix_now() - 10,
        sealed: vec![1, 0, 0, 0, 7, 0xff, 0x00, 0x42].into(),
    }
}

#[tokio::test]
async fn setup_creates_a_session_ttl_index_on_a_bson_date_and_a_subject_index() {
    let Some((store, db)) = fresh().await else {
        return;
    };
    // Twice, and concurrently: still one index set.
    let s2 = store.clone();
    let (a, b) = tokio::join!(store.setup(), s2.setup());
    a.unwrap();
    b.unwrap();
    let [sessions, revocations, ..] = store.collection_names();
    let indexes: Vec<_> = db
        .collection::<Document>(&sessions)
        .list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(indexes.len(), 3, "_id, expiry TTL and sub: {indexes:?}");
    let ttl = indexes
        .iter()
        .find(|i| i.keys == doc! { "expires_at": 1 })
        .expect("an index on expires_at");
    assert_eq!(
        ttl.options.as_ref().and_then(|o| o.expire_after),
        Some(Duration::ZERO),
        "TTL index expires at the stored date"
    );
    assert!(indexes.iter().any(|i| i.keys == doc! { "sub": 1 }));
    let rev_indexes: Vec<_> = db
        .collection::<Document>(&revocations)
        .list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    // No TTL on the markers: only purge forgets them, after the sessions
    // they hide.
    assert_eq!(rev_indexes.len(), 1, "only _id: {rev_indexes:?}");

    // The stored shape: a BSON date for the TTL monitor, the exact seconds,
    // the blob as binary.
    let s = session("shape", "alice", unix_now() + 3600);
    store.save_session(&s).await.unwrap();
    let raw = db
        .collection::<Document>(&sessions)
        .find_one(doc! { "_id": "shape" })
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        raw.get("expires_at"),
        Some(&Bson::DateTime(DateTime::from_millis(s.expires_at * 1000)))
    );
    assert_eq!(raw.get("expires_at_secs"), Some(&Bson::Int64(s.expires_at)));
    match raw.get("sealed") {
        Some(Bson::Binary(b)) => assert_eq!(b.bytes, s.sealed),
        other => panic!("sealed is not binary: {other:?}"),
    }
    drop_all(&store).await;
}

#[tokio::test]
async fn operators_in_user_input_are_literals() {
    let Some((store, _db)) = fresh().await else {
        return;
    };
    let far = unix_now() + 3600;
    store
        .save_session(&session("plain", "bob", far))
        .await
        .unwrap();
    store
        .save_session(&session("other", "carol", far))
        .await
        .unwrap();
    for hostile in [
        r#"{"$ne": ""}"#,
        r#"{"$gt": ""}"#,
        "$where",
        "this.sub == 'bob'",
        r#"{"$regex": ".*"}"#,
    ] {
        assert_eq!(store.get_session(hostile).await.unwrap(), None, "{hostile}");
        assert_eq!(
            store.take_session(hostile).await.unwrap(),
            None,
            "{hostile}"
        );
        assert!(!store.delete_session(hostile).await.unwrap(), "{hostile}");
        let removed = store
            .revoke_subject(&Revocation::now(hostile))
            .await
            .unwrap();
        assert_eq!(removed, 0, "{hostile} matched other subjects");
        // Authenticated after that revocation, so it is not hidden by it.
        let mut s = session(hostile, hostile, far);
        s.auth_time = unix_now() + 100;
        store.save_session(&s).await.unwrap();
        let got = store
            .get_session(hostile)
            .await
            .unwrap()
            .expect("stored literally");
        assert_eq!(got.jti, hostile);
        assert_eq!(got.sub, hostile);
    }
    assert!(store.get_session("plain").await.unwrap().is_some());
    assert!(store.get_session("other").await.unwrap().is_some());
    assert_eq!(
        store.revoke_subject(&Revocation::now("bob")).await.unwrap(),
        1
    );
    assert!(store.get_session("other").await.unwrap().is_some());
    drop_all(&store).await;
}

#[tokio::test]
async fn expired_documents_the_ttl_monitor_has_not_removed_are_never_returned() {
    let Some((store, db)) = fresh().await else {
        return;
    };
    let [sessions, ..] = store.collection_names();
    // Planted directly, as the TTL monitor (once a minute) may leave it.
    let past = unix_now() - 5;
    db.collection::<Document>(&sessions)
        .insert_one(doc! {
            "_id": "stale", "sub": "dave",
            "expires_at": DateTime::from_millis(past * 1000), "expires_at_secs": past,
            "auth_time": past - 100,
            "sealed": store_mongo::mongodb::bson::Binary {
                subtype: store_mongo::mongodb::bson::spec::BinarySubtype::Generic,
                bytes: vec![1, 2, 3],
            },
        })
        .await
        .unwrap();
    assert_eq!(store.get_session("stale").await.unwrap(), None);
    assert_eq!(store.take_session("stale").await.unwrap(), None);
    let page = store.scan_sessions(None, 10).await.unwrap();
    assert!(page.sessions.is_empty());
    assert_eq!(store.stats().await.unwrap().expired_sessions, 1);
    // create over it succeeds (the stale one is not live).
    store
        .create_session(&session("stale", "erin", unix_now() + 60))
        .await
        .unwrap();
    assert_eq!(
        store.get_session("stale").await.unwrap().unwrap().sub,
        "erin"
    );
    drop_all(&store).await;
}

#[tokio::test]
async fn a_document_of_the_wrong_shape_is_corrupt_not_a_panic() {
    let Some((store, db)) = fresh().await else {
        return;
    };
    let [sessions, _, records, ..] = store.collection_names();
    let future = unix_now() + 600;
    db.collection::<Document>(&sessions)
        .insert_one(doc! {
            "_id": "odd", "sub": 5,
            "expires_at": DateTime::from_millis(future * 1000), "expires_at_secs": future,
        })
        .await
        .unwrap();
    // Expiry fields edited apart from each other.
    db.collection::<Document>(&sessions)
        .insert_one(doc! {
            "_id": "split", "sub": "x",
            "expires_at": DateTime::from_millis(future * 1000), "expires_at_secs": future + 1,
            "auth_time": 0_i64,
            "sealed": store_mongo::mongodb::bson::Binary {
                subtype: store_mongo::mongodb::bson::spec::BinarySubtype::Generic,
                bytes: vec![1],
            },
        })
        .await
        .unwrap();
    db.collection::<Document>(&records)
        .insert_one(doc! { "_id": "k", "value": "plain text, not binary" })
        .await
        .unwrap();
    for jti in ["odd", "split"] {
        match store.get_session(jti).await {
            Err(StoreError::Corrupt {
                op: "get_session", ..
            }) => {}
            other => panic!("{jti}: {other:?}"),
        }
    }
    assert!(matches!(
        store.get_record("k").await,
        Err(StoreError::Corrupt {
            op: "get_record",
            ..
        })
    ));
    drop_all(&store).await;
}

#[tokio::test]
async fn conflict_errors_do_not_quote_the_key() {
    let Some((store, _db)) = fresh().await else {
        return;
    };
    let jti = "jti-canary-7f3a";
    store
        .create_session(&session(jti, "s", unix_now() + 60))
        .await
        .unwrap();
    let err = store
        .create_session(&session(jti, "s2", unix_now() + 60))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                op: "create_session",
                ..
            }
        ),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(!text.contains("canary"), "{text}");
    assert_eq!(store.get_session(jti).await.unwrap().unwrap().sub, "s");
    drop_all(&store).await;
}

#[tokio::test]
async fn peers_keep_their_json_text_exactly() {
    let Some((store, db)) = fresh().await else {
        return;
    };
    let jwks = r#"{"keys":[{"n":"x","e":"AQAB","kty":"RSA","big":1.0e+400,"z":1}],"a":0.10}"#;
    let peer = PeerJwks {
        issuer: "https://idp.example/realms/a?b=$where".to_owned(),
        jwks: jwks.to_owned(),
        fetched_at: unix_now(),
    };
    store.save_peer(&peer).await.unwrap();
    assert_eq!(store.load_peers().await.unwrap(), vec![peer.clone()]);
    let [_, _, _, peers, _] = store.collection_names();
    let raw = db
        .collection::<Document>(&peers)
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.get_str("jwks").unwrap(), jwks);
    drop_all(&store).await;
}

#[tokio::test]
async fn a_store_on_a_handed_in_database_leaves_the_client_running() {
    let Some(url) = common::mongo_url().await else {
        return;
    };
    let client = Client::with_uri_str(&url).await.unwrap();
    let db = client
        .default_database()
        .expect("the test URL names a database");
    let ns = Namespace::random("mt").unwrap();
    {
        let store = MongoStore::from_database(db.clone()).with_namespace(ns.clone());
        store.setup().await.unwrap();
        store.health().await.unwrap();
        store.create_record("k", b"v").await.unwrap();
        drop(store);
    }
    // The client still works after the store is gone.
    db.run_command(doc! { "ping": 1 }).await.unwrap();
    let again = MongoStore::new(db.clone()).with_namespace(ns);
    assert_eq!(again.get_record("k").await.unwrap(), Some(b"v".to_vec()));
    drop_all(&again).await;
}

#[tokio::test]
async fn connect_refuses_bad_urls_without_quoting_them() {
    let err = MongoStore::connect("mongodb://127.0.0.1:1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidInput { op: "connect", .. }),
        "{err:?}"
    );
    let err = MongoStore::connect("postgres://user:hunter2@host/db")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidInput { op: "connect", .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_within_seconds() {
    // Nothing listens on port 1; no server is needed for this test.
    let store = MongoStore::connect("mongodb://127.0.0.1:1/nothing")
        .await
        .unwrap();
    let started = Instant::now();
    let err = store.get_session("x").await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Unavailable {
                op: "get_session",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The operation timeout bounds a client with the driver's 30 s default.
    let client = Client::with_uri_str("mongodb://127.0.0.1:1").await.unwrap();
    let store = MongoStore::new(client.database("nothing"))
        .with_operation_timeout(Duration::from_millis(1500));
    let started = Instant::now();
    let err = store.health().await.unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable { op: "health", .. }),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// The same random operations on [`broker_core::MemoryStore`] (the
/// reference) and on MongoDB give the same answers.
#[tokio::test]
async fn behaves_like_the_reference_memory_store() {
    for seed in [0x2545_f491_4f6c_dd1d, 0x9e37_79b9_7f4a_7c15, 42] {
        if !differential(seed).await {
            return;
        }
    }
}

/// One differential run; false if there is no server.
async fn differential(mut seed: u64) -> bool {
    let Some((store, db)) = fresh().await else {
        return false;
    };
    // One clock for both, a year ahead of the server's: every stored
    // `expires_at` lies in the server's future, so its TTL monitor (which
    // goes by the server's clock) never removes a session behind the
    // reference's back, and neither store's time moves during the run.
    let clock = ManualClock::new(unix_now() + 365 * 86_400);
    let store = store.with_clock(Arc::new(clock.clone()));
    let reference = broker_core::MemoryStore::new().with_clock(Arc::new(clock.clone()));
    let now = clock.now();
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let jtis = ["j0", "j1", "j2", "j3", "j4", "j5"];
    let subs = ["alice", "bob", "{\"$ne\":null}"];
    let times = [now - 1000, now - 1, now + 1000, now + 5000];
    for step in 0..600 {
        let jti = jtis[next(jtis.len() as u64) as usize];
        let s = SessionRecord {
            jti: jti.to_owned(),
            sub: subs[next(subs.len() as u64) as usize].to_owned(),
            expires_at: times[next(times.len() as u64) as usize],
            auth_time: times[next(times.len() as u64) as usize],
            sealed: vec![1, next(4) as u8, 0, step as u8].into(),
        };
        let op = next(11);
        let (a, b) = match op {
            0 => (
                format!(
                    "{:?}",
                    reference
                        .create_session(&s)
                        .await
                        .map_err(|e| e.to_string())
                ),
                format!(
                    "{:?}",
                    store.create_session(&s).await.map_err(|e| e.to_string())
                ),
            ),
            1 | 2 => (
                format!("{:?}", reference.save_session(&s).await.unwrap()),
                format!("{:?}", store.save_session(&s).await.unwrap()),
            ),
            3 => (
                format!("{:?}", reference.get_session(jti).await.unwrap()),
                format!("{:?}", store.get_session(jti).await.unwrap()),
            ),
            4 => (
                format!("{:?}", reference.take_session(jti).await.unwrap()),
                format!("{:?}", store.take_session(jti).await.unwrap()),
            ),
            5 => (
                format!("{:?}", reference.delete_session(jti).await.unwrap()),
                format!("{:?}", store.delete_session(jti).await.unwrap()),
            ),
            6 => {
                let r = Revocation {
                    sub: s.sub.clone(),
                    revoked_at: times[next(4) as usize],
                    keep_until: times[next(4) as usize],
                };
                (
                    format!("{:?}", reference.revoke_subject(&r).await.unwrap()),
                    format!("{:?}", store.revoke_subject(&r).await.unwrap()),
                )
            }
            7 => (
                format!("{:?}", reference.purge_expired().await.unwrap()),
                format!("{:?}", store.purge_expired().await.unwrap()),
            ),
            8 => {
                let new = vec![1, 9, 9, step as u8];
                (
                    format!(
                        "{:?}",
                        reference
                            .replace_session_blob(jti, &s.sealed, &new)
                            .await
                            .unwrap()
                    ),
                    format!(
                        "{:?}",
                        store
                            .replace_session_blob(jti, &s.sealed, &new)
                            .await
                            .unwrap()
                    ),
                )
            }
            10 => {
                // Time passes for both: markers pass their keep time,
                // sessions expire.
                clock.advance([1, 30, 700][next(3) as usize]);
                (String::new(), String::new())
            }
            _ => {
                let mut all = (Vec::new(), Vec::new());
                let (mut c1, mut c2) = (None::<String>, None::<String>);
                loop {
                    let p = reference.scan_sessions(c1.as_deref(), 2).await.unwrap();
                    all.0.extend(p.sessions);
                    c1 = p.next;
                    if c1.is_none() {
                        break;
                    }
                }
                loop {
                    let p = store.scan_sessions(c2.as_deref(), 2).await.unwrap();
                    all.1.extend(p.sessions);
                    c2 = p.next;
                    if c2.is_none() {
                        break;
                    }
                }
                (format!("{:?}", all.0), format!("{:?}", all.1))
            }
        };
        if a != b {
            let [sessions, revs, ..] = store.collection_names();
            let docs: Vec<Document> = db
                .collection::<Document>(&sessions)
                .find(doc! {})
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let rdocs: Vec<Document> = db
                .collection::<Document>(&revs)
                .find(doc! {})
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            eprintln!(
                "state after the differing step: now={now} session={s:?}\nsessions={docs:#?}\nrevs={rdocs:#?}"
            );
        }
        assert_eq!(a, b, "step {step}, operation {op}");
        if step % 10 == 0 {
            let (x, y) = (
                reference.stats().await.unwrap(),
                store.stats().await.unwrap(),
            );
            assert_eq!(
                (
                    x.live_sessions,
                    x.expired_sessions,
                    x.subjects,
                    x.revocations
                ),
                (
                    y.live_sessions,
                    y.expired_sessions,
                    y.subjects,
                    y.revocations
                ),
                "stats at step {step}"
            );
        }
    }
    drop_all(&store).await;
    true
}

/// Races on one server: 16 first-time setups of one namespace from
/// separate clients, 64 takers of one session, 16 create-once callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn races_have_one_winner() {
    let Some(url) = common::mongo_url().await else {
        return;
    };
    let ns = Namespace::random("mt").unwrap();
    let mut stores = Vec::new();
    for _ in 0..16 {
        stores.push(
            MongoStore::connect(&url)
                .await
                .unwrap()
                .with_namespace(ns.clone()),
        );
    }
    let setups = futures::future::join_all(stores.iter().map(|s| s.setup())).await;
    for r in setups {
        r.expect("concurrent first setup");
    }
    let store = stores[0].clone();
    store
        .save_session(&session("hot", "s", unix_now() + 60))
        .await
        .unwrap();
    let takers = (0..64).map(|i| {
        let s = stores[i % 16].clone();
        tokio::spawn(async move { s.take_session("hot").await })
    });
    let mut won = 0;
    for t in futures::future::join_all(takers).await {
        if t.unwrap().unwrap().is_some() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    let creators = (0..16).map(|i| {
        let s = stores[i].clone();
        tokio::spawn(async move {
            s.create_record("kdf", format!("value-{i}").as_bytes())
                .await
        })
    });
    let values: std::collections::BTreeSet<Vec<u8>> = futures::future::join_all(creators)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(values.len(), 1, "{values:?}");
    assert_eq!(
        store.get_record("kdf").await.unwrap().as_ref(),
        values.iter().next()
    );
    drop_all(&store).await;
}
