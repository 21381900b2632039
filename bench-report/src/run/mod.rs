//! `bench-report run`: the benchmark set, one run, its JSON under
//! `docs/bench/`, with the machine and how busy it was recorded first.

mod limits;
mod machine;
mod proc;
mod servers;
mod steps;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use crate::docs::{BenchDir, IdleCheck};
use crate::error::{Error, Result};
use proc::{available, write_json};
use servers::Servers;
use steps::Ctx;

/// Every benchmark, in the order `run` runs them. Each side-by-side
/// comparison runs right after our run on the same server.
pub const ALL: [&str; 15] = [
    "criterion",
    "criterion-native",
    "memory-10k",
    "sled-10k",
    "sled-1m",
    "sled-1m-cache3g",
    "postgres-10k",
    "pgbench",
    "py-oidc-auth-postgres",
    "postgres-1m",
    "redis-10k",
    "redis-benchmark",
    "redis-cluster-10k",
    "mongo-10k",
    "py-oidc-auth-mongodb",
];

/// `side-by-side`: what the comparison with py-oidc-auth and the servers'
/// own limits needs, in one run.
pub const SIDE_BY_SIDE: [&str; 7] = [
    "postgres-10k",
    "pgbench",
    "py-oidc-auth-postgres",
    "redis-10k",
    "redis-benchmark",
    "mongo-10k",
    "py-oidc-auth-mongodb",
];

/// The options of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Benchmarks to run (default: all), or `side-by-side`. One of:
    /// criterion, criterion-native, memory-10k, sled-10k, sled-1m,
    /// sled-1m-cache3g, postgres-10k, pgbench, py-oidc-auth-postgres,
    /// postgres-1m, redis-10k, redis-benchmark, redis-cluster-10k,
    /// mongo-10k, py-oidc-auth-mongodb.
    names: Vec<String>,
    /// Nothing else runs on the machine (also `BENCH_EXCLUSIVE=1`): the page
    /// says so; otherwise it carries a caveat.
    #[arg(long, hide_env_values = true, env = "BENCH_EXCLUSIVE", value_parser = clap::builder::FalseyValueParser::new())]
    exclusive: bool,
    /// Where the JSON goes (default: docs/bench); the page then goes next
    /// to it as BENCHMARKS.md unless `--page` says otherwise.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The page to write at the end (default: docs/BENCHMARKS.md).
    #[arg(long)]
    page: Option<PathBuf>,
    /// A smoke run: tiny counts and short server benchmarks, to check the
    /// pipeline, not to measure. Use with `--out`.
    #[arg(long)]
    quick: bool,
    /// Seconds of CPU sampling before the first run and after the last.
    #[arg(long, default_value_t = 5.0)]
    idle_window: f64,
    /// The machine counts as idle below this busy share (percent).
    #[arg(long, default_value_t = 10.0)]
    idle_below: f64,
    /// The Redis database `redis-benchmark` writes to (must be empty; it is
    /// flushed afterwards).
    #[arg(
        long,
        hide_env_values = true,
        env = "BENCH_REDIS_BENCHMARK_DB",
        default_value_t = 15
    )]
    redis_benchmark_db: u32,
}

impl RunArgs {
    /// The JSON directory and the page.
    pub fn destinations(&self, root: &Path) -> (PathBuf, PathBuf) {
        let out = self.out.clone().unwrap_or_else(|| root.join("docs/bench"));
        let page = self.page.clone().unwrap_or_else(|| match &self.out {
            Some(o) => o.join("BENCHMARKS.md"),
            None => root.join("docs/BENCHMARKS.md"),
        });
        (out, page)
    }
}

/// The names asked for, expanded and checked.
fn selected(names: &[String]) -> Result<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(ALL.to_vec());
    }
    let mut out = Vec::new();
    for n in names {
        let group: Vec<&'static str> = match n.as_str() {
            "all" => ALL.to_vec(),
            "side-by-side" => SIDE_BY_SIDE.to_vec(),
            _ => vec![*ALL.iter().find(|a| **a == n).ok_or_else(|| {
                Error::run(
                    "run",
                    format!(
                        "unknown benchmark {n:?}; one of: {}, side-by-side",
                        ALL.join(", ")
                    ),
                )
            })?],
        };
        out.extend(
            group
                .into_iter()
                .filter(|g| !out.contains(g))
                .collect::<Vec<_>>(),
        );
    }
    // In the set's order, so comparisons stay next to their runs.
    out.sort_by_key(|n| ALL.iter().position(|a| a == n));
    Ok(out)
}

/// A fresh base64 key of 32 random bytes (for `--key-env`).
fn random_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::run("key", e))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A loud skip: the backend has no server URL.
fn skip(name: &str, var: &str) -> Result<()> {
    skipped(&format!(
        "{name}: no server URL (set BENCH_{var}_URL or BROKER_TEST_{var}_URL)"
    ))
}

