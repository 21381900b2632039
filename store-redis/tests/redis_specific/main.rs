//! Redis-specific checks beyond the conformance suite: key layout on a real
//! server (prefix, hex-encoded user input, one hash slot per operation),
//! bounded indexes with native expiry, and connections of every kind.

#[path = "../common/mod.rs"]
mod common;
mod format;

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
        sealed: b"opaque sealed bytes".to_vec().into(),
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

/// Sessions and subject indexes expire natively (the index a grace after
/// its last entry); revocation markers never do: only purge forgets them,
/// once the store's clock is past their keep time.
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
        let kind_of = |key: &[u8]| {
            let text = String::from_utf8(key.to_vec()).unwrap();
            text[ns.as_str().len() + 1..]
                .split(':')
                .next()
                .unwrap()
                .to_owned()
        };
        let mut seen = Vec::new();
        for (node, key) in topology.keys(&ns).await.expect("keys") {
            let kind = kind_of(&key);
            let ttl = ttl_of(node, key).await;
            match kind.as_str() {
                "s" => assert!(ttl > 0 && ttl <= 5000, "a session has TTL {ttl}"),
                // The index outlives its last entry by a grace of 300 s.
                "u" => assert!(ttl > 300_000 && ttl <= 305_000, "an index has TTL {ttl}"),
                "r" => assert_eq!(ttl, -1, "a revocation marker expires natively"),
                _ => assert_eq!(ttl, -1, "{kind} has a TTL"),
            }
            seen.push(kind);
        }
        let count = |k: &str| seen.iter().filter(|s| *s == k).count();
        assert_eq!(
            (count("s"), count("u"), count("r")),
            (20, 1, 1),
            "20 sessions, alice's index, bob's marker"
        );

        tokio::time::sleep(Duration::from_millis(5100)).await;
        // Sessions natively gone; the marker is still there until a purge.
        let kinds: BTreeSet<String> = topology
            .keys(&ns)
            .await
            .expect("keys")
            .iter()
            .map(|(_, k)| kind_of(k))
            .collect();
        assert!(!kinds.contains("s"), "sessions outlived their expiry");
        assert!(kinds.contains("r"), "the marker went before a purge");
        let stats = store.stats().await.expect("stats");
        assert_eq!((stats.live_sessions, stats.expired_sessions), (0, 20));
        assert_eq!(stats.revocations, 1);
        assert_eq!(store.purge_expired().await.expect("purge"), 20);
        let stats = store.stats().await.expect("stats");
        assert_eq!((stats.expired_sessions, stats.revocations), (0, 0));
        let kinds: BTreeSet<String> = topology
            .keys(&ns)
            .await
            .expect("keys")
            .iter()
            .map(|(_, k)| kind_of(k))
            .collect();
        assert!(
            !kinds.contains("r"),
            "purge kept a marker past its keep time"
        );

        // alice's index drops the entries once they are expired for the
        // grace: a save by a store whose clock is 400 s later trims them.
        let later = topology_store(&topology, &ns, unix_now() + 400).await;
        later
            .save_session(&session("fresh", "alice", unix_now() + 600))
            .await
            .expect("save");
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

