//! Rules 16 and 17: typed errors that name the operation, and input
//! refused before the database.

use broker_core::{
    KeyConfig, Namespace, PeerJwks, Revocation, SessionRecord, StoreError, unix_now, validate,
};

use super::{key, live, plain_session, ready, record, scan_all, vault};
use crate::{CaseResult, Ctx, Failure, Outcome};

/// Rule 16: typed errors naming the operation, with no value inside.
pub async fn rule_16_errors_are_typed_and_name_the_operation(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let canary = format!("canary-{}", "x".repeat(300));
    let checks: Vec<(&str, Result<(), StoreError>)> = vec![
        ("get_session", store.get_session(&canary).await.map(|_| ())),
        (
            "take_session",
            store.take_session(&canary).await.map(|_| ()),
        ),
        (
            "delete_session",
            store.delete_session(&canary).await.map(|_| ()),
        ),
        (
            "save_session",
            store.save_session(&live(&canary, "s", 1)).await,
        ),
        (
            "create_record",
            store.create_record(&canary, b"v").await.map(|_| ()),
        ),
        (
            "revoke_subject",
            store
                .revoke_subject(&Revocation::now(canary.clone()))
                .await
                .map(|_| ()),
        ),
    ];
    for (op, result) in checks {
        match result {
            Err(e @ StoreError::InvalidInput { .. }) => {
                ensure_eq!(e.op(), op, "operation named by the error");
                let text = format!("{e} {e:?}");
                ensure!(
                    !text.contains("canary"),
                    "the error holds the value: {text}"
                );
            }
            other => {
                return Err(Failure(format!(
                    "{op} with a 306-byte id gave {other:?}, not invalid input"
                )));
            }
        }
    }
    store.create_session(&live("j", "s", 1)).await?;
    match store.create_session(&live("j", "s", 1)).await {
        Err(e @ StoreError::Conflict { .. }) => {
            ensure_eq!(e.op(), "create_session", "conflict's operation")
        }
        other => return Err(Failure(format!("a duplicate create gave {other:?}"))),
    }
    // A tampered read through the vault names the operation and holds no secret.
    let v = vault(store, KeyConfig::new(key(16))).await?;
    v.save_session(&plain_session("t", "s", "canary-refresh"))
        .await?;
    let mut rec = store
        .get_session("t")
        .await?
        .ok_or_else(|| Failure("session missing".into()))?;
    let mut sealed = rec.sealed.to_vec();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    rec.sealed = sealed.into();
    store.save_session(&rec).await?;
    match v.get_session("t").await {
        Err(e @ StoreError::Tampered { .. }) => {
            ensure_eq!(e.op(), "get_session", "tampered error's operation");
            ensure!(
                !format!("{e} {e:?}").contains("canary"),
                "tampered error holds a secret"
            );
        }
        other => {
            return Err(Failure(format!(
                "a flipped tag gave {:?}",
                other.map(|o| o.is_some())
            )));
        }
    }
    Ok(Outcome::Passed)
}

/// Rule 17.
pub async fn rule_17_invalid_input_is_refused(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let long = "a".repeat(256);
    let ok = "a".repeat(255);
    let now = unix_now();
    let bad_sessions = [
        ("empty jti", record("", "s", now + 60, now, 1)),
        ("256-byte jti", record(&long, "s", now + 60, now, 1)),
        ("NUL in jti", record("a\0b", "s", now + 60, now, 1)),
        ("empty sub", record("j", "", now + 60, now, 1)),
        ("256-byte sub", record("j", &long, now + 60, now, 1)),
        ("NUL in sub", record("j", "a\0", now + 60, now, 1)),
        ("negative expiry", record("j", "s", -1, now, 1)),
        (
            "expiry past year 9999",
            record("j", "s", validate::MAX_TIMESTAMP + 1, now, 1),
        ),
        ("negative auth_time", record("j", "s", now + 60, -5, 1)),
        (
            "oversized blob",
            SessionRecord {
                sealed: vec![1; validate::MAX_SEALED_BYTES + 1].into(),
                ..live("j", "s", 1)
            },
        ),
        (
            "empty blob",
            SessionRecord {
                sealed: Vec::new().into(),
                ..live("j", "s", 1)
            },
        ),
    ];
    for (what, s) in &bad_sessions {
        for (op, r) in [
            ("save", store.save_session(s).await),
            ("create", store.create_session(s).await),
        ] {
            ensure!(
                matches!(r, Err(StoreError::InvalidInput { .. })),
                "{op} with {what} gave {r:?}"
            );
        }
    }
    ensure!(
        scan_all(store.as_ref(), 10).await?.is_empty(),
        "refused input was stored"
    );
    store.save_session(&live(&ok, &ok, 1)).await?;
    ensure!(
        store.get_session(&ok).await?.is_some(),
        "a 255-byte jti was refused"
    );
    for r in [
        store.get_session("").await.map(|_| ()),
        store.get_session("a\0").await.map(|_| ()),
        store.take_session(&long).await.map(|_| ()),
        store.create_record("", b"v").await.map(|_| ()),
        store
            .create_record("r", &vec![0; validate::MAX_SEALED_BYTES + 1])
            .await
            .map(|_| ()),
        store
            .save_peer(&PeerJwks {
                issuer: String::new(),
                jwks: "{}".into(),
                fetched_at: 0,
            })
            .await,
        store
            .save_peer(&PeerJwks {
                issuer: "https://i".into(),
                jwks: "not json".into(),
                fetched_at: 0,
            })
            .await,
    ] {
        ensure!(
            matches!(r, Err(StoreError::InvalidInput { .. })),
            "bad input gave {r:?}"
        );
    }
    for bad in ["", "A", "1abc", "a-b", "ab c", "a".repeat(32).as_str(), "é"] {
        ensure!(Namespace::new(bad).is_err(), "namespace {bad:?} accepted");
    }
    // Through the vault: oversized user_info is refused before any I/O.
    let v = vault(store, KeyConfig::new(key(17))).await?;
    let mut s = plain_session("big", "s", "rt");
    s.user_info = serde_json::Value::String("x".repeat(validate::MAX_USER_INFO_BYTES - 1)).into();
    let r = v.save_session(&s).await;
    ensure!(
        matches!(r, Err(StoreError::InvalidInput { .. })),
        "user_info of 64 KiB + 1 gave {r:?}"
    );
    ensure!(
        store.get_session("big").await?.is_none(),
        "oversized session stored"
    );
    Ok(Outcome::Passed)
}
