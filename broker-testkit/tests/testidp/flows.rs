//! The flows a broker drives: discovery, code with PKCE, refresh with
//! rotation and reuse detection, device code, userinfo, logout, revocation.

use broker_testkit::{DEFAULT_CLIENT_ID, DEFAULT_PUBLIC_CLIENT_ID, Endpoint, pkce_challenge};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{REDIRECT, T0, VERIFIER, at, claims, query_param, rt, start, start_with};

#[tokio::test]
async fn discovery_names_every_endpoint_below_a_keycloak_like_issuer() {
    let h = start_with(|c| c.issuer_path = "/realms/test".into()).await;
    assert_eq!(h.idp.issuer(), format!("{}/realms/test", h.idp.url()));
    let d = h.get_json(Endpoint::Discovery).await;
    assert_eq!(d["issuer"], h.idp.issuer());
    for (field, endpoint) in [
        ("authorization_endpoint", Endpoint::Authorize),
        ("token_endpoint", Endpoint::Token),
        (
            "device_authorization_endpoint",
            Endpoint::DeviceAuthorization,
        ),
        ("userinfo_endpoint", Endpoint::Userinfo),
        ("end_session_endpoint", Endpoint::EndSession),
        ("revocation_endpoint", Endpoint::Revoke),
        ("jwks_uri", Endpoint::Jwks),
    ] {
        let url = d[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing"));
        assert_eq!(url, h.idp.endpoint_url(endpoint));
        assert!(url.starts_with(h.idp.issuer()), "{field} below the issuer");
    }
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let grants = d["grant_types_supported"].to_string();
    for g in ["authorization_code", "refresh_token", "device_code"] {
        assert!(grants.contains(g), "{g} in {grants}");
    }
    // Paths outside the issuer are not served.
    let outside = h
        .http
        .get(format!("{}/jwks", h.idp.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn code_flow_gives_keycloak_shaped_tokens_signed_by_a_published_key() {
    let h = start().await;
    let location = h.authorize(&[]).await;
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some("st-1"));
    assert_eq!(
        query_param(&location, "iss").as_deref(),
        Some(h.idp.issuer())
    );
    let code = query_param(&location, "code").unwrap();
    let (status, body) = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["refresh_expires_in"], 1800);

    let jwks: JwkSet = serde_json::from_value(h.get_json(Endpoint::Jwks).await).unwrap();
    let verify = |token: &str| -> Value {
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let key = DecodingKey::from_jwk(jwks.find(&kid).expect("kid in JWKS")).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &key, &v)
            .unwrap()
            .claims
    };
    let access = verify(body["access_token"].as_str().unwrap());
    assert_eq!(access["iss"], h.idp.issuer());
    assert_eq!(access["sub"], "sub-alice");
    assert_eq!(access["iat"], T0);
    assert_eq!(access["exp"], T0 + 300);
    assert_eq!(access["aud"], "account");
    assert_eq!(access["azp"], DEFAULT_CLIENT_ID);
    assert_eq!(
        access["realm_access"]["roles"],
        serde_json::json!(["user", "admin"])
    );
    assert_eq!(
        access["resource_access"][DEFAULT_CLIENT_ID]["roles"],
        serde_json::json!(["reader"])
    );
    assert_eq!(access["groups"], serde_json::json!(["/staff"]));
    assert_eq!(access["preferred_username"], "alice");
    assert_eq!(access["email"], "alice@example.test");
    assert_eq!(access["scope"], "openid profile email");
    let sid = access["sid"].as_str().expect("sid").to_owned();

    let id = verify(body["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], DEFAULT_CLIENT_ID);
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["sid"], sid);
    assert_eq!(body["session_state"], sid);

    let refresh = verify(body["refresh_token"].as_str().unwrap());
    assert_eq!(refresh["typ"], "Refresh");
    assert_eq!(refresh["sid"], sid);
    assert_eq!(refresh["exp"], T0 + 1800);
}

#[tokio::test]
async fn pkce_mismatch_missing_verifier_and_bad_challenges_are_refused() {
    let h = start().await;
    for verifier in [
        Some("another-verifier-of-at-least-43-characters-00000"),
        None,
    ] {
        let code = query_param(&h.authorize(&[]).await, "code").unwrap();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        let (status, body) = h.token(&form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant");
        // The code is used up by the failed attempt.
        let mut retry = form.clone();
        retry.retain(|(k, _)| *k != "code_verifier");
        retry.push(("code_verifier", VERIFIER));
        assert_eq!(h.token(&retry).await.1["error"], "invalid_grant");
    }
    for bad in [
        vec![("code_challenge_method", "plain")],
        vec![("code_challenge", "")],
    ] {
        let location = h.authorize(&bad).await;
        assert_eq!(
            query_param(&location, "error").as_deref(),
            Some("invalid_request")
        );
        assert_eq!(query_param(&location, "state").as_deref(), Some("st-1"));
        assert_eq!(query_param(&location, "code"), None);
    }
}

#[tokio::test]
async fn codes_are_single_use_expire_by_the_clock_and_check_redirect_uri() {
    let h = start().await;
    let exchange = |code: String, redirect: &'static str| {
        let h = &h;
        async move {
            h.token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", VERIFIER),
            ])
            .await
        }
    };
    let code = query_param(&h.authorize(&[]).await, "code").unwrap();
    assert_eq!(exchange(code.clone(), REDIRECT).await.0, StatusCode::OK);
    assert_eq!(exchange(code, REDIRECT).await.1["error"], "invalid_grant");

    let code = query_param(&h.authorize(&[]).await, "code").unwrap();
    h.clock.advance(61);
    assert_eq!(exchange(code, REDIRECT).await.1["error"], "invalid_grant");

    let code = query_param(&h.authorize(&[]).await, "code").unwrap();
    let (status, body) = exchange(code, "http://127.0.0.1:9/other").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn client_authentication_basic_for_confidential_body_id_for_public() {
    let h = start().await;
    // Public client: client_id in the body, no secret.
    let challenge = pkce_challenge(VERIFIER);
    let location = h
        .authorize(&[
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("code_challenge", &challenge),
        ])
        .await;
    let code = query_param(&location, "code").unwrap();
    let r = h
        .http
        .post(h.url(Endpoint::Token))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Confidential client: body id alone, body secret, wrong secret → 401.
    for (basic, form_extra) in [
        (None, vec![("client_id", DEFAULT_CLIENT_ID)]),
        (
            None,
            vec![
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", "broker-secret"),
            ],
        ),
        (Some("wrong"), vec![]),
    ] {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", "x")];
        form.extend(form_extra);
        let mut req = h.http.post(h.url(Endpoint::Token)).form(&form);
        if let Some(secret) = basic {
            req = req.basic_auth(DEFAULT_CLIENT_ID, Some(secret));
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key("www-authenticate"));
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    }
}

#[tokio::test]
async fn login_hint_picks_the_user_and_an_unknown_one_is_refused() {
    let h = start().await;
    let location = h.authorize(&[("login_hint", "bob")]).await;
    let code = query_param(&location, "code").unwrap();
    let (_, body) = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(claims(&at(&body))["sub"], "sub-bob");
    let location = h.authorize(&[("login_hint", "mallory")]).await;
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn refresh_rotates_and_a_replay_revokes_the_whole_family() {
    let h = start().await;
    let other = h.login().await; // another login, must survive
    let r0 = rt(&h.login().await);
    let before = h.idp.calls(Endpoint::Token);
    let (s1, b1) = h.refresh(&r0).await;
    assert_eq!(s1, StatusCode::OK, "{b1}");
    let r1 = rt(&b1);
    let (s2, b2) = h.refresh(&r1).await;
    assert_eq!(s2, StatusCode::OK, "{b2}");
    let r2 = rt(&b2);
    assert!(r0 != r1 && r1 != r2 && r0 != r2, "each refresh rotates");
    assert_eq!(h.idp.calls(Endpoint::Token) - before, 2);
    assert_eq!(h.userinfo(&at(&b2)).await, StatusCode::OK);

    // Replaying R0 revokes R0's descendants: R2 and R2's access token.
    let (status, body) = h.refresh(&r0).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, body) = h.refresh(&r2).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(h.userinfo(&at(&b2)).await, StatusCode::UNAUTHORIZED);
    // The other login is untouched.
    assert_eq!(h.refresh(&rt(&other)).await.0, StatusCode::OK);
    assert_eq!(h.idp.active_logins(), 1);
}

#[tokio::test]
async fn device_flow_pending_slow_down_approved_redeemed() {
    let h = start().await;
    let auth = |scope: &'static str| {
        let h = &h;
        async move {
            let r = h
                .http
                .post(h.url(Endpoint::DeviceAuthorization))
                .basic_auth(DEFAULT_CLIENT_ID, Some("broker-secret"))
                .form(&[("scope", scope)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    let d = auth("openid offline_access").await;
    assert_eq!(d["interval"], 5);
    assert_eq!(d["expires_in"], 600);
    let user_code = d["user_code"].as_str().unwrap().to_owned();
    assert!(
        d["verification_uri_complete"]
            .as_str()
            .unwrap()
            .ends_with(&user_code)
    );
    let device_code = d["device_code"].as_str().unwrap().to_owned();
    let poll = async || {
        h.token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", &device_code),
        ])
        .await
    };

    assert_eq!(poll().await.1["error"], "authorization_pending");
    // Within the interval: slow_down, and the interval grows to 10 s.
    assert_eq!(poll().await.1["error"], "slow_down");
    h.clock.advance(5);
    assert_eq!(poll().await.1["error"], "slow_down", "5 s < 10 s; now 15 s");
    h.clock.advance(15);
    assert_eq!(poll().await.1["error"], "authorization_pending");

    h.idp.approve(&user_code.to_lowercase()).unwrap();
    assert!(matches!(
        h.idp.deny(&user_code),
        Err(broker_testkit::TestIdpError::NotPending)
    ));
    h.clock.advance(15);
    let (status, body) = poll().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(claims(&at(&body))["sub"], "sub-alice");
    assert!(body["id_token"].is_string());
    h.clock.advance(15);
    assert_eq!(
        poll().await.1["error"],
        "invalid_grant",
        "a device code is redeemed once"
    );

    // Denied, then expired.
    let d = auth("openid").await;
    h.idp.deny(d["user_code"].as_str().unwrap()).unwrap();
    let device_code = d["device_code"].as_str().unwrap().to_owned();
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code.as_str()),
    ];
    assert_eq!(h.token(&form).await.1["error"], "access_denied");
    let d = auth("openid").await;
    let device_code = d["device_code"].as_str().unwrap().to_owned();
    h.clock.advance(600);
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code.as_str()),
    ];
    assert_eq!(h.token(&form).await.1["error"], "expired_token");
    assert!(matches!(
        h.idp.approve("NOPE-NOPE"),
        Err(broker_testkit::TestIdpError::UnknownUserCode)
    ));
}

