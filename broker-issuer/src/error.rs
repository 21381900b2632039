//! Errors: [`IssuerError`] for keys, configuration and storage;
//! [`VerifyError`] for tokens that do not verify. Neither ever carries a
//! token, a key or a claim value.

use broker_core::StoreError;

/// What went wrong with the issuer's keys, configuration or store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerError {
    /// The configuration is unusable; says what and why.
    #[error("invalid issuer configuration: {0}")]
    Config(String),
    /// The store (or the vault that seals the key set) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be generated, imported or loaded.
    #[error("{op}: key error: {reason}")]
    Key {
        /// The operation.
        op: &'static str,
        /// What is wrong, without key material.
        reason: &'static str,
    },
    /// The stored key set cannot be read (damaged, or a newer format).
    #[error("the stored key set is corrupt: {0}")]
    CorruptKeySet(&'static str),
    /// Signing a token failed.
    #[error("signing failed")]
    Sign,
}

/// Why a token was refused. Every variant maps to HTTP 401; none says more
/// than the kind (the message is safe to return to a client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a JWT, or a header or payload that does not parse.
    #[error("malformed token")]
    Malformed,
    /// The `iss` is neither ours nor a trusted peer's.
    #[error("untrusted issuer")]
    UntrustedIssuer,
    /// No key of that issuer has this `kid` (or it was retired).
    #[error("unknown signing key")]
    UnknownKey,
    /// The header's `alg` is not the key's, or not allowed for the issuer.
    #[error("algorithm not allowed")]
    Algorithm,
    /// The `typ` header is not what this issuer's tokens carry (`at+jwt`).
    #[error("wrong token type")]
    TokenType,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// Past `exp` (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// Before `nbf` or `iat` (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` holds none of the accepted audiences.
    #[error("wrong audience")]
    Audience,
    /// A required claim is missing or of the wrong type.
    #[error("missing or invalid claim")]
    Claims,
    /// A peer's keys could not be fetched in time; try again later.
    #[error("issuer keys unavailable")]
    Unavailable,
}

impl VerifyError {
    /// Map a jsonwebtoken error onto a kind, dropping its message (which
    /// can quote claim values).
    pub(crate) fn from_jwt(e: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => Self::Signature,
            K::ExpiredSignature => Self::Expired,
            K::ImmatureSignature => Self::NotYetValid,
            K::InvalidAudience => Self::Audience,
            K::InvalidIssuer => Self::UntrustedIssuer,
            K::InvalidAlgorithm | K::InvalidAlgorithmName => Self::Algorithm,
            K::MissingRequiredClaim(_) | K::InvalidSubject => Self::Claims,
            _ => Self::Malformed,
        }
    }
}
