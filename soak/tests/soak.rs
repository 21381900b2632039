//! The soak: a mixed workload (save, create, get, take, delete,
//! revoke-by-subject, purge, and contested takes of the same jti by every
//! process at the same moment) plus the revoke race (a revocation of a
//! subject racing every process's saves of it, then reads past the
//! marker's keep time) from several OS processes for a bounded time
//! against each backend, with one restart in the middle, then the checker
//! (`broker_soak::check`) over every logged call and a final scan: no
//! acknowledged write lost, no session taken twice, no expired session
//! returned, no revoked session returned after its revocation (see the
//! checker's docs for the full list).
//!
//! - Server backends (PostgreSQL, Redis, Redis Cluster, MongoDB): 4 worker
//!   processes (2 mixed tasks + 1 contest task + 1 revoke-race task
//!   each), and one server
//!   restart (`BROKER_TEST_<NAME>_RESTART_CMD`, run with `sh -c`) at
//!   30-50 % of the run. Calls during the outage fail (logged; the workers
//!   back off and continue); every actor must have calls acknowledged
//!   after the restart (recovery), and all errors must be `unavailable`.
//! - sled (one process at a time): one process with 4 mixed, 4 contest and
//!   2 revoke-race tasks, killed with SIGKILL at 45 % of the run and started
//!   again on the same database ("process restart"); the calls it was in
//!   the middle of are logged as unfinished, i.e. ambiguous.
//! - `memory://` is per process, so it cannot be shared between processes;
//!   the in-process test (`tests/in_process.rs`) runs the same workload on
//!   it.
//!
//! Duration: `SOAK_SECONDS` (default 60) per backend, all backends in
//! parallel in one test, so the binary takes about SOAK_SECONDS + 15 s
//! whatever the test-thread count. `SOAK_BACKENDS=postgres,sled` runs a
//! subset. Its own test binary: restarting servers disturbs any other test
//! using them, and cargo runs test binaries one after another.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use broker_core::Namespace;
use broker_core::crypto::EncryptionKey;
use broker_soak::check::Report;
use broker_soak::log::{Op, read_log_dir, wall_ns_now};
use broker_soak::workload::{open_vault, scan};
use common::{Backend, Guard, lines, next_json, server_backends, wall_ms, worker};
use secrecy::ExposeSecret as _;

/// Time after the last planned call within which workers must have exited.
const EXIT_GRACE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy)]
enum Restart {
    /// Run the server's restart command at this fraction of the run.
    Server(f64),
    /// SIGKILL the (only) worker process at this fraction and start it again.
    Process(f64),
}

struct Shape {
    processes: u32,
    tasks: u32,
    contest_tasks: u32,
    race_tasks: u32,
}

struct Outcome {
    text: String,
    failures: Vec<String>,
}

fn soak_seconds() -> u64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&s| s >= 5)
        .unwrap_or(60)
}

/// What every worker process of one backend's run shares.
struct Run<'a> {
    backend: &'a Backend,
    key: &'a str,
    ns: &'a Namespace,
    shape: &'a Shape,
    until: i64,
    logs: &'a Path,
}

impl Run<'_> {
    fn spawn(&self, index: u32, incarnation: u32, start_at: Option<i64>) -> Guard {
        let mut cmd = worker(&self.backend.url, self.key);
        cmd.args(["work", "--namespace", self.ns.as_str()])
            .args(["--worker-index", &index.to_string()])
            .args(["--workers", &self.shape.processes.to_string()])
            .args(["--tasks", &self.shape.tasks.to_string()])
            .args(["--contest-tasks", &self.shape.contest_tasks.to_string()])
            .args(["--race-tasks", &self.shape.race_tasks.to_string()])
            .args(["--incarnation", &incarnation.to_string()])
            .args(["--until-ms", &self.until.to_string()])
            .arg("--log-dir")
            .arg(self.logs);
        if let Some(at) = start_at {
            cmd.args(["--start-at-ms", &at.to_string()]);
        }
        Guard(cmd.spawn().expect("start a worker"))
    }
}

async fn sleep_until_wall_ms(at: i64) {
    let left = at - wall_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left.unsigned_abs())).await;
    }
}

