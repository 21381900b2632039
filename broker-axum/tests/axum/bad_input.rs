//! Every route against bad input: 64 KiB bodies, malformed forms,
//! duplicate fields, redirect URIs off the allow-list, expired, foreign
//! and garbage tokens. Each answers its status with a JSON error, does not
//! panic, and writes nothing to the store (its stats are unchanged).

use axum::body::Body;
use axum::http::{Request, header};
use broker_axum::MAX_FORM_BODY;
use broker_testkit::Endpoint;

use crate::common::{Answer, Harness, REDIRECT, s, start};

/// Send `request` and check the answer is the error `status`/`code` and
/// that the store did not change.
async fn refused(
    h: &Harness,
    what: &str,
    request: Request<Body>,
    status: u16,
    code: &str,
) -> Answer {
    let before = h.stats().await;
    let answer = h.send(request).await;
    assert_eq!(
        answer.status.as_u16(),
        status,
        "{what}: {:?}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.assert_error(status, code);
    assert_eq!(h.stats().await, before, "{what} wrote to the store");
    answer
}

fn form(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.into())
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn form_routes_refuse_big_malformed_and_duplicate_bodies() {
    let h = start().await;
    let tokens = h.device_login().await;
    let refresh = s(&tokens["refresh_token"]).to_owned();
    let access = s(&tokens["access_token"]).to_owned();
    h.idp.reset_calls();

    for uri in ["/api/auth/v2/token", "/api/auth/v2/revoke"] {
        // 64 KiB + 1, with and without a declared length.
        let big = format!("refresh_token={refresh}&x={}", "a".repeat(MAX_FORM_BODY));
        refused(
            &h,
            "big body",
            form(uri, big.clone()),
            413,
            "invalid_request",
        )
        .await;
        let chunked = Body::from_stream(futures_stream(big.into_bytes()));
        refused(
            &h,
            "big chunked body",
            form(uri, chunked),
            413,
            "invalid_request",
        )
        .await;
        // Exactly 64 KiB of a field nobody reads: read, then refused as
        // missing what it needs.
        let exact = format!("x={}", "a".repeat(MAX_FORM_BODY - 2));
        assert_eq!(exact.len(), MAX_FORM_BODY);
        refused(&h, "64 KiB", form(uri, exact), 400, "invalid_request").await;
        // Malformed forms.
        for junk in [
            &b"%"[..],
            b"&&&==&",
            b"=",
            b"\xff\xfe\x00",
            b"token=%FF%FE&refresh_token=%FF",
        ] {
            refused(&h, "junk", form(uri, junk.to_vec()), 400, "invalid_request").await;
        }
        // Not a form.
        let json = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(format!("{{\"refresh_token\":\"{refresh}\"}}")))
            .unwrap();
        refused(&h, "JSON body", json, 400, "invalid_request").await;
        let untyped = Request::post(uri).body(Body::from("token=x")).unwrap();
        refused(&h, "no content type", untyped, 400, "invalid_request").await;
        let latin1 = Request::post(uri)
            .header(
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=latin1",
            )
            .body(Body::from("token=x"))
            .unwrap();
        refused(&h, "latin1", latin1, 400, "invalid_request").await;
    }

    // Duplicate fields, under one name or under both names of one field.
    for dup in [
        format!("refresh_token={refresh}&refresh_token={refresh}"),
        format!("refresh_token={refresh}&refresh-token={refresh}"),
        format!("grant_type=refresh_token&grant_type=refresh_token&refresh_token={refresh}"),
        "device_code=a&device-code=b".to_owned(),
        "code=a&code=b&redirect_uri=x&code_verifier=y".to_owned(),
    ] {
        refused(
            &h,
            &dup,
            form("/api/auth/v2/token", dup.clone()),
            400,
            "invalid_request",
        )
        .await;
    }
    refused(
        &h,
        "two tokens",
        form("/api/auth/v2/revoke", "token=a&token=b"),
        400,
        "invalid_request",
    )
    .await;
    refused(
        &h,
        "no token",
        form("/api/auth/v2/revoke", ""),
        400,
        "invalid_request",
    )
    .await;
    // Unknown grant type; a code without its verifier.
    refused(
        &h,
        "password grant",
        form("/api/auth/v2/token", "grant_type=password&username=a"),
        400,
        "unsupported_grant_type",
    )
    .await;
    refused(
        &h,
        "code alone",
        form("/api/auth/v2/token", "grant_type=authorization_code&code=x"),
        400,
        "invalid_request",
    )
    .await;

    // Garbage, foreign and access tokens as refresh tokens (A3).
    for bad in [
        "garbage".to_owned(),
        "a.b".to_owned(),
        format!("{}.wrong-secret", refresh.split('.').next().unwrap()),
        access.clone(),
        "x".repeat(10_000),
    ] {
        refused(
            &h,
            "bad refresh token",
            form("/api/auth/v2/token", format!("refresh_token={bad}")),
            400,
            "invalid_grant",
        )
        .await;
    }
    // A code redirect URI off the allow-list: refused before the IdP.
    let off = "grant_type=authorization_code&code=c&redirect_uri=https%3A%2F%2Fevil.test%2Fcallback&code_verifier=".to_owned()
        + &"v".repeat(43);
    refused(
        &h,
        "redirect off the list",
        form("/api/auth/v2/token", off),
        400,
        "invalid_request",
    )
    .await;
    for e in Endpoint::ALL {
        assert_eq!(h.idp.calls(e), 0, "bad input reached the IdP at {e:?}");
    }
    // The login survived all of it (A17: a wrong secret revokes nothing).
    let ok = h.token(format!("refresh_token={refresh}")).await;
    assert_eq!(ok.status, 200);
}

