//! The JSON documents under `docs/bench/`, typed (serde), and loading them.
//!
//! | file | what | written by |
//! |---|---|---|
//! | `machine.json` | [`Machine`]: CPU, cores, RAM, date, idle check, server settings | `run` |
//! | `criterion.json`, `criterion-native.json` | [`Criterion`]: means and CIs of the CPU benches | `run` |
//! | `migrate-*.json` | [`Migrate`]: `brokerctl migrate` wall time and peak RSS | `run` |
//! | `py-oidc-auth-*.json` | [`PyRun`]: py-oidc-auth's stores under the same workload | `scripts/py-oidc-auth-bench.sh` |
//! | `server-limits.json` | [`ServerLimits`]: `pgbench -S -M prepared`, `redis-benchmark` | `run` |
//! | any other with `results` | a `brokerctl bench` [`BenchReport`] | `brokerctl --json bench` |

use std::collections::BTreeMap;
use std::path::Path;

use brokerctl::bench::{BenchReport, Stats};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The machine the runs used, and how busy it was.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Memory in GiB.
    pub ram_gib: f64,
    /// AES-NI and PCLMULQDQ present.
    pub aes_ni: bool,
    /// Kernel release.
    pub kernel: String,
    /// `rustc --version`.
    pub rustc: String,
    /// When the runs started, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// When the runs started and ended (Unix seconds): documents whose
    /// `started_at` falls in between come from this run.
    #[serde(default)]
    pub started_at: Option<i64>,
    /// See `started_at`.
    #[serde(default)]
    pub finished_at: Option<i64>,
    /// The 1-minute load average at the start.
    pub loadavg: Option<f64>,
    /// The 1-minute load average at the end.
    #[serde(default)]
    pub loadavg_end: Option<f64>,
    /// Declared with `BENCH_EXCLUSIVE=1`: nothing else was meant to run.
    pub exclusive: bool,
    /// Measured: CPU time spent outside idle, over a few seconds before the
    /// first run and after the last.
    #[serde(default)]
    pub idle_check: Option<IdleCheck>,
    /// PostgreSQL durability settings (empty when unknown).
    #[serde(default)]
    pub postgres: PgSettings,
    /// Redis durability settings (empty when unknown).
    #[serde(default)]
    pub redis: RedisSettings,
}

/// How busy the CPUs were just before and just after the runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdleCheck {
    /// Seconds each sample lasted.
    pub window_secs: f64,
    /// Busy share of all cores before the first run (percent).
    pub busy_percent_before: f64,
    /// Busy share after the last run (percent).
    pub busy_percent_after: Option<f64>,
    /// The threshold under which the machine counts as idle (percent).
    pub idle_below_percent: f64,
}

impl IdleCheck {
    /// Whether the machine was idle before the runs.
    pub fn idle_before(&self) -> bool {
        self.busy_percent_before < self.idle_below_percent
    }
}

/// `SHOW fsync`, `SHOW synchronous_commit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PgSettings {
    /// `SHOW server_version` (major version).
    #[serde(default)]
    pub version: String,
    /// `fsync`.
    #[serde(default)]
    pub fsync: String,
    /// `synchronous_commit`.
    #[serde(default)]
    pub synchronous_commit: String,
}

/// `CONFIG GET appendonly`, `CONFIG GET appendfsync`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisSettings {
    /// `INFO server`'s `redis_version` (major version).
    #[serde(default)]
    pub version: String,
    /// `appendonly`.
    #[serde(default)]
    pub appendonly: String,
    /// `appendfsync`.
    #[serde(default)]
    pub appendfsync: String,
}

/// Criterion's estimates for every bench of one `cargo bench` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    /// The command.
    pub command: String,
    /// When the benches started (Unix seconds; absent in documents
    /// written before it was recorded).
    #[serde(default)]
    pub started_at: Option<i64>,
    /// Sorted by id.
    pub benches: Vec<CriterionBench>,
}

/// One criterion bench.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionBench {
    /// `group/function/parameter`.
    pub id: String,
    /// Mean (ns).
    pub mean_ns: f64,
    /// 95 % confidence interval of the mean (ns).
    pub ci_low_ns: f64,
    /// See `ci_low_ns`.
    pub ci_high_ns: f64,
    /// Median (ns).
    pub median_ns: f64,
}

/// `brokerctl migrate` under `/usr/bin/time -v`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migrate {
    /// The command.
    pub command: String,
    /// brokerctl's JSON output.
    pub output: serde_json::Value,
    /// Peak RSS (KiB).
    pub max_rss_kib: u64,
    /// Wall time (s).
    pub elapsed_secs: f64,
}

/// py-oidc-auth's session stores under the bench workload (written by
/// `scripts/py-oidc-auth/bench.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PyRun {
    /// The command (set by the runner).
    #[serde(default)]
    pub command: Option<String>,
    /// `py-oidc-auth`.
    pub tool: String,
    /// Its version.
    pub version: String,
    /// Python's version.
    pub python: String,
    /// `postgres` or `mongodb`.
    pub store: String,
    /// The store class, driver and pool.
    pub driver: String,
    /// The workload.
    pub args: PyArgs,
    /// Unix seconds.
    pub started_at: i64,
    /// Wall time (s).
    pub elapsed_secs: f64,
    /// Preloaded sessions per second.
    #[serde(default)]
    pub preload_ops_per_sec: Option<f64>,
    /// Per operation and concurrency.
    pub results: Vec<PyResult>,
    /// 1-minute load average before.
    pub loadavg_before: Option<f64>,
    /// And after.
    pub loadavg_after: Option<f64>,
}

