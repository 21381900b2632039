//! White-box tests of revocation, purge and namespace lifecycle across
//! store handles: what the shared suite cannot see from outside (the raw
//! trees), with time moved by a `ManualClock` instead of sleeping.

use std::sync::Arc;

use broker_core::clock::{Clock as _, ManualClock};
use broker_core::{BrokerStore, Namespace, Revocation, SessionRecord, unix_now};

use crate::codec;
use sled::IVec;

use super::*;
use crate::tests::check_indexes;

fn session(jti: &str, sub: &str, expires_at: i64, auth_time: i64) -> SessionRecord {
    SessionRecord {
        jti: jti.into(),
        sub: sub.into(),
        expires_at,
        auth_time,
        sealed: format!("sealed-{jti}").into_bytes().into(),
    }
}

fn temp_db() -> (tempfile::TempDir, sled::Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::open(dir.path().join("db")).expect("open");
    (dir, db)
}

/// How many sessions of `sub` the raw sessions tree holds.
fn stored_of(store: &SledStore, sub: &str) -> usize {
    let t = store.trees("t").expect("trees");
    t.sessions
        .iter()
        .values()
        .filter(|v| {
            let bytes = v.as_ref().expect("read");
            codec::decode_session("t", "x".into(), bytes).is_ok_and(|s| s.sub == sub)
        })
        .count()
}

/// Two handles built separately on one database and namespace (not
/// clones: each has its own opened trees). One drops the namespace and
/// sets it up again; the other keeps working on the new trees, not the
/// dropped ones: what it saves and revokes is seen by the first.
#[tokio::test]
async fn a_handle_keeps_working_after_another_dropped_and_recreated_the_namespace() {
    let (_dir, db) = temp_db();
    let ns = Namespace::new("shared").expect("namespace");
    let one = SledStore::from_db(db.clone()).with_namespace(ns.clone());
    let two = SledStore::from_db(db.clone()).with_namespace(ns.clone());
    let clone_of_one = one.clone();
    let now = unix_now();
    let old = session("old", "olga", now + 3600, now - 5);
    one.save_session(&old).await.expect("save");
    assert_eq!(two.get_session("old").await.expect("get"), Some(old));

    one.drop_namespace().await.expect("drop");
    one.setup().await.expect("setup again");

    assert_eq!(two.get_session("old").await.expect("get"), None, "dropped");
    let new = session("new", "nina", now + 3600, now - 5);
    two.save_session(&new)
        .await
        .expect("save through the other handle");
    assert_eq!(
        one.get_session("new").await.expect("get"),
        Some(new.clone()),
        "a save through the other handle went to the dropped trees"
    );
    assert_eq!(
        clone_of_one.get_session("new").await.expect("get"),
        Some(new)
    );
    let rv = Revocation {
        sub: "nina".into(),
        revoked_at: now,
        keep_until: now + 3600,
    };
    assert_eq!(two.revoke_subject(&rv).await.expect("revoke"), 1);
    assert_eq!(one.stats().await.expect("stats").revocations, 1);
    assert_eq!(one.get_session("new").await.expect("get"), None);
    assert_eq!(
        one.scan_revocations(None, 10)
            .await
            .expect("scan")
            .revocations,
        vec![rv]
    );
    check_indexes(&one);
    check_indexes(&two);
}

/// A crash between a writer's steps leaves index entries without their
/// session (entries go in first). Purge sweeps them, and `stats` stops
/// counting the one in the expiry index as a live session.
#[tokio::test]
async fn purge_sweeps_index_entries_a_crash_left_behind() {
    let (_dir, db) = temp_db();
    let store = SledStore::from_db(db.clone());
    let now = unix_now();
    let kept = session("kept", "kim", now + 3600, now - 5);
    store.save_session(&kept).await.expect("save");
    {
        // As a crash would leave them: the entries of a session that was
        // never written, and a subject entry naming another subject.
        let t = store.trees("plant").expect("trees");
        t.by_expiry
            .insert(keys::timed(now + 3600, "ghost"), IVec::default())
            .expect("plant");
        t.by_subject
            .insert(keys::subject("gus", "ghost"), IVec::default())
            .expect("plant");
        t.by_subject
            .insert(keys::subject("not-kim", "kept"), IVec::default())
            .expect("plant");
    }
    // A handle opened after the "crash", as a restarted process would.
    let store = SledStore::from_db(db);
    assert_eq!(store.stats().await.expect("stats").live_sessions, 2);
    assert_eq!(store.purge_expired().await.expect("purge"), 0);
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        stats.live_sessions, 1,
        "a stale expiry entry is still counted"
    );
    assert_eq!(stats.subjects, Some(1));
    let t = store.trees("t").expect("trees");
    assert_eq!(t.by_subject.len(), 1, "stale subject entries were left");
    assert_eq!(t.by_expiry.len(), 1);
    assert_eq!(store.get_session("kept").await.expect("get"), Some(kept));
    check_indexes(&store);
}

