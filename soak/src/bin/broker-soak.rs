//! The soak worker: one OS process of the cross-process race and soak tests.
//!
//! The store URL comes from `BROKER_SOAK_URL` (or `--url`), the vault key
//! only from `BROKER_SOAK_KEY` (standard base64 of 32 bytes; never an
//! argument). Output on stdout is JSON; errors name their kind, never a
//! value.
//!
//! - `race`: open the store (for sled, only after the barrier, retrying
//!   while another process holds the database), print `{"ready":true}`,
//!   wait for a line on stdin (the barrier), then run `setup` and
//!   `load_or_create_signing_key` with a fresh candidate key and print the
//!   winner's fingerprint.
//! - `work`: run the mixed workload, the contested takes and the revoke
//!   race until `--until-ms`, logging every call under `--log-dir`.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_core::crypto::EncryptionKey;
use broker_core::{KeyConfig, Namespace, StoreError, TokenVault};
use broker_soak::log::error_kind;
use broker_soak::workload::{
    KEY_ENV, Plan, RaceOutcome, URL_ENV, WorkOutcome, candidate_pem, fingerprint, open_vault_on,
    run_work,
};
use clap::{Args, Parser, Subcommand};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use store_url::{Backend, StoreOpener};

/// How long a worker keeps retrying to open a store that is unavailable.
const OPEN_PATIENCE: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(
    name = "broker-soak",
    about = "Worker process of the broker store race and soak tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Store {
    /// Store URL (see the `store-url` crate); may hold a password, so prefer
    /// the variable.
    #[arg(long, env = URL_ENV, hide_env_values = true)]
    url: String,
    /// Namespace to work in.
    #[arg(long)]
    namespace: String,
}

#[derive(Subcommand)]
enum Command {
    /// Race to set up the store and create the signing key; print the winner's fingerprint.
    Race {
        #[command(flatten)]
        store: Store,
    },
    /// Run the logged mixed workload until a wall-clock deadline.
    Work {
        #[command(flatten)]
        store: Store,
        /// This process's index among the workers.
        #[arg(long, default_value_t = 0)]
        worker_index: u32,
        /// Number of worker processes.
        #[arg(long, default_value_t = 1)]
        workers: u32,
        /// Mixed-workload tasks in this process.
        #[arg(long, default_value_t = 2)]
        tasks: u32,
        /// Contest tasks in this process.
        #[arg(long, default_value_t = 1)]
        contest_tasks: u32,
        /// Revoke-race tasks in this process.
        #[arg(long, default_value_t = 1)]
        race_tasks: u32,
        /// Which start of this worker this is (0, then 1 after a kill).
        #[arg(long, default_value_t = 0)]
        incarnation: u32,
        /// Wait until this wall time (ms since the epoch) before the first call.
        #[arg(long)]
        start_at_ms: Option<i64>,
        /// Stop at this wall time (ms since the epoch).
        #[arg(long)]
        until_ms: i64,
        /// Directory for the operation logs.
        #[arg(long)]
        log_dir: PathBuf,
        /// Session ids per mixed task.
        #[arg(long, default_value_t = 24)]
        jtis: u32,
        /// Subjects per mixed task.
        #[arg(long, default_value_t = 4)]
        subs: u32,
        /// Session ids in the contested set.
        #[arg(long, default_value_t = 8)]
        contested: u32,
        /// Length of one contest round and of one revoke-race round in ms.
        #[arg(long, default_value_t = 500)]
        slot_ms: u64,
        /// Pause between a mixed task's calls in ms.
        #[arg(long, default_value_t = 10)]
        pace_ms: u64,
    },
}

/// The line a worker prints when it is connected (the barrier's first half).
#[derive(Serialize)]
struct Ready {
    ready: bool,
}

/// The line a worker prints when it fails: the error's kind, never a value.
#[derive(Serialize)]
struct Failed {
    error: &'static str,
    op: &'static str,
}

