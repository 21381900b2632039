#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

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

pub use provision::require_env;

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
/// namespaces on request (all torn down by [`Ctx::finish`]).
///
/// [`run_one`] builds one, runs a case on it and finishes it; build one
/// yourself to run several checks on one namespace.
pub struct Ctx {
    factory: Arc<dyn StoreFactory>,
    store: Arc<dyn BrokerStore>,
    namespaces: std::sync::Mutex<Vec<Namespace>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("factory", &self.factory.name())
            .field("namespace", self.namespace())
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// A context on a fresh random namespace, with a store on it from
    /// `factory` (not set up yet: every case calls `setup` first). Call
    /// [`Ctx::finish`] when done, so the namespaces are torn down.
    pub async fn new(factory: Arc<dyn StoreFactory>) -> Result<Self, Failure> {
        let ns = Namespace::random("cf")?;
        let store = factory.open(&ns).await?;
        Ok(Self {
            factory,
            store,
            namespaces: std::sync::Mutex::new(vec![ns]),
        })
    }

    /// Tear down every namespace this context made, through
    /// [`StoreFactory::teardown`]; a failed teardown is reported loudly,
    /// not returned (the case's own result matters more).
    pub async fn finish(self) {
        let namespaces =
            std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        let factory = Arc::clone(&self.factory);
        drop(self);
        for ns in namespaces {
            if let Err(e) = factory.teardown(&ns).await {
                loud(&format!("conformance: teardown of {ns} failed: {e}"));
            }
        }
    }

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

/// Every case, in rule order (the restart case, [`cases::RESTART`], apart).
pub const CASES: &[Case] = cases::ALL;

/// The case named `name` (restart case included), if there is one.
pub fn case(name: &str) -> Option<&'static Case> {
    CASES
        .iter()
        .chain([&cases::RESTART])
        .find(|c| c.name == name)
}

/// Run one case function of [`cases`] on `factory`, in a fresh namespace
/// torn down afterwards: the way to check a single rule from your own test.
///
/// ```no_run
/// # use std::sync::Arc;
/// # async fn f(factory: Arc<dyn conformance::StoreFactory>) {
/// use conformance::{Outcome, cases, run_one};
/// let outcome = run_one(factory, cases::rule_09_take_is_atomic_under_64_takers).await;
/// assert_eq!(outcome, Ok(Outcome::Passed));
/// # }
/// ```
pub async fn run_one(
    factory: Arc<dyn StoreFactory>,
    case: impl AsyncFnOnce(&Ctx) -> CaseResult,
) -> CaseResult {
    let ctx = Ctx::new(factory).await?;
    let result = case(&ctx).await;
    ctx.finish().await;
    result
}

/// Run one [`Case`] on a fresh namespace and tear it down afterwards.
pub async fn run_case(factory: Arc<dyn StoreFactory>, case: &Case) -> CaseResult {
    let ctx = Ctx::new(factory).await?;
    let result = (case.run)(&ctx).await;
    ctx.finish().await;
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
/// failure. `make` returning `None` is a loud skip, and a failure under
/// `CI=true` (see [`require_env`]). This is what [`test_suite!`] expands to.
#[doc(hidden)]
pub fn run_named_blocking<F, Fut, Make>(name: &str, make: Make)
where
    F: StoreFactory,
    Fut: Future<Output = Option<F>>,
    Make: FnOnce() -> Fut,
{
    let case = case(name).unwrap_or_else(|| panic!("no conformance case named {name}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let Some(factory) = make().await else {
            no_factory(name, std::any::type_name::<Make>());
            return;
        };
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

/// A factory function returned `None`: fail under `CI=true`, else skip loudly.
fn no_factory(case: &str, make: &str) {
    if provision::in_ci() {
        panic!(
            "CI=true and the factory `{make}` returned None, so {case} did not run: \
             an untested store is a failure in CI. If the factory needs a server \
             address or another setting, read it with \
             `conformance::require_env(\"YOUR_VARIABLE\")?`, which names the variable \
             to set when it is missing."
        );
    }
    loud(&format!(
        "SKIPPED {case}: the factory `{make}` returned None (a failure under CI=true)"
    ));
}

/// Write to the real stderr, past the test harness's capture, so skips are
/// seen even when the test passes.
pub fn loud(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Expands to one `#[test]` per conformance case, each named after its
/// case, running against the factory `make` returns (`async fn() ->
/// Option<impl StoreFactory>`). `None` is a loud skip, and a failure under
/// `CI=true`: read what the factory needs with [`require_env`], so the
/// message names the variable to set.
#[macro_export]
macro_rules! test_suite {
    ($make:path) => {
        $crate::__case_list!(tests $make);
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
