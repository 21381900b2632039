//! MongoDB backend for the OIDC token broker's [`BrokerStore`], on the
//! official [`mongodb`] driver.
//!
//! Build a [`MongoStore`] from a [`mongodb::Database`] you already have
//! ([`MongoStore::new`]) or from a URL naming the database
//! ([`MongoStore::connect`]), pick a collection prefix with
//! [`MongoStore::with_namespace`], and call [`BrokerStore::setup`] once to
//! create the indexes.
//!
//! Each namespace `ns` uses four collections:
//!
//! | collection | `_id` | fields |
//! |---|---|---|
//! | `ns_sessions` | jti | `sub`, `expires_at` (BSON date, TTL index), `expires_at_secs`, `auth_time`, `sealed` (binary); index on `sub` |
//! | `ns_revocations` | sub | `revoked_at`, `keep_until`, `keep_until_date` (BSON date, TTL index) |
//! | `ns_records` | name | `value` (binary) |
//! | `ns_peers` | issuer | `jwks` (the JSON text, as a string), `fetched_at` |
//!
//! Queries are typed documents built with [`mongodb::bson::doc!`]: a `jti`
//! such as `{"$ne": ""}` or `$where` is a string value, never an operator.
//! The TTL monitor removes expired documents about once a minute; every read
//! also filters on expiry, so an expired session is never returned.
//! No operation uses a multi-document transaction.
//!
//! Before the process exits, call [`MongoStore::shutdown`] (or shut your own
//! client down): the driver's background tasks otherwise meet a runtime
//! that is going away, and it can panic on stderr.

#![warn(missing_docs)]

mod error;

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use broker_core::clock::{Clock, system_clock};
use broker_core::validate;
use broker_core::{
    BrokerStore, Corruption, Namespace, PeerJwks, Result, Revocation, RevocationPage, SessionPage,
    SessionRecord, StoreError, StoreStats, UnixTime,
};
use futures::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

pub use error::DriverError;
pub use mongodb;

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
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`MongoStore::shutdown`] waits for the driver's work in flight
/// before it closes the client at once.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How many expired sessions [`BrokerStore::purge_expired`] removes per batch.
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
    revocations: Collection<RevocationDoc>,
    records: Collection<RecordDoc>,
    peers: Collection<PeerDoc>,
    op_timeout: Option<Duration>,
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

/// A session as stored in `<ns>_sessions`.
#[derive(Debug, Serialize, Deserialize)]
struct SessionDoc {
    #[serde(rename = "_id")]
    jti: String,
    sub: String,
    /// The expiry as a BSON date (milliseconds), for the TTL index and filters.
    expires_at: DateTime,
    /// The exact expiry in Unix seconds, as bound into the sealed blob.
    expires_at_secs: i64,
    auth_time: i64,
    sealed: Binary,
}

/// A revocation marker in `<ns>_revocations`.
#[derive(Debug, Serialize, Deserialize)]
struct RevocationDoc {
    #[serde(rename = "_id")]
    sub: String,
    revoked_at: i64,
    keep_until: i64,
    keep_until_date: DateTime,
}

/// A create-once record in `<ns>_records`.
#[derive(Debug, Serialize, Deserialize)]
struct RecordDoc {
    #[serde(rename = "_id")]
    name: String,
    value: Binary,
}

/// A peer JWKS in `<ns>_peers`; the document is kept as JSON text so key
/// order and number formatting survive.
#[derive(Debug, Serialize, Deserialize)]
struct PeerDoc {
    #[serde(rename = "_id")]
    issuer: String,
    jwks: String,
    fetched_at: i64,
}

/// The BSON date of a Unix time in seconds (validated inputs never overflow).
fn date(secs: UnixTime) -> DateTime {
    DateTime::from_millis(secs.saturating_mul(1000))
}

fn binary(bytes: &[u8]) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    }
}

impl SessionDoc {
    fn from_record(s: &SessionRecord) -> Self {
        Self {
            jti: s.jti.clone(),
            sub: s.sub.clone(),
            expires_at: date(s.expires_at),
            expires_at_secs: s.expires_at,
            auth_time: s.auth_time,
            sealed: binary(&s.sealed),
        }
    }

    fn into_record(self, op: &'static str) -> Result<SessionRecord> {
        if self.expires_at != date(self.expires_at_secs) {
            return Err(StoreError::corrupt(
                op,
                Corruption::Malformed("session expiry fields disagree"),
            ));
        }
        Ok(SessionRecord {
            jti: self.jti,
            sub: self.sub,
            expires_at: self.expires_at_secs,
            auth_time: self.auth_time,
            sealed: self.sealed.bytes,
        })
    }
}

