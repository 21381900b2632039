//! Reads never go to a replica, and writes are acknowledged as the README
//! promises, whatever the handed-in `Database` carries: a store built on a
//! handle configured for secondary reads, read concern `local` and
//! unacknowledged writes (`w: 0`) still reads from the primary with
//! `majority` and writes with `majority` + journal, and the contract's key
//! cases hold on it.

mod common;

use std::sync::Arc;

use broker_core::{BrokerStore, Namespace, StoreError};
use store_mongo::MongoStore;
use store_mongo::mongodb::Database;
use store_mongo::mongodb::options::{
    Acknowledgment, DatabaseOptions, ReadConcern, ReadConcernLevel, ReadPreference,
    SelectionCriteria, WriteConcern,
};

/// The options a careless application might hand in.
fn replica_friendly() -> DatabaseOptions {
    DatabaseOptions::builder()
        .selection_criteria(SelectionCriteria::ReadPreference(
            ReadPreference::SecondaryPreferred { options: None },
        ))
        .read_concern(ReadConcern::local())
        .write_concern(WriteConcern::builder().w(Acknowledgment::Nodes(0)).build())
        .build()
}

/// A new client on the test URL and its database with [`replica_friendly`]
/// options.
async fn loose_database(url: &str) -> Result<Database, StoreError> {
    let client = MongoStore::connect(url).await?.database().client().clone();
    let name = client
        .default_database()
        .expect("the test URL names a database")
        .name()
        .to_owned();
    Ok(client.database_with_options(&name, replica_friendly()))
}

/// Every store it opens is built on a handle with [`replica_friendly`]
/// options: `open` on a new client each time, `open_from_handle` on one
/// shared handle.
struct LooseHandleFactory {
    url: String,
    shared: Database,
}

#[conformance::async_trait]
impl conformance::StoreFactory for LooseHandleFactory {
    fn name(&self) -> String {
        "mongo (secondary-preferred, local, w:0 handle)".to_owned()
    }

    async fn open(&self, namespace: &Namespace) -> Result<Arc<dyn BrokerStore>, StoreError> {
        let db = loose_database(&self.url).await?;
        Ok(Arc::new(
            MongoStore::new(db).with_namespace(namespace.clone()),
        ))
    }

    async fn open_from_handle(
        &self,
        namespace: &Namespace,
    ) -> Result<Option<Arc<dyn BrokerStore>>, StoreError> {
        let store = MongoStore::new(self.shared.clone()).with_namespace(namespace.clone());
        Ok(Some(Arc::new(store)))
    }
}

async fn factory() -> Option<LooseHandleFactory> {
    let url = common::mongo_url().await?;
    let shared = loose_database(&url).await.expect("a client");
    Some(LooseHandleFactory { url, shared })
}

#[tokio::test]
async fn the_store_uses_primary_and_its_own_concerns_whatever_the_handle_says() {
    let Some(url) = common::mongo_url().await else {
        return;
    };
    let db = loose_database(&url).await.unwrap();
    let store = MongoStore::new(db.clone()).with_namespace(Namespace::random("cc").unwrap());
    for (what, effective) in [("handed-in", &db), ("store's", store.database())] {
        eprintln!(
            "{what}: {:?} {:?} {:?}",
            effective.selection_criteria(),
            effective.read_concern(),
            effective.write_concern()
        );
    }
    let effective = store.database();
    assert!(
        matches!(
            effective.selection_criteria(),
            Some(SelectionCriteria::ReadPreference(ReadPreference::Primary))
        ),
        "read preference: {:?}",
        effective.selection_criteria()
    );
    assert_eq!(
        effective.read_concern().map(|c| &c.level),
        Some(&ReadConcernLevel::Majority),
        "read concern"
    );
    let wc = effective.write_concern().expect("a write concern");
    assert_eq!(wc.w, Some(Acknowledgment::Majority), "write concern w");
    assert_eq!(wc.journal, Some(true), "write concern j");
    // The handed-in handle itself is left as it was.
    assert!(matches!(
        db.selection_criteria(),
        Some(SelectionCriteria::ReadPreference(
            ReadPreference::SecondaryPreferred { .. }
        ))
    ));
}

/// The contract's key cases, on stores built from such handles.
macro_rules! key_cases {
    ($($name:ident)*) => {
        $(
            #[test]
            fn $name() {
                conformance::run_named_blocking(stringify!($name), factory);
            }
        )*
    };
}

key_cases!(
    rule_02_store_from_existing_handle_shares_data_and_leaves_it_open
    rule_04_save_then_get_returns_exactly_what_was_saved
    rule_05_create_conflicts_and_keeps_the_first
    rule_09_take_is_atomic_across_store_objects
    rule_10_revocation_beats_refresh_in_flight
    rule_10_revoke_racing_save_on_another_store_object
    rule_13_create_once_has_one_winner
    rule_14_replace_is_explicit_compare_and_set
);
