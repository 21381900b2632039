//! The whole conformance suite on sled: one named test per contract case.
//!
//! Every case gets its own database in a fresh temporary directory (sled
//! needs no server, so nothing is ever skipped here). The cases' stores on
//! that database share one `sled::Db`, so rule 2 and rule 3 see one database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker_core::{BrokerStore, Namespace, StoreError};
use store_sled::SledStore;

/// Opens stores on one temporary sled database.
struct SledFactory {
    /// The store `open` derives namespaced stores from (opened by path).
    base: SledStore,
    dir: tempfile::TempDir,
}

impl SledFactory {
    fn db_path(&self) -> PathBuf {
        self.dir.path().join("db")
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[conformance::async_trait]
impl conformance::StoreFactory for SledFactory {
    fn name(&self) -> String {
        "sled".into()
    }

    async fn open(&self, namespace: &Namespace) -> Result<Arc<dyn BrokerStore>, StoreError> {
        Ok(Arc::new(
            self.base.clone().with_namespace(namespace.clone()),
        ))
    }

    async fn open_from_handle(
        &self,
        namespace: &Namespace,
    ) -> Result<Option<Arc<dyn BrokerStore>>, StoreError> {
        let db: store_sled::sled::Db = self.base.db().clone();
        Ok(Some(Arc::new(
            SledStore::from_db(db).with_namespace(namespace.clone()),
        )))
    }

    /// Tree names, then every key and value of every tree of the namespace,
    /// then (after a flush) every file of the database directory.
    async fn raw_contents(
        &self,
        namespace: &Namespace,
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let store = self.base.clone().with_namespace(namespace.clone());
        let db = store.db();
        let mut out = Vec::new();
        for name in store.tree_names() {
            let tree = db
                .open_tree(&name)
                .map_err(|e| StoreError::backend("raw_contents", e))?;
            out.push(name.into_bytes());
            for item in tree.iter() {
                let (k, v) = item.map_err(|e| StoreError::backend("raw_contents", e))?;
                out.push(k.to_vec());
                out.push(v.to_vec());
            }
        }
        store.flush().await?;
        let mut files = Vec::new();
        files_under(&self.db_path(), &mut files)
            .map_err(|e| StoreError::backend("raw_contents", e))?;
        assert!(!files.is_empty(), "the database directory holds files");
        for file in files {
            out.push(std::fs::read(&file).map_err(|e| StoreError::backend("raw_contents", e))?);
        }
        Ok(Some(out))
    }

    /// Rule 18 is about a database server going away; sled is embedded and
    /// has none. What it promises instead (acknowledged writes survive the
    /// process being killed; a second process gets a clear lock error) is
    /// tested by `tests/crash.rs` and `tests/processes.rs`.
    async fn restart_server(&self) -> Result<Option<std::time::Duration>, StoreError> {
        Ok(None)
    }

    async fn teardown(&self, namespace: &Namespace) -> Result<(), StoreError> {
        let store = self.base.clone().with_namespace(namespace.clone());
        for name in store.tree_names() {
            store
                .db()
                .drop_tree(&name)
                .map_err(|e| StoreError::backend("teardown", e))?;
        }
        Ok(())
    }
}

async fn factory() -> Option<SledFactory> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let base = SledStore::open(dir.path().join("db")).expect("open a fresh sled database");
    Some(SledFactory { base, dir })
}

conformance::test_suite!(factory);
