//! The browser and resource routes: login, callback, device, logout,
//! userinfo, JWKS.

use std::sync::Arc;

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use broker_service::{Broker, LoginRequest, LogoutRequest, Verification};
use serde::Serialize;

use crate::auth::{Auth, Bearer, authenticate, bearer};
use crate::error::{ApiError, json_no_store, no_store};
use crate::form::Fields;

/// The known fields of `parts`' query string.
fn query(parts: &Parts, known: &[&'static str]) -> Result<Fields, ApiError> {
    Fields::parse(parts.uri.query().unwrap_or("").as_bytes(), known)
}

/// A `307 Temporary Redirect` (what py-oidc-auth's FastAPI router answers)
/// to `location`, not cached. The location is marked sensitive: it can
/// hold a login `state` with a PKCE verifier, or an `id_token_hint`.
fn redirect(location: &str) -> Result<Response, ApiError> {
    let mut value = HeaderValue::from_str(location)
        .map_err(|_| ApiError::invalid_request("the redirect target is not a valid URL"))?;
    value.set_sensitive(true);
    let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
    response.headers_mut().insert(header::LOCATION, value);
    no_store(response.headers_mut());
    Ok(response)
}

/// A boolean as FastAPI parses one.
fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// RFC 6749 §3.3 scope tokens, space-separated.
fn is_scope(s: &str) -> bool {
    s.len() <= 1024
        && s.bytes()
            .all(|b| b == b' ' || (b'!'..=b'~').contains(&b) && b != b'"' && b != b'\\')
}

/// `GET /login?redirect_uri=…[&prompt][&offline_access][&scope][&code_challenge&code_challenge_method=S256]`.
#[tracing::instrument(skip_all, name = "broker.login")]
pub(crate) async fn login(
    State(broker): State<Arc<Broker>>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let mut q = query(
        &parts,
        &[
            "redirect_uri",
            "prompt",
            "offline_access",
            "scope",
            "code_challenge",
            "code_challenge_method",
        ],
    )?;
    let redirect_uri = q
        .take("redirect_uri")
        .ok_or_else(|| ApiError::invalid_request("Missing redirect_uri"))?;
    let prompt = q.take("prompt");
    if let Some(p) = &prompt
        && !["none", "login", "consent", "select_account"].contains(&p.as_str())
    {
        return Err(ApiError::invalid_request(
            "prompt must be none, login, consent or select_account",
        ));
    }
    let offline_access = match q.get("offline_access") {
        None => false,
        Some(v) => boolean(v)
            .ok_or_else(|| ApiError::invalid_request("offline_access must be true or false"))?,
    };
    let scope = q.take("scope");
    if scope.as_deref().is_some_and(|s| !is_scope(s)) {
        return Err(ApiError::invalid_request(
            "scope is not a list of scope tokens",
        ));
    }
    let code_challenge = match (q.take("code_challenge"), q.get("code_challenge_method")) {
        (None, None) => None,
        (Some(c), Some("S256")) => Some(c),
        (Some(_), _) => {
            return Err(ApiError::invalid_request(
                "code_challenge_method must be S256",
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid_request(
                "code_challenge_method without code_challenge",
            ));
        }
    };
    let url = broker.login_url(&LoginRequest {
        redirect_uri,
        prompt,
        offline_access,
        scope,
        code_challenge,
    })?;
    redirect(url.as_str())
}

/// `GET /callback?code=…&state=…`: the IdP sends the browser here; the
/// broker's own `state` carries what the exchange needs.
#[tracing::instrument(skip_all, name = "broker.callback")]
pub(crate) async fn callback(
    State(broker): State<Arc<Broker>>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let mut q = query(&parts, &["code", "state", "error"])?;
    if let Some(error) = q.take("error") {
        // The IdP's own description is not passed on.
        return Err(if error == "access_denied" {
            ApiError::new(StatusCode::BAD_REQUEST, "access_denied", "access denied")
        } else {
            ApiError::invalid_request("the identity provider refused the login")
        });
    }
    let (Some(code), Some(state)) = (q.take("code"), q.take("state")) else {
        return Err(ApiError::invalid_request("Missing code or state"));
    };
    let tokens = broker.callback(&code, &state).await?;
    Ok(json_no_store(StatusCode::OK, &tokens))
}

/// The device authorization as sent (RFC 8628 §3.2).
#[derive(Serialize)]
struct DeviceAnswer<'a> {
    device_code: &'a str,
    user_code: &'a str,
    verification_uri: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification_uri_complete: Option<&'a str>,
    expires_in: u64,
    interval: u64,
}

/// `POST /device`: start a device authorization at the IdP.
#[tracing::instrument(skip_all, name = "broker.device")]
pub(crate) async fn device(State(broker): State<Arc<Broker>>) -> Result<Response, ApiError> {
    let started = broker.start_device().await?;
    Ok(json_no_store(
        StatusCode::OK,
        &DeviceAnswer {
            device_code: &started.device_code,
            user_code: &started.user_code,
            verification_uri: &started.verification_uri,
            verification_uri_complete: started.verification_uri_complete.as_deref(),
            expires_in: started.expires_in,
            interval: started.interval,
        },
    ))
}

/// `GET /logout[?post_logout_redirect_uri=…]`: with a bearer token, end
/// its login (`sid`); redirect to the IdP's end-session URL, else to the
/// allow-listed URI, else to `/`. A bearer token that does not verify
/// (expired included) is refused with 401: use `/revoke` with the refresh
/// token to end such a login.
#[tracing::instrument(skip_all, name = "broker.logout")]
pub(crate) async fn logout(
    State(broker): State<Arc<Broker>>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let mut q = query(&parts, &["post_logout_redirect_uri"])?;
    let sid = match bearer(&parts.headers) {
        Bearer::Absent => None,
        _ => authenticate(&parts, &broker, Verification::Stateless)
            .await
            .map_err(|r| r.to_api_error())?
            .claims
            .sid
            .clone(),
    };
    let target = broker
        .logout(LogoutRequest {
            sid,
            refresh_token: None,
            post_logout_redirect_uri: q.take("post_logout_redirect_uri"),
        })
        .await?;
    redirect(target.as_ref().map_or("/", |u| u.as_str()))
}

/// `GET /userinfo`: py-oidc-auth's `{username, first_name, last_name,
/// pw_name, email}` from the login's sealed claims, no IdP call.
#[tracing::instrument(skip_all, name = "broker.userinfo")]
pub(crate) async fn userinfo(
    State(broker): State<Arc<Broker>>,
    Auth(verified): Auth,
) -> Result<Response, ApiError> {
    let user = broker.userinfo(&verified).await?;
    Ok(json_no_store(StatusCode::OK, &user))
}

/// True if `If-None-Match` names `etag` (weak comparison, RFC 9110 §13.1.2).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = bare(etag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || bare(t) == ours)
}

