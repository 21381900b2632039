#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
mod endpoints;
mod error;
mod grants;
mod keys;
pub mod nanoidp;
mod server;
mod state;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;

pub use broker_core::{Clock, ManualClock, SystemClock};
pub use config::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PUBLIC_CLIENT_ID, Endpoint, TestClient,
    TestIdpConfig, TestUser,
};
pub use error::{NanoidpError, TestIdpError};

use crate::keys::SigningKey;
use crate::state::{DeviceState, Failure, Shared};

/// A `reqwest` client builder for tests, on the broker's own ring-only
/// TLS configuration (`broker_issuer::federation::tls_config`). The
/// workspace's reqwest is built with `rustls-no-provider`, so a client built
/// without a TLS configuration would panic in a process with no installed
/// provider.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    match broker_issuer::federation::tls_config() {
        Ok(tls) => reqwest::Client::builder().tls_backend_preconfigured(tls),
        // Cannot happen: ring supports every default protocol version.
        Err(_) => reqwest::Client::builder(),
    }
}

/// `redis://h1:p1,redis://h2:p2` (the test variable
/// `BROKER_TEST_REDIS_CLUSTER_URLS`) as the store URL
/// `redis-cluster://h1:p1,h2:p2` (credentials from the first node).
///
/// ```
/// assert_eq!(
///     broker_testkit::redis_cluster_url("redis://127.0.0.1:7001, redis://127.0.0.1:7002"),
///     "redis-cluster://127.0.0.1:7001,127.0.0.1:7002"
/// );
/// ```
pub fn redis_cluster_url(nodes: &str) -> String {
    use url::Position;
    let urls: Vec<url::Url> = nodes
        .split(',')
        .filter_map(|n| url::Url::parse(n.trim()).ok())
        .collect();
    let hosts: Vec<&str> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let from = if i == 0 {
                Position::BeforeUsername
            } else {
                Position::BeforeHost
            };
            &u[from..Position::AfterPort]
        })
        .collect();
    format!("redis-cluster://{}", hosts.join(","))
}

/// The PKCE S256 challenge of `verifier`: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// An in-process OIDC provider on `127.0.0.1:<random port>`, answering
/// like Keycloak, with knobs and fault injection. Stops when dropped.
///
/// Every setter takes `&self`: share the `TestIdp` (or an `Arc` of it)
/// between the test and whatever drives the broker.
#[derive(Debug)]
pub struct TestIdp {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestIdp {
    /// Bind `127.0.0.1:0`, generate an RSA-2048 signing key and serve on
    /// the current Tokio runtime.
    pub async fn start(config: TestIdpConfig) -> Result<Self, TestIdpError> {
        let key = SigningKey::generate()?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(TestIdpError::Listen)?;
        let addr = listener.local_addr().map_err(TestIdpError::Listen)?;
        let shared = Arc::new(Shared::new(config, format!("http://{addr}"), key));
        let server = server::spawn(listener, Arc::clone(&shared));
        Ok(Self { shared, server })
    }

    /// The issuer (`iss` of every token; discovery lives below it).
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The absolute URL of `endpoint`.
    pub fn endpoint_url(&self, endpoint: Endpoint) -> String {
        self.shared.endpoint_url(endpoint)
    }

    /// The clock the IdP reads.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.shared.clock)
    }

    /// How many requests reached `endpoint` (injected failures and dropped
    /// connections included).
    pub fn calls(&self, endpoint: Endpoint) -> u64 {
        self.shared.calls(endpoint)
    }

