//! Refresh throughput of the real `Broker` against the in-process TestIdp,
//! on every backend, next to the TestIdp's bare refresh rate and to
//! py-oidc-auth's own refresh path on the same store (docs/BENCHMARKS.md,
//! issue 18). Run it with `bash scripts/bench-refresh.sh`, or:
//!
//! ```text
//! cargo run --release -p broker-service --example refresh_bench -- \
//!     [--refreshes N] [--json PATH] [--py SCRIPT] [--stores memory,sled,…]
//! ```
//!
//! Server backends come from `BENCH_{POSTGRES,REDIS,REDIS_CLUSTER,MONGO}_URL`,
//! else `BROKER_TEST_*_URL` (`BROKER_TEST_REDIS_CLUSTER_URLS` as a list of
//! node URLs); an absent one is skipped with a line on stderr.
//!
//! A cell is N refreshes (default 3 000) shared by `concurrency` workers
//! (1 and 32) after 100 unrecorded warm-up refreshes. Each worker owns one
//! login and refreshes its own chain (every refresh presents the token the
//! previous one returned), so workers never collide. A refresh is the whole
//! path: claim by compare-and-set, the IdP's refresh grant over loopback
//! HTTP (the TestIdp signs three RS256 JWTs), ID-token validation, the
//! child grant, the family's compare-and-set and an RS256 access token.
//!
//! *Ceiling*: the same N refresh grants sent straight to the TestIdp's token
//! endpoint (no broker), measured at the start and at the end of the run.
//! *py-oidc-auth*: with `--py scripts/py-oidc-auth-bench.sh`, `bash SCRIPT
//! --refresh --issuer … --store …` runs py-oidc-auth's `OIDCAuth.broker_refresh` against this TestIdp on
//! PostgreSQL and MongoDB (scripts/py-oidc-auth/refresh_bench.py) and
//! prints JSON, which is kept next to ours.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use broker_core::{
    BrokerStore, Clock, EncryptionKey, KeyConfig, MemoryStore, Namespace, SystemClock, TokenVault,
};
use broker_issuer::IssuerConfig;
use broker_service::{Broker, BrokerConfig, IdpConfig, LoginRequest, TokenRequest};
use broker_testkit::{TestClient, TestIdp, TestIdpConfig, pkce_challenge};
use hdrhistogram::Histogram;
use secrecy::SecretString;
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const CLIENT: &str = "bench";
const SECRET: &str = "bench-secret";
const WARMUP: usize = 100;
const CONCURRENCY: [usize; 2] = [1, 32];

struct Args {
    refreshes: usize,
    json: Option<String>,
    py: Option<String>,
    stores: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        refreshes: 3000,
        json: None,
        py: None,
        stores: [
            "memory",
            "sled",
            "postgres",
            "redis",
            "redis-cluster",
            "mongo",
        ]
        .map(String::from)
        .to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage(&flag));
        match flag.as_str() {
            "--refreshes" => a.refreshes = value().parse().unwrap_or_else(|_| usage("--refreshes")),
            "--json" => a.json = Some(value()),
            "--py" => a.py = Some(value()),
            "--stores" => a.stores = value().split(',').map(String::from).collect(),
            other => usage(other),
        }
    }
    a
}

fn usage(flag: &str) -> ! {
    eprintln!(
        "refresh_bench: bad argument {flag}\n\
         usage: refresh_bench [--refreshes N] [--json PATH] [--py SCRIPT] [--stores a,b,…]"
    );
    std::process::exit(2)
}

