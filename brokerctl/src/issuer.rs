//! `brokerctl keys …` and `brokerctl peers …`: the broker's signing keys
//! (broker-issuer's key set, one sealed record in the vault) and the peer
//! JWKS documents it keeps (see `docs/BROKER-DESIGN.md`).
//!
//! Nothing here prints or returns key material: a key is its kid,
//! algorithm, state and times. A PEM to import is read from a file whose
//! content never appears in an error, and it is checked before the store
//! is touched, so a bad file writes nothing.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use broker_core::{Clock, StoreError, TokenVault, UnixTime};
use broker_issuer::federation::{Federation, FederationOptions, PeerConfig, PeerHttp};
use broker_issuer::{Issuer, IssuerConfig, IssuerError, KeyInfo, SigningAlg};
use secrecy::{ExposeSecret, SecretString};

use crate::output;

/// The largest PEM file read (an RSA-4096 key is about 3.3 KiB).
pub const MAX_PEM_BYTES: u64 = 64 * 1024;

/// Why a `keys` or `peers` command failed. Never holds key material,
/// PEM content or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerCmdError {
    /// The PEM file cannot be read (missing, unreadable, a directory).
    #[error("cannot read the PEM file {}: {kind}", path.display())]
    PemFile {
        /// The file named.
        path: PathBuf,
        /// What went wrong.
        kind: std::io::ErrorKind,
    },
    /// The file is larger than [`MAX_PEM_BYTES`].
    #[error("the PEM file {} is larger than {MAX_PEM_BYTES} bytes", path.display())]
    PemTooLarge {
        /// The file named.
        path: PathBuf,
    },
    /// The file is not a private key the issuer imports.
    #[error("{} is not an importable private key: {reason}", path.display())]
    NotAKey {
        /// The file named.
        path: PathBuf,
        /// Why, without any of its content.
        reason: String,
    },
    /// Fetching a peer's JWKS failed.
    #[error("fetching the JWKS of {issuer} failed: {reason}")]
    Fetch {
        /// The peer.
        issuer: String,
        /// Why (transport, timeout, status, size, a refused document).
        reason: &'static str,
    },
    /// The issuer's keys or configuration.
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The configuration brokerctl opens the key set with: the issuer URL and
/// audience only matter for minting, which brokerctl never does; the
/// rotation policy is the default one (15-minute tokens).
fn config(alg: SigningAlg) -> IssuerConfig {
    let mut cfg = IssuerConfig::new("https://brokerctl.invalid", "brokerctl");
    cfg.alg = alg;
    cfg
}

/// A key as listed at `now`.
fn key(info: &KeyInfo, now: UnixTime) -> output::Key {
    let state = if info.activate_at > now {
        "published"
    } else if info.signing {
        "active"
    } else if info.retire_at.is_some_and(|t| t > now) {
        "retiring"
    } else {
        "retired"
    };
    output::Key {
        kid: info.kid.clone(),
        legacy_kid: info.legacy_kid.clone(),
        alg: info.alg.name(),
        state,
        activate_at: info.activate_at,
        retire_at: info.retire_at,
    }
}

fn keys_of(issuer: Option<&Issuer>, now: UnixTime) -> output::Keys {
    output::Keys {
        key_set: issuer.is_some(),
        keys: issuer
            .map(|i| i.keys().iter().map(|k| key(k, now)).collect())
            .unwrap_or_default(),
    }
}

/// `keys list`: the stored key set, or none (nothing is created).
pub async fn list_keys(
    vault: Arc<TokenVault>,
    clock: Arc<dyn Clock>,
) -> Result<output::Keys, IssuerCmdError> {
    let now = clock.now();
    let issuer = Issuer::open_existing(vault, config(SigningAlg::RS256), clock).await?;
    Ok(keys_of(issuer.as_ref(), now))
}

/// `keys rotate`: add a key of `alg` (default: the signing key's), signing
/// at once with `now`, else after the default `publish_ahead` (1 h). On a
/// store without a key set, its first key, active at once.
pub async fn rotate(
    vault: Arc<TokenVault>,
    clock: Arc<dyn Clock>,
    alg: Option<SigningAlg>,
    now: bool,
) -> Result<output::Rotated, IssuerCmdError> {
    let existing =
        Issuer::open_existing(Arc::clone(&vault), config(SigningAlg::RS256), clock.clone()).await?;
    let signing_alg = existing
        .as_ref()
        .and_then(|i| i.keys().into_iter().find(|k| k.signing).map(|k| k.alg));
    let alg = alg.or(signing_alg).unwrap_or_default();
    let issuer = Issuer::open(vault, config(alg), clock.clone()).await?;
    let added = if existing.is_some() {
        issuer.rotate(now).await?.added
    } else {
        issuer.keys().first().map(|k| k.kid.clone())
    };
    Ok(output::Rotated {
        added,
        created_key_set: existing.is_none(),
        keys: keys_of(Some(&issuer), clock.now()),
    })
}

