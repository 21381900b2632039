//! What the restart binaries check beside the conformance case.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use broker_core::{BrokerStore, Namespace, Revocation, SessionRecord, StoreError, unix_now};

use crate::common::{RESTARTS, Topology};

/// Retry `f` while the store is unavailable (the restart), for up to 60 s.
async fn patiently<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

/// Revoke before the restart the conformance case runs, check after it.
pub async fn revocations_survive_the_restart(topology: Option<Topology>) {
    let Some(topology) = topology else { return };
    let ns = Namespace::random("rst").expect("namespace");
    let store = topology.open(&ns).await.expect("connect");
    store.setup().await.expect("setup");
    let now = unix_now();
    let session = |jti: &str, auth_time: i64| SessionRecord {
        jti: jti.into(),
        sub: "victim".into(),
        expires_at: now + 3600,
        auth_time,
        sealed: b"sealed".to_vec().into(),
    };
    store
        .save_session(&session("before", now - 10))
        .await
        .expect("save");
    let revocation = Revocation {
        sub: "victim".into(),
        revoked_at: now,
        keep_until: now + 3600,
    };
    assert_eq!(store.revoke_subject(&revocation).await.expect("revoke"), 1);

    let deadline = Instant::now() + Duration::from_secs(180);
    while RESTARTS.load(Ordering::SeqCst) == 0 {
        if Instant::now() > deadline {
            conformance::loud("SKIPPED revocations_survive_the_restart: no restart happened");
            topology.teardown(&ns).await.expect("teardown");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let listed = patiently("scan_revocations", || store.scan_revocations(None, 10)).await;
    assert_eq!(
        listed.revocations,
        vec![revocation],
        "the marker after the restart"
    );
    let late = session("late", now - 5);
    patiently("save", || store.save_session(&late)).await;
    assert_eq!(
        patiently("get", || store.get_session("late")).await,
        None,
        "a session the marker hides was stored after the restart"
    );
    let fresh = session("fresh", now + 1);
    patiently("save", || store.save_session(&fresh)).await;
    let later = Revocation::at("victim", now + 1);
    let n = patiently("revoke", || store.revoke_subject(&later)).await;
    assert_eq!(n, 1, "a revoke after the restart");
    topology.teardown(&ns).await.expect("teardown");
}
