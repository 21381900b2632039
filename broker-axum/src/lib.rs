#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod error;
mod form;
mod require;
mod routes;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodRouter, get, post};
use broker_service::Broker;

pub use auth::{Auth, AuthRejection, AuthStateful};
pub use broker_service::Verification;
pub use error::{ApiError, MAX_DESCRIPTION};
pub use form::MAX_FORM_BODY;
pub use require::{ClaimValues, RequireLayer, RequireService, Requirement, Unmet, require};

/// Where each route lives, below the prefix the router is mounted at.
/// `None` disables a route. The defaults are py-oidc-auth's paths.
///
/// ```
/// use broker_axum::RoutePaths;
///
/// let paths = RoutePaths {
///     token: Some("/oauth/token".into()), // renamed
///     device: None,                       // disabled
///     ..RoutePaths::default()
/// };
/// assert_eq!(paths.jwks.as_deref(), Some("/auth/v2/.well-known/jwks.json"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RoutePaths {
    /// `GET`: redirect to the identity provider's login. Default `/auth/v2/login`.
    pub login: Option<String>,
    /// `GET`: the identity provider's redirect back. Default `/auth/v2/callback`.
    pub callback: Option<String>,
    /// `POST`: the token endpoint. Default `/auth/v2/token`.
    pub token: Option<String>,
    /// `POST`: start a device authorization. Default `/auth/v2/device`.
    pub device: Option<String>,
    /// `GET`: end the login, redirect to the IdP's logout. Default `/auth/v2/logout`.
    pub logout: Option<String>,
    /// `GET`: the user, from the login. Default `/auth/v2/userinfo`.
    pub userinfo: Option<String>,
    /// `GET`: this broker's public keys. Default `/auth/v2/.well-known/jwks.json`.
    pub jwks: Option<String>,
    /// `POST`: RFC 7009 revocation. Default `/auth/v2/revoke`.
    pub revoke: Option<String>,
}

impl Default for RoutePaths {
    fn default() -> Self {
        let p = |s: &str| Some(format!("/auth/v2/{s}"));
        Self {
            login: p("login"),
            callback: p("callback"),
            token: p("token"),
            device: p("device"),
            logout: p("logout"),
            userinfo: p("userinfo"),
            jwks: p(".well-known/jwks.json"),
            revoke: p("revoke"),
        }
    }
}

// By hand: the workspace guard reads a field named `token` as a secret;
// these are paths, printed in full.
impl std::fmt::Debug for RoutePaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("RoutePaths");
        for (name, path) in [
            ("login", &self.login),
            ("callback", &self.callback),
            ("token", &self.token),
            ("device", &self.device),
            ("logout", &self.logout),
            ("userinfo", &self.userinfo),
            ("jwks", &self.jwks),
            ("revoke", &self.revoke),
        ] {
            d.field(name, path);
        }
        d.finish()
    }
}

impl RoutePaths {
    /// Every route disabled; enable the ones wanted.
    pub fn none() -> Self {
        Self {
            login: None,
            callback: None,
            token: None,
            device: None,
            logout: None,
            userinfo: None,
            jwks: None,
            revoke: None,
        }
    }

    /// The enabled paths, each with its route's name.
    pub fn enabled(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("login", &self.login),
            ("callback", &self.callback),
            ("token", &self.token),
            ("device", &self.device),
            ("logout", &self.logout),
            ("userinfo", &self.userinfo),
            ("jwks", &self.jwks),
            ("revoke", &self.revoke),
        ]
        .into_iter()
        .filter_map(|(name, p)| p.as_deref().map(|p| (name, p)))
    }

    /// Check every enabled path: absolute, no `{capture}` or `*`, no
    /// `..`, no two routes on one path.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen: Vec<&str> = Vec::new();
        for (name, path) in self.enabled() {
            let ok = path.starts_with('/')
                && path.len() > 1
                && !path.contains("//")
                && !path.split('/').any(|s| s == "." || s == "..")
                && path
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"{}*?#%".contains(&b));
            if !ok {
                return Err(format!(
                    "the {name} path {path:?} is not a plain absolute path"
                ));
            }
            if seen.contains(&path) {
                return Err(format!("the {name} path {path:?} is used twice"));
            }
            seen.push(path);
        }
        Ok(())
    }
}

