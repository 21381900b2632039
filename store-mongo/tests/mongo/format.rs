//! The storage format at `setup`: recorded in `<ns>_meta` once, checked on
//! every setup; a newer format is refused with a typed `FormatError` before
//! anything else changes; a namespace from before format versions (no
//! `<ns>_meta`) is recorded as format 1 and reads as before.

use crate::common;
use broker_core::{BrokerStore, FormatError, Namespace, SessionRecord, StoreError, unix_now};
use store_mongo::mongodb::Database;
use store_mongo::mongodb::bson::{Bson, Document, doc};
use store_mongo::{FORMAT_VERSION, MongoStore};

async fn fresh() -> Option<(MongoStore, Database)> {
    let url = common::mongo_url().await?;
    let store = MongoStore::connect(&url)
        .await
        .expect("client")
        .with_namespace(Namespace::random("mf").expect("namespace"));
    let db = store.database().clone();
    Some((store, db))
}

fn meta(store: &MongoStore, db: &Database) -> store_mongo::mongodb::Collection<Document> {
    db.collection(&store.collection_names()[4])
}

async fn recorded(store: &MongoStore, db: &Database) -> Option<Bson> {
    meta(store, db)
        .find_one(doc! { "_id": "format" })
        .await
        .expect("read the format record")
        .and_then(|d| d.get("version").cloned())
}

async fn drop_all(store: &MongoStore, db: &Database) {
    for name in store.collection_names() {
        db.collection::<Document>(&name).drop().await.expect("drop");
    }
}

fn format_error(e: &StoreError) -> FormatError {
    FormatError::of(e)
        .unwrap_or_else(|| panic!("a FormatError, got {e:?}"))
        .clone()
}

/// Fails before format versions: `setup` only created indexes and
/// collections, whatever the namespace held.
#[tokio::test]
async fn setup_refuses_a_newer_format_and_changes_nothing() {
    let Some((store, db)) = fresh().await else {
        return;
    };
    store.setup().await.expect("setup");
    assert_eq!(
        recorded(&store, &db).await,
        Some(Bson::Int32(FORMAT_VERSION as i32))
    );
    let newer = FORMAT_VERSION as i32 + 1;
    meta(&store, &db)
        .update_one(
            doc! { "_id": "format" },
            doc! { "$set": { "version": newer } },
        )
        .await
        .expect("plant a newer format");
    // A newer version may have done without the sessions' indexes.
    let sessions = db.collection::<Document>(&store.collection_names()[0]);
    sessions.drop().await.expect("drop sessions");
    let err = store.setup().await.expect_err("a newer format");
    assert!(err.to_string().starts_with("setup"), "{err}");
    let format = format_error(&err);
    assert!(format.is_newer(), "{format:?}");
    assert_eq!(
        (format.store, format.found, format.supported),
        ("store-mongo", Some(newer as u32), FORMAT_VERSION)
    );
    assert_eq!(recorded(&store, &db).await, Some(Bson::Int32(newer)));
    let indexes: Vec<String> = sessions.list_index_names().await.unwrap_or_default();
    assert!(
        !indexes.iter().any(|i| i == "expires_at_ttl"),
        "nothing re-created: {indexes:?}"
    );

    // A version no release writes is not one at all.
    meta(&store, &db)
        .update_one(
            doc! { "_id": "format" },
            doc! { "$set": { "version": "one" } },
        )
        .await
        .unwrap();
    let format = format_error(&store.setup().await.expect_err("unreadable"));
    assert_eq!(format.found, None);
    drop_all(&store, &db).await;
}

/// A namespace of an older version of this crate, which recorded no
/// format: the first setup records format 1, and its data reads as before.
#[tokio::test]
async fn a_namespace_from_before_format_versions_is_recorded_and_reads() {
    let Some((store, db)) = fresh().await else {
        return;
    };
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
    // What the previous version left: the same collections, no `<ns>_meta`.
    meta(&store, &db).drop().await.expect("drop meta");
    assert_eq!(recorded(&store, &db).await, None);

    store.setup().await.expect("setup on a format-1 namespace");
    assert_eq!(recorded(&store, &db).await, Some(Bson::Int32(1)));
    assert_eq!(store.get_session("j").await.expect("get"), Some(s));
    // Concurrent setups agree on one record.
    let again: Vec<_> = futures::future::join_all((0..8).map(|_| store.setup())).await;
    assert!(again.iter().all(Result::is_ok), "{again:?}");
    store.drop_namespace().await.expect("drop");
    assert_eq!(
        recorded(&store, &db).await,
        None,
        "dropped with the namespace"
    );
}
