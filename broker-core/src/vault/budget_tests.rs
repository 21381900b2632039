//! SECURITY.md requirements 8 and 17: the nonce budget is counted per key,
//! across every namespace of a database.

use super::tests::{key, session, vault};
use super::*;
use crate::Namespace;
use crate::memory::MemoryStore;

/// The counters' store on the same database.
fn counters(store: &MemoryStore) -> MemoryStore {
    store.with_namespace(Namespace::new(KEY_BUDGET_NAMESPACE).unwrap())
}

/// One raw key sealing in two namespaces of one database draws on one
/// budget: the seals of both together stop at the limit.
#[tokio::test]
async fn one_key_in_two_namespaces_shares_one_budget() {
    let store = MemoryStore::new();
    let k = key(9).id();
    counters(&store)
        .create_record(
            &format!("{NONCE_COUNTER_PREFIX}{k}"),
            &(NONCE_LIMIT - 2).to_be_bytes(),
        )
        .await
        .unwrap();
    let a = vault(
        &store.with_namespace(Namespace::new("app_a").unwrap()),
        KeyConfig::new(key(9)),
    )
    .await
    .unwrap();
    let b = vault(
        &store.with_namespace(Namespace::new("app_b").unwrap()),
        KeyConfig::new(key(9)),
    )
    .await
    .unwrap();
    let mut sealed = 0;
    for i in 0..4 {
        for v in [&a, &b] {
            match v.save_session(&session(&format!("j{i}"), "s")).await {
                Ok(()) => sealed += 1,
                Err(StoreError::KeyExhausted { .. }) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
    }
    assert_eq!(
        sealed, 2,
        "two namespaces sealed {sealed} times past limit - 2"
    );
}

/// Dropping and re-creating a namespace does not reset its key's count.
#[tokio::test]
async fn a_recreated_namespace_keeps_its_keys_count() {
    let store = MemoryStore::new().with_namespace(Namespace::new("app").unwrap());
    let k = key(9).id();
    counters(&store)
        .create_record(
            &format!("{NONCE_COUNTER_PREFIX}{k}"),
            &(NONCE_LIMIT - 1).to_be_bytes(),
        )
        .await
        .unwrap();
    let v = vault(&store, KeyConfig::new(key(9))).await.unwrap();
    v.save_session(&session("a", "s")).await.unwrap();
    store.drop_namespace().await.unwrap();
    let again = vault(&store, KeyConfig::new(key(9))).await.unwrap();
    let err = again.save_session(&session("b", "s")).await.unwrap_err();
    assert!(matches!(err, StoreError::KeyExhausted { .. }), "{err:?}");
}

/// A counter kept in the namespace itself (before the budget moved to
/// [`KEY_BUDGET_NAMESPACE`]) still counts.
#[tokio::test]
async fn a_counter_in_the_namespace_still_counts() {
    let store = MemoryStore::new();
    let k = key(9).id();
    store
        .create_record(
            &format!("{NONCE_COUNTER_PREFIX}{k}"),
            &(NONCE_LIMIT - 1).to_be_bytes(),
        )
        .await
        .unwrap();
    let v = vault(&store, KeyConfig::new(key(9))).await.unwrap();
    v.save_session(&session("a", "s")).await.unwrap();
    let err = v.save_session(&session("b", "s")).await.unwrap_err();
    assert!(matches!(err, StoreError::KeyExhausted { .. }), "{err:?}");
}
