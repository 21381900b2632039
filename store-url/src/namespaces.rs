//! Which namespaces a store holds, read from the database's own catalogue
//! without creating anything: sled trees `<ns>/records`, PostgreSQL tables
//! `<ns>_records` in the current schema, MongoDB collections
//! `<ns>_records`, Redis keys `<ns>:meta` (every master of a cluster).
//! These are the names each backend's `setup` creates; a namespace "exists"
//! once something set it up (`brokerctl init`, or an application's
//! `setup`).

use std::sync::Arc;

use broker_core::{BrokerStore, Namespace, StoreError};

use crate::{Connection, OpenError, StoreOpener};

const OP: &str = "list_namespaces";

/// The namespace a catalogue name belongs to, if it has `suffix`.
fn namespace_of(name: &str, suffix: &str) -> Option<Namespace> {
    Namespace::new(name.strip_suffix(suffix)?).ok()
}

impl StoreOpener {
    /// The namespaces set up in this store, sorted and without duplicates
    /// (the reserved namespace of the per-key nonce counters is left out).
    /// Nothing is created.
    pub async fn namespaces(&self) -> Result<Vec<Namespace>, OpenError> {
        let mut found: Vec<Namespace> = match *self.connection().await? {
            #[cfg(feature = "sled")]
            Connection::Sled(ref s) => s
                .db()
                .tree_names()
                .iter()
                .filter_map(|n| namespace_of(std::str::from_utf8(n).ok()?, "/records"))
                .collect(),
            #[cfg(feature = "postgres")]
            Connection::Postgres(ref s) => {
                let names: Vec<String> = store_postgres::sqlx::query_scalar(
                    "SELECT tablename::text FROM pg_catalog.pg_tables \
                     WHERE schemaname = current_schema() AND tablename LIKE '%\\_records'",
                )
                .fetch_all(s.pool())
                .await
                .map_err(|e| StoreError::unavailable(OP, e))?;
                names
                    .iter()
                    .filter_map(|n| namespace_of(n, "_records"))
                    .collect()
            }
            #[cfg(feature = "mongo")]
            Connection::Mongo(ref s) => s
                .database()
                .list_collection_names()
                .await
                .map_err(|_| {
                    // The driver's message is not passed on: it may quote the URL.
                    StoreError::unavailable(
                        OP,
                        std::io::Error::other("listing the database's collections failed"),
                    )
                })?
                .iter()
                .filter_map(|n| namespace_of(n, "_records"))
                .collect(),
            #[cfg(feature = "redis")]
            Connection::Redis(ref s) => {
                let mut conn = s.connection().clone();
                redis_meta_keys(&mut conn).await?
            }
            #[cfg(feature = "redis")]
            Connection::RedisCluster(ref s) => redis_cluster_namespaces(s.connection()).await?,
        };
        // The per-key nonce counters are not a namespace of sessions.
        found.retain(|ns| ns.as_str() != broker_core::vault::KEY_BUDGET_NAMESPACE);
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// A store on `namespace` if the store holds it (it was set up), set
    /// up again (idempotent: indexes a newer version adds). Otherwise
    /// [`OpenError::NoNamespace`] naming the namespaces that exist: nothing
    /// is created. For tools that must not create a namespace by mistake
    /// (a mistyped name would otherwise be a new, empty one).
    pub async fn open_existing(
        &self,
        namespace: Namespace,
    ) -> Result<Arc<dyn BrokerStore>, OpenError> {
        let existing = self.namespaces().await?;
        if !existing.contains(&namespace) {
            return Err(OpenError::NoNamespace {
                namespace,
                existing,
            });
        }
        let store = self.open(namespace).await?;
        store.setup().await?;
        Ok(store)
    }
}

/// Namespaces of the `<ns>:meta` keys on a single Redis node.
#[cfg(feature = "redis")]
async fn redis_meta_keys<C: store_redis::redis::aio::ConnectionLike>(
    conn: &mut C,
) -> Result<Vec<Namespace>, StoreError> {
    use store_redis::redis;
    let mut found = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg("*:meta")
            .arg("COUNT")
            .arg(1000);
        let (next, keys): (u64, Vec<String>) = scan
            .query_async(conn)
            .await
            .map_err(|e| StoreError::unavailable(OP, e))?;
        found.extend(keys.iter().filter_map(|k| namespace_of(k, ":meta")));
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

/// Namespaces of the `<ns>:meta` keys on every master of a cluster.
#[cfg(feature = "redis")]
async fn redis_cluster_namespaces(
    cluster: &store_redis::ReconnectingCluster,
) -> Result<Vec<Namespace>, StoreError> {
    use store_redis::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
    use store_redis::redis::{self, FromRedisValue};
    fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::unavailable(OP, e)
    }
    let mut conn = cluster.current();
    let mut nodes_cmd = redis::cmd("CLUSTER");
    nodes_cmd.arg("NODES");
    let nodes = conn
        .route_command(
            nodes_cmd,
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await
        .map_err(unavailable)?;
    let nodes = String::from_redis_value(nodes).map_err(unavailable)?;
    let mut found = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3
            || !fields[2].split(',').any(|f| f == "master")
            || fields[2].contains("fail")
        {
            continue;
        }
        let address = fields[1].split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = address.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg("*:meta")
                .arg("COUNT")
                .arg(1000);
            let reply = conn
                .route_command(
                    scan,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.to_owned(),
                        port,
                    }),
                )
                .await
                .map_err(unavailable)?;
            let (next, keys) =
                <(u64, Vec<String>)>::from_redis_value(reply).map_err(unavailable)?;
            found.extend(keys.iter().filter_map(|k| namespace_of(k, ":meta")));
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(found)
}
