//! White-box tests: the sled store against the reference `MemoryStore`, and
//! the index invariants after every step.

use std::collections::BTreeSet;

use broker_core::{BrokerStore, MemoryStore, PeerJwks, Revocation, SessionRecord, unix_now};

use crate::codec;

use super::*;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const JTIS: &[&str] = &[
    "a", "b", "c", "ab", "d\u{e9}", "'; DROP", "*", "j7", "j8", "z",
];
const SUBS: &[&str] = &["alice", "bob", "*", "a.*", "al"];

fn temp_store() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path().join("db")).expect("open");
    (dir, store)
}

/// Every session has exactly its two index entries, and every index entry
/// points at a session with those fields; same for revocation markers.
pub(crate) fn check_indexes(store: &SledStore) {
    let t = store.trees("check").expect("trees");
    let mut want_e = BTreeSet::new();
    let mut want_b = BTreeSet::new();
    for item in t.sessions.iter() {
        let (k, v) = item.expect("iter");
        let jti = String::from_utf8(k.to_vec()).expect("utf8 key");
        let s = codec::decode_session("check", jti.clone(), &v).expect("decodes");
        want_e.insert(keys::timed(s.expires_at, &jti));
        want_b.insert(keys::subject(&s.sub, &jti));
    }
    let got_e: BTreeSet<Vec<u8>> = t
        .by_expiry
        .iter()
        .keys()
        .map(|k| k.expect("k").to_vec())
        .collect();
    let got_b: BTreeSet<Vec<u8>> = t
        .by_subject
        .iter()
        .keys()
        .map(|k| k.expect("k").to_vec())
        .collect();
    assert_eq!(got_e, want_e, "expiry index drifted");
    assert_eq!(got_b, want_b, "subject index drifted");
    let mut want_u = BTreeSet::new();
    for item in t.revocations.iter() {
        let (k, v) = item.expect("iter");
        let sub = String::from_utf8(k.to_vec()).expect("utf8 key");
        let r = codec::decode_revocation("check", sub.clone(), &v).expect("decodes");
        want_u.insert(keys::timed(r.keep_until, &sub));
    }
    let got_u: BTreeSet<Vec<u8>> = t
        .revoked_until
        .iter()
        .keys()
        .map(|k| k.expect("k").to_vec())
        .collect();
    assert_eq!(got_u, want_u, "revocation index drifted");
}

async fn scan_all(store: &dyn BrokerStore, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .scan_sessions(cursor.as_deref(), limit)
            .await
            .expect("scan");
        pages.push(page.sessions.iter().map(|s| s.jti.clone()).collect());
        match page.next {
            Some(n) => cursor = Some(n),
            None => return pages,
        }
    }
}

fn kind<T>(r: &broker_core::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{e}"),
    }
}

