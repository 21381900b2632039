//! Session operations: create, save, get, take, delete, compare-and-set,
//! scan.
//!
//! A write never checks the marker atomically with itself (MongoDB has no
//! cross-document atomicity without transactions), so a write is in two
//! steps: it stores the session *pending* (`pending`: a token of this
//! write), then reads the subject's marker and either settles the session
//! (removes `pending`, only if the token is still its own) or deletes it
//! if the marker hides it. get, take and scan never return a pending
//! session, so they need no marker lookup: get is one `find_one`, take one
//! `find_one_and_delete`. A revocation writes its marker before it deletes
//! the subject's sessions (pending or not), so a racing write either reads
//! the marker when it checks (and deletes itself) or wrote before the
//! marker existed (and the revocation's deletion, which comes after the
//! marker, removes it, settled or not). A write that stops between its two
//! steps (cancelled, timed out, the process died) leaves a pending session
//! nobody returns, which expires. See `revocation.rs` for the marker side.

use std::collections::HashMap;

use broker_core::{Result, SessionPage, SessionRecord, StoreError, UnixTime};
use futures::TryStreamExt;
use mongodb::bson::doc;

use crate::documents::{MarkerDoc, SessionDoc, binary, date, live_filter, visible_filter};
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
    settle(store, OP, &doc, now).await
}

/// Upsert by `jti` (pending), then the marker check settles it.
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
    settle(store, OP, &doc, now).await
}

/// After writing `doc` (pending): if its subject's marker hides it, delete
/// it again, so a session a revocation covers is never returned; else
/// settle it (remove `pending`), which makes it visible. Both steps match
/// only this write's own pending document: one replaced by a later write
/// is that write's to settle, one a revocation deleted stays deleted. If
/// this step is never reached (the caller dropped the future, the process
/// died), the session stays pending, never returned, until it expires or
/// purge deletes it.
async fn settle(
    store: &MongoStore,
    op: &'static str,
    doc: &SessionDoc,
    now: UnixTime,
) -> Result<()> {
    let Some(token) = doc.pending else {
        return Ok(());
    };
    let ours = doc! { "_id": &doc.jti, "pending": token };
    let marker = store.marker(op, &doc.sub).await?;
    if doc.hidden_by(marker.as_ref(), now) {
        store.run(op, store.sessions.delete_one(ours)).await?;
    } else {
        store
            .run(
                op,
                store
                    .sessions
                    .update_one(ours, doc! { "$unset": { "pending": "" } }),
            )
            .await?;
    }
    Ok(())
}

/// One round trip: `find_one` of the live, settled session (see
/// [`visible_filter`]).
pub(crate) async fn get(store: &MongoStore, jti: &str) -> Result<Option<SessionRecord>> {
    const OP: &str = "get_session";
    let now = store.clock.now();
    store
        .run(OP, store.sessions.find_one(visible_filter(jti, now)))
        .await?
        .map(|doc| doc.into_record(OP))
        .transpose()
}

/// One round trip: `find_one_and_delete` of the live, settled session (of
/// concurrent takers exactly one gets the document).
pub(crate) async fn take(store: &MongoStore, jti: &str) -> Result<Option<SessionRecord>> {
    const OP: &str = "take_session";
    let now = store.clock.now();
    store
        .run(
            OP,
            store.sessions.find_one_and_delete(visible_filter(jti, now)),
        )
        .await?
        .map(|doc| doc.into_record(OP))
        .transpose()
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
    let mut filter = doc! {
        "expires_at": { "$gt": date(now) },
        "pending": { "$exists": false },
    };
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
