//! A PostgreSQL [`BrokerStore`] on [`sqlx`], for an OIDC token broker's
//! server-side state.
//!
//! Build it on the [`PgPool`] your application already has
//! ([`PostgresStore::new`], which never closes that pool) or from a URL
//! ([`PostgresStore::connect`]), then call [`BrokerStore::setup`] (or
//! [`PostgresStore::migrate`]) once at start-up:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use broker_core::{BrokerStore, Namespace};
//! use store_postgres::PostgresStore;
//!
//! // The pool your web API already uses.
//! let pool = store_postgres::sqlx::PgPool::connect("postgres://app@localhost/app").await?;
//! let store = PostgresStore::new(pool.clone())
//!     .with_schema("auth")?
//!     .with_namespace(Namespace::new("broker")?);
//! store.setup().await?; // creates auth.broker_sessions, ... if missing
//! assert!(store.get_session("no-such-jti").await?.is_none());
//! # Ok(()) }
//! ```
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
//!
//! Text keys use the `"C"` collation, so listings sort by bytes. Secrets are
//! only ever stored sealed (`sealed`, `value`).
//!
//! # Statements
//!
//! Every operation is one statement (one round trip), with values always
//! sent as bind parameters: upserts use `INSERT ... ON CONFLICT ... DO
//! UPDATE`; take is `DELETE ... RETURNING` filtered on expiry and
//! revocation, so of many concurrent takers exactly one gets the session;
//! create-once records use `ON CONFLICT DO NOTHING` and read the winner;
//! purge deletes in batches of 1000 rows (`FOR UPDATE SKIP LOCKED`) so it
//! never holds long locks; scans use keyset pagination on `jti`.
//!
//! # Timeouts and outages
//!
//! Every statement runs under an operation timeout (default
//! [`DEFAULT_OPERATION_TIMEOUT`], 10 s, see
//! [`PostgresStore::with_operation_timeout`]); a pool made by
//! [`PostgresStore::connect`] also gives up acquiring a connection after
//! [`CONNECT_ACQUIRE_TIMEOUT`] (5 s). A server that is down or restarting
//! therefore costs an operation at most that long, and it fails with
//! [`StoreError::Unavailable`]. Errors are classified by SQLSTATE code and
//! driver error variant, never by message text. The pool replaces broken
//! connections by itself, so the same store works again once the server is
//! back.
//!
//! # Durability
//!
//! An operation returns only after PostgreSQL committed it; whether a
//! commit survives a crash is the server's configuration (`fsync`,
//! `synchronous_commit`), as for the rest of your data.

#![warn(missing_docs)]

mod error;
mod sql;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use broker_core::clock::{Clock, system_clock};
use broker_core::{
    BrokerStore, Namespace, PeerJwks, Result, Revocation, RevocationPage, SessionPage,
    SessionRecord, StoreError, StoreStats, validate,
};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};

pub use error::{DatabaseError, OperationTimedOut};
/// The driver this crate is built on, re-exported so you use the same version.
pub use sqlx;

use crate::error::{classify, timed_out};
use crate::sql::{Names, PURGE_BATCH, RELATIONS_EXIST, SCHEMA_EXISTS, Statements};

