#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod keys;
mod reconnect;
mod scripts;

pub use reconnect::{REBUILD_INTERVAL, ReconnectingCluster};

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use broker_core::clock::{Clock, system_clock};
use broker_core::{
    BrokerStore, Corruption, Namespace, PeerJwks, Result, Revocation, RevocationPage, SessionPage,
    SessionRecord, StoreError, StoreStats, UnixTime, codec, validate,
};
use futures::{StreamExt, TryStreamExt, stream};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, FromRedisValue, RedisError, ServerErrorKind, Value};

pub use redis;

use crate::keys::{BUCKETS, Keys, bucket_of, hex, unhex};

/// How long [`RedisStore::connect`] and [`RedisStore::connect_cluster`]
/// wait for a TCP connection to a node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`RedisStore::connect`] and [`RedisStore::connect_cluster`]
/// wait for one reply before the operation fails with
/// [`StoreError::Unavailable`].
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Storage format written by `setup` (bumped on incompatible layout changes).
const FORMAT: &str = "store-redis/1";
/// Index entries handled per purge script call.
const PURGE_BATCH: usize = 256;
/// Concurrent per-key commands (revoke, scan's marker look-ups).
const FAN_OUT: usize = 32;

/// What the store knows about the server(s) behind its connection, which
/// decides how many round trips a session operation takes.
///
/// | operation | [`Topology::Cluster`] (cluster-safe) | [`Topology::SingleNode`] |
/// |---|---|---|
/// | `get_session` | 2 (session, then its subject's marker) | 1 script |
/// | `save_session`, `create_session` | 2 (subject index, then session) | 1 script |
/// | `take_session` | 2 (take, then index removal + marker) | 1 script |
/// | `delete_session` | 2 (delete, then index removal) | 1 script |
///
/// Both give the same results; the single-node scripts reach the session's
/// and its subject's keys in one script, which Redis Cluster refuses (they
/// live in different hash slots) and which a proxy sharding keys over
/// several servers would run against the wrong server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// Redis Cluster, or not known: every script stays within one hash
    /// slot. The default of [`RedisStore::new`] and
    /// [`RedisStore::connect_cluster`].
    Cluster,
    /// One Redis server (standalone, or a primary with replicas), not a
    /// cluster and not a sharding proxy: one script per session operation.
    /// [`RedisStore::connect`] picks it when the server reports
    /// `cluster_enabled:0` and lets a script read a key it did not declare;
    /// assert it on your own connection with [`RedisStore::with_topology`].
    SingleNode,
}

/// A [`BrokerStore`] on Redis or Redis Cluster, generic over the redis
/// crate's async connections (`C` = [`ConnectionManager`],
/// [`MultiplexedConnection`](redis::aio::MultiplexedConnection),
/// [`ClusterConnection`](redis::cluster_async::ClusterConnection),
/// [`ReconnectingCluster`], …).
///
/// Cloning the store clones the connection handle (cheap, shared) and its
/// [`Topology`]. The store never closes a connection it was given.
#[derive(Clone)]
pub struct RedisStore<C = ConnectionManager> {
    conn: C,
    namespace: Namespace,
    keys: Keys,
    /// [`Topology::SingleNode`]; shared by clones so that `setup` turning
    /// a wrong assertion off holds for every store on the connection.
    single: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
}

impl<C> fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .field("topology", &self.topology())
            .finish_non_exhaustive()
    }
}

impl<C> RedisStore<C> {
    /// The topology the store runs its session operations for.
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
    /// that spreads keys over several servers): its scripts reach keys
    /// they compute themselves. On Redis Cluster they fail (the server
    /// refuses keys of another slot), and [`BrokerStore::setup`] checks
    /// `INFO` and a test script and falls back to [`Topology::Cluster`]
    /// when the server reports cluster mode or refuses the script; behind
    /// a sharding proxy they would miss revocation markers, which no check
    /// can see.
    pub fn with_topology(mut self, topology: Topology) -> Self {
        self.single = Arc::new(AtomicBool::new(topology == Topology::SingleNode));
        self
    }

    fn single(&self) -> bool {
        self.single.load(Ordering::Relaxed)
    }
}

