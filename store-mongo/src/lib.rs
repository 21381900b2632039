#![doc = include_str!("../README.md")]
//!
//! # Collections
//!
//! Build a [`MongoStore`] from a [`mongodb::Database`] you already have
//! ([`MongoStore::new`]) or from a URL naming the database
//! ([`MongoStore::connect`]), pick a collection prefix with
//! [`MongoStore::with_namespace`], and call [`BrokerStore::setup`] once to
//! create the indexes.
//!
//! Each namespace `ns` uses five collections:
//!
//! | collection | `_id` | fields |
//! |---|---|---|
//! | `ns_sessions` | jti | `sub`, `expires_at` (BSON date, TTL index), `expires_at_secs`, `auth_time`, `saved_at`, `sealed` (binary); index on `sub` |
//! | `ns_revocations` | sub | `revoked_at`, `keep_until`, `forgotten_at` (set by purge); no TTL |
//! | `ns_records` | name | `value` (binary) |
//! | `ns_peers` | issuer | `jwks` (the JSON text, as a string), `fetched_at` |
//! | `ns_meta` | `"format"` | `version`: the storage format ([`FORMAT_VERSION`]), written by the first `setup`, checked by every later one |
//!
//! Queries are typed documents built with [`mongodb::bson::doc!`]: a `jti`
//! such as `{"$ne": ""}` or `$where` is a string value, never an operator.
//! The TTL monitor removes expired sessions about once a minute; every read
//! also filters on expiry, so an expired session is never returned.
//! No operation uses a multi-document transaction; every operation reads
//! from the primary with read concern `majority` and writes with write
//! concern `majority` + journal, whatever the handed-in database says
//! ([`MongoStore::new`]).
//!
//! Before the process exits, call [`MongoStore::shutdown`] (or shut your own
//! client down): the driver's background tasks otherwise meet a runtime
//! that is going away, and it can panic on stderr.
//!
//! # Semantics
//!
//! take = `find_one_and_delete` filtered on expiry, then the subject's
//! marker; create-session = one `replace_one` upsert filtered on "expired",
//! so a live session makes it fail with duplicate key 11000 →
//! [`StoreError::Conflict`]; create-once records = `find_one_and_update`
//! upsert with `$setOnInsert`; compare-and-set = `update_one` filtered on
//! the old bytes; scans page by `_id`. get is one round trip (`$match` +
//! `$lookup` of the marker), take two.
//!
//! # Revocation never wears off
//!
//! Without transactions a write cannot check the marker atomically, so
//! ordering does it. revoke upserts the marker (`$max`), *then* deletes the
//! subject's sessions; save/create write the session, *then* read the
//! marker and delete that session again if the marker hides it. Either the
//! save's read sees the marker or the revoke's delete sees the session.
//! Reads and take (which removes first, then checks) hide by marker
//! meanwhile. A marker hides `auth_time <= revoked_at` while kept, and
//! after its keep time still every session saved while it was kept
//! (`saved_at < keep_until`), so a session left by an interrupted save
//! never becomes visible. Markers go only through `purge_expired`: it
//! deletes the sessions each marker hides, then marks markers past their
//! keep time forgotten (not counted, listed or merged into any more), and
//! deletes them [`FORGOTTEN_MARKER_GRACE`] (10 min) later, so a read in
//! flight (bounded by [`MAX_CHECKED_READ`], 60 s) still finds them. `setup`
//! drops the markers' TTL index of older versions (it let the server forget
//! markers while hidden sessions stayed). Upgrade every worker together: an
//! older one neither checks after saving nor writes `saved_at`.
//!
//! # Time
//!
//! Expiry, revocation and purge go by the store's injected `Clock`
//! ([`MongoStore::with_clock`]; the system clock of the client process by
//! default): its "now" is part of every filter, and `saved_at` is written
//! by it. The server's clock only drives the sessions' TTL index, a
//! clean-up: a server clock ahead of the clients deletes sessions up to
//! that far before their `expires_at`, one behind leaves expired ones for
//! purge (reads never return them). Between workers, skew moves a session's
//! expiry and a marker's end by that much: a worker behind still hides what
//! the marker hid, one ahead may treat a marker's last seconds as over
//! (logins after `keep_until` are not covered anyway); skew between purging
//! workers eats into the 10 min grace.
//!
//! # Consistency and durability
//!
//! Whatever the `Database` handed to [`MongoStore::new`] carries, every
//! operation reads from the primary with read concern `majority` and writes
//! with write concern `majority` and `j: true` (on a standalone server:
//! journaled before acknowledged), so nothing acknowledged is rolled back
//! by a failover or lost in a crash, and no read misses an acknowledged
//! marker or deletion.
//!
//! # Timeouts and errors
//!
//! [`MongoStore::connect`] sets server selection to 5 s and connect to 3 s
//! unless the URL says otherwise; a store built with [`MongoStore::new`]
//! uses your client's settings. Every operation is also bounded by
//! [`DEFAULT_OPERATION_TIMEOUT`] (10 s;
//! [`MongoStore::with_operation_timeout`]), as on every server store. Network, server-selection,
//! shutdown/step-down and timeout failures → [`StoreError::Unavailable`];
//! others → [`StoreError::Backend`]. Driver errors are redacted to category
//! + code (server messages can quote keys).
//!
//! # Shutting down
//!
//! Call `store.shutdown().await` once, after the last operation, before the
//! process exits (last thing in `main`). The driver returns connections and
//! ends cursors and sessions from background tasks on the async runtime; a
//! process that exits with a client still alive tears the runtime down
//! under them, and the driver can panic on stderr ("SendError" in its
//! connection requester; about one short-lived process in 60 here).
//! [`MongoStore::shutdown`] waits up to [`SHUTDOWN_GRACE`] (5 s) for work
//! in flight, then closes at once. It shuts down the client behind the
//! store, which for a store built with [`MongoStore::new`] is *your*
//! client: there, call it (or `client.shutdown().await`) only when the
//! application is done with the client. `brokerctl` and the soak workers do
//! this on every exit.
//!
//! # Tests
//!
//! They need a server at `BROKER_TEST_MONGO_URL` (with a database in the
//! path); else a testcontainers `mongo` when Docker answers; else they skip
//! loudly (fail under `CI=true`). `tests/restart.rs` is rule 18
//! (`conformance::restart_suite!`); it restarts the server with
//! `BROKER_TEST_MONGO_RESTART_CMD` (missing: skipped, or a failure under
//! `CI=true`). `scripts/servers/mongo.sh start` provides **SecantusDB**
//! (PyPI, MongoDB wire protocol on WiredTiger) where there is neither
//! MongoDB nor Docker; the tests print which server they ran against. Where
//! it differs from MongoDB's documentation it is listed here, not worked
//! around: its default one-node replica-set mode was ~30× slower on writes
//! (~70 vs ~2 000/s), so the script runs it `--standalone`, which has no
//! transactions (the store uses none); `j: true` triples its write latency
//! (~1.3 → ~4 ms); and of concurrent `find_one_and_update` upserts with
//! `returnDocument: after` on one new `_id`, some get `null` back (339 of
//! 1 600 in a 16-way race) where MongoDB documents the document or a
//! duplicate-key error; `create_record` reads the winner's value either
//! way.

