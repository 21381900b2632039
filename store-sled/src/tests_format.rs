//! The storage format at `setup`: recorded in `<ns>/meta` once, checked on
//! every setup; a newer (or unreadable) record is refused with a typed
//! `FormatError` and left alone; a namespace written before formats were
//! recorded (format 1, no `meta` tree) is recorded and reads as before.

use crate::{FORMAT_VERSION, SledStore};
use broker_core::{BrokerStore, FormatError, Namespace, SessionRecord, StoreError, unix_now};

fn open(dir: &tempfile::TempDir, ns: &str) -> SledStore {
    SledStore::open(dir.path())
        .expect("open")
        .with_namespace(Namespace::new(ns).expect("namespace"))
}

fn recorded(store: &SledStore) -> Option<Vec<u8>> {
    let meta = store
        .db()
        .open_tree(format!("{}/meta", store.namespace()))
        .expect("meta tree");
    meta.get("format").expect("read").map(|v| v.to_vec())
}

fn format_error(e: &StoreError) -> FormatError {
    FormatError::of(e)
        .unwrap_or_else(|| panic!("a FormatError, got {e:?}"))
        .clone()
}

#[tokio::test]
async fn setup_records_the_format_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, "fmt");
    assert_eq!(recorded(&store), None);
    store.setup().await.expect("setup");
    assert_eq!(
        recorded(&store),
        Some(FORMAT_VERSION.to_be_bytes().to_vec())
    );
    assert!(store.tree_names().contains(&"fmt/meta".to_owned()));
    store.setup().await.expect("setup again");
    // Dropping the namespace drops its record too; a new setup writes it.
    store.drop_namespace().await.expect("drop");
    assert_eq!(recorded(&store), None);
    store.setup().await.expect("setup after drop");
    assert_eq!(
        recorded(&store),
        Some(FORMAT_VERSION.to_be_bytes().to_vec())
    );
}

/// Fails before format versions: `setup` only opened the trees and
/// answered `Ok` whatever the namespace held.
#[tokio::test]
async fn setup_refuses_a_newer_format_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, "newer");
    store.setup().await.expect("setup");
    let meta = store.db().open_tree("newer/meta").expect("meta");
    let newer = (FORMAT_VERSION + 1).to_be_bytes();
    meta.insert("format", &newer).expect("plant");
    let err = store.setup().await.expect_err("a newer format");
    let format = format_error(&err);
    assert!(format.is_newer(), "{format:?}");
    assert_eq!(
        (format.store, format.found, format.supported),
        ("store-sled", Some(FORMAT_VERSION + 1), FORMAT_VERSION)
    );
    assert!(err.to_string().starts_with("setup"), "{err}");
    assert_eq!(recorded(&store), Some(newer.to_vec()), "left alone");

    // A record this crate never writes is not a version at all.
    meta.insert("format", b"v1".as_slice()).expect("plant");
    let format = format_error(&store.setup().await.expect_err("unreadable"));
    assert_eq!(format.found, None);
    assert!(!format.is_newer());
}

/// A namespace of an older version of this crate, which recorded no
/// format: the first setup records format 1, and its data reads as before.
#[tokio::test]
async fn a_namespace_from_before_format_versions_is_recorded_and_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, "old");
    store.setup().await.expect("setup");
    let now = unix_now();
    let s = SessionRecord {
        jti: "j".into(),
        sub: "alice".into(),
        expires_at: now + 600,
        auth_time: now,
        sealed: vec![1, 2, 3].into(),
    };
    store.save_session(&s).await.expect("save");
    store.create_record("rec", b"value").await.expect("record");
    // What the previous version left: the same trees, no `meta`.
    store.db().drop_tree("old/meta").expect("drop meta");
    assert_eq!(recorded(&store), None);
    drop(store);

    let store = open(&dir, "old");
    store.setup().await.expect("setup on a format-1 namespace");
    assert_eq!(recorded(&store), Some(1u32.to_be_bytes().to_vec()));
    assert_eq!(store.get_session("j").await.expect("get"), Some(s));
    assert_eq!(
        store.get_record("rec").await.expect("get"),
        Some(b"value".to_vec())
    );
}
