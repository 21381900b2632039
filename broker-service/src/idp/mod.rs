//! The identity provider client: discovery, the authorization URL, the
//! token endpoint (code, refresh, device code), device authorization,
//! revocation, end-session, ID-token validation. Hand-written on
//! `reqwest` (BROKER.md §3.2): no redirects on any call, a timeout on
//! each, bodies capped while they stream, and typed errors that never
//! carry a token, a code or the client secret.

mod http;
mod tokens;

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use url::Url;

pub use tokens::{DeviceStart, IdClaims, TokenSet};

use http::read_json;

/// Largest IdP answer read (1 MiB).
pub const MAX_IDP_BODY: usize = 1024 * 1024;

/// How to reach the identity provider.
#[derive(Clone)]
pub struct IdpConfig {
    /// The IdP's issuer URL; discovery is `<issuer>/.well-known/openid-configuration`.
    pub issuer: Url,
    /// This broker's client id at the IdP.
    pub client_id: String,
    /// Its secret (HTTP Basic); `None` for a public client.
    pub client_secret: Option<SecretString>,
    /// Scopes asked for at login and device authorization (`openid` is
    /// always added).
    pub scopes: Vec<String>,
    /// Timeout of each call (default 10 s).
    pub timeout: Duration,
}

impl fmt::Debug for IdpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdpConfig")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field("scopes", &self.scopes)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl IdpConfig {
    /// Defaults for `issuer` and `client_id` (scopes `profile email`).
    pub fn new(issuer: Url, client_id: impl Into<String>) -> Self {
        Self {
            issuer,
            client_id: client_id.into(),
            client_secret: None,
            scopes: vec!["profile".into(), "email".into()],
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a call to the identity provider failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdpError {
    /// No answer in time, a dropped connection, or a 5xx: nothing was
    /// consumed as far as the broker can tell; retry later.
    #[error("the identity provider is unavailable")]
    Unavailable,
    /// `invalid_grant`: the code or refresh token is no longer valid (the
    /// IdP session ended, or it was used).
    #[error("the identity provider refused the grant")]
    InvalidGrant,
    /// Device flow: not approved yet.
    #[error("authorization pending")]
    Pending,
    /// Device flow: polling too fast.
    #[error("slow down")]
    SlowDown,
    /// Device flow: the code expired.
    #[error("the device code expired")]
    Expired,
    /// The user or the IdP denied access.
    #[error("access denied")]
    Denied,
    /// Another OAuth error; its code (an RFC 6749 token, no free text).
    #[error("the identity provider answered {0}")]
    Rejected(String),
    /// An answer that is not what the protocol says.
    #[error("unusable answer from the identity provider: {0}")]
    Malformed(&'static str),
    /// A token signed by a key the broker has not fetched, and the IdP's
    /// key set was fetched less than the cooldown (60 s) ago: the IdP has
    /// probably rotated its key; retry once the cooldown is over.
    #[error("the identity provider's signing key is not fetched yet")]
    KeysCoolingDown,
}

/// The parts of the discovery document the broker uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// The IdP's `iss`.
    pub issuer: String,
    /// Where users log in.
    pub authorization_endpoint: Url,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: Url,
    /// The IdP's signing keys.
    pub jwks_uri: Url,
    /// RFC 8628 device authorization, if offered.
    #[serde(default)]
    pub device_authorization_endpoint: Option<Url>,
    /// RFC 7009 revocation, if offered.
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    /// RP-initiated logout, if offered.
    #[serde(default)]
    pub end_session_endpoint: Option<Url>,
    /// OIDC userinfo.
    #[serde(default)]
    pub userinfo_endpoint: Option<Url>,
}

/// A client of one identity provider.
#[derive(Clone)]
pub struct IdpClient {
    http: reqwest::Client,
    cfg: IdpConfig,
    discovery: Discovery,
    keys: tokens::IdpKeys,
}

impl fmt::Debug for IdpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdpClient")
            .field("issuer", &self.discovery.issuer)
            .field("client_id", &self.cfg.client_id)
            .finish_non_exhaustive()
    }
}

