//! Refresh throughput of the real `Broker` against the in-process TestIdp
//! (docs/BENCHMARKS.md): refreshes/s and latency percentiles at
//! concurrency 1 and 32, on a MemoryStore and on sled.
//!
//! `cargo run --release -p broker-service --example refresh_bench [SECONDS]`
//!
//! Each worker owns one login and refreshes its own chain (every refresh
//! presents the token the previous one returned), so workers never
//! collide; a refresh is the whole path: claim by compare-and-set, the
//! IdP's refresh grant over loopback HTTP (it signs three RS256 JWTs), ID
//! token validation, the child grant, the family's compare-and-set, and an
//! RS256 access token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_core::{
    BrokerStore, Clock, EncryptionKey, KeyConfig, MemoryStore, Namespace, SystemClock, TokenVault,
};
use broker_issuer::IssuerConfig;
use broker_service::{Broker, BrokerConfig, IdpConfig, LoginRequest, TokenRequest};
use broker_testkit::{TestClient, TestIdp, TestIdpConfig, pkce_challenge};
use secrecy::SecretString;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

async fn broker(idp: &TestIdp, store: Arc<dyn BrokerStore>) -> Broker {
    let key = EncryptionKey::from_bytes(&[42; 32]).expect("a key");
    let vault = Arc::new(
        TokenVault::open(store, KeyConfig::new(key))
            .await
            .expect("vault"),
    );
    let mut idp_cfg = IdpConfig::new(idp.issuer().parse().expect("URL"), "bench");
    idp_cfg.client_secret = Some(SecretString::from("bench-secret"));
    let mut cfg = BrokerConfig::new(IssuerConfig::new("https://broker.test/api", "api"), idp_cfg);
    cfg.redirect_uris = vec!["http://127.0.0.1:*/callback".into()];
    let http = broker_service::idp::http_client().expect("client");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Broker::open(vault, cfg, http, clock).await.expect("broker")
}

async fn login(broker: &Broker, http: &reqwest::Client, n: usize) -> String {
    let verifier = format!("bench-verifier-{n:08}-0123456789abcdefghijklmnopqrstuvwxyz");
    let url = broker
        .login_url(&LoginRequest {
            redirect_uri: REDIRECT.into(),
            code_challenge: Some(pkce_challenge(&verifier)),
            ..LoginRequest::default()
        })
        .expect("login URL");
    let r = http.get(url).send().await.expect("authorize");
    let location = url::Url::parse(r.headers()["location"].to_str().expect("ascii")).expect("URL");
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let tokens = broker
        .grant(TokenRequest::Code {
            code: code.into(),
            redirect_uri: REDIRECT.into(),
            code_verifier: verifier.into(),
        })
        .await
        .expect("login");
    tokens.refresh_token.expect("refresh token")
}

/// Run `concurrency` chains for `secs`; returns (refreshes/s, p50, p99).
async fn run(broker: &Broker, concurrency: usize, secs: u64) -> (f64, Duration, Duration) {
    let http = broker_testkit::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut tokens = Vec::new();
    for n in 0..concurrency {
        tokens.push(login(broker, &http, n).await);
    }
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut set = tokio::task::JoinSet::new();
    for mut token in tokens {
        let broker = broker.clone();
        set.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                let r = broker
                    .grant(TokenRequest::Refresh {
                        refresh_token: token.clone().into(),
                    })
                    .await
                    .expect("a refresh");
                latencies.push(t.elapsed());
                token = r.refresh_token.expect("rotated");
            }
            latencies
        });
    }
    let mut all: Vec<Duration> = set.join_all().await.into_iter().flatten().collect();
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (all.len() as f64 / elapsed, pct(0.50), pct(0.99))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let idp = TestIdp::start(TestIdpConfig::default())
        .await
        .expect("TestIdp");
    idp.upsert_client(TestClient::confidential("bench", "bench-secret"));
    let dir = tempfile::tempdir().expect("tempdir");
    let sled_url = format!("sled://{}", dir.path().join("db").display());
    let sled = store_url::StoreOpener::new(&sled_url)
        .expect("sled URL")
        .open(Namespace::new("bench").expect("namespace"))
        .await
        .expect("sled");
    let stores: [(&str, Arc<dyn BrokerStore>); 2] =
        [("memory", Arc::new(MemoryStore::new())), ("sled", sled)];
    println!("| store | concurrency | refreshes/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for (name, store) in stores {
        let broker = broker(&idp, store).await;
        for concurrency in [1, 32] {
            let (rate, p50, p99) = run(&broker, concurrency, secs).await;
            println!(
                "| {name} | {concurrency} | {rate:.0} | {:.1} | {:.1} |",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
        }
    }
}
