//! The SQL text of every statement, built once per store from validated
//! identifiers. Values always travel as bind parameters (`$1`, `$2`, ...);
//! the only things formatted into the text are table and index names made
//! of a [`Namespace`] and a validated [`SchemaName`](crate::SchemaName),
//! always double-quoted.

use broker_core::Namespace;
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

/// Key of the transaction-scoped advisory lock every migration holds while
/// it runs DDL, so concurrent setups (tasks or processes) are serialized
/// (`"brokerpg"` in ASCII).
pub(crate) const MIGRATE_LOCK_KEY: i64 = 0x6272_6f6b_6572_7067;

/// How many rows one purge statement deletes at most.
pub(crate) const PURGE_BATCH: i64 = 1000;

/// Quote a validated identifier (`[a-z0-9_]` only, so no escaping is needed;
/// quoting keeps keywords such as `user` usable).
fn quote(ident: &str) -> String {
    debug_assert!(
        ident
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    );
    format!("\"{ident}\"")
}

fn sql(text: String) -> SqlStr {
    AssertSqlSafe(text).into_sql_str()
}

/// Names of the five tables and their indexes for one schema + namespace.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) sessions: String,
    pub(crate) revocations: String,
    pub(crate) records: String,
    pub(crate) peers: String,
    /// The storage-format record (see `format.rs`).
    pub(crate) meta: String,
    /// `(quoted index name, quoted table, column list)`.
    indexes: Vec<(String, String, &'static str)>,
    /// Every relation as `to_regclass` text (qualified, quoted).
    pub(crate) relations: Vec<String>,
}

impl Names {
    pub(crate) fn new(schema: Option<&str>, ns: &Namespace) -> Self {
        let qualify = |name: &str| match schema {
            Some(s) => format!("{}.{}", quote(s), quote(name)),
            None => quote(name),
        };
        let ns = ns.as_str();
        let sessions = qualify(&format!("{ns}_sessions"));
        let revocations = qualify(&format!("{ns}_revocations"));
        let records = qualify(&format!("{ns}_records"));
        let peers = qualify(&format!("{ns}_peers"));
        let meta = qualify(&format!("{ns}_meta"));
        let index_specs = [
            (
                format!("{ns}_sessions_expires_at_idx"),
                &sessions,
                "expires_at",
            ),
            (format!("{ns}_sessions_sub_idx"), &sessions, "sub"),
            (
                format!("{ns}_revocations_keep_until_idx"),
                &revocations,
                "keep_until",
            ),
        ];
        let indexes: Vec<_> = index_specs
            .iter()
            .map(|(name, table, cols)| (quote(name), (*table).clone(), *cols))
            .collect();
        let mut relations = vec![
            sessions.clone(),
            revocations.clone(),
            records.clone(),
            peers.clone(),
            meta.clone(),
        ];
        relations.extend(index_specs.iter().map(|(name, _, _)| qualify(name)));
        Self {
            sessions,
            revocations,
            records,
            peers,
            meta,
            indexes,
            relations,
        }
    }
}

/// Every statement a store runs, prepared as text once.
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    pub(crate) migrate: SqlStr,
    pub(crate) migrate_with_schema: Option<SqlStr>,
    pub(crate) read_format: SqlStr,
    pub(crate) write_format: SqlStr,
    pub(crate) create_session: SqlStr,
    pub(crate) save_session: SqlStr,
    pub(crate) get_session: SqlStr,
    pub(crate) take_session: SqlStr,
    pub(crate) take_session_nowait: SqlStr,
    pub(crate) delete_session: SqlStr,
    pub(crate) delete_session_nowait: SqlStr,
    pub(crate) replace_session_blob: SqlStr,
    pub(crate) revoke_subject: SqlStr,
    pub(crate) purge_sessions: SqlStr,
    pub(crate) purge_hidden: SqlStr,
    pub(crate) purge_revocations: SqlStr,
    pub(crate) scan_first: SqlStr,
    pub(crate) scan_after: SqlStr,
    pub(crate) scan_revocations: SqlStr,
    pub(crate) create_record: SqlStr,
    pub(crate) get_record: SqlStr,
    pub(crate) replace_record: SqlStr,
    pub(crate) list_records: SqlStr,
    pub(crate) save_peer: SqlStr,
    pub(crate) load_peers: SqlStr,
    pub(crate) delete_peer: SqlStr,
    pub(crate) stats: SqlStr,
    pub(crate) drop_namespace: SqlStr,
}