impl IdpClient {
    /// Fetch the discovery document and build the client. `http` must not
    /// follow redirects (build it with `redirect(Policy::none())`); the
    /// broker checks that every endpoint is HTTPS unless `http` is plain
    /// HTTP on loopback (tests).
    pub async fn discover(cfg: IdpConfig, http: reqwest::Client) -> Result<Self, IdpError> {
        let mut url = cfg.issuer.clone();
        let path = format!(
            "{}/.well-known/openid-configuration",
            url.path().trim_end_matches('/')
        );
        url.set_path(&path);
        let response = http
            .get(url)
            .timeout(cfg.timeout)
            .send()
            .await
            .map_err(|_| IdpError::Unavailable)?;
        let discovery: Discovery = read_json(response, MAX_IDP_BODY).await?;
        if discovery.issuer.trim_end_matches('/') != cfg.issuer.as_str().trim_end_matches('/') {
            return Err(IdpError::Malformed(
                "the discovery document names another issuer",
            ));
        }
        let keys = tokens::IdpKeys::new(discovery.jwks_uri.clone());
        Ok(Self {
            http,
            cfg,
            discovery,
            keys,
        })
    }

    /// The discovery document.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// The configuration.
    pub fn config(&self) -> &IdpConfig {
        &self.cfg
    }

    /// The authorization URL for a code flow with PKCE S256.
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
        extra_scopes: &[&str],
        prompt: Option<&str>,
    ) -> Url {
        let mut url = self.discovery.authorization_endpoint.clone();
        let scope = self.scope(extra_scopes);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.cfg.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &scope)
                .append_pair("state", state)
                .append_pair("nonce", nonce)
                .append_pair("code_challenge", code_challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(p) = prompt {
                q.append_pair("prompt", p);
            }
        }
        url
    }

    /// `openid`, the configured scopes and `extra`, once each.
    fn scope(&self, extra: &[&str]) -> String {
        let mut scopes: Vec<&str> = vec!["openid"];
        for s in self
            .cfg
            .scopes
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
        {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        scopes.join(" ")
    }

    /// The RP-initiated logout URL, if the IdP offers one.
    pub fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: Option<&str>,
    ) -> Option<Url> {
        let mut url = self.discovery.end_session_endpoint.clone()?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.cfg.client_id);
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint);
            }
            if let Some(uri) = post_logout_redirect_uri {
                q.append_pair("post_logout_redirect_uri", uri);
            }
        }
        Some(url)
    }

    /// A POST to `endpoint` with the client's authentication: HTTP Basic
    /// with a secret, else `client_id` in the form.
    fn post(
        &self,
        endpoint: &Url,
        form: &mut Vec<(&'static str, String)>,
    ) -> reqwest::RequestBuilder {
        let request = self
            .http
            .post(endpoint.clone())
            .timeout(self.cfg.timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        match &self.cfg.client_secret {
            Some(secret) => request.basic_auth(
                form_encode(&self.cfg.client_id),
                Some(form_encode(secret.expose_secret())),
            ),
            None => {
                form.push(("client_id", self.cfg.client_id.clone()));
                request
            }
        }
    }
}

/// An HTTP client for IdP calls: HTTPS on rustls with the **ring**
/// provider and the web PKI roots (the configuration federation uses, so a
/// binary holds one rustls provider and needs no process default), no
/// redirects followed (a token endpoint that redirects is refused, unlike
/// py-oidc-auth), connect timeout 5 s.
pub fn http_client() -> Result<reqwest::Client, IdpError> {
    let tls = broker_issuer::federation::tls_config()
        .map_err(|_| IdpError::Malformed("the TLS configuration could not be built"))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|_| IdpError::Malformed("the HTTP client could not be built"))
}

/// RFC 6749 §2.3.1: client credentials in Basic auth are form-encoded first.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    /// reqwest is built with `rustls-no-provider` (federation needs it), so
    /// a client on reqwest's default TLS panics in a process with no
    /// installed rustls provider: the IdP client must bring its own.
    #[test]
    fn http_client_needs_no_process_default_tls_provider() {
        let client = std::panic::catch_unwind(super::http_client);
        assert!(
            matches!(client, Ok(Ok(_))),
            "http_client() failed or panicked without a process-default rustls provider"
        );
    }
}
