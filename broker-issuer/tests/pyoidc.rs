//! Interop with a real py-oidc-auth 2606.0.0 broker (BROKER.md §6 A8, A9),
//! run by `scripts/servers/pyoidc.sh` (py-oidc-auth's own `TokenBroker`
//! behind a small HTTP service; `BROKER_TEST_PYOIDC_URL` points at it).
//! Without that variable the tests skip loudly; under `CI=true` they fail.
//!
//! A8 needs py-oidc-auth's *lazy refresh* (an unknown kid from a trusted
//! issuer → one blocking JWKS fetch) to pick up our rotated key. Read in
//! its `broker/issuer.py`: a lazy refresh is allowed when the peer has no
//! successful fetch of our JWKS in the last 60 s (`_PEER_REFRESH_COOLDOWN`);
//! the startup fetch in `setup()` records its time only when it succeeds,
//! and a failed lazy refresh records its time too. A peer that started while
//! our JWKS was unreachable, and knows our current key from its store, may
//! therefore refresh at once: the test builds exactly that state (a peer
//! restart during an outage of our JWKS route) instead of sleeping 60 s,
//! and counts the JWKS requests the peer makes to prove which path ran.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use broker_core::{EncryptionKey, KeyConfig, MemoryStore, SystemClock, TokenVault};
use broker_issuer::{Issuer, IssuerConfig, VerifyError};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// py-oidc-auth's default `broker_audience`, which its peers check.
const AUDIENCE: &str = "py-oidc-auth";
/// The path py-oidc-auth appends to a trusted issuer to fetch its JWKS.
const JWKS_PATH: &str = "/auth/v2/.well-known/jwks.json";

/// The peer's base URL, or `None` after a loud notice (a panic under `CI=true`).
fn peer_url() -> Option<String> {
    const VAR: &str = "BROKER_TEST_PYOIDC_URL";
    if let Ok(url) = std::env::var(VAR)
        && !url.trim().is_empty()
    {
        return Some(url.trim().trim_end_matches('/').to_owned());
    }
    let message = format!(
        "no py-oidc-auth peer: set {VAR} (eval \"$(scripts/servers/pyoidc.sh start)\", \
         or run scripts/test-all.sh, which starts one)"
    );
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    assert!(
        !ci,
        "CI=true and {message}: a skipped interop test is a failure in CI"
    );
    // Past the harness's capture (`eprintln!` would be swallowed on a
    // passing test), once per process.
    static SHOWN: std::sync::Once = std::sync::Once::new();
    SHOWN.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\n================================================================\n\
             SKIPPING py-oidc-auth INTEROP TESTS: {message}\n\
             ================================================================"
        );
    });
    None
}

/// One HTTP/1.1 request to the peer (which closes after each answer):
/// status and JSON body.
async fn call(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let authority = base
        .strip_prefix("http://")
        .expect("BROKER_TEST_PYOIDC_URL is http://127.0.0.1:PORT");
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect(authority).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: the peer did not answer within 30 s"))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let json = serde_json::from_slice(&raw[split + 4..]).unwrap_or(Value::Null);
    (status, json)
}

/// The peer's failure, without any token: its error class and detail
/// (which the service already strips of anything token-shaped).
fn failure(body: &Value) -> String {
    format!("{} {}", body["error"], body["detail"])
}

/// Ask the peer to verify `token` with its broker trusting `issuer`.
async fn peer_verify(peer: &str, token: &str, issuer: &str) -> Result<Value, String> {
    let (status, body) = call(
        peer,
        "POST",
        "/verify",
        Some(&json!({ "token": token, "trusted_issuer": issuer })),
    )
    .await;
    match status {
        200 => Ok(body["claims"].clone()),
        _ => Err(format!("{status} {}", failure(&body))),
    }
}

async fn assert_real_peer(peer: &str) {
    let (status, health) = call(peer, "GET", "/health", None).await;
    assert_eq!(status, 200, "peer health: {health}");
    assert_eq!(
        health["py_oidc_auth"], "2606.0.0",
        "the pinned py-oidc-auth"
    );
}

