//! Contract rule 18: the server restarts under a workload. Operations made
//! during the outage fail as `StoreError::Unavailable` (never a panic or a
//! hang), the same store object works again afterwards, and every write
//! acknowledged before or around the restart is still there.
//!
//! Runs `BROKER_TEST_MONGO_RESTART_CMD` (set by `scripts/servers/mongo.sh
//! start`). In its own test binary because it disturbs every client of the
//! server.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use broker_core::{BrokerStore, Namespace, SessionRecord, StoreError, unix_now};
use store_mongo::MongoStore;

/// Longest any single operation may take: the store's operation timeout
/// plus slack. Operations of the workload store fail much faster (its
/// server selection timeout is 500 ms).
const MAX_OP: Duration = Duration::from_secs(25);

fn session(jti: String) -> SessionRecord {
    SessionRecord {
        jti,
        sub: "restart-subject".to_owned(),
        expires_at: unix_now() + 3600,
        auth_time: unix_now(),
        sealed: vec![1, 2, 3, 4, 5, 6, 7, 8],
    }
}

#[derive(Default)]
struct Tally {
    acknowledged: Vec<String>,
    unavailable: usize,
    other: Vec<String>,
    slowest: Duration,
}

fn with_query(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_under_load_costs_unavailable_errors_then_recovers() {
    let Some(url) = common::mongo_url().await else {
        return;
    };
    let Ok(restart_cmd) = std::env::var("BROKER_TEST_MONGO_RESTART_CMD") else {
        let msg = "SKIP restart test: BROKER_TEST_MONGO_RESTART_CMD is not set \
                   (scripts/servers/mongo.sh start sets it)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("{msg}");
        return;
    };
    let ns = Namespace::random("rs").unwrap();
    // A short server selection timeout so the outage shows as errors instead
    // of operations that wait until the server is back.
    let store = Arc::new(
        MongoStore::connect(&with_query(&url, "serverSelectionTimeoutMS=500"))
            .await
            .unwrap()
            .with_namespace(ns.clone()),
    );
    store.setup().await.unwrap();
    common::announce("restart test", store.database()).await;

    let mut before = Vec::new();
    for i in 0..200 {
        let s = session(format!("before-{i}"));
        store.save_session(&s).await.unwrap();
        before.push(s.jti);
    }
    store
        .create_record("signing-key", b"sealed-key")
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let store = Arc::clone(&store);
        let stop = Arc::clone(&stop);
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let jti = format!("during-{w}-{i}");
                let started = Instant::now();
                match store.save_session(&session(jti.clone())).await {
                    // Remember only saves the server acknowledged.
                    Ok(()) => tally.acknowledged.push(jti),
                    Err(StoreError::Unavailable { .. }) => tally.unavailable += 1,
                    Err(e) => tally.other.push(format!("save: {e} ({e:?})")),
                }
                match store.get_session(&format!("before-{}", i % 200)).await {
                    Ok(Some(_)) => {}
                    Ok(None) => tally.other.push("a session saved before is missing".into()),
                    Err(StoreError::Unavailable { .. }) => tally.unavailable += 1,
                    Err(e) => tally.other.push(format!("get: {e} ({e:?})")),
                }
                tally.slowest = tally.slowest.max(started.elapsed());
                if started.elapsed() < Duration::from_millis(5) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            tally
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cmd = restart_cmd.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
    })
    .await
    .unwrap()
    .expect("run the restart command");
    assert!(
        output.status.success(),
        "restart command failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let restarted_at = Instant::now();

    // The same store object works again, within seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.health().await {
            Ok(()) => break,
            Err(StoreError::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("store did not recover after the restart: {e} ({e:?})"),
        }
    }
    eprintln!(
        "recovered {:?} after the restart command returned",
        restarted_at.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = Tally::default();
    for worker in workers {
        let t = worker.await.expect("worker panicked");
        total.acknowledged.extend(t.acknowledged);
        total.unavailable += t.unavailable;
        total.other.extend(t.other);
        total.slowest = total.slowest.max(t.slowest);
    }
    eprintln!(
        "workload: {} acknowledged saves, {} unavailable errors, slowest round {:?}",
        total.acknowledged.len(),
        total.unavailable,
        total.slowest
    );
    assert!(
        total.other.is_empty(),
        "errors other than Unavailable: {:?}",
        total.other
    );
    assert!(
        total.unavailable > 0,
        "the outage produced no Unavailable error"
    );
    assert!(
        total.slowest < MAX_OP,
        "an operation hung for {:?}",
        total.slowest
    );
    assert!(!total.acknowledged.is_empty());

    // Nothing acknowledged is lost: before the restart or around it.
    let mut missing = BTreeSet::new();
    for jti in before.iter().chain(&total.acknowledged) {
        if store.get_session(jti).await.unwrap().is_none() {
            missing.insert(jti.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged sessions lost: {missing:?}",
        missing.len()
    );
    assert_eq!(
        store.get_record("signing-key").await.unwrap(),
        Some(b"sealed-key".to_vec())
    );
    // Writes work too.
    store.save_session(&session("after".into())).await.unwrap();
    assert!(store.take_session("after").await.unwrap().is_some());

    for name in store.collection_names() {
        store
            .database()
            .collection::<store_mongo::mongodb::bson::Document>(&name)
            .drop()
            .await
            .unwrap();
    }
}
