//! The other flows against the TestIdp: the browser login with the
//! verifier carried in `state`, logout, RFC 7009 revocation, userinfo,
//! device flow and token exchange.

use broker_service::{GrantError, LoginRequest, LogoutRequest, TokenRequest, Verification};
use broker_testkit::Endpoint;

use crate::capture;
use crate::common::{CLIENT_ID, CLIENT_SECRET, Harness, REDIRECT, authorize, note_tokens, rt, sid};

/// The browser flow of legacy clients: no `code_challenge`, the broker
/// makes the verifier and carries it in the signed `state`; the callback
/// logs in. A tampered or stale state is refused, and a code works once.
pub async fn browser_login_with_verifier_in_state() {
    let h = Harness::fake_clock().await;
    let request = LoginRequest {
        redirect_uri: REDIRECT.into(),
        ..LoginRequest::default()
    };
    let url = h.broker.login_url(&request).expect("a login URL");
    let (code, state) = authorize(&h.http, url).await;
    let verifier = state.rsplit('|').next().expect("the verifier in state");
    capture::note("code_verifier (in state)", verifier);
    assert_eq!(verifier.len(), 43, "a PKCE verifier: {}", verifier.len());
    let tampered = format!("{state}x");
    assert!(
        h.broker.callback(&code, &tampered).await.is_err(),
        "a tampered state"
    );
    let tokens = h
        .broker
        .callback(&code, &state)
        .await
        .expect("the callback logs in");
    note_tokens(&tokens);
    h.refresh(&rt(&tokens))
        .await
        .expect("its refresh token works");
    let err = h
        .broker
        .callback(&code, &state)
        .await
        .expect_err("a code works once");
    assert!(matches!(err, GrantError::InvalidGrant(_)), "{err:?}");

    let url = h.broker.login_url(&request).expect("a login URL");
    let (code, state) = authorize(&h.http, url).await;
    capture::note(
        "code_verifier (in state)",
        state.rsplit('|').next().unwrap_or(""),
    );
    h.advance(601);
    assert!(
        h.broker.callback(&code, &state).await.is_err(),
        "a state older than 10 min"
    );

    let bad = LoginRequest {
        redirect_uri: "http://evil.example:80/callback".into(),
        ..LoginRequest::default()
    };
    assert!(matches!(
        h.broker.login_url(&bad),
        Err(GrantError::RedirectNotAllowed)
    ));
}

/// Logout ends the login (family logged out, no live grant, refresh and
/// stateful verification refused), revokes the IdP's refresh token (the
/// IdP's login is over), and answers the IdP's end-session URL with
/// `client_id`, `id_token_hint` and the allow-listed redirect. An
/// unlisted redirect is refused before anything is revoked.
pub async fn logout_revokes_the_login_and_the_idp_token() {
    let h = Harness::fake_clock().await;
    let t0 = h.login().await;
    let t1 = h.refresh(&rt(&t0)).await.expect("a refresh");
    let sid = sid(&h.broker, &t0);
    assert_eq!(h.idp.active_logins(), 1);

    let unlisted = LogoutRequest {
        sid: Some(sid.clone()),
        post_logout_redirect_uri: Some("https://evil.example/bye".into()),
        ..LogoutRequest::default()
    };
    let err = h
        .broker
        .logout(unlisted)
        .await
        .expect_err("an unlisted redirect");
    assert!(matches!(err, GrantError::RedirectNotAllowed), "{err:?}");
    assert_eq!(
        h.inventory().await.family(&sid).state,
        "active",
        "nothing revoked"
    );

    h.idp.reset_calls();
    let url = h
        .broker
        .logout(LogoutRequest {
            sid: Some(sid.clone()),
            post_logout_redirect_uri: Some("http://127.0.0.1:8080/bye".into()),
            ..LogoutRequest::default()
        })
        .await
        .expect("logout")
        .expect("an end-session URL");
    assert!(
        url.as_str()
            .starts_with(&h.idp.endpoint_url(Endpoint::EndSession)),
        "{url}"
    );
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(
        q.get("post_logout_redirect_uri").map(String::as_str),
        Some("http://127.0.0.1:8080/bye")
    );
    let hint = q.get("id_token_hint").expect("an id_token_hint");
    capture::note_jwt("IdP ID token", hint);
    assert_eq!(h.idp.calls(Endpoint::Revoke), 1, "the IdP token revoked");
    assert_eq!(h.idp.active_logins(), 0, "the IdP's login is over");
    let view = h.inventory().await.family(&sid);
    assert_eq!((view.state.as_str(), view.live), ("logged_out", 0));
    assert!(h.refresh(&rt(&t1)).await.is_err(), "refresh after logout");
    assert!(
        h.broker
            .verify(&t1.access_token, Verification::Stateful)
            .await
            .is_err()
    );

    // By refresh token, without a redirect.
    let t = h.login().await;
    let url = h
        .broker
        .logout(LogoutRequest {
            refresh_token: Some(rt(&t).into()),
            ..LogoutRequest::default()
        })
        .await
        .expect("logout");
    assert!(url.is_some(), "the IdP has an end-session endpoint");
    assert_eq!(
        h.inventory().await.family(&sid_of(&h, &t)).state,
        "logged_out"
    );
    assert_eq!(h.idp.active_logins(), 0);
}

fn sid_of(h: &Harness, t: &broker_service::TokenResponse) -> String {
    sid(&h.broker, t)
}

