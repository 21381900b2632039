//! Errors: driver errors mapped to [`StoreError`] kinds and redacted, and
//! the typed reasons `setup` refuses a server or a namespace.

use std::fmt;

use broker_core::{Corruption, Result, StoreError};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Map a driver error: connection, timeout and cluster-availability
/// failures (including a `MOVED`/`ASK` redirection the client could not
/// follow within its retries, which happens while a node restarts or the
/// cluster reshards) are [`StoreError::Unavailable`], everything else
/// [`StoreError::Backend`]. The cause is kept redacted ([`DriverError`]).
pub(crate) fn map_err(op: &'static str, e: RedisError) -> StoreError {
    let unavailable = matches!(
        e.kind(),
        ErrorKind::Io
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
            )
    ) || e.is_cluster_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal();
    let cause = DriverError::from(&e);
    if unavailable {
        StoreError::unavailable(op, cause)
    } else {
        StoreError::backend(op, cause)
    }
}

/// A redis error reduced to what cannot hold a value: its category and
/// server error code (a server message can quote a command's arguments,
/// and keys hold hex-encoded ids), or the text of an I/O failure.
#[derive(Debug, Clone)]
pub struct DriverError {
    category: String,
    code: Option<String>,
    io: Option<String>,
}

impl DriverError {
    /// The error's category, e.g. `"I/O error"`, `"cluster down"`.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The server's error code (`"WRONGTYPE"`, `"NOSCRIPT"`, ...), if any.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

impl From<&RedisError> for DriverError {
    fn from(e: &RedisError) -> Self {
        Self {
            category: e.category().to_owned(),
            code: e.code().map(str::to_owned),
            // I/O errors carry OS text only ("Connection refused", "timed out").
            io: matches!(e.kind(), ErrorKind::Io).then(|| e.to_string()),
        }
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis: {}", self.category)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        if let Some(io) = &self.io {
            write!(f, ": {io}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DriverError {}

/// Why [`BrokerStore::setup`](broker_core::BrokerStore::setup) refused to
/// use a server. It is the source of the [`StoreError::Backend`] that
/// `setup` returns (a namespace's storage format it cannot use is a
/// [`broker_core::FormatError`] instead, as on every backend):
///
/// ```no_run
/// # async fn demo(store: store_redis::RedisStore) {
/// use broker_core::BrokerStore;
/// use store_redis::SetupError;
/// if let Err(e) = store.setup().await {
///     match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<SetupError>()) {
///         Some(SetupError::EvictingPolicy { policy }) => eprintln!("set noeviction, not {policy}"),
///         _ => eprintln!("{e}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupError {
    /// A server's `maxmemory-policy` lets Redis evict keys under memory
    /// pressure: an evicted revocation marker, tombstone or subject index
    /// would let a revoked session back. Set `noeviction`, or opt in with
    /// [`RedisStore::allow_eviction`](crate::RedisStore::allow_eviction).
    EvictingPolicy {
        /// The policy a server reported, e.g. `allkeys-lru`.
        policy: String,
    },
    /// The server is a replica: the store reads and writes primaries only.
    Replica,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EvictingPolicy { policy } => write!(
                f,
                "maxmemory-policy {policy} can evict the store's keys (a revocation marker or \
                 index, and with it a logout); set maxmemory-policy noeviction, or opt in with \
                 RedisStore::allow_eviction"
            ),
            Self::Replica => f.write_str("the server is a replica; connect to the primary"),
        }
    }
}

impl std::error::Error for SetupError {}

/// A jti, subject or name read back from Redis.
pub(crate) fn utf8(op: &'static str, bytes: Vec<u8>, what: &'static str) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| StoreError::corrupt(op, Corruption::Malformed(what)))
}

/// A stored revocation marker that cannot be read.
pub(crate) fn bad_marker(op: &'static str) -> StoreError {
    StoreError::corrupt(op, Corruption::Malformed("revocation marker"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_errors_are_redacted_and_classified() {
        let e = RedisError::from((
            ErrorKind::Extension,
            "server said",
            "ERR unknown command, with args beginning with: 'secret-jti'".to_owned(),
        ));
        let mapped = map_err("get_session", e);
        assert!(matches!(
            mapped,
            StoreError::Backend {
                op: "get_session",
                ..
            }
        ));
        let text = format!(
            "{mapped} {mapped:?} {}",
            std::error::Error::source(&mapped)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(!text.contains("secret"), "{text}");
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(map_err("health", io).is_retryable());
        let down = RedisError::from((ErrorKind::Server(ServerErrorKind::ClusterDown), "down"));
        assert!(map_err("health", down).is_retryable());
    }
}
