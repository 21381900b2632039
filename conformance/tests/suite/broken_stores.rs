//! The suite must be able to fail: each store below plants one classic bug,
//! and the case for that rule must fail on it (while passing on the
//! unbroken store, so the failure is the bug's doing).

use std::sync::Arc;

use crate::common::MemoryFactory;
use broker_core::{BrokerStore, MemoryStore};
use conformance::mutants::Mutant;
use conformance::{CASES, Ctx, Outcome, StoreFactory, cases, run_case, run_one};

fn factory(mutant: Option<Mutant>) -> Arc<dyn StoreFactory> {
    match mutant {
        None => Arc::new(MemoryFactory::new(|s: MemoryStore| {
            Arc::new(s) as Arc<dyn BrokerStore>
        })),
        Some(mutant) => Arc::new(MemoryFactory::new(move |inner: MemoryStore| {
            mutant.wrap(inner)
        })),
    }
}

/// Run `case` on the store with `fault` (must fail) and without (must pass).
async fn assert_caught(fault: Mutant, case_name: &str) {
    let case = CASES
        .iter()
        .find(|c| c.name == case_name)
        .expect("a case of that name");
    let clean = run_case(factory(None), case).await;
    assert_eq!(
        clean,
        Ok(Outcome::Passed),
        "{case_name} on the unbroken store"
    );
    match run_case(factory(Some(fault)), case).await {
        Err(failure) => {
            conformance::loud(&format!("caught {fault:?} with {case_name}: {failure}"));
        }
        Ok(outcome) => panic!("{case_name} did not catch {fault:?}: {outcome:?}"),
    }
}

macro_rules! caught {
    ($($test:ident: $fault:ident by $case:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $test() {
            assert_caught(Mutant::$fault, stringify!($case)).await;
        }
    )*};
}

caught! {
    take_that_is_get_then_delete: TakeIsGetThenDelete by rule_09_take_is_atomic_under_64_takers;
    get_that_returns_expired: GetReturnsExpired by rule_07_expired_session_is_never_returned;
    get_that_returns_sessions_expired_while_stored: GetReturnsExpired by rule_07_session_expiring_while_stored_is_gone;
    create_once_that_overwrites: CreateOnceOverwrites by rule_13_create_once_has_one_winner;
    create_session_that_upserts: CreateSessionUpserts by rule_05_create_conflicts_and_keeps_the_first;
    revoke_by_prefix: RevokeByPrefix by rule_10_revoke_removes_exactly_that_subject;
    revoke_without_marker: RevokeByPrefix by rule_10_revocation_beats_refresh_in_flight;
    purge_of_live_sessions: PurgeRemovesLive by rule_11_purge_removes_only_expired;
    scan_with_overlapping_pages: ScanRepeatsLastOfPage by rule_12_scan_returns_every_live_session_once;
    shared_namespace: IgnoresNamespace by rule_03_namespaces_are_isolated;
    save_that_keeps_old_subject: SaveKeepsOldSubject by rule_05_save_replaces_every_field;
    replace_without_compare: ReplaceIgnoresExpected by rule_14_replace_is_explicit_compare_and_set;
    peers_appended: PeersAppend by rule_15_peer_jwks_upsert_and_load_preserve_json;
    take_atomic_only_per_object: TakeAtomicPerObject by rule_09_take_is_atomic_across_store_objects;
    revocation_that_wears_off: RevocationWearsOff by rule_10_revocation_outlives_its_marker;
    revocation_that_wears_off_under_a_race: RevocationWearsOff by rule_10_revoke_racing_save_on_another_store_object;
    revocation_boundary_exclusive: RevocationBoundaryExclusive by rule_10_boundary_is_inclusive;
    revocation_that_replaces: RevocationReplaces by rule_10_later_revocation_only_widens;
    revoke_atomic_only_per_object: RevokeAtomicPerObject by rule_10_revoke_racing_save_on_another_store_object;
    purge_that_keeps_markers: PurgeKeepsMarkers by rule_11_purge_forgets_markers_past_their_keep_time;
    drop_that_keeps_markers: DropKeepsMarkers by rule_03_drop_namespace_removes_revocations;
    scan_by_offset: ScanByOffset by rule_12_scan_while_sessions_change;
}

/// Rule 18: a store that loses acknowledged writes in a restart fails the
/// restart case (which passes on the store that keeps them).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_that_loses_data() {
    let clean = run_case(factory(None), &conformance::cases::RESTART).await;
    assert_eq!(
        clean,
        Ok(Outcome::Passed),
        "restart case on the unbroken store"
    );
    let mut losing = MemoryFactory::new(|s: MemoryStore| Arc::new(s) as Arc<dyn BrokerStore>);
    losing.loses_data_on_restart = true;
    match run_case(Arc::new(losing), &conformance::cases::RESTART).await {
        Err(failure) => conformance::loud(&format!("caught data loss on restart: {failure}")),
        Ok(outcome) => panic!("the restart case did not catch data loss: {outcome:?}"),
    }
}

