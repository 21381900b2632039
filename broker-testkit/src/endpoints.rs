//! Every endpoint but `/token`: discovery, JWKS, `/authorize`, device
//! authorization, `/userinfo`, `/end_session` and `/revoke` (RFC 7009).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use tracing::instrument;

use crate::config::Endpoint;
use crate::grants::DEVICE_CODE_GRANT;
use crate::keys::kid_of;
use crate::state::{CodeGrant, DeviceGrant, DeviceState, Shared, random_token, user_code};
use crate::tokens::{OAuthError, authenticate, no_store};

#[instrument(skip_all)]
pub(crate) async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    let url = |e| shared.endpoint_url(e);
    axum::Json(json!({
        "issuer": shared.issuer,
        "authorization_endpoint": url(Endpoint::Authorize),
        "token_endpoint": url(Endpoint::Token),
        "device_authorization_endpoint": url(Endpoint::DeviceAuthorization),
        "userinfo_endpoint": url(Endpoint::Userinfo),
        "end_session_endpoint": url(Endpoint::EndSession),
        "revocation_endpoint": url(Endpoint::Revoke),
        "jwks_uri": url(Endpoint::Jwks),
        "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_CODE_GRANT, "password"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid",
            "preferred_username", "email", "email_verified", "groups", "realm_access", "resource_access"],
    }))
    .into_response()
}

#[instrument(skip_all)]
pub(crate) async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    let keys: Vec<_> = shared
        .lock()
        .keys
        .iter()
        .map(|k| k.public.clone())
        .collect();
    axum::Json(json!({ "keys": keys })).into_response()
}

/// An error redirect to the client (RFC 6749 §4.1.2.1).
fn redirect_error(redirect_uri: &url::Url, error: &str, state: Option<&String>) -> Response {
    let mut target = redirect_uri.clone();
    {
        let mut q = target.query_pairs_mut();
        q.append_pair("error", error);
        if let Some(state) = state {
            q.append_pair("state", state);
        }
    }
    Redirect::to(target.as_str()).into_response()
}

/// `GET /authorize`: auto-approves `login_hint` (a username or `sub`) or
/// the first configured user; requires PKCE S256.
#[instrument(skip_all)]
pub(crate) async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = shared.now();
    let mut inner = shared.lock();
    let Some(client) = q.get("client_id").and_then(|id| inner.client(id)).cloned() else {
        return (StatusCode::BAD_REQUEST, "unknown or missing client_id").into_response();
    };
    let Some(redirect_uri) = q.get("redirect_uri") else {
        return (StatusCode::BAD_REQUEST, "missing redirect_uri").into_response();
    };
    let parsed = match url::Url::parse(redirect_uri) {
        Ok(u) if client.redirect_uris.is_empty() || client.redirect_uris.contains(redirect_uri) => {
            u
        }
        _ => return (StatusCode::BAD_REQUEST, "invalid redirect_uri").into_response(),
    };
    let state = q.get("state");
    if q.get("response_type").map(String::as_str) != Some("code") {
        return redirect_error(&parsed, "unsupported_response_type", state);
    }
    let challenge = match (q.get("code_challenge"), q.get("code_challenge_method")) {
        (Some(c), Some(m)) if m == "S256" && !c.is_empty() => c.clone(),
        _ => return redirect_error(&parsed, "invalid_request", state),
    };
    let user = match q.get("login_hint") {
        Some(hint) => inner.user_named(hint),
        None => inner.users.first(),
    };
    let Some(sub) = user.map(|u| u.sub.clone()) else {
        return redirect_error(&parsed, "login_required", state);
    };
    let code = random_token(32);
    inner.codes.insert(
        code.clone(),
        CodeGrant {
            client_id: client.client_id,
            redirect_uri: redirect_uri.clone(),
            challenge,
            nonce: q.get("nonce").cloned(),
            scope: q.get("scope").cloned().unwrap_or_else(|| "openid".into()),
            sub,
            expires_at: now + shared.code_ttl as i64,
        },
    );
    drop(inner);
    let mut target = parsed;
    {
        let mut pairs = target.query_pairs_mut();
        pairs.append_pair("code", &code);
        if let Some(state) = state {
            pairs.append_pair("state", state);
        }
        pairs.append_pair("iss", &shared.issuer);
    }
    Redirect::to(target.as_str()).into_response()
}

