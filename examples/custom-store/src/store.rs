//! The [`StoreBackend`] methods, one SQL statement or one write
//! transaction each (statements in `sql.rs`). Every input arrives validated
//! (ids, blobs, timestamps, page limits: the blanket `BrokerStore` impl
//! checks them first); only the scan cursors, our own format, are checked
//! here.

use std::sync::Arc;
use std::time::Duration;

use broker_core::{
    BrokerStore, Clock, Namespace, PeerJwks, Result, Revocation, RevocationPage, SessionPage,
    SessionRecord, StoreBackend, StoreError, StoreStats, validate,
};
use sqlx::Row as _;

use crate::sql::PURGE_BATCH;
use crate::{SqliteStore, error, session_from_row};

/// One row more than asked tells whether another page follows.
fn page_fetch(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1)
}

/// A count from SQLite (never negative).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl StoreBackend for SqliteStore {
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        Arc::new(self.clone().with_namespace(namespace))
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    fn operation_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    async fn setup(&self) -> Result<()> {
        const OP: &str = "setup";
        // DDL is transactional in SQLite: concurrent setups take turns.
        let mut tx = self.write(OP).await?;
        sqlx::raw_sql(self.sql.setup.clone())
            .execute(&mut *tx)
            .await
            .map_err(|e| error(OP, e))?;
        tx.commit().await.map_err(|e| error(OP, e))
    }

    async fn health(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| error("health", e))?;
        Ok(())
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        const OP: &str = "create_session";
        let now = self.clock.now();
        let e = |e| error(OP, e);
        let mut tx = self.write(OP).await?;
        let live: bool = sqlx::query_scalar(self.sql.live_jti.clone())
            .bind(&session.jti)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(e)?;
        if live {
            return Err(StoreError::Conflict {
                op: OP,
                what: "a session with this jti exists",
            });
        }
        if !self.hidden(&mut tx, session, now).await.map_err(e)? {
            self.upsert(&mut tx, session).await.map_err(e)?;
        }
        tx.commit().await.map_err(e)
    }

    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        const OP: &str = "save_session";
        let now = self.clock.now();
        let e = |e| error(OP, e);
        let mut tx = self.write(OP).await?;
        if self.hidden(&mut tx, session, now).await.map_err(e)? {
            // Never stored; what was stored under this jti goes too (the
            // save replaced it).
            sqlx::query(self.sql.delete_session.clone())
                .bind(&session.jti)
                .execute(&mut *tx)
                .await
                .map_err(e)?;
        } else {
            self.upsert(&mut tx, session).await.map_err(e)?;
        }
        tx.commit().await.map_err(e)
    }

    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "get_session";
        let row = sqlx::query(self.sql.get_session.clone())
            .bind(jti)
            .bind(self.clock.now())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| error(OP, e))?;
        row.map(|r| session_from_row(OP, &r)).transpose()
    }

    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "take_session";
        let row = sqlx::query(self.sql.take_session.clone())
            .bind(jti)
            .bind(self.clock.now())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| error(OP, e))?;
        row.map(|r| session_from_row(OP, &r)).transpose()
    }

    async fn delete_session(&self, jti: &str) -> Result<bool> {
        const OP: &str = "delete_session";
        let done = sqlx::query(self.sql.delete_session.clone())
            .bind(jti)
            .execute(&self.pool)
            .await
            .map_err(|e| error(OP, e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn replace_session_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        const OP: &str = "replace_session_blob";
        let done = sqlx::query(self.sql.replace_session_blob.clone())
            .bind(jti)
            .bind(expected)
            .bind(sealed)
            .execute(&self.pool)
            .await
            .map_err(|e| error(OP, e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64> {
        const OP: &str = "revoke_subject";
        let e = |e| error(OP, e);
        // Marker and deletion commit together; a save of this subject runs
        // wholly before (its session is deleted here) or after (it sees
        // the marker).
        let mut tx = self.write(OP).await?;
        sqlx::query(self.sql.upsert_marker.clone())
            .bind(&revocation.sub)
            .bind(revocation.revoked_at)
            .bind(revocation.keep_until)
            .execute(&mut *tx)
            .await
            .map_err(e)?;
        let deleted = sqlx::query(self.sql.delete_subject.clone())
            .bind(&revocation.sub)
            .execute(&mut *tx)
            .await
            .map_err(e)?;
        tx.commit().await.map_err(e)?;
        Ok(deleted.rows_affected())
    }

    async fn purge_expired(&self) -> Result<u64> {
        const OP: &str = "purge_expired";
        let now = self.clock.now();
        let e = |e| error(OP, e);
        let mut removed = 0;
        // Expired sessions, then stored sessions a marker hides, in batches.
        loop {
            let done = sqlx::query(self.sql.purge_expired.clone())
                .bind(now)
                .bind(PURGE_BATCH)
                .execute(&self.pool)
                .await
                .map_err(e)?;
            removed += done.rows_affected();
            if done.rows_affected() < PURGE_BATCH as u64 {
                break;
            }
        }
        loop {
            let done = sqlx::query(self.sql.purge_hidden.clone())
                .bind(PURGE_BATCH)
                .execute(&self.pool)
                .await
                .map_err(e)?;
            removed += done.rows_affected();
            if done.rows_affected() < PURGE_BATCH as u64 {
                break;
            }
        }
        // Markers past their keep time, each batch in one transaction with
        // the sessions they hide, so forgetting a marker revives nothing.
        loop {
            let mut tx = self.write(OP).await?;
            let hidden = sqlx::query(self.sql.purge_hidden_by_due.clone())
                .bind(now)
                .bind(PURGE_BATCH)
                .execute(&mut *tx)
                .await
                .map_err(e)?;
            let forgotten = sqlx::query(self.sql.purge_due_markers.clone())
                .bind(now)
                .bind(PURGE_BATCH)
                .execute(&mut *tx)
                .await
                .map_err(e)?;
            tx.commit().await.map_err(e)?;
            removed += hidden.rows_affected();
            if forgotten.rows_affected() < PURGE_BATCH as u64 {
                return Ok(removed);
            }
        }
    }

    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        const OP: &str = "scan_sessions";
        if let Some(c) = cursor {
            validate::jti(OP, c)?;
        }
        let rows = sqlx::query(self.sql.scan_sessions.clone())
            .bind(self.clock.now())
            .bind(page_fetch(limit))
            .bind(cursor)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| error(OP, e))?;
        let mut sessions = rows
            .iter()
            .map(|r| session_from_row(OP, r))
            .collect::<Result<Vec<_>>>()?;
        let next = (sessions.len() > limit).then(|| {
            sessions.truncate(limit);
            sessions.last().map(|s| s.jti.clone())
        });
        Ok(SessionPage {
            sessions,
            next: next.flatten(),
        })
    }

    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        const OP: &str = "scan_revocations";
        if let Some(c) = cursor {
            validate::sub(OP, c)?;
        }
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(self.sql.scan_revocations.clone())
            .bind(self.clock.now())
            .bind(page_fetch(limit))
            .bind(cursor)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| error(OP, e))?;
        let mut revocations: Vec<Revocation> = rows
            .into_iter()
            .map(|(sub, revoked_at, keep_until)| Revocation {
                sub,
                revoked_at,
                keep_until,
            })
            .collect();
        let next = (revocations.len() > limit).then(|| {
            revocations.truncate(limit);
            revocations.last().map(|r| r.sub.clone())
        });
        Ok(RevocationPage {
            revocations,
            next: next.flatten(),
        })
    }

    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        const OP: &str = "create_record";
        sqlx::query_scalar(self.sql.create_record.clone())
            .bind(name)
            .bind(value)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| error(OP, e))
    }

    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        const OP: &str = "get_record";
        sqlx::query_scalar(self.sql.get_record.clone())
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| error(OP, e))
    }

    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        const OP: &str = "replace_record";
        let done = sqlx::query(self.sql.replace_record.clone())
            .bind(name)
            .bind(expected)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(|e| error(OP, e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        sqlx::query_as(self.sql.list_records.clone())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| error("list_records", e))
    }

    async fn save_peer(&self, peer: &PeerJwks) -> Result<()> {
        const OP: &str = "save_peer";
        sqlx::query(self.sql.save_peer.clone())
            .bind(&peer.issuer)
            .bind(&peer.jwks)
            .bind(peer.fetched_at)
            .execute(&self.pool)
            .await
            .map_err(|e| error(OP, e))?;
        Ok(())
    }

    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(self.sql.load_peers.clone())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| error("load_peers", e))?;
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
        let done = sqlx::query(self.sql.delete_peer.clone())
            .bind(issuer)
            .execute(&self.pool)
            .await
            .map_err(|e| error(OP, e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn stats(&self) -> Result<StoreStats> {
        const OP: &str = "stats";
        let row = sqlx::query(self.sql.stats.clone())
            .bind(self.clock.now())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| error(OP, e))?;
        let n = |i: usize| {
            row.try_get::<i64, _>(i)
                .map(count)
                .map_err(|e| error(OP, e))
        };
        let mut stats = StoreStats::default();
        stats.live_sessions = n(0)?;
        stats.expired_sessions = n(1)?;
        stats.subjects = Some(n(2)?);
        stats.peers = n(3)?;
        stats.records = n(4)?;
        stats.revocations = n(5)?;
        Ok(stats)
    }

    async fn drop_namespace(&self) -> Result<()> {
        const OP: &str = "drop_namespace";
        let mut tx = self.write(OP).await?;
        sqlx::raw_sql(self.sql.drop_namespace.clone())
            .execute(&mut *tx)
            .await
            .map_err(|e| error(OP, e))?;
        tx.commit().await.map_err(|e| error(OP, e))
    }
}

impl SqliteStore {
    /// Does a kept revocation marker hide `session` at `now`?
    async fn hidden(
        &self,
        tx: &mut sqlx::SqliteConnection,
        session: &SessionRecord,
        now: i64,
    ) -> std::result::Result<bool, sqlx::Error> {
        sqlx::query_scalar(self.sql.hidden.clone())
            .bind(&session.sub)
            .bind(session.auth_time)
            .bind(now)
            .fetch_one(tx)
            .await
    }

    /// Insert or replace the session under its `jti`, every field.
    async fn upsert(
        &self,
        tx: &mut sqlx::SqliteConnection,
        session: &SessionRecord,
    ) -> std::result::Result<(), sqlx::Error> {
        sqlx::query(self.sql.upsert_session.clone())
            .bind(&session.jti)
            .bind(&session.sub)
            .bind(session.expires_at)
            .bind(session.auth_time)
            .bind(&session.sealed[..])
            .execute(tx)
            .await?;
        Ok(())
    }
}
