//! The round-2 targets (issue 20), each with what one run measured and its
//! verdict: ours over raw per backend, and PostgreSQL against py-oidc-auth
//! and `pgbench`.

use super::Doc;
use super::fmt::{float, num};
use crate::docs::BenchDir;

/// What a target compares ours with.
#[derive(Clone, Copy)]
enum Against {
    /// The raw driver in the same `brokerctl bench` run.
    Raw,
    /// py-oidc-auth on the same server in the same run.
    PyOidcAuth,
    /// The server's own benchmark tool (`pgbench`, `redis-benchmark`).
    ServerLimit,
}

/// One target: ours on `run` for `op` at `concurrency` is at least `min`
/// times the figure `against` names.
struct Target {
    run: &'static str,
    op: &'static str,
    concurrency: usize,
    against: Against,
    min: f64,
}

const fn t(run: &'static str, op: &'static str, c: usize, against: Against, min: f64) -> Target {
    Target {
        run,
        op,
        concurrency: c,
        against,
        min,
    }
}

/// Issue 20's "Done when", in its order.
static TARGETS: [Target; 16] = [
    t("redis-10k", "get", 32, Against::Raw, 0.8),
    t("redis-10k", "take", 32, Against::Raw, 0.8),
    t("redis-10k", "save", 32, Against::Raw, 0.8),
    t("redis-10k", "get", 1, Against::Raw, 0.9),
    t("redis-10k", "take", 1, Against::Raw, 0.9),
    t("redis-10k", "save", 1, Against::Raw, 0.9),
    t("redis-cluster-10k", "get", 1, Against::Raw, 0.8),
    t("redis-cluster-10k", "get", 32, Against::Raw, 0.8),
    t("sled-10k", "get", 1, Against::Raw, 0.9),
    t("sled-10k", "get", 32, Against::Raw, 0.9),
    t("mongo-10k", "get", 1, Against::Raw, 0.8),
    t("postgres-10k", "take", 32, Against::Raw, 0.9),
    t("postgres-10k", "save", 32, Against::PyOidcAuth, 5.0),
    t("postgres-10k", "get", 32, Against::PyOidcAuth, 5.0),
    t("postgres-10k", "delete", 32, Against::PyOidcAuth, 5.0),
    t("postgres-10k", "get", 32, Against::ServerLimit, 0.5),
];

/// One target as measured.
pub(crate) struct Row {
    target: &'static Target,
    /// Ours, ops/s.
    ours: Option<f64>,
    /// The figure compared with, ops/s.
    theirs: Option<f64>,
}

impl Row {
    /// `ours ÷ theirs`, when both were measured.
    fn ratio(&self) -> Option<f64> {
        match (self.ours, self.theirs) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }

    /// The run's name.
    pub(crate) fn run(&self) -> &'static str {
        self.target.run
    }

    /// True when measured and short of the target.
    pub(crate) fn missed(&self) -> bool {
        self.ratio().is_some_and(|r| r < self.target.min)
    }

    /// `met`, `**missed** by …`, or `not measured in this run`.
    fn verdict(&self) -> String {
        let min = self.target.min;
        match self.ratio() {
            None => "not measured in this run".into(),
            Some(r) if r >= min => "met".into(),
            Some(r) if min >= 2.0 => format!("**missed**: {r:.1}× of {}×", num(min, 0)),
            Some(r) => format!("**missed** by {} pts", num((min - r) * 100.0, 0)),
        }
    }

    /// The target as written: `≥ 0.8` (of raw) or `≥ 5×` (py-oidc-auth).
    fn goal(&self) -> String {
        let min = self.target.min;
        if min >= 2.0 {
            format!("≥ {}×", num(min, 0))
        } else {
            format!("≥ {}", float(min))
        }
    }

    /// One line for the list of misses.
    pub(crate) fn miss_line(&self) -> String {
        let t = self.target;
        format!(
            "- Round 2, {}: {} at concurrency {}: {:.2} × the {} (target {}).",
            t.run,
            t.op,
            t.concurrency,
            self.ratio().unwrap_or_default(),
            against_text(t.against),
            self.goal()
        )
    }
}

fn against_text(a: Against) -> &'static str {
    match a {
        Against::Raw => "raw driver",
        Against::PyOidcAuth => "py-oidc-auth on the same server",
        Against::ServerLimit => "`pgbench -S -M prepared`",
    }
}

/// Every round-2 target as measured in `dir`, in the order.
pub(crate) fn rows(dir: &BenchDir) -> Vec<Row> {
    TARGETS
        .iter()
        .map(|target| {
            let x = dir
                .runs
                .get(target.run)
                .and_then(|r| Some((r, r.result(target.op, target.concurrency)?)));
            let theirs = x.and_then(|(run, x)| match target.against {
                Against::Raw => Some(x.raw.ops_per_sec),
                Against::PyOidcAuth => dir
                    .py
                    .values()
                    .find(|p| p.store == run.store)
                    .and_then(|p| p.result(target.op, target.concurrency))
                    .map(|s| s.ops_per_sec),
                Against::ServerLimit => dir
                    .limits
                    .as_ref()
                    .and_then(|l| l.get(&run.store, target.op, target.concurrency))
                    .map(|l| l.ops_per_sec),
            });
            Row {
                target,
                ours: x.map(|(_, x)| x.ours.ops_per_sec),
                theirs,
            }
        })
        .collect()
}

pub(crate) fn section(d: &mut Doc, dir: &BenchDir) {
    d.w("## Round-2 targets (issue 20)");
    d.w("");
    d.w(
        "Each target of issue 20 with what this run measured, from the runs below (10 000 \
         stored sessions): ours over the figure named, both in ops/s. The issue 8 targets stay \
         in the per-run tables; where the two differ, this table is the newer goal. Why a \
         target is missed: *Targets missed* at the end.",
    );
    d.w("");
    d.w("| run | op | conc | against | ours ops/s | theirs ops/s | ratio | target | verdict |");
    d.w("|---|---|---:|---|---:|---:|---:|---|---|");
    let ops = |x: Option<f64>| x.map_or("–".into(), |x| num(x, 0));
    for row in rows(dir) {
        let t = row.target;
        d.w(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.run,
            t.op,
            t.concurrency,
            against_text(t.against),
            ops(row.ours),
            ops(row.theirs),
            row.ratio().map_or("–".into(), |r| format!("{r:.2}")),
            row.goal(),
            row.verdict()
        ));
    }
    d.w("");
}
