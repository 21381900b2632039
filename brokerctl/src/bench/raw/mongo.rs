//! MongoDB: one call per operation on a `{_id, v, exp}` collection of the
//! store's database.

use std::hint::black_box;

use async_trait::async_trait;
use broker_core::StoreError;
use store_mongo::mongodb::bson::{Binary, Document, doc, spec::BinarySubtype};
use store_mongo::mongodb::{Collection, Database};

use super::{PreloadPlan, RawBaseline, driver};

/// The collection `name`.
pub(crate) struct RawMongo(Collection<Document>);

impl RawMongo {
    /// The collection `name` of `db` (created by the first write).
    pub(crate) fn open(db: &Database, name: &str) -> Self {
        Self(db.collection(name))
    }
}

fn entry(k: &str, v: &[u8], exp: i64) -> Document {
    let bin = Binary {
        subtype: BinarySubtype::Generic,
        bytes: v.to_vec(),
    };
    doc! {"_id": k, "v": bin, "exp": exp}
}

#[async_trait]
impl RawBaseline for RawMongo {
    fn describe(&self) -> &'static str {
        "replace_one upsert / find_one / find_one_and_delete / delete_one on {_id, v, exp}"
    }

    async fn save(&self, k: &str, v: &[u8], exp: i64) -> Result<(), StoreError> {
        self.0
            .replace_one(doc! {"_id": k}, entry(k, v, exp))
            .upsert(true)
            .await
            .map_err(driver)?;
        Ok(())
    }

    async fn get(&self, k: &str) -> Result<bool, StoreError> {
        let found = self.0.find_one(doc! {"_id": k}).await.map_err(driver)?;
        Ok(black_box(found).is_some())
    }

    async fn take(&self, k: &str) -> Result<bool, StoreError> {
        let found = self
            .0
            .find_one_and_delete(doc! {"_id": k})
            .await
            .map_err(driver)?;
        Ok(black_box(found).is_some())
    }

    async fn delete(&self, k: &str) -> Result<bool, StoreError> {
        let done = self.0.delete_one(doc! {"_id": k}).await.map_err(driver)?;
        Ok(done.deleted_count > 0)
    }

    fn preload_plan(&self, concurrency: usize) -> PreloadPlan {
        PreloadPlan {
            batch: 1000,
            concurrency: concurrency.min(8),
        }
    }

    async fn insert_batch(
        &self,
        entries: Vec<(String, Vec<u8>)>,
        exp: i64,
    ) -> Result<(), StoreError> {
        let docs: Vec<Document> = entries.iter().map(|(k, v)| entry(k, v, exp)).collect();
        self.0.insert_many(docs).await.map_err(driver)?;
        Ok(())
    }

    async fn drop_all(&self) -> Result<bool, StoreError> {
        self.0.drop().await.map_err(driver)?;
        Ok(true)
    }
}
