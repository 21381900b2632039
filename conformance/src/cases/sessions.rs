//! Rules 4 to 9, 11 and 12: sessions saved, created, read, expired,
//! deleted, taken, purged and scanned.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use broker_core::{KeyConfig, Revocation, SessionRecord, StoreError, unix_now, validate};
use futures::StreamExt as _;
use futures::future::join_all;
use secrecy::ExposeSecret;

use super::{HOSTILE_IDS, key, live, plain_session, ready, record, scan_all, vault};
use crate::{CaseResult, Ctx, Failure, Outcome};

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
