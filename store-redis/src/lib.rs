#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! Storage format `store-redis/3` ([`FORMAT_VERSION`], recorded in
//! `<namespace>:meta` by `setup`): keys start with `<namespace>:`; a `jti`
//! or `sub` appears only hex-encoded, so it can neither pick a hash slot
//! nor collide. A session is a hash (`sub`, `expires_at`, `auth_time`,
//! `sealed`; native expiry `EXAT expires_at`) in one of 64 buckets; its
//! bucket's scan and expiry indexes, tombstones and receipts share its
//! slot. A subject's index of jtis and its revocation marker (a hash) share
//! the subject's slot. Scripts read fields by name, never by byte offset.
//! Every script declares its keys; on a cluster none touches two slots.
//! Details: `src/keys.rs`, `src/format.rs`.
//!
//! `setup` migrates a namespace of format 2 (strings of fixed-offset
//! binary) in place, key by key, then records format 3; it refuses a newer
//! or unknown format with a [`broker_core::FormatError`] and changes
//! nothing. Stop every worker of the older version first (one would write
//! format-2 values again); see `docs/UPGRADING.md`.
//!
//! # Round trips
//!
//! get = one `HMGET` (in a script only on a cluster connection the store
//! did not make, which may read from replicas), take = delete = one
//! script; save/create = one script on one server (`Topology::SingleNode`,
//! which `connect` picks on `cluster_enabled:0`), two on a cluster or
//! unknown (`Topology::Cluster`: the subject's slot, then the session's).
//! Assert `SingleNode` only for one server, never for a sharding proxy.
//! Its save script declares keys of two hash slots (the session's and the
//! subject's): Redis requires a script to declare every key it touches,
//! and refuses keys of several slots only in cluster mode (`CROSSSLOT`); a
//! standalone server has no slots, and `setup` falls back to `Cluster`
//! when `INFO` reports cluster mode. On one server it saves about twice
//! as fast as the cluster-safe path (one round trip instead of two).
//!
//! # Revocation never wears off
//!
//! No store keeps a session a kept marker hides, so reads need no marker. A
//! save checks the marker in the same atomic step that indexes the session
//! under its subject, and refuses a hidden one (returns `Ok`, stores
//! nothing). A revoke merges the marker (later `revoked_at` and
//! `keep_until` win), then for every jti in the subject's index leaves a
//! *tombstone* in that session's slot and deletes the session: a cluster
//! save that indexed itself before the marker existed meets the tombstone.
//! Take, delete and revoke never un-index (entries go once expired for 5
//! min), so a session saved during a revoke is always found by the next
//! one. Markers and tombstones never expire: `purge_expired` forgets them
//! past `keep_until`. A revoke that stopped halfway stays registered as
//! pending; purge finishes it (deleting only what the marker hides) before
//! it may forget the marker.
//!
//! # Time
//!
//! The store's injected `Clock` (`with_clock`, system clock by default)
//! decides: its `now` is passed to every script, for expiry checks on read,
//! marker and tombstone hiding, index trimming, purge. The server's clock
//! only drives native expiry: sessions at `expires_at`, subject indexes 5
//! min after their last entry, receipts. A session is returned while both
//! agree it is live. Skew: a worker whose clock runs ahead sees sessions
//! expire and markers end early (by the skew); one behind, late; a server
//! clock ahead drops sessions early. Keep clocks within seconds (NTP); skew
//! over 5 min can make a revoke miss sessions of another worker's clock.
//!
//! # Replicas
//!
//! Reads never go to a replica: on a cluster every read is a script, which
//! redis-rs sends to the primary even on a cluster handle built with
//! `read_routing_strategy`/`read_from_replicas`; `setup` refuses a server
//! that reports `role:slave` (`SetupError::Replica`). Replication is
//! asynchronous: a failover can lose recent writes (see `WAIT` /
//! `min-replicas-to-write`).
//!
//! # Retries
//!
//! redis-rs re-sends a request only on Redis Cluster (after a response
//! timeout, a lost connection or a redirect), and the first copy may have
//! run. A single server's connections (`ConnectionManager`,
//! `MultiplexedConnection`) never re-send: on an error they reconnect and
//! return it. So under `Topology::Cluster` create, take, delete,
//! compare-and-set (`replace_session_blob`, `replace_record`) and revoke
//! carry a random per-call token and leave a receipt for `RECEIPT_TTL`
//! (60 s); a copy that finds its receipt answers as the first did (a
//! take's receipt is the taken, sealed session). Under
//! `Topology::SingleNode` take, delete and `replace_session_blob` leave
//! none (a take deletes the session, as `GETDEL` would): assert it only on
//! a connection that does not re-send. Saves and record creates are
//! idempotent as they are; a re-sent `delete_peer` may report `false`.
//!
//! # Eviction
//!
//! `setup` reads `maxmemory_policy` from `INFO` (every primary on a
//! cluster) and fails with `SetupError::EvictingPolicy { policy }` for any
//! policy but `noeviction`: `allkeys-*` may evict markers and tombstones,
//! `volatile-*` sessions and subject indexes (they have TTLs), and either
//! lets a revoked session back. `.allow_eviction()` opts out of the check.
//!
//! # Durability
//!
//! Run with `appendonly yes` and `appendfsync always` on persistent disks
//! to lose no acknowledged write in a crash.
//!
//! # Timeouts and errors
//!
//! Every operation is bounded by [`DEFAULT_OPERATION_TIMEOUT`] (10 s;
//! [`RedisStore::with_operation_timeout`]), as on every server store.
//! `connect`/`connect_cluster` use 2 s connect and 3 s response timeouts
//! (cluster: 6 s overall, 3 retries); [`ReconnectingCluster`] rebuilds the
//! cluster connection after all nodes were lost. I/O, timeouts, `LOADING`,
//! `CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`, unfollowable redirects →
//! `Unavailable`; others → `Backend`, redacted to category and code.
//!
//! # Tests
//!
//! `eval "$(scripts/servers/redis.sh start)"` starts a single node (56379)
//! and a 3-master cluster (57001-57003). `cargo test -p store-redis` runs
//! the conformance suite per topology, Redis-specific checks, a private 3+3
//! replica cluster (needs `redis-server`), and rule 18 per topology in its
//! own binary. Without servers the tests skip loudly (and fail under
//! `CI=true`).
#![warn(missing_docs)]

