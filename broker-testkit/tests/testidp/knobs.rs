//! Each knob changes what the IdP answers, observably.

use std::time::{Duration, Instant};

use broker_testkit::nanoidp::{AuthorizationResponse, NanoidpEnv};
use broker_testkit::{Endpoint, TestClient, TestIdpConfig, TestUser};
use reqwest::StatusCode;

use crate::common::{T0, at, claims, rt, start, start_with};

#[tokio::test]
async fn without_reuse_detection_a_replay_is_refused_but_revokes_nothing() {
    let h = start().await;
    h.idp.set_reuse_detection(false);
    let r0 = rt(&h.login().await);
    let r1 = rt(&h.refresh(&r0).await.1);
    assert_eq!(h.refresh(&r0).await.1["error"], "invalid_grant");
    assert_eq!(
        h.refresh(&r1).await.0,
        StatusCode::OK,
        "the family lives on"
    );
}

#[tokio::test]
async fn without_rotation_the_refresh_answer_has_no_refresh_token_and_the_old_one_lives() {
    let h = start_with(|c| c.rotate_refresh_tokens = false).await;
    let r0 = rt(&h.login().await);
    for _ in 0..3 {
        let (status, body) = h.refresh(&r0).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("refresh_token").is_none(), "{body}");
        assert!(body.get("refresh_expires_in").is_none());
    }
    h.idp.set_rotate_refresh_tokens(true);
    let (_, body) = h.refresh(&r0).await;
    assert_ne!(rt(&body), r0);
    assert_eq!(h.refresh(&r0).await.1["error"], "invalid_grant");
}

#[tokio::test]
async fn refresh_tokens_expire_by_the_clock_unless_told_to_omit_the_expiry() {
    let h = start().await;
    h.idp.set_refresh_expires_in(Some(60));
    let body = h.login().await;
    assert_eq!(body["refresh_expires_in"], 60);
    assert_eq!(claims(&rt(&body))["exp"], T0 + 60);
    h.clock.advance(60);
    assert_eq!(h.refresh(&rt(&body)).await.1["error"], "invalid_grant");

    h.idp.set_refresh_expires_in(None);
    let body = h.login().await;
    assert!(body.get("refresh_expires_in").is_none(), "{body}");
    assert!(claims(&rt(&body)).get("exp").is_none());
    h.clock.advance(90 * 86_400);
    let (status, body) = h.refresh(&rt(&body)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("refresh_expires_in").is_none());
}

#[tokio::test]
async fn omit_refresh_token_and_access_token_ttl() {
    let h = start().await;
    h.idp.set_omit_refresh_token(true);
    h.idp.set_access_token_ttl(42);
    let body = h.login().await;
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body.get("refresh_expires_in").is_none());
    assert_eq!(body["expires_in"], 42);
    assert_eq!(claims(&at(&body))["exp"], T0 + 42);
    h.idp.set_omit_refresh_token(false);
    assert!(h.login().await.get("refresh_token").is_some());
}

