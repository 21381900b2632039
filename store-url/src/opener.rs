//! [`StoreOpener`]: one connection (pool, client or open sled database)
//! per URL, and a store on it per namespace.

use std::fmt;
use std::sync::Arc;

use broker_core::{BrokerStore, Namespace};
use tokio::sync::OnceCell;

use crate::parse::Target;
use crate::{Backend, OpenError, StoreUrl};

/// The application name [`StoreOpener`] gives `sled://` (the platform data
/// directory) unless told otherwise ([`StoreOpener::with_app_name`]): the
/// directory `brokerctl` opens by default.
pub const DEFAULT_APP_NAME: &str = "oidc-broker";

/// Opens stores on many namespaces of one URL, sharing one connection: one
/// PostgreSQL pool, MongoDB client, Redis connection or open sled database.
/// Nothing connects until the first [`open`](Self::open).
///
/// Call [`shutdown`](Self::shutdown) before the process exits: a MongoDB
/// client left alive at exit can make the driver panic on stderr.
///
/// `Debug` shows the scheme only (the URL may hold a password).
pub struct StoreOpener {
    url: StoreUrl,
    create_if_missing: bool,
    app_name: String,
    connection: OnceCell<Connection>,
}

/// What a [`StoreOpener`] connected to: a store of one backend, on no
/// namespace in particular, whose driver handle (pool, client, sled
/// database) every store the opener opens shares. For tools that talk to
/// the database directly next to the store.
///
/// A variant exists when its backend's cargo feature is on. `Debug` names
/// the backend only.
#[derive(Clone)]
#[non_exhaustive]
pub enum Connection {
    /// A sled database (`store_sled::SledStore::db`).
    #[cfg(feature = "sled")]
    Sled(store_sled::SledStore),
    /// A PostgreSQL pool (`store_postgres::PostgresStore::pool`).
    #[cfg(feature = "postgres")]
    Postgres(store_postgres::PostgresStore),
    /// A MongoDB database (`store_mongo::MongoStore::database`).
    #[cfg(feature = "mongo")]
    Mongo(store_mongo::MongoStore),
    /// One Redis server's connection manager
    /// (`store_redis::RedisStore::connection`).
    #[cfg(feature = "redis")]
    Redis(store_redis::RedisStore),
    /// A Redis Cluster connection (`store_redis::RedisStore::connection`).
    #[cfg(feature = "redis")]
    RedisCluster(store_redis::RedisStore<store_redis::ReconnectingCluster>),
}

impl Connection {
    /// A store on `namespace`, sharing this connection (not yet set up).
    pub fn store(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        match self.clone() {
            #[cfg(feature = "sled")]
            Self::Sled(s) => Arc::new(s.with_namespace(namespace)),
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => Arc::new(s.with_namespace(namespace)),
            #[cfg(feature = "mongo")]
            Self::Mongo(s) => Arc::new(s.with_namespace(namespace)),
            #[cfg(feature = "redis")]
            Self::Redis(s) => Arc::new(s.with_namespace(namespace)),
            #[cfg(feature = "redis")]
            Self::RedisCluster(s) => Arc::new(s.with_namespace(namespace)),
        }
    }

    /// The backend connected to.
    pub fn backend(&self) -> Backend {
        match *self {
            #[cfg(feature = "sled")]
            Self::Sled(_) => Backend::Sled,
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => Backend::Postgres,
            #[cfg(feature = "mongo")]
            Self::Mongo(_) => Backend::Mongo,
            #[cfg(feature = "redis")]
            Self::Redis(_) => Backend::Redis,
            #[cfg(feature = "redis")]
            Self::RedisCluster(_) => Backend::RedisCluster,
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Connection::{:?}", self.backend())
    }
}

impl StoreOpener {
    /// An opener for `url` (read now, connected on first use).
    ///
    /// ```
    /// let opener = store_url::StoreOpener::new("postgres://app:secret@db.internal/app")?;
    /// assert_eq!(opener.scheme(), "postgres");
    /// assert!(!format!("{opener:?}").contains("secret"));
    /// # Ok::<(), store_url::OpenError>(())
    /// ```
    pub fn new(url: &str) -> Result<Self, OpenError> {
        Ok(Self::from_url(url.parse()?))
    }

    /// An opener for a URL read already.
    pub fn from_url(url: StoreUrl) -> Self {
        Self {
            url,
            create_if_missing: true,
            app_name: DEFAULT_APP_NAME.to_owned(),
            connection: OnceCell::new(),
        }
    }