#![warn(missing_docs)]

mod documents;
mod error;
mod format;
mod records;
mod revocation;
mod schema;
mod sessions;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use broker_core::clock::{Clock, system_clock};
use broker_core::{
    BrokerStore, Namespace, PeerJwks, Result, Revocation, RevocationPage, SessionPage,
    SessionRecord, StoreBackend, StoreError, StoreStats,
};
use mongodb::bson::doc;
use mongodb::options::{
    Acknowledgment, ClientOptions, CollectionOptions, DatabaseOptions, ReadConcern, ReadPreference,
    SelectionCriteria, WriteConcern,
};
use mongodb::{Client, Collection, Database};

use documents::{MarkerDoc, PeerDoc, RecordDoc, SessionDoc};

pub use error::DriverError;
pub use format::FORMAT_VERSION;
pub use mongodb;
pub use revocation::FORGOTTEN_MARKER_GRACE;

/// How long [`MongoStore::connect`] lets the driver look for a usable server
/// before an operation fails as unavailable (unless the URL sets
/// `serverSelectionTimeoutMS`).
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`MongoStore::connect`] lets the driver open one TCP/TLS
/// connection (unless the URL sets `connectTimeoutMS`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest one store operation may take before it fails as
/// unavailable, whatever the client's own settings (see
/// [`MongoStore::with_operation_timeout`]).
pub use broker_core::backend::DEFAULT_OPERATION_TIMEOUT;

