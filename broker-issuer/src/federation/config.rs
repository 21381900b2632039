//! What a federation trusts: the peers ([`PeerConfig`]), what their
//! tokens may say locally ([`PeerClaimPolicy`]), and the fetch and cache
//! limits ([`FederationOptions`]).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;

use crate::error::IssuerError;
use crate::issuer::{ACCESS_TOKEN_TYP, IssuerConfig};
use crate::key::SigningAlg;

/// Where a py-oidc-auth broker serves its JWKS, below its issuer URL.
pub const PY_OIDC_AUTH_JWKS_PATH: &str = "/auth/v2/.well-known/jwks.json";

/// One trusted peer broker. Its keys verify tokens that claim its
/// `issuer`, and nothing else. `Debug` shows the JWKS URL without
/// credentials, query or fragment.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's exact `iss` (an absolute URL).
    pub issuer: String,
    /// Where its JWKS is served. Default: `issuer` +
    /// [`PY_OIDC_AUTH_JWKS_PATH`] (the py-oidc-auth layout, also this
    /// crate's). Must be `https`, or `http` on a loopback address when
    /// [`FederationOptions::allow_http_loopback`] is set (tests).
    pub jwks_uri: String,
    /// Algorithms its keys may sign with; a key for another one is dropped
    /// and a token naming another one refused. Default `[RS256]`.
    pub algorithms: Vec<SigningAlg>,
    /// What its tokens' roles, scopes and other claims may say here.
    pub claims: PeerClaimPolicy,
    /// The `typ` header its tokens must carry (`Some("at+jwt")` for a peer
    /// running this crate). `None`, the default, accepts any, as
    /// py-oidc-auth peers mint `typ: JWT`.
    pub require_typ: Option<String>,
    /// Refuse its tokens living longer than this (`exp - iat`), e.g. to
    /// keep out py-oidc-auth's 30-day device-login tokens. Default: none.
    pub max_token_lifetime: Option<Duration>,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let jwks_uri = Url::parse(&self.jwks_uri).map_or_else(
            |_| "[not a URL]".to_owned(),
            |u| {
                let host = u.host_str().unwrap_or("");
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{host}{port}{}", u.scheme(), u.path())
            },
        );
        f.debug_struct("PeerConfig")
            .field("issuer", &self.issuer)
            .field("jwks_uri", &jwks_uri)
            .field("algorithms", &self.algorithms)
            .field("claims", &self.claims)
            .field("require_typ", &self.require_typ)
            .field("max_token_lifetime", &self.max_token_lifetime)
            .finish()
    }
}

impl PeerConfig {
    /// A py-oidc-auth peer at `issuer`: JWKS at the py-oidc-auth path,
    /// RS256 only, any `typ`, roles and scopes dropped.
    pub fn new(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        let jwks_uri = format!("{}{PY_OIDC_AUTH_JWKS_PATH}", issuer.trim_end_matches('/'));
        Self {
            issuer,
            jwks_uri,
            algorithms: vec![SigningAlg::RS256],
            claims: PeerClaimPolicy::default(),
            require_typ: None,
            max_token_lifetime: None,
        }
    }

    /// A peer running this crate: as [`PeerConfig::new`], and its tokens
    /// must be `typ: at+jwt`.
    pub fn broker(issuer: impl Into<String>) -> Self {
        Self {
            require_typ: Some(ACCESS_TOKEN_TYP.to_owned()),
            ..Self::new(issuer)
        }
    }

    /// Check the peer and parse its JWKS URL.
    pub(crate) fn validate(&self, options: &FederationOptions) -> Result<Url, IssuerError> {
        let bad = |why: &str| Err(IssuerError::Config(format!("peer {}: {why}", self.issuer)));
        let issuer_ok = (self.issuer.starts_with("https://") || self.issuer.starts_with("http://"))
            && Url::parse(&self.issuer).is_ok();
        if !issuer_ok || self.issuer.len() > 1024 {
            return bad("the issuer must be an absolute http(s) URL");
        }
        if self.algorithms.is_empty() {
            return bad("at least one algorithm is needed");
        }
        let Ok(url) = Url::parse(&self.jwks_uri) else {
            return bad("jwks_uri is not a URL");
        };
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" if url.host().is_some() => {}
            "http" if options.allow_http_loopback && loopback => {}
            _ => return bad("jwks_uri must be https (http only on loopback, for tests)"),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return bad("jwks_uri must not hold credentials");
        }
        Ok(url)
    }
}

/// What one multi-valued claim of a peer's tokens becomes locally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClaimFilter {
    /// None of its values reach the application (the default).
    #[default]
    Drop,
    /// Only these values pass; others are dropped.
    Allow(BTreeSet<String>),
    /// Every value passes with this prefix (`"peerA:"` turns `admin` into
    /// `peerA:admin`), so it cannot match a local role by accident.
    Prefix(String),
}

impl ClaimFilter {
    /// The values left of `values`.
    pub fn apply<'a>(&self, values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        match self {
            Self::Drop => Vec::new(),
            Self::Allow(set) => values
                .into_iter()
                .filter(|v| set.contains(*v))
                .map(str::to_owned)
                .collect(),
            Self::Prefix(p) => values.into_iter().map(|v| format!("{p}{v}")).collect(),
        }
    }
}