/// The workload of a [`PyRun`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PyArgs {
    /// Operations per cell.
    pub ops: usize,
    /// Concurrency levels.
    pub concurrency: Vec<usize>,
    /// Refresh-token bytes.
    pub payload: usize,
    /// `user_info` bytes.
    pub user_info: usize,
    /// Sessions stored first.
    pub sessions: usize,
    /// Concurrency of that preload.
    #[serde(default)]
    pub preload_concurrency: Option<usize>,
}

/// One operation at one concurrency of a [`PyRun`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PyResult {
    /// `save`, `get` or `delete`.
    pub op: String,
    /// Concurrent callers (asyncio tasks).
    pub concurrency: usize,
    /// The figures, as ours.
    pub stats: Stats,
}

impl PyRun {
    /// The result of `op` at `concurrency`, if measured.
    pub fn result(&self, op: &str, concurrency: usize) -> Option<&Stats> {
        self.results
            .iter()
            .find(|r| r.op == op && r.concurrency == concurrency)
            .map(|r| &r.stats)
    }
}

/// The servers' own limits, measured with their own benchmark tools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerLimits {
    /// Unix seconds.
    pub started_at: i64,
    /// One entry per tool, operation and concurrency.
    pub limits: Vec<ServerLimit>,
}

/// One server-limit measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerLimit {
    /// `postgres` or `redis` (a `BenchReport::store`).
    pub store: String,
    /// Which of our operations it bounds (`get`, `save`).
    pub op: String,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Requests (or transactions) per second.
    pub ops_per_sec: f64,
    /// The command, password redacted.
    pub command: String,
}

impl ServerLimits {
    /// The limit for `op` at `concurrency` on `store`, if measured.
    pub fn get(&self, store: &str, op: &str, concurrency: usize) -> Option<&ServerLimit> {
        self.limits
            .iter()
            .find(|l| l.store == store && l.op == op && l.concurrency == concurrency)
    }
}

/// Everything under `docs/bench/`.
#[derive(Debug, Clone, Default)]
pub struct BenchDir {
    /// `machine.json`.
    pub machine: Option<Machine>,
    /// `criterion.json`.
    pub criterion: Option<Criterion>,
    /// `criterion-native.json`.
    pub native: Option<Criterion>,
    /// `migrate-sled-1m.json`.
    pub migrate: Option<Migrate>,
    /// `server-limits.json`.
    pub limits: Option<ServerLimits>,
    /// `py-oidc-auth-<store>.json` by file stem.
    pub py: BTreeMap<String, PyRun>,
    /// `brokerctl bench` runs by file stem.
    pub runs: BTreeMap<String, BenchReport>,
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| Error::Parse {
        path: path.to_owned(),
        source,
    })
}

/// The text of `path`.
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

impl BenchDir {
    /// `None` if a document that started at `started_at` belongs to the
    /// run `machine.json` records, else a note saying it is older (a
    /// benchmark not re-run then keeps its earlier document).
    pub fn earlier(&self, started_at: Option<i64>) -> Option<String> {
        let (a, b) = self
            .machine
            .as_ref()
            .and_then(|m| Some((m.started_at?, m.finished_at?)))?;
        match started_at {
            Some(t) if (a..=b).contains(&t) => None,
            Some(t) => Some(format!(
                "**From an earlier run** (started {}), not re-run with the others on this page.",
                crate::report::fmt::utc_date(t)
            )),
            None => Some(
                "**From an earlier run** (its date was not recorded), not re-run with the \
                 others on this page."
                    .into(),
            ),
        }
    }

    /// Load every `*.json` under `dir`; a file that does not parse as its
    /// kind is an error naming it.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut out = Self::default();
        let unreadable = |source| Error::Read {
            path: dir.to_owned(),
            source,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(unreadable)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .map_err(unreadable)?;
        paths.sort();
        for path in paths {
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            out.insert(&stem, &read(&path)?, &path)?;
        }
        Ok(out)
    }

    /// Add the document `stem` (its file name without `.json`) of text
    /// `text`, read from `path` (named in errors).
    pub fn insert(&mut self, stem: &str, text: &str, path: &Path) -> Result<()> {
        match stem {
            "machine" => self.machine = Some(parse(path, text)?),
            "criterion" => self.criterion = Some(parse(path, text)?),
            "criterion-native" => self.native = Some(parse(path, text)?),
            "server-limits" => self.limits = Some(parse(path, text)?),
            s if s.starts_with("migrate-") => self.migrate = Some(parse(path, text)?),
            s if s.starts_with("py-oidc-auth-") => {
                self.py.insert(stem.to_owned(), parse(path, text)?);
            }
            _ => {
                self.runs.insert(stem.to_owned(), parse(path, text)?);
            }
        }
        Ok(())
    }

    /// The bench runs in report order: by backend (memory, sled, postgres,
    /// redis-cluster, redis, mongo), then stored sessions, then file name.
    pub fn ordered_runs(&self) -> Vec<(&str, &BenchReport)> {
        const ORDER: [&str; 6] = [
            "memory",
            "sled",
            "postgres",
            "redis-cluster",
            "redis",
            "mongo",
        ];
        let key = |name: &str, r: &BenchReport| {
            let i = ORDER.iter().position(|k| name.starts_with(k)).unwrap_or(99);
            (i, if i == 99 { 0 } else { r.args.sessions })
        };
        let mut runs: Vec<(&str, &BenchReport)> =
            self.runs.iter().map(|(n, r)| (n.as_str(), r)).collect();
        // File order first ("sled-1m-cache3g.json" sorts before "sled-1m.json").
        runs.sort_by_key(|(n, _)| format!("{n}.json"));
        runs.sort_by_key(|(n, r)| key(n, r));
        runs
    }
}