/// Random operation sequences give the same answers as `MemoryStore`, and
/// the indexes match the data after every step.
#[tokio::test]
async fn behaves_like_the_reference_store() {
    let (_dir, sled_store) = temp_store();
    let sled_store = sled_store.with_durability(Durability::Periodic);
    let memory = MemoryStore::new();
    sled_store.setup().await.expect("setup");
    let now = unix_now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let stores: [&dyn BrokerStore; 2] = [&memory, &sled_store];
    let mut ops_seen = [0usize; 14];

    for step in 0..3000 {
        let op = rng.below(14) as usize;
        ops_seen[op] += 1;
        let jti = rng.pick(JTIS);
        let sub = rng.pick(SUBS);
        // Far from "now" so the clock ticking during the test changes nothing.
        let expires_at = if rng.below(4) == 0 {
            now - 1000
        } else {
            now + 10_000
        };
        let auth_time = now - 500 + rng.below(3) as i64 * 200;
        let sealed = vec![1, rng.below(4) as u8, 7];
        let session = SessionRecord {
            jti: jti.into(),
            sub: sub.into(),
            expires_at,
            auth_time,
            sealed: sealed.clone().into(),
        };
        let mut answers = Vec::new();
        for store in stores {
            let answer = match op {
                0 => kind(&store.create_session(&session).await),
                1 => kind(&store.save_session(&session).await),
                2 => format!(
                    "{:?}",
                    store.get_session(jti).await.map_err(|e| e.to_string())
                ),
                3 => format!(
                    "{:?}",
                    store.take_session(jti).await.map_err(|e| e.to_string())
                ),
                4 => format!(
                    "{:?}",
                    store.delete_session(jti).await.map_err(|e| e.to_string())
                ),
                5 => format!(
                    "{:?}",
                    store
                        .replace_session_blob(jti, &[1, rng.0 as u8 % 4, 7], &[1, 9, 9])
                        .await
                        .map_err(|e| e.to_string())
                ),
                6 => {
                    let keep_until = if rng.0.is_multiple_of(3) {
                        now - 10
                    } else {
                        now + 10_000
                    };
                    let r = Revocation {
                        sub: sub.into(),
                        revoked_at: now - 400,
                        keep_until,
                    };
                    format!(
                        "{:?}",
                        store.revoke_subject(&r).await.map_err(|e| e.to_string())
                    )
                }
                7 => format!(
                    "{:?}",
                    store.purge_expired().await.map_err(|e| e.to_string())
                ),
                8 => format!("{:?}", scan_all(store, 1 + (rng.0 % 3) as usize).await),
                9 => format!("{:?}", store.stats().await.map_err(|e| e.to_string())),
                10 => format!(
                    "{:?} {:?}",
                    store
                        .create_record(sub, &sealed)
                        .await
                        .map_err(|e| e.to_string()),
                    store.list_records().await.map_err(|e| e.to_string())
                ),
                11 => format!(
                    "{:?} {:?}",
                    store
                        .replace_record(sub, &[1, rng.0 as u8 % 4, 7], &[2, 2])
                        .await
                        .map_err(|e| e.to_string()),
                    store.get_record(sub).await.map_err(|e| e.to_string())
                ),
                12 => {
                    let peer = PeerJwks {
                        issuer: format!("https://{sub}"),
                        jwks: format!("{{\"keys\":[],\"n\":{}}}", rng.0 % 5),
                        fetched_at: now,
                    };
                    kind(&store.save_peer(&peer).await)
                }
                _ => format!(
                    "{:?} {:?}",
                    store
                        .delete_peer(&format!("https://{sub}"))
                        .await
                        .map_err(|e| e.to_string()),
                    store.load_peers().await.map_err(|e| e.to_string())
                ),
            };
            answers.push(answer);
        }
        assert_eq!(
            answers[0], answers[1],
            "step {step}, op {op}: memory vs sled"
        );
        check_indexes(&sled_store);
    }
    assert!(
        ops_seen.iter().all(|&n| n > 100),
        "every operation ran: {ops_seen:?}"
    );
}

/// Purge only visits expired entries: with many live sessions stored, the
/// expiry index range it scans holds exactly the expired ones.
#[tokio::test]
async fn purge_scans_only_the_expired_range() {
    let (_dir, store) = temp_store();
    let store = store.with_durability(Durability::Periodic);
    let now = unix_now();
    for i in 0..2000 {
        let expires_at = if i % 100 == 0 { now - 5 } else { now + 3600 };
        store
            .save_session(&SessionRecord {
                jti: format!("j{i:05}"),
                sub: format!("s{}", i % 7),
                expires_at,
                auth_time: now - 10,
                sealed: vec![1, 2, 3].into(),
            })
            .await
            .expect("save");
    }
    let t = store.trees("test").expect("trees");
    let end = keys::ts(now + 1);
    let in_range = t.by_expiry.range(..&end[..]).count();
    assert_eq!(in_range, 20, "the purge range holds only expired entries");
    assert_eq!(store.purge_expired().await.expect("purge"), 20);
    assert_eq!(t.by_expiry.range(..&end[..]).count(), 0);
    assert_eq!(t.sessions.len(), 1980);
    check_indexes(&store);
}

