//! The harness: a real `Broker` on a store (memory, sled or a server from
//! `BROKER_TEST_*_URL`) against an in-process `TestIdp`, both reading one
//! clock; logins through the real code flow; and a view of the store's
//! grants and families (opened through the vault) to count survivors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use broker_core::{
    BrokerStore, Clock, EncryptionKey, KeyConfig, ManualClock, MemoryStore, Namespace, SystemClock,
    TokenVault,
};
use broker_issuer::IssuerConfig;
use broker_service::{
    Broker, BrokerConfig, GrantError, IdpConfig, LoginRequest, TokenRequest, TokenResponse,
};
use broker_testkit::{TestClient, TestIdp, TestIdpConfig, pkce_challenge};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use crate::capture;

/// Where the broker sends users back (any port, as CLI clients do).
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";
/// The broker's client at the IdP.
pub const CLIENT_ID: &str = "e2e-broker";
/// Its secret: distinctive, so the capture check would find it.
pub const CLIENT_SECRET: &str = "e2e-client-secret-Tq7wZp2LkR9x";
/// The clock the fake-clock scenarios start at.
pub const T0: i64 = 1_800_000_000;

/// A store to run on.
pub struct Store {
    /// Short name for messages.
    pub name: &'static str,
    /// The store.
    pub store: Arc<dyn BrokerStore>,
    /// Keeps a sled directory alive.
    _dir: Option<tempfile::TempDir>,
}

impl Store {
    /// A `MemoryStore` reading `clock` (so grants expire by it).
    pub fn memory(clock: Arc<dyn Clock>) -> Self {
        Self {
            name: "memory",
            store: Arc::new(MemoryStore::new().with_clock(clock)),
            _dir: None,
        }
    }

    /// A fresh sled database in a temporary directory.
    pub async fn sled() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sled://{}", dir.path().join("db").display());
        let mut s = Self::open("sled", &url).await;
        s._dir = Some(dir);
        s
    }

    /// A fresh namespace on the server at `url`.
    pub async fn open(name: &'static str, url: &str) -> Self {
        Self::open_in(name, url, Namespace::random("e2e").expect("a namespace")).await
    }

    /// Namespace `ns` on the server at `url`, through a pool of its own.
    pub async fn open_in(name: &'static str, url: &str, ns: Namespace) -> Self {
        let opener = store_url::StoreOpener::new(url).expect("a store URL");
        // Connecting is slow on a loaded machine (PostgreSQL's SCRAM in a
        // debug build): retry, then open the pool's connections before the
        // workload needs them, so its 5 s acquire timeout measures the
        // store, not the handshakes.
        let mut store = None;
        for attempt in 1..=5 {
            match opener.open(ns.clone()).await {
                Ok(s) => {
                    store = Some(s);
                    break;
                }
                Err(e) if e.is_retryable() && attempt < 5 => {
                    crate::loud(&format!("{name}: opening the store failed, retrying: {e}"));
                }
                Err(e) => panic!("{name}: the store opens: {e}"),
            }
        }
        let store = store.expect("opened");
        let mut warm = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let store = Arc::clone(&store);
            warm.spawn(async move {
                for _ in 0..10 {
                    if store.health().await.is_ok() {
                        return;
                    }
                }
            });
        }
        warm.join_all().await;
        Self {
            name,
            store,
            _dir: None,
        }
    }

    /// The same store again (a second broker on it).
    pub fn shared(other: &Store) -> Self {
        Self {
            name: other.name,
            store: Arc::clone(&other.store),
            _dir: None,
        }
    }
}

/// The URL of server backend `name` from `BROKER_TEST_*_URL`, or `None`
/// after a loud skip (a panic under `CI=true`).
pub async fn server_url(name: &str) -> Option<String> {
    use conformance::provision::{mongo_url, postgres_url, redis_cluster_urls, redis_url};
    match name {
        "postgres" => postgres_url().await,
        "redis" => redis_url().await,
        "redis-cluster" => redis_cluster_urls()
            .await
            .map(|n| broker_testkit::redis_cluster_url(&n)),
        "mongo" => mongo_url().await,
        other => panic!("no server backend {other}"),
    }
}

/// A broker, its IdP, its store and their clock.
pub struct Harness {
    pub idp: Arc<TestIdp>,
    pub broker: Broker,
    pub vault: Arc<TokenVault>,
    pub store: Store,
    /// Set when the scenario runs on a fake clock.
    pub clock: Option<ManualClock>,
    /// The test's user agent (follows no redirects).
    pub http: reqwest::Client,
}

/// The broker configuration the scenarios use.
pub fn broker_config(idp: &TestIdp) -> BrokerConfig {
    let mut idp_cfg = IdpConfig::new(idp.issuer().parse().expect("issuer URL"), CLIENT_ID);
    idp_cfg.client_secret = Some(SecretString::from(CLIENT_SECRET));
    let mut cfg = BrokerConfig::new(
        IssuerConfig::new("https://broker.test/api", "e2e-api"),
        idp_cfg,
    );
    cfg.redirect_uris = vec!["http://127.0.0.1:*/callback".into()];
    cfg.post_logout_redirect_uris = vec!["http://127.0.0.1:*/bye".into()];
    cfg
}

