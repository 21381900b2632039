//! Shared test helpers: the server URL, the conformance factory, and a
//! latency proxy.
#![allow(dead_code)]

pub mod proxy;

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_core::{BrokerStore, Namespace, StoreError};
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

/// `url` with one more query parameter.
pub fn with_query(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// Opens stores on one database: `open` from the URL (a new client each
/// time, so `open_again` gets a pool of its own), `open_from_handle` on
/// one shared `Database`; `restart_server` runs
/// `BROKER_TEST_MONGO_RESTART_CMD`.
pub struct MongoFactory {
    url: String,
    db: Database,
}

impl MongoFactory {
    /// A factory whose stores connect to `url`.
    pub async fn new(url: String) -> Result<Self, StoreError> {
        let db = MongoStore::connect(&url).await?.database().clone();
        Ok(Self { url, db })
    }

    /// The shared handle.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

/// The factory for the test URL, announcing the server once per binary;
/// `None` when there is no server (reported loudly).
pub async fn factory_for(what: &str, tweak: fn(&str) -> String) -> Option<MongoFactory> {
    let url = tweak(&mongo_url().await?);
    let factory = MongoFactory::new(url)
        .await
        .expect("a MongoDB client for the test URL");
    static ANNOUNCED: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    ANNOUNCED.call_once(|| first = true);
    if first {
        announce(what, factory.database()).await;
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
        Ok(Some(raw_documents(&self.db, namespace).await?))
    }

    /// Runs `BROKER_TEST_MONGO_RESTART_CMD` (`scripts/servers/mongo.sh
    /// restart`: stop the server, start it on the same data, return once it
    /// answers a ping). The downtime reported is how long the command ran,
    /// an upper bound: the server stops at its start and answers again at
    /// its end. A missing command skips the case, or fails it under
    /// `CI=true`.
    async fn restart_server(&self) -> Result<Option<Duration>, StoreError> {
        let Ok(cmd) = std::env::var("BROKER_TEST_MONGO_RESTART_CMD") else {
            let msg = "BROKER_TEST_MONGO_RESTART_CMD is not set \
                       (scripts/servers/mongo.sh start prints it)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
            conformance::loud(&format!("store-mongo: {msg}"));
            return Ok(None);
        };
        let started = Instant::now();
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .await
            .map_err(|e| StoreError::backend("restart_server", e))?;
        let down = started.elapsed();
        assert!(
            output.status.success(),
            "the restart command failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        conformance::loud(&format!(
            "store-mongo: server restarted, down for at most {down:?}"
        ));
        Ok(Some(down))
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
