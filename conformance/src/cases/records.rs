//! Rules 13 to 15: create-once records and peer JWKS.

use std::collections::HashSet;
use std::sync::Arc;

use broker_core::{KeyConfig, PeerJwks, SessionRecord};
use futures::future::join_all;
use secrecy::ExposeSecret;

use super::{key, live, ready, secret, vault};
use crate::{CaseResult, Ctx, Failure, Outcome};

/// Rule 13: 16 racing creators, one value.
pub async fn rule_13_create_once_has_one_winner(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let results = join_all((0..16u8).map(|i| {
        let store = Arc::clone(store);
        async move { store.create_record("once", &[i + 1; 8]).await }
    }))
    .await;
    let mut values = HashSet::new();
    for r in results {
        values.insert(r?);
    }
    ensure_eq!(
        values.len(),
        1,
        "distinct values returned to racing creators"
    );
    let winner = values.into_iter().next().unwrap_or_default();
    ensure_eq!(
        store.get_record("once").await?,
        Some(winner.clone()),
        "stored value"
    );
    ensure_eq!(
        store.create_record("once", b"late").await?,
        winner.clone(),
        "a late create"
    );
    ensure_eq!(
        store.get_record("once").await?,
        Some(winner),
        "value after a late create"
    );
    Ok(Outcome::Passed)
}

/// Rule 13 through the vault: one signing key for all.
pub async fn rule_13_signing_key_has_one_winner(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let v = Arc::new(vault(store, KeyConfig::new(key(13))).await?);
    let results = join_all((0..16).map(|i| {
        let v = Arc::clone(&v);
        async move {
            v.load_or_create_signing_key(|| secret(&format!("pem-{i}")))
                .await
        }
    }))
    .await;
    let mut pems = HashSet::new();
    for r in results {
        pems.insert(r?.expose_secret().to_owned());
    }
    ensure_eq!(pems.len(), 1, "distinct signing keys handed out");
    Ok(Outcome::Passed)
}

/// Rule 14.
pub async fn rule_14_replace_is_explicit_compare_and_set(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    store.create_record("key", b"v1").await?;
    ensure!(
        !store.replace_record("key", b"wrong", b"v2").await?,
        "replace with a stale expected value succeeded"
    );
    ensure_eq!(
        store.get_record("key").await?,
        Some(b"v1".to_vec()),
        "value after a refused replace"
    );
    ensure!(
        store.replace_record("key", b"v1", b"v2").await?,
        "replace with the current value failed"
    );
    ensure_eq!(
        store.get_record("key").await?,
        Some(b"v2".to_vec()),
        "value after replace"
    );
    ensure!(
        !store.replace_record("absent", b"v1", b"v2").await?,
        "replace created a record"
    );
    ensure!(
        store.get_record("absent").await?.is_none(),
        "replace created a record"
    );
    let s = live("j", "s", 1);
    store.save_session(&s).await?;
    ensure!(
        !store
            .replace_session_blob("j", b"stale", &[0x01, 2, 3])
            .await?,
        "session blob replaced against a stale value"
    );
    ensure!(
        store
            .replace_session_blob("j", &s.sealed, &[0x01, 2, 3])
            .await?,
        "session blob not replaced"
    );
    ensure_eq!(
        store.get_session("j").await?,
        Some(SessionRecord {
            sealed: vec![0x01, 2, 3].into(),
            ..s
        }),
        "session after blob replace"
    );
    Ok(Outcome::Passed)
}

/// Rule 15.
pub async fn rule_15_peer_jwks_upsert_and_load_preserve_json(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let doc = r#"{"keys":[{"kty":"RSA","n":"0vx7ag","e":"AQAB","z":1.50,"big":100000000000000000000001,"a":[3,2,1]}]}"#;
    store
        .save_peer(&PeerJwks {
            issuer: "https://idp.example/realms/a".into(),
            jwks: "{\"keys\":[]}".into(),
            fetched_at: 1,
        })
        .await?;
    store
        .save_peer(&PeerJwks {
            issuer: "https://b.example".into(),
            jwks: "{}".into(),
            fetched_at: 2,
        })
        .await?;
    let updated = PeerJwks {
        issuer: "https://idp.example/realms/a".into(),
        jwks: doc.into(),
        fetched_at: 3,
    };
    store.save_peer(&updated).await?;
    let mut peers = store.load_peers().await?;
    peers.sort_by(|a, b| a.issuer.cmp(&b.issuer));
    ensure_eq!(peers.len(), 2, "peers loaded");
    ensure_eq!(peers[1], updated, "upserted peer");
    let parsed: serde_json::Value =
        serde_json::from_str(&peers[1].jwks).map_err(|e| Failure(e.to_string()))?;
    ensure_eq!(
        parsed.to_string(),
        doc.to_string(),
        "JSON value (key order, numbers)"
    );
    ensure!(
        store.delete_peer("https://b.example").await?,
        "delete of a stored peer"
    );
    ensure!(
        !store.delete_peer("https://b.example").await?,
        "second delete of a peer"
    );
    Ok(Outcome::Passed)
}
