//! The JSON documents `brokerctl --json` prints, one per command (`migrate`
//! prints a [`MigrateReport`](crate::migrate::MigrateReport), `bench` a
//! [`BenchReport`](crate::bench::BenchReport)). Field names are the JSON
//! keys.

use std::collections::BTreeMap;

use std::fmt::Display;

use broker_core::{RekeyReport, StoreStats};
use serde::Serialize;

/// `init`: the store is ready.
#[derive(Debug, Clone, Serialize)]
pub struct Init {
    /// Always true.
    pub ok: bool,
    /// The primary key's id.
    pub primary_key_id: String,
}

/// `stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Sessions not expired.
    pub live_sessions: u64,
    /// Expired sessions not purged yet.
    pub expired_sessions: u64,
    /// Distinct subjects, if the backend counts them.
    pub subjects: Option<u64>,
    /// Revocation markers kept.
    pub revocations: u64,
    /// Peer JWKS stored.
    pub peers: u64,
    /// Sessions sealed under each key id.
    pub key_ids: BTreeMap<String, u64>,
}

impl Stats {
    /// The document for `stats` and the key usage of the same store.
    pub fn new<K: Display>(stats: &StoreStats, usage: &BTreeMap<K, u64>) -> Self {
        Self {
            live_sessions: stats.live_sessions,
            expired_sessions: stats.expired_sessions,
            subjects: stats.subjects,
            revocations: stats.revocations,
            peers: stats.peers,
            key_ids: usage.iter().map(|(id, n)| (id.to_string(), *n)).collect(),
        }
    }
}

/// `purge`.
#[derive(Debug, Clone, Serialize)]
pub struct Purged {
    /// Expired sessions removed.
    pub purged: u64,
}

/// `revoke`.
#[derive(Debug, Clone, Serialize)]
pub struct Revoked {
    /// Sessions of the subject removed.
    pub revoked: u64,
}

/// `rekey` (see [`RekeyReport`] for each count).
#[derive(Debug, Clone, Serialize)]
pub struct Rekey {
    /// Sessions read.
    pub sessions_seen: u64,
    /// Sessions sealed again under the new key.
    pub sessions_resealed: u64,
    /// Sessions that changed while being resealed (left for the next run).
    pub sessions_changed: u64,
    /// Sessions no key opens (left as they are).
    pub sessions_unreadable: u64,
    /// Signing-key and peer records sealed again.
    pub records_resealed: u64,
    /// Records no key opens (left as they are).
    pub records_unreadable: u64,
    /// Passes over the store.
    pub passes: u32,
    /// Keys retired (none if the old key is still in use).
    pub retired_keys: Vec<String>,
    /// The new primary key's id.
    pub primary_key_id: String,
}

impl Rekey {
    /// The document for `report`, with the new primary key's id.
    pub fn new(report: &RekeyReport, primary: impl Display) -> Self {
        Self {
            sessions_seen: report.sessions_seen,
            sessions_resealed: report.sessions_resealed,
            sessions_changed: report.sessions_changed,
            sessions_unreadable: report.sessions_unreadable,
            records_resealed: report.records_resealed,
            records_unreadable: report.records_unreadable,
            passes: report.passes,
            retired_keys: report.retired_keys.iter().map(|k| k.to_string()).collect(),
            primary_key_id: primary.to_string(),
        }
    }
}

/// `check`: the counts and every case.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Check {
    /// Cases passed.
    pub passed: u64,
    /// Cases failed.
    pub failed: u64,
    /// Cases skipped (the store cannot run them).
    pub skipped: u64,
    /// Every case, in the suite's order.
    pub cases: Vec<CheckCase>,
}

/// One case of [`Check`].
#[derive(Debug, Clone, Serialize)]
pub struct CheckCase {
    /// The case's name (`rule_09_take_is_atomic_under_64_takers`, …).
    pub case: &'static str,
    /// The contract rule it checks.
    pub rule: u8,
    /// `ok`, `skipped` or `FAILED`.
    pub status: &'static str,
    /// Why it failed or was skipped (empty if it passed).
    pub detail: String,
}

/// `demo`.
#[derive(Debug, Clone, Serialize)]
pub struct Demo {
    /// `sled`, or `memory` in a build without sled.
    pub backend: &'static str,
    /// Concurrent takes of one session that got it (1).
    pub winners_of_take: u32,
    /// Sessions the revocation removed.
    pub revoked: u64,
    /// Live sessions at the end.
    pub live_sessions: u64,
    /// Whether a refresh token was found in the database files (false).
    pub plaintext_on_disk: bool,
}

/// One signing key of `keys list` (never key material).
#[derive(Debug, Clone, Serialize)]
pub struct Key {
    /// Its kid (RFC 7638 thumbprint).
    pub kid: String,
    /// py-oidc-auth's 16-hex kid of an imported key.
    pub legacy_kid: Option<String>,
    /// `RS256`, `ES256` or `EdDSA`.
    pub alg: &'static str,
    /// `published` (in the JWKS, signing later), `active` (signing),
    /// `retiring` (superseded, still in the JWKS) or `retired` (out of the
    /// JWKS; dropped by the next maintenance).
    pub state: &'static str,
    /// When it signs from (Unix seconds).
    pub activate_at: i64,
    /// When it leaves the JWKS (Unix seconds; none while it has no
    /// successor), by the default rotation policy.
    pub retire_at: Option<i64>,
}

/// `keys list`.
#[derive(Debug, Clone, Serialize)]
pub struct Keys {
    /// Whether the store holds a key set (a broker creates one at start).
    pub key_set: bool,
    /// Its keys, by activation.
    pub keys: Vec<Key>,
}

/// `keys rotate`.
#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    /// The kid added.
    pub added: Option<String>,
    /// Whether the store had no key set (its first key was created).
    pub created_key_set: bool,
    /// The key set afterwards.
    #[serde(flatten)]
    pub keys: Keys,
}

/// `keys import-pem`.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    /// The imported key's kid.
    pub kid: String,
    /// py-oidc-auth's kid for it, kept as an alias.
    pub legacy_kid: Option<String>,
    /// The key set afterwards.
    #[serde(flatten)]
    pub keys: Keys,
}

/// One peer of `peers list`.
#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    /// The peer's issuer.
    pub issuer: String,
    /// Named with `--peer`.
    pub configured: bool,
    /// A document of it is stored.
    pub stored: bool,
    /// When the stored document was fetched (Unix seconds).
    pub fetched_at: Option<i64>,
    /// The kids the stored document names.
    pub kids: Vec<String>,
}

/// `peers list`.
#[derive(Debug, Clone, Serialize)]
pub struct Peers {
    /// By issuer.
    pub peers: Vec<Peer>,
}

/// `peers refresh`.
#[derive(Debug, Clone, Serialize)]
pub struct Refreshed {
    /// The peer's issuer.
    pub issuer: String,
    /// When it was fetched (Unix seconds).
    pub fetched_at: Option<i64>,
    /// The kids of its usable keys.
    pub kids: Vec<String>,
    /// Keys dropped (weak, `use: enc`, another algorithm, …).
    pub keys_dropped: u64,
}

/// `peers forget`.
#[derive(Debug, Clone, Serialize)]
pub struct Forgotten {
    /// The peer's issuer.
    pub issuer: String,
    /// Whether a document was stored and is now removed.
    pub forgotten: bool,
}
