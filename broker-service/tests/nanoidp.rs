//! The broker end to end against a real identity provider: nanoidp 3.4.0
//! (`scripts/servers/idp.sh start`, refresh-token rotation on), on the
//! memory store and sled always, and on every server backend whose
//! `BROKER_TEST_*_URL` is set.
//!
//! Per backend: code flow through nanoidp's login form (broker-made PKCE
//! carried in `state`, and a client's own PKCE challenge), device flow
//! through its approval form, refresh rotation, a replay (the family is
//! revoked in the replaying request, and so is the IdP's refresh token:
//! nanoidp advertises revocation), logout and RFC 7009 revocation (the
//! family and the IdP's refresh token). Without `BROKER_TEST_IDP_URL`: a
//! loud skip; under `CI=true`: a failure. Its own test binary: it needs a
//! server.
//!
//! A31 for this run: everything is logged at TRACE into one capture, which
//! must hold none of the tokens, IdP tokens, codes, PKCE verifier, client
//! secret or PEM seen in the run.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use broker_core::{EncryptionKey, KeyConfig, MemoryStore, Namespace, SystemClock, TokenVault};
use broker_issuer::IssuerConfig;
use broker_service::{
    Broker, BrokerConfig, GrantError, IdpConfig, LoginRequest, LogoutRequest, TokenRequest,
    TokenResponse, Verification,
};
use broker_testkit::nanoidp::{Browser, NanoidpEnv};
use broker_testkit::pkce_challenge;
use conformance::provision::{Server, server_url};
use secrecy::{ExposeSecret as _, SecretString};

const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// Every log line of this process, at TRACE, spans included.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The capture, installed as the global subscriber on first use (global,
/// so spawned tasks are seen too).
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        capture
    })
}

