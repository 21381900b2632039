//! Shared test helpers: the server URL and the conformance factory.
#![allow(dead_code)]

use broker_core::{Namespace, StoreError};
use store_mongo::MongoStore;
use store_mongo::mongodb::Database;
use store_mongo::mongodb::bson::{RawDocumentBuf, doc};

/// The test server's URL (`BROKER_TEST_MONGO_URL`, else a testcontainers
/// `mongo` when Docker answers); `None` = no server (skipped loudly, a
/// failure under `CI=true`).
pub async fn mongo_url() -> Option<String> {
    conformance::provision::mongo_url().await
}

/// Which server `db` is, from `buildInfo`: SecantusDB reports its own
/// version next to the MongoDB version it emulates.
pub async fn server_label(db: &Database) -> String {
    match db.run_command(doc! { "buildInfo": 1 }).await {
        Ok(info) => {
            let version = info.get_str("version").unwrap_or("?");
            match info.get_str("secantusVersion") {
                Ok(sec) => format!("SecantusDB {sec} (MongoDB {version} wire protocol)"),
                Err(_) => format!("MongoDB {version}"),
            }
        }
        Err(e) => format!("an unidentified server ({e})"),
    }
}

/// Say which server this test binary runs against, past the test
/// harness's output capture.
pub async fn announce(what: &str, db: &Database) {
    use std::io::Write as _;
    let label = server_label(db).await;
    let _ = writeln!(
        std::io::stderr(),
        "store-mongo {what}: running against {label}"
    );
}

/// Every document of every collection of `namespace`, read with a plain
/// `find` and serialized as the raw BSON bytes the server returned.
pub async fn raw_documents(
    db: &Database,
    namespace: &Namespace,
) -> Result<Vec<Vec<u8>>, StoreError> {
    use futures::TryStreamExt;
    let store = MongoStore::new(db.clone()).with_namespace(namespace.clone());
    let mut out = Vec::new();
    for name in store.collection_names() {
        out.push(name.clone().into_bytes());
        let cursor = db
            .collection::<RawDocumentBuf>(&name)
            .find(doc! {})
            .await
            .map_err(|e| StoreError::backend("raw_contents", e))?;
        let docs: Vec<RawDocumentBuf> = cursor
            .try_collect()
            .await
            .map_err(|e| StoreError::backend("raw_contents", e))?;
        out.extend(docs.into_iter().map(|d| d.as_bytes().to_vec()));
    }
    Ok(out)
}