fn print_json(value: &impl Serialize) {
    let mut out = std::io::stdout().lock();
    if let Ok(line) = serde_json::to_string(value) {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

fn fail(what: &str, e: &StoreError) -> ExitCode {
    print_json(&Failed {
        error: error_kind(e),
        op: e.op(),
    });
    eprintln!("broker-soak: {what}: {e}");
    ExitCode::FAILURE
}

fn key_from_env() -> Result<String, ExitCode> {
    std::env::var(KEY_ENV).map_err(|_| {
        eprintln!("broker-soak: set {KEY_ENV} to the vault key (base64 of 32 bytes)");
        ExitCode::from(2)
    })
}

fn namespace(name: &str) -> Result<Namespace, ExitCode> {
    Namespace::new(name).map_err(|e| {
        eprintln!("broker-soak: {e}");
        ExitCode::from(2)
    })
}

async fn race(store: Store, opener: &StoreOpener) -> Result<(), ExitCode> {
    let key = key_from_env()?;
    let ns = namespace(&store.namespace)?;
    // Server stores connect before the barrier, so the race is on setup and
    // key creation; a sled database is held by one process at a time, so
    // opening it is part of the race.
    let sled = opener.url().backend() == Backend::Sled;
    let connected = if sled {
        None
    } else {
        Some(
            opener
                .open(ns.clone())
                .await
                .map_err(|e| fail("open", &e.into()))?,
        )
    };
    print_json(&Ready { ready: true });
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let started = Instant::now();
    let (vault, refused) = match connected {
        Some(s) => {
            let k = EncryptionKey::from_base64(&key).map_err(|e| fail("key", &e))?;
            let vault = TokenVault::open(s, KeyConfig::new(k))
                .await
                .map_err(|e| fail("open", &e))?;
            (vault, 0)
        }
        None => open_vault_on(opener, &ns, &key, OPEN_PATIENCE)
            .await
            .map_err(|e| fail("open", &e))?,
    };
    let candidate = candidate_pem();
    let mut offered = false;
    let pem = vault
        .load_or_create_signing_key(|| {
            offered = true;
            candidate.clone()
        })
        .await
        .map_err(|e| fail("signing key", &e))?;
    print_json(&RaceOutcome {
        fingerprint: fingerprint(&pem),
        won: pem.expose_secret() == candidate.expose_secret(),
        offered,
        open_refused: refused,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        pid: std::process::id(),
    });
    Ok(())
}

async fn work(
    store: Store,
    plan: Plan,
    start_at_ms: Option<i64>,
    opener: &StoreOpener,
) -> Result<(), ExitCode> {
    let key = key_from_env()?;
    let ns = namespace(&store.namespace)?;
    std::fs::create_dir_all(&plan.log_dir).map_err(|e| {
        eprintln!("broker-soak: creating the log dir: {e}");
        ExitCode::FAILURE
    })?;
    let (vault, refused) = open_vault_on(opener, &ns, &key, OPEN_PATIENCE)
        .await
        .map_err(|e| fail("open", &e))?;
    if let Some(at) = start_at_ms {
        let left = at - broker_soak::log::wall_ns_now() / 1_000_000;
        if left > 0 {
            tokio::time::sleep(Duration::from_millis(left.unsigned_abs())).await;
        }
    }
    let totals = run_work(Arc::new(vault), &plan).await.map_err(|e| {
        eprintln!("broker-soak: writing the log: {e}");
        ExitCode::FAILURE
    })?;
    print_json(&WorkOutcome {
        totals,
        open_refused: refused,
    });
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let url = match &cli.command {
        Command::Race { store } | Command::Work { store, .. } => store.url.clone(),
    };
    // Shut the store's client down before exiting, whatever happened: a
    // MongoDB client alive at exit can make the driver panic on stderr.
    let opener = match StoreOpener::new(&url) {
        Ok(opener) => opener,
        Err(e) => {
            eprintln!("broker-soak: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Race { store } => race(store, &opener).await,
        Command::Work {
            store,
            worker_index,
            workers,
            tasks,
            contest_tasks,
            race_tasks,
            incarnation,
            start_at_ms,
            until_ms,
            log_dir,
            jtis,
            subs,
            contested,
            slot_ms,
            pace_ms,
        } => {
            let plan = Plan {
                worker_index,
                workers,
                tasks,
                contest_tasks,
                race_tasks,
                incarnation,
                until_wall_ms: until_ms,
                log_dir,
                jtis_per_actor: jtis,
                subs_per_actor: subs,
                contested_jtis: contested,
                slot_ms,
                pace_ms,
            };
            work(store, plan, start_at_ms, &opener).await
        }
    };
    opener.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}
