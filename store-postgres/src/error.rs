//! Mapping driver errors to [`StoreError`] kinds, by SQLSTATE code and sqlx
//! error variant (never by message text).

use std::fmt;

use broker_core::StoreError;

/// A PostgreSQL error reported by the server, kept as the `source` of a
/// [`StoreError`].
///
/// It keeps the SQLSTATE code, the primary message and the names of the
/// table and constraint involved, and deliberately drops the server's
/// `DETAIL` and `HINT` fields, which can quote row values (a unique
/// violation's detail holds the key), so no `jti` or `sub` reaches an error
/// chain or a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseError {
    code: Option<String>,
    message: String,
    table: Option<String>,
    constraint: Option<String>,
}

impl DatabaseError {
    fn from_driver(e: &dyn sqlx::error::DatabaseError) -> Self {
        Self {
            code: e.code().map(|c| c.into_owned()),
            message: e.message().to_owned(),
            table: e.table().map(str::to_owned),
            constraint: e.constraint().map(str::to_owned),
        }
    }

    /// The SQLSTATE code (`"23505"`, `"57P01"`, ...), if the server sent one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The server's primary message (no detail, no hint).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The table involved, when the server names one.
    pub fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }

    /// The constraint involved, when the server names one.
    pub fn constraint(&self) -> Option<&str> {
        self.constraint.as_deref()
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "PostgreSQL error {code}: {}", self.message),
            None => write!(f, "PostgreSQL error: {}", self.message),
        }
    }
}

impl std::error::Error for DatabaseError {}

/// True for SQLSTATE codes that mean "the server cannot serve this now;
/// retrying later may work".
pub(crate) fn sqlstate_is_unavailable(code: &str) -> bool {
    // Class 08: connection exception. Class 53: insufficient resources
    // (too many connections, out of memory, disk full).
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now (starting up, recovering)
                | "57P05" // idle_session_timeout
                | "57014" // query_canceled (statement_timeout)
                | "55P03" // lock_not_available (lock_timeout)
                | "40001" // serialization_failure
                | "40P01" // deadlock_detected
                | "25006" // read_only_sql_transaction (failed over to a standby)
        )
}

/// True if a statement run outside a transaction block was refused for a
/// reason the operation's own transaction handles, so that running it there
/// is right: a row lock held by another transaction (`55P03`: a take or
/// delete never waits outside its transaction, see the crate docs), or a
/// serialization failure or deadlock under a pool whose default isolation
/// is stricter than `READ COMMITTED` (`40001`, `40P01`). Nothing was
/// changed.
pub(crate) fn needs_transaction(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| matches!(&*code, "55P03" | "40001" | "40P01"))
}

/// Map a driver error for operation `op` to a [`StoreError`].
pub(crate) fn classify(op: &'static str, e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) => {
            let info = DatabaseError::from_driver(db.as_ref());
            if info.code().is_some_and(sqlstate_is_unavailable) {
                StoreError::unavailable(op, info)
            } else {
                StoreError::backend(op, info)
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::unavailable(op, e),
        other => StoreError::backend(op, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        for code in [
            "08006", "08001", "57P01", "57P03", "53300", "40001", "57014",
        ] {
            assert!(sqlstate_is_unavailable(code), "{code}");
        }
        for code in ["23505", "42P01", "42501", "22021", "XX000"] {
            assert!(!sqlstate_is_unavailable(code), "{code}");
        }
    }

    #[test]
    fn driver_errors_are_classified() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(matches!(
            classify("op", sqlx::Error::Io(io)),
            StoreError::Unavailable { op: "op", .. }
        ));
        assert!(matches!(
            classify("op", sqlx::Error::PoolTimedOut),
            StoreError::Unavailable { .. }
        ));
        assert!(matches!(
            classify("op", sqlx::Error::PoolClosed),
            StoreError::Unavailable { .. }
        ));
        assert!(matches!(
            classify("op", sqlx::Error::RowNotFound),
            StoreError::Backend { .. }
        ));
        assert!(
            StoreError::timed_out("get_session", std::time::Duration::from_secs(1)).is_retryable()
        );
    }
}
