//! Keycloak-shaped tokens, OAuth error answers and client authentication.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::state::{Family, Inner, RefreshRecord, Shared, random_token};

/// An OAuth error answer (RFC 6749 §5.2): `{error, error_description}`.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) error: String,
    pub(crate) description: String,
}

impl OAuthError {
    pub(crate) fn new(status: StatusCode, error: &str, description: &str) -> Self {
        Self {
            status,
            error: error.to_owned(),
            description: description.to_owned(),
        }
    }

    /// 400 with `error`.
    pub(crate) fn bad(error: &str, description: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, description)
    }

    /// 400 `invalid_grant`.
    pub(crate) fn grant(description: &str) -> Self {
        Self::bad("invalid_grant", description)
    }

    /// 401 `invalid_client`.
    pub(crate) fn client(description: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut response = (self.status, no_store(), axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = if self.error == "invalid_token" {
                HeaderValue::from_static("Bearer error=\"invalid_token\"")
            } else {
                HeaderValue::from_static("Basic realm=\"test-idp\"")
            };
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache`, as token answers carry.
pub(crate) fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// The client a request authenticates as: HTTP Basic for a confidential
/// client (`client_secret_basic`, RFC 6749 §2.3.1: id and secret
/// form-urlencoded), or `client_id` in the body for a public client. A
/// `client_secret` in the body is refused, as nanoidp does.
pub(crate) fn authenticate(
    inner: &Inner,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<String, OAuthError> {
    if form.contains_key("client_secret") {
        return Err(OAuthError::client(
            "this IdP accepts client_secret_basic only: send the secret with HTTP Basic",
        ));
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let (id, secret) = basic_credentials(value)
            .ok_or_else(|| OAuthError::client("malformed Basic credentials"))?;
        if form.get("client_id").is_some_and(|body_id| *body_id != id) {
            return Err(OAuthError::client(
                "client_id differs from the Basic credentials",
            ));
        }
        return match inner.client(&id) {
            Some(c) if c.client_secret.as_deref() == Some(secret.as_str()) => Ok(id),
            _ => Err(OAuthError::client("invalid client credentials")),
        };
    }
    let id = form
        .get("client_id")
        .ok_or_else(|| OAuthError::client("client authentication required"))?;
    match inner.client(id) {
        Some(c) if c.client_secret.is_none() => Ok(id.clone()),
        Some(_) => Err(OAuthError::client("confidential client: use HTTP Basic")),
        None => Err(OAuthError::client("unknown client")),
    }
}

fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let encoded = value.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// One login a token answer is issued for.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub(crate) sub: String,
    pub(crate) client_id: String,
    pub(crate) scope: String,
    pub(crate) sid: String,
    pub(crate) auth_time: i64,
    pub(crate) nonce: Option<String>,
}

/// Start a new login (refresh-token family) and return it.
pub(crate) fn new_login(
    inner: &mut Inner,
    now: i64,
    sub: &str,
    client_id: &str,
    scope: &str,
    nonce: Option<String>,
) -> Login {
    let sid = random_token(16);
    inner.families.insert(
        sid.clone(),
        Family {
            sub: sub.to_owned(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            auth_time: now,
            revoked: false,
        },
    );
    Login {
        sub: sub.to_owned(),
        client_id: client_id.to_owned(),
        scope: scope.to_owned(),
        sid,
        auth_time: now,
        nonce,
    }
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_ascii_whitespace().any(|s| s == wanted)
}

fn one_or_many(values: &[String]) -> Value {
    match values {
        [one] => json!(one),
        many => json!(many),
    }
}

/// The token answer for `login`: a Keycloak-shaped access token, an ID
/// token when `openid` was asked for, and a refresh token unless
/// `with_refresh` is false or the IdP is told to omit it.
pub(crate) fn issue(
    shared: &Shared,
    login: &Login,
    with_refresh: bool,
) -> Result<Response, OAuthError> {
    let now = shared.now();
    let (knobs, key, user, refresh_jti) = {
        let mut inner = shared.lock();
        let user = inner
            .user_by_sub(&login.sub)
            .cloned()
            .ok_or_else(|| OAuthError::grant("user no longer exists"))?;
        let knobs = inner.knobs.clone();
        let refresh_jti = (with_refresh && !knobs.omit_refresh_token).then(|| {
            let jti = random_token(16);
            inner.refresh.insert(
                jti.clone(),
                RefreshRecord {
                    sid: login.sid.clone(),
                    expires_at: knobs.refresh_expires_in.map(|s| now + s as i64),
                    used: false,
                },
            );
            jti
        });
        (knobs, inner.signing_key(), user, refresh_jti)
    };
    let exp = now + knobs.access_token_ttl as i64;
    let resource_access: Map<String, Value> = user
        .client_roles
        .iter()
        .map(|(client, roles)| (client.clone(), json!({ "roles": roles })))
        .collect();
    let access = json!({
        "exp": exp, "iat": now, "auth_time": login.auth_time, "jti": random_token(16),
        "iss": shared.issuer, "aud": one_or_many(&shared.access_token_audience),
        "sub": user.sub, "typ": "Bearer", "azp": login.client_id,
        "sid": login.sid, "session_state": login.sid, "acr": "1",
        "realm_access": { "roles": user.roles }, "resource_access": resource_access,
        "scope": login.scope, "email_verified": true,
        "preferred_username": user.username, "email": user.email, "groups": user.groups,
    });
    let access_token = key.sign("JWT", &access);
    let mut body = Map::new();
    body.insert("access_token".into(), json!(access_token));
    body.insert("expires_in".into(), json!(knobs.access_token_ttl));
    if let Some(jti) = refresh_jti {
        let mut refresh = json!({
            "iat": now, "jti": jti, "iss": shared.issuer, "aud": shared.issuer,
            "sub": user.sub, "typ": "Refresh", "azp": login.client_id,
            "sid": login.sid, "session_state": login.sid, "scope": login.scope,
        });
        if let Some(ttl) = knobs.refresh_expires_in {
            refresh["exp"] = json!(now + ttl as i64);
            body.insert("refresh_expires_in".into(), json!(ttl));
        }
        body.insert("refresh_token".into(), json!(key.sign("JWT", &refresh)));
    }
    body.insert("token_type".into(), json!("Bearer"));
    if has_scope(&login.scope, "openid") {
        let digest = Sha256::digest(access_token.as_bytes());
        let mut id = json!({
            "exp": exp, "iat": now, "auth_time": login.auth_time, "jti": random_token(16),
            "iss": shared.issuer, "aud": login.client_id, "sub": user.sub, "typ": "ID",
            "azp": login.client_id, "sid": login.sid, "session_state": login.sid,
            "at_hash": URL_SAFE_NO_PAD.encode(&digest[..16]), "acr": "1",
            "email_verified": true, "preferred_username": user.username, "email": user.email,
        });
        if let Some(nonce) = &login.nonce {
            id["nonce"] = json!(nonce);
        }
        body.insert("id_token".into(), json!(key.sign("JWT", &id)));
    }
    body.insert("not-before-policy".into(), json!(0));
    body.insert("session_state".into(), json!(login.sid));
    body.insert("scope".into(), json!(login.scope));
    Ok((no_store(), axum::Json(Value::Object(body))).into_response())
}
