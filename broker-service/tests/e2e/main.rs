//! End to end: the real `Broker` against the in-process `TestIdp`
//! (BROKER.md §6 A11–A17, A29, A31), one binary with its own `main`.
//!
//! Every scenario runs on one multi-threaded runtime (at most
//! `E2E_PARALLEL`, default 4, at once) under one TRACE-level capture of
//! every `tracing` event and `log` record; after the last scenario the
//! capture is searched for every secret the run handled (A31). Arguments
//! filter scenarios by substring, as libtest's do; `--list` lists them.
//! Server backends come from `BROKER_TEST_*_URL` (`source
//! /tmp/broker-env.sh`); without one its scenarios skip loudly, and fail
//! under `CI=true`.

mod capture;
mod common;
mod flows;
mod replay;
mod rotation;

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

type Scenario = fn() -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! scenarios {
    ($($path:path),* $(,)?) => {
        &[$((stringify!($path), || Box::pin($path()) as Pin<Box<dyn Future<Output = ()> + Send>>)),*]
    };
}

/// Every scenario, by module::name.
const SCENARIOS: &[(&str, Scenario)] = scenarios![
    rotation::a11_login_and_two_refreshes,
    rotation::a11b_idp_outage_rolls_back,
    rotation::a11b_idp_invalid_grant_logs_out,
    rotation::a12_concurrent_refreshes_strict,
    rotation::a12_concurrent_refreshes_with_grace,
    rotation::a13_a16_replay_after_rotation,
    rotation::a17_wrong_secret_revokes_nothing,
    rotation::a3_access_token_is_not_a_refresh_token,
    rotation::a29_no_refresh_expiry,
    rotation::expiry_follows_the_shared_clock,
    rotation::idp_key_rotation_during_refresh_keeps_the_login,
    replay::a14_memory,
    replay::a14_sled,
    replay::a14_postgres,
    replay::a14_redis,
    replay::a14_redis_cluster,
    replay::a14_mongo,
    replay::a15_two_brokers_memory,
    replay::a15_two_brokers_postgres,
    flows::browser_login_with_verifier_in_state,
    flows::logout_revokes_the_login_and_the_idp_token,
    flows::revocation_ends_the_login,
    flows::userinfo_makes_no_idp_call,
    flows::device_flow,
    flows::token_exchange,
];

/// Write past any capture, to the real stderr.
pub fn loud(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<&(&str, Scenario)> = SCENARIOS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return;
    }
    capture::install();
    let parallel = std::env::var("E2E_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4usize);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    let failed = runtime.block_on(async {
        capture::self_check();
        capture::probe_check().await;
        let permits = Arc::new(tokio::sync::Semaphore::new(parallel));
        let mut set = tokio::task::JoinSet::new();
        println!("\nrunning {} end-to-end scenarios", selected.len());
        for (name, scenario) in selected.iter().copied() {
            let permits = Arc::clone(&permits);
            let (name, scenario) = (*name, *scenario);
            set.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("open semaphore");
                let started = Instant::now();
                let outcome = tokio::spawn(scenario()).await;
                let secs = started.elapsed().as_secs_f64();
                match outcome {
                    Ok(()) => {
                        println!("test {name} ... ok ({secs:.1} s)");
                        None
                    }
                    Err(_) => {
                        println!("test {name} ... FAILED ({secs:.1} s)");
                        Some(name)
                    }
                }
            });
        }
        let mut failed: Vec<&str> = set.join_all().await.into_iter().flatten().collect();
        // A31 over the whole run.
        let text = capture::text();
        let secrets = capture::recorded();
        let leaks = capture::leaks(&text, &secrets);
        println!(
            "A31: TRACE capture of {} bytes searched for {} secret values ({} kinds): {} found",
            text.len(),
            secrets.len(),
            secrets
                .iter()
                .map(|(k, _)| *k)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            leaks.len()
        );
        if !leaks.is_empty() {
            for leak in leaks.iter().take(20) {
                println!("  leak: {leak}");
            }
            if let Ok(path) = std::env::var("E2E_CAPTURE_FILE") {
                let _ = std::fs::write(path, &text);
            }
            failed.push("a31_capture_holds_no_secret");
        }
        failed
    });
    if failed.is_empty() {
        println!("\ntest result: ok. {} passed", selected.len());
    } else {
        println!("\nfailures:\n    {}", failed.join("\n    "));
        println!("\ntest result: FAILED. {} failed", failed.len());
        std::process::exit(101);
    }
}
