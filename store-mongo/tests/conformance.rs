//! The whole BrokerStore contract against a MongoDB server
//! (`BROKER_TEST_MONGO_URL`; `scripts/servers/mongo.sh start` provides one).

mod common;

async fn factory() -> Option<common::MongoFactory> {
    common::factory_for("conformance", str::to_owned).await
}

conformance::test_suite!(factory);
