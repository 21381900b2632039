use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use broker_core::crypto::{EncryptionKey, sealed_key_id};
use broker_core::vault::SIGNING_KEY_RECORD;
use broker_core::{
    BrokerStore, KeyConfig, Namespace, PeerJwks, Revocation, Session, SessionRecord, StoreError,
    TokenVault, unix_now, validate,
};
use futures::StreamExt as _;
use futures::future::join_all;
use secrecy::{ExposeSecret, SecretString};

use crate::{Case, CaseFuture, CaseResult, Ctx, Failure, Outcome};

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Failure(format!($($msg)+)));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(Failure(format!("{}: expected {:?}, got {:?}", format!($($msg)+), r, l)));
        }
    }};
}

macro_rules! case {
    ($name:ident, $rule:expr) => {
        Case {
            name: stringify!($name),
            rule: $rule,
            run: {
                fn run(ctx: &Ctx) -> CaseFuture<'_> {
                    Box::pin($name(ctx))
                }
                run
            },
        }
    };
}

mod restart;
mod revocation;

pub use restart::{OPERATION_BOUND, rule_18_server_restart_loses_nothing};
pub use revocation::{
    rule_03_drop_namespace_removes_revocations, rule_10_boundary_is_inclusive,
    rule_10_later_revocation_only_widens, rule_10_revocation_outlives_its_marker,
    rule_10_revoke_racing_save_on_another_store_object,
    rule_11_purge_forgets_markers_past_their_keep_time,
};

/// The rule-18 case, kept out of [`ALL`]: it restarts the server, so it
/// runs in a test binary of its own (`conformance::restart_suite!`).
pub const RESTART: Case = case!(rule_18_server_restart_loses_nothing, 18);

/// Every case, in the order `test_suite!` lists them.
pub const ALL: &[Case] = &[
    case!(rule_01_setup_is_idempotent, 1),
    case!(
        rule_02_store_from_existing_handle_shares_data_and_leaves_it_open,
        2
    ),
    case!(rule_03_namespaces_are_isolated, 3),
    case!(rule_03_drop_namespace_removes_it_and_nothing_else, 3),
    case!(rule_03_drop_namespace_removes_revocations, 3),
    case!(rule_04_save_then_get_returns_exactly_what_was_saved, 4),
    case!(rule_04_hostile_keys_are_stored_literally, 4),
    case!(rule_04_vault_round_trips_unicode_empty_and_16k, 4),
    case!(rule_05_save_replaces_every_field, 5),
    case!(rule_05_create_conflicts_and_keeps_the_first, 5),
    case!(rule_05_create_over_expired_session_succeeds, 5),
    case!(rule_06_unknown_jti_is_none, 6),
    case!(rule_07_expired_session_is_never_returned, 7),
    case!(rule_07_session_expiring_while_stored_is_gone, 7),
    case!(rule_08_delete_is_idempotent_and_reports, 8),
    case!(rule_09_take_is_atomic_under_64_takers, 9),
    case!(rule_09_take_is_atomic_across_store_objects, 9),
    case!(rule_10_revoke_removes_exactly_that_subject, 10),
    case!(rule_10_revocation_beats_refresh_in_flight, 10),
    case!(rule_10_revocation_outlives_its_marker, 10),
    case!(rule_10_boundary_is_inclusive, 10),
    case!(rule_10_later_revocation_only_widens, 10),
    case!(rule_10_revoke_racing_save_on_another_store_object, 10),
    case!(rule_11_purge_removes_only_expired, 11),
    case!(rule_11_purge_forgets_markers_past_their_keep_time, 11),
    case!(rule_12_scan_returns_every_live_session_once, 12),
    case!(rule_12_scan_while_sessions_change, 12),
    case!(rule_13_create_once_has_one_winner, 13),
    case!(rule_13_signing_key_has_one_winner, 13),
    case!(rule_14_replace_is_explicit_compare_and_set, 14),
    case!(rule_15_peer_jwks_upsert_and_load_preserve_json, 15),
    case!(rule_16_errors_are_typed_and_name_the_operation, 16),
    case!(rule_17_invalid_input_is_refused, 17),
    crate::hostile::CASE,
    case!(rule_19_no_plaintext_at_rest, 19),
    case!(rule_20_moved_or_edited_blob_is_tampered, 20),
    case!(rule_20_flipped_or_truncated_blob_is_tampered, 20),
    case!(rule_20_planted_plaintext_reads_as_corrupt, 20),
    case!(rule_21_wrong_key_or_passphrase_fails_at_open, 21),
    case!(rule_22_rotation_keeps_old_blobs_and_rekey_moves_them, 22),
];

