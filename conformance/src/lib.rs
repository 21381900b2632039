//! The `BrokerStore` contract (`shared/CONTRACT.md`) as a test suite.
//!
//! Every rule is one or more named cases. A backend, ours or yours, runs the
//! whole suite with one macro call; each case becomes its own `#[test]`, so a
//! failure names the rule it broke:
//!
//! ```no_run
//! use std::sync::Arc;
//! use broker_core::{BrokerStore, MemoryStore, Namespace, StoreError};
//!
//! struct MyFactory(MemoryStore);
//!
//! #[conformance::async_trait]
//! impl conformance::StoreFactory for MyFactory {
//!     fn name(&self) -> String { "my-store".into() }
//!     async fn open(&self, ns: &Namespace) -> Result<Arc<dyn BrokerStore>, StoreError> {
//!         Ok(Arc::new(self.0.with_namespace(ns.clone())))
//!     }
//! }
//!
//! async fn factory() -> Option<MyFactory> {
//!     Some(MyFactory(MemoryStore::new()))
//! }
//!
//! conformance::test_suite!(factory);
//! # fn main() {}
//! ```
//!
//! The cases are also plain data ([`CASES`]) for runners such as
//! `brokerctl check`, and each is a public async function in [`cases`].
//! Every case runs in a fresh random namespace and removes it afterwards
//! ([`StoreFactory::teardown`]), so cases run in parallel without cross-talk.

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;

pub use async_trait::async_trait;
use broker_core::{BrokerStore, Namespace, StoreError};

#[doc = include_str!("../CASES.md")]
pub mod cases;
#[cfg(feature = "containers")]
mod containers;
pub mod hostile;
pub mod mutants;
pub mod process;
pub mod provision;

/// Opens stores of the backend under test, one namespace at a time.
#[async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// A short name for reports, e.g. `"postgres"`.
    fn name(&self) -> String;

    /// A store on `namespace`, not yet set up (the cases call `setup`).
    async fn open(&self, namespace: &Namespace) -> Result<Arc<dyn BrokerStore>, StoreError>;

    /// A store on `namespace` built from a pool, client or handle the
    /// application already holds, sharing it with every other store this
    /// method returns (rule 2). `Ok(None)`: not applicable (the case is
    /// skipped visibly).
    async fn open_from_handle(
        &self,
        _namespace: &Namespace,
    ) -> Result<Option<Arc<dyn BrokerStore>>, StoreError> {
        Ok(None)
    }

    /// Every byte string stored for `namespace` (keys and values), read with
    /// the database's own raw tools (rule 19). `Ok(None)`: unsupported
    /// (the case is skipped visibly).
    async fn raw_contents(
        &self,
        _namespace: &Namespace,
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        Ok(None)
    }

    /// Rule 18: restart the database server the stores talk to, as a crash
    /// would (stop without a clean shutdown, stay down a moment, start),
    /// and return once it accepts connections again, with how long it was
    /// down. `Ok(None)`: this factory cannot restart its server (the case
    /// is skipped visibly). Run the restart case in a test binary of its
    /// own ([`restart_suite!`]): it disturbs every other test on the server.
    async fn restart_server(&self) -> Result<Option<std::time::Duration>, StoreError> {
        Ok(None)
    }

    /// Remove everything stored under `namespace`; called after each case.
    /// Must never touch another namespace. The default opens a store on it
    /// and calls [`BrokerStore::drop_namespace`].
    async fn teardown(&self, namespace: &Namespace) -> Result<(), StoreError> {
        self.open(namespace).await?.drop_namespace().await
    }
}

/// Why a case failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure(format!("unexpected error: {e} ({e:?})"))
    }
}

/// What a case ends with.
pub type CaseResult = Result<Outcome, Failure>;

/// A case that did not fail either passed or could not run on this store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Passed,
    /// The store does not offer what the case needs; says what and why.
    Skipped(String),
}

/// A boxed case future.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

/// One named case of the suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name: `rule_NN_what_it_checks`.
    pub name: &'static str,
    /// The contract rule it checks.
    pub rule: u8,
    /// Runs the case against a prepared context.
    pub run: for<'a> fn(&'a Ctx) -> CaseFuture<'a>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("rule", &self.rule)
            .finish()
    }
}

/// What a case gets: the factory, a store on a fresh namespace, and more
/// namespaces on request (all torn down afterwards).
pub struct Ctx {
    factory: Arc<dyn StoreFactory>,
    store: Arc<dyn BrokerStore>,
    namespaces: std::sync::Mutex<Vec<Namespace>>,
}

impl Ctx {
    /// The store under test, on this case's namespace.
    pub fn store(&self) -> &Arc<dyn BrokerStore> {
        &self.store
    }

    /// The factory under test.
    pub fn factory(&self) -> &dyn StoreFactory {
        self.factory.as_ref()
    }

    /// This case's namespace.
    pub fn namespace(&self) -> &Namespace {
        self.store.namespace()
    }

    /// A fresh namespace, torn down with the case.
    pub fn extra_namespace(&self) -> Namespace {
        let ns = Namespace::random("cf").expect("valid prefix");
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ns.clone());
        ns
    }

    /// Another store object on this case's namespace, from the factory
    /// (for a server backend: its own pool or client), set up.
    pub async fn open_again(&self) -> Result<Arc<dyn BrokerStore>, Failure> {
        let store = self.factory.open(self.namespace()).await?;
        store.setup().await?;
        Ok(store)
    }

    /// A store on a fresh namespace, set up.
    pub async fn open_extra(&self) -> Result<Arc<dyn BrokerStore>, Failure> {
        let ns = self.extra_namespace();
        let store = self.factory.open(&ns).await?;
        store.setup().await?;
        Ok(store)
    }
}