/// The case table (CASES.md, the `cases` module's docs) lists every case,
/// and every caught mutant by name, so the docs and the suite agree.
#[test]
fn the_case_table_lists_every_case_and_mutant() {
    let table = include_str!("../../CASES.md");
    for case in CASES.iter().chain([&conformance::cases::RESTART]) {
        assert!(
            table.contains(&format!("| `{}` |", case.name)),
            "CASES.md does not list {}",
            case.name
        );
    }
    for mutant in Mutant::ALL {
        assert!(
            table.contains(&format!("`{}`", mutant.name())),
            "CASES.md does not list mutant {}",
            mutant.name()
        );
    }
    for rule in 1..=22 {
        assert!(
            table.contains(&format!("\n| {rule} |")),
            "CASES.md has no row for rule {rule}"
        );
    }
}

#[test]
fn every_case_has_a_unique_rule_named_name() {
    let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    for c in CASES {
        assert!(
            c.name.starts_with(&format!("rule_{:02}_", c.rule)),
            "{}",
            c.name
        );
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), CASES.len());
}

/// The whole suite, as `brokerctl check` runs it, fails on every mutant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_suite_fails_on_every_mutant() {
    // Mutants in parallel: several cases wait for a revocation marker's
    // keep time to pass.
    let runs =
        futures::future::join_all(Mutant::ALL.iter().map(|&mutant| async move {
            (mutant, conformance::run_all(factory(Some(mutant))).await)
        }))
        .await;
    for (mutant, results) in runs {
        assert_eq!(Mutant::from_name(mutant.name()), Some(mutant));
        let failed: Vec<&str> = results
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(c, _)| c.name)
            .collect();
        assert!(!failed.is_empty(), "no case failed on {}", mutant.name());
        conformance::loud(&format!(
            "mutant {}: {} of {} cases failed",
            mutant.name(),
            failed.len(),
            results.len()
        ));
    }
}

/// One case from outside, as a user's own `#[tokio::test]` calls it: the
/// case function itself through `run_one`. It passes on the unbroken store
/// and fails on the store with that rule's bug.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_case_through_run_one() {
    let take = cases::rule_09_take_is_atomic_under_64_takers;
    assert_eq!(run_one(factory(None), take).await, Ok(Outcome::Passed));
    let broken = run_one(factory(Some(Mutant::TakeIsGetThenDelete)), take).await;
    assert!(broken.is_err(), "a non-atomic take passed: {broken:?}");
    // A closure works too: several checks of your own on one namespace.
    let own = run_one(factory(None), async |ctx: &Ctx| {
        ctx.store().setup().await?;
        cases::rule_06_unknown_jti_is_none(ctx).await?;
        cases::rule_08_delete_is_idempotent_and_reports(ctx).await
    })
    .await;
    assert_eq!(own, Ok(Outcome::Passed));
}

/// A `Ctx` built by hand runs cases on a fresh namespace, and `finish`
/// removes what they stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctx_built_by_hand_is_torn_down_by_finish() {
    let memory = Arc::new(MemoryFactory::new(|s: MemoryStore| {
        Arc::new(s) as Arc<dyn BrokerStore>
    }));
    let ctx = Ctx::new(Arc::clone(&memory) as Arc<dyn StoreFactory>)
        .await
        .expect("a context");
    assert_eq!(
        cases::rule_05_create_over_expired_session_succeeds(&ctx).await,
        Ok(Outcome::Passed)
    );
    let ns = ctx.namespace().clone();
    let extra = ctx.open_extra().await.expect("an extra namespace");
    let extra_ns = extra.namespace().clone();
    extra.create_record("r", b"v").await.expect("a record");
    drop(extra);
    ctx.finish().await;
    let left = memory.db.with_namespace(ns);
    assert!(left.get_session("j").await.expect("get").is_none());
    let left = memory.db.with_namespace(extra_ns);
    assert!(left.get_record("r").await.expect("get").is_none());
}

/// Every case has a rule number (read from its name) within the contract's.
#[test]
fn every_case_names_a_contract_rule() {
    for case in CASES.iter().chain([&cases::RESTART]) {
        assert!(
            (1..=22).contains(&case.rule),
            "{}: rule {}",
            case.name,
            case.rule
        );
        assert_eq!(
            conformance::case(case.name).map(|c| c.name),
            Some(case.name)
        );
    }
    assert!(conformance::case("rule_99_nothing").is_none());
}
