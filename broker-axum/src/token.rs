//! `POST /token` (RFC 6749 with py-oidc-auth's field names and
//! field-presence dispatch) and `POST /revoke` (RFC 7009).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use broker_service::{Broker, LogoutRequest, TokenRequest, Verification};
use secrecy::SecretString;

use crate::error::{ApiError, json_no_store, no_store};
use crate::form::{Fields, read_form};

/// `grant_type` of the code flow.
pub const AUTHORIZATION_CODE: &str = "authorization_code";
/// `grant_type` of a refresh.
pub const REFRESH_TOKEN: &str = "refresh_token";
/// `grant_type` of a device poll (RFC 8628).
pub const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// `grant_type` of token exchange (RFC 8693).
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The only `subject_token_type` accepted: an access token of the IdP.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Every field the token endpoint reads.
const TOKEN_FIELDS: &[&str] = &[
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "refresh-token",
    "device_code",
    "device-code",
    "subject_token",
    "subject_token_type",
    "requested_token_type",
];

/// What py-oidc-auth answers when nothing usable came.
const NOTHING: &str = "Missing (device) code or refresh_token";

fn secret(s: String) -> SecretString {
    SecretString::from(s)
}

/// Turn a parsed form into a [`TokenRequest`]. With `grant_type` it
/// decides; without it, py-oidc-auth's dispatch: a code or a device code
/// logs in, a refresh token alone refreshes.
pub(crate) fn token_request(mut f: Fields) -> Result<TokenRequest, ApiError> {
    let refresh = f.take_either("refresh_token", "refresh-token")?;
    let device = f.take_either("device_code", "device-code")?;
    let code = f.take("code");
    let code_request =
        |code: String, f: &mut Fields| match (f.take("redirect_uri"), f.take("code_verifier")) {
            (Some(redirect_uri), Some(verifier)) => Ok(TokenRequest::Code {
                code: secret(code),
                redirect_uri,
                code_verifier: secret(verifier),
            }),
            _ => Err(ApiError::invalid_request(
                "Missing redirect_uri or code_verifier",
            )),
        };
    match f.take("grant_type").as_deref() {
        Some(AUTHORIZATION_CODE) => match code {
            Some(code) => code_request(code, &mut f),
            None => Err(ApiError::invalid_request("Missing code")),
        },
        Some(REFRESH_TOKEN) => refresh
            .map(|t| TokenRequest::Refresh {
                refresh_token: secret(t),
            })
            .ok_or_else(|| ApiError::invalid_request("Missing refresh_token")),
        Some(DEVICE_CODE) => device
            .map(|d| TokenRequest::Device {
                device_code: secret(d),
            })
            .ok_or_else(|| ApiError::invalid_request("Missing device_code")),
        Some(TOKEN_EXCHANGE) => {
            let subject = f
                .take("subject_token")
                .ok_or_else(|| ApiError::invalid_request("Missing subject_token"))?;
            match f.get("subject_token_type") {
                None | Some(ACCESS_TOKEN_TYPE) => Ok(TokenRequest::Exchange {
                    subject_token: secret(subject),
                }),
                Some(_) => Err(ApiError::invalid_request(
                    "subject_token_type must be urn:ietf:params:oauth:token-type:access_token",
                )),
            }
        }
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unsupported grant type",
        )),
        None => match (code, device, refresh) {
            (Some(_), Some(_), _) => Err(ApiError::invalid_request(
                "both a code and a device code were given",
            )),
            (Some(code), None, _) => code_request(code, &mut f),
            (None, Some(d), _) => Ok(TokenRequest::Device {
                device_code: secret(d),
            }),
            (None, None, Some(t)) => Ok(TokenRequest::Refresh {
                refresh_token: secret(t),
            }),
            (None, None, None) => Err(ApiError::invalid_request(NOTHING)),
        },
    }
}

/// `POST /token`.
#[tracing::instrument(skip_all, name = "broker.token")]
pub(crate) async fn token(
    State(broker): State<Arc<Broker>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_form(&headers, body).await?;
    let request = token_request(Fields::parse(&body, TOKEN_FIELDS)?)?;
    drop(body);
    tracing::debug!(grant = ?request, "token request");
    let tokens = broker.grant(request).await?;
    Ok(json_no_store(StatusCode::OK, &tokens))
}