/// A TestIdp on `clock` that knows the broker's client.
pub async fn start_idp(clock: Arc<dyn Clock>) -> Arc<TestIdp> {
    let idp = TestIdp::start(TestIdpConfig::with_clock(clock))
        .await
        .expect("TestIdp starts");
    idp.upsert_client(TestClient::confidential(CLIENT_ID, CLIENT_SECRET));
    capture::note_basic_auth(CLIENT_ID, CLIENT_SECRET);
    Arc::new(idp)
}

/// A broker on `store` against `idp`, with `change` applied to its config.
pub async fn open_broker(
    idp: &TestIdp,
    store: &Store,
    clock: Arc<dyn Clock>,
    change: impl FnOnce(&mut BrokerConfig),
) -> (Broker, Arc<TokenVault>) {
    let key = EncryptionKey::from_bytes(&[42; 32]).expect("a key");
    let vault = Arc::new(
        TokenVault::open(Arc::clone(&store.store), KeyConfig::new(key))
            .await
            .expect("the vault opens"),
    );
    let mut cfg = broker_config(idp);
    change(&mut cfg);
    let http = broker_service::idp::http_client().expect("an HTTP client");
    let broker = Broker::open(Arc::clone(&vault), cfg, http, clock)
        .await
        .expect("the broker opens");
    (broker, vault)
}

impl Harness {
    /// Memory store, fake clock at [`T0`], default config.
    pub async fn fake_clock() -> Self {
        Self::fake_clock_with(|_| {}).await
    }

    /// Memory store, fake clock at [`T0`], `change` applied to the config.
    pub async fn fake_clock_with(change: impl FnOnce(&mut BrokerConfig)) -> Self {
        let clock = ManualClock::new(T0);
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let idp = start_idp(Arc::clone(&shared)).await;
        let store = Store::memory(Arc::clone(&shared));
        let (broker, vault) = open_broker(&idp, &store, shared, change).await;
        Self::new(idp, broker, vault, store, Some(clock))
    }

    /// `store` on the system clock (server stores expire by their own
    /// clock), default config.
    pub async fn on(store: Store) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let idp = start_idp(Arc::clone(&clock)).await;
        let (broker, vault) = open_broker(&idp, &store, clock, |_| {}).await;
        Self::new(idp, broker, vault, store, None)
    }

    pub fn new(
        idp: Arc<TestIdp>,
        broker: Broker,
        vault: Arc<TokenVault>,
        store: Store,
        clock: Option<ManualClock>,
    ) -> Self {
        let http = broker_testkit::http_client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a client");
        Self {
            idp,
            broker,
            vault,
            store,
            clock,
            http,
        }
    }

    /// Move the fake clock (of the IdP, the broker and the store).
    pub fn advance(&self, secs: i64) {
        self.clock
            .as_ref()
            .expect("a fake-clock scenario")
            .advance(secs);
    }

    /// Log in with the code flow and the client's own PKCE challenge.
    pub async fn login(&self) -> TokenResponse {
        login(&self.broker, &self.http).await
    }

    /// Refresh `refresh_token`.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, GrantError> {
        refresh(&self.broker, refresh_token).await
    }

    /// Grants and families in the store, opened (and their IdP tokens
    /// recorded for the capture check).
    pub async fn inventory(&self) -> Inventory {
        inventory(&self.vault).await
    }

    /// Remove the scenario's namespace from a server.
    pub async fn finish(self) {
        if self.store.name != "memory" {
            let _ = self.store.store.drop_namespace().await;
        }
    }
}

/// A random PKCE verifier (64 characters), recorded as a secret.
pub fn verifier() -> String {
    use rand::RngExt as _;
    let v = format!(
        "{:032x}{:032x}",
        rand::rng().random::<u128>(),
        rand::rng().random::<u128>()
    );
    capture::note("code_verifier", &v);
    v
}

/// Follow an authorization URL at the IdP (which approves at once) and
/// return the `code` and `state` of its redirect back.
pub async fn authorize(http: &reqwest::Client, url: url::Url) -> (String, String) {
    let r = http.get(url).send().await.expect("GET /authorize");
    assert!(r.status().is_redirection(), "authorize: {}", r.status());
    let location = r.headers()["location"].to_str().expect("ascii").to_owned();
    let back = url::Url::parse(&location).expect("a redirect URL");
    let param = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in the redirect"))
    };
    let (code, state) = (param("code"), param("state"));
    capture::note("authorization code", &code);
    (code, state)
}