impl Statements {
    pub(crate) fn new(schema: Option<&str>, n: &Names) -> Self {
        let (s, r, rec, p, m) = (&n.sessions, &n.revocations, &n.records, &n.peers, &n.meta);

        // One simple-protocol message = one implicit transaction, so the
        // advisory lock is held until every DDL statement below is done.
        let lock = format!("SELECT pg_advisory_xact_lock({MIGRATE_LOCK_KEY});\n");
        let mut ddl = format!(
            "CREATE TABLE IF NOT EXISTS {s} (\n\
             \x20   jti text COLLATE \"C\" PRIMARY KEY,\n\
             \x20   sub text COLLATE \"C\" NOT NULL,\n\
             \x20   expires_at bigint NOT NULL,\n\
             \x20   auth_time bigint NOT NULL,\n\
             \x20   sealed bytea NOT NULL\n);\n\
             CREATE TABLE IF NOT EXISTS {r} (\n\
             \x20   sub text COLLATE \"C\" PRIMARY KEY,\n\
             \x20   revoked_at bigint NOT NULL,\n\
             \x20   keep_until bigint NOT NULL\n);\n\
             CREATE TABLE IF NOT EXISTS {rec} (\n\
             \x20   name text COLLATE \"C\" PRIMARY KEY,\n\
             \x20   value bytea NOT NULL\n);\n\
             CREATE TABLE IF NOT EXISTS {p} (\n\
             \x20   issuer text COLLATE \"C\" PRIMARY KEY,\n\
             \x20   jwks text NOT NULL,\n\
             \x20   fetched_at bigint NOT NULL\n);\n\
             CREATE TABLE IF NOT EXISTS {m} (\n\
             \x20   name text COLLATE \"C\" PRIMARY KEY,\n\
             \x20   version integer NOT NULL\n);\n"
        );
        for (index, table, cols) in &n.indexes {
            ddl.push_str(&format!(
                "CREATE INDEX IF NOT EXISTS {index} ON {table} ({cols});\n"
            ));
        }
        // The schema is created after the lock is taken, so by exactly one caller.
        let migrate_with_schema = schema.map(|schema| {
            sql(format!(
                "{lock}CREATE SCHEMA IF NOT EXISTS {};\n{ddl}",
                quote(schema)
            ))
        });

        // A session is visible while it has not expired and no revocation
        // of its subject (still kept) covers its auth_time.
        let visible = |alias: &str, now: &str| {
            format!(
                "{alias}.expires_at > {now} AND NOT EXISTS (\
                 SELECT 1 FROM {r} rv WHERE rv.sub = {alias}.sub \
                 AND rv.revoked_at >= {alias}.auth_time AND rv.keep_until > {now})"
            )
        };

        // True if a kept marker hides session ($2 sub, $4 auth_time) at $6.
        let hides = format!(
            "EXISTS (SELECT 1 FROM {r} rv WHERE rv.sub = $2 \
             AND rv.revoked_at >= $4 AND rv.keep_until > $6)"
        );

        Self {
            migrate: sql(format!("{lock}{ddl}")),
            migrate_with_schema,
            read_format: sql(format!("SELECT version FROM {m} WHERE name = 'format'")),
            write_format: sql(format!(
                "INSERT INTO {m} (name, version) VALUES ('format', $1) \
                 ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version"
            )),
            // Conflicts only with a live session of that jti (the WHERE of
            // DO UPDATE fails, so nothing is inserted); an expired one is
            // replaced. A session a kept marker hides is not inserted; the
            // flags tell the caller which case it was.
            create_session: sql(format!(
                "WITH hidden AS (SELECT {hides} AS h), \
                 ins AS (INSERT INTO {s} AS t (jti, sub, expires_at, auth_time, sealed) \
                 SELECT $1, $2, $3, $4, $5 WHERE NOT (SELECT h FROM hidden) \
                 ON CONFLICT (jti) DO UPDATE SET sub = EXCLUDED.sub, \
                 expires_at = EXCLUDED.expires_at, auth_time = EXCLUDED.auth_time, \
                 sealed = EXCLUDED.sealed WHERE t.expires_at <= $6 \
                 RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM ins), (SELECT h FROM hidden), \
                 EXISTS (SELECT 1 FROM {s} WHERE jti = $1 AND expires_at > $6)"
            )),
            // An upsert; a session a kept marker hides is not stored, and
            // what was stored under its jti goes (the save replaced it).
            save_session: sql(format!(
                "WITH hidden AS (SELECT {hides} AS h), \
                 gone AS (DELETE FROM {s} WHERE jti = $1 AND (SELECT h FROM hidden)) \
                 INSERT INTO {s} (jti, sub, expires_at, auth_time, sealed) \
                 SELECT $1, $2, $3, $4, $5 WHERE NOT (SELECT h FROM hidden) \
                 ON CONFLICT (jti) DO UPDATE SET sub = EXCLUDED.sub, \
                 expires_at = EXCLUDED.expires_at, auth_time = EXCLUDED.auth_time, \
                 sealed = EXCLUDED.sealed"
            )),
            get_session: sql(format!(
                "SELECT s.jti, s.sub, s.expires_at, s.auth_time, s.sealed FROM {s} s \
                 WHERE s.jti = $1 AND {}",
                visible("s", "$2")
            )),
            take_session: sql(format!(
                "DELETE FROM {s} s WHERE s.jti = $1 AND {} \
                 RETURNING s.jti, s.sub, s.expires_at, s.auth_time, s.sealed",
                visible("s", "$2")
            )),
            // Outside a transaction block: never waits for the row lock of
            // another transaction (55P03 instead), so a take the client gave
            // up on never deletes later; the caller then runs take_session.
            take_session_nowait: sql(format!(
                "DELETE FROM {s} s WHERE s.jti = \
                 (SELECT l.jti FROM {s} l WHERE l.jti = $1 FOR UPDATE NOWAIT) AND {} \
                 RETURNING s.jti, s.sub, s.expires_at, s.auth_time, s.sealed",
                visible("s", "$2")
            )),
            delete_session: sql(format!("DELETE FROM {s} WHERE jti = $1 RETURNING 1")),
            // As take_session_nowait (the caller then runs delete_session).
            delete_session_nowait: sql(format!(
                "DELETE FROM {s} s WHERE s.jti = \
                 (SELECT l.jti FROM {s} l WHERE l.jti = $1 FOR UPDATE NOWAIT) RETURNING 1"
            )),
            replace_session_blob: sql(format!(
                "UPDATE {s} SET sealed = $3 WHERE jti = $1 AND sealed = $2"
            )),
            // One statement: both data-modifying CTEs run to completion, atomically.
            revoke_subject: sql(format!(
                "WITH marker AS (\
                 INSERT INTO {r} AS t (sub, revoked_at, keep_until) VALUES ($1, $2, $3) \
                 ON CONFLICT (sub) DO UPDATE SET \
                 revoked_at = GREATEST(t.revoked_at, EXCLUDED.revoked_at), \
                 keep_until = GREATEST(t.keep_until, EXCLUDED.keep_until)), \
                 gone AS (DELETE FROM {s} WHERE sub = $1 RETURNING 1) \
                 SELECT count(*) FROM gone"
            )),
            purge_sessions: sql(format!(
                "DELETE FROM {s} WHERE jti IN (SELECT jti FROM {s} WHERE expires_at <= $1 \
                 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
            )),
            // Sessions a marker hides (stored before this version refused
            // them, or by a worker whose clock had the marker expired).
            purge_hidden: sql(format!(
                "DELETE FROM {s} WHERE jti IN (SELECT s.jti FROM {s} s JOIN {r} rv \
                 ON rv.sub = s.sub AND s.auth_time <= rv.revoked_at \
                 LIMIT $1 FOR UPDATE OF s SKIP LOCKED)"
            )),
            // Markers past their keep time, together with every session
            // they hide, in one statement: both deletions commit at once.
            purge_revocations: sql(format!(
                "WITH due AS (SELECT sub, revoked_at FROM {r} WHERE keep_until <= $1 \
                 ORDER BY keep_until LIMIT $2 FOR UPDATE SKIP LOCKED), \
                 hidden AS (DELETE FROM {s} s USING due \
                 WHERE s.sub = due.sub AND s.auth_time <= due.revoked_at RETURNING 1), \
                 forgotten AS (DELETE FROM {r} rv USING due WHERE rv.sub = due.sub RETURNING 1) \
                 SELECT (SELECT count(*) FROM hidden), (SELECT count(*) FROM forgotten)"
            )),
            scan_first: sql(format!(
                "SELECT s.jti, s.sub, s.expires_at, s.auth_time, s.sealed FROM {s} s \
                 WHERE {} ORDER BY s.jti LIMIT $2",
                visible("s", "$1")
            )),
            scan_after: sql(format!(
                "SELECT s.jti, s.sub, s.expires_at, s.auth_time, s.sealed FROM {s} s \
                 WHERE s.jti > $3 AND {} ORDER BY s.jti LIMIT $2",
                visible("s", "$1")
            )),
            scan_revocations: sql(format!(
                "SELECT sub, revoked_at, keep_until FROM {r} \
                 WHERE keep_until > $1 AND ($3::text IS NULL OR sub > $3) \
                 ORDER BY sub LIMIT $2"
            )),
            // The winner's value in one round trip in the common cases; under
            // a race the statement's snapshot may miss a row committed
            // meanwhile, and the caller then reads again.
            create_record: sql(format!(
                "WITH ins AS (INSERT INTO {rec} (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING RETURNING value) \
                 SELECT value FROM ins UNION ALL \
                 SELECT value FROM {rec} WHERE name = $1 LIMIT 1"
            )),
            get_record: sql(format!("SELECT value FROM {rec} WHERE name = $1")),
            replace_record: sql(format!(
                "UPDATE {rec} SET value = $3 WHERE name = $1 AND value = $2"
            )),
            list_records: sql(format!("SELECT name, value FROM {rec} ORDER BY name")),
            save_peer: sql(format!(
                "INSERT INTO {p} (issuer, jwks, fetched_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (issuer) DO UPDATE SET jwks = EXCLUDED.jwks, \
                 fetched_at = EXCLUDED.fetched_at"
            )),
            load_peers: sql(format!(
                "SELECT issuer, jwks, fetched_at FROM {p} ORDER BY issuer"
            )),
            delete_peer: sql(format!("DELETE FROM {p} WHERE issuer = $1")),
            stats: sql(format!(
                "SELECT \
                 (SELECT count(*) FROM {s} WHERE expires_at > $1), \
                 (SELECT count(*) FROM {s} WHERE expires_at <= $1), \
                 (SELECT count(DISTINCT sub) FROM {s} WHERE expires_at > $1), \
                 (SELECT count(*) FROM {p}), \
                 (SELECT count(*) FROM {rec}), \
                 (SELECT count(*) FROM {r})"
            )),
            // Under the migration lock, so it never interleaves with a setup.
            drop_namespace: sql(format!(
                "{lock}DROP TABLE IF EXISTS {s}, {r}, {rec}, {p}, {m};"
            )),
        }
    }
}

