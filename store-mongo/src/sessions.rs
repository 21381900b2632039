//! Session operations: create, save, get, take, delete, compare-and-set,
//! scan.
//!
//! A write never checks the marker atomically with itself (MongoDB has no
//! cross-document atomicity without transactions); instead every write
//! reads the marker *after* writing and deletes the session again if the
//! marker hides it, and every read hides by marker. With single-document
//! operations that are each atomic, this is enough: a revocation writes its
//! marker before it deletes the subject's sessions, so a racing save either
//! reads the marker after writing (and deletes itself) or wrote before the
//! marker existed (and the revocation's deletion, which comes after the
//! marker, removes it). See `revocation.rs` for the marker side.

use std::collections::HashMap;

use broker_core::{Result, SessionPage, SessionRecord, StoreError, UnixTime};
use futures::TryStreamExt;
use mongodb::bson::{Bson, doc};

use crate::documents::{MarkerDoc, SessionDoc, binary, date, live_filter};
use crate::{MongoStore, error};

/// Insert-if-absent: one `replace_one` upsert filtered on "expired", so a
/// live session makes the upsert's insert collide on `_id` (duplicate key).
/// A create the subject's marker refuses changes nothing, as in the
/// reference store (an expired session under the `jti` stays until purge),
/// so the marker is read before the write as well as after it.
pub(crate) async fn create(store: &MongoStore, session: &SessionRecord) -> Result<()> {
    const OP: &str = "create_session";
    let now = store.clock.now();
    let doc = SessionDoc::from_record(session, now);
    let conflict = || StoreError::Conflict {
        op: OP,
        what: "a session with this jti exists",
    };
    if doc.hidden_by(store.marker(OP, &doc.sub).await?.as_ref(), now) {
        let live = store
            .run(
                OP,
                store.sessions.count_documents(live_filter(&doc.jti, now)),
            )
            .await?;
        return if live > 0 { Err(conflict()) } else { Ok(()) };
    }
    let filter = doc! { "_id": &session.jti, "expires_at": { "$lte": date(now) } };
    match store
        .run_raw(OP, store.sessions.replace_one(filter, &doc).upsert(true))
        .await?
    {
        Ok(_) => {}
        Err(e) if error::is_duplicate_key(&e) => return Err(conflict()),
        Err(e) => return Err(error::map(OP, e)),
    }
    unsave_if_hidden(store, OP, &doc, now).await
}

/// Upsert by `jti`, then the marker check.
pub(crate) async fn save(store: &MongoStore, session: &SessionRecord) -> Result<()> {
    const OP: &str = "save_session";
    let now = store.clock.now();
    let doc = SessionDoc::from_record(session, now);
    store
        .run(
            OP,
            store
                .sessions
                .replace_one(doc! { "_id": &session.jti }, &doc)
                .upsert(true),
        )
        .await?;
    unsave_if_hidden(store, OP, &doc, now).await
}

/// After writing `doc`: if its subject's marker hides it, delete it again,
/// so a session a revocation covers is not kept. The deletion matches only
/// a document the marker hides whatever the time (same subject,
/// `auth_time <= revoked_at`, saved before `keep_until`), so it never
/// removes a later save the marker does not cover. If this step is never
/// reached (the caller dropped the future, the process died), reads still
/// hide the session and purge deletes it before it forgets the marker.
async fn unsave_if_hidden(
    store: &MongoStore,
    op: &'static str,
    doc: &SessionDoc,
    now: UnixTime,
) -> Result<()> {
    let Some(marker) = store.marker(op, &doc.sub).await? else {
        return Ok(());
    };
    if !doc.hidden_by(Some(&marker), now) {
        return Ok(());
    }
    store
        .run(
            op,
            store.sessions.delete_one(doc! {
                "_id": &doc.jti,
                "sub": &doc.sub,
                "auth_time": { "$lte": marker.revoked_at },
                "saved_at": { "$lt": marker.keep_until },
            }),
        )
        .await?;
    Ok(())
}

