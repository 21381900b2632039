//! `oidc-broker`: run the token broker (see the crate README).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use oidc_broker::{Config, ServerError};
use secrecy::SecretString;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// An OIDC token broker speaking py-oidc-auth's routes. Settings come from
/// the file, then OIDC_BROKER_* variables; secrets (OIDC_BROKER_KEY or
/// OIDC_BROKER_PASSPHRASE, OIDC_BROKER_IDP_CLIENT_SECRET) from the
/// environment only. Logs: OIDC_BROKER_LOG (e.g. `info`, `debug,hyper=info`).
#[derive(Parser)]
#[command(name = "oidc-broker", version)]
struct Cli {
    /// A TOML settings file.
    #[arg(long, short, env = "OIDC_BROKER_CONFIG")]
    config: Option<PathBuf>,
    /// Start an in-process identity provider (users alice and bob) and a
    /// memory store: runs with nothing installed. Never in production.
    #[arg(long)]
    demo: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("OIDC_BROKER_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer())
        .with(filter)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "oidc-broker stopped");
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

async fn run(cli: Cli) -> Result<(), ServerError> {
    let mut cfg = Config::load(cli.config.as_deref(), env)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    // With port 0 the issuer names the port actually bound.
    cfg.listen = listener.local_addr()?;
    let (broker, extra) = if cli.demo {
        demo(&mut cfg).await?
    } else {
        let vault = oidc_broker::open_vault(&cfg, oidc_broker::key_from_env(env)?).await?;
        let secret = env("OIDC_BROKER_IDP_CLIENT_SECRET").map(SecretString::from);
        let broker = oidc_broker::open_broker(&cfg, vault, secret).await?;
        (Arc::new(broker), axum::Router::new())
    };
    let _keys = oidc_broker::spawn_key_maintenance(Arc::clone(&broker), Duration::from_secs(600));
    let app = oidc_broker::app(&cfg, broker).merge(extra);
    tracing::info!(
        listen = %cfg.listen,
        issuer = %cfg.issuer(),
        store = if cli.demo { "memory" } else { store_kind(&cfg.store_url) },
        "oidc-broker serving"
    );
    oidc_broker::serve(listener, app).await
}

/// The scheme of a store URL (never its credentials).
fn store_kind(url: &str) -> &'static str {
    match url.split_once(':').map(|(s, _)| s) {
        Some("sled") => "sled",
        Some("postgres" | "postgresql") => "postgres",
        Some("redis" | "rediss" | "redis-cluster") => "redis",
        Some("mongodb" | "mongodb+srv") => "mongodb",
        _ => "other",
    }
}

#[cfg(feature = "demo")]
async fn demo(
    cfg: &mut Config,
) -> Result<(Arc<broker_service::Broker>, axum::Router), ServerError> {
    use axum::extract::{Query, State};
    use broker_core::{EncryptionKey, KeyConfig, MemoryStore, TokenVault};
    use broker_testkit::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, TestIdp, TestIdpConfig};

    let idp = TestIdp::start(TestIdpConfig::default())
        .await
        .map_err(|e| ServerError::Config(format!("demo IdP: {e}")))?;
    cfg.idp = Some(oidc_broker::config::IdpSection {
        issuer: idp.issuer().to_owned(),
        client_id: DEFAULT_CLIENT_ID.into(),
        scopes: None,
    });
    let vault = TokenVault::open(
        Arc::new(MemoryStore::new()),
        KeyConfig::new(EncryptionKey::generate()),
    )
    .await?;
    let broker = oidc_broker::open_broker(
        cfg,
        Arc::new(vault),
        Some(SecretString::from(DEFAULT_CLIENT_SECRET)),
    )
    .await?;
    tracing::warn!(
        idp = %idp.issuer(),
        "DEMO MODE: in-process identity provider (users alice, bob), memory store; \
         approve a device code with GET /demo/approve?user_code=..."
    );
    async fn approve(
        State(idp): State<Arc<TestIdp>>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> (axum::http::StatusCode, &'static str) {
        match q.get("user_code").map(|c| idp.approve(c)) {
            Some(Ok(())) => (axum::http::StatusCode::OK, "approved\n"),
            _ => (axum::http::StatusCode::BAD_REQUEST, "unknown user_code\n"),
        }
    }
    let extra = axum::Router::new()
        .route("/demo/approve", axum::routing::get(approve))
        .with_state(Arc::new(idp));
    Ok((Arc::new(broker), extra))
}

#[cfg(not(feature = "demo"))]
async fn demo(_: &mut Config) -> Result<(Arc<broker_service::Broker>, axum::Router), ServerError> {
    Err(ServerError::Config(
        "this build has no demo mode (feature `demo`)".into(),
    ))
}
