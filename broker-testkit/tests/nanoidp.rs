//! Smoke test against a real nanoidp (`scripts/servers/idp.sh start`):
//! discovery, code flow through its login form, refresh-token rotation,
//! replay detection, device flow through its approval form.
//! Without `BROKER_TEST_IDP_URL`: a loud skip; under `CI=true`: a failure.

use broker_testkit::nanoidp::{Browser, NanoidpEnv};
use broker_testkit::{NanoidpError, pkce_challenge};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::Value;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

struct Idp {
    env: NanoidpEnv,
    http: reqwest::Client,
    discovery: Value,
}

impl Idp {
    async fn connect() -> Option<Self> {
        let env = NanoidpEnv::require()?;
        let http = broker_testkit::http_client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap();
        let discovery: Value = http
            .get(format!("{}/.well-known/openid-configuration", env.url))
            .send()
            .await
            .expect("discovery answers")
            .json()
            .await
            .expect("discovery is JSON");
        Some(Self {
            env,
            http,
            discovery,
        })
    }

    fn endpoint(&self, field: &str) -> String {
        self.discovery[field]
            .as_str()
            .unwrap_or_else(|| panic!("discovery has no {field}"))
            .to_owned()
    }

    /// `POST` to the token endpoint with HTTP Basic (nanoidp's only method).
    async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.endpoint("token_endpoint"))
            .basic_auth(&self.env.client_id, Some(&self.env.client_secret))
            .form(form)
            .send()
            .await
            .expect("token endpoint answers");
        let status = r.status();
        (status, r.json().await.expect("token answer is JSON"))
    }

    fn authorize_url(&self, verifier: &str, state: &str, nonce: &str) -> String {
        let mut url = url::Url::parse(&self.endpoint("authorization_endpoint")).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.env.client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", "openid profile email offline_access")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &pkce_challenge(verifier))
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    /// Verify `token` with nanoidp's JWKS; its claims.
    async fn verify(&self, token: &str) -> Value {
        let jwks: JwkSet = self
            .http
            .get(self.endpoint("jwks_uri"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kid = jsonwebtoken::decode_header(token)
            .unwrap()
            .kid
            .expect("kid");
        let key = DecodingKey::from_jwk(jwks.find(&kid).expect("kid in the JWKS")).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_aud = false;
        v.set_issuer(&[&self.env.url]);
        jsonwebtoken::decode::<Value>(token, &key, &v)
            .expect("signature, issuer and expiry verify")
            .claims
    }

    async fn device_authorization(&self) -> Value {
        let r = self
            .http
            .post(self.endpoint("device_authorization_endpoint"))
            .basic_auth(&self.env.client_id, Some(&self.env.client_secret))
            .form(&[("scope", "openid profile offline_access")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }
}

fn field(body: &Value, name: &str) -> String {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in the answer"))
        .to_owned()
}

#[tokio::test]
async fn discovery_names_the_issuer_and_the_endpoints_the_broker_uses() {
    let Some(idp) = Idp::connect().await else {
        return;
    };
    assert_eq!(idp.discovery["issuer"], idp.env.url.as_str());
    for f in [
        "authorization_endpoint",
        "token_endpoint",
        "device_authorization_endpoint",
        "userinfo_endpoint",
        "end_session_endpoint",
        "revocation_endpoint",
        "jwks_uri",
    ] {
        assert!(idp.endpoint(f).starts_with(&idp.env.url), "{f}");
    }
    let grants = idp.discovery["grant_types_supported"].to_string();
    assert!(grants.contains("refresh_token") && grants.contains("device_code"));
}

#[tokio::test]
async fn code_flow_refresh_rotation_and_replay_detection() {
    let Some(idp) = Idp::connect().await else {
        return;
    };
    let verifier = "nanoidp-smoke-verifier-0123456789-abcdefghijklmnop";
    let browser = Browser::new().unwrap();
    let answer = browser
        .login(
            &idp.authorize_url(verifier, "st-smoke", "n-smoke"),
            &idp.env.username,
            &idp.env.password,
        )
        .await
        .expect("form login");
    assert!(answer.redirect.starts_with(REDIRECT));
    assert_eq!(answer.state.as_deref(), Some("st-smoke"));

    // A wrong verifier is refused; the code is then gone.
    let (status, body) = idp
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &answer.code),
            ("redirect_uri", REDIRECT),
            (
                "code_verifier",
                "a-wrong-verifier-0123456789-abcdefghijklmnopqrs",
            ),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");

    let answer = Browser::new()
        .unwrap()
        .login(
            &idp.authorize_url(verifier, "st-2", "n-2"),
            &idp.env.username,
            &idp.env.password,
        )
        .await
        .expect("form login");
    let (status, tokens) = idp
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &answer.code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{}", tokens["error"]);
    let access = idp.verify(&field(&tokens, "access_token")).await;
    assert_eq!(access["sub"], idp.env.username.as_str());
    assert!(
        access["roles"].to_string().contains("broker-user"),
        "realm roles"
    );
    let id = idp.verify(&field(&tokens, "id_token")).await;
    assert_eq!(
        (id["nonce"].as_str(), id["aud"].as_str()),
        (Some("n-2"), Some(idp.env.client_id.as_str()))
    );

    let r0 = field(&tokens, "refresh_token");
    let (status, b1) = idp
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &r0)])
        .await;
    assert_eq!(status, StatusCode::OK, "{}", b1["error"]);
    let r1 = field(&b1, "refresh_token");
    assert_ne!(r0, r1, "refresh_token_rotation is on: each refresh rotates");

    let (status, body) = idp
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &r0)])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "replay"
    );
    let (status, body) = idp
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &r1)])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "the replay revoked the family, R1 included"
    );
}

