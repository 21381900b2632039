//! `memory://`: one `HashMap` operation under its own lock.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use broker_core::StoreError;

use super::{PreloadPlan, RawBaseline};

/// A `Mutex<HashMap>` of `(value, expiry)`.
#[derive(Default)]
pub(crate) struct RawMemory(Mutex<HashMap<String, (Vec<u8>, i64)>>);

impl RawMemory {
    fn map(&self) -> MutexGuard<'_, HashMap<String, (Vec<u8>, i64)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl RawBaseline for RawMemory {
    fn describe(&self) -> &'static str {
        "Mutex<HashMap>: insert / get (clone) / remove / remove"
    }

    async fn save(&self, k: &str, v: &[u8], exp: i64) -> Result<(), StoreError> {
        self.map().insert(k.to_owned(), (v.to_vec(), exp));
        Ok(())
    }

    async fn get(&self, k: &str) -> Result<bool, StoreError> {
        let found = self.map().get(k).map(|(v, exp)| (v.clone(), *exp));
        Ok(black_box(found).is_some())
    }

    async fn take(&self, k: &str) -> Result<bool, StoreError> {
        Ok(black_box(self.map().remove(k)).is_some())
    }

    async fn delete(&self, k: &str) -> Result<bool, StoreError> {
        Ok(self.map().remove(k).is_some())
    }

    fn preload_plan(&self, _concurrency: usize) -> PreloadPlan {
        // One batch under one lock.
        PreloadPlan {
            batch: usize::MAX,
            concurrency: 1,
        }
    }

    async fn insert_batch(
        &self,
        entries: Vec<(String, Vec<u8>)>,
        exp: i64,
    ) -> Result<(), StoreError> {
        let mut map = self.map();
        for (k, v) in entries {
            map.insert(k, (v, exp));
        }
        Ok(())
    }

    async fn drop_all(&self) -> Result<bool, StoreError> {
        self.map().clear();
        Ok(true)
    }
}
