//! `setup` refuses a server whose `maxmemory-policy` may evict the store's
//! keys (issue 15, item 4). The test sets the policy on the shared test
//! servers with `CONFIG SET` and always restores the value it found (a
//! guard restores it even when an assertion fails). In a test binary of its
//! own: no other test of this crate runs `setup` meanwhile.

mod common;

use broker_core::{BrokerStore, Namespace, StoreError};
use common::Topology;
use std::sync::Arc;

use store_redis::{RedisStore, SetupError, redis};

/// Sets `maxmemory-policy` on one server; restores the old value on drop.
struct PolicyGuard {
    url: String,
    original: String,
}

impl PolicyGuard {
    fn set(url: &str, policy: &str) -> Self {
        let mut conn = redis::Client::open(url)
            .expect("url")
            .get_connection()
            .expect("connect");
        let (_, original): (String, String) = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query(&mut conn)
            .expect("CONFIG GET");
        let guard = Self {
            url: url.to_owned(),
            original,
        };
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .query(&mut conn)
            .expect("CONFIG SET");
        guard
    }
}

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        let restored = redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut conn| {
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("maxmemory-policy")
                    .arg(&self.original)
                    .query::<()>(&mut conn)
            });
        if let Err(e) = restored {
            eprintln!(
                "!!! could not restore maxmemory-policy {} on {}: {e}",
                self.original, self.url
            );
        }
    }
}

/// A store on `ns` that opted in to an evicting policy.
async fn allowing(topology: &Topology, ns: &Namespace) -> Arc<dyn BrokerStore> {
    match topology {
        Topology::Single(url) => Arc::new(
            RedisStore::connect(url)
                .await
                .expect("connect")
                .with_namespace(ns.clone())
                .allow_eviction(),
        ),
        Topology::Cluster(urls) => Arc::new(
            RedisStore::connect_cluster(urls)
                .await
                .expect("connect")
                .with_namespace(ns.clone())
                .allow_eviction(),
        ),
    }
}

/// The error and its sources, as text.
fn chain(e: &StoreError) -> String {
    let mut text = format!("{e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(" / {s}"));
        source = s.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_refuses_a_policy_that_can_evict_unless_allowed() {
    let mut cases = Vec::new();
    if let Some(t) = Topology::single().await {
        let url = t.nodes()[0].clone();
        cases.push((t, url, "allkeys-lru"));
    }
    if let Some(t) = Topology::cluster().await {
        // One master of three is enough to be refused: every master counts.
        let url = t.nodes().last().cloned().expect("a master");
        cases.push((t, url, "volatile-ttl"));
    }
    for (topology, url, policy) in cases {
        let ns = Namespace::random("ev").expect("ns");
        let store = topology.open(&ns).await.expect("connect");
        let allowed = allowing(&topology, &ns).await;
        {
            let _guard = PolicyGuard::set(&url, policy);
            let err = store.setup().await.expect_err(&format!(
                "{}: setup accepted maxmemory-policy {policy}",
                topology.name()
            ));
            let text = chain(&err);
            assert!(text.contains(policy), "the error names the policy: {text}");
            assert!(!err.is_retryable(), "{text}");
            let typed = std::error::Error::source(&err)
                .and_then(|s| s.downcast_ref::<SetupError>())
                .cloned();
            assert_eq!(
                typed,
                Some(SetupError::EvictingPolicy {
                    policy: policy.to_owned()
                }),
                "{text}"
            );
            allowed
                .setup()
                .await
                .expect("setup of a store that opted in to eviction");
        }
        store
            .setup()
            .await
            .expect("setup after the policy was restored");
        topology.teardown(&ns).await.expect("teardown");
    }
}