/// What a peer's tokens may grant here (a peer is trusted to say who a
/// user is, not what the user may do locally, unless this says so).
///
/// `sub`, `preferred_username`, `email`, `jti`, `sid` and the times pass
/// unchanged; `sub` is only unique together with [`crate::Origin::Peer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerClaimPolicy {
    /// The `roles` claim. Default: dropped.
    pub roles: ClaimFilter,
    /// The `scope` claim, scope by scope. Default: dropped.
    pub scopes: ClaimFilter,
    /// Keep claims this crate does not name (`realm_access`, `groups`,
    /// ...), which application requirements could match. Default: false,
    /// they are dropped.
    pub keep_other_claims: bool,
}

/// Limits and accepted audiences of a [`crate::Federation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationOptions {
    /// A peer token's `aud` must hold one of these (as py-oidc-auth, peers
    /// share the audience).
    pub audiences: Vec<String>,
    /// Clock skew accepted on `exp`, `nbf` and `iat`. Default 30 s.
    pub leeway: Duration,
    /// At most one HTTP fetch per peer in this time, successful or not.
    /// Default 60 s.
    pub cooldown: Duration,
    /// At most one store read per peer in this time on unknown kids (to
    /// pick up a document another worker fetched). Default 1 s.
    pub store_recheck: Duration,
    /// A whole fetch (connect, headers, body) must end within this.
    /// Default 3 s.
    pub fetch_timeout: Duration,
    /// Largest JWKS document accepted, counted while it streams in.
    /// Default 64 KiB.
    pub max_document_bytes: usize,
    /// Key sets older than this (since fetched, by whichever worker) are
    /// not trusted: not loaded from the store, and not used from memory
    /// once they reach this age without a successful refresh. Default 24 h.
    pub max_age: Duration,
    /// Accept `http://` JWKS URLs on loopback addresses. Tests only.
    /// Default false.
    pub allow_http_loopback: bool,
}

impl FederationOptions {
    /// Defaults, accepting `audiences`.
    pub fn new<I, S>(audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            audiences: audiences.into_iter().map(Into::into).collect(),
            leeway: Duration::from_secs(30),
            cooldown: Duration::from_secs(60),
            store_recheck: Duration::from_secs(1),
            fetch_timeout: Duration::from_secs(3),
            max_document_bytes: 64 * 1024,
            max_age: Duration::from_secs(24 * 3600),
            allow_http_loopback: false,
        }
    }

    /// Defaults with the audiences and leeway of this broker's issuer.
    pub fn for_issuer(cfg: &IssuerConfig) -> Self {
        Self {
            leeway: cfg.leeway,
            ..Self::new(cfg.audiences.iter().cloned())
        }
    }

    pub(crate) fn validate(&self) -> Result<(), IssuerError> {
        let bad = |why: &str| Err(IssuerError::Config(why.to_owned()));
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return bad("federation: at least one non-empty audience is needed");
        }
        if self.fetch_timeout.is_zero() || self.max_document_bytes == 0 {
            return bad("federation: fetch_timeout and max_document_bytes must not be zero");
        }
        // The vault stores documents up to 256 KiB with its tag.
        if self.max_document_bytes > 192 * 1024 {
            return bad("federation: max_document_bytes is at most 192 KiB");
        }
        if self.max_age < self.cooldown {
            return bad("federation: max_age must be longer than the cooldown");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_py_oidc_auth() {
        let p = PeerConfig::new("https://peer.example/api/");
        assert_eq!(
            p.jwks_uri,
            "https://peer.example/api/auth/v2/.well-known/jwks.json"
        );
        assert_eq!(p.algorithms, [SigningAlg::RS256]);
        assert_eq!(p.claims.roles, ClaimFilter::Drop);
        assert_eq!(
            PeerConfig::broker("https://b").require_typ.as_deref(),
            Some("at+jwt")
        );
    }

    #[test]
    fn jwks_uri_must_be_https_unless_loopback_is_allowed() {
        let mut opts = FederationOptions::new(["a"]);
        let mut p = PeerConfig::new("https://peer.example");
        assert!(p.validate(&opts).is_ok());
        p.jwks_uri = "http://127.0.0.1:9/jwks".into();
        assert!(p.validate(&opts).is_err());
        opts.allow_http_loopback = true;
        assert!(p.validate(&opts).is_ok());
        p.jwks_uri = "http://peer.example/jwks".into();
        assert!(p.validate(&opts).is_err(), "http beyond loopback");
        p.jwks_uri = "https://u:p@peer.example/jwks".into();
        assert!(p.validate(&opts).is_err(), "credentials in the URL");
        p.jwks_uri = "file:///etc/passwd".into();
        assert!(p.validate(&opts).is_err());
        let mut q = PeerConfig::new("peer.example");
        assert!(q.validate(&opts).is_err(), "relative issuer");
        q = PeerConfig::new("https://peer.example");
        q.algorithms.clear();
        assert!(q.validate(&opts).is_err());
    }

    #[test]
    fn debug_hides_credentials_in_the_jwks_uri() {
        let mut p = PeerConfig::new("https://peer.example");
        p.jwks_uri = "https://user:hunter2@peer.example:8443/jwks?key=hunter2#x".into();
        let shown = format!("{p:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("https://peer.example:8443/jwks"), "{shown}");
    }

    #[test]
    fn claim_filters() {
        let roles = ["admin", "user"];
        assert!(ClaimFilter::Drop.apply(roles).is_empty());
        let allow = ClaimFilter::Allow(BTreeSet::from(["user".to_owned()]));
        assert_eq!(allow.apply(roles), ["user"]);
        let prefix = ClaimFilter::Prefix("peerA:".into());
        assert_eq!(prefix.apply(roles), ["peerA:admin", "peerA:user"]);
    }
}