async fn open_issuer(issuer_url: &str) -> Issuer {
    let key = EncryptionKey::generate();
    let store = Arc::new(MemoryStore::new());
    let vault = TokenVault::open(store, KeyConfig::new(key)).await.unwrap();
    // Real time: py-oidc-auth checks `iat`/`exp` against its own clock.
    Issuer::open(
        Arc::new(vault),
        IssuerConfig::new(issuer_url, AUDIENCE),
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
}

/// An access token with the claims py-oidc-auth's `IDToken` reads.
fn mint(issuer: &Issuer, user: &str) -> String {
    let mut claims = issuer.claims(user, format!("grant-{user}"));
    claims.preferred_username = Some(user.to_owned());
    claims.email = Some(format!("{user}@example.org"));
    claims.roles = vec!["hpcuser".into(), "admin".into()];
    issuer.mint(&claims).unwrap()
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// Our JWKS route on 127.0.0.1, counting requests; `down` answers 503.
#[derive(Clone)]
struct JwksRoute {
    issuer: Issuer,
    fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl JwksRoute {
    fn serve(listener: TcpListener, issuer: Issuer) -> Self {
        let route = Self {
            issuer,
            fetches: Arc::default(),
            down: Arc::default(),
        };
        let app = axum::Router::new()
            .route(&format!("/api{JWKS_PATH}"), axum::routing::get(jwks))
            .with_state(route.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        route
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

async fn jwks(State(route): State<JwksRoute>) -> Response {
    route.fetches.fetch_add(1, Ordering::SeqCst);
    if route.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let jwks = route.issuer.jwks();
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::ETAG, jwks.etag.to_string()),
        ],
        jwks.body.to_vec(),
    )
        .into_response()
}

/// A8: a py-oidc-auth 2606.0.0 broker trusting us verifies our RS256 access
/// tokens before our key rotation and, through its lazy JWKS refresh, after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_py_oidc_auth_peer_verifies_our_tokens_across_a_rotation() {
    let Some(peer) = peer_url() else { return };
    assert_real_peer(&peer).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer_url = format!("http://{}/api", listener.local_addr().unwrap());
    let issuer = open_issuer(&issuer_url).await;
    let route = JwksRoute::serve(listener, issuer.clone());
    // A peer kept running across test runs may hold a broker for an earlier
    // issuer on this port: drop it, so the first use below is a startup.
    let (status, _) = call(
        &peer,
        "POST",
        "/restart",
        Some(&json!({ "trusted_issuer": issuer_url })),
    )
    .await;
    assert_eq!(status, 200);

    // Before rotation: the peer's broker for us is set up on first use
    // (its startup fetch of our JWKS) and verifies our token.
    let before = mint(&issuer, "alice");
    let claims = peer_verify(&peer, &before, &issuer_url)
        .await
        .expect("the peer verifies our token before rotation");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["email"], "alice@example.org");
    assert_eq!(claims["roles"], json!(["hpcuser", "admin"]));
    assert_eq!(claims["iss"], issuer_url.as_str());
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(route.fetches(), 1, "one startup fetch");

    // The peer restarts while our JWKS route is down: its startup fetch
    // fails (so it records no refresh time), and it restores our JWKS from
    // its store, so it still verifies our current key with no fetch.
    route.set_down(true);
    let (status, _) = call(
        &peer,
        "POST",
        "/restart",
        Some(&json!({ "trusted_issuer": issuer_url })),
    )
    .await;
    assert_eq!(status, 200);
    peer_verify(&peer, &before, &issuer_url)
        .await
        .expect("the restarted peer verifies our key from its store");
    assert_eq!(route.fetches(), 2, "one failed startup fetch, no other");
    route.set_down(false);

    // We rotate (a new key that signs at once). The peer meets an unknown
    // kid and refreshes our JWKS lazily: exactly one more fetch.
    let report = issuer.rotate(true).await.unwrap();
    let after = mint(&issuer, "bob");
    assert_eq!(Some(kid(&after)), report.added);
    assert_ne!(kid(&after), kid(&before));
    let claims = peer_verify(&peer, &after, &issuer_url)
        .await
        .expect("the peer verifies our token after rotation (lazy refresh)");
    assert_eq!(claims["preferred_username"], "bob");
    assert_eq!(route.fetches(), 3, "exactly one lazy refresh");
    peer_verify(&peer, &before, &issuer_url)
        .await
        .expect("tokens of the old key still verify");
    assert_eq!(route.fetches(), 3);

    // Its 60 s cooldown: a second immediate rotation within the minute is
    // not fetched, and the peer refuses the token (why scheduled rotations
    // publish ahead and emergency ones are rare).
    let report = issuer.rotate(true).await.unwrap();
    let third = mint(&issuer, "carol");
    assert_eq!(Some(kid(&third)), report.added);
    let refused = peer_verify(&peer, &third, &issuer_url).await.unwrap_err();
    assert!(refused.starts_with("401"), "{refused}");
    assert_eq!(route.fetches(), 3, "no fetch within the cooldown");
    // Our own verification is not affected by the peer's cache.
    for token in [&before, &after, &third] {
        issuer.verify_own(token).unwrap();
    }
}

/// A9: a JWT minted by py-oidc-auth itself with a key of its own (PEM as
/// py-oidc-auth stores it, 16-hex kid) verifies on our issuer once that
/// key is imported, through the key's legacy kid.
#[tokio::test]
async fn a_token_py_oidc_auth_minted_verifies_after_import_of_its_key() {
    let Some(peer) = peer_url() else { return };
    assert_real_peer(&peer).await;
    let issuer_url = "https://broker.test/api";
    let issuer = open_issuer(issuer_url).await;
    let pem = include_str!("fixtures/py-oidc-auth-key.pem");
    let legacy_kid = include_str!("fixtures/py-oidc-auth-key.kid").trim();

    let (status, body) = call(
        &peer,
        "POST",
        "/mint",
        Some(&json!({
            "signing_key_pem": pem,
            "issuer": issuer_url,
            "audience": AUDIENCE,
            "sub": "janedoe",
            "preferred_username": "janedoe",
            "email": "jane@example.org",
            "roles": ["hpcuser"],
        })),
    )
    .await;
    assert_eq!(status, 200, "py-oidc-auth minting: {}", failure(&body));
    let token = body["token"].as_str().expect("a token");
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(legacy_kid),
        "py-oidc-auth's kid"
    );
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));

    assert_eq!(
        issuer.verify_own(token).unwrap_err(),
        VerifyError::UnknownKey,
        "not before the import"
    );
    let kid = issuer.import_pem(pem).await.unwrap();
    assert_ne!(kid, legacy_kid);
    let verified = issuer.verify_own(token).expect("verifies after import");
    assert_eq!(verified.kid, legacy_kid);
    assert_eq!(verified.claims.sub, "janedoe");
    assert_eq!(
        verified.claims.preferred_username.as_deref(),
        Some("janedoe")
    );
    assert_eq!(verified.claims.email.as_deref(), Some("jane@example.org"));
    assert_eq!(verified.claims.roles, ["hpcuser"]);
    assert!(verified.claims.aud.contains(AUDIENCE));
}
