//! The human-readable form of a [`BenchReport`] (what `brokerctl bench`
//! prints without `--json`).

use std::fmt::Write;

use super::results::{BenchReport, OpResult};

impl BenchReport {
    /// The report as a human-readable table.
    pub fn table(&self) -> String {
        let a = &self.args;
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "store {}: {} stored sessions, refresh token {} B, user_info {} B (sealed blob {} B), \
             {} ops per measurement, {} round(s)\nraw ceiling: {}\n",
            self.store,
            a.sessions,
            a.payload,
            a.user_info,
            self.sealed_bytes,
            a.ops,
            a.rounds,
            self.raw_ops
        );
        let _ = writeln!(
            out,
            "{:<7}{:>5}{:>12}{:>12}{:>7}{:>8}{:>10}{:>10}{:>10}{:>10}",
            "op",
            "conc",
            "ours/s",
            "raw/s",
            "ratio",
            "target",
            "p50 us",
            "raw p50",
            "p99 us",
            "raw p99"
        );
        for r in &self.results {
            let _ = writeln!(
                out,
                "{:<7}{:>5}{:>12.0}{:>12.0}{:>7.2}{:>8}{:>10.1}{:>10.1}{:>10.1}{:>10.1}",
                r.op,
                r.concurrency,
                r.ours.ops_per_sec,
                r.raw.ops_per_sec,
                r.ratio,
                verdict(r),
                r.ours.p50_us,
                r.raw.p50_us,
                r.ours.p99_us,
                r.raw.p99_us
            );
        }
        let _ = writeln!(
            out,
            "\npreload: {} sessions in {:.1}s ({:.0}/s)",
            a.sessions, self.preload_secs, self.preload_ops_per_sec
        );
        for p in &self.purge {
            let _ = writeln!(
                out,
                "purge: {} expired among {} live -> purged {} in {:.1} ms",
                p.expired, p.live, p.purged, p.ms
            );
        }
        if let Some(s) = &self.scan {
            let _ = writeln!(
                out,
                "scan: {} sessions in {} pages of {} in {:.1}s; peak RSS {} (before: {})",
                s.sessions,
                s.pages,
                s.page,
                s.secs,
                kib(s.peak_rss_kib),
                kib(s.rss_before_kib)
            );
        }
        let _ = write!(
            out,
            "peak RSS before the scan: {}\nload average before/after: {}/{}\nnamespace {}{}",
            kib(self.peak_rss_kib),
            self.loadavg_before.map_or("n/a".into(), |l| l.to_string()),
            self.loadavg_after.map_or("n/a".into(), |l| l.to_string()),
            self.namespace,
            if self.kept { " (kept)" } else { " (dropped)" }
        );
        out
    }
}

/// `0.90 ok`, `0.90 !!` or `-` (no target).
fn verdict(r: &OpResult) -> String {
    match r.target {
        Some(t) if r.ratio >= t => format!("{t:.2} ok"),
        Some(t) => format!("{t:.2} !!"),
        None => "-".into(),
    }
}

fn kib(v: Option<u64>) -> String {
    v.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}
