//! Tests of opening (refused opens write nothing, passphrase limits) and of
//! re-encryption (retiring keys only when safe).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::TryStreamExt as _;

use super::tests::{key, session, vault};
use super::*;
use crate::ext::BrokerStoreExt as _;
use crate::keys::KeySource;
use crate::memory::MemoryStore;
use crate::record::unix_now;

/// SECURITY.md requirement 18: a rotation refused because the old key is
/// wrong registers nothing (today the new key's check was written, and
/// every later restart with the right keys failed with `KeyInUse`).
#[tokio::test]
async fn refused_open_or_rotation_writes_nothing() {
    let store = MemoryStore::new();
    vault(&store, KeyConfig::new(key(1))).await.unwrap();
    let before = store.list_records().await.unwrap();
    let attempts = [
        (
            "rotation from a wrong old key",
            KeyConfig::new(key(9)).rotate_to(key(2)),
        ),
        (
            "rotation to a passphrase from a wrong old key",
            KeyConfig::new(key(9)).rotate_to(KeySource::Passphrase(
                "a new passphrase, long enough".to_owned().into(),
            )),
        ),
        (
            "a passphrase on a store of raw keys",
            KeyConfig::passphrase("not this store's passphrase".to_owned()),
        ),
        (
            "an unknown older key",
            KeyConfig::new(key(1)).with_older(key(8)),
        ),
    ];
    for (what, keys) in attempts {
        let err = vault(&store, keys).await.unwrap_err();
        assert!(
            matches!(err, StoreError::WrongKey { .. }),
            "{what}: {err:?}"
        );
        assert_eq!(
            store.list_records().await.unwrap(),
            before,
            "{what} was refused but wrote records"
        );
    }
    // One typo must not lock the workers out: the right key still opens.
    vault(&store, KeyConfig::new(key(1))).await.unwrap();
}

/// SECURITY.md requirement 19: an empty or short passphrase is refused
/// before any I/O; length counts characters, not bytes.
#[tokio::test]
async fn empty_and_short_passphrases_are_refused_before_any_io() {
    let store = MemoryStore::new();
    for short in ["", " ", "short", "elevenchars", "ünïcödé-pa"] {
        for keys in [
            KeyConfig::passphrase(short.to_owned()),
            KeyConfig::new(key(1)).with_older(KeySource::Passphrase(short.to_owned().into())),
        ] {
            let err = vault(&store, keys).await.unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidKey { .. }),
                "{short:?}: {err:?}"
            );
            assert!(err.to_string().contains("12 characters"), "{err}");
        }
    }
    assert!(
        store.list_records().await.unwrap().is_empty(),
        "I/O before the check"
    );
    vault(&store, KeyConfig::passphrase("twelve chars".to_owned()))
        .await
        .unwrap();
    let other = MemoryStore::new();
    vault(&other, KeyConfig::passphrase("ünïcödé-pass".to_owned()))
        .await
        .unwrap();
}

/// SECURITY.md requirement 18: once a rekey retired a key, a worker still
/// sealing with it fails loudly instead of writing sessions nobody can
/// open, and opening with it as the primary is refused.
#[tokio::test]
async fn sealing_under_a_retired_key_is_refused() {
    let store = MemoryStore::new();
    let old = vault(&store, KeyConfig::new(key(1))).await.unwrap();
    old.save_session(&session("a", "s")).await.unwrap();
    let rotated = vault(&store, KeyConfig::new(key(1)).rotate_to(key(2)))
        .await
        .unwrap();
    let report = rotated.rekey(|_| {}).await.unwrap();
    assert_eq!(report.retired_keys, vec![key(1).id()]);
    match old.save_session(&session("b", "s")).await {
        Err(StoreError::KeyRetired { key_id, .. }) => assert_eq!(key_id, key(1).id()),
        other => panic!("a retired key sealed: {other:?}"),
    }
    assert!(store.get_session("b").await.unwrap().is_none());
    match vault(&store, KeyConfig::new(key(1)).with_older(key(2))).await {
        Err(StoreError::KeyRetired { key_id, .. }) => assert_eq!(key_id, key(1).id()),
        other => panic!("a retired key opened as the primary: {other:?}"),
    }
}