mod connect;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod format;
#[cfg(not(feature = "fuzzing"))]
mod format;
mod keys;
mod migrate;
mod reconnect;
mod records;
mod revocation;
mod scripts;
mod sessions;

pub use error::{DriverError, SetupError};
pub use format::FORMAT_VERSION;
pub use reconnect::{REBUILD_INTERVAL, ReconnectingCluster};

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use broker_core::clock::{Clock, system_clock};
use broker_core::{
    BrokerStore, Namespace, PeerJwks, Result, Revocation, RevocationPage, SessionPage,
    SessionRecord, StoreBackend, StoreStats,
};
use redis::FromRedisValue;
use redis::aio::{ConnectionLike, ConnectionManager};

pub use redis;

use crate::error::map_err;
use crate::keys::{Keys, hex};

/// How long one operation may take before it fails with
/// [`StoreError::Unavailable`](broker_core::StoreError::Unavailable), unless changed with
/// [`RedisStore::with_operation_timeout`] (the same for every store).
pub use broker_core::backend::DEFAULT_OPERATION_TIMEOUT;

/// How long [`RedisStore::connect`] and [`RedisStore::connect_cluster`]
/// wait for a TCP connection to a node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`RedisStore::connect`] and [`RedisStore::connect_cluster`]
/// wait for one reply before the operation fails with
/// [`StoreError::Unavailable`](broker_core::StoreError::Unavailable).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the server keeps the receipt of a create, take, delete,
/// compare-and-set or revoke, so that a copy of the request the client
/// re-sends (redis-rs on Redis Cluster, after a response timeout) answers
/// as the first copy did. A take's receipt holds the taken (sealed)
/// session under a key only that call can name.
pub const RECEIPT_TTL: Duration = Duration::from_secs(60);

/// How long after its expiry a subject index entry is kept (and the index
/// key after its last entry): workers whose clocks disagree by less than
/// this still find every session a revoke must delete.
pub(crate) const SUBJECT_GRACE: i64 = 300;
/// Index entries handled per purge script call.
pub(crate) const PURGE_BATCH: usize = 256;
/// Concurrent per-key scripts (revoke, scan's marker look-ups).
pub(crate) const FAN_OUT: usize = 32;