    /// Reset every counter to 0.
    pub fn reset_calls(&self) {
        for c in &self.shared.calls {
            c.store(0, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Rotate refresh tokens on every refresh (on), or answer no refresh
    /// token and keep the presented one valid (off).
    pub fn set_rotate_refresh_tokens(&self, on: bool) {
        self.shared.lock().knobs.rotate_refresh_tokens = on;
    }

    /// Revoke a login's whole family when a used refresh token comes back.
    pub fn set_reuse_detection(&self, on: bool) {
        self.shared.lock().knobs.reuse_detection = on;
    }

    /// Lifetime of refresh tokens issued from now on; `None` = no expiry
    /// and no `refresh_expires_in` field.
    pub fn set_refresh_expires_in(&self, secs: Option<u64>) {
        self.shared.lock().knobs.refresh_expires_in = secs;
    }

    /// Answer no refresh token at all (any grant).
    pub fn set_omit_refresh_token(&self, on: bool) {
        self.shared.lock().knobs.omit_refresh_token = on;
    }

    /// Lifetime of access and ID tokens issued from now on.
    pub fn set_access_token_ttl(&self, secs: u64) {
        self.shared.lock().knobs.access_token_ttl = secs;
    }

    /// Hold every request to `endpoint` for `delay` (real time) before
    /// answering; `Duration::ZERO` ends it.
    pub fn delay(&self, endpoint: Endpoint, delay: Duration) {
        self.shared.lock().faults[endpoint.index()].delay = delay;
    }

    /// Answer the next `n` requests to `endpoint` with `status` and an
    /// OAuth error body whose code follows the status: 400 `invalid_grant`,
    /// 401 `invalid_client`, 503 `temporarily_unavailable`, other 5xx
    /// `server_error`, others `invalid_request`.
    pub fn fail_next(&self, endpoint: Endpoint, status: u16, n: u32) {
        let error = match status {
            400 => "invalid_grant",
            401 => "invalid_client",
            503 => "temporarily_unavailable",
            500..=599 => "server_error",
            _ => "invalid_request",
        };
        self.fail_next_with(endpoint, status, error, n);
    }

    /// Answer the next `n` requests to `endpoint` with `status` and
    /// `{"error": error}`; `n = 0` disarms.
    pub fn fail_next_with(&self, endpoint: Endpoint, status: u16, error: &str, n: u32) {
        self.shared.lock().faults[endpoint.index()].fail = (n > 0).then(|| Failure {
            status,
            error: error.to_owned(),
            remaining: n,
        });
    }

    /// Close the TCP connection of the next request to `endpoint` without
    /// any HTTP answer (after its delay, if one is set). Calls add up.
    pub fn drop_connection_next(&self, endpoint: Endpoint) {
        self.shared.lock().faults[endpoint.index()].drop_next += 1;
    }

    /// Disarm every delay, failure and drop.
    pub fn clear_faults(&self) {
        self.shared.lock().faults = Default::default();
    }

    /// Sign with a new key from now on; the old keys stay in the JWKS and
    /// keep verifying (Keycloak's passive keys). Returns the new `kid`.
    pub fn rotate_signing_key(&self) -> Result<String, TestIdpError> {
        let key = Arc::new(SigningKey::generate()?);
        let kid = key.kid.clone();
        self.shared.lock().keys.push(key);
        Ok(kid)
    }

    /// Remove every key but the signing one from the JWKS: tokens signed
    /// before the last rotation stop verifying.
    pub fn retire_old_signing_keys(&self) {
        let mut inner = self.shared.lock();
        let current = inner.signing_key();
        inner.keys = vec![current];
    }

    /// The `kid` tokens are signed with now.
    pub fn signing_kid(&self) -> String {
        self.shared.lock().signing_key().kid.clone()
    }

    /// End every login of `sub` (an admin "log out user"): its refresh
    /// tokens answer `invalid_grant`, its access tokens fail `/userinfo`.
    /// Returns how many logins were ended.
    pub fn revoke_user(&self, sub: &str) -> usize {
        let mut inner = self.shared.lock();
        let mut ended = 0;
        for family in inner.families.values_mut() {
            if family.sub == sub && !family.revoked {
                family.revoked = true;
                ended += 1;
            }
        }
        inner.codes.retain(|_, c| c.sub != sub);
        ended
    }

    /// Add a user, or replace the one with the same `sub`.
    pub fn upsert_user(&self, user: TestUser) {
        let mut inner = self.shared.lock();
        inner.users.retain(|u| u.sub != user.sub);
        inner.users.push(user);
    }

    /// The users.
    pub fn users(&self) -> Vec<TestUser> {
        self.shared.lock().users.clone()
    }

    /// Add a client, or replace the one with the same `client_id`.
    pub fn upsert_client(&self, client: TestClient) {
        let mut inner = self.shared.lock();
        inner.clients.retain(|c| c.client_id != client.client_id);
        inner.clients.push(client);
    }

    /// Approve the device authorization `user_code` as the first user.
    pub fn approve(&self, user_code: &str) -> Result<(), TestIdpError> {
        let sub = {
            let inner = self.shared.lock();
            inner
                .users
                .first()
                .map(|u| u.sub.clone())
                .ok_or(TestIdpError::UnknownUser)?
        };
        self.decide(user_code, DeviceState::Approved(sub))
    }

    /// Approve the device authorization `user_code` as the user named
    /// `user` (username or `sub`).
    pub fn approve_as(&self, user_code: &str, user: &str) -> Result<(), TestIdpError> {
        let sub = self
            .shared
            .lock()
            .user_named(user)
            .map(|u| u.sub.clone())
            .ok_or(TestIdpError::UnknownUser)?;
        self.decide(user_code, DeviceState::Approved(sub))
    }

    /// Deny the device authorization `user_code`.
    pub fn deny(&self, user_code: &str) -> Result<(), TestIdpError> {
        self.decide(user_code, DeviceState::Denied)
    }

    fn decide(&self, user_code: &str, decision: DeviceState) -> Result<(), TestIdpError> {
        let wanted = normalise_user_code(user_code);
        let mut inner = self.shared.lock();
        let grant = inner
            .devices
            .values_mut()
            .find(|g| normalise_user_code(&g.user_code) == wanted)
            .ok_or(TestIdpError::UnknownUserCode)?;
        if grant.state != DeviceState::Pending {
            return Err(TestIdpError::NotPending);
        }
        grant.state = decision;
        Ok(())
    }

    /// How many logins (refresh-token families) are alive.
    pub fn active_logins(&self) -> usize {
        self.shared
            .lock()
            .families
            .values()
            .filter(|f| !f.revoked)
            .count()
    }
}

/// A user code as typed: case and dashes do not matter.
fn normalise_user_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}
