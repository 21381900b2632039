#![doc = include_str!("../README.md")]
//!
//! # Tables
//!
//! For namespace `ns` (in the configured schema, or the connection's
//! `search_path` when none is set):
//!
//! | table | columns |
//! |---|---|
//! | `ns_sessions` | `jti text PK`, `sub text`, `expires_at bigint`, `auth_time bigint`, `sealed bytea` (indexes on `expires_at` and `sub`) |
//! | `ns_revocations` | `sub text PK`, `revoked_at bigint`, `keep_until bigint` (index on `keep_until`) |
//! | `ns_records` | `name text PK`, `value bytea` |
//! | `ns_peers` | `issuer text PK`, `jwks text` (verbatim, key order kept), `fetched_at bigint` |
//! | `ns_meta` | `name text PK`, `version integer`: the row `format` holds the storage format ([`FORMAT_VERSION`]) |
//!
//! Text keys use the `"C"` collation, so listings sort by bytes. Secrets are
//! only ever stored sealed (`sealed`, `value`).
//!
//! # Statements and transactions
//!
//! Every write is one short transaction, opened by one message that
//! pins what the statements rely on, whatever the server's or the pool's
//! defaults: `BEGIN ISOLATION LEVEL READ COMMITTED`, then `SET LOCAL
//! statement_timeout` (and `idle_in_transaction_session_timeout`) to the
//! operation timeout, and for saves and revocations a transaction-scoped
//! advisory lock of the subject. Then one statement (purge: a few), with
//! values always sent as bind parameters, and `COMMIT`: three round trips.
//!
//! The hot single-row calls, get, take and delete, take one round trip:
//! one statement outside a transaction block. A take's or delete's
//! `DELETE` locks its row with `FOR UPDATE NOWAIT`, so it never waits for
//! another transaction's row lock (a save, compare-and-set or revocation
//! of that session in flight); the server refuses it instead (`55P03`) and
//! the call runs again in its own transaction as above, where it waits for
//! the lock under the server-side timeout. The same fallback covers a
//! serialization failure or deadlock (`40001`, `40P01`) on a pool whose
//! connections default to a stricter isolation. With
//! [`PostgresStore::with_prepared_statements`] `false` (PgBouncer), these
//! three run in a transaction too: an unnamed statement takes two messages,
//! which only a transaction keeps on one server connection.
//!
//! Upserts use `INSERT ... ON CONFLICT ... DO UPDATE`; take is `DELETE ...
//! RETURNING` filtered on expiry and revocation, so of many concurrent
//! takers exactly one gets the session; create-once records use `ON
//! CONFLICT DO NOTHING` and read the winner; purge deletes in batches of
//! 1000 rows (`FOR UPDATE SKIP LOCKED`) so it never holds long locks; scans
//! use keyset pagination.
//!
//! Nothing relies on session state (no session-level `SET`, no session
//! advisory lock), so the store works behind PgBouncer in transaction
//! mode; there, also call [`PostgresStore::with_prepared_statements`]
//! with `false` (see [PgBouncer](#behind-pgbouncer-transaction-pooling)).
//!
//! # Revocation never wears off
//!
//! A save or create of a session that a kept marker hides is not stored
//! (`INSERT ... SELECT ... WHERE NOT EXISTS (marker)`). A save holds the
//! subject's advisory lock in shared mode, a revocation in exclusive mode,
//! so a revocation waits for the saves of its subject in flight (and then
//! deletes what they stored) and a save that starts later sees the marker:
//! across connections and processes a hidden session is never stored.
//! Reads still check the markers. Purge deletes a marker past its keep
//! time in the same statement as every session it hides, and deletes
//! sessions any marker hides; markers go only through purge or
//! `drop_namespace`, never by a timer of their own.
//!
//! # Timeouts and outages
//!
//! Every operation runs under an operation timeout (default
//! [`DEFAULT_OPERATION_TIMEOUT`], 10 s, see
//! [`PostgresStore::with_operation_timeout`]), on the client and, as
//! `statement_timeout`, on the server: a write that gave up on the client
//! never commits later (it never sent `COMMIT`, and its statement is
//! cancelled by the server). A take or delete that gave up while waiting
//! for a row lock never deletes later either (it waits only inside its
//! transaction, see above). One case is left, as for any commit already
//! sent: a take or delete whose server stalls past the timeout on something
//! else (a table lock held by DDL, a stalled WAL flush) may still delete
//! the session after the caller saw `Unavailable`; a retried take then
//! finds nothing, so the user logs in again. A session is lost, never
//! revived or revealed. A pool made by [`PostgresStore::connect`] also
//! gives up acquiring a connection after [`CONNECT_ACQUIRE_TIMEOUT`] (5 s).
//! A server that is down or restarting therefore costs an operation at most
//! that long, and it fails with [`StoreError::Unavailable`]. Errors are
//! classified by SQLSTATE code and driver error variant, never by message
//! text. The pool replaces broken connections by itself, so the same store
//! works again once the server is back.
//!
//! # Durability
//!
//! An operation returns only after PostgreSQL committed it; whether a
//! commit survives a crash is the server's configuration (`fsync`,
//! `synchronous_commit`), as for the rest of your data.
//!
//! # Time
//!
//! The injected `Clock` of the calling process
//! ([`PostgresStore::with_clock`], the system clock by default) decides
//! everything: its `now` is bound into each statement for expiry, marker
//! keep time and purge; the server's clock decides nothing. With several
//! workers, skew moves each worker's decisions by its offset: a worker
//! ahead sees sessions and markers expire early, one behind sees them live
//! longer. A worker ahead by more than a marker's remaining keep time saves
//! a session the marker hides (as if the refresh came after the keep time);
//! any purge still deletes it while the marker is stored. Keep clocks in
//! sync (NTP).
//!
//! # Behind PgBouncer (transaction pooling)
//!
//! Works, tested through PgBouncer 1.18 in transaction mode: build the pool
//! with `PgConnectOptions::statement_cache_capacity(0)` **and** call
//! `.with_prepared_statements(false)` on the store. sqlx 0.9 still sends a
//! *named* statement per query when its cache is off (never closed), and
//! PgBouncer hands the next transaction to another server connection:
//! without unnamed statements you get `42P05 prepared statement "sqlx_s_1"
//! already exists`. Nothing else depends on session state: isolation and
//! timeouts are `SET LOCAL` inside each transaction, advisory locks are
//! transaction-scoped (migrations and subject locks), and without named
//! statements every statement runs inside the operation's transaction
//! (get, take and delete too), so it stays on one server connection.
//!
//! # Tests
//!
//! They run against a real PostgreSQL 15. From the workspace root:
//!
//! ```sh
//! scripts/servers/postgres.sh install            # apt-get install postgresql-15 if missing
//! scripts/servers/pgbouncer.sh install           # apt-get install pgbouncer if missing
//! eval "$(scripts/servers/postgres.sh start)"    # 127.0.0.1:55432, exports BROKER_TEST_POSTGRES_URL
//! eval "$(scripts/servers/pgbouncer.sh start)"   # 127.0.0.1:56432, exports BROKER_TEST_PGBOUNCER_URL
//! cargo test -p store-postgres
//! scripts/servers/pgbouncer.sh stop; scripts/servers/postgres.sh stop
//! ```
//!
//! Without `BROKER_TEST_POSTGRES_URL` (and no Docker engine for
//! testcontainers) the server tests are skipped with a loud banner; under
//! `CI=true` they fail instead. `tests/pool_settings.rs` runs the suite
//! again on a `serializable`-default pool and on a statement-cache-off
//! pool; `tests/pgbouncer.rs` runs it through PgBouncer
//! (`BROKER_TEST_PGBOUNCER_URL`); `tests/restart.rs` is rule 18
//! (`restart_suite!`) through `BROKER_TEST_POSTGRES_RESTART_CMD` (required
//! under `CI=true`); `tests/transactions.rs` covers timed-out calls never
//! committing, saves racing revocations and a `ManualClock`.

