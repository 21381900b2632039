//! The storage format at `setup`: a newer format is refused with a typed
//! `FormatError` and left alone, format 2 (strings of fixed-offset binary)
//! is migrated in place to format 3 (hashes read by field name), and a
//! format-2 nonce-budget namespace does not lock vaults out.
//!
//! Format 2 is planted with raw commands, so these tests also pin what it
//! was: the key layout (unchanged in format 3) and its value encodings.

use std::sync::Arc;

use crate::common::{Raw, Topology};
use broker_core::vault::{KEY_BUDGET_NAMESPACE, NONCE_COUNTER_PREFIX, NONCE_LIMIT};
use broker_core::{
    BrokerStore, EncryptionKey, FormatError, KeyConfig, Namespace, PeerJwks, Revocation,
    SessionRecord, StoreError, TokenVault, unix_now,
};
use store_redis::redis;

async fn topologies() -> Vec<Topology> {
    let mut out = Vec::new();
    out.extend(Topology::single().await);
    out.extend(Topology::cluster().await);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The format-2 (and 3) key layout of a namespace.
struct Layout(String);

impl Layout {
    fn bucket(jti: &str) -> String {
        let mut h: u32 = 0x811c_9dc5;
        for b in jti.as_bytes() {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
        format!("{:02x}", h % 64)
    }
    fn session(&self, jti: &str) -> String {
        format!(
            "{0}:s:{{{0}:{1}}}:{2}",
            self.0,
            Self::bucket(jti),
            hex(jti.as_bytes())
        )
    }
    fn lex(&self, jti: &str) -> String {
        format!("{0}:l:{{{0}:{1}}}", self.0, Self::bucket(jti))
    }
    fn exp(&self, jti: &str) -> String {
        format!("{0}:x:{{{0}:{1}}}", self.0, Self::bucket(jti))
    }
    fn subject(&self, sub: &str) -> String {
        format!("{0}:u:{{{0}:u:{1}}}", self.0, hex(sub.as_bytes()))
    }
    fn marker(&self, sub: &str) -> String {
        format!("{0}:r:{{{0}:u:{1}}}", self.0, hex(sub.as_bytes()))
    }
    fn registry(&self, kind: &str) -> String {
        format!("{0}:{kind}:{{{0}:m}}", self.0)
    }
    fn tombstone(&self, jti: &str, sub: &str) -> (String, String, String) {
        let b = Self::bucket(jti);
        let member = format!("{}:{}", hex(jti.as_bytes()), hex(sub.as_bytes()));
        (
            format!("{0}:d:{{{0}:{b}}}:{member}", self.0),
            format!("{0}:dx:{{{0}:{b}}}", self.0),
            member,
        )
    }
}

/// A format-2 revocation value: `0x01`, `revoked_at`, `keep_until`, then
/// the token of a revoke at work.
fn v2_revocation(revoked_at: i64, keep_until: i64, token: &[u8]) -> Vec<u8> {
    let mut v = vec![1u8];
    v.extend(revoked_at.to_be_bytes());
    v.extend(keep_until.to_be_bytes());
    v.extend(token);
    v
}

/// Plant a format-2 session with its indexes.
async fn plant_session(raw: &Raw, l: &Layout, s: &SessionRecord) {
    let mut v = vec![1u8];
    v.extend(s.expires_at.to_be_bytes());
    v.extend(s.auth_time.to_be_bytes());
    v.extend((s.sub.len() as u16).to_be_bytes());
    v.extend(s.sub.as_bytes());
    v.extend(&s.sealed);
    plant_value(raw, l, &s.jti, &v, s.expires_at).await;
    let member = hex(s.jti.as_bytes());
    let _: i64 = raw
        .query(
            redis::cmd("ZADD")
                .arg(l.subject(&s.sub))
                .arg(s.expires_at)
                .arg(&member),
        )
        .await;
}

/// Plant a format-2 session value (any bytes) under `jti`, indexed.
async fn plant_value(raw: &Raw, l: &Layout, jti: &str, value: &[u8], expires_at: i64) {
    let member = hex(jti.as_bytes());
    let _: () = raw
        .query(
            redis::cmd("SET")
                .arg(l.session(jti))
                .arg(value)
                .arg("EXAT")
                .arg(expires_at),
        )
        .await;
    let _: i64 = raw
        .query(redis::cmd("ZADD").arg(l.lex(jti)).arg(0).arg(&member))
        .await;
    let _: i64 = raw
        .query(
            redis::cmd("ZADD")
                .arg(l.exp(jti))
                .arg(expires_at)
                .arg(&member),
        )
        .await;
}

fn session(jti: &str, sub: &str, now: i64) -> SessionRecord {
    SessionRecord {
        jti: jti.into(),
        sub: sub.into(),
        expires_at: now + 600,
        auth_time: now - 10,
        sealed: format!("sealed bytes of {jti}").into_bytes().into(),
    }
}

fn format_error(e: &StoreError) -> FormatError {
    FormatError::of(e)
        .unwrap_or_else(|| panic!("a FormatError, got {e:?}"))
        .clone()
}

/// Fails before format versions were typed: `setup` answered a redis
/// `SetupError::Format` (and had no notion of "newer").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_refuses_a_newer_format_and_changes_nothing() {
    for topology in topologies().await {
        let ns = Namespace::random("rf").expect("namespace");
        let raw = Raw::open(&topology).await;
        let meta = format!("{ns}:meta");
        let _: () = raw
            .query(redis::cmd("SET").arg(&meta).arg("store-redis/4"))
            .await;
        let store = topology.open(&ns).await.expect("connect");
        let err = store.setup().await.expect_err("setup on format 4");
        let format = format_error(&err);
        assert!(format.is_newer(), "{format:?}");
        assert_eq!((format.found, format.supported), (Some(4), 3));
        assert_eq!(format.store, "store-redis");
        let kept: String = raw.query(redis::cmd("GET").arg(&meta)).await;
        assert_eq!(kept, "store-redis/4");
        assert_eq!(
            topology.keys(&ns).await.expect("keys").len(),
            1,
            "only meta"
        );

        // Format 1 predates what this version migrates; foreign markers
        // are not this store's.
        for (marker, found) in [("store-redis/1", Some(1)), ("someone-else/3", None)] {
            let _: () = raw.query(redis::cmd("SET").arg(&meta).arg(marker)).await;
            let format = format_error(&store.setup().await.expect_err(marker));
            assert_eq!(format.found, found, "{marker}");
            assert!(!format.is_newer(), "{marker}");
        }
        topology.teardown(&ns).await.expect("teardown");
    }
}

/// Fails before the migration: format 2 was the current format, sessions
/// stayed strings, and `meta` said `store-redis/2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_migrates_format_2_in_place() {
    for topology in topologies().await {
        let ns = Namespace::random("rm").expect("namespace");
        let l = Layout(ns.as_str().to_owned());
        let raw = Raw::open(&topology).await;
        let now = unix_now();
        let alice = session("j-alice", "alice", now);
        let bob = session("j-bob", "bob", now);
        let carol = session("j-carol", "carol", now);
        for s in [&alice, &bob, &carol] {
            plant_session(&raw, &l, s).await;
        }
        plant_value(&raw, &l, "j-bad", b"not a format-2 session", now + 600).await;
        // Carol: a revoke that stopped halfway (token, pending) left her
        // session; purge must finish it after the migration.
        let marker = v2_revocation(now, now + 600, b"0123abcd");
        let _: () = raw
            .query(redis::cmd("SET").arg(l.marker("carol")).arg(&marker))
            .await;
        for (kind, score) in [("m", 0), ("mx", now + 600), ("mp", 1)] {
            let _: i64 = raw
                .query(
                    redis::cmd("ZADD")
                        .arg(l.registry(kind))
                        .arg(score)
                        .arg(hex(b"carol")),
                )
                .await;
        }
        let (tombstone, tombstones, member) = l.tombstone("j-dave", "dave");
        let _: () = raw
            .query(
                redis::cmd("SET")
                    .arg(&tombstone)
                    .arg(v2_revocation(now, now + 600, b"")),
            )
            .await;
        let _: i64 = raw
            .query(
                redis::cmd("ZADD")
                    .arg(&tombstones)
                    .arg(now + 600)
                    .arg(&member),
            )
            .await;
        let peer = PeerJwks {
            issuer: "https://idp.example".into(),
            jwks: r#"{"keys":[]}"#.into(),
            fetched_at: now,
        };
        let mut peer_value = vec![1u8];
        peer_value.extend(peer.fetched_at.to_be_bytes());
        peer_value.extend(peer.jwks.as_bytes());
        let _: i64 = raw
            .query(
                redis::cmd("HSET")
                    .arg(format!("{ns}:p"))
                    .arg(&peer.issuer)
                    .arg(peer_value),
            )
            .await;
        let _: i64 = raw
            .query(
                redis::cmd("HSET")
                    .arg(format!("{ns}:k"))
                    .arg("rec")
                    .arg("value"),
            )
            .await;
        let _: () = raw
            .query(
                redis::cmd("SET")
                    .arg(format!("{ns}:meta"))
                    .arg("store-redis/2"),
            )
            .await;

        let store = topology.open(&ns).await.expect("connect");
        store.setup().await.expect("setup migrates");
        let what = topology.name();
        let meta: String = raw.query(redis::cmd("GET").arg(format!("{ns}:meta"))).await;
        assert_eq!(meta, "store-redis/3", "{what}");
        for key in [l.session("j-alice"), l.marker("carol"), tombstone.clone()] {
            let kind: String = raw.query(redis::cmd("TYPE").arg(&key)).await;
            assert_eq!(kind, "hash", "{what}: {key}");
        }
        let ttl: i64 = raw.query(redis::cmd("TTL").arg(l.session("j-alice"))).await;
        assert!((1..=600).contains(&ttl), "{what}: expiry kept, {ttl}");
        let (ra, ku): (i64, i64) = raw
            .query(
                redis::cmd("HMGET")
                    .arg(&tombstone)
                    .arg("revoked_at")
                    .arg("keep_until"),
            )
            .await;
        assert_eq!((ra, ku), (now, now + 600), "{what}: tombstone");

        assert_eq!(
            store.get_session("j-alice").await.expect("get"),
            Some(alice)
        );
        assert!(
            matches!(
                store.get_session("j-bad").await,
                Err(StoreError::Corrupt { .. })
            ),
            "{what}: an unreadable format-2 value still reads as corrupt"
        );
        assert_eq!(
            store.get_record("rec").await.expect("record"),
            Some(b"value".to_vec())
        );
        assert_eq!(store.load_peers().await.expect("peers"), vec![peer]);
        let marked = store.scan_revocations(None, 10).await.expect("scan");
        assert_eq!(
            marked.revocations,
            vec![Revocation {
                sub: "carol".into(),
                revoked_at: now,
                keep_until: now + 600
            }],
            "{what}"
        );
        // The migrated marker kept its revoke at work: purge finishes it.
        assert!(store.get_session("j-carol").await.expect("get").is_some());
        assert!(store.purge_expired().await.expect("purge") >= 1, "{what}");
        assert_eq!(store.get_session("j-carol").await.expect("get"), None);
        let pending: i64 = raw.query(redis::cmd("ZCARD").arg(l.registry("mp"))).await;
        assert_eq!(pending, 0, "{what}");
        // Indexes still work: a revoke finds bob's migrated session.
        assert_eq!(
            store
                .revoke_subject(&Revocation::now("bob"))
                .await
                .expect("revoke"),
            1,
            "{what}"
        );
        assert_eq!(store.get_session("j-bob").await.expect("get"), None);
        store.setup().await.expect("setup again: format 3 now");
        topology.teardown(&ns).await.expect("teardown");
    }
}

