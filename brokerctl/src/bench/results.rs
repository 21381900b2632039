//! What a bench run measured, as the JSON document `brokerctl --json bench`
//! prints (serde-derived; `bench-report` reads the same types back from
//! `docs/bench/*.json`).

use serde::{Deserialize, Serialize};

use super::BenchArgs;

/// Latency and throughput of one side of one measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Operations measured.
    pub ops: u64,
    /// Operations that found nothing (a get/take/delete miss; 0 expected).
    pub misses: u64,
    /// Operations per second (ops / wall time).
    pub ops_per_sec: f64,
    /// Median latency in microseconds (from an HDR histogram, within 0.1 %).
    pub p50_us: f64,
    /// 99th-percentile latency in microseconds.
    pub p99_us: f64,
    /// Mean latency in microseconds.
    pub mean_us: f64,
}

/// One operation at one concurrency: ours and the raw ceiling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OpResult {
    /// `save`, `get`, `take` or `delete`.
    pub op: String,
    /// Concurrent callers.
    pub concurrency: usize,
    /// Through the [`BrokerStore`](broker_core::BrokerStore) trait.
    pub ours: Stats,
    /// The raw statement or command.
    pub raw: Stats,
    /// Our ops/s over the raw ops/s (0 when raw measured nothing).
    pub ratio: f64,
    /// The target ratio for this operation and concurrency, if one is set
    /// (see [`target`]).
    pub target: Option<f64>,
}

impl OpResult {
    /// The result of `op` at `concurrency`, with its ratio and target.
    pub fn new(op: &str, concurrency: usize, ours: Stats, raw: Stats) -> Self {
        let ratio = if raw.ops_per_sec > 0.0 {
            round(ours.ops_per_sec / raw.ops_per_sec, 3)
        } else {
            0.0
        };
        Self {
            op: op.to_owned(),
            concurrency,
            target: target(op, concurrency),
            ours,
            raw,
            ratio,
        }
    }
}

/// The project's target ratio (ours over raw ops/s) for `op` at
/// `concurrency`: 0.8 at concurrency 1; 0.9 for get and take and 0.85 for
/// save above it (none for delete there).
pub fn target(op: &str, concurrency: usize) -> Option<f64> {
    match (op, concurrency) {
        (_, 1) => Some(0.8),
        ("get" | "take", _) => Some(0.9),
        ("save", _) => Some(0.85),
        _ => None,
    }
}

/// `purge_expired` with `expired` expired sessions among the stored ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PurgeResult {
    /// Expired sessions written before the purge.
    pub expired: usize,
    /// Live sessions stored meanwhile.
    pub live: usize,
    /// What `purge_expired` reported.
    pub purged: u64,
    /// Its wall time in milliseconds.
    pub ms: f64,
    /// Microseconds per expired session (none when nothing expired).
    pub us_per_expired: Option<f64>,
}

/// A scan of every stored session in pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScanResult {
    /// Sessions seen.
    pub sessions: u64,
    /// Pages read.
    pub pages: u64,
    /// Page size asked for.
    pub page: usize,
    /// Wall time in seconds.
    pub secs: f64,
    /// Sessions per second.
    pub sessions_per_sec: f64,
    /// Resident memory before the scan (KiB).
    pub rss_before_kib: Option<u64>,
    /// Peak resident memory during the scan (KiB).
    pub peak_rss_kib: Option<u64>,
    /// True if the peak was reset before the scan, so it is the scan's own.
    pub peak_isolated: bool,
}

/// Everything one `bench` run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BenchReport {
    /// The command that produced this document, with any password in the
    /// URL replaced by `***` (set by the benchmark runner; absent when the
    /// bench ran from code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The store's URL scheme (never the URL: it may hold a password).
    pub store: String,
    /// brokerctl's version.
    pub version: String,
    /// When the run started (Unix seconds).
    pub started_at: i64,
    /// Total wall time in seconds.
    pub elapsed_secs: f64,
    /// The options.
    pub args: BenchArgs,
    /// What the raw ceiling runs.
    pub raw_ops: String,
    /// Size of one sealed session blob (the raw payload size).
    pub sealed_bytes: usize,
    /// The throwaway namespace.
    pub namespace: String,
    /// Whether the namespace was kept.
    pub kept: bool,
    /// Preload wall time in seconds.
    pub preload_secs: f64,
    /// Preloaded sessions per second.
    pub preload_ops_per_sec: f64,
    /// Raw-table preload wall time in seconds.
    pub raw_preload_secs: f64,
    /// Per operation and concurrency.
    pub results: Vec<OpResult>,
    /// Purge timings.
    pub purge: Vec<PurgeResult>,
    /// The scan, unless `--page 0`.
    pub scan: Option<ScanResult>,
    /// Peak RSS of the process before the scan (KiB): preload and measurements.
    pub peak_rss_kib: Option<u64>,
    /// The 1-minute load average before the run (other work on the machine
    /// skews the figures; this says how much there was).
    pub loadavg_before: Option<f64>,
    /// The 1-minute load average after the run.
    pub loadavg_after: Option<f64>,
}

impl BenchReport {
    /// The report as one JSON document (`--json`).
    pub fn json(&self) -> serde_json::Value {
        // Plain data (strings, numbers, options, vectors): always serialisable.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The result of `op` at `concurrency`, if measured.
    pub fn result(&self, op: &str, concurrency: usize) -> Option<&OpResult> {
        self.results
            .iter()
            .find(|r| r.op == op && r.concurrency == concurrency)
    }
}

/// `x` rounded to `digits` decimals (JSON figures carry no false precision).
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// `n` per second over `secs` (0 for no time).
pub(crate) fn per_sec(n: f64, secs: f64) -> f64 {
    if secs > 0.0 { n / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_issue() {
        assert_eq!(target("delete", 1), Some(0.8));
        assert_eq!(target("get", 32), Some(0.9));
        assert_eq!(target("take", 4), Some(0.9));
        assert_eq!(target("save", 32), Some(0.85));
        assert_eq!(target("delete", 32), None);
    }

    #[test]
    fn ratio_is_ours_over_raw() {
        let s = |ops_per_sec| Stats {
            ops_per_sec,
            ..Stats::default()
        };
        assert_eq!(OpResult::new("get", 1, s(900.0), s(1000.0)).ratio, 0.9);
        assert_eq!(OpResult::new("get", 1, s(900.0), s(0.0)).ratio, 0.0);
    }

    /// A document written before this module (by the old hand-built JSON and
    /// `scripts/bench-report.sh`) still loads.
    #[test]
    fn the_committed_documents_load() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/bench");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("docs/bench") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            if value.get("results").is_none() || value.get("tool").is_some() {
                continue; // not a `brokerctl bench` document
            }
            let report: BenchReport = serde_json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!report.results.is_empty(), "{}", path.display());
            // What loads serialises back to the same figures.
            let again = report.json();
            assert_eq!(again["results"], value["results"], "{}", path.display());
            assert_eq!(again["purge"], value["purge"], "{}", path.display());
            n += 1;
        }
        assert!(n >= 5, "only {n} bench documents under {}", dir.display());
    }
}
