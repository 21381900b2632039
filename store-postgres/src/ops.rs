//! The [`BrokerStore`] operations: each write one transaction, get, take
//! and delete one statement (see the crate docs, "Statements and
//! transactions").

use std::sync::Arc;

use broker_core::clock::Clock;
use broker_core::{
    BrokerStore, Namespace, PeerJwks, Result, Revocation, RevocationPage, SessionPage,
    SessionRecord, StoreBackend, StoreError, StoreStats, validate,
};
use sqlx::SqlStr;

use crate::sql::{PURGE_BATCH, SubjectLock};
use crate::{PostgresStore, count, session_from_row};

/// One row more than asked tells whether another page follows.
fn page_fetch(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1)
}

impl StoreBackend for PostgresStore {
    fn operation_timeout(&self) -> Option<std::time::Duration> {
        Some(self.timeout)
    }

    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        Arc::new(self.clone().with_namespace(namespace))
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// Creates what is missing and records the storage format, or checks
    /// it ([`PostgresStore::migrate`]); a fast path without locks when all
    /// is in place.
    async fn setup(&self) -> Result<()> {
        if self.is_set_up("setup").await? {
            return Ok(());
        }
        self.migrate().await.map_err(|e| e.with_op("setup"))
    }

    async fn health(&self) -> Result<()> {
        in_transaction!(self, "health", None, |conn| {
            sqlx::query("SELECT 1")
                .persistent(self.prepared)
                .execute(conn)
                .await?
        })
        .await?;
        Ok(())
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        const OP: &str = "create_session";
        let lock = Some((SubjectLock::Shared, session.sub.as_str()));
        let (inserted, hidden, live): (bool, bool, bool) =
            in_transaction!(self, OP, lock, |conn| {
                self.rows(&self.sql.create_session)
                    .bind(&session.jti)
                    .bind(&session.sub)
                    .bind(session.expires_at)
                    .bind(session.auth_time)
                    .bind(&session.sealed[..])
                    .bind(self.clock.now())
                    .fetch_one(conn)
                    .await?
            })
            .await?;
        // Not inserted: a live session holds the jti (conflict), or a kept
        // marker hides this one (not stored; Ok unless the jti is taken).
        if inserted || (hidden && !live) {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                op: OP,
                what: "a session with this jti exists",
            })
        }
    }

    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        const OP: &str = "save_session";
        let lock = Some((SubjectLock::Shared, session.sub.as_str()));
        in_transaction!(self, OP, lock, |conn| {
            self.query(&self.sql.save_session)
                .bind(&session.jti)
                .bind(&session.sub)
                .bind(session.expires_at)
                .bind(session.auth_time)
                .bind(&session.sealed[..])
                .bind(self.clock.now())
                .execute(conn)
                .await?
        })
        .await?;
        Ok(())
    }

    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        let sql = &self.sql.get_session;
        self.session_statement("get_session", sql, sql, jti).await
    }

    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        let sql = &self.sql;
        self.session_statement(
            "take_session",
            &sql.take_session_nowait,
            &sql.take_session,
            jti,
        )
        .await
    }

    async fn delete_session(&self, jti: &str) -> Result<bool> {
        let sql = &self.sql;
        let bind = |sql: &SqlStr| self.query(sql).bind(jti);
        let (fast, careful) = (&sql.delete_session_nowait, &sql.delete_session);
        let row = self
            .one_round_trip("delete_session", fast, careful, bind)
            .await?;
        Ok(row.is_some())
    }

    async fn replace_session_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        const OP: &str = "replace_session_blob";
        let done = in_transaction!(self, OP, None, |conn| {
            self.query(&self.sql.replace_session_blob)
                .bind(jti)
                .bind(expected)
                .bind(sealed)
                .execute(conn)
                .await?
        })
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64> {
        const OP: &str = "revoke_subject";
        // Exclusive: the saves of this subject in flight commit first (and
        // their sessions are deleted here); later ones see the marker.
        let lock = Some((SubjectLock::Exclusive, revocation.sub.as_str()));
        let deleted: i64 = in_transaction!(self, OP, lock, |conn| {
            self.scalar(self.sql.revoke_subject.clone())
                .bind(&revocation.sub)
                .bind(revocation.revoked_at)
                .bind(revocation.keep_until)
                .fetch_one(conn)
                .await?
        })
        .await?;
        Ok(count(deleted))
    }

    async fn purge_expired(&self) -> Result<u64> {
        const OP: &str = "purge_expired";
        let now = self.clock.now();
        let mut removed = 0;
        // Expired sessions.
        loop {
            let done = in_transaction!(self, OP, None, |conn| {
                self.query(&self.sql.purge_sessions)
                    .bind(now)
                    .bind(PURGE_BATCH)
                    .execute(conn)
                    .await?
            })
            .await?;
            removed += done.rows_affected();
            if done.rows_affected() < PURGE_BATCH as u64 {
                break;
            }
        }
        // Sessions a marker hides.
        loop {
            let done = in_transaction!(self, OP, None, |conn| {
                self.query(&self.sql.purge_hidden)
                    .bind(PURGE_BATCH)
                    .execute(conn)
                    .await?
            })
            .await?;
            removed += done.rows_affected();
            if done.rows_affected() < PURGE_BATCH as u64 {
                break;
            }
        }
        // Markers past their keep time, each with the sessions it hides.
        loop {
            let (hidden, forgotten): (i64, i64) = in_transaction!(self, OP, None, |conn| {
                self.rows(&self.sql.purge_revocations)
                    .bind(now)
                    .bind(PURGE_BATCH)
                    .fetch_one(conn)
                    .await?
            })
            .await?;
            removed += count(hidden);
            if forgotten < PURGE_BATCH {
                break;
            }
        }
        Ok(removed)
    }

    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        const OP: &str = "scan_sessions";
        if let Some(c) = cursor
            && (c.len() > validate::MAX_ID_BYTES || c.as_bytes().contains(&0))
        {
            return Err(StoreError::invalid(
                OP,
                "the cursor is not one this store returned",
            ));
        }
        let now = self.clock.now();
        let rows = in_transaction!(self, OP, None, |conn| {
            let query = match cursor {
                None => self
                    .query(&self.sql.scan_first)
                    .bind(now)
                    .bind(page_fetch(limit)),
                Some(after) => self
                    .query(&self.sql.scan_after)
                    .bind(now)
                    .bind(page_fetch(limit))
                    .bind(after),
            };
            query.fetch_all(conn).await?
        })
        .await?;
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
        if let Some(c) = cursor {
            validate::sub(OP, c)?;
        }
        let rows: Vec<(String, i64, i64)> = in_transaction!(self, OP, None, |conn| {
            self.rows(&self.sql.scan_revocations)
                .bind(self.clock.now())
                .bind(page_fetch(limit))
                .bind(cursor)
                .fetch_all(conn)
                .await?
        })
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
        // Records are never deleted through the store, so a second attempt
        // only runs if one was removed by hand between the two statements.
        for _ in 0..3 {
            let stored: Option<Vec<u8>> = in_transaction!(self, OP, None, |conn| {
                self.scalar(self.sql.create_record.clone())
                    .bind(name)
                    .bind(value)
                    .fetch_optional(conn)
                    .await?
            })
            .await?;
            if let Some(stored) = stored {
                return Ok(stored);
            }
            // A racing creator committed after this statement's snapshot:
            // a new statement sees its value.
            if let Some(stored) = StoreBackend::get_record(self, name)
                .await
                .map_err(|e| e.with_op(OP))?
            {
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
        in_transaction!(self, OP, None, |conn| {
            self.scalar(self.sql.get_record.clone())
                .bind(name)
                .fetch_optional(conn)
                .await?
        })
        .await
    }

    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        const OP: &str = "replace_record";
        let done = in_transaction!(self, OP, None, |conn| {
            self.query(&self.sql.replace_record)
                .bind(name)
                .bind(expected)
                .bind(value)
                .execute(conn)
                .await?
        })
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        const OP: &str = "list_records";
        in_transaction!(self, OP, None, |conn| {
            self.rows(&self.sql.list_records).fetch_all(conn).await?
        })
        .await
    }

    async fn save_peer(&self, peer: &PeerJwks) -> Result<()> {
        const OP: &str = "save_peer";
        in_transaction!(self, OP, None, |conn| {
            self.query(&self.sql.save_peer)
                .bind(&peer.issuer)
                .bind(&peer.jwks)
                .bind(peer.fetched_at)
                .execute(conn)
                .await?
        })
        .await?;
        Ok(())
    }

    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        const OP: &str = "load_peers";
        let rows: Vec<(String, String, i64)> = in_transaction!(self, OP, None, |conn| {
            self.rows(&self.sql.load_peers).fetch_all(conn).await?
        })
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
        let done = in_transaction!(self, OP, None, |conn| {
            self.query(&self.sql.delete_peer)
                .bind(issuer)
                .execute(conn)
                .await?
        })
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn drop_namespace(&self) -> Result<()> {
        const OP: &str = "drop_namespace";
        in_transaction!(self, OP, None, |conn| {
            sqlx::raw_sql(self.sql.drop_namespace.clone())
                .execute(conn)
                .await?
        })
        .await?;
        Ok(())
    }

    async fn stats(&self) -> Result<StoreStats> {
        const OP: &str = "stats";
        let (live, expired, subjects, peers, records, revocations): (i64, i64, i64, i64, i64, i64) =
            in_transaction!(self, OP, None, |conn| {
                self.rows(&self.sql.stats)
                    .bind(self.clock.now())
                    .fetch_one(conn)
                    .await?
            })
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