/// One round trip: the live session and its subject's marker (`$lookup` on
/// the markers' `_id`).
pub(crate) async fn get(store: &MongoStore, jti: &str) -> Result<Option<SessionRecord>> {
    const OP: &str = "get_session";
    let now = store.clock.now();
    let pipeline = [
        doc! { "$match": live_filter(jti, now) },
        doc! { "$limit": 1 },
        doc! { "$lookup": {
            "from": store.revocations.name(),
            "localField": "sub",
            "foreignField": "_id",
            "as": "markers",
        } },
    ];
    let found = store
        .checked(OP, async {
            store
                .run(OP, async {
                    let mut cursor = store.sessions.aggregate(pipeline).await?;
                    cursor.try_next().await
                })
                .await
        })
        .await?;
    let Some(mut found) = found else {
        return Ok(None);
    };
    let malformed = || error::malformed(OP);
    let markers = match found.remove("markers") {
        Some(Bson::Array(markers)) => markers,
        _ => return Err(malformed()),
    };
    let mut marker = None;
    for m in markers {
        let Bson::Document(m) = m else {
            return Err(malformed());
        };
        marker = Some(mongodb::bson::from_document::<MarkerDoc>(m).map_err(|_| malformed())?);
    }
    let session: SessionDoc = mongodb::bson::from_document(found).map_err(|_| malformed())?;
    if session.hidden_by(marker.as_ref(), now) {
        return Ok(None);
    }
    session.into_record(OP).map(Some)
}

/// `find_one_and_delete` first (of concurrent takers exactly one gets the
/// document), then the marker of the removed session's subject: if it hides
/// the session, the answer is `None` (the session is gone, as the
/// revocation wanted). Checking after the removal is what makes this one
/// atomic step: nothing can replace the taken document between the check
/// and the removal, and markers only widen while any session they hide can
/// still be stored (purge forgets them only after deleting those sessions,
/// and keeps forgotten markers for [`crate::FORGOTTEN_MARKER_GRACE`], far
/// longer than this operation may take).
pub(crate) async fn take(store: &MongoStore, jti: &str) -> Result<Option<SessionRecord>> {
    const OP: &str = "take_session";
    let now = store.clock.now();
    store
        .checked(OP, async {
            let Some(doc) = store
                .run(
                    OP,
                    store.sessions.find_one_and_delete(live_filter(jti, now)),
                )
                .await?
            else {
                return Ok(None);
            };
            let marker = store.marker(OP, &doc.sub).await?;
            if doc.hidden_by(marker.as_ref(), now) {
                return Ok(None);
            }
            doc.into_record(OP).map(Some)
        })
        .await
}

pub(crate) async fn delete(store: &MongoStore, jti: &str) -> Result<bool> {
    const OP: &str = "delete_session";
    let res = store
        .run(OP, store.sessions.delete_one(doc! { "_id": jti }))
        .await?;
    Ok(res.deleted_count > 0)
}

pub(crate) async fn replace_blob(
    store: &MongoStore,
    jti: &str,
    expected: &[u8],
    sealed: &[u8],
) -> Result<bool> {
    const OP: &str = "replace_session_blob";
    let res = store
        .run(
            OP,
            store.sessions.update_one(
                doc! { "_id": jti, "sealed": binary(expected) },
                doc! { "$set": { "sealed": binary(sealed) } },
            ),
        )
        .await?;
    Ok(res.matched_count > 0)
}

/// A page by `_id`, then the markers of the page's subjects in one query.
pub(crate) async fn scan(
    store: &MongoStore,
    cursor: Option<&str>,
    limit: usize,
) -> Result<SessionPage> {
    const OP: &str = "scan_sessions";
    let now = store.clock.now();
    let mut filter = doc! { "expires_at": { "$gt": date(now) } };
    if let Some(after) = cursor {
        filter.insert("_id", doc! { "$gt": after });
    }
    let (docs, markers) = store
        .checked(OP, async {
            // One more than asked, to know whether another page follows.
            let found = store
                .run(
                    OP,
                    store
                        .sessions
                        .find(filter)
                        .sort(doc! { "_id": 1 })
                        .limit(limit as i64 + 1),
                )
                .await?;
            let docs: Vec<SessionDoc> = store.run(OP, found.try_collect()).await?;
            let mut subs: Vec<&str> = docs.iter().map(|d| d.sub.as_str()).collect();
            subs.sort_unstable();
            subs.dedup();
            let found = store
                .run(OP, store.revocations.find(doc! { "_id": { "$in": &subs } }))
                .await?;
            let markers: Vec<MarkerDoc> = store.run(OP, found.try_collect()).await?;
            Ok((docs, markers))
        })
        .await?;
    let markers: HashMap<String, MarkerDoc> =
        markers.into_iter().map(|m| (m.sub.clone(), m)).collect();
    let more = docs.len() > limit;
    let mut sessions = Vec::with_capacity(limit.min(docs.len()));
    let mut next = None;
    for doc in docs.into_iter().take(limit) {
        if more {
            next = Some(doc.jti.clone());
        }
        if !doc.hidden_by(markers.get(&doc.sub), now) {
            sessions.push(doc.into_record(OP)?);
        }
    }
    Ok(SessionPage { sessions, next })
}
