//! Session operations: create, save, get, take, delete, compare-and-set of
//! the blob, scan.
//!
//! No store keeps a session a kept revocation marker hides (a save checks
//! the marker, see `revocation.rs`), so reads are plain: get is one
//! `HMGET` of the session's hash (on a cluster through a script, which
//! goes to the primary), take one script on the session's slot.

use broker_core::{Corruption, Result, SessionPage, SessionRecord, StoreError, UnixTime};
use redis::aio::ConnectionLike;
use redis::{FromRedisValue, Value};

use crate::error::{bad_marker, utf8};
use crate::format::{self, SESSION_FIELDS};
use crate::keys::{BUCKETS, hex, unhex};
use crate::{RedisStore, SUBJECT_GRACE, receipt_ms, scripts, token};

/// What a save script answered.
enum Saved {
    /// Stored (or this create's own earlier run stored it).
    Stored,
    /// A create found a live session under the jti.
    Conflict,
    /// A kept revocation hides the session: not stored.
    Hidden,
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub(crate) async fn create(&self, s: &SessionRecord) -> Result<()> {
        const OP: &str = "create_session";
        match self.write(OP, s, true).await? {
            Saved::Conflict => Err(StoreError::Conflict {
                op: OP,
                what: "a session with this jti exists",
            }),
            _ => Ok(()),
        }
    }

    pub(crate) async fn save(&self, s: &SessionRecord) -> Result<()> {
        self.write("save_session", s, false).await.map(|_| ())
    }

    /// Create or save: on one server one script; on a cluster the
    /// subject's slot first (refuse a hidden session, else index it, so a
    /// revoke finds every stored session), then the session's slot.
    async fn write(&self, op: &'static str, s: &SessionRecord, create: bool) -> Result<Saved> {
        let k = self.keys.session(&s.jti);
        // Only a create reads its token back (from its create receipt).
        let token = if create { token() } else { String::new() };
        let [sub, expires_at, auth_time, sealed] = format::encode_session(s);
        let now = self.clock.now();
        let create = if create { "1" } else { "0" };
        let code: i64 = if self.single() {
            let mut inv = k.on(&scripts::SAVE_ONE);
            inv.key(self.keys.create_receipt(&k))
                .key(self.keys.subject(&s.sub))
                .key(self.keys.marker(&s.sub))
                .arg(&sub)
                .arg(&sealed)
                .arg(&expires_at)
                .arg(&auth_time)
                .arg(now)
                .arg(&k.member)
                .arg(create)
                .arg(&token)
                .arg(receipt_ms())
                .arg(SUBJECT_GRACE);
            self.run(op, &inv).await?
        } else {
            let indexed: i64 = self
                .run(
                    op,
                    scripts::SUBJECT_REGISTER
                        .key(self.keys.subject(&s.sub))
                        .key(self.keys.marker(&s.sub))
                        .arg(now)
                        .arg(s.expires_at)
                        .arg(&k.member)
                        .arg(s.auth_time)
                        .arg(SUBJECT_GRACE),
                )
                .await?;
            if indexed < 0 {
                return Err(bad_marker(op));
            }
            let (tombstone, _) = self
                .keys
                .tombstone(k.bucket, &k.member, &hex(s.sub.as_bytes()));
            let mut inv = k.on(&scripts::SAVE);
            inv.key(self.keys.create_receipt(&k))
                .key(tombstone)
                .arg(&sub)
                .arg(&sealed)
                .arg(&expires_at)
                .arg(&auth_time)
                .arg(now)
                .arg(&k.member)
                .arg(create)
                .arg(&token)
                .arg(receipt_ms())
                .arg(if indexed == 0 { "1" } else { "0" });
            self.run(op, &inv).await?
        };
        match code {
            1 => Ok(Saved::Stored),
            0 => Ok(Saved::Conflict),
            2 => Ok(Saved::Hidden),
            -1 => Err(bad_marker(op)),
            _ => Err(StoreError::backend(
                op,
                "unexpected reply of the save script",
            )),
        }
    }

    pub(crate) async fn get(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "get_session";
        let now = self.clock.now();
        let key = self.keys.session_key(jti);
        // On a cluster whose connection may read from replicas through the
        // READ script: redis-rs sends scripts to the primary.
        let reply: Value = if self.single() || self.reads_on_primary {
            self.cmd(OP, redis::cmd("HMGET").arg(&key).arg(&SESSION_FIELDS))
                .await?
        } else {
            self.read(OP, "HMGET", &key, &SESSION_FIELDS).await?
        };
        live(OP, jti, reply_fields(OP, reply)?, now)
    }

    /// Atomic (one script). On a cluster a re-sent copy of the call returns
    /// the session too (the script leaves it under this call's receipt).
    pub(crate) async fn take(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "take_session";
        let now = self.clock.now();
        let k = self.keys.session(jti);
        let mut inv = k.on(&scripts::TAKE);
        if self.receipts() {
            inv.key(self.keys.receipt(&k, &token()));
        }
        inv.arg(now).arg(&k.member).arg(receipt_ms());
        let fields: Vec<Option<Vec<u8>>> = self.run(OP, &inv).await?;
        live(OP, jti, fields, now)
    }