/// The broker's routes at `paths`, to mount with [`Router::nest`] (the
/// seeds mount them at `/api`) or [`Router::merge`]; see [`router_at`].
/// The returned router carries its own state, so it fits any app state `S`.
///
/// | route | answers |
/// |---|---|
/// | `GET login` | 307 to the IdP; 400 without or with an unlisted `redirect_uri` |
/// | `GET callback` | 200 tokens; 400 `Missing code or state` |
/// | `POST token` | 200 tokens; 400/413/503 RFC 6749 errors |
/// | `POST device` | 200 RFC 8628 device authorization |
/// | `GET logout` | 307 to the IdP's end-session URL (or the allow-listed URI, or `/`) |
/// | `GET userinfo` | 200 `{username, first_name, last_name, pw_name, email}`; 401 |
/// | `GET jwks` | 200 JWKS, `ETag`, `max-age=300`; 304 |
/// | `POST revoke` | 200 (RFC 7009, unknown tokens too) |
///
/// # Panics
///
/// If [`RoutePaths::validate`] fails (a configuration error, found at
/// startup).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use axum::{Router, body::Body, http::Request};
/// use broker_axum::{RoutePaths, router};
/// use tower::ServiceExt as _;
///
/// # let broker: Arc<broker_service::Broker> = todo!();
/// // `broker`: an `Arc<broker_service::Broker>` opened at startup.
/// let app: Router = Router::new().nest("/api", router(Arc::clone(&broker), RoutePaths::default()));
///
/// let answer = app
///     .oneshot(Request::get("/api/auth/v2/.well-known/jwks.json").body(Body::empty())?)
///     .await?;
/// assert_eq!(answer.status(), 200);
/// assert_eq!(answer.headers()["cache-control"], "public, max-age=300");
/// # Ok(()) }
/// ```
pub fn router<S>(broker: Arc<Broker>, paths: RoutePaths) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    if let Err(e) = paths.validate() {
        panic!("broker_axum::router: {e}");
    }
    let add = |app: Router<Arc<Broker>>, path: &Option<String>, route: MethodRouter<_>| match path {
        Some(path) => app.route(path, route),
        None => app,
    };
    let app = Router::new();
    let app = add(app, &paths.login, get(routes::login));
    let app = add(app, &paths.callback, get(routes::callback));
    let app = add(app, &paths.token, post(token::token));
    let app = add(app, &paths.device, post(routes::device));
    let app = add(app, &paths.logout, get(routes::logout));
    let app = add(app, &paths.userinfo, get(routes::userinfo));
    let app = add(app, &paths.jwks, get(routes::jwks));
    let app = add(app, &paths.revoke, post(token::revoke));
    app.method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(broker)
}

/// [`router`] mounted at `prefix` (`"/api"` for the seeds; `""` or `"/"`
/// for none).
pub fn router_at<S>(prefix: &str, broker: Arc<Broker>, paths: RoutePaths) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let routes = router(broker, paths);
    match prefix.trim_end_matches('/') {
        "" => routes,
        prefix => Router::new().nest(prefix, routes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        assert_eq!(RoutePaths::default().validate(), Ok(()));
        assert_eq!(RoutePaths::none().enabled().count(), 0);
        for bad in [
            "auth", "/", "/a/{id}", "/a/*rest", "/a//b", "/a/../b", "/a b", "/a?x",
        ] {
            let p = RoutePaths {
                login: Some(bad.into()),
                ..RoutePaths::none()
            };
            assert!(p.validate().is_err(), "{bad}");
        }
        let twice = RoutePaths {
            revoke: RoutePaths::default().token,
            ..RoutePaths::default()
        };
        assert!(twice.validate().is_err());
    }
}
