//! Rules 19 to 22: nothing in plaintext at rest, tampering detected,
//! wrong keys refused at open, key rotation and re-encryption.

use broker_core::crypto::sealed_key_id;
use broker_core::vault::SIGNING_KEY_RECORD;
use broker_core::{KeyConfig, Namespace, SessionRecord, StoreError};
use secrecy::ExposeSecret;

use super::{key, live, plain_session, ready, secret, vault};
use crate::{CaseResult, Ctx, Failure, Outcome};

/// Rule 19: canaries never reach the database in plaintext.
pub async fn rule_19_no_plaintext_at_rest(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let tag = Namespace::random("c")?.as_str().to_owned();
    let rt = format!("canary-rt-{tag}");
    let ui = format!("canary-ui-{tag}");
    let pk = format!("-----BEGIN PRIVATE KEY-----\ncanary-pk-{tag}\n-----END PRIVATE KEY-----");
    let v = vault(store, KeyConfig::passphrase(secret("rule 19 passphrase"))).await?;
    for i in 0..20 {
        let mut s = plain_session(&format!("j{i}"), &format!("user{i}"), &rt);
        s.user_info = serde_json::json!({ "email": ui, "i": i }).into();
        v.save_session(&s).await?;
    }
    v.load_or_create_signing_key(|| secret(&pk)).await?;
    let Some(raw) = ctx.factory().raw_contents(ctx.namespace()).await? else {
        return Ok(Outcome::Skipped(
            "the factory cannot read raw storage".into(),
        ));
    };
    let dump: Vec<u8> = raw.concat();
    let sealed = store
        .get_session("j7")
        .await?
        .ok_or_else(|| Failure("session missing".into()))?
        .sealed;
    ensure!(
        contains(&dump, &sealed),
        "the raw dump does not hold the stored sealed blob: it does not read the data"
    );
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for needle in [
        rt.clone(),
        ui.clone(),
        pk.clone(),
        "PRIVATE KEY".into(),
        hex(&rt),
        hex(&ui),
    ] {
        ensure!(
            !contains(&dump, needle.as_bytes()),
            "plaintext found at rest: {} bytes starting {:?}",
            needle.len(),
            &needle[..8]
        );
    }
    Ok(Outcome::Passed)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn is_tampered(r: &Result<impl std::fmt::Debug, StoreError>) -> bool {
    matches!(r, Err(StoreError::Tampered { .. }))
}

/// Rule 20: a blob moved to another place, or with an edited clear field.
pub async fn rule_20_moved_or_edited_blob_is_tampered(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let v = vault(store, KeyConfig::new(key(20))).await?;
    v.save_session(&plain_session("a", "alice", "rt-a")).await?;
    let a = store
        .get_session("a")
        .await?
        .ok_or_else(|| Failure("session missing".into()))?;
    let edits = [
        (
            "moved to another jti",
            SessionRecord {
                jti: "b".into(),
                ..a.clone()
            },
        ),
        (
            "moved to another sub",
            SessionRecord {
                sub: "mallory".into(),
                ..a.clone()
            },
        ),
        (
            "expiry edited by one second",
            SessionRecord {
                expires_at: a.expires_at + 1,
                ..a.clone()
            },
        ),
        (
            "auth_time edited",
            SessionRecord {
                auth_time: a.auth_time - 1,
                ..a.clone()
            },
        ),
    ];
    for (what, edited) in edits {
        store.save_session(&edited).await?;
        let r = v.get_session(&edited.jti).await;
        ensure!(
            is_tampered(&r),
            "{what}: get gave {:?}",
            r.map(|s| s.is_some())
        );
    }
    // Another namespace, same key.
    let other = ctx.open_extra().await?;
    let v2 = vault(&other, KeyConfig::new(key(20))).await?;
    other.save_session(&a).await?;
    let r = v2.get_session("a").await;
    ensure!(
        is_tampered(&r),
        "moved to another namespace: {:?}",
        r.map(|s| s.is_some())
    );
    // Another record kind: a session blob posing as the signing key.
    store.create_record(SIGNING_KEY_RECORD, &a.sealed).await?;
    let r = v.load_or_create_signing_key(|| secret("unused")).await;
    ensure!(
        is_tampered(&r),
        "session blob read as a signing key: {:?}",
        r.map(|_| ())
    );
    Ok(Outcome::Passed)
}

/// Rule 20: flipped bits and truncation.
pub async fn rule_20_flipped_or_truncated_blob_is_tampered(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let v = vault(store, KeyConfig::new(key(21))).await?;
    v.save_session(&plain_session("j", "s", "rt")).await?;
    let good = store
        .get_session("j")
        .await?
        .ok_or_else(|| Failure("session missing".into()))?;
    for i in 0..good.sealed.len() {
        let mut sealed = good.sealed.to_vec();
        sealed[i] ^= 1 << (i % 8);
        let bad = SessionRecord {
            sealed: sealed.into(),
            ..good.clone()
        };
        store.save_session(&bad).await?;
        let r = v.get_session("j").await;
        let typed = matches!(
            r,
            Err(StoreError::Tampered { .. }
                | StoreError::UnknownKey { .. }
                | StoreError::Corrupt { .. })
        );
        ensure!(
            typed,
            "flipping a bit of byte {i} gave {:?}",
            r.map(|s| s.is_some())
        );
    }
    for len in [1, 4, 5, 17, 32, good.sealed.len() - 1] {
        let cut = SessionRecord {
            sealed: good.sealed.slice(..len),
            ..good.clone()
        };
        store.save_session(&cut).await?;
        let r = v.get_session("j").await;
        ensure!(r.is_err(), "a blob truncated to {len} bytes opened");
    }
    store.save_session(&good).await?;
    ensure!(
        v.get_session("j").await?.is_some(),
        "the restored blob does not open"
    );
    Ok(Outcome::Passed)
}

/// Rule 20: data the vault did not seal reads as corrupt, never as plaintext.
pub async fn rule_20_planted_plaintext_reads_as_corrupt(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let v = vault(store, KeyConfig::new(key(22))).await?;
    let planted = SessionRecord {
        sealed: b"plain-refresh-token".to_vec().into(),
        ..live("p", "s", 1)
    };
    store.save_session(&planted).await?;
    let r = v.get_session("p").await;
    ensure!(
        matches!(r, Err(StoreError::Corrupt { .. })),
        "planted plaintext session gave {:?}",
        r.map(|s| s.is_some())
    );
    store
        .create_record(SIGNING_KEY_RECORD, b"-----BEGIN PRIVATE KEY-----")
        .await?;
    let r = v.load_or_create_signing_key(|| secret("unused")).await;
    ensure!(
        matches!(r, Err(StoreError::Corrupt { .. })),
        "planted plaintext key gave {:?}",
        r.map(|_| ())
    );
    Ok(Outcome::Passed)
}

/// Rule 21: wrong key or passphrase at open.
pub async fn rule_21_wrong_key_or_passphrase_fails_at_open(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    vault(store, KeyConfig::new(key(31))).await?;
    let r = vault(store, KeyConfig::new(key(32))).await;
    ensure!(
        matches!(r, Err(StoreError::WrongKey { .. })),
        "a wrong raw key gave {:?}",
        r.map(|_| ())
    );
    let other = ctx.open_extra().await?;
    let v = vault(&other, KeyConfig::passphrase(secret("right passphrase"))).await?;
    v.save_session(&plain_session("j", "s", "rt")).await?;
    let r = vault(&other, KeyConfig::passphrase(secret("wrong passphrase"))).await;
    ensure!(
        matches!(r, Err(StoreError::WrongKey { .. })),
        "a wrong passphrase gave {:?}",
        r.map(|_| ())
    );
    let again = vault(&other, KeyConfig::passphrase(secret("right passphrase"))).await?;
    ensure!(
        again.get_session("j").await?.is_some(),
        "the right passphrase does not read its session"
    );
    Ok(Outcome::Passed)
}

/// Rule 22: rotate, read old blobs, re-encrypt, drop the old key.
pub async fn rule_22_rotation_keeps_old_blobs_and_rekey_moves_them(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let old = vault(store, KeyConfig::new(key(41))).await?;
    for i in 0..30 {
        old.save_session(&plain_session(&format!("j{i}"), "s", &format!("rt-{i}")))
            .await?;
    }
    old.load_or_create_signing_key(|| secret("pem")).await?;
    let rotated = vault(store, KeyConfig::new(key(41)).rotate_to(key(42))).await?;
    ensure!(
        rotated.get_session("j3").await?.is_some(),
        "an old blob does not open after rotation"
    );
    rotated
        .save_session(&plain_session("new", "s", "rt"))
        .await?;
    let fresh = store
        .get_session("new")
        .await?
        .ok_or_else(|| Failure("session missing".into()))?;
    ensure_eq!(
        sealed_key_id(&fresh.sealed)?,
        key(42).id(),
        "key sealing after rotation"
    );
    let report = rotated.rekey(|_| {}).await?;
    ensure_eq!(report.sessions_resealed, 30, "sessions re-encrypted");
    ensure_eq!(report.records_resealed, 1, "signing keys re-encrypted");
    let usage = rotated.key_usage().await?;
    ensure_eq!(
        usage.keys().copied().collect::<Vec<_>>(),
        vec![key(42).id()],
        "keys in use after rekey"
    );
    let new_only = vault(store, KeyConfig::new(key(42))).await?;
    for i in 0..30 {
        let s = new_only
            .get_session(&format!("j{i}"))
            .await?
            .ok_or_else(|| Failure("session lost by rekey".into()))?;
        ensure!(
            s.refresh_token.expose_secret() == format!("rt-{i}"),
            "token changed by rekey"
        );
    }
    ensure!(
        new_only
            .load_or_create_signing_key(|| secret("other"))
            .await?
            .expose_secret()
            == "pem",
        "signing key changed by rekey"
    );
    Ok(Outcome::Passed)
}
