//! The whole BrokerStore contract against a MongoDB server
//! (`BROKER_TEST_MONGO_URL`; `scripts/servers/mongo.sh start` provides one).

mod common;

use std::sync::Arc;

use broker_core::{BrokerStore, Namespace, StoreError};
use store_mongo::MongoStore;
use store_mongo::mongodb::Database;
use store_mongo::mongodb::bson::RawDocumentBuf;

/// Opens stores on one database: `open` from the URL (a new client each
/// time), `open_from_handle` on one shared `Database`.
struct MongoFactory {
    url: String,
    db: Database,
}

impl MongoFactory {
    pub async fn new(url: String) -> Result<Self, StoreError> {
        let db = MongoStore::connect(&url).await?.database().clone();
        Ok(Self { url, db })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }
}

async fn factory() -> Option<MongoFactory> {
    let url = common::mongo_url().await?;
    let factory = MongoFactory::new(url)
        .await
        .expect("a MongoDB client for the test URL");
    static ANNOUNCED: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    ANNOUNCED.call_once(|| first = true);
    if first {
        common::announce("conformance", factory.database()).await;
    }
    Some(factory)
}

#[conformance::async_trait]
impl conformance::StoreFactory for MongoFactory {
    fn name(&self) -> String {
        "mongo".to_owned()
    }

    async fn open(&self, namespace: &Namespace) -> Result<Arc<dyn BrokerStore>, StoreError> {
        let store = MongoStore::connect(&self.url).await?;
        Ok(Arc::new(store.with_namespace(namespace.clone())))
    }

    async fn open_from_handle(
        &self,
        namespace: &Namespace,
    ) -> Result<Option<Arc<dyn BrokerStore>>, StoreError> {
        let store = MongoStore::from_database(self.db.clone()).with_namespace(namespace.clone());
        Ok(Some(Arc::new(store)))
    }

    async fn raw_contents(
        &self,
        namespace: &Namespace,
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        Ok(Some(common::raw_documents(&self.db, namespace).await?))
    }

    async fn teardown(&self, namespace: &Namespace) -> Result<(), StoreError> {
        let store = MongoStore::new(self.db.clone()).with_namespace(namespace.clone());
        for name in store.collection_names() {
            self.db
                .collection::<RawDocumentBuf>(&name)
                .drop()
                .await
                .map_err(|e| StoreError::backend("teardown", e))?;
        }
        Ok(())
    }
}

conformance::test_suite!(factory);
