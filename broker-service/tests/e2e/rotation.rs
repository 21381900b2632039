//! Refresh rotation (BROKER.md §5.3, §6 A11–A13, A16, A17, A29) on a
//! MemoryStore and a fake clock shared by the broker, the IdP and the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_service::{GrantError, Verification};
use broker_testkit::Endpoint;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::common::{Harness, T0, refresh, rt, sid};

/// A11: login → R0 → R1 → R2; new tokens each time; 2 IdP refreshes; the
/// store holds 2 tombstones, 1 live grant, 1 active family.
pub async fn a11_login_and_two_refreshes() {
    let h = Harness::fake_clock().await;
    let t0 = h.login().await;
    let r0 = rt(&t0);
    h.idp.reset_calls();
    let t1 = h.refresh(&r0).await.expect("R0 → R1");
    let t2 = h.refresh(&rt(&t1)).await.expect("R1 → R2");
    assert_ne!(rt(&t1), r0);
    assert_ne!(rt(&t2), rt(&t1));
    assert_ne!(t1.access_token, t0.access_token);
    assert_ne!(t2.access_token, t1.access_token);
    assert_eq!(h.idp.calls(Endpoint::Token), 2, "one IdP refresh each");
    let sid = sid(&h.broker, &t0);
    assert_eq!(sid, crate::common::sid(&h.broker, &t2), "one login");
    let view = h.inventory().await.family(&sid);
    assert_eq!(
        (view.state.as_str(), view.live, view.claimed),
        ("active", 1, 2)
    );
    assert_eq!(h.inventory().await.0.len(), 1, "one family in the store");
    crate::common::note_signing_keys(&h.vault).await;
}

/// Arms one IdP failure.
type Arm = fn(&Harness);

/// A11b: the IdP fails (503, 500, a dropped connection, no answer within
/// the timeout): the broker answers 503 `temporarily_unavailable` and the
/// same refresh token works afterwards; nothing is lost.
pub async fn a11b_idp_outage_rolls_back() {
    let h = Harness::fake_clock_with(|c| c.idp.timeout = Duration::from_secs(2)).await;
    let mut current = rt(&h.login().await);
    let outages: [(&str, Arm); 4] = [
        ("503", |h| h.idp.fail_next(Endpoint::Token, 503, 1)),
        ("500", |h| h.idp.fail_next(Endpoint::Token, 500, 1)),
        ("dropped connection", |h| {
            h.idp.drop_connection_next(Endpoint::Token)
        }),
        // The IdP answers after the broker's 2 s timeout.
        ("timeout", |h| {
            h.idp.delay(Endpoint::Token, Duration::from_secs(3))
        }),
    ];
    for (what, arm) in outages {
        arm(&h);
        let started = Instant::now();
        let err = h.refresh(&current).await.expect_err(what);
        assert!(matches!(err, GrantError::IdpUnavailable), "{what}: {err:?}");
        assert_eq!(
            (err.code(), err.status()),
            ("temporarily_unavailable", 503),
            "{what}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(2900),
            "{what}: the timeout holds"
        );
        h.idp.clear_faults();
        if what == "timeout" {
            // Let the held request reach the IdP first, if it still does.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let again = h
            .refresh(&current)
            .await
            .unwrap_or_else(|e| panic!("{what}: the same token works again: {e:?}"));
        current = rt(&again);
    }
    let inv = h.inventory().await;
    let view = inv.0.values().next().expect("the family");
    assert_eq!(
        (view.state.as_str(), view.live),
        ("active", 1),
        "0 sessions lost"
    );
}

/// A11b: the IdP answers `invalid_grant` (its session ended): 400
/// `invalid_grant`, and the login is logged out with no live grant.
pub async fn a11b_idp_invalid_grant_logs_out() {
    let h = Harness::fake_clock().await;
    let t0 = h.login().await;
    h.idp.fail_next(Endpoint::Token, 400, 1);
    let err = h.refresh(&rt(&t0)).await.expect_err("the IdP refused");
    assert!(matches!(err, GrantError::InvalidGrant(_)), "{err:?}");
    assert_eq!((err.code(), err.status()), ("invalid_grant", 400));
    let view = h.inventory().await.family(&sid(&h.broker, &t0));
    assert_eq!((view.state.as_str(), view.live), ("logged_out", 0));
}

/// Outcome counts of one burst of concurrent refreshes.
#[derive(Debug, Default)]
struct Burst {
    ok: Vec<String>,
    reuse: usize,
    invalid: usize,
}

/// `n` refreshes of `token` released at once.
async fn burst(h: &Harness, token: &str, n: usize) -> Burst {
    let barrier = Arc::new(Barrier::new(n));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (broker, token, barrier) = (h.broker.clone(), token.to_owned(), Arc::clone(&barrier));
        set.spawn(async move {
            barrier.wait().await;
            refresh(&broker, &token).await
        });
    }
    let mut out = Burst::default();
    while let Some(joined) = set.join_next().await {
        match joined.expect("no panic") {
            Ok(tokens) => out.ok.push(rt(&tokens)),
            Err(GrantError::ReuseDetected) => out.reuse += 1,
            Err(GrantError::InvalidGrant(_)) => out.invalid += 1,
            Err(e) => panic!("a store or IdP error in a burst: {e:?}"),
        }
    }
    out
}

