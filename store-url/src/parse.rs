//! Reading a store URL: which backend, and what its driver is given.
//!
//! Every URL is read with the [`url`] crate, except where a form has more
//! than one host, which the URL standard (and so the `url` crate) does not
//! allow: a `mongodb://h1:p1,h2:p2/db` string goes to the MongoDB driver,
//! which reads that form itself, and each host of a
//! `redis-cluster://h1:p1,h2:p2` URL becomes a `redis://` URL read with the
//! `url` crate. Parsing needs no backend feature: a URL of a backend this
//! build leaves out parses, and fails to open with [`OpenError::Disabled`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use url::Url;

use crate::OpenError;

/// A backend a store URL can name. Whether this build can open it depends
/// on the crate's cargo features ([`Backend::is_enabled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// `sled:///path[?cache_mb=N]`, `sled://` (the platform data
    /// directory): the embedded store of `store-sled`.
    Sled,
    /// `postgres://…`, `postgresql://…`: `store-postgres`.
    Postgres,
    /// `mongodb://…/database`, `mongodb+srv://…/database`: `store-mongo`.
    Mongo,
    /// `redis://…`, `rediss://…`: `store-redis` on one server.
    Redis,
    /// `redis-cluster://[user:password@]h1:p1,h2:p2`: `store-redis` on a
    /// Redis Cluster, through some of its nodes.
    RedisCluster,
}

impl Backend {
    /// Every backend, in the order of the error messages.
    pub const ALL: [Backend; 5] = [
        Backend::Sled,
        Backend::Postgres,
        Backend::Mongo,
        Backend::Redis,
        Backend::RedisCluster,
    ];

    /// The cargo feature of this crate that opens this backend.
    pub fn feature(self) -> &'static str {
        match self {
            Self::Sled => "sled",
            Self::Postgres => "postgres",
            Self::Mongo => "mongo",
            Self::Redis | Self::RedisCluster => "redis",
        }
    }

    /// True if this build was compiled with [`Self::feature`].
    pub fn is_enabled(self) -> bool {
        match self {
            Self::Sled => cfg!(feature = "sled"),
            Self::Postgres => cfg!(feature = "postgres"),
            Self::Mongo => cfg!(feature = "mongo"),
            Self::Redis | Self::RedisCluster => cfg!(feature = "redis"),
        }
    }

    /// The URL form, as the error messages show it.
    pub fn url_form(self) -> &'static str {
        match self {
            Self::Sled => "sled:///path",
            Self::Postgres => "postgres://",
            Self::Mongo => "mongodb://",
            Self::Redis => "redis://",
            Self::RedisCluster => "redis-cluster://h1:p1,h2:p2",
        }
    }

    /// The backend a (lower-case) scheme names.
    fn of_scheme(scheme: &str) -> Option<Self> {
        Some(match scheme {
            "sled" => Self::Sled,
            "postgres" | "postgresql" => Self::Postgres,
            "mongodb" | "mongodb+srv" => Self::Mongo,
            "redis" | "rediss" => Self::Redis,
            "redis-cluster" => Self::RedisCluster,
            _ => return None,
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sled => "sled",
            Self::Postgres => "PostgreSQL",
            Self::Mongo => "MongoDB",
            Self::Redis => "Redis",
            Self::RedisCluster => "Redis Cluster",
        })
    }
}

/// The URL forms of the backends this build opens, comma-separated (for
/// messages).
pub(crate) fn enabled_forms() -> String {
    let forms: Vec<&str> = Backend::ALL
        .iter()
        .filter(|b| b.is_enabled())
        .map(|b| b.url_form())
        .collect();
    if forms.is_empty() {
        "none (this build enables no backend feature)".to_owned()
    } else {
        forms.join(", ")
    }
}

/// A store URL, read and checked, not yet connected. Parse one with
/// [`str::parse`] or [`StoreUrl::parse`]; open it with
/// [`StoreOpener`](crate::StoreOpener).
///
/// It may hold a password, so it has no `Display`, and its `Debug` shows
/// only the scheme.
///
/// ```
/// use store_url::{Backend, StoreUrl};
/// let url: StoreUrl = "redis-cluster://app:pw@10.0.0.1:7000,10.0.0.2:7000".parse()?;
/// assert_eq!(url.backend(), Backend::RedisCluster);
/// assert_eq!(format!("{url:?}"), r#"StoreUrl { scheme: "redis-cluster", .. }"#);
/// assert!("ftp://host".parse::<StoreUrl>().is_err());
/// # Ok::<(), store_url::OpenError>(())
/// ```
#[derive(Clone)]
pub struct StoreUrl {
    scheme: String,
    backend: Backend,
    pub(crate) target: Target,
}

/// What the driver of a backend is given.
#[derive(Clone)]
pub(crate) enum Target {
    /// A sled database: its directory (`None`: the platform data
    /// directory) and page-cache size.
    Sled {
        path: Option<PathBuf>,
        cache_mb: Option<u64>,
    },
    /// A URL the driver reads itself, as given.
    Driver(String),
    /// One `redis://` URL per cluster node.
    Nodes(Vec<String>),
}

