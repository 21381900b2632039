//! [`Issuer`]: this broker's keys, its JWKS, and minting and verifying its
//! own access tokens, with no I/O per call.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use broker_core::vault::{Secret, Stamp};
use broker_core::{Clock, TokenVault, UnixTime};
use jsonwebtoken::Header;
use sha2::{Digest as _, Sha256};

use crate::claims::{AccessClaims, Audience, Origin, Verified};
use crate::error::{IssuerError, VerifyError};
use crate::key::{KeyMaterial, PublicJwk, SigningAlg, import_rsa_pem};
use crate::keyset::{
    KEYSET_SECRET, KeySet, RotationPolicy, RotationReport, load, secs, stored_key,
};
use crate::verify::{Expect, check, header};

/// The `typ` of this issuer's access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// What the issuer signs and how keys rotate.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// This broker's `iss`: an absolute `https` (or `http`) URL, the one
    /// its JWKS route hangs under (peers fetch `<issuer>/auth/v2/.well-known/jwks.json`).
    pub issuer: String,
    /// Audiences put into tokens (the first; a string if one) and accepted
    /// when verifying (any).
    pub audiences: Vec<String>,
    /// The algorithm of new keys. Default RS256.
    pub alg: SigningAlg,
    /// Access-token lifetime. Default 15 minutes.
    pub access_ttl: Duration,
    /// Clock skew accepted when verifying. Default 30 s.
    pub leeway: Duration,
    /// Key rotation.
    pub rotation: RotationPolicy,
}

impl IssuerConfig {
    /// Defaults for `issuer` and one `audience`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        let access_ttl = Duration::from_secs(900);
        let leeway = Duration::from_secs(30);
        Self {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            alg: SigningAlg::RS256,
            access_ttl,
            leeway,
            rotation: RotationPolicy::for_tokens(access_ttl, leeway),
        }
    }

    /// Refuse a configuration that would break tokens or rotation.
    pub fn validate(&self) -> Result<(), IssuerError> {
        let bad = |why: &str| Err(IssuerError::Config(why.to_owned()));
        let scheme_ok = self.issuer.starts_with("https://") || self.issuer.starts_with("http://");
        if !scheme_ok || self.issuer.len() <= "https://".len() || self.issuer.contains(' ') {
            return bad("the issuer must be an absolute http(s) URL");
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return bad("at least one non-empty audience is needed");
        }
        if self.access_ttl.is_zero() {
            return bad("the access-token lifetime must not be zero");
        }
        let r = &self.rotation;
        if r.reload_every >= r.publish_ahead {
            return bad(
                "rotation.reload_every must be shorter than rotation.publish_ahead, \
                 or a worker could sign with a key another worker does not know yet",
            );
        }
        if r.retire_after < self.access_ttl + self.leeway {
            return bad(
                "rotation.retire_after must cover the access-token lifetime plus the leeway",
            );
        }
        Ok(())
    }
}

/// The published JWKS: pre-serialized bytes and an ETag, rebuilt only when
/// the key set or the published window changes.
#[derive(Debug, Clone)]
pub struct Jwks {
    /// `{"keys":[...]}`, public members only.
    pub body: Arc<[u8]>,
    /// A strong ETag of the body (quoted).
    pub etag: Arc<str>,
}

/// One loaded key with its schedule.
#[derive(Debug)]
struct Loaded {
    material: KeyMaterial,
    legacy_kid: Option<String>,
    activate_at: UnixTime,
    retire_at: Option<UnixTime>,
}

impl Loaded {
    fn published_at(&self, now: UnixTime) -> bool {
        self.retire_at.is_none_or(|t| now < t)
    }
}

/// The keys the hot path needs, swapped whole on reload.
struct Snapshot {
    stamp: Stamp,
    keys: Vec<Loaded>,
}

/// The rendered JWKS and until when it is right (a key retires then).
struct RenderedJwks {
    jwks: Jwks,
    until: UnixTime,
}

struct Inner {
    vault: Arc<TokenVault>,
    cfg: IssuerConfig,
    clock: Arc<dyn Clock>,
    snapshot: ArcSwap<Snapshot>,
    jwks: ArcSwap<RenderedJwks>,
    reload: tokio::sync::Mutex<()>,
}

