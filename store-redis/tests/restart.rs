//! Rule 18 on a single Redis server: restart it under a workload.
//! In its own test binary, as the restart disturbs every test running beside it.

mod common;

use std::sync::Arc;

use broker_core::Namespace;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_restart_under_workload() {
    let Some(topology) = common::Topology::single().await else {
        return;
    };
    let Some(cmd) = common::restart_cmd("BROKER_TEST_REDIS_RESTART_CMD") else {
        return;
    };
    let ns = Namespace::random("restart").expect("namespace");
    let store = topology.open(&ns).await.expect("connect");
    common::restart_under_workload(Arc::clone(&store), &cmd).await;
    topology.teardown(&ns).await.expect("teardown");
}
