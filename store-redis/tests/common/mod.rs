//! Shared test plumbing: which servers to use, and raw access to them.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;

use broker_core::{BrokerStore, Namespace, StoreError};
use store_redis::RedisStore;

use store_redis::redis::{self, AsyncCommands};

/// Where the servers under test are.
#[derive(Debug, Clone)]
pub enum Topology {
    /// One server.
    Single(String),
    /// A Redis Cluster: the URL of every master.
    Cluster(Vec<String>),
}

impl Topology {
    /// The single node from `BROKER_TEST_REDIS_URL`, else skip.
    pub async fn single() -> Option<Self> {
        conformance::provision::redis_url()
            .await
            .map(Topology::Single)
    }

    /// The cluster from `BROKER_TEST_REDIS_CLUSTER_URLS`, else skip.
    pub async fn cluster() -> Option<Self> {
        conformance::provision::redis_cluster_urls()
            .await
            .map(|urls| {
                Topology::Cluster(
                    urls.split(',')
                        .map(|u| u.trim().to_owned())
                        .filter(|u| !u.is_empty())
                        .collect(),
                )
            })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Topology::Single(_) => "redis",
            Topology::Cluster(_) => "redis-cluster",
        }
    }

    /// A store built from a URL (the quick path).
    pub async fn open(&self, ns: &Namespace) -> Result<Arc<dyn BrokerStore>, StoreError> {
        Ok(match self {
            Topology::Single(url) => {
                Arc::new(RedisStore::connect(url).await?.with_namespace(ns.clone()))
            }
            Topology::Cluster(urls) => Arc::new(
                RedisStore::connect_cluster(urls)
                    .await?
                    .with_namespace(ns.clone()),
            ),
        })
    }

    /// Every node to inspect with raw commands (each master).
    pub fn nodes(&self) -> Vec<String> {
        match self {
            Topology::Single(url) => vec![url.clone()],
            Topology::Cluster(urls) => urls.clone(),
        }
    }

    /// Every key under `ns:` on every node, with SCAN MATCH (deduplicated:
    /// SCAN may return a key twice).
    pub async fn keys(&self, ns: &Namespace) -> Result<Vec<(String, Vec<u8>)>, redis::RedisError> {
        let mut out = Vec::new();
        for node in self.nodes() {
            let mut conn = redis::Client::open(node.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            let mut seen = BTreeSet::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{ns}:*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await?;
                seen.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            out.extend(seen.into_iter().map(|k| (node.clone(), k)));
        }
        Ok(out)
    }

    /// Every key and every value under `ns:`, read with plain commands.
    pub async fn raw_contents(&self, ns: &Namespace) -> Result<Vec<Vec<u8>>, redis::RedisError> {
        let mut out = Vec::new();
        for (node, key) in self.keys(ns).await? {
            let mut conn = redis::Client::open(node.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await?;
            match kind.as_str() {
                "string" => {
                    let v: Option<Vec<u8>> = conn.get(&key).await?;
                    out.extend(v);
                }
                "hash" => {
                    let v: Vec<(Vec<u8>, Vec<u8>)> = conn.hgetall(&key).await?;
                    for (f, v) in v {
                        out.push(f);
                        out.push(v);
                    }
                }
                "set" => {
                    let v: Vec<Vec<u8>> = conn.smembers(&key).await?;
                    out.extend(v);
                }
                "zset" => {
                    let v: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query_async(&mut conn)
                        .await?;
                    out.extend(v);
                }
                "none" => continue,
                other => panic!("unexpected key type {other} under the namespace"),
            }
            out.push(key);
        }
        Ok(out)
    }

    /// Delete every key under `ns:` (on the node that holds it).
    pub async fn teardown(&self, ns: &Namespace) -> Result<(), redis::RedisError> {
        for (node, key) in self.keys(ns).await? {
            let mut conn = redis::Client::open(node.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            let _: i64 = conn.del(&key).await?;
        }
        Ok(())
    }
}

fn raw_err(op: &'static str, e: redis::RedisError) -> StoreError {
    StoreError::backend(op, e)
}

/// The conformance factory for one topology.
pub struct Factory {
    pub topology: Topology,
    /// A connection made once, shared by every store of `open_from_handle`.
    pub shared: Shared,
}

pub enum Shared {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Factory {
    pub async fn new(topology: Option<Topology>) -> Option<Self> {
        let topology = topology?;
        let shared = match &topology {
            Topology::Single(url) => Shared::Single(
                redis::Client::open(url.as_str())
                    .expect("a valid URL")
                    .get_connection_manager()
                    .await
                    .expect("the test server answers"),
            ),
            Topology::Cluster(urls) => Shared::Cluster(
                redis::cluster::ClusterClient::new(urls.clone())
                    .expect("valid URLs")
                    .get_async_connection()
                    .await
                    .expect("the test cluster answers"),
            ),
        };
        Some(Self { topology, shared })
    }
}

#[conformance::async_trait]
impl conformance::StoreFactory for Factory {
    fn name(&self) -> String {
        self.topology.name().into()
    }

    async fn open(&self, ns: &Namespace) -> Result<Arc<dyn BrokerStore>, StoreError> {
        self.topology.open(ns).await
    }

    async fn open_from_handle(
        &self,
        ns: &Namespace,
    ) -> Result<Option<Arc<dyn BrokerStore>>, StoreError> {
        Ok(Some(match &self.shared {
            Shared::Single(c) => Arc::new(RedisStore::new(c.clone()).with_namespace(ns.clone())),
            Shared::Cluster(c) => Arc::new(RedisStore::new(c.clone()).with_namespace(ns.clone())),
        }))
    }

    /// Runs the restart command of the topology (`BROKER_TEST_REDIS_RESTART_CMD`
    /// or `BROKER_TEST_REDIS_CLUSTER_RESTART_CMD`; missing: skipped, or a
    /// failure under `CI=true`) while polling every node with `PING`: the
    /// outage runs from the first failed ping to the first moment every node
    /// answers again (and, on a cluster, reports `cluster_state:ok`).
    async fn restart_server(&self) -> Result<Option<std::time::Duration>, StoreError> {
        let var = match self.topology {
            Topology::Single(_) => "BROKER_TEST_REDIS_RESTART_CMD",
            Topology::Cluster(_) => "BROKER_TEST_REDIS_CLUSTER_RESTART_CMD",
        };
        let Some(cmd) = restart_cmd(var) else {
            return Ok(None);
        };
        let topology = self.topology.clone();
        let down = tokio::task::spawn_blocking(move || restart_and_measure(&topology, &cmd))
            .await
            .map_err(|e| StoreError::backend("restart_server", e.to_string()))?
            .map_err(|e| StoreError::backend("restart_server", e))?;
        RESTARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        eprintln!("{}: restarted, down for {down:?}", self.topology.name());
        Ok(Some(down))
    }

    async fn raw_contents(&self, ns: &Namespace) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.topology
            .raw_contents(ns)
            .await
            .map(Some)
            .map_err(|e| raw_err("raw_contents", e))
    }

    async fn teardown(&self, ns: &Namespace) -> Result<(), StoreError> {
        self.topology
            .teardown(ns)
            .await
            .map_err(|e| raw_err("teardown", e))
    }
}

/// How many times this process restarted its servers (tests that check
/// what survives a restart wait for it).
pub static RESTARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Every node answers `PING` (and, on a cluster, reports `cluster_state:ok`).
fn all_up(topology: &Topology) -> bool {
    use std::time::Duration;
    topology.nodes().iter().all(|node| {
        let Ok(mut c) = redis::Client::open(node.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
        else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
        let pong = redis::cmd("PING").query::<String>(&mut c).is_ok();
        pong && match topology {
            Topology::Single(_) => true,
            Topology::Cluster(_) => redis::cmd("CLUSTER")
                .arg("INFO")
                .query::<String>(&mut c)
                .is_ok_and(|i| i.contains("cluster_state:ok")),
        }
    })
}

/// Run `cmd` (a restart) and measure the outage it causes.
fn restart_and_measure(topology: &Topology, cmd: &str) -> Result<std::time::Duration, String> {
    use std::time::{Duration, Instant};
    let started = Instant::now();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn the restart command: {e}"))?;
    let mut down_at = None;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if down_at.is_none() && !all_up(topology) {
            down_at = Some(Instant::now());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err("the restart command hangs".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        return Err(format!("the restart command failed: {status}"));
    }
    let down_at = down_at.unwrap_or(started);
    while !all_up(topology) {
        if started.elapsed() > Duration::from_secs(150) {
            return Err("the servers did not come back within 30 s of the restart".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(down_at.elapsed())
}

/// The restart command from `var`, else skip loudly (fail under `CI=true`).
pub fn restart_cmd(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                !conformance::provision::in_ci(),
                "{var} is not set: under CI=true the restart test must run (eval \"$(scripts/servers/redis.sh start)\")"
            );
            eprintln!(
                "\n==== SKIP restart test: {var} is not set (eval \"$(scripts/servers/redis.sh start)\") ====\n"
            );
            None
        }
    }
}

/// A raw connection to a topology (cluster-aware for a cluster), usable
/// as a store's connection.
#[derive(Clone)]
pub enum Raw {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Raw {
    pub async fn open(topology: &Topology) -> Self {
        match topology {
            Topology::Single(url) => Raw::Single(
                redis::Client::open(url.as_str())
                    .expect("url")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connect"),
            ),
            Topology::Cluster(urls) => Raw::Cluster(
                redis::cluster::ClusterClient::new(urls.clone())
                    .expect("urls")
                    .get_async_connection()
                    .await
                    .expect("connect"),
            ),
        }
    }

    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        match self {
            Raw::Single(c) => cmd.query_async(&mut c.clone()).await,
            Raw::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
        .expect("raw command")
    }
}

impl redis::aio::ConnectionLike for Raw {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Raw::Single(c) => c.req_packed_command(cmd),
            Raw::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Raw::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Raw::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Something to run in the middle of a store call.
pub type Hook =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// Which request to act on, and how: run a hook (`Some`) or fail (`None`).
type Armed = Option<(usize, Option<Hook>)>;

/// A connection that counts the requests (commands or pipelines) it
/// sends and, if armed, runs a hook once just before request number `at`
/// (0-based, counted from arming) goes out: a deterministic interleaving
/// point inside a store operation.
#[derive(Clone)]
pub struct Hooked<C> {
    inner: C,
    pub sent: Arc<std::sync::atomic::AtomicUsize>,
    armed: Arc<std::sync::Mutex<Armed>>,
}

impl<C> Hooked<C> {
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            sent: Arc::default(),
            armed: Arc::default(),
        }
    }

    /// Requests sent so far.
    pub fn count(&self) -> usize {
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Run `hook` before the `at`-th request from now.
    pub fn arm(&self, at: usize, hook: Hook) {
        *self.armed.lock().unwrap() = Some((self.count() + at, Some(hook)));
    }

    /// Fail the `at`-th request from now (an I/O error; nothing is sent):
    /// an operation that stops halfway.
    pub fn fail(&self, at: usize) {
        *self.armed.lock().unwrap() = Some((self.count() + at, None));
    }

    /// Forget an armed hook that did not fire.
    pub fn disarm(&self) {
        *self.armed.lock().unwrap() = None;
    }

    /// What to do before this request: nothing (`None`), run a hook
    /// (`Some(Some(_))`) or fail it (`Some(None)`).
    fn next_hook(&self) -> Option<Option<Hook>> {
        let n = self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut armed = self.armed.lock().unwrap();
        match armed.as_ref() {
            Some((at, _)) if *at == n => armed.take().map(|(_, h)| h),
            _ => None,
        }
    }
}

impl<C: redis::aio::ConnectionLike + Send + Clone + 'static> redis::aio::ConnectionLike
    for Hooked<C>
{
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        let hook = self.next_hook();
        Box::pin(async move {
            match hook {
                Some(Some(hook)) => hook().await,
                Some(None) => return Err(injected_failure()),
                None => {}
            }
            self.inner.req_packed_command(cmd).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        let hook = self.next_hook();
        Box::pin(async move {
            match hook {
                Some(Some(hook)) => hook().await,
                Some(None) => return Err(injected_failure()),
                None => {}
            }
            self.inner
                .req_packed_commands(pipeline, offset, count)
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

fn injected_failure() -> redis::RedisError {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected by the test").into()
}

/// A connection that sends every request twice and answers with the
/// second reply: what a caller sees when a client re-sends a request whose
/// first copy ran but whose reply was lost (redis-rs on Redis Cluster
/// after a response timeout).
#[derive(Clone)]
pub struct Duplicating<C>(pub C);

impl<C: redis::aio::ConnectionLike + Send + Clone + 'static> redis::aio::ConnectionLike
    for Duplicating<C>
{
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let _ = self.0.req_packed_command(cmd).await;
            self.0.req_packed_command(cmd).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let _ = self.0.req_packed_commands(pipeline, offset, count).await;
            self.0.req_packed_commands(pipeline, offset, count).await
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// Every master of the topology, as plain (non-cluster) connections.
pub async fn masters(topology: &Topology) -> Vec<redis::aio::MultiplexedConnection> {
    let mut out = Vec::new();
    for node in topology.nodes() {
        out.push(
            redis::Client::open(node.as_str())
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("connect"),
        );
    }
    out
}
