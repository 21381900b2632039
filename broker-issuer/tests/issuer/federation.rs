//! Federation (BROKER.md §6 A18–A20, A22, A23, A32; A21 is in `faults`):
//! peer key sets bound to their issuer, one shared fetch per unknown kid
//! and cooldown, replacement on refresh, claim policy, startup with every
//! peer down. Each peer is a real `Issuer` behind an axum JWKS route.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{AUDIENCE, Peer, Reply, federation, options, peer, vault};
use broker_core::{Clock as _, ManualClock, MemoryStore, TokenVault};
use broker_issuer::federation::{ClaimFilter, Federation, PeerHttp};
use broker_issuer::{Issuer, IssuerConfig, Origin, Verifier, VerifyError};

/// A18: 1 000 concurrent verifications of tokens with a kid the federation
/// has never seen → exactly one JWKS fetch; a second unknown kid within the
/// cooldown → no fetch and 401; past the cooldown → one more fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_kid_costs_one_fetch_for_a_thousand_verifications() {
    let _cpu = crate::share().await;
    let clock = ManualClock::starting_now();
    let p = peer(&clock).await;
    let fed = federation(vault().await, vec![p.config()], &clock).await;
    let token = p.token("alice", &["user"]);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (fed, token) = (fed.clone(), token.clone());
        tasks.spawn(async move { fed.verify(&token).await });
    }
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        let verified = result.unwrap().unwrap();
        assert_eq!(verified.claims.sub, "alice");
        ok += 1;
    }
    assert_eq!(ok, 1000);
    assert_eq!(p.hits(), 1, "one fetch for a thousand verifications");
    let stats = &fed.stats()[0];
    assert_eq!((stats.fetches, stats.fetch_errors, stats.keys), (1, 0, 1));
    assert_eq!(
        (stats.kids.clone(), stats.last_error),
        (vec![Peer::kid(&token)], None)
    );

    // The peer rotates at once: its new kid is unknown here, and the
    // cooldown forbids a fetch for 60 s.
    p.issuer.rotate(true).await.unwrap();
    let rotated = p.token("bob", &[]);
    assert_ne!(Peer::kid(&rotated), Peer::kid(&token));
    clock.advance(59);
    assert_eq!(
        fed.verify(&rotated).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    assert_eq!(p.hits(), 1, "no fetch within the cooldown");
    // Tokens of the known key still verify meanwhile.
    fed.verify(&token).await.unwrap();
    clock.advance(2);
    assert_eq!(fed.verify(&rotated).await.unwrap().claims.sub, "bob");
    assert_eq!(p.hits(), 2);
}

