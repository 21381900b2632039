//! Replays racing a refresh (BROKER.md §6 A14) on every backend, and two
//! brokers on one store (A15).

use std::sync::Arc;
use std::time::Duration;

use broker_core::{Clock, Namespace, SystemClock};
use broker_service::{Broker, GrantError, Verification};
use broker_testkit::Endpoint;
use tokio::task::JoinSet;

use crate::common::{Harness, Store, login, open_broker, refresh, rt, sid, start_idp};

/// Rounds per backend.
const A14_ROUNDS: usize = 200;
/// Rounds run at once (each its own login).
const A14_BATCH: usize = 10;
/// How long the IdP holds each refresh.
const IDP_DELAY: Duration = Duration::from_millis(300);
/// When the replay comes, after the refresh started.
const REPLAY_AT: Duration = Duration::from_millis(100);

/// One round: refresh R0 (the IdP holds it 300 ms), replay R0 at +100 ms.
/// Returns the refresh tokens either request got (survivor candidates).
async fn race(broker: Broker, r0: String) -> Vec<String> {
    let in_flight = {
        let (broker, r0) = (broker.clone(), r0.clone());
        tokio::spawn(async move { refresh(&broker, &r0).await })
    };
    tokio::time::sleep(REPLAY_AT).await;
    let replay = refresh(&broker, &r0).await;
    let first = in_flight.await.expect("no panic");
    let mut got = Vec::new();
    for outcome in [first, replay] {
        match outcome {
            Ok(tokens) => got.push(rt(&tokens)),
            Err(GrantError::ReuseDetected | GrantError::InvalidGrant(_)) => {}
            Err(e) => panic!("a store or IdP error in a race: {e:?}"),
        }
    }
    got
}

/// A14 on `h`: 200 rounds; after both answers of every round, 0 live
/// grants in its login (checked on the whole store at the end, and every
/// token a request got is refused).
async fn a14_on(h: Harness) {
    let name = h.store.name;
    let mut sids = Vec::new();
    for _ in 0..A14_ROUNDS / A14_BATCH {
        let mut logins = JoinSet::new();
        for _ in 0..A14_BATCH {
            let (broker, http) = (h.broker.clone(), h.http.clone());
            logins.spawn(async move { login(&broker, &http).await });
        }
        let logins = logins.join_all().await;
        h.idp.delay(Endpoint::Token, IDP_DELAY);
        let mut races = JoinSet::new();
        for t in &logins {
            sids.push(sid(&h.broker, t));
            races.spawn(race(h.broker.clone(), rt(t)));
        }
        let got: Vec<String> = races.join_all().await.into_iter().flatten().collect();
        h.idp.clear_faults();
        for token in got {
            assert!(
                h.refresh(&token).await.is_err(),
                "{name}: a token survived a replay"
            );
        }
    }
    let inv = h.inventory().await;
    let survivors: usize = sids.iter().map(|s| inv.family(s).live).sum();
    for s in &sids {
        assert_eq!(inv.family(s).state, "compromised", "{name}");
    }
    assert_eq!(
        survivors, 0,
        "{name}: live grants after {A14_ROUNDS} rounds"
    );
    crate::loud(&format!(
        "A14 {name}: {A14_ROUNDS} rounds, {survivors} surviving grants"
    ));
    h.finish().await;
}

/// A14 on a MemoryStore.
pub async fn a14_memory() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    a14_on(Harness::on(Store::memory(clock)).await).await;
}

/// A14 on sled.
pub async fn a14_sled() {
    a14_on(Harness::on(Store::sled().await).await).await;
}

/// A14 on one server backend, if its URL is set (else a loud skip, a
/// failure under `CI=true`).
async fn a14_server(name: &'static str) {
    if let Some(url) = crate::common::server_url(name).await {
        a14_on(Harness::on(Store::open(name, &url).await).await).await;
    }
}

/// A14 on PostgreSQL.
pub async fn a14_postgres() {
    a14_server("postgres").await;
}

/// A14 on Redis (one node).
pub async fn a14_redis() {
    a14_server("redis").await;
}

