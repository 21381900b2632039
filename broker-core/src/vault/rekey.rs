//! Re-encryption under the primary key, and retiring older keys only when
//! that is safe (SECURITY.md requirements 7 and 18).
//!
//! A run first purges what a scan cannot see (expired sessions, and the
//! sessions a revocation hides), then *closes* every older key of the ring
//! (`key_closed.<id>`): from then on no vault seals under it — a vault
//! re-reads the close record at least every [`SEAL_CHECK_INTERVAL`], so a
//! worker still configured with an old primary fails with
//! [`StoreError::KeyRetired`] instead of writing sessions nobody could open
//! once the key is dropped. Passes then reseal everything under the older
//! keys. Only a pass that starts [`REKEY_SETTLE`] after the close (every
//! sealing process has seen it, and writes sealed before it have landed)
//! and finds nothing left to move *retires* the older keys
//! (`key_retired.<id>`), after which a vault may open without them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::crypto::{KeyId, sealed_key_id};
use crate::error::{Corruption, Result, StoreError};
use crate::keys::{key_closed_record, key_retired_record};
use crate::record::unix_now;

use super::budget::SEAL_CHECK_INTERVAL;
use super::peers::stored_key_id;
use super::{PAGE, TokenVault, is_sealed_record};

/// How long after closing the older keys a rekey waits before the pass
/// that may retire them: [`SEAL_CHECK_INTERVAL`] for every sealing process
/// to see the close, plus two seconds for writes sealed just before it to
/// reach the database. A write sealed under an old key that takes longer
/// than that to land would be written after the retirement (see
/// `docs/SECURITY.md`).
pub const REKEY_SETTLE: Duration = Duration::from_secs(SEAL_CHECK_INTERVAL.as_secs() + 2);

/// Passes after the settle time before a run gives up retiring (records
/// kept changing under it); running it again continues.
const MAX_FINAL_PASSES: u32 = 3;

/// Progress of [`TokenVault::rekey`], reported after each page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RekeyReport {
    /// Sessions looked at, over every pass.
    pub sessions_seen: u64,
    /// Sessions resealed under the primary key, over every pass.
    pub sessions_resealed: u64,
    /// Sessions that changed while being resealed, in the last pass (left
    /// as they were; the next pass or run picks them up).
    pub sessions_changed: u64,
    /// Sessions that could not be opened (tampered, moved, or under a key
    /// the ring does not hold), in the last pass. Counted and left as they
    /// are; they do not stop the run or the retirement (no key opens them).
    pub sessions_unreadable: u64,
    /// Signing-key and peer records resealed, over every pass.
    pub records_resealed: u64,
    /// Signing-key and peer records that could not be opened, in the last pass.
    pub records_unreadable: u64,
    /// Passes over the store so far.
    pub passes: u32,
    /// Keys this run retired (empty until the end, and if it could not).
    pub retired_keys: Vec<KeyId>,
}

/// What one pass left under the older keys.
#[derive(Default)]
struct Pass {
    changed: u64,
    sessions_unreadable: u64,
    records_unreadable: u64,
}