    /// The subject's index keeps the jti until it expires (revoke then
    /// finds nothing to delete): one script, on the session's slot.
    pub(crate) async fn delete(&self, jti: &str) -> Result<bool> {
        const OP: &str = "delete_session";
        let k = self.keys.session(jti);
        let mut inv = k.on(&scripts::DELETE);
        if self.receipts() {
            inv.key(self.keys.receipt(&k, &token()));
        }
        inv.arg(&k.member).arg(receipt_ms());
        let n: i64 = self.run(OP, &inv).await?;
        Ok(n > 0)
    }

    pub(crate) async fn replace_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        const OP: &str = "replace_session_blob";
        let k = self.keys.session(jti);
        let mut inv = scripts::REPLACE_BLOB.key(&k.session);
        if self.receipts() {
            inv.key(self.keys.receipt(&k, &token()));
        }
        inv.arg(expected).arg(sealed).arg(receipt_ms());
        let n: i64 = self.run(OP, &inv).await?;
        Ok(n == 1)
    }

    /// Walks the 64 buckets in order and each bucket's jtis in byte order
    /// (`ZRANGEBYLEX` on the bucket's index), so the cursor (`bucket:jti`)
    /// is a stable position: a session present throughout is returned
    /// exactly once. A page examines at most `limit` index entries.
    pub(crate) async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        const OP: &str = "scan_sessions";
        let (mut b, mut after) = parse_cursor(cursor)?;
        let now = self.clock.now();
        let mut sessions = Vec::new();
        let mut examined = 0usize;
        while b < BUCKETS && examined < limit {
            let want = limit - examined;
            let min = after
                .as_ref()
                .map_or_else(|| "-".to_owned(), |a| format!("({a}"));
            let members: Vec<String> = self
                .read(
                    OP,
                    "ZRANGEBYLEX",
                    &self.keys.lex(b),
                    &[&min, "+", "LIMIT", "0", &want.to_string()],
                )
                .await?;
            examined += members.len();
            if !members.is_empty() {
                let mut inv = scripts::READ_SESSIONS.prepare_invoke();
                for m in &members {
                    inv.key(self.keys.session_hex(b, m));
                }
                let values: Vec<Vec<Option<Vec<u8>>>> = self.run(OP, &inv).await?;
                for (member, value) in members.iter().zip(values) {
                    let jti = unhex(member).ok_or(StoreError::corrupt(
                        OP,
                        Corruption::Malformed("index entry"),
                    ))?;
                    let jti = utf8(OP, jti, "index entry")?;
                    sessions.extend(live(OP, &jti, value, now)?);
                }
            }
            if members.len() < want {
                b += 1;
                after = None;
            } else {
                after = members.last().cloned();
            }
        }
        let next = (b < BUCKETS).then(|| match &after {
            Some(a) => format!("{b:02x}:{a}"),
            None => format!("{b:02x}"),
        });
        Ok(SessionPage { sessions, next })
    }
}

/// The fields of an `HMGET` reply, moved out of it (the usual reply:
/// bulk strings and nils); any other reply goes through redis-rs's own
/// conversion, so it fails or succeeds exactly as before.
fn reply_fields(op: &'static str, reply: Value) -> Result<Vec<Option<Vec<u8>>>> {
    match reply {
        Value::Array(items)
            if items
                .iter()
                .all(|v| matches!(v, Value::BulkString(_) | Value::Nil)) =>
        {
            Ok(items
                .into_iter()
                .map(|v| match v {
                    Value::BulkString(b) => Some(b),
                    _ => None,
                })
                .collect())
        }
        other => FromRedisValue::from_redis_value(other)
            .map_err(|e| crate::error::map_err(op, redis::RedisError::from(e))),
    }
}

/// The session stored under `jti` (its hash's [`SESSION_FIELDS`]), if it
/// is live at `now` (the store's clock decides; native expiry may have
/// dropped it already).
fn live(
    op: &'static str,
    jti: &str,
    fields: Vec<Option<Vec<u8>>>,
    now: UnixTime,
) -> Result<Option<SessionRecord>> {
    Ok(format::decode_session(op, jti, fields)?.filter(|s| s.is_live_at(now)))
}

/// Parse a scan cursor: `BB` or `BB:HEXJTI`.
fn parse_cursor(cursor: Option<&str>) -> Result<(u16, Option<String>)> {
    let bad = || StoreError::invalid("scan_sessions", "malformed cursor");
    let Some(c) = cursor else {
        return Ok((0, None));
    };
    let (b, after) = match c.split_once(':') {
        Some((b, a)) => (b, Some(a)),
        None => (c, None),
    };
    let b = match unhex(b).as_deref() {
        Some([b]) if u16::from(*b) < BUCKETS => u16::from(*b),
        _ => return Err(bad()),
    };
    if let Some(a) = after
        && (a.is_empty() || unhex(a).is_none())
    {
        return Err(bad());
    }
    Ok((b, after.map(str::to_owned)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(parse_cursor(None).unwrap(), (0, None));
        assert_eq!(parse_cursor(Some("3f")).unwrap(), (63, None));
        assert_eq!(
            parse_cursor(Some("0a:6a74")).unwrap(),
            (10, Some("6a74".to_owned()))
        );
        for bad in ["", "40", "zz", "0a:", "0a:xyz", "0a:6a7", "0", "0a:6A74"] {
            assert!(parse_cursor(Some(bad)).is_err(), "{bad}");
        }
    }
}
