//! Crash safety: a child process writes sessions and prints each write it
//! got acknowledged (durable under `Durability::Flush`); the parent kills it
//! with SIGKILL mid-run, reopens the database and finds every acknowledged
//! session there, readable, with consistent indexes. Three rounds, so the
//! database also survives being reopened after repeated crashes.
//!
//! The child is this test binary re-executed with `CHILD_DIR` set, running
//! only the (ignored) `crash_child` test.

use std::collections::BTreeMap;
mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_core::{BrokerStore, Revocation, SessionRecord, unix_now};
use common::{Guard, child_test, lines, next_marked};
use store_sled::{Durability, SledStore};

const CHILD_DIR: &str = "STORE_SLED_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "STORE_SLED_CRASH_CHILD_ROUND";
/// Kill the child after this many acknowledged writes in a round.
const KILL_AFTER: usize = 150;

/// The session the child writes as number `i` of `round` (the parent
/// rebuilds it to compare every byte).
fn session(round: u32, i: u32) -> SessionRecord {
    let jti = format!("r{round}-{i:06}");
    let len = 64 + (i as usize * 37) % 4000;
    let sealed = (0..len)
        .map(|k| (k as u32 ^ i ^ (round << 8)) as u8)
        .collect();
    SessionRecord {
        sub: format!("user-{}", i % 13),
        expires_at: 4_000_000_000,
        auth_time: 1_000_000,
        sealed,
        jti,
    }
}

/// The child: keep writing from 4 tasks, printing `ack <round> <i>` after
/// each write returned (and so was flushed). Also exercises the other
/// writers (delete, take, revoke) so the log holds multi-tree transactions
/// of every kind when the kill lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "runs only as the child process of sigkill_loses_no_acknowledged_write"]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        eprintln!("crash_child: not started by the crash test; nothing to do");
        return;
    };
    let round: u32 = std::env::var(CHILD_ROUND)
        .ok()
        .and_then(|r| r.parse().ok())
        .expect("round number");
    let store = Arc::new(
        SledStore::open(Path::new(&dir))
            .expect("child opens the database")
            .with_durability(Durability::Flush),
    );
    store.setup().await.expect("setup");
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for worker in 0..4u32 {
        let store = Arc::clone(&store);
        let stdout = Arc::clone(&stdout);
        tasks.push(tokio::spawn(async move {
            // Far more writes than the parent waits for: it kills us first.
            let mut i = worker;
            while i < 1_000_000 {
                let s = session(round, i);
                store.create_session(&s).await.expect("create");
                {
                    use std::io::Write;
                    let mut out = stdout.lock().unwrap_or_else(|e| e.into_inner());
                    // Own line: libtest may have left "test crash_child ... " open.
                    writeln!(out, "\nack {round} {i}").expect("stdout");
                    out.flush().expect("flush stdout");
                }
                // Churn that must not disturb the acknowledged sessions.
                let tmp = SessionRecord {
                    jti: format!("tmp-{round}-{i}"),
                    sub: format!("churn-{}", i % 3),
                    ..session(round, i)
                };
                store.save_session(&tmp).await.expect("save");
                if i % 2 == 0 {
                    store.take_session(&tmp.jti).await.expect("take");
                } else if i % 3 == 0 {
                    store.delete_session(&tmp.jti).await.expect("delete");
                } else if i % 5 == 0 {
                    store
                        .revoke_subject(&Revocation::now(tmp.sub.clone()))
                        .await
                        .expect("revoke");
                }
                i += 4;
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_dir = dir.path().join("db");
    let mut acknowledged: BTreeMap<String, SessionRecord> = BTreeMap::new();

    for round in 0..3u32 {
        let mut child = Guard(
            child_test("crash_child")
                .env(CHILD_DIR, &db_dir)
                .env(CHILD_ROUND, round.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start the child"),
        );
        let out = lines(child.0.stdout.take().expect("child stdout"));
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut acks_this_round = 0;
        while acks_this_round < KILL_AFTER {
            let Some(ack) = next_marked(&out, "ack ", deadline) else {
                panic!("child exited early after {acks_this_round} acks");
            };
            let i = parse_ack(&ack, round);
            let s = session(round, i);
            acknowledged.insert(s.jti.clone(), s);
            acks_this_round += 1;
        }
        child.0.kill().expect("SIGKILL the child"); // SIGKILL on Unix
        let status = child.0.wait().expect("reap the child");
        assert!(!status.success(), "the child was killed, not finished");
        // Lines already in the pipe were acknowledged before the kill.
        let drain = Instant::now() + Duration::from_secs(10);
        while let Some(ack) = next_marked(&out, "ack ", drain) {
            let i = parse_ack(&ack, round);
            let s = session(round, i);
            acknowledged.insert(s.jti.clone(), s);
        }

        verify(&db_dir, &acknowledged);
    }
    assert!(acknowledged.len() >= 3 * KILL_AFTER);
}

/// `<round> <i>` → `i`, checking the round.
fn parse_ack(ack: &str, round: u32) -> u32 {
    let parsed = ack
        .split_once(' ')
        .and_then(|(r, i)| Some((r.parse::<u32>().ok()?, i.trim().parse::<u32>().ok()?)));
    let Some((r, i)) = parsed else {
        panic!("malformed ack line: {ack:?}");
    };
    assert_eq!(r, round, "ack from the current round");
    i
}

/// Reopen after the crash: it succeeds, every acknowledged session reads
/// back exactly, and scan, stats and purge agree (the indexes are intact).
fn verify(db_dir: &Path, acknowledged: &BTreeMap<String, SessionRecord>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = SledStore::open(db_dir).expect("reopen after SIGKILL");
        store.setup().await.expect("setup");
        for (jti, want) in acknowledged {
            let got = store.get_session(jti).await.expect("readable");
            assert!(
                got.as_ref() == Some(want),
                "acknowledged session {jti} did not survive intact: got {:?}",
                got.map(|g| (g.sub, g.expires_at, g.sealed.len()))
            );
        }
        let mut scanned = 0u64;
        let mut user0 = 0u64;
        let mut cursor: Option<String> = None;
        loop {
            let page = store
                .scan_sessions(cursor.as_deref(), 500)
                .await
                .expect("scan");
            scanned += page.sessions.len() as u64;
            user0 += page.sessions.iter().filter(|s| s.sub == "user-0").count() as u64;
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let stats = store.stats().await.expect("stats");
        assert!(scanned >= acknowledged.len() as u64);
        assert_eq!(stats.expired_sessions, 0);
        // Hidden (revoked) churn sessions are stored but not scanned.
        assert!(stats.live_sessions >= scanned, "{stats:?} vs {scanned}");
        assert_eq!(store.purge_expired().await.expect("purge"), 0);
        // A subject revoke finds its sessions through the subject index.
        let sub0: Vec<&SessionRecord> = acknowledged
            .values()
            .filter(|s| s.sub == "user-0")
            .collect();
        let probe = store.clone();
        let revocation = Revocation {
            sub: "user-0".into(),
            revoked_at: 0,
            keep_until: unix_now() - 1,
        };
        // revoked_at 0 hides nothing; keep_until in the past: purged next time.
        let deleted = probe.revoke_subject(&revocation).await.expect("revoke");
        assert_eq!(
            deleted, user0,
            "the subject index finds every session of the subject"
        );
        assert!(deleted >= sub0.len() as u64);
        for s in sub0 {
            probe.save_session(s).await.expect("restore");
        }
        store.flush().await.expect("flush");
    });
}
