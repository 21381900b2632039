//! Copy a broker's state from one store to another: every kept revocation
//! marker, every live session (opened and re-sealed under the same keys),
//! the signing key and peer JWKS.
//!
//! Markers go first, so a revoked subject's session saved on the destination
//! meanwhile is refused there too, and again at the end, so a subject
//! revoked on the source during the copy is revoked on the destination.
//!
//! Sessions are sealed again at the destination, under the same key. Nonce
//! budgets are counted per database ([`BUDGET_WARNING`]): on one database
//! every namespace draws on one budget per key; a destination on another
//! database has its own.
//!
//! The copy streams page by page (bounded memory), leaves the source
//! untouched, and is safe to re-run (writes are upserts). With a resume file
//! the cursor is saved after every page, so a run that was stopped — killed,
//! or limited with [`MigrateOptions::max_sessions`] — continues where it
//! stopped instead of starting over.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use broker_core::crypto::EncryptionKey;
//! use broker_core::{KeyConfig, MemoryStore, TokenVault};
//! use brokerctl::migrate::{MigrateOptions, migrate};
//! use std::sync::Arc;
//!
//! let keys = || KeyConfig::new(EncryptionKey::from_bytes(&[7; 32]).unwrap());
//! let source = TokenVault::open(Arc::new(MemoryStore::new()), keys()).await?;
//! let dest = TokenVault::open(Arc::new(MemoryStore::new()), keys()).await?;
//! let report = migrate(&source, &dest, &MigrateOptions::default(), |_| {}).await.unwrap();
//! assert!(report.complete);
//! # Ok::<(), broker_core::StoreError>(()) });
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use broker_core::vault::SIGNING_KEY_RECORD;
use broker_core::{Namespace, StoreError, TokenVault};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What `brokerctl migrate` prints when the destination is another
/// database: nonce budgets are counted per database.
pub const BUDGET_WARNING: &str = "the destination is another database, and a key's nonce budget \
    is counted per database: the seals of this migration (one per session) and every later seal \
    there are not counted against this database's budget for the same key, nor the other way \
    round. If both databases keep sealing with this key, rotate one of them to a new key.";

/// Sessions read per page.
const PAGE: usize = 1000;

/// How to run a migration. `Debug` does not show the route (it may name
/// URLs).
#[derive(Clone, Default)]
pub struct MigrateOptions {
    /// Where to keep the cursor between runs. `None`: no resume, a re-run
    /// starts from the beginning (still correct, only slower).
    pub resume_file: Option<PathBuf>,
    /// Copy at most this many sessions in this run, then stop (resume later
    /// with the same resume file). `None`: copy everything.
    pub max_sessions: Option<u64>,
    /// Identifies the source and destination in the resume file (build it
    /// with [`route`]: both URLs without their passwords, and both
    /// namespaces). Only a salted digest of it is written, never the text.
    pub route: String,
}

impl std::fmt::Debug for MigrateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateOptions")
            .field("resume_file", &self.resume_file)
            .field("max_sessions", &self.max_sessions)
            .field("route", &"[REDACTED]")
            .finish()
    }
}

/// The route of a migration from `src_url`/`src_ns` to `dest_url`/`dest_ns`
/// for [`MigrateOptions::route`]: the URLs with any password removed.
pub fn route(src_url: &str, src_ns: &Namespace, dest_url: &str, dest_ns: &Namespace) -> String {
    format!(
        "{}\n{src_ns}\n{}\n{dest_ns}",
        without_password(src_url),
        without_password(dest_url)
    )
}

/// `url` with the password of its user info removed (the whole user info
/// if the URL does not parse).
fn without_password(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url)
        && parsed.set_password(None).is_ok()
    {
        return parsed.into();
    }
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.rsplit('@').next().unwrap_or_default().to_owned(),
    }
}

/// What a run did. Serialized, it is the JSON `brokerctl migrate --json`
/// prints (keys as in the `serde` attributes).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MigrateReport {
    /// Sessions copied in this run.
    #[serde(rename = "sessions_this_run")]
    pub copied_this_run: u64,
    /// Sessions copied by every run of this migration (with a resume file).
    #[serde(rename = "sessions")]
    pub copied_total: u64,
    /// Peer JWKS copied (at the end of the final run).
    pub peers: u64,
    /// Revocation markers copied (before the sessions and again at the end,
    /// so no revoked session comes back on the destination).
    pub revocations: u64,
    /// Whether the signing key was copied (or already there, identical).
    pub signing_key: bool,
    /// Live sessions at the destination after the run.
    #[serde(rename = "destination_live_sessions")]
    pub destination_live: u64,
    /// True if every page was copied; false if `max_sessions` stopped it.
    pub complete: bool,
    /// Whether this run continued from a resume file.
    pub resumed: bool,
    /// Seconds this run took.
    pub seconds: f64,
}

/// Progress after each page: sessions copied so far by every run.
pub type Progress = u64;

