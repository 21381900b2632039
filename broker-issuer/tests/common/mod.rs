//! A peer broker for federation tests: a second `Issuer` on its own
//! `MemoryStore`, its JWKS served by axum on 127.0.0.1, every request
//! counted, and the answer replaceable by faults.

#![allow(dead_code)] // each test binary uses a part

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use broker_core::{EncryptionKey, KeyConfig, ManualClock, MemoryStore, TokenVault};
use broker_issuer::federation::{Federation, FederationOptions, PeerConfig, PeerHttp};
use broker_issuer::{Issuer, IssuerConfig};

/// The audience every broker of these tests shares (as py-oidc-auth's do).
pub const AUDIENCE: &str = "shared-aud";

/// What the peer's JWKS route answers.
#[derive(Clone)]
pub enum Reply {
    /// The peer issuer's current JWKS.
    Live,
    /// This status and body.
    Fixed(u16, Vec<u8>),
    /// The current JWKS after this delay.
    Slow(Duration),
    /// A chunked body that never ends (no Content-Length).
    Endless,
    /// A 302 to the same route.
    Redirect,
}

struct ServerState {
    issuer: Issuer,
    hits: AtomicUsize,
    reply: Mutex<Reply>,
}

/// A peer broker with its JWKS route.
pub struct Peer {
    /// The peer's issuer (mints its tokens).
    pub issuer: Issuer,
    /// Its `iss`: `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<ServerState>,
}

impl Peer {
    /// Requests its JWKS route has had.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Answer with `reply` from now on.
    pub fn set(&self, reply: Reply) {
        *self.state.reply.lock().unwrap() = reply;
    }

    /// Its current JWKS as JSON.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::from_slice(&self.issuer.jwks().body).unwrap()
    }

    /// A token of `sub` with `roles`.
    pub fn token(&self, sub: &str, roles: &[&str]) -> String {
        let mut claims = self.issuer.claims(sub, format!("jti-{sub}"));
        claims.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        self.issuer.mint(&claims).unwrap()
    }

    /// The `kid` of a token.
    pub fn kid(token: &str) -> String {
        jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
    }

    /// A py-oidc-auth-style configuration for this peer (`typ` not
    /// required, roles dropped).
    pub fn config(&self) -> PeerConfig {
        PeerConfig::new(&self.url)
    }
}

/// A vault on a fresh `MemoryStore`.
pub async fn vault() -> Arc<TokenVault> {
    let key = EncryptionKey::from_bytes(&[9; 32]).unwrap();
    Arc::new(
        TokenVault::open(Arc::new(MemoryStore::new()), KeyConfig::new(key))
            .await
            .unwrap(),
    )
}

/// Bind 127.0.0.1 on a free port.
pub async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A peer broker on `clock`, serving its live JWKS.
pub async fn peer(clock: &ManualClock) -> Peer {
    let (listener, addr) = listener().await;
    let url = format!("http://{addr}");
    let issuer = Issuer::open(
        vault().await,
        IssuerConfig::new(&url, AUDIENCE),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let state = Arc::new(ServerState {
        issuer: issuer.clone(),
        hits: AtomicUsize::new(0),
        reply: Mutex::new(Reply::Live),
    });
    let app = Router::new()
        .route(broker_issuer::federation::PY_OIDC_AUTH_JWKS_PATH, get(jwks))
        .with_state(Arc::clone(&state));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Peer { issuer, url, state }
}

async fn jwks(State(state): State<Arc<ServerState>>) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let reply = state.reply.lock().unwrap().clone();
    let live = || {
        (
            [(header::CONTENT_TYPE, "application/json")],
            state.issuer.jwks().body.to_vec(),
        )
            .into_response()
    };
    match reply {
        Reply::Live => live(),
        Reply::Fixed(status, body) => (StatusCode::from_u16(status).unwrap(), body).into_response(),
        Reply::Slow(delay) => {
            tokio::time::sleep(delay).await;
            live()
        }
        Reply::Endless => {
            let chunks = futures::stream::repeat_with(|| {
                Ok::<_, std::io::Error>(Bytes::from_static(&[b' '; 8192]))
            });
            Body::from_stream(chunks).into_response()
        }
        Reply::Redirect => (
            StatusCode::FOUND,
            [(
                header::LOCATION,
                broker_issuer::federation::PY_OIDC_AUTH_JWKS_PATH,
            )],
        )
            .into_response(),
    }
}

/// Options for tests: loopback HTTP allowed, our shared audience.
pub fn options() -> FederationOptions {
    let mut options = FederationOptions::new([AUDIENCE]);
    options.allow_http_loopback = true;
    options
}

/// A federation trusting `peers` on `vault`.
pub async fn federation(
    vault: Arc<TokenVault>,
    peers: Vec<PeerConfig>,
    clock: &ManualClock,
) -> Federation {
    Federation::open(
        vault,
        peers,
        PeerHttp::new().unwrap(),
        Arc::new(clock.clone()),
        options(),
    )
    .await
    .unwrap()
}
