//! Token-endpoint calls, device authorization, revocation, and ID-token
//! validation against the IdP's JWKS (fetched once, again on an unknown
//! kid at most once per cooldown, shared by every caller).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use super::http::{error_of, read_capped, read_json};
use super::{IdpClient, IdpError, MAX_IDP_BODY};

/// How long after a JWKS fetch another may run for an unknown kid.
const KEYS_COOLDOWN: Duration = Duration::from_secs(60);

/// What the token endpoint returned.
pub struct TokenSet {
    /// The IdP access token.
    pub access_token: SecretString,
    /// The IdP refresh token, if one came (rotated or first).
    pub refresh_token: Option<SecretString>,
    /// The ID token, if one came.
    pub id_token: Option<SecretString>,
    /// Lifetime of the access token, seconds.
    pub expires_in: Option<u64>,
    /// Lifetime of the refresh token (a Keycloak extension), seconds.
    pub refresh_expires_in: Option<u64>,
    /// Granted scopes.
    pub scope: Option<String>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("refresh_token", &self.refresh_token.is_some())
            .field("id_token", &self.id_token.is_some())
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RawTokens {
    access_token: Zeroizing<String>,
    #[serde(default)]
    refresh_token: Option<Zeroizing<String>>,
    #[serde(default)]
    id_token: Option<Zeroizing<String>>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
}

impl From<RawTokens> for TokenSet {
    fn from(r: RawTokens) -> Self {
        let secret = |z: Zeroizing<String>| SecretString::from(z.as_str().to_owned());
        Self {
            access_token: secret(r.access_token),
            refresh_token: r.refresh_token.map(secret),
            id_token: r.id_token.map(secret),
            expires_in: r.expires_in,
            refresh_expires_in: r.refresh_expires_in,
            scope: r.scope,
        }
    }
}

/// A started device authorization (RFC 8628 §3.2).
#[derive(Deserialize)]
pub struct DeviceStart {
    /// What the device polls with (secret to the device).
    pub device_code: Zeroizing<String>,
    /// What the user types.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same, with the code filled in.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds between polls (default 5).
    #[serde(default = "default_interval")]
    pub interval: u64,
}

fn default_interval() -> u64 {
    5
}

impl fmt::Debug for DeviceStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceStart")
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// What the broker takes from a validated ID token (and the IdP access
/// token, when it is a JWT the IdP signed).
#[derive(Clone, Default, PartialEq)]
pub struct IdClaims {
    /// The IdP subject.
    pub sub: String,
    /// Username.
    pub preferred_username: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Roles: `realm_access.roles` ∪ `groups` ∪ `roles` ∪
    /// `resource_access.*.roles`, as py-oidc-auth flattens them.
    pub roles: Vec<String>,
    /// The ID token's `nonce`.
    pub nonce: Option<String>,
    /// When the user authenticated, if the IdP says.
    pub auth_time: Option<i64>,
}

impl fmt::Debug for IdClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdClaims")
            .field("roles", &self.roles.len())
            .finish_non_exhaustive()
    }
}

/// The IdP's signing keys, shared by clones.
#[derive(Clone)]
pub(crate) struct IdpKeys {
    uri: Url,
    state: Arc<tokio::sync::Mutex<KeyState>>,
}

#[derive(Default)]
struct KeyState {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched: Option<Instant>,
}

impl IdpKeys {
    pub(crate) fn new(uri: Url) -> Self {
        Self {
            uri,
            state: Arc::default(),
        }
    }

    /// The key `kid`, fetching the JWKS if it is unknown and the cooldown
    /// allows (one fetch at a time: waiters reuse its result).
    async fn key(
        &self,
        client: &IdpClient,
        kid: &str,
    ) -> Result<(DecodingKey, Algorithm), IdpError> {
        let mut state = self.state.lock().await;
        if let Some(found) = state.keys.get(kid) {
            return Ok(found.clone());
        }
        if state.fetched.is_some_and(|t| t.elapsed() < KEYS_COOLDOWN) {
            return Err(IdpError::KeysCoolingDown);
        }
        state.fetched = Some(Instant::now());
        let response = client
            .http
            .get(self.uri.clone())
            .timeout(client.cfg.timeout)
            .send()
            .await
            .map_err(|_| IdpError::Unavailable)?;
        let set: JwkSet = read_json(response, MAX_IDP_BODY).await?;
        state.keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let alg = key_algorithm(jwk)?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, (key, alg)))
            })
            .collect();
        state
            .keys
            .get(kid)
            .cloned()
            .ok_or(IdpError::Malformed("a token signed by an unknown IdP key"))
    }
}

impl IdpClient {
    async fn token_call(
        &self,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<TokenSet, IdpError> {
        let request = self.post(&self.discovery.token_endpoint, &mut form);
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|_| IdpError::Unavailable)?;
        let raw: RawTokens = read_json(response, MAX_IDP_BODY).await?;
        Ok(raw.into())
    }

    /// Exchange an authorization code (with its PKCE verifier).
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<TokenSet, IdpError> {
        self.token_call(vec![
            ("grant_type", "authorization_code".into()),
            ("code", code.into()),
            ("redirect_uri", redirect_uri.into()),
            ("code_verifier", code_verifier.into()),
        ])
        .await
    }