/// Rounds of each A12 mode.
const A12_ROUNDS: usize = 100;
/// Concurrent refreshes per round.
const A12_CONCURRENCY: usize = 64;

/// A12, strict (grace 0): 64 concurrent refreshes of one token → the IdP
/// token endpoint is called exactly once, at most one 200, and the login
/// ends `compromised` with 0 live grants. 100 rounds.
pub async fn a12_concurrent_refreshes_strict() {
    let h = Harness::fake_clock().await;
    for round in 0..A12_ROUNDS {
        let t0 = h.login().await;
        h.idp.reset_calls();
        // The IdP takes a moment, so the refreshes overlap its call.
        h.idp.delay(Endpoint::Token, Duration::from_millis(20));
        let b = burst(&h, &rt(&t0), A12_CONCURRENCY).await;
        h.idp.clear_faults();
        assert_eq!(
            h.idp.calls(Endpoint::Token),
            1,
            "round {round}: one IdP call"
        );
        assert!(b.ok.len() <= 1, "round {round}: {b:?}");
        assert_eq!(b.ok.len() + b.reuse + b.invalid, A12_CONCURRENCY);
        assert!(b.reuse >= 1, "round {round}: the losers replay");
        let view = h.inventory().await.family(&sid(&h.broker, &t0));
        assert_eq!(
            (view.state.as_str(), view.live),
            ("compromised", 0),
            "round {round}"
        );
        for survivor in &b.ok {
            assert!(
                h.refresh(survivor).await.is_err(),
                "round {round}: a survivor"
            );
        }
    }
}

/// A12 with a 5 s grace: exactly one 200, 63 × `invalid_grant` without
/// revocation, the winner's token keeps working; one IdP call per burst.
/// Past the grace, the old token is a replay again. 100 rounds.
pub async fn a12_concurrent_refreshes_with_grace() {
    let h = Harness::fake_clock_with(|c| c.replay_grace = Duration::from_secs(5)).await;
    for round in 0..A12_ROUNDS {
        let t0 = h.login().await;
        let sid = sid(&h.broker, &t0);
        h.idp.reset_calls();
        h.idp.delay(Endpoint::Token, Duration::from_millis(20));
        let b = burst(&h, &rt(&t0), A12_CONCURRENCY).await;
        h.idp.clear_faults();
        assert_eq!(
            h.idp.calls(Endpoint::Token),
            1,
            "round {round}: one IdP call"
        );
        assert_eq!(
            (b.ok.len(), b.reuse, b.invalid),
            (1, 0, 63),
            "round {round}"
        );
        let view = h.inventory().await.family(&sid);
        assert_eq!(
            (view.state.as_str(), view.live),
            ("active", 1),
            "round {round}"
        );
        let next = h.refresh(&b.ok[0]).await.expect("the winner's token works");
        if round == 0 {
            h.advance(6);
            let err = h.refresh(&rt(&t0)).await.expect_err("past the grace");
            assert!(matches!(err, GrantError::ReuseDetected), "{err:?}");
            assert!(h.refresh(&rt(&next)).await.is_err(), "the login is revoked");
        }
    }
}

