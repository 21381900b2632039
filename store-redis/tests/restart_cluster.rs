//! Rule 18 on Redis Cluster: the conformance case restarts every master
//! (`BROKER_TEST_REDIS_CLUSTER_RESTART_CMD`, `kill -9` and start on the same AOFs)
//! under a workload. In its own test binary, as the restart disturbs every
//! test running beside it.

mod common;
mod restart_common;

async fn factory() -> Option<common::Factory> {
    common::Factory::new(common::Topology::cluster().await).await
}

conformance::restart_suite!(factory);

/// Redis-specific: a revocation marker written before the crash is still
/// kept afterwards (AOF, `appendfsync always`), and the scripts the store
/// runs are loaded again on the restarted server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_survive_the_restart() {
    restart_common::revocations_survive_the_restart(common::Topology::cluster().await).await;
}
