//! Copy a broker's state from one store to another: every kept revocation
//! marker, every live session (opened and re-sealed under the same keys),
//! the signing key and peer JWKS.
//!
//! Markers go first, so a revoked subject's session saved on the destination
//! meanwhile is refused there too, and again at the end, so a subject
//! revoked on the source during the copy is revoked on the destination.
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

use std::path::PathBuf;
use std::time::Instant;

use broker_core::vault::SIGNING_KEY_RECORD;
use broker_core::{StoreError, TokenVault};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Sessions read per page.
const PAGE: usize = 1000;

/// How to run a migration.
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    /// Where to keep the cursor between runs. `None`: no resume, a re-run
    /// starts from the beginning (still correct, only slower).
    pub resume_file: Option<PathBuf>,
    /// Copy at most this many sessions in this run, then stop (resume later
    /// with the same resume file). `None`: copy everything.
    pub max_sessions: Option<u64>,
    /// Identifies the source and destination in the resume file (e.g. both
    /// URLs and namespaces); only a digest of it is written, never the text,
    /// which may hold a password.
    pub route: String,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigrateReport {
    /// Sessions copied in this run.
    pub copied_this_run: u64,
    /// Sessions copied by every run of this migration (with a resume file).
    pub copied_total: u64,
    /// Peer JWKS copied (at the end of the final run).
    pub peers: u64,
    /// Revocation markers copied (before the sessions and again at the end,
    /// so no revoked session comes back on the destination).
    pub revocations: u64,
    /// Whether the signing key was copied (or already there, identical).
    pub signing_key: bool,
    /// Live sessions at the destination after the run.
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
    let route = route_digest(&options.route);
    let state = match &options.resume_file {
        Some(path) => ResumeState::load(path, &route)?,
        None => None,
    };
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

fn route_digest(route: &str) -> String {
    Sha256::digest(route.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The resume file: which migration, where it stopped, how many it copied.
struct ResumeState {
    route: String,
    cursor: Option<String>,
    copied: u64,
    /// Every session was copied; only the signing key and peers remain.
    scanned: bool,
}

impl ResumeState {
    /// The saved state for `route`, `None` if there is no file.
    fn load(path: &std::path::Path, route: &str) -> Result<Option<Self>, StoreError> {
        let op = "migrate";
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError::invalid(
                    op,
                    format!("cannot read the resume file: {e}"),
                ));
            }
        };
        let bad = || StoreError::invalid(op, "the resume file is not one brokerctl wrote");
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|_| bad())?;
        let saved_route = value["route"].as_str().ok_or_else(bad)?;
        if saved_route != route {
            return Err(StoreError::invalid(
                op,
                "the resume file belongs to a migration between other stores or namespaces; \
                 remove it or pass another --resume-file",
            ));
        }
        Ok(Some(Self {
            route: saved_route.to_owned(),
            cursor: value["cursor"].as_str().map(str::to_owned),
            copied: value["copied"].as_u64().ok_or_else(bad)?,
            scanned: value["scanned"].as_bool().ok_or_else(bad)?,
        }))
    }

    /// Write atomically (temporary file, then rename).
    fn save(&self, path: &std::path::Path) -> Result<(), StoreError> {
        let text = json!({
            "route": self.route,
            "cursor": self.cursor,
            "copied": self.copied,
            "scanned": self.scanned,
        });
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text.to_string())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                StoreError::invalid("migrate", format!("cannot write the resume file: {e}"))
            })
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
