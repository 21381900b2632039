//! `POST /token`: authorization code (PKCE S256), refresh token (rotation,
//! reuse detection), device code (RFC 8628 §3.4-3.5) and password.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::instrument;

use crate::keys::kid_of;
use crate::pkce_challenge;
use crate::state::{DeviceState, Shared};
use crate::tokens::{Login, OAuthError, authenticate, issue, new_login};

/// The device-code grant type (RFC 8628).
pub(crate) const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[instrument(skip_all)]
pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
    let result = match grant_type {
        "authorization_code" => code_grant(&shared, &headers, &form),
        "refresh_token" => refresh_grant(&shared, &headers, &form),
        DEVICE_CODE_GRANT => device_grant(&shared, &headers, &form),
        "password" => password_grant(&shared, &headers, &form),
        "" => Err(OAuthError::bad("invalid_request", "missing grant_type")),
        _ => Err(OAuthError::bad(
            "unsupported_grant_type",
            "unsupported grant_type",
        )),
    };
    tracing::debug!(grant_type, ok = result.is_ok(), "token request");
    result.unwrap_or_else(IntoResponse::into_response)
}

fn param<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OAuthError> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::bad("invalid_request", &format!("missing {name}")))
}

fn code_grant(
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let now = shared.now();
    let login = {
        let mut inner = shared.lock();
        let client_id = authenticate(&inner, headers, form)?;
        let code = param(form, "code")?;
        // One use only, whatever the outcome.
        let grant = inner
            .codes
            .remove(code)
            .ok_or_else(|| OAuthError::grant("Code not valid"))?;
        if now >= grant.expires_at {
            return Err(OAuthError::grant("Code is expired"));
        }
        if grant.client_id != client_id {
            return Err(OAuthError::grant("Code was issued to another client"));
        }
        if form.get("redirect_uri") != Some(&grant.redirect_uri) {
            return Err(OAuthError::grant("Incorrect redirect_uri"));
        }
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| OAuthError::grant("PKCE code verifier not specified"))?;
        if pkce_challenge(verifier) != grant.challenge {
            return Err(OAuthError::grant("PKCE verification failed"));
        }
        new_login(
            &mut inner,
            now,
            &grant.sub,
            &client_id,
            &grant.scope,
            grant.nonce,
        )
    };
    issue(shared, &login, true)
}

/// The claims of a refresh token the IdP needs.
#[derive(Deserialize)]
struct RefreshClaims {
    jti: String,
    typ: String,
    azp: String,
}

fn refresh_grant(
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let now = shared.now();
    let (login, rotate) = {
        let mut inner = shared.lock();
        let client_id = authenticate(&inner, headers, form)?;
        let token = param(form, "refresh_token")?;
        let claims: RefreshClaims = kid_of(token)
            .and_then(|kid| inner.key(&kid))
            .and_then(|key| key.verify(token))
            .filter(|c: &RefreshClaims| c.typ == "Refresh")
            .ok_or_else(|| OAuthError::grant("Invalid refresh token"))?;
        if claims.azp != client_id {
            return Err(OAuthError::grant(
                "Token client and authorized client don't match",
            ));
        }
        let rotate = inner.knobs.rotate_refresh_tokens;
        let reuse_detection = inner.knobs.reuse_detection;
        let (sid, used, expires_at) = inner
            .refresh
            .get(&claims.jti)
            .map(|r| (r.sid.clone(), r.used, r.expires_at))
            .ok_or_else(|| OAuthError::grant("Invalid refresh token"))?;
        if used {
            if reuse_detection {
                inner.revoke_family(&sid);
                return Err(OAuthError::grant(
                    "Refresh token reused: the session is revoked",
                ));
            }
            return Err(OAuthError::grant("Refresh token already used"));
        }
        if expires_at.is_some_and(|exp| now >= exp) {
            return Err(OAuthError::grant("Token is not active"));
        }
        let family = inner
            .families
            .get(&sid)
            .filter(|f| !f.revoked)
            .ok_or_else(|| OAuthError::grant("Session not active"))?;
        let login = Login {
            sub: family.sub.clone(),
            client_id: family.client_id.clone(),
            scope: family.scope.clone(),
            sid,
            auth_time: family.auth_time,
            nonce: None,
        };
        if rotate && let Some(record) = inner.refresh.get_mut(&claims.jti) {
            record.used = true;
        }
        (login, rotate)
    };
    issue(shared, &login, rotate)
}

fn device_grant(
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let now = shared.now();
    let login = {
        let mut inner = shared.lock();
        let client_id = authenticate(&inner, headers, form)?;
        let device_code = param(form, "device_code")?;
        let grant = inner
            .devices
            .get_mut(device_code)
            .ok_or_else(|| OAuthError::grant("Invalid device code"))?;
        if grant.client_id != client_id {
            return Err(OAuthError::grant(
                "Device code was issued to another client",
            ));
        }
        if grant.state == DeviceState::Redeemed {
            return Err(OAuthError::grant("Device code already used"));
        }
        if now >= grant.expires_at {
            return Err(OAuthError::bad("expired_token", "Device code has expired"));
        }
        let too_fast = grant.interval > 0
            && grant
                .last_poll
                .is_some_and(|last| now - last < grant.interval as i64);
        grant.last_poll = Some(now);
        if too_fast {
            // RFC 8628 §3.5: the interval grows by 5 s for this and every
            // later request.
            grant.interval += 5;
            return Err(OAuthError::bad("slow_down", "Polling too fast"));
        }
        let sub = match &grant.state {
            DeviceState::Pending => {
                return Err(OAuthError::bad(
                    "authorization_pending",
                    "The user has not yet approved the request",
                ));
            }
            DeviceState::Denied => {
                return Err(OAuthError::bad(
                    "access_denied",
                    "The user denied the request",
                ));
            }
            DeviceState::Approved(sub) => sub.clone(),
            DeviceState::Redeemed => {
                return Err(OAuthError::grant("Device code already used"));
            }
        };
        grant.state = DeviceState::Redeemed;
        let scope = grant.scope.clone();
        new_login(&mut inner, now, &sub, &client_id, &scope, None)
    };
    issue(shared, &login, true)
}

fn password_grant(
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let now = shared.now();
    let login = {
        let mut inner = shared.lock();
        let client_id = authenticate(&inner, headers, form)?;
        let username = param(form, "username")?;
        let password = param(form, "password")?;
        let sub = inner
            .user_named(username)
            .filter(|u| u.password == password)
            .map(|u| u.sub.clone())
            .ok_or_else(|| OAuthError::grant("Invalid user credentials"))?;
        let scope = form
            .get("scope")
            .cloned()
            .unwrap_or_else(|| "openid".into());
        new_login(&mut inner, now, &sub, &client_id, &scope, None)
    };
    issue(shared, &login, true)
}
