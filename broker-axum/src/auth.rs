//! Bearer tokens on protected routes (RFC 6750): the [`Auth`] and
//! [`AuthStateful`] extractors, their `Option<_>` forms, and the 401 they
//! answer with.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use broker_issuer::{Verified, VerifyError};
use broker_service::{Broker, Verification};

use crate::error::ApiError;

/// Longest bearer token looked at (bytes); longer ones are invalid.
const MAX_BEARER: usize = 16 * 1024;

/// A token verified by an outer [`RequireLayer`](crate::RequireLayer),
/// kept in the request's extensions so the handler's extractor does not
/// verify again. Private: nothing else can put one there.
#[derive(Clone)]
pub(crate) struct Authenticated {
    pub(crate) verified: Arc<Verified>,
    pub(crate) mode: Verification,
}

/// What the `Authorization` header holds.
pub(crate) enum Bearer<'a> {
    /// No header, or another scheme (RFC 6750 §3.1: answer without an
    /// error code).
    Absent,
    /// A bearer token.
    Token(&'a str),
    /// Several `Authorization` headers.
    Ambiguous,
}

/// The bearer token of `headers`, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Bearer::Absent;
    };
    if values.next().is_some() {
        return Bearer::Ambiguous;
    }
    let bytes = value.as_bytes();
    match bytes.iter().position(|&b| b == b' ') {
        Some(i) if bytes[..i].eq_ignore_ascii_case(b"bearer") => {
            // Header values are visible ASCII here or fail to_str.
            let token = value.to_str().map(|v| v[i..].trim()).unwrap_or("");
            Bearer::Token(token)
        }
        _ if bytes.eq_ignore_ascii_case(b"bearer") => Bearer::Token(""),
        _ => Bearer::Absent,
    }
}

