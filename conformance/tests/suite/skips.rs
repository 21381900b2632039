//! A factory that returns `None` (no server, no setting): a loud skip, and
//! under `CI=true` a failure whose message says what to set. Each check
//! runs this test binary again as a child process, with or without `CI`
//! and the variable, and reads its exit status and output.

use std::process::Command;
use std::sync::Arc;

use broker_core::{BrokerStore, MemoryStore};

use crate::common::MemoryFactory;

type Factory = MemoryFactory<fn(MemoryStore) -> Arc<dyn BrokerStore>>;

/// Set for the child process only: the `child_*` tests do nothing without it.
const CHILD: &str = "CONFORMANCE_SKIPS_CHILD";
/// The variable the `needs_env` factory asks for.
const VAR: &str = "CONFORMANCE_SELFTEST_STORE_URL";
/// A quick case to run when the factory gives a store.
const CASE: &str = "rule_06_unknown_jti_is_none";

fn memory() -> Factory {
    MemoryFactory::new(|s| Arc::new(s) as Arc<dyn BrokerStore>)
}

/// A factory that gives up without saying why.
async fn bare_none() -> Option<Factory> {
    None
}

/// A factory that needs a variable, read the recommended way.
async fn needs_env() -> Option<Factory> {
    let _url = conformance::require_env(VAR)?;
    Some(memory())
}

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

#[test]
fn child_bare_none() {
    if in_child() {
        conformance::run_named_blocking(CASE, bare_none);
    }
}

#[test]
fn child_needs_env() {
    if in_child() {
        conformance::run_named_blocking(CASE, needs_env);
    }
}

/// Run `test` of this binary in a child process; `ci` sets `CI=true`,
/// `var` sets [`VAR`]. Returns whether it passed and its whole output.
fn run_child(test: &str, ci: bool, var: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env_remove("CI")
        .env_remove(VAR);
    if ci {
        cmd.env("CI", "true");
    }
    if let Some(value) = var {
        cmd.env(VAR, value);
    }
    let out = cmd.output().expect("the test binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("test {test} ")),
        "the child did not run {test}:\n{text}"
    );
    (out.status.success(), text)
}

#[test]
fn bare_none_fails_under_ci_and_points_to_require_env() {
    let (passed, out) = run_child("skips::child_bare_none", true, None);
    assert!(!passed, "a None factory passed under CI=true:\n{out}");
    for needle in ["CI=true", "bare_none", "returned None", "require_env"] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
}

#[test]
fn bare_none_skips_loudly_outside_ci() {
    let (passed, out) = run_child("skips::child_bare_none", false, None);
    assert!(passed, "a None factory failed outside CI:\n{out}");
    assert!(
        out.contains(&format!("SKIPPED {CASE}")),
        "no skip notice in:\n{out}"
    );
}

#[test]
fn missing_variable_fails_under_ci_naming_it() {
    let (passed, out) = run_child("skips::child_needs_env", true, None);
    assert!(!passed, "a missing {VAR} passed under CI=true:\n{out}");
    assert!(
        out.contains(&format!("CI=true and {VAR} is not set")),
        "{out}"
    );
}

#[test]
fn missing_variable_skips_loudly_naming_it() {
    let (passed, out) = run_child("skips::child_needs_env", false, None);
    assert!(passed, "a missing {VAR} failed outside CI:\n{out}");
    assert!(out.contains(&format!("{VAR} is not set")), "{out}");
    assert!(out.contains(&format!("SKIPPED {CASE}")), "{out}");
}

#[test]
fn set_variable_runs_the_case_under_ci() {
    let (passed, out) = run_child("skips::child_needs_env", true, Some("memory://"));
    assert!(passed, "the case failed with {VAR} set:\n{out}");
    assert!(!out.contains("SKIPPED"), "skipped with {VAR} set:\n{out}");
}

/// `require_env` itself, in this process: the variable of this process that
/// is surely set (`PATH`) comes back; a blank or missing one is `None`
/// outside CI (under `CI=true` the child tests above cover it).
#[test]
fn require_env_returns_the_value() {
    assert_eq!(conformance::require_env("PATH"), std::env::var("PATH").ok());
    if !conformance::provision::in_ci() {
        assert_eq!(
            conformance::require_env("CONFORMANCE_SURELY_UNSET_VARIABLE"),
            None
        );
    }
}
