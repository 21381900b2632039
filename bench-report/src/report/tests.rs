//! JSON documents in, Markdown rows out.

use std::path::Path;

use serde_json::{Value, json};

use super::render;
use crate::docs::BenchDir;

fn stats(ops_per_sec: f64, p50: f64, p99: f64) -> Value {
    json!({"ops": 10000, "misses": 0, "ops_per_sec": ops_per_sec, "p50_us": p50, "p99_us": p99, "mean_us": p50})
}

fn result(op: &str, c: usize, ours: Value, raw: Value, ratio: f64, target: Option<f64>) -> Value {
    json!({"op": op, "concurrency": c, "ours": ours, "raw": raw, "ratio": ratio, "target": target})
}

fn bench_run(store: &str, sessions: usize, started_at: i64, results: Vec<Value>) -> Value {
    json!({
        "command": format!("brokerctl --store {store}://x --json bench --sessions {sessions}"),
        "store": store, "version": "0.1.0", "started_at": started_at, "elapsed_secs": 30.9,
        "args": {"ops": 10000, "concurrency": [1, 32], "payload": 1024, "user_info": 300,
                 "sessions": sessions, "preload_concurrency": 32, "purge": [0, 1000],
                 "page": 1000, "rounds": 1, "keep": false},
        "raw_ops": "SELECT", "sealed_bytes": 1363, "namespace": "bench_1", "kept": false,
        "preload_secs": 1.0, "preload_ops_per_sec": 10000.0, "raw_preload_secs": 0.1,
        "results": results,
        "purge": [
            {"expired": 0, "live": sessions, "purged": 0, "ms": 2.09, "us_per_expired": null},
            {"expired": 1000, "live": sessions, "purged": 1000, "ms": 5.14, "us_per_expired": 5.14},
        ],
        "scan": {"sessions": sessions, "pages": 10, "page": 1000, "secs": 0.09,
                 "sessions_per_sec": 105266.8, "rss_before_kib": 45432, "peak_rss_kib": 46432,
                 "peak_isolated": true},
        "peak_rss_kib": 47432, "loadavg_before": 2.0, "loadavg_after": 3.56,
    })
}

/// A machine, one PostgreSQL run at 10 000 and one at 1 000 000, py-oidc-auth
/// and pgbench, all in the run window unless `late_py`.
fn dir(late_py: bool) -> BenchDir {
    let small = bench_run(
        "postgres",
        10_000,
        1_000_100,
        vec![
            result(
                "save",
                1,
                stats(3949.5, 213.8, 560.0),
                stats(3939.9, 229.1, 580.5),
                1.002,
                Some(0.8),
            ),
            result(
                "get",
                1,
                stats(5366.2, 175.0, 350.0),
                stats(5408.0, 158.0, 447.0),
                0.992,
                Some(0.8),
            ),
            result(
                "take",
                32,
                stats(14262.0, 2164.0, 3638.0),
                stats(16850.0, 1783.0, 3246.0),
                0.846,
                Some(0.9),
            ),
            result(
                "delete",
                32,
                stats(15204.0, 9.44, 4436.0),
                stats(18265.0, 1587.0, 4047.0),
                0.832,
                None,
            ),
        ],
    );
    let big = bench_run(
        "postgres",
        1_000_000,
        1_000_200,
        vec![result(
            "get",
            1,
            stats(4012.0, 207.0, 682.0),
            stats(4345.0, 214.0, 494.0),
            0.923,
            Some(0.8),
        )],
    );
    let py = json!({
        "command": "bash scripts/py-oidc-auth-bench.sh --store postgres",
        "tool": "py-oidc-auth", "version": "2606.0.0", "python": "3.11.7", "store": "postgres",
        "driver": "SQLAlchemyBrokerStore on asyncpg", "started_at": if late_py { 2_000_000 } else { 1_000_150 },
        "elapsed_secs": 60.0,
        "args": {"ops": 10000, "concurrency": [1, 32], "payload": 1024, "user_info": 300, "sessions": 10000},
        "results": [{"op": "get", "concurrency": 1, "stats": stats(1000.4, 900.0, 2000.0)},
                    {"op": "delete", "concurrency": 32, "stats": stats(2000.0, 9000.0, 20000.0)}],
        "loadavg_before": 1.0, "loadavg_after": 1.5,
    });
    let limits = json!({"started_at": 1_000_120, "limits": [
        {"store": "postgres", "op": "get", "concurrency": 1, "ops_per_sec": 25000.2, "command": "pgbench -S"},
    ]});
    let machine = json!({
        "cpu": "AMD EPYC", "cores": 2, "ram_gib": 23.5, "aes_ni": true, "kernel": "6.1",
        "rustc": "rustc 1.95.0", "date": "2026-11-23 16:59 UTC", "started_at": 1_000_000,
        "finished_at": 1_000_300, "loadavg": 2.03, "loadavg_end": 0.5, "exclusive": false,
        "idle_check": {"window_secs": 5.0, "busy_percent_before": 42.4,
                       "busy_percent_after": 3.0, "idle_below_percent": 10.0},
        "postgres": {"version": "15", "fsync": "off", "synchronous_commit": "on"},
        "redis": {},
    });
    let mut d = BenchDir::default();
    for (stem, v) in [
        ("postgres-10k", small),
        ("postgres-1m", big),
        ("py-oidc-auth-postgres", py),
        ("server-limits", limits),
        ("machine", machine),
    ] {
        d.insert(stem, &v.to_string(), Path::new(stem)).expect(stem);
    }
    d
}

