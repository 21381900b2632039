//! The one error type every store and the vault return.
//!
//! Each variant is a kind a caller can act on (retry, answer 400, alert, ...).
//! Messages name the operation and never carry a value: no token, key,
//! user_info, and not even a `jti` or `sub`.

use std::fmt;

use crate::crypto::KeyId;

/// A boxed backend cause, kept as the error's `source`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for results of store and vault operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What went wrong, by kind. `op` names the operation (`"get_session"`, ...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be reached or did not answer in time; retry later.
    #[error("{op}: the store is unavailable")]
    Unavailable {
        /// The operation that failed.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The input was refused before any I/O (answer the client with a 400).
    #[error("{op}: invalid input: {reason}")]
    InvalidInput {
        /// The operation that refused the input.
        op: &'static str,
        /// What is wrong, without the value itself.
        reason: String,
    },
    /// The record already exists (a create on a taken id).
    #[error("{op}: conflict: {what}")]
    Conflict {
        /// The operation that conflicted.
        op: &'static str,
        /// What already exists.
        what: &'static str,
    },
    /// A sealed value failed authentication: edited, truncated, or moved to
    /// another record. Worth an alert.
    #[error("{op}: a sealed value failed authentication (edited, truncated or moved)")]
    Tampered {
        /// The operation that read the value.
        op: &'static str,
    },
    /// A sealed value names a key id that is not in the keyring.
    #[error("{op}: sealed under key id {key_id}, which is not in the keyring")]
    UnknownKey {
        /// The operation that read the value.
        op: &'static str,
        /// The key id found in the envelope.
        key_id: KeyId,
    },
    /// The keyring leaves out a key the store registered and no re-encryption
    /// has retired yet, so data sealed under it would become unreadable.
    #[error(
        "{op}: key id {key_id} may still protect stored data; keep it as an older key until a \
         re-encryption (rekey) has moved everything to the primary key"
    )]
    KeyInUse {
        /// The operation (opening the keyring).
        op: &'static str,
        /// The left-out key.
        key_id: KeyId,
    },
    /// The key no longer seals in this store: a re-encryption (rekey)
    /// closed it before moving everything to the new primary. A worker
    /// still configured with it as its primary must be reconfigured.
    #[error(
        "{op}: key id {key_id} was retired by a re-encryption (rekey) and no longer seals; \
         configure the new primary key (keep this one as an older key until the rekey ends)"
    )]
    KeyRetired {
        /// The operation that tried to seal or open with it as the primary.
        op: &'static str,
        /// The retired key.
        key_id: KeyId,
    },
    /// A stored record cannot be decoded (not sealed by this library, or damaged).
    #[error("{op}: corrupt record: {reason}")]
    Corrupt {
        /// The operation that read the record.
        op: &'static str,
        /// What is wrong with it.
        reason: Corruption,
    },
    /// The key or passphrase given does not match the store's; detected when
    /// the keyring opens.
    #[error("{op}: wrong key: {reason}")]
    WrongKey {
        /// The operation that checked the key.
        op: &'static str,
        /// What did not match, and what to do.
        reason: String,
    },
    /// A key given is malformed (not 32 bytes, bad base64, duplicate id).
    #[error("{op}: invalid key: {reason}")]
    InvalidKey {
        /// The operation that read the key.
        op: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The primary key has sealed as many values as AES-GCM allows with
    /// random nonces; rotate to a new primary key.
    #[error("{op}: key id {key_id} has used its nonce budget; rotate to a new primary key")]
    KeyExhausted {
        /// The operation that tried to seal.
        op: &'static str,
        /// The exhausted key.
        key_id: KeyId,
    },
    /// Any other backend failure (permissions, schema mismatch, ...).
    #[error("{op}: backend error")]
    Backend {
        /// The operation that failed.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

/// The source of a [`StoreError::Unavailable`] for an operation that did not
/// finish within its store's operation timeout (every server store has one,
/// set with `with_operation_timeout`; see
/// [`StoreBackend::operation_timeout`](crate::StoreBackend::operation_timeout)).
/// A write that timed out may or may not have been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationTimedOut {
    /// The timeout that elapsed.
    pub after: std::time::Duration,
}

impl fmt::Display for OperationTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no answer within {:?}", self.after)
    }
}

impl std::error::Error for OperationTimedOut {}

impl StoreError {
    /// An [`StoreError::Unavailable`] for `op`, which ran past `after`.
    pub fn timed_out(op: &'static str, after: std::time::Duration) -> Self {
        Self::Unavailable {
            op,
            source: Box::new(OperationTimedOut { after }),
        }
    }

    /// An [`StoreError::InvalidInput`] for `op`.
    pub fn invalid(op: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            op,
            reason: reason.into(),
        }
    }

    /// An [`StoreError::Unavailable`] wrapping a driver error.
    pub fn unavailable(op: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            op,
            source: source.into(),
        }
    }

    /// A [`StoreError::Backend`] wrapping a driver error.
    pub fn backend(op: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            op,
            source: source.into(),
        }
    }

    /// A [`StoreError::Corrupt`] for `op`.
    pub fn corrupt(op: &'static str, reason: Corruption) -> Self {
        Self::Corrupt { op, reason }
    }

    /// The operation this error came from.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Unavailable { op, .. }
            | Self::InvalidInput { op, .. }
            | Self::Conflict { op, .. }
            | Self::Tampered { op }
            | Self::UnknownKey { op, .. }
            | Self::KeyInUse { op, .. }
            | Self::KeyRetired { op, .. }
            | Self::Corrupt { op, .. }
            | Self::WrongKey { op, .. }
            | Self::InvalidKey { op, .. }
            | Self::KeyExhausted { op, .. }
            | Self::Backend { op, .. } => op,
        }
    }

    /// True when retrying later may succeed (the database was unreachable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The same error reported for another operation (used where one
    /// operation is built from others).
    pub fn with_op(mut self, new_op: &'static str) -> Self {
        match &mut self {
            Self::Unavailable { op, .. }
            | Self::InvalidInput { op, .. }
            | Self::Conflict { op, .. }
            | Self::Tampered { op }
            | Self::UnknownKey { op, .. }
            | Self::KeyInUse { op, .. }
            | Self::KeyRetired { op, .. }
            | Self::Corrupt { op, .. }
            | Self::WrongKey { op, .. }
            | Self::InvalidKey { op, .. }
            | Self::KeyExhausted { op, .. }
            | Self::Backend { op, .. } => *op = new_op,
        }
        self
    }
}

/// Why a stored record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// Shorter than its format allows.
    Truncated,
    /// Starts with a version byte this library does not know (plaintext
    /// planted in a store lands here).
    UnsupportedVersion(u8),
    /// Its fields do not decode; the text says which part.
    Malformed(&'static str),
    /// A record that is meant to be authenticated by the vault's key (a
    /// peer's JWKS) carries no valid tag: written around the vault, moved,
    /// re-dated or edited. Never trusted.
    Unauthenticated(&'static str),
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported format version 0x{v:02x}"),
            Self::Malformed(what) => write!(f, "malformed {what}"),
            Self::Unauthenticated(what) => write!(
                f,
                "{what} not authenticated by this store's key (written around the vault, \
                 moved, re-dated or edited)"
            ),
        }
    }
}