    /// Whether connecting may create a sled database that is not there yet
    /// (default `true`). With `false`, a `sled://` path that holds no
    /// database fails with [`OpenError::NoDatabase`] and nothing is
    /// created. Servers' databases are never created.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// The application name that places `sled://` in the platform data
    /// directory (default [`DEFAULT_APP_NAME`]; see
    /// `store_sled::SledStore::default_path`). Other URLs ignore it.
    pub fn with_app_name(mut self, app_name: &str) -> Self {
        self.app_name = app_name.to_owned();
        self
    }

    /// The URL this opener opens.
    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// The URL's scheme, lower-case (`"postgres"`, `"redis-cluster"`, …).
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// The shared connection, made on first use. [`OpenError::Disabled`] if
    /// this build leaves the URL's backend out.
    pub async fn connection(&self) -> Result<&Connection, OpenError> {
        self.connection
            .get_or_try_init(|| connect(&self.url, self.create_if_missing, &self.app_name))
            .await
    }

    /// A store on `namespace` (not yet set up: call
    /// [`BrokerStore::setup`], or use [`open_existing`](Self::open_existing)).
    pub async fn open(&self, namespace: Namespace) -> Result<Arc<dyn BrokerStore>, OpenError> {
        Ok(self.connection().await?.store(namespace))
    }

    /// Shut down what the opener connected, before the process exits: the
    /// MongoDB client (see `store_mongo::MongoStore::shutdown`); other
    /// backends need nothing. Stores opened here fail afterwards.
    pub async fn shutdown(&self) {
        #[cfg(feature = "mongo")]
        if let Some(Connection::Mongo(s)) = self.connection.get() {
            s.shutdown().await;
        }
    }
}

impl From<StoreUrl> for StoreOpener {
    fn from(url: StoreUrl) -> Self {
        Self::from_url(url)
    }
}

impl fmt::Debug for StoreOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOpener")
            .field("scheme", &self.url.scheme())
            .field("create_if_missing", &self.create_if_missing)
            .field("connected", &self.connection.initialized())
            .finish_non_exhaustive()
    }
}

/// Connect to what `url` names.
async fn connect(url: &StoreUrl, create: bool, app_name: &str) -> Result<Connection, OpenError> {
    let backend = url.backend();
    if !backend.is_enabled() {
        return Err(OpenError::Disabled { backend });
    }
    Ok(match (&url.target, backend) {
        #[cfg(feature = "sled")]
        (Target::Sled { path, cache_mb }, _) => {
            Connection::Sled(open_sled(path.as_deref(), *cache_mb, create, app_name)?)
        }
        #[cfg(feature = "postgres")]
        (Target::Driver(url), Backend::Postgres) => {
            Connection::Postgres(store_postgres::PostgresStore::connect(url).await?)
        }
        #[cfg(feature = "mongo")]
        (Target::Driver(url), Backend::Mongo) => {
            Connection::Mongo(store_mongo::MongoStore::connect(url).await?)
        }
        #[cfg(feature = "redis")]
        (Target::Driver(url), Backend::Redis) => {
            Connection::Redis(store_redis::RedisStore::connect(url).await?)
        }
        #[cfg(feature = "redis")]
        (Target::Nodes(nodes), _) => {
            Connection::RedisCluster(store_redis::RedisStore::connect_cluster(nodes).await?)
        }
        _ => return Err(OpenError::Disabled { backend }),
    })
}

/// The sled database at `path` (`None`: the platform data directory of
/// `app_name`), with a page cache of `cache_mb` (sled's default if `None`).
#[cfg(feature = "sled")]
fn open_sled(
    path: Option<&std::path::Path>,
    cache_mb: Option<u64>,
    create: bool,
    app_name: &str,
) -> Result<store_sled::SledStore, OpenError> {
    use store_sled::SledStore;
    let path = match path {
        Some(path) => path.to_owned(),
        None => SledStore::default_path(app_name)?,
    };
    // sled writes `conf` when it creates a database.
    if !create && !path.join("conf").exists() {
        return Err(OpenError::NoDatabase);
    }
    Ok(match cache_mb {
        None => SledStore::open(&path)?,
        Some(mb) => SledStore::from_config(
            store_sled::sled::Config::new()
                .path(&path)
                .cache_capacity(mb.saturating_mul(1024 * 1024)),
        )?,
    })
}
