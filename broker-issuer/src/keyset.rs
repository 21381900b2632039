//! The key set: one sealed create-once record (`secret.issuer.keyset` in the
//! vault) holding every key with its activation time, changed only by
//! compare-and-set. The schedule is in the data, so every worker with the
//! same copy signs with the same key and publishes the same JWKS.
//!
//! - A key *signs* from its `activate_at`, until a newer key activates.
//! - A key is *published* (in the JWKS, accepted for verification) from
//!   when it is added (keys are added `publish_ahead` before they
//!   activate) until `retire_after` past the activation of its successor,
//!   which covers every token it signed.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use broker_core::UnixTime;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::IssuerError;
use crate::key::{KeyMaterial, SigningAlg, generate};

/// The vault secret holding the key set.
pub const KEYSET_SECRET: &str = "issuer.keyset";

/// Format version of the stored key set.
const KEYSET_VERSION: u32 = 1;

/// When keys rotate and how long they stay published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Add a new key when the signing key is this old (`None`: only by hand,
    /// `brokerctl keys rotate`). Default 30 days.
    pub rotate_every: Option<Duration>,
    /// How long before it signs a new key is published. Default 1 hour.
    pub publish_ahead: Duration,
    /// How long a superseded key stays published: at least the access-token
    /// lifetime plus leeway. Default: access TTL + leeway + 5 minutes.
    pub retire_after: Duration,
    /// How often each worker reloads the key set. Must be shorter than
    /// `publish_ahead`, so every worker knows a key before it signs.
    /// Default 60 s.
    pub reload_every: Duration,
}

impl RotationPolicy {
    /// The defaults for tokens living `access_ttl` with `leeway`.
    pub fn for_tokens(access_ttl: Duration, leeway: Duration) -> Self {
        Self {
            rotate_every: Some(Duration::from_secs(30 * 24 * 3600)),
            publish_ahead: Duration::from_secs(3600),
            retire_after: access_ttl + leeway + Duration::from_secs(300),
            reload_every: Duration::from_secs(60),
        }
    }
}

/// One key as stored (the private key is PKCS#8 DER, base64).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredKey {
    pub(crate) kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) legacy_kid: Option<String>,
    pub(crate) alg: SigningAlg,
    pub(crate) pkcs8: Zeroizing<String>,
    pub(crate) created_at: UnixTime,
    pub(crate) activate_at: UnixTime,
}

/// The stored key set, sorted by `activate_at`.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct KeySet {
    pub(crate) v: u32,
    pub(crate) keys: Vec<StoredKey>,
}

/// What `maintain` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationReport {
    /// The kid of a key added (published now, signing from its activation).
    pub added: Option<String>,
    /// Kids of keys dropped after their retirement time.
    pub retired: Vec<String>,
}

impl KeySet {
    /// A set of one fresh key, active at `now`.
    pub(crate) fn first(alg: SigningAlg, now: UnixTime) -> Result<Self, IssuerError> {
        Ok(Self {
            v: KEYSET_VERSION,
            keys: vec![new_key(alg, now, now)?],
        })
    }

