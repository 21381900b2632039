//! The records a [`BrokerStore`](crate::BrokerStore) keeps. Secrets in them
//! are already sealed: a store only ever sees ciphertext.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::error::{Result, StoreError};

/// Seconds since the Unix epoch, as every timestamp in this crate.
pub type UnixTime = i64;

/// The current time in Unix seconds.
pub fn unix_now() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as UnixTime)
        .unwrap_or(0)
}

/// One session as a store keeps it: clear index fields plus the sealed blob
/// (refresh token and user_info, encrypted and bound to the other fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Id of the broker JWT the session belongs to (the key).
    pub jti: String,
    /// Subject (user id at the identity provider).
    pub sub: String,
    /// When the session stops being returned (Unix seconds, exclusive).
    pub expires_at: UnixTime,
    /// When the user authenticated (Unix seconds); a revocation of `sub` at
    /// or after this time hides the session.
    pub auth_time: UnixTime,
    /// The sealed refresh token and user_info. A [`Bytes`] so a store can
    /// hand out the buffer its driver read without copying it (build one
    /// from a `Vec<u8>` with `.into()`).
    pub sealed: Bytes,
}

impl SessionRecord {
    /// True while `expires_at` is after `now`.
    pub fn is_live_at(&self, now: UnixTime) -> bool {
        self.expires_at > now
    }
}

/// "Log `sub` out everywhere at `revoked_at`": deletes the subject's sessions
/// and keeps a marker until `keep_until`, so that a session of that subject
/// with `auth_time <= revoked_at` saved later (a refresh that was in flight)
/// is never returned.
///
/// "Never" does not end with the marker: a store does not keep a session
/// its marker hides (a save is refused, or the hidden session is deleted no
/// later than the marker itself, see [`BrokerStore::purge_expired`]). So
/// `keep_until` only bounds how long a refresh may stay in flight and still
/// be caught; it is not how long the logout lasts.
///
/// [`BrokerStore::purge_expired`]: crate::BrokerStore::purge_expired
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The subject to log out.
    pub sub: String,
    /// Sessions authenticated at or before this time are revoked.
    pub revoked_at: UnixTime,
    /// When the store may forget the revocation (purge removes it after).
    pub keep_until: UnixTime,
}

impl Revocation {
    /// How long a revocation marker is kept by default: a day, far longer
    /// than any refresh round trip to an identity provider.
    pub const DEFAULT_RETENTION_SECS: i64 = 24 * 3600;

    /// A revocation of `sub` now, kept for [`Self::DEFAULT_RETENTION_SECS`].
    pub fn now(sub: impl Into<String>) -> Self {
        Self::at(sub, unix_now())
    }

    /// A revocation of `sub` at `revoked_at`, kept for
    /// [`Self::DEFAULT_RETENTION_SECS`] from then.
    pub fn at(sub: impl Into<String>, revoked_at: UnixTime) -> Self {
        Self {
            sub: sub.into(),
            revoked_at,
            keep_until: revoked_at + Self::DEFAULT_RETENTION_SECS,
        }
    }

    /// True if this revocation hides a session of its subject authenticated
    /// at `auth_time`, at time `now`.
    pub fn hides(&self, auth_time: UnixTime, now: UnixTime) -> bool {
        auth_time <= self.revoked_at && self.keep_until > now
    }

    /// Merge a later revocation of the same subject into this one.
    pub fn merge(&mut self, other: &Revocation) {
        self.revoked_at = self.revoked_at.max(other.revoked_at);
        self.keep_until = self.keep_until.max(other.keep_until);
    }
}

/// A trusted peer's public keys, stored verbatim as JSON text so key order
/// and number formatting survive a round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerJwks {
    /// The peer's issuer URL (the key).
    pub issuer: String,
    /// The JWKS document, as JSON text.
    pub jwks: String,
    /// When it was fetched (Unix seconds).
    pub fetched_at: UnixTime,
}

/// One page of a revocation-marker scan ([`BrokerStore::scan_revocations`]),
/// by subject; pass `next` back to get the following page.
///
/// [`BrokerStore::scan_revocations`]: crate::BrokerStore::scan_revocations
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationPage {
    /// Markers still kept (`keep_until` after now), in subject order.
    pub revocations: Vec<Revocation>,
    /// Opaque cursor for the next page, `None` at the end.
    pub next: Option<String>,
}

/// One page of a session scan; pass `next` back to get the following page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPage {
    /// Live sessions in this page.
    pub sessions: Vec<SessionRecord>,
    /// Opaque cursor for the next page, `None` at the end.
    pub next: Option<String>,
}

/// Counts for operators (`brokerctl stats`). Build one with
/// `StoreStats::default()` and set the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Sessions that get would return or that are revoked-but-stored.
    pub live_sessions: u64,
    /// Sessions past their expiry that purge has not removed yet.
    pub expired_sessions: u64,
    /// Distinct subjects among live sessions, where the backend can count them cheaply.
    pub subjects: Option<u64>,
    /// Stored peer JWKS documents.
    pub peers: u64,
    /// Create-once records (signing keys, key-derivation and key-check records).
    pub records: u64,
    /// Revocation markers stored (kept or past their keep time but not yet purged).
    pub revocations: u64,
}

/// A validated namespace: a table prefix, collection prefix, key prefix or
/// tree name, matching `^[a-z][a-z0-9_]{0,30}$`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    /// The namespace used when none is chosen.
    pub const DEFAULT: &'static str = "broker";

    /// Validate `name`.
    ///
    /// ```
    /// use broker_core::Namespace;
    /// assert!(Namespace::new("my_app").is_ok());
    /// assert!(Namespace::new("My-App").is_err());
    /// ```
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let bytes = name.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 31
            && bytes[0].is_ascii_lowercase()
            && bytes[1..]
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if ok {
            Ok(Self(name))
        } else {
            Err(StoreError::invalid(
                "namespace",
                "a namespace must match ^[a-z][a-z0-9_]{0,30}$",
            ))
        }
    }

    /// A fresh random namespace starting with `prefix` (for tests and
    /// throwaway checks). `prefix` must itself be a valid namespace of at
    /// most 18 characters.
    pub fn random(prefix: &str) -> Result<Self> {
        use rand::RngExt;
        let suffix: u64 = rand::rng().random();
        Self::new(format!("{prefix}_{:012x}", suffix & 0xffff_ffff_ffff))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({:?})", self.0)
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Namespace {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}