/// A13 + A16: R0 replayed after R0 → R1: `invalid_grant` (reuse) in that
/// request, R1 is gone at once, the login is compromised, the IdP saw no
/// extra call; R1's access token is refused on a stateful route and still
/// accepted on a stateless one until it expires.
pub async fn a13_a16_replay_after_rotation() {
    let h = Harness::fake_clock().await;
    let t0 = h.login().await;
    let t1 = h.refresh(&rt(&t0)).await.expect("R0 → R1");
    let calls = h.idp.calls(Endpoint::Token);
    let err = h.refresh(&rt(&t0)).await.expect_err("a replay");
    assert!(matches!(err, GrantError::ReuseDetected), "{err:?}");
    assert_eq!(err.code(), "invalid_grant");
    let view = h.inventory().await.family(&sid(&h.broker, &t0));
    assert_eq!(
        (view.state.as_str(), view.live),
        ("compromised", 0),
        "within the request"
    );
    let err = h.refresh(&rt(&t1)).await.expect_err("R1 is revoked");
    assert!(matches!(err, GrantError::InvalidGrant(_)), "{err:?}");
    assert_eq!(
        h.idp.calls(Endpoint::Token),
        calls,
        "no IdP call for the replay"
    );
    // A16.
    assert!(
        h.broker
            .verify(&t1.access_token, Verification::Stateful)
            .await
            .is_err()
    );
    h.broker
        .verify(&t1.access_token, Verification::Stateless)
        .await
        .expect("stateless: valid until exp (documented)");
    h.advance(t1.expires_in + 31);
    assert!(
        h.broker
            .verify(&t1.access_token, Verification::Stateless)
            .await
            .is_err()
    );
}

/// A17: a valid jti with a wrong secret → `invalid_grant`, nothing revoked
/// (a live grant's jti, and a tombstone's); the real token works.
pub async fn a17_wrong_secret_revokes_nothing() {
    let h = Harness::fake_clock().await;
    let t0 = h.login().await;
    let forge = |token: &str| {
        let (jti, _) = token.split_once('.').expect("jti.secret");
        format!("{jti}.{}", "A".repeat(43))
    };
    let err = h
        .refresh(&forge(&rt(&t0)))
        .await
        .expect_err("a forged secret");
    assert!(matches!(err, GrantError::InvalidGrant(_)), "{err:?}");
    let t1 = h
        .refresh(&rt(&t0))
        .await
        .expect("the real token still works");
    let err = h
        .refresh(&forge(&rt(&t0)))
        .await
        .expect_err("a tombstone's jti");
    assert!(matches!(err, GrantError::InvalidGrant(_)), "{err:?}");
    let view = h.inventory().await.family(&sid(&h.broker, &t0));
    assert_eq!((view.state.as_str(), view.live), ("active", 1));
    h.refresh(&rt(&t1)).await.expect("R1 works");
}

/// A3 (token endpoint side): an access JWT offered as a refresh token.
pub async fn a3_access_token_is_not_a_refresh_token() {
    let h = Harness::fake_clock().await;
    let t0 = h.login().await;
    let err = h
        .refresh(&t0.access_token)
        .await
        .expect_err("an access token");
    assert!(matches!(err, GrantError::InvalidGrant(_)), "{err:?}");
    h.refresh(&rt(&t0)).await.expect("nothing was revoked");
}