    /// Decode the stored JSON; the private keys stay in zeroizing buffers.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, IssuerError> {
        let set: Self = serde_json::from_slice(bytes)
            .map_err(|_| IssuerError::CorruptKeySet("not a key set document"))?;
        if set.v > KEYSET_VERSION {
            return Err(IssuerError::CorruptKeySet(
                "written by a newer version of broker-issuer",
            ));
        }
        if set.keys.is_empty() {
            return Err(IssuerError::CorruptKeySet("no key"));
        }
        Ok(set)
    }

    /// The JSON to seal, in a zeroizing buffer.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(4096));
        // Serializing plain strings and numbers cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
        out
    }

    /// Index of the key signing at `now`: the newest one active.
    pub(crate) fn signing(&self, now: UnixTime) -> Option<usize> {
        (0..self.keys.len())
            .filter(|&i| self.keys[i].activate_at <= now)
            .max_by_key(|&i| self.keys[i].activate_at)
    }

    /// When key `i` stops being published: `retire_after` past its
    /// successor's activation; `None` while it has no successor.
    pub(crate) fn retire_at(&self, i: usize, retire_after: Duration) -> Option<UnixTime> {
        let own = self.keys[i].activate_at;
        self.keys
            .iter()
            .map(|k| k.activate_at)
            .filter(|&a| a > own)
            .min()
            .map(|next| next + secs(retire_after))
    }

    /// Keys past their retirement at `now`, never the signing key.
    fn retired(&self, now: UnixTime, retire_after: Duration) -> Vec<usize> {
        let signing = self.signing(now);
        (0..self.keys.len())
            .filter(|&i| Some(i) != signing)
            .filter(|&i| self.retire_at(i, retire_after).is_some_and(|t| t <= now))
            .collect()
    }

    /// Due work at `now`: drop retired keys, and add a key (published now,
    /// active `publish_ahead` later) when the signing key is older than
    /// `rotate_every` and no successor is scheduled. `None`: nothing due.
    pub(crate) fn maintain(
        &self,
        now: UnixTime,
        policy: &RotationPolicy,
        alg: SigningAlg,
    ) -> Result<Option<(Self, RotationReport)>, IssuerError> {
        let mut next = self.clone();
        let mut report = RotationReport::default();
        let retired = self.retired(now, policy.retire_after);
        if !retired.is_empty() {
            report.retired = retired.iter().map(|&i| self.keys[i].kid.clone()).collect();
            next.keys = (0..self.keys.len())
                .filter(|i| !retired.contains(i))
                .map(|i| self.keys[i].clone())
                .collect();
        }
        let scheduled = next.keys.iter().any(|k| k.activate_at > now);
        let due = match (policy.rotate_every, next.signing(now)) {
            (Some(every), Some(i)) => next.keys[i].activate_at + secs(every) <= now,
            (_, None) => true,
            (None, Some(_)) => false,
        };
        if due && !scheduled {
            let key = new_key(alg, now, now + secs(policy.publish_ahead))?;
            report.added = Some(key.kid.clone());
            next.keys.push(key);
        }
        if report == RotationReport::default() {
            return Ok(None);
        }
        next.keys.sort_by_key(|k| k.activate_at);
        Ok(Some((next, report)))
    }

    /// Add a key by hand: active at `activate_at`, published now.
    pub(crate) fn with_key(&self, key: StoredKey) -> Self {
        let mut next = self.clone();
        next.keys.push(key);
        next.keys.sort_by_key(|k| k.activate_at);
        next
    }
}

/// A fresh key of `alg`, created at `now`, active at `activate_at`.
pub(crate) fn new_key(
    alg: SigningAlg,
    now: UnixTime,
    activate_at: UnixTime,
) -> Result<StoredKey, IssuerError> {
    let pkcs8 = generate(alg)?;
    stored_key(alg, &pkcs8, None, now, activate_at)
}

/// The stored form of a PKCS#8 key (its kid computed from it).
pub(crate) fn stored_key(
    alg: SigningAlg,
    pkcs8: &[u8],
    legacy_kid: Option<String>,
    now: UnixTime,
    activate_at: UnixTime,
) -> Result<StoredKey, IssuerError> {
    let kid = KeyMaterial::from_pkcs8(alg, pkcs8)?.kid;
    Ok(StoredKey {
        kid,
        legacy_kid,
        alg,
        pkcs8: Zeroizing::new(STANDARD.encode(pkcs8)),
        created_at: now,
        activate_at,
    })
}

/// The usable keys of a stored one; its kid must match its key.
pub(crate) fn load(key: &StoredKey) -> Result<KeyMaterial, IssuerError> {
    let der = Zeroizing::new(
        STANDARD
            .decode(key.pkcs8.as_bytes())
            .map_err(|_| IssuerError::CorruptKeySet("a key is not base64"))?,
    );
    let material = KeyMaterial::from_pkcs8(key.alg, &der)?;
    if material.kid != key.kid {
        return Err(IssuerError::CorruptKeySet("a key does not match its kid"));
    }
    Ok(material)
}

/// Whole seconds of `d`.
pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}
