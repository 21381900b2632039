//! [`Requirement`] and [`RequireLayer`]: what a protected route demands of
//! its bearer token (scopes, roles, claims at a path), answering 401 or
//! 403 with `WWW-Authenticate` as RFC 6750 §3 says.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use broker_issuer::AccessClaims;
use broker_service::{Broker, Verification};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::{Authenticated, authenticate, header_value, quote};
use crate::error::ApiError;

/// One claim condition: the value at `path` (or, if it is an array, one of
/// its elements) equals one of `any_of`.
#[derive(Debug, Clone, PartialEq)]
struct ClaimRule {
    path: Vec<String>,
    any_of: Vec<Value>,
}

/// What a protected route demands of its token. Every part must hold:
/// all the scopes, at least one of the roles (if any are named), and every
/// claim rule.
///
/// Claim paths are paths into the token's claims JSON: `"realm_access.roles"`
/// is the `roles` member of the `realm_access` object, so it is **not**
/// satisfied by an `email` of `"admin"` (py-oidc-auth's weakness W10).
/// This broker's tokens carry roles flattened in `roles`: use
/// [`Requirement::roles_any`] for them.
///
/// ```
/// use broker_axum::Requirement;
///
/// let admins = Requirement::scopes(["admin"])
///     .roles_any(["hpcuser", "staff"])
///     .claim("email_verified", true)
///     .claim("realm_access.roles", ["admin"])
///     .stateful();
/// # let _ = admins;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    scopes: Vec<String>,
    roles_any: Vec<String>,
    claims: Vec<ClaimRule>,
    mode: Verification,
}

impl Default for Requirement {
    fn default() -> Self {
        Self::authenticated()
    }
}

impl Requirement {
    /// Any valid token.
    pub fn authenticated() -> Self {
        Self {
            scopes: Vec::new(),
            roles_any: Vec::new(),
            claims: Vec::new(),
            mode: Verification::Stateless,
        }
    }

    /// A valid token with every one of `scopes` in its `scope` claim.
    pub fn scopes<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::authenticated().and_scopes(scopes)
    }

    /// Also every one of `scopes`.
    pub fn and_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Also at least one of `roles` in the token's `roles` claim.
    pub fn roles_any<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles_any.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Also the claim at the dotted `path` equals one of `values` (or, if
    /// it is an array, holds one of them). For a member whose name has a
    /// dot in it, use [`Requirement::claim_at`].
    pub fn claim(self, path: &str, values: impl Into<ClaimValues>) -> Self {
        self.claim_at(path.split('.'), values)
    }

    /// As [`Requirement::claim`], with the path given segment by segment.
    pub fn claim_at<I, S>(mut self, path: I, values: impl Into<ClaimValues>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.claims.push(ClaimRule {
            path: path.into_iter().map(Into::into).collect(),
            any_of: values.into().0,
        });
        self
    }

    /// Verify statefully: a token whose login ended is refused at once
    /// (one store read per request; see [`Verification::Stateful`]).
    pub fn stateful(mut self) -> Self {
        self.mode = Verification::Stateful;
        self
    }

    /// How tokens are verified.
    pub fn verification(&self) -> Verification {
        self.mode
    }

    /// Why `claims` do not satisfy this requirement, if they do not.
    pub fn check(&self, claims: &AccessClaims) -> Result<(), Unmet> {
        if !self.scopes.iter().all(|s| claims.scopes().any(|g| g == s)) {
            return Err(Unmet::Scope);
        }
        if !self.roles_any.is_empty() && !self.roles_any.iter().any(|r| claims.roles.contains(r)) {
            return Err(Unmet::Role);
        }
        if !self.claims.is_empty() {
            let json = serde_json::to_value(claims).map_err(|_| Unmet::Claim)?;
            if !self.claims.iter().all(|rule| rule.holds(&json)) {
                return Err(Unmet::Claim);
            }
        }
        Ok(())
    }

    /// The 403 answer for `unmet`.
    fn forbidden(&self, unmet: Unmet) -> ApiError {
        let mut challenge = String::from("Bearer error=\"insufficient_scope\"");
        if !self.scopes.is_empty() {
            challenge.push_str(", scope=");
            challenge.push_str(&quote(&self.scopes.join(" ")));
        }
        let description = match unmet {
            Unmet::Scope => "the token lacks a required scope",
            Unmet::Role => "the token lacks a required role",
            Unmet::Claim => "Insufficient claims.",
        };
        ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", description)
            .with_www_authenticate(header_value(&challenge))
    }
}