/// Index entries left pointing at nothing (planted here, as a bug or a
/// damaged file could) are dropped by the next purge / revoke, and no call
/// fails on them.
#[tokio::test]
async fn stale_index_entries_break_nothing() {
    let (_dir, store) = temp_store();
    store.setup().await.expect("setup");
    let t = store.trees("test").expect("trees");
    let now = unix_now();
    t.by_expiry
        .insert(keys::timed(now - 10, "ghost"), IVec::default())
        .expect("plant");
    t.by_expiry.insert(b"bad", IVec::default()).expect("plant");
    t.by_subject
        .insert(keys::subject("alice", "ghost"), IVec::default())
        .expect("plant");
    t.revoked_until
        .insert(keys::timed(now - 10, "nobody"), IVec::default())
        .expect("plant");
    // A real session whose expiry index entry was planted with the wrong time.
    let s = SessionRecord {
        jti: "real".into(),
        sub: "alice".into(),
        expires_at: now + 100,
        auth_time: now - 10,
        sealed: vec![1].into(),
    };
    store.save_session(&s).await.expect("save");
    t.by_expiry
        .insert(keys::timed(now - 20, "real"), IVec::default())
        .expect("plant");

    assert_eq!(store.purge_expired().await.expect("purge"), 0);
    assert_eq!(
        store.get_session("real").await.expect("get"),
        Some(s.clone())
    );
    assert_eq!(t.by_expiry.len(), 1);
    assert_eq!(t.revoked_until.len(), 0);
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.live_sessions, 1);
    assert_eq!(stats.subjects, Some(1));
    assert_eq!(
        store
            .revoke_subject(&Revocation::now("alice"))
            .await
            .expect("revoke"),
        1
    );
    assert_eq!(t.by_subject.len(), 0);
    check_indexes(&store);
}

/// The same jti in two namespaces of one database are two sessions.
#[tokio::test]
async fn namespaces_use_separate_trees() {
    let (_dir, store) = temp_store();
    let a = store
        .clone()
        .with_namespace(Namespace::new("ns_a").expect("ns"));
    let b = store.with_namespace(Namespace::new("ns_b").expect("ns"));
    a.setup().await.expect("setup a");
    b.setup().await.expect("setup b");
    let now = unix_now();
    let s = SessionRecord {
        jti: "same".into(),
        sub: "alice".into(),
        expires_at: now + 100,
        auth_time: now,
        sealed: vec![1].into(),
    };
    a.create_session(&s).await.expect("create in a");
    assert_eq!(b.get_session("same").await.expect("get"), None);
    b.create_session(&s)
        .await
        .expect("create in b: no conflict");
    assert_eq!(
        b.revoke_subject(&Revocation::now("alice"))
            .await
            .expect("revoke"),
        1
    );
    assert_eq!(a.get_session("same").await.expect("get"), Some(s));
    assert!(a.tree_names().iter().all(|n| n.starts_with("ns_a/")));
    let names: BTreeSet<Vec<u8>> = a.db().tree_names().iter().map(|n| n.to_vec()).collect();
    for n in a.tree_names().iter().chain(b.tree_names().iter()) {
        assert!(names.contains(n.as_bytes()), "{n} exists");
    }
}

/// Regression: concurrent flushing writers racing transactions deadlocked
/// when flushes ran on sled's own pool (`flush_async`). 64 tasks on 4
/// workers, each write flushed, must finish well within the deadline. The
/// work runs on its own thread and runtime, so a deadlock (which blocks
/// every worker thread) fails this test instead of hanging it.
#[test]
fn concurrent_flushing_writers_do_not_deadlock() {
    let (dir, store) = temp_store();
    assert_eq!(store.durability(), Durability::Flush);
    let store = Arc::new(store);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker_store = Arc::clone(&store);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("runtime");
        let result = runtime.block_on(async move {
            let now = unix_now();
            let mut tasks = Vec::new();
            for w in 0..64u32 {
                let store = Arc::clone(&worker_store);
                tasks.push(tokio::spawn(async move {
                    for i in 0..40u32 {
                        let s = SessionRecord {
                            jti: format!("w{w}-{i}"),
                            sub: format!("s{}", i % 5),
                            expires_at: now + 3600,
                            auth_time: now,
                            sealed: vec![1; 100].into(),
                        };
                        store.save_session(&s).await?;
                        if i % 4 == 0 {
                            store.take_session(&s.jti).await?;
                        }
                    }
                    Ok::<_, StoreError>(())
                }));
            }
            for t in tasks {
                t.await.map_err(|e| StoreError::backend("test", e))??;
            }
            worker_store.stats().await
        });
        let _ = done_tx.send(result);
    });
    let stats = done_rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("writers finished: no deadlock")
        .expect("writes succeeded");
    assert_eq!(stats.live_sessions, 64 * 30);
    check_indexes(&store);
    drop(dir);
}