/// What the store knows about the server(s) behind its connection, which
/// decides how many round trips a save takes.
///
/// | operation | [`Topology::Cluster`] (cluster-safe) | [`Topology::SingleNode`] |
/// |---|---|---|
/// | `get_session` | 1 (`HMGET`; in a script, to the primary, on a connection not made by `connect_cluster`) | 1 (`HMGET`) |
/// | `take_session`, `delete_session` | 1 script | 1 script |
/// | `save_session`, `create_session` | 2 scripts (subject's slot, then session's) | 1 script |
///
/// Both give the same results, and every script declares its keys. The
/// single-node save declares keys of two hash slots in one script, which
/// Redis allows on one server but Redis Cluster refuses, and which a proxy
/// sharding keys over several servers would run against one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// Redis Cluster, or not known: every script stays within one hash
    /// slot. The default of [`RedisStore::new`] and
    /// [`RedisStore::connect_cluster`].
    Cluster,
    /// One Redis server (standalone, or a primary with replicas), not a
    /// cluster and not a sharding proxy: one script per save.
    /// [`RedisStore::connect`] picks it when the server reports
    /// `cluster_enabled:0`; assert it on your own connection with
    /// [`RedisStore::with_topology`].
    SingleNode,
}

/// A [`BrokerStore`] on Redis or Redis Cluster, generic over the redis
/// crate's async connections (`C` = [`ConnectionManager`],
/// [`MultiplexedConnection`](redis::aio::MultiplexedConnection),
/// [`ClusterConnection`](redis::cluster_async::ClusterConnection),
/// [`ReconnectingCluster`], …).
///
/// Cloning the store clones the connection handle (cheap, shared) and its
/// settings. The store never closes a connection it was given.
#[derive(Clone)]
pub struct RedisStore<C = ConnectionManager> {
    conn: C,
    namespace: Namespace,
    keys: Keys,
    /// [`Topology::SingleNode`]; shared by clones so that `setup` turning
    /// a wrong assertion off holds for every store on the connection.
    single: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
    allow_eviction: bool,
    timeout: Duration,
    /// The connection never reads from a replica (made by
    /// [`RedisStore::connect_cluster`]), so a get needs no script to reach
    /// the primary.
    reads_on_primary: bool,
}

impl<C> fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .field("topology", &self.topology())
            .field("allow_eviction", &self.allow_eviction)
            .finish_non_exhaustive()
    }
}

impl<C> RedisStore<C> {
    /// The topology the store runs its saves for.
    pub fn topology(&self) -> Topology {
        if self.single.load(Ordering::Relaxed) {
            Topology::SingleNode
        } else {
            Topology::Cluster
        }
    }

    /// The same store, told which topology its connection reaches.
    ///
    /// Assert [`Topology::SingleNode`] only for a connection to ONE Redis
    /// server (not a Redis Cluster, not a proxy such as twemproxy or Envoy
    /// that spreads keys over several servers). [`BrokerStore::setup`]
    /// checks `INFO` and falls back to [`Topology::Cluster`] when a server
    /// reports cluster mode; a sharding proxy no check can see.
    pub fn with_topology(mut self, topology: Topology) -> Self {
        self.single = Arc::new(AtomicBool::new(topology == Topology::SingleNode));
        self
    }

    /// The same store, allowed to run on servers whose `maxmemory-policy`
    /// may evict keys. By default [`BrokerStore::setup`] refuses them with
    /// [`SetupError::EvictingPolicy`]: Redis would drop keys at random under
    /// memory pressure, and a dropped revocation marker, tombstone or
    /// subject index lets a revoked session back. Opt in only where the
    /// memory limit can never be reached.
    pub fn allow_eviction(mut self) -> Self {
        self.allow_eviction = true;
        self
    }

    fn single(&self) -> bool {
        self.single.load(Ordering::Relaxed)
    }