/// The first of `BENCH_<NAME>_URL` and `BROKER_TEST_<NAME>_URL` that is set.
fn env_url(name: &str) -> Option<String> {
    [
        format!("BENCH_{name}_URL"),
        format!("BROKER_TEST_{name}_URL"),
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// The store URL of server backend `name`, or `None`.
fn server_url(name: &str) -> Option<String> {
    match name {
        "postgres" => env_url("POSTGRES"),
        "redis" => env_url("REDIS"),
        "mongo" => env_url("MONGO"),
        "redis-cluster" => env_url("REDIS_CLUSTER").or_else(|| {
            std::env::var("BROKER_TEST_REDIS_CLUSTER_URLS")
                .ok()
                .filter(|s| !s.is_empty())
                .map(|n| broker_testkit::redis_cluster_url(&n))
        }),
        _ => None,
    }
}

/// Store `name` in a fresh namespace, or `None` (said loudly) when its
/// server is not configured.
async fn open_store(name: &str, dir: &std::path::Path) -> Option<Arc<dyn BrokerStore>> {
    let url = match name {
        "memory" => return Some(Arc::new(MemoryStore::new())),
        "sled" => format!("sled://{}", dir.join("db").display()),
        _ => match server_url(name) {
            Some(url) => url,
            None => {
                eprintln!(
                    "refresh_bench: SKIPPED {name}: no BENCH_*_URL / BROKER_TEST_*_URL for it"
                );
                return None;
            }
        },
    };
    let opener = store_url::StoreOpener::new(&url).expect("a store URL");
    let ns = Namespace::random("refreshbench").expect("a namespace");
    Some(opener.open(ns).await.expect("the store opens"))
}

async fn broker(idp: &TestIdp, store: Arc<dyn BrokerStore>) -> Broker {
    let key = EncryptionKey::from_bytes(&[42; 32]).expect("a key");
    let vault = Arc::new(
        TokenVault::open(store, KeyConfig::new(key))
            .await
            .expect("vault"),
    );
    let mut idp_cfg = IdpConfig::new(idp.issuer().parse().expect("URL"), CLIENT);
    idp_cfg.client_secret = Some(SecretString::from(SECRET));
    let mut cfg = BrokerConfig::new(IssuerConfig::new("https://broker.test/api", "api"), idp_cfg);
    cfg.redirect_uris = vec!["http://127.0.0.1:*/callback".into()];
    let http = broker_service::idp::http_client().expect("client");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Broker::open(vault, cfg, http, clock).await.expect("broker")
}

fn user_agent() -> reqwest::Client {
    broker_testkit::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The code the TestIdp's `/authorize` auto-approves for `url`.
async fn authorize(http: &reqwest::Client, url: &str) -> String {
    let r = http.get(url).send().await.expect("authorize");
    let location = url::Url::parse(r.headers()["location"].to_str().expect("ascii")).expect("URL");
    location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code")
}

fn verifier(n: usize) -> String {
    format!("bench-verifier-{n:08}-0123456789abcdefghijklmnopqrstuvwxyz")
}

/// A login through the broker; its refresh token.
async fn login(broker: &Broker, http: &reqwest::Client, n: usize) -> String {
    let url = broker
        .login_url(&LoginRequest {
            redirect_uri: REDIRECT.into(),
            code_challenge: Some(pkce_challenge(&verifier(n))),
            ..LoginRequest::default()
        })
        .expect("login URL");
    let code = authorize(http, url.as_str()).await;
    let tokens = broker
        .grant(TokenRequest::Code {
            code: code.into(),
            redirect_uri: REDIRECT.into(),
            code_verifier: verifier(n).into(),
        })
        .await
        .expect("login");
    tokens.refresh_token.expect("refresh token")
}

/// Latency histogram in microseconds, 1 µs to 60 s, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// One cell's figures.
fn cell(hist: &Histogram<u64>, elapsed: Duration) -> Value {
    json!({
        "refreshes": hist.len(),
        "seconds": elapsed.as_secs_f64(),
        "per_second": hist.len() as f64 / elapsed.as_secs_f64(),
        "p50_ms": hist.value_at_quantile(0.50) as f64 / 1e3,
        "p99_ms": hist.value_at_quantile(0.99) as f64 / 1e3,
        "max_ms": hist.max() as f64 / 1e3,
    })
}

/// Run `work` over `tokens` (one chain each) until `total` refreshes are
/// done; `work` takes a token and returns the next one.
async fn drive<F, Fut>(
    tokens: Vec<String>,
    total: usize,
    work: F,
) -> (Histogram<u64>, Duration, Vec<String>)
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = String> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for mut token in tokens {
        let (next, work) = (Arc::clone(&next), work.clone());
        set.spawn(async move {
            let mut hist = histogram();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                token = work(token).await;
                hist.record(t.elapsed().as_micros().max(1) as u64)
                    .expect("in bounds");
            }
            (hist, token)
        });
    }
    let mut all = histogram();
    let mut tokens = Vec::new();
    for (h, token) in set.join_all().await {
        all.add(h).expect("same bounds");
        tokens.push(token);
    }
    (all, started.elapsed(), tokens)
}

/// The broker's refreshes at `concurrency`.
async fn run(broker: &Broker, concurrency: usize, total: usize) -> Value {
    let http = user_agent();
    let mut tokens = Vec::new();
    for n in 0..concurrency {
        tokens.push(login(broker, &http, n).await);
    }
    let work = {
        let broker = broker.clone();
        move |token: String| {
            let broker = broker.clone();
            async move {
                let r = broker
                    .grant(TokenRequest::Refresh {
                        refresh_token: token.into(),
                    })
                    .await
                    .expect("a refresh");
                r.refresh_token.expect("rotated")
            }
        }
    };
    let (_, _, tokens) = drive(tokens, WARMUP, work.clone()).await;
    let (hist, elapsed, _) = drive(tokens, total, work).await;
    cell(&hist, elapsed)
}

/// Refresh grants sent straight to the TestIdp's token endpoint.
async fn ceiling(idp: &TestIdp, concurrency: usize, total: usize) -> Value {
    let http = user_agent();
    let token_url = idp.endpoint_url(broker_testkit::Endpoint::Token);
    let authorize_url = idp.endpoint_url(broker_testkit::Endpoint::Authorize);
    let mut tokens = Vec::new();
    for n in 0..concurrency {
        let mut url = url::Url::parse(&authorize_url).expect("URL");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", CLIENT)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", "openid offline_access")
            .append_pair("code_challenge", &pkce_challenge(&verifier(n)))
            .append_pair("code_challenge_method", "S256");
        let code = authorize(&http, url.as_str()).await;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier(n)),
        ];
        tokens.push(idp_token(&http, &token_url, &form).await);
    }
    let work = move |token: String| {
        let (http, token_url) = (http.clone(), token_url.clone());
        async move {
            let form = [("grant_type", "refresh_token"), ("refresh_token", &token)];
            idp_token(&http, &token_url, &form).await
        }
    };
    let (_, _, tokens) = drive(tokens, WARMUP, work.clone()).await;
    let (hist, elapsed, _) = drive(tokens, total, work).await;
    cell(&hist, elapsed)
}

