//! Revocation and purge: how a revoked session never comes back.
//!
//! A save refuses a session a kept marker hides, checking the marker in
//! the same atomic step that indexes the session under its subject (one
//! script on one server; on a cluster the subject's slot, before the
//! session's slot is written). A revoke writes the marker, then, on each
//! jti the subject's index lists, leaves a tombstone in the session's own
//! slot and deletes the session: a save that passed the subject's slot
//! before the marker existed meets the tombstone in the session's slot.
//! So no store keeps a hidden session once a revoke returned, and reads
//! need no revocation check.
//!
//! Nothing expires by itself: markers and tombstones go only through
//! purge, once past their keep time. A revoke that stopped halfway (an
//! error, a crash) stays registered as pending; purge finishes it
//! (deleting what the marker hides) before it may forget the marker.
//! A save whose two steps straddle a marker's whole keep time (it passed
//! the subject's slot before the revoke and reaches the session's slot
//! after purge forgot the tombstone) lands like any refresh that stayed in
//! flight that long: the keep time bounds how long a refresh may be in
//! flight and still be caught, on every backend.

use broker_core::{Corruption, Result, Revocation, RevocationPage, StoreError, UnixTime, validate};
use futures::{StreamExt, TryStreamExt, stream};
use redis::aio::ConnectionLike;

use crate::error::utf8;
use crate::format::{self, MARKER_FIELDS};
use crate::keys::{BUCKETS, bucket_of, hex, unhex};
use crate::{FAN_OUT, PURGE_BATCH, RedisStore, SUBJECT_GRACE, receipt_ms, scripts, token};

/// The marker of the subject a hex registry entry names, from its
/// [`MARKER_FIELDS`], and whether a revoke is at work on it.
fn decode_marker(
    op: &'static str,
    member: &str,
    fields: Vec<Option<Vec<u8>>>,
) -> Result<Option<(Revocation, bool)>> {
    if fields.iter().all(Option::is_none) {
        return Ok(None);
    }
    format::decode_marker(op, subject_of(op, member)?, fields)
}