/// `SELECT bool_and(to_regclass(..) IS NOT NULL)` over every relation: the
/// fast path of `setup()` when the schema is already in place.
pub(crate) const RELATIONS_EXIST: &str =
    "SELECT coalesce(bool_and(to_regclass(n) IS NOT NULL), false) FROM unnest($1::text[]) AS n";

/// Whether a relation (given as qualified, quoted `to_regclass` text) exists.
pub(crate) const RELATION_EXISTS: &str = "SELECT to_regclass($1) IS NOT NULL";

/// Whether a schema exists.
pub(crate) const SCHEMA_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)";

/// How an operation's transaction locks one subject of the namespace
/// (a transaction-scoped advisory lock, so it works behind PgBouncer in
/// transaction mode and is released by commit or rollback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubjectLock {
    /// Saves and creates: many at once, but never while the subject is
    /// being revoked.
    Shared,
    /// Revocations: waits for the subject's saves in flight, and holds
    /// back new ones until it committed.
    Exclusive,
}

/// FNV-1a (64 bit) folded to 32 bits: a stable hash, the same in every
/// process and version, for advisory-lock keys.
fn fold_hash(bytes: &[u8]) -> i32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    ((h >> 32) ^ h) as u32 as i32
}

/// The two-`int4` advisory-lock key of `sub` in the namespace whose
/// sessions table is `sessions` (quoted, qualified). Two-`int4` keys never
/// collide with the `bigint` key of [`MIGRATE_LOCK_KEY`]; a collision
/// between two subjects only makes one wait for the other.
pub(crate) fn subject_lock_key(sessions: &str, sub: &str) -> (i32, i32) {
    (fold_hash(sessions.as_bytes()), fold_hash(sub.as_bytes()))
}

