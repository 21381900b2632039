//! Rule 10 (revocation never wears off) and the revocation parts of rules
//! 3 and 11. The cases about markers and their keep time take times from
//! the store's own clock, and those that need a marker to pass its keep
//! time wait for that clock to pass it.

use std::sync::Arc;
use std::time::Duration;

use broker_core::{BrokerStore, Revocation, SessionRecord, UnixTime, unix_now};

use super::{live, ready, record, scan_all};
use crate::{CaseResult, Ctx, Failure, Outcome};

/// The store's "now".
fn now(store: &dyn BrokerStore) -> UnixTime {
    store.clock().now()
}

/// Wait until the store's clock is past `t` (at most 10 s).
async fn wait_past(store: &dyn BrokerStore, t: UnixTime) -> Result<(), Failure> {
    for _ in 0..100 {
        if now(store) > t {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Failure(format!(
        "the store's clock did not pass {t} within 10 s"
    )))
}

fn revocation(sub: &str, revoked_at: UnixTime, keep_until: UnixTime) -> Revocation {
    Revocation {
        sub: sub.into(),
        revoked_at,
        keep_until,
    }
}

/// `jti` is returned by neither get, take nor scan.
async fn gone(store: &dyn BrokerStore, jti: &str, when: &str) -> Result<(), Failure> {
    ensure!(
        store.get_session(jti).await?.is_none(),
        "a revoked session ({jti}) was returned by get {when}"
    );
    ensure!(
        store.take_session(jti).await?.is_none(),
        "a revoked session ({jti}) was returned by take {when}"
    );
    ensure!(
        !scan_all(store, 50).await?.iter().any(|s| s.jti == jti),
        "a revoked session ({jti}) was returned by scan {when}"
    );
    Ok(())
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

/// Rule 10: take → revoke → save rotated session → the marker passes its
/// keep time and is purged → the session is still never returned.
pub async fn rule_10_revocation_outlives_its_marker(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let t = now(store.as_ref());
    store
        .save_session(&record("old", "alice", t + 3600, t - 30, 1))
        .await?;
    let taken = store
        .take_session("old")
        .await?
        .ok_or_else(|| Failure("take lost the session".into()))?;
    store.revoke_subject(&revocation("alice", t, t + 2)).await?;
    // The refresh in flight writes its rotated session (save), and another
    // one creates its session: both with the login's auth_time.
    store
        .save_session(&SessionRecord {
            jti: "rotated".into(),
            ..taken.clone()
        })
        .await?;
    store
        .create_session(&SessionRecord {
            jti: "created".into(),
            ..taken
        })
        .await?;
    gone(store.as_ref(), "rotated", "while the marker is kept").await?;
    wait_past(store.as_ref(), t + 2).await?;
    store.purge_expired().await?;
    for jti in ["rotated", "created"] {
        gone(store.as_ref(), jti, "after its marker was purged").await?;
    }
    ensure_eq!(
        store.stats().await?.live_sessions,
        0,
        "sessions still stored after the marker hiding them was purged"
    );
    Ok(Outcome::Passed)
}

/// Rule 10: a session with `auth_time == revoked_at` is hidden, one a
/// second later is not.
pub async fn rule_10_boundary_is_inclusive(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let t = now(store.as_ref());
    store
        .save_session(&record("before", "bob", t + 3600, t, 1))
        .await?;
    ensure_eq!(
        store
            .revoke_subject(&revocation("bob", t, t + 3600))
            .await?,
        1,
        "sessions revoked"
    );
    store
        .save_session(&record("same-second", "bob", t + 3600, t, 2))
        .await?;
    store
        .create_session(&record("same-second-create", "bob", t + 3600, t, 3))
        .await?;
    gone(store.as_ref(), "same-second", "(auth_time == revoked_at)").await?;
    gone(
        store.as_ref(),
        "same-second-create",
        "(auth_time == revoked_at)",
    )
    .await?;
    let after = record("next-second", "bob", t + 3600, t + 1, 4);
    store.save_session(&after).await?;
    ensure_eq!(
        store.get_session("next-second").await?,
        Some(after),
        "a login one second after the revocation"
    );
    Ok(Outcome::Passed)
}

/// Rule 10: a second revocation of a subject merges into the first and
/// only ever widens it (later `revoked_at`, later `keep_until`), and
/// kept markers can be listed (for migrations).
pub async fn rule_10_later_revocation_only_widens(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let t = now(store.as_ref());
    // An earlier, shorter revocation arriving later narrows nothing.
    store
        .revoke_subject(&revocation("carol", t, t + 3600))
        .await?;
    store
        .revoke_subject(&revocation("carol", t - 1000, t + 2))
        .await?;
    // A later, longer one widens a short one.
    store
        .revoke_subject(&revocation("dave", t - 1000, t + 2))
        .await?;
    store
        .revoke_subject(&revocation("dave", t, t + 3600))
        .await?;
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.scan_revocations(cursor.as_deref(), 1).await?;
        ensure!(page.revocations.len() <= 1, "a page of 1 held more");
        listed.extend(page.revocations);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        ensure!(listed.len() < 10, "the marker scan does not end");
    }
    ensure_eq!(
        listed,
        vec![
            revocation("carol", t, t + 3600),
            revocation("dave", t, t + 3600)
        ],
        "kept markers, merged, in subject order"
    );
    wait_past(store.as_ref(), t + 2).await?;
    store.purge_expired().await?;
    for (i, sub) in ["carol", "dave"].iter().enumerate() {
        let jti = format!("{sub}-late");
        store
            .save_session(&record(&jti, sub, t + 3600, t - 10, i as u8 + 1))
            .await?;
        gone(store.as_ref(), &jti, "after a narrower revocation merged").await?;
    }
    Ok(Outcome::Passed)
}

/// Rule 10 across store objects: a revoke on one store object races a
/// save (of a session the revocation covers) on another; whatever the
/// order, the session is never returned, not after the marker is purged
/// either.
pub async fn rule_10_revoke_racing_save_on_another_store_object(ctx: &Ctx) -> CaseResult {
    let a = Arc::clone(ready(ctx).await?);
    let b = ctx.open_again().await?;
    let mut jtis = Vec::new();
    let mut keep_until = 0;
    for round in 0..40u8 {
        // Each round's marker lives 2 s from its own start: a loaded
        // machine may take longer than that for all 40 rounds, and a save
        // after a marker's keep time is rightly stored.
        let t = now(a.as_ref());
        keep_until = t + 2;
        let sub = format!("racer-{round}");
        let jti = format!("racer-{round}-session");
        // Either side may start first, up to 2 ms ahead of the other.
        let head_start = Duration::from_millis(u64::from(round / 2 % 3));
        let (revoke_after, save_after) = if round % 2 == 0 {
            (head_start, Duration::ZERO)
        } else {
            (Duration::ZERO, head_start)
        };
        let revoke = {
            let a = Arc::clone(&a);
            let rev = revocation(&sub, t, keep_until);
            tokio::spawn(async move {
                tokio::time::sleep(revoke_after).await;
                a.revoke_subject(&rev).await
            })
        };
        let save = {
            let b = Arc::clone(&b);
            let s = record(&jti, &sub, t + 3600, t - 5, round.wrapping_add(1));
            tokio::spawn(async move {
                tokio::time::sleep(save_after).await;
                b.save_session(&s).await
            })
        };
        let panicked = |e| Failure(format!("a racer panicked: {e}"));
        revoke.await.map_err(panicked)??;
        save.await.map_err(panicked)??;
        for store in [&a, &b] {
            ensure!(
                store.get_session(&jti).await?.is_none(),
                "round {round}: a session saved while its subject was revoked was returned"
            );
        }
        jtis.push(jti);
    }
    wait_past(a.as_ref(), keep_until).await?;
    a.purge_expired().await?;
    for jti in &jtis {
        for store in [&a, &b] {
            ensure!(
                store.get_session(jti).await?.is_none(),
                "{jti}: a revoked session came back once its marker was purged"
            );
        }
    }
    Ok(Outcome::Passed)
}

/// Rule 11: purge forgets markers past their keep time (and keeps the
/// others): the forgotten subject can log in with an old `auth_time`
/// again, the kept one cannot.
pub async fn rule_11_purge_forgets_markers_past_their_keep_time(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let t = now(store.as_ref());
    store.revoke_subject(&revocation("erin", t, t + 1)).await?;
    store
        .revoke_subject(&revocation("frank", t, t + 3600))
        .await?;
    ensure_eq!(store.stats().await?.revocations, 2, "markers stored");
    wait_past(store.as_ref(), t + 1).await?;
    store.purge_expired().await?;
    ensure_eq!(
        store.stats().await?.revocations,
        1,
        "markers stored after purge"
    );
    let erin = record("erin-relogin", "erin", t + 3600, t - 10, 1);
    store.save_session(&erin).await?;
    ensure_eq!(
        store.get_session("erin-relogin").await?,
        Some(erin),
        "a session of a subject whose marker was forgotten"
    );
    store
        .save_session(&record("frank-late", "frank", t + 3600, t - 10, 2))
        .await?;
    gone(store.as_ref(), "frank-late", "while its marker is kept").await?;
    Ok(Outcome::Passed)
}

/// Rule 3: dropping a namespace removes its revocation markers too.
pub async fn rule_03_drop_namespace_removes_revocations(ctx: &Ctx) -> CaseResult {
    let store = ready(ctx).await?;
    let t = now(store.as_ref());
    store
        .revoke_subject(&revocation("gina", t, t + 3600))
        .await?;
    store.drop_namespace().await?;
    store.setup().await?;
    ensure_eq!(
        store.stats().await?.revocations,
        0,
        "markers left after drop_namespace"
    );
    ensure!(
        store
            .scan_revocations(None, 10)
            .await?
            .revocations
            .is_empty(),
        "scan_revocations lists a marker after drop_namespace"
    );
    let s = record("gina-again", "gina", t + 3600, t - 10, 1);
    store.save_session(&s).await?;
    ensure_eq!(
        store.get_session("gina-again").await?,
        Some(s),
        "a session hidden by a marker of the dropped namespace"
    );
    Ok(Outcome::Passed)
}
