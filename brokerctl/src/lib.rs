#![doc = include_str!("../README.md")]
//!
//! # Namespaces
//!
//! A mistyped `--namespace` cannot create an empty one and report "revoked
//! 0 sessions": every command but `init` opens with
//! [`StoreOpener::existing`] and [`StoreOpener::open_existing`], and
//! `migrate` needs its destination namespace created with `init` first
//! (same key). Namespaces are found in the database's catalogue (sled
//! trees, PostgreSQL tables in the current schema, MongoDB collections,
//! Redis `<ns>:meta` keys on every master); a `memory://` store starts
//! empty in every process. A key or passphrase variable that is unset or
//! set but empty is an error.
//!
//! # migrate
//!
//! Streams page by page, leaves the source untouched, is safe to re-run
//! (writes are upserts; revocation markers go first and again at the end;
//! peers are checked against the source's key and tagged again for the
//! destination), saves its cursor in `--resume-file` to continue where a
//! stopped run ended (`--max-sessions` copies in chunks), and checks the
//! destination's count at the end. The resume file is created mode 0600
//! (written to a new file, then renamed; a symbolic link at its path is
//! refused) and identifies the migration by a salted SHA-256 of both URLs
//! *without their passwords* and both namespaces. A destination on another
//! database has its own nonce budget per key (a warning says so). See
//! [`migrate`].
//!
//! # rekey
//!
//! Re-encrypts with compare-and-set and skips what is already under the
//! new key, so a killed run resumes; from its start the old key no longer
//! seals (workers still using it fail with "retired"), and it retires the
//! old key only once a pass after the settle time finds nothing left under
//! it; unreadable rows are counted and reported, not fatal. `migrate` and
//! `rekey` draw a progress bar on a terminal. Every command shuts its
//! database client down before exiting.
//!
//! # check and bench
//!
//! `check` runs every conformance case in a throwaway namespace and drops
//! it afterwards. `bench` times save/get/take/delete at concurrency 1 and
//! 32 through the store and, in the same run, the same single statement
//! through the same pool (ops/s, p50/p99, ratio), plus `purge_expired` and
//! a paged scan with peak RSS, in a throwaway namespace; see
//! `docs/BENCHMARKS.md` and [`mod@bench`].
//!
//! # keys and peers
//!
//! `keys` works on the broker's key set (broker-issuer, one sealed record):
//! `list` creates nothing and shows each key as `published` (in the JWKS,
//! signing later), `active`, `retiring` (superseded, still published) or
//! `retired`, with retirement times by the default rotation policy
//! (15-minute tokens); `rotate` publishes a key that signs an hour later
//! (`--now`: at once); `import-pem` adds a py-oidc-auth RSA key that signs
//! at once under its RFC 7638 kid and keeps its 16-hex kid as an alias. A
//! bad PEM file (missing, over 64 KiB, not an RSA private key of 2048 bits
//! or more) is exit code 2 and writes nothing. `peers refresh` fetches one
//! peer's JWKS as the federation does (HTTPS unless
//! `--allow-http-loopback`, 3 s, 64 KiB, no redirects) and stores it
//! through the vault; `forget` removes a stored document. See [`issuer`].
//!
//! # The library
//!
//! The commands' building blocks, for tools of your own: [`migrate`] and
//! [`bench`](mod@bench), and [`StoreOpener`], which opens what [`store_url`] opens
//! plus the test stores `memory://` (a fresh [`MemoryStore`], gone at exit)
//! and `mutant://<name>` (an in-memory store with one planted bug,
//! [`conformance::mutants`], to see `check` fail). An application opening
//! its store from a URL wants [`store_url`] itself.
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
pub mod issuer;
pub mod migrate;
pub mod output;

use broker_core::{BrokerStore, MemoryStore, Namespace, StoreError};
use conformance::mutants::Mutant;
use store_url::{Backend, OpenError};

pub use store_url;

/// The application name of the default sled path (`sled://`).
pub const APP_NAME: &str = store_url::DEFAULT_APP_NAME;

/// The operation named in errors of opening.
const OP: &str = "open_store";

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
/// (or one open sled database, or one in-memory database): a
/// [`store_url::StoreOpener`], or one of the test stores. Errors are
/// [`StoreError`]s worded for the command line (they say how to create
/// what is missing).
///
/// Call [`StoreOpener::shutdown`] before the process exits: a MongoDB
/// client left alive at exit can make the driver panic on stderr.
pub struct StoreOpener {
    url: String,
    scheme: String,
    /// Whether connecting may create a sled database that is not there yet.
    create: bool,
    shared: tokio::sync::OnceCell<Shared>,
}

enum Shared {
    Memory(MemoryStore),
    Mutant(MemoryStore, Mutant),
    Url(Box<store_url::StoreOpener>),
}

