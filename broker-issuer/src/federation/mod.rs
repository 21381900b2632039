//! Federation: trusting the access tokens of configured peer brokers
//! (py-oidc-auth's `trusted_issuers`, BROKER.md §5.5), without its flaws
//! (W5, W6, W7, W14, W20, W25).
//!
//! - **A key is trusted only for its issuer.** Each peer has its own key
//!   set; a token's unverified `iss` picks the set, its `kid` is looked up
//!   in that set only, and `iss` is checked again after the signature. A
//!   token naming an issuer that is not configured is refused with no I/O.
//! - **Unknown kid: one shared refresh.** All verifications meeting an
//!   unknown kid of a peer wait on one task, which reads the peer's stored
//!   document first (another worker may have fetched it) and then, if the
//!   cooldown (60 s, set by every attempt, failed or not) allows, fetches
//!   the JWKS once: 3 s for the whole exchange, 64 KiB cap while streaming,
//!   no redirects, HTTPS only (loopback HTTP for tests). The hot path (a
//!   known kid) takes no lock: each peer's keys are an `ArcSwap` snapshot.
//! - **A fetched document replaces the peer's key set** (removed kids stop
//!   verifying) and is saved through the vault, which authenticates it at
//!   rest (SECURITY.md 15); a store error is logged and counted. Weak or
//!   unusable keys are dropped (RSA below 2048 bits, `use` other than
//!   `sig`, unknown `kty`, an algorithm outside the peer's list); a
//!   document with no usable key is refused (the keys in use stay), and
//!   one with private key members is refused and ends trust in every key
//!   of that peer until a clean document arrives.
//! - **Startup does not wait on the network.** [`Federation::open`] loads
//!   the stored documents of configured peers only (younger than
//!   `max_age`); [`Federation::spawn_refresher`] refreshes in the
//!   background.
//! - **Peer claims are filtered** by each peer's [`PeerClaimPolicy`]; the
//!   result says [`Origin::Peer`].

mod config;
mod http;
mod keys;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use broker_core::{Clock, PeerJwks, TokenVault, UnixTime};
use reqwest::Url;
use tokio::sync::watch;
use tracing::{instrument, warn};

pub use config::{
    ClaimFilter, FederationOptions, PY_OIDC_AUTH_JWKS_PATH, PeerClaimPolicy, PeerConfig,
};
pub use http::{PeerHttp, tls_config, tls_config_with_roots};

use crate::claims::{AccessClaims, Origin, Verified};
use crate::error::{IssuerError, VerifyError};
use crate::key::SigningAlg;
use crate::keyset::secs;
use crate::verify::{Expect, check, claimed_issuer, header};
use keys::{DocError, Parsed, PeerKeys};

/// How often [`Federation::spawn_refresher`] refreshes by default.
pub const DEFAULT_REFRESH_EVERY: Duration = Duration::from_secs(15 * 60);

/// The trusted peers and their key sets. Cheap to clone; clones share
/// everything.
///
/// ```no_run
/// # async fn demo(vault: std::sync::Arc<broker_core::TokenVault>) -> Result<(), broker_issuer::IssuerError> {
/// use std::sync::Arc;
/// use broker_issuer::federation::{Federation, FederationOptions, PeerConfig, PeerHttp};
///
/// let peers = vec![PeerConfig::new("https://peer.example/api")];
/// let options = FederationOptions::new(["py-oidc-auth"]);
/// let federation = Federation::open(vault, peers, PeerHttp::new()?, Arc::new(broker_core::SystemClock), options).await?;
/// let _refresher = federation.spawn_refresher(broker_issuer::federation::DEFAULT_REFRESH_EVERY);
/// # let token = "";
/// let verified = federation.verify(token).await; // Origin::Peer { issuer } on success
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Federation {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut issuers: Vec<&str> = self.inner.peers.keys().map(String::as_str).collect();
        issuers.sort_unstable();
        f.debug_struct("Federation")
            .field("peers", &issuers)
            .finish_non_exhaustive()
    }
}

/// One peer's counters and state, for tests and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// The peer's issuer.
    pub issuer: String,
    /// Usable keys in its current set.
    pub keys: usize,
    /// When its current set was fetched (by any worker); `None`: no set.
    pub fetched_at: Option<UnixTime>,
    /// HTTP fetches started.
    pub fetches: u64,
    /// Fetches that failed (transport, timeout, status, size, or a
    /// document refused whole).
    pub fetch_errors: u64,
    /// Keys dropped from fetched or stored documents (weak, `use: enc`,
    /// foreign algorithm, unknown type, malformed, duplicate kid).
    pub keys_dropped: u64,
    /// Store reads or writes of its document that failed.
    pub store_errors: u64,
    /// The kids of its current set's usable keys.
    pub kids: Vec<String>,
    /// Why its last fetch failed (`None`: it succeeded, or none ran).
    pub last_error: Option<&'static str>,
}