/// Keys that break naive SQL, Mongo, Redis, glob and path handling.
pub const HOSTILE_IDS: &[&str] = &[
    "quote'\"`",
    "'; DROP TABLE sessions; --",
    "$where",
    "{\"$ne\": \"\"}",
    "{}",
    "{tag}",
    "*",
    "?",
    "[",
    "a.*",
    "%",
    "_",
    "a%b_c",
    "back\\slash",
    "new\nline\r\ttab",
    "key with spaces",
    "a:b:c",
    "../../etc/passwd",
    "ünïcødé 用户 🎉",
    "\u{1}\u{7f}",
];

async fn ready(ctx: &Ctx) -> Result<&Arc<dyn BrokerStore>, Failure> {
    ctx.store().setup().await?;
    Ok(ctx.store())
}

/// A session record with recognisable sealed bytes.
fn record(jti: &str, sub: &str, expires_at: i64, auth_time: i64, tag: u8) -> SessionRecord {
    let mut sealed = vec![0x01, tag, 0xee, 0x00, 0xff];
    sealed.extend((0..40u8).map(|i| i.wrapping_mul(tag).wrapping_add(7)));
    SessionRecord {
        jti: jti.into(),
        sub: sub.into(),
        expires_at,
        auth_time,
        sealed,
    }
}

fn live(jti: &str, sub: &str, tag: u8) -> SessionRecord {
    let now = unix_now();
    record(jti, sub, now + 3600, now - 60, tag)
}

