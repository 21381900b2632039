//! `brokerctl`: see and care for an OIDC broker store from the shell.

use std::process::ExitCode;
use std::sync::Arc;

use broker_core::crypto::EncryptionKey;
use broker_core::vault::key_usage;
use broker_core::{BrokerStore, KeyConfig, KeySource, Namespace, StoreError, TokenVault};
use brokerctl::migrate::MigrateOptions;
use brokerctl::{StoreOpener, UrlFactory, output};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

mod demo;

/// Operate an OIDC token broker's store.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Store URL: memory://, sled:///path (sled:// = platform data dir),
    /// postgres://…, mongodb://host/db, redis://…, redis-cluster://h1:p1,h2:p2
    /// (`--help` never shows the variable's value: a URL may hold a password.)
    #[arg(
        long,
        env = "BROKER_STORE_URL",
        hide_env_values = true,
        default_value = "sled://",
        global = true
    )]
    store: String,
    /// Namespace (table / collection / key prefix, tree name). Only `init`
    /// creates one; every other command needs it to exist.
    #[arg(
        long,
        env = "BROKER_NAMESPACE",
        hide_env_values = true,
        default_value = Namespace::DEFAULT,
        global = true
    )]
    namespace: String,
    /// Name of an environment variable holding the base64 32-byte key.
    #[arg(long, global = true)]
    key_env: Option<String>,
    /// Name of an environment variable holding the passphrase.
    #[arg(long, global = true, conflicts_with = "key_env")]
    passphrase_env: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the schema and register the key.
    Init,
    /// Counts: live and expired sessions, subjects, peers, key ids in use.
    Stats,
    /// Remove expired sessions.
    Purge,
    /// Log a subject out everywhere.
    Revoke {
        /// The subject.
        #[arg(long)]
        sub: String,
    },
    /// Copy every session, the signing key and peer JWKS to another store
    /// (same keys; the source is left untouched; safe to re-run).
    Migrate {
        /// Destination store URL.
        #[arg(long)]
        to: String,
        /// Destination namespace (default: the same).
        #[arg(long)]
        to_namespace: Option<String>,
        /// Save the cursor here after every page and continue from it when
        /// run again; removed when the migration completes.
        #[arg(long)]
        resume_file: Option<std::path::PathBuf>,
        /// Copy at most this many sessions now, then stop (needs
        /// --resume-file; run again to continue).
        #[arg(long, requires = "resume_file")]
        max_sessions: Option<u64>,
    },
    /// Re-encrypt everything under a new primary key (resumable).
    Rekey {
        /// Environment variable holding the new base64 32-byte key.
        #[arg(long)]
        new_key_env: Option<String>,
        /// Environment variable holding the new passphrase.
        #[arg(long, conflicts_with = "new_key_env")]
        new_passphrase_env: Option<String>,
    },
    /// Run the conformance suite against the store in throwaway namespaces.
    Check,
    /// Show the library working on the embedded store, in a few seconds.
    Demo,
    /// Measure save/get/take/delete against the raw driver on the same pool,
    /// plus purge and scan at scale, in a throwaway namespace.
    Bench(brokerctl::bench::BenchArgs),
    /// The broker's signing keys: list, rotate, import a py-oidc-auth PEM.
    #[command(subcommand)]
    Keys(brokerctl::issuer::KeysCommand),
    /// Peer brokers' stored JWKS documents: list, refresh, forget.
    #[command(subcommand)]
    Peers(brokerctl::issuer::PeersCommand),
}

/// A failure with the exit code and one line for the operator.
struct Fail {
    code: u8,
    message: String,
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        let (code, hint) = match &e {
            StoreError::Unavailable { .. } => (3, " — is the server running and reachable?"),
            StoreError::WrongKey { .. } | StoreError::InvalidKey { .. } => {
                (4, " — check --key-env / --passphrase-env")
            }
            StoreError::KeyInUse { .. } => (4, " — run `brokerctl rekey` first"),
            StoreError::KeyRetired { .. } => {
                (4, " — use the new key (--key-env / --passphrase-env)")
            }
            StoreError::InvalidInput { .. } => (2, ""),
            _ => (1, ""),
        };
        let cause = std::error::Error::source(&e)
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        Fail {
            code,
            message: format!("{e}{cause}{hint}"),
        }
    }
}