/// `oidc_broker_key_budget`, the namespace every vault of a database draws
/// its nonce budget from, set up in format 2 by an older version: the
/// first seal migrates it, keeps its counters, and seals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_2_budget_namespace_is_migrated_and_keeps_its_counters() {
    for topology in topologies().await {
        let raw = Raw::open(&topology).await;
        let budget = format!("{KEY_BUDGET_NAMESPACE}:k");
        let _: () = raw
            .query(
                redis::cmd("SET")
                    .arg(format!("{KEY_BUDGET_NAMESPACE}:meta"))
                    .arg("store-redis/2"),
            )
            .await;
        // A key whose budget is used up, and a fresh one.
        let spent = EncryptionKey::generate();
        let fresh = EncryptionKey::generate();
        let spent_counter = format!("{NONCE_COUNTER_PREFIX}{}", spent.id());
        let fresh_counter = format!("{NONCE_COUNTER_PREFIX}{}", fresh.id());
        let _: i64 = raw
            .query(
                redis::cmd("HSET")
                    .arg(&budget)
                    .arg(&spent_counter)
                    .arg(NONCE_LIMIT.to_be_bytes().as_slice()),
            )
            .await;

        let ns = Namespace::random("rb").expect("namespace");
        let store = topology.open(&ns).await.expect("connect");
        let now = unix_now();
        let sealed = async |key: EncryptionKey| {
            let vault = TokenVault::open(Arc::clone(&store), KeyConfig::new(key)).await?;
            vault
                .save_session(&broker_core::Session {
                    jti: "j".into(),
                    sub: "s".into(),
                    refresh_token: "rt".to_owned().into(),
                    user_info: broker_core::serde_json::json!({}).into(),
                    expires_at: now + 600,
                    auth_time: now,
                })
                .await
        };
        let what = topology.name();
        match sealed(spent).await {
            Err(StoreError::KeyExhausted { .. }) => {}
            other => panic!("{what}: the migrated counter still counts: {other:?}"),
        }
        let meta: String = raw
            .query(redis::cmd("GET").arg(format!("{KEY_BUDGET_NAMESPACE}:meta")))
            .await;
        assert_eq!(meta, "store-redis/3", "{what}");
        store.drop_namespace().await.expect("drop");
        let ns = Namespace::random("rb").expect("namespace");
        let store = topology.open(&ns).await.expect("connect");
        TokenVault::open(Arc::clone(&store), KeyConfig::new(fresh))
            .await
            .expect("a fresh key opens")
            .save_session(&broker_core::Session {
                jti: "j".into(),
                sub: "s".into(),
                refresh_token: "rt".to_owned().into(),
                user_info: broker_core::serde_json::json!({}).into(),
                expires_at: now + 600,
                auth_time: now,
            })
            .await
            .expect("a fresh key seals: the budget namespace is usable");
        store.drop_namespace().await.expect("drop");
        let _: i64 = raw
            .query(
                redis::cmd("HDEL")
                    .arg(&budget)
                    .arg(&spent_counter)
                    .arg(&fresh_counter),
            )
            .await;
    }
}