impl ClaimRule {
    fn holds(&self, claims: &Value) -> bool {
        let mut at = claims;
        for segment in &self.path {
            match at.get(segment.as_str()) {
                Some(v) => at = v,
                None => return false,
            }
        }
        match at {
            Value::Array(items) => items.iter().any(|i| self.any_of.contains(i)),
            v => self.any_of.contains(v),
        }
    }
}

/// Which part of a [`Requirement`] a token did not meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    /// A scope is missing.
    Scope,
    /// None of the roles is there.
    Role,
    /// A claim rule does not hold.
    Claim,
}

/// The values a claim rule accepts: one JSON value or several.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimValues(Vec<Value>);

impl From<bool> for ClaimValues {
    fn from(v: bool) -> Self {
        Self(vec![Value::Bool(v)])
    }
}

impl From<&str> for ClaimValues {
    fn from(v: &str) -> Self {
        Self(vec![Value::from(v)])
    }
}

impl From<Value> for ClaimValues {
    fn from(v: Value) -> Self {
        Self(vec![v])
    }
}

impl<const N: usize> From<[&str; N]> for ClaimValues {
    fn from(v: [&str; N]) -> Self {
        Self(v.into_iter().map(Value::from).collect())
    }
}

impl From<Vec<String>> for ClaimValues {
    fn from(v: Vec<String>) -> Self {
        Self(v.into_iter().map(Value::from).collect())
    }
}

impl From<Vec<Value>> for ClaimValues {
    fn from(v: Vec<Value>) -> Self {
        Self(v)
    }
}

/// A layer demanding `requirement` of every request to the routes it
/// wraps (use it as a `route_layer`, so unknown paths still answer 404):
/// no or a bad token → 401 `invalid_token`; a valid token that does not
/// meet it → 403 `insufficient_scope` with the required `scope`. The
/// verified token is handed on, so an [`Auth`](crate::Auth) extractor in
/// the handler does not verify it again.
///
/// ```no_run
/// # fn demo(broker: std::sync::Arc<broker_service::Broker>) {
/// use axum::{Router, routing::get};
/// use broker_axum::{Auth, Requirement, require};
///
/// async fn admin(Auth(user): Auth) -> String { user.claims.sub }
///
/// let app: Router = Router::new()
///     .route("/admin", get(admin))
///     .route_layer(require(&broker, Requirement::scopes(["admin"])))
///     .with_state(broker);
/// # }
/// ```
pub fn require(broker: &Arc<Broker>, requirement: Requirement) -> RequireLayer {
    RequireLayer {
        broker: Arc::clone(broker),
        requirement: Arc::new(requirement),
    }
}

/// The layer [`require`] builds.
#[derive(Debug, Clone)]
pub struct RequireLayer {
    broker: Arc<Broker>,
    requirement: Arc<Requirement>,
}

impl<S> Layer<S> for RequireLayer {
    type Service = RequireService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireService {
            inner,
            broker: Arc::clone(&self.broker),
            requirement: Arc::clone(&self.requirement),
        }
    }
}

/// The service of [`RequireLayer`].
#[derive(Debug, Clone)]
pub struct RequireService<S> {
    inner: S,
    broker: Arc<Broker>,
    requirement: Arc<Requirement>,
}