impl RedisStore<ConnectionManager> {
    /// Connect to a single Redis server (`redis://[user:password@]host:port[/db]`,
    /// or `rediss://` where the redis crate was built with TLS) through a
    /// [`ConnectionManager`] that reconnects by itself, with
    /// [`CONNECT_TIMEOUT`] and [`RESPONSE_TIMEOUT`].
    ///
    /// Asks the server `INFO` once: when it reports `cluster_enabled:0`
    /// and a test script may read a key it did not declare, the store runs
    /// each session operation as one script ([`Topology::SingleNode`]);
    /// otherwise (cluster mode, `INFO` refused, Dragonfly, Kvrocks) it stays
    /// cluster-safe. Do not point it at a proxy that shards keys over
    /// several servers.
    ///
    /// ```no_run
    /// # async fn demo() -> broker_core::Result<()> {
    /// use broker_core::{BrokerStore, Namespace};
    /// use store_redis::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_namespace(Namespace::new("my_app")?);
    /// store.setup().await?;
    ///
    /// // Or reuse the connection the application already has:
    /// let client = store_redis::redis::Client::open("redis://127.0.0.1:6379")
    ///     .map_err(|e| broker_core::StoreError::backend("connect", e))?;
    /// let manager = client
    ///     .get_connection_manager()
    ///     .await
    ///     .map_err(|e| broker_core::StoreError::unavailable("connect", e))?;
    /// let store = RedisStore::new(manager.clone());
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|_| StoreError::invalid("connect", "not a valid Redis URL"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| map_err("connect", e))?;
        let store = Self::new(conn);
        let topology = store.probe("connect").await?.unwrap_or(Topology::Cluster);
        Ok(store.with_topology(topology))
    }
}

impl RedisStore<ReconnectingCluster> {
    /// Connect to a Redis Cluster through some of its nodes' URLs (the
    /// client discovers the rest), with [`CONNECT_TIMEOUT`] and
    /// [`RESPONSE_TIMEOUT`] and few retries, so an outage fails in seconds;
    /// the connection rebuilds itself after the whole cluster was lost
    /// ([`ReconnectingCluster`]).
    ///
    /// ```no_run
    /// # async fn demo() -> broker_core::Result<()> {
    /// use store_redis::RedisStore;
    /// let store = RedisStore::connect_cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster<I, S>(urls: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        if urls.is_empty() {
            return Err(StoreError::invalid("connect", "no cluster node URL given"));
        }
        let client = redis::cluster::ClusterClient::builder(urls)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .overall_response_timeout(Some(RESPONSE_TIMEOUT * 2))
            .retries(3)
            .min_retry_wait(50)
            .max_retry_wait(500)
            .build()
            .map_err(|_| StoreError::invalid("connect", "not a valid list of Redis URLs"))?;
        let conn = ReconnectingCluster::connect(client)
            .await
            .map_err(|e| map_err("connect", e))?;
        Ok(Self::new(conn))
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store on a connection the application already has, in the default
    /// namespace. Configure timeouts on that connection (the store adds
    /// none); it is never closed by the store.
    ///
    /// The store stays cluster-safe ([`Topology::Cluster`]: up to two round
    /// trips per session operation) unless told the connection reaches one
    /// server with [`with_topology`](Self::with_topology).
    pub fn new(conn: C) -> Self {
        let namespace = Namespace::default();
        Self {
            conn,
            keys: Keys::new(namespace.as_str()),
            namespace,
            single: Arc::new(AtomicBool::new(false)),
            clock: system_clock(),
        }
    }

    /// Decide expiry and revocation by `clock` (default: the system clock of
    /// this process; times are passed to the scripts).
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
    async fn cmd<T: FromRedisValue>(&self, op: &'static str, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(|e| map_err(op, e))
    }

    /// Run a script.
    async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| map_err(op, e))
    }

    /// Which [`Topology`] the server allows: `Some(SingleNode)` when `INFO`
    /// reports `cluster_enabled:0`, names no server known to run scripts
    /// unlike Redis (see [`topology_of`]), and a script may read a key it
    /// did not declare; `Some(Cluster)` otherwise; `None` when the server
    /// refuses `INFO` or does not say. Connection failures are errors.
    async fn probe(&self, op: &'static str) -> Result<Option<Topology>> {
        let mut conn = self.conn.clone();
        let reply = redis::cmd("INFO").query_async::<Value>(&mut conn).await;
        let topology = match reply {
            Ok(v) => topology_of(&v),
            Err(e) => match map_err(op, e) {
                e @ StoreError::Unavailable { .. } => return Err(e),
                _ => None,
            },
        };
        if topology != Some(Topology::SingleNode) {
            return Ok(topology);
        }
        // The one-script operations read the subject's keys without
        // declaring them: check that this server lets a script do that.
        let probe = scripts::READ_UNDECLARED.arg(format!("{}probe}}", self.keys.marker_prefix()));
        match probe.invoke_async::<Value>(&mut conn).await {
            Ok(_) => Ok(Some(Topology::SingleNode)),
            Err(e) => match map_err(op, e) {
                e @ StoreError::Unavailable { .. } => Err(e),
                _ => Ok(Some(Topology::Cluster)),
            },
        }
    }

    /// The revocation marker of `sub`, if any.
    async fn marker(&self, op: &'static str, sub: &str) -> Result<Option<Revocation>> {
        let raw: Option<Vec<u8>> = self
            .cmd(op, redis::cmd("GET").arg(self.keys.marker(sub)))
            .await?;
        decode_marker(op, sub, raw)
    }

    /// True if `s` is live at `now`: not expired and not hidden by a
    /// revocation of its subject (one extra GET of the marker).
    async fn visible(&self, op: &'static str, s: &SessionRecord, now: UnixTime) -> Result<bool> {
        if !s.is_live_at(now) {
            return Ok(false);
        }
        let marker = self.marker(op, &s.sub).await?;
        Ok(!hidden_by(marker.as_ref(), s, now))
    }

    /// Drop `member` from `sub`'s index, best effort: a leftover entry is
    /// harmless (revoke checks the subject) and trimmed once it expires.
    async fn forget_in_subject(&self, sub: &str, member: &str) {
        let _: Result<i64> = self
            .cmd(
                "subject_index",
                redis::cmd("ZREM").arg(self.keys.subject(sub)).arg(member),
            )
            .await;
    }

    async fn write_session(
        &self,
        op: &'static str,
        s: &SessionRecord,
        create: bool,
    ) -> Result<bool> {
        validate::session(op, s)?;
        let now = self.clock.now();
        let k = self.keys.session(&s.jti);
        let single = self.single();
        // Both save scripts take the same arguments.
        let mut save = k.on(if single {
            &scripts::SAVE_ONE
        } else {
            &scripts::SAVE
        });
        save.arg(codec::encode_session(s))
            .arg(s.expires_at)
            .arg(now)
            .arg(&k.member)
            .arg(if create { "1" } else { "0" });
        if single {
            // One script; it still writes the subject index first.
            save.key(self.keys.subject(&s.sub));
        } else {
            // The subject index first: a session is never stored unindexed.
            let _: i64 = self
                .run(
                    op,
                    scripts::SUBJECT_ADD
                        .key(self.keys.subject(&s.sub))
                        .arg(now)
                        .arg(s.expires_at)
                        .arg(&k.member),
                )
                .await?;
        }
        let done: i64 = self.run(op, &save).await?;
        Ok(done == 1)
    }
}