fn has(page: &str, line: &str) {
    assert!(
        page.lines().any(|l| l == line),
        "no line\n{line}\nin\n{page}"
    );
}

#[test]
fn store_vs_raw_rows_and_verdicts() {
    let page = render(&dir(false));
    has(&page, "### postgres-10k: postgres, 10 000 stored sessions");
    has(
        &page,
        "| get | 1 | 5 366 | 5 408 | 0.99 | met (≥ 0.8) | 175 / 350 | 158 / 447 |",
    );
    has(
        &page,
        "| take | 32 | 14 262 | 16 850 | 0.85 | **missed** by 5 pts (≥ 0.9) | 2 164 / 3 638 | 1 783 / 3 246 |",
    );
    has(
        &page,
        "| delete | 32 | 15 204 | 18 265 | 0.83 | no target | 9.4 / 4 436 | 1 587 / 4 047 |",
    );
    has(
        &page,
        "- postgres-10k: take at concurrency 32: ratio 0.85 vs target 0.9 (short by 5 points).",
    );
    assert!(
        page.contains("- **postgres**: Get, take and delete are one statement each"),
        "{page}"
    );
}

#[test]
fn scale_rows_compare_the_sizes() {
    let page = render(&dir(false));
    has(
        &page,
        "### postgres (postgres-1m vs postgres-10k): p99 latency, 10 000 vs 1 000 000 stored (target: within 1.5×)",
    );
    has(
        &page,
        "| get | 1 | 350 | 682 | 1.95 | 175 | 207 | 1.11 | **missed** (1.95×) |",
    );
    has(&page, "| 1 000 | 5.1 | 5.1 | 5.1 | 5.1 |");
    has(
        &page,
        "- postgres (postgres-1m vs postgres-10k) scale: p99 of get at concurrency 1 grew 1.95× (target ≤ 1.5×).",
    );
}

#[test]
fn side_by_side_rows_put_four_figures_together() {
    let page = render(&dir(false));
    has(&page, "### PostgreSQL");
    has(
        &page,
        "| get | 1 | 5 366 | 5 408 | 1 000 | 25 000 | 0.99 | 5.36 | 175 / 350 | 900 / 2 000 |",
    );
    // Measured by neither py-oidc-auth nor pgbench: dashes, not zeros.
    has(
        &page,
        "| save | 1 | 3 950 | 3 940 | – | – | 1.00 | – | 214 / 560 | – |",
    );
    assert!(!page.contains("Not from one run"), "{page}");
    let late = render(&dir(true));
    assert!(
        late.contains("**Not from one run:** py-oidc-auth-postgres"),
        "{late}"
    );
}

#[test]
fn round_2_targets_each_get_a_verdict() {
    let page = render(&dir(false));
    has(
        &page,
        "| postgres-10k | take | 32 | raw driver | 14 262 | 16 850 | 0.85 | ≥ 0.9 | **missed** by 5 pts |",
    );
    has(
        &page,
        "| postgres-10k | delete | 32 | py-oidc-auth on the same server | 15 204 | 2 000 | 7.60 | ≥ 5× | met |",
    );
    has(
        &page,
        "| redis-10k | get | 32 | raw driver | – | – | – | ≥ 0.8 | not measured in this run |",
    );
    has(
        &page,
        "- Round 2, postgres-10k: take at concurrency 32: 0.85 × the raw driver (target ≥ 0.9).",
    );
    assert!(!page.contains("- Round 2, postgres-10k: delete"), "{page}");
}

#[test]
fn a_run_older_than_the_page_says_so() {
    let mut d = dir(false);
    let page = render(&d);
    assert!(!page.contains("From an earlier run"), "{page}");
    let old = bench_run("sled", 10_000, 86_400, vec![]);
    d.insert("sled-10k", &old.to_string(), Path::new("sled-10k"))
        .expect("sled-10k");
    let page = render(&d);
    assert!(
        page.contains(
            "run took 31 s. **From an earlier run** (started 1970-01-02 00:00 UTC), not re-run \
             with the others on this page."
        ),
        "{page}"
    );
}

#[test]
fn machine_records_idleness_measured() {
    let page = render(&dir(false));
    has(
        &page,
        "- CPU: AMD EPYC, 2 cores (AES-NI and PCLMULQDQ present); RAM 23.5 GiB; Linux 6.1; rustc 1.95.0",
    );
    has(
        &page,
        "- Measured, not declared: the CPUs were 42% busy over the 5.0 s before the first run (**not idle**: idle means under 10.0%), and 3% busy after the last.",
    );
    assert!(page.contains("**Caveat:**"), "{page}");
}

/// docs/BENCHMARKS.md is what `report` makes of docs/bench: nobody edited
/// it by hand, and nobody changed the data without regenerating it.
#[test]
fn the_committed_page_is_what_the_committed_documents_give() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("docs/BENCHMARKS.md");
    let page = super::regenerate(&root.join("docs/bench"), &path).expect("the page regenerates");
    let committed = crate::docs::read(&path).expect("docs/BENCHMARKS.md");
    if page != committed {
        let first = page
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(page.lines().count().min(committed.lines().count()));
        panic!(
            "docs/BENCHMARKS.md differs from `cargo run -p bench-report -- report` from line {}:\n\
             generated: {:?}\ncommitted: {:?}",
            first + 1,
            page.lines().nth(first),
            committed.lines().nth(first)
        );
    }
}
