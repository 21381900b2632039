//! [`Config`]: the server's settings from a TOML file, then environment
//! variables over it. Secrets come from the environment only.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::ServerError;

/// Environment variable prefix of every setting.
pub const ENV_PREFIX: &str = "OIDC_BROKER_";

/// The server's settings. Every field has a default except the identity
/// provider (not needed with `--demo`). `Debug` shows the store URL's
/// scheme only: the rest may hold a password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`. Env `OIDC_BROKER_LISTEN`.
    pub listen: SocketAddr,
    /// The URL clients reach this server at, without the prefix; the
    /// tokens' `iss` is this plus `prefix`. Default `http://<listen>`.
    /// Env `OIDC_BROKER_PUBLIC_URL`.
    pub public_url: Option<String>,
    /// Where the broker's routes are mounted. Default `/api` (the seeds').
    /// Env `OIDC_BROKER_PREFIX`.
    pub prefix: String,
    /// `aud` of the tokens. Default `oidc-broker`. Env `OIDC_BROKER_AUDIENCE`.
    pub audience: String,
    /// The store, as a store-url URL. Default `sled://` (the platform data
    /// directory). Env `OIDC_BROKER_STORE_URL`.
    pub store_url: String,
    /// The store namespace. Default `broker`.
    pub namespace: String,
    /// Allowed login `redirect_uri`s; `*` stands for a port. Default
    /// `http://localhost:*/callback` and `http://127.0.0.1:*/callback`.
    pub redirect_uris: Vec<String>,
    /// Allowed `post_logout_redirect_uri`s. Default none.
    pub post_logout_redirect_uris: Vec<String>,
    /// Carry the PKCE verifier in `state` for clients that send no
    /// `code_challenge` (py-oidc-auth-client). Default true.
    pub legacy_pkce_in_state: bool,
    /// Access-token lifetime in seconds. Default 900.
    pub access_ttl_secs: u64,
    /// The identity provider.
    pub idp: Option<IdpSection>,
    /// Trusted peer brokers (py-oidc-auth's `trusted_issuers`).
    pub federation: FederationSection,
}

/// `[federation]`: peer brokers whose access tokens this server accepts
/// on its protected routes. They must share `audience`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSection {
    /// `[[federation.peers]]`. Env `OIDC_BROKER_PEERS`: issuers separated
    /// by commas (py-oidc-auth peers, default JWKS path).
    pub peers: Vec<PeerSection>,
    /// Accept `http://` JWKS URLs on loopback addresses. Tests only.
    pub allow_http_loopback: bool,
}

/// One `[[federation.peers]]` entry. `Debug` shows whether a JWKS URL is
/// set, not the URL (it may carry credentials).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// The peer's exact `iss`.
    pub issuer: String,
    /// Its JWKS URL. Default: `issuer` + `/auth/v2/.well-known/jwks.json`
    /// (py-oidc-auth's layout, and this server's).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The `typ` its tokens must carry: `"at+jwt"` for a peer running
    /// oidc-broker; none (any) for py-oidc-auth peers, the default.
    #[serde(default)]
    pub require_typ: Option<String>,
}

/// `[idp]`: the identity provider. The client secret comes from
/// `OIDC_BROKER_IDP_CLIENT_SECRET` only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpSection {
    /// The IdP's issuer URL (discovery below it). Env `OIDC_BROKER_IDP_ISSUER`.
    pub issuer: String,
    /// This broker's client id there. Env `OIDC_BROKER_IDP_CLIENT_ID`.
    pub client_id: String,
    /// Scopes asked for (`openid` is always added). Default `profile email`.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

impl std::fmt::Debug for PeerSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSection")
            .field("issuer", &self.issuer)
            .field("jwks_uri_set", &self.jwks_uri.is_some())
            .field("require_typ", &self.require_typ)
            .finish()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.store_url.split_once(':').map_or("?", |(s, _)| s);
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("prefix", &self.prefix)
            .field("audience", &self.audience)
            .field("store_url", &format_args!("{scheme}:[REDACTED]"))
            .field("namespace", &self.namespace)
            .field("redirect_uris", &self.redirect_uris)
            .field("post_logout_redirect_uris", &self.post_logout_redirect_uris)
            .field("legacy_pkce_in_state", &self.legacy_pkce_in_state)
            .field("access_ttl_secs", &self.access_ttl_secs)
            .field("idp", &self.idp)
            .field("federation", &self.federation)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            prefix: "/api".into(),
            audience: "oidc-broker".into(),
            store_url: "sled://".into(),
            namespace: "broker".into(),
            redirect_uris: vec![
                "http://localhost:*/callback".into(),
                "http://127.0.0.1:*/callback".into(),
            ],
            post_logout_redirect_uris: Vec::new(),
            legacy_pkce_in_state: true,
            access_ttl_secs: 900,
            idp: None,
            federation: FederationSection::default(),
        }
    }
}

impl Config {
    /// Read `file` (if given), then apply the environment as `env` gives it.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ServerError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ServerError::Config(format!("cannot read {}: {e}", path.display()))
                })?;
                toml::from_str(&text).map_err(|e| {
                    ServerError::Config(format!("{}: {}", path.display(), e.message()))
                })?
            }
            None => Self::default(),
        };
        let var = |name: &str| env(&format!("{ENV_PREFIX}{name}"));
        if let Some(v) = var("LISTEN") {
            cfg.listen = v
                .parse()
                .map_err(|_| ServerError::Config("OIDC_BROKER_LISTEN is not host:port".into()))?;
        }
        if let Some(v) = var("PUBLIC_URL") {
            cfg.public_url = Some(v);
        }
        if let Some(v) = var("PREFIX") {
            cfg.prefix = v;
        }
        if let Some(v) = var("AUDIENCE") {
            cfg.audience = v;
        }
        if let Some(v) = var("STORE_URL") {
            cfg.store_url = v;
        }
        if let Some(v) = var("PEERS") {
            cfg.federation.peers = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|issuer| PeerSection {
                    issuer: issuer.to_owned(),
                    jwks_uri: None,
                    require_typ: None,
                })
                .collect();
        }
        match (var("IDP_ISSUER"), var("IDP_CLIENT_ID"), cfg.idp.as_mut()) {
            (None, None, _) => {}
            (issuer, client_id, Some(idp)) => {
                idp.issuer = issuer.unwrap_or_else(|| idp.issuer.clone());
                idp.client_id = client_id.unwrap_or_else(|| idp.client_id.clone());
            }
            (Some(issuer), Some(client_id), None) => {
                cfg.idp = Some(IdpSection {
                    issuer,
                    client_id,
                    scopes: None,
                });
            }
            _ => {
                return Err(ServerError::Config(
                    "set both OIDC_BROKER_IDP_ISSUER and OIDC_BROKER_IDP_CLIENT_ID".into(),
                ));
            }
        }
        if !cfg.prefix.is_empty() && !cfg.prefix.starts_with('/') {
            return Err(ServerError::Config("prefix must start with /".into()));
        }
        Ok(cfg)
    }

    /// The tokens' `iss`: the public URL and the prefix.
    pub fn issuer(&self) -> String {
        let base = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen));
        format!(
            "{}{}",
            base.trim_end_matches('/'),
            self.prefix.trim_end_matches('/')
        )
    }
}
