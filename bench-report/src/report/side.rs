//! Side by side, per backend: ours, our raw ceiling, py-oidc-auth and the
//! server's own limit, measured in one run (issue 20, item 5).

use brokerctl::bench::BenchReport;

use super::Doc;
use super::fmt::{lat, num};
use crate::docs::{BenchDir, PyRun};

/// The backends compared: title, `BenchReport::store`, and the tool that
/// gives the server's own limit.
const BACKENDS: [(&str, &str, &str); 3] = [
    ("PostgreSQL", "postgres", "`pgbench -S -M prepared` (get)"),
    (
        "MongoDB",
        "mongodb",
        "none (no standard tool; the dev server is SecantusDB)",
    ),
    (
        "Redis",
        "redis",
        "`redis-benchmark` SET (save) and GET (get)",
    ),
];

/// The operations both libraries have.
const OPS: [&str; 3] = ["save", "get", "delete"];

/// Our run on `store` to set beside `py` (the same stored-session count if
/// there is one, else the smallest run).
fn ours<'a>(
    dir: &'a BenchDir,
    store: &str,
    py: Option<&PyRun>,
) -> Option<(&'a str, &'a BenchReport)> {
    let mut runs: Vec<(&str, &BenchReport)> = dir
        .runs
        .iter()
        .filter(|(_, r)| r.store == store)
        .map(|(n, r)| (n.as_str(), r))
        .collect();
    runs.sort_by_key(|(n, r)| {
        (
            py.is_none_or(|p| p.args.sessions != r.args.sessions),
            r.args.sessions,
            *n,
        )
    });
    runs.into_iter().next()
}

/// `a ÷ b` as `0.93` (or `12×` when large), `–` without both.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => {
            let x = a / b;
            if x >= 10.0 {
                format!("{}×", num(x, 0))
            } else {
                format!("{x:.2}")
            }
        }
        _ => "–".into(),
    }
}

fn ops(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| num(x, 0))
}

pub(crate) fn section(d: &mut Doc, dir: &BenchDir) {
    d.w("## Side by side: ours, the raw ceiling, py-oidc-auth, the server's own limit");
    d.w("");
    d.w(
        "One workload on the same servers in one run of `scripts/bench.sh`: a 1 KiB refresh \
         token and a 300-byte `user_info`, save / get / delete at concurrency 1 and 32 among \
         10 000 stored sessions. *ours*: through `BrokerStore`, sealed (AES-256-GCM); *raw*: \
         the one statement through the same pool (see below); *py-oidc-auth*: its own store \
         classes, which keep the token in plain text, in a venv the script pins \
         (`scripts/py-oidc-auth/requirements.txt`); *server limit*: the server's own benchmark \
         tool, a C client, at the same concurrency. Every figure is ops/s; ratios are ours over \
         the column named.",
    );
    d.w("");
    let any = !dir.py.is_empty() || dir.limits.as_ref().is_some_and(|l| !l.limits.is_empty());
    if !any {
        d.w(
            "Not measured yet: `bash scripts/bench.sh side-by-side` runs it (python3 ≥ 3.10, \
             network access for the pinned venv, `pgbench` and `redis-benchmark`).",
        );
        d.w("");
        return;
    }
    let window = dir
        .machine
        .as_ref()
        .and_then(|m| Some((m.started_at?, m.finished_at?)));
    let mut outside = Vec::new();
    let mut check = |name: &str, started_at: i64| {
        if window.is_none_or(|(a, b)| started_at < a || started_at > b) {
            outside.push(name.to_owned());
        }
    };
    for (title, store, tool) in BACKENDS {
        let py = dir.py.values().find(|p| p.store == store);
        let Some((name, r)) = ours(dir, store, py) else {
            continue;
        };
        check(name, r.started_at);
        if let Some(p) = py {
            check(&format!("py-oidc-auth-{store}"), p.started_at);
        }
        d.w(format!("### {title}"));
        d.w("");
        d.w(format!(
            "ours: `{name}`; py-oidc-auth: {}; server limit: {tool}.",
            py.map_or("no store for this backend".into(), |p| format!(
                "{} {}, {} (Python {})",
                p.tool, p.version, p.driver, p.python
            ))
        ));
        d.w("");
        d.w("| op | conc | ours | raw | py-oidc-auth | server limit | ours ÷ raw | ours ÷ py-oidc-auth | ours p50 / p99 µs | py-oidc-auth p50 / p99 µs |");
        d.w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for c in &r.args.concurrency {
            for op in OPS {
                let Some(x) = r.result(op, *c) else { continue };
                let p = py.and_then(|p| p.result(op, *c));
                let limit = dir
                    .limits
                    .as_ref()
                    .and_then(|l| l.get(store, op, *c))
                    .map(|l| l.ops_per_sec);
                d.w(format!(
                    "| {op} | {c} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
                    num(x.ours.ops_per_sec, 0),
                    num(x.raw.ops_per_sec, 0),
                    ops(p.map(|p| p.ops_per_sec)),
                    ops(limit),
                    ratio(Some(x.ours.ops_per_sec), Some(x.raw.ops_per_sec)),
                    ratio(Some(x.ours.ops_per_sec), p.map(|p| p.ops_per_sec)),
                    lat(x.ours.p50_us),
                    lat(x.ours.p99_us),
                    p.map_or("–".into(), |p| format!(
                        "{} / {}",
                        lat(p.p50_us),
                        lat(p.p99_us)
                    ))
                ));
            }
        }
        d.w("");
    }
    if let Some(l) = &dir.limits {
        check("server-limits", l.started_at);
    }
    if !outside.is_empty() {
        d.w(format!(
            "**Not from one run:** {} started outside the run recorded in `machine.json`; ratios \
             across them compare different conditions.",
            outside.join(", ")
        ));
        d.w("");
    }
}