impl From<brokerctl::issuer::IssuerCmdError> for Fail {
    fn from(e: brokerctl::issuer::IssuerCmdError) -> Self {
        use broker_issuer::IssuerError as I;
        use brokerctl::issuer::IssuerCmdError as E;
        match e {
            E::Store(e) | E::Issuer(I::Store(e)) => e.into(),
            e @ (E::PemFile { .. }
            | E::PemTooLarge { .. }
            | E::NotAKey { .. }
            | E::Issuer(I::Config(_) | I::Key { .. })) => fail(2, e.to_string()),
            e => fail(1, e.to_string()),
        }
    }
}

fn fail(code: u8, message: impl Into<String>) -> Fail {
    Fail {
        code,
        message: message.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("brokerctl: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("brokerctl: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// The value of environment variable `var`: unset, empty or not UTF-8 is a
/// configuration error (never an empty key or passphrase).
fn env_secret(var: &str) -> Result<SecretString, Fail> {
    match std::env::var(var) {
        Ok(value) if value.is_empty() => Err(fail(
            2,
            format!("environment variable {var} is set but empty"),
        )),
        Ok(value) => Ok(SecretString::from(value)),
        Err(std::env::VarError::NotPresent) => {
            Err(fail(2, format!("environment variable {var} is not set")))
        }
        Err(std::env::VarError::NotUnicode(_)) => Err(fail(
            2,
            format!("environment variable {var} is not valid UTF-8"),
        )),
    }
}

fn key_source(
    key_env: Option<&str>,
    passphrase_env: Option<&str>,
) -> Result<Option<KeySource>, Fail> {
    Ok(match (key_env, passphrase_env) {
        (Some(var), _) => Some(KeySource::Raw(EncryptionKey::from_base64(
            env_secret(var)?.expose_secret(),
        )?)),
        (None, Some(var)) => Some(KeySource::Passphrase(env_secret(var)?)),
        (None, None) => None,
    })
}

impl Cli {
    fn namespace(&self) -> Result<Namespace, Fail> {
        Ok(Namespace::new(self.namespace.clone())?)
    }

    /// The store on an existing namespace (nothing is created).
    async fn store(&self, opener: &StoreOpener) -> Result<Arc<dyn BrokerStore>, Fail> {
        Ok(opener.open_existing(self.namespace()?).await?)
    }

    fn keys(&self) -> Result<KeyConfig, Fail> {
        key_source(self.key_env.as_deref(), self.passphrase_env.as_deref())?
            .map(KeyConfig::new)
            .ok_or_else(|| {
                fail(
                    2,
                    "this command needs --key-env VAR or --passphrase-env VAR",
                )
            })
    }

    /// Opens the vault on the existing namespace when called; the key and
    /// namespace are checked now.
    fn vault_opener<'a>(
        &self,
        opener: &'a StoreOpener,
    ) -> Result<impl AsyncFnOnce() -> Result<Arc<TokenVault>, StoreError> + 'a, Fail> {
        let (namespace, keys) = (self.namespace()?, self.keys()?);
        Ok(async move || {
            let store = opener.open_existing(namespace).await?;
            Ok(Arc::new(TokenVault::open(store, keys).await?))
        })
    }

    /// `text`, or `value` as JSON with `--json`.
    fn print(&self, text: String, value: &impl Serialize) -> Result<(), Fail> {
        if self.json {
            let json = serde_json::to_string(value)
                .map_err(|e| fail(1, format!("cannot write the JSON output: {e}")))?;
            println!("{json}");
        } else {
            println!("{text}");
        }
        Ok(())
    }
}

/// Run the command, then shut down what it connected (a MongoDB client
/// left alive at exit can make the driver panic).
async fn run(cli: Cli) -> Result<(), Fail> {
    let opener = match cli.command {
        Command::Init | Command::Check | Command::Demo | Command::Bench(_) => {
            StoreOpener::new(&cli.store)
        }
        _ => StoreOpener::existing(&cli.store),
    };
    let result = run_command(&cli, &opener).await;
    opener.shutdown().await;
    result
}

async fn run_command(cli: &Cli, opener: &StoreOpener) -> Result<(), Fail> {
    match &cli.command {
        Command::Init => {
            // The one command that creates a namespace.
            let keys = cli.keys()?;
            let store = opener.open(cli.namespace()?).await?;
            store.setup().await?;
            let vault = TokenVault::open(store, keys).await?;
            let id = vault.keyring().primary_id();
            cli.print(
                format!("store ready; primary key id {id}"),
                &output::Init {
                    ok: true,
                    primary_key_id: id.to_string(),
                },
            )?;
        }
        Command::Stats => {
            let store = cli.store(opener).await?;
            let stats = store.stats().await?;
            let usage = key_usage(store.as_ref()).await?;
            let keys: Vec<String> = usage.iter().map(|(id, n)| format!("{id} ({n})")).collect();
            cli.print(
                format!(
                    "live sessions:    {}\nexpired sessions: {}\nsubjects:         {}\nrevocations:      {}\npeers:            {}\nkey ids in use:   {}",
                    stats.live_sessions,
                    stats.expired_sessions,
                    stats.subjects.map_or("n/a".into(), |n| n.to_string()),
                    stats.revocations,
                    stats.peers,
                    if keys.is_empty() { "none".into() } else { keys.join(", ") }
                ),
                &output::Stats::new(&stats, &usage),
            )?;
        }
        Command::Purge => {
            let n = cli.store(opener).await?.purge_expired().await?;
            cli.print(
                format!("purged {n} expired sessions"),
                &output::Purged { purged: n },
            )?;
        }
        Command::Revoke { sub } => {
            let n = cli
                .store(opener)
                .await?
                .revoke_subject(&broker_core::Revocation::now(sub.clone()))
                .await?;
            cli.print(
                format!("revoked {n} sessions"),
                &output::Revoked { revoked: n },
            )?;
        }
        Command::Migrate {
            to,
            to_namespace,
            resume_file,
            max_sessions,
        } => {
            let options = MigrateOptions {
                resume_file: resume_file.clone(),
                max_sessions: *max_sessions,
                route: String::new(),
            };
            migrate(cli, opener, to, to_namespace.as_deref(), options).await?;
        }
        Command::Rekey {
            new_key_env,
            new_passphrase_env,
        } => {
            let new = key_source(new_key_env.as_deref(), new_passphrase_env.as_deref())?
                .ok_or_else(|| {
                    fail(
                        2,
                        "rekey needs --new-key-env VAR or --new-passphrase-env VAR",
                    )
                })?;
            let store = cli.store(opener).await?;
            let vault = TokenVault::open(store, cli.keys()?.rotate_to(new)).await?;
            let total = vault.store().stats().await?.live_sessions;
            let bar = progress_bar(cli, total, "checked");
            let report = vault
                .rekey(|r| bar.set_position(r.sessions_seen.min(total)))
                .await;
            bar.finish_and_clear();
            let report = report?;
            let retired: Vec<String> = report.retired_keys.iter().map(|k| k.to_string()).collect();
            let unreadable = report.sessions_unreadable + report.records_unreadable;
            if unreadable > 0 && !cli.json {
                eprintln!(
                    "brokerctl: warning: {} sessions and {} records could not be opened (tampered, moved, or under a key no configuration holds); they were left as they are",
                    report.sessions_unreadable, report.records_unreadable
                );
            }
            cli.print(
                format!(
                    "re-encrypted {} sessions and {} signing-key and peer records under key {} in {} passes; {}",
                    report.sessions_resealed,
                    report.records_resealed,
                    vault.keyring().primary_id(),
                    report.passes,
                    if retired.is_empty() {
                        format!(
                            "{} changed meanwhile: the old key is still in use (run again)",
                            report.sessions_changed
                        )
                    } else {
                        format!("retired key {} (it may now be dropped)", retired.join(", "))
                    }
                ),
                &output::Rekey::new(&report, vault.keyring().primary_id()),
            )?;
        }
        Command::Keys(cmd) => {
            let vault = cli.vault_opener(opener)?;
            let report = brokerctl::issuer::run_keys(cmd, vault, clock()).await?;
            cli.print(report.text(), &report)?;
        }
        Command::Peers(cmd) => {
            let vault = cli.vault_opener(opener)?;
            let report = brokerctl::issuer::run_peers(cmd, vault, clock()).await?;
            cli.print(report.text(), &report)?;
        }
        Command::Check => check(cli).await?,
        Command::Demo => demo::demo(cli).await?,
        Command::Bench(args) => {
            let key = key_source(cli.key_env.as_deref(), cli.passphrase_env.as_deref())?;
            if key.is_some() {
                eprintln!("brokerctl: warning: {}", brokerctl::bench::BUDGET_WARNING);
            }
            let report = brokerctl::bench::run(&cli.store, args, key, !cli.json).await?;
            cli.print(report.table(), &report.json())?;
        }
    }
    Ok(())
}

async fn migrate(
    cli: &Cli,
    opener: &StoreOpener,
    to: &str,
    to_namespace: Option<&str>,
    options: MigrateOptions,
) -> Result<(), Fail> {
    let dest_opener = StoreOpener::existing(to);
    let result = migrate_to(cli, opener, &dest_opener, to, to_namespace, options).await;
    dest_opener.shutdown().await;
    result
}

async fn migrate_to(
    cli: &Cli,
    opener: &StoreOpener,
    dest_opener: &StoreOpener,
    to: &str,
    to_namespace: Option<&str>,
    mut options: MigrateOptions,
) -> Result<(), Fail> {
    let source = TokenVault::open(cli.store(opener).await?, cli.keys()?).await?;
    let dest_ns = match to_namespace {
        Some(ns) => Namespace::new(ns)?,
        None => cli.namespace()?,
    };
    options.route = brokerctl::migrate::route(&cli.store, &cli.namespace()?, to, &dest_ns);
    let dest_store = dest_opener.open_existing(dest_ns).await?;
    let dest = TokenVault::open(dest_store, cli.keys()?).await?;
    let total = source.store().stats().await?.live_sessions;
    let bar = progress_bar(cli, total, "copied");
    let report =
        brokerctl::migrate::migrate(&source, &dest, &options, |n| bar.set_position(n)).await;
    bar.finish_and_clear();
    let report = report?;
    if to != cli.store {
        eprintln!("brokerctl: warning: {}", brokerctl::migrate::BUDGET_WARNING);
    }
    let text = if report.complete {
        format!(
            "migrated {} sessions ({} in this run{}), {} revocations and {} peers in {:.1}s; destination holds {} live sessions",
            report.copied_total,
            report.copied_this_run,
            if report.resumed { ", resumed" } else { "" },
            report.revocations,
            report.peers,
            report.seconds,
            report.destination_live
        )
    } else {
        format!(
            "copied {} sessions in this run ({} so far); stopped at --max-sessions; run again with the same --resume-file to continue",
            report.copied_this_run, report.copied_total
        )
    };
    cli.print(text, &report)
}

fn clock() -> Arc<dyn broker_core::Clock> {
    Arc::new(broker_core::SystemClock)
}

/// A progress bar on stderr: drawn only on a terminal and never with --json.
fn progress_bar(cli: &Cli, len: u64, what: &str) -> ProgressBar {
    if cli.json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} sessions {what} ({{per_sec}}, eta {{eta}})"
    )) {
        bar.set_style(style);
    }
    bar
}

