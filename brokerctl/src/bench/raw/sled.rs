//! sled: one `insert`, `get` or `remove` on a tree of the store's database,
//! plus a flush after each write when the store flushes its writes.

use std::hint::black_box;

use async_trait::async_trait;
use broker_core::StoreError;
use store_sled::sled;

use super::{PreloadPlan, RawBaseline, driver};

/// A tree of the store's own database.
pub(crate) struct RawSled {
    db: sled::Db,
    tree: sled::Tree,
    name: String,
    flush: bool,
}

impl RawSled {
    /// The tree `name` of `db`; `flush` as the store's durability.
    pub(crate) fn open(db: sled::Db, name: &str, flush: bool) -> Result<Self, StoreError> {
        Ok(Self {
            tree: db.open_tree(name).map_err(driver)?,
            db,
            name: name.to_owned(),
            flush,
        })
    }

    /// Flush as the store does (off the async threads).
    async fn flush_db(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(driver)?
            .map_err(driver)?;
        Ok(())
    }

    async fn flush_if(&self, wrote: bool) -> Result<(), StoreError> {
        if self.flush && wrote {
            self.flush_db().await?;
        }
        Ok(())
    }
}

#[async_trait]
impl RawBaseline for RawSled {
    fn describe(&self) -> &'static str {
        if self.flush {
            "sled Tree: insert+flush / get / remove+flush / remove+flush (the store flushes every write)"
        } else {
            "sled Tree: insert / get / remove / remove"
        }
    }

    async fn save(&self, k: &str, v: &[u8], _exp: i64) -> Result<(), StoreError> {
        self.tree.insert(k.as_bytes(), v).map_err(driver)?;
        self.flush_if(true).await
    }

    async fn get(&self, k: &str) -> Result<bool, StoreError> {
        Ok(black_box(self.tree.get(k.as_bytes()).map_err(driver)?).is_some())
    }

    async fn take(&self, k: &str) -> Result<bool, StoreError> {
        let old = black_box(self.tree.remove(k.as_bytes()).map_err(driver)?);
        self.flush_if(old.is_some()).await?;
        Ok(old.is_some())
    }

    async fn delete(&self, k: &str) -> Result<bool, StoreError> {
        let removed = self.tree.remove(k.as_bytes()).map_err(driver)?.is_some();
        self.flush_if(removed).await?;
        Ok(removed)
    }

    fn preload_plan(&self, _concurrency: usize) -> PreloadPlan {
        // Batches of 1000 one after another, one flush at the end.
        PreloadPlan {
            batch: 1000,
            concurrency: 1,
        }
    }

    async fn insert_batch(
        &self,
        entries: Vec<(String, Vec<u8>)>,
        _exp: i64,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            batch.insert(k.as_bytes(), v);
        }
        self.tree.apply_batch(batch).map_err(driver)
    }

    async fn preloaded(&self) -> Result<(), StoreError> {
        self.flush_db().await
    }

    async fn drop_all(&self) -> Result<bool, StoreError> {
        self.db.drop_tree(self.name.as_bytes()).map_err(driver)?;
        self.flush_db().await?;
        Ok(true)
    }
}
