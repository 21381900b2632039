//! Finding a database server for the server backends' tests.
//!
//! In order: a URL from the environment (`BROKER_TEST_POSTGRES_URL`,
//! `BROKER_TEST_MONGO_URL`, `BROKER_TEST_REDIS_URL`,
//! `BROKER_TEST_REDIS_CLUSTER_URLS`); else, with the `containers` feature,
//! a throwaway container through `testcontainers` when a Docker engine
//! answers; else a loud skip — and under `CI=true` a panic, because in CI a
//! skipped backend is a failure. `scripts/test-all.sh` starts real servers
//! and sets the variables.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::loud;

/// A server kind the suite can be pointed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL.
    Postgres,
    /// MongoDB (or a wire-compatible server).
    Mongo,
    /// A single Redis node.
    Redis,
    /// A Redis Cluster (comma-separated node URLs).
    RedisCluster,
}

impl Server {
    /// The environment variable holding its URL.
    pub fn env_var(self) -> &'static str {
        match self {
            Self::Postgres => "BROKER_TEST_POSTGRES_URL",
            Self::Mongo => "BROKER_TEST_MONGO_URL",
            Self::Redis => "BROKER_TEST_REDIS_URL",
            Self::RedisCluster => "BROKER_TEST_REDIS_CLUSTER_URLS",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL",
            Self::Mongo => "MongoDB",
            Self::Redis => "Redis",
            Self::RedisCluster => "Redis Cluster",
        }
    }
}

/// True when running in CI (`CI=true`), where skips fail.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The URL of a `server` for tests, or `None` after a loud skip notice.
/// Panics under `CI=true` when there is none.
pub async fn server_url(server: Server) -> Option<String> {
    if let Ok(url) = std::env::var(server.env_var())
        && !url.trim().is_empty()
    {
        return Some(url);
    }
    #[cfg(feature = "containers")]
    if let Some(url) = crate::containers::start(server).await {
        return Some(url);
    }
    skip(
        server.label(),
        server.env_var(),
        cfg!(feature = "containers") && server != Server::RedisCluster,
    );
    None
}

/// Report a missing server: loudly, once per server kind and process;
/// panic under `CI=true`.
/// `docker` says whether a container could have been started instead.
pub fn skip(what: &str, env_var: &str, docker: bool) {
    let message = format!(
        "no {what} server: set {env_var} (or run scripts/test-all.sh, which starts one){}",
        if docker {
            ", or start a Docker engine"
        } else {
            ""
        }
    );
    if in_ci() {
        panic!("CI=true and {message}: a skipped backend is a failure in CI");
    }
    banner_once(what, &format!("SKIPPING {what} TESTS: {message}"));
}

/// The value of the environment variable `var`, for a factory that needs
/// it (a server address, a credentials file, ...): `Some(value)` when it is
/// set and not blank; else `None` after a loud notice naming `var`, once per
/// variable and process, and a panic naming `var` under `CI=true`, where a
/// skipped store is a failure.
///
/// ```no_run
/// # struct MyFactory(String);
/// async fn factory() -> Option<MyFactory> {
///     let url = conformance::require_env("MY_STORE_URL")?;
///     Some(MyFactory(url))
/// }
/// ```
pub fn require_env(var: &str) -> Option<String> {
    if let Ok(value) = std::env::var(var)
        && !value.trim().is_empty()
    {
        return Some(value);
    }
    if in_ci() {
        panic!(
            "CI=true and {var} is not set: set {var} to run these conformance tests \
             (a skipped store is a failure in CI)"
        );
    }
    banner_once(
        var,
        &format!("SKIPPING CONFORMANCE TESTS: {var} is not set; set it to run them"),
    );
    None
}

/// Print `text` in a banner past the test harness's capture, the first
/// time `key` is seen in this process.
fn banner_once(key: &str, text: &str) {
    static SHOWN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let first = SHOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(key.to_owned());
    if first {
        loud(&format!(
            "\n================================================================\n\
             {text}\n\
             ================================================================\n"
        ));
    }
}

/// PostgreSQL URL for tests.
pub async fn postgres_url() -> Option<String> {
    server_url(Server::Postgres).await
}

/// MongoDB URL for tests.
pub async fn mongo_url() -> Option<String> {
    server_url(Server::Mongo).await
}

/// Redis (single node) URL for tests.
pub async fn redis_url() -> Option<String> {
    server_url(Server::Redis).await
}

/// Redis Cluster node URLs for tests, comma-separated.
pub async fn redis_cluster_urls() -> Option<String> {
    server_url(Server::RedisCluster).await
}