/// How long [`MongoStore::shutdown`] waits for the driver's work in flight
/// before it closes the client at once.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The longest a read that checks sessions against their revocation
/// markers (get, take, scan: the session and its marker are read at
/// different moments) may take, even with no operation timeout; it fails
/// as unavailable after that. Far below [`FORGOTTEN_MARKER_GRACE`], so the
/// marker it needs is still stored when it reads it.
pub const MAX_CHECKED_READ: Duration = Duration::from_secs(60);

/// How many expired sessions, or revocation markers, [`BrokerStore::purge_expired`]
/// handles per batch.
pub const PURGE_BATCH: i64 = 1000;

/// A [`BrokerStore`] on MongoDB.
///
/// Clones share the driver's connection pool. Dropping a store never shuts
/// down the [`mongodb::Client`] behind it.
#[derive(Clone)]
pub struct MongoStore {
    namespace: Namespace,
    db: Database,
    sessions: Collection<SessionDoc>,
    revocations: Collection<MarkerDoc>,
    records: Collection<RecordDoc>,
    peers: Collection<PeerDoc>,
    op_timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("namespace", &self.namespace)
            .field("database", &self.db.name())
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

/// Read from the primary only: a secondary may not have a marker or a
/// deletion yet, and the revocation and take checks rely on seeing every
/// acknowledged write.
fn primary() -> SelectionCriteria {
    SelectionCriteria::ReadPreference(ReadPreference::Primary)
}

/// Reads see only majority-committed data, which no failover rolls back.
fn read_concern() -> ReadConcern {
    ReadConcern::majority()
}

/// A write is acknowledged once a majority of the replica set (or the
/// standalone server) has it in its journal.
fn write_concern() -> WriteConcern {
    WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build()
}

impl MongoStore {
    /// A store on `db` (a database of a [`mongodb::Client`] you already
    /// have), under the default namespace `broker`.
    ///
    /// The store uses the client's connection settings: its server
    /// selection timeout (30 s by default in the driver) decides how fast
    /// an outage is reported, bounded by the store's operation timeout
    /// ([`DEFAULT_OPERATION_TIMEOUT`]). It does not use the read
    /// preference, read concern or write concern of `db` or its client:
    /// every operation reads from the primary with read concern `majority`
    /// and writes with write concern `majority` and `j: true`. The client
    /// is never shut down.
    ///
    /// ```no_run
    /// use broker_core::{BrokerStore, Namespace};
    /// use store_mongo::MongoStore;
    /// use store_mongo::mongodb::Client;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = Client::with_uri_str("mongodb://127.0.0.1:27017").await?;
    /// let store = MongoStore::new(client.database("my-app"))
    ///     .with_namespace(Namespace::new("broker")?);
    /// store.setup().await?;
    /// // the application keeps using `client` as before
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(db: Database) -> Self {
        Self::build(
            db,
            Namespace::default(),
            DEFAULT_OPERATION_TIMEOUT,
            system_clock(),
        )
    }

    /// The same as [`MongoStore::new`], under the name py-oidc-auth users
    /// know (`MongoDBBrokerStore(db=...)`).
    pub fn from_database(db: Database) -> Self {
        Self::new(db)
    }