struct Inner {
    vault: Arc<TokenVault>,
    http: PeerHttp,
    clock: Arc<dyn Clock>,
    options: FederationOptions,
    peers: HashMap<String, Arc<Peer>>,
}

struct Peer {
    cfg: PeerConfig,
    url: Url,
    keys: ArcSwap<PeerKeys>,
    gate: Mutex<Gate>,
    fetches: AtomicU64,
    fetch_errors: AtomicU64,
    keys_dropped: AtomicU64,
    store_errors: AtomicU64,
}

/// Who may refresh a peer when (held only briefly, never across an await).
struct Gate {
    /// No HTTP fetch before this.
    next_fetch_at: UnixTime,
    /// No store read on an unknown kid before this.
    next_store_at: UnixTime,
    /// The refresh under way and its [`Phase`].
    in_flight: Option<watch::Receiver<Phase>>,
    /// Why the last fetch failed; `None` if it succeeded or none ran.
    last_error: Option<&'static str>,
}

/// How far a refresh task has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Reading the store or fetching.
    Running,
    /// Its keys are in use (or it failed): verifications may go on.
    Decided,
    /// Its document is saved too.
    Finished,
}

/// What a refresh is for.
enum Want {
    /// A token named this kid.
    Kid(String),
    /// A key set at most this many seconds old (scheduled refresh).
    YoungerThan(i64),
}

/// How a refresh request was answered.
enum Start {
    /// What was wanted is there already.
    Satisfied,
    /// Nothing may run now (cooldowns); whether the last fetch failed.
    Gated(bool),
    /// Wait on this refresh.
    Wait(watch::Receiver<Phase>),
}

impl Peer {
    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Put a document's keys into use.
    fn install(&self, parsed: Parsed, fetched_at: UnixTime) {
        Self::count(&self.keys_dropped, parsed.dropped);
        self.keys.store(Arc::new(PeerKeys {
            fetched_at: Some(fetched_at),
            keys: parsed.keys,
        }));
    }
}

impl Federation {
    /// Trust `peers`. Loads the stored documents of these peers only
    /// (younger than `options.max_age`; documents of issuers no longer
    /// configured are ignored) and returns: no network I/O. A store that
    /// fails is logged and counted, not fatal; the peers then have keys
    /// once [`Federation::spawn_refresher`] or a token's unknown kid
    /// fetches them.
    #[instrument(skip_all, name = "federation.open")]
    pub async fn open(
        vault: Arc<TokenVault>,
        peers: Vec<PeerConfig>,
        http: PeerHttp,
        clock: Arc<dyn Clock>,
        options: FederationOptions,
    ) -> Result<Self, IssuerError> {
        options.validate()?;
        let mut map = HashMap::with_capacity(peers.len());
        for cfg in peers {
            let url = cfg.validate(&options)?;
            if map.contains_key(&cfg.issuer) {
                return Err(IssuerError::Config(format!(
                    "peer {} is configured twice",
                    cfg.issuer
                )));
            }
            let peer = Peer {
                url,
                keys: ArcSwap::from_pointee(PeerKeys::default()),
                gate: Mutex::new(Gate {
                    next_fetch_at: UnixTime::MIN,
                    next_store_at: UnixTime::MIN,
                    in_flight: None,
                    last_error: None,
                }),
                fetches: AtomicU64::new(0),
                fetch_errors: AtomicU64::new(0),
                keys_dropped: AtomicU64::new(0),
                store_errors: AtomicU64::new(0),
                cfg,
            };
            map.insert(peer.cfg.issuer.clone(), Arc::new(peer));
        }
        let inner = Arc::new(Inner {
            vault,
            http,
            clock,
            options,
            peers: map,
        });
        if !inner.peers.is_empty() {
            match inner.vault.load_peer_jwks().await {
                Ok(docs) => {
                    for doc in &docs {
                        if let Some(peer) = inner.peers.get(&doc.issuer) {
                            inner.adopt_stored(peer, doc);
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "stored peer key sets cannot be read; peers start without keys");
                    for peer in inner.peers.values() {
                        Peer::count(&peer.store_errors, 1);
                    }
                }
            }
        }
        Ok(Self { inner })
    }

    /// The configured peers' issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.inner.peers.keys().map(String::as_str)
    }

