//! The whole conformance suite against a 3-master Redis Cluster
//! (`BROKER_TEST_REDIS_CLUSTER_URLS`; `scripts/servers/redis.sh start` provides one).

mod common;

async fn factory() -> Option<common::Factory> {
    common::Factory::new(common::Topology::cluster().await).await
}

conformance::test_suite!(factory);
