//! `brokerctl bench`: how much a store costs over its database, measured
//! against the raw driver in the same run.
//!
//! For each of save, get, take and delete, at each concurrency (default 1
//! and 32), the bench runs the operation through the [`BrokerStore`] trait
//! with sealed records of realistic size (what a [`TokenVault`] produces for
//! the chosen refresh-token size), then the equivalent single statement or
//! command through the **same driver and the same pool or connection** the
//! store uses, with payloads of the same size, in a throwaway table,
//! collection, key prefix or tree:
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
//! both alike. The report gives ops/s, p50 and p99 latency and the ratio
//! ours/raw. Before measuring, `sessions` live sessions are stored (ours
//! through the trait, concurrently; the raw table in bulk), gets read random
//! ones of them, and saves, takes and deletes work on fresh sessions among
//! them. Then `purge_expired` is timed with E expired sessions among the
//! stored ones, and a scan of every session in bounded pages is timed with
//! its peak RSS (`VmHWM`, reset before the scan through
//! `/proc/self/clear_refs`).
//!
//! Everything runs in a fresh namespace ([`Namespace::random`]) that is
//! dropped afterwards ([`BrokerStore::drop_namespace`]), together with the
//! raw table (unless `--keep`).
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use brokerctl::bench::{BenchArgs, run};
//! let args = BenchArgs { ops: 50, sessions: 100, purge: vec![10], ..BenchArgs::default() };
//! let report = run("memory://", &args, None, false).await.unwrap();
//! assert_eq!(report.results.len(), 8); // 4 operations × concurrency 1 and 32
//! assert!(report.results.iter().all(|r| r.ratio() > 0.0));
//! println!("{}", report.table());
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_core::crypto::EncryptionKey;
use broker_core::{
    BrokerStore, KeyConfig, KeySource, Namespace, Session, SessionRecord, StoreError, TokenVault,
    unix_now,
};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::StoreOpener;

const OP: &str = "bench";

/// What `brokerctl bench` prints when it seals with a given key: its seals
/// count against the key's nonce budget on this database only.
pub const BUDGET_WARNING: &str = "bench seals every session it writes with the given key; the \
    seals count against the key's nonce budget on this database (shared by all its namespaces), \
    but a database elsewhere that uses the same key keeps its own budget, which cannot see them.";
/// Sessions live this long in the bench (seconds).
const TTL: i64 = 3600;

/// The options of `brokerctl bench` (also usable from code).
#[derive(Debug, Clone, clap::Args)]
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

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            ops: 10_000,
            concurrency: vec![1, 32],
            payload: 1024,
            sessions: 10_000,
            preload_concurrency: 32,
            purge: vec![0, 1_000, 10_000],
            page: 1_000,
            rounds: 1,
            keep: false,
        }
    }
}

/// The database handle behind a [`StoreOpener`]'s stores (see
/// [`StoreOpener::backend`]): the same pool, connection or sled database.
#[non_exhaustive]
pub enum Backend {
    /// `memory://` (the raw ceiling is a `Mutex<HashMap>`).
    Memory,
    /// A sled database, and whether the store flushes after every write.
    #[cfg(feature = "sled")]
    Sled {
        /// The open database.
        db: store_sled::sled::Db,
        /// True under [`store_sled::Durability::Flush`].
        flush: bool,
    },
    /// A PostgreSQL pool.
    #[cfg(feature = "postgres")]
    Postgres(store_postgres::sqlx::PgPool),
    /// A MongoDB database.
    #[cfg(feature = "mongo")]
    Mongo(store_mongo::mongodb::Database),
    /// A single Redis server's connection manager.
    #[cfg(feature = "redis")]
    Redis(store_redis::redis::aio::ConnectionManager),
    /// A Redis Cluster connection.
    #[cfg(feature = "redis")]
    RedisCluster(store_redis::ReconnectingCluster),
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Memory => "Memory",
            #[cfg(feature = "sled")]
            Self::Sled { .. } => "Sled",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "Postgres",
            #[cfg(feature = "mongo")]
            Self::Mongo(_) => "Mongo",
            #[cfg(feature = "redis")]
            Self::Redis(_) => "Redis",
            #[cfg(feature = "redis")]
            Self::RedisCluster(_) => "RedisCluster",
        };
        write!(f, "Backend::{name}")
    }
}

/// Latency and throughput of one side of one measurement.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Operations measured.
    pub ops: u64,
    /// Operations that found nothing (a get/take/delete miss; 0 expected).
    pub misses: u64,
    /// Operations per second (ops / wall time).
    pub ops_per_sec: f64,
    /// Median latency in microseconds.
    pub p50_us: f64,
    /// 99th-percentile latency in microseconds.
    pub p99_us: f64,
    /// Mean latency in microseconds.
    pub mean_us: f64,
}

impl Stats {
    fn from_samples(s: &Samples) -> Self {
        let mut lat = s.lat_ns.clone();
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let rank = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
            lat[rank - 1] as f64 / 1000.0
        };
        let secs = s.elapsed.as_secs_f64();
        Self {
            ops: lat.len() as u64,
            misses: s.misses,
            ops_per_sec: if secs > 0.0 {
                lat.len() as f64 / secs
            } else {
                0.0
            },
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            mean_us: if lat.is_empty() {
                0.0
            } else {
                lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0
            },
        }
    }

    fn json(&self) -> Value {
        json!({
            "ops": self.ops,
            "misses": self.misses,
            "ops_per_sec": round(self.ops_per_sec, 1),
            "p50_us": round(self.p50_us, 1),
            "p99_us": round(self.p99_us, 1),
            "mean_us": round(self.mean_us, 1),
        })
    }
}