/// Every file under `dir`, concatenated.
fn all_file_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            out.extend(all_file_bytes(&entry.path()));
        } else {
            out.extend(std::fs::read(entry.path()).expect("read file"));
        }
    }
    out
}

/// The on-disk files hold stored bytes verbatim after a flush (sled's
/// compression is off), so the conformance "no plaintext at rest" case,
/// which reads these files, would see a plaintext secret if one were stored.
#[tokio::test]
async fn flushed_files_hold_stored_bytes_verbatim() {
    let (dir, store) = temp_store();
    let marker = format!("verbatim-marker-{}", unix_now());
    let now = unix_now();
    store
        .save_session(&SessionRecord {
            jti: "m".into(),
            sub: "alice".into(),
            expires_at: now + 100,
            auth_time: now,
            sealed: marker.clone().into_bytes().into(),
        })
        .await
        .expect("save");
    store.flush().await.expect("flush");
    let files = all_file_bytes(dir.path());
    let found = files.windows(marker.len()).any(|w| w == marker.as_bytes());
    assert!(found, "the files hold the stored bytes");
}

/// A store that cached "this namespace has no revocation marker" (its reads
/// skip the marker lookup) still sees a marker written through another
/// store on the same database and namespace, and through a store on another
/// database; after the markers are purged, reads skip the lookup again.
#[tokio::test]
async fn no_marker_cache_follows_markers_written_elsewhere() {
    let (_dir, a) = temp_store();
    let b = SledStore::from_db(a.db().clone());
    let (_other_dir, other) = temp_store();
    let now = unix_now();
    let s = SessionRecord {
        jti: "s1".into(),
        sub: "alice".into(),
        expires_at: now + 100,
        auth_time: now - 10,
        sealed: vec![1, 2, 3].into(),
    };
    a.save_session(&s).await.expect("save");
    // Warm a's cache: no marker anywhere yet in its namespace.
    assert_eq!(a.get_session("s1").await.expect("get"), Some(s.clone()));
    assert!(cache_settles(&a, "s1").await, "a caches 'no markers'");
    // A marker in another database does not hide a's session, but a stops
    // trusting its cache until it re-checked.
    other
        .revoke_subject(&Revocation::now("alice"))
        .await
        .expect("revoke elsewhere");
    assert!(!a.trees("t").expect("trees").markers_absent());
    assert_eq!(a.get_session("s1").await.expect("get"), Some(s.clone()));
    assert!(
        cache_settles(&a, "s1").await,
        "a re-checked and cached again"
    );
    // b revokes alice; a session saved by a afterwards with an older
    // auth_time is not stored, so hidden from a (get, take and scan).
    b.revoke_subject(&Revocation::now("alice"))
        .await
        .expect("revoke");
    a.save_session(&s).await.expect("save again");
    assert_eq!(a.get_session("s1").await.expect("get"), None);
    assert!(!a.trees("t").expect("trees").markers_absent());
    assert_eq!(a.take_session("s1").await.expect("take"), None);
    let page = a.scan_sessions(None, 10).await.expect("scan");
    assert!(page.sessions.is_empty(), "hidden from scan");
    // A session authenticated after the revocation is visible.
    let fresh = SessionRecord {
        jti: "s2".into(),
        auth_time: now + 5,
        ..s.clone()
    };
    a.save_session(&fresh).await.expect("save fresh");
    assert_eq!(a.get_session("s2").await.expect("get"), Some(fresh));
    // Markers purged (keep_until in the past): the cache comes back.
    let t = a.trees("t").expect("trees");
    t.revocations.clear().expect("clear");
    t.revoked_until.clear().expect("clear");
    b.revoke_subject(&Revocation {
        sub: "bob".into(),
        revoked_at: 0,
        keep_until: now - 1,
    })
    .await
    .expect("revoke bob");
    assert_eq!(a.purge_expired().await.expect("purge"), 0);
    assert!(t.revocations.is_empty(), "purged");
    a.save_session(&s)
        .await
        .expect("save once no marker hides it");
    assert_eq!(a.get_session("s1").await.expect("get"), Some(s));
    assert!(cache_settles(&a, "s1").await, "cached again");
    check_indexes(&a);
}

