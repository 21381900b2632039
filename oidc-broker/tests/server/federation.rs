//! Federation both ways with a real py-oidc-auth 2606.0.0 broker
//! (`scripts/servers/pyoidc.sh`, `BROKER_TEST_PYOIDC_URL`), server to
//! server: the py-oidc-auth peer verifies our server's tokens with its own
//! `TokenBroker.verify` (fetching our JWKS route), and our server accepts
//! the peer's tokens on `/userinfo`. Tokens of an issuer either side does
//! not trust are refused by both.

use serde_json::{Value, json};

use crate::common::{Server, http, require_var, userinfo};

/// py-oidc-auth's default `broker_audience`, shared by a federation.
const AUDIENCE: &str = "py-oidc-auth";
/// An issuer nobody here trusts.
const STRANGER: &str = "http://127.0.0.1:9/api";

/// POST `body` as JSON to the peer's `path`: status and JSON answer.
async fn peer(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = http()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A login at the demo server (its in-process IdP approves alice): the
/// access token.
async fn demo_login(server: &Server) -> String {
    let http = http();
    let location = |r: &reqwest::Response| r.headers()["location"].to_str().unwrap().to_owned();
    let login = http
        .get(server.route("/login"))
        .query(&[("redirect_uri", "http://localhost:9/callback")])
        .send()
        .await
        .unwrap();
    assert!(login.status().is_redirection(), "{}", login.status());
    let at_idp = http.get(location(&login)).send().await.unwrap();
    assert!(at_idp.status().is_redirection(), "{}", at_idp.status());
    let back = location(&at_idp);
    let query = back.split_once('?').expect("code and state").1;
    let tokens: Value = http
        .get(format!("{}?{query}", server.route("/callback")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["access_token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn a_py_oidc_auth_broker_and_the_server_verify_each_others_tokens() {
    let Some(peer_url) = require_var(
        "BROKER_TEST_PYOIDC_URL",
        "eval \"$(scripts/servers/pyoidc.sh start)\"; scripts/test-all.sh does it",
    ) else {
        return;
    };
    let peer_url = peer_url.trim_end_matches('/').to_owned();
    let config = format!(
        "audience = \"{AUDIENCE}\"\n\
         [federation]\n\
         allow_http_loopback = true\n\
         [[federation.peers]]\n\
         issuer = \"{peer_url}\"\n"
    );
    let server = Server::start(&config, &["--demo"], &[]).await;
    let ours = demo_login(&server).await;

    // The peer trusts us: py-oidc-auth fetches our JWKS route
    // (issuer + /auth/v2/.well-known/jwks.json) and verifies our token.
    let (status, body) = peer(
        &peer_url,
        "/verify",
        &json!({ "token": ours, "trusted_issuer": server.issuer }),
    )
    .await;
    assert_eq!(status, 200, "the peer refused our token: {body}");
    assert_eq!(body["claims"]["preferred_username"], "alice", "{body}");
    // A peer that trusts another issuer refuses it.
    let (status, body) = peer(
        &peer_url,
        "/verify",
        &json!({ "token": ours, "trusted_issuer": STRANGER }),
    )
    .await;
    assert_eq!(status, 401, "an untrusting peer accepted our token: {body}");

    // We trust the peer: its token opens our protected route.
    let mint = |issuer: &str| {
        json!({
            "sub": "carol", "preferred_username": "carol",
            "email": "carol@example.test", "roles": ["admin"], "issuer": issuer,
        })
    };
    let (status, minted) = peer(&peer_url, "/mint", &mint(&peer_url)).await;
    assert_eq!(status, 200, "{minted}");
    let theirs = minted["token"].as_str().unwrap();
    let (status, user) = userinfo(&server, theirs).await;
    assert_eq!(status, 200, "our server refused the peer's token: {user}");
    assert_eq!(user["username"], "carol");
    assert_eq!(user["email"], "carol@example.test");

    // An issuer we do not trust (signed by the peer's key all the same),
    // and the peer's key claiming to be us: both refused.
    for issuer in [STRANGER, server.issuer.as_str()] {
        let (status, minted) = peer(&peer_url, "/mint", &mint(issuer)).await;
        assert_eq!(status, 200, "{minted}");
        let (status, body) = userinfo(&server, minted["token"].as_str().unwrap()).await;
        assert_eq!(status, 401, "{issuer}: {body}");
        assert_eq!(body["error"], "invalid_token", "{body}");
    }
    server.stop().await;
}
