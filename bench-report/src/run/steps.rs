//! The steps that run the project's own code: criterion, `brokerctl bench`,
//! `brokerctl migrate` under `/usr/bin/time -v`, and py-oidc-auth's bench.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use brokerctl::bench::BenchReport;
use serde::Deserialize;

use super::machine::unix_now;
use super::proc::{output, redact, status, write_json};
use crate::docs::{Criterion, CriterionBench, Migrate, PyRun};
use crate::error::{Error, Result};

/// Where the steps write and what they run with.
pub struct Ctx {
    /// The repository.
    pub root: PathBuf,
    /// `docs/bench` (or `--out`).
    pub out: PathBuf,
    /// A copy of the release `brokerctl` (a rebuild mid-run cannot change it).
    pub brokerctl: PathBuf,
    /// Scratch space (sled databases), removed at the end.
    pub work: PathBuf,
}

/// `cargo bench -p broker-core --bench vault` (with `extra` env and
/// arguments), then its estimates from `<target>/criterion` as `name.json`.
pub fn criterion(ctx: &Ctx, name: &str, native: bool, quick: bool) -> Result<()> {
    let target = if native {
        ctx.root.join("target/native")
    } else {
        ctx.root.join("target")
    };
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&ctx.root)
        .args(["bench", "-p", "broker-core", "--bench", "vault", "--"]);
    let mut shown = "cargo bench -p broker-core --bench vault".to_owned();
    if native {
        // An absolute target dir: criterion resolves a relative one from the bench's crate.
        cmd.env("RUSTFLAGS", "-C target-cpu=native")
            .env("CARGO_TARGET_DIR", &target)
            .arg("^(session|keyring)/");
        shown = "RUSTFLAGS='-C target-cpu=native' CARGO_TARGET_DIR=$PWD/target/native cargo bench \
                 -p broker-core --bench vault -- '^(session|keyring)/'"
            .into();
    }
    if quick {
        cmd.args([
            "--warm-up-time",
            "0.2",
            "--measurement-time",
            "0.5",
            "--sample-size",
            "10",
        ]);
    }
    eprintln!("== {name}: {shown}");
    let started_at = unix_now();
    status(name, &mut cmd)?;
    let mut benches = Vec::new();
    collect_criterion(&target.join("criterion"), &mut benches)?;
    benches.sort_by(|a, b| a.id.cmp(&b.id));
    write_json(
        &ctx.out.join(format!("{name}.json")),
        &Criterion {
            command: shown,
            started_at: Some(started_at),
            benches,
        },
    )
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
    confidence_interval: Option<Interval>,
}

#[derive(Deserialize)]
struct Interval {
    lower_bound: f64,
    upper_bound: f64,
}

#[derive(Deserialize)]
struct Estimates {
    mean: Estimate,
    median: Estimate,
}

#[derive(Deserialize)]
struct BenchmarkId {
    full_id: String,
}

fn json_file<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    serde_json::from_str(&crate::docs::read(path)?).map_err(|source| Error::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Every `new/{benchmark,estimates}.json` under `dir`.
fn collect_criterion(dir: &Path, out: &mut Vec<CriterionBench>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let (b, e) = (path.join("benchmark.json"), path.join("estimates.json"));
        if path.file_name().is_some_and(|n| n == "new") && b.exists() && e.exists() {
            let id: BenchmarkId = json_file(&b)?;
            let est: Estimates = json_file(&e)?;
            let ci = est.mean.confidence_interval.as_ref();
            out.push(CriterionBench {
                id: id.full_id,
                mean_ns: est.mean.point_estimate,
                ci_low_ns: ci.map_or(est.mean.point_estimate, |c| c.lower_bound),
                ci_high_ns: ci.map_or(est.mean.point_estimate, |c| c.upper_bound),
                median_ns: est.median.point_estimate,
            });
        } else {
            collect_criterion(&path, out)?;
        }
    }
    Ok(())
}

/// `brokerctl --store URL --json bench ARGS` as `name.json`, the command
/// recorded with the URL's password redacted; one retry after 15 s (other
/// jobs may restart a shared dev server mid-run).
pub fn bench(
    ctx: &Ctx,
    name: &str,
    url: &str,
    args: &[String],
    env: &[(&str, String)],
) -> Result<BenchReport> {
    let shown = format!(
        "brokerctl --store {} --json bench {}",
        redact(url),
        args.join(" ")
    );
    eprintln!("== {name}: {shown}");
    let attempt = || {
        let mut cmd = Command::new(&ctx.brokerctl);
        cmd.args(["--store", url, "--json", "bench"])
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .env_remove("BROKER_STORE_URL")
            .env_remove("BROKER_NAMESPACE");
        output(name, &mut cmd)
    };
    let text = attempt().or_else(|e| {
        eprintln!("!! {name} failed ({e}); retrying once in 15 s");
        std::thread::sleep(Duration::from_secs(15));
        attempt()
    })?;
    let mut report: BenchReport = serde_json::from_str(&text)
        .map_err(|e| Error::run(name, format!("output is not a bench report: {e}")))?;
    report.command = Some(shown);
    write_json(&ctx.out.join(format!("{name}.json")), &report)?;
    Ok(report)
}