    /// Whether `issuer` is a configured peer.
    pub fn trusts(&self, issuer: &str) -> bool {
        self.inner.peers.contains_key(issuer)
    }

    /// Verify a peer's access token. An `iss` that is not a configured peer
    /// is [`VerifyError::UntrustedIssuer`] with no I/O; an unknown `kid` of
    /// a peer waits on that peer's one shared refresh (see the module
    /// docs), then is [`VerifyError::UnknownKey`], or
    /// [`VerifyError::Unavailable`] if the fetch failed.
    pub async fn verify(&self, token: &str) -> Result<Verified, VerifyError> {
        let issuer = claimed_issuer(token)?;
        self.verify_claimed(token, &issuer).await
    }

    /// [`Federation::verify`] for a token whose unverified `iss` is known.
    pub(crate) async fn verify_claimed(
        &self,
        token: &str,
        issuer: &str,
    ) -> Result<Verified, VerifyError> {
        let peer = self
            .inner
            .peers
            .get(issuer)
            .ok_or(VerifyError::UntrustedIssuer)?;
        let header = header(token)?;
        let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKey)?;
        // Cheap refusals first: they must not cost the peer a fetch.
        let alg = SigningAlg::from_jwt(header.alg)
            .filter(|a| peer.cfg.algorithms.contains(a))
            .ok_or(VerifyError::Algorithm)?;
        if let Some(want) = &peer.cfg.require_typ {
            let typ = header.typ.as_deref().unwrap_or("");
            let ok = typ.eq_ignore_ascii_case(want)
                || typ
                    .get(..12)
                    .is_some_and(|p| p.eq_ignore_ascii_case("application/"))
                    && typ[12..].eq_ignore_ascii_case(want);
            if !ok {
                return Err(VerifyError::TokenType);
            }
        }
        if let Some(result) = self.inner.check(peer, token, kid, alg) {
            return result;
        }
        let fetch_failed = self.inner.await_refresh(peer, kid).await;
        self.inner
            .check(peer, token, kid, alg)
            .unwrap_or(Err(if fetch_failed {
                VerifyError::Unavailable
            } else {
                VerifyError::UnknownKey
            }))
    }

    /// Refresh every peer whose key set is older than `older_than`: its
    /// stored document first, then one HTTP fetch if that is not fresh
    /// enough and the cooldown allows. Waits for all of them.
    #[instrument(skip_all, name = "federation.refresh")]
    pub async fn refresh_stale(&self, older_than: Duration) {
        let mut waits = Vec::new();
        for peer in self.inner.peers.values() {
            if let Start::Wait(rx) = self.inner.start(peer, Want::YoungerThan(secs(older_than))) {
                waits.push(rx);
            }
        }
        for mut rx in waits {
            let _ = rx.wait_for(|phase| *phase == Phase::Finished).await;
        }
    }

    /// Refresh stale peers now and every `every` (default
    /// [`DEFAULT_REFRESH_EVERY`]), in a task that ends when the last clone
    /// of this `Federation` is dropped (or when aborted). Needs a tokio
    /// runtime.
    pub fn spawn_refresher(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                Federation { inner }.refresh_stale(every).await;
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Counters and state of every peer, sorted by issuer.
    pub fn stats(&self) -> Vec<PeerStats> {
        let mut out: Vec<PeerStats> = self
            .inner
            .peers
            .values()
            .map(|p| {
                let keys = p.keys.load();
                PeerStats {
                    issuer: p.cfg.issuer.clone(),
                    keys: keys.keys.len(),
                    fetched_at: keys.fetched_at,
                    fetches: p.fetches.load(Ordering::Relaxed),
                    fetch_errors: p.fetch_errors.load(Ordering::Relaxed),
                    keys_dropped: p.keys_dropped.load(Ordering::Relaxed),
                    store_errors: p.store_errors.load(Ordering::Relaxed),
                    kids: keys.keys.iter().map(|k| k.kid.clone()).collect(),
                    last_error: p.gate().last_error,
                }
            })
            .collect();
        out.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        out
    }
}

impl Inner {
    fn max_age(&self) -> i64 {
        secs(self.options.max_age)
    }

