//! Tests of the vault.

use super::*;
use crate::crypto::EncryptionKey;
use crate::keys::{KDF_RECORD, KdfParams};
use crate::memory::MemoryStore;
use crate::record::{PeerJwks, unix_now};

pub(super) fn key(b: u8) -> EncryptionKey {
    EncryptionKey::from_bytes(&[b; 32]).unwrap()
}

pub(super) fn session(jti: &str, sub: &str) -> Session {
    let now = unix_now();
    Session {
        jti: jti.into(),
        sub: sub.into(),
        refresh_token: SecretString::from("canary-refresh-token".to_owned()),
        user_info: serde_json::json!({"email": "canary@example.org"}).into(),
        expires_at: now + 3600,
        auth_time: now,
    }
}

pub(super) async fn vault(store: &MemoryStore, keys: KeyConfig) -> Result<TokenVault> {
    TokenVault::open(Arc::new(store.clone()), keys).await
}

#[tokio::test]
async fn opened_claims_reseal_as_the_same_text() {
    let store = MemoryStore::new();
    let v = vault(&store, KeyConfig::new(key(1))).await.unwrap();
    let s = session("j", "s");
    // Spacing and number spelling that a re-serialisation would change.
    let text = br#"{ "z": 1.50, "a": [1e2] }"#;
    let mut payload = 5u32.to_be_bytes().to_vec();
    payload.extend_from_slice(b"token");
    payload.extend_from_slice(text);
    let place = v.session_binding(&s.jti, &s.sub, s.expires_at, s.auth_time);
    let planted = SessionRecord {
        jti: s.jti.clone(),
        sub: s.sub.clone(),
        expires_at: s.expires_at,
        auth_time: s.auth_time,
        sealed: v.keyring().seal(&place, &payload).unwrap().into(),
    };
    store.save_session(&planted).await.unwrap();
    let first = v.get_session("j").await.unwrap().unwrap();
    assert_eq!(first.user_info.sealed_json(), Some(&text[..]));
    v.save_session(&first).await.unwrap();
    let second = v.take_session("j").await.unwrap().unwrap();
    assert_eq!(second.user_info.sealed_json(), Some(&text[..]));
    assert_eq!(second.user_info.expose()["z"].to_string(), "1.50");
    assert!(second.user_info == first.user_info);
}

#[tokio::test]
async fn round_trip_and_debug_hides_secrets() {
    let store = MemoryStore::new();
    let v = vault(&store, KeyConfig::new(key(1))).await.unwrap();
    v.create_session(&session("j1", "alice")).await.unwrap();
    let got = v.get_session("j1").await.unwrap().unwrap();
    assert_eq!(got.refresh_token.expose_secret(), "canary-refresh-token");
    assert_eq!(got.user_info.expose()["email"], "canary@example.org");
    let pem = v
        .load_or_create_signing_key(|| "-----BEGIN PRIVATE KEY-----canary".to_owned().into())
        .await
        .unwrap();
    let printed = format!(
        "{got:?} {v:?} {pem:?} {:?}",
        store.get_session("j1").await.unwrap()
    );
    assert!(!printed.contains("canary"), "{printed}");
}

