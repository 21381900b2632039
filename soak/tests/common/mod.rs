//! Helpers shared by the race and soak tests: finding the servers, and
//! running the `broker-soak` worker binary as child processes.

#![allow(dead_code)] // each test binary uses a subset

/// `eprintln!` past the test harness's output capture, so the figures of
/// passing runs (processes, operations, restarts) show in CI logs too.
macro_rules! eprintln {
    ($($arg:tt)*) => {
        conformance::loud(&format!($($arg)*))
    };
}

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use broker_soak::workload::{KEY_ENV, URL_ENV};

/// A backend the cross-process tests run against. `memory://` is not one:
/// each process would get its own empty in-memory store, so nothing would
/// be shared (the in-process tests cover it). `Debug` shows no URL (a test
/// server's URL may hold a password).
#[derive(Clone)]
pub struct Backend {
    /// Short name for the figures.
    pub name: &'static str,
    /// Store URL as `store_url::StoreOpener` takes it.
    pub url: String,
    /// The variable holding the command that restarts the server.
    pub restart_env: Option<&'static str>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("url", &"[REDACTED]")
            .field("restart_env", &self.restart_env)
            .finish()
    }
}

/// `redis://h1:p1,redis://h2:p2` (the test variable) as
/// `redis-cluster://h1:p1,h2:p2` (the store URL; the first node's user and
/// password, if any, apply to every node).
pub fn cluster_url(nodes: &str) -> String {
    use url::Position;
    let urls: Vec<url::Url> = nodes
        .split(',')
        .filter_map(|n| url::Url::parse(n.trim()).ok())
        .collect();
    let hosts: Vec<&str> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let from = if i == 0 {
                Position::BeforeUsername
            } else {
                Position::BeforeHost
            };
            &u[from..Position::AfterPort]
        })
        .collect();
    format!("redis-cluster://{}", hosts.join(","))
}

/// Every server backend that has a server (the others are skipped loudly by
/// `conformance::provision`, and fail under `CI=true`).
pub async fn server_backends() -> Vec<Backend> {
    use conformance::provision::{mongo_url, postgres_url, redis_cluster_urls, redis_url};
    let mut out = Vec::new();
    if let Some(url) = postgres_url().await {
        out.push(Backend {
            name: "postgres",
            url,
            restart_env: Some("BROKER_TEST_POSTGRES_RESTART_CMD"),
        });
    }
    if let Some(url) = redis_url().await {
        out.push(Backend {
            name: "redis",
            url,
            restart_env: Some("BROKER_TEST_REDIS_RESTART_CMD"),
        });
    }
    if let Some(nodes) = redis_cluster_urls().await {
        out.push(Backend {
            name: "redis-cluster",
            url: cluster_url(&nodes),
            restart_env: Some("BROKER_TEST_REDIS_CLUSTER_RESTART_CMD"),
        });
    }
    if let Some(url) = mongo_url().await {
        out.push(Backend {
            name: "mongo",
            url,
            restart_env: Some("BROKER_TEST_MONGO_RESTART_CMD"),
        });
    }
    out
}

/// The worker binary with the store URL and key in its environment.
pub fn worker(url: &str, key_b64: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_broker-soak"));
    cmd.env(URL_ENV, url)
        .env(KEY_ENV, key_b64)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

pub use conformance::process::{Guard, lines};

/// The next line from `rx` parsed as JSON, `None` at the end of output or
/// at the deadline.
pub fn next_json(rx: &Receiver<String>, deadline: Instant) -> Option<serde_json::Value> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) => {
                if let Ok(v) = serde_json::from_str(&line) {
                    return Some(v);
                }
            }
            Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout) => return None,
        }
    }
}

/// Wait for `child` to exit, polling, until `deadline`; `None` if it is
/// still running then.
pub async fn wait_until(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => return None,
        }
    }
}

/// Wall-clock milliseconds since the epoch.
pub fn wall_ms() -> i64 {
    broker_soak::log::wall_ns_now() / 1_000_000
}