/// A body that arrives in 1 KiB chunks with no declared length.
fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send {
    Chunks(
        bytes
            .chunks(1024)
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
            .into_iter(),
    )
}

struct Chunks(std::vec::IntoIter<Vec<u8>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.next().map(Ok))
    }
}

#[tokio::test]
async fn query_routes_refuse_bad_redirects_duplicates_and_states() {
    let h = start().await;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let login = "/api/auth/v2/login";
    for (what, query) in [
        ("no redirect_uri", String::new()),
        (
            "off the list",
            format!("redirect_uri={}", enc("https://evil.test/callback")),
        ),
        (
            "a path added",
            format!("redirect_uri={}", enc("http://localhost:5000/callback/x")),
        ),
        (
            "user info in the host",
            format!(
                "redirect_uri={}",
                enc("http://localhost:80@evil.test/callback")
            ),
        ),
        (
            "twice",
            format!("redirect_uri={REDIRECT}&redirect_uri={REDIRECT}"),
        ),
        ("bad prompt", format!("redirect_uri={REDIRECT}&prompt=evil")),
        (
            "bad boolean",
            format!("redirect_uri={REDIRECT}&offline_access=maybe"),
        ),
        (
            "plain PKCE",
            format!("redirect_uri={REDIRECT}&code_challenge=abc&code_challenge_method=plain"),
        ),
        (
            "short challenge",
            format!("redirect_uri={REDIRECT}&code_challenge=abc&code_challenge_method=S256"),
        ),
        (
            "scope with a quote",
            format!("redirect_uri={REDIRECT}&scope=a%22b"),
        ),
        ("not UTF-8", format!("redirect_uri={REDIRECT}&scope=%FF")),
        // http's URIs end below 64 KiB: the longest one there can be.
        (
            "60 KiB scope",
            format!("redirect_uri={REDIRECT}&scope={}", "a".repeat(60 * 1024)),
        ),
        (
            "60 KiB redirect",
            format!("redirect_uri={REDIRECT}{}", "a".repeat(60 * 1024)),
        ),
    ] {
        refused(
            &h,
            what,
            get(&format!("{login}?{query}")),
            400,
            "invalid_request",
        )
        .await;
    }
    let callback = "/api/auth/v2/callback";
    for (what, query, code) in [
        ("nothing", String::new(), "invalid_request"),
        ("no state", "code=c".into(), "invalid_request"),
        (
            "garbage state",
            "code=c&state=garbage".into(),
            "invalid_request",
        ),
        (
            "forged state",
            format!("code=c&state=AAAA%7C{}%7C{}", enc(REDIRECT), "v".repeat(43)),
            "invalid_request",
        ),
        (
            "two codes",
            "code=a&code=b&state=s".into(),
            "invalid_request",
        ),
        (
            "IdP error",
            "error=access_denied&state=s".into(),
            "access_denied",
        ),
        (
            "IdP other error",
            "error=server_error".into(),
            "invalid_request",
        ),
    ] {
        refused(&h, what, get(&format!("{callback}?{query}")), 400, code).await;
    }
    let logout = "/api/auth/v2/logout";
    refused(
        &h,
        "logout off the list",
        get(&format!(
            "{logout}?post_logout_redirect_uri={}",
            enc("https://evil.test/")
        )),
        400,
        "invalid_request",
    )
    .await;
    refused(
        &h,
        "logout twice",
        get(&format!(
            "{logout}?post_logout_redirect_uri=a&post_logout_redirect_uri=b"
        )),
        400,
        "invalid_request",
    )
    .await;
    let garbage = Request::get(logout)
        .header(header::AUTHORIZATION, "Bearer garbage")
        .body(Body::empty())
        .unwrap();
    refused(
        &h,
        "logout with a garbage token",
        garbage,
        401,
        "invalid_token",
    )
    .await;
    for e in [
        Endpoint::Authorize,
        Endpoint::Token,
        Endpoint::Revoke,
        Endpoint::EndSession,
    ] {
        assert_eq!(h.idp.calls(e), 0, "bad input reached the IdP at {e:?}");
    }
}

#[tokio::test]
async fn revoke_ends_a_login_and_answers_200_for_unknown_tokens() {
    let h = start().await;
    let tokens = h.device_login().await;
    let refresh = s(&tokens["refresh_token"]).to_owned();
    let before = h.stats().await;
    for unknown in ["garbage", "a.b", "a.b.c", "nope.nope"] {
        let a = h
            .post_form("/api/auth/v2/revoke", format!("token={unknown}"))
            .await;
        assert_eq!(a.status, 200, "{unknown}");
        assert_eq!(h.stats().await, before, "{unknown}");
    }
    assert_eq!(
        h.token(format!("refresh_token={refresh}")).await.status,
        200
    );
    let tokens = h.device_login().await;
    let refresh = s(&tokens["refresh_token"]).to_owned();
    let a = h
        .post_form(
            "/api/auth/v2/revoke",
            format!("token={refresh}&token_type_hint=refresh_token"),
        )
        .await;
    assert_eq!(a.status, 200);
    h.token(format!("refresh_token={refresh}"))
        .await
        .assert_error(400, "invalid_grant");
}
