//! The whole `BrokerStore` contract against a real PostgreSQL (one test per
//! case). Needs `BROKER_TEST_POSTGRES_URL` (`eval "$(scripts/servers/postgres.sh start)"`);
//! skipped loudly without it, a failure under `CI=true`.

mod common;

async fn factory() -> Option<common::PgFactory> {
    common::PgFactory::new().await
}

conformance::test_suite!(factory);
