//! Cross-process races (contract rules 1 and 13): N = 8 separate OS
//! processes of the `broker-soak` worker start at once against a fresh
//! namespace and each run `setup` and `load_or_create_signing_key` with its
//! own candidate key. Exactly one candidate wins, every process reports the
//! same key (by fingerprint), and no process fails.
//!
//! The barrier: each process connects, prints `{"ready":true}` and blocks
//! on stdin; once all are ready the test writes a line to every stdin at
//! once. sled lets one process at a time open a database, so there the
//! barrier comes before opening and each process retries opening until the
//! lock is free; they must still all end with the same key.
//!
//! `memory://` is not here: it is per process, so separate processes never
//! share a store (nothing to race on).
//!
//! Its own test binary: the soak binary restarts the servers.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use broker_core::Namespace;
use broker_core::crypto::EncryptionKey;
use broker_soak::workload::{RaceOutcome, candidate_pem, fingerprint, open_vault};
use common::{Backend, Guard, lines, next_json, server_backends, worker};
use secrecy::ExposeSecret as _;

const PROCESSES: usize = 8;
const PATIENCE: Duration = Duration::from_secs(120);

/// Start the processes, release them at once, and collect each one's
/// result line (or why it failed). The children are killed on return.
async fn run_processes(
    backend: &Backend,
    ns: &Namespace,
    key: &str,
) -> Result<(Vec<RaceOutcome>, Duration), String> {
    let mut children = Vec::new();
    let mut outputs = Vec::new();
    for _ in 0..PROCESSES {
        let mut child = Guard(
            worker(&backend.url, key)
                .args(["race", "--namespace", ns.as_str()])
                .stdin(Stdio::piped())
                .spawn()
                .map_err(|e| format!("start a worker: {e}"))?,
        );
        outputs.push(lines(child.0.stdout.take().expect("stdout")));
        children.push(child);
    }
    let deadline = Instant::now() + PATIENCE;
    for (i, out) in outputs.iter().enumerate() {
        let ready = next_json(out, deadline);
        if ready.as_ref().and_then(|r| r.get("ready")) != Some(&serde_json::Value::Bool(true)) {
            return Err(format!("process {i} did not get ready: {ready:?}"));
        }
    }
    // Release them all at once.
    let started = Instant::now();
    let mut stdins: Vec<_> = children
        .iter_mut()
        .map(|c| c.0.stdin.take().expect("stdin"))
        .collect();
    for stdin in &mut stdins {
        stdin.write_all(b"go\n").map_err(|e| e.to_string())?;
    }
    for stdin in &mut stdins {
        stdin.flush().map_err(|e| e.to_string())?;
    }
    let mut results = Vec::new();
    for (i, (out, child)) in outputs.iter().zip(children.iter_mut()).enumerate() {
        let result = next_json(out, deadline);
        let status = common::wait_until(&mut child.0, deadline).await;
        let outcome = result
            .clone()
            .and_then(|r| serde_json::from_value::<RaceOutcome>(r).ok());
        match (status, outcome) {
            (Some(s), Some(outcome)) if s.success() => results.push(outcome),
            (status, _) => {
                return Err(format!("process {i} failed ({status:?}): {result:?}"));
            }
        }
    }
    Ok((results, started.elapsed()))
}

async fn race(backend: &Backend) {
    let ns = Namespace::random("race").unwrap();
    let key = EncryptionKey::generate().to_base64();
    let key = key.expose_secret();
    let outcome = run_processes(backend, &ns, key).await;

    // The key a later opener gets; then clean up, whatever happened above.
    let (vault, _) = open_vault(&backend.url, &ns, key, PATIENCE).await.unwrap();
    let stored = vault
        .load_or_create_signing_key(candidate_pem)
        .await
        .map(|pem| fingerprint(&pem));
    vault.store().drop_namespace().await.unwrap();

    let (results, wall) = outcome.unwrap_or_else(|e| panic!("{}: {e}", backend.name));
    let stored = stored.unwrap();
    let fingerprints: BTreeSet<&str> = results.iter().map(|r| r.fingerprint.as_str()).collect();
    let winners = results.iter().filter(|r| r.won).count();
    let offered = results.iter().filter(|r| r.offered).count();
    let refused: u32 = results.iter().map(|r| r.open_refused).sum();
    let slowest = results.iter().map(|r| r.elapsed_ms).max().unwrap_or(0);
    eprintln!(
        "race {}: {PROCESSES} processes, {} distinct key(s), {winners} winner(s) \
         among {offered} that found no key and offered theirs, \
         wall {:.0} ms from release to last exit, slowest process {slowest} ms, \
         {refused} refused opens (held by another process)",
        backend.name,
        fingerprints.len(),
        wall.as_secs_f64() * 1e3,
    );
    assert_eq!(results.len(), PROCESSES);
    assert_eq!(
        fingerprints.len(),
        1,
        "{}: several keys won: {fingerprints:?}",
        backend.name
    );
    assert_eq!(
        winners, 1,
        "{}: {winners} processes think their key won",
        backend.name
    );
    assert!(
        fingerprints.contains(stored.as_str()),
        "{}: a later opener gets another key",
        backend.name
    );
}

async fn race_server(name: &str) {
    let backends = server_backends().await;
    let Some(backend) = backends.iter().find(|b| b.name == name) else {
        return; // skipped loudly by conformance::provision (a failure under CI=true)
    };
    race(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_postgres() {
    race_server("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_redis() {
    race_server("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_redis_cluster() {
    race_server("redis-cluster").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_mongo() {
    race_server("mongo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_sled() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend {
        name: "sled",
        url: format!("sled://{}", dir.path().join("db").display()),
        restart_env: None,
    };
    race(&backend).await;
}
