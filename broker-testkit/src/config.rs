//! What a [`TestIdp`](crate::TestIdp) starts with: its users, clients,
//! lifetimes and the initial value of every knob.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use broker_core::{Clock, SystemClock};

/// One endpoint of the [`TestIdp`](crate::TestIdp): the unit of the
/// counters and of fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET {issuer}/.well-known/openid-configuration`.
    Discovery,
    /// `GET {issuer}/jwks`.
    Jwks,
    /// `GET {issuer}/authorize`.
    Authorize,
    /// `POST {issuer}/token`.
    Token,
    /// `POST {issuer}/device_authorization`.
    DeviceAuthorization,
    /// `GET|POST {issuer}/userinfo`.
    Userinfo,
    /// `GET|POST {issuer}/end_session`.
    EndSession,
    /// `POST {issuer}/revoke`.
    Revoke,
}

impl Endpoint {
    /// Every endpoint, in a fixed order.
    pub const ALL: [Endpoint; 8] = [
        Endpoint::Discovery,
        Endpoint::Jwks,
        Endpoint::Authorize,
        Endpoint::Token,
        Endpoint::DeviceAuthorization,
        Endpoint::Userinfo,
        Endpoint::EndSession,
        Endpoint::Revoke,
    ];

    /// The path below the issuer (`"/token"`, ...).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Discovery => "/.well-known/openid-configuration",
            Endpoint::Jwks => "/jwks",
            Endpoint::Authorize => "/authorize",
            Endpoint::Token => "/token",
            Endpoint::DeviceAuthorization => "/device_authorization",
            Endpoint::Userinfo => "/userinfo",
            Endpoint::EndSession => "/end_session",
            Endpoint::Revoke => "/revoke",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A user the IdP knows. The password is used by the `password` grant
/// only (`/authorize` auto-approves); it never appears in `Debug`.
#[derive(Clone)]
pub struct TestUser {
    /// Subject (`sub`), stable per user.
    pub sub: String,
    /// `preferred_username`; also what `login_hint` may name.
    pub username: String,
    /// Password for the `password` grant.
    pub password: String,
    /// `email`.
    pub email: String,
    /// Realm roles: `realm_access.roles`.
    pub roles: Vec<String>,
    /// Client roles: `resource_access.<client>.roles`.
    pub client_roles: BTreeMap<String, Vec<String>>,
    /// `groups`.
    pub groups: Vec<String>,
}

impl fmt::Debug for TestUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestUser")
            .field("sub", &self.sub)
            .field("username", &self.username)
            .field("email", &self.email)
            .field("roles", &self.roles)
            .field("client_roles", &self.client_roles)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl TestUser {
    /// A user named `username` with `sub` = `"sub-" + username`, password
    /// `username + "-pw"`, email `username@example.test`, no roles.
    pub fn new(username: impl Into<String>) -> Self {
        let username = username.into();
        Self {
            sub: format!("sub-{username}"),
            password: format!("{username}-pw"),
            email: format!("{username}@example.test"),
            username,
            roles: Vec::new(),
            client_roles: BTreeMap::new(),
            groups: Vec::new(),
        }
    }

    /// With these realm roles.
    pub fn with_roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// With these roles for `client` (`resource_access.<client>.roles`).
    pub fn with_client_roles<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        client: impl Into<String>,
        roles: I,
    ) -> Self {
        self.client_roles
            .insert(client.into(), roles.into_iter().map(Into::into).collect());
        self
    }

    /// With these groups.
    pub fn with_groups<I: IntoIterator<Item = S>, S: Into<String>>(mut self, groups: I) -> Self {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }
}

/// A client registered at the IdP. With a secret it is confidential and
/// authenticates with HTTP Basic (`client_secret_basic`); without one it
/// is public and sends `client_id` in the body.
#[derive(Clone)]
pub struct TestClient {
    /// `client_id`.
    pub client_id: String,
    /// The secret; `None` for a public client.
    pub client_secret: Option<String>,
    /// Redirect URIs accepted by `/authorize` (exact match). Empty = any
    /// `http://127.0.0.1` or `http://localhost` URI.
    pub redirect_uris: Vec<String>,
}

impl fmt::Debug for TestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient")
            .field("client_id", &self.client_id)
            .field("confidential", &self.client_secret.is_some())
            .field("redirect_uris", &self.redirect_uris)
            .finish()
    }
}

