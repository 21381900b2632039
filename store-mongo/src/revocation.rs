//! Revocation markers: revoke, purge, the marker scan.
//!
//! Markers only ever go away through purge (or `drop_namespace`), never on
//! their own (no TTL index), and purge deletes the sessions a marker hides
//! before it forgets the marker. Forgetting is in two steps: purge first
//! sets `forgotten_at` (from then on the marker is neither counted nor
//! listed, and hides only sessions saved while it was kept, which purge has
//! just deleted), and deletes the document itself
//! [`FORGOTTEN_MARKER_GRACE`] later, so a read that found a session just
//! before purge deleted it still finds the marker that hides it.

use std::time::Duration;

use broker_core::{Result, Revocation, RevocationPage, UnixTime, validate};
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};

use crate::documents::{MarkerDoc, date};
use crate::{MongoStore, PURGE_BATCH, error};

/// How long purge keeps a forgotten marker stored (not counted, not listed)
/// before deleting it. Reads that check a session against its marker
/// (get, take, scan) finish well within this: each is bounded by
/// [`crate::MAX_CHECKED_READ`]. Clock skew between workers that purge eats
/// into the margin.
pub const FORGOTTEN_MARKER_GRACE: Duration = Duration::from_secs(600);

/// Delete every session of the subject and remember the revocation. The
/// marker is written first and the sessions are deleted after it, so a
/// session saved meanwhile is either seen by the deletion or finds the
/// marker when it checks (see `sessions.rs`).
pub(crate) async fn revoke(store: &MongoStore, revocation: &Revocation) -> Result<u64> {
    const OP: &str = "revoke_subject";
    let sub = &revocation.sub;
    // A forgotten marker is replaced, not merged: the reference store has
    // no marker for this subject any more.
    store
        .run(
            OP,
            store.revocations.update_one(
                doc! { "_id": sub, "forgotten_at": { "$exists": true } },
                doc! {
                    "$set": {
                        "revoked_at": revocation.revoked_at,
                        "keep_until": revocation.keep_until,
                    },
                    "$unset": { "forgotten_at": "" },
                },
            ),
        )
        .await?;
    // Merge: the later revoked_at and the later keep_until win.
    let merge = || {
        store
            .revocations
            .update_one(
                doc! { "_id": sub },
                doc! {
                    "$max": {
                        "revoked_at": revocation.revoked_at,
                        "keep_until": revocation.keep_until,
                    },
                    // `keep_until_date` fed the TTL index of older versions.
                    "$unset": { "forgotten_at": "", "keep_until_date": "" },
                },
            )
            .upsert(true)
    };
    match store.run_raw(OP, merge()).await? {
        Ok(_) => {}
        // Two first revocations of a subject raced to insert; the marker
        // exists now, so merging again updates it.
        Err(e) if error::is_duplicate_key(&e) => {
            store.run(OP, merge()).await?;
        }
        Err(e) => return Err(error::map(OP, e)),
    }
    let res = store
        .run(OP, store.sessions.delete_many(doc! { "sub": sub }))
        .await?;
    Ok(res.deleted_count)
}

/// Expired sessions in batches; then, marker by marker in batches, the
/// sessions each marker hides, then forgetting the markers past their keep
/// time (only if unchanged since read, so a revocation merging in
/// meanwhile is not lost), then deleting markers forgotten more than
/// [`FORGOTTEN_MARKER_GRACE`] ago.
pub(crate) async fn purge(store: &MongoStore) -> Result<u64> {
    const OP: &str = "purge_expired";
    let now = store.clock.now();
    let mut removed = purge_expired_sessions(store, OP, now).await?;
    let mut after: Option<String> = None;
    loop {
        let mut filter = Document::new();
        if let Some(after) = &after {
            filter.insert("_id", doc! { "$gt": after });
        }
        let found = store
            .run(
                OP,
                store
                    .revocations
                    .find(filter)
                    .sort(doc! { "_id": 1 })
                    .limit(PURGE_BATCH),
            )
            .await?;
        let markers: Vec<MarkerDoc> = store.run(OP, found.try_collect()).await?;
        let Some(last) = markers.last() else {
            break;
        };
        after = Some(last.sub.clone());
        let hidden: Vec<Document> = markers.iter().map(MarkerDoc::hidden_sessions).collect();
        removed += store
            .run(OP, store.sessions.delete_many(doc! { "$or": hidden }))
            .await?
            .deleted_count;
        let past: Vec<Document> = markers
            .iter()
            .filter(|m| m.keep_until <= now && m.forgotten_at.is_none())
            .map(MarkerDoc::unchanged)
            .collect();
        if !past.is_empty() {
            store
                .run(
                    OP,
                    store.revocations.update_many(
                        doc! { "$or": past },
                        doc! { "$set": { "forgotten_at": now } },
                    ),
                )
                .await?;
        }
        if (markers.len() as i64) < PURGE_BATCH {
            break;
        }
    }
    let grace = i64::try_from(FORGOTTEN_MARKER_GRACE.as_secs()).unwrap_or(i64::MAX);
    store
        .run(
            OP,
            store
                .revocations
                .delete_many(doc! { "forgotten_at": { "$lte": now.saturating_sub(grace) } }),
        )
        .await?;
    Ok(removed)
}

/// Delete sessions whose `expires_at` is at or before `now`, in batches.
async fn purge_expired_sessions(
    store: &MongoStore,
    op: &'static str,
    now: UnixTime,
) -> Result<u64> {
    let expired = doc! { "expires_at": { "$lte": date(now) } };
    let ids = store.sessions.clone_with_type::<Document>();
    let mut removed = 0;
    loop {
        let cursor = store
            .run(
                op,
                ids.find(expired.clone())
                    .projection(doc! { "_id": 1 })
                    .limit(PURGE_BATCH),
            )
            .await?;
        let batch: Vec<mongodb::bson::Bson> = store
            .run(op, cursor.try_collect::<Vec<Document>>())
            .await?
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        if batch.is_empty() {
            break;
        }
        let full = batch.len() as i64 == PURGE_BATCH;
        let mut filter = expired.clone();
        filter.insert("_id", doc! { "$in": batch });
        removed += store
            .run(op, store.sessions.delete_many(filter))
            .await?
            .deleted_count;
        if !full {
            break;
        }
    }
    Ok(removed)
}

/// Kept markers, not forgotten, in subject order.
pub(crate) async fn scan(
    store: &MongoStore,
    cursor: Option<&str>,
    limit: usize,
) -> Result<RevocationPage> {
    const OP: &str = "scan_revocations";
    let mut filter = doc! {
        "keep_until": { "$gt": store.clock.now() },
        "forgotten_at": { "$exists": false },
    };
    if let Some(after) = cursor {
        validate::sub(OP, after)?;
        filter.insert("_id", doc! { "$gt": after });
    }
    let found = store
        .run(
            OP,
            store
                .revocations
                .find(filter)
                .sort(doc! { "_id": 1 })
                .limit(limit as i64 + 1),
        )
        .await?;
    let docs: Vec<MarkerDoc> = store.run(OP, found.try_collect()).await?;
    let mut revocations: Vec<Revocation> =
        docs.into_iter().map(MarkerDoc::into_revocation).collect();
    let next = if revocations.len() > limit {
        revocations.truncate(limit);
        revocations.last().map(|r| r.sub.clone())
    } else {
        None
    };
    Ok(RevocationPage { revocations, next })
}

/// Markers counted by `stats`: stored and not forgotten.
pub(crate) fn counted() -> Document {
    doc! { "forgotten_at": { "$exists": false } }
}
