//! [`ApiError`]: every error answer of these routes, as one JSON shape
//! `{"error", "error_description", "detail"}` (RFC 6749 §5.2 codes, plus
//! py-oidc-auth's `detail` with the same text), with `Cache-Control:
//! no-store` and `Pragma: no-cache`.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use broker_service::GrantError;
use serde::Serialize;

/// Longest `error_description` sent (characters); longer texts are cut.
pub const MAX_DESCRIPTION: usize = 256;

/// An error answer: a status, an RFC 6749 / 6750 / 8628 error code and a
/// description safe to show (no token, code, verifier, secret or identity
/// provider text is ever put in one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    description: Cow<'static, str>,
    www_authenticate: Option<HeaderValue>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
    detail: &'a str,
}

impl ApiError {
    /// An error with `status`, `code` and `description`.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        let mut description = description.into();
        if description.chars().count() > MAX_DESCRIPTION {
            description = Cow::Owned(description.chars().take(MAX_DESCRIPTION).collect());
        }
        Self {
            status,
            code,
            description,
            www_authenticate: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 413 `invalid_request`: the body is larger than allowed.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// The same error with a `WWW-Authenticate` header.
    pub fn with_www_authenticate(mut self, value: HeaderValue) -> Self {
        self.www_authenticate = Some(value);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code (`invalid_request`, `invalid_grant`, ...).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The description.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl From<GrantError> for ApiError {
    fn from(e: GrantError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            // The store's or issuer's own message stays in the log; the
            // client gets the generic description.
            tracing::warn!(error = %e, code = e.code(), "broker request failed");
        } else {
            tracing::debug!(code = e.code(), "broker request refused");
        }
        Self::new(status, e.code(), e.description())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            error: self.code,
            error_description: &self.description,
            detail: &self.description,
        })
        .unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        no_store(headers);
        if let Some(value) = self.www_authenticate {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub(crate) fn no_store(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A JSON answer with `status`, `no-store` headers: for bodies that carry
/// tokens or personal data.
pub(crate) fn json_no_store<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            no_store(headers);
            response
        }
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the answer could not be encoded",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_descriptions_are_cut_and_grant_errors_keep_their_status() {
        let e = ApiError::invalid_request("x".repeat(10_000));
        assert_eq!(e.description().len(), MAX_DESCRIPTION);
        let e = ApiError::from(GrantError::AuthorizationPending);
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::BAD_REQUEST, "authorization_pending")
        );
        let e = ApiError::from(GrantError::IdpUnavailable);
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), "temporarily_unavailable");
    }
}