/// A store on `ns` whose clock stands at `now`.
async fn topology_store(topology: &Topology, ns: &Namespace, now: i64) -> Arc<dyn BrokerStore> {
    let clock = Arc::new(broker_core::clock::ManualClock::new(now));
    let raw = common::Raw::open(topology).await;
    Arc::new(
        RedisStore::new(raw)
            .with_namespace(ns.clone())
            .with_clock(clock),
    )
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

/// A revoke's own index clean-up must not un-index a session saved while
/// it runs, or a later revoke cannot find it (issue 15, item 6). The
/// save is slipped in before each request the revoke sends, in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_never_unindexes_a_session_saved_meanwhile() {
    use common::{Hook, Hooked, Raw};
    use store_redis::Topology as Mode;
    for topology in topologies().await {
        let raw = Raw::open(&topology).await;
        let mut modes = vec![Mode::Cluster];
        if let Topology::Single(_) = topology {
            modes.push(Mode::SingleNode);
        }
        for mode in modes {
            let ns = Namespace::random("rs").expect("namespace");
            let hooked = Hooked::new(raw.clone());
            let store = RedisStore::new(hooked.clone())
                .with_namespace(ns.clone())
                .with_topology(mode);
            store.setup().await.expect("setup");
            let other: Arc<dyn BrokerStore> =
                Arc::new(RedisStore::new(raw.clone()).with_namespace(ns.clone()));
            let t = unix_now();
            let at = |jti: &str, sub: &str, auth_time: i64| SessionRecord {
                auth_time,
                ..session(jti, sub, t + 600)
            };
            // Warm up, and count the requests of a revoke of one session.
            other
                .save_session(&at("warm", "warm", t - 100))
                .await
                .expect("save");
            store
                .revoke_subject(&Revocation::at("warm", t - 50))
                .await
                .expect("revoke");
            other
                .save_session(&at("warm2", "warm", t - 100))
                .await
                .expect("save");
            let before = hooked.count();
            store
                .revoke_subject(&Revocation::at("warm", t - 50))
                .await
                .expect("revoke");
            let requests = hooked.count() - before;
            assert!(requests > 0);
            for k in 0..=requests {
                let (sub, jti) = (format!("sub-{k}"), format!("jti-{k}"));
                other
                    .save_session(&at(&jti, &sub, t - 100))
                    .await
                    .expect("save");
                // Meanwhile the same jti is saved again by a later login,
                // which the revocation (at t - 50) does not cover.
                let hook: Hook = {
                    let (other, s) = (Arc::clone(&other), at(&jti, &sub, t));
                    Arc::new(move || {
                        let (other, s) = (Arc::clone(&other), s.clone());
                        Box::pin(async move { other.save_session(&s).await.expect("save") })
                    })
                };
                hooked.arm(k, hook);
                store
                    .revoke_subject(&Revocation::at(sub.as_str(), t - 50))
                    .await
                    .expect("revoke");
                hooked.disarm();
                let visible = other.get_session(&jti).await.expect("get").is_some();
                // A later revocation covers that login too, and must find it.
                let n = other
                    .revoke_subject(&Revocation::at(sub.as_str(), t + 1))
                    .await
                    .expect("revoke");
                assert_eq!(
                    other.get_session(&jti).await.expect("get"),
                    None,
                    "{} {mode:?}: a session saved before request {k} of a revoke escaped the next revoke",
                    topology.name()
                );
                assert_eq!(
                    n,
                    u64::from(visible),
                    "{} {mode:?}: request {k}",
                    topology.name()
                );
            }
            topology.teardown(&ns).await.expect("teardown");
        }
    }
}

/// Expiry, revocation and purge are decided by the store's clock (issue
/// 15, item 8), not by the server's: a marker kept by the injected clock
/// hides sessions even when the server's clock is past its keep time, and
/// purge forgets it only once the injected clock is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injected_clock_decides_expiry_revocation_and_purge() {
    use broker_core::clock::{Clock, ManualClock};
    use common::Raw;
    use store_redis::Topology as Mode;
    for topology in topologies().await {
        let raw = Raw::open(&topology).await;
        let mut modes = vec![Mode::Cluster];
        if let Topology::Single(_) = topology {
            modes.push(Mode::SingleNode);
        }
        for mode in modes {
            let what = format!("{} {mode:?}", topology.name());
            let ns = Namespace::random("rs").expect("namespace");
            // Two hours behind the server: keep times in the server's past.
            let behind = ManualClock::new(unix_now() - 7200);
            let store = RedisStore::new(raw.clone())
                .with_namespace(ns.clone())
                .with_topology(mode)
                .with_clock(Arc::new(behind.clone()));
            store.setup().await.expect("setup");
            let t = behind.now();
            store
                .revoke_subject(&Revocation {
                    sub: "mallory".into(),
                    revoked_at: t,
                    keep_until: t + 600,
                })
                .await
                .expect("revoke");
            let hidden = SessionRecord {
                auth_time: t - 10,
                // In the server's future too, so it is not natively expired.
                ..session("hidden", "mallory", t + 3 * 3600)
            };
            store.save_session(&hidden).await.expect("save");
            assert_eq!(
                store.get_session("hidden").await.expect("get"),
                None,
                "{what}: a revocation kept by the store's clock was forgotten by the server's"
            );
            assert_eq!(
                store
                    .scan_revocations(None, 10)
                    .await
                    .expect("scan")
                    .revocations
                    .len(),
                1,
                "{what}: the kept marker is listed"
            );
            behind.advance(601);
            store.purge_expired().await.expect("purge");
            for (_, k) in topology.keys(&ns).await.unwrap() {
                let k = String::from_utf8_lossy(&k).to_string();
                if k.contains(":m") || k.contains(":r:") {
                    eprintln!("DEBUG {k}");
                }
            }
            eprintln!("DEBUG {:?}", store.scan_revocations(None, 100).await);
            assert_eq!(store.stats().await.expect("stats").revocations, 0, "{what}");
            assert_eq!(
                store.get_session("hidden").await.expect("get"),
                None,
                "{what}"
            );

            // Session expiry: the injected clock, ahead of the server here.
            let ahead = ManualClock::new(unix_now() + 7200);
            let store = store.with_clock(Arc::new(ahead.clone()));
            let t = ahead.now();
            let s = session("short", "bob", t + 60);
            store.save_session(&s).await.expect("save");
            assert_eq!(
                store.get_session("short").await.expect("get"),
                Some(s),
                "{what}"
            );
            ahead.advance(60);
            assert_eq!(
                store.get_session("short").await.expect("get"),
                None,
                "{what}"
            );
            assert_eq!(
                store.take_session("short").await.expect("take"),
                None,
                "{what}"
            );
            assert_eq!(store.purge_expired().await.expect("purge"), 1, "{what}");
            topology.teardown(&ns).await.expect("teardown");
        }
    }
}

