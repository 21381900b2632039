//! The SQL text of every statement, built once per namespace. Values always
//! travel as bind parameters (`?1`, `?2`, ...); the only thing formatted
//! into the text is the table prefix, a [`Namespace`] (which matches
//! `^[a-z][a-z0-9_]{0,30}$`, so it needs no escaping), always double-quoted.

use broker_core::Namespace;
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

/// How many rows one purge statement deletes at most, so a purge never
/// holds the write lock for long.
pub(crate) const PURGE_BATCH: i64 = 1000;

/// The columns of a session row, in the order `session_from_row` reads.
const SESSION: &str = "jti, sub, expires_at, auth_time, sealed";

fn sql(text: String) -> SqlStr {
    AssertSqlSafe(text).into_sql_str()
}

/// Every statement a store runs, for one namespace.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) setup: SqlStr,
    pub(crate) drop_namespace: SqlStr,
    pub(crate) live_jti: SqlStr,
    pub(crate) hidden: SqlStr,
    pub(crate) upsert_session: SqlStr,
    pub(crate) delete_session: SqlStr,
    pub(crate) get_session: SqlStr,
    pub(crate) take_session: SqlStr,
    pub(crate) replace_session_blob: SqlStr,
    pub(crate) upsert_marker: SqlStr,
    pub(crate) delete_subject: SqlStr,
    pub(crate) purge_expired: SqlStr,
    pub(crate) purge_hidden: SqlStr,
    pub(crate) purge_hidden_by_due: SqlStr,
    pub(crate) purge_due_markers: SqlStr,
    pub(crate) scan_sessions: SqlStr,
    pub(crate) scan_revocations: SqlStr,
    pub(crate) create_record: SqlStr,
    pub(crate) get_record: SqlStr,
    pub(crate) replace_record: SqlStr,
    pub(crate) list_records: SqlStr,
    pub(crate) save_peer: SqlStr,
    pub(crate) load_peers: SqlStr,
    pub(crate) delete_peer: SqlStr,
    pub(crate) stats: SqlStr,
}