#![warn(missing_docs)]

/// Run `$body` (which may `.await` and use `?` on sqlx errors) on `$conn`,
/// the connection of a fresh transaction (see [`PostgresStore::begin`]),
/// commit, and yield the body's value: a `Future` of [`Result`] under the
/// store's operation timeout.
macro_rules! in_transaction {
    ($store:expr, $op:expr, $lock:expr, |$conn:ident| $body:expr) => {
        $store.run($op, async {
            let mut tx = $store.begin($lock).await?;
            let out = {
                let $conn: &mut sqlx::PgConnection = &mut *tx;
                $body
            };
            tx.commit().await?;
            Ok(out)
        })
    };
}

mod error;
mod format;
mod ops;
mod sql;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

#[allow(unused_imports)] // named by intra-doc links
use broker_core::BrokerStore;
use broker_core::clock::{Clock, system_clock};
use broker_core::{Namespace, Result, SessionRecord, StoreError};
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgRow};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Postgres, Row, SqlSafeStr, SqlStr, Transaction};

pub use broker_core::error::OperationTimedOut;
pub use error::DatabaseError;
pub use format::FORMAT_VERSION;
/// The driver this crate is built on, re-exported so you use the same version.
pub use sqlx;

use crate::error::classify;
use crate::sql::{Names, Statements, SubjectLock};

