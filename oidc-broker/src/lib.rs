#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use broker_axum::{RoutePaths, router_at};
use broker_core::{BrokerStore, KeyConfig, KeySource, Namespace, SystemClock, TokenVault};
use broker_issuer::federation::DEFAULT_REFRESH_EVERY;
use broker_issuer::{Federation, FederationOptions, IssuerConfig, PeerConfig, PeerHttp};
use broker_service::{Broker, BrokerConfig, IdpConfig};
use secrecy::SecretString;

pub use config::Config;

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A setting is missing or wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The store URL could not be opened.
    #[error("store: {0}")]
    Open(#[from] store_url::OpenError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] broker_core::StoreError),
    /// The broker could not start (IdP discovery, keys).
    #[error("broker: {0}")]
    Broker(#[from] broker_service::GrantError),
    /// Listening failed.
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
}

/// The encryption key of the store from the environment:
/// `OIDC_BROKER_KEY` (base64 of 32 bytes) or `OIDC_BROKER_PASSPHRASE`.
pub fn key_from_env(env: impl Fn(&str) -> Option<String>) -> Result<KeySource, ServerError> {
    match (env("OIDC_BROKER_KEY"), env("OIDC_BROKER_PASSPHRASE")) {
        (Some(key), _) => Ok(KeySource::Raw(
            broker_core::EncryptionKey::from_base64(key.trim())
                .map_err(|_| ServerError::Config("OIDC_BROKER_KEY is not a base64 key".into()))?,
        )),
        (None, Some(p)) => Ok(KeySource::Passphrase(SecretString::from(p))),
        (None, None) => Err(ServerError::Config(
            "set OIDC_BROKER_KEY (base64 of 32 random bytes) or OIDC_BROKER_PASSPHRASE".into(),
        )),
    }
}

/// Open the store of `cfg` with `key`.
pub async fn open_vault(cfg: &Config, key: KeySource) -> Result<Arc<TokenVault>, ServerError> {
    let namespace = Namespace::new(cfg.namespace.clone())
        .map_err(|_| ServerError::Config("namespace must match ^[a-z][a-z0-9_]{0,30}$".into()))?;
    let store: Arc<dyn BrokerStore> = store_url::open_store(&cfg.store_url, namespace).await?;
    Ok(Arc::new(
        TokenVault::open(store, KeyConfig::new(key)).await?,
    ))
}

/// Open the broker of `cfg` on `vault`, with the IdP client secret from
/// `OIDC_BROKER_IDP_CLIENT_SECRET` as `secret`.
pub async fn open_broker(
    cfg: &Config,
    vault: Arc<TokenVault>,
    secret: Option<SecretString>,
) -> Result<Broker, ServerError> {
    let idp = cfg.idp.as_ref().ok_or_else(|| {
        ServerError::Config(
            "no identity provider: set [idp] or OIDC_BROKER_IDP_ISSUER and \
             OIDC_BROKER_IDP_CLIENT_ID (or run with --demo)"
                .into(),
        )
    })?;
    let issuer_url = idp
        .issuer
        .parse()
        .map_err(|_| ServerError::Config("the IdP issuer is not a URL".into()))?;
    let mut idp_cfg = IdpConfig::new(issuer_url, idp.client_id.clone());
    idp_cfg.client_secret = secret;
    if let Some(scopes) = &idp.scopes {
        idp_cfg.scopes = scopes.clone();
    }
    let mut issuer = IssuerConfig::new(cfg.issuer(), cfg.audience.clone());
    issuer.access_ttl = Duration::from_secs(cfg.access_ttl_secs);
    issuer.rotation = broker_issuer::RotationPolicy::for_tokens(issuer.access_ttl, issuer.leeway);
    let mut broker_cfg = BrokerConfig::new(issuer, idp_cfg);
    broker_cfg.redirect_uris = cfg.redirect_uris.clone();
    broker_cfg.post_logout_redirect_uris = cfg.post_logout_redirect_uris.clone();
    broker_cfg.legacy_pkce_in_state = cfg.legacy_pkce_in_state;
    let http = broker_service::idp::http_client()
        .map_err(|e| ServerError::Config(format!("HTTP client: {e}")))?;
    let clock: Arc<dyn broker_core::Clock> = Arc::new(SystemClock);
    let broker = Broker::open(Arc::clone(&vault), broker_cfg, http, Arc::clone(&clock)).await?;
    if cfg.federation.peers.is_empty() {
        return Ok(broker);
    }
    let federation = open_federation(cfg, vault, clock).await?;
    Ok(broker.with_federation(federation)?)
}

/// The federation of `cfg`'s peers, refreshing their keys in the
/// background every 15 minutes (and on an unknown kid).
async fn open_federation(
    cfg: &Config,
    vault: Arc<TokenVault>,
    clock: Arc<dyn broker_core::Clock>,
) -> Result<Federation, ServerError> {
    let peers = cfg
        .federation
        .peers
        .iter()
        .map(|p| {
            let mut peer = PeerConfig::new(p.issuer.clone());
            if let Some(uri) = &p.jwks_uri {
                peer.jwks_uri.clone_from(uri);
            }
            peer.require_typ.clone_from(&p.require_typ);
            peer
        })
        .collect();
    let mut options = FederationOptions::new([cfg.audience.clone()]);
    options.allow_http_loopback = cfg.federation.allow_http_loopback;
    let http =
        PeerHttp::new().map_err(|e| ServerError::Config(format!("peer HTTP client: {e}")))?;
    let federation = Federation::open(vault, peers, http, clock, options)
        .await
        .map_err(|e| ServerError::Config(format!("federation: {e}")))?;
    let _refresher = federation.spawn_refresher(DEFAULT_REFRESH_EVERY);
    tracing::info!(
        peers = cfg.federation.peers.len(),
        "federation: accepting the access tokens of trusted peers"
    );
    Ok(federation)
}

/// The whole application: `GET /health` and the broker's routes under the
/// configured prefix.
pub fn app(cfg: &Config, broker: Arc<Broker>) -> Router {
    Router::new().route("/health", get(health)).merge(router_at(
        &cfg.prefix,
        broker,
        RoutePaths::default(),
    ))
}

/// `GET /health`: 200 `{"status":"ok"}` while the process serves.
async fn health() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        "{\"status\":\"ok\"}",
    )
}

/// Serve `app` on `listener` until Ctrl-C or SIGTERM, then finish the
/// requests in flight.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> Result<(), ServerError> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Keep the broker's keys on schedule (rotation) every `every`.
pub fn spawn_key_maintenance(broker: Arc<Broker>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = broker.issuer().maintain().await {
                tracing::warn!(error = %e, "key maintenance failed");
            }
        }
    })
}
