//! The whole contract again on pools set up the way applications and
//! poolers set them up, which the store must not depend on:
//!
//! - `serializable`: every connection defaults to `SERIALIZABLE`
//!   transactions (`SET default_transaction_isolation` in `after_connect`).
//!   The store pins `READ COMMITTED` per transaction, so e.g. of 64
//!   concurrent takers one gets the session and the others `None`, never a
//!   serialization failure.
//! - `no_statement_cache`: sqlx's statement cache off and the store's
//!   statements unnamed, as behind PgBouncer in transaction mode (no
//!   prepared statement is reused, no session state is relied on).

mod common;

async fn serializable_factory() -> Option<common::PgFactory> {
    common::PgFactory::with_flavor(common::Flavor::Serializable).await
}

async fn no_statement_cache_factory() -> Option<common::PgFactory> {
    common::PgFactory::with_flavor(common::Flavor::NoStatementCache).await
}

mod serializable {
    conformance::test_suite!(super::serializable_factory);
}

mod no_statement_cache {
    conformance::test_suite!(super::no_statement_cache_factory);
}
