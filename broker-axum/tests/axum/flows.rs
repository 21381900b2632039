//! A24 (routes at the seed paths, renamed, disabled; userinfo with no IdP
//! call; logout ends the login) and A27 (client PKCE: no verifier in
//! `state`, the nonce bound to it), the legacy browser callback, the token
//! answer's shape (A30) and a refresh round trip with replay detection.

use axum::http::{StatusCode, header};
use broker_axum::RoutePaths;
use broker_testkit::{Endpoint, pkce_challenge};

use crate::common::{BYE, ISSUER, REDIRECT, VERIFIER, claims, query_param, s, start, start_with};

#[tokio::test]
async fn device_login_refresh_replay_and_the_token_answer() {
    let h = start().await;
    let tokens = h.device_login().await;
    // A30: both relative and absolute expiries, RFC and py-oidc-auth names.
    let now = crate::common::T0;
    for (rel, abs) in [
        ("expires_in", "expires"),
        ("refresh_expires_in", "refresh_expires"),
    ] {
        let (rel, abs) = (tokens[rel].as_i64().unwrap(), tokens[abs].as_i64().unwrap());
        assert!(rel > 0 && abs == now + rel, "{tokens}");
    }
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(claims(s(&tokens["access_token"]))["iss"], ISSUER);
    let r0 = s(&tokens["refresh_token"]).to_owned();

    // Refresh with py-oidc-auth's field name, then RFC 6749's.
    let a = h.token(format!("refresh-token={r0}")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header(header::CACHE_CONTROL), "no-store");
    let r1 = s(&a.json()["refresh_token"]).to_owned();
    assert_ne!(r1, r0);
    let b = h
        .token(format!("grant_type=refresh_token&refresh_token={r1}"))
        .await;
    assert_eq!(b.status, 200);
    let r2 = s(&b.json()["refresh_token"]).to_owned();

    // Replay of r0: invalid_grant, and the login is gone (r2 too).
    h.token(format!("refresh_token={r0}"))
        .await
        .assert_error(400, "invalid_grant");
    h.token(format!("refresh_token={r2}"))
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a24_userinfo_from_the_login_and_logout_ends_it() {
    let h = start().await;
    let tokens = h.device_login().await;
    let access = s(&tokens["access_token"]).to_owned();
    let refresh = s(&tokens["refresh_token"]).to_owned();

    h.idp.reset_calls();
    let info = h.get_bearer("/api/auth/v2/userinfo", &access).await;
    assert_eq!(info.status, 200);
    assert_eq!(info.header(header::CACHE_CONTROL), "no-store");
    let info = info.json();
    assert_eq!(info["username"], "alice");
    assert_eq!(info["pw_name"], "alice");
    assert_eq!(info["email"], "alice@example.test");
    for e in Endpoint::ALL {
        assert_eq!(h.idp.calls(e), 0, "userinfo called the IdP at {e:?}");
    }

    // An unlisted post-logout URI: 400, and the login is untouched.
    let before = h.stats().await;
    let off = "/api/auth/v2/logout?post_logout_redirect_uri=https%3A%2F%2Fevil.test%2F";
    h.get_bearer(off, &access)
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(h.stats().await, before);
    assert_eq!(h.get_bearer("/live", &access).await.status, 200);

    let bye = format!(
        "/api/auth/v2/logout?post_logout_redirect_uri={}",
        url::form_urlencoded::byte_serialize(BYE.as_bytes()).collect::<String>()
    );
    let out = h.get_bearer(&bye, &access).await;
    assert_eq!(out.status, StatusCode::TEMPORARY_REDIRECT);
    let location = out.header(header::LOCATION);
    assert!(
        location.starts_with(&h.idp.endpoint_url(Endpoint::EndSession)),
        "{location}"
    );
    assert_eq!(
        query_param(location, "post_logout_redirect_uri").as_deref(),
        Some(BYE)
    );
    assert_eq!(
        query_param(location, "client_id").as_deref(),
        Some(broker_testkit::DEFAULT_CLIENT_ID)
    );
    // The IdP's refresh token was revoked (best effort, it offers revocation).
    assert_eq!(h.idp.calls(Endpoint::Revoke), 1);
    // The next refresh fails; stateful routes refuse the access token now.
    h.token(format!("refresh-token={refresh}"))
        .await
        .assert_error(400, "invalid_grant");
    h.get_bearer("/live", &access)
        .await
        .assert_error(401, "invalid_token");
}

#[tokio::test]
async fn a24_the_routes_live_at_the_seed_paths_and_can_be_renamed_or_disabled() {
    let h = start().await;
    let jwks = h.get("/api/auth/v2/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.json()["keys"].as_array().unwrap().len(), 1);
    let etag = jwks.header(header::ETAG).to_owned();
    let again = h
        .send(
            axum::http::Request::get("/api/auth/v2/.well-known/jwks.json")
                .header(header::IF_NONE_MATCH, &etag)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    // Each seed route answers something of its own (not 404).
    let login = h
        .get(&format!("/api/auth/v2/login?redirect_uri={REDIRECT}"))
        .await;
    assert_eq!(login.status, StatusCode::TEMPORARY_REDIRECT);
    h.get("/api/auth/v2/callback")
        .await
        .assert_error(400, "invalid_request");
    h.token("").await.assert_error(400, "invalid_request");
    assert_eq!(h.post_form("/api/auth/v2/device", "").await.status, 200);
    assert_eq!(
        h.get("/api/auth/v2/logout").await.status,
        StatusCode::TEMPORARY_REDIRECT
    );
    h.get("/api/auth/v2/userinfo")
        .await
        .assert_error(401, "invalid_token");
    assert_eq!(
        h.post_form("/api/auth/v2/revoke", "token=x").await.status,
        200
    );
    // The wrong method: 405 with a JSON error.
    h.get("/api/auth/v2/token")
        .await
        .assert_error(405, "invalid_request");

    // Renamed and disabled.
    let h = start_with(RoutePaths {
        token: Some("/oauth/token".into()),
        device: None,
        ..RoutePaths::default()
    })
    .await;
    assert_eq!(h.token("").await.status, 404);
    h.post_form("/api/oauth/token", "")
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(h.post_form("/api/auth/v2/device", "").await.status, 404);
    assert_eq!(h.idp.calls(Endpoint::DeviceAuthorization), 0);
    assert_eq!(
        h.get("/api/auth/v2/.well-known/jwks.json").await.status,
        200
    );
}

/// `GET /login` with the client's own challenge; the IdP authorize URL.
async fn login_with_challenge(h: &crate::common::Harness) -> String {
    let challenge = pkce_challenge(VERIFIER);
    let login = h
        .get(&format!(
            "/api/auth/v2/login?redirect_uri={REDIRECT}&code_challenge={challenge}&code_challenge_method=S256&offline_access=true&prompt=consent"
        ))
        .await;
    assert_eq!(login.status, StatusCode::TEMPORARY_REDIRECT);
    login.header(header::LOCATION).to_owned()
}

/// Follow the IdP's authorize URL (it approves at once); the code.
async fn authorize(url: &str) -> String {
    let http = broker_testkit::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = http.get(url).send().await.unwrap();
    assert!(answer.status().is_redirection(), "{}", answer.status());
    let back = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.starts_with(REDIRECT), "{back}");
    query_param(&back, "code").expect("a code")
}

fn code_form(code: &str, verifier: &str) -> String {
    format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={verifier}",
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    )
}

#[tokio::test]
async fn a27_client_pkce_keeps_the_verifier_out_of_state_and_binds_the_nonce() {
    let h = start().await;
    let url = login_with_challenge(&h).await;
    let state = query_param(&url, "state").unwrap();
    assert_eq!(
        state.split('|').count(),
        2,
        "tag|redirect_uri only: {state}"
    );
    assert!(!state.contains(VERIFIER));
    assert_eq!(
        query_param(&url, "code_challenge").as_deref(),
        Some(pkce_challenge(VERIFIER).as_str())
    );
    assert!(
        query_param(&url, "scope")
            .unwrap()
            .contains("offline_access")
    );
    assert_eq!(query_param(&url, "prompt").as_deref(), Some("consent"));

    // As the broker built it: the code logs in.
    let code = authorize(&url).await;
    let ok = h.token(code_form(&code, VERIFIER)).await;
    assert_eq!(ok.status, 200, "{:?}", String::from_utf8_lossy(&ok.body));

    // Another nonce at the IdP (same challenge, so PKCE passes): refused,
    // and no login is stored.
    let mut tampered = url::Url::parse(&url).unwrap();
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "nonce" {
                "not-the-bound-nonce".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let code = authorize(tampered.as_str()).await;
    let before = h.stats().await;
    h.token(code_form(&code, VERIFIER))
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(h.stats().await, before);
}

#[tokio::test]
async fn legacy_clients_get_the_verifier_in_state_and_the_callback_logs_in() {
    let h = start().await;
    let login = h
        .get(&format!("/api/auth/v2/login?redirect_uri={REDIRECT}"))
        .await;
    let url = login.header(header::LOCATION).to_owned();
    let state = query_param(&url, "state").unwrap();
    // py-oidc-auth-client reads the verifier with rpartition("|").
    let verifier = state.rsplit('|').next().unwrap();
    assert_eq!(
        query_param(&url, "code_challenge").as_deref(),
        Some(pkce_challenge(verifier).as_str())
    );
    let code = authorize(&url).await;
    let callback = format!(
        "/api/auth/v2/callback?code={code}&state={}",
        url::form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()
    );
    let tokens = h.get(&callback).await;
    assert_eq!(
        tokens.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&tokens.body)
    );
    assert_eq!(tokens.header(header::CACHE_CONTROL), "no-store");
    assert!(tokens.json()["refresh_token"].is_string());
}