/// One operation at one concurrency: ours and the raw ceiling.
#[derive(Debug, Clone)]
pub struct OpResult {
    /// `save`, `get`, `take` or `delete`.
    pub op: &'static str,
    /// Concurrent callers.
    pub concurrency: usize,
    /// Through the [`BrokerStore`] trait.
    pub ours: Stats,
    /// The raw statement or command.
    pub raw: Stats,
}

impl OpResult {
    /// Our ops/s over the raw ops/s.
    pub fn ratio(&self) -> f64 {
        if self.raw.ops_per_sec > 0.0 {
            self.ours.ops_per_sec / self.raw.ops_per_sec
        } else {
            0.0
        }
    }

    /// The issue's target ratio for this operation and concurrency, if it
    /// names one: 0.8 at concurrency 1; 0.9 for get and take and 0.85 for
    /// save above it (none for delete there).
    pub fn target(&self) -> Option<f64> {
        match (self.op, self.concurrency) {
            (_, 1) => Some(0.8),
            ("get" | "take", _) => Some(0.9),
            ("save", _) => Some(0.85),
            _ => None,
        }
    }
}

/// `purge_expired` with `expired` expired sessions among the stored ones.
#[derive(Debug, Clone)]
pub struct PurgeResult {
    /// Expired sessions written before the purge.
    pub expired: usize,
    /// Live sessions stored meanwhile.
    pub live: usize,
    /// What `purge_expired` reported.
    pub purged: u64,
    /// Its wall time.
    pub elapsed: Duration,
}

/// A scan of every stored session in pages.
#[derive(Debug, Clone)]
pub struct ScanResult {
    /// Sessions seen.
    pub sessions: u64,
    /// Pages read.
    pub pages: u64,
    /// Page size asked for.
    pub page: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Resident memory before the scan (KiB).
    pub rss_before_kib: Option<u64>,
    /// Peak resident memory during the scan (KiB).
    pub peak_rss_kib: Option<u64>,
    /// True if the peak was reset before the scan, so it is the scan's own.
    pub peak_isolated: bool,
}

/// Everything one `bench` run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The store's URL scheme (never the URL: it may hold a password).
    pub store: String,
    /// The options.
    pub args: BenchArgs,
    /// What the raw ceiling runs.
    pub raw_ops: &'static str,
    /// Size of one sealed session blob (the raw payload size).
    pub sealed_bytes: usize,
    /// The throwaway namespace.
    pub namespace: String,
    /// Whether the namespace was kept.
    pub kept: bool,
    /// Preload wall time.
    pub preload: Duration,
    /// Raw-table preload wall time.
    pub raw_preload: Duration,
    /// Per operation and concurrency.
    pub results: Vec<OpResult>,
    /// Purge timings.
    pub purge: Vec<PurgeResult>,
    /// The scan, unless `--page 0`.
    pub scan: Option<ScanResult>,
    /// Peak RSS of the process before the scan (KiB): preload and measurements.
    pub peak_rss_kib: Option<u64>,
    /// When the run started (Unix seconds).
    pub started_at: i64,
    /// Total wall time.
    pub elapsed: Duration,
    /// The 1-minute load average before and after the run (other work on
    /// the machine skews the figures; this says how much there was).
    pub loadavg: (Option<f64>, Option<f64>),
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

impl BenchReport {
    /// The report as one JSON document (`--json`).
    pub fn json(&self) -> Value {
        let a = &self.args;
        json!({
            "store": self.store,
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": self.started_at,
            "elapsed_secs": round(self.elapsed.as_secs_f64(), 1),
            "args": {
                "ops": a.ops, "concurrency": a.concurrency, "payload": a.payload,
                "sessions": a.sessions, "preload_concurrency": a.preload_concurrency,
                "purge": a.purge, "page": a.page, "rounds": a.rounds, "keep": a.keep,
            },
            "raw_ops": self.raw_ops,
            "sealed_bytes": self.sealed_bytes,
            "namespace": self.namespace,
            "kept": self.kept,
            "preload_secs": round(self.preload.as_secs_f64(), 2),
            "preload_ops_per_sec": round(per_sec(a.sessions, self.preload), 1),
            "raw_preload_secs": round(self.raw_preload.as_secs_f64(), 2),
            "results": self.results.iter().map(|r| json!({
                "op": r.op,
                "concurrency": r.concurrency,
                "ours": r.ours.json(),
                "raw": r.raw.json(),
                "ratio": round(r.ratio(), 3),
                "target": r.target(),
            })).collect::<Vec<_>>(),
            "purge": self.purge.iter().map(|p| json!({
                "expired": p.expired,
                "live": p.live,
                "purged": p.purged,
                "ms": round(p.elapsed.as_secs_f64() * 1000.0, 2),
                "us_per_expired": if p.expired > 0 {
                    Some(round(p.elapsed.as_secs_f64() * 1e6 / p.expired as f64, 2))
                } else { None },
            })).collect::<Vec<_>>(),
            "scan": self.scan.as_ref().map(|s| json!({
                "sessions": s.sessions,
                "pages": s.pages,
                "page": s.page,
                "secs": round(s.elapsed.as_secs_f64(), 2),
                "sessions_per_sec": round(per_sec(s.sessions as usize, s.elapsed), 1),
                "rss_before_kib": s.rss_before_kib,
                "peak_rss_kib": s.peak_rss_kib,
                "peak_isolated": s.peak_isolated,
            })),
            "peak_rss_kib": self.peak_rss_kib,
            "loadavg_before": self.loadavg.0,
            "loadavg_after": self.loadavg.1,
        })
    }

