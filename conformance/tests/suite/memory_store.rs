//! `MemoryStore` passes every conformance case.

use std::sync::Arc;

use crate::common::MemoryFactory;
use broker_core::{BrokerStore, MemoryStore};

async fn factory() -> Option<MemoryFactory<fn(MemoryStore) -> Arc<dyn BrokerStore>>> {
    Some(MemoryFactory::new(|store| {
        Arc::new(store) as Arc<dyn BrokerStore>
    }))
}

conformance::test_suite!(factory);
conformance::restart_suite!(factory);