    /// Whether calls the client may re-send leave receipts: only where
    /// redis-rs re-sends a request, Redis Cluster ([`Topology::Cluster`]).
    /// A single server's connection (`ConnectionManager`,
    /// `MultiplexedConnection`) never re-sends one.
    fn receipts(&self) -> bool {
        !self.single()
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store on a connection the application already has, in the default
    /// namespace. Configure timeouts on that connection (the store adds
    /// none); it is never closed by the store. A cluster connection that
    /// reads from replicas is fine: the store sends every read to the
    /// primary anyway (see the crate docs).
    ///
    /// The store stays cluster-safe ([`Topology::Cluster`]: two round trips
    /// per save) unless told the connection reaches one server with
    /// [`with_topology`](Self::with_topology).
    pub fn new(conn: C) -> Self {
        let namespace = Namespace::default();
        Self {
            conn,
            keys: Keys::new(namespace.as_str()),
            namespace,
            single: Arc::new(AtomicBool::new(false)),
            clock: system_clock(),
            allow_eviction: false,
            timeout: DEFAULT_OPERATION_TIMEOUT,
            reads_on_primary: false,
        }
    }

    /// Bound every operation, from call to answer, to `timeout`. An
    /// operation that runs out of time fails as
    /// [`StoreError::Unavailable`](broker_core::StoreError::Unavailable); a
    /// write that timed out may or may not have been applied (a retried
    /// request answers as if it ran once; see the crate docs). Default:
    /// [`DEFAULT_OPERATION_TIMEOUT`], as for every server store.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Decide expiry, revocation and purge by `clock` (default: the system
    /// clock of this process; times are passed to the scripts).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same store under another namespace (key prefix `<namespace>:`).
    pub fn with_namespace(mut self, namespace: Namespace) -> Self {
        self.keys = Keys::new(namespace.as_str());
        self.namespace = namespace;
        self
    }

    /// The connection this store uses.
    pub fn connection(&self) -> &C {
        &self.conn
    }

    /// Run a command.
    pub(crate) async fn cmd<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(|e| map_err(op, e))
    }

    /// Run a script.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| map_err(op, e))
    }

    /// Run a read command on one key on its primary (through
    /// [`scripts::READ`]): `args` are the command's arguments after the key.
    pub(crate) async fn read<T: FromRedisValue>(
        &self,
        op: &'static str,
        command: &str,
        key: &str,
        args: &[&str],
    ) -> Result<T> {
        let mut inv = scripts::READ.key(key);
        inv.arg(command);
        for a in args {
            inv.arg(*a);
        }
        self.run(op, &inv).await
    }
}

/// A fresh random request token, as hex (unique per call; never leaves the
/// process except inside receipt keys).
pub(crate) fn token() -> String {
    use rand::Rng as _;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// [`RECEIPT_TTL`] in milliseconds.
pub(crate) fn receipt_ms() -> u64 {
    RECEIPT_TTL.as_millis() as u64
}

impl<C> StoreBackend for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn operation_timeout(&self) -> Option<Duration> {
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

    /// Checks the server(s) (`INFO`: no replica, no evicting
    /// `maxmemory-policy` unless allowed, cluster mode for an asserted
    /// [`Topology::SingleNode`]; [`SetupError`]), then records the storage
    /// format ([`FORMAT_VERSION`]) or checks it: format 2 is migrated in
    /// place, a newer one refused with a [`broker_core::FormatError`].
    async fn setup(&self) -> Result<()> {
        self.check_and_mark().await
    }

    async fn health(&self) -> Result<()> {
        let _: String = self.cmd("health", &redis::cmd("PING")).await?;
        Ok(())
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        self.create(session).await
    }

    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        self.save(session).await
    }

    /// One `HMGET` (on a cluster inside a script, which redis-rs routes to
    /// the primary): no revocation check is needed, as no store keeps a
    /// session a kept marker hides.
    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        self.get(jti).await
    }

    /// One script on the session's slot.
    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        self.take(jti).await
    }

    async fn delete_session(&self, jti: &str) -> Result<bool> {
        self.delete(jti).await
    }

    async fn replace_session_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        self.replace_blob(jti, expected, sealed).await
    }

    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64> {
        self.revoke(revocation).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.purge().await
    }

    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        self.scan(cursor, limit).await
    }

    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        self.scan_markers(cursor, limit).await
    }

    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        self.create_record_impl(name, value).await
    }

    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.get_record_impl(name).await
    }

    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        self.replace_record_impl(name, expected, value).await
    }

    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.list_records_impl().await
    }

    async fn save_peer(&self, peer: &PeerJwks) -> Result<()> {
        self.save_peer_impl(peer).await
    }

    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        self.load_peers_impl().await
    }

    async fn delete_peer(&self, issuer: &str) -> Result<bool> {
        self.delete_peer_impl(issuer).await
    }

    /// Session counts come from the buckets' expiry indexes (one round trip
    /// per bucket); `subjects` is not counted (`None`).
    async fn stats(&self) -> Result<StoreStats> {
        self.stats_impl().await
    }

    async fn drop_namespace(&self) -> Result<()> {
        self.drop_impl().await
    }
}