/// Read `jti` until the store trusts its "no markers" cache. Other tests in
/// this process write markers now and then (which makes every store
/// re-check once), so this retries a bounded number of times.
async fn cache_settles(store: &SledStore, jti: &str) -> bool {
    for _ in 0..10_000 {
        store.get_session(jti).await.expect("get");
        if store.trees("t").expect("trees").markers_absent() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

/// Writers of the same sessions from many tasks (save over changing expiry
/// and subject, create, take, delete, blob replace, revoke, purge) leave
/// the indexes exactly matching the data: the per-session locks serialize
/// every writer of one jti. 64 concurrent takers of one session: one wins.
#[test]
fn racing_writers_keep_the_indexes_exact() {
    let (dir, store) = temp_store();
    let store = Arc::new(store.with_durability(Durability::Periodic));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let ops = runtime.block_on(async {
        let now = unix_now();
        let mut tasks = Vec::new();
        for w in 0..16u64 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9 ^ (w + 1));
                let mut ops = 0u64;
                for _ in 0..400 {
                    let jti = rng.pick(JTIS).to_owned();
                    let s = SessionRecord {
                        jti: jti.clone(),
                        sub: rng.pick(SUBS).to_owned(),
                        // Some already expired, so purge has work.
                        expires_at: now - 5 + rng.below(20) as i64,
                        auth_time: now - rng.below(3) as i64,
                        sealed: vec![rng.below(3) as u8 + 1; 8].into(),
                    };
                    let r = match rng.below(8) {
                        0 | 1 => store.save_session(&s).await.map(|_| ()),
                        2 => match store.create_session(&s).await {
                            Err(StoreError::Conflict { .. }) => Ok(()),
                            other => other,
                        },
                        3 => store.take_session(&jti).await.map(|_| ()),
                        4 => store.delete_session(&jti).await.map(|_| ()),
                        5 => store
                            .replace_session_blob(&jti, &[1; 8], &[2; 8])
                            .await
                            .map(|_| ()),
                        6 => store
                            .revoke_subject(&Revocation {
                                sub: s.sub.clone(),
                                revoked_at: now - 2,
                                keep_until: now + rng.below(4) as i64 - 2,
                            })
                            .await
                            .map(|_| ()),
                        _ => store.purge_expired().await.map(|_| ()),
                    };
                    r.expect("operation");
                    ops += 1;
                }
                ops
            }));
        }
        let mut ops = 0;
        for t in tasks {
            ops += t.await.expect("task");
        }
        // 64 takers of one fresh session: exactly one gets it.
        let s = SessionRecord {
            jti: "contended".into(),
            sub: "taker".into(),
            expires_at: now + 100,
            auth_time: now + 1,
            sealed: vec![9; 8].into(),
        };
        store.save_session(&s).await.expect("save");
        let takers: Vec<_> = (0..64)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.take_session("contended").await })
            })
            .collect();
        let mut won = 0;
        for t in takers {
            won += usize::from(t.await.expect("task").expect("take").is_some());
        }
        assert_eq!(won, 1, "exactly one taker wins");
        ops
    });
    eprintln!("racing writers: {ops} operations from 16 tasks, indexes checked");
    check_indexes(&store);
    drop(dir);
}

/// get and take hand out the blob in the buffer sled read, not a copy of it
/// (checked against the buffer sled hands a direct read of the same key).
#[tokio::test]
async fn get_and_take_hand_out_sleds_buffer() {
    let (_dir, store) = temp_store();
    store.setup().await.expect("setup");
    let now = unix_now();
    let s = SessionRecord {
        jti: "j".into(),
        sub: "alice".into(),
        expires_at: now + 100,
        auth_time: now,
        sealed: vec![7; 300].into(),
    };
    store.save_session(&s).await.expect("save");
    let raw = store
        .trees("t")
        .expect("trees")
        .sessions
        .get("j")
        .expect("raw get")
        .expect("stored");
    let within = |sealed: &[u8]| {
        let (o, i) = (raw.as_ptr() as usize, sealed.as_ptr() as usize);
        o <= i && i + sealed.len() <= o + raw.len()
    };
    let got = store.get_session("j").await.expect("get").expect("live");
    assert_eq!(got, s);
    assert!(within(&got.sealed), "get copied the sealed blob");
    let taken = store.take_session("j").await.expect("take").expect("live");
    assert_eq!(taken, s);
    assert!(within(&taken.sealed), "take copied the sealed blob");
}