#[tokio::test]
async fn delay_holds_the_answer_and_zero_ends_it() {
    let h = start().await;
    h.idp.delay(Endpoint::Discovery, Duration::from_millis(300));
    let t = Instant::now();
    h.get_json(Endpoint::Discovery).await;
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    // Other endpoints are not held.
    let t = Instant::now();
    h.get_json(Endpoint::Jwks).await;
    assert!(t.elapsed() < Duration::from_millis(300));
    h.idp.delay(Endpoint::Discovery, Duration::ZERO);
    let t = Instant::now();
    h.get_json(Endpoint::Discovery).await;
    assert!(t.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn fail_next_answers_the_status_n_times_then_recovers() {
    let h = start().await;
    let r0 = rt(&h.login().await);
    h.idp.fail_next(Endpoint::Token, 503, 2);
    for _ in 0..2 {
        let (status, body) = h.refresh(&r0).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "temporarily_unavailable");
    }
    // The failures did not consume the refresh token.
    assert_eq!(h.refresh(&r0).await.0, StatusCode::OK);
    h.idp
        .fail_next_with(Endpoint::Token, 400, "invalid_grant", 1);
    assert_eq!(h.refresh(&r0).await.1["error"], "invalid_grant");
    assert_eq!(h.idp.calls(Endpoint::Token), 1 + 2 + 1 + 1);
}

#[tokio::test]
async fn drop_connection_next_closes_without_an_answer_once() {
    let h = start().await;
    h.idp.drop_connection_next(Endpoint::Jwks);
    let err = h
        .http
        .get(h.url(Endpoint::Jwks))
        .send()
        .await
        .expect_err("no HTTP answer");
    assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );
    assert_eq!(
        h.get_json(Endpoint::Jwks).await["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(h.idp.calls(Endpoint::Jwks), 2);
}

#[tokio::test]
async fn rotate_signing_key_keeps_old_keys_until_retired() {
    let h = start().await;
    let old_kid = h.idp.signing_kid();
    let before = h.login().await;
    let new_kid = h.idp.rotate_signing_key().unwrap();
    assert_ne!(old_kid, new_kid);
    let kids: Vec<String> = h.get_json(Endpoint::Jwks).await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, [old_kid.clone(), new_kid.clone()]);
    let after = h.login().await;
    let kid_of = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    assert_eq!(kid_of(&at(&after)), new_kid);
    assert_eq!(h.userinfo(&at(&before)).await, StatusCode::OK);
    h.idp.retire_old_signing_keys();
    assert_eq!(
        h.get_json(Endpoint::Jwks).await["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(h.userinfo(&at(&before)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.userinfo(&at(&after)).await, StatusCode::OK);
}

#[tokio::test]
async fn counters_count_per_endpoint_and_reset() {
    let h = start().await;
    h.get_json(Endpoint::Discovery).await;
    h.get_json(Endpoint::Jwks).await;
    h.get_json(Endpoint::Jwks).await;
    let body = h.login().await;
    h.userinfo(&at(&body)).await;
    assert_eq!(
        Endpoint::ALL.map(|e| h.idp.calls(e)),
        [1, 2, 1, 1, 0, 1, 0, 0],
        "{:?}",
        Endpoint::ALL
    );
    h.idp.reset_calls();
    assert!(Endpoint::ALL.iter().all(|e| h.idp.calls(*e) == 0));
}

#[tokio::test]
async fn users_and_clients_can_be_changed_at_run_time() {
    let h = start().await;
    h.idp
        .upsert_user(TestUser::new("carol").with_roles(["auditor"]));
    h.idp
        .upsert_client(TestClient::public("cli").with_redirect_uris(["http://127.0.0.1:9/only"]));
    let location = h.authorize(&[("login_hint", "carol")]).await;
    let code = crate::common::query_param(&location, "code").unwrap();
    let (_, body) = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", crate::common::REDIRECT),
            ("code_verifier", crate::common::VERIFIER),
        ])
        .await;
    assert_eq!(
        claims(&at(&body))["realm_access"]["roles"],
        serde_json::json!(["auditor"])
    );
    // A registered redirect list is enforced, without redirecting.
    let r = h
        .http
        .get(h.url(Endpoint::Authorize))
        .query(&[
            ("client_id", "cli"),
            ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
            ("response_type", "code"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The password grant reads the user's password.
    let (status, _) = h
        .token(&[
            ("grant_type", "password"),
            ("username", "carol"),
            ("password", "carol-pw"),
        ])
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = h
        .token(&[
            ("grant_type", "password"),
            ("username", "carol"),
            ("password", "wrong"),
        ])
        .await;
    assert_eq!(body["error"], "invalid_grant");
}

#[test]
fn debug_output_shows_no_secret() {
    let config = TestIdpConfig::default();
    let printed = format!("{config:?}");
    assert!(printed.contains("alice"), "{printed}");
    for secret in ["alice-pw", "bob-pw", "broker-secret"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    let env = NanoidpEnv {
        url: "http://127.0.0.1:1".into(),
        client_id: "demo-client".into(),
        client_secret: "demo-secret".into(),
        username: "u".into(),
        password: "hunter2".into(),
    };
    let printed = format!("{env:?}");
    assert!(
        !printed.contains("demo-secret") && !printed.contains("hunter2"),
        "{printed}"
    );
    let response = AuthorizationResponse {
        redirect: "http://x/cb?code=the-code".into(),
        code: "the-code".into(),
        state: Some("s".into()),
    };
    assert!(!format!("{response:?}").contains("the-code"));
}
