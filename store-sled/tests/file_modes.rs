//! SECURITY.md requirement 20: the sled database's directory and files are
//! created readable by their owner only (0700 / 0600), whatever the umask.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use broker_core::{BrokerStore, Namespace, SessionRecord, unix_now};
use store_sled::SledStore;

/// Every path under `dir` (and `dir` itself) whose group or other bits are set.
fn too_open(dir: &Path, found: &mut Vec<String>) {
    let mode = std::fs::metadata(dir).unwrap().permissions().mode();
    if mode & 0o077 != 0 {
        found.push(format!("{} {:o}", dir.display(), mode & 0o777));
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            too_open(&path, found);
        } else {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            if mode & 0o077 != 0 {
                found.push(format!("{} {:o}", path.display(), mode & 0o777));
            }
        }
    }
}

#[tokio::test]
async fn database_files_are_private_to_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("db");
    {
        let store = SledStore::open(&path)
            .unwrap()
            .with_namespace(Namespace::new("modes").unwrap());
        store.setup().await.unwrap();
        let now = unix_now();
        for i in 0..200 {
            store
                .save_session(&SessionRecord {
                    jti: format!("j{i}"),
                    sub: "s".into(),
                    expires_at: now + 60,
                    auth_time: now,
                    sealed: vec![1; 2048].into(),
                })
                .await
                .unwrap();
        }
        store.flush().await.unwrap();
    }
    let mut found = Vec::new();
    too_open(&path, &mut found);
    assert!(found.is_empty(), "readable by others: {found:?}");
    let files = std::fs::read_dir(&path).unwrap().count();
    assert!(files >= 2, "the database wrote {files} entries");
}
