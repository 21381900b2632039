//! The IdP's state: knobs, faults, keys, users, clients and every grant.
//! One `std::sync::Mutex`, never held across an `.await` or a signature.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broker_core::Clock;

use crate::config::{Endpoint, TestClient, TestIdpConfig, TestUser};
use crate::keys::SigningKey;

/// The runtime-settable token behaviour.
#[derive(Debug, Clone)]
pub(crate) struct Knobs {
    pub(crate) rotate_refresh_tokens: bool,
    pub(crate) reuse_detection: bool,
    pub(crate) refresh_expires_in: Option<u64>,
    pub(crate) omit_refresh_token: bool,
    pub(crate) access_token_ttl: u64,
}

/// An injected failure: answer `status` with `error` for the next
/// `remaining` calls.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) status: u16,
    pub(crate) error: String,
    pub(crate) remaining: u32,
}

/// The faults armed for one endpoint.
#[derive(Debug, Default, Clone)]
pub(crate) struct Faults {
    pub(crate) delay: Duration,
    pub(crate) fail: Option<Failure>,
    pub(crate) drop_next: u32,
}

/// An authorization code not yet redeemed.
#[derive(Debug)]
pub(crate) struct CodeGrant {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) challenge: String,
    pub(crate) nonce: Option<String>,
    pub(crate) scope: String,
    pub(crate) sub: String,
    pub(crate) expires_at: i64,
}

/// Where a device authorization stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceState {
    Pending,
    Approved(String),
    Denied,
    Redeemed,
}

/// A device authorization (RFC 8628).
#[derive(Debug)]
pub(crate) struct DeviceGrant {
    pub(crate) client_id: String,
    pub(crate) user_code: String,
    pub(crate) scope: String,
    pub(crate) expires_at: i64,
    pub(crate) interval: u64,
    pub(crate) last_poll: Option<i64>,
    pub(crate) state: DeviceState,
}

/// One login: every refresh token it begets shares its `sid`.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) sub: String,
    pub(crate) client_id: String,
    pub(crate) scope: String,
    pub(crate) auth_time: i64,
    pub(crate) revoked: bool,
}

/// A refresh token the IdP issued, by `jti`.
#[derive(Debug)]
pub(crate) struct RefreshRecord {
    pub(crate) sid: String,
    pub(crate) expires_at: Option<i64>,
    pub(crate) used: bool,
}

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) knobs: Knobs,
    pub(crate) faults: [Faults; Endpoint::ALL.len()],
    /// Published keys; the last one signs.
    pub(crate) keys: Vec<Arc<SigningKey>>,
    pub(crate) users: Vec<TestUser>,
    pub(crate) clients: Vec<TestClient>,
    pub(crate) codes: HashMap<String, CodeGrant>,
    pub(crate) devices: HashMap<String, DeviceGrant>,
    pub(crate) families: HashMap<String, Family>,
    pub(crate) refresh: HashMap<String, RefreshRecord>,
    pub(crate) revoked_access: HashSet<String>,
}

impl Inner {
    pub(crate) fn signing_key(&self) -> Arc<SigningKey> {
        // `keys` is never empty: start() puts one in, rotation only adds.
        Arc::clone(&self.keys[self.keys.len() - 1])
    }

    pub(crate) fn key(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.keys.iter().find(|k| k.kid == kid).cloned()
    }

    pub(crate) fn user_by_sub(&self, sub: &str) -> Option<&TestUser> {
        self.users.iter().find(|u| u.sub == sub)
    }

    /// A user named by `sub` or username.
    pub(crate) fn user_named(&self, name: &str) -> Option<&TestUser> {
        self.users
            .iter()
            .find(|u| u.sub == name || u.username == name)
    }

    pub(crate) fn client(&self, client_id: &str) -> Option<&TestClient> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    /// Is the login `sid` still alive?
    pub(crate) fn family_active(&self, sid: &str) -> bool {
        self.families.get(sid).is_some_and(|f| !f.revoked)
    }

    /// Revoke the login `sid` and every refresh token of it.
    pub(crate) fn revoke_family(&mut self, sid: &str) {
        if let Some(f) = self.families.get_mut(sid) {
            f.revoked = true;
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) clock: Arc<dyn Clock>,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// `url` + issuer path.
    pub(crate) issuer: String,
    pub(crate) access_token_audience: Vec<String>,
    pub(crate) code_ttl: u64,
    pub(crate) device_code_ttl: u64,
    pub(crate) device_interval: u64,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) calls: [AtomicU64; Endpoint::ALL.len()],
}

impl Shared {
    pub(crate) fn new(config: TestIdpConfig, url: String, key: SigningKey) -> Self {
        let issuer = format!("{url}{}", config.issuer_path.trim_end_matches('/'));
        Self {
            clock: config.clock,
            url,
            issuer,
            access_token_audience: config.access_token_audience,
            code_ttl: config.code_ttl,
            device_code_ttl: config.device_code_ttl,
            device_interval: config.device_interval,
            inner: Mutex::new(Inner {
                knobs: Knobs {
                    rotate_refresh_tokens: config.rotate_refresh_tokens,
                    reuse_detection: config.reuse_detection,
                    refresh_expires_in: config.refresh_expires_in,
                    omit_refresh_token: config.omit_refresh_token,
                    access_token_ttl: config.access_token_ttl,
                },
                faults: Default::default(),
                keys: vec![Arc::new(key)],
                users: config.users,
                clients: config.clients,
                codes: HashMap::new(),
                devices: HashMap::new(),
                families: HashMap::new(),
                refresh: HashMap::new(),
                revoked_access: HashSet::new(),
            }),
            calls: Default::default(),
        }
    }

    /// The lock; a panic elsewhere does not make the IdP unusable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    pub(crate) fn count(&self, endpoint: Endpoint) {
        self.calls[endpoint.index()].fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn calls(&self, endpoint: Endpoint) -> u64 {
        self.calls[endpoint.index()].load(Ordering::SeqCst)
    }

    /// Which endpoint `path` is, if any.
    pub(crate) fn endpoint_of(&self, path: &str) -> Option<Endpoint> {
        let issuer_path = &self.issuer[self.url.len()..];
        let rest = path.strip_prefix(issuer_path)?;
        Endpoint::ALL.into_iter().find(|e| e.path() == rest)
    }

    pub(crate) fn endpoint_url(&self, endpoint: Endpoint) -> String {
        format!("{}{}", self.issuer, endpoint.path())
    }
}

/// `bytes` random bytes, base64url without padding.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // aws-lc's DRBG does not fail on supported platforms; a zeroed buffer
    // would still be unique enough for nothing, so refuse loudly instead.
    aws_lc_rs::rand::fill(&mut buf).expect("system random source");
    URL_SAFE_NO_PAD.encode(buf)
}

/// An RFC 8628 user code: 8 letters from a vowel-free alphabet, `XXXX-XXXX`.
pub(crate) fn user_code() -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut buf = [0u8; 8];
    aws_lc_rs::rand::fill(&mut buf).expect("system random source");
    let mut code = String::with_capacity(9);
    for (i, b) in buf.iter().enumerate() {
        if i == 4 {
            code.push('-');
        }
        code.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
    }
    code
}
