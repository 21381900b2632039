//! `brokerctl bench`: how much a store costs over its database, measured
//! against the raw driver in the same run.
//!
//! For each of save, get, take and delete, at each concurrency (default 1
//! and 32), the bench runs the operation through the [`BrokerStore`] trait
//! with sealed records of realistic size (what a [`TokenVault`] produces for
//! the chosen refresh-token and `user_info` sizes), then the equivalent
//! single statement or command through the **same driver and the same pool
//! or connection** the store uses, with payloads of the same size, in a
//! throwaway table, collection, key prefix or tree:
//!
//! | backend | save | get | take | delete |
//! |---|---|---|---|---|
//! | PostgreSQL | `INSERT … ON CONFLICT DO UPDATE` | `SELECT` | `DELETE … RETURNING` | `DELETE` |
//! | Redis | `SET EX` | `GET` | `GETDEL` | `DEL` |
//! | MongoDB | `replace_one` upsert | `find_one` | `find_one_and_delete` | `delete_one` |
//! | sled | `insert` (+ the store's flush policy) | `get` | `remove` (+ flush) | `remove` (+ flush) |
//! | memory | `Mutex<HashMap>` insert | get (clone) | remove | remove |
//!
//! Ours and raw alternate operation by operation, so background load hits
//! both alike. The report gives ops/s, p50 and p99 latency (from an HDR
//! histogram, within 0.1 %) and the ratio ours/raw. Before measuring,
//! `sessions` live sessions are stored (ours through the trait,
//! concurrently; the raw table in bulk), gets read random ones of them, and
//! saves, takes and deletes work on fresh sessions among them. Then
//! `purge_expired` is timed with E expired sessions among the stored ones,
//! and a scan of every session in bounded pages is timed with its peak RSS
//! (`VmHWM`, reset before the scan through `/proc/self/clear_refs`).
//!
//! Everything runs in a fresh namespace ([`Namespace::random`]) that is
//! dropped afterwards ([`BrokerStore::drop_namespace`]), together with the
//! raw table (unless `--keep`).
//!
//! Inside: the workload (ids, sessions, the timed driver), the runner, the
//! raw ceiling (a trait with one module per backend, each behind its cargo
//! feature; [`Backend`] picks one), the serde-derived results
//! ([`BenchReport`], what `--json` prints and `bench-report` reads) and the
//! text table.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use brokerctl::bench::{BenchArgs, run};
//! let args = BenchArgs { ops: 50, sessions: 100, purge: vec![10], ..BenchArgs::default() };
//! let report = run("memory://", &args, None, false).await.unwrap();
//! assert_eq!(report.results.len(), 8); // 4 operations × concurrency 1 and 32
//! assert!(report.results.iter().all(|r| r.ratio > 0.0));
//! println!("{}", report.table());
//! # });
//! ```

use std::sync::Arc;
use std::time::Instant;

use broker_core::crypto::EncryptionKey;
use broker_core::{BrokerStore, KeyConfig, KeySource, Namespace, StoreError, TokenVault, unix_now};
use serde::{Deserialize, Serialize};

use crate::StoreOpener;

mod raw;
mod report;
mod results;
mod runner;
mod stats;
mod sys;
mod workload;

pub use raw::Backend;
pub use results::{BenchReport, OpResult, PurgeResult, ScanResult, Stats, target};
pub use sys::{loadavg, reset_peak_rss, rss_kib};

const OP: &str = "bench";

/// What `brokerctl bench` prints when it seals with a given key: its seals
/// count against the key's nonce budget on this database only.
pub const BUDGET_WARNING: &str = "bench seals every session it writes with the given key; the \
    seals count against the key's nonce budget on this database (shared by all its namespaces), \
    but a database elsewhere that uses the same key keeps its own budget, which cannot see them.";

/// The options of `brokerctl bench` (also usable from code), recorded in
/// its report.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
pub struct BenchArgs {
    /// Operations per measurement (per operation, concurrency and round).
    #[arg(long, default_value_t = 10_000)]
    pub ops: usize,
    /// Concurrency levels (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 32])]
    pub concurrency: Vec<usize>,
    /// Refresh-token size in bytes (the sealed blob is a little larger).
    #[arg(long, default_value_t = 1024)]
    pub payload: usize,
    /// Size of each session's `user_info` JSON text in bytes (claims padded
    /// to this size; at least 134).
    #[arg(long, default_value_t = 300)]
    #[serde(default = "legacy_user_info")]
    pub user_info: usize,
    /// Live sessions stored before measuring (inserted concurrently).
    #[arg(long, default_value_t = 10_000)]
    pub sessions: usize,
    /// Concurrency of the preload.
    #[arg(long, default_value_t = 32)]
    pub preload_concurrency: usize,
    /// Expired-session counts to time `purge_expired` with (comma-separated;
    /// each among the stored live sessions).
    #[arg(long, value_delimiter = ',', default_values_t = [0, 1_000, 10_000])]
    pub purge: Vec<usize>,
    /// Page size of the scan of all stored sessions (0: no scan).
    #[arg(long, default_value_t = 1_000)]
    pub page: usize,
    /// Rounds per concurrency (samples are pooled; ours and raw alternate).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Keep the namespace and its preloaded sessions afterwards (its name is
    /// printed; with `--key-env` they stay readable, e.g. to time `migrate`).
    #[arg(long)]
    pub keep: bool,
}