/// RFC 7009: revoking a refresh token ends its login; unknown or garbage
/// tokens are not an error; a wrong secret revokes nothing.
pub async fn revocation_ends_the_login() {
    let h = Harness::fake_clock().await;
    let t0 = h.login().await;
    let (jti, _) = rt(&t0)
        .split_once('.')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .unwrap();
    h.broker
        .revoke(&format!("{jti}.{}", "B".repeat(43)))
        .await
        .expect("a wrong secret");
    h.broker.revoke("garbage").await.expect("garbage");
    assert_eq!(
        h.inventory().await.family(&sid(&h.broker, &t0)).state,
        "active"
    );
    h.broker.revoke(&rt(&t0)).await.expect("revoke");
    let view = h.inventory().await.family(&sid(&h.broker, &t0));
    assert_eq!((view.state.as_str(), view.live), ("logged_out", 0));
    assert!(h.refresh(&rt(&t0)).await.is_err());
}

/// `/userinfo` answers from the sealed login: no call to the IdP at all.
pub async fn userinfo_makes_no_idp_call() {
    let h = Harness::fake_clock().await;
    let t = h.login().await;
    let verified = h
        .broker
        .verify(&t.access_token, Verification::Stateful)
        .await
        .expect("a valid token");
    assert!(
        verified.claims.roles.iter().any(|r| r == "admin"),
        "Keycloak roles flattened"
    );
    h.idp.reset_calls();
    let info = h.broker.userinfo(&verified).await.expect("userinfo");
    assert_eq!(info.username, "alice");
    assert_eq!(info.pw_name, "alice");
    assert_eq!(info.email, "alice@example.test");
    let calls: u64 = Endpoint::ALL.iter().map(|e| h.idp.calls(*e)).sum();
    assert_eq!(calls, 0, "userinfo called the IdP");
}

/// Device flow: pending, slow_down when polled too fast, then tokens once
/// approved; a denial ends in `access_denied`, an old code in
/// `expired_token`.
pub async fn device_flow() {
    let h = Harness::fake_clock().await;
    let start = h
        .broker
        .start_device()
        .await
        .expect("a device authorization");
    capture::note("device_code", start.device_code.as_str());
    let poll = |code: String| {
        let broker = h.broker.clone();
        async move {
            broker
                .grant(TokenRequest::Device {
                    device_code: code.into(),
                })
                .await
        }
    };
    let code = start.device_code.as_str().to_owned();
    let err = poll(code.clone()).await.expect_err("not approved yet");
    assert!(matches!(err, GrantError::AuthorizationPending), "{err:?}");
    let err = poll(code.clone()).await.expect_err("polled at once again");
    assert!(matches!(err, GrantError::SlowDown), "{err:?}");
    h.idp.approve(&start.user_code).expect("approve");
    h.advance(11);
    let tokens = poll(code.clone()).await.expect("approved");
    note_tokens(&tokens);
    let t1 = h
        .refresh(&rt(&tokens))
        .await
        .expect("a device login refreshes");
    let verified = h
        .broker
        .verify(&t1.access_token, Verification::Stateful)
        .await;
    assert_eq!(verified.expect("valid").claims.sub, "sub-alice");
    h.advance(11);
    assert!(poll(code).await.is_err(), "a device code works once");

    let denied = h
        .broker
        .start_device()
        .await
        .expect("a device authorization");
    capture::note("device_code", denied.device_code.as_str());
    h.idp.deny(&denied.user_code).expect("deny");
    let err = poll(denied.device_code.as_str().to_owned())
        .await
        .expect_err("denied");
    assert!(matches!(err, GrantError::AccessDenied), "{err:?}");

    let old = h
        .broker
        .start_device()
        .await
        .expect("a device authorization");
    capture::note("device_code", old.device_code.as_str());
    h.advance(601);
    let err = poll(old.device_code.as_str().to_owned())
        .await
        .expect_err("expired");
    assert!(matches!(err, GrantError::ExpiredToken), "{err:?}");
}

/// RFC 8693: an IdP access token for a broker access token (no refresh
/// token, `issued_token_type` set); a garbage or expired subject token is
/// `invalid_grant`.
pub async fn token_exchange() {
    let h = Harness::fake_clock().await;
    let r = h
        .http
        .post(h.idp.endpoint_url(Endpoint::Token))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-pw"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .expect("the IdP's password grant");
    let body: serde_json::Value = r.json().await.expect("JSON");
    let idp_at = body["access_token"]
        .as_str()
        .expect("an IdP access token")
        .to_owned();
    capture::note_jwt("IdP access token", &idp_at);
    if let Some(t) = body["refresh_token"].as_str() {
        capture::note_jwt("IdP refresh token", t);
    }
    let exchange = |t: String| {
        h.broker.grant(TokenRequest::Exchange {
            subject_token: t.into(),
        })
    };
    let tokens = exchange(idp_at.clone()).await.expect("an exchange");
    note_tokens(&tokens);
    assert_eq!(
        tokens.issued_token_type,
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert!(tokens.refresh_token.is_none());
    let verified = h
        .broker
        .verify(&tokens.access_token, Verification::Stateless)
        .await
        .expect("our token");
    assert_eq!(verified.claims.sub, "sub-alice");
    assert!(verified.claims.roles.iter().any(|r| r == "admin"));
    let err = exchange("not-a-token".into()).await.expect_err("garbage");
    assert!(matches!(err, GrantError::InvalidGrant(_)), "{err:?}");
    h.advance(300 + 31);
    let err = exchange(idp_at).await.expect_err("an expired IdP token");
    assert!(matches!(err, GrantError::InvalidGrant(_)), "{err:?}");
}