/// How long one operation may take before it fails with
/// [`StoreError::Unavailable`], unless changed with
/// [`PostgresStore::with_operation_timeout`] (the same for every store).
pub use broker_core::backend::DEFAULT_OPERATION_TIMEOUT;

/// How long a pool made by [`PostgresStore::connect`] waits for a
/// connection (including connecting to a server that is down) before the
/// operation fails with [`StoreError::Unavailable`].
pub const CONNECT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Size of the pool made by [`PostgresStore::connect`].
pub const CONNECT_MAX_CONNECTIONS: u32 = 10;

/// A validated PostgreSQL schema name: `^[a-z_][a-z0-9_]{0,62}$`, not
/// starting with `pg_` (reserved for the system).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

impl SchemaName {
    /// Validate `name`.
    ///
    /// ```
    /// use store_postgres::SchemaName;
    /// assert!(SchemaName::new("auth").is_ok());
    /// assert!(SchemaName::new("Auth; DROP").is_err());
    /// assert!(SchemaName::new("pg_catalog").is_err());
    /// ```
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let b = name.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && (b[0].is_ascii_lowercase() || b[0] == b'_')
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
            && !name.starts_with("pg_");
        if ok {
            Ok(Self(name))
        } else {
            Err(StoreError::invalid(
                "schema",
                "a schema name must match ^[a-z_][a-z0-9_]{0,62}$ and not start with pg_",
            ))
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A [`BrokerStore`] in PostgreSQL. Cheap to clone (clones share the pool).
///
/// Dropping the store never closes a pool handed to [`PostgresStore::new`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    namespace: Namespace,
    schema: Option<SchemaName>,
    names: Arc<Names>,
    sql: Arc<Statements>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    /// Named prepared statements, cached per connection (sqlx's default);
    /// `false`: unnamed statements, parsed anew each time (PgBouncer).
    prepared: bool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("namespace", &self.namespace)
            .field("schema", &self.schema)
            .field("operation_timeout", &self.timeout)
            .field("prepared_statements", &self.prepared)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A store on a pool you already have, in the default namespace
    /// (`broker`) and the connection's `search_path`. The pool is shared,
    /// never closed by the store.
    ///
    /// ```no_run
    /// # async fn demo(pool: store_postgres::sqlx::PgPool) -> broker_core::Result<()> {
    /// use broker_core::BrokerStore;
    /// let store = store_postgres::PostgresStore::new(pool);
    /// store.setup().await?;
    /// # Ok(()) }
    /// ```
    pub fn new(pool: PgPool) -> Self {
        let namespace = Namespace::default();
        let names = Names::new(None, &namespace);
        let sql = Statements::new(None, &names);
        Self {
            pool,
            namespace,
            schema: None,
            names: Arc::new(names),
            sql: Arc::new(sql),
            timeout: DEFAULT_OPERATION_TIMEOUT,
            clock: system_clock(),
            prepared: true,
        }
    }

    /// Same as [`PostgresStore::new`].
    pub fn from_pool(pool: PgPool) -> Self {
        Self::new(pool)
    }

    /// Connect to `url` (`postgres://user:password@host:port/db?sslmode=...`)
    /// with a pool of [`CONNECT_MAX_CONNECTIONS`] connections that waits at
    /// most [`CONNECT_ACQUIRE_TIMEOUT`] for a connection. For other pool
    /// settings, build the pool yourself and use [`PostgresStore::new`].
    ///
    /// ```no_run
    /// # async fn demo() -> broker_core::Result<()> {
    /// use broker_core::BrokerStore;
    /// let store = store_postgres::PostgresStore::connect("postgres://app@localhost/app").await?;
    /// store.setup().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(CONNECT_MAX_CONNECTIONS)
            .acquire_timeout(CONNECT_ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| match e {
                // The message may quote the URL, password included: drop it.
                sqlx::Error::Configuration(_) => {
                    StoreError::invalid("connect", "the database URL is not valid")
                }
                other => classify("connect", other),
            })?;
        Ok(Self::new(pool))
    }

