//! The workload and the checker in one process, on `memory://`: a clean
//! store passes, and stores with planted bugs (a take that does not delete,
//! saves that are acknowledged but dropped, reads that ignore expiry, a
//! revocation that keeps no marker, one that wears off) are caught with the
//! matching violation. This proves the checker can fail on
//! real workload logs, not only on hand-made ones (see the unit tests in
//! `src/check.rs`).
//!
//! `memory://` is per process, so it is not in the cross-process tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use broker_core::crypto::EncryptionKey;
use broker_core::{
    BrokerStore, KeyConfig, MemoryStore, Namespace, PeerJwks, Result, Revocation, RevocationPage,
    SessionPage, SessionRecord, StoreStats, TokenVault, unix_now,
};
use broker_soak::check::{Report, ViolationKind};
use broker_soak::log::{read_log_dir, wall_ns_now};
use broker_soak::workload::{Plan, run_work, scan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// take returns the session but leaves it in place (a replayable refresh).
    TakeDoesNotDelete,
    /// every 5th save is acknowledged but not stored.
    DropSomeSaves,
    /// get returns sessions past their expiry.
    IgnoresExpiry,
    /// revoke deletes the subject's sessions but keeps no marker, so a
    /// refresh in flight saves a revoked session back.
    RevokeKeepsNoMarker,
    /// a save a kept marker hides is stored anyway and only hidden while
    /// the marker is kept; purge forgets the marker without deleting it,
    /// and once the keep time is over get and take return it again.
    RevocationWearsOff,
}

#[derive(Debug)]
struct Faulty {
    inner: MemoryStore,
    fault: Fault,
    saves: AtomicU64,
    /// Every session written, for the expiry bug and the marker-less revoke.
    shadow: Mutex<HashMap<String, SessionRecord>>,
    /// Revocations by subject, for the wearing-off bug.
    markers: Mutex<HashMap<String, Revocation>>,
    /// Sessions saved while a kept marker hid them, for the wearing-off bug.
    hidden: Mutex<HashMap<String, SessionRecord>>,
}

impl Faulty {
    fn new(fault: Fault) -> Self {
        Self {
            inner: MemoryStore::new().with_namespace(Namespace::new("soak_mem").unwrap()),
            fault,
            saves: AtomicU64::new(0),
            shadow: Mutex::new(HashMap::new()),
            markers: Mutex::new(HashMap::new()),
            hidden: Mutex::new(HashMap::new()),
        }
    }

    /// Wearing-off bug: keep `s` aside if a kept marker hides it.
    fn stash_if_hidden(&self, s: &SessionRecord) {
        if self.fault != Fault::RevocationWearsOff {
            return;
        }
        let now = unix_now();
        let hides = self
            .markers
            .lock()
            .unwrap()
            .get(&s.sub)
            .is_some_and(|r| r.hides(s.auth_time, now));
        let mut hidden = self.hidden.lock().unwrap();
        if hides {
            hidden.insert(s.jti.clone(), s.clone());
        } else {
            hidden.remove(&s.jti);
        }
    }

    /// Wearing-off bug: a stashed session whose marker is no longer kept.
    fn revived(&self, jti: &str, take: bool) -> Option<SessionRecord> {
        if self.fault != Fault::RevocationWearsOff {
            return None;
        }
        let now = unix_now();
        let mut hidden = self.hidden.lock().unwrap();
        let s = hidden.get(jti)?;
        let kept = self
            .markers
            .lock()
            .unwrap()
            .get(&s.sub)
            .is_some_and(|r| r.hides(s.auth_time, now));
        if kept || !s.is_live_at(now) {
            return None;
        }
        if take {
            hidden.remove(jti)
        } else {
            Some(s.clone())
        }
    }

    fn remember(&self, s: &SessionRecord) {
        self.shadow.lock().unwrap().insert(s.jti.clone(), s.clone());
    }

    fn forget(&self, jti: &str) {
        self.shadow.lock().unwrap().remove(jti);
    }
}

#[async_trait]
impl BrokerStore for Faulty {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        self.inner.sibling(namespace)
    }
    async fn setup(&self) -> Result<()> {
        self.inner.setup().await
    }
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }
    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        self.inner.create_session(session).await?;
        self.stash_if_hidden(session);
        self.remember(session);
        Ok(())
    }
    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        let n = self.saves.fetch_add(1, Ordering::Relaxed);
        if self.fault == Fault::DropSomeSaves && n % 5 == 4 {
            return Ok(());
        }
        self.inner.save_session(session).await?;
        self.stash_if_hidden(session);
        self.remember(session);
        Ok(())
    }
    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        let got = self.inner.get_session(jti).await?;
        if got.is_none() && self.fault == Fault::IgnoresExpiry {
            let shadow = self.shadow.lock().unwrap().get(jti).cloned();
            return Ok(shadow.filter(|s| s.expires_at <= unix_now()));
        }
        Ok(got.or_else(|| self.revived(jti, false)))
    }
    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        if self.fault == Fault::TakeDoesNotDelete {
            return self.inner.get_session(jti).await;
        }
        self.forget(jti);
        let taken = self.inner.take_session(jti).await?;
        Ok(taken.or_else(|| self.revived(jti, true)))
    }
    async fn delete_session(&self, jti: &str) -> Result<bool> {
        self.forget(jti);
        self.hidden.lock().unwrap().remove(jti);
        self.inner.delete_session(jti).await
    }
    async fn replace_session_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        self.inner.replace_session_blob(jti, expected, sealed).await
    }
    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64> {
        let doomed: Vec<String> = {
            let mut shadow = self.shadow.lock().unwrap();
            let doomed = shadow
                .values()
                .filter(|s| s.sub == revocation.sub)
                .map(|s| s.jti.clone())
                .collect();
            shadow.retain(|_, s| s.sub != revocation.sub);
            doomed
        };
        if self.fault == Fault::RevokeKeepsNoMarker {
            let mut n = 0;
            for jti in doomed {
                n += u64::from(self.inner.delete_session(&jti).await?);
            }
            return Ok(n);
        }
        self.markers
            .lock()
            .unwrap()
            .entry(revocation.sub.clone())
            .and_modify(|r| r.merge(revocation))
            .or_insert_with(|| revocation.clone());
        self.inner.revoke_subject(revocation).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        self.inner.purge_expired().await
    }
    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        self.inner.scan_sessions(cursor, limit).await
    }
    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        self.inner.scan_revocations(cursor, limit).await
    }
    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        self.inner.create_record(name, value).await
    }
    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_record(name).await
    }
    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        self.inner.replace_record(name, expected, value).await
    }
    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.inner.list_records().await
    }
    async fn save_peer(&self, peer: &PeerJwks) -> Result<()> {
        self.inner.save_peer(peer).await
    }
    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        self.inner.load_peers().await
    }
    async fn delete_peer(&self, issuer: &str) -> Result<bool> {
        self.inner.delete_peer(issuer).await
    }
    async fn stats(&self) -> Result<StoreStats> {
        self.inner.stats().await
    }
    async fn drop_namespace(&self) -> Result<()> {
        self.inner.drop_namespace().await
    }
}