/// Read and check the PEM at `path`, touching no store: a missing,
/// oversized or unusable file is an error naming the file, never its
/// content. Returns the PEM and py-oidc-auth's kid for it.
pub fn read_pem(path: &Path) -> Result<(SecretString, String), IssuerCmdError> {
    let io = |e: std::io::Error| IssuerCmdError::PemFile {
        path: path.to_owned(),
        kind: e.kind(),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(IssuerCmdError::PemTooLarge {
            path: path.to_owned(),
        });
    }
    let not_a_key = |reason: String| IssuerCmdError::NotAKey {
        path: path.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| not_a_key("not text".into()))?;
    let legacy_kid = broker_issuer::key::check_pem(text).map_err(|e| not_a_key(e.to_string()))?;
    Ok((SecretString::from(text.to_owned()), legacy_kid))
}

/// `keys import-pem`: import a checked PEM (see [`read_pem`]) as a key
/// signing from now, keeping py-oidc-auth's kid as an alias. On a store
/// without a key set, one is created first (its fresh key retires on
/// schedule).
pub async fn import_pem(
    vault: Arc<TokenVault>,
    clock: Arc<dyn Clock>,
    pem: &SecretString,
) -> Result<output::Imported, IssuerCmdError> {
    let issuer = Issuer::open(vault, config(SigningAlg::RS256), clock.clone()).await?;
    let kid = issuer.import_pem(pem.expose_secret()).await?;
    let legacy_kid = issuer
        .keys()
        .into_iter()
        .find(|k| k.kid == kid)
        .and_then(|k| k.legacy_kid);
    Ok(output::Imported {
        kid,
        legacy_kid,
        keys: keys_of(Some(&issuer), clock.now()),
    })
}

/// The kids a stored JWKS document names (as stored; the federation
/// drops weak or foreign keys when it loads it).
fn kids(jwks: &str) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(jwks).unwrap_or_default();
    doc["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `peers list`: every stored peer document and every `configured`
/// issuer, sorted by issuer.
pub async fn list_peers(
    vault: &TokenVault,
    configured: &[String],
) -> Result<output::Peers, IssuerCmdError> {
    let mut peers: Vec<output::Peer> = vault
        .load_peer_jwks()
        .await?
        .into_iter()
        .map(|doc| output::Peer {
            configured: configured.contains(&doc.issuer),
            stored: true,
            fetched_at: Some(doc.fetched_at),
            kids: kids(&doc.jwks),
            issuer: doc.issuer,
        })
        .collect();
    for issuer in configured {
        if !peers.iter().any(|p| &p.issuer == issuer) {
            peers.push(output::Peer {
                issuer: issuer.clone(),
                configured: true,
                stored: false,
                fetched_at: None,
                kids: Vec::new(),
            });
        }
    }
    peers.sort_by(|a, b| a.issuer.cmp(&b.issuer));
    Ok(output::Peers { peers })
}

/// How `peers refresh` reaches a peer. `Debug` leaves out the JWKS URL
/// (it may hold credentials).
#[derive(Clone, Default)]
pub struct RefreshOptions {
    /// The JWKS URL (default: py-oidc-auth's layout under the issuer).
    pub jwks_uri: Option<String>,
    /// Algorithms accepted (default RS256).
    pub algorithms: Vec<SigningAlg>,
    /// Accept `http://` on loopback (tests).
    pub allow_http_loopback: bool,
}

impl std::fmt::Debug for RefreshOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshOptions")
            .field("algorithms", &self.algorithms)
            .field("allow_http_loopback", &self.allow_http_loopback)
            .finish_non_exhaustive()
    }
}