/// A loud skip, and on to the next benchmark.
fn skipped(why: &str) -> Result<()> {
    eprintln!("!! SKIPPED {why}");
    Ok(())
}

/// Run the benchmarks `args` names, then record the end of the run.
pub fn run(root: &Path, args: &RunArgs) -> Result<()> {
    let names = selected(&args.names)?;
    let (out, _) = args.destinations(root);
    std::fs::create_dir_all(&out).map_err(|source| Error::Write {
        path: out.clone(),
        source,
    })?;
    let work = tempfile::Builder::new()
        .prefix("bench-report.")
        .tempdir()
        .map_err(|e| Error::run("scratch directory", e))?;
    let brokerctl = work.path().join("brokerctl");
    std::fs::copy(root.join("target/release/brokerctl"), &brokerctl).map_err(|e| {
        Error::run(
            "copying target/release/brokerctl (build it first: scripts/bench.sh does)",
            e,
        )
    })?;
    let ctx = Ctx {
        root: root.to_owned(),
        out: out.clone(),
        brokerctl,
        work: work.path().to_owned(),
    };
    let servers = Servers::from_env();
    let window = Duration::from_secs_f64(args.idle_window.max(0.1));
    eprintln!(
        "== machine: sampling CPU use for {:.0} s before the first run",
        window.as_secs_f64()
    );
    let busy = machine::busy_percent(window).unwrap_or(f64::NAN);
    let idle = IdleCheck {
        window_secs: window.as_secs_f64(),
        busy_percent_before: busy,
        busy_percent_after: None,
        idle_below_percent: args.idle_below,
    };
    if !idle.idle_before() {
        eprintln!(
            "!! the machine is not idle: {busy:.0}% busy before the first run; the page will say so"
        );
    }
    let mut m = machine::describe(&servers, args.exclusive, idle);
    write_json(&out.join("machine.json"), &m)?;

    // A failed benchmark does not stop the others; the run fails at the end.
    let mut failed = Vec::new();
    for name in names {
        if let Err(e) = step(&ctx, &servers, args, name) {
            eprintln!("!! {name} FAILED: {e}");
            failed.push(format!("{name} ({e})"));
        }
    }

    // The end of the run, next to its start.
    if let Some(idle) = m.idle_check.as_mut() {
        idle.busy_percent_after = machine::busy_percent(window);
    }
    m.loadavg_end = brokerctl::bench::loadavg();
    m.finished_at = Some(machine::unix_now());
    write_json(&out.join("machine.json"), &m)?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::run("run", format!("failed: {}", failed.join("; "))))
    }
}

/// Counts for a full run, or for `--quick`.
fn n(args: &RunArgs, full: usize, quick: usize) -> String {
    (if args.quick { quick } else { full }).to_string()
}

