//! The whole contract through PgBouncer in transaction-pooling mode
//! (`scripts/servers/pgbouncer.sh`, which sets `BROKER_TEST_PGBOUNCER_URL`),
//! with sqlx's statement cache off and the store's statements unnamed
//! (`with_prepared_statements(false)`): between two transactions PgBouncer
//! may hand the client's next transaction to another server connection, so
//! nothing may rely on session state. Raw reads and teardown go to
//! PostgreSQL directly. Skipped loudly without the URL; a failure under
//! `CI=true`.

mod common;

async fn factory() -> Option<common::PgFactory> {
    let direct = common::postgres_url().await?;
    let Some(bouncer) = std::env::var("BROKER_TEST_PGBOUNCER_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        conformance::provision::skip("PgBouncer", "BROKER_TEST_PGBOUNCER_URL", false);
        return None;
    };
    Some(common::PgFactory::on(bouncer, direct, common::Flavor::NoStatementCache).await)
}

conformance::test_suite!(factory);