/// `peers refresh`: fetch `issuer`'s JWKS now (3 s, 64 KiB, HTTPS, no
/// redirects, weak keys dropped) and save it through the vault.
pub async fn refresh_peer(
    vault: Arc<TokenVault>,
    clock: Arc<dyn Clock>,
    issuer: &str,
    how: RefreshOptions,
) -> Result<output::Refreshed, IssuerCmdError> {
    let mut cfg = PeerConfig::new(issuer);
    if let Some(uri) = how.jwks_uri {
        cfg.jwks_uri = uri;
    }
    if !how.algorithms.is_empty() {
        cfg.algorithms = how.algorithms;
    }
    let mut options = FederationOptions::new(["brokerctl"]);
    options.allow_http_loopback = how.allow_http_loopback;
    let federation = Federation::open(
        Arc::clone(&vault),
        vec![cfg],
        PeerHttp::new()?,
        clock,
        options,
    )
    .await?;
    federation.refresh_stale(Duration::ZERO).await;
    let stats = federation.stats().remove(0);
    if let Some(reason) = stats.last_error {
        return Err(IssuerCmdError::Fetch {
            issuer: issuer.to_owned(),
            reason,
        });
    }
    let saved = vault
        .load_peer_jwks()
        .await?
        .iter()
        .any(|d| d.issuer == issuer && Some(d.fetched_at) == stats.fetched_at);
    if !saved {
        return Err(StoreError::invalid(
            "peers refresh",
            format!("the JWKS of {issuer} was fetched but could not be stored"),
        )
        .into());
    }
    Ok(output::Refreshed {
        issuer: issuer.to_owned(),
        fetched_at: stats.fetched_at,
        kids: stats.kids,
        keys_dropped: stats.keys_dropped,
    })
}

/// `peers forget`: remove `issuer`'s stored document (the federation
/// fetches it again on its next need).
pub async fn forget_peer(
    vault: &TokenVault,
    issuer: &str,
) -> Result<output::Forgotten, IssuerCmdError> {
    Ok(output::Forgotten {
        issuer: issuer.to_owned(),
        forgotten: vault.delete_peer_jwks(issuer).await?,
    })
}

/// `brokerctl keys …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// The signing keys: kid, algorithm, state, activation and retirement
    /// (never key material). Creates nothing.
    List,
    /// Add a signing key: published now, signing after publish_ahead (1 h),
    /// or at once with --now (peers then meet an unknown kid and refetch).
    Rotate {
        /// Sign with it at once.
        #[arg(long)]
        now: bool,
        /// Its algorithm (default: the signing key's; RS256 for a new set).
        #[arg(long, value_enum)]
        alg: Option<Alg>,
    },
    /// Import a py-oidc-auth RSA private key (PEM file) as the signing key,
    /// keeping py-oidc-auth's kid so its tokens still verify.
    ImportPem {
        /// The PEM file (read, never printed).
        file: PathBuf,
    },
}

/// `brokerctl peers …` (no `Debug`: a JWKS URL may hold credentials).
#[derive(Clone, clap::Subcommand)]
pub enum PeersCommand {
    /// Stored peer JWKS documents (issuer, fetched_at, kids), and the
    /// issuers named with --peer.
    List {
        /// A configured peer issuer (repeat for several).
        #[arg(long = "peer")]
        peers: Vec<String>,
    },
    /// Fetch a peer's JWKS now (HTTPS, 3 s, 64 KiB, no redirects) and store
    /// it through the vault.
    Refresh {
        /// The peer's issuer URL (its exact `iss`).
        issuer: String,
        /// Its JWKS URL (default: the issuer + /auth/v2/.well-known/jwks.json).
        #[arg(long)]
        jwks_uri: Option<String>,
        /// Algorithms its keys may use (repeat; default RS256).
        #[arg(long = "alg", value_enum)]
        algs: Vec<Alg>,
        /// Accept http:// on a loopback address (tests).
        #[arg(long)]
        allow_http_loopback: bool,
    },
    /// Remove a peer's stored JWKS document.
    Forget {
        /// The peer's issuer URL.
        issuer: String,
    },
}

/// A signing algorithm on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Alg {
    /// RSA-2048, PKCS#1 v1.5 with SHA-256.
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA P-256.
    #[value(name = "ES256")]
    Es256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
}

impl From<Alg> for SigningAlg {
    fn from(a: Alg) -> Self {
        match a {
            Alg::Rs256 => SigningAlg::RS256,
            Alg::Es256 => SigningAlg::ES256,
            Alg::EdDsa => SigningAlg::EdDSA,
        }
    }
}

/// What a `keys` or `peers` command reports: its `--json` document and
/// its text.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum Report {
    /// `keys list`.
    Keys(output::Keys),
    /// `keys rotate`.
    Rotated(output::Rotated),
    /// `keys import-pem`.
    Imported(output::Imported),
    /// `peers list`.
    Peers(output::Peers),
    /// `peers refresh`.
    Refreshed(output::Refreshed),
    /// `peers forget`.
    Forgotten(output::Forgotten),
}