fn step(ctx: &Ctx, s: &Servers, a: &RunArgs, name: &str) -> Result<()> {
    let bench_args = |sessions: usize, extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--sessions".to_owned(),
            n(a, sessions, (sessions / 20).clamp(100, 2000)),
        ];
        if a.quick {
            v.extend(["--ops", "200", "--purge", "0,100"].map(String::from));
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let sled = |dir: &str| format!("sled://{}", ctx.work.join(dir).display());
    let concurrency = [1, 32];
    match name {
        "criterion" => steps::criterion(ctx, name, false, a.quick),
        "criterion-native" => steps::criterion(ctx, name, true, a.quick),
        "memory-10k" => {
            steps::bench(ctx, name, "memory://", &bench_args(10_000, &[]), &[]).map(drop)
        }
        "sled-10k" => steps::bench(ctx, name, &sled(name), &bench_args(10_000, &[]), &[]).map(drop),
        "sled-1m" => {
            let key = [("BENCH_KEY", random_key()?)];
            let args = bench_args(1_000_000, &["--keep", "--key-env", "BENCH_KEY"]);
            let report = steps::bench(ctx, name, &sled(name), &args, &key)?;
            steps::migrate(
                ctx,
                "migrate-sled-1m",
                &ctx.work.join(name),
                &report.namespace,
                &key,
            )
        }
        "sled-1m-cache3g" => {
            // The same 1M run with sled's page cache sized to hold the data.
            let url = format!("{}?cache_mb=3072", sled(name));
            steps::bench(ctx, name, &url, &bench_args(1_000_000, &[]), &[]).map(drop)
        }
        "postgres-10k" | "postgres-1m" => match &s.postgres {
            Some(pg) => {
                let sessions = if name == "postgres-1m" {
                    1_000_000
                } else {
                    10_000
                };
                steps::bench(ctx, name, &pg.url, &bench_args(sessions, &[]), &[]).map(drop)
            }
            None => skip(name, "POSTGRES"),
        },
        "pgbench" => match &s.postgres {
            Some(pg) if available("pgbench") && available("psql") => {
                let secs = if a.quick { 2 } else { 10 };
                eprintln!("== pgbench -S -M prepared at concurrency 1 and 32, {secs} s each");
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                let found = limits::pgbench(pg, &concurrency, secs, cores)?;
                save_limits(&ctx.out, "postgres", found)
            }
            Some(_) => skipped("pgbench: pgbench or psql is not installed"),
            None => skip(name, "POSTGRES"),
        },
        "py-oidc-auth-postgres" | "py-oidc-auth-mongodb" => {
            let (store, url, mongo) = if name.ends_with("postgres") {
                (
                    "postgres",
                    s.postgres.as_ref().map(|p| p.url.clone()),
                    false,
                )
            } else {
                ("mongodb", s.mongo.clone(), true)
            };
            let Some(url) = url else {
                return skip(name, if mongo { "MONGO" } else { "POSTGRES" });
            };
            // The same workload as ours on that server (see mongo-10k).
            let ops = if mongo {
                n(a, 1000, 200)
            } else {
                n(a, 10_000, 200)
            };
            let args: Vec<String> = [
                "--sessions",
                &n(a, 10_000, 500),
                "--ops",
                &ops,
                "--concurrency",
                "1,32",
                "--payload",
                "1024",
                "--user-info",
                "300",
                "--preload-concurrency",
                if mongo { "4" } else { "32" },
            ]
            .map(String::from)
            .to_vec();
            steps::py_oidc_auth(ctx, name, store, &url, &args)
        }
        "redis-10k" => match &s.redis {
            Some(r) => steps::bench(ctx, name, &r.url, &bench_args(10_000, &[]), &[]).map(drop),
            None => skip(name, "REDIS"),
        },
        "redis-benchmark" => match &s.redis {
            Some(r) if available("redis-benchmark") && available("redis-cli") => {
                // Values the size of our sealed sessions in this run, if known.
                let size = BenchDir::load(&ctx.out)
                    .ok()
                    .and_then(|d| d.runs.get("redis-10k").map(|r| r.sealed_bytes))
                    .unwrap_or(1024 + 300 + 50);
                let requests = if a.quick { 2_000 } else { 100_000 };
                eprintln!("== redis-benchmark -t set,get -d {size} at concurrency 1 and 32");
                let found =
                    limits::redis_benchmark(r, &concurrency, requests, size, a.redis_benchmark_db)?;
                save_limits(&ctx.out, "redis", found)
            }
            Some(_) => skipped("redis-benchmark: redis-benchmark or redis-cli is not installed"),
            None => skip(name, "REDIS"),
        },
        "redis-cluster-10k" => match &s.redis_cluster {
            Some(url) => steps::bench(ctx, name, url, &bench_args(10_000, &[]), &[]).map(drop),
            None => skip(name, "REDIS_CLUSTER"),
        },
        // The Mongo dev server (SecantusDB) takes ~20 ms per find_one_and_delete and drops
        // connections under 32 concurrent preload writers: fewer ops, a gentler preload.
        "mongo-10k" => match &s.mongo {
            Some(url) => {
                let extra: &[&str] = if a.quick {
                    &["--preload-concurrency", "4"]
                } else {
                    &["--ops", "1000", "--preload-concurrency", "4"]
                };
                steps::bench(ctx, name, url, &bench_args(10_000, extra), &[]).map(drop)
            }
            None => skip(name, "MONGO"),
        },
        other => Err(Error::run("run", format!("unknown benchmark {other:?}"))),
    }
}

/// Replace `store`'s entries in `server-limits.json` with `found`.
fn save_limits(out: &Path, store: &str, found: Vec<crate::docs::ServerLimit>) -> Result<()> {
    let mut limits = BenchDir::load(out)
        .ok()
        .and_then(|d| d.limits)
        .unwrap_or_default();
    limits.limits.retain(|l| l.store != store);
    limits.limits.extend(found);
    limits.started_at = machine::unix_now();
    write_json(&out.join("server-limits.json"), &limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_expand_in_the_sets_order() {
        assert_eq!(selected(&[]).unwrap().len(), ALL.len());
        let s = selected(&[
            "py-oidc-auth-postgres".into(),
            "side-by-side".into(),
            "criterion".into(),
        ])
        .unwrap();
        assert_eq!(s[0], "criterion");
        assert_eq!(&s[1..], SIDE_BY_SIDE);
        assert!(selected(&["nope".into()]).is_err());
    }
}