/// Run 3 mixed, 3 contest and 2 revoke-race tasks for `secs` on a store
/// with `fault`, then check.
async fn run(fault: Fault, secs: i64) -> Report {
    let store = Arc::new(Faulty::new(fault));
    let vault = TokenVault::open(store, KeyConfig::new(EncryptionKey::generate()))
        .await
        .unwrap();
    let vault = Arc::new(vault);
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan {
        worker_index: 0,
        workers: 1,
        tasks: 3,
        contest_tasks: 3,
        race_tasks: 2,
        incarnation: 0,
        until_wall_ms: wall_ns_now() / 1_000_000 + secs * 1000,
        log_dir: dir.path().to_owned(),
        jtis_per_actor: 12,
        subs_per_actor: 3,
        contested_jtis: 4,
        slot_ms: 100,
        pace_ms: 2,
    };
    let totals = run_work(Arc::clone(&vault), &plan).await.unwrap();
    let ops = read_log_dir(dir.path()).unwrap();
    assert_eq!(ops.len() as u64, totals.ops, "every call is in the logs");
    // Let a couple of short-lived sessions expire before the scan, as in the soak.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let scan = scan(&vault).await.unwrap();
    let report = broker_soak::check(&ops, &scan);
    eprintln!(
        "in-process {fault:?}: {}\n  {} violation(s): {:?}",
        report.figures,
        report.violations.len(),
        report
            .violations
            .iter()
            .map(|v| v.kind)
            .collect::<std::collections::BTreeSet<_>>()
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_store_passes() {
    let report = run(Fault::None, 4).await;
    assert!(
        report.violations.is_empty(),
        "{:#?}",
        &report.violations[..report.violations.len().min(10)]
    );
    assert!(report.figures.acknowledged() > 100);
    assert!(report.figures.contested_wins > 0);
    assert!(
        report.figures.final_expected_present > 0,
        "the lost-write check had something to check"
    );
    let race = report.figures.revocation;
    assert!(race.revocations > 0 && race.covered > 0 && race.after > 0);
    assert!(
        race.reads_past_keep > 0,
        "reads reached rounds past the marker's keep time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_that_does_not_delete_is_caught() {
    let report = run(Fault::TakeDoesNotDelete, 3).await;
    assert!(
        report.count(ViolationKind::TakenTwice) > 0,
        "{:?}",
        report.violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_saves_are_caught_as_lost_writes() {
    let report = run(Fault::DropSomeSaves, 3).await;
    assert!(
        report.count(ViolationKind::LostWrite) > 0,
        "{:?}",
        report.violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_expired_sessions_is_caught() {
    let report = run(Fault::IgnoresExpiry, 4).await;
    assert!(
        report.count(ViolationKind::ExpiredReturned) > 0,
        "{:?}",
        report.violations
    );
}

/// Shows a few violations of `kind`, the revoke race's first (the test
/// output records how the checker failed).
fn show(report: &Report, kind: ViolationKind) {
    let mut of_kind: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.kind == kind)
        .collect();
    of_kind.sort_by_key(|v| !v.jti.starts_with("rr"));
    for v in of_kind.into_iter().take(3) {
        eprintln!("  e.g. {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_without_a_marker_is_caught() {
    let report = run(Fault::RevokeKeepsNoMarker, 3).await;
    show(&report, ViolationKind::RevokedReturned);
    assert!(
        report.count(ViolationKind::RevokedReturned) > 0,
        "{:?}",
        report.violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_that_wears_off_is_caught_by_the_revocation_property_alone() {
    let report = run(Fault::RevocationWearsOff, 4).await;
    show(&report, ViolationKind::RevokedReturned);
    assert!(
        report.count(ViolationKind::RevokedReturned) > 0,
        "{:?}",
        report.violations
    );
    // Only the race's markers expire during the run, and nothing but the
    // revocation property judges the race's reads.
    assert_eq!(
        report.count(ViolationKind::RevokedReturned),
        report.violations.len(),
        "{:?}",
        report.violations
    );
}
