//! Open any broker store from a URL — the factory behind `brokerctl`,
//! reusable by other tools.
//!
//! | URL | store |
//! |---|---|
//! | `memory://` | a fresh `MemoryStore` (gone at exit) |
//! | `sled:///absolute/path[?cache_mb=N]`, `sled://` (platform data dir) | `store-sled` (`cache_mb`: sled's page cache, default 1024) |
//! | `postgres://…`, `postgresql://…` | `store-postgres` |
//! | `mongodb://host/database` | `store-mongo` |
//! | `redis://…`, `rediss://…` | `store-redis`, one node |
//! | `redis-cluster://host1:port1,host2:port2` | `store-redis`, Redis Cluster |
//! | `mutant://<name>` | an in-memory store with one planted bug ([`conformance::mutants`]), to see `check` fail |
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use broker_core::Namespace;
//! let store = brokerctl::open_store("memory://", Namespace::default()).await.unwrap();
//! store.setup().await.unwrap();
//! assert!(brokerctl::open_store("ftp://x", Namespace::default()).await.is_err());
//! # });
//! ```

use std::sync::Arc;

pub mod bench;
pub mod migrate;
mod namespaces;

use broker_core::{BrokerStore, MemoryStore, Namespace, StoreError};
use conformance::mutants::Mutant;

/// The application name used for the default sled path.
pub const APP_NAME: &str = "oidc-broker";

/// A store opened from `url` on `namespace` (not yet set up). Unknown
/// schemes and malformed URLs are [`StoreError::InvalidInput`] naming the
/// schemes this build supports; the URL itself never appears in an error
/// (it may hold a password). A process that exits afterwards should use a
/// [`StoreOpener`] instead and call [`StoreOpener::shutdown`] before it
/// exits (MongoDB).
pub async fn open_store(
    url: &str,
    namespace: Namespace,
) -> Result<Arc<dyn BrokerStore>, StoreError> {
    StoreOpener::new(url).open(namespace).await
}

/// Opens stores on many namespaces of one URL, sharing one connection pool
/// (or one open sled database, or one in-memory database).
///
/// Call [`StoreOpener::shutdown`] before the process exits: a MongoDB
/// client left alive at exit can make the driver panic on stderr.
pub struct StoreOpener {
    url: String,
    /// Whether connecting may create a sled database that is not there yet.
    create: bool,
    shared: tokio::sync::OnceCell<Shared>,
}

#[derive(Clone)]
enum Shared {
    Memory(MemoryStore),
    Mutant(MemoryStore, Mutant),
    #[cfg(feature = "sled")]
    Sled(store_sled::SledStore),
    #[cfg(feature = "postgres")]
    Postgres(store_postgres::PostgresStore),
    #[cfg(feature = "mongo")]
    Mongo(store_mongo::MongoStore),
    #[cfg(feature = "redis")]
    Redis(store_redis::RedisStore),
    #[cfg(feature = "redis")]
    RedisCluster(store_redis::RedisStore<store_redis::ReconnectingCluster>),
}

impl StoreOpener {
    /// An opener for `url`; nothing connects until the first [`Self::open`].
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            create: true,
            shared: tokio::sync::OnceCell::new(),
        }
    }

    /// An opener for a store that must exist already: a `sled://` path
    /// holding no database is an error instead of a new database. Use it
    /// with [`Self::open_existing`] for every command but `init`.
    pub fn existing(url: &str) -> Self {
        Self {
            create: false,
            ..Self::new(url)
        }
    }

    /// The shared connection, made on first use.
    async fn connected(&self) -> Result<&Shared, StoreError> {
        self.shared
            .get_or_try_init(|| connect(&self.url, self.create))
            .await
    }

    /// Shut down what the opener connected, before the process exits: the
    /// MongoDB client (see `store_mongo::MongoStore::shutdown`); other
    /// backends need nothing. Stores opened here fail afterwards.
    pub async fn shutdown(&self) {
        #[cfg(feature = "mongo")]
        if let Some(Shared::Mongo(s)) = self.shared.get() {
            s.shutdown().await;
        }
    }

    /// The URL's scheme, lower-cased (`"postgres"`, …).
    pub fn scheme(&self) -> &str {
        self.url.split_once("://").map_or("", |(s, _)| s)
    }

    /// A store on `namespace`.
    pub async fn open(&self, namespace: Namespace) -> Result<Arc<dyn BrokerStore>, StoreError> {
        let shared = self.connected().await?;
        Ok(match shared.clone() {
            Shared::Memory(s) => Arc::new(s.with_namespace(namespace)),
            Shared::Mutant(s, m) => m.wrap(s.with_namespace(namespace)),
            #[cfg(feature = "sled")]
            Shared::Sled(s) => Arc::new(s.with_namespace(namespace)),
            #[cfg(feature = "postgres")]
            Shared::Postgres(s) => Arc::new(s.with_namespace(namespace)),
            #[cfg(feature = "mongo")]
            Shared::Mongo(s) => Arc::new(s.with_namespace(namespace)),
            #[cfg(feature = "redis")]
            Shared::Redis(s) => Arc::new(s.with_namespace(namespace)),
            #[cfg(feature = "redis")]
            Shared::RedisCluster(s) => Arc::new(s.with_namespace(namespace)),
        })
    }

    /// The database handle shared by this opener's stores (connecting on
    /// first use): the same pool, connection or sled database, for tools
    /// that talk to the database directly next to the store, such as the
    /// raw-driver ceiling of [`bench`].
    pub async fn backend(&self) -> Result<bench::Backend, StoreError> {
        let shared = self.connected().await?;
        Ok(match shared {
            Shared::Memory(_) | Shared::Mutant(..) => bench::Backend::Memory,
            #[cfg(feature = "sled")]
            Shared::Sled(s) => bench::Backend::Sled {
                db: s.db().clone(),
                flush: s.durability() == store_sled::Durability::Flush,
            },
            #[cfg(feature = "postgres")]
            Shared::Postgres(s) => bench::Backend::Postgres(s.pool().clone()),
            #[cfg(feature = "mongo")]
            Shared::Mongo(s) => bench::Backend::Mongo(s.database().clone()),
            #[cfg(feature = "redis")]
            Shared::Redis(s) => bench::Backend::Redis(s.connection().clone()),
            #[cfg(feature = "redis")]
            Shared::RedisCluster(s) => bench::Backend::RedisCluster(s.connection().clone()),
        })
    }
}