/// Copy `source` to `dest` (both opened with the keys of the source's data).
///
/// Errors: the stores' own errors; [`StoreError::InvalidInput`] for a resume
/// file of another migration or one that cannot be read or written;
/// [`StoreError::Conflict`] if the destination already holds a *different*
/// signing key (left as it was); [`StoreError::Backend`] if the final count
/// check fails.
pub async fn migrate(
    source: &TokenVault,
    dest: &TokenVault,
    options: &MigrateOptions,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<MigrateReport, StoreError> {
    let op = "migrate";
    let started = Instant::now();
    let state = match &options.resume_file {
        Some(path) => ResumeState::load(path, &options.route)?,
        None => None,
    };
    let salt = state.as_ref().map_or_else(new_salt, |s| s.salt.clone());
    let route = route_digest(&salt, &options.route);
    let resumed = state.is_some();
    let (mut cursor, mut copied_total, mut complete) =
        state.map_or((None, 0, false), |s| (s.cursor, s.copied, s.scanned));
    let mut copied_this_run = 0u64;
    let mut revocations = copy_revocations(source, dest).await?;
    while !complete {
        let room = options
            .max_sessions
            .map_or(PAGE as u64, |max| max.saturating_sub(copied_this_run));
        if room == 0 {
            break;
        }
        let limit = usize::try_from(room.min(PAGE as u64)).unwrap_or(PAGE);
        let page = source
            .store()
            .scan_sessions(cursor.as_deref(), limit)
            .await?;
        for record in &page.sessions {
            let session = source.open_session(op, record)?;
            dest.save_session(&session).await?;
        }
        copied_this_run += page.sessions.len() as u64;
        copied_total += page.sessions.len() as u64;
        cursor = page.next;
        if let Some(path) = &options.resume_file {
            ResumeState {
                salt: salt.clone(),
                route: route.clone(),
                cursor: cursor.clone(),
                copied: copied_total,
                scanned: cursor.is_none(),
            }
            .save(path)?;
        }
        progress(copied_total);
        complete = cursor.is_none();
    }
    if complete {
        revocations = copy_revocations(source, dest).await?;
    }
    let mut report = MigrateReport {
        copied_this_run,
        copied_total,
        revocations,
        complete,
        resumed,
        ..MigrateReport::default()
    };
    if complete {
        report.signing_key = copy_signing_key(source, dest).await?;
        let peers = source.load_peer_jwks().await?;
        for p in &peers {
            // Checked against the source's tags, tagged again for the
            // destination's namespace.
            dest.save_peer_jwks(&p.issuer, &p.jwks, p.fetched_at)
                .await?;
        }
        report.peers = peers.len() as u64;
    }
    report.destination_live = dest.store().stats().await?.live_sessions;
    if complete && report.destination_live < copied_total {
        // Sessions may expire or be taken at the destination meanwhile, so
        // this is a floor check: fewer than copied means some were lost.
        return Err(StoreError::backend(
            op,
            std::io::Error::other(format!(
                "verification failed: copied {copied_total} sessions but the destination holds {}",
                report.destination_live
            )),
        ));
    }
    if complete && let Some(path) = &options.resume_file {
        let _ = std::fs::remove_file(path);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Copy every kept revocation marker (a marker merges into one already at
/// the destination); returns how many.
async fn copy_revocations(source: &TokenVault, dest: &TokenVault) -> Result<u64, StoreError> {
    let mut copied = 0u64;
    let mut cursor: Option<String> = None;
    loop {
        let page = source
            .store()
            .scan_revocations(cursor.as_deref(), PAGE)
            .await?;
        for r in &page.revocations {
            dest.store().revoke_subject(r).await?;
        }
        copied += page.revocations.len() as u64;
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(copied),
        }
    }
}

/// Copy the signing key if the source has one. `Ok(true)`: the destination
/// now holds the same key.
async fn copy_signing_key(source: &TokenVault, dest: &TokenVault) -> Result<bool, StoreError> {
    if source
        .store()
        .get_record(SIGNING_KEY_RECORD)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    let pem = source
        .load_or_create_signing_key(|| SecretString::from(String::new()))
        .await?;
    let stored = dest.load_or_create_signing_key(|| pem.clone()).await?;
    if stored.expose_secret() != pem.expose_secret() {
        return Err(StoreError::Conflict {
            op: "migrate",
            what: "the destination already holds a different signing key; it was left as it was",
        });
    }
    Ok(true)
}

/// A fresh random salt for the route digest, as hex.
fn new_salt() -> String {
    let salt: [u8; 16] = rand::random();
    hex::encode(salt)
}

/// SHA-256 of the salt and the route, as hex.
fn route_digest(salt: &str, route: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(salt.as_bytes());
    digest.update([0]);
    digest.update(route.as_bytes());
    hex::encode(digest.finalize())
}

/// The resume file: which migration (a salted digest of the route), where
/// it stopped, how many it copied.
#[derive(Serialize, Deserialize)]
struct ResumeState {
    salt: String,
    route: String,
    cursor: Option<String>,
    copied: u64,
    /// Every session was copied; only the signing key and peers remain.
    scanned: bool,
}

fn resume_error(reason: impl Into<String>) -> StoreError {
    StoreError::invalid("migrate", reason)
}

impl ResumeState {
    /// The saved state for `route`, `None` if there is no file. A symbolic
    /// link at `path` is refused.
    fn load(path: &Path, route: &str) -> Result<Option<Self>, StoreError> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(resume_error(format!("cannot read the resume file: {e}"))),
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(resume_error(
                    "the resume file is a symbolic link; pass the path of a regular file",
                ));
            }
            Ok(_) => {}
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| resume_error(format!("cannot read the resume file: {e}")))?;
        let state: Self = serde_json::from_str(&text)
            .map_err(|_| resume_error("the resume file is not one brokerctl wrote"))?;
        if state.route != route_digest(&state.salt, route) {
            return Err(resume_error(
                "the resume file belongs to a migration between other stores or namespaces; \
                 remove it or pass another --resume-file",
            ));
        }
        Ok(Some(state))
    }

    /// Write atomically: a new file created readable by its owner only
    /// (mode 0600, `O_EXCL`, so no link is followed) in the same directory,
    /// then renamed over `path` (a rename replaces a link, never writes
    /// through it).
    fn save(&self, path: &Path) -> Result<(), StoreError> {
        let text = serde_json::to_string(self)
            .map_err(|e| resume_error(format!("cannot write the resume file: {e}")))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let cannot = |e: std::io::Error| resume_error(format!("cannot write the resume file: {e}"));
        let mut builder = tempfile::Builder::new();
        builder.prefix(".brokerctl-resume");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            builder.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let mut file = builder.tempfile_in(dir).map_err(cannot)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.as_file().sync_all())
            .map_err(cannot)?;
        file.persist(path).map_err(|e| cannot(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod privacy_tests {
    use super::*;

    #[test]
    fn debug_of_options_shows_no_url() {
        let options = MigrateOptions {
            resume_file: None,
            max_sessions: Some(5),
            route: "postgres://app:canary-pw@db.example/app\nbroker".into(),
        };
        let text = format!("{options:?}");
        assert!(!text.contains("canary"), "{text}");
        assert!(text.contains("max_sessions"), "{text}");
    }

    #[test]
    fn routes_hold_no_password() {
        let ns = Namespace::default();
        for url in [
            "postgres://app:canary-pw@db.example:5432/app?sslmode=require",
            "mongodb://app:canary-pw@m1.example,m2.example/app",
            "redis://:canary-pw@cache.example/0",
            "rediss://user:canary-pw@cache.example",
            "redis-cluster://user:canary-pw@h1:7000,h2:7001",
            "not a url but :canary-pw@",
        ] {
            let route = route(url, &ns, url, &ns);
            assert!(!route.contains("canary"), "{url}: {route}");
        }
        assert_eq!(
            without_password("postgres://app:pw@db.example/app"),
            "postgres://app@db.example/app"
        );
        assert_eq!(without_password("sled:///var/lib/x"), "sled:///var/lib/x");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use broker_core::crypto::EncryptionKey;
    use broker_core::{KeyConfig, MemoryStore, Revocation, Session, TokenVault};
    use secrecy::SecretString;

    use super::{MigrateOptions, migrate};

    fn keys() -> KeyConfig {
        KeyConfig::new(EncryptionKey::from_bytes(&[9; 32]).unwrap())
    }

    fn session(jti: &str, sub: &str, auth_time: i64) -> Session {
        Session {
            jti: jti.into(),
            sub: sub.into(),
            refresh_token: SecretString::from(format!("rt-{jti}")),
            user_info: serde_json::json!({}).into(),
            expires_at: auth_time + 7200,
            auth_time,
        }
    }

    /// A subject revoked at the source stays revoked at the destination: a
    /// refresh in flight that lands its rotated session on the new store
    /// after the switch is never returned.
    #[tokio::test]
    async fn migration_carries_revocations() {
        let source = TokenVault::open(Arc::new(MemoryStore::new()), keys())
            .await
            .unwrap();
        let dest = TokenVault::open(Arc::new(MemoryStore::new()), keys())
            .await
            .unwrap();
        let now = broker_core::unix_now();
        source
            .save_session(&session("alice-1", "alice", now - 60))
            .await
            .unwrap();
        source
            .save_session(&session("bob-1", "bob", now - 60))
            .await
            .unwrap();
        source
            .store()
            .revoke_subject(&Revocation::at("alice", now))
            .await
            .unwrap();
        let report = migrate(&source, &dest, &MigrateOptions::default(), |_| {})
            .await
            .unwrap();
        assert!(report.complete);
        assert_eq!(report.revocations, 1);
        let markers = dest.store().scan_revocations(None, 10).await.unwrap();
        assert_eq!(markers.revocations, vec![Revocation::at("alice", now)]);
        // The refresh in flight lands on the destination.
        dest.save_session(&session("alice-rotated", "alice", now - 60))
            .await
            .unwrap();
        assert!(dest.get_session("alice-rotated").await.unwrap().is_none());
        assert!(dest.get_session("bob-1").await.unwrap().is_some());
    }
}