#[tokio::test]
async fn wrong_raw_key_is_refused_at_open() {
    let store = MemoryStore::new();
    vault(&store, KeyConfig::new(key(1))).await.unwrap();
    let err = vault(&store, KeyConfig::new(key(2))).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not one this store knows"),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_passphrase_and_edited_params_are_refused_at_open() {
    let store = MemoryStore::new();
    let v = vault(&store, KeyConfig::passphrase("correct horse".to_owned()))
        .await
        .unwrap();
    v.create_session(&session("j1", "alice")).await.unwrap();
    // Same passphrase again reads the session.
    let again = vault(&store, KeyConfig::passphrase("correct horse".to_owned()))
        .await
        .unwrap();
    assert!(again.get_session("j1").await.unwrap().is_some());
    let err = vault(
        &store,
        KeyConfig::passphrase("wrong horse battery".to_owned()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err:?}");

    // Weakened parameters in the stored record are refused before derivation.
    let stored = store.get_record(KDF_RECORD).await.unwrap().unwrap();
    let mut weak = KdfParams::decode(&stored).unwrap();
    weak.m_cost = 1024;
    assert!(
        store
            .replace_record(KDF_RECORD, &stored, &weak.encode())
            .await
            .unwrap()
    );
    let err = vault(&store, KeyConfig::passphrase("correct horse".to_owned()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err:?}");
    // Stronger-but-different parameters derive another key: also refused.
    let mut other = weak.clone();
    other.m_cost = 20_000;
    assert!(
        store
            .replace_record(KDF_RECORD, &weak.encode(), &other.encode())
            .await
            .unwrap()
    );
    let err = vault(&store, KeyConfig::passphrase("correct horse".to_owned()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err:?}");
}

#[tokio::test]
async fn concurrent_first_opens_share_one_kdf_record() {
    let store = MemoryStore::new();
    let opens = (0..16).map(|_| {
        let store = store.clone();
        async move {
            vault(
                &store,
                KeyConfig::passphrase("shared passphrase".to_owned()),
            )
            .await
        }
    });
    let vaults: Vec<TokenVault> = futures_join_all(opens)
        .await
        .into_iter()
        .map(|v| v.unwrap())
        .collect();
    let ids: std::collections::BTreeSet<KeyId> =
        vaults.iter().map(|v| v.keyring().primary_id()).collect();
    assert_eq!(ids.len(), 1, "all derived the same key");
    vaults[0].create_session(&session("j", "s")).await.unwrap();
    assert!(vaults[15].get_session("j").await.unwrap().is_some());
}

async fn futures_join_all<F>(fs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn rotation_keeps_old_blobs_then_rekey_moves_them() {
    let store = MemoryStore::new();
    let old = vault(&store, KeyConfig::new(key(1))).await.unwrap();
    for i in 0..1200 {
        old.save_session(&session(&format!("j{i}"), "alice"))
            .await
            .unwrap();
    }
    old.load_or_create_signing_key(|| "pem".to_owned().into())
        .await
        .unwrap();
    // A new key without rotation is refused; with rotation it is registered.
    assert!(vault(&store, KeyConfig::new(key(2))).await.is_err());
    let rotated = vault(&store, KeyConfig::new(key(1)).rotate_to(key(2)))
        .await
        .unwrap();
    assert!(
        rotated.get_session("j7").await.unwrap().is_some(),
        "old blobs still open"
    );
    // Dropping the old key before the re-encryption is refused.
    match vault(&store, KeyConfig::new(key(2))).await {
        Err(StoreError::KeyInUse { key_id, .. }) => assert_eq!(key_id, key(1).id()),
        other => panic!("expected KeyInUse, got {other:?}"),
    }
    let report = rotated.rekey(|_| {}).await.unwrap();
    assert_eq!(report.sessions_resealed, 1200);
    assert_eq!(report.records_resealed, 1);
    let usage = rotated.key_usage().await.unwrap();
    assert_eq!(usage.keys().copied().collect::<Vec<_>>(), vec![key(2).id()]);
    // The old key can now be dropped: the new key alone opens everything.
    let new_only = vault(&store, KeyConfig::new(key(2))).await.unwrap();
    assert!(new_only.get_session("j1199").await.unwrap().is_some());
    assert_eq!(
        new_only
            .load_or_create_signing_key(|| "other".to_owned().into())
            .await
            .unwrap()
            .expose_secret(),
        "pem"
    );
    // A second rekey has nothing to do.
    assert_eq!(new_only.rekey(|_| {}).await.unwrap().sessions_resealed, 0);
}

/// SECURITY.md requirement 7: 10 000 sessions, rotate, kill the
/// re-encryption midway, resume: nothing is left under the old key and
/// every session opens with the new key alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_killed_midway_resumes_and_retires_the_old_key() {
    use std::io::Write as _;
    const N: usize = 10_000;
    let store = MemoryStore::new();
    let old = vault(&store, KeyConfig::new(key(1))).await.unwrap();
    for i in 0..N {
        old.save_session(&session(&format!("j{i:05}"), "alice"))
            .await
            .unwrap();
    }
    let rotated = Arc::new(
        vault(&store, KeyConfig::new(key(1)).rotate_to(key(2)))
            .await
            .unwrap(),
    );
    // The "kill": the task dies (panics) after its third page.
    let doomed = Arc::clone(&rotated);
    let killed = tokio::spawn(async move {
        doomed
            .rekey(|r| assert!(r.sessions_seen < 3 * PAGE as u64, "killed"))
            .await
    })
    .await;
    assert!(killed.is_err_and(|e| e.is_panic()), "the rekey was killed");
    let usage = rotated.key_usage().await.unwrap();
    let (moved, left) = (usage[&key(2).id()], usage[&key(1).id()]);
    // Past the harness's capture, so CI logs show the figures.
    let _ = writeln!(
        std::io::stderr(),
        "rekey killed midway: {moved} sessions moved, {left} left under the old key"
    );
    assert!(moved >= 3 * PAGE as u64 && left > 0, "{usage:?}");
    assert!(matches!(
        vault(&store, KeyConfig::new(key(2))).await,
        Err(StoreError::KeyInUse { .. })
    ));

    let resumed = rotated.rekey(|_| {}).await.unwrap();
    assert_eq!(
        resumed.sessions_resealed, left,
        "the resume did the rest only"
    );
    let usage = rotated.key_usage().await.unwrap();
    assert_eq!(usage.keys().copied().collect::<Vec<_>>(), vec![key(2).id()]);
    let new_only = vault(&store, KeyConfig::new(key(2))).await.unwrap();
    for i in 0..N {
        assert!(
            new_only
                .get_session(&format!("j{i:05}"))
                .await
                .unwrap()
                .is_some(),
            "j{i:05} lost"
        );
    }
}

#[tokio::test]
async fn nonce_budget_is_enforced_and_rotation_resets_it() {
    let store = MemoryStore::new();
    let k = key(9);
    let name = format!("{NONCE_COUNTER_PREFIX}{}", k.id());
    store
        .create_record(&name, &(NONCE_LIMIT - 1).to_be_bytes())
        .await
        .unwrap();
    let v = vault(&store, KeyConfig::new(key(9))).await.unwrap();
    v.save_session(&session("a", "s")).await.unwrap();
    let err = v.save_session(&session("b", "s")).await.unwrap_err();
    assert!(matches!(err, StoreError::KeyExhausted { .. }), "{err:?}");
    let rotated = vault(&store, KeyConfig::new(key(9)).rotate_to(key(10)))
        .await
        .unwrap();
    rotated.save_session(&session("b", "s")).await.unwrap();
    assert!(rotated.get_session("a").await.unwrap().is_some());
}

#[tokio::test]
async fn oversized_input_is_refused_without_io() {
    let store = MemoryStore::new();
    let v = vault(&store, KeyConfig::new(key(1))).await.unwrap();
    let mut s = session("j", "s");
    s.user_info = serde_json::Value::String("x".repeat(validate::MAX_USER_INFO_BYTES)).into();
    let err = v.save_session(&s).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput { .. }), "{err:?}");
    assert_eq!(store.stats().await.unwrap().live_sessions, 0);
}

// ---- peer JWKS (SECURITY.md requirement 15) ----

const PEER_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","use":"sig"}], "n": 1.50}"#;

/// A peer written through the raw store, bypassing the vault, is never
/// handed out as trusted: the loader reports it as corrupt.
#[tokio::test]
async fn forged_peer_written_through_the_raw_store_is_not_returned() {
    let store = MemoryStore::new();
    let v = vault(&store, KeyConfig::new(key(1))).await.unwrap();
    store
        .save_peer(&PeerJwks {
            issuer: "https://evil.example".into(),
            jwks: PEER_JWKS.into(),
            fetched_at: unix_now(),
        })
        .await
        .unwrap();
    match v.load_peer_jwks().await {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("a planted peer was not refused: {other:?}"),
    }
}

/// Peers saved through the vault come back exactly; a swap between
/// issuers, an edited fetch time, an edited document or a copy into another
/// namespace is refused as corrupt.
#[tokio::test]
async fn peers_are_bound_to_issuer_fetch_time_document_and_namespace() {
    let store = MemoryStore::new();
    let v = vault(&store, KeyConfig::new(key(1))).await.unwrap();
    let now = unix_now();
    v.save_peer_jwks("https://a.example", PEER_JWKS, now)
        .await
        .unwrap();
    v.save_peer_jwks("https://b.example", r#"{"keys":[]}"#, now - 5)
        .await
        .unwrap();
    let peers = v.load_peer_jwks().await.unwrap();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0].issuer, "https://a.example");
    assert_eq!(peers[0].jwks, PEER_JWKS, "the document comes back verbatim");
    assert_eq!(peers[0].fetched_at, now);
    assert_eq!(peers[1].jwks, r#"{"keys":[]}"#);

    let raw = store.load_peers().await.unwrap();
    let (a, b) = (raw[0].clone(), raw[1].clone());
    let edits: Vec<(&str, PeerJwks)> = vec![
        (
            "swap",
            PeerJwks {
                issuer: b.issuer.clone(),
                ..a.clone()
            },
        ),
        (
            "pin",
            PeerJwks {
                fetched_at: b.fetched_at + 3600,
                ..b.clone()
            },
        ),
        (
            "edit",
            PeerJwks {
                jwks: b.jwks.replace(r#"[]"#, r#"[ ]"#),
                ..b.clone()
            },
        ),
    ];
    for (what, edited) in edits {
        store.save_peer(&edited).await.unwrap();
        assert!(
            matches!(v.load_peer_jwks().await, Err(StoreError::Corrupt { .. })),
            "{what} was not refused"
        );
        store.save_peer(&b).await.unwrap();
        assert_eq!(v.load_peer_jwks().await.unwrap().len(), 2, "{what}");
    }

    let other = store.with_namespace(crate::Namespace::new("other").unwrap());
    let w = vault(&other, KeyConfig::new(key(1))).await.unwrap();
    other.save_peer(&a).await.unwrap();
    assert!(
        matches!(w.load_peer_jwks().await, Err(StoreError::Corrupt { .. })),
        "a peer copied into another namespace was accepted"
    );
}

/// A JWKS holding private key members is refused before anything is stored.
#[tokio::test]
async fn jwks_with_private_members_is_refused() {
    let store = MemoryStore::new();
    let v = vault(&store, KeyConfig::new(key(1))).await.unwrap();
    for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        let jwks = format!(
            r#"{{"keys":[{{"kty":"RSA","n":"AQAB","e":"AQAB"}},{{"kty":"RSA","n":"AQAB","e":"AQAB","{member}":"c2VjcmV0"}}]}}"#
        );
        let err = v
            .save_peer_jwks("https://leaky.example", &jwks, unix_now())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidInput { .. }),
            "{member}: {err:?}"
        );
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    }
    let single = r#"{"kty":"oct","k":"c2VjcmV0"}"#;
    assert!(
        v.save_peer_jwks("https://leaky.example", single, unix_now())
            .await
            .is_err()
    );
    assert!(store.load_peers().await.unwrap().is_empty());
}
