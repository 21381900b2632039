//! `MemoryStore` passes every conformance case.

mod common;

use std::sync::Arc;

use broker_core::{BrokerStore, MemoryStore};
use common::MemoryFactory;

async fn factory() -> Option<MemoryFactory<fn(MemoryStore) -> Arc<dyn BrokerStore>>> {
    Some(MemoryFactory::new(|store| {
        Arc::new(store) as Arc<dyn BrokerStore>
    }))
}

conformance::test_suite!(factory);
conformance::restart_suite!(factory);