/// This broker as a token issuer. Cheap to clone; every clone shares one
/// key snapshot.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use broker_core::{EncryptionKey, KeyConfig, MemoryStore, SystemClock, TokenVault};
/// use broker_issuer::{Issuer, IssuerConfig};
///
/// let vault = TokenVault::open(Arc::new(MemoryStore::new()), KeyConfig::new(EncryptionKey::generate())).await?;
/// let issuer = Issuer::open(Arc::new(vault), IssuerConfig::new("https://broker.example", "my-api"), Arc::new(SystemClock)).await?;
/// let token = issuer.mint(&issuer.claims("alice", "grant-1"))?;
/// let verified = issuer.verify_own(&token)?;
/// assert_eq!(verified.claims.sub, "alice");
/// assert!(std::str::from_utf8(&issuer.jwks().body).unwrap().contains("\"kty\":\"RSA\""));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snap = self.inner.snapshot.load();
        f.debug_struct("Issuer")
            .field("issuer", &self.inner.cfg.issuer)
            .field(
                "kids",
                &snap
                    .keys
                    .iter()
                    .map(|k| &k.material.kid)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Load the key set from `vault` (creating the first key if there is
    /// none; of racing workers one key wins) and check `cfg`.
    pub async fn open(
        vault: Arc<TokenVault>,
        cfg: IssuerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IssuerError> {
        cfg.validate()?;
        let now = clock.now();
        let alg = cfg.alg;
        let first = KeySet::first(alg, now)?;
        let secret = vault
            .load_or_create_secret(KEYSET_SECRET, move || first.encode())
            .await?;
        Self::with_secret(vault, cfg, clock, &secret)
    }

    /// [`Issuer::open`] on a store that holds a key set already; `None`
    /// (and nothing written) if it holds none. For tools that must not
    /// create one, such as `brokerctl keys list`.
    pub async fn open_existing(
        vault: Arc<TokenVault>,
        cfg: IssuerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, IssuerError> {
        cfg.validate()?;
        match vault.load_secret(KEYSET_SECRET).await? {
            Some(secret) => Self::with_secret(vault, cfg, clock, &secret).map(Some),
            None => Ok(None),
        }
    }

    fn with_secret(
        vault: Arc<TokenVault>,
        cfg: IssuerConfig,
        clock: Arc<dyn Clock>,
        secret: &Secret,
    ) -> Result<Self, IssuerError> {
        let snapshot = build(
            &cfg,
            KeySet::decode(secret.expose())?,
            secret.stamp().clone(),
        )?;
        let jwks = render_jwks(&snapshot.keys, clock.now());
        Ok(Self {
            inner: Arc::new(Inner {
                vault,
                cfg,
                clock,
                snapshot: ArcSwap::from_pointee(snapshot),
                jwks: ArcSwap::from_pointee(jwks),
                reload: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &IssuerConfig {
        &self.inner.cfg
    }

    /// Claims for a new access token of `sub` with id `jti`: `iss`, `aud`
    /// (the first audience), `iat` = `nbf` = now, `exp` = now + access TTL.
    /// Add what else the token carries, then [`Issuer::mint`] it.
    pub fn claims(&self, sub: impl Into<String>, jti: impl Into<String>) -> AccessClaims {
        let cfg = &self.inner.cfg;
        let now = self.inner.clock.now();
        AccessClaims {
            iss: cfg.issuer.clone(),
            sub: sub.into(),
            aud: Audience::One(cfg.audiences[0].clone()),
            exp: now + secs(cfg.access_ttl),
            iat: now,
            nbf: Some(now),
            jti: jti.into(),
            client_id: None,
            sid: None,
            auth_time: None,
            scope: None,
            roles: Vec::new(),
            preferred_username: None,
            email: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Sign `claims` with the key active now (`typ: at+jwt`). No I/O.
    pub fn mint(&self, claims: &AccessClaims) -> Result<String, IssuerError> {
        let now = self.inner.clock.now();
        let snap = self.inner.snapshot.load();
        let key = snap
            .keys
            .iter()
            .filter(|k| k.activate_at <= now)
            .max_by_key(|k| k.activate_at)
            .ok_or(IssuerError::Key {
                op: "mint",
                reason: "no key is active yet",
            })?;
        let mut header = Header::new(key.material.alg.jwt());
        header.kid = Some(key.material.kid.clone());
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        jsonwebtoken::encode(&header, claims, &key.material.encoding).map_err(|_| IssuerError::Sign)
    }

    /// Verify a token this issuer minted. No I/O: a `kid` not in the
    /// current snapshot is [`VerifyError::UnknownKey`] (the snapshot follows
    /// the store through [`Issuer::reload`]). Tokens must be `typ: at+jwt`,
    /// except those signed by an imported py-oidc-auth key under its old
    /// 16-hex kid, which carry `typ: JWT`.
    pub fn verify_own(&self, token: &str) -> Result<Verified, VerifyError> {
        let header = header(token)?;
        let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKey)?;
        let now = self.inner.clock.now();
        let snap = self.inner.snapshot.load();
        let (key, legacy) = snap
            .keys
            .iter()
            .filter(|k| k.published_at(now))
            .find_map(|k| {
                if k.material.kid == kid {
                    Some((k, false))
                } else if k.legacy_kid.as_deref() == Some(kid) {
                    Some((k, true))
                } else {
                    None
                }
            })
            .ok_or(VerifyError::UnknownKey)?;
        if SigningAlg::from_jwt(header.alg) != Some(key.material.alg) {
            return Err(VerifyError::Algorithm);
        }
        let typ_ok = match header.typ.as_deref() {
            Some(t) if t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) => true,
            Some(t) if t.eq_ignore_ascii_case("application/at+jwt") => true,
            Some(t) if legacy && t.eq_ignore_ascii_case("JWT") => true,
            _ => false,
        };
        if !typ_ok {
            return Err(VerifyError::TokenType);
        }
        let cfg = &self.inner.cfg;
        let claims = check(
            token,
            &key.material.decoding,
            key.material.alg,
            &Expect {
                issuer: &cfg.issuer,
                audiences: &cfg.audiences,
                leeway: secs(cfg.leeway),
                now,
            },
        )?;
        Ok(Verified {
            origin: Origin::Local,
            kid: kid.to_owned(),
            claims,
        })
    }

    /// The JWKS to publish now: every published key, public members only.
    pub fn jwks(&self) -> Jwks {
        let now = self.inner.clock.now();
        let cached = self.inner.jwks.load();
        if now < cached.until {
            return cached.jwks.clone();
        }
        // A key retired since: render again from the same keys (no I/O).
        let fresh = render_jwks(&self.inner.snapshot.load().keys, now);
        let jwks = fresh.jwks.clone();
        self.inner.jwks.store(Arc::new(fresh));
        jwks
    }

    /// Read the key set from the store and use it if it changed.
    pub async fn reload(&self) -> Result<(), IssuerError> {
        let _one = self.inner.reload.lock().await;
        let secret = self
            .inner
            .vault
            .load_secret(KEYSET_SECRET)
            .await?
            .ok_or(IssuerError::CorruptKeySet("the key set record is gone"))?;
        if &self.inner.snapshot.load().stamp == secret.stamp() {
            return Ok(());
        }
        let now = self.inner.clock.now();
        let snapshot = build(
            &self.inner.cfg,
            KeySet::decode(secret.expose())?,
            secret.stamp().clone(),
        )?;
        self.inner
            .jwks
            .store(Arc::new(render_jwks(&snapshot.keys, now)));
        self.inner.snapshot.store(Arc::new(snapshot));
        Ok(())
    }

    /// Do what the schedule says is due (add a key, drop retired ones), by
    /// compare-and-set: any worker may call it, at any time, concurrently;
    /// of racing callers exactly one adds a key. Reloads afterwards.
    pub async fn maintain(&self) -> Result<RotationReport, IssuerError> {
        let cfg = &self.inner.cfg;
        self.update(|set, now| set.maintain(now, &cfg.rotation, cfg.alg))
            .await
    }

    /// Add a key now, by hand: with `immediately`, it signs at once
    /// (emergency: peers meet an unknown kid and fetch the JWKS again);
    /// otherwise it is published now and signs `publish_ahead` later.
    pub async fn rotate(&self, immediately: bool) -> Result<RotationReport, IssuerError> {
        let cfg = &self.inner.cfg;
        let ahead = if immediately {
            0
        } else {
            secs(cfg.rotation.publish_ahead)
        };
        self.update(|set, now| {
            let key = crate::keyset::new_key(cfg.alg, now, now + ahead)?;
            let report = RotationReport {
                added: Some(key.kid.clone()),
                retired: Vec::new(),
            };
            Ok(Some((set.with_key(key), report)))
        })
        .await
    }

    /// Import a py-oidc-auth private key (PEM) as a key that signs from
    /// now, keeping py-oidc-auth's 16-hex kid as an alias, so tokens it
    /// minted with that key still verify. Returns the new key's kid.
    pub async fn import_pem(&self, pem: &str) -> Result<String, IssuerError> {
        let (pkcs8, legacy_kid) = import_rsa_pem(pem)?;
        let report = self
            .update(|set, now| {
                let key = stored_key(
                    SigningAlg::RS256,
                    &pkcs8,
                    Some(legacy_kid.clone()),
                    now,
                    now,
                )?;
                if set.keys.iter().any(|k| k.kid == key.kid) {
                    return Ok(None);
                }
                let report = RotationReport {
                    added: Some(key.kid.clone()),
                    retired: Vec::new(),
                };
                Ok(Some((set.with_key(key), report)))
            })
            .await?;
        let kid = report.added.ok_or(IssuerError::Key {
            op: "import key",
            reason: "this key is already in the key set",
        })?;
        Ok(kid)
    }

    /// The keys of the current snapshot: kid, legacy kid, algorithm,
    /// activation and retirement time (no key material).
    pub fn keys(&self) -> Vec<KeyInfo> {
        let now = self.inner.clock.now();
        let snap = self.inner.snapshot.load();
        let signing = snap
            .keys
            .iter()
            .filter(|k| k.activate_at <= now)
            .max_by_key(|k| k.activate_at)
            .map(|k| k.material.kid.clone());
        snap.keys
            .iter()
            .map(|k| KeyInfo {
                kid: k.material.kid.clone(),
                legacy_kid: k.legacy_kid.clone(),
                alg: k.material.alg,
                activate_at: k.activate_at,
                retire_at: k.retire_at,
                signing: signing.as_deref() == Some(k.material.kid.as_str()),
            })
            .collect()
    }

    /// Run `change` on the stored key set until it applies by
    /// compare-and-set, then reload.
    async fn update<F>(&self, change: F) -> Result<RotationReport, IssuerError>
    where
        F: Fn(&KeySet, UnixTime) -> Result<Option<(KeySet, RotationReport)>, IssuerError>,
    {
        let vault = &self.inner.vault;
        let report = loop {
            let current = vault
                .load_secret(KEYSET_SECRET)
                .await?
                .ok_or(IssuerError::CorruptKeySet("the key set record is gone"))?;
            let now = self.inner.clock.now();
            let Some((next, report)) = change(&KeySet::decode(current.expose())?, now)? else {
                break RotationReport::default();
            };
            if vault
                .replace_secret(KEYSET_SECRET, current.stamp(), &next.encode())
                .await?
                .is_some()
            {
                break report;
            }
            // Another worker changed the set meanwhile: decide again on its.
        };
        self.reload().await?;
        Ok(report)
    }
}

/// A key as `brokerctl keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The RFC 7638 thumbprint.
    pub kid: String,
    /// py-oidc-auth's id of an imported key.
    pub legacy_kid: Option<String>,
    /// The algorithm.
    pub alg: SigningAlg,
    /// When it signs from.
    pub activate_at: UnixTime,
    /// When it leaves the JWKS (`None` while it has no successor).
    pub retire_at: Option<UnixTime>,
    /// Whether it signs now.
    pub signing: bool,
}

/// Load every key of `set`.
fn build(cfg: &IssuerConfig, set: KeySet, stamp: Stamp) -> Result<Snapshot, IssuerError> {
    let mut keys = Vec::with_capacity(set.keys.len());
    for (i, stored) in set.keys.iter().enumerate() {
        keys.push(Loaded {
            material: load(stored)?,
            legacy_kid: stored.legacy_kid.clone(),
            activate_at: stored.activate_at,
            retire_at: set.retire_at(i, cfg.rotation.retire_after),
        });
    }
    Ok(Snapshot { stamp, keys })
}

/// The JWKS of the keys published at `now` (an imported key appears under
/// both its kids), and until when it stays right.
fn render_jwks(keys: &[Loaded], now: UnixTime) -> RenderedJwks {
    let mut published: Vec<PublicJwk> = Vec::new();
    for k in keys.iter().filter(|k| k.published_at(now)) {
        published.push(k.material.public.clone());
        if let Some(legacy) = &k.legacy_kid {
            let mut alias = k.material.public.clone();
            alias.kid.clone_from(legacy);
            published.push(alias);
        }
    }
    let body = serde_json::to_vec(&serde_json::json!({ "keys": published }))
        .unwrap_or_else(|_| b"{\"keys\":[]}".to_vec());
    let digest = Sha256::digest(&body);
    let etag: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let until = keys
        .iter()
        .filter_map(|k| k.retire_at)
        .filter(|&t| t > now)
        .min()
        .unwrap_or(UnixTime::MAX);
    RenderedJwks {
        jwks: Jwks {
            body: body.into(),
            etag: format!("\"{etag}\"").into(),
        },
        until,
    }
}