    /// The report as a human-readable table.
    pub fn table(&self) -> String {
        let a = &self.args;
        let mut out = format!(
            "store {}: {} stored sessions, refresh token {} B (sealed blob {} B), {} ops per measurement, {} round(s)\n\
             raw ceiling: {}\n\n",
            self.store, a.sessions, a.payload, self.sealed_bytes, a.ops, a.rounds, self.raw_ops
        );
        out.push_str(&format!(
            "{:<7}{:>5}{:>12}{:>12}{:>7}{:>8}{:>10}{:>10}{:>10}{:>10}\n",
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
        ));
        for r in &self.results {
            let target = match r.target() {
                Some(t) if r.ratio() >= t => format!("{t:.2} ok"),
                Some(t) => format!("{t:.2} !!"),
                None => "-".into(),
            };
            out.push_str(&format!(
                "{:<7}{:>5}{:>12.0}{:>12.0}{:>7.2}{:>8}{:>10.1}{:>10.1}{:>10.1}{:>10.1}\n",
                r.op,
                r.concurrency,
                r.ours.ops_per_sec,
                r.raw.ops_per_sec,
                r.ratio(),
                target,
                r.ours.p50_us,
                r.raw.p50_us,
                r.ours.p99_us,
                r.raw.p99_us
            ));
        }
        out.push_str(&format!(
            "\npreload: {} sessions in {:.1}s ({:.0}/s)\n",
            a.sessions,
            self.preload.as_secs_f64(),
            per_sec(a.sessions, self.preload)
        ));
        for p in &self.purge {
            out.push_str(&format!(
                "purge: {} expired among {} live -> purged {} in {:.1} ms\n",
                p.expired,
                p.live,
                p.purged,
                p.elapsed.as_secs_f64() * 1000.0
            ));
        }
        if let Some(s) = &self.scan {
            out.push_str(&format!(
                "scan: {} sessions in {} pages of {} in {:.1}s; peak RSS {} (before: {})\n",
                s.sessions,
                s.pages,
                s.page,
                s.elapsed.as_secs_f64(),
                kib(s.peak_rss_kib),
                kib(s.rss_before_kib)
            ));
        }
        out.push_str(&format!(
            "peak RSS before the scan: {}\nload average before/after: {}/{}\nnamespace {}{}",
            kib(self.peak_rss_kib),
            self.loadavg.0.map_or("n/a".into(), |l| l.to_string()),
            self.loadavg.1.map_or("n/a".into(), |l| l.to_string()),
            self.namespace,
            if self.kept { " (kept)" } else { " (dropped)" }
        ));
        out
    }
}

