//! Create-once records and peer JWKS documents.

use broker_core::{Corruption, PeerJwks, Result, StoreError};
use futures::TryStreamExt;
use mongodb::bson::doc;
use mongodb::options::ReturnDocument;

use crate::documents::{PeerDoc, RecordDoc, binary};
use crate::{MongoStore, error};

/// `find_one_and_update` upsert with `$setOnInsert`: of racing callers one
/// inserts, the others read the winner's value.
pub(crate) async fn create(store: &MongoStore, name: &str, value: &[u8]) -> Result<Vec<u8>> {
    const OP: &str = "create_record";
    let upsert = store
        .records
        .find_one_and_update(
            doc! { "_id": name },
            doc! { "$setOnInsert": { "value": binary(value) } },
        )
        .upsert(true)
        .return_document(ReturnDocument::After);
    let stored = match store.run_raw(OP, upsert).await? {
        Ok(Some(doc)) => Some(doc),
        // Two upserts raced to insert and the other one won (MongoDB
        // reports duplicate key), or the server answered a racing upsert
        // with no document (SecantusDB does; see the README): read the
        // winner's value.
        Ok(None) => {
            store
                .run(OP, store.records.find_one(doc! { "_id": name }))
                .await?
        }
        Err(e) if error::is_duplicate_key(&e) => {
            store
                .run(OP, store.records.find_one(doc! { "_id": name }))
                .await?
        }
        Err(e) => return Err(error::map(OP, e)),
    };
    match stored {
        Some(doc) => Ok(doc.value.bytes),
        None => Err(StoreError::corrupt(
            OP,
            Corruption::Malformed("record vanished after its upsert"),
        )),
    }
}

pub(crate) async fn get(store: &MongoStore, name: &str) -> Result<Option<Vec<u8>>> {
    const OP: &str = "get_record";
    let found = store
        .run(OP, store.records.find_one(doc! { "_id": name }))
        .await?;
    Ok(found.map(|d| d.value.bytes))
}

/// Compare-and-set: `update_one` filtered on the old bytes.
pub(crate) async fn replace(
    store: &MongoStore,
    name: &str,
    expected: &[u8],
    value: &[u8],
) -> Result<bool> {
    const OP: &str = "replace_record";
    let res = store
        .run(
            OP,
            store.records.update_one(
                doc! { "_id": name, "value": binary(expected) },
                doc! { "$set": { "value": binary(value) } },
            ),
        )
        .await?;
    Ok(res.matched_count > 0)
}

pub(crate) async fn list(store: &MongoStore) -> Result<Vec<(String, Vec<u8>)>> {
    const OP: &str = "list_records";
    let cursor = store
        .run(OP, store.records.find(doc! {}).sort(doc! { "_id": 1 }))
        .await?;
    let docs: Vec<RecordDoc> = store.run(OP, cursor.try_collect()).await?;
    Ok(docs.into_iter().map(|d| (d.name, d.value.bytes)).collect())
}

pub(crate) async fn save_peer(store: &MongoStore, peer: &PeerJwks) -> Result<()> {
    const OP: &str = "save_peer";
    let doc = PeerDoc {
        issuer: peer.issuer.clone(),
        jwks: peer.jwks.clone(),
        fetched_at: peer.fetched_at,
    };
    store
        .run(
            OP,
            store
                .peers
                .replace_one(doc! { "_id": &peer.issuer }, &doc)
                .upsert(true),
        )
        .await?;
    Ok(())
}

pub(crate) async fn load_peers(store: &MongoStore) -> Result<Vec<PeerJwks>> {
    const OP: &str = "load_peers";
    let cursor = store
        .run(OP, store.peers.find(doc! {}).sort(doc! { "_id": 1 }))
        .await?;
    let docs: Vec<PeerDoc> = store.run(OP, cursor.try_collect()).await?;
    Ok(docs
        .into_iter()
        .map(|d| PeerJwks {
            issuer: d.issuer,
            jwks: d.jwks,
            fetched_at: d.fetched_at,
        })
        .collect())
}

pub(crate) async fn delete_peer(store: &MongoStore, issuer: &str) -> Result<bool> {
    const OP: &str = "delete_peer";
    let res = store
        .run(OP, store.peers.delete_one(doc! { "_id": issuer }))
        .await?;
    Ok(res.deleted_count > 0)
}
