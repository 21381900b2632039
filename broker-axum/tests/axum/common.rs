//! One broker on a MemoryStore and a TestIdp sharing a ManualClock, its
//! routes under `/api`, and a few protected routes of an "application".

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broker_axum::{Auth, AuthStateful, Requirement, RoutePaths, require, router_at};
use broker_core::{
    BrokerStore as _, EncryptionKey, KeyConfig, ManualClock, MemoryStore, StoreStats, TokenVault,
};
use broker_issuer::IssuerConfig;
use broker_service::{Broker, BrokerConfig, IdpConfig};
use broker_testkit::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, TestIdp, TestIdpConfig};
use serde_json::Value;
use tower::ServiceExt as _;

/// The time the clocks start at.
pub const T0: i64 = 1_800_000_000;
/// The broker's issuer.
pub const ISSUER: &str = "https://broker.test/api";
/// An allow-listed redirect URI (the pattern is `http://localhost:*/callback`).
pub const REDIRECT: &str = "http://localhost:53682/callback";
/// The allow-listed post-logout URI.
pub const BYE: &str = "https://app.test/bye";
/// A PKCE verifier of the client's own.
pub const VERIFIER: &str = "client-verifier-of-at-least-43-characters-0123456789";

pub struct Harness {
    pub idp: TestIdp,
    pub clock: ManualClock,
    pub store: MemoryStore,
    pub broker: Arc<Broker>,
    pub app: Router,
}

/// An answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "{}: not JSON: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// An error answer: `status`, the RFC `code`, `detail` equal to
    /// `error_description`, `no-store`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["error"], code, "{v}");
        assert!(v["error_description"].is_string(), "{v}");
        assert_eq!(v["detail"], v["error_description"], "{v}");
        assert_eq!(self.header(header::CACHE_CONTROL), "no-store");
        assert_eq!(self.header(header::CONTENT_TYPE), "application/json");
        self
    }
}

pub async fn start() -> Harness {
    start_with(RoutePaths::default()).await
}

/// A TestIdp without slow_down, and a broker with `paths` under `/api`.
pub async fn start_with(paths: RoutePaths) -> Harness {
    let clock = ManualClock::new(T0);
    let mut idp_cfg = TestIdpConfig::with_clock(Arc::new(clock.clone()));
    idp_cfg.device_interval = 0;
    let idp = TestIdp::start(idp_cfg).await.expect("TestIdp starts");
    let store = MemoryStore::new().with_clock(Arc::new(clock.clone()));
    let broker = Arc::new(open_broker(&idp, &store, &clock).await);
    let app = app(&broker, paths);
    Harness {
        idp,
        clock,
        store,
        broker,
        app,
    }
}

/// A broker of [`ISSUER`] on `store`.
pub async fn open_broker(idp: &TestIdp, store: &MemoryStore, clock: &ManualClock) -> Broker {
    let key = EncryptionKey::from_bytes(&[7; 32]).unwrap();
    let vault = TokenVault::open(Arc::new(store.clone()), KeyConfig::new(key))
        .await
        .unwrap();
    let mut idp_cfg = IdpConfig::new(idp.issuer().parse().unwrap(), DEFAULT_CLIENT_ID);
    idp_cfg.client_secret = Some(DEFAULT_CLIENT_SECRET.into());
    let mut cfg = BrokerConfig::new(IssuerConfig::new(ISSUER, "my-api"), idp_cfg);
    cfg.redirect_uris = vec!["http://localhost:*/callback".into()];
    cfg.post_logout_redirect_uris = vec![BYE.into()];
    let http = broker_service::idp::http_client().unwrap();
    Broker::open(Arc::new(vault), cfg, http, Arc::new(clock.clone()))
        .await
        .expect("the broker opens")
}

/// The broker's routes under `/api` and an application's routes:
/// `/me` (`Auth`), `/maybe` (`Option<Auth>`), `/live` (`AuthStateful`),
/// `/admin` (scope `admin`), `/profile` (scope `profile`), `/realm-admin`
/// (claim `realm_access.roles` ∋ `admin`), `/user-role` (role `user`).
pub fn app(broker: &Arc<Broker>, paths: RoutePaths) -> Router {
    async fn me(Auth(v): Auth) -> String {
        v.claims.sub
    }
    async fn maybe(user: Option<Auth>) -> String {
        user.map_or_else(|| "anonymous".into(), |Auth(v)| v.claims.sub)
    }
    async fn live(AuthStateful(v): AuthStateful) -> String {
        v.claims.sub
    }
    let guarded = |path: &str, requirement: Requirement| {
        Router::new()
            .route(path, get(me))
            .route_layer(require(broker, requirement))
    };
    Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .route("/live", get(live))
        .merge(guarded("/admin", Requirement::scopes(["admin"])))
        .merge(guarded("/profile", Requirement::scopes(["profile"])))
        .merge(guarded(
            "/realm-admin",
            Requirement::authenticated().claim("realm_access.roles", ["admin"]),
        ))
        .merge(guarded(
            "/user-role",
            Requirement::authenticated().roles_any(["user"]),
        ))
        .merge(router_at("/api", Arc::clone(broker), paths))
        .with_state(Arc::clone(broker))
}

impl Harness {
    /// Send `request` through the app.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn get_bearer(&self, uri: &str, token: &str) -> Answer {
        self.send(
            Request::get(uri)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// POST a form body to `uri`.
    pub async fn post_form(&self, uri: &str, body: impl Into<Body>) -> Answer {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.into())
                .unwrap(),
        )
        .await
    }

    pub async fn token(&self, body: impl Into<Body>) -> Answer {
        self.post_form("/api/auth/v2/token", body).await
    }

    /// A device-flow login of the IdP's first user (alice); the token
    /// response.
    pub async fn device_login(&self) -> Value {
        let started = self.post_form("/api/auth/v2/device", "").await;
        assert_eq!(started.status, 200);
        let started = started.json();
        let pending = self
            .token(format!(
                "device-code={}",
                started["device_code"].as_str().unwrap()
            ))
            .await;
        pending.assert_error(400, "authorization_pending");
        self.idp
            .approve(started["user_code"].as_str().unwrap())
            .unwrap();
        let tokens = self
            .token(format!(
                "device-code={}",
                started["device_code"].as_str().unwrap()
            ))
            .await;
        assert_eq!(
            tokens.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&tokens.body)
        );
        tokens.json()
    }

    pub async fn stats(&self) -> StoreStats {
        self.store.stats().await.unwrap()
    }
}

/// The payload of a JWT, unverified.
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}
