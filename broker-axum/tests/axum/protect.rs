//! A25 (scope requirement: 403 with the scope named; missing, invalid and
//! expired tokens: 401 `invalid_token`; `Option<Auth>` anonymous) and A26
//! (claim paths).

use axum::http::header;
use broker_core::MemoryStore;

use crate::common::{Harness, claims, open_broker, s, start};

/// Tokens that must not authenticate, each with a name: missing is
/// handled apart. Returns (name, token).
async fn bad_tokens(h: &Harness, expired: &str) -> Vec<(&'static str, String)> {
    // Same issuer URL, another key (another store): a foreign token.
    let other = open_broker(&h.idp, &MemoryStore::new(), &h.clock).await;
    let mut c = h.broker.issuer().claims("mallory", "jti-x");
    c.scope = Some("admin profile".into());
    let foreign = other.issuer().mint(&c).unwrap();
    let mine = h.broker.issuer().mint(&c).unwrap();
    let mut parts: Vec<&str> = mine.split('.').collect();
    let forged_payload = {
        use base64::Engine as _;
        let mut v = claims(&mine);
        v["sub"] = "admin".into();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    parts[1] = &forged_payload;
    vec![
        ("expired", expired.to_owned()),
        ("foreign key", foreign),
        ("payload changed", parts.join(".")),
        ("garbage", "garbage".into()),
        ("three garbage parts", "a.b.c".into()),
        ("not a b64token", "a b\"c".into()),
        ("huge", "a".repeat(20_000)),
        ("empty", String::new()),
    ]
}

#[tokio::test]
async fn a25_scopes_answer_403_and_bad_tokens_401_with_www_authenticate() {
    let h = start().await;
    let tokens = h.device_login().await;
    let access = s(&tokens["access_token"]).to_owned();
    let scope = claims(&access)["scope"].as_str().unwrap_or("").to_owned();
    assert!(scope.split(' ').any(|s| s == "profile"), "{scope}");
    assert!(!scope.split(' ').any(|s| s == "admin"), "{scope}");

    assert_eq!(h.get_bearer("/profile", &access).await.status, 200);
    assert_eq!(h.get_bearer("/user-role", &access).await.status, 200);
    let denied = h.get_bearer("/admin", &access).await;
    denied.assert_error(403, "insufficient_scope");
    assert_eq!(
        denied.header(header::WWW_AUTHENTICATE),
        "Bearer error=\"insufficient_scope\", scope=\"admin\""
    );
    let me = h.get_bearer("/me", &access).await;
    assert_eq!(me.status, 200);
    let maybe = h.get_bearer("/maybe", &access).await;
    assert_eq!(maybe.body, me.body, "Option<Auth> sees the user");

    // Missing: 401 with a challenge and no error code (RFC 6750 §3.1).
    for path in ["/me", "/admin", "/live"] {
        let missing = h.get(path).await;
        missing.assert_error(401, "invalid_token");
        assert_eq!(
            missing.header(header::WWW_AUTHENTICATE),
            format!("Bearer realm=\"{}\"", crate::common::ISSUER)
        );
    }
    assert_eq!(h.get("/maybe").await.body, b"anonymous");

    // Expired (moved past exp + leeway), foreign, forged, garbage.
    let before = h.stats().await;
    h.clock.advance(900 + 30 + 1);
    let expired = access.clone();
    let bad = bad_tokens(&h, &expired).await;
    let stats = h.stats().await; // the other broker wrote to its own store only
    assert_eq!(stats, before);
    for (what, token) in &bad {
        for path in [
            "/me",
            "/admin",
            "/profile",
            "/realm-admin",
            "/live",
            "/api/auth/v2/userinfo",
        ] {
            let a = h.get_bearer(path, token).await;
            a.assert_error(401, "invalid_token");
            assert_eq!(
                a.header(header::WWW_AUTHENTICATE),
                "Bearer error=\"invalid_token\"",
                "{what} at {path}"
            );
        }
        assert_eq!(
            h.get_bearer("/maybe", token).await.body,
            b"anonymous",
            "{what}"
        );
    }
    let expired_answer = h.get_bearer("/me", &expired).await.json();
    assert_eq!(expired_answer["detail"], "Token has expired.");
    // Two Authorization headers: 400 invalid_request.
    let two = h
        .send(
            axum::http::Request::get("/me")
                .header(header::AUTHORIZATION, "Bearer a")
                .header(header::AUTHORIZATION, "Bearer b")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    two.assert_error(400, "invalid_request");
    assert_eq!(h.stats().await, before, "refusals write nothing");
}

#[tokio::test]
async fn a26_claim_rules_follow_paths() {
    let h = start().await;
    // A token with email "admin" and no realm_access: not an admin.
    let mut c = h.broker.issuer().claims("eve", "jti-1");
    c.email = Some("admin".into());
    c.roles = vec!["admin".into()];
    let eve = h.broker.issuer().mint(&c).unwrap();
    let denied = h.get_bearer("/realm-admin", &eve).await;
    denied.assert_error(403, "insufficient_scope");
    assert_eq!(denied.json()["detail"], "Insufficient claims.");
    // The same with realm_access.roles ∋ admin: allowed.
    c.extra.insert(
        "realm_access".into(),
        serde_json::json!({"roles": ["user", "admin"]}),
    );
    let admin = h.broker.issuer().mint(&c).unwrap();
    assert_eq!(h.get_bearer("/realm-admin", &admin).await.status, 200);
    // Roles: "user" is required; eve has only "admin".
    h.get_bearer("/user-role", &eve)
        .await
        .assert_error(403, "insufficient_scope");
}