impl std::fmt::Debug for StoreOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOpener")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl StoreOpener {
    /// An opener for `url`; nothing is read or connected until the first
    /// [`Self::open`].
    pub fn new(url: &str) -> Self {
        let scheme = match store_url::StoreUrl::parse(url) {
            Ok(parsed) => parsed.scheme().to_owned(),
            Err(_) => url::Url::parse(url)
                .map(|u| u.scheme().to_owned())
                .unwrap_or_default(),
        };
        Self {
            url: url.to_owned(),
            scheme,
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
            .get_or_try_init(|| async {
                let test_store = url::Url::parse(&self.url)
                    .ok()
                    .and_then(|u| match u.scheme() {
                        "memory" => Some(Ok(Shared::Memory(MemoryStore::new()))),
                        "mutant" => Some(mutant(&u)),
                        _ => None,
                    });
                if let Some(shared) = test_store {
                    return shared;
                }
                let opener = store_url::StoreOpener::new(&self.url)
                    .map_err(cli_error)?
                    .create_if_missing(self.create);
                opener.connection().await.map_err(cli_error)?;
                Ok(Shared::Url(Box::new(opener)))
            })
            .await
    }

    /// Shut down what the opener connected, before the process exits: the
    /// MongoDB client (see `store_mongo::MongoStore::shutdown`); other
    /// backends need nothing. Stores opened here fail afterwards.
    pub async fn shutdown(&self) {
        if let Some(Shared::Url(opener)) = self.shared.get() {
            opener.shutdown().await;
        }
    }

    /// The URL's scheme, lower-case (`"postgres"`, …; empty if the URL has
    /// none).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// A store on `namespace`.
    pub async fn open(&self, namespace: Namespace) -> Result<Arc<dyn BrokerStore>, StoreError> {
        Ok(match self.connected().await? {
            Shared::Memory(s) => Arc::new(s.clone().with_namespace(namespace)),
            Shared::Mutant(s, m) => m.wrap(s.clone().with_namespace(namespace)),
            Shared::Url(opener) => opener.open(namespace).await.map_err(cli_error)?,
        })
    }

    /// The namespaces set up in this store, sorted (see
    /// [`store_url::StoreOpener::namespaces`]). A `memory://` database
    /// starts empty in every process.
    pub async fn namespaces(&self) -> Result<Vec<Namespace>, StoreError> {
        match self.connected().await? {
            Shared::Memory(_) | Shared::Mutant(..) => Ok(Vec::new()),
            Shared::Url(opener) => opener.namespaces().await.map_err(cli_error),
        }
    }

    /// A store on `namespace` if the store holds it, set up again
    /// (idempotent); otherwise [`StoreError::InvalidInput`] naming the
    /// namespaces that exist: nothing is created.
    pub async fn open_existing(
        &self,
        namespace: Namespace,
    ) -> Result<Arc<dyn BrokerStore>, StoreError> {
        match self.connected().await? {
            Shared::Memory(_) | Shared::Mutant(..) => Err(cli_error(OpenError::NoNamespace {
                namespace,
                existing: Vec::new(),
            })),
            Shared::Url(opener) => opener.open_existing(namespace).await.map_err(cli_error),
        }
    }

    /// The database handle shared by this opener's stores (connecting on
    /// first use): the same pool, connection or sled database, for tools
    /// that talk to the database directly next to the store, such as the
    /// raw-driver ceiling of [`mod@bench`].
    pub async fn backend(&self) -> Result<bench::Backend, StoreError> {
        use store_url::Connection;
        let opener = match self.connected().await? {
            Shared::Memory(_) | Shared::Mutant(..) => return Ok(bench::Backend::Memory),
            Shared::Url(opener) => opener,
        };
        Ok(match opener.connection().await.map_err(cli_error)? {
            #[cfg(feature = "sled")]
            Connection::Sled(s) => bench::Backend::Sled {
                db: s.db().clone(),
                flush: s.durability() == store_sled::Durability::Flush,
            },
            #[cfg(feature = "postgres")]
            Connection::Postgres(s) => bench::Backend::Postgres(s.pool().clone()),
            #[cfg(feature = "mongo")]
            Connection::Mongo(s) => bench::Backend::Mongo(s.database().clone()),
            #[cfg(feature = "redis")]
            Connection::Redis(s) => bench::Backend::Redis(s.connection().clone()),
            #[cfg(feature = "redis")]
            Connection::RedisCluster(s) => bench::Backend::RedisCluster(s.connection().clone()),
            // A backend store-url opens with a feature this build leaves out.
            other => {
                return Err(StoreError::invalid(
                    OP,
                    format!("no raw-driver baseline for {}", other.backend()),
                ));
            }
        })
    }
}

/// The mutant a `mutant://<name>` URL names.
fn mutant(url: &url::Url) -> Result<Shared, StoreError> {
    let name = url.host_str().unwrap_or_default();
    let mutant = Mutant::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
        StoreError::invalid(OP, format!("unknown mutant; one of: {}", names.join(", ")))
    })?;
    Ok(Shared::Mutant(MemoryStore::new(), mutant))
}

/// An error of opening, worded for the command line: what `init` creates
/// says so, and scheme errors list the test stores too.
fn cli_error(e: OpenError) -> StoreError {
    match e {
        OpenError::Store(e) => e,
        e @ (OpenError::NoDatabase | OpenError::NoNamespace { .. }) => {
            StoreError::invalid(OP, format!("{e} (create one with `brokerctl init`)"))
        }
        OpenError::NotAUrl => StoreError::invalid(
            OP,
            format!("not a store URL (scheme://…); supported: {}", supported()),
        ),
        OpenError::UnknownScheme { scheme } => StoreError::invalid(
            OP,
            format!(
                "unknown or disabled store scheme {scheme:?}; supported: {}",
                supported()
            ),
        ),
        OpenError::Disabled { backend } => StoreError::invalid(
            OP,
            format!(
                "unknown or disabled store scheme: this build has no `{}` feature; supported: {}",
                backend.feature(),
                supported()
            ),
        ),
        other => other.into(),
    }
}

/// The URL schemes this build was compiled with.
pub fn supported() -> String {
    let mut schemes = vec!["memory://", "mutant://<name>"];
    schemes.extend(
        Backend::ALL
            .iter()
            .filter(|b| b.is_enabled())
            .map(|b| b.url_form()),
    );
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