/// One unreadable row is counted and reported; the run goes on.
#[tokio::test]
async fn rekey_counts_an_unreadable_row_and_carries_on() {
    let store = MemoryStore::new();
    let old = vault(&store, KeyConfig::new(key(1))).await.unwrap();
    for i in 0..10 {
        old.save_session(&session(&format!("j{i}"), "s"))
            .await
            .unwrap();
    }
    let mut bad = store.get_session("j0").await.unwrap().unwrap();
    bad.jti = "moved".into();
    store.save_session(&bad).await.unwrap();
    let rotated = vault(&store, KeyConfig::new(key(1)).rotate_to(key(2)))
        .await
        .unwrap();
    let report = rotated.rekey(|_| {}).await.unwrap();
    assert_eq!(report.sessions_unreadable, 1, "{report:?}");
    assert_eq!(report.sessions_resealed, 10, "{report:?}");
}

/// Sessions a revocation hides are not returned by a scan; the rekey purges
/// them (contract rule 11 under issue 15: purge deletes what a live marker
/// hides) instead of leaving them under the old key forever.
#[tokio::test]
async fn rekey_handles_sessions_hidden_by_a_revocation() {
    let store = MemoryStore::new();
    let old = vault(&store, KeyConfig::new(key(1))).await.unwrap();
    let mut hidden = session("hidden", "alice");
    hidden.auth_time = unix_now() - 100;
    old.save_session(&hidden).await.unwrap();
    old.revoke_subject("alice").await.unwrap();
    // A refresh that was in flight saves it again: stored, but hidden.
    old.save_session(&hidden).await.unwrap();
    assert!(old.get_session("hidden").await.unwrap().is_none());
    let rotated = vault(&store, KeyConfig::new(key(1)).rotate_to(key(2)))
        .await
        .unwrap();
    rotated.rekey(|_| {}).await.unwrap();
    assert_eq!(
        store.stats().await.unwrap().live_sessions,
        0,
        "a hidden session was left under the retired key"
    );
}

/// Writers still sealing with the old key while a rekey runs: they fail
/// with `KeyRetired` once it closes the key, and the run ends with every
/// stored session readable by the new key alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_with_writers_on_the_old_key_leaves_nothing_unreadable() {
    let store = MemoryStore::new();
    let old = vault(&store, KeyConfig::new(key(1))).await.unwrap();
    for i in 0..200 {
        old.save_session(&session(&format!("seed{i}"), "s"))
            .await
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let v = vault(&store, KeyConfig::new(key(1))).await.unwrap();
        let stop = Arc::clone(&stop);
        writers.push(tokio::spawn(async move {
            let mut written = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = v
                    .save_session(&session(&format!("w{w}-{written}"), "s"))
                    .await
                {
                    return (written, Some(e));
                }
                written += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (written, None)
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rotated = vault(&store, KeyConfig::new(key(1)).rotate_to(key(2)))
        .await
        .unwrap();
    let report = rotated.rekey(|_| {}).await.unwrap();
    // Writers that did not fail keep writing a little longer, then stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.push(w.await.unwrap());
    }

    let new_only = vault(&store, KeyConfig::new(key(2)))
        .await
        .expect("the old key was retired");
    let (mut stored, mut unreadable) = (0u64, 0u64);
    let mut sessions = store.sessions(500);
    while let Some(r) = sessions.try_next().await.unwrap() {
        stored += 1;
        if new_only.open_session("check", &r).is_err() {
            unreadable += 1;
        }
    }
    let written: u64 = outcomes.iter().map(|(n, _)| n).sum();
    assert_eq!(
        unreadable, 0,
        "{unreadable} of {stored} sessions unreadable; {report:?}"
    );
    assert_eq!(stored, 200 + written, "sessions lost");
    assert_eq!(report.sessions_unreadable, 0);
    for (n, e) in &outcomes {
        assert!(
            matches!(e, Some(StoreError::KeyRetired { .. })),
            "a writer on the retired key did not fail loudly ({n} written): {e:?}"
        );
    }
}