    /// A store on the database named in `url`
    /// (`mongodb://host:port/<database>?...`), with a new client.
    ///
    /// Unless the URL sets them, the server selection timeout is
    /// [`DEFAULT_SERVER_SELECTION_TIMEOUT`] and the connect timeout
    /// [`DEFAULT_CONNECT_TIMEOUT`], so an unreachable server fails an
    /// operation as [`StoreError::Unavailable`] within seconds. The server is
    /// not contacted until the first operation.
    ///
    /// ```no_run
    /// use broker_core::BrokerStore;
    /// use store_mongo::MongoStore;
    ///
    /// # async fn run() -> broker_core::Result<()> {
    /// let store = MongoStore::connect("mongodb://127.0.0.1:27017/my-app").await?;
    /// store.setup().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        const OP: &str = "connect";
        let mut options = ClientOptions::parse(url).await.map_err(|e| {
            if error::is_unavailable(&e) {
                error::map(OP, e)
            } else {
                // The driver's message could quote the URL and its password.
                StoreError::invalid(OP, "the MongoDB connection string is not valid")
            }
        })?;
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(DEFAULT_SERVER_SELECTION_TIMEOUT);
        }
        if options.connect_timeout.is_none() {
            options.connect_timeout = Some(DEFAULT_CONNECT_TIMEOUT);
        }
        let client = Client::with_options(options).map_err(|e| error::map(OP, e))?;
        let db = client.default_database().ok_or_else(|| {
            StoreError::invalid(
                OP,
                "the MongoDB connection string names no database (mongodb://host/<database>)",
            )
        })?;
        Ok(Self::new(db))
    }

    /// The same store under another namespace (collection prefix).
    pub fn with_namespace(self, namespace: Namespace) -> Self {
        Self::build(self.db, namespace, self.op_timeout, self.clock)
    }

    /// Decide expiry and revocation by `clock` (default: the system clock of
    /// this process; times are part of each query).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Bound every operation, from call to answer, to `timeout`. An
    /// operation that runs out of time fails as [`StoreError::Unavailable`];
    /// a write that timed out may or may not have been applied. Default:
    /// [`DEFAULT_OPERATION_TIMEOUT`], as for every server store.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// The database this store uses: a handle on the database it was built
    /// on, with the store's read preference (primary) and concerns.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Shut down the driver's [`Client`] behind this store (and every store
    /// sharing it), waiting up to [`SHUTDOWN_GRACE`] for work in flight,
    /// then closing at once. Call it once, after the last operation, before
    /// the process exits.
    ///
    /// Why: the driver returns connections and ends server-side cursors and
    /// sessions from background tasks on the async runtime. A process that
    /// exits with a client still alive tears the runtime down under those
    /// tasks, and the driver then panics ("SendError" in its connection
    /// requester) on stderr. A store built with [`MongoStore::new`] shares
    /// your client: this shuts that client down too, so call it only when
    /// the application is done with it (or shut your client down yourself).
    ///
    /// ```no_run
    /// # async fn run() -> broker_core::Result<()> {
    /// let store = store_mongo::MongoStore::connect("mongodb://127.0.0.1:27017/my-app").await?;
    /// // ... serve requests ...
    /// store.shutdown().await; // last thing before returning from main
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        let client = self.db.client().clone();
        if tokio::time::timeout(SHUTDOWN_GRACE, client.clone().shutdown())
            .await
            .is_err()
        {
            client.shutdown().immediate(true).await;
        }
    }

    /// The names of the collections this store's namespace uses: sessions,
    /// revocations, records, peers, and the storage-format record (`meta`).
    pub fn collection_names(&self) -> [String; 5] {
        let [sessions, revocations, records, peers] = collection_names(&self.namespace);
        let meta = format::meta_name(&self.namespace);
        [sessions, revocations, records, peers, meta]
    }

    fn build(
        db: Database,
        namespace: Namespace,
        op_timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        // Our own handle on the database, with our concerns: whatever read
        // preference or concerns the handed-in handle carries, the store
        // reads from the primary and writes as documented.
        let db = db.client().database_with_options(
            db.name(),
            DatabaseOptions::builder()
                .selection_criteria(primary())
                .read_concern(read_concern())
                .write_concern(write_concern())
                .build(),
        );
        let [sessions, revocations, records, peers] = collection_names(&namespace);
        Self {
            sessions: collection(&db, &sessions),
            revocations: collection(&db, &revocations),
            records: collection(&db, &records),
            peers: collection(&db, &peers),
            namespace,
            db,
            op_timeout,
            clock,
        }
    }

    /// Run one driver call under the operation timeout, mapping its error.
    async fn run<T>(
        &self,
        op: &'static str,
        fut: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T> {
        self.run_raw(op, fut).await?.map_err(|e| error::map(op, e))
    }

    /// Like [`Self::run`] but hands the driver error back unmapped (for the
    /// callers that treat a duplicate key specially).
    async fn run_raw<T>(
        &self,
        _op: &'static str,
        fut: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>> {
        // The operation timeout is enforced around the whole operation (the
        // blanket `BrokerStore` impl), not per driver call.
        Ok(fut.await)
    }

    /// Run a read that checks sessions against markers in several steps
    /// within [`MAX_CHECKED_READ`] (or the operation timeout if shorter).
    async fn checked<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let limit = self.op_timeout.min(MAX_CHECKED_READ);
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| StoreError::timed_out(op, limit))?
    }

    /// The revocation marker of `sub`, kept or not, if one is stored.
    async fn marker(&self, op: &'static str, sub: &str) -> Result<Option<MarkerDoc>> {
        self.run(op, self.revocations.find_one(doc! { "_id": sub }))
            .await
    }
}

/// A collection of `db` that sets the store's selection criteria and
/// concerns itself rather than inheriting them.
fn collection<T: Send + Sync>(db: &Database, name: &str) -> Collection<T> {
    db.collection_with_options(
        name,
        CollectionOptions::builder()
            .selection_criteria(primary())
            .read_concern(read_concern())
            .write_concern(write_concern())
            .build(),
    )
}