/// `POST /device_authorization` (RFC 8628 §3.1-3.2).
#[instrument(skip_all)]
pub(crate) async fn device_authorization(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let now = shared.now();
    let mut inner = shared.lock();
    let client_id = match authenticate(&inner, &headers, &form) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let device_code = random_token(32);
    let user_code = user_code();
    inner.devices.insert(
        device_code.clone(),
        DeviceGrant {
            client_id,
            user_code: user_code.clone(),
            scope: form
                .get("scope")
                .cloned()
                .unwrap_or_else(|| "openid".into()),
            expires_at: now + shared.device_code_ttl as i64,
            interval: shared.device_interval,
            last_poll: None,
            state: DeviceState::Pending,
        },
    );
    drop(inner);
    let verification_uri = format!("{}/device", shared.issuer);
    let body = json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
        "expires_in": shared.device_code_ttl,
        "interval": shared.device_interval,
    });
    (no_store(), axum::Json(body)).into_response()
}

/// `GET /device`: where a user would approve; here the test API does.
pub(crate) async fn device_page() -> Html<&'static str> {
    Html("<p>Test IdP: approve with TestIdp::approve(user_code).</p>")
}

#[derive(Deserialize)]
struct AccessClaims {
    jti: String,
    sub: String,
    exp: i64,
    typ: String,
    sid: String,
}

/// `GET|POST /userinfo` with `Authorization: Bearer`: the token must be
/// signed by a published key, unexpired by the IdP's clock, not revoked,
/// and its login (`sid`) alive.
#[instrument(skip_all)]
pub(crate) async fn userinfo(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let invalid = |d| OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_token", d).into_response();
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return invalid("missing bearer token");
    };
    let now = shared.now();
    let inner = shared.lock();
    let Some(claims) = kid_of(token)
        .and_then(|kid| inner.key(&kid))
        .and_then(|key| key.verify::<AccessClaims>(token))
        .filter(|c| c.typ == "Bearer")
    else {
        return invalid("token not issued here");
    };
    if now >= claims.exp {
        return invalid("token expired");
    }
    if inner.revoked_access.contains(&claims.jti) || !inner.family_active(&claims.sid) {
        return invalid("token revoked");
    }
    let Some(user) = inner.user_by_sub(&claims.sub) else {
        return invalid("user no longer exists");
    };
    axum::Json(json!({
        "sub": user.sub, "email_verified": true, "preferred_username": user.username,
        "email": user.email, "groups": user.groups,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct HintClaims {
    sid: String,
}

/// `GET|POST /end_session`: ends the login named by `id_token_hint` (its
/// `sid`), then redirects to `post_logout_redirect_uri` (with `state`) or
/// answers a page.
#[instrument(skip_all)]
pub(crate) async fn end_session(
    State(shared): State<Arc<Shared>>,
    // axum's `Form` reads the query string of a GET and the body of a POST.
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    if let Some(hint) = params.get("id_token_hint") {
        let mut inner = shared.lock();
        match kid_of(hint)
            .and_then(|kid| inner.key(&kid))
            .and_then(|key| key.verify::<HintClaims>(hint))
        {
            Some(claims) => inner.revoke_family(&claims.sid),
            None => return (StatusCode::BAD_REQUEST, "invalid id_token_hint").into_response(),
        }
    }
    match params
        .get("post_logout_redirect_uri")
        .and_then(|u| url::Url::parse(u).ok())
    {
        Some(mut target) => {
            if let Some(state) = params.get("state") {
                target.query_pairs_mut().append_pair("state", state);
            }
            Redirect::to(target.as_str()).into_response()
        }
        None => Html("<p>You are logged out.</p>").into_response(),
    }
}

#[derive(Deserialize)]
struct AnyClaims {
    jti: String,
    typ: String,
    azp: String,
    sid: String,
}

/// `POST /revoke` (RFC 7009): a refresh token ends its login, an access
/// token is refused by `/userinfo` from then on; an unknown token is a
/// 200 too (§2.2).
#[instrument(skip_all)]
pub(crate) async fn revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut inner = shared.lock();
    let client_id = match authenticate(&inner, &headers, &form) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let Some(token) = form.get("token") else {
        return OAuthError::bad("invalid_request", "missing token").into_response();
    };
    let claims = kid_of(token)
        .and_then(|kid| inner.key(&kid))
        .and_then(|key| key.verify::<AnyClaims>(token));
    if let Some(claims) = claims {
        if claims.azp != client_id {
            return OAuthError::bad("unauthorized_client", "token issued to another client")
                .into_response();
        }
        match claims.typ.as_str() {
            "Refresh" => inner.revoke_family(&claims.sid),
            _ => {
                inner.revoked_access.insert(claims.jti);
            }
        }
    }
    (no_store(), StatusCode::OK).into_response()
}