/// Run one backend's soak; returns its figures and what failed.
async fn soak(backend: Backend, restart: Restart, secs: u64) -> Outcome {
    let mut failures = Vec::new();
    let dir = tempfile::Builder::new()
        .prefix(&format!("soak-{}-", backend.name))
        .tempdir()
        .unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let ns = Namespace::random("soak").unwrap();
    let key = EncryptionKey::generate().to_base64();
    let key = key.expose_secret();
    let shape = match restart {
        Restart::Server(_) => Shape {
            processes: 4,
            tasks: 2,
            contest_tasks: 1,
            race_tasks: 1,
        },
        Restart::Process(_) => Shape {
            processes: 1,
            tasks: 4,
            contest_tasks: 4,
            race_tasks: 2,
        },
    };
    let start_at = wall_ms() + 3_000;
    let until = start_at + i64::try_from(secs * 1000).unwrap();
    let run = Run {
        backend: &backend,
        key,
        ns: &ns,
        shape: &shape,
        until,
        logs: &logs,
    };
    let mut children: Vec<Guard> = (0..shape.processes)
        .map(|i| run.spawn(i, 0, Some(start_at)))
        .collect();

    // The restart.
    let mut restart_note = String::from("no restart");
    let mut restarted_at_ns = None;
    match restart {
        Restart::Server(frac) => {
            let cmd = backend.restart_env.and_then(|v| std::env::var(v).ok());
            match cmd {
                None => {
                    let msg = format!(
                        "{} is not set: soak without a server restart",
                        backend.restart_env.unwrap_or("(no restart command)")
                    );
                    if conformance::provision::in_ci() {
                        failures.push(format!("CI=true and {msg}"));
                    } else {
                        eprintln!("\n!!!!!!!! SOAK {}: {msg} !!!!!!!!\n", backend.name);
                    }
                }
                Some(cmd) => {
                    sleep_until_wall_ms(start_at + (secs as f64 * 1000.0 * frac) as i64).await;
                    let began = Instant::now();
                    let began_ms = wall_ms() - start_at;
                    let status = tokio::task::spawn_blocking(move || {
                        std::process::Command::new("sh").arg("-c").arg(cmd).status()
                    })
                    .await
                    .unwrap();
                    match status {
                        Ok(s) if s.success() => {}
                        other => failures.push(format!("the restart command failed: {other:?}")),
                    }
                    restarted_at_ns = Some(wall_ns_now());
                    restart_note = format!(
                        "1 server restart at +{:.1} s (command took {:.1} s)",
                        began_ms as f64 / 1e3,
                        began.elapsed().as_secs_f64()
                    );
                }
            }
        }
        Restart::Process(frac) => {
            sleep_until_wall_ms(start_at + (secs as f64 * 1000.0 * frac) as i64).await;
            let killed_ms = wall_ms() - start_at;
            let mut old = children.remove(0);
            old.0.kill().unwrap();
            let status = old.0.wait().unwrap();
            drop(old);
            restarted_at_ns = Some(wall_ns_now());
            children.push(run.spawn(0, 1, None));
            restart_note = format!(
                "1 process restart: SIGKILL at +{:.1} s ({status}), started again on the same database",
                killed_ms as f64 / 1e3
            );
        }
    }

    // Every worker exits on its own after `until`.
    let deadline = Instant::now()
        + Duration::from_millis((until - wall_ms()).max(0).unsigned_abs())
        + EXIT_GRACE;
    let mut worker_totals = Vec::new();
    for (i, child) in children.iter_mut().enumerate() {
        let out = lines(child.0.stdout.take().expect("stdout"));
        match common::wait_until(&mut child.0, deadline).await {
            Some(s) if s.success() => {}
            other => failures.push(format!("worker {i} did not exit cleanly: {other:?}")),
        }
        if let Some(v) = next_json(&out, Instant::now() + Duration::from_secs(5)) {
            worker_totals.push(v);
        }
    }
    drop(children);

    // The checker.
    let ops = match read_log_dir(&logs) {
        Ok(ops) => ops,
        Err(e) => {
            failures.push(format!("the logs do not read back: {e}"));
            Vec::new()
        }
    };
    let (vault, _) = match open_vault(&backend.url, &ns, key, Duration::from_secs(60)).await {
        Ok(v) => v,
        Err(e) => {
            failures.push(format!("the store does not open after the run: {e}"));
            return Outcome {
                text: String::new(),
                failures,
            };
        }
    };
    let final_scan = match scan(&vault).await {
        Ok(s) => s,
        Err(e) => {
            failures.push(format!("the final scan failed: {e}"));
            Default::default()
        }
    };
    let checked = Instant::now();
    let report = broker_soak::check(&ops, &final_scan);
    let check_ms = checked.elapsed().as_millis();
    if let Err(e) = vault.store().drop_namespace().await {
        failures.push(format!("dropping the namespace failed: {e}"));
    }
    let recovery = judge(&report, &ops, restarted_at_ns, &mut failures);

    let text = format!(
        "soak {}: {} process(es) x ({} mixed + {} contest + {} revoke-race tasks), {secs} s, \
         {restart_note}{recovery}\n  {}\n  \
         checker: {} operations in {check_ms} ms, {} violation(s)",
        backend.name,
        shape.processes,
        shape.tasks,
        shape.contest_tasks,
        shape.race_tasks,
        report.figures,
        ops.len(),
        report.violations.len(),
    );
    if std::env::var_os("SOAK_KEEP_LOGS").is_some() {
        eprintln!(
            "soak {}: logs kept in {}",
            backend.name,
            dir.keep().display()
        );
    }
    Outcome { text, failures }
}