/// Log in at `broker` with the code flow and a client-made PKCE verifier.
pub async fn login(broker: &Broker, http: &reqwest::Client) -> TokenResponse {
    let v = verifier();
    let url = broker
        .login_url(&LoginRequest {
            redirect_uri: REDIRECT.into(),
            code_challenge: Some(pkce_challenge(&v)),
            offline_access: true,
            ..LoginRequest::default()
        })
        .expect("a login URL");
    let (code, _state) = authorize(http, url).await;
    let tokens = broker
        .grant(TokenRequest::Code {
            code: code.into(),
            redirect_uri: REDIRECT.into(),
            code_verifier: v.into(),
        })
        .await
        .expect("the code login");
    note_tokens(&tokens);
    tokens
}

/// Refresh at `broker`, recording what comes back.
pub async fn refresh(broker: &Broker, refresh_token: &str) -> Result<TokenResponse, GrantError> {
    let r = broker
        .grant(TokenRequest::Refresh {
            refresh_token: refresh_token.to_owned().into(),
        })
        .await;
    if let Ok(tokens) = &r {
        note_tokens(tokens);
    }
    r
}

/// Record a token response's secrets for the capture check.
pub fn note_tokens(tokens: &TokenResponse) {
    capture::note_jwt("broker access token", &tokens.access_token);
    if let Some(rt) = &tokens.refresh_token {
        capture::note_refresh_token(rt);
    }
}

/// The refresh token of a response.
pub fn rt(tokens: &TokenResponse) -> String {
    tokens.refresh_token.clone().expect("a refresh token")
}

/// The login (`sid`) of a response's access token.
pub fn sid(broker: &Broker, tokens: &TokenResponse) -> String {
    broker
        .issuer()
        .verify_own(&tokens.access_token)
        .expect("our own token")
        .claims
        .sid
        .expect("a sid")
}

/// One login as stored.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FamilyView {
    /// `active`, `compromised`, `logged_out`, or `missing`.
    pub state: String,
    /// Grants in state `live`.
    pub live: usize,
    /// Grants in state `claimed` (tombstones).
    pub claimed: usize,
}

/// Every login in the store.
#[derive(Debug, Default)]
pub struct Inventory(pub BTreeMap<String, FamilyView>);

impl Inventory {
    /// The login `sid` (a default `missing` view if absent).
    pub fn family(&self, sid: &str) -> FamilyView {
        self.0.get(sid).cloned().unwrap_or_else(|| FamilyView {
            state: "missing".into(),
            ..FamilyView::default()
        })
    }
}

/// Scan the store and open every entry: grants by their `family`,
/// families by their key. Records the IdP refresh tokens and ID tokens
/// found (the run's IdP tokens, for the capture check).
pub async fn inventory(vault: &TokenVault) -> Inventory {
    let mut inv = Inventory::default();
    let mut cursor: Option<String> = None;
    loop {
        // A shared server under load may time a page out: retry it.
        let mut attempt = 0;
        let page = loop {
            match vault.store().scan_sessions(cursor.as_deref(), 200).await {
                Ok(page) => break page,
                Err(e) if e.is_retryable() && attempt < 5 => attempt += 1,
                Err(e) => panic!("a scan: {e}"),
            }
        };
        for record in &page.sessions {
            let Some((entry, _)) = vault.get_entry(&record.jti).await.expect("an entry") else {
                continue; // taken or expired since the scan read it
            };
            let payload: Value =
                serde_json::from_slice(entry.payload.expose_secret()).expect("JSON payload");
            let state = payload["state"].as_str().unwrap_or("?").to_owned();
            if let Some(family) = record.jti.strip_prefix("f.") {
                if let Some(t) = payload["id_token"].as_str() {
                    capture::note_jwt("IdP ID token", t);
                }
                inv.0.entry(family.to_owned()).or_default().state = state;
            } else {
                let family = payload["family"]
                    .as_str()
                    .expect("a grant's family")
                    .to_owned();
                if let Some(t) = payload["idp_refresh_token"].as_str() {
                    capture::note_jwt("IdP refresh token", t);
                }
                let view = inv.0.entry(family).or_default();
                match state.as_str() {
                    "live" => view.live += 1,
                    "claimed" => view.claimed += 1,
                    other => panic!("a grant in state {other}"),
                }
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return inv,
        }
    }
}

/// The broker's signing keys (for the capture check).
pub async fn note_signing_keys(vault: &TokenVault) {
    if let Some(secret) = vault
        .load_secret(broker_issuer::keyset::KEYSET_SECRET)
        .await
        .expect("the keyset")
    {
        let keyset: Value = serde_json::from_slice(secret.expose()).expect("keyset JSON");
        for key in keyset["keys"].as_array().into_iter().flatten() {
            if let Some(der) = key["pkcs8"].as_str() {
                // Whole, and as the 64-character lines of its PEM form.
                capture::note("broker signing key (PKCS#8)", der);
                for line in der.as_bytes().chunks(64) {
                    capture::note(
                        "broker signing key (PEM line)",
                        &String::from_utf8_lossy(line),
                    );
                }
            }
        }
    }
}