/// Revocations racing saves of their subject on other handles: a session
/// the revocation hides is never stored (not just hidden).
#[test]
fn a_save_racing_a_revocation_is_never_stored() {
    let (_dir, db) = temp_db();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let revoker =
            Arc::new(SledStore::from_db(db.clone()).with_durability(Durability::Periodic));
        let saver = Arc::new(SledStore::from_db(db.clone()).with_durability(Durability::Periodic));
        let now = unix_now();
        for round in 0..100 {
            let sub = format!("racer-{round}");
            let saves: Vec<_> = (0..4)
                .map(|i| {
                    let saver = Arc::clone(&saver);
                    let s = session(&format!("{sub}-{i}"), &sub, now + 3600, now - 5);
                    tokio::spawn(async move { saver.save_session(&s).await })
                })
                .collect();
            let rv = Revocation {
                sub: sub.clone(),
                revoked_at: now,
                keep_until: now + 3600,
            };
            revoker.revoke_subject(&rv).await.expect("revoke");
            for s in saves {
                s.await.expect("no panic").expect("save");
            }
            assert_eq!(
                stored_of(&revoker, &sub),
                0,
                "round {round}: a session the revocation hides was stored"
            );
        }
        check_indexes(&revoker);
    });
}

/// Time moves only with the store's `ManualClock`. A session expires
/// exactly at `expires_at`; a marker hides sessions until its keep time
/// and counts in `stats` until purged; purge forgets it only together
/// with the sessions it hides (here one planted as an older version could
/// have stored it).
#[tokio::test]
async fn the_injected_clock_decides_expiry_revocation_and_purge() {
    let (_dir, db) = temp_db();
    let t0 = unix_now() + 1_000_000; // far from the system clock on purpose
    let clock = ManualClock::new(t0);
    let store = SledStore::from_db(db).with_clock(Arc::new(clock.clone()));

    let s = session("short", "sam", t0 + 60, t0 - 5);
    store.save_session(&s).await.expect("save");
    clock.set(t0 + 59);
    assert_eq!(store.get_session("short").await.expect("get"), Some(s));
    clock.set(t0 + 60);
    assert_eq!(store.get_session("short").await.expect("get"), None);
    assert_eq!(store.stats().await.expect("stats").expired_sessions, 1);
    assert_eq!(store.purge_expired().await.expect("purge"), 1);

    clock.set(t0 + 100);
    let rv = Revocation {
        sub: "rita".into(),
        revoked_at: t0 + 100,
        keep_until: t0 + 200,
    };
    store.revoke_subject(&rv).await.expect("revoke");
    store
        .save_session(&session("refused", "rita", t0 + 9999, t0 + 100))
        .await
        .expect("save");
    assert_eq!(stored_of(&store, "rita"), 0, "a hidden save was stored");
    {
        let planted = session("planted", "rita", t0 + 9999, t0 + 50);
        let t = store.trees("plant").expect("trees");
        let _lock = store.session_lock("planted");
        sessions::put_locked(
            &t,
            "plant",
            &planted,
            &codec::encode_session(&planted),
            false,
            clock.now(),
        )
        .expect("plant");
    }
    assert_eq!(store.get_session("planted").await.expect("get"), None);
    assert_eq!(
        store
            .scan_revocations(None, 10)
            .await
            .expect("scan")
            .revocations,
        vec![rv]
    );

    clock.set(t0 + 200);
    assert!(
        store
            .scan_revocations(None, 10)
            .await
            .expect("scan")
            .revocations
            .is_empty()
    );
    assert_eq!(store.stats().await.expect("stats").revocations, 1);
    assert_eq!(
        store.purge_expired().await.expect("purge"),
        1,
        "the planted session"
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.revocations, stats.live_sessions), (0, 0));
    assert_eq!(store.get_session("planted").await.expect("get"), None);

    let back = session("back", "rita", t0 + 9999, t0 + 50);
    store.save_session(&back).await.expect("save");
    assert_eq!(store.get_session("back").await.expect("get"), Some(back));
    check_indexes(&store);
}

/// `sibling` shares the database, clock and durability, in another
/// namespace (its own trees).
#[tokio::test]
async fn a_sibling_shares_db_clock_and_durability_in_another_namespace() {
    let (_dir, db) = temp_db();
    let clock = ManualClock::new(unix_now() + 500_000);
    let store = SledStore::from_db(db)
        .with_clock(Arc::new(clock.clone()))
        .with_durability(Durability::Periodic);
    let other = Namespace::new("other_ns").expect("namespace");
    let sibling = store.sibling(other.clone());
    assert_eq!(sibling.namespace(), &other);
    assert_eq!(sibling.clock().now(), clock.now());
    assert!(format!("{sibling:?}").contains("Periodic"), "{sibling:?}");
    sibling.setup().await.expect("setup");
    let now = clock.now();
    sibling
        .save_session(&session("sib", "sue", now + 60, now - 5))
        .await
        .expect("save");
    assert_eq!(store.get_session("sib").await.expect("get"), None);
    assert!(sibling.get_session("sib").await.expect("get").is_some());
    assert!(
        store
            .db()
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == b"other_ns/sessions"),
        "the sibling's trees are in the same database"
    );
    clock.advance(60);
    assert_eq!(sibling.get_session("sib").await.expect("get"), None);
}