/// `brokerctl migrate` of the kept namespace `ns` of the sled database
/// `from` to a new sled database, under `/usr/bin/time -v`, as `name.json`.
pub fn migrate(
    ctx: &Ctx,
    name: &str,
    from: &Path,
    ns: &str,
    key_env: &[(&str, String)],
) -> Result<()> {
    let to = ctx.work.join("migrate-copy");
    let sled = |p: &Path| format!("sled://{}", p.display());
    let mut init = Command::new(&ctx.brokerctl);
    init.args([
        "--store",
        &sled(&to),
        "--namespace",
        ns,
        "--key-env",
        "BENCH_KEY",
        "init",
    ])
    .envs(key_env.iter().map(|(k, v)| (*k, v)));
    output("brokerctl init (migrate destination)", &mut init)?;
    let shown = format!(
        "/usr/bin/time -v brokerctl --store sled:///tmp/src --namespace {ns} --key-env BENCH_KEY --json migrate --to sled:///tmp/dst"
    );
    eprintln!("== {name}: {shown}");
    let time_file = ctx.work.join("time.txt");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v")
        .arg("-o")
        .arg(&time_file)
        .arg(&ctx.brokerctl)
        .args([
            "--store",
            &sled(from),
            "--namespace",
            ns,
            "--key-env",
            "BENCH_KEY",
            "--json",
            "migrate",
            "--to",
            &sled(&to),
        ])
        .envs(key_env.iter().map(|(k, v)| (*k, v)));
    let out = output(name, &mut cmd)?;
    let time = crate::docs::read(&time_file)?;
    let (max_rss_kib, elapsed_secs) = parse_time_v(&time)
        .ok_or_else(|| Error::run(name, "no peak RSS or wall time in /usr/bin/time's output"))?;
    let _ = std::fs::remove_dir_all(&to);
    write_json(
        &ctx.out.join(format!("{name}.json")),
        &Migrate {
            command: shown,
            output: serde_json::from_str(&out).map_err(|e| Error::run(name, e))?,
            max_rss_kib,
            elapsed_secs,
        },
    )
}

/// Peak RSS (KiB) and wall time (s) from `/usr/bin/time -v`.
pub fn parse_time_v(text: &str) -> Option<(u64, f64)> {
    let value = |key: &str| {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix(key)?
                .strip_prefix(": ")
                .map(str::trim)
        })
    };
    let rss = value("Maximum resident set size (kbytes)")?.parse().ok()?;
    let wall = value("Elapsed (wall clock) time (h:mm:ss or m:ss)")?
        .split(':')
        .try_fold(0.0, |acc, part| {
            Some(acc * 60.0 + part.parse::<f64>().ok()?)
        })?;
    Some((rss, wall))
}

/// py-oidc-auth's stores under the same workload, through
/// `scripts/py-oidc-auth-bench.sh` (which makes the pinned venv), as
/// `name.json`. The URL reaches Python through the environment only.
pub fn py_oidc_auth(ctx: &Ctx, name: &str, store: &str, url: &str, args: &[String]) -> Result<()> {
    let script = ctx.root.join("scripts/py-oidc-auth-bench.sh");
    let shown = format!(
        "BENCH_PY_URL={} bash scripts/py-oidc-auth-bench.sh --store {store} --url-env BENCH_PY_URL {}",
        redact(url),
        args.join(" ")
    );
    eprintln!("== {name}: {shown}");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .args(["--store", store, "--url-env", "BENCH_PY_URL", "--progress"])
        .args(args)
        .env("BENCH_PY_URL", url);
    let text = output(name, &mut cmd)?;
    let mut run: PyRun = serde_json::from_str(&text)
        .map_err(|e| Error::run(name, format!("output is not a py-oidc-auth run: {e}")))?;
    run.command = Some(shown);
    write_json(&ctx.out.join(format!("{name}.json")), &run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_v_output_parses() {
        let t = "\tCommand being timed: \"brokerctl\"\n\tElapsed (wall clock) time (h:mm:ss or m:ss): 5:22.20\n\
                 \tMaximum resident set size (kbytes): 2137392\n";
        let (rss, wall) = parse_time_v(t).unwrap();
        assert_eq!(rss, 2_137_392);
        assert!((wall - 322.2).abs() < 1e-9, "{wall}");
        let t = "\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:00:01\n\tMaximum resident set size (kbytes): 1\n";
        assert_eq!(parse_time_v(t), Some((1, 3601.0)));
        assert_eq!(parse_time_v("nothing"), None);
    }
}