    /// Verify with the peer's current keys; `None` if it has no usable key
    /// `kid`. No I/O, no lock.
    fn check(
        &self,
        peer: &Peer,
        token: &str,
        kid: &str,
        alg: SigningAlg,
    ) -> Option<Result<Verified, VerifyError>> {
        let now = self.clock.now();
        let keys = peer.keys.load();
        let key = keys.find(kid, now, self.max_age())?;
        if key.alg != alg {
            return Some(Err(VerifyError::Algorithm));
        }
        let expect = Expect {
            issuer: &peer.cfg.issuer,
            audiences: &self.options.audiences,
            leeway: secs(self.options.leeway),
            now,
        };
        Some(
            check(token, &key.key, key.alg, &expect).and_then(|mut claims| {
                if let Some(max) = peer.cfg.max_token_lifetime
                    && claims.exp.saturating_sub(claims.iat) > secs(max)
                {
                    return Err(VerifyError::Claims);
                }
                apply_policy(&peer.cfg.claims, &mut claims);
                Ok(Verified {
                    origin: Origin::Peer {
                        issuer: peer.cfg.issuer.clone(),
                    },
                    kid: kid.to_owned(),
                    claims,
                })
            }),
        )
    }

    /// Refresh `peer` for an unknown `kid` (or join the refresh under way)
    /// and wait for it; true if the last fetch failed.
    async fn await_refresh(self: &Arc<Self>, peer: &Arc<Peer>, kid: &str) -> bool {
        // The task's fetch is bounded by its timeout; the store by its own.
        // Bound the wait anyway: a request never hangs on a peer.
        let deadline =
            tokio::time::Instant::now() + self.options.fetch_timeout + Duration::from_secs(1);
        // A joined refresh may be a scheduled one that found the stored
        // keys fresh and fetched nothing: then, if the cooldown still
        // allows a fetch, start one for this kid once it has finished.
        for _ in 0..2 {
            let mut rx = match self.start(peer, Want::Kid(kid.to_owned())) {
                Start::Satisfied => return false,
                Start::Gated(failed) => return failed,
                Start::Wait(rx) => rx,
            };
            let decided = rx.wait_for(|phase| *phase >= Phase::Decided);
            if tokio::time::timeout_at(deadline, decided).await.is_err() {
                return true;
            }
            let now = self.clock.now();
            if peer.keys.load().find(kid, now, self.max_age()).is_some() {
                return false;
            }
            if now < peer.gate().next_fetch_at {
                break;
            }
            let finished = rx.wait_for(|phase| *phase == Phase::Finished);
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                return true;
            }
        }
        peer.gate().last_error.is_some()
    }

    /// Start a refresh of `peer`, join the one under way, or say why none
    /// runs. Decides under the peer's gate, which it never holds across an
    /// await.
    fn start(self: &Arc<Self>, peer: &Arc<Peer>, want: Want) -> Start {
        let now = self.clock.now();
        let mut gate = peer.gate();
        if let Want::Kid(kid) = &want
            && peer.keys.load().find(kid, now, self.max_age()).is_some()
        {
            // Installed between the caller's look-up and this lock.
            return Start::Satisfied;
        }
        if let Some(rx) = &gate.in_flight {
            // A task that ended without clearing its entry (its runtime
            // shut down) left a dropped sender: start afresh.
            if rx.has_changed().is_ok() {
                return Start::Wait(rx.clone());
            }
            gate.in_flight = None;
        }
        let read_store = match want {
            Want::Kid(_) => now >= gate.next_store_at,
            Want::YoungerThan(_) => true,
        };
        if !read_store && now < gate.next_fetch_at {
            return Start::Gated(gate.last_error.is_some());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Start::Gated(gate.last_error.is_some());
        };
        if read_store {
            gate.next_store_at = now.saturating_add(secs(self.options.store_recheck));
        }
        let (tx, rx) = watch::channel(Phase::Running);
        gate.in_flight = Some(rx.clone());
        drop(gate);
        runtime.spawn(Arc::clone(self).refresh(Arc::clone(peer), want, read_store, tx));
        Start::Wait(rx)
    }

    /// The single-flight task: the store, then (if still wanted and the
    /// cooldown allows) one fetch, then the save.
    async fn refresh(
        self: Arc<Self>,
        peer: Arc<Peer>,
        want: Want,
        read_store: bool,
        phase: watch::Sender<Phase>,
    ) {
        if read_store {
            match self.vault.load_peer_jwks().await {
                Ok(docs) => {
                    if let Some(doc) = docs.iter().find(|d| d.issuer == peer.cfg.issuer) {
                        self.adopt_stored(&peer, doc);
                    }
                }
                Err(e) => {
                    warn!(issuer = %peer.cfg.issuer, error = %e, "stored peer key sets cannot be read");
                    Peer::count(&peer.store_errors, 1);
                }
            }
        }
        let now = self.clock.now();
        let satisfied = {
            let keys = peer.keys.load();
            match &want {
                Want::Kid(kid) => keys.find(kid, now, self.max_age()).is_some(),
                Want::YoungerThan(age) => keys.fetched_at.is_some_and(|t| now - t < *age),
            }
        };
        let may_fetch = !satisfied && {
            let mut gate = peer.gate();
            let allowed = now >= gate.next_fetch_at;
            if allowed {
                gate.next_fetch_at = now.saturating_add(secs(self.options.cooldown));
            }
            allowed
        };
        let mut to_save = None;
        if may_fetch {
            let fetched = self.fetch(&peer).await;
            peer.gate().last_error = fetched.as_ref().err().copied();
            to_save = fetched.ok();
        }
        // Waiters go on now; the save below does not hold them up.
        let _ = phase.send(Phase::Decided);
        if let Some((text, fetched_at)) = to_save
            && let Err(e) = self
                .vault
                .save_peer_jwks(&peer.cfg.issuer, &text, fetched_at)
                .await
        {
            warn!(issuer = %peer.cfg.issuer, error = %e, "a fetched peer key set cannot be stored");
            Peer::count(&peer.store_errors, 1);
        }
        peer.gate().in_flight = None;
        let _ = phase.send(Phase::Finished);
    }

    /// One HTTP fetch of `peer`'s JWKS, put into use: the document and its
    /// time, to save; or why it failed (logged and counted).
    async fn fetch(&self, peer: &Peer) -> Result<(String, UnixTime), &'static str> {
        Peer::count(&peer.fetches, 1);
        let failed = |reason: &'static str| {
            warn!(issuer = %peer.cfg.issuer, reason, "peer key set fetch failed");
            Peer::count(&peer.fetch_errors, 1);
            Err(reason)
        };
        let body = match self
            .http
            .get(
                &peer.url,
                self.options.fetch_timeout,
                self.options.max_document_bytes,
            )
            .await
        {
            Ok(body) => body,
            Err(e) => return failed(e.reason()),
        };
        let parsed = match keys::parse(&body, &peer.cfg.algorithms) {
            Ok(parsed) => parsed,
            Err(e) => {
                Peer::count(&peer.keys_dropped, e.dropped());
                if e == DocError::PrivateKey {
                    // Whoever read the document can sign as the peer,
                    // with keys we may hold: trust none of them.
                    peer.keys.store(Arc::new(PeerKeys::default()));
                }
                return failed(e.reason());
            }
        };
        let Ok(text) = String::from_utf8(body) else {
            return failed("the document is not UTF-8");
        };
        let fetched_at = self.clock.now();
        peer.install(parsed, fetched_at);
        Ok((text, fetched_at))
    }

    /// Use a stored document of `peer` if it is newer than the keys in use
    /// and younger than `max_age`.
    fn adopt_stored(&self, peer: &Peer, doc: &PeerJwks) {
        let now = self.clock.now();
        if now - doc.fetched_at >= self.max_age() {
            return;
        }
        if peer
            .keys
            .load()
            .fetched_at
            .is_some_and(|t| t >= doc.fetched_at)
        {
            return;
        }
        match keys::parse(doc.jwks.as_bytes(), &peer.cfg.algorithms) {
            Ok(parsed) => peer.install(parsed, doc.fetched_at),
            Err(e) => {
                Peer::count(&peer.keys_dropped, e.dropped());
                warn!(issuer = %peer.cfg.issuer, reason = e.reason(), "a stored peer key set is not usable");
            }
        }
    }
}

/// Filter a peer token's claims by its policy.
fn apply_policy(policy: &PeerClaimPolicy, claims: &mut AccessClaims) {
    let roles = std::mem::take(&mut claims.roles);
    claims.roles = policy.roles.apply(roles.iter().map(String::as_str));
    if let Some(scope) = claims.scope.take() {
        let kept = policy.scopes.apply(scope.split_ascii_whitespace());
        if !kept.is_empty() {
            claims.scope = Some(kept.join(" "));
        }
    }
    if !policy.keep_other_claims {
        claims.extra.clear();
    }
}