impl Report {
    /// The text brokerctl prints without `--json`.
    pub fn text(&self) -> String {
        match self {
            Report::Keys(k) => keys_text(k),
            Report::Rotated(r) => {
                let head = match (&r.added, r.created_key_set) {
                    (Some(kid), true) => {
                        format!("created the key set; its first key {kid} signs now")
                    }
                    (Some(kid), false) => format!("added key {kid}"),
                    (None, _) => "no key added".to_owned(),
                };
                format!("{head}\n{}", keys_text(&r.keys))
            }
            Report::Imported(i) => format!(
                "imported key {} (py-oidc-auth kid {}); it signs from now\n{}",
                i.kid,
                i.legacy_kid.as_deref().unwrap_or("-"),
                keys_text(&i.keys)
            ),
            Report::Peers(p) if p.peers.is_empty() => "no peer documents stored".to_owned(),
            Report::Peers(p) => p
                .peers
                .iter()
                .map(|p| {
                    format!(
                        "{}  {}  fetched {}  kids {}",
                        p.issuer,
                        match (p.configured, p.stored) {
                            (true, true) => "configured, stored",
                            (true, false) => "configured, nothing stored",
                            _ => "stored, not configured",
                        },
                        p.fetched_at.map_or("never".into(), utc),
                        if p.kids.is_empty() {
                            "-".into()
                        } else {
                            p.kids.join(", ")
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Report::Refreshed(r) => format!(
                "fetched and stored the JWKS of {} at {}: kids {}{}",
                r.issuer,
                r.fetched_at.map_or("-".into(), utc),
                r.kids.join(", "),
                if r.keys_dropped > 0 {
                    format!(" ({} keys dropped)", r.keys_dropped)
                } else {
                    String::new()
                }
            ),
            Report::Forgotten(f) if f.forgotten => {
                format!("removed the stored JWKS of {}", f.issuer)
            }
            Report::Forgotten(f) => format!("no JWKS of {} was stored", f.issuer),
        }
    }
}

fn keys_text(k: &output::Keys) -> String {
    if !k.key_set {
        return "no key set in this store (a broker creates one when it starts; \
                `brokerctl keys rotate` creates one now)"
            .to_owned();
    }
    k.keys
        .iter()
        .map(|key| {
            format!(
                "{}  {:<5}  {:<9}  active from {}  retires {}{}",
                key.kid,
                key.alg,
                key.state,
                utc(key.activate_at),
                key.retire_at.map_or("-".into(), utc),
                key.legacy_kid
                    .as_ref()
                    .map(|l| format!("  (py-oidc-auth kid {l})"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run a `keys` command. `vault` opens the store (called only once the
/// input is checked: a bad PEM file writes nothing).
pub async fn run_keys<F>(
    cmd: &KeysCommand,
    vault: F,
    clock: Arc<dyn Clock>,
) -> Result<Report, IssuerCmdError>
where
    F: AsyncFnOnce() -> Result<Arc<TokenVault>, StoreError>,
{
    Ok(match cmd {
        KeysCommand::List => Report::Keys(list_keys(vault().await?, clock).await?),
        KeysCommand::Rotate { now, alg } => {
            Report::Rotated(rotate(vault().await?, clock, alg.map(SigningAlg::from), *now).await?)
        }
        KeysCommand::ImportPem { file } => {
            let (pem, _) = read_pem(file)?;
            Report::Imported(import_pem(vault().await?, clock, &pem).await?)
        }
    })
}

/// Run a `peers` command on the store `vault` opens.
pub async fn run_peers<F>(
    cmd: &PeersCommand,
    vault: F,
    clock: Arc<dyn Clock>,
) -> Result<Report, IssuerCmdError>
where
    F: AsyncFnOnce() -> Result<Arc<TokenVault>, StoreError>,
{
    let vault = vault().await?;
    Ok(match cmd {
        PeersCommand::List { peers } => Report::Peers(list_peers(&vault, peers).await?),
        PeersCommand::Refresh {
            issuer,
            jwks_uri,
            algs,
            allow_http_loopback,
        } => {
            let how = RefreshOptions {
                jwks_uri: jwks_uri.clone(),
                algorithms: algs.iter().map(|&a| a.into()).collect(),
                allow_http_loopback: *allow_http_loopback,
            };
            Report::Refreshed(refresh_peer(vault, clock, issuer, how).await?)
        }
        PeersCommand::Forget { issuer } => Report::Forgotten(forget_peer(&vault, issuer).await?),
    })
}

/// `t` as `YYYY-MM-DD HH:MM:SSZ` (UTC).
pub fn utc(t: UnixTime) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_798_761_599), "2026-12-31 23:59:59Z");
        assert_eq!(utc(-1), "1969-12-31 23:59:59Z");
    }

    #[test]
    fn kids_of_odd_documents() {
        assert_eq!(
            kids(r#"{"keys":[{"kid":"a"},{"x":1},{"kid":"b"}]}"#),
            ["a", "b"]
        );
        assert!(kids("not json").is_empty());
    }
}