/// POST a token request with client_secret_basic; the refresh token.
async fn idp_token(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> String {
    let r = http
        .post(url)
        .basic_auth(CLIENT, Some(SECRET))
        .form(form)
        .send()
        .await
        .expect("token endpoint");
    let body: Value = r.json().await.expect("JSON");
    body["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

/// The 1-minute load average.
fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// CPU model and core count.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({ "cpu": cpu, "cores": cores, "os": std::env::consts::OS })
}

/// py-oidc-auth's refresh path on store `name` (its JSON), or `None` where
/// it has no such store or no script was given.
async fn py_refresh(args: &Args, idp: &TestIdp, name: &str) -> Option<Value> {
    let script = args.py.clone()?;
    let store = match name {
        "postgres" => "postgres",
        "mongo" => "mongodb",
        _ => return None,
    };
    let url = server_url(name)?;
    let mut cmd = std::process::Command::new("bash");
    cmd.args([script.as_str(), "--refresh"])
        .args(["--issuer", idp.issuer(), "--client-id", CLIENT])
        .args(["--store", store, "--url-env", "BENCH_PY_URL"])
        .args(["--refreshes", &args.refreshes.to_string()])
        .args(["--warmup", &WARMUP.to_string()])
        .env("BENCH_PY_URL", url)
        .env("BENCH_PY_CLIENT_SECRET", SECRET)
        .stderr(std::process::Stdio::inherit());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("py-oidc-auth's refresh bench runs");
    if !out.status.success() {
        eprintln!(
            "refresh_bench: py-oidc-auth on {name} failed ({})",
            out.status
        );
        return Some(json!({ "error": format!("exit {}", out.status) }));
    }
    Some(serde_json::from_slice(&out.stdout).expect("py-oidc-auth's bench prints JSON"))
}

fn fmt_cell(v: &Value) -> String {
    match (v["per_second"].as_f64(), v["p99_ms"].as_f64()) {
        (Some(r), Some(p99)) => format!(
            "{r:.0} | {:.1} / {p99:.1}",
            v["p50_ms"].as_f64().unwrap_or(0.0)
        ),
        _ => "— | —".into(),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = args();
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let load_start = load1();
    let idp = TestIdp::start(TestIdpConfig::default())
        .await
        .expect("TestIdp");
    idp.upsert_client(TestClient::confidential(CLIENT, SECRET));
    let dir = tempfile::tempdir().expect("tempdir");
    let n = args.refreshes;

    let mut ceilings = serde_json::Map::new();
    for c in CONCURRENCY {
        eprintln!("refresh_bench: TestIdp ceiling, concurrency {c}");
        let mut v = ceiling(&idp, c, n).await;
        v["load1"] = json!(load1());
        ceilings.insert(format!("start_c{c}"), v);
    }
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for name in &args.stores {
        let Some(store) = open_store(name, dir.path()).await else {
            skipped.push(name.clone());
            continue;
        };
        let broker = broker(&idp, store).await;
        let mut ours = serde_json::Map::new();
        for c in CONCURRENCY {
            eprintln!("refresh_bench: {name}, concurrency {c}");
            let mut v = run(&broker, c, n).await;
            v["load1"] = json!(load1());
            ours.insert(format!("c{c}"), v);
        }
        let py = py_refresh(&args, &idp, name).await;
        rows.push(json!({ "store": name, "ours": ours, "py_oidc_auth": py }));
    }
    for c in CONCURRENCY {
        eprintln!("refresh_bench: TestIdp ceiling again, concurrency {c}");
        let mut v = ceiling(&idp, c, n).await;
        v["load1"] = json!(load1());
        ceilings.insert(format!("end_c{c}"), v);
    }

    println!(
        "| store | conc | ours refreshes/s | ours p50 / p99 ms | py-oidc-auth refreshes/s | py-oidc-auth p50 / p99 ms | ours / py | TestIdp ceiling refreshes/s (start, end) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        for c in CONCURRENCY {
            let k = format!("c{c}");
            let ours = &row["ours"][&k];
            let py = &row["py_oidc_auth"][&k];
            let ratio = match (ours["per_second"].as_f64(), py["per_second"].as_f64()) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.1}×", a / b),
                _ => "—".into(),
            };
            let ceil = |w: &str| {
                ceilings
                    .get(&format!("{w}_c{c}"))
                    .and_then(|v| v["per_second"].as_f64())
                    .map_or("—".into(), |r| format!("{r:.0}"))
            };
            println!(
                "| {} | {c} | {} | {} | {ratio} | {}, {} |",
                row["store"].as_str().unwrap_or("?"),
                fmt_cell(ours),
                fmt_cell(py),
                ceil("start"),
                ceil("end"),
            );
        }
    }
    if !skipped.is_empty() {
        println!("\nSkipped (no server URL): {}", skipped.join(", "));
    }
    let report = json!({
        "bench": "refresh",
        "started_at": started_at,
        "machine": machine(),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "refreshes_per_cell": n,
        "warmup_per_cell": WARMUP,
        "load1_start": load_start,
        "load1_end": load1(),
        "testidp_ceiling": ceilings,
        "stores": rows,
        "skipped": skipped,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report).expect("JSON"))
            .expect("write the JSON report");
        eprintln!("refresh_bench: wrote {path}");
    }
}
