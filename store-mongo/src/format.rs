//! The storage format of a namespace: its collections and documents (see
//! the crate docs), versioned by [`FORMAT_VERSION`], recorded in the
//! collection `<ns>_meta` as `{ _id: "format", version }` by the first
//! `setup` and checked by every later one, before `setup` changes anything
//! else.
//!
//! A namespace with no record (made before format versions) is format 1,
//! the layout this crate has always written. MongoDB gives `setup` no
//! lock: the record is written once (`$setOnInsert` upsert) and read back,
//! so concurrent setups agree; a migration added later must be idempotent.

use broker_core::{FormatError, Namespace, Result, StoreError};
use mongodb::Collection;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;

use crate::{MongoStore, collection, error};

/// The storage format this version of the crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The oldest storage format `setup` migrates in place.
const OLDEST_MIGRATED: u32 = 1;
/// The name [`FormatError`]s carry.
const STORE: &str = "store-mongo";
/// The `_id` of the format record.
const FORMAT_ID: &str = "format";

/// The name of the collection of the format record.
pub(crate) fn meta_name(namespace: &Namespace) -> String {
    format!("{}_meta", namespace.as_str())
}

/// The collection of the format record.
pub(crate) fn meta(store: &MongoStore) -> Collection<Document> {
    collection(&store.db, &meta_name(&store.namespace))
}

/// Record [`FORMAT_VERSION`] unless a format is recorded, and check what
/// is: a newer or unknown one fails with a [`FormatError`].
pub(crate) async fn check(store: &MongoStore, op: &'static str) -> Result<()> {
    let meta = meta(store);
    let refused = |e: FormatError| StoreError::backend(op, e);
    let found = match store
        .run(op, meta.find_one(doc! { "_id": FORMAT_ID }))
        .await?
    {
        Some(record) => Some(version(&record).map_err(refused)?),
        None => None,
    };
    if found == Some(FORMAT_VERSION) {
        return Ok(());
    }
    // Before versions: format 1. Migrations from there (none yet) go here,
    // then the record moves to FORMAT_VERSION.
    let upsert = meta
        .find_one_and_update(
            doc! { "_id": FORMAT_ID },
            doc! { "$setOnInsert": { "version": FORMAT_VERSION as i32 } },
        )
        .upsert(true)
        .return_document(ReturnDocument::After);
    let stored = match store.run_raw(op, upsert).await? {
        Ok(Some(record)) => Some(record),
        // A concurrent setup inserted it first (duplicate key), or the
        // server answered the racing upsert with no document: read it.
        Ok(None) => None,
        Err(e) if error::is_duplicate_key(&e) => None,
        Err(e) => return Err(error::map(op, e)),
    };
    let stored = match stored {
        Some(record) => Some(record),
        None => {
            store
                .run(op, meta.find_one(doc! { "_id": FORMAT_ID }))
                .await?
        }
    };
    match stored.as_ref().map(version) {
        Some(Ok(FORMAT_VERSION)) => Ok(()),
        Some(Err(e)) => Err(refused(e)),
        _ => Err(refused(FormatError::unreadable(STORE, FORMAT_VERSION))),
    }
}

/// The version a format record holds, if this version can use it.
fn version(record: &Document) -> std::result::Result<u32, FormatError> {
    let found = match record.get("version") {
        Some(Bson::Int32(v)) => u32::try_from(*v).ok(),
        Some(Bson::Int64(v)) => u32::try_from(*v).ok(),
        _ => None,
    }
    .ok_or_else(|| FormatError::unreadable(STORE, FORMAT_VERSION))?;
    FormatError::check(STORE, found, OLDEST_MIGRATED, FORMAT_VERSION)
}