/// How long one statement may take before the operation fails with
/// [`StoreError::Unavailable`], unless changed with
/// [`PostgresStore::with_operation_timeout`].
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

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
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("namespace", &self.namespace)
            .field("schema", &self.schema)
            .field("operation_timeout", &self.timeout)
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

    /// How long one statement may run before the operation fails with
    /// [`StoreError::Unavailable`] (default [`DEFAULT_OPERATION_TIMEOUT`]).
    /// With a pool of your own, keep its `acquire_timeout` below this.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Decide expiry and revocation by `clock` (default: the system clock of
    /// this process; the times are bound into each statement).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
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

    /// Create the schema (if set), tables and indexes if they are missing.
    ///
    /// Idempotent and safe to run from many tasks and processes at once: the
    /// DDL runs in one transaction holding a transaction-scoped advisory lock
    /// (`pg_advisory_xact_lock`). [`BrokerStore::setup`] calls this when
    /// something is missing.
    pub async fn migrate(&self) -> Result<()> {
        const OP: &str = "migrate";
        let script = match (&self.schema, &self.sql.migrate_with_schema) {
            (Some(schema), Some(with_schema)) => {
                // Only ask for CREATE SCHEMA when it is missing, so a role
                // without CREATE on the database can use a schema made for it.
                let exists: bool = self
                    .run(
                        OP,
                        sqlx::query_scalar(SCHEMA_EXISTS)
                            .bind(schema.as_str())
                            .fetch_one(&self.pool),
                    )
                    .await?;
                if exists {
                    self.sql.migrate.clone()
                } else {
                    with_schema.clone()
                }
            }
            _ => self.sql.migrate.clone(),
        };
        self.run(OP, sqlx::raw_sql(script).execute(&self.pool))
            .await?;
        Ok(())
    }

    fn rebuild(&mut self) {
        let schema = self.schema.as_ref().map(SchemaName::as_str);
        let names = Names::new(schema, &self.namespace);
        self.sql = Arc::new(Statements::new(schema, &names));
        self.names = Arc::new(names);
    }

    /// Run one statement under the operation timeout, classifying errors.
    async fn run<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = std::result::Result<T, sqlx::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(classify(op, e)),
            Err(_) => Err(timed_out(op, self.timeout)),
        }
    }

    async fn fetch_session(
        &self,
        op: &'static str,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Option<SessionRecord>> {
        let row = self.run(op, query.fetch_optional(&self.pool)).await?;
        row.map(|r| session_from_row(op, &r)).transpose()
    }
}