impl TestClient {
    /// A confidential client.
    pub fn confidential(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: Some(secret.into()),
            redirect_uris: Vec::new(),
        }
    }

    /// A public client (no secret).
    pub fn public(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: None,
            redirect_uris: Vec::new(),
        }
    }

    /// Accept only these redirect URIs.
    pub fn with_redirect_uris<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        uris: I,
    ) -> Self {
        self.redirect_uris = uris.into_iter().map(Into::into).collect();
        self
    }
}

/// The client id of the default confidential client.
pub const DEFAULT_CLIENT_ID: &str = "broker";
/// The secret of the default confidential client.
pub const DEFAULT_CLIENT_SECRET: &str = "broker-secret";
/// The client id of the default public client.
pub const DEFAULT_PUBLIC_CLIENT_ID: &str = "broker-public";

/// How a [`TestIdp`](crate::TestIdp) starts. Every knob can be changed
/// later through the running IdP.
#[derive(Clone)]
pub struct TestIdpConfig {
    /// The clock every `iat`/`exp` written and every expiry checked reads.
    /// Share a [`ManualClock`](broker_core::ManualClock) with the broker
    /// under test to move both at once.
    pub clock: Arc<dyn Clock>,
    /// Path of the issuer below the server's URL: `""` (the default) or,
    /// Keycloak-like, `"/realms/test"`. Every endpoint lives below it.
    pub issuer_path: String,
    /// Users; the first is the one `/authorize` approves without `login_hint`.
    pub users: Vec<TestUser>,
    /// Clients.
    pub clients: Vec<TestClient>,
    /// `aud` of access tokens (Keycloak: `"account"`).
    pub access_token_audience: Vec<String>,
    /// Access-token lifetime in seconds (Keycloak: 300).
    pub access_token_ttl: u64,
    /// Lifetime of a refresh token in seconds, sent as `refresh_expires_in`;
    /// `None` = no expiry and no field (like Google).
    pub refresh_expires_in: Option<u64>,
    /// Each refresh answers a new refresh token and uses up the presented
    /// one. Off: the refresh response carries no refresh token and the old
    /// one stays valid (RFC 6749 §6, like Google).
    pub rotate_refresh_tokens: bool,
    /// Presenting a used refresh token revokes its whole family (every
    /// token of that login), like Keycloak and nanoidp.
    pub reuse_detection: bool,
    /// No token response carries a refresh token.
    pub omit_refresh_token: bool,
    /// Authorization-code lifetime in seconds.
    pub code_ttl: u64,
    /// Device-code lifetime in seconds (`expires_in`).
    pub device_code_ttl: u64,
    /// Minimum polling interval in seconds (`interval`); a faster poll
    /// answers `slow_down`. 0 disables `slow_down`.
    pub device_interval: u64,
}

impl fmt::Debug for TestIdpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestIdpConfig")
            .field("clock", &self.clock)
            .field("issuer_path", &self.issuer_path)
            .field("users", &self.users)
            .field("clients", &self.clients)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("rotate_refresh_tokens", &self.rotate_refresh_tokens)
            .field("reuse_detection", &self.reuse_detection)
            .field("omit_refresh_token", &self.omit_refresh_token)
            .finish_non_exhaustive()
    }
}

impl Default for TestIdpConfig {
    /// Keycloak's defaults where it has one: 300 s access tokens, 1800 s
    /// refresh tokens with rotation and reuse detection on; a user `alice`
    /// (realm roles `user`, `admin`; client role `broker: reader`; group
    /// `/staff`), a user `bob` (realm role `user`), the confidential client
    /// [`DEFAULT_CLIENT_ID`] and the public client [`DEFAULT_PUBLIC_CLIENT_ID`];
    /// the system clock.
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            issuer_path: String::new(),
            users: vec![
                TestUser::new("alice")
                    .with_roles(["user", "admin"])
                    .with_client_roles(DEFAULT_CLIENT_ID, ["reader"])
                    .with_groups(["/staff"]),
                TestUser::new("bob").with_roles(["user"]),
            ],
            clients: vec![
                TestClient::confidential(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
                TestClient::public(DEFAULT_PUBLIC_CLIENT_ID),
            ],
            access_token_audience: vec!["account".into()],
            access_token_ttl: 300,
            refresh_expires_in: Some(1800),
            rotate_refresh_tokens: true,
            reuse_detection: true,
            omit_refresh_token: false,
            code_ttl: 60,
            device_code_ttl: 600,
            device_interval: 5,
        }
    }
}

impl TestIdpConfig {
    /// The defaults with this clock.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            ..Self::default()
        }
    }
}
