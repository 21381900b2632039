//! [`BrokerConfig`]: the broker's settings, with the defaults of BROKER.md
//! §5.9, and the wire types of the token endpoint.

use std::fmt;
use std::time::Duration;

use broker_issuer::IssuerConfig;
use secrecy::SecretString;
use serde::Serialize;

use crate::idp::IdpConfig;

/// What the access token's `sub` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectMode {
    /// The IdP's `sub` (stable; revocation by subject maps 1:1). Default.
    #[default]
    IdpSubject,
    /// The username, as py-oidc-auth does (must agree across a federation).
    PreferredUsername,
}

/// Everything the broker needs to run.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This broker as a token issuer (its `iss`, audiences, keys, rotation).
    pub issuer: IssuerConfig,
    /// The identity provider.
    pub idp: IdpConfig,
    /// How long a refresh grant lives when the IdP says nothing about its
    /// refresh token's lifetime (Google, Auth0 send none). Default 24 h.
    pub grant_idle_ttl: Duration,
    /// How long a login may be refreshed at most. Default 30 days.
    pub family_max_ttl: Duration,
    /// Within this long of a refresh, presenting the same refresh token
    /// again answers `invalid_grant` without revoking (two browser tabs);
    /// after it, a reuse revokes the login. Default 0 (RFC 9700, strict).
    pub replay_grace: Duration,
    /// Allowed `redirect_uri`s of the login flows; `*` stands for the port
    /// (`http://localhost:*/callback`, what CLI clients use). Default none.
    pub redirect_uris: Vec<String>,
    /// Allowed `post_logout_redirect_uri`s (same patterns). Default none.
    pub post_logout_redirect_uris: Vec<String>,
    /// py-oidc-auth-client compatibility: when a client sends no
    /// `code_challenge`, carry the PKCE verifier in `state` (signed, and
    /// bound to the nonce). Default on, logged once at startup as a risk.
    pub legacy_pkce_in_state: bool,
    /// The access token's `sub`.
    pub subject: SubjectMode,
    /// How long a login `state` is accepted. Default 10 minutes.
    pub state_max_age: Duration,
}

impl BrokerConfig {
    /// Defaults around an issuer and an IdP.
    pub fn new(issuer: IssuerConfig, idp: IdpConfig) -> Self {
        Self {
            issuer,
            idp,
            grant_idle_ttl: Duration::from_secs(24 * 3600),
            family_max_ttl: Duration::from_secs(30 * 24 * 3600),
            replay_grace: Duration::ZERO,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            legacy_pkce_in_state: true,
            subject: SubjectMode::IdpSubject,
            state_max_age: Duration::from_secs(600),
        }
    }
}

/// True if `uri` matches one of `patterns` (exactly, or with `*` standing
/// for any port number).
pub fn uri_allowed(patterns: &[String], uri: &str) -> bool {
    patterns.iter().any(|p| match p.split_once(":*") {
        Some((head, tail)) => uri
            .strip_prefix(head)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|rest| {
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                (1..=5).contains(&digits).then(|| &rest[digits..])
            })
            .is_some_and(|rest| rest == tail),
        None => p == uri,
    })
}

/// A token request, as the token endpoint parsed it.
pub enum TokenRequest {
    /// `authorization_code` with the PKCE verifier.
    Code {
        /// The code.
        code: SecretString,
        /// The redirect URI used at login.
        redirect_uri: String,
        /// The PKCE verifier.
        code_verifier: SecretString,
    },
    /// `refresh_token`.
    Refresh {
        /// The broker refresh token.
        refresh_token: SecretString,
    },
    /// `urn:ietf:params:oauth:grant-type:device_code`.
    Device {
        /// The device code from the device authorization.
        device_code: SecretString,
    },
    /// `urn:ietf:params:oauth:grant-type:token-exchange` of an IdP access token.
    Exchange {
        /// The IdP access token.
        subject_token: SecretString,
    },
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Code { .. } => "TokenRequest::Code",
            Self::Refresh { .. } => "TokenRequest::Refresh",
            Self::Device { .. } => "TokenRequest::Device",
            Self::Exchange { .. } => "TokenRequest::Exchange",
        })
    }
}

/// A successful token response: RFC 6749's fields plus py-oidc-auth's
/// absolute `expires` and `refresh_expires`.
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    /// The broker's access token (JWT).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: i64,
    /// When it expires (Unix seconds).
    pub expires: i64,
    /// The broker's refresh token (opaque), absent for token exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds the refresh token lives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_expires_in: Option<i64>,
    /// When it expires (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_expires: Option<i64>,
    /// Granted scopes.
    pub scope: String,
    /// RFC 8693: for token exchange only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The user as py-oidc-auth's `/userinfo` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// The username.
    pub username: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// The POSIX-style name (the username).
    pub pw_name: String,
    /// Email, empty if unknown.
    pub email: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_patterns_match_a_port_only() {
        let p = vec![
            "http://localhost:*/callback".to_owned(),
            "https://app.example/cb".to_owned(),
        ];
        assert!(uri_allowed(&p, "http://localhost:53412/callback"));
        assert!(uri_allowed(&p, "https://app.example/cb"));
        for bad in [
            "http://localhost:53412/callback/x",
            "http://localhost:/callback",
            "http://localhost:1234567/callback",
            "http://localhost.evil:80/callback",
            "http://localhost:80@evil/callback",
            "https://app.example/cb?x=1",
            "https://evil.example/cb",
        ] {
            assert!(!uri_allowed(&p, bad), "{bad}");
        }
    }
}