impl<S> Service<Request> for RequireService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The clone is the one that was not polled ready: swap them.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let broker = Arc::clone(&self.broker);
        let requirement = Arc::clone(&self.requirement);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let mode = requirement.mode;
            let verified = match authenticate(&parts, &broker, mode).await {
                Ok(v) => v,
                Err(rejection) => return Ok(rejection.into_response()),
            };
            if let Err(unmet) = requirement.check(&verified.claims) {
                tracing::debug!(?unmet, "requirement not met");
                return Ok(requirement.forbidden(unmet).into_response());
            }
            parts.extensions.insert(Authenticated { verified, mode });
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_issuer::Audience;
    use serde_json::json;

    fn claims(extra: Value) -> AccessClaims {
        let mut c: AccessClaims = serde_json::from_value(json!({
            "iss": "https://b.example", "sub": "s", "aud": "a", "exp": 2, "iat": 1, "jti": "j",
            "scope": "openid profile", "roles": ["hpcuser"], "email": "admin",
        }))
        .unwrap();
        if let Value::Object(m) = extra {
            c.extra = m;
        }
        assert_eq!(c.aud, Audience::One("a".into()));
        c
    }

    #[test]
    fn scopes_roles_and_claims_at_paths() {
        let plain = claims(json!({}));
        assert_eq!(Requirement::scopes(["profile"]).check(&plain), Ok(()));
        assert_eq!(
            Requirement::scopes(["admin"]).check(&plain),
            Err(Unmet::Scope)
        );
        assert_eq!(
            Requirement::scopes(["openid", "profile"]).check(&plain),
            Ok(())
        );
        let role = Requirement::authenticated().roles_any(["staff", "hpcuser"]);
        assert_eq!(role.check(&plain), Ok(()));
        let role = Requirement::authenticated().roles_any(["staff"]);
        assert_eq!(role.check(&plain), Err(Unmet::Role));
        // W10: an email of "admin" is not the role admin at realm_access.roles.
        let admin = Requirement::authenticated().claim("realm_access.roles", ["admin"]);
        assert_eq!(admin.check(&plain), Err(Unmet::Claim));
        let realm = claims(json!({"realm_access": {"roles": ["user", "admin"]}}));
        assert_eq!(admin.check(&realm), Ok(()));
        let not_array = claims(json!({"realm_access": {"roles": "admin"}}));
        assert_eq!(admin.check(&not_array), Ok(()));
        let elsewhere = claims(json!({"other": {"roles": ["admin"]}, "roles_admin": true}));
        assert_eq!(admin.check(&elsewhere), Err(Unmet::Claim));
        let email = Requirement::authenticated().claim("email", "admin");
        assert_eq!(email.check(&plain), Ok(()));
        let verified = Requirement::authenticated().claim("email_verified", true);
        assert_eq!(verified.check(&plain), Err(Unmet::Claim));
        assert_eq!(
            verified.check(&claims(json!({"email_verified": "true"}))),
            Err(Unmet::Claim),
            "types count"
        );
        assert_eq!(
            verified.check(&claims(json!({"email_verified": true}))),
            Ok(())
        );
        let dotted =
            Requirement::authenticated().claim_at(["resource_access", "my.client", "roles"], ["x"]);
        assert_eq!(
            dotted.check(&claims(
                json!({"resource_access": {"my.client": {"roles": ["x"]}}})
            )),
            Ok(())
        );
    }

    #[test]
    fn forbidden_names_the_scope() {
        let r = Requirement::scopes(["admin"]);
        let response = r.forbidden(Unmet::Scope).into_response();
        assert_eq!(response.status(), 403);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"insufficient_scope\", scope=\"admin\""
        );
        let r = Requirement::authenticated().roles_any(["x"]);
        assert_eq!(
            r.forbidden(Unmet::Role).into_response().headers()["www-authenticate"],
            "Bearer error=\"insufficient_scope\""
        );
    }
}