/// Unix time in milliseconds.
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl TokenVault {
    /// Re-encrypt every session, the signing key and every peer tag not
    /// under the primary key, page by page (bounded memory), then retire
    /// the older keys. Each session write is a compare-and-set, so a record
    /// changed meanwhile is left alone and looked at again in the next
    /// pass; a run killed midway resumes where it stopped when run again.
    /// `progress` is called after every page.
    ///
    /// **From the moment a rekey starts, sealing under the older keys is
    /// refused** ([`StoreError::KeyRetired`], seen by every vault within
    /// [`SEAL_CHECK_INTERVAL`]): reconfigure every worker with the new
    /// primary first. The run waits until [`REKEY_SETTLE`] after that
    /// close, and retires the older keys only after a later pass found
    /// nothing readable left under them; from then on a vault opens
    /// without them. Until then, leaving a key out of the [`KeyConfig`]
    /// is refused ([`StoreError::KeyInUse`]). A session that cannot be
    /// opened is counted in [`RekeyReport::sessions_unreadable`], not an
    /// error. Sessions hidden by a revocation are removed first (with
    /// expired ones, through [`BrokerStore::purge_expired`]), since no scan
    /// returns them.
    ///
    /// [`KeyConfig`]: crate::KeyConfig
    /// [`BrokerStore::purge_expired`]: crate::BrokerStore::purge_expired
    #[tracing::instrument(skip_all, name = "vault.rekey")]
    pub async fn rekey(
        &self,
        mut progress: impl FnMut(&RekeyReport) + Send,
    ) -> Result<RekeyReport> {
        let op = "rekey";
        let primary = self.keyring.primary_id();
        let older: Vec<KeyId> = self
            .keyring
            .key_ids()
            .into_iter()
            .filter(|id| *id != primary)
            .collect();
        self.store
            .purge_expired()
            .await
            .map_err(|e| e.with_op(op))?;

        // Close the older keys; the earliest close of each counts.
        let mut settle_until_ms = 0i64;
        for id in &older {
            let stored = self
                .store
                .create_record(&key_closed_record(*id), &unix_ms().to_be_bytes())
                .await
                .map_err(|e| e.with_op(op))?;
            let closed_at: [u8; 8] = stored
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::corrupt(op, Corruption::Malformed("key close record")))?;
            settle_until_ms = settle_until_ms
                .max(i64::from_be_bytes(closed_at) + REKEY_SETTLE.as_millis() as i64);
        }

        let mut report = RekeyReport::default();
        let mut final_passes = 0;
        loop {
            let is_final = unix_ms() >= settle_until_ms;
            report.passes += 1;
            let pass = self.rekey_pass(&mut report, &mut progress).await?;
            report.sessions_changed = pass.changed;
            report.sessions_unreadable = pass.sessions_unreadable;
            report.records_unreadable = pass.records_unreadable;
            if is_final {
                final_passes += 1;
                if pass.changed == 0 || final_passes >= MAX_FINAL_PASSES {
                    break;
                }
            } else {
                let wait = settle_until_ms.saturating_sub(unix_ms()).max(0) as u64;
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
        if report.sessions_changed == 0 {
            // Nothing readable is sealed under another key any more, and
            // nothing can be sealed under one: retire them.
            for id in older {
                self.store
                    .create_record(&key_retired_record(id), &unix_now().to_be_bytes())
                    .await
                    .map_err(|e| e.with_op(op))?;
                report.retired_keys.push(id);
            }
        }
        tracing::info!(
            seen = report.sessions_seen,
            resealed = report.sessions_resealed,
            changed = report.sessions_changed,
            unreadable = report.sessions_unreadable + report.records_unreadable,
            passes = report.passes,
            retired = report.retired_keys.len(),
            "re-encryption finished"
        );
        if report.sessions_unreadable + report.records_unreadable > 0 {
            tracing::warn!(
                sessions = report.sessions_unreadable,
                records = report.records_unreadable,
                "re-encryption left records no key in the ring opens"
            );
        }
        Ok(report)
    }

    /// One pass over the sessions, the signing key and the peers.
    async fn rekey_pass(
        &self,
        report: &mut RekeyReport,
        progress: &mut (impl FnMut(&RekeyReport) + Send),
    ) -> Result<Pass> {
        let op = "rekey";
        let primary = self.keyring.primary_id();
        let mut pass = Pass::default();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .scan_sessions(cursor.as_deref(), PAGE)
                .await
                .map_err(|e| e.with_op(op))?;
            for record in &page.sessions {
                report.sessions_seen += 1;
                if sealed_key_id(&record.sealed).is_ok_and(|id| id == primary) {
                    continue;
                }
                // Sessions and entries alike: the plaintext is resealed as is.
                let Ok(plain) = self.open_record(op, record) else {
                    pass.sessions_unreadable += 1;
                    continue;
                };
                let resealed = self.reseal(op, record, &plain).await?;
                if self
                    .store
                    .replace_session_blob(&record.jti, &record.sealed, &resealed.sealed)
                    .await
                    .map_err(|e| e.with_op(op))?
                {
                    report.sessions_resealed += 1;
                } else {
                    pass.changed += 1;
                }
            }
            progress(report);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }

        // The signing key and every secret record: sealed the same way.
        let records = self.store.list_records().await.map_err(|e| e.with_op(op))?;
        for (name, stored) in records {
            if !is_sealed_record(&name) || sealed_key_id(&stored).is_ok_and(|id| id == primary) {
                continue;
            }
            let Ok(secret) = self.open_secret(op, &name, stored.clone()) else {
                pass.records_unreadable += 1;
                continue;
            };
            let resealed = self.seal_secret(op, &name, secret.expose()).await?;
            if self
                .store
                .replace_record(&name, &stored, &resealed)
                .await
                .map_err(|e| e.with_op(op))?
            {
                report.records_resealed += 1;
            } else {
                pass.changed += 1;
            }
        }
        for stored in self.store.load_peers().await.map_err(|e| e.with_op(op))? {
            if stored_key_id(&stored.jwks) == Some(primary) {
                continue;
            }
            match self.retag_peer(op, &stored).await {
                Ok(_) => report.records_resealed += 1,
                Err(StoreError::Corrupt { .. }) => pass.records_unreadable += 1,
                Err(e) => return Err(e),
            }
        }
        progress(report);
        Ok(pass)
    }
}