/// The one simple-query message that opens every operation's transaction:
/// `READ COMMITTED` whatever the server's or pool's default (the statements
/// rely on it), a server-side `statement_timeout` (and an idle-in-transaction
/// timeout) of `timeout_ms` set with `SET LOCAL` (so nothing outlives the
/// transaction; no session state), and the subject lock, if any. Only
/// integers are formatted into the text.
pub(crate) fn begin(timeout_ms: u64, lock: Option<(SubjectLock, (i32, i32))>) -> SqlStr {
    let mut text = format!(
        "BEGIN ISOLATION LEVEL READ COMMITTED; \
         SET LOCAL statement_timeout = {timeout_ms}; \
         SET LOCAL idle_in_transaction_session_timeout = {timeout_ms};"
    );
    if let Some((mode, (a, b))) = lock {
        let function = match mode {
            SubjectLock::Shared => "pg_advisory_xact_lock_shared",
            SubjectLock::Exclusive => "pg_advisory_xact_lock",
        };
        text.push_str(&format!(" SELECT {function}({a}, {b});"));
    }
    sql(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_separate_subjects_and_namespaces() {
        let a = subject_lock_key("\"ns_sessions\"", "alice");
        assert_eq!(a, subject_lock_key("\"ns_sessions\"", "alice"));
        assert_ne!(a, subject_lock_key("\"ns_sessions\"", "bob"));
        assert_ne!(a.0, subject_lock_key("\"other_sessions\"", "alice").0);
        // Pinned: every process and version must agree on the key.
        assert_eq!(fold_hash(b""), (0xcbf2_9ce4_u32 ^ 0x8422_2325_u32) as i32);
        assert_eq!(fold_hash(b"a"), 0x2962_30c0_u32 as i32);
    }

    #[test]
    fn begin_formats_only_integers() {
        let text = begin(3000, Some((SubjectLock::Shared, (-5, 7))));
        assert_eq!(
            text.as_str(),
            "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL statement_timeout = 3000; \
             SET LOCAL idle_in_transaction_session_timeout = 3000; \
             SELECT pg_advisory_xact_lock_shared(-5, 7);"
        );
        assert!(begin(10, None).as_str().ends_with("timeout = 10;"));
    }
}
