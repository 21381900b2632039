//! What the broker keeps per login, as vault entries (so they expire, are
//! revoked with their subject, purged, migrated and re-encrypted like any
//! session):
//!
//! - a **grant** per refresh token, keyed by the token's `jti`: the IdP's
//!   refresh token, the login (family) it belongs to, a SHA-256 of the
//!   token's secret, and its state (`Live`, or `Claimed` by a refresh that
//!   created `next`);
//! - a **family** per login, keyed `f.<family id>`: `Active { tip }` (the
//!   one live grant), or `Compromised` / `LoggedOut`, plus the user's
//!   claims for `/userinfo` and minting.
//!
//! The refresh token on the wire is `<jti>.<secret>`: 128 random bits of
//! id and 256 of secret, base64url. Only the secret's hash is stored, so a
//! database reader cannot refresh, and a `jti` alone (it is in every access
//! token) revokes nothing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broker_core::UnixTime;
use rand::TryRng as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::error::GrantError;

/// Version of the entry payloads written here.
const PAYLOAD_VERSION: u32 = 1;

/// The key prefix of family entries.
pub const FAMILY_PREFIX: &str = "f.";

/// `bytes` random bytes from the operating system, base64url.
pub(crate) fn random_id(bytes: usize) -> String {
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    // The OS generator failing is not recoverable; the thread generator is
    // seeded from it too.
    if rand::rngs::SysRng.try_fill_bytes(&mut buf).is_err() {
        rand::Rng::fill_bytes(&mut rand::rng(), &mut buf);
    }
    URL_SAFE_NO_PAD.encode(&*buf)
}

/// A refresh token as issued: `<jti>.<secret>`.
pub(crate) struct RefreshToken {
    pub(crate) jti: String,
    secret: SecretString,
}

impl RefreshToken {
    /// A fresh token.
    pub(crate) fn generate() -> Self {
        Self {
            jti: random_id(16),
            secret: SecretString::from(random_id(32)),
        }
    }

    /// Parse what a client presented. Anything but two base64url parts of
    /// the right lengths is malformed (an access JWT has three parts).
    pub(crate) fn parse(presented: &str) -> Result<Self, GrantError> {
        let malformed = GrantError::InvalidGrant("malformed refresh token");
        let (jti, secret) = presented.split_once('.').ok_or(malformed)?;
        let b64 = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !b64(jti, 22) || !b64(secret, 43) {
            return Err(GrantError::InvalidGrant("malformed refresh token"));
        }
        Ok(Self {
            jti: jti.to_owned(),
            secret: SecretString::from(secret.to_owned()),
        })
    }

    /// The wire form.
    pub(crate) fn to_wire(&self) -> SecretString {
        SecretString::from(format!("{}.{}", self.jti, self.secret.expose_secret()))
    }

    /// SHA-256 of the secret, base64url: what the grant keeps.
    pub(crate) fn verifier(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.secret.expose_secret().as_bytes()))
    }

    /// True if this token's secret hashes to `verifier` (constant time).
    pub(crate) fn matches(&self, verifier: &str) -> bool {
        self.verifier().as_bytes().ct_eq(verifier.as_bytes()).into()
    }
}

/// A grant's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum GrantState {
    /// Usable once.
    Live,
    /// Used by a refresh at `at`, which created grant `next`.
    Claimed { next: String, at: UnixTime },
}

/// One refresh token's grant (entry payload).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Grant {
    pub(crate) v: u32,
    pub(crate) family: String,
    pub(crate) verifier: String,
    /// The IdP's refresh token for this step of the login.
    pub(crate) idp_refresh_token: Zeroizing<String>,
    #[serde(flatten)]
    pub(crate) state: GrantState,
}

impl Grant {
    pub(crate) fn new(family: &str, verifier: String, idp_refresh_token: &str) -> Self {
        Self {
            v: PAYLOAD_VERSION,
            family: family.to_owned(),
            verifier,
            idp_refresh_token: Zeroizing::new(idp_refresh_token.to_owned()),
            state: GrantState::Live,
        }
    }
}

/// A login's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum FamilyState {
    /// Its live grant is `tip`.
    Active { tip: String },
    /// A used refresh token was replayed at `at`: every grant is gone.
    Compromised { at: UnixTime },
    /// The user logged out (or the IdP ended the session) at `at`.
    LoggedOut { at: UnixTime },
}

/// What the broker knows of the user, for minting and `/userinfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct UserClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
}

/// One login's family record (entry payload).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Family {
    pub(crate) v: u32,
    #[serde(flatten)]
    pub(crate) state: FamilyState,
    pub(crate) user: UserClaims,
    /// The IdP's ID token, for `id_token_hint` at logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id_token: Option<Zeroizing<String>>,
}

impl Family {
    pub(crate) fn new(tip: &str, user: UserClaims, id_token: Option<String>) -> Self {
        Self {
            v: PAYLOAD_VERSION,
            state: FamilyState::Active {
                tip: tip.to_owned(),
            },
            user,
            id_token: id_token.map(Zeroizing::new),
        }
    }
}

/// A family's entry key.
pub(crate) fn family_key(family: &str) -> String {
    format!("{FAMILY_PREFIX}{family}")
}

/// Encode a payload (JSON) in a zeroizing buffer.
pub(crate) fn encode<T: Serialize>(payload: &T) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(512));
    // Plain strings and numbers: serialization cannot fail.
    let _ = serde_json::to_writer(&mut *out, payload);
    out
}

/// Decode a payload written by [`encode`].
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, GrantError> {
    serde_json::from_slice(bytes).map_err(|_| GrantError::InvalidGrant("unreadable broker entry"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_parse_and_verify_in_constant_shape() {
        let t = RefreshToken::generate();
        let wire = t.to_wire();
        let parsed = RefreshToken::parse(wire.expose_secret()).unwrap();
        assert_eq!(parsed.jti, t.jti);
        assert!(parsed.matches(&t.verifier()));
        let other = RefreshToken::generate();
        assert!(!other.matches(&t.verifier()));
        for bad in [
            "",
            "abc",
            "a.b.c",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
            &format!("{}.{}", t.jti, "x".repeat(42)),
            &format!("{}.{}", "!".repeat(22), "x".repeat(43)),
        ] {
            assert!(RefreshToken::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payloads_round_trip() {
        let g = Grant::new("fam", "v".into(), "idp-rt");
        let back: Grant = decode(&encode(&g)).unwrap();
        assert_eq!(back.state, GrantState::Live);
        assert_eq!(back.idp_refresh_token.as_str(), "idp-rt");
        let f = Family::new("tip", UserClaims::default(), None);
        let back: Family = decode(&encode(&f)).unwrap();
        assert_eq!(back.state, FamilyState::Active { tip: "tip".into() });
    }
}
