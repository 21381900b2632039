//! Contract rule 18 through the conformance case: the server restarts
//! (`BROKER_TEST_MONGO_RESTART_CMD`) under a workload; calls made during the
//! outage fail as `StoreError::Unavailable`, the same store object works
//! again afterwards, and every acknowledged write is still there. In a test
//! binary of its own because the restart disturbs every client of the
//! server.

mod common;

/// Stores with a 500 ms server selection timeout, so calls made while the
/// server is down fail as unavailable instead of waiting for it to return
/// (the default of `MongoStore::connect` is 5 s, longer than the outage).
async fn factory() -> Option<common::MongoFactory> {
    common::factory_for("restart test", |url| {
        common::with_query(url, "serverSelectionTimeoutMS=500")
    })
    .await
}

conformance::restart_suite!(factory);
