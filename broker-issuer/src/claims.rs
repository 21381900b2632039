//! The access token's claims (RFC 9068, plus what py-oidc-auth peers read)
//! and what a verification returns.

use std::fmt;

use broker_core::UnixTime;
use serde::{Deserialize, Serialize};

/// The `aud` claim: one audience (serialized as a string, as py-oidc-auth
/// expects) or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// The audiences, one or many.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let slice: &[String] = match self {
            Self::One(a) => std::slice::from_ref(a),
            Self::Many(v) => v,
        };
        slice.iter().map(String::as_str)
    }

    /// True if `aud` is among them.
    pub fn contains(&self, aud: &str) -> bool {
        self.iter().any(|a| a == aud)
    }
}

/// An access token's claims: RFC 9068's, the session id `sid` of the login
/// (family), and the user claims py-oidc-auth peers read
/// (`preferred_username`, `email`, `roles`). `Debug` shows the token's
/// identity and times, never the user's claims.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The issuer (an absolute URL).
    pub iss: String,
    /// The subject.
    pub sub: String,
    /// The audience(s).
    pub aud: Audience,
    /// Expiry (Unix seconds).
    pub exp: UnixTime,
    /// Issued at (Unix seconds).
    pub iat: UnixTime,
    /// Not before (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<UnixTime>,
    /// The token's id: the broker grant's `jti`.
    pub jti: String,
    /// The client the broker is at the identity provider (RFC 9068 §2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The login (token family) this token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// When the user authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<UnixTime>,
    /// Granted scopes, space-delimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The user's roles (flattened as py-oidc-auth does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The user's name at the identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// The user's email, omitted when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Any other claims.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for AccessClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessClaims")
            .field("iss", &self.iss)
            .field("aud", &self.aud)
            .field("exp", &self.exp)
            .field("iat", &self.iat)
            .field("sub", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl AccessClaims {
    /// The scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or("").split_ascii_whitespace()
    }
}

/// Who issued a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// This broker.
    Local,
    /// A trusted peer broker.
    Peer {
        /// The peer's issuer.
        issuer: String,
    },
}

/// A token that verified: its origin, the key that signed it and its claims.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Who issued it.
    pub origin: Origin,
    /// The `kid` of the key that signed it.
    pub kid: String,
    /// Its claims (for peer tokens, after the peer's claim policy).
    pub claims: AccessClaims,
}
