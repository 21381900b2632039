//! The whole conformance suite against one Redis server
//! (`BROKER_TEST_REDIS_URL`; `scripts/servers/redis.sh start` provides one).

mod common;

async fn factory() -> Option<common::Factory> {
    common::Factory::new(common::Topology::single().await).await
}

conformance::test_suite!(factory);