    /// Spend a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, IdpError> {
        self.token_call(vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", refresh_token.into()),
        ])
        .await
    }

    /// Poll a device authorization.
    pub async fn poll_device(&self, device_code: &str) -> Result<TokenSet, IdpError> {
        self.token_call(vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:device_code".into(),
            ),
            ("device_code", device_code.into()),
        ])
        .await
    }

    /// Start a device authorization.
    pub async fn device_authorization(
        &self,
        extra_scopes: &[&str],
    ) -> Result<DeviceStart, IdpError> {
        let endpoint =
            self.discovery
                .device_authorization_endpoint
                .clone()
                .ok_or(IdpError::Malformed(
                    "the IdP offers no device authorization",
                ))?;
        let mut form = vec![("scope", self.scope(extra_scopes))];
        let response = self
            .post(&endpoint, &mut form)
            .form(&form)
            .send()
            .await
            .map_err(|_| IdpError::Unavailable)?;
        read_json(response, MAX_IDP_BODY).await
    }

    /// Revoke a refresh token at the IdP (RFC 7009), if it offers that;
    /// `Ok(false)` when it does not.
    pub async fn revoke(&self, refresh_token: &str) -> Result<bool, IdpError> {
        let Some(endpoint) = self.discovery.revocation_endpoint.clone() else {
            return Ok(false);
        };
        let mut form = vec![
            ("token", refresh_token.to_owned()),
            ("token_type_hint", "refresh_token".into()),
        ];
        let response = self
            .post(&endpoint, &mut form)
            .form(&form)
            .send()
            .await
            .map_err(|_| IdpError::Unavailable)?;
        let status = response.status();
        let body = read_capped(response, MAX_IDP_BODY).await?;
        if status.is_success() {
            Ok(true)
        } else {
            Err(error_of(status, &body))
        }
    }

    /// Validate an ID token from this IdP (signature by a key of its JWKS,
    /// `iss`, `aud` ∋ our client id, expiry with `leeway`) and, when the
    /// access token is a JWT the IdP signed, take roles from it too.
    pub async fn validate(
        &self,
        tokens: &TokenSet,
        leeway: Duration,
        now: i64,
    ) -> Result<IdClaims, IdpError> {
        let id_token = tokens
            .id_token
            .as_ref()
            .ok_or(IdpError::Malformed("no ID token"))?;
        let mut claims = self
            .verify_jwt(
                id_token.expose_secret(),
                Some(&self.cfg.client_id),
                leeway,
                now,
            )
            .await?;
        if let Ok(access) = self
            .verify_jwt(tokens.access_token.expose_secret(), None, leeway, now)
            .await
            && access.sub == claims.sub
        {
            for role in access.roles {
                if !claims.roles.contains(&role) {
                    claims.roles.push(role);
                }
            }
        }
        Ok(claims)
    }

    /// Validate an IdP access token (a JWT the IdP signed: signature, `iss`,
    /// expiry) for token exchange.
    pub async fn validate_access_token(
        &self,
        token: &str,
        leeway: Duration,
        now: i64,
    ) -> Result<IdClaims, IdpError> {
        self.verify_jwt(token, None, leeway, now).await
    }

    async fn verify_jwt(
        &self,
        token: &str,
        audience: Option<&str>,
        leeway: Duration,
        now: i64,
    ) -> Result<IdClaims, IdpError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| IdpError::Malformed("a token that is not a JWT"))?;
        let kid = header
            .kid
            .ok_or(IdpError::Malformed("a token without a kid"))?;
        let (key, alg) = self.keys.key(self, &kid).await?;
        if alg != header.alg {
            return Err(IdpError::Malformed(
                "a token whose algorithm is not its key's",
            ));
        }
        // Times are checked below against the broker's clock.
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.set_issuer(&[&self.discovery.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        match audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|_| IdpError::Malformed("a token that does not verify"))?;
        let exp = data.claims.get("exp").and_then(serde_json::Value::as_i64);
        let leeway = i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX / 4);
        if exp.is_none_or(|exp| exp + leeway <= now) {
            return Err(IdpError::Malformed("an expired token"));
        }
        Ok(id_claims(&data.claims))
    }
}

/// The algorithm a JWK signs with: its `alg`, or what its key type implies
/// (IdP JWKS often leave `alg` out). `use: enc` keys sign nothing.
fn key_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, PublicKeyUse};
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return None;
    }
    if let Some(alg) = jwk.common.key_algorithm {
        return alg.to_string().parse().ok();
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// The claims the broker uses, roles flattened.
fn id_claims(c: &serde_json::Value) -> IdClaims {
    let s = |k: &str| c.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let mut roles: Vec<String> = Vec::new();
    let mut add = |v: Option<&serde_json::Value>| {
        for r in v.and_then(|v| v.as_array()).into_iter().flatten() {
            if let Some(r) = r.as_str()
                && !roles.iter().any(|x| x == r)
            {
                roles.push(r.to_owned());
            }
        }
    };
    add(c.pointer("/realm_access/roles"));
    add(c.get("groups"));
    add(c.get("roles"));
    if let Some(resources) = c.get("resource_access").and_then(|v| v.as_object()) {
        for client in resources.values() {
            add(client.get("roles"));
        }
    }
    IdClaims {
        sub: s("sub").unwrap_or_default(),
        preferred_username: s("preferred_username"),
        email: s("email"),
        given_name: s("given_name"),
        family_name: s("family_name"),
        roles,
        nonce: s("nonce"),
        auth_time: c.get("auth_time").and_then(|v| v.as_i64()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_flattened_as_py_oidc_auth_does() {
        let c = serde_json::json!({
            "sub": "u1",
            "realm_access": {"roles": ["admin", "user"]},
            "groups": ["hpc"],
            "roles": ["user", "extra"],
            "resource_access": {"app": {"roles": ["app-role"]}, "other": {"roles": ["admin"]}}
        });
        let claims = id_claims(&c);
        assert_eq!(claims.roles, ["admin", "user", "hpc", "extra", "app-role"]);
    }
}