/// A19: a token whose `iss` is not configured is refused with no HTTP
/// request anywhere; a token claiming peer B but signed with peer A's key
/// is refused, though both peers are trusted.
#[tokio::test]
async fn keys_speak_only_for_their_issuer() {
    let _cpu = crate::share().await;
    let clock = ManualClock::starting_now();
    let (a, b, stranger) = (peer(&clock).await, peer(&clock).await, peer(&clock).await);
    let fed = federation(vault().await, vec![a.config(), b.config()], &clock).await;

    let foreign = stranger.token("mallory", &["admin"]);
    assert_eq!(
        fed.verify(&foreign).await.unwrap_err(),
        VerifyError::UntrustedIssuer
    );
    assert_eq!((a.hits(), b.hits(), stranger.hits()), (0, 0, 0), "no I/O");

    // A's keys are loaded and verify A's tokens.
    fed.verify(&a.token("alice", &[])).await.unwrap();
    // A signs a token claiming to be B.
    let mut claims = a.issuer.claims("mallory", "jti-forged");
    claims.iss.clone_from(&b.url);
    let forged = a.issuer.mint(&claims).unwrap();
    assert_eq!(
        fed.verify(&forged).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    // ... also once B's keys are loaded.
    fed.verify(&b.token("bob", &[])).await.unwrap();
    clock.advance(61);
    assert_eq!(
        fed.verify(&forged).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    assert_eq!(stranger.hits(), 0);

    // Garbage is refused without I/O and without a panic.
    let hits = (a.hits(), b.hits());
    for junk in ["", ".", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30."] {
        assert!(fed.verify(junk).await.is_err(), "{junk}");
    }
    assert_eq!((a.hits(), b.hits()), hits);
}

/// A20: a kid the peer removes stops verifying after the next refresh;
/// a stored document of an issuer no longer configured is ignored at
/// startup, and so is one older than `max_age`.
#[tokio::test]
async fn removed_kids_and_unconfigured_or_stale_documents_are_not_trusted() {
    let _cpu = crate::share().await;
    let clock = ManualClock::starting_now();
    let p = peer(&clock).await;
    let shared = vault().await;
    let fed = federation(Arc::clone(&shared), vec![p.config()], &clock).await;
    let old = p.token("alice", &[]);
    fed.verify(&old).await.unwrap();
    // The peer adds a key and withdraws the old one from its JWKS.
    p.issuer.rotate(true).await.unwrap();
    let new = p.token("bob", &[]);
    let mut jwks = p.jwks();
    let old_kid = Peer::kid(&old);
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] != old_kid.as_str());
    p.set(Reply::Fixed(200, serde_json::to_vec(&jwks).unwrap()));
    clock.advance(61);
    fed.refresh_stale(Duration::ZERO).await;
    assert_eq!(p.hits(), 2);
    fed.verify(&new).await.unwrap();
    assert_eq!(fed.verify(&old).await.unwrap_err(), VerifyError::UnknownKey);

    // The document was saved: a second worker on the same store starts
    // with it (no fetch), and the withdrawn kid stays refused there too.
    let worker2 = federation(Arc::clone(&shared), vec![p.config()], &clock).await;
    worker2.verify(&new).await.unwrap();
    assert_eq!(p.hits(), 2, "the second worker used the stored document");

    // A worker that no longer trusts the peer ignores its stored document.
    let other = peer(&clock).await;
    let untrusting = federation(Arc::clone(&shared), vec![other.config()], &clock).await;
    assert_eq!(
        untrusting.verify(&new).await.unwrap_err(),
        VerifyError::UntrustedIssuer
    );
    assert_eq!(p.hits(), 2);

    // A stored document older than max_age (24 h) is not loaded.
    clock.advance(24 * 3600);
    p.set(Reply::Fixed(503, Vec::new()));
    let late = federation(Arc::clone(&shared), vec![p.config()], &clock).await;
    assert_eq!(late.stats()[0].keys, 0);
    // ... and the first worker's keys, as old, are no longer used.
    let fresh = p.token("carol", &[]);
    assert_eq!(
        fed.verify(&fresh).await.unwrap_err(),
        VerifyError::Unavailable
    );
}

/// A document refused at rest (written around the vault) is never used.
#[tokio::test]
async fn a_document_planted_in_the_store_is_not_trusted() {
    let _cpu = crate::share().await;
    let clock = ManualClock::starting_now();
    let p = peer(&clock).await;
    let store = MemoryStore::new();
    let key = broker_core::EncryptionKey::from_bytes(&[9; 32]).unwrap();
    let shared = Arc::new(
        TokenVault::open(Arc::new(store.clone()), broker_core::KeyConfig::new(key))
            .await
            .unwrap(),
    );
    let planted = broker_core::PeerJwks {
        issuer: p.url.clone(),
        jwks: String::from_utf8(p.issuer.jwks().body.to_vec()).unwrap(),
        fetched_at: clock.now(),
    };
    broker_core::BrokerStore::save_peer(&store, &planted)
        .await
        .unwrap();
    p.set(Reply::Fixed(503, Vec::new()));
    let fed = federation(shared, vec![p.config()], &clock).await;
    assert_eq!(fed.stats()[0].keys, 0);
    assert_eq!(fed.stats()[0].store_errors, 1);
    let token = p.token("alice", &[]);
    assert_eq!(
        fed.verify(&token).await.unwrap_err(),
        VerifyError::Unavailable
    );
}

/// A peer that publishes private key members has leaked its keys: the
/// document is refused and the keys held for that peer stop verifying.
#[tokio::test]
async fn a_leaked_private_key_ends_trust_in_the_peer() {
    let _cpu = crate::share().await;
    let clock = ManualClock::starting_now();
    let p = peer(&clock).await;
    let fed = federation(vault().await, vec![p.config()], &clock).await;
    let token = p.token("alice", &[]);
    fed.verify(&token).await.unwrap();
    let mut leaked = p.jwks();
    leaked["keys"][0]["d"] = "AQAB".into();
    p.set(Reply::Fixed(200, serde_json::to_vec(&leaked).unwrap()));
    clock.advance(61);
    fed.refresh_stale(Duration::ZERO).await;
    assert_eq!(fed.stats()[0].keys, 0);
    assert_eq!(
        fed.verify(&token).await.unwrap_err(),
        VerifyError::Unavailable
    );
    // A clean document restores trust after the cooldown.
    p.set(Reply::Live);
    clock.advance(61);
    fed.verify(&token).await.unwrap();
}