#[tokio::test]
async fn device_flow_approved_and_denied_through_the_form() {
    let Some(idp) = Idp::connect().await else {
        return;
    };
    let d = idp.device_authorization().await;
    let device_code = field(&d, "device_code");
    let poll = [
        ("grant_type", DEVICE_GRANT),
        ("device_code", device_code.as_str()),
    ];
    assert_eq!(idp.token(&poll).await.1["error"], "authorization_pending");
    Browser::new()
        .unwrap()
        .approve_device(
            &field(&d, "verification_uri"),
            &field(&d, "user_code"),
            &idp.env.username,
            &idp.env.password,
        )
        .await
        .expect("approval form");
    let (status, tokens) = idp.token(&poll).await;
    assert_eq!(status, StatusCode::OK, "{}", tokens["error"]);
    assert!(tokens["refresh_token"].is_string());
    assert_eq!(
        idp.verify(&field(&tokens, "access_token")).await["sub"],
        idp.env.username.as_str()
    );
    assert_eq!(
        idp.token(&poll).await.0,
        StatusCode::BAD_REQUEST,
        "a device code is redeemed once"
    );

    let d = idp.device_authorization().await;
    let device_code = field(&d, "device_code");
    Browser::new()
        .unwrap()
        .deny_device(
            &field(&d, "verification_uri"),
            &field(&d, "user_code"),
            &idp.env.username,
            &idp.env.password,
        )
        .await
        .expect("deny form");
    let poll = [
        ("grant_type", DEVICE_GRANT),
        ("device_code", device_code.as_str()),
    ];
    assert_eq!(idp.token(&poll).await.1["error"], "access_denied");
}

#[tokio::test]
async fn wrong_credentials_are_refused_by_both_forms() {
    let Some(idp) = Idp::connect().await else {
        return;
    };
    let browser = Browser::new().unwrap();
    let err = browser
        .login(
            &idp.authorize_url("v-0123456789-0123456789-0123456789-0123456789", "s", "n"),
            &idp.env.username,
            "wrong",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, NanoidpError::Refused(_)), "{err:?}");
    let d = idp.device_authorization().await;
    let err = browser
        .approve_device(
            &field(&d, "verification_uri"),
            &field(&d, "user_code"),
            &idp.env.username,
            "wrong",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, NanoidpError::Refused(_)), "{err:?}");
}
