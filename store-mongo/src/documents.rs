//! The stored document shapes, their conversions, and the one rule that
//! decides whether a revocation marker hides a session.

use broker_core::{Corruption, Result, Revocation, SessionRecord, StoreError, UnixTime};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, DateTime, Document, doc};
use serde::{Deserialize, Serialize};

/// A session as stored in `<ns>_sessions`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SessionDoc {
    #[serde(rename = "_id")]
    pub(crate) jti: String,
    pub(crate) sub: String,
    /// The expiry as a BSON date (milliseconds), for the TTL index and filters.
    pub(crate) expires_at: DateTime,
    /// The exact expiry in Unix seconds, as bound into the sealed blob.
    pub(crate) expires_at_secs: i64,
    pub(crate) auth_time: i64,
    /// When the save or create that wrote this document started, by the
    /// writer's clock. `None` for documents written before the field
    /// existed (treated as older than every marker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) saved_at: Option<i64>,
    pub(crate) sealed: Binary,
}

/// A revocation marker in `<ns>_revocations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MarkerDoc {
    #[serde(rename = "_id")]
    pub(crate) sub: String,
    pub(crate) revoked_at: i64,
    pub(crate) keep_until: i64,
    /// Set by purge when it forgot the marker (its keep time had passed and
    /// the sessions it hides were deleted). A forgotten marker is no longer
    /// counted or listed; it stays stored for [`crate::FORGOTTEN_MARKER_GRACE`]
    /// so reads already in flight still see it, then purge deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) forgotten_at: Option<i64>,
}

/// A create-once record in `<ns>_records`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RecordDoc {
    #[serde(rename = "_id")]
    pub(crate) name: String,
    pub(crate) value: Binary,
}

/// A peer JWKS in `<ns>_peers`; the document is kept as JSON text so key
/// order and number formatting survive.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PeerDoc {
    #[serde(rename = "_id")]
    pub(crate) issuer: String,
    pub(crate) jwks: String,
    pub(crate) fetched_at: i64,
}

/// The BSON date of a Unix time in seconds (validated inputs never overflow).
pub(crate) fn date(secs: UnixTime) -> DateTime {
    DateTime::from_millis(secs.saturating_mul(1000))
}

/// Bytes as a generic BSON binary.
pub(crate) fn binary(bytes: &[u8]) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    }
}

/// Filter: a session of `jti` that has not expired at `now`.
pub(crate) fn live_filter(jti: &str, now: UnixTime) -> Document {
    doc! { "_id": jti, "expires_at": { "$gt": date(now) } }
}

impl SessionDoc {
    /// The document for `s`, written by an operation that started at `now`.
    pub(crate) fn from_record(s: &SessionRecord, now: UnixTime) -> Self {
        Self {
            jti: s.jti.clone(),
            sub: s.sub.clone(),
            expires_at: date(s.expires_at),
            expires_at_secs: s.expires_at,
            auth_time: s.auth_time,
            saved_at: Some(now),
            sealed: binary(&s.sealed),
        }
    }

    pub(crate) fn into_record(self, op: &'static str) -> Result<SessionRecord> {
        if self.expires_at != date(self.expires_at_secs) {
            return Err(StoreError::corrupt(
                op,
                Corruption::Malformed("session expiry fields disagree"),
            ));
        }
        Ok(SessionRecord {
            jti: self.jti,
            sub: self.sub,
            expires_at: self.expires_at_secs,
            auth_time: self.auth_time,
            sealed: self.sealed.bytes.into(),
        })
    }

    /// Whether `marker` (of this session's subject, if any) hides it at `now`.
    pub(crate) fn hidden_by(&self, marker: Option<&MarkerDoc>, now: UnixTime) -> bool {
        marker.is_some_and(|m| m.hides(self.auth_time, self.saved_at, now))
    }
}

impl MarkerDoc {
    /// The rule every read applies. A marker hides a session of its subject
    /// with `auth_time <= revoked_at` while the marker is kept, and, once
    /// its keep time has passed, still every such session that was saved
    /// while it was kept (`saved_at < keep_until`): the reference store
    /// would never have stored those, so they stay hidden until purge
    /// deletes them, whatever happens to the marker's own lifetime. Only a
    /// session saved after the keep time (a login the marker no longer
    /// covers) becomes visible, as in the reference store.
    pub(crate) fn hides(&self, auth_time: i64, saved_at: Option<i64>, now: UnixTime) -> bool {
        auth_time <= self.revoked_at
            && (self.keep_until > now || saved_at.is_none_or(|s| s < self.keep_until))
    }

    /// Filter: the stored sessions this marker hides whatever the time,
    /// which purge deletes. For a marker not yet forgotten, every session
    /// of the subject with `auth_time <= revoked_at` (so purge removes what
    /// the reference store removes); for a forgotten one, only those saved
    /// while it was kept.
    pub(crate) fn hidden_sessions(&self) -> Document {
        let mut filter = doc! { "sub": &self.sub, "auth_time": { "$lte": self.revoked_at } };
        if self.forgotten_at.is_some() {
            filter.insert(
                "$or",
                vec![
                    doc! { "saved_at": { "$lt": self.keep_until } },
                    doc! { "saved_at": { "$exists": false } },
                ],
            );
        }
        filter
    }

    /// Filter: this marker, unchanged since it was read.
    pub(crate) fn unchanged(&self) -> Document {
        let mut filter = doc! {
            "_id": &self.sub,
            "revoked_at": self.revoked_at,
            "keep_until": self.keep_until,
        };
        match self.forgotten_at {
            Some(at) => filter.insert("forgotten_at", at),
            None => filter.insert("forgotten_at", doc! { "$exists": false }),
        };
        filter
    }

    pub(crate) fn into_revocation(self) -> Revocation {
        Revocation {
            sub: self.sub,
            revoked_at: self.revoked_at,
            keep_until: self.keep_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(revoked_at: i64, keep_until: i64) -> MarkerDoc {
        MarkerDoc {
            sub: "s".into(),
            revoked_at,
            keep_until,
            forgotten_at: None,
        }
    }

    #[test]
    fn a_marker_hides_what_was_saved_while_it_was_kept_also_after_its_keep_time() {
        let m = marker(100, 200);
        // Kept: hides every session authenticated at or before revoked_at.
        assert!(m.hides(100, Some(150), 150));
        assert!(m.hides(100, Some(10), 199));
        assert!(!m.hides(101, Some(150), 150));
        // Past its keep time: still hides what was saved while it was kept
        // (or before the field existed), not what was saved later.
        assert!(m.hides(50, Some(199), 500));
        assert!(m.hides(50, None, 500));
        assert!(!m.hides(50, Some(200), 500));
        assert!(!m.hides(101, Some(10), 500));
    }
}