/// A verification meeting an unknown kid while a scheduled refresh runs
/// joins it; when that refresh finds the stored keys fresh and fetches
/// nothing, the verification starts the fetch its kid needs (cooldown
/// permitting) instead of refusing the token.
#[tokio::test]
async fn a_kid_missed_by_a_scheduled_refresh_is_fetched() {
    let _cpu = crate::share().await;
    let clock = ManualClock::starting_now();
    let p = peer(&clock).await;
    let fed = federation(vault().await, vec![p.config()], &clock).await;
    fed.verify(&p.token("alice", &[])).await.unwrap();
    p.issuer.rotate(true).await.unwrap();
    let rotated = p.token("bob", &[]);
    clock.advance(61);
    // The scheduled refresh starts (its task is spawned, not yet run on
    // this single thread), then the verification joins it.
    let scheduled = fed.refresh_stale(Duration::from_secs(3600));
    tokio::pin!(scheduled);
    assert!(futures::poll!(&mut scheduled).is_pending());
    let verified = fed.verify(&rotated).await;
    scheduled.await;
    assert_eq!(verified.unwrap().claims.sub, "bob");
    assert_eq!(p.hits(), 2, "one fetch for the new kid");
}

/// A22: roles are filtered by the peer's policy (drop by default, allow
/// list, prefix); scopes and unnamed claims are dropped by default;
/// `origin` names the peer; `typ` and lifetime limits apply.
#[tokio::test]
async fn peer_claims_are_filtered_by_policy() {
    let _cpu = crate::share().await;
    let clock = ManualClock::starting_now();
    let p = peer(&clock).await;
    let mut claims = p.issuer.claims("alice", "jti-1");
    claims.roles = vec!["admin".into(), "user".into()];
    claims.scope = Some("openid admin".into());
    claims.extra.insert(
        "realm_access".into(),
        serde_json::json!({"roles": ["admin"]}),
    );
    let token = p.issuer.mint(&claims).unwrap();

    let verify_with = |cfg: broker_issuer::PeerConfig| {
        let (clock, token) = (clock.clone(), token.clone());
        async move {
            let fed = federation(vault().await, vec![cfg], &clock).await;
            fed.verify(&token).await
        }
    };
    let dropped = verify_with(p.config()).await.unwrap();
    assert!(dropped.claims.roles.is_empty());
    assert_eq!(dropped.claims.scope, None);
    assert!(dropped.claims.extra.is_empty());
    assert_eq!(dropped.claims.sub, "alice");
    assert_eq!(
        dropped.origin,
        Origin::Peer {
            issuer: p.url.clone()
        }
    );

    let mut cfg = p.config();
    cfg.claims.roles = ClaimFilter::Prefix("peerA:".into());
    cfg.claims.scopes = ClaimFilter::Allow(BTreeSet::from(["openid".to_owned()]));
    cfg.claims.keep_other_claims = true;
    let prefixed = verify_with(cfg).await.unwrap();
    assert_eq!(prefixed.claims.roles, ["peerA:admin", "peerA:user"]);
    assert_eq!(prefixed.claims.scope.as_deref(), Some("openid"));
    assert!(prefixed.claims.extra.contains_key("realm_access"));

    let mut cfg = p.config();
    cfg.claims.roles = ClaimFilter::Allow(BTreeSet::from(["user".to_owned()]));
    assert_eq!(verify_with(cfg).await.unwrap().claims.roles, ["user"]);

    // Our kind of peer must send at+jwt (it does); a lifetime cap of
    // 10 minutes refuses its 15-minute tokens; an algorithm outside the
    // peer's list is refused before any fetch.
    let typed = broker_issuer::PeerConfig::broker(&p.url);
    assert!(verify_with(typed).await.is_ok());
    let mut cfg = p.config();
    cfg.require_typ = Some("JWT".into());
    assert_eq!(verify_with(cfg).await.unwrap_err(), VerifyError::TokenType);
    let mut cfg = p.config();
    cfg.max_token_lifetime = Some(Duration::from_secs(600));
    assert_eq!(verify_with(cfg).await.unwrap_err(), VerifyError::Claims);
    let hits = p.hits();
    let mut cfg = p.config();
    cfg.algorithms = vec![broker_issuer::SigningAlg::EdDSA];
    assert_eq!(verify_with(cfg).await.unwrap_err(), VerifyError::Algorithm);
    assert_eq!(p.hits(), hits);

    // Another audience is refused.
    let mut other = p.issuer.claims("alice", "jti-2");
    other.aud = broker_issuer::Audience::One("not-ours".into());
    let fed = federation(vault().await, vec![p.config()], &clock).await;
    let other = p.issuer.mint(&other).unwrap();
    assert_eq!(fed.verify(&other).await.unwrap_err(), VerifyError::Audience);
}