/// Secrets a test saw, checked against the capture at its end.
#[derive(Default)]
struct Seen(Vec<(&'static str, String)>);

impl Seen {
    fn add(&mut self, what: &'static str, secret: impl Into<String>) {
        let secret = secret.into();
        assert!(secret.len() >= 8, "{what} is too short to look for");
        self.0.push((what, secret));
    }

    /// A broker token response: both tokens, and the refresh secret alone.
    fn tokens(&mut self, t: &TokenResponse) {
        self.add("access token", &t.access_token);
        let rt = rt(t);
        self.add("refresh secret", rt.split_once('.').unwrap().1);
        self.add("refresh token", rt);
    }

    /// The capture holds none of the secrets, and does hold the replay
    /// warning and the refresh span (it captured something).
    fn assert_not_logged(&self, expect_in_log: &[&str]) {
        let text = String::from_utf8_lossy(&capture().0.lock().unwrap()).into_owned();
        for marker in expect_in_log {
            assert!(text.contains(marker), "the capture lacks {marker:?}");
        }
        for (what, secret) in &self.0 {
            assert!(
                !text.contains(secret.as_str()),
                "a {what} is in the TRACE log"
            );
        }
        assert!(!text.contains("-----BEGIN"), "a PEM is in the TRACE log");
    }
}

/// A store to run the flows on; `_dir` keeps sled's directory alive.
struct Backend {
    name: &'static str,
    vault: Arc<TokenVault>,
    _dir: Option<tempfile::TempDir>,
}

async fn vault(store: Arc<dyn broker_core::BrokerStore>) -> Arc<TokenVault> {
    let key = EncryptionKey::from_bytes(&[42; 32]).unwrap();
    Arc::new(TokenVault::open(store, KeyConfig::new(key)).await.unwrap())
}

/// A namespace of its own per run, so runs on a shared server never meet.
fn namespace() -> Namespace {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Namespace::new(format!("nanoidp_{}_{nanos}", std::process::id() % 100_000)).unwrap()
}

/// Memory and sled, then every server backend that has a server (the others
/// skip loudly, and fail under `CI=true`).
async fn backends() -> Vec<Backend> {
    let mut out = vec![Backend {
        name: "memory",
        vault: vault(Arc::new(MemoryStore::new())).await,
        _dir: None,
    }];
    let dir = tempfile::tempdir().unwrap();
    let sled = format!("sled://{}", dir.path().join("db").display());
    out.push(Backend {
        name: "sled",
        vault: vault(store_url::open_store(&sled, namespace()).await.unwrap()).await,
        _dir: Some(dir),
    });
    for (name, server) in [
        ("postgres", Server::Postgres),
        ("redis", Server::Redis),
        ("redis-cluster", Server::RedisCluster),
        ("mongo", Server::Mongo),
    ] {
        let Some(url) = server_url(server).await else {
            continue;
        };
        let url = if server == Server::RedisCluster {
            broker_testkit::redis_cluster_url(&url)
        } else {
            url
        };
        let store = store_url::open_store(&url, namespace())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push(Backend {
            name,
            vault: vault(store).await,
            _dir: None,
        });
    }
    out
}

/// The broker on `vault`, with nanoidp as its IdP.
async fn broker(env: &NanoidpEnv, vault: &Arc<TokenVault>) -> Broker {
    let mut idp = IdpConfig::new(env.url.parse().unwrap(), env.client_id.clone());
    idp.client_secret = Some(SecretString::from(env.client_secret.clone()));
    let mut cfg = BrokerConfig::new(
        IssuerConfig::new("https://broker.test/api", "broker-test-api"),
        idp,
    );
    cfg.redirect_uris = vec!["http://127.0.0.1:*/callback".into()];
    let http = broker_service::idp::http_client().unwrap();
    Broker::open(Arc::clone(vault), cfg, http, Arc::new(SystemClock))
        .await
        .expect("the broker opens on nanoidp's discovery document")
}

fn refresh(token: &str) -> TokenRequest {
    TokenRequest::Refresh {
        refresh_token: token.to_owned().into(),
    }
}

fn rt(tokens: &TokenResponse) -> String {
    tokens.refresh_token.clone().expect("a refresh token")
}

/// The IdP refresh token sealed in the grant of broker refresh token `rt`.
async fn idp_refresh_token(vault: &TokenVault, rt: &str) -> String {
    let jti = rt.split_once('.').unwrap().0;
    let (entry, _) = vault.get_entry(jti).await.unwrap().expect("the grant");
    let grant: serde_json::Value = serde_json::from_slice(entry.payload.expose_secret()).unwrap();
    grant["idp_refresh_token"].as_str().unwrap().to_owned()
}

/// What nanoidp's token endpoint answers to `idp_rt` (spending it if it
/// still works): its status.
async fn idp_refresh_status(env: &NanoidpEnv, idp_rt: &str) -> u16 {
    broker_testkit::http_client_builder()
        .build()
        .expect("a client")
        .post(format!("{}/token", env.url))
        .basic_auth(&env.client_id, Some(&env.client_secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", idp_rt)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The form login with the broker's own PKCE (verifier in `state`).
async fn code_login(
    env: &NanoidpEnv,
    broker: &Broker,
    vault: &TokenVault,
    seen: &mut Seen,
) -> TokenResponse {
    let url = broker
        .login_url(&LoginRequest {
            redirect_uri: REDIRECT.into(),
            offline_access: true,
            ..LoginRequest::default()
        })
        .unwrap();
    let answer = Browser::new()
        .unwrap()
        .login(url.as_str(), &env.username, &env.password)
        .await
        .expect("nanoidp's login form");
    assert!(answer.redirect.starts_with(REDIRECT));
    seen.add("authorization code", &answer.code);
    let t = broker
        .callback(&answer.code, answer.state.as_deref().expect("state"))
        .await
        .expect("the callback logs in");
    record(seen, vault, t).await
}

/// Note the secrets of a fresh token response `t`: its tokens, the IdP
/// refresh token of its grant and the login's IdP ID token.
async fn record(seen: &mut Seen, vault: &TokenVault, t: TokenResponse) -> TokenResponse {
    seen.tokens(&t);
    seen.add("IdP refresh token", idp_refresh_token(vault, &rt(&t)).await);
    let jti = rt(&t).split_once('.').unwrap().0.to_owned();
    let (grant, _) = vault.get_entry(&jti).await.unwrap().expect("the grant");
    let grant: serde_json::Value = serde_json::from_slice(grant.payload.expose_secret()).unwrap();
    let family = format!("f.{}", grant["family"].as_str().unwrap());
    let (family, _) = vault.get_entry(&family).await.unwrap().expect("the family");
    let family: serde_json::Value = serde_json::from_slice(family.payload.expose_secret()).unwrap();
    if let Some(id_token) = family["id_token"].as_str() {
        seen.add("IdP ID token", id_token);
    }
    t
}

/// The client credentials, as sent and as configured.
fn client_secrets(env: &NanoidpEnv, seen: &mut Seen) {
    use base64::Engine as _;
    seen.add("client secret", &env.client_secret);
    let basic = format!("{}:{}", env.client_id, env.client_secret);
    seen.add(
        "HTTP Basic credentials",
        base64::engine::general_purpose::STANDARD.encode(basic),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_flow_refresh_replay_and_logout_on_every_backend() {
    let Some(env) = NanoidpEnv::require() else {
        return;
    };
    capture();
    let mut seen = Seen::default();
    client_secrets(&env, &mut seen);
    for b in backends().await {
        let name = b.name;
        let broker = broker(&env, &b.vault).await;
        let t0 = code_login(&env, &broker, &b.vault, &mut seen).await;
        let verified = broker
            .verify(&t0.access_token, Verification::Stateful)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let info = broker.userinfo(&verified).await.unwrap();
        assert_eq!(info.username, env.username, "{name}");
        assert!(
            verified.claims.roles.iter().any(|r| r == "broker-user"),
            "{name}: nanoidp's roles reach the access token"
        );

        // Rotation: R0 → R1 → R2, each answer new tokens.
        let t1 = record(
            &mut seen,
            &b.vault,
            broker.grant(refresh(&rt(&t0))).await.unwrap(),
        )
        .await;
        let t2 = record(
            &mut seen,
            &b.vault,
            broker.grant(refresh(&rt(&t1))).await.unwrap(),
        )
        .await;
        assert_ne!(rt(&t0), rt(&t1), "{name}");
        assert_ne!(rt(&t1), rt(&t2), "{name}");
        assert_ne!(t1.access_token, t2.access_token, "{name}");
        let idp_rt = idp_refresh_token(&b.vault, &rt(&t2)).await;

        // Replay of R0: refused, and in that request the family is revoked
        // (R2 no longer works, its access token fails stateful checks) and
        // the IdP's refresh token is revoked at nanoidp.
        let replay = broker.grant(refresh(&rt(&t0))).await.unwrap_err();
        assert!(
            matches!(replay, GrantError::ReuseDetected),
            "{name}: {replay:?}"
        );
        let after = broker.grant(refresh(&rt(&t2))).await.unwrap_err();
        assert!(
            matches!(after, GrantError::InvalidGrant(_)),
            "{name}: {after:?}"
        );
        assert!(
            broker
                .verify(&t2.access_token, Verification::Stateful)
                .await
                .is_err(),
            "{name}"
        );
        assert!(
            broker
                .verify(&t2.access_token, Verification::Stateless)
                .await
                .is_ok(),
            "{name}: stateless tokens live until exp"
        );
        assert_eq!(
            idp_refresh_status(&env, &idp_rt).await,
            400,
            "{name}: the replay revoked the IdP's refresh token"
        );

        // Logout by sid: the family and the IdP's refresh token end.
        let t = code_login(&env, &broker, &b.vault, &mut seen).await;
        let t = record(
            &mut seen,
            &b.vault,
            broker.grant(refresh(&rt(&t))).await.unwrap(),
        )
        .await;
        let idp_rt = idp_refresh_token(&b.vault, &rt(&t)).await;
        let sid = broker
            .verify(&t.access_token, Verification::Stateless)
            .await
            .unwrap()
            .claims
            .sid
            .expect("sid");
        let to = broker
            .logout(LogoutRequest {
                sid: Some(sid),
                ..LogoutRequest::default()
            })
            .await
            .unwrap()
            .expect("nanoidp's end-session URL");
        assert!(to.as_str().starts_with(&env.url), "{name}");
        assert!(
            to.query().unwrap_or("").contains("id_token_hint="),
            "{name}"
        );
        let gone = broker.grant(refresh(&rt(&t))).await.unwrap_err();
        assert!(
            matches!(gone, GrantError::InvalidGrant(_)),
            "{name}: {gone:?}"
        );
        assert!(
            broker
                .verify(&t.access_token, Verification::Stateful)
                .await
                .is_err(),
            "{name}"
        );
        assert_eq!(
            idp_refresh_status(&env, &idp_rt).await,
            400,
            "{name}: logout revoked the IdP's refresh token"
        );

        // RFC 7009 revocation of a broker refresh token: the same.
        let t = code_login(&env, &broker, &b.vault, &mut seen).await;
        let idp_rt = idp_refresh_token(&b.vault, &rt(&t)).await;
        broker.revoke(&rt(&t)).await.unwrap();
        let gone = broker.grant(refresh(&rt(&t))).await.unwrap_err();
        assert!(
            matches!(gone, GrantError::InvalidGrant(_)),
            "{name}: {gone:?}"
        );
        assert_eq!(
            idp_refresh_status(&env, &idp_rt).await,
            400,
            "{name}: revocation reached the IdP's refresh token"
        );
        conformance::loud(&format!(
            "nanoidp e2e: code flow, refresh, replay, logout, revoke on {name}: ok"
        ));
    }
    seen.assert_not_logged(&["broker.refresh", "refresh token reuse detected"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pkce_and_device_flow_on_every_backend() {
    let Some(env) = NanoidpEnv::require() else {
        return;
    };
    capture();
    let mut seen = Seen::default();
    client_secrets(&env, &mut seen);
    for b in backends().await {
        let name = b.name;
        let broker = broker(&env, &b.vault).await;

        // Code flow with the client's own PKCE challenge: the client
        // redeems the code at the token endpoint with its verifier.
        let verifier = "nanoidp-e2e-client-verifier-0123456789-abcdefghij";
        seen.add("code_verifier", verifier);
        let url = broker
            .login_url(&LoginRequest {
                redirect_uri: REDIRECT.into(),
                offline_access: true,
                code_challenge: Some(pkce_challenge(verifier)),
                ..LoginRequest::default()
            })
            .unwrap();
        let answer = Browser::new()
            .unwrap()
            .login(url.as_str(), &env.username, &env.password)
            .await
            .expect("nanoidp's login form");
        seen.add("authorization code", &answer.code);
        let t = broker
            .grant(TokenRequest::Code {
                code: answer.code.into(),
                redirect_uri: REDIRECT.into(),
                code_verifier: verifier.to_owned().into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let t = record(&mut seen, &b.vault, t).await;
        record(
            &mut seen,
            &b.vault,
            broker.grant(refresh(&rt(&t))).await.unwrap(),
        )
        .await;

        // Device flow: pending, approved on nanoidp's form, then tokens.
        let start = broker.start_device().await.unwrap();
        seen.add("device code", start.device_code.as_str());
        let poll = || TokenRequest::Device {
            device_code: start.device_code.as_str().to_owned().into(),
        };
        let pending = broker.grant(poll()).await.unwrap_err();
        assert!(
            matches!(pending, GrantError::AuthorizationPending),
            "{name}: {pending:?}"
        );
        Browser::new()
            .unwrap()
            .approve_device(
                &start.verification_uri,
                &start.user_code,
                &env.username,
                &env.password,
            )
            .await
            .expect("nanoidp's device form");
        let t = broker
            .grant(poll())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let t = record(&mut seen, &b.vault, t).await;
        let verified = broker
            .verify(&t.access_token, Verification::Stateful)
            .await
            .unwrap();
        assert_eq!(
            broker.userinfo(&verified).await.unwrap().username,
            env.username,
            "{name}"
        );
        let t = record(
            &mut seen,
            &b.vault,
            broker.grant(refresh(&rt(&t))).await.unwrap(),
        )
        .await;
        assert!(
            broker
                .verify(&t.access_token, Verification::Stateful)
                .await
                .is_ok(),
            "{name}"
        );
        conformance::loud(&format!(
            "nanoidp e2e: client PKCE and device flow on {name}: ok"
        ));
    }
    seen.assert_not_logged(&["broker.refresh"]);
}
