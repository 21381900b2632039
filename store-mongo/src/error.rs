//! Mapping driver errors to [`StoreError`] without leaking values.
//!
//! A server's error message can quote the document or key it refused
//! (`E11000 duplicate key error ... dup key: { _id: "<jti>" }`), so the
//! driver's error is never kept as-is: the `source` of a [`StoreError`] is a
//! [`DriverError`] holding only the error's category, code and code name,
//! plus the driver's message for transport-level failures, which describe
//! hosts and sockets, never documents.

use std::fmt;

use broker_core::{Corruption, StoreError};
use mongodb::error::{Error, ErrorKind, WriteFailure};

/// Server error codes meaning "the server is going away, stepping down or
/// unreachable; retry later" (the driver's retryable and state-change codes).
const UNAVAILABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10058, // LegacyNotPrimary
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// The duplicate key error code.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// A driver error with everything that could quote a value removed: what
/// kind of failure it was, the server's error code and code name, and for
/// transport failures the driver's own description (hosts, sockets, timeouts).
#[derive(Debug, Clone)]
pub struct DriverError {
    category: &'static str,
    code: Option<i32>,
    code_name: Option<String>,
    detail: Option<String>,
}

impl DriverError {
    /// The server's error code, if the server answered with one.
    pub fn code(&self) -> Option<i32> {
        self.code
    }

    /// The kind of driver failure (`"io"`, `"server selection"`, `"command"`, ...).
    pub fn category(&self) -> &'static str {
        self.category
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mongodb {} error", self.category)?;
        if let Some(code) = self.code {
            write!(f, " (code {code}")?;
            if let Some(name) = self.code_name.as_deref().filter(|n| !n.is_empty()) {
                write!(f, " {name}")?;
            }
            f.write_str(")")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DriverError {}

/// The server error code of `e`, for command and write errors.
pub(crate) fn code(e: &Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        _ => None,
    }
}

/// True if `e` is a duplicate key error.
pub(crate) fn is_duplicate_key(e: &Error) -> bool {
    code(e) == Some(DUPLICATE_KEY)
}

fn describe(e: &Error) -> DriverError {
    let (category, code_name, detail): (&'static str, Option<String>, Option<String>) = match &*e
        .kind
    {
        ErrorKind::Io(io) => ("io", None, Some(io.kind().to_string())),
        ErrorKind::ServerSelection { message, .. } => {
            ("server selection", None, Some(message.clone()))
        }
        ErrorKind::ConnectionPoolCleared { .. } => ("connection pool cleared", None, None),
        ErrorKind::DnsResolve { message, .. } => ("dns resolution", None, Some(message.clone())),
        ErrorKind::Shutdown => ("client shut down", None, None),
        ErrorKind::Authentication { .. } => ("authentication", None, None),
        ErrorKind::IncompatibleServer { message, .. } => {
            ("incompatible server", None, Some(message.clone()))
        }
        ErrorKind::InvalidTlsConfig { .. } => ("tls configuration", None, None),
        ErrorKind::Command(c) => ("command", Some(c.code_name.clone()), None),
        ErrorKind::Write(WriteFailure::WriteError(w)) => ("write", w.code_name.clone(), None),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => {
            ("write concern", Some(w.code_name.clone()), None)
        }
        ErrorKind::InvalidArgument { .. } => ("invalid argument", None, None),
        ErrorKind::BsonDeserialization(_) => ("bson deserialization", None, None),
        ErrorKind::BsonSerialization(_) => ("bson serialization", None, None),
        ErrorKind::InvalidResponse { .. } => ("invalid response", None, None),
        ErrorKind::Internal { .. } => ("internal", None, None),
        ErrorKind::Transaction { .. } => ("transaction", None, None),
        _ => ("driver", None, None),
    };
    DriverError {
        category,
        code: code(e),
        code_name,
        detail,
    }
}

/// True if `e` means the server could not be reached or is going away.
pub(crate) fn is_unavailable(e: &Error) -> bool {
    match &*e.kind {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => true,
        _ => {
            code(e).is_some_and(|c| UNAVAILABLE_CODES.contains(&c))
                || e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR)
                || e.contains_label(mongodb::error::SYSTEM_OVERLOADED_ERROR)
        }
    }
}

/// Map a driver error from operation `op` to a [`StoreError`].
pub(crate) fn map(op: &'static str, e: Error) -> StoreError {
    if let ErrorKind::BsonDeserialization(_) = &*e.kind {
        return StoreError::corrupt(op, Corruption::Malformed("stored document"));
    }
    let described = describe(&e);
    if is_unavailable(&e) {
        StoreError::unavailable(op, described)
    } else {
        StoreError::backend(op, described)
    }
}

/// The error for a stored document of the wrong shape.
pub(crate) fn malformed(op: &'static str) -> StoreError {
    StoreError::corrupt(op, Corruption::Malformed("stored document"))
}