/// A revoke that stops halfway (a request fails) leaves its marker
/// registered as pending; purge finishes it, deleting what the marker
/// hides and nothing else, before it may forget the marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_finishes_a_revoke_that_stopped_halfway() {
    use broker_core::clock::{Clock, ManualClock};
    use common::{Hooked, Raw};
    use store_redis::Topology as Mode;
    for topology in topologies().await {
        let raw = Raw::open(&topology).await;
        let mut modes = vec![Mode::Cluster];
        if let Topology::Single(_) = topology {
            modes.push(Mode::SingleNode);
        }
        for mode in modes {
            let what = format!("{} {mode:?}", topology.name());
            let ns = Namespace::random("rs").expect("namespace");
            let clock = ManualClock::starting_now();
            let hooked = Hooked::new(raw.clone());
            let failing = RedisStore::new(hooked.clone())
                .with_namespace(ns.clone())
                .with_topology(mode)
                .with_clock(Arc::new(clock.clone()));
            failing.setup().await.expect("setup");
            let store = RedisStore::new(raw.clone())
                .with_namespace(ns.clone())
                .with_topology(mode)
                .with_clock(Arc::new(clock.clone()));
            let t = clock.now();
            let at = |jti: &str, sub: &str, auth_time: i64| SessionRecord {
                auth_time,
                ..session(jti, sub, t + 600)
            };
            // Warm up and count the requests of a revoke of two sessions.
            let warm = Revocation {
                sub: "warm".into(),
                revoked_at: t - 50,
                keep_until: t + 60,
            };
            for jti in ["w1", "w2"] {
                store
                    .save_session(&at(jti, "warm", t - 100))
                    .await
                    .expect("save");
            }
            failing.revoke_subject(&warm).await.expect("revoke");
            for jti in ["w3", "w4"] {
                store
                    .save_session(&at(jti, "warm", t - 100))
                    .await
                    .expect("save");
            }
            let before = hooked.count();
            failing.revoke_subject(&warm).await.expect("revoke");
            let requests = hooked.count() - before;
            let mut revoked = Vec::new();
            for k in 0..requests {
                let sub = format!("victim-{k}");
                let (old, other) = (format!("old-{k}"), format!("other-{k}"));
                store
                    .save_session(&at(&old, &sub, t - 100))
                    .await
                    .expect("save");
                store
                    .save_session(&at(&other, &sub, t - 100))
                    .await
                    .expect("save");
                hooked.fail(k);
                let revocation = Revocation {
                    sub: sub.clone(),
                    revoked_at: t - 50,
                    keep_until: t + 60,
                };
                assert!(
                    failing.revoke_subject(&revocation).await.is_err(),
                    "{what}: request {k} did not fail"
                );
                hooked.disarm();
                // A later login, which the revocation does not cover.
                let new = format!("new-{k}");
                store.save_session(&at(&new, &sub, t)).await.expect("save");
                let marked = store
                    .scan_revocations(None, 100)
                    .await
                    .expect("scan")
                    .revocations
                    .iter()
                    .any(|r| r.sub == sub);
                store.purge_expired().await.expect("purge");
                if marked {
                    revoked.push(old.clone());
                }
                for jti in [&old, &other] {
                    let got = store.get_session(jti).await.expect("get");
                    assert!(
                        !marked || got.is_none(),
                        "{what}: request {k} failed, the marker was kept, and purge left {jti}"
                    );
                }
                assert!(
                    store.get_session(&new).await.expect("get").is_some(),
                    "{what}: request {k}: purge deleted a session the marker does not hide"
                );
            }
            // Every marker is forgotten once past its keep time, and nothing
            // it hid comes back.
            clock.advance(61);
            store.purge_expired().await.expect("purge");
            assert_eq!(store.stats().await.expect("stats").revocations, 0, "{what}");
            // Only a revoke stopped before it wrote its marker left none.
            assert_eq!(
                revoked.len() + 2,
                requests,
                "{what}: markers written: {revoked:?}"
            );
            for jti in &revoked {
                assert_eq!(
                    store.get_session(jti).await.expect("get"),
                    None,
                    "{what}: {jti}"
                );
            }
            topology.teardown(&ns).await.expect("teardown");
        }
    }
}