fn key(byte: u8) -> EncryptionKey {
    EncryptionKey::from_bytes(&[byte; 32]).expect("32 bytes")
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn plain_session(jti: &str, sub: &str, refresh_token: &str) -> Session {
    let now = unix_now();
    Session {
        jti: jti.into(),
        sub: sub.into(),
        refresh_token: secret(refresh_token),
        user_info: serde_json::json!({"name": "Zoë", "groups": ["a", "b"]}).into(),
        expires_at: now + 3600,
        auth_time: now - 60,
    }
}

async fn vault(store: &Arc<dyn BrokerStore>, keys: KeyConfig) -> Result<TokenVault, StoreError> {
    TokenVault::open(Arc::clone(store), keys).await
}

async fn scan_all(store: &dyn BrokerStore, limit: usize) -> Result<Vec<SessionRecord>, Failure> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0usize;
    loop {
        let page = store.scan_sessions(cursor.as_deref(), limit).await?;
        ensure!(
            page.sessions.len() <= limit,
            "a page held {} sessions, over its limit {limit}",
            page.sessions.len()
        );
        out.extend(page.sessions);
        pages += 1;
        ensure!(pages < 1_000_000, "scan does not end");
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

/// Rule 1.
pub async fn rule_01_setup_is_idempotent(ctx: &Ctx) -> CaseResult {
    let store = ctx.store();
    store.setup().await?;
    store.setup().await?;
    let many = join_all((0..16).map(|_| store.setup())).await;
    for r in many {
        r?;
    }
    // Separate store objects (as separate workers would have) at once.
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(ctx.factory().open(ctx.namespace()).await?);
    }
    for r in join_all(others.iter().map(|s| s.setup())).await {
        r?;
    }
    store.save_session(&live("j", "s", 1)).await?;
    ensure!(
        others[3].get_session("j").await?.is_some(),
        "a store set up again does not see the data"
    );
    store.setup().await?;
    ensure!(store.get_session("j").await?.is_some(), "setup lost data");
    Ok(Outcome::Passed)
}

/// Rule 2.
pub async fn rule_02_store_from_existing_handle_shares_data_and_leaves_it_open(
    ctx: &Ctx,
) -> CaseResult {
    let url_store = ready(ctx).await?;
    let Some(handle_store) = ctx.factory().open_from_handle(ctx.namespace()).await? else {
        return Ok(Outcome::Skipped(
            "the factory builds no store from an existing handle".into(),
        ));
    };
    handle_store.setup().await?;
    url_store.save_session(&live("from-url", "s", 1)).await?;
    handle_store
        .save_session(&live("from-handle", "s", 2))
        .await?;
    ensure!(
        handle_store.get_session("from-url").await?.is_some(),
        "handle store misses data written by the URL store"
    );
    ensure!(
        url_store.get_session("from-handle").await?.is_some(),
        "URL store misses data written by the handle store"
    );
    drop(handle_store);
    let again = ctx
        .factory()
        .open_from_handle(ctx.namespace())
        .await?
        .ok_or_else(|| Failure("open_from_handle stopped offering a store".into()))?;
    again.health().await?;
    ensure!(
        again.get_session("from-handle").await?.is_some(),
        "handle unusable after a store built on it was dropped"
    );
    ensure!(
        url_store.get_session("from-url").await?.is_some(),
        "the URL store broke when the handle store was dropped"
    );
    Ok(Outcome::Passed)
}

/// Rule 3.
pub async fn rule_03_namespaces_are_isolated(ctx: &Ctx) -> CaseResult {
    let a = ready(ctx).await?;
    let b = ctx.open_extra().await?;
    a.save_session(&live("same", "alice", 1)).await?;
    b.save_session(&live("same", "alice", 2)).await?;
    a.save_session(&live("only-a", "alice", 3)).await?;
    ensure_eq!(
        a.get_session("same").await?.map(|s| s.sealed),
        Some(live("same", "alice", 1).sealed),
        "namespace a sees b's data"
    );
    ensure_eq!(
        b.get_session("same").await?.map(|s| s.sealed),
        Some(live("same", "alice", 2).sealed),
        "namespace b sees a's data"
    );
    ensure!(
        b.get_session("only-a").await?.is_none(),
        "namespace b sees a session of namespace a"
    );
    ensure_eq!(scan_all(b.as_ref(), 100).await?.len(), 1, "scan of b");
    ensure_eq!(
        a.revoke_subject(&Revocation::now("alice")).await?,
        2,
        "revoke in a"
    );
    ensure!(
        b.get_session("same").await?.is_some(),
        "revoke in a removed b's session"
    );
    a.create_record("r", b"a").await?;
    ensure!(
        b.get_record("r").await?.is_none(),
        "records leak across namespaces"
    );
    a.save_peer(&PeerJwks {
        issuer: "https://a".into(),
        jwks: "{}".into(),
        fetched_at: 1,
    })
    .await?;
    ensure!(
        b.load_peers().await?.is_empty(),
        "peers leak across namespaces"
    );
    ensure!(
        b.take_session("same").await?.is_some(),
        "b lost its session"
    );
    Ok(Outcome::Passed)
}

/// Rule 3: dropping a namespace removes its sessions, records and peers, can
/// be repeated, leaves the store usable after `setup`, and never touches
/// another namespace.
pub async fn rule_03_drop_namespace_removes_it_and_nothing_else(ctx: &Ctx) -> CaseResult {
    let a = ready(ctx).await?;
    let b = ctx.open_extra().await?;
    let doomed = [
        live("d1", "alice", 11),
        live("d2", "alice", 12),
        live("d3", "bob", 13),
        live("d4", "carol", 14),
        record("d5", "bob", unix_now() - 5, unix_now() - 100, 15),
    ];
    for s in &doomed {
        a.save_session(s).await?;
    }
    a.revoke_subject(&Revocation::now("carol")).await?;
    a.create_record("r", b"doomed-record-value").await?;
    let peer = |issuer: &str| PeerJwks {
        issuer: issuer.into(),
        jwks: format!("{{\"keys\":[],\"of\":\"{issuer}\"}}"),
        fetched_at: 7,
    };
    a.save_peer(&peer("https://doomed")).await?;
    let kept = live("d1", "alice", 99);
    b.save_session(&kept).await?;
    b.create_record("r", b"kept").await?;
    b.save_peer(&peer("https://kept")).await?;

    a.drop_namespace().await?;
    a.drop_namespace().await?;

    let fresh = ctx.factory().open(ctx.namespace()).await?;
    fresh.setup().await?;
    for s in &doomed {
        ensure!(
            fresh.get_session(&s.jti).await?.is_none(),
            "a session survived drop_namespace"
        );
    }
    ensure!(
        fresh.get_record("r").await?.is_none(),
        "a record survived drop_namespace"
    );
    ensure!(
        fresh.load_peers().await?.is_empty(),
        "a peer survived drop_namespace"
    );
    let stats = fresh.stats().await?;
    ensure_eq!(
        (
            stats.live_sessions,
            stats.expired_sessions,
            stats.peers,
            stats.records
        ),
        (0, 0, 0, 0),
        "stats (live, expired, peers, records) after drop_namespace"
    );
    // The same store object works again after setup.
    a.setup().await?;
    a.save_session(&live("again", "dave", 21)).await?;
    ensure_eq!(
        fresh.get_session("again").await?.map(|s| s.sealed),
        Some(live("again", "dave", 21).sealed),
        "the store after drop_namespace and setup"
    );

    ensure_eq!(
        b.get_session("d1").await?.map(|s| s.sealed),
        Some(kept.sealed.clone()),
        "drop_namespace touched another namespace's session"
    );
    ensure_eq!(
        b.get_record("r").await?,
        Some(b"kept".to_vec()),
        "drop_namespace touched another namespace's record"
    );
    ensure_eq!(
        b.load_peers().await?.len(),
        1,
        "drop_namespace touched another namespace's peers"
    );
    Ok(Outcome::Passed)
}

/// Rule 4.
pub async fn rule_04_save_then_get_returns_exactly_what_was_saved(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let mut big = record("big", "ünïcødé-sub 用户 🎉", validate::MAX_TIMESTAMP, 0, 9);
    big.sealed = (0..16 * 1024 + 33).map(|i| (i % 251) as u8).collect();
    let small = record("small", "s", unix_now() + 10, unix_now(), 3);
    for s in [&big, &small] {
        store.save_session(s).await?;
        ensure_eq!(
            store.get_session(&s.jti).await?,
            Some(s.clone()),
            "get after save of {:?}",
            s.jti
        );
    }
    ensure_eq!(
        store.take_session("big").await?,
        Some(big),
        "take after save"
    );
    Ok(Outcome::Passed)
}

/// Rule 4, with keys that break naive query building.
pub async fn rule_04_hostile_keys_are_stored_literally(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    // Built once: the expected values must not move with the clock.
    let saved: Vec<SessionRecord> = HOSTILE_IDS
        .iter()
        .enumerate()
        .map(|(i, id)| live(id, id, i as u8 + 1))
        .collect();
    for s in &saved {
        store.save_session(s).await?;
    }
    for (id, s) in HOSTILE_IDS.iter().zip(&saved) {
        ensure_eq!(
            store.get_session(id).await?,
            Some(s.clone()),
            "hostile jti {id:?}"
        );
    }
    let all = scan_all(store.as_ref(), 7).await?;
    ensure_eq!(
        all.len(),
        HOSTILE_IDS.len(),
        "hostile keys collided or were lost"
    );
    for id in HOSTILE_IDS {
        store.create_record(id, id.as_bytes()).await?;
        ensure_eq!(
            store.get_record(id).await?,
            Some(id.as_bytes().to_vec()),
            "hostile record name {id:?}"
        );
    }
    Ok(Outcome::Passed)
}

/// Rule 4, through the vault: Unicode and empty user_info, a 16 KiB token.
pub async fn rule_04_vault_round_trips_unicode_empty_and_16k(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let v = vault(store, KeyConfig::new(key(4))).await?;
    let token = "t".repeat(16 * 1024);
    let infos = [
        serde_json::json!({}),
        serde_json::json!(null),
        serde_json::from_str(
            r#"{"z":1.50,"a":"ünïcødé 🎉","n":100000000000000000000001,"list":[{"k":"v"}]}"#,
        )
        .map_err(|e| Failure(e.to_string()))?,
    ];
    for (i, info) in infos.iter().enumerate() {
        let mut s = plain_session(&format!("v{i}"), "Zoë", &token);
        s.user_info = info.clone().into();
        v.save_session(&s).await?;
        let back = v
            .get_session(&s.jti)
            .await?
            .ok_or_else(|| Failure("vault lost a session".into()))?;
        ensure!(
            back.refresh_token.expose_secret() == token,
            "refresh token changed"
        );
        ensure!(
            back.user_info.expose() == info,
            "user_info changed (case {i})"
        );
        ensure!(
            serde_json::to_string(back.user_info.expose()).ok() == serde_json::to_string(info).ok(),
            "user_info text changed (case {i})"
        );
        ensure_eq!(
            (back.sub.as_str(), back.expires_at, back.auth_time),
            (s.sub.as_str(), s.expires_at, s.auth_time),
            "clear fields"
        );
    }
    Ok(Outcome::Passed)
}

/// Rule 5: save is an upsert of every field, and indexes follow.
pub async fn rule_05_save_replaces_every_field(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let now = unix_now();
    store
        .save_session(&record("j", "old-sub", now + 100, now - 5, 1))
        .await?;
    let new = record("j", "new-sub", now + 7200, now - 1, 2);
    store.save_session(&new).await?;
    ensure_eq!(
        store.get_session("j").await?,
        Some(new.clone()),
        "save did not replace every field"
    );
    ensure_eq!(
        scan_all(store.as_ref(), 10).await?.len(),
        1,
        "save duplicated the session"
    );
    ensure_eq!(
        store.revoke_subject(&Revocation::now("old-sub")).await?,
        0,
        "the old subject still indexes the session"
    );
    ensure!(
        store.get_session("j").await?.is_some(),
        "revoking the old subject removed the session"
    );
    ensure_eq!(
        store.revoke_subject(&Revocation::now("new-sub")).await?,
        1,
        "the new subject does not index the session"
    );
    Ok(Outcome::Passed)
}

/// Rule 5: create is insert-if-absent.
pub async fn rule_05_create_conflicts_and_keeps_the_first(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let first = live("j", "alice", 1);
    store.create_session(&first).await?;
    let err = store.create_session(&live("j", "mallory", 2)).await;
    ensure!(
        matches!(err, Err(StoreError::Conflict { .. })),
        "second create was {err:?}, not a conflict"
    );
    ensure_eq!(
        store.get_session("j").await?,
        Some(first),
        "a conflicting create changed the session"
    );
    // Concurrent creates: exactly one wins.
    let creates = join_all((0..16u8).map(|i| {
        let store = Arc::clone(store);
        async move {
            store
                .create_session(&live("race", &format!("s{i}"), i + 1))
                .await
        }
    }))
    .await;
    let wins = creates.iter().filter(|r| r.is_ok()).count();
    ensure_eq!(wins, 1, "concurrent creates of one jti that succeeded");
    ensure!(
        creates
            .iter()
            .all(|r| matches!(r, Ok(()) | Err(StoreError::Conflict { .. }))),
        "a losing create was not a conflict"
    );
    Ok(Outcome::Passed)
}

/// Rule 5 with rule 7: an expired session does not block its id.
pub async fn rule_05_create_over_expired_session_succeeds(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let now = unix_now();
    store
        .save_session(&record("j", "old", now - 10, now - 100, 1))
        .await?;
    let fresh = live("j", "new", 2);
    store.create_session(&fresh).await?;
    ensure_eq!(
        store.get_session("j").await?,
        Some(fresh),
        "create over an expired session"
    );
    Ok(Outcome::Passed)
}

/// Rule 6.
pub async fn rule_06_unknown_jti_is_none(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    ensure!(
        store.get_session("nobody").await?.is_none(),
        "get of an unknown jti"
    );
    ensure!(
        store.take_session("nobody").await?.is_none(),
        "take of an unknown jti"
    );
    ensure!(
        store.get_record("nothing").await?.is_none(),
        "get of an unknown record"
    );
    Ok(Outcome::Passed)
}

/// Rule 7: at or before now is expired, purged or not.
pub async fn rule_07_expired_session_is_never_returned(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let now = unix_now();
    for (jti, at) in [("at-now", now), ("past", now - 1), ("long-ago", 0)] {
        store.save_session(&record(jti, "s", at, 0, 1)).await?;
        ensure!(
            store.get_session(jti).await?.is_none(),
            "get returned a session expired at {at} (now {now})"
        );
        ensure!(
            store.take_session(jti).await?.is_none(),
            "take returned an expired session"
        );
    }
    ensure!(
        scan_all(store.as_ref(), 10).await?.is_empty(),
        "scan returned expired sessions"
    );
    Ok(Outcome::Passed)
}

/// Rule 7: expiring while stored.
pub async fn rule_07_session_expiring_while_stored_is_gone(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let now = unix_now();
    store
        .save_session(&record("soon", "s", now + 2, now, 1))
        .await?;
    store
        .save_session(&record("soon2", "s", now + 2, now, 2))
        .await?;
    ensure!(
        store.get_session("soon").await?.is_some(),
        "a live session is missing"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        store.get_session("soon").await?.is_none(),
        "get returned a session that expired while stored"
    );
    ensure!(
        store.take_session("soon2").await?.is_none(),
        "take returned a session that expired while stored"
    );
    Ok(Outcome::Passed)
}

/// Rule 8.
pub async fn rule_08_delete_is_idempotent_and_reports(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    store.save_session(&live("j", "s", 1)).await?;
    ensure!(
        store.delete_session("j").await?,
        "delete of a stored session said nothing was removed"
    );
    ensure!(
        !store.delete_session("j").await?,
        "second delete said something was removed"
    );
    ensure!(
        store.get_session("j").await?.is_none(),
        "deleted session still returned"
    );
    Ok(Outcome::Passed)
}

/// Rule 9: 64 concurrent takers, exactly one winner, several rounds.
pub async fn rule_09_take_is_atomic_under_64_takers(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    for round in 0..5u8 {
        let jti = format!("refresh-{round}");
        let saved = live(&jti, "alice", round + 1);
        store.save_session(&saved).await?;
        let takers = (0..64).map(|_| {
            let store = Arc::clone(store);
            let jti = jti.clone();
            tokio::spawn(async move { store.take_session(&jti).await })
        });
        let mut winners = Vec::new();
        for handle in takers.collect::<Vec<_>>() {
            let taken = handle
                .await
                .map_err(|e| Failure(format!("a taker panicked: {e}")))??;
            winners.extend(taken);
        }
        ensure_eq!(
            winners.len(),
            1,
            "takers of one jti that got the session (round {round})"
        );
        ensure_eq!(winners.pop(), Some(saved), "the taken session");
    }
    Ok(Outcome::Passed)
}

/// Rule 9 across store objects (for a server backend, separate pools or
/// clients): 64 takers spread over four store objects, one winner.
pub async fn rule_09_take_is_atomic_across_store_objects(ctx: &Ctx) -> CaseResult {
    let first = Arc::clone(ready(ctx).await?);
    let mut stores = vec![first];
    for _ in 0..3 {
        stores.push(ctx.open_again().await?);
    }
    for round in 0..5u8 {
        let jti = format!("shared-refresh-{round}");
        let saved = live(&jti, "alice", round + 1);
        stores[usize::from(round) % stores.len()]
            .save_session(&saved)
            .await?;
        let takers: Vec<_> = (0..64)
            .map(|i| {
                let store = Arc::clone(&stores[i % stores.len()]);
                let jti = jti.clone();
                tokio::spawn(async move { store.take_session(&jti).await })
            })
            .collect();
        let mut winners = Vec::new();
        for handle in takers {
            let taken = handle
                .await
                .map_err(|e| Failure(format!("a taker panicked: {e}")))??;
            winners.extend(taken);
        }
        ensure_eq!(
            winners.len(),
            1,
            "takers on four store objects that got the session (round {round})"
        );
        ensure_eq!(winners.pop(), Some(saved), "the taken session");
    }
    Ok(Outcome::Passed)
}

/// Rule 10: revoke matches the exact subject only.
pub async fn rule_10_revoke_removes_exactly_that_subject(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let subs = [
        "*",
        "a.*",
        "%",
        "[",
        "{\"$ne\":null}",
        "alice",
        "alice2",
        "ALICE",
        "_",
        "a%",
        "a",
    ];
    for (i, sub) in subs.iter().enumerate() {
        store.save_session(&live(&format!("{i}-1"), sub, 1)).await?;
        store.save_session(&live(&format!("{i}-2"), sub, 2)).await?;
    }
    for (i, sub) in subs.iter().enumerate() {
        ensure_eq!(
            store.revoke_subject(&Revocation::now(*sub)).await?,
            2,
            "sessions revoked for sub {sub:?}"
        );
        for (j, other) in subs.iter().enumerate() {
            let present = store.get_session(&format!("{j}-1")).await?.is_some();
            ensure_eq!(
                present,
                j > i,
                "after revoking {sub:?}, presence of {other:?}'s session"
            );
        }
    }
    ensure_eq!(
        store.revoke_subject(&Revocation::now("alice")).await?,
        0,
        "second revoke"
    );
    Ok(Outcome::Passed)
}

/// Rule 10: take → revoke → save rotated session → it stays hidden.
pub async fn rule_10_revocation_beats_refresh_in_flight(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let now = unix_now();
    let login = record("old", "alice", now + 3600, now - 30, 1);
    store.save_session(&login).await?;
    let taken = store
        .take_session("old")
        .await?
        .ok_or_else(|| Failure("take lost the session".into()))?;
    store.revoke_subject(&Revocation::now("alice")).await?;
    // The refresh in flight writes its rotated session, same auth_time.
    let rotated = SessionRecord {
        jti: "rotated".into(),
        ..taken
    };
    store.save_session(&rotated).await?;
    ensure!(
        store.get_session("rotated").await?.is_none(),
        "a revoked subject's refreshed session was returned by get"
    );
    ensure!(
        store.take_session("rotated").await?.is_none(),
        "a revoked subject's refreshed session was returned by take"
    );
    ensure!(
        scan_all(store.as_ref(), 10).await?.is_empty(),
        "scan returned a revoked subject's session"
    );
    // A new login after the revocation is not affected.
    let relogin = record("new", "alice", now + 3600, now + 2, 2);
    store.save_session(&relogin).await?;
    ensure_eq!(
        store.get_session("new").await?,
        Some(relogin),
        "a login after the revocation"
    );
    let other = record("bob", "bob", now + 3600, now - 30, 3);
    store.save_session(&other).await?;
    ensure!(
        store.get_session("bob").await?.is_some(),
        "the revocation hid another subject"
    );
    Ok(Outcome::Passed)
}

/// Rule 11.
pub async fn rule_11_purge_removes_only_expired(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let now = unix_now();
    for i in 0..5 {
        store
            .save_session(&record(&format!("dead{i}"), "s", now - 1 - i, 0, 1))
            .await?;
        store
            .save_session(&record(&format!("live{i}"), "s", now + 3600 + i, now, 2))
            .await?;
    }
    ensure_eq!(store.purge_expired().await?, 5, "sessions purged");
    for i in 0..5 {
        ensure!(
            store.get_session(&format!("live{i}")).await?.is_some(),
            "purge removed a live session"
        );
    }
    ensure_eq!(store.purge_expired().await?, 0, "second purge");
    ensure_eq!(
        store.stats().await?.expired_sessions,
        0,
        "expired sessions left after purge"
    );
    Ok(Outcome::Passed)
}

/// Rule 12: 10 000 sessions, pages of 1 000, each exactly once.
pub async fn rule_12_scan_returns_every_live_session_once(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let n = 10_000usize;
    let now = unix_now();
    let writes = futures::stream::iter(0..n + 50)
        .map(|i| {
            let store = Arc::clone(store);
            async move {
                let s = if i < n {
                    record(
                        &format!("s{i:05}"),
                        &format!("u{}", i % 97),
                        now + 3600,
                        now,
                        (i % 250) as u8 + 1,
                    )
                } else {
                    record(&format!("x{i}"), "expired", now - 5, 0, 1)
                };
                store.save_session(&s).await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    for w in writes {
        w?;
    }
    let all = scan_all(store.as_ref(), 1000).await?;
    let unique: HashSet<&str> = all.iter().map(|s| s.jti.as_str()).collect();
    ensure_eq!(unique.len(), all.len(), "scan returned duplicates");
    ensure_eq!(all.len(), n, "sessions scanned");
    ensure!(
        unique.iter().all(|j| j.starts_with('s')),
        "scan returned expired sessions"
    );
    let err = store.scan_sessions(None, 0).await;
    ensure!(
        matches!(err, Err(StoreError::InvalidInput { .. })),
        "a page size of 0 was {err:?}"
    );
    Ok(Outcome::Passed)
}

/// Rule 12 with writes during the scan: sessions stored throughout are
/// returned exactly once even while others are deleted (behind and ahead
/// of the cursor) and added between pages; nothing is returned twice.
pub async fn rule_12_scan_while_sessions_change(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let n = 1500usize;
    let now = unix_now();
    // Stable and churning sessions alternate in key order.
    let writes = futures::stream::iter(0..n)
        .flat_map(|i| futures::stream::iter([(i, 'a'), (i, 'b')]))
        .map(|(i, kind)| {
            let store = Arc::clone(store);
            async move {
                let s = record(&format!("k{i:05}{kind}"), "u", now + 3600, now, 1);
                store.save_session(&s).await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    for w in writes {
        w?;
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut churn_seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut page_no = 0usize;
    loop {
        let page = store.scan_sessions(cursor.as_deref(), 100).await?;
        for s in &page.sessions {
            ensure!(seen.insert(s.jti.clone()), "scan returned {} twice", s.jti);
            if s.jti.ends_with('b') {
                churn_seen.push(s.jti.clone());
            }
        }
        // Between pages: delete churn already returned (behind the
        // cursor), delete churn not yet reached, add new sessions.
        for jti in churn_seen.drain(..).take(20) {
            store.delete_session(&jti).await?;
        }
        for k in 0..5 {
            let ahead = format!("k{:05}b", (page_no * 97 + k * 13) % n);
            store.delete_session(&ahead).await?;
            let fresh = record(
                &format!("k{:05}c{page_no}", (page_no * 31 + k * 7) % n),
                "u",
                now + 3600,
                now,
                2,
            );
            store.save_session(&fresh).await?;
        }
        page_no += 1;
        ensure!(page_no < 10_000, "scan does not end");
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let missing: Vec<String> = (0..n)
        .map(|i| format!("k{i:05}a"))
        .filter(|jti| !seen.contains(jti))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} sessions stored throughout the scan were skipped, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    Ok(Outcome::Passed)
}

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
            sealed: vec![0x01, 2, 3],
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
    let last = rec.sealed.len() - 1;
    rec.sealed[last] ^= 1;
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
                sealed: vec![1; validate::MAX_SEALED_BYTES + 1],
                ..live("j", "s", 1)
            },
        ),
        (
            "empty blob",
            SessionRecord {
                sealed: Vec::new(),
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
        let mut bad = good.clone();
        bad.sealed[i] ^= 1 << (i % 8);
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
            sealed: good.sealed[..len].to_vec(),
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
        sealed: b"plain-refresh-token".to_vec(),
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
