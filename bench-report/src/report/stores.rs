//! Store vs raw driver per run, scale (10 000 vs 1 000 000 stored) and
//! memory (scan and migrate).

use brokerctl::bench::{BenchReport, OpResult};

use super::Doc;
use super::fmt::{count, float, lat, mib, num, opt_float};
use crate::docs::BenchDir;

/// The verdict on one ratio.
pub(crate) fn verdict(r: &OpResult, store: &str) -> String {
    if store == "memory" {
        return "reference only".into();
    }
    match r.target {
        None => "no target".into(),
        Some(t) if r.ratio >= t => format!("met (≥ {})", float(t)),
        Some(t) => format!(
            "**missed** by {} pts (≥ {})",
            num((t - r.ratio) * 100.0, 0),
            float(t)
        ),
    }
}

pub(crate) fn ratios(d: &mut Doc, dir: &BenchDir) {
    d.w("## Store vs raw driver");
    d.w("");
    d.w(
        "Targets (issue 8): ours ≥ 0.9 × raw ops/s for get and take and ≥ 0.85 × for save at \
         concurrency 32, ≥ 0.8 × at concurrency 1 (delete at 32 has none). `memory://` is the \
         in-process test store, shown for reference: its raw ceiling is a bare `HashMap`, so the \
         ratio only shows the store's own CPU cost (microseconds).",
    );
    d.w("");
    for (name, r) in dir.ordered_runs() {
        let a = &r.args;
        d.w(format!(
            "### {name}: {}, {} stored sessions",
            r.store,
            count(a.sessions as u64)
        ));
        d.w("");
        d.w(format!(
            "Sealed blob {} B (refresh token {} B, user_info {} B); {} ops per cell; raw ceiling: \
             {}. Load average {} → {}; run took {} s.{}",
            r.sealed_bytes,
            a.payload,
            a.user_info,
            count(a.ops as u64),
            r.raw_ops,
            opt_float(r.loadavg_before),
            opt_float(r.loadavg_after),
            num(r.elapsed_secs, 0),
            dir.earlier(Some(r.started_at))
                .map_or(String::new(), |note| format!(" {note}"))
        ));
        d.w("");
        d.w("| op | conc | ours ops/s | raw ops/s | ratio | target | ours p50 / p99 µs | raw p50 / p99 µs |");
        d.w("|---|---:|---:|---:|---:|---|---:|---:|");
        for x in &r.results {
            let (o, rw) = (&x.ours, &x.raw);
            d.w(format!(
                "| {} | {} | {} | {} | {:.2} | {} | {} / {} | {} / {} |",
                x.op,
                x.concurrency,
                num(o.ops_per_sec, 0),
                num(rw.ops_per_sec, 0),
                x.ratio,
                verdict(x, &r.store),
                lat(o.p50_us),
                lat(o.p99_us),
                lat(rw.p50_us),
                lat(rw.p99_us)
            ));
        }
        d.w("");
    }
}

/// A larger run of a store against its smallest one.
pub(crate) struct Pair<'a> {
    /// `store (big vs small)`.
    pub(crate) label: String,
    pub(crate) small: &'a BenchReport,
    pub(crate) big: &'a BenchReport,
}

/// Every larger run of each store against its smallest run.
pub(crate) fn pairs(dir: &BenchDir) -> Vec<Pair<'_>> {
    let mut by_store: std::collections::BTreeMap<&str, Vec<(&str, &BenchReport)>> =
        Default::default();
    for (name, r) in &dir.runs {
        by_store.entry(&r.store).or_default().push((name, r));
    }
    let mut out = Vec::new();
    for (store, mut runs) in by_store {
        runs.sort_by_key(|(name, r)| (r.args.sessions, *name));
        let (small_name, small) = runs[0];
        for &(big_name, big) in &runs[1..] {
            if big.args.sessions > small.args.sessions {
                out.push(Pair {
                    label: format!("{store} ({big_name} vs {small_name})"),
                    small,
                    big,
                });
            }
        }
    }
    out
}

/// `a / b`, or 0 when `b` is 0.
pub(crate) fn times(a: f64, b: f64) -> f64 {
    if b != 0.0 { a / b } else { 0.0 }
}