    /// The same store in another namespace (table prefix): stores in two
    /// namespaces never see each other's data.
    pub fn with_namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self.rebuild();
        self
    }

    /// The same store with its tables in schema `schema` (created by
    /// [`PostgresStore::migrate`] if missing). Fails with
    /// [`StoreError::InvalidInput`] unless `schema` is a valid
    /// [`SchemaName`].
    pub fn with_schema(mut self, schema: &str) -> Result<Self> {
        self.schema = Some(SchemaName::new(schema)?);
        self.rebuild();
        Ok(self)
    }

    /// How long one operation may take before it fails with
    /// [`StoreError::Unavailable`] (default [`DEFAULT_OPERATION_TIMEOUT`]);
    /// also each statement's server-side `statement_timeout`, so a call the
    /// client gave up on never commits later. With a pool of your own, keep
    /// its `acquire_timeout` below this.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Decide expiry and revocation by `clock` (default: the system clock of
    /// this process; the times are bound into each statement, so the
    /// server's clock decides nothing).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Whether statements are sent as named prepared statements, which
    /// each connection parses once and caches (`true`, the default), or as
    /// unnamed ones, parsed anew each time (one more round trip each).
    ///
    /// Behind PgBouncer in transaction mode (before 1.21, or without
    /// `max_prepared_statements`) use `false`, and turn sqlx's statement
    /// cache off on the pool
    /// ([`PgConnectOptions::statement_cache_capacity(0)`](sqlx::postgres::PgConnectOptions::statement_cache_capacity)):
    /// a named statement lives on one server connection, which PgBouncer
    /// hands to other clients between transactions.
    pub fn with_prepared_statements(mut self, prepared: bool) -> Self {
        self.prepared = prepared;
        self
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema, if one was set.
    pub fn schema(&self) -> Option<&SchemaName> {
        self.schema.as_ref()
    }

    fn rebuild(&mut self) {
        let schema = self.schema.as_ref().map(SchemaName::as_str);
        let names = Names::new(schema, &self.namespace);
        self.sql = Arc::new(Statements::new(schema, &names));
        self.names = Arc::new(names);
    }

    /// Run one operation, classifying its errors. The operation timeout
    /// is enforced around the whole operation (the blanket `BrokerStore`
    /// impl); a future dropped at the timeout never commits: its
    /// transaction is rolled back when the connection goes back to the pool.
    async fn run<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = std::result::Result<T, sqlx::Error>>,
    ) -> Result<T> {
        fut.await.map_err(|e| classify(op, e))
    }

    /// Open this operation's transaction (see [`sql::begin`]), holding the
    /// advisory lock of `sub` in `mode` if asked.
    async fn begin(
        &self,
        lock: Option<(SubjectLock, &str)>,
    ) -> std::result::Result<Transaction<'static, Postgres>, sqlx::Error> {
        // statement_timeout takes milliseconds as a 32-bit integer.
        let ms = u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, i32::MAX as u64);
        let lock = lock.map(|(mode, sub)| (mode, sql::subject_lock_key(&self.names.sessions, sub)));
        self.pool.begin_with(sql::begin(ms, lock)).await
    }

    /// The row statement `fast` returns, run by `bind` as one statement
    /// outside a transaction block (one round trip); if the server refuses
    /// it for a reason a transaction of ours handles (see
    /// [`error::needs_transaction`]), `careful` runs instead in this
    /// operation's transaction (see [`PostgresStore::begin`]). Without
    /// named statements only `careful` runs: an unnamed statement takes two
    /// messages (parse, then execute), and behind a transaction pooler only
    /// a transaction keeps both on one server connection.
    async fn one_round_trip<'q>(
        &self,
        op: &'static str,
        fast: &SqlStr,
        careful: &SqlStr,
        bind: impl Fn(&SqlStr) -> Query<'q, Postgres, PgArguments>,
    ) -> Result<Option<PgRow>> {
        if self.prepared {
            match bind(fast).fetch_optional(&self.pool).await {
                Ok(row) => return Ok(row),
                Err(e) if error::needs_transaction(&e) => {}
                Err(e) => return Err(classify(op, e)),
            }
        }
        in_transaction!(self, op, None, |conn| {
            bind(careful).fetch_optional(conn).await?
        })
        .await
    }

    /// The session `jti` that `fast` (else `careful`, see
    /// [`PostgresStore::one_round_trip`]) returns at the clock's now.
    async fn session_statement(
        &self,
        op: &'static str,
        fast: &SqlStr,
        careful: &SqlStr,
        jti: &str,
    ) -> Result<Option<SessionRecord>> {
        let now = self.clock.now();
        let bind = |sql: &SqlStr| self.query(sql).bind(jti).bind(now);
        let row = self.one_round_trip(op, fast, careful, bind).await?;
        row.map(|r| session_from_row(op, &r)).transpose()
    }

    /// A statement, named (prepared and cached) or not, as configured.
    fn query(&self, text: &SqlStr) -> Query<'static, Postgres, PgArguments> {
        sqlx::query(text.clone()).persistent(self.prepared)
    }

    /// A statement returning one column.
    fn scalar<T>(&self, text: impl SqlSafeStr) -> QueryScalar<'static, Postgres, T, PgArguments>
    where
        (T,): for<'r> sqlx::FromRow<'r, PgRow>,
    {
        sqlx::query_scalar(text).persistent(self.prepared)
    }

    /// A statement returning rows as tuples.
    fn rows<T>(&self, text: &SqlStr) -> QueryAs<'static, Postgres, T, PgArguments>
    where
        T: for<'r> sqlx::FromRow<'r, PgRow>,
    {
        sqlx::query_as(text.clone()).persistent(self.prepared)
    }
}