#[tokio::test]
async fn userinfo_checks_expiry_by_the_clock_and_rfc7009_revocation() {
    let h = start().await;
    let body = h.login().await;
    let r = h
        .http
        .get(h.url(Endpoint::Userinfo))
        .bearer_auth(at(&body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let info: Value = r.json().await.unwrap();
    assert_eq!(
        (info["sub"].as_str(), info["preferred_username"].as_str()),
        (Some("sub-alice"), Some("alice"))
    );
    h.clock.advance(300);
    assert_eq!(
        h.userinfo(&at(&body)).await,
        StatusCode::UNAUTHORIZED,
        "expired by the IdP clock"
    );

    let revoke = |token: String| {
        let h = &h;
        async move {
            h.http
                .post(h.url(Endpoint::Revoke))
                .basic_auth(DEFAULT_CLIENT_ID, Some("broker-secret"))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let body = h.login().await;
    assert_eq!(revoke(at(&body)).await, StatusCode::OK);
    assert_eq!(h.userinfo(&at(&body)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.refresh(&rt(&body)).await.0,
        StatusCode::OK,
        "revoking the AT leaves the login"
    );
    let body = h.login().await;
    assert_eq!(revoke(rt(&body)).await, StatusCode::OK);
    assert_eq!(h.refresh(&rt(&body)).await.1["error"], "invalid_grant");
    assert_eq!(
        revoke("not-a-token".into()).await,
        StatusCode::OK,
        "RFC 7009 §2.2"
    );
}

#[tokio::test]
async fn end_session_ends_the_login_of_the_id_token_hint_and_redirects() {
    let h = start().await;
    let body = h.login().await;
    let r = h
        .http
        .get(h.url(Endpoint::EndSession))
        .query(&[
            ("id_token_hint", body["id_token"].as_str().unwrap()),
            ("post_logout_redirect_uri", "http://127.0.0.1:9/bye"),
            ("state", "s9"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], "http://127.0.0.1:9/bye?state=s9");
    assert_eq!(h.refresh(&rt(&body)).await.1["error"], "invalid_grant");
    assert_eq!(h.userinfo(&at(&body)).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revoke_user_ends_every_login_of_that_user_only() {
    let h = start().await;
    let a1 = h.login().await;
    let a2 = h.login().await;
    let location = h.authorize(&[("login_hint", "bob")]).await;
    let code = query_param(&location, "code").unwrap();
    let (_, bob) = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(h.idp.revoke_user("sub-alice"), 2);
    for body in [&a1, &a2] {
        assert_eq!(h.refresh(&rt(body)).await.1["error"], "invalid_grant");
        assert_eq!(h.userinfo(&at(body)).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(h.refresh(&rt(&bob)).await.0, StatusCode::OK);
    // A new login of the revoked user works.
    assert_eq!(h.refresh(&rt(&h.login().await)).await.0, StatusCode::OK);
}
