//! Federation faults (BROKER.md §6 A21). The test measures the runtime's
//! responsiveness, so it holds the process's CPU alone (`crate::alone`):
//! other tests' RSA key generation would otherwise be measured too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Reply, federation, options, peer, vault};
use broker_core::ManualClock;
use broker_issuer::VerifyError;

/// A21: each bad answer (65 KiB, an endless body, invalid JSON, 5xx, a
/// redirect, only an RSA-1024 key, only `use: enc` keys, private key
/// members, 4 s late) is a counted fetch error with the cooldown applied;
/// the verification answers 401 within timeout + 100 ms; no panic; and a
/// 1 ms timer on the same single-threaded runtime is never 50 ms late.
#[tokio::test(flavor = "current_thread")]
async fn bad_documents_are_counted_errors_and_the_runtime_stays_responsive() {
    let _cpu = crate::alone().await;
    let clock = ManualClock::starting_now();
    let p = peer(&clock).await;
    let live = p.jwks();
    let kid = live["keys"][0]["kid"].as_str().unwrap().to_owned();
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut doc = live.clone();
        edit(&mut doc["keys"][0]);
        serde_json::to_vec(&doc).unwrap()
    };
    let mut padded = live.clone();
    padded["padding"] = "x".repeat(65 * 1024).into();
    let rsa1024 = serde_json::json!({"keys": [{
        "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "e": "AQAB",
        "n": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [0xc5u8; 128]),
    }]});
    let cases: Vec<(&str, Reply, u64)> = vec![
        (
            "65 KiB",
            Reply::Fixed(200, serde_json::to_vec(&padded).unwrap()),
            0,
        ),
        ("endless body", Reply::Endless, 0),
        (
            "invalid JSON",
            Reply::Fixed(200, b"{\"keys\": [".to_vec()),
            0,
        ),
        ("503", Reply::Fixed(503, b"{}".to_vec()), 0),
        ("redirect", Reply::Redirect, 0),
        (
            "RSA-1024",
            Reply::Fixed(200, serde_json::to_vec(&rsa1024).unwrap()),
            1,
        ),
        (
            "use: enc",
            Reply::Fixed(200, with(&|k| k["use"] = "enc".into())),
            1,
        ),
        (
            "private members",
            Reply::Fixed(200, with(&|k| k["d"] = "AQAB".into())),
            0,
        ),
        ("4 s late", Reply::Slow(Duration::from_secs(4)), 0),
    ];
    let token = p.token("alice", &[]);
    let limit = options().fetch_timeout + Duration::from_millis(100);
    // Started after the setup (the peer's RSA key generation blocks).
    let lateness = Arc::new(AtomicU64::new(0));
    let probe = {
        let lateness = Arc::clone(&lateness);
        tokio::spawn(async move {
            loop {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                let late = t.elapsed().saturating_sub(Duration::from_millis(1));
                lateness.fetch_max(late.as_micros() as u64, Ordering::Relaxed);
            }
        })
    };
    for (name, reply, dropped) in cases {
        // Only the late answer may take the timeout: the others (an
        // endless body too) are refused as soon as they are seen.
        let bound = match reply {
            Reply::Slow(_) => limit,
            _ => Duration::from_secs(1),
        };
        p.set(reply);
        let before = p.hits();
        let fed = federation(vault().await, vec![p.config()], &clock).await;
        let started = Instant::now();
        let refused = fed.verify(&token).await.unwrap_err();
        assert!(started.elapsed() < bound, "{name}: {:?}", started.elapsed());
        assert_eq!(refused, VerifyError::Unavailable, "{name}");
        let stats = &fed.stats()[0];
        assert_eq!(
            (stats.fetches, stats.fetch_errors, stats.keys),
            (1, 1, 0),
            "{name}"
        );
        assert_eq!(stats.keys_dropped, dropped, "{name}");
        assert!(
            stats.kids.is_empty() && stats.last_error.is_some(),
            "{name}"
        );
        // Cooldown: the next verification fetches nothing, answers at once.
        let again = Instant::now();
        assert!(fed.verify(&token).await.is_err(), "{name}");
        assert!(again.elapsed() < Duration::from_millis(100), "{name}");
        assert_eq!(p.hits(), before + 1, "{name}: one request");
        assert_eq!(fed.stats()[0].fetches, 1, "{name}");
    }
    probe.abort();
    let late = Duration::from_micros(lateness.load(Ordering::Relaxed));
    assert!(
        late < Duration::from_millis(50),
        "the 1 ms timer was {late:?} late"
    );
}
