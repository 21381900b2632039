//! Namespace-wide operations: setup (indexes), health, stats, drop.

use std::time::Duration;

use broker_core::{Corruption, Result, StoreError, StoreStats};
use futures::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::IndexOptions;

use crate::documents::date;
use crate::{MongoStore, error, format, revocation};

/// The TTL index older versions kept on `<ns>_revocations`: the server
/// forgot markers on its own, without deleting the sessions they hide.
/// `setup` drops it.
pub(crate) const LEGACY_MARKER_TTL_INDEX: &str = "keep_until_ttl";

/// Server codes `setup` tolerates.
const NAMESPACE_NOT_FOUND: i32 = 26;
const INDEX_NOT_FOUND: i32 = 27;
const NAMESPACE_EXISTS: i32 = 48;

/// The storage format first (recorded, or checked: see `format.rs`).
/// Sessions: a TTL index on `expires_at` (expired sessions go without a
/// purge, by the server's clock) and an index on `sub`. Every collection is
/// created so raw tools list the whole namespace. The revocation markers
/// have no index beyond `_id`, and no TTL: the legacy one is dropped.
pub(crate) async fn setup(store: &MongoStore) -> Result<()> {
    const OP: &str = "setup";
    format::check(store, OP).await?;
    let ttl = IndexModel::builder()
        .keys(doc! { "expires_at": 1 })
        .options(
            IndexOptions::builder()
                .name("expires_at_ttl".to_owned())
                .expire_after(Duration::ZERO)
                .build(),
        )
        .build();
    let subject = IndexModel::builder()
        .keys(doc! { "sub": 1 })
        .options(IndexOptions::builder().name("sub".to_owned()).build())
        .build();
    store
        .run(OP, store.sessions.create_indexes([ttl, subject]))
        .await?;
    for name in [
        store.revocations.name(),
        store.records.name(),
        store.peers.name(),
    ] {
        match store.run_raw(OP, store.db.create_collection(name)).await? {
            Ok(()) => {}
            // Created earlier or by a concurrent setup.
            Err(e) if error::code(&e) == Some(NAMESPACE_EXISTS) => {}
            Err(e) => return Err(error::map(OP, e)),
        }
    }
    match store
        .run_raw(OP, store.revocations.drop_index(LEGACY_MARKER_TTL_INDEX))
        .await?
    {
        Ok(()) => Ok(()),
        Err(e) if matches!(error::code(&e), Some(INDEX_NOT_FOUND | NAMESPACE_NOT_FOUND)) => Ok(()),
        Err(e) => Err(error::map(OP, e)),
    }
}

pub(crate) async fn health(store: &MongoStore) -> Result<()> {
    store
        .run("health", store.db.run_command(doc! { "ping": 1 }))
        .await
        .map(|_| ())
}

pub(crate) async fn drop_namespace(store: &MongoStore) -> Result<()> {
    const OP: &str = "drop_namespace";
    store.run(OP, store.sessions.drop()).await?;
    store.run(OP, store.revocations.drop()).await?;
    store.run(OP, store.records.drop()).await?;
    store.run(OP, store.peers.drop()).await?;
    store.run(OP, format::meta(store).drop()).await
}

pub(crate) async fn stats(store: &MongoStore) -> Result<StoreStats> {
    const OP: &str = "stats";
    let now = date(store.clock.now());
    let live = doc! { "expires_at": { "$gt": now } };
    let live_sessions = store
        .run(OP, store.sessions.count_documents(live.clone()))
        .await?;
    let expired_sessions = store
        .run(
            OP,
            store
                .sessions
                .count_documents(doc! { "expires_at": { "$lte": now } }),
        )
        .await?;
    let pipeline = [
        doc! { "$match": live },
        doc! { "$group": { "_id": "$sub" } },
        doc! { "$count": "n" },
    ];
    let cursor = store.run(OP, store.sessions.aggregate(pipeline)).await?;
    let counted: Vec<Document> = store.run(OP, cursor.try_collect()).await?;
    let subjects = match counted.first().map(|d| d.get("n")) {
        None => 0,
        Some(Some(Bson::Int32(n))) => u64::try_from(*n).unwrap_or(0),
        Some(Some(Bson::Int64(n))) => u64::try_from(*n).unwrap_or(0),
        Some(Some(Bson::Double(n))) if *n >= 0.0 => *n as u64,
        Some(_) => {
            return Err(StoreError::corrupt(
                OP,
                Corruption::Malformed("subject count"),
            ));
        }
    };
    let peers = store.run(OP, store.peers.count_documents(doc! {})).await?;
    let records = store
        .run(OP, store.records.count_documents(doc! {}))
        .await?;
    let revocations = store
        .run(OP, store.revocations.count_documents(revocation::counted()))
        .await?;
    let mut stats = StoreStats::default();
    stats.live_sessions = live_sessions;
    stats.expired_sessions = expired_sessions;
    stats.subjects = Some(subjects);
    stats.peers = peers;
    stats.records = records;
    stats.revocations = revocations;
    Ok(stats)
}
