//! Redis-specific checks beyond the conformance suite: key layout on a real
//! server (prefix, hex-encoded user input, one hash slot per operation),
//! bounded indexes with native expiry, and connections of every kind.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use broker_core::{BrokerStore, Namespace, Revocation, SessionRecord, unix_now};
use common::Topology;
use store_redis::RedisStore;
use store_redis::redis;

const HOSTILE: &[&str] = &[
    "{a}",
    "x}y{z",
    "a:b",
    "*",
    "a b",
    "?[",
    "'; DROP TABLE s;--",
    "{\"$ne\":null}",
    "\u{e9}\u{1F600}",
];

fn session(jti: &str, sub: &str, expires_at: i64) -> SessionRecord {
    SessionRecord {
        jti: jti.into(),
        sub: sub.into(),
        expires_at,
        auth_time: unix_now() - 1,
        sealed: b"opaque sealed bytes".to_vec(),
    }
}

async fn topologies() -> Vec<Topology> {
    let mut out = Vec::new();
    out.extend(Topology::single().await);
    out.extend(Topology::cluster().await);
    out
}

/// The hash tag Redis would use for `key` (None: the whole key).
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let close = key[open + 1..].iter().position(|&b| b == b'}')? + open + 1;
    (close > open + 1).then(|| &key[open + 1..close])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_are_hex_in_keys_and_never_pick_the_slot() {
    for topology in topologies().await {
        let ns = Namespace::random("rs").expect("namespace");
        let store = topology.open(&ns).await.expect("connect");
        store.setup().await.expect("setup");
        let now = unix_now();
        for (i, id) in HOSTILE.iter().enumerate() {
            // Every operation must run on a cluster (no CROSSSLOT).
            store
                .create_session(&session(id, id, now + 600))
                .await
                .expect("create");
            assert_eq!(
                store.get_session(id).await.expect("get").map(|s| s.sub),
                Some(id.to_string())
            );
            store
                .save_session(&session(&format!("{id}-2"), id, now + 600))
                .await
                .expect("save");
            assert!(
                store
                    .replace_session_blob(id, b"opaque sealed bytes", b"new")
                    .await
                    .expect("cas")
            );
            store.create_record(id, b"r").await.expect("record");
            if i % 2 == 0 {
                assert!(store.take_session(id).await.expect("take").is_some());
            }
        }
        let page = store.scan_sessions(None, 1000).await.expect("scan");
        assert_eq!(
            page.sessions.len(),
            HOSTILE.len() * 2 - HOSTILE.len().div_ceil(2)
        );
        for id in HOSTILE {
            assert!(
                store
                    .revoke_subject(&Revocation::now(*id))
                    .await
                    .expect("revoke")
                    >= 1
            );
        }
        assert_eq!(store.purge_expired().await.expect("purge"), 0);

        let keys = topology.keys(&ns).await.expect("raw keys");
        assert!(!keys.is_empty());
        let prefix = format!("{ns}:");
        for (_, key) in &keys {
            let text = String::from_utf8(key.clone()).expect("keys are ASCII");
            assert!(
                text.starts_with(&prefix),
                "key outside the namespace: {text}"
            );
            // Namespace, fixed letters, hex and one hash tag: nothing else.
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_:{}".contains(&b)),
                "raw user input in key {text}"
            );
            assert!(
                text.matches('{').count() <= 1 && text.matches('}').count() <= 1,
                "{text}"
            );
            if let Some(tag) = hash_tag(key) {
                assert!(tag.starts_with(format!("{ns}:").as_bytes()), "tag {text}");
            }
        }
        topology.teardown(&ns).await.expect("teardown");
        assert!(topology.keys(&ns).await.expect("raw keys").is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_expiry_and_bounded_subject_index() {
    for topology in topologies().await {
        let ns = Namespace::random("rs").expect("namespace");
        let store = topology.open(&ns).await.expect("connect");
        store.setup().await.expect("setup");
        let now = unix_now();
        for i in 0..20 {
            store
                // At least 3 s ahead: the TTL checks below must see the keys
                // before they expire, even on a loaded machine.
                .save_session(&session(&format!("short-{i}"), "alice", now + 4))
                .await
                .expect("save");
        }
        store
            .revoke_subject(&Revocation {
                sub: "bob".into(),
                revoked_at: now,
                keep_until: now + 4,
            })
            .await
            .expect("revoke");

        // Every key holding a session, marker or subject index has a TTL.
        let ttl_of = |node: String, key: Vec<u8>| async move {
            let mut c = redis::Client::open(node.as_str())
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut c)
                .await
                .expect("PTTL");
            ttl
        };
        let mut with_ttl = 0;
        for (node, key) in topology.keys(&ns).await.expect("keys") {
            let text = String::from_utf8(key.clone()).unwrap();
            let kind = text[ns.as_str().len() + 1..].chars().next().unwrap();
            if matches!(kind, 's' | 'r' | 'u') {
                let ttl = ttl_of(node, key).await;
                assert!(ttl > 0 && ttl <= 5000, "{text} has TTL {ttl}");
                with_ttl += 1;
            }
        }
        assert_eq!(
            with_ttl,
            20 + 1 + 1,
            "20 sessions, bob's marker, alice's index"
        );

        tokio::time::sleep(Duration::from_millis(5100)).await;
        // Natively gone: only the bucket indexes remain, and purge counts them.
        store
            .save_session(&session("fresh", "alice", unix_now() + 600))
            .await
            .expect("save");
        let left: BTreeSet<char> = topology
            .keys(&ns)
            .await
            .expect("keys")
            .into_iter()
            .map(|(_, k)| {
                String::from_utf8(k).unwrap()[ns.as_str().len() + 1..]
                    .chars()
                    .next()
                    .unwrap()
            })
            .collect();
        assert!(
            !left.contains(&'r'),
            "the revocation marker outlived keep_until"
        );
        let stats = store.stats().await.expect("stats");
        assert_eq!((stats.live_sessions, stats.expired_sessions), (1, 20));
        assert_eq!(store.purge_expired().await.expect("purge"), 20);
        assert_eq!(store.stats().await.expect("stats").expired_sessions, 0);
        // alice's subject index was trimmed to the one live session.
        let raw = topology.raw_contents(&ns).await.expect("raw");
        let fresh_hex: String = b"fresh".iter().map(|b| format!("{b:02x}")).collect();
        let short_hex: String = b"short-1".iter().map(|b| format!("{b:02x}")).collect();
        assert!(raw.iter().any(|v| v == fresh_hex.as_bytes()));
        assert!(
            !raw.iter().any(|v| v == short_hex.as_bytes()),
            "stale index entries were not trimmed"
        );
        topology.teardown(&ns).await.expect("teardown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_every_connection_kind_and_leaves_it_open() {
    let Some(Topology::Single(url)) = Topology::single().await else {
        return;
    };
    let client = redis::Client::open(url.as_str()).expect("url");
    let ns = Namespace::random("rs").expect("namespace");
    let multiplexed = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let manager = client.get_connection_manager().await.expect("connect");
    let a = RedisStore::new(multiplexed.clone()).with_namespace(ns.clone());
    let b: Arc<dyn BrokerStore> =
        Arc::new(RedisStore::new(manager.clone()).with_namespace(ns.clone()));
    a.setup().await.expect("setup");
    a.create_session(&session("j", "s", unix_now() + 60))
        .await
        .expect("create");
    assert!(b.get_session("j").await.expect("get").is_some());
    drop(a);
    drop(b);
    let mut m = manager;
    let pong: String = redis::cmd("PING")
        .query_async(&mut m)
        .await
        .expect("the manager is still open");
    assert_eq!(pong, "PONG");
    let mut c = multiplexed;
    let _: i64 = redis::cmd("DBSIZE")
        .query_async(&mut c)
        .await
        .expect("the connection is still open");
    Topology::Single(url).teardown(&ns).await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_and_cursors_are_invalid_input() {
    assert!(matches!(
        RedisStore::connect("not a url").await,
        Err(broker_core::StoreError::InvalidInput { .. })
    ));
    let Some(topology) = Topology::single().await else {
        return;
    };
    let store = topology
        .open(&Namespace::random("rs").expect("namespace"))
        .await
        .expect("connect");
    for bad in ["", "zz", "ff", "00:xyz"] {
        assert!(
            matches!(
                store.scan_sessions(Some(bad), 10).await,
                Err(broker_core::StoreError::InvalidInput { .. })
            ),
            "{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_unavailable_within_seconds() {
    // A port nothing listens on: connecting fails fast with Unavailable.
    let started = std::time::Instant::now();
    let err = RedisStore::connect("redis://127.0.0.1:1")
        .await
        .expect_err("nothing listens there");
    assert!(err.is_retryable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
