//! Rule 18 on a single Redis server: the conformance case restarts it
//! (`BROKER_TEST_REDIS_RESTART_CMD`, a `kill -9` and start on the same AOF)
//! under a workload. In its own test binary, as the restart disturbs every
//! test running beside it.

mod common;
mod restart_common;

async fn factory() -> Option<common::Factory> {
    common::Factory::new(common::Topology::single().await).await
}

conformance::restart_suite!(factory);

/// Redis-specific: a revocation marker written before the crash is still
/// kept afterwards (AOF, `appendfsync always`), and the scripts the store
/// runs are loaded again on the restarted server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_survive_the_restart() {
    restart_common::revocations_survive_the_restart(common::Topology::single().await).await;
}
