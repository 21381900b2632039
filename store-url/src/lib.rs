#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// With a backend feature off, what only its backend uses is dead code (a
// build with every feature, as clippy in CI, still reports what is unused).
#![cfg_attr(
    not(all(
        feature = "sled",
        feature = "postgres",
        feature = "mongo",
        feature = "redis"
    )),
    allow(unused)
)]

use std::sync::Arc;

use broker_core::{BrokerStore, Namespace};

mod error;
mod namespaces;
mod opener;
mod parse;

pub use error::OpenError;
pub use opener::{Connection, DEFAULT_APP_NAME, StoreOpener};
pub use parse::{Backend, StoreUrl};

#[cfg(feature = "mongo")]
pub use store_mongo;
#[cfg(feature = "postgres")]
pub use store_postgres;
#[cfg(feature = "redis")]
pub use store_redis;
#[cfg(feature = "sled")]
pub use store_sled;

/// A store on `namespace` at `url`, connected but not set up (call
/// [`BrokerStore::setup`]). A one-off: every call connects anew, so open
/// many namespaces, or anything in a process that exits afterwards, with a
/// [`StoreOpener`] (MongoDB wants [`StoreOpener::shutdown`] before exit).
///
/// Fails with [`OpenError`]: a URL that is not one of the forms in the
/// [crate docs](crate), a backend this build leaves out, or the store's own
/// error while connecting ([`OpenError::Store`]). No error quotes the URL.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use broker_core::Namespace;
/// use store_url::{OpenError, open_store};
///
/// let err = open_store("ftp://me:secret@host", Namespace::default()).await.unwrap_err();
/// assert!(matches!(err, OpenError::UnknownScheme { .. }));
/// assert!(!err.to_string().contains("secret"));
/// # });
/// ```
pub async fn open_store(
    url: &str,
    namespace: Namespace,
) -> Result<Arc<dyn BrokerStore>, OpenError> {
    StoreOpener::new(url)?.open(namespace).await
}
