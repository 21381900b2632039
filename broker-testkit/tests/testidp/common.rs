//! A minimal OAuth client for testing the TestIdp: reqwest without TLS,
//! no redirects followed.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broker_testkit::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint, ManualClock, TestIdp, TestIdpConfig,
    pkce_challenge,
};
use reqwest::StatusCode;
use serde_json::Value;

/// The time the tests' clocks start at.
pub const T0: i64 = 1_800_000_000;
/// The redirect URI the tests use.
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";
/// The PKCE verifier the tests use.
pub const VERIFIER: &str = "a-verifier-of-at-least-43-characters-0123456789abcdef";

pub struct Harness {
    pub idp: TestIdp,
    pub clock: ManualClock,
    pub http: reqwest::Client,
}

/// A TestIdp on a ManualClock at [`T0`], with the defaults.
pub async fn start() -> Harness {
    start_with(|_| {}).await
}

/// A TestIdp on a ManualClock at [`T0`], with `change` applied to the defaults.
pub async fn start_with(change: impl FnOnce(&mut TestIdpConfig)) -> Harness {
    let clock = ManualClock::new(T0);
    let mut config = TestIdpConfig::with_clock(Arc::new(clock.clone()));
    change(&mut config);
    let idp = TestIdp::start(config).await.expect("TestIdp starts");
    let http = broker_testkit::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client");
    Harness { idp, clock, http }
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

impl Harness {
    pub fn url(&self, endpoint: Endpoint) -> String {
        self.idp.endpoint_url(endpoint)
    }

    pub async fn get_json(&self, endpoint: Endpoint) -> Value {
        let r = self.http.get(self.url(endpoint)).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::OK, "GET {endpoint:?}");
        r.json().await.expect("JSON")
    }

    /// `GET /authorize` with PKCE S256 of [`VERIFIER`] plus `extra`;
    /// returns the `Location` of the redirect.
    pub async fn authorize(&self, extra: &[(&str, &str)]) -> String {
        let challenge = pkce_challenge(VERIFIER);
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("scope", "openid profile email"),
            ("state", "st-1"),
            ("nonce", "n-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        for (k, v) in extra {
            params.retain(|(name, _)| name != k);
            params.push((k, v));
        }
        let r = self
            .http
            .get(self.url(Endpoint::Authorize))
            .query(&params)
            .send()
            .await
            .expect("GET /authorize");
        assert!(r.status().is_redirection(), "authorize: {}", r.status());
        r.headers()["location"].to_str().expect("ascii").to_owned()
    }

    /// `POST /token` as the default confidential client (HTTP Basic).
    pub async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(Endpoint::Token))
            .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
            .form(form)
            .send()
            .await
            .expect("POST /token");
        let status = r.status();
        (status, r.json().await.expect("JSON answer"))
    }

    /// Authorize and exchange the code: the token answer.
    pub async fn login(&self) -> Value {
        let location = self.authorize(&[]).await;
        let code = query_param(&location, "code").expect("code");
        let (status, body) = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ])
            .await;
        assert_eq!(status, StatusCode::OK, "code exchange: {body}");
        body
    }

    pub async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// `GET /userinfo` with `access_token`: the status.
    pub async fn userinfo(&self, access_token: &str) -> StatusCode {
        self.http
            .get(self.url(Endpoint::Userinfo))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("GET /userinfo")
            .status()
    }
}

/// The `refresh_token` of a token answer.
pub fn rt(body: &Value) -> String {
    body["refresh_token"]
        .as_str()
        .expect("a refresh_token")
        .to_owned()
}

/// The `access_token` of a token answer.
pub fn at(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .expect("an access_token")
        .to_owned()
}