/// A14 on Redis Cluster.
pub async fn a14_redis_cluster() {
    a14_server("redis-cluster").await;
}

/// A14 on MongoDB (wire protocol).
pub async fn a14_mongo() {
    a14_server("mongo").await;
}

/// A15 on two stores that are one: a login refreshed at broker B, its
/// old token replayed at broker A → B's tip is revoked; and the same with
/// the replay at A racing B's in-flight refresh.
async fn a15_on(a: &Store, b: &Store) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let idp = start_idp(Arc::clone(&clock)).await;
    let (broker_a, vault_a) = open_broker(&idp, a, Arc::clone(&clock), |_| {}).await;
    let (broker_b, _vault_b) = open_broker(&idp, b, clock, |_| {}).await;
    let http = broker_testkit::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");

    // Sequential: A logs in, B rotates, A sees the replay.
    let t0 = login(&broker_a, &http).await;
    let t1 = refresh(&broker_b, &rt(&t0)).await.expect("B rotates");
    broker_a
        .verify(&t1.access_token, Verification::Stateful)
        .await
        .expect("A accepts B's token while the login is active");
    let err = refresh(&broker_a, &rt(&t0))
        .await
        .expect_err("the replay at A");
    assert!(matches!(err, GrantError::ReuseDetected), "{err:?}");
    let err = refresh(&broker_b, &rt(&t1)).await.expect_err("B's tip");
    assert!(matches!(err, GrantError::InvalidGrant(_)), "{err:?}");
    assert!(
        broker_b
            .verify(&t1.access_token, Verification::Stateful)
            .await
            .is_err()
    );
    let inv = crate::common::inventory(&vault_a).await;
    let view = inv.family(&sid(&broker_a, &t0));
    assert_eq!((view.state.as_str(), view.live), ("compromised", 0));

    // Racing: B's refresh in flight at the IdP (its claim seen in the
    // store), the replay at A.
    let mut sids = Vec::new();
    for _ in 0..10 {
        let t0 = login(&broker_b, &http).await;
        sids.push(sid(&broker_b, &t0));
        idp.delay(Endpoint::Token, Duration::from_secs(1));
        let in_flight = {
            let (b, r0) = (broker_b.clone(), rt(&t0));
            tokio::spawn(async move { refresh(&b, &r0).await })
        };
        wait_claimed(&vault_a, &rt(&t0)).await;
        let replay = refresh(&broker_a, &rt(&t0)).await;
        assert!(
            matches!(replay, Err(GrantError::ReuseDetected)),
            "replay at A"
        );
        assert!(
            in_flight.await.expect("no panic").is_err(),
            "B's refresh lost"
        );
        idp.clear_faults();
    }
    let inv = crate::common::inventory(&vault_a).await;
    assert_eq!(sids.iter().map(|s| inv.family(s).live).sum::<usize>(), 0);
}

/// Wait until the grant of `token` is claimed (a refresh of it is at the
/// IdP).
async fn wait_claimed(vault: &broker_core::TokenVault, token: &str) {
    use secrecy::ExposeSecret as _;
    let (jti, _) = token.split_once('.').expect("jti.secret");
    let started = std::time::Instant::now();
    loop {
        if let Some((entry, _)) = vault.get_entry(jti).await.expect("a read") {
            let payload: serde_json::Value =
                serde_json::from_slice(entry.payload.expose_secret()).expect("JSON");
            if payload["state"] == "claimed" {
                return;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never claimed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A15 on one MemoryStore shared by two brokers (always runs).
pub async fn a15_two_brokers_memory() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let a = Store::memory(clock);
    let b = Store::shared(&a);
    a15_on(&a, &b).await;
}

/// A15 on PostgreSQL: two brokers, each with its own pool, one namespace.
pub async fn a15_two_brokers_postgres() {
    let Some(url) = crate::common::server_url("postgres").await else {
        return;
    };
    let ns = Namespace::random("e2e").expect("a namespace");
    let a = Store::open_in("postgres", &url, ns.clone()).await;
    let b = Store::open_in("postgres", &url, ns).await;
    a15_on(&a, &b).await;
    let _ = a.store.drop_namespace().await;
}