async fn check(cli: &Cli) -> Result<(), Fail> {
    let factory = Arc::new(UrlFactory::new(&cli.store));
    let results = check_with(&factory).await;
    factory.opener().shutdown().await;
    report_check(cli, &results?)
}

async fn check_with(
    factory: &Arc<UrlFactory>,
) -> Result<Vec<(&'static conformance::Case, conformance::CaseResult)>, Fail> {
    // Fail fast with a clear message when the server cannot be reached (a
    // throwaway namespace: nothing is set up in it).
    factory
        .opener()
        .open(Namespace::random("cfprobe")?)
        .await?
        .health()
        .await?;
    Ok(conformance::run_all(Arc::clone(factory) as Arc<dyn conformance::StoreFactory>).await)
}

fn report_check(
    cli: &Cli,
    results: &[(&'static conformance::Case, conformance::CaseResult)],
) -> Result<(), Fail> {
    let mut report = output::Check::default();
    for (case, result) in results {
        let (status, detail) = match result {
            Ok(conformance::Outcome::Passed) => {
                report.passed += 1;
                ("ok", String::new())
            }
            Ok(conformance::Outcome::Skipped(why)) => {
                report.skipped += 1;
                ("skipped", why.clone())
            }
            Err(f) => {
                report.failed += 1;
                ("FAILED", f.0.clone())
            }
        };
        if !cli.json {
            println!(
                "{status:>7}  {}{}",
                case.name,
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            );
        }
        report.cases.push(output::CheckCase {
            case: case.name,
            rule: case.rule,
            status,
            detail,
        });
    }
    let failed = report.failed;
    cli.print(
        format!(
            "{} passed, {failed} failed, {} skipped",
            report.passed, report.skipped
        ),
        &report,
    )?;
    if failed > 0 {
        return Err(fail(1, format!("{failed} conformance cases failed")));
    }
    Ok(())
}
