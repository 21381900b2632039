//! [`GrantError`]: every way a grant request fails, each with one RFC 6749 /
//! RFC 8628 error code and one HTTP status, and a message safe to return
//! (no token, code, secret or claim value in it).

use broker_core::StoreError;
use broker_issuer::IssuerError;

/// Why a login, token, device or logout request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The request is malformed (missing or duplicate field, bad value).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The grant (code, refresh token, device code) is invalid, expired,
    /// revoked or was issued to another client.
    #[error("invalid grant: {0}")]
    InvalidGrant(&'static str),
    /// A used refresh token was presented again; its whole login was
    /// revoked in this very request (RFC 9700 §4.14.2).
    #[error("refresh token reuse detected; the session was revoked")]
    ReuseDetected,
    /// The `grant_type` is not one this broker serves.
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// Device flow: the user has not approved yet; poll again.
    #[error("authorization pending")]
    AuthorizationPending,
    /// Device flow: polling too fast; wait longer between polls.
    #[error("slow down")]
    SlowDown,
    /// Device flow: the device code expired.
    #[error("the device code expired")]
    ExpiredToken,
    /// The user or the identity provider refused.
    #[error("access denied")]
    AccessDenied,
    /// A redirect URI not on the allow-list.
    #[error("redirect URI not allowed")]
    RedirectNotAllowed,
    /// The identity provider did not answer in time or failed (5xx, a
    /// dropped connection); retry later: nothing was consumed.
    #[error("the identity provider is temporarily unavailable")]
    IdpUnavailable,
    /// The identity provider answered something unusable.
    #[error("the identity provider sent an unusable answer: {0}")]
    IdpMalformed(&'static str),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Minting failed.
    #[error("issuer: {0}")]
    Issuer(#[from] IssuerError),
}

impl GrantError {
    /// The RFC 6749 §5.2 / RFC 8628 §3.5 error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::RedirectNotAllowed => "invalid_request",
            Self::InvalidGrant(_) | Self::ReuseDetected => "invalid_grant",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::AccessDenied => "access_denied",
            Self::IdpUnavailable => "temporarily_unavailable",
            Self::IdpMalformed(_) => "server_error",
            Self::Store(e) if e.is_retryable() => "temporarily_unavailable",
            Self::Store(_) | Self::Issuer(_) => "server_error",
        }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self.code() {
            "temporarily_unavailable" => 503,
            "server_error" => 500,
            _ => 400,
        }
    }

    /// A description safe to return to the client: store and issuer
    /// failures say only that.
    pub fn description(&self) -> String {
        match self {
            Self::Store(_) => "the broker's store failed".into(),
            Self::Issuer(_) => "the broker could not sign a token".into(),
            other => other.to_string(),
        }
    }
}