/// The `user_info` size of runs recorded before `--user-info` existed.
fn legacy_user_info() -> usize {
    workload::LEGACY_USER_INFO_BYTES
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            ops: 10_000,
            concurrency: vec![1, 32],
            payload: 1024,
            user_info: 300,
            sessions: 10_000,
            preload_concurrency: 32,
            purge: vec![0, 1_000, 10_000],
            page: 1_000,
            rounds: 1,
            keep: false,
        }
    }
}

impl BenchArgs {
    fn check(&self) -> Result<(), StoreError> {
        use broker_core::validate::{MAX_REFRESH_TOKEN_BYTES, MAX_USER_INFO_BYTES};
        if self.ops == 0 || self.concurrency.is_empty() || self.concurrency.contains(&0) {
            return Err(StoreError::invalid(
                OP,
                "--ops and every --concurrency must be at least 1",
            ));
        }
        if self.payload > MAX_REFRESH_TOKEN_BYTES {
            return Err(StoreError::invalid(
                OP,
                format!("--payload must be at most {MAX_REFRESH_TOKEN_BYTES} bytes"),
            ));
        }
        let min = workload::min_user_info();
        if !(min..=MAX_USER_INFO_BYTES).contains(&self.user_info) {
            return Err(StoreError::invalid(
                OP,
                format!("--user-info must be {min} to {MAX_USER_INFO_BYTES} bytes"),
            ));
        }
        Ok(())
    }
}

/// Run the bench against `url` (see the module docs). `key` seals the
/// sessions (a random key if `None`); `progress` prints progress to stderr.
pub async fn run(
    url: &str,
    args: &BenchArgs,
    key: Option<KeySource>,
    progress: bool,
) -> Result<BenchReport, StoreError> {
    args.check()?;
    let started_at = unix_now();
    let loadavg_before = loadavg();
    let started = Instant::now();
    let opener = StoreOpener::new(url);
    let namespace = Namespace::random("bench")?;
    let store = opener.open(namespace.clone()).await?;
    let keys = KeyConfig::new(key.unwrap_or_else(|| EncryptionKey::generate().into()));
    let vault = Arc::new(TokenVault::open(store.clone(), keys).await?);
    let raw = opener
        .backend()
        .await?
        .raw(&format!("{namespace}_raw"))
        .await?;
    let say: runner::Say = Arc::new(move |msg: String| {
        if progress {
            eprintln!("bench: {msg}");
        }
    });
    let ctx = runner::Ctx {
        args: args.clone(),
        store: store.clone(),
        vault,
        raw: raw.clone(),
        say: say.clone(),
    };
    let outcome = ctx.measure().await;
    // Clean up whatever happened.
    let raw_cleanup = raw::cleanup(&raw, || runner::written_ids(args)).await;
    let kept = args.keep && outcome.is_ok();
    let store_cleanup = if kept {
        Ok(())
    } else {
        say("dropping the namespace".into());
        store.drop_namespace().await
    };
    let m = outcome?;
    raw_cleanup?;
    store_cleanup?;
    Ok(BenchReport {
        command: None,
        store: opener.scheme().to_ascii_lowercase(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at,
        elapsed_secs: results::round(started.elapsed().as_secs_f64(), 1),
        args: args.clone(),
        raw_ops: raw.describe().into(),
        sealed_bytes: m.sealed_bytes,
        namespace: namespace.to_string(),
        kept,
        preload_secs: results::round(m.preload_secs, 2),
        preload_ops_per_sec: results::round(
            results::per_sec(args.sessions as f64, m.preload_secs),
            1,
        ),
        raw_preload_secs: m.raw_preload_secs,
        results: m.results,
        purge: m.purge,
        scan: m.scan,
        peak_rss_kib: m.peak_rss_kib,
        loadavg_before,
        loadavg_after: loadavg(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_are_refused() {
        let ok = BenchArgs::default();
        assert!(ok.check().is_ok());
        for bad in [
            BenchArgs {
                ops: 0,
                ..ok.clone()
            },
            BenchArgs {
                concurrency: vec![1, 0],
                ..ok.clone()
            },
            BenchArgs {
                payload: 1 << 20,
                ..ok.clone()
            },
            BenchArgs {
                user_info: 10,
                ..ok.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_smallest_user_info_is_documented() {
        // `--user-info`'s help names the minimum.
        assert_eq!(workload::min_user_info(), 134);
    }
}