fn session_from_row(op: &'static str, row: &PgRow) -> Result<SessionRecord> {
    let get = || -> std::result::Result<SessionRecord, sqlx::Error> {
        Ok(SessionRecord {
            jti: row.try_get(0)?,
            sub: row.try_get(1)?,
            expires_at: row.try_get(2)?,
            auth_time: row.try_get(3)?,
            sealed: row.try_get(4)?,
        })
    };
    get().map_err(|e| classify(op, e))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl BrokerStore for PostgresStore {
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        Arc::new(self.clone().with_namespace(namespace))
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    async fn setup(&self) -> Result<()> {
        // Fast path without locks when everything is there already.
        let present: bool = self
            .run(
                "setup",
                sqlx::query_scalar(RELATIONS_EXIST)
                    .bind(&self.names.relations)
                    .fetch_one(&self.pool),
            )
            .await?;
        if present {
            return Ok(());
        }
        self.migrate().await.map_err(|e| e.with_op("setup"))
    }

    async fn health(&self) -> Result<()> {
        self.run("health", sqlx::query("SELECT 1").execute(&self.pool))
            .await?;
        Ok(())
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        const OP: &str = "create_session";
        validate::session(OP, session)?;
        let inserted = self
            .run(
                OP,
                sqlx::query(self.sql.create_session.clone())
                    .bind(&session.jti)
                    .bind(&session.sub)
                    .bind(session.expires_at)
                    .bind(session.auth_time)
                    .bind(&session.sealed)
                    .bind(self.clock.now())
                    .fetch_optional(&self.pool),
            )
            .await?;
        match inserted {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict {
                op: OP,
                what: "a session with this jti exists",
            }),
        }
    }

    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        const OP: &str = "save_session";
        validate::session(OP, session)?;
        self.run(
            OP,
            sqlx::query(self.sql.save_session.clone())
                .bind(&session.jti)
                .bind(&session.sub)
                .bind(session.expires_at)
                .bind(session.auth_time)
                .bind(&session.sealed)
                .execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "get_session";
        validate::jti(OP, jti)?;
        let query = sqlx::query(self.sql.get_session.clone())
            .bind(jti)
            .bind(self.clock.now());
        self.fetch_session(OP, query).await
    }

    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "take_session";
        validate::jti(OP, jti)?;
        let query = sqlx::query(self.sql.take_session.clone())
            .bind(jti)
            .bind(self.clock.now());
        self.fetch_session(OP, query).await
    }

    async fn delete_session(&self, jti: &str) -> Result<bool> {
        const OP: &str = "delete_session";
        validate::jti(OP, jti)?;
        let done = self
            .run(
                OP,
                sqlx::query(self.sql.delete_session.clone())
                    .bind(jti)
                    .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn replace_session_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        const OP: &str = "replace_session_blob";
        validate::jti(OP, jti)?;
        validate::sealed(OP, sealed)?;
        let done = self
            .run(
                OP,
                sqlx::query(self.sql.replace_session_blob.clone())
                    .bind(jti)
                    .bind(expected)
                    .bind(sealed)
                    .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64> {
        const OP: &str = "revoke_subject";
        validate::revocation(OP, revocation)?;
        let deleted: i64 = self
            .run(
                OP,
                sqlx::query_scalar(self.sql.revoke_subject.clone())
                    .bind(&revocation.sub)
                    .bind(revocation.revoked_at)
                    .bind(revocation.keep_until)
                    .fetch_one(&self.pool),
            )
            .await?;
        Ok(count(deleted))
    }

    async fn purge_expired(&self) -> Result<u64> {
        const OP: &str = "purge_expired";
        let now = self.clock.now();
        let mut sessions = 0;
        loop {
            let done = self
                .run(
                    OP,
                    sqlx::query(self.sql.purge_sessions.clone())
                        .bind(now)
                        .bind(PURGE_BATCH)
                        .execute(&self.pool),
                )
                .await?;
            sessions += done.rows_affected();
            if done.rows_affected() < PURGE_BATCH as u64 {
                break;
            }
        }
        loop {
            let done = self
                .run(
                    OP,
                    sqlx::query(self.sql.purge_revocations.clone())
                        .bind(now)
                        .bind(PURGE_BATCH)
                        .execute(&self.pool),
                )
                .await?;
            if done.rows_affected() < PURGE_BATCH as u64 {
                break;
            }
        }
        Ok(sessions)
    }

    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        const OP: &str = "scan_sessions";
        validate::page_limit(OP, limit)?;
        if let Some(c) = cursor
            && (c.len() > validate::MAX_ID_BYTES || c.as_bytes().contains(&0))
        {
            return Err(StoreError::invalid(
                OP,
                "the cursor is not one this store returned",
            ));
        }
        // One row more than asked tells whether another page follows.
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let now = self.clock.now();
        let query = match cursor {
            None => sqlx::query(self.sql.scan_first.clone())
                .bind(now)
                .bind(fetch),
            Some(after) => sqlx::query(self.sql.scan_after.clone())
                .bind(now)
                .bind(fetch)
                .bind(after),
        };
        let rows = self.run(OP, query.fetch_all(&self.pool)).await?;
        let mut sessions = rows
            .iter()
            .map(|r| session_from_row(OP, r))
            .collect::<Result<Vec<_>>>()?;
        let next = if sessions.len() > limit {
            sessions.truncate(limit);
            sessions.last().map(|s| s.jti.clone())
        } else {
            None
        };
        Ok(SessionPage { sessions, next })
    }

    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        const OP: &str = "scan_revocations";
        validate::page_limit(OP, limit)?;
        if let Some(c) = cursor {
            validate::sub(OP, c)?;
        }
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let rows: Vec<(String, i64, i64)> = self
            .run(
                OP,
                sqlx::query_as(self.sql.scan_revocations.clone())
                    .bind(self.clock.now())
                    .bind(fetch)
                    .bind(cursor)
                    .fetch_all(&self.pool),
            )
            .await?;
        let mut revocations: Vec<Revocation> = rows
            .into_iter()
            .map(|(sub, revoked_at, keep_until)| Revocation {
                sub,
                revoked_at,
                keep_until,
            })
            .collect();
        let next = if revocations.len() > limit {
            revocations.truncate(limit);
            revocations.last().map(|r| r.sub.clone())
        } else {
            None
        };
        Ok(RevocationPage { revocations, next })
    }

    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        const OP: &str = "create_record";
        validate::record_name(OP, name)?;
        validate::sealed(OP, value)?;
        // Records are never deleted through the store, so a second attempt
        // only runs if one was removed by hand between the two statements.
        for _ in 0..3 {
            let stored: Option<Vec<u8>> = self
                .run(
                    OP,
                    sqlx::query_scalar(self.sql.create_record.clone())
                        .bind(name)
                        .bind(value)
                        .fetch_optional(&self.pool),
                )
                .await?;
            if let Some(stored) = stored {
                return Ok(stored);
            }
            // A racing creator committed after this statement's snapshot:
            // a new statement sees its value.
            if let Some(stored) = self.get_record(name).await.map_err(|e| e.with_op(OP))? {
                return Ok(stored);
            }
        }
        Err(StoreError::backend(
            OP,
            "the record kept disappearing while it was created",
        ))
    }

    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        const OP: &str = "get_record";
        validate::record_name(OP, name)?;
        self.run(
            OP,
            sqlx::query_scalar(self.sql.get_record.clone())
                .bind(name)
                .fetch_optional(&self.pool),
        )
        .await
    }

    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        const OP: &str = "replace_record";
        validate::record_name(OP, name)?;
        validate::sealed(OP, value)?;
        let done = self
            .run(
                OP,
                sqlx::query(self.sql.replace_record.clone())
                    .bind(name)
                    .bind(expected)
                    .bind(value)
                    .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        const OP: &str = "list_records";
        self.run(
            OP,
            sqlx::query_as(self.sql.list_records.clone()).fetch_all(&self.pool),
        )
        .await
    }

    async fn save_peer(&self, peer: &PeerJwks) -> Result<()> {
        const OP: &str = "save_peer";
        validate::peer(OP, peer)?;
        self.run(
            OP,
            sqlx::query(self.sql.save_peer.clone())
                .bind(&peer.issuer)
                .bind(&peer.jwks)
                .bind(peer.fetched_at)
                .execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        const OP: &str = "load_peers";
        let rows: Vec<(String, String, i64)> = self
            .run(
                OP,
                sqlx::query_as(self.sql.load_peers.clone()).fetch_all(&self.pool),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(issuer, jwks, fetched_at)| PeerJwks {
                issuer,
                jwks,
                fetched_at,
            })
            .collect())
    }

    async fn delete_peer(&self, issuer: &str) -> Result<bool> {
        const OP: &str = "delete_peer";
        validate::issuer(OP, issuer)?;
        let done = self
            .run(
                OP,
                sqlx::query(self.sql.delete_peer.clone())
                    .bind(issuer)
                    .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn drop_namespace(&self) -> Result<()> {
        const OP: &str = "drop_namespace";
        self.run(
            OP,
            sqlx::raw_sql(self.sql.drop_namespace.clone()).execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    async fn stats(&self) -> Result<StoreStats> {
        const OP: &str = "stats";
        let (live, expired, subjects, peers, records, revocations): (i64, i64, i64, i64, i64, i64) =
            self.run(
                OP,
                sqlx::query_as(self.sql.stats.clone())
                    .bind(self.clock.now())
                    .fetch_one(&self.pool),
            )
            .await?;
        let mut stats = StoreStats::default();
        stats.live_sessions = count(live);
        stats.expired_sessions = count(expired);
        stats.subjects = Some(count(subjects));
        stats.peers = count(peers);
        stats.records = count(records);
        stats.revocations = count(revocations);
        Ok(stats)
    }
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
