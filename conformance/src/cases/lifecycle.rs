//! Rules 1 to 3: setup, stores on a handed-in handle, namespaces and
//! dropping them.

use broker_core::{PeerJwks, Revocation, unix_now};
use futures::future::join_all;

use super::{live, ready, record, scan_all};
use crate::{CaseResult, Ctx, Failure, Outcome};

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
