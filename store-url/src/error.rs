//! [`OpenError`]: why a store could not be opened from a URL.

use broker_core::{Namespace, StoreError};

use crate::Backend;
use crate::parse::enabled_forms;

/// Why a store could not be opened from a URL. No message quotes the URL
/// (it may hold a password): they name the scheme and the form expected.
///
/// [`OpenError::Store`] is the store's own error (connecting, listing
/// namespaces, `setup`); every other kind is a mistake in the URL or the
/// namespace, which retrying does not fix. `From<OpenError> for StoreError`
/// makes those [`StoreError::InvalidInput`], for code that returns
/// [`StoreError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Not `scheme://…`.
    #[error("not a store URL (scheme://…); supported: {}", enabled_forms())]
    NotAUrl,
    /// A scheme no backend has.
    #[error("unknown store scheme {scheme:?}; supported: {}", enabled_forms())]
    UnknownScheme {
        /// The scheme, lower-case.
        scheme: String,
    },
    /// The URL names a backend whose cargo feature this build leaves out.
    #[error(
        "{backend} URLs need the `{}` feature of store-url, which this build leaves out; \
         supported: {}",
        backend.feature(),
        enabled_forms()
    )]
    Disabled {
        /// The backend the URL names.
        backend: Backend,
    },
    /// The URL names a backend but is not one of its forms.
    #[error("invalid {backend} URL: {reason}")]
    InvalidUrl {
        /// The backend the URL names.
        backend: Backend,
        /// The form expected.
        reason: &'static str,
        /// What the `url` crate found wrong, if it read the URL (its
        /// messages never quote the input).
        #[source]
        source: Option<url::ParseError>,
    },
    /// [`StoreOpener::create_if_missing(false)`](crate::StoreOpener::create_if_missing)
    /// and the sled path holds no database (nothing was created).
    #[error("there is no sled database at this path")]
    NoDatabase,
    /// [`StoreOpener::open_existing`](crate::StoreOpener::open_existing)
    /// and the store does not hold the namespace (nothing was created).
    #[error(
        "namespace {namespace} does not exist in this store; existing namespaces: {}",
        list(existing)
    )]
    NoNamespace {
        /// The namespace asked for.
        namespace: Namespace,
        /// The namespaces the store holds, sorted.
        existing: Vec<Namespace>,
    },
    /// The store failed: it could not connect, list its namespaces or set
    /// up.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OpenError {
    /// True when retrying later may succeed (the database was unreachable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_retryable())
    }
}

impl From<OpenError> for StoreError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Store(e) => e,
            other => StoreError::invalid("open_store", other.to_string()),
        }
    }
}

/// At most 20 names, then how many more.
fn list(namespaces: &[Namespace]) -> String {
    const SHOWN: usize = 20;
    if namespaces.is_empty() {
        return "none".to_owned();
    }
    let mut names: Vec<String> = namespaces
        .iter()
        .take(SHOWN)
        .map(Namespace::to_string)
        .collect();
    if namespaces.len() > SHOWN {
        names.push(format!("and {} more", namespaces.len() - SHOWN));
    }
    names.join(", ")
}