/// The subject a hex registry entry names.
fn subject_of(op: &'static str, member: &str) -> Result<String> {
    let bytes = unhex(member).ok_or(StoreError::corrupt(
        op,
        Corruption::Malformed("revocation index entry"),
    ))?;
    utf8(op, bytes, "revocation index entry")
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// The [`MARKER_FIELDS`] of the marker of a hex subject, from its primary.
    async fn marker_fields(&self, op: &'static str, member: &str) -> Result<Vec<Option<Vec<u8>>>> {
        self.read(op, "HMGET", &self.keys.marker_hex(member), &MARKER_FIELDS)
            .await
    }

    pub(crate) async fn revoke(&self, r: &Revocation) -> Result<u64> {
        const OP: &str = "revoke_subject";
        self.revoke_as(OP, r, false).await
    }

    /// Register, mark, tombstone and delete, settle. `only_hidden` (purge
    /// finishing a revoke): delete only the sessions the marker hides.
    async fn revoke_as(&self, op: &'static str, r: &Revocation, only_hidden: bool) -> Result<u64> {
        let now = self.clock.now();
        let hex_sub = hex(r.sub.as_bytes());
        let token = token();
        let counter: String = self
            .run(
                op,
                scripts::REVOKE_REGISTER
                    .key(self.keys.markers())
                    .key(self.keys.markers_by_keep())
                    .key(self.keys.markers_pending())
                    .arg(&hex_sub)
                    .arg(r.keep_until),
            )
            .await?;
        let reply: Vec<String> = self
            .run(
                op,
                scripts::REVOKE
                    .key(self.keys.marker_hex(&hex_sub))
                    .key(self.keys.subject_hex(&hex_sub))
                    .arg(r.revoked_at)
                    .arg(r.keep_until)
                    .arg(&token)
                    .arg(now)
                    .arg(SUBJECT_GRACE),
            )
            .await?;
        let parse = |s: Option<&String>| s.and_then(|s| s.parse::<UnixTime>().ok());
        let (Some(revoked_at), Some(keep_until)) = (parse(reply.first()), parse(reply.get(1)))
        else {
            return Err(StoreError::backend(
                op,
                "unexpected reply of the revoke script",
            ));
        };
        let (hex_sub, token) = (&hex_sub, &token);
        let members: Vec<(u16, String)> = reply
            .into_iter()
            .skip(2)
            .filter_map(|member| unhex(&member).map(|jti| (bucket_of(&jti), member)))
            .collect();
        let deleted: u64 = stream::iter(members)
            .map(|(b, member): (u16, String)| async move {
                let k = self.keys.session_of(b, member.clone());
                let (tombstone, tomb_member) = self.keys.tombstone(b, &member, hex_sub);
                let mut inv = k.on(&scripts::TOMBSTONE);
                inv.key(tombstone)
                    .key(self.keys.tombstones(b))
                    .key(self.keys.receipt(&k, token))
                    .arg(&member)
                    .arg(&r.sub)
                    .arg(revoked_at)
                    .arg(keep_until)
                    .arg(tomb_member)
                    .arg(receipt_ms())
                    .arg(if only_hidden { "1" } else { "0" });
                let n: i64 = self.run(op, &inv).await?;
                Ok::<u64, StoreError>(n.max(0) as u64)
            })
            .buffer_unordered(FAN_OUT)
            .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
            .await?;
        let latest: i64 = self
            .run(
                op,
                scripts::REVOKE_DONE
                    .key(self.keys.marker_hex(hex_sub))
                    .arg(token),
            )
            .await?;
        if latest == 1 {
            let _: i64 = self
                .run(
                    op,
                    scripts::REVOKE_SETTLED
                        .key(self.keys.markers_pending())
                        .key(self.keys.markers_by_keep())
                        .arg(hex_sub)
                        .arg(&counter),
                )
                .await?;
        }
        Ok(deleted)
    }

    /// In this order: expired sessions (their index entries; Redis dropped
    /// the values natively) and tombstones past their keep time, bucket by
    /// bucket in batches; revokes that stopped halfway, finished; markers
    /// past their keep time with no revoke at work. Returns the sessions
    /// removed (expired, and hidden ones a finished revoke deleted).
    pub(crate) async fn purge(&self) -> Result<u64> {
        const OP: &str = "purge_expired";
        let now = self.clock.now();
        let mut total = 0u64;
        for b in 0..BUCKETS {
            total += self.purge_sessions(OP, b, now).await?;
            self.purge_tombstones(OP, b, now).await?;
        }
        total += self.finish_revokes(OP, now).await?;
        self.forget_markers(OP, now).await?;
        Ok(total)
    }

    async fn purge_sessions(&self, op: &'static str, b: u16, now: UnixTime) -> Result<u64> {
        let exp = self.keys.exp(b);
        let mut total = 0u64;
        loop {
            let members: Vec<String> = self
                .read(
                    op,
                    "ZRANGEBYSCORE",
                    &exp,
                    &[
                        "-inf",
                        &now.to_string(),
                        "LIMIT",
                        "0",
                        &PURGE_BATCH.to_string(),
                    ],
                )
                .await?;
            if members.is_empty() {
                return Ok(total);
            }
            let mut inv = scripts::PURGE.key(self.keys.lex(b));
            inv.key(&exp);
            for m in &members {
                inv.key(self.keys.session_hex(b, m));
            }
            inv.arg(now);
            for m in &members {
                inv.arg(m);
            }
            let n: i64 = self.run(op, &inv).await?;
            total += n.max(0) as u64;
            if members.len() < PURGE_BATCH {
                return Ok(total);
            }
        }
    }

    async fn purge_tombstones(&self, op: &'static str, b: u16, now: UnixTime) -> Result<()> {
        let index = self.keys.tombstones(b);
        loop {
            let members: Vec<String> = self
                .read(
                    op,
                    "ZRANGEBYSCORE",
                    &index,
                    &[
                        "-inf",
                        &now.to_string(),
                        "LIMIT",
                        "0",
                        &PURGE_BATCH.to_string(),
                    ],
                )
                .await?;
            if members.is_empty() {
                return Ok(());
            }
            let mut inv = scripts::PURGE_TOMBSTONES.key(&index);
            for m in &members {
                inv.key(self.keys.tombstone_of(b, m));
            }
            inv.arg(now);
            for m in &members {
                inv.arg(m);
            }
            let _: i64 = self.run(op, &inv).await?;
            if members.len() < PURGE_BATCH {
                return Ok(());
            }
        }
    }

    /// Revokes still registered as at work: run again (deleting only what
    /// the marker hides) where a marker exists and a revoke is marked on it
    /// or it is kept; otherwise let the entry go once the marker is no
    /// longer kept.
    async fn finish_revokes(&self, op: &'static str, now: UnixTime) -> Result<u64> {
        let pending_key = self.keys.markers_pending();
        // The whole (normally empty) set first: finishing removes entries.
        let mut pending: Vec<(String, String)> = Vec::new();
        loop {
            let from = pending.len();
            let page: Vec<(String, String)> = self
                .read(
                    op,
                    "ZRANGE",
                    &pending_key,
                    &[
                        &from.to_string(),
                        &(from + PURGE_BATCH - 1).to_string(),
                        "WITHSCORES",
                    ],
                )
                .await?;
            let done = page.len() < PURGE_BATCH;
            pending.extend(page);
            if done {
                break;
            }
        }
        let mut total = 0u64;
        for (member, counter) in &pending {
            let fields = self.marker_fields(op, member).await?;
            let marker = match decode_marker(op, member, fields) {
                Err(e) => {
                    tracing::warn!("store-redis: purge skips an unreadable revocation marker: {e}");
                    continue;
                }
                Ok(marker) => marker,
            };
            match marker {
                Some((r, at_work)) if at_work || r.keep_until > now => {
                    total += self.revoke_as(op, &r, true).await?;
                }
                _ => {
                    let _: i64 = self
                        .run(
                            op,
                            scripts::REVOKE_SETTLED
                                .key(&pending_key)
                                .key(self.keys.markers_by_keep())
                                .arg(member)
                                .arg(counter)
                                .arg(now),
                        )
                        .await?;
                }
            }
        }
        Ok(total)
    }

    /// Markers past their keep time: forgotten (on the subject's slot), then
    /// unregistered, each unless a revoke is at work on it or renewed it.
    async fn forget_markers(&self, op: &'static str, now: UnixTime) -> Result<()> {
        let by_keep = self.keys.markers_by_keep();
        let mut offset = 0usize;
        loop {
            let members: Vec<String> = self
                .read(
                    op,
                    "ZRANGEBYSCORE",
                    &by_keep,
                    &[
                        "-inf",
                        &now.to_string(),
                        "LIMIT",
                        &offset.to_string(),
                        &PURGE_BATCH.to_string(),
                    ],
                )
                .await?;
            for member in &members {
                let forgotten: i64 = self
                    .run(
                        op,
                        scripts::FORGET_MARKER
                            .key(self.keys.marker_hex(member))
                            .arg(now),
                    )
                    .await?;
                let unregistered: i64 = if forgotten == 1 {
                    self.run(
                        op,
                        scripts::UNREGISTER_MARKER
                            .key(self.keys.markers())
                            .key(&by_keep)
                            .key(self.keys.markers_pending())
                            .arg(member)
                            .arg(now),
                    )
                    .await?
                } else {
                    0
                };
                if unregistered != 1 {
                    offset += 1;
                }
            }
            if members.len() < PURGE_BATCH {
                return Ok(());
            }
        }
    }

    /// Walks the marker registry in subject byte order and reads each
    /// subject's marker; markers past their keep time (not purged yet) are
    /// left out.
    pub(crate) async fn scan_markers(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RevocationPage> {
        const OP: &str = "scan_revocations";
        if let Some(c) = cursor {
            validate::sub(OP, c)?;
        }
        let now = self.clock.now();
        let registry = self.keys.markers();
        let mut min = cursor.map_or_else(|| "-".to_owned(), |c| format!("({}", hex(c.as_bytes())));
        let mut page = RevocationPage::default();
        loop {
            let members: Vec<String> = self
                .read(
                    OP,
                    "ZRANGEBYLEX",
                    &registry,
                    &[&min, "+", "LIMIT", "0", &limit.to_string()],
                )
                .await?;
            let Some(last) = members.last() else {
                return Ok(page);
            };
            min = format!("({last}");
            let markers: Vec<Option<Revocation>> = stream::iter(members.clone())
                .map(|member: String| async move {
                    let fields = self.marker_fields(OP, &member).await?;
                    Ok::<_, StoreError>(decode_marker(OP, &member, fields)?.map(|(r, _)| r))
                })
                .buffered(FAN_OUT)
                .try_collect()
                .await?;
            for marker in markers.into_iter().flatten() {
                if page.revocations.len() == limit {
                    page.next = page.revocations.last().map(|r| r.sub.clone());
                    return Ok(page);
                }
                if marker.keep_until > now {
                    page.revocations.push(marker);
                }
            }
        }
    }
}
