//! Behaviour that needs a second process: the database lock, and the
//! platform data directory of `open_default` (set through the child's
//! environment, never this process's). Children are this test binary
//! re-executed with an environment variable selecting the child mode.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Guard, child_test as child, lines, next_marked};

use broker_core::{BrokerStore, StoreError};
use store_sled::{DatabaseLocked, SledStore};

const HOLD_DIR: &str = "STORE_SLED_LOCK_CHILD_DIR";
const DEFAULT_APP: &str = "STORE_SLED_DEFAULT_CHILD_APP";

/// Child: open the database, write a record, say so, and hold the database
/// until stdin closes.
#[tokio::test]
#[ignore = "runs only as the child process of a second_process_gets_a_clear_lock_error"]
async fn lock_holder_child() {
    let Ok(dir) = std::env::var(HOLD_DIR) else {
        eprintln!("lock_holder_child: not started by the lock test; nothing to do");
        return;
    };
    let store = SledStore::open(&dir).expect("child opens the database");
    store
        .create_record("holder", b"child")
        .await
        .expect("write");
    println!("\nopened");
    std::io::stdout().flush().expect("flush");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(store);
}

fn expect_locked(result: Result<SledStore, StoreError>, path: &std::path::Path) {
    let err = result.expect_err("the database is held elsewhere");
    let StoreError::Unavailable { op, source } = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert_eq!(*op, "open");
    let locked = source
        .downcast_ref::<DatabaseLocked>()
        .unwrap_or_else(|| panic!("source is DatabaseLocked: {source:?}"));
    assert_eq!(locked.path(), path);
    let msg = locked.to_string();
    assert!(msg.contains("another process"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn second_process_gets_a_clear_lock_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let mut holder = Guard(
        child("lock_holder_child")
            .env(HOLD_DIR, &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the holder"),
    );
    let out = lines(holder.0.stdout.take().expect("stdout"));
    let deadline = Instant::now() + Duration::from_secs(60);
    assert!(
        next_marked(&out, "opened", deadline).is_some(),
        "the holder opened the database"
    );

    // Refused at once, not after a wait.
    let started = Instant::now();
    expect_locked(SledStore::open(&path), &path);
    assert!(started.elapsed() < Duration::from_secs(5), "no hang");

    // Once the holder exits, the database opens and holds its write.
    drop(holder.0.stdin.take());
    let status = holder.0.wait().expect("holder exits");
    assert!(status.success(), "holder finished cleanly");
    let store = SledStore::open(&path).expect("open after the holder left");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let record = runtime
        .block_on(store.get_record("holder"))
        .expect("read the holder's record");
    assert_eq!(record.as_deref(), Some(&b"child"[..]));
}

#[test]
fn same_process_second_open_is_refused_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let first = SledStore::open(&path).expect("first open");
    expect_locked(SledStore::open(&path), &path);
    // The first handle is unaffected.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime
        .block_on(first.health())
        .expect("first handle works");
}

/// Child: `open_default` under the environment the parent chose; prints
/// where the database went.
#[tokio::test]
#[ignore = "runs only as the child process of open_default_uses_the_platform_data_dir"]
async fn open_default_child() {
    let Ok(app) = std::env::var(DEFAULT_APP) else {
        eprintln!("open_default_child: not started by its test; nothing to do");
        return;
    };
    let store = SledStore::open_default(&app).expect("open_default");
    store.create_record("k", b"v").await.expect("write");
    println!(
        "\npath {}",
        SledStore::default_path(&app).expect("path").display()
    );
}

#[cfg(target_os = "linux")]
#[test]
fn open_default_uses_the_platform_data_dir() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("xdg-data");
    let out = child("open_default_child")
        .env(DEFAULT_APP, "demo-app")
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", &data)
        .output()
        .expect("run the child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .find_map(|l| l.split_once("path ").map(|(_, p)| p))
        .expect("the child printed its path");
    let expected = data.join("demo-app").join(store_sled::DEFAULT_DB_DIR);
    assert_eq!(std::path::Path::new(path), expected);
    assert!(expected.join("db").is_file(), "sled wrote its files there");
}

#[test]
fn default_path_refuses_names_that_escape() {
    for bad in ["", "../x", "a/b", ".hidden", "a\\b", &"x".repeat(65)] {
        let err = SledStore::default_path(bad).expect_err("refused");
        assert!(
            matches!(err, StoreError::InvalidInput { .. }),
            "{bad}: {err:?}"
        );
    }
    let ok = SledStore::default_path("my-app_2.0").expect("accepted");
    assert!(ok.ends_with(store_sled::DEFAULT_DB_DIR));
}