async fn connect(url: &str, create: bool) -> Result<Shared, StoreError> {
    let op = "open_store";
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .ok_or_else(|| {
            StoreError::invalid(
                op,
                format!("not a store URL (scheme://…); supported: {}", supported()),
            )
        })?;
    match scheme.as_str() {
        "memory" => Ok(Shared::Memory(MemoryStore::new())),
        "mutant" => {
            let name = &url["mutant://".len()..];
            let mutant = Mutant::from_name(name).ok_or_else(|| {
                let names: Vec<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
                StoreError::invalid(op, format!("unknown mutant; one of: {}", names.join(", ")))
            })?;
            Ok(Shared::Mutant(MemoryStore::new(), mutant))
        }
        #[cfg(feature = "sled")]
        "sled" => {
            let (path, query) = match url["sled://".len()..].split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (&url["sled://".len()..], None),
            };
            let cache_mb = match query {
                None => None,
                Some(query) => Some(sled_cache_mb(op, query)?),
            };
            if !create {
                let dir = if path.is_empty() {
                    store_sled::SledStore::default_path(APP_NAME)?
                } else {
                    std::path::PathBuf::from(path)
                };
                if !dir.join("conf").exists() {
                    return Err(StoreError::invalid(
                        op,
                        "there is no sled database at this path (create one with `brokerctl init`)",
                    ));
                }
            }
            Ok(Shared::Sled(match (path.is_empty(), cache_mb) {
                (true, None) => store_sled::SledStore::open_default(APP_NAME)?,
                (true, Some(_)) => {
                    return Err(StoreError::invalid(op, "sled://?cache_mb= needs a path"));
                }
                (false, None) => store_sled::SledStore::open(path)?,
                (false, Some(mb)) => store_sled::SledStore::from_config(
                    store_sled::sled::Config::new()
                        .path(path)
                        .cache_capacity(mb.saturating_mul(1024 * 1024)),
                )?,
            }))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Shared::Postgres(
            store_postgres::PostgresStore::connect(url).await?,
        )),
        #[cfg(feature = "mongo")]
        "mongodb" | "mongodb+srv" => {
            Ok(Shared::Mongo(store_mongo::MongoStore::connect(url).await?))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" => Ok(Shared::Redis(store_redis::RedisStore::connect(url).await?)),
        #[cfg(feature = "redis")]
        "redis-cluster" => {
            let nodes: Vec<String> = url["redis-cluster://".len()..]
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|n| format!("redis://{n}"))
                .collect();
            if nodes.is_empty() {
                return Err(StoreError::invalid(
                    op,
                    "redis-cluster:// needs host:port[,host:port…]",
                ));
            }
            Ok(Shared::RedisCluster(
                store_redis::RedisStore::connect_cluster(nodes).await?,
            ))
        }
        _ => Err(StoreError::invalid(
            op,
            format!(
                "unknown or disabled store scheme {scheme:?}; supported: {}",
                supported()
            ),
        )),
    }
}

/// The page-cache size of a `sled:///path?cache_mb=N` URL (the only
/// parameter a sled URL takes).
#[cfg(feature = "sled")]
fn sled_cache_mb(op: &'static str, query: &str) -> Result<u64, StoreError> {
    query
        .strip_prefix("cache_mb=")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            StoreError::invalid(
                op,
                "a sled URL takes one parameter, cache_mb=<megabytes> (a positive integer)",
            )
        })
}

/// The URL schemes this build was compiled with.
pub fn supported() -> String {
    let mut schemes = vec!["memory://", "mutant://<name>"];
    if cfg!(feature = "sled") {
        schemes.push("sled:///path");
    }
    if cfg!(feature = "postgres") {
        schemes.push("postgres://");
    }
    if cfg!(feature = "mongo") {
        schemes.push("mongodb://");
    }
    if cfg!(feature = "redis") {
        schemes.extend(["redis://", "redis-cluster://h1:p1,h2:p2"]);
    }
    schemes.join(", ")
}

/// A conformance factory over a URL, for `brokerctl check`: every case gets
/// a throwaway namespace, dropped afterwards ([`BrokerStore::drop_namespace`]).
pub struct UrlFactory {
    opener: StoreOpener,
}

impl UrlFactory {
    /// A factory for `url`.
    pub fn new(url: &str) -> Self {
        Self {
            opener: StoreOpener::new(url),
        }
    }

    /// The opener behind the factory (shut it down when done).
    pub fn opener(&self) -> &StoreOpener {
        &self.opener
    }
}

#[async_trait::async_trait]
impl conformance::StoreFactory for UrlFactory {
    fn name(&self) -> String {
        self.opener.scheme().to_owned()
    }

    async fn open(&self, namespace: &Namespace) -> Result<Arc<dyn BrokerStore>, StoreError> {
        self.opener.open(namespace.clone()).await
    }
}
