//! `MemoryStore` passes every conformance case.

mod common;

use std::sync::Arc;

use broker_core::{BrokerStore, MemoryStore};
use common::MemoryFactory;

async fn factory() -> Option<MemoryFactory<fn(MemoryStore) -> Arc<dyn BrokerStore>>> {
    Some(MemoryFactory {
        db: MemoryStore::new(),
        wrap: |store| Arc::new(store),
    })
}

conformance::test_suite!(factory);