/// RFC 6750 §2.1 `b64token`.
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && t.len() <= MAX_BEARER
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Why a request was not authenticated: the 401 (or 400) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRejection {
    kind: RejectionKind,
    realm: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RejectionKind {
    Missing,
    Ambiguous,
    Invalid(Option<VerifyError>),
}

impl AuthRejection {
    /// True if the request carried no bearer token at all.
    pub fn is_missing(&self) -> bool {
        self.kind == RejectionKind::Missing
    }

    /// The verification failure, if a token was there and did not verify.
    pub fn verify_error(&self) -> Option<&VerifyError> {
        match &self.kind {
            RejectionKind::Invalid(e) => e.as_ref(),
            _ => None,
        }
    }

    /// The error answer.
    pub fn to_api_error(&self) -> ApiError {
        let realm = quote(&self.realm);
        match &self.kind {
            RejectionKind::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "Missing Bearer token.",
            )
            .with_www_authenticate(header_value(&format!("Bearer realm={realm}"))),
            RejectionKind::Ambiguous => {
                ApiError::invalid_request("more than one Authorization header")
                    .with_www_authenticate(HeaderValue::from_static(
                        "Bearer error=\"invalid_request\"",
                    ))
            }
            RejectionKind::Invalid(e) => {
                let description = match e {
                    Some(VerifyError::Expired) => "Token has expired.",
                    Some(VerifyError::Unavailable) => "the token's issuer keys are unavailable",
                    _ => "Invalid token.",
                };
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
                    .with_www_authenticate(HeaderValue::from_static(
                        "Bearer error=\"invalid_token\"",
                    ))
            }
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        self.to_api_error().into_response()
    }
}

/// `s` as an RFC 9110 quoted-string.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A header value from text made here (quoted, printable); falls back to
/// a bare `Bearer` if something unprintable slipped in.
pub(crate) fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// The realm of `WWW-Authenticate`: the broker's issuer.
pub(crate) fn realm(broker: &Broker) -> Arc<str> {
    Arc::from(broker.config().issuer.issuer.as_str())
}

/// Verify the request's bearer token with `broker`, or reuse what an outer
/// [`RequireLayer`](crate::RequireLayer) verified in at least `mode`.
pub(crate) async fn authenticate(
    parts: &Parts,
    broker: &Broker,
    mode: Verification,
) -> Result<Arc<Verified>, AuthRejection> {
    if let Some(done) = parts.extensions.get::<Authenticated>()
        && (done.mode == mode || done.mode == Verification::Stateful)
    {
        return Ok(Arc::clone(&done.verified));
    }
    let reject = |kind| AuthRejection {
        kind,
        realm: realm(broker),
    };
    match bearer(&parts.headers) {
        Bearer::Absent => Err(reject(RejectionKind::Missing)),
        Bearer::Ambiguous => Err(reject(RejectionKind::Ambiguous)),
        Bearer::Token(t) if !is_b64token(t) => Err(reject(RejectionKind::Invalid(None))),
        Bearer::Token(t) => match broker.verify(t, mode).await {
            Ok(v) => Ok(Arc::new(v)),
            Err(e) => {
                tracing::debug!(reason = %e, "bearer token refused");
                Err(reject(RejectionKind::Invalid(Some(e))))
            }
        },
    }
}

/// A request authenticated by a valid access token of this broker,
/// verified with no I/O ([`Verification::Stateless`]): a token of a login
/// that ended stays valid until it expires. Missing, invalid or expired →
/// 401 with `WWW-Authenticate` (RFC 6750 §3); `Option<Auth>` is `None`
/// then instead, as py-oidc-auth's `optional()`.
///
/// The state must give an `Arc<Broker>` ([`FromRef`]).
///
/// ```
/// use broker_axum::Auth;
///
/// async fn whoami(Auth(user): Auth) -> String {
///     user.claims.sub
/// }
/// async fn greet(user: Option<Auth>) -> String {
///     match user {
///         Some(Auth(u)) => format!("hello {}", u.claims.preferred_username.unwrap_or_default()),
///         None => "hello stranger".into(),
///     }
/// }
/// # let _ = (whoami, greet);
/// ```
#[derive(Debug, Clone)]
pub struct Auth(pub Verified);

/// As [`Auth`], but also checks that the token's login is still active
/// ([`Verification::Stateful`]: one store read per request), so tokens of
/// a login that was logged out, revoked or caught replaying are refused at
/// once.
#[derive(Debug, Clone)]
pub struct AuthStateful(pub Verified);

macro_rules! extractor {
    ($ty:ident, $mode:expr) => {
        impl Deref for $ty {
            type Target = Verified;
            fn deref(&self) -> &Verified {
                &self.0
            }
        }

        impl<S> FromRequestParts<S> for $ty
        where
            Arc<Broker>: FromRef<S>,
            S: Send + Sync,
        {
            type Rejection = AuthRejection;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                let broker = Arc::<Broker>::from_ref(state);
                let verified = authenticate(parts, &broker, $mode).await?;
                Ok(Self(Arc::unwrap_or_clone(verified)))
            }
        }

        impl<S> OptionalFromRequestParts<S> for $ty
        where
            Arc<Broker>: FromRef<S>,
            S: Send + Sync,
        {
            type Rejection = std::convert::Infallible;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Option<Self>, Self::Rejection> {
                let broker = Arc::<Broker>::from_ref(state);
                Ok(authenticate(parts, &broker, $mode)
                    .await
                    .ok()
                    .map(|v| Self(Arc::unwrap_or_clone(v))))
            }
        }
    };
}

extractor!(Auth, Verification::Stateless);
extractor!(AuthStateful, Verification::Stateful);

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_headers_are_read_as_rfc_6750_says() {
        assert!(matches!(bearer(&headers(&[])), Bearer::Absent));
        assert!(matches!(bearer(&headers(&["Basic abc"])), Bearer::Absent));
        assert!(matches!(
            bearer(&headers(&["Bearer a.b.c"])),
            Bearer::Token("a.b.c")
        ));
        assert!(matches!(
            bearer(&headers(&["bearer   a.b.c "])),
            Bearer::Token("a.b.c")
        ));
        assert!(matches!(bearer(&headers(&["Bearer"])), Bearer::Token("")));
        assert!(matches!(
            bearer(&headers(&["Bearer a", "Bearer b"])),
            Bearer::Ambiguous
        ));
        assert!(is_b64token("eyJ.eyJ.sig-_~+/=="));
        for bad in ["", "a b", "a,b", "\"x\"", "==", &"a".repeat(MAX_BEARER + 1)] {
            assert!(!is_b64token(bad), "{bad}");
        }
    }

    #[test]
    fn rejections_answer_as_rfc_6750_says() {
        let realm: Arc<str> = Arc::from("https://broker.example/api");
        let missing = AuthRejection {
            kind: RejectionKind::Missing,
            realm: Arc::clone(&realm),
        }
        .into_response();
        assert_eq!(missing.status(), 401);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"https://broker.example/api\""
        );
        let expired = AuthRejection {
            kind: RejectionKind::Invalid(Some(VerifyError::Expired)),
            realm,
        }
        .into_response();
        assert_eq!(expired.status(), 401);
        assert_eq!(
            expired.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        assert_eq!(expired.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\"");
    }
}