/// Map a driver error: connection, timeout and cluster-availability
/// failures (including a `MOVED`/`ASK` redirection the client could not
/// follow within its retries, which happens while a node restarts or the
/// cluster reshards) are [`StoreError::Unavailable`], everything else
/// [`StoreError::Backend`]. The cause is kept redacted ([`DriverError`]).
fn map_err(op: &'static str, e: RedisError) -> StoreError {
    let unavailable = matches!(
        e.kind(),
        ErrorKind::Io
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
            )
    ) || e.is_cluster_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal();
    let cause = DriverError::from(&e);
    if unavailable {
        StoreError::unavailable(op, cause)
    } else {
        StoreError::backend(op, cause)
    }
}

/// A redis error reduced to what cannot hold a value: its category and
/// server error code (a server message can quote a command's arguments,
/// and keys hold hex-encoded ids), or the text of an I/O failure.
#[derive(Debug, Clone)]
pub struct DriverError {
    category: String,
    code: Option<String>,
    io: Option<String>,
}

impl DriverError {
    /// The error's category, e.g. `"I/O error"`, `"cluster down"`.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The server's error code (`"WRONGTYPE"`, `"NOSCRIPT"`, ...), if any.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

impl From<&RedisError> for DriverError {
    fn from(e: &RedisError) -> Self {
        Self {
            category: e.category().to_owned(),
            code: e.code().map(str::to_owned),
            // I/O errors carry OS text only ("Connection refused", "timed out").
            io: matches!(e.kind(), ErrorKind::Io).then(|| e.to_string()),
        }
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis: {}", self.category)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        if let Some(io) = &self.io {
            write!(f, ": {io}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DriverError {}

/// Decode a revocation marker read for `sub`.
fn decode_marker(op: &'static str, sub: &str, raw: Option<Vec<u8>>) -> Result<Option<Revocation>> {
    raw.map(|b| codec::decode_revocation(op, sub.to_owned(), &b))
        .transpose()
}

/// The session a single-node script returned with its subject's marker,
/// if it is live at `now` and no marker hides it.
fn live_and_visible(
    op: &'static str,
    jti: &str,
    found: Option<(Vec<u8>, Option<Vec<u8>>)>,
    now: UnixTime,
) -> Result<Option<SessionRecord>> {
    let Some((raw, marker)) = found else {
        return Ok(None);
    };
    let s = codec::decode_session(op, jti.to_owned(), &raw)?;
    if !s.is_live_at(now) {
        return Ok(None);
    }
    let marker = decode_marker(op, &s.sub, marker)?;
    Ok((!hidden_by(marker.as_ref(), &s, now)).then_some(s))
}

/// True if `s` is hidden by `marker` at `now`.
fn hidden_by(marker: Option<&Revocation>, s: &SessionRecord, now: UnixTime) -> bool {
    marker.is_some_and(|r| r.hides(s.auth_time, now))
}

/// The text of every node in an `INFO` reply (one node's text, or several
/// nodes' replies from a cluster connection).
fn info_texts(v: &Value) -> Vec<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok().into_iter().collect(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => vec![s.as_str()],
        Value::Array(items) | Value::Set(items) => items.iter().flat_map(info_texts).collect(),
        Value::Map(pairs) => pairs.iter().flat_map(|(_, i)| info_texts(i)).collect(),
        _ => Vec::new(),
    }
}

/// What an `INFO` reply says of the topology: `Cluster` if any node reports
/// `cluster_enabled:1`, or if the server is one known to run scripts unlike
/// Redis (Dragonfly refuses undeclared keys by default, Kvrocks does not
/// lock them); `SingleNode` if the nodes that say report `cluster_enabled:0`;
/// `None` if none says.
fn topology_of(v: &Value) -> Option<Topology> {
    let texts = info_texts(v);
    let has = |want: fn(&str) -> bool| texts.iter().flat_map(|t| t.lines()).any(|l| want(l.trim()));
    if has(|l| l == "cluster_enabled:1")
        || has(|l| l.starts_with("dragonfly_version:") || l.starts_with("kvrocks_version:"))
    {
        Some(Topology::Cluster)
    } else if has(|l| l == "cluster_enabled:0") {
        Some(Topology::SingleNode)
    } else {
        None
    }
}

/// A jti or name read back from Redis.
fn utf8(op: &'static str, bytes: Vec<u8>, what: &'static str) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| StoreError::corrupt(op, Corruption::Malformed(what)))
}

/// Parse a scan cursor: `BB` or `BB:HEXJTI`.
fn parse_cursor(cursor: Option<&str>) -> Result<(u16, Option<String>)> {
    let bad = || StoreError::invalid("scan_sessions", "malformed cursor");
    let Some(c) = cursor else {
        return Ok((0, None));
    };
    let (b, after) = match c.split_once(':') {
        Some((b, a)) => (b, Some(a)),
        None => (c, None),
    };
    let b = match unhex(b).as_deref() {
        Some([b]) if u16::from(*b) < BUCKETS => u16::from(*b),
        _ => return Err(bad()),
    };
    if let Some(a) = after
        && (a.is_empty() || unhex(a).is_none())
    {
        return Err(bad());
    }
    Ok((b, after.map(str::to_owned)))
}

#[async_trait]
impl<C> BrokerStore for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        Arc::new(self.clone().with_namespace(namespace))
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// Nothing to create in Redis; writes the storage format marker (or
    /// checks it) so a store never runs on data of an incompatible layout.
    async fn setup(&self) -> Result<()> {
        let stored: Vec<u8> = self
            .run("setup", scripts::SETUP.key(self.keys.meta()).arg(FORMAT))
            .await?;
        if stored != FORMAT.as_bytes() {
            return Err(StoreError::backend(
                "setup",
                "the namespace holds data of an unknown storage format",
            ));
        }
        // A single-node assertion is checked once: on a server that reports
        // cluster mode, or will not run the one-script operations, the store
        // falls back to the cluster-safe scripts.
        if self.single() && self.probe("setup").await? == Some(Topology::Cluster) {
            tracing::warn!(
                "store-redis: Topology::SingleNode was asserted but the server is a cluster or refuses scripts that read undeclared keys; using the cluster-safe scripts"
            );
            self.single.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn health(&self) -> Result<()> {
        let _: String = self.cmd("health", &redis::cmd("PING")).await?;
        Ok(())
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        if self.write_session("create_session", session, true).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                op: "create_session",
                what: "a session with this jti exists",
            })
        }
    }

    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        self.write_session("save_session", session, false).await?;
        Ok(())
    }

    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "get_session";
        validate::jti(OP, jti)?;
        let now = self.clock.now();
        let k = self.keys.session(jti);
        if self.single() {
            let found: Option<(Vec<u8>, Option<Vec<u8>>)> = self
                .run(
                    OP,
                    scripts::GET_ONE
                        .key(&k.session)
                        .arg(self.keys.marker_prefix()),
                )
                .await?;
            return live_and_visible(OP, jti, found, now);
        }
        let raw: Option<Vec<u8>> = self.cmd(OP, redis::cmd("GET").arg(&k.session)).await?;
        let Some(raw) = raw else { return Ok(None) };
        let s = codec::decode_session(OP, jti.to_owned(), &raw)?;
        Ok(self.visible(OP, &s, now).await?.then_some(s))
    }

    /// Atomic (one script); a session hidden by a revocation marker is
    /// deleted by the take and reported as `None`. On a single node the
    /// same script also drops it from its subject's index and reads the
    /// marker; on a cluster a second script does both on the subject's slot.
    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "take_session";
        validate::jti(OP, jti)?;
        let now = self.clock.now();
        let k = self.keys.session(jti);
        if self.single() {
            let found: Option<(Vec<u8>, Option<Vec<u8>>)> = self
                .run(
                    OP,
                    k.on(&scripts::TAKE_ONE)
                        .arg(now)
                        .arg(&k.member)
                        .arg(self.keys.subject_prefix())
                        .arg(self.keys.marker_prefix()),
                )
                .await?;
            return live_and_visible(OP, jti, found, now);
        }
        let raw: Option<Vec<u8>> = self
            .run(OP, k.on(&scripts::TAKE).arg(now).arg(&k.member))
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        let s = codec::decode_session(OP, jti.to_owned(), &raw)?;
        if !s.is_live_at(now) {
            self.forget_in_subject(&s.sub, &k.member).await;
            return Ok(None);
        }
        // The index and the marker share the subject's slot: one script
        // drops the session from the index and reads the marker.
        let marker: Option<Vec<u8>> = self
            .run(
                OP,
                scripts::FORGET_AND_MARKER
                    .key(self.keys.subject(&s.sub))
                    .key(self.keys.marker(&s.sub))
                    .arg(&k.member),
            )
            .await?;
        let marker = decode_marker(OP, &s.sub, marker)?;
        Ok((!hidden_by(marker.as_ref(), &s, now)).then_some(s))
    }

    async fn delete_session(&self, jti: &str) -> Result<bool> {
        const OP: &str = "delete_session";
        validate::jti(OP, jti)?;
        let k = self.keys.session(jti);
        if self.single() {
            let n: i64 = self
                .run(
                    OP,
                    k.on(&scripts::DELETE_ONE)
                        .arg(&k.member)
                        .arg(self.keys.subject_prefix()),
                )
                .await?;
            return Ok(n > 0);
        }
        let (raw, n): (Option<Vec<u8>>, i64) =
            self.run(OP, k.on(&scripts::DELETE).arg(&k.member)).await?;
        if let Some(s) = raw.and_then(|r| codec::decode_session(OP, jti.to_owned(), &r).ok()) {
            self.forget_in_subject(&s.sub, &k.member).await;
        }
        Ok(n > 0)
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
        let k = self.keys.session(jti);
        let n: i64 = self
            .run(
                OP,
                scripts::REPLACE_BLOB
                    .key(&k.session)
                    .arg(expected)
                    .arg(sealed),
            )
            .await?;
        Ok(n == 1)
    }

    /// The marker is written first (one script on the subject's slot, which
    /// also reads the subject's index); then each indexed session is deleted
    /// by its own script on its own slot if it still belongs to the subject.
    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64> {
        const OP: &str = "revoke_subject";
        validate::revocation(OP, revocation)?;
        let now = self.clock.now();
        let sub = &revocation.sub;
        let index = self.keys.subject(sub);
        let members: Vec<String> = self
            .run(
                OP,
                scripts::REVOKE
                    .key(self.keys.marker(sub))
                    .key(&index)
                    .arg(revocation.revoked_at)
                    .arg(revocation.keep_until)
                    .arg(now),
            )
            .await?;
        let _: i64 = self
            .cmd(
                OP,
                redis::cmd("ZADD")
                    .arg(self.keys.markers())
                    .arg(0)
                    .arg(hex(sub.as_bytes())),
            )
            .await?;
        let mut owner = (sub.len() as u16).to_be_bytes().to_vec();
        owner.extend_from_slice(sub.as_bytes());
        let owner = &owner;
        let deleted: u64 = stream::iter(members.clone())
            .map(|member: String| async move {
                let member = member.as_str();
                let Some(jti) = unhex(member) else {
                    return Ok(0);
                };
                let b = bucket_of(&jti);
                let n: i64 = self
                    .run(
                        OP,
                        scripts::DELETE_IF_SUBJECT
                            .key(self.keys.session_hex(b, member))
                            .key(self.keys.lex(b))
                            .key(self.keys.exp(b))
                            .arg(member)
                            .arg(owner.as_slice()),
                    )
                    .await?;
                Ok::<u64, StoreError>(n.max(0) as u64)
            })
            .buffer_unordered(FAN_OUT)
            .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
            .await?;
        for chunk in members.chunks(512) {
            let _: i64 = self
                .cmd(OP, redis::cmd("ZREM").arg(&index).arg(chunk))
                .await?;
        }
        Ok(deleted)
    }

    /// Expired sessions are already gone from Redis (native expiry);
    /// purge removes their index entries, bucket by bucket in batches of
    /// 256, and counts them. Revocation markers and subject indexes expire
    /// natively.
    async fn purge_expired(&self) -> Result<u64> {
        const OP: &str = "purge_expired";
        let now = self.clock.now();
        let mut total = 0u64;
        for b in 0..BUCKETS {
            let exp = self.keys.exp(b);
            loop {
                let members: Vec<String> = self
                    .cmd(
                        OP,
                        redis::cmd("ZRANGEBYSCORE")
                            .arg(&exp)
                            .arg("-inf")
                            .arg(now)
                            .arg("LIMIT")
                            .arg(0)
                            .arg(PURGE_BATCH),
                    )
                    .await?;
                if members.is_empty() {
                    break;
                }
                let mut inv = scripts::PURGE.key(self.keys.lex(b));
                inv.key(&exp);
                for m in &members {
                    inv.key(self.keys.session_hex(b, m));
                }
                inv.arg(now);
                for m in &members {
                    inv.arg(m);
                }
                let n: i64 = self.run(OP, &inv).await?;
                total += n.max(0) as u64;
                if members.len() < PURGE_BATCH {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Walks the 64 buckets in order and each bucket's jtis in byte order
    /// (`ZRANGEBYLEX` on the bucket's index), so the cursor (`bucket:jti`)
    /// is a stable position: a session present throughout is returned
    /// exactly once. A page examines at most `limit` index entries.
    /// Deletes the sessions, both bucket indexes, records, peers and the
    /// format marker, plus the subject index and revocation marker of every
    /// subject that still has a stored session. Keys Redis cannot list
    /// without `SCAN` across every node (indexes and markers of subjects with
    /// no stored session) expire by themselves: markers at `keep_until`,
    /// indexes with their last session. They hold hex ids and times only.
    async fn drop_namespace(&self) -> Result<()> {
        const OP: &str = "drop_namespace";
        for b in 0..BUCKETS {
            let lex = self.keys.lex(b);
            loop {
                let members: Vec<String> = self
                    .cmd(OP, redis::cmd("ZRANGE").arg(&lex).arg(0).arg(999))
                    .await?;
                if members.is_empty() {
                    break;
                }
                let session_keys: Vec<String> = members
                    .iter()
                    .map(|m| self.keys.session_hex(b, m))
                    .collect();
                let values: Vec<Option<Vec<u8>>> =
                    self.cmd(OP, redis::cmd("MGET").arg(&session_keys)).await?;
                let subjects: BTreeSet<String> = values
                    .iter()
                    .flatten()
                    .filter_map(|v| codec::decode_session(OP, String::new(), v).ok())
                    .map(|s| s.sub)
                    .collect();
                for sub in &subjects {
                    let _: i64 = self
                        .cmd(
                            OP,
                            redis::cmd("DEL")
                                .arg(self.keys.subject(sub))
                                .arg(self.keys.marker(sub)),
                        )
                        .await?;
                }
                let _: i64 = self.cmd(OP, redis::cmd("DEL").arg(&session_keys)).await?;
                let _: i64 = self
                    .cmd(OP, redis::cmd("ZREM").arg(&lex).arg(&members))
                    .await?;
            }
            let _: i64 = self
                .cmd(OP, redis::cmd("DEL").arg(&lex).arg(self.keys.exp(b)))
                .await?;
        }
        loop {
            let members: Vec<String> = self
                .cmd(
                    OP,
                    redis::cmd("ZRANGE")
                        .arg(self.keys.markers())
                        .arg(0)
                        .arg(999),
                )
                .await?;
            if members.is_empty() {
                break;
            }
            for member in &members {
                if let Some(sub) = unhex(member).and_then(|b| String::from_utf8(b).ok()) {
                    let _: i64 = self
                        .cmd(
                            OP,
                            redis::cmd("DEL")
                                .arg(self.keys.subject(&sub))
                                .arg(self.keys.marker(&sub)),
                        )
                        .await?;
                }
            }
            let _: i64 = self
                .cmd(
                    OP,
                    redis::cmd("ZREM").arg(self.keys.markers()).arg(&members),
                )
                .await?;
        }
        for key in [
            self.keys.records(),
            self.keys.peers(),
            self.keys.meta(),
            self.keys.markers(),
        ] {
            let _: i64 = self.cmd(OP, redis::cmd("DEL").arg(key)).await?;
        }
        Ok(())
    }

    /// Walks the marker index (`ns:m`) in subject byte order and reads each
    /// subject's marker; entries whose marker has expired are dropped from
    /// the index on the way.
    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        const OP: &str = "scan_revocations";
        validate::page_limit(OP, limit)?;
        if let Some(c) = cursor {
            validate::sub(OP, c)?;
        }
        let now = self.clock.now();
        let index = self.keys.markers();
        let mut min = cursor.map_or_else(|| "-".to_owned(), |c| format!("({}", hex(c.as_bytes())));
        let mut page = RevocationPage::default();
        loop {
            let members: Vec<String> = self
                .cmd(
                    OP,
                    redis::cmd("ZRANGEBYLEX")
                        .arg(&index)
                        .arg(&min)
                        .arg("+")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit),
                )
                .await?;
            let Some(last) = members.last() else {
                return Ok(page);
            };
            min = format!("({last}");
            for member in &members {
                let Some(sub) = unhex(member).and_then(|b| String::from_utf8(b).ok()) else {
                    return Err(StoreError::corrupt(
                        OP,
                        Corruption::Malformed("revocation index entry"),
                    ));
                };
                let stored: Option<Vec<u8>> = self
                    .cmd(OP, redis::cmd("GET").arg(self.keys.marker(&sub)))
                    .await?;
                let marker = match stored {
                    Some(bytes) => codec::decode_revocation(OP, sub, &bytes)?,
                    None => {
                        let _: i64 = self
                            .cmd(OP, redis::cmd("ZREM").arg(&index).arg(member))
                            .await?;
                        continue;
                    }
                };
                if page.revocations.len() == limit {
                    page.next = page.revocations.last().map(|r| r.sub.clone());
                    return Ok(page);
                }
                if marker.keep_until > now {
                    page.revocations.push(marker);
                }
            }
        }
    }

    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        const OP: &str = "scan_sessions";
        validate::page_limit(OP, limit)?;
        let (mut b, mut after) = parse_cursor(cursor)?;
        let now = self.clock.now();
        let mut found = Vec::new();
        let mut examined = 0usize;
        while b < BUCKETS && examined < limit {
            let want = limit - examined;
            let min = after
                .as_ref()
                .map_or_else(|| "-".to_owned(), |a| format!("({a}"));
            let members: Vec<String> = self
                .cmd(
                    OP,
                    redis::cmd("ZRANGEBYLEX")
                        .arg(self.keys.lex(b))
                        .arg(min)
                        .arg("+")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(want),
                )
                .await?;
            examined += members.len();
            if !members.is_empty() {
                let session_keys: Vec<String> = members
                    .iter()
                    .map(|m| self.keys.session_hex(b, m))
                    .collect();
                let values: Vec<Option<Vec<u8>>> =
                    self.cmd(OP, redis::cmd("MGET").arg(&session_keys)).await?;
                for (member, value) in members.iter().zip(values) {
                    let Some(value) = value else { continue };
                    let jti = unhex(member).ok_or(StoreError::corrupt(
                        OP,
                        Corruption::Malformed("index entry"),
                    ))?;
                    let jti = utf8(OP, jti, "index entry")?;
                    let s = codec::decode_session(OP, jti, &value)?;
                    if s.is_live_at(now) {
                        found.push(s);
                    }
                }
            }
            if members.len() < want {
                b += 1;
                after = None;
            } else {
                after = members.last().cloned();
            }
        }
        // Revocation markers, once per subject of the page.
        let mut subs: Vec<String> = found.iter().map(|s| s.sub.clone()).collect();
        subs.sort_unstable();
        subs.dedup();
        let markers: HashMap<String, Revocation> = stream::iter(subs)
            .map(|sub: String| async move {
                let m = self.marker(OP, &sub).await?;
                Ok::<_, StoreError>((sub, m))
            })
            .buffer_unordered(FAN_OUT)
            .try_filter_map(|(sub, m)| async move { Ok(m.map(|m| (sub, m))) })
            .try_collect()
            .await?;
        let sessions: Vec<SessionRecord> = found
            .iter()
            .filter(|s| {
                !markers
                    .get(&s.sub)
                    .is_some_and(|r| r.hides(s.auth_time, now))
            })
            .cloned()
            .collect();
        let next = (b < BUCKETS).then(|| match &after {
            Some(a) => format!("{b:02x}:{a}"),
            None => format!("{b:02x}"),
        });
        Ok(SessionPage { sessions, next })
    }

    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        const OP: &str = "create_record";
        validate::record_name(OP, name)?;
        validate::sealed(OP, value)?;
        self.run(
            OP,
            scripts::CREATE_RECORD
                .key(self.keys.records())
                .arg(name)
                .arg(value),
        )
        .await
    }

    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        const OP: &str = "get_record";
        validate::record_name(OP, name)?;
        self.cmd(OP, redis::cmd("HGET").arg(self.keys.records()).arg(name))
            .await
    }

    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        const OP: &str = "replace_record";
        validate::record_name(OP, name)?;
        validate::sealed(OP, value)?;
        let n: i64 = self
            .run(
                OP,
                scripts::REPLACE_RECORD
                    .key(self.keys.records())
                    .arg(name)
                    .arg(expected)
                    .arg(value),
            )
            .await?;
        Ok(n == 1)
    }

    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        const OP: &str = "list_records";
        let all: Vec<(Vec<u8>, Vec<u8>)> = self
            .cmd(OP, redis::cmd("HGETALL").arg(self.keys.records()))
            .await?;
        let mut out = all
            .into_iter()
            .map(|(k, v)| Ok((utf8(OP, k, "record name")?, v)))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn save_peer(&self, peer: &PeerJwks) -> Result<()> {
        const OP: &str = "save_peer";
        validate::peer(OP, peer)?;
        let _: i64 = self
            .cmd(
                OP,
                redis::cmd("HSET")
                    .arg(self.keys.peers())
                    .arg(&peer.issuer)
                    .arg(codec::encode_peer(peer)),
            )
            .await?;
        Ok(())
    }

    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        const OP: &str = "load_peers";
        let all: Vec<(Vec<u8>, Vec<u8>)> = self
            .cmd(OP, redis::cmd("HGETALL").arg(self.keys.peers()))
            .await?;
        let mut out = all
            .into_iter()
            .map(|(k, v)| codec::decode_peer(OP, utf8(OP, k, "issuer")?, &v))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        Ok(out)
    }

    async fn delete_peer(&self, issuer: &str) -> Result<bool> {
        const OP: &str = "delete_peer";
        validate::issuer(OP, issuer)?;
        let n: i64 = self
            .cmd(OP, redis::cmd("HDEL").arg(self.keys.peers()).arg(issuer))
            .await?;
        Ok(n > 0)
    }

    /// Session counts come from the buckets' expiry indexes (one round trip
    /// per bucket); `subjects` is not counted (`None`).
    async fn stats(&self) -> Result<StoreStats> {
        const OP: &str = "stats";
        let now = self.clock.now();
        let mut stats = StoreStats::default();
        for b in 0..BUCKETS {
            let exp = self.keys.exp(b);
            let mut pipe = redis::pipe();
            pipe.cmd("ZCOUNT")
                .arg(&exp)
                .arg(format!("({now}"))
                .arg("+inf");
            pipe.cmd("ZCOUNT").arg(&exp).arg("-inf").arg(now);
            let mut conn = self.conn.clone();
            let (live, expired): (u64, u64) = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| map_err(OP, e))?;
            stats.live_sessions += live;
            stats.expired_sessions += expired;
        }
        stats.peers = self
            .cmd(OP, redis::cmd("HLEN").arg(self.keys.peers()))
            .await?;
        stats.records = self
            .cmd(OP, redis::cmd("HLEN").arg(self.keys.records()))
            .await?;
        stats.revocations = self
            .cmd(OP, redis::cmd("ZCARD").arg(self.keys.markers()))
            .await?;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hex;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(parse_cursor(None).unwrap(), (0, None));
        assert_eq!(parse_cursor(Some("3f")).unwrap(), (63, None));
        assert_eq!(
            parse_cursor(Some("0a:6a74")).unwrap(),
            (10, Some("6a74".to_owned()))
        );
        for bad in ["", "40", "zz", "0a:", "0a:xyz", "0a:6a7", "0", "0a:6A74"] {
            assert!(parse_cursor(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn driver_errors_are_redacted_and_classified() {
        let e = RedisError::from((
            ErrorKind::Extension,
            "server said",
            "ERR unknown command, with args beginning with: 'secret-jti'".to_owned(),
        ));
        let mapped = map_err("get_session", e);
        assert!(matches!(
            mapped,
            StoreError::Backend {
                op: "get_session",
                ..
            }
        ));
        let text = format!(
            "{mapped} {mapped:?} {}",
            std::error::Error::source(&mapped)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(!text.contains("secret"), "{text}");
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(map_err("health", io).is_retryable());
        let down = RedisError::from((ErrorKind::Server(ServerErrorKind::ClusterDown), "down"));
        assert!(map_err("health", down).is_retryable());
    }

    #[test]
    fn info_replies_are_read() {
        let node = |on: &str| {
            Value::BulkString(
                format!(
                    "# Server\r\nredis_version:7.0.15\r\n# Cluster\r\ncluster_enabled:{on}\r\n"
                )
                .into_bytes(),
            )
        };
        assert_eq!(topology_of(&node("0")), Some(Topology::SingleNode));
        assert_eq!(topology_of(&node("1")), Some(Topology::Cluster));
        assert_eq!(
            topology_of(&Value::BulkString(b"# Cluster\r\n".to_vec())),
            None
        );
        assert_eq!(topology_of(&Value::Nil), None);
        // Several nodes (a cluster connection): any cluster node wins.
        let nodes = Value::Map(vec![
            (Value::SimpleString("a".into()), node("0")),
            (Value::SimpleString("b".into()), node("1")),
        ]);
        assert_eq!(topology_of(&nodes), Some(Topology::Cluster));
        assert_eq!(
            topology_of(&Value::Array(vec![node("0"), Value::Nil])),
            Some(Topology::SingleNode)
        );
        // Servers that speak the protocol but run scripts differently.
        for other in ["dragonfly_version:df-v1.21.2", "kvrocks_version:2.9.0"] {
            let text = format!(
                "# Server\r\nredis_version:7.2.0\r\n{other}\r\n# Cluster\r\ncluster_enabled:0\r\n"
            );
            assert_eq!(
                topology_of(&Value::BulkString(text.into_bytes())),
                Some(Topology::Cluster),
                "{other}"
            );
        }
    }

    #[test]
    fn keys_hold_hex_only() {
        let k = Keys::new("ns").session("a{b}");
        assert_eq!(k.member, hex(b"a{b}"));
    }
}