/// Turn a report into failures: violations, errors other than
/// `unavailable`, and actors that did not recover after the restart.
/// Returns the recovery figure.
fn judge(
    report: &Report,
    ops: &[Op],
    restarted_at_ns: Option<i64>,
    failures: &mut Vec<String>,
) -> String {
    for v in report.violations.iter().take(20) {
        failures.push(format!("violation: {v}"));
    }
    if report.violations.len() > 20 {
        failures.push(format!("... {} violations in all", report.violations.len()));
    }
    let unexpected: BTreeMap<&String, &u64> = report
        .figures
        .errors
        .iter()
        .filter(|(k, _)| k.as_str() != "unavailable")
        .collect();
    if !unexpected.is_empty() {
        failures.push(format!("errors other than unavailable: {unexpected:?}"));
    }
    if report.figures.acknowledged() == 0 {
        failures.push("no call was acknowledged".into());
    }
    if report.figures.contested_wins == 0 {
        failures.push("no contested take ever won".into());
    }
    if report.figures.revocation.revocations == 0 {
        failures.push("no revoke-race revocation was acknowledged".into());
    }
    let Some(at) = restarted_at_ns else {
        return String::new();
    };
    // Per actor, the first acknowledged call begun after the restart ended.
    let mut first: BTreeMap<&str, Option<i64>> = BTreeMap::new();
    for op in ops {
        let entry = first.entry(&op.begin.actor).or_default();
        if op.begin.at.wall_ns > at && op.acknowledged() {
            let t = op.begin.at.wall_ns;
            *entry = Some(entry.map_or(t, |e| e.min(t)));
        }
    }
    let stuck: Vec<&str> = first
        .iter()
        .filter(|(_, t)| t.is_none())
        .map(|(a, _)| *a)
        .collect();
    if !stuck.is_empty() {
        failures.push(format!(
            "no acknowledged call after the restart from {stuck:?}"
        ));
    }
    let slowest = first.values().flatten().map(|t| t - at).max().unwrap_or(0);
    format!(
        "; every actor acknowledged again within {:.1} s of the restart's end",
        slowest as f64 / 1e9
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_every_backend() {
    let secs = soak_seconds();
    let only: Option<Vec<String>> = std::env::var("SOAK_BACKENDS")
        .ok()
        .map(|s| s.split(',').map(|b| b.trim().to_owned()).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|b| b == name));

    // Stagger the server restarts so they do not all hit the same moment.
    let mut runs: Vec<(Backend, Restart)> = Vec::new();
    for b in server_backends().await {
        let frac = match b.name {
            "postgres" => 0.30,
            "mongo" => 0.35,
            "redis" => 0.40,
            _ => 0.50,
        };
        runs.push((b, Restart::Server(frac)));
    }
    let dir = tempfile::tempdir().unwrap();
    runs.push((
        Backend {
            name: "sled",
            url: format!("sled://{}", dir.path().join("db").display()),
            restart_env: None,
        },
        Restart::Process(0.45),
    ));
    runs.retain(|(b, _)| wanted(b.name));
    assert!(!runs.is_empty(), "SOAK_BACKENDS selects no backend");

    let started = Instant::now();
    let handles: Vec<_> = runs
        .into_iter()
        .map(|(b, r)| {
            let name = b.name;
            (name, tokio::spawn(soak(b, r, secs)))
        })
        .collect();
    let mut failed = Vec::new();
    for (name, h) in handles {
        let outcome = h.await.unwrap_or_else(|e| Outcome {
            text: String::new(),
            failures: vec![format!("the soak panicked: {e}")],
        });
        eprintln!("{}", outcome.text);
        for f in &outcome.failures {
            eprintln!("  FAILED {name}: {f}");
            failed.push(format!("{name}: {f}"));
        }
    }
    eprintln!(
        "soak: all backends in {:.0} s (SOAK_SECONDS={secs})",
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "soak failures:\n{}", failed.join("\n"));
}