/// `POST /revoke` (RFC 7009): a refresh token ends its login; an access
/// token of this broker ends its login too (§2.1 allows it). Unknown,
/// expired and foreign tokens answer 200 as well.
#[tracing::instrument(skip_all, name = "broker.revoke")]
pub(crate) async fn revoke(
    State(broker): State<Arc<Broker>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_form(&headers, body).await?;
    let mut f = Fields::parse(&body, &["token", "token_type_hint"])?;
    drop(body);
    let token = secret(
        f.take("token")
            .ok_or_else(|| ApiError::invalid_request("Missing token"))?,
    );
    use secrecy::ExposeSecret as _;
    let presented = token.expose_secret();
    // An access JWT has three dot-separated parts, a refresh token two.
    if presented.bytes().filter(|&b| b == b'.').count() == 2 {
        if let Ok(verified) = broker.verify(presented, Verification::Stateless).await
            && let Some(sid) = verified.claims.sid
        {
            broker
                .logout(LogoutRequest {
                    sid: Some(sid),
                    ..LogoutRequest::default()
                })
                .await?;
        }
    } else {
        broker.revoke(presented).await?;
    }
    let mut response = StatusCode::OK.into_response();
    no_store(response.headers_mut());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<TokenRequest, ApiError> {
        token_request(Fields::parse(body.as_bytes(), TOKEN_FIELDS)?)
    }

    fn kind(body: &str) -> String {
        match parse(body) {
            Ok(r) => format!("{r:?}"),
            Err(e) => format!("{} {}", e.status().as_u16(), e.code()),
        }
    }

    #[test]
    fn grant_type_decides() {
        let v = "v".repeat(43);
        assert_eq!(
            kind(&format!(
                "grant_type=authorization_code&code=c&redirect_uri=r&code_verifier={v}"
            )),
            "TokenRequest::Code"
        );
        assert_eq!(
            kind("grant_type=authorization_code&code=c"),
            "400 invalid_request"
        );
        assert_eq!(
            kind("grant_type=refresh_token&refresh_token=t"),
            "TokenRequest::Refresh"
        );
        assert_eq!(
            kind("grant_type=refresh_token&refresh-token=t"),
            "TokenRequest::Refresh"
        );
        assert_eq!(
            kind("grant_type=refresh_token&code=c"),
            "400 invalid_request"
        );
        let device = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code";
        assert_eq!(
            kind(&format!("{device}&device_code=d")),
            "TokenRequest::Device"
        );
        assert_eq!(
            kind(&format!("{device}&device-code=d")),
            "TokenRequest::Device"
        );
        let exchange = "grant_type=urn:ietf:params:oauth:grant-type:token-exchange";
        assert_eq!(
            kind(&format!(
                "{exchange}&subject_token=s&subject_token_type=urn:ietf:params:oauth:token-type:access_token"
            )),
            "TokenRequest::Exchange"
        );
        assert_eq!(
            kind(&format!("{exchange}&subject_token=s")),
            "TokenRequest::Exchange"
        );
        assert_eq!(
            kind(&format!(
                "{exchange}&subject_token=s&subject_token_type=urn:x"
            )),
            "400 invalid_request"
        );
        assert_eq!(kind(exchange), "400 invalid_request");
        assert_eq!(
            kind("grant_type=password&refresh_token=t"),
            "400 unsupported_grant_type"
        );
    }

    #[test]
    fn without_grant_type_fields_decide_as_in_py_oidc_auth() {
        assert_eq!(kind("refresh-token=t"), "TokenRequest::Refresh");
        assert_eq!(kind("refresh_token=t"), "TokenRequest::Refresh");
        assert_eq!(kind("device-code=d"), "TokenRequest::Device");
        assert_eq!(
            kind("device_code=d&refresh-token=t"),
            "TokenRequest::Device"
        );
        assert_eq!(
            kind("code=c&redirect_uri=r&code_verifier=v&refresh-token=t"),
            "TokenRequest::Code"
        );
        assert_eq!(kind("code=c&device_code=d"), "400 invalid_request");
        let e = parse("").err().unwrap();
        assert_eq!((e.code(), e.description()), ("invalid_request", NOTHING));
        assert_eq!(kind("refresh_token=&device-code="), "400 invalid_request");
        assert_eq!(
            kind("refresh_token=a&refresh-token=b"),
            "400 invalid_request"
        );
        assert_eq!(
            kind("refresh_token=a&refresh_token=a"),
            "400 invalid_request"
        );
    }
}