fn kib(v: Option<u64>) -> String {
    v.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn per_sec(n: usize, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

/// `(VmRSS, VmHWM)` of this process in KiB, from `/proc/self/status`.
pub fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The 1-minute load average, from `/proc/loadavg`.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Reset this process's peak RSS (`VmHWM`) to its current RSS (Linux).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Latencies of one measurement.
#[derive(Default)]
struct Samples {
    lat_ns: Vec<u64>,
    misses: u64,
    elapsed: Duration,
}

impl Samples {
    fn merge(&mut self, other: Samples) {
        self.lat_ns.extend(other.lat_ns);
        self.misses += other.misses;
        self.elapsed += other.elapsed;
    }
}

/// Run `f(0..count)` from `concurrency` tasks; `f` returns whether it found
/// something. Stops at the first error.
async fn drive<F, Fut>(concurrency: usize, count: usize, f: F) -> Result<Samples, StoreError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, StoreError>> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let concurrency = concurrency.clamp(1, count.max(1));
    let started = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|_| {
            let (f, next, failed) = (f.clone(), next.clone(), failed.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(count / concurrency + 1);
                let mut misses = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let t = Instant::now();
                    match f(i).await {
                        Ok(hit) => {
                            lat.push(t.elapsed().as_nanos() as u64);
                            misses += u64::from(!hit);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
                Ok((lat, misses))
            })
        })
        .collect();
    let mut out = Samples::default();
    let mut first_err = None;
    for h in handles {
        match h.await.map_err(|e| StoreError::backend(OP, e)) {
            Ok(Ok((lat, misses))) => {
                out.lat_ns.extend(lat);
                out.misses += misses;
            }
            Ok(Err(e)) | Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    out.elapsed = started.elapsed();
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// A well-spread 64-bit hash (splitmix64), for session ids and random picks.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Session id `i` of id space `space` (random-looking, like real jtis).
fn jti(space: u64, i: usize) -> String {
    format!("{:016x}{:08x}", mix((space << 40) ^ i as u64), i)
}

const PRELOAD_SPACE: u64 = 1;
const EXPIRED_SPACE: u64 = 2;

fn phase_space(concurrency: usize, round: usize) -> u64 {
    1000 + (concurrency as u64) * 100 + round as u64
}

/// `len` incompressible bytes (for the raw preload).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed;
    while out.len() < len {
        x = mix(x);
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn session(jti: String, i: usize, payload: usize, expires_at: i64) -> Session {
    let token: String = noise(i as u64, payload.div_ceil(2))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(payload)
        .collect();
    Session {
        jti,
        sub: format!("user{:06}", i % 100_000),
        refresh_token: SecretString::from(token),
        user_info: serde_json::json!({
            "sub": format!("user{:06}", i % 100_000),
            "email": "jane.doe@example.org",
            "name": "Jane Doe",
            "preferred_username": "jdoe",
            "groups": ["staff", "admins"],
        })
        .into(),
        expires_at,
        auth_time: expires_at - TTL,
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
    if args.ops == 0 || args.concurrency.is_empty() || args.concurrency.contains(&0) {
        return Err(StoreError::invalid(
            OP,
            "--ops and every --concurrency must be at least 1",
        ));
    }
    if args.payload > broker_core::validate::MAX_REFRESH_TOKEN_BYTES {
        return Err(StoreError::invalid(
            OP,
            format!(
                "--payload must be at most {} bytes",
                broker_core::validate::MAX_REFRESH_TOKEN_BYTES
            ),
        ));
    }
    let started_at = unix_now();
    let load_before = loadavg();
    let started = Instant::now();
    let opener = StoreOpener::new(url);
    let namespace = Namespace::random("bench")?;
    let store = opener.open(namespace.clone()).await?;
    let keys = KeyConfig::new(key.unwrap_or_else(|| EncryptionKey::generate().into()));
    let vault = Arc::new(TokenVault::open(store.clone(), keys).await?);
    let raw = Arc::new(Raw::open(opener.backend().await?, &format!("{namespace}_raw")).await?);
    let say: Say = Arc::new(move |msg: String| {
        if progress {
            eprintln!("bench: {msg}");
        }
    });
    let ctx = Ctx {
        args: args.clone(),
        store: store.clone(),
        vault,
        raw: raw.clone(),
        say: say.clone(),
    };
    let outcome = ctx.measure().await;
    // Clean up whatever happened.
    let raw_cleanup = raw.cleanup(args).await;
    let kept = args.keep && outcome.is_ok();
    let store_cleanup = if kept {
        Ok(())
    } else {
        say("dropping the namespace".into());
        store.drop_namespace().await
    };
    let mut m = outcome?;
    raw_cleanup?;
    store_cleanup?;
    m.store = opener.scheme().to_ascii_lowercase();
    m.namespace = namespace.to_string();
    m.kept = kept;
    m.started_at = started_at;
    m.elapsed = started.elapsed();
    m.loadavg = (load_before, loadavg());
    Ok(m)
}

/// Where progress lines go.
type Say = Arc<dyn Fn(String) + Send + Sync>;

struct Ctx {
    args: BenchArgs,
    store: Arc<dyn BrokerStore>,
    vault: Arc<TokenVault>,
    raw: Arc<Raw>,
    say: Say,
}

impl Ctx {
    async fn measure(&self) -> Result<BenchReport, StoreError> {
        let a = self.args.clone();
        let now = unix_now();
        let sample = self
            .vault
            .seal_session(OP, &session(jti(0, 0), 0, a.payload, now + TTL))
            .await?;
        let sealed_bytes = sample.sealed.len();

        // Preload: ours through the trait, concurrently; raw in bulk.
        (self.say)(format!("preloading {} sessions", a.sessions));
        let preload = self
            .write_sessions(PRELOAD_SPACE, a.sessions, now + TTL)
            .await?;
        (self.say)(format!(
            "preloaded in {:.1}s; raw table next",
            preload.as_secs_f64()
        ));
        let t = Instant::now();
        self.raw
            .preload(a.sessions, sealed_bytes, now + TTL, a.preload_concurrency)
            .await?;
        let raw_preload = t.elapsed();

        let mut results = Vec::new();
        for &c in &a.concurrency {
            let mut pooled: Vec<(Samples, Samples)> = (0..4).map(|_| Default::default()).collect();
            for round in 0..a.rounds {
                (self.say)(format!("concurrency {c}, round {}", round + 1));
                let phases = self.round(c, round).await?;
                for (slot, (ours, raw)) in pooled.iter_mut().zip(phases) {
                    slot.0.merge(ours);
                    slot.1.merge(raw);
                }
            }
            for (op, (ours, raw)) in ["save", "get", "take", "delete"].into_iter().zip(pooled) {
                results.push(OpResult {
                    op,
                    concurrency: c,
                    ours: Stats::from_samples(&ours),
                    raw: Stats::from_samples(&raw),
                });
            }
        }

        let mut purge = Vec::new();
        for &expired in &a.purge {
            (self.say)(format!("purge with {expired} expired sessions"));
            self.write_sessions(EXPIRED_SPACE, expired, unix_now() - 120)
                .await?;
            let t = Instant::now();
            let purged = self.store.purge_expired().await?;
            purge.push(PurgeResult {
                expired,
                live: a.sessions,
                purged,
                elapsed: t.elapsed(),
            });
        }

        let peak_rss_kib = rss_kib().map(|(_, hwm)| hwm);
        let scan = if a.page > 0 {
            (self.say)(format!("scanning in pages of {}", a.page));
            Some(self.scan(a.page).await?)
        } else {
            None
        };
        Ok(BenchReport {
            store: String::new(),
            args: a,
            raw_ops: self.raw.describe(),
            sealed_bytes,
            namespace: String::new(),
            kept: false,
            preload,
            raw_preload,
            results,
            purge,
            scan,
            peak_rss_kib,
            started_at: 0,
            elapsed: Duration::ZERO,
            loadavg: (None, None),
        })
    }

    /// Seal and save `count` sessions of id space `space` through the vault's
    /// sealing and the trait, `preload_concurrency` at a time.
    async fn write_sessions(
        &self,
        space: u64,
        count: usize,
        expires_at: i64,
    ) -> Result<Duration, StoreError> {
        let (vault, store, say) = (self.vault.clone(), self.store.clone(), self.say.clone());
        let payload = self.args.payload;
        let step = (count / 10).max(1_000);
        let done = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        drive(self.args.preload_concurrency, count, move |i| {
            let (vault, store, done, say) =
                (vault.clone(), store.clone(), done.clone(), say.clone());
            async move {
                let s = session(jti(space, i), i, payload, expires_at);
                let record = vault.seal_session(OP, &s).await?;
                store.save_session(&record).await?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % step == 0 {
                    say(format!("  {n}/{count} written"));
                }
                Ok(true)
            }
        })
        .await?;
        Ok(started.elapsed())
    }

    /// One round at concurrency `c`: (ours, raw) samples of save, get, take
    /// and delete, alternating sides operation by operation.
    async fn round(&self, c: usize, round: usize) -> Result<Vec<(Samples, Samples)>, StoreError> {
        let a = &self.args;
        let space = phase_space(c, round);
        let expires_at = unix_now() + TTL;
        // Sealed before timing: the measurement is the store's, with blobs
        // exactly as the vault makes them; raw writes the same bytes.
        let mut records = Vec::with_capacity(a.ops);
        for i in 0..a.ops {
            records.push(
                self.vault
                    .seal_session(OP, &session(jti(space, i), i, a.payload, expires_at))
                    .await?,
            );
        }
        // Gets read random stored sessions (the preloaded ones, else the fresh ones).
        let get_keys = (0..a.ops)
            .map(|i| {
                if a.sessions > 0 {
                    jti(
                        PRELOAD_SPACE,
                        (mix((space << 32) ^ i as u64) % a.sessions as u64) as usize,
                    )
                } else {
                    records[i].jti.clone()
                }
            })
            .collect();
        let w = Arc::new(Workload {
            records,
            get_keys,
            // Takes and deletes in another order than the saves.
            order: shuffled(a.ops, space),
        });
        let raw_first = round % 2 == 1;
        let mut out = Vec::new();
        for op in [Op::Save, Op::Get, Op::Take, Op::Delete] {
            if op == Op::Delete {
                // Put the taken sessions back (untimed) so delete finds them.
                self.ours(Op::Save, c, &w).await?;
                self.raw_side(Op::Save, c, &w).await?;
            }
            let (ours, raw) = if raw_first {
                let raw = self.raw_side(op, c, &w).await?;
                (self.ours(op, c, &w).await?, raw)
            } else {
                let ours = self.ours(op, c, &w).await?;
                (ours, self.raw_side(op, c, &w).await?)
            };
            out.push((ours, raw));
        }
        Ok(out)
    }

    async fn ours(&self, op: Op, c: usize, w: &Arc<Workload>) -> Result<Samples, StoreError> {
        let (store, w) = (self.store.clone(), Arc::clone(w));
        drive(c, w.records.len(), move |i| {
            let (store, w) = (store.clone(), Arc::clone(&w));
            async move {
                Ok(match op {
                    Op::Save => {
                        store.save_session(&w.records[i]).await?;
                        true
                    }
                    Op::Get => black_box(store.get_session(&w.get_keys[i]).await?).is_some(),
                    Op::Take => black_box(store.take_session(w.taken(i)).await?).is_some(),
                    Op::Delete => store.delete_session(w.taken(i)).await?,
                })
            }
        })
        .await
    }

    async fn raw_side(&self, op: Op, c: usize, w: &Arc<Workload>) -> Result<Samples, StoreError> {
        let (raw, w) = (self.raw.clone(), Arc::clone(w));
        drive(c, w.records.len(), move |i| {
            let (raw, w) = (raw.clone(), Arc::clone(&w));
            async move {
                match op {
                    Op::Save => {
                        let r = &w.records[i];
                        raw.save(&r.jti, &r.sealed, r.expires_at).await?;
                        Ok(true)
                    }
                    Op::Get => raw.get(&w.get_keys[i]).await,
                    Op::Take => raw.take(w.taken(i)).await,
                    Op::Delete => raw.delete(w.taken(i)).await,
                }
            }
        })
        .await
    }

    async fn scan(&self, page: usize) -> Result<ScanResult, StoreError> {
        let rss_before_kib = rss_kib().map(|(rss, _)| rss);
        let peak_isolated = reset_peak_rss();
        let started = Instant::now();
        let (mut sessions, mut pages) = (0u64, 0u64);
        let mut cursor: Option<String> = None;
        loop {
            let p = self.store.scan_sessions(cursor.as_deref(), page).await?;
            pages += 1;
            sessions += p.sessions.len() as u64;
            black_box(&p.sessions);
            match p.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(ScanResult {
            sessions,
            pages,
            page,
            elapsed: started.elapsed(),
            rss_before_kib,
            peak_rss_kib: rss_kib().map(|(_, hwm)| hwm),
            peak_isolated,
        })
    }
}

/// A permutation of `0..n` (Fisher–Yates with [`mix`]).
/// One cell's operations: the sealed sessions saved, the jtis read, and the
/// order in which takes and deletes remove the saved ones.
struct Workload {
    records: Vec<SessionRecord>,
    get_keys: Vec<String>,
    order: Vec<usize>,
}

impl Workload {
    /// The jti the `i`-th take or delete removes.
    fn taken(&self, i: usize) -> &str {
        &self.records[self.order[i]].jti
    }
}

fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (mix(seed ^ ((i as u64) << 20)) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Save,
    Get,
    Take,
    Delete,
}

/// The raw ceiling: one statement or command per operation on a throwaway
/// table through the store's own pool or connection.
enum Raw {
    Memory(Mutex<HashMap<String, (Vec<u8>, i64)>>),
    #[cfg(feature = "sled")]
    Sled {
        db: store_sled::sled::Db,
        tree: store_sled::sled::Tree,
        name: String,
        flush: bool,
    },
    #[cfg(feature = "postgres")]
    Postgres {
        pool: store_postgres::sqlx::PgPool,
        sql: PgSql,
    },
    #[cfg(feature = "mongo")]
    Mongo(store_mongo::mongodb::Collection<store_mongo::mongodb::bson::Document>),
    #[cfg(feature = "redis")]
    Redis {
        conn: store_redis::redis::aio::ConnectionManager,
        prefix: String,
    },
    #[cfg(feature = "redis")]
    RedisCluster {
        conn: store_redis::ReconnectingCluster,
        prefix: String,
    },
}

#[cfg(feature = "postgres")]
struct PgSql {
    save: store_postgres::sqlx::SqlStr,
    get: store_postgres::sqlx::SqlStr,
    take: store_postgres::sqlx::SqlStr,
    delete: store_postgres::sqlx::SqlStr,
    preload: store_postgres::sqlx::SqlStr,
    drop: store_postgres::sqlx::SqlStr,
}

/// A driver error as a bench failure (bench data holds no secrets).
fn driver(e: impl fmt::Display) -> StoreError {
    StoreError::backend(OP, e.to_string())
}

#[cfg(feature = "redis")]
async fn redis_cmd<C, T>(conn: &C, cmd: &store_redis::redis::Cmd) -> Result<T, StoreError>
where
    C: store_redis::redis::aio::ConnectionLike + Clone + Send,
    T: store_redis::redis::FromRedisValue,
{
    let mut conn = conn.clone();
    cmd.query_async(&mut conn)
        .await
        .map_err(|e| StoreError::backend(OP, store_redis::DriverError::from(&e)))
}

/// Redis key of raw entry `k`.
#[cfg(feature = "redis")]
fn rkey(prefix: &str, k: &str) -> String {
    format!("{prefix}{k}")
}

impl Raw {
    async fn open(backend: Backend, name: &str) -> Result<Self, StoreError> {
        Ok(match backend {
            Backend::Memory => Raw::Memory(Mutex::new(HashMap::new())),
            #[cfg(feature = "sled")]
            Backend::Sled { db, flush } => Raw::Sled {
                tree: db.open_tree(name).map_err(driver)?,
                db,
                name: name.to_owned(),
                flush,
            },
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                use store_postgres::sqlx::{AssertSqlSafe, SqlSafeStr};
                let s = |t: String| AssertSqlSafe(t).into_sql_str();
                // `name` is a valid namespace plus `_raw`: a plain identifier.
                let sql = PgSql {
                    save: s(format!(
                        "INSERT INTO {name} (k, v, exp) VALUES ($1, $2, $3) \
                         ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v, exp = EXCLUDED.exp"
                    )),
                    get: s(format!("SELECT v, exp FROM {name} WHERE k = $1")),
                    take: s(format!("DELETE FROM {name} WHERE k = $1 RETURNING v, exp")),
                    delete: s(format!("DELETE FROM {name} WHERE k = $1")),
                    preload: s(format!(
                        "INSERT INTO {name} (k, v, exp) \
                         SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::int8[])"
                    )),
                    drop: s(format!("DROP TABLE IF EXISTS {name}")),
                };
                store_postgres::sqlx::raw_sql(AssertSqlSafe(format!(
                    "CREATE TABLE IF NOT EXISTS {name} \
                     (k text COLLATE \"C\" PRIMARY KEY, v bytea NOT NULL, exp bigint NOT NULL)"
                )))
                .execute(&pool)
                .await
                .map_err(driver)?;
                Raw::Postgres { pool, sql }
            }
            #[cfg(feature = "mongo")]
            Backend::Mongo(db) => Raw::Mongo(db.collection(name)),
            #[cfg(feature = "redis")]
            Backend::Redis(conn) => Raw::Redis {
                conn,
                prefix: format!("{name}:"),
            },
            #[cfg(feature = "redis")]
            Backend::RedisCluster(conn) => Raw::RedisCluster {
                conn,
                prefix: format!("{name}:"),
            },
        })
    }

    fn describe(&self) -> &'static str {
        match self {
            Raw::Memory(_) => "Mutex<HashMap>: insert / get (clone) / remove / remove",
            #[cfg(feature = "sled")]
            Raw::Sled { flush: true, .. } => {
                "sled Tree: insert+flush / get / remove+flush / remove+flush (the store flushes every write)"
            }
            #[cfg(feature = "sled")]
            Raw::Sled { flush: false, .. } => "sled Tree: insert / get / remove / remove",
            #[cfg(feature = "postgres")]
            Raw::Postgres { .. } => {
                "INSERT … ON CONFLICT DO UPDATE / SELECT / DELETE … RETURNING / DELETE on (k text primary key, v bytea, exp bigint)"
            }
            #[cfg(feature = "mongo")]
            Raw::Mongo(_) => {
                "replace_one upsert / find_one / find_one_and_delete / delete_one on {_id, v, exp}"
            }
            #[cfg(feature = "redis")]
            Raw::Redis { .. } | Raw::RedisCluster { .. } => "SET EX / GET / GETDEL / DEL",
        }
    }

    #[cfg(feature = "sled")]
    async fn sled_flush(db: &store_sled::sled::Db) -> Result<(), StoreError> {
        let db = db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(driver)?
            .map_err(driver)?;
        Ok(())
    }

    async fn save(&self, k: &str, v: &[u8], exp: i64) -> Result<(), StoreError> {
        match self {
            Raw::Memory(m) => {
                m.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(k.to_owned(), (v.to_vec(), exp));
            }
            #[cfg(feature = "sled")]
            Raw::Sled {
                db, tree, flush, ..
            } => {
                tree.insert(k.as_bytes(), v).map_err(driver)?;
                if *flush {
                    Self::sled_flush(db).await?;
                }
            }
            #[cfg(feature = "postgres")]
            Raw::Postgres { pool, sql } => {
                store_postgres::sqlx::query(sql.save.clone())
                    .bind(k)
                    .bind(v)
                    .bind(exp)
                    .execute(pool)
                    .await
                    .map_err(driver)?;
            }
            #[cfg(feature = "mongo")]
            Raw::Mongo(coll) => {
                use store_mongo::mongodb::bson::{Binary, doc, spec::BinarySubtype};
                let bin = Binary {
                    subtype: BinarySubtype::Generic,
                    bytes: v.to_vec(),
                };
                coll.replace_one(doc! {"_id": k}, doc! {"_id": k, "v": bin, "exp": exp})
                    .upsert(true)
                    .await
                    .map_err(driver)?;
            }
            #[cfg(feature = "redis")]
            Raw::Redis { conn, prefix } => {
                redis_cmd::<_, ()>(conn, &Self::redis_set(prefix, k, v, exp)).await?;
            }
            #[cfg(feature = "redis")]
            Raw::RedisCluster { conn, prefix } => {
                redis_cmd::<_, ()>(conn, &Self::redis_set(prefix, k, v, exp)).await?;
            }
        }
        Ok(())
    }

    #[cfg(feature = "redis")]
    fn redis_set(prefix: &str, k: &str, v: &[u8], exp: i64) -> store_redis::redis::Cmd {
        let mut cmd = store_redis::redis::cmd("SET");
        cmd.arg(rkey(prefix, k))
            .arg(v)
            .arg("EX")
            .arg((exp - unix_now()).max(1));
        cmd
    }

    async fn get(&self, k: &str) -> Result<bool, StoreError> {
        Ok(match self {
            Raw::Memory(m) => black_box(
                m.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(k)
                    .map(|(v, exp)| (v.clone(), *exp)),
            )
            .is_some(),
            #[cfg(feature = "sled")]
            Raw::Sled { tree, .. } => black_box(tree.get(k.as_bytes()).map_err(driver)?).is_some(),
            #[cfg(feature = "postgres")]
            Raw::Postgres { pool, sql } => Self::pg_row(
                store_postgres::sqlx::query(sql.get.clone())
                    .bind(k)
                    .fetch_optional(pool)
                    .await
                    .map_err(driver)?,
            )?,
            #[cfg(feature = "mongo")]
            Raw::Mongo(coll) => {
                use store_mongo::mongodb::bson::doc;
                black_box(coll.find_one(doc! {"_id": k}).await.map_err(driver)?).is_some()
            }
            #[cfg(feature = "redis")]
            Raw::Redis { conn, prefix } => {
                let cmd = store_redis::redis::cmd("GET").arg(rkey(prefix, k)).clone();
                black_box(redis_cmd::<_, Option<Vec<u8>>>(conn, &cmd).await?).is_some()
            }
            #[cfg(feature = "redis")]
            Raw::RedisCluster { conn, prefix } => {
                let cmd = store_redis::redis::cmd("GET").arg(rkey(prefix, k)).clone();
                black_box(redis_cmd::<_, Option<Vec<u8>>>(conn, &cmd).await?).is_some()
            }
        })
    }

    /// Decode a `(v, exp)` row as the store decodes its rows.
    #[cfg(feature = "postgres")]
    fn pg_row(row: Option<store_postgres::sqlx::postgres::PgRow>) -> Result<bool, StoreError> {
        use store_postgres::sqlx::Row;
        match row {
            Some(r) => {
                let v: Vec<u8> = r.try_get(0).map_err(driver)?;
                let exp: i64 = r.try_get(1).map_err(driver)?;
                black_box((v, exp));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn take(&self, k: &str) -> Result<bool, StoreError> {
        Ok(match self {
            Raw::Memory(m) => {
                black_box(m.lock().unwrap_or_else(|e| e.into_inner()).remove(k)).is_some()
            }
            #[cfg(feature = "sled")]
            Raw::Sled {
                db, tree, flush, ..
            } => {
                let old = black_box(tree.remove(k.as_bytes()).map_err(driver)?);
                if *flush && old.is_some() {
                    Self::sled_flush(db).await?;
                }
                old.is_some()
            }
            #[cfg(feature = "postgres")]
            Raw::Postgres { pool, sql } => Self::pg_row(
                store_postgres::sqlx::query(sql.take.clone())
                    .bind(k)
                    .fetch_optional(pool)
                    .await
                    .map_err(driver)?,
            )?,
            #[cfg(feature = "mongo")]
            Raw::Mongo(coll) => {
                use store_mongo::mongodb::bson::doc;
                black_box(
                    coll.find_one_and_delete(doc! {"_id": k})
                        .await
                        .map_err(driver)?,
                )
                .is_some()
            }
            #[cfg(feature = "redis")]
            Raw::Redis { conn, prefix } => {
                let cmd = store_redis::redis::cmd("GETDEL")
                    .arg(rkey(prefix, k))
                    .clone();
                black_box(redis_cmd::<_, Option<Vec<u8>>>(conn, &cmd).await?).is_some()
            }
            #[cfg(feature = "redis")]
            Raw::RedisCluster { conn, prefix } => {
                let cmd = store_redis::redis::cmd("GETDEL")
                    .arg(rkey(prefix, k))
                    .clone();
                black_box(redis_cmd::<_, Option<Vec<u8>>>(conn, &cmd).await?).is_some()
            }
        })
    }

    async fn delete(&self, k: &str) -> Result<bool, StoreError> {
        Ok(match self {
            Raw::Memory(m) => m
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(k)
                .is_some(),
            #[cfg(feature = "sled")]
            Raw::Sled {
                db, tree, flush, ..
            } => {
                let removed = tree.remove(k.as_bytes()).map_err(driver)?.is_some();
                if *flush && removed {
                    Self::sled_flush(db).await?;
                }
                removed
            }
            #[cfg(feature = "postgres")]
            Raw::Postgres { pool, sql } => {
                store_postgres::sqlx::query(sql.delete.clone())
                    .bind(k)
                    .execute(pool)
                    .await
                    .map_err(driver)?
                    .rows_affected()
                    > 0
            }
            #[cfg(feature = "mongo")]
            Raw::Mongo(coll) => {
                use store_mongo::mongodb::bson::doc;
                coll.delete_one(doc! {"_id": k})
                    .await
                    .map_err(driver)?
                    .deleted_count
                    > 0
            }
            #[cfg(feature = "redis")]
            Raw::Redis { conn, prefix } => {
                let cmd = store_redis::redis::cmd("DEL").arg(rkey(prefix, k)).clone();
                redis_cmd::<_, i64>(conn, &cmd).await? > 0
            }
            #[cfg(feature = "redis")]
            Raw::RedisCluster { conn, prefix } => {
                let cmd = store_redis::redis::cmd("DEL").arg(rkey(prefix, k)).clone();
                redis_cmd::<_, i64>(conn, &cmd).await? > 0
            }
        })
    }

    /// Store `n` entries of `len` incompressible bytes under the preloaded
    /// session ids, in bulk where the driver has a bulk form.
    async fn preload(
        self: &Arc<Self>,
        n: usize,
        len: usize,
        exp: i64,
        concurrency: usize,
    ) -> Result<(), StoreError> {
        const BATCH: usize = 1000;
        let batches = n.div_ceil(BATCH);
        let batch = move |b: usize| b * BATCH..((b + 1) * BATCH).min(n);
        match &**self {
            Raw::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
                for i in 0..n {
                    m.insert(jti(PRELOAD_SPACE, i), (noise(i as u64, len), exp));
                }
            }
            #[cfg(feature = "sled")]
            Raw::Sled { db, tree, .. } => {
                for b in 0..batches {
                    let mut sb = store_sled::sled::Batch::default();
                    for i in batch(b) {
                        sb.insert(jti(PRELOAD_SPACE, i).as_bytes(), noise(i as u64, len));
                    }
                    tree.apply_batch(sb).map_err(driver)?;
                }
                Self::sled_flush(db).await?;
            }
            #[cfg(feature = "postgres")]
            Raw::Postgres { .. } => {
                let raw = self.clone();
                drive(concurrency.min(8), batches, move |b| {
                    let raw = raw.clone();
                    async move {
                        let Raw::Postgres { pool, sql } = &*raw else {
                            return Ok(false);
                        };
                        let range = batch(b);
                        let ks: Vec<String> =
                            range.clone().map(|i| jti(PRELOAD_SPACE, i)).collect();
                        let vs: Vec<Vec<u8>> =
                            range.clone().map(|i| noise(i as u64, len)).collect();
                        let es: Vec<i64> = range.map(|_| exp).collect();
                        store_postgres::sqlx::query(sql.preload.clone())
                            .bind(ks)
                            .bind(vs)
                            .bind(es)
                            .execute(pool)
                            .await
                            .map_err(driver)?;
                        Ok(true)
                    }
                })
                .await?;
            }
            #[cfg(feature = "mongo")]
            Raw::Mongo(_) => {
                let raw = self.clone();
                drive(concurrency.min(8), batches, move |b| {
                    let raw = raw.clone();
                    async move {
                        use store_mongo::mongodb::bson::{Binary, doc, spec::BinarySubtype};
                        let Raw::Mongo(coll) = &*raw else {
                            return Ok(false);
                        };
                        let docs: Vec<_> = batch(b)
                            .map(|i| {
                                let bin = Binary {
                                    subtype: BinarySubtype::Generic,
                                    bytes: noise(i as u64, len),
                                };
                                doc! {"_id": jti(PRELOAD_SPACE, i), "v": bin, "exp": exp}
                            })
                            .collect();
                        coll.insert_many(docs).await.map_err(driver)?;
                        Ok(true)
                    }
                })
                .await?;
            }
            #[cfg(feature = "redis")]
            Raw::Redis { .. } | Raw::RedisCluster { .. } => {
                let raw = self.clone();
                drive(concurrency.max(64), n, move |i| {
                    let raw = raw.clone();
                    async move {
                        raw.save(&jti(PRELOAD_SPACE, i), &noise(i as u64, len), exp)
                            .await?;
                        Ok(true)
                    }
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Remove the raw table, collection, tree or keys.
    async fn cleanup(self: &Arc<Self>, args: &BenchArgs) -> Result<(), StoreError> {
        match &**self {
            Raw::Memory(m) => m.lock().unwrap_or_else(|e| e.into_inner()).clear(),
            #[cfg(feature = "sled")]
            Raw::Sled { db, name, .. } => {
                db.drop_tree(name.as_bytes()).map_err(driver)?;
                Self::sled_flush(db).await?;
            }
            #[cfg(feature = "postgres")]
            Raw::Postgres { pool, sql } => {
                store_postgres::sqlx::query(sql.drop.clone())
                    .execute(pool)
                    .await
                    .map_err(driver)?;
            }
            #[cfg(feature = "mongo")]
            Raw::Mongo(coll) => coll.drop().await.map_err(driver)?,
            #[cfg(feature = "redis")]
            Raw::Redis { .. } | Raw::RedisCluster { .. } => {
                // Every key the bench may have written: the preloaded ids
                // and each round's ids (most are gone already).
                let mut ids: Vec<String> =
                    (0..args.sessions).map(|i| jti(PRELOAD_SPACE, i)).collect();
                for &c in &args.concurrency {
                    for r in 0..args.rounds {
                        ids.extend((0..args.ops).map(|i| jti(phase_space(c, r), i)));
                    }
                }
                let ids = Arc::new(ids);
                let raw = self.clone();
                drive(64, ids.len(), move |i| {
                    let (raw, ids) = (raw.clone(), ids.clone());
                    async move { raw.delete(&ids[i]).await }
                })
                .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Samples {
            lat_ns: (1..=100).rev().map(|us| us * 1000).collect(),
            misses: 2,
            elapsed: Duration::from_secs(2),
        };
        let st = Stats::from_samples(&s);
        assert_eq!(st.ops, 100);
        assert_eq!(st.p50_us, 50.0);
        assert_eq!(st.p99_us, 99.0);
        assert_eq!(st.ops_per_sec, 50.0);
        assert_eq!(st.misses, 2);
    }

    #[test]
    fn ids_are_distinct_across_spaces_and_shuffle_is_a_permutation() {
        let a: std::collections::BTreeSet<String> = (0..1000)
            .flat_map(|i| [jti(PRELOAD_SPACE, i), jti(phase_space(32, 0), i)])
            .collect();
        assert_eq!(a.len(), 2000);
        let mut p = shuffled(1000, 7);
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_rss_is_readable() {
        let (rss, hwm) = rss_kib().expect("Linux /proc");
        assert!(rss > 0 && hwm >= rss, "{rss} {hwm}");
    }
}