/// Every case, in rule order.
pub const CASES: &[Case] = cases::ALL;

/// Run one case on a fresh namespace and tear it down afterwards.
pub async fn run_case(factory: Arc<dyn StoreFactory>, case: &Case) -> CaseResult {
    let ns = Namespace::random("cf").expect("valid prefix");
    let store = factory.open(&ns).await?;
    let ctx = Ctx {
        factory: Arc::clone(&factory),
        store,
        namespaces: std::sync::Mutex::new(vec![ns]),
    };
    let result = (case.run)(&ctx).await;
    let namespaces = std::mem::take(&mut *ctx.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
    drop(ctx);
    for ns in namespaces {
        if let Err(e) = factory.teardown(&ns).await {
            loud(&format!("conformance: teardown of {ns} failed: {e}"));
        }
    }
    result
}

/// Run every case; returns `(case, result)` in order. Used by runners that
/// report per case (`brokerctl check`).
pub async fn run_all(factory: Arc<dyn StoreFactory>) -> Vec<(&'static Case, CaseResult)> {
    let mut out = Vec::with_capacity(CASES.len());
    for case in CASES {
        out.push((case, run_case(Arc::clone(&factory), case).await));
    }
    out
}

/// Run the named case to completion on its own runtime, panicking on
/// failure; `make` returning `None` means no server (already reported).
/// This is what [`test_suite!`] expands to.
#[doc(hidden)]
pub fn run_named_blocking<F, Fut, Make>(name: &str, make: Make)
where
    F: StoreFactory,
    Fut: Future<Output = Option<F>>,
    Make: FnOnce() -> Fut,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let Some(factory) = make().await else {
            loud(&format!(
                "SKIPPED {name}: no server for this backend (see above)"
            ));
            return;
        };
        let case = CASES
            .iter()
            .chain([&cases::RESTART])
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no conformance case named {name}"));
        let factory: Arc<dyn StoreFactory> = Arc::new(factory);
        match run_case(factory, case).await {
            Ok(Outcome::Passed) => {}
            Ok(Outcome::Skipped(why)) => {
                loud(&format!("SKIPPED {name}: {why}"));
            }
            Err(failure) => panic!("{name} (contract rule {}): {failure}", case.rule),
        }
    });
}

/// Write to the real stderr, past the test harness's capture, so skips are
/// seen even when the test passes.
pub fn loud(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Expands to one `#[test]` per conformance case, each named after its
/// rule, running against the factory `make` returns (`async fn() ->
/// Option<impl StoreFactory>`; `None` = no server, skipped loudly).
#[macro_export]
macro_rules! test_suite {
    ($make:path) => {
        $crate::__cases!($make;
            rule_01_setup_is_idempotent
            rule_02_store_from_existing_handle_shares_data_and_leaves_it_open
            rule_03_namespaces_are_isolated
            rule_03_drop_namespace_removes_it_and_nothing_else
            rule_03_drop_namespace_removes_revocations
            rule_04_save_then_get_returns_exactly_what_was_saved
            rule_04_hostile_keys_are_stored_literally
            rule_04_vault_round_trips_unicode_empty_and_16k
            rule_05_save_replaces_every_field
            rule_05_create_conflicts_and_keeps_the_first
            rule_05_create_over_expired_session_succeeds
            rule_06_unknown_jti_is_none
            rule_07_expired_session_is_never_returned
            rule_07_session_expiring_while_stored_is_gone
            rule_08_delete_is_idempotent_and_reports
            rule_09_take_is_atomic_under_64_takers
            rule_09_take_is_atomic_across_store_objects
            rule_10_revoke_removes_exactly_that_subject
            rule_10_revocation_beats_refresh_in_flight
            rule_10_revocation_outlives_its_marker
            rule_10_boundary_is_inclusive
            rule_10_later_revocation_only_widens
            rule_10_revoke_racing_save_on_another_store_object
            rule_11_purge_removes_only_expired
            rule_11_purge_forgets_markers_past_their_keep_time
            rule_12_scan_returns_every_live_session_once
            rule_12_scan_while_sessions_change
            rule_13_create_once_has_one_winner
            rule_13_signing_key_has_one_winner
            rule_14_replace_is_explicit_compare_and_set
            rule_15_peer_jwks_upsert_and_load_preserve_json
            rule_16_errors_are_typed_and_name_the_operation
            rule_17_invalid_input_is_refused
            rule_17_hostile_input_table_through_the_vault
            rule_19_no_plaintext_at_rest
            rule_20_moved_or_edited_blob_is_tampered
            rule_20_flipped_or_truncated_blob_is_tampered
            rule_20_planted_plaintext_reads_as_corrupt
            rule_21_wrong_key_or_passphrase_fails_at_open
            rule_22_rotation_keeps_old_blobs_and_rekey_moves_them
        );
    };
}

/// Expands to the rule-18 case (`rule_18_server_restart_loses_nothing`)
/// as one `#[test]`, for a test binary of its own: the case restarts the
/// server through [`StoreFactory::restart_server`], which would disturb
/// the other cases running in parallel.
#[macro_export]
macro_rules! restart_suite {
    ($make:path) => {
        #[test]
        fn rule_18_server_restart_loses_nothing() {
            $crate::run_named_blocking("rule_18_server_restart_loses_nothing", $make);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __cases {
    ($make:path; $($name:ident)*) => {
        $(
            #[test]
            fn $name() {
                $crate::run_named_blocking(stringify!($name), $make);
            }
        )*

        #[test]
        fn conformance_macro_lists_every_case() {
            let listed: &[&str] = &[$(stringify!($name)),*];
            let all: Vec<&str> = $crate::CASES.iter().map(|c| c.name).collect();
            assert_eq!(listed, all.as_slice(), "test_suite! and CASES disagree");
        }
    };
}