pub(crate) fn scale(d: &mut Doc, dir: &BenchDir) {
    d.w("## Scale: 10 000 vs 1 000 000 stored sessions");
    d.w("");
    let pairs = pairs(dir);
    if pairs.is_empty() {
        d.w("No store has runs at two sizes yet.");
        d.w("");
    }
    for p in pairs {
        let (ns, nb) = (
            count(p.small.args.sessions as u64),
            count(p.big.args.sessions as u64),
        );
        d.w(format!(
            "### {}: p99 latency, {ns} vs {nb} stored (target: within 1.5×)",
            p.label
        ));
        d.w("");
        d.w(format!(
            "| op | conc | p99 µs @ {ns} | p99 µs @ {nb} | × | p50 µs @ {ns} | p50 µs @ {nb} | raw p99 × | verdict |"
        ));
        d.w("|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in &p.big.results {
            let Some(s) = p.small.result(&r.op, r.concurrency) else {
                continue;
            };
            let x = times(r.ours.p99_us, s.ours.p99_us);
            let v = if x <= 1.5 {
                "met".to_owned()
            } else {
                format!("**missed** ({x:.2}×)")
            };
            d.w(format!(
                "| {} | {} | {} | {} | {x:.2} | {} | {} | {:.2} | {v} |",
                r.op,
                r.concurrency,
                num(s.ours.p99_us, 0),
                num(r.ours.p99_us, 0),
                num(s.ours.p50_us, 0),
                num(r.ours.p50_us, 0),
                times(r.raw.p99_us, s.raw.p99_us)
            ));
        }
        d.w("");
        d.w(
            "`purge_expired` with E expired sessions among the stored ones (cost should follow \
             E, not the stored count):",
        );
        d.w("");
        d.w(format!(
            "| expired E | ms @ {ns} stored | ms @ {nb} stored | µs per expired @ {ns} | µs per expired @ {nb} |"
        ));
        d.w("|---:|---:|---:|---:|---:|");
        let per = |x: Option<f64>| x.map_or("–".into(), |x| num(x, 1));
        for s in &p.small.purge {
            let Some(b) = p.big.purge.iter().find(|b| b.expired == s.expired) else {
                continue;
            };
            d.w(format!(
                "| {} | {} | {} | {} | {} |",
                count(s.expired as u64),
                num(s.ms, 1),
                num(b.ms, 1),
                per(s.us_per_expired),
                per(b.us_per_expired)
            ));
        }
        d.w("");
    }
}

pub(crate) fn memory(d: &mut Doc, dir: &BenchDir) {
    d.w("## Memory: scan and migrate");
    d.w("");
    d.w(
        "Peak RSS (`VmHWM`) of the bench process during a scan of every stored session in pages \
         of 1000, reset just before the scan (`/proc/self/clear_refs`), and over the whole run \
         before the scan:",
    );
    d.w("");
    d.w("| run | stored | scan time s | RSS before scan MiB | peak RSS during scan MiB | peak RSS of the run before the scan MiB |");
    d.w("|---|---:|---:|---:|---:|---:|");
    for (name, r) in dir.ordered_runs() {
        let s = r.scan.as_ref();
        d.w(format!(
            "| {name} | {} | {} | {} | {} | {} |",
            count(r.args.sessions as u64),
            num(s.map_or(0.0, |s| s.secs), 1),
            mib(s.and_then(|s| s.rss_before_kib)),
            mib(s.and_then(|s| s.peak_rss_kib)),
            mib(r.peak_rss_kib)
        ));
    }
    d.w("");
    d.w(
        "The sled figures include sled's own page cache, which lives in the process (sled's \
         default `cache_capacity` is 1 GiB): at 1 000 000 sessions (≈1.2 GB of sealed blobs) it \
         fills, so the sled process RSS is the cache, not the scan. The client-server backends \
         show the scan's own cost: one page at a time.",
    );
    d.w("");
    if let Some(m) = &dir.migrate {
        let sessions = m
            .output
            .get("sessions")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        d.w(format!(
            "`brokerctl migrate` of {} sessions sled → sled (open, verify and re-seal each \
             session, page by page): {} s, peak RSS {} MiB (`/usr/bin/time -v`; two sled \
             databases, each with its own page cache, in one process).",
            num(sessions, 0),
            num(m.elapsed_secs, 0),
            num(m.max_rss_kib as f64 / 1024.0, 0)
        ));
        d.w("");
    }
}
