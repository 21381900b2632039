//! Connecting, and what the server(s) say about themselves (`INFO`):
//! topology, replica role, `maxmemory-policy`; `setup`'s checks.

use std::time::Duration;

use broker_core::{Result, StoreError};
use redis::Value;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};

use crate::error::{SetupError, map_err};
use crate::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT, ReconnectingCluster, RedisStore, Topology};

impl RedisStore<ConnectionManager> {
    /// Connect to a single Redis server (`redis://[user:password@]host:port[/db]`,
    /// or `rediss://` where the redis crate was built with TLS) through a
    /// [`ConnectionManager`] that reconnects by itself, with
    /// [`CONNECT_TIMEOUT`] and [`RESPONSE_TIMEOUT`].
    ///
    /// Asks the server `INFO` once: when it reports `cluster_enabled:0`,
    /// the store saves with one script ([`Topology::SingleNode`]);
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
        let topology = store
            .probe("connect")
            .await?
            .and_then(|info| info.topology)
            .unwrap_or(Topology::Cluster);
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
        // Built without `read_from_replicas`: every command goes to a
        // primary, so a get is a plain `HMGET`.
        let mut store = Self::new(conn);
        store.reads_on_primary = true;
        Ok(store)
    }
}

/// What `INFO` says about the server(s) behind a connection.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ServerInfo {
    /// See [`topology_of`].
    pub(crate) topology: Option<Topology>,
    /// The first `maxmemory-policy` a server reported that can evict keys.
    pub(crate) evicting: Option<String>,
    /// A server reported `role:slave`.
    pub(crate) replica: bool,
    /// Some server reported its `maxmemory-policy`.
    pub(crate) policy_known: bool,
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// `INFO` of the server, or of every primary on Redis Cluster (redis-rs
    /// sends it to all of them); `None` when a server refuses it (ACLs,
    /// proxies). Connection failures are errors.
    pub(crate) async fn probe(&self, op: &'static str) -> Result<Option<ServerInfo>> {
        let mut conn = self.conn.clone();
        match redis::cmd("INFO").query_async::<Value>(&mut conn).await {
            Ok(v) => Ok(Some(server_info(&v))),
            Err(e) => match map_err(op, e) {
                e @ StoreError::Unavailable { .. } => Err(e),
                _ => Ok(None),
            },
        }
    }

    /// `setup`: check the server(s), then record or check (and migrate)
    /// the storage format.
    pub(crate) async fn check_and_mark(&self) -> Result<()> {
        const OP: &str = "setup";
        let refuse = |e: SetupError| Err(StoreError::backend(OP, e));
        match self.probe(OP).await? {
            Some(info) => {
                if info.replica {
                    return refuse(SetupError::Replica);
                }
                if let Some(policy) = info.evicting.filter(|_| !self.allow_eviction) {
                    return refuse(SetupError::EvictingPolicy { policy });
                }
                if !info.policy_known {
                    tracing::warn!(
                        "store-redis: INFO names no maxmemory_policy; make sure it is noeviction"
                    );
                }
                // A single-node assertion on a cluster falls back.
                if self.single() && info.topology == Some(Topology::Cluster) {
                    tracing::warn!(
                        "store-redis: Topology::SingleNode was asserted but the server is a cluster; using the cluster-safe scripts"
                    );
                    self.single
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                }
            }
            None => tracing::warn!(
                "store-redis: the server refused INFO; maxmemory-policy and topology unchecked"
            ),
        }
        self.check_format(OP).await
    }
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

/// What an `INFO` reply says.
pub(crate) fn server_info(v: &Value) -> ServerInfo {
    let texts = info_texts(v);
    let lines = || texts.iter().flat_map(|t| t.lines()).map(str::trim);
    let policies: Vec<&str> = lines()
        .filter_map(|l| l.strip_prefix("maxmemory_policy:"))
        .collect();
    ServerInfo {
        topology: topology_of(v),
        evicting: policies
            .iter()
            .find(|p| can_evict(p))
            .map(|p| (*p).to_owned()),
        replica: lines().any(|l| l == "role:slave"),
        policy_known: !policies.is_empty(),
    }
}

/// Whether a `maxmemory-policy` may evict the store's keys: every policy
/// but `noeviction` (`allkeys-*` evicts any key, `volatile-*` any key with
/// a TTL, and sessions, subject indexes and receipts have one), including
/// names this version does not know.
pub(crate) fn can_evict(policy: &str) -> bool {
    !policy.eq_ignore_ascii_case("noeviction")
}

/// What an `INFO` reply says of the topology: `Cluster` if any node reports
/// `cluster_enabled:1`, or if the server is one known to run scripts unlike
/// Redis (Dragonfly, Kvrocks: kept cluster-safe); `SingleNode` if the nodes
/// that say report `cluster_enabled:0`; `None` if none says.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cluster: &str, policy: &str, role: &str) -> Value {
        Value::BulkString(
            format!(
                "# Server\r\nredis_version:7.0.15\r\n# Memory\r\nmaxmemory_policy:{policy}\r\n\
                 # Replication\r\nrole:{role}\r\n# Cluster\r\ncluster_enabled:{cluster}\r\n"
            )
            .into_bytes(),
        )
    }

    #[test]
    fn info_replies_are_read() {
        let single = |on: &str| node(on, "noeviction", "master");
        assert_eq!(topology_of(&single("0")), Some(Topology::SingleNode));
        assert_eq!(topology_of(&single("1")), Some(Topology::Cluster));
        assert_eq!(
            topology_of(&Value::BulkString(b"# Cluster\r\n".to_vec())),
            None
        );
        assert_eq!(topology_of(&Value::Nil), None);
        // Several nodes (a cluster connection): any cluster node wins.
        let nodes = Value::Map(vec![
            (Value::SimpleString("a".into()), single("0")),
            (Value::SimpleString("b".into()), single("1")),
        ]);
        assert_eq!(topology_of(&nodes), Some(Topology::Cluster));
        assert_eq!(
            topology_of(&Value::Array(vec![single("0"), Value::Nil])),
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
    fn only_noeviction_is_safe() {
        assert!(!can_evict("noeviction"));
        for policy in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "some-future-policy",
        ] {
            assert!(can_evict(policy), "{policy}");
        }
    }

    #[test]
    fn every_primary_counts_and_replicas_are_seen() {
        let three = Value::Map(vec![
            (
                Value::SimpleString("a".into()),
                node("1", "noeviction", "master"),
            ),
            (
                Value::SimpleString("b".into()),
                node("1", "noeviction", "master"),
            ),
            (
                Value::SimpleString("c".into()),
                node("1", "volatile-ttl", "master"),
            ),
        ]);
        let info = server_info(&three);
        assert_eq!(info.evicting.as_deref(), Some("volatile-ttl"));
        assert!(info.policy_known && !info.replica);
        let fine = server_info(&node("0", "noeviction", "master"));
        assert_eq!(fine.evicting, None);
        assert_eq!(fine.topology, Some(Topology::SingleNode));
        assert!(server_info(&node("0", "noeviction", "slave")).replica);
        let unknown = server_info(&Value::BulkString(b"# Server\r\n".to_vec()));
        assert!(!unknown.policy_known && unknown.evicting.is_none());
    }
}
