#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use broker_core::backend::DEFAULT_OPERATION_TIMEOUT;
use broker_core::clock::system_clock;
use broker_core::{Clock, Corruption, Namespace, SessionRecord, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite, Transaction};

pub use sqlx;

mod sql;
mod store;

/// A [`BrokerStore`](broker_core::BrokerStore) on one SQLite database file.
///
/// Clones and [`SqliteStore::with_namespace`] share the pool.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    namespace: Namespace,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    sql: Arc<sql::Statements>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("namespace", &self.namespace)
            .field("operation_timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How long a statement waits for SQLite's write lock, and a call for a
/// connection of the pool of [`SqliteStore::connect`], before it fails as
/// `Unavailable`: below the operation timeout, so a busy database fails
/// with the driver's error, not a bare timeout.
const LOCK_WAIT: Duration = Duration::from_secs(5);

impl SqliteStore {
    /// A store on a pool you already have, in the default namespace. The
    /// pool is shared, never closed by the store. For many writers, open
    /// it in WAL mode with a busy timeout, as [`SqliteStore::connect`] does.
    pub fn new(pool: SqlitePool) -> Self {
        let namespace = Namespace::default();
        Self {
            sql: Arc::new(sql::Statements::new(&namespace)),
            pool,
            namespace,
            clock: system_clock(),
            timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }

    /// A store on its own pool to the database at `url` (`sqlite://path`,
    /// or a bare path), created if missing, in WAL mode: readers never wait
    /// for the writer. `synchronous = NORMAL` makes a commit durable
    /// against a crash of the application, not of the machine (a power cut
    /// may lose the last commits); add `?synchronous=full` for that.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), broker_core::StoreError> {
    /// use std::sync::Arc;
    /// use broker_core::{KeyConfig, Namespace, TokenVault};
    /// use custom_store::SqliteStore;
    ///
    /// let store = SqliteStore::connect("sqlite://broker.db").await?
    ///     .with_namespace(Namespace::new("my_app")?);
    /// let keys = KeyConfig::passphrase("a long passphrase".to_owned());
    /// let vault = TokenVault::open(Arc::new(store), keys).await?;
    /// # let _ = vault; Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        const OP: &str = "connect";
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|_| StoreError::invalid(OP, "not a SQLite URL or path"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(LOCK_WAIT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(LOCK_WAIT)
            .connect_with(options)
            .await
            .map_err(|e| error(OP, e))?;
        Ok(Self::new(pool))
    }

    /// The same database under `namespace`.
    pub fn with_namespace(mut self, namespace: Namespace) -> Self {
        self.sql = Arc::new(sql::Statements::new(&namespace));
        self.namespace = namespace;
        self
    }

    /// How long one operation may take before it fails with
    /// `StoreError::Unavailable` (default [`DEFAULT_OPERATION_TIMEOUT`],
    /// 10 s, as on every store of this project); a write that timed out may
    /// or may not have been applied.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Decide expiry and revocation by `clock` (the system clock by default).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The pool this store runs on.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction that holds SQLite's write lock from its start,
    /// so what it reads cannot change before it commits.
    async fn write(&self, op: &'static str) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| error(op, e))
    }
}

/// A typed error for a driver error: busy, locked, unreachable or out of
/// connections is `Unavailable` (retry later); undecodable rows are
/// `Corrupt`; anything else is `Backend`. SQLite's messages name tables
/// and columns, never bound values.
pub(crate) fn error(op: &'static str, e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_) => StoreError::unavailable(op, e),
        sqlx::Error::Database(db) if is_transient(db.code().as_deref()) => {
            StoreError::unavailable(op, e)
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::Decode(_) => StoreError::corrupt(op, Corruption::Malformed("row")),
        _ => StoreError::backend(op, e),
    }
}

/// SQLITE_BUSY (5), SQLITE_LOCKED (6), SQLITE_IOERR (10), SQLITE_CANTOPEN
/// (14), by their primary code (the low byte of an extended code).
fn is_transient(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 14))
}

/// A session from a row of `jti, sub, expires_at, auth_time, sealed`.
pub(crate) fn session_from_row(
    op: &'static str,
    row: &SqliteRow,
) -> Result<SessionRecord, StoreError> {
    let field = |e| error(op, e);
    Ok(SessionRecord {
        jti: row.try_get(0).map_err(field)?,
        sub: row.try_get(1).map_err(field)?,
        expires_at: row.try_get(2).map_err(field)?,
        auth_time: row.try_get(3).map_err(field)?,
        sealed: row.try_get::<Vec<u8>, _>(4).map_err(field)?.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_locked_are_transient_whatever_the_extended_code() {
        for code in ["5", "261", "517", "6", "262", "10", "14"] {
            assert!(is_transient(Some(code)), "{code}");
        }
        for code in ["1", "11", "19", "2067", "26"] {
            assert!(!is_transient(Some(code)), "{code}");
        }
        assert!(!is_transient(None));
    }
}