/// The four collection names of `namespace`.
fn collection_names(namespace: &Namespace) -> [String; 4] {
    let ns = namespace.as_str();
    [
        format!("{ns}_sessions"),
        format!("{ns}_revocations"),
        format!("{ns}_records"),
        format!("{ns}_peers"),
    ]
}

impl StoreBackend for MongoStore {
    fn operation_timeout(&self) -> Option<Duration> {
        Some(self.op_timeout)
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

    async fn setup(&self) -> Result<()> {
        schema::setup(self).await
    }

    async fn health(&self) -> Result<()> {
        schema::health(self).await
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        sessions::create(self, session).await
    }

    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        sessions::save(self, session).await
    }

    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        sessions::get(self, jti).await
    }

    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        sessions::take(self, jti).await
    }

    async fn delete_session(&self, jti: &str) -> Result<bool> {
        sessions::delete(self, jti).await
    }

    async fn replace_session_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        sessions::replace_blob(self, jti, expected, sealed).await
    }

    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64> {
        revocation::revoke(self, revocation).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        revocation::purge(self).await
    }

    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        sessions::scan(self, cursor, limit).await
    }

    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        revocation::scan(self, cursor, limit).await
    }

    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        records::create(self, name, value).await
    }

    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        records::get(self, name).await
    }

    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        records::replace(self, name, expected, value).await
    }

    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        records::list(self).await
    }

    async fn save_peer(&self, peer: &PeerJwks) -> Result<()> {
        records::save_peer(self, peer).await
    }

    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        records::load_peers(self).await
    }

    async fn delete_peer(&self, issuer: &str) -> Result<bool> {
        records::delete_peer(self, issuer).await
    }

    async fn drop_namespace(&self) -> Result<()> {
        schema::drop_namespace(self).await
    }

    async fn stats(&self) -> Result<StoreStats> {
        schema::stats(self).await
    }
}

#[cfg(test)]
mod tests {
    use mongodb::options::{ReadConcernLevel, ServerAddress};

    use super::*;

    /// Every collection handle the store makes reads from the primary with
    /// read concern `majority` and writes with `majority` + journal, though
    /// the handed-in database asks for secondary reads, `local` and `w: 0`.
    #[tokio::test]
    async fn collections_use_primary_and_the_promised_concerns() {
        let options = ClientOptions::builder()
            .hosts(vec![ServerAddress::Tcp {
                host: "127.0.0.1".into(),
                port: Some(1),
            }])
            .build();
        let client = Client::with_options(options).unwrap();
        let loose = client.database_with_options(
            "db",
            DatabaseOptions::builder()
                .selection_criteria(SelectionCriteria::ReadPreference(
                    ReadPreference::Secondary { options: None },
                ))
                .read_concern(ReadConcern::local())
                .write_concern(WriteConcern::builder().w(Acknowledgment::Nodes(0)).build())
                .build(),
        );
        let store = MongoStore::new(loose).with_namespace(Namespace::new("ns").unwrap());
        let effective = [
            (
                store.sessions.name(),
                store.sessions.selection_criteria(),
                store.sessions.read_concern(),
                store.sessions.write_concern(),
            ),
            (
                store.revocations.name(),
                store.revocations.selection_criteria(),
                store.revocations.read_concern(),
                store.revocations.write_concern(),
            ),
            (
                store.records.name(),
                store.records.selection_criteria(),
                store.records.read_concern(),
                store.records.write_concern(),
            ),
            (
                store.peers.name(),
                store.peers.selection_criteria(),
                store.peers.read_concern(),
                store.peers.write_concern(),
            ),
            (
                store.db.name(),
                store.db.selection_criteria(),
                store.db.read_concern(),
                store.db.write_concern(),
            ),
        ];
        for (name, selection, read, write) in effective {
            assert!(
                matches!(
                    selection,
                    Some(SelectionCriteria::ReadPreference(ReadPreference::Primary))
                ),
                "{name}: {selection:?}"
            );
            assert_eq!(
                read.map(|c| &c.level),
                Some(&ReadConcernLevel::Majority),
                "{name}"
            );
            let write = write.unwrap_or_else(|| panic!("{name}: no write concern"));
            assert_eq!(
                (&write.w, write.journal),
                (&Some(Acknowledgment::Majority), Some(true)),
                "{name}"
            );
        }
    }
}