impl Statements {
    pub(crate) fn new(ns: &Namespace) -> Self {
        let ns = ns.as_str();
        let s = format!("\"{ns}_sessions\"");
        let r = format!("\"{ns}_revocations\"");
        let rec = format!("\"{ns}_records\"");
        let p = format!("\"{ns}_peers\"");

        // A session is visible while it has not expired and no kept marker
        // of its subject covers its auth_time (`now` is the parameter given).
        let visible = |now: &str| {
            format!(
                "{s}.expires_at > {now} AND NOT EXISTS (SELECT 1 FROM {r} \
                 WHERE {r}.sub = {s}.sub AND {r}.revoked_at >= {s}.auth_time \
                 AND {r}.keep_until > {now})"
            )
        };
        // The batch of markers past their keep time that one purge step forgets.
        let due =
            format!("SELECT sub FROM {r} WHERE keep_until <= ?1 ORDER BY keep_until, sub LIMIT ?2");

        Self {
            // STRICT tables check column types; text compares byte by byte
            // (BINARY collation), the order of Rust strings and of scans.
            setup: sql(format!(
                "CREATE TABLE IF NOT EXISTS {s} (\
                 jti TEXT PRIMARY KEY NOT NULL, sub TEXT NOT NULL, \
                 expires_at INTEGER NOT NULL, auth_time INTEGER NOT NULL, \
                 sealed BLOB NOT NULL) STRICT;\n\
                 CREATE INDEX IF NOT EXISTS \"{ns}_sessions_expires_at\" ON {s} (expires_at);\n\
                 CREATE INDEX IF NOT EXISTS \"{ns}_sessions_sub\" ON {s} (sub);\n\
                 CREATE TABLE IF NOT EXISTS {r} (\
                 sub TEXT PRIMARY KEY NOT NULL, revoked_at INTEGER NOT NULL, \
                 keep_until INTEGER NOT NULL) STRICT;\n\
                 CREATE TABLE IF NOT EXISTS {rec} (\
                 name TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) STRICT;\n\
                 CREATE TABLE IF NOT EXISTS {p} (\
                 issuer TEXT PRIMARY KEY NOT NULL, jwks TEXT NOT NULL, \
                 fetched_at INTEGER NOT NULL) STRICT;"
            )),
            drop_namespace: sql(format!(
                "DROP TABLE IF EXISTS {s}; DROP TABLE IF EXISTS {r}; \
                 DROP TABLE IF EXISTS {rec}; DROP TABLE IF EXISTS {p};"
            )),
            // ?1 jti, ?2 now: is a live (unexpired) session stored under jti?
            live_jti: sql(format!(
                "SELECT EXISTS (SELECT 1 FROM {s} WHERE jti = ?1 AND expires_at > ?2)"
            )),
            // ?1 sub, ?2 auth_time, ?3 now: does a kept marker hide it?
            hidden: sql(format!(
                "SELECT EXISTS (SELECT 1 FROM {r} WHERE sub = ?1 AND revoked_at >= ?2 \
                 AND keep_until > ?3)"
            )),
            upsert_session: sql(format!(
                "INSERT INTO {s} ({SESSION}) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (jti) DO UPDATE SET sub = excluded.sub, \
                 expires_at = excluded.expires_at, auth_time = excluded.auth_time, \
                 sealed = excluded.sealed"
            )),
            delete_session: sql(format!("DELETE FROM {s} WHERE jti = ?1")),
            get_session: sql(format!(
                "SELECT {SESSION} FROM {s} WHERE jti = ?1 AND {}",
                visible("?2")
            )),
            // One statement: of many concurrent takers exactly one deletes
            // the row, and only that one gets it back.
            take_session: sql(format!(
                "DELETE FROM {s} WHERE jti = ?1 AND {} RETURNING {SESSION}",
                visible("?2")
            )),
            replace_session_blob: sql(format!(
                "UPDATE {s} SET sealed = ?3 WHERE jti = ?1 AND sealed = ?2"
            )),
            // A later revocation only widens the marker.
            upsert_marker: sql(format!(
                "INSERT INTO {r} (sub, revoked_at, keep_until) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (sub) DO UPDATE SET \
                 revoked_at = max(revoked_at, excluded.revoked_at), \
                 keep_until = max(keep_until, excluded.keep_until)"
            )),
            delete_subject: sql(format!("DELETE FROM {s} WHERE sub = ?1")),
            purge_expired: sql(format!(
                "DELETE FROM {s} WHERE jti IN \
                 (SELECT jti FROM {s} WHERE expires_at <= ?1 LIMIT ?2)"
            )),
            // Stored sessions any marker hides (kept or not): none should
            // exist, since saves check markers in the same transaction, but
            // a store with another clock may have written one.
            purge_hidden: sql(format!(
                "DELETE FROM {s} WHERE jti IN (SELECT {s}.jti FROM {s} JOIN {r} \
                 ON {r}.sub = {s}.sub AND {s}.auth_time <= {r}.revoked_at LIMIT ?1)"
            )),
            // With `purge_due_markers`, in one transaction: a marker is
            // forgotten only together with the sessions it hides.
            purge_hidden_by_due: sql(format!(
                "DELETE FROM {s} WHERE sub IN ({due}) AND auth_time <= \
                 (SELECT revoked_at FROM {r} WHERE {r}.sub = {s}.sub)"
            )),
            purge_due_markers: sql(format!("DELETE FROM {r} WHERE sub IN ({due})")),
            // ?1 now, ?2 page size + 1, ?3 cursor (NULL for the first page).
            scan_sessions: sql(format!(
                "SELECT {SESSION} FROM {s} WHERE (?3 IS NULL OR jti > ?3) AND {} \
                 ORDER BY jti LIMIT ?2",
                visible("?1")
            )),
            scan_revocations: sql(format!(
                "SELECT sub, revoked_at, keep_until FROM {r} \
                 WHERE keep_until > ?1 AND (?3 IS NULL OR sub > ?3) ORDER BY sub LIMIT ?2"
            )),
            // One statement: the first value stays (the no-op update keeps
            // it) and RETURNING hands back whichever value is stored.
            create_record: sql(format!(
                "INSERT INTO {rec} (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = value RETURNING value"
            )),
            get_record: sql(format!("SELECT value FROM {rec} WHERE name = ?1")),
            replace_record: sql(format!(
                "UPDATE {rec} SET value = ?3 WHERE name = ?1 AND value = ?2"
            )),
            list_records: sql(format!("SELECT name, value FROM {rec} ORDER BY name")),
            save_peer: sql(format!(
                "INSERT INTO {p} (issuer, jwks, fetched_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (issuer) DO UPDATE SET jwks = excluded.jwks, \
                 fetched_at = excluded.fetched_at"
            )),
            load_peers: sql(format!(
                "SELECT issuer, jwks, fetched_at FROM {p} ORDER BY issuer"
            )),
            delete_peer: sql(format!("DELETE FROM {p} WHERE issuer = ?1")),
            stats: sql(format!(
                "SELECT \
                 (SELECT count(*) FROM {s} WHERE expires_at > ?1), \
                 (SELECT count(*) FROM {s} WHERE expires_at <= ?1), \
                 (SELECT count(DISTINCT sub) FROM {s} WHERE expires_at > ?1), \
                 (SELECT count(*) FROM {p}), \
                 (SELECT count(*) FROM {rec}), \
                 (SELECT count(*) FROM {r})"
            )),
        }
    }
}