fn session_from_row(op: &'static str, row: &PgRow) -> Result<SessionRecord> {
    let get = || -> std::result::Result<SessionRecord, sqlx::Error> {
        Ok(SessionRecord {
            jti: row.try_get(0)?,
            sub: row.try_get(1)?,
            expires_at: row.try_get(2)?,
            auth_time: row.try_get(3)?,
            sealed: row.try_get::<Vec<u8>, _>(4)?.into(),
        })
    };
    get().map_err(|e| classify(op, e))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_validated() {
        assert!(SchemaName::new("auth_1").is_ok());
        assert!(SchemaName::new("_private").is_ok());
        assert!(SchemaName::new("x".repeat(63)).is_ok());
        for bad in [
            "",
            "Auth",
            "1abc",
            "a-b",
            "a\"b",
            "a;drop",
            "pg_temp",
            &"x".repeat(64),
        ] {
            assert!(
                matches!(SchemaName::new(bad), Err(StoreError::InvalidInput { .. })),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn builders_name_tables_from_schema_and_namespace() {
        let pool = PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool needs no server");
        let store = PostgresStore::new(pool)
            .with_schema("auth")
            .expect("valid schema")
            .with_namespace(Namespace::new("app_one").expect("valid namespace"));
        assert_eq!(store.names.sessions, "\"auth\".\"app_one_sessions\"");
        assert_eq!(store.names.peers, "\"auth\".\"app_one_peers\"");
        assert!(
            store
                .sql
                .get_session
                .as_str()
                .contains("\"auth\".\"app_one_revocations\"")
        );
        assert!(store.sql.migrate_with_schema.is_some());
        let debug = format!("{store:?}");
        assert!(
            debug.contains("app_one") && !debug.contains("nobody"),
            "{debug}"
        );
        assert!(matches!(
            store.clone().with_schema("bad name"),
            Err(StoreError::InvalidInput { op: "schema", .. })
        ));
    }
}