/// A29: an IdP that sends no `refresh_expires_in` gives grants of 24 h
/// (idle), never past the 30-day family, not py-oidc-auth's 180 s.
pub async fn a29_no_refresh_expiry() {
    let h = Harness::fake_clock().await;
    h.idp.set_refresh_expires_in(None);
    let t0 = h.login().await;
    assert_eq!(t0.refresh_expires_in, Some(86_400));
    h.advance(181);
    let mut t = h.refresh(&rt(&t0)).await.expect("alive after 181 s");
    let family_end = T0 + 30 * 86_400;
    let mut refreshes = 1;
    loop {
        h.advance(23 * 3600);
        match h.refresh(&rt(&t)).await {
            Ok(next) => {
                let ends = next.refresh_expires.expect("refresh_expires");
                assert!(ends <= family_end, "a grant past the family's 30 days");
                t = next;
                refreshes += 1;
            }
            Err(e) => {
                assert!(matches!(e, GrantError::InvalidGrant(_)), "{e:?}");
                break;
            }
        }
    }
    let now = T0 + 181 + refreshes * 23 * 3600;
    assert!(
        now >= family_end && now - 23 * 3600 < family_end,
        "ends with the family"
    );
    assert_eq!(refreshes, 32, "the first, then 23 h steps within 30 days");

    // Idle: a grant unused for 24 h is gone; one used within 24 h lives on.
    let h = Harness::fake_clock().await;
    h.idp.set_refresh_expires_in(None);
    let t0 = h.login().await;
    h.advance(86_399);
    let t1 = h.refresh(&rt(&t0)).await.expect("used within 24 h");
    h.advance(86_400);
    let err = h.refresh(&rt(&t1)).await.expect_err("idle for 24 h");
    assert!(matches!(err, GrantError::InvalidGrant(_)), "{err:?}");
}

/// Expiry on the fake clock: a grant lives as long as the IdP's refresh
/// token (1800 s here), an access token until `exp` + leeway.
pub async fn expiry_follows_the_shared_clock() {
    let h = Harness::fake_clock().await;
    let t0 = h.login().await;
    assert_eq!(t0.refresh_expires_in, Some(1800));
    assert_eq!(t0.expires_in, 900);
    h.advance(900 + 29);
    h.broker
        .verify(&t0.access_token, Verification::Stateful)
        .await
        .expect("within the leeway");
    h.advance(2);
    assert!(
        h.broker
            .verify(&t0.access_token, Verification::Stateless)
            .await
            .is_err()
    );
    h.advance(1800 - 931);
    let err = h.refresh(&rt(&t0)).await.expect_err("the grant expired");
    assert!(matches!(err, GrantError::InvalidGrant(_)), "{err:?}");
    assert_eq!(
        h.idp.calls(Endpoint::Token),
        1,
        "no IdP call for an expired grant"
    );
}

/// The IdP rotates its signing key; the broker fetched the IdP's JWKS
/// less than its 60 s cooldown ago, so the ID token of a refresh answer
/// cannot be checked yet. The IdP has already rotated its refresh token,
/// so the broker must keep the new one and leave the grant usable: the
/// client's retries fail with "temporarily unavailable" (503) until the
/// keys can be fetched, then work — they must not count as replays that
/// revoke the login.
pub async fn idp_key_rotation_during_refresh_keeps_the_login() {
    let h = Harness::fake_clock().await;
    let t0 = h.login().await;
    let sid = sid(&h.broker, &t0);
    h.idp.rotate_signing_key().expect("a new IdP key");
    for attempt in 0..2 {
        let err = h
            .refresh(&rt(&t0))
            .await
            .expect_err("the new key is not fetched yet");
        // Not a replay, and not the broker's fault either: "retry later"
        // (503 temporarily_unavailable), not 500.
        assert!(
            matches!(err, GrantError::IdpUnavailable) && err.status() == 503,
            "attempt {attempt}: {err:?} ({})",
            err.status()
        );
        let view = h.inventory().await.family(&sid);
        assert_eq!(
            (view.state.as_str(), view.live),
            ("active", 1),
            "attempt {attempt}"
        );
    }
    // The cooldown is real time.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let t1 = h
        .refresh(&rt(&t0))
        .await
        .unwrap_or_else(|e| panic!("the retry after the cooldown: {e:?}"));
    h.refresh(&rt(&t1)).await.expect("and the login goes on");
}
