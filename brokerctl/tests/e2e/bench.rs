//! `brokerctl bench` end to end with tiny counts, on the embedded stores and
//! on every server backend the environment names (a loud skip otherwise, a
//! failure under `CI=true`): the JSON report has every operation at every
//! concurrency with positive figures, loads back into
//! `brokerctl::bench::BenchReport`, and the run leaves nothing behind. No
//! timing assertions.

use assert_cmd::Command;

const OPS: u64 = 40;
const SESSIONS: u64 = 120;
const EXPIRED: u64 = 15;

fn bench_json(store: &str) -> serde_json::Value {
    let out = Command::cargo_bin("brokerctl")
        .expect("binary built")
        .env_remove("BROKER_STORE_URL")
        .env_remove("BROKER_NAMESPACE")
        .args([
            "--store",
            store,
            "--json",
            "bench",
            "--ops",
            &OPS.to_string(),
            "--sessions",
            &SESSIONS.to_string(),
            "--concurrency",
            "1,4",
            "--purge",
            &format!("0,{EXPIRED}"),
            "--page",
            "50",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out)))
}

fn positive(v: &serde_json::Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x > 0.0, "{what} = {x}");
    x
}

fn check_report(report: &serde_json::Value, scheme: &str) {
    assert_eq!(report["store"], scheme);
    // A 1 KiB token and a 300-byte user_info, sealed.
    assert_eq!(report["args"]["user_info"], 300, "{report}");
    assert!(
        report["sealed_bytes"].as_u64().unwrap() > 1024 + 300,
        "{report}"
    );
    let typed: brokerctl::bench::BenchReport =
        serde_json::from_value(report.clone()).expect("the JSON loads as a BenchReport");
    assert_eq!(&typed.json(), report, "serialises back unchanged");
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), 8, "{report}");
    for op in ["save", "get", "take", "delete"] {
        for c in [1, 4] {
            let r = results
                .iter()
                .find(|r| r["op"] == op && r["concurrency"] == c)
                .unwrap_or_else(|| panic!("no {op} at concurrency {c}: {report}"));
            for side in ["ours", "raw"] {
                let s = &r[side];
                assert_eq!(s["ops"], OPS, "{op}/{c}/{side}: {s}");
                assert_eq!(s["misses"], 0, "{op}/{c}/{side} missed: {s}");
                positive(&s["ops_per_sec"], "ops_per_sec");
                let p50 = positive(&s["p50_us"], "p50_us");
                let p99 = positive(&s["p99_us"], "p99_us");
                assert!(p99 >= p50, "{op}/{c}/{side}: p99 {p99} < p50 {p50}");
            }
            positive(&r["ratio"], "ratio");
        }
    }
    let purge = report["purge"].as_array().expect("purge");
    assert_eq!(purge.len(), 2, "{report}");
    assert_eq!(purge[0]["purged"], 0, "{report}");
    assert_eq!(purge[1]["expired"], EXPIRED, "{report}");
    assert_eq!(purge[1]["purged"], EXPIRED, "{report}");
    let scan = &report["scan"];
    assert_eq!(
        scan["sessions"], SESSIONS,
        "scan sees exactly the preload: {scan}"
    );
    assert!(scan["pages"].as_u64().unwrap() >= SESSIONS / 50, "{scan}");
    positive(&scan["peak_rss_kib"], "scan peak_rss_kib");
    positive(&report["peak_rss_kib"], "peak_rss_kib");
    assert_eq!(report["kept"], false);
    eprintln!(
        "{scheme}: {} results, sealed blob {} B, run took {} s",
        results.len(),
        report["sealed_bytes"],
        report["elapsed_secs"]
    );
}

#[test]
fn bench_on_memory_reports_every_op() {
    check_report(&bench_json("memory://"), "memory");
}

#[test]
fn bench_on_sled_reports_every_op_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let report = bench_json(&format!("sled://{}", dir.path().display()));
    check_report(&report, "sled");
    let ns = report["namespace"].as_str().expect("namespace");
    assert!(ns.starts_with("bench_"), "{ns}");
    // Neither the namespace's trees nor the raw tree are left behind.
    let db = store_sled::sled::open(dir.path()).unwrap();
    let left: Vec<String> = db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| n.starts_with(ns))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The URL of a server for the tests, or `None` after a loud skip.
fn server(get: impl std::future::Future<Output = Option<String>>) -> Option<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(get)
}

#[test]
fn bench_on_postgres_reports_every_op() {
    if let Some(url) = server(conformance::provision::postgres_url()) {
        check_report(&bench_json(&url), "postgres");
    }
}

#[test]
fn bench_on_redis_reports_every_op() {
    if let Some(url) = server(conformance::provision::redis_url()) {
        check_report(&bench_json(&url), "redis");
    }
}

#[test]
fn bench_on_redis_cluster_reports_every_op() {
    if let Some(urls) = server(conformance::provision::redis_cluster_urls()) {
        let nodes: Vec<&str> = urls
            .split(',')
            .map(|u| u.trim().trim_start_matches("redis://"))
            .collect();
        let url = format!("redis-cluster://{}", nodes.join(","));
        check_report(&bench_json(&url), "redis-cluster");
    }
}

#[test]
fn bench_on_mongo_reports_every_op() {
    if let Some(url) = server(conformance::provision::mongo_url()) {
        check_report(&bench_json(&url), "mongodb");
    }
}