/// A23: with every peer down (accepting connections, never answering),
/// `open` returns within 100 ms of the store being ready, a stored
/// document younger than `max_age` verifies peer tokens meanwhile, local
/// tokens verify through the `Verifier`, and verification does not wait
/// for the background refresh.
#[tokio::test]
async fn startup_does_not_wait_for_peers() {
    let _cpu = crate::share().await;
    let clock = ManualClock::starting_now();
    let p = peer(&clock).await;
    let shared = vault().await;
    // What another worker fetched an hour ago.
    let doc = String::from_utf8(p.issuer.jwks().body.to_vec()).unwrap();
    shared
        .save_peer_jwks(&p.url, &doc, clock.now() - 3600)
        .await
        .unwrap();
    // The peer's JWKS URL points at a black hole.
    let (hole, addr) = crate::common::listener().await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hole.accept().await {
            held.push(conn);
        }
    });
    let mut cfg = p.config();
    cfg.jwks_uri = format!("http://{addr}/jwks.json");
    let mut silent = peer(&clock).await.config();
    silent.jwks_uri.clone_from(&cfg.jwks_uri);

    let started = Instant::now();
    let fed = Federation::open(
        Arc::clone(&shared),
        vec![cfg, silent],
        PeerHttp::new().unwrap(),
        Arc::new(clock.clone()),
        options(),
    )
    .await
    .unwrap();
    let _refresher = fed.spawn_refresher(Duration::from_secs(900));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );

    let verifying = Instant::now();
    let verified = fed.verify(&p.token("alice", &[])).await.unwrap();
    assert_eq!(
        verified.origin,
        Origin::Peer {
            issuer: p.url.clone()
        }
    );
    assert!(verifying.elapsed() < Duration::from_millis(100));

    let own = Issuer::open(
        Arc::clone(&shared),
        IssuerConfig::new("https://broker.test", AUDIENCE),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let verifier = Verifier::new(own.clone(), Some(fed.clone())).unwrap();
    let local = own.mint(&own.claims("bob", "g-1")).unwrap();
    assert_eq!(verifier.verify(&local).await.unwrap().origin, Origin::Local);
    assert!(matches!(
        verifier
            .verify(&p.token("carol", &[]))
            .await
            .unwrap()
            .origin,
        Origin::Peer { .. }
    ));
    // A federation may not speak for our own issuer.
    let impostor = federation(
        Arc::clone(&shared),
        vec![broker_issuer::PeerConfig::new("https://broker.test")],
        &clock,
    )
    .await;
    assert!(Verifier::new(own, Some(impostor)).is_err());
    // Both background fetches time out (3 s) and are counted.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let stats = fed.stats();
    assert!(
        stats.iter().all(|s| s.fetches == 1 && s.fetch_errors == 1),
        "{stats:?}"
    );
}

/// A32: the peer client does TLS on the ring provider in a process whose
/// rustls also serves crates that rely on the process default (as mongodb
/// does, and sqlx with its ring feature): exactly one provider is compiled
/// in, so neither panics. A TLS handshake against a server that is not
/// TLS fails as a counted error.
#[tokio::test]
async fn one_rustls_provider_and_tls_failures_are_counted() {
    let _cpu = crate::share().await;
    let default_style = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    drop(default_style);
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());

    let (plain, addr) = crate::common::listener().await;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = plain.accept().await {
            use tokio::io::AsyncWriteExt as _;
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n\r\nnot tls").await;
        }
    });
    let clock = ManualClock::starting_now();
    let p = peer(&clock).await;
    let mut cfg = p.config();
    cfg.jwks_uri = format!("https://{addr}/jwks.json");
    let fed = federation(vault().await, vec![cfg], &clock).await;
    let token = p.token("alice", &[]);
    assert_eq!(
        fed.verify(&token).await.unwrap_err(),
        VerifyError::Unavailable
    );
    assert_eq!(fed.stats()[0].fetch_errors, 1);
}