impl StoreUrl {
    /// Read `url`. Fails with [`OpenError::NotAUrl`],
    /// [`OpenError::UnknownScheme`] or [`OpenError::InvalidUrl`], none of
    /// which quotes the URL.
    pub fn parse(url: &str) -> Result<Self, OpenError> {
        let scheme = scheme_of(url).ok_or(OpenError::NotAUrl)?;
        let backend = Backend::of_scheme(&scheme).ok_or_else(|| OpenError::UnknownScheme {
            scheme: scheme.clone(),
        })?;
        let target = match backend {
            Backend::Sled => sled(url)?,
            Backend::Postgres | Backend::Redis => {
                // Checked here, read by the driver.
                Url::parse(url).map_err(|e| invalid(backend, "it does not parse", Some(e)))?;
                Target::Driver(url.to_owned())
            }
            // More than one host is common; the driver reads the form.
            Backend::Mongo => Target::Driver(url.to_owned()),
            Backend::RedisCluster => cluster(url, scheme.len())?,
        };
        Ok(Self {
            scheme,
            backend,
            target,
        })
    }

    /// The backend this URL names.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The scheme, lower-case, as written (`"postgresql"` stays
    /// `"postgresql"`).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }
}

impl FromStr for StoreUrl {
    type Err = OpenError;

    fn from_str(url: &str) -> Result<Self, OpenError> {
        Self::parse(url)
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreUrl")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

fn invalid(backend: Backend, reason: &'static str, source: Option<url::ParseError>) -> OpenError {
    OpenError::InvalidUrl {
        backend,
        reason,
        source,
    }
}

/// The lower-case scheme of `scheme://…` (RFC 3986: a letter, then
/// letters, digits, `+`, `-` or `.`), or `None`.
fn scheme_of(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && scheme.len() <= 32;
    valid.then(|| scheme.to_ascii_lowercase())
}

const SLED_FORM: &str =
    "a sled URL is sled:///absolute/path or sled:// (the platform data directory)";
const SLED_QUERY: &str =
    "a sled URL takes one parameter, cache_mb=<megabytes> (a positive integer)";

/// `sled:///path[?cache_mb=N]`, `sled://localhost/path`, `sled://[?cache_mb=N]`.
fn sled(url: &str) -> Result<Target, OpenError> {
    let parsed = Url::parse(url).map_err(|e| invalid(Backend::Sled, SLED_FORM, Some(e)))?;
    if parsed.fragment().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(Backend::Sled, SLED_FORM, None));
    }
    let path = match (parsed.host_str(), parsed.path()) {
        (None, "") => None,
        (None | Some("localhost"), _) => Some(
            parsed
                .to_file_path()
                .map_err(|()| invalid(Backend::Sled, SLED_FORM, None))?,
        ),
        // `sled://relative/path`: the URL's host would be `relative`.
        (Some(_), _) => return Err(invalid(Backend::Sled, SLED_FORM, None)),
    };
    let mut cache_mb = None;
    for (key, value) in parsed.query_pairs() {
        let mb = value.parse::<u64>().ok().filter(|&mb| mb > 0);
        match (key.as_ref(), mb, cache_mb) {
            ("cache_mb", Some(mb), None) => cache_mb = Some(mb),
            _ => return Err(invalid(Backend::Sled, SLED_QUERY, None)),
        }
    }
    if parsed.query() == Some("") {
        return Err(invalid(Backend::Sled, SLED_QUERY, None));
    }
    Ok(Target::Sled { path, cache_mb })
}

const CLUSTER_FORM: &str =
    "a Redis Cluster URL is redis-cluster://[user:password@]host:port[,host:port…]";

/// `redis-cluster://[user:password@]h1:p1,h2:p2[/][?query]`: one
/// `redis://[user:password@]host:port[?query]` URL per node, each read with
/// the `url` crate.
fn cluster(url: &str, scheme_len: usize) -> Result<Target, OpenError> {
    let rest = &url[scheme_len + "://".len()..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user_info, hosts) = match authority.rsplit_once('@') {
        Some((user_info, hosts)) => (Some(user_info), hosts),
        None => (None, authority),
    };
    let tail = tail.strip_prefix('/').unwrap_or(tail);
    if !(tail.is_empty() || tail.starts_with('?')) {
        // A path (a database number) or a fragment: a cluster has neither.
        return Err(invalid(Backend::RedisCluster, CLUSTER_FORM, None));
    }
    let nodes = hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| {
            let node = match user_info {
                Some(user_info) => format!("redis://{user_info}@{host}{tail}"),
                None => format!("redis://{host}{tail}"),
            };
            let parsed = Url::parse(&node)
                .map_err(|e| invalid(Backend::RedisCluster, CLUSTER_FORM, Some(e)))?;
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(invalid(Backend::RedisCluster, CLUSTER_FORM, None));
            }
            Ok(node)
        })
        .collect::<Result<Vec<String>, OpenError>>()?;
    if nodes.is_empty() {
        return Err(invalid(Backend::RedisCluster, CLUSTER_FORM, None));
    }
    Ok(Target::Nodes(nodes))
}

#[cfg(test)]
mod tests;