impl RevocationDoc {
    fn into_revocation(self) -> Revocation {
        Revocation {
            sub: self.sub,
            revoked_at: self.revoked_at,
            keep_until: self.keep_until,
        }
    }
}

impl MongoStore {
    /// A store on `db` (a database of a [`mongodb::Client`] you already
    /// have), under the default namespace `broker`.
    ///
    /// The store uses the client's own settings: its server selection
    /// timeout (30 s by default in the driver) decides how fast an outage
    /// is reported, bounded by the store's operation timeout
    /// ([`DEFAULT_OPERATION_TIMEOUT`]). The client is never shut down.
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
            Some(DEFAULT_OPERATION_TIMEOUT),
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

    /// Bound every operation to `timeout` (`None`: rely on the driver's own
    /// timeouts only). An operation that runs out of time fails as
    /// [`StoreError::Unavailable`]; a write that timed out may or may not
    /// have been applied. Default: [`DEFAULT_OPERATION_TIMEOUT`].
    pub fn with_operation_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// The database this store uses.
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
    /// revocations, records, peers.
    pub fn collection_names(&self) -> [String; 4] {
        collection_names(&self.namespace)
    }

    fn build(
        db: Database,
        namespace: Namespace,
        op_timeout: Option<Duration>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let [sessions, revocations, records, peers] = collection_names(&namespace);
        Self {
            sessions: db.collection(&sessions),
            revocations: db.collection(&revocations),
            records: db.collection(&records),
            peers: db.collection(&peers),
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
        op: &'static str,
        fut: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>> {
        match self.op_timeout {
            Some(limit) => tokio::time::timeout(limit, fut.into_future())
                .await
                .map_err(|_| error::timed_out(op, limit)),
            None => Ok(fut.await),
        }
    }

    /// The live session of `jti` with the live revocation marker of its
    /// subject, if any: one round trip (`$lookup` on the markers' `_id`).
    async fn find_live(
        &self,
        op: &'static str,
        jti: &str,
        now: i64,
    ) -> Result<Option<(SessionRecord, Option<Revocation>)>> {
        let pipeline = [
            doc! { "$match": live_filter(jti, now) },
            doc! { "$limit": 1 },
            doc! { "$lookup": {
                "from": self.revocations.name(),
                "localField": "sub",
                "foreignField": "_id",
                "as": "revocations",
            } },
        ];
        let found = self
            .run(op, async {
                let mut cursor = self.sessions.aggregate(pipeline).await?;
                cursor.try_next().await
            })
            .await?;
        let Some(mut found) = found else {
            return Ok(None);
        };
        let malformed = || StoreError::corrupt(op, Corruption::Malformed("stored document"));
        let markers = match found.remove("revocations") {
            Some(Bson::Array(markers)) => markers,
            _ => return Err(malformed()),
        };
        let mut revocation = None;
        for marker in markers {
            let Bson::Document(marker) = marker else {
                return Err(malformed());
            };
            let marker: RevocationDoc =
                mongodb::bson::from_document(marker).map_err(|_| malformed())?;
            if marker.keep_until > now {
                revocation = Some(marker.into_revocation());
            }
        }
        let session: SessionDoc = mongodb::bson::from_document(found).map_err(|_| malformed())?;
        Ok(Some((session.into_record(op)?, revocation)))
    }
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

/// Filter: a session of `jti` that has not expired at `now`.
fn live_filter(jti: &str, now: i64) -> Document {
    doc! { "_id": jti, "expires_at": { "$gt": date(now) } }
}

#[async_trait]
impl BrokerStore for MongoStore {
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
        const OP: &str = "setup";
        let ttl = |name: &str, field: &str| {
            IndexModel::builder()
                .keys(doc! { field: 1 })
                .options(
                    IndexOptions::builder()
                        .name(name.to_owned())
                        .expire_after(Duration::ZERO)
                        .build(),
                )
                .build()
        };
        let subject = IndexModel::builder()
            .keys(doc! { "sub": 1 })
            .options(IndexOptions::builder().name("sub".to_owned()).build())
            .build();
        self.run(
            OP,
            self.sessions
                .create_indexes([ttl("expires_at_ttl", "expires_at"), subject]),
        )
        .await?;
        self.run(
            OP,
            self.revocations
                .create_index(ttl("keep_until_ttl", "keep_until_date")),
        )
        .await?;
        // Records and peers need no index beyond `_id`; create the
        // collections so raw tools list every collection of the namespace.
        for name in [self.records.name(), self.peers.name()] {
            match self.run_raw(OP, self.db.create_collection(name)).await? {
                Ok(()) => {}
                // NamespaceExists: created earlier or by a concurrent setup.
                Err(e) if error::code(&e) == Some(48) => {}
                Err(e) => return Err(error::map(OP, e)),
            }
        }
        Ok(())
    }

    async fn health(&self) -> Result<()> {
        self.run("health", self.db.run_command(doc! { "ping": 1 }))
            .await
            .map(|_| ())
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        const OP: &str = "create_session";
        validate::session(OP, session)?;
        let now = self.clock.now();
        // One statement: replace the session of this jti only if it has
        // expired, inserting it if there is none. A live session makes the
        // filter miss and the upsert's insert collide on `_id`.
        let filter = doc! { "_id": &session.jti, "expires_at": { "$lte": date(now) } };
        let doc = SessionDoc::from_record(session);
        match self
            .run_raw(OP, self.sessions.replace_one(filter, &doc).upsert(true))
            .await?
        {
            Ok(_) => Ok(()),
            Err(e) if error::is_duplicate_key(&e) => Err(StoreError::Conflict {
                op: OP,
                what: "a session with this jti exists",
            }),
            Err(e) => Err(error::map(OP, e)),
        }
    }

    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        const OP: &str = "save_session";
        validate::session(OP, session)?;
        let doc = SessionDoc::from_record(session);
        self.run(
            OP,
            self.sessions
                .replace_one(doc! { "_id": &session.jti }, &doc)
                .upsert(true),
        )
        .await?;
        Ok(())
    }

    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "get_session";
        validate::jti(OP, jti)?;
        let now = self.clock.now();
        Ok(match self.find_live(OP, jti, now).await? {
            Some((found, revocation))
                if !revocation
                    .as_ref()
                    .is_some_and(|r| r.hides(found.auth_time, now)) =>
            {
                Some(found)
            }
            _ => None,
        })
    }

    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "take_session";
        validate::jti(OP, jti)?;
        let now = self.clock.now();
        // Read first: a session hidden by a revocation is left in place, as
        // the reference store does.
        let Some((found, revocation)) = self.find_live(OP, jti, now).await? else {
            return Ok(None);
        };
        if revocation
            .as_ref()
            .is_some_and(|r| r.hides(found.auth_time, now))
        {
            return Ok(None);
        }
        // Atomic: of concurrent takers only one gets the document. The
        // filter repeats what was checked, so a session replaced meanwhile
        // by one the revocation hides is not taken.
        let mut filter = live_filter(jti, now);
        filter.insert("sub", &found.sub);
        if let Some(r) = revocation {
            filter.insert("auth_time", doc! { "$gt": r.revoked_at });
        }
        match self
            .run(OP, self.sessions.find_one_and_delete(filter))
            .await?
        {
            Some(doc) => doc.into_record(OP).map(Some),
            None => Ok(None),
        }
    }

    async fn delete_session(&self, jti: &str) -> Result<bool> {
        const OP: &str = "delete_session";
        validate::jti(OP, jti)?;
        let res = self
            .run(OP, self.sessions.delete_one(doc! { "_id": jti }))
            .await?;
        Ok(res.deleted_count > 0)
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
        let res = self
            .run(
                OP,
                self.sessions.update_one(
                    doc! { "_id": jti, "sealed": binary(expected) },
                    doc! { "$set": { "sealed": binary(sealed) } },
                ),
            )
            .await?;
        Ok(res.matched_count > 0)
    }

    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64> {
        const OP: &str = "revoke_subject";
        validate::revocation(OP, revocation)?;
        // The marker first, so a session saved after this point with an
        // older auth_time is hidden even before the deletion runs.
        self.run(
            OP,
            self.revocations
                .update_one(
                    doc! { "_id": &revocation.sub },
                    doc! { "$max": {
                        "revoked_at": revocation.revoked_at,
                        "keep_until": revocation.keep_until,
                        "keep_until_date": date(revocation.keep_until),
                    } },
                )
                .upsert(true),
        )
        .await?;
        let res = self
            .run(
                OP,
                self.sessions.delete_many(doc! { "sub": &revocation.sub }),
            )
            .await?;
        Ok(res.deleted_count)
    }

    async fn purge_expired(&self) -> Result<u64> {
        const OP: &str = "purge_expired";
        let now = date(self.clock.now());
        let expired = doc! { "expires_at": { "$lte": now } };
        let ids = self.sessions.clone_with_type::<Document>();
        let mut removed = 0;
        loop {
            let cursor = self
                .run(
                    OP,
                    ids.find(expired.clone())
                        .projection(doc! { "_id": 1 })
                        .limit(PURGE_BATCH),
                )
                .await?;
            let batch: Vec<Bson> = self
                .run(OP, cursor.try_collect::<Vec<Document>>())
                .await?
                .into_iter()
                .filter_map(|d| d.get("_id").cloned())
                .collect();
            if batch.is_empty() {
                break;
            }
            let full = batch.len() as i64 == PURGE_BATCH;
            let res = self
                .run(
                    OP,
                    self.sessions.delete_many(
                        doc! { "_id": { "$in": batch }, "expires_at": { "$lte": now } },
                    ),
                )
                .await?;
            removed += res.deleted_count;
            if !full {
                break;
            }
        }
        self.run(
            OP,
            self.revocations
                .delete_many(doc! { "keep_until": { "$lte": self.clock.now() } }),
        )
        .await?;
        Ok(removed)
    }

    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        const OP: &str = "scan_sessions";
        validate::page_limit(OP, limit)?;
        let now = self.clock.now();
        let mut filter = doc! { "expires_at": { "$gt": date(now) } };
        if let Some(after) = cursor {
            filter.insert("_id", doc! { "$gt": after });
        }
        // One more than asked, to know whether another page follows.
        let found = self
            .run(
                OP,
                self.sessions
                    .find(filter)
                    .sort(doc! { "_id": 1 })
                    .limit(limit as i64 + 1),
            )
            .await?;
        let mut docs: Vec<SessionDoc> = self.run(OP, found.try_collect()).await?;
        let more = docs.len() > limit;
        docs.truncate(limit);
        let next = if more {
            docs.last().map(|d| d.jti.clone())
        } else {
            None
        };
        let mut subs: Vec<&str> = docs.iter().map(|d| d.sub.as_str()).collect();
        subs.sort_unstable();
        subs.dedup();
        let revs = self
            .run(
                OP,
                self.revocations
                    .find(doc! { "_id": { "$in": &subs }, "keep_until": { "$gt": now } }),
            )
            .await?;
        let revs: Vec<RevocationDoc> = self.run(OP, revs.try_collect()).await?;
        let revs: std::collections::HashMap<String, Revocation> = revs
            .into_iter()
            .map(|r| (r.sub.clone(), r.into_revocation()))
            .collect();
        let mut sessions = Vec::with_capacity(docs.len());
        for doc in docs {
            let record = doc.into_record(OP)?;
            let hidden = revs
                .get(&record.sub)
                .is_some_and(|r| r.hides(record.auth_time, now));
            if !hidden {
                sessions.push(record);
            }
        }
        Ok(SessionPage { sessions, next })
    }

    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        const OP: &str = "scan_revocations";
        validate::page_limit(OP, limit)?;
        let mut filter = doc! { "keep_until": { "$gt": self.clock.now() } };
        if let Some(after) = cursor {
            validate::sub(OP, after)?;
            filter.insert("_id", doc! { "$gt": after });
        }
        let found = self
            .run(
                OP,
                self.revocations
                    .find(filter)
                    .sort(doc! { "_id": 1 })
                    .limit(limit as i64 + 1),
            )
            .await?;
        let docs: Vec<RevocationDoc> = self.run(OP, found.try_collect()).await?;
        let mut revocations: Vec<Revocation> = docs
            .into_iter()
            .map(RevocationDoc::into_revocation)
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
        let upsert = self
            .records
            .find_one_and_update(
                doc! { "_id": name },
                doc! { "$setOnInsert": { "value": binary(value) } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After);
        let stored = match self.run_raw(OP, upsert).await? {
            Ok(Some(doc)) => Some(doc),
            // Two upserts raced to insert and the other one won (MongoDB
            // reports duplicate key), or the server answered a racing upsert
            // with no document (SecantusDB does; see the README): read the
            // winner's value.
            Ok(None) => {
                self.run(OP, self.records.find_one(doc! { "_id": name }))
                    .await?
            }
            Err(e) if error::is_duplicate_key(&e) => {
                self.run(OP, self.records.find_one(doc! { "_id": name }))
                    .await?
            }
            Err(e) => return Err(error::map(OP, e)),
        };
        match stored {
            Some(doc) => Ok(doc.value.bytes),
            None => Err(StoreError::corrupt(
                OP,
                Corruption::Malformed("record vanished after its upsert"),
            )),
        }
    }

    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        const OP: &str = "get_record";
        validate::record_name(OP, name)?;
        let found = self
            .run(OP, self.records.find_one(doc! { "_id": name }))
            .await?;
        Ok(found.map(|d| d.value.bytes))
    }

    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        const OP: &str = "replace_record";
        validate::record_name(OP, name)?;
        validate::sealed(OP, value)?;
        let res = self
            .run(
                OP,
                self.records.update_one(
                    doc! { "_id": name, "value": binary(expected) },
                    doc! { "$set": { "value": binary(value) } },
                ),
            )
            .await?;
        Ok(res.matched_count > 0)
    }

    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        const OP: &str = "list_records";
        let cursor = self
            .run(OP, self.records.find(doc! {}).sort(doc! { "_id": 1 }))
            .await?;
        let docs: Vec<RecordDoc> = self.run(OP, cursor.try_collect()).await?;
        Ok(docs.into_iter().map(|d| (d.name, d.value.bytes)).collect())
    }

    async fn save_peer(&self, peer: &PeerJwks) -> Result<()> {
        const OP: &str = "save_peer";
        validate::peer(OP, peer)?;
        let doc = PeerDoc {
            issuer: peer.issuer.clone(),
            jwks: peer.jwks.clone(),
            fetched_at: peer.fetched_at,
        };
        self.run(
            OP,
            self.peers
                .replace_one(doc! { "_id": &peer.issuer }, &doc)
                .upsert(true),
        )
        .await?;
        Ok(())
    }

    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        const OP: &str = "load_peers";
        let cursor = self
            .run(OP, self.peers.find(doc! {}).sort(doc! { "_id": 1 }))
            .await?;
        let docs: Vec<PeerDoc> = self.run(OP, cursor.try_collect()).await?;
        Ok(docs
            .into_iter()
            .map(|d| PeerJwks {
                issuer: d.issuer,
                jwks: d.jwks,
                fetched_at: d.fetched_at,
            })
            .collect())
    }

    async fn delete_peer(&self, issuer: &str) -> Result<bool> {
        const OP: &str = "delete_peer";
        validate::issuer(OP, issuer)?;
        let res = self
            .run(OP, self.peers.delete_one(doc! { "_id": issuer }))
            .await?;
        Ok(res.deleted_count > 0)
    }

    async fn drop_namespace(&self) -> Result<()> {
        const OP: &str = "drop_namespace";
        self.run(OP, self.sessions.drop()).await?;
        self.run(OP, self.revocations.drop()).await?;
        self.run(OP, self.records.drop()).await?;
        self.run(OP, self.peers.drop()).await
    }

    async fn stats(&self) -> Result<StoreStats> {
        const OP: &str = "stats";
        let now = date(self.clock.now());
        let live = doc! { "expires_at": { "$gt": now } };
        let live_sessions = self
            .run(OP, self.sessions.count_documents(live.clone()))
            .await?;
        let expired_sessions = self
            .run(
                OP,
                self.sessions
                    .count_documents(doc! { "expires_at": { "$lte": now } }),
            )
            .await?;
        let pipeline = [
            doc! { "$match": live },
            doc! { "$group": { "_id": "$sub" } },
            doc! { "$count": "n" },
        ];
        let cursor = self.run(OP, self.sessions.aggregate(pipeline)).await?;
        let counted: Vec<Document> = self.run(OP, cursor.try_collect()).await?;
        let subjects = match counted.first().map(|d| d.get("n")) {
            None => 0,
            Some(Some(Bson::Int32(n))) => u64::try_from(*n).unwrap_or(0),
            Some(Some(Bson::Int64(n))) => u64::try_from(*n).unwrap_or(0),
            Some(Some(Bson::Double(n))) if *n >= 0.0 => *n as u64,
            Some(_) => {
                return Err(StoreError::corrupt(
                    OP,
                    Corruption::Malformed("subject count"),
                ));
            }
        };
        let peers = self.run(OP, self.peers.count_documents(doc! {})).await?;
        let records = self.run(OP, self.records.count_documents(doc! {})).await?;
        let revocations = self
            .run(OP, self.revocations.count_documents(doc! {}))
            .await?;
        let mut stats = StoreStats::default();
        stats.live_sessions = live_sessions;
        stats.expired_sessions = expired_sessions;
        stats.subjects = Some(subjects);
        stats.peers = peers;
        stats.records = records;
        stats.revocations = revocations;
        Ok(stats)
    }
}