/// `GET /.well-known/jwks.json`: the pre-rendered bytes, cacheable for
/// 5 minutes, `304` on a matching `If-None-Match`.
pub(crate) async fn jwks(State(broker): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    let jwks = broker.issuer().jwks();
    let etag = HeaderValue::from_str(&jwks.etag).ok();
    let mut response = if none_match(&headers, &jwks.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = axum::body::Bytes::from_owner(jwks.body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    if let Some(etag) = etag {
        h.insert(header::ETAG, etag);
    }
    response
}

/// 405 on a known path, as a JSON error (axum adds `Allow`).
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "method not allowed",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_lists() {
        let mut h = HeaderMap::new();
        assert!(!none_match(&h, "\"abc\""));
        h.insert(header::IF_NONE_MATCH, "\"x\", W/\"abc\"".parse().unwrap());
        assert!(none_match(&h, "\"abc\""));
        h.insert(header::IF_NONE_MATCH, "\"abcd\"".parse().unwrap());
        assert!(!none_match(&h, "\"abc\""));
        h.insert(header::IF_NONE_MATCH, "*".parse().unwrap());
        assert!(none_match(&h, "\"abc\""));
    }

    #[test]
    fn booleans_and_scopes() {
        assert_eq!(boolean("True"), Some(true));
        assert_eq!(boolean("0"), Some(false));
        assert_eq!(boolean("maybe"), None);
        assert!(is_scope("openid profile offline_access"));
        assert!(!is_scope("a\"b"));
        assert!(!is_scope("a\nb"));
    }
}
