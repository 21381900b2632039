//! The storage format of a namespace: its tables (see the crate docs),
//! versioned by [`FORMAT_VERSION`], recorded in the row `format` of the
//! `<ns>_meta` table by the first `setup` and checked by every later one.
//!
//! A namespace whose tables have no `<ns>_meta` (made before format
//! versions) is format 1, the layout this crate has always created. The
//! check, any migration and the record all run in one transaction holding
//! the migration lock (`pg_advisory_xact_lock`), so concurrent setups
//! (tasks or processes) run one after another, and a refused or failed
//! setup changes nothing.

use broker_core::{FormatError, Result, StoreError};
use sqlx::PgConnection;

use crate::PostgresStore;
use crate::sql::{MIGRATE_LOCK_KEY, RELATION_EXISTS, RELATIONS_EXIST, SCHEMA_EXISTS};

/// The storage format this version of the crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The oldest storage format `setup` migrates in place.
const OLDEST_MIGRATED: u32 = 1;
/// The name [`FormatError`]s carry.
const STORE: &str = "store-postgres";

impl PostgresStore {
    /// Create the schema (if set), tables and indexes if they are missing,
    /// and record the storage format ([`FORMAT_VERSION`]) or check it: a
    /// namespace set up by a newer version fails with a
    /// [`StoreError::Backend`] whose source is a [`FormatError`], and
    /// nothing is changed.
    ///
    /// Idempotent and safe to run from many tasks and processes at once: it
    /// runs in one transaction holding a transaction-scoped advisory lock
    /// (`pg_advisory_xact_lock`). [`BrokerStore::setup`](broker_core::BrokerStore::setup)
    /// calls this when something is missing or the format is not current.
    pub async fn migrate(&self) -> Result<()> {
        const OP: &str = "migrate";
        let script = match (&self.schema, &self.sql.migrate_with_schema) {
            (Some(schema), Some(with_schema)) => {
                // Only ask for CREATE SCHEMA when it is missing, so a role
                // without CREATE on the database can use a schema made for it.
                let exists: bool = in_transaction!(self, OP, None, |conn| {
                    self.scalar(SCHEMA_EXISTS)
                        .bind(schema.as_str())
                        .fetch_one(conn)
                        .await?
                })
                .await?;
                if exists {
                    self.sql.migrate.clone()
                } else {
                    with_schema.clone()
                }
            }
            _ => self.sql.migrate.clone(),
        };
        let refused = self
            .run(OP, async {
                let mut tx = self.begin(None).await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .persistent(self.prepared)
                    .bind(MIGRATE_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                let found = self.recorded_format(&mut tx).await?;
                let found = match found.map_or(Ok(OLDEST_MIGRATED), check) {
                    // Dropping `tx` rolls back: nothing changed.
                    Err(e) => return Ok(Some(e)),
                    Ok(found) => found,
                };
                sqlx::raw_sql(script).execute(&mut *tx).await?;
                // Migrations from `found` to FORMAT_VERSION go here.
                debug_assert_eq!(found, FORMAT_VERSION);
                self.query(&self.sql.write_format)
                    .bind(FORMAT_VERSION as i32)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(None)
            })
            .await?;
        match refused {
            Some(e) => Err(StoreError::backend(OP, e)),
            None => Ok(()),
        }
    }

    /// `setup`'s fast path, without locks: true when every table and index
    /// is there and the namespace is in [`FORMAT_VERSION`].
    pub(crate) async fn is_set_up(&self, op: &'static str) -> Result<bool> {
        in_transaction!(self, op, None, |conn| {
            let present: bool = self
                .scalar(RELATIONS_EXIST)
                .bind(&self.names.relations)
                .fetch_one(&mut *conn)
                .await?;
            present && self.recorded_format(conn).await? == Some(FORMAT_VERSION as i64)
        })
        .await
    }

    /// The version in `<ns>_meta`, if the table and its row exist.
    async fn recorded_format(&self, conn: &mut PgConnection) -> sqlx::Result<Option<i64>> {
        let exists: bool = self
            .scalar(RELATION_EXISTS)
            .bind(&self.names.meta)
            .fetch_one(&mut *conn)
            .await?;
        if !exists {
            return Ok(None);
        }
        let version: Option<i32> = self
            .scalar(self.sql.read_format.clone())
            .fetch_optional(&mut *conn)
            .await?;
        Ok(version.map(i64::from))
    }
}

/// Whether this version can use a namespace recorded as format `found`.
fn check(found: i64) -> std::result::Result<u32, FormatError> {
    let found = u32::try_from(found).map_err(|_| FormatError::unreadable(STORE, FORMAT_VERSION))?;
    FormatError::check(STORE, found, OLDEST_MIGRATED, FORMAT_VERSION)
}
