//! Re-encryption under the primary key, and retiring older keys.

use crate::crypto::{KeyId, sealed_key_id};
use crate::error::Result;
use crate::keys::key_retired_record;

use super::{PAGE, SIGNING_KEY_RECORD, TokenVault};

/// Progress of [`TokenVault::rekey`], reported after each page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Sessions looked at.
    pub sessions_seen: u64,
    /// Sessions resealed under the primary key.
    pub sessions_resealed: u64,
    /// Sessions that changed while being resealed (left as they were; a
    /// later run picks them up if still needed).
    pub sessions_changed: u64,
    /// Signing-key records resealed.
    pub records_resealed: u64,
}

impl TokenVault {
    /// True if there is no signing key or it is sealed under `id`.
    async fn signing_key_under(&self, id: KeyId) -> Result<bool> {
        match self.store.get_record(SIGNING_KEY_RECORD).await? {
            None => Ok(true),
            Some(stored) => Ok(sealed_key_id(&stored).map_err(|e| e.with_op("rekey"))? == id),
        }
    }

    /// Re-encrypt every session and the signing key not sealed under the
    /// primary key, page by page (bounded memory). Each write is a
    /// compare-and-set, so a record changed meanwhile is left alone; a run
    /// killed midway resumes where it stopped when run again.
    /// `progress` is called after every page.
    ///
    /// A run that leaves nothing under the older keys retires them: from
    /// then on the vault opens without them. Until then, leaving a key out
    /// of the [`KeyConfig`] is refused ([`StoreError::KeyInUse`]). Rekey
    /// once every worker seals with the new primary.
    #[tracing::instrument(skip_all, name = "vault.rekey")]
    pub async fn rekey(
        &self,
        mut progress: impl FnMut(&RekeyReport) + Send,
    ) -> Result<RekeyReport> {
        let op = "rekey";
        let primary = self.keyring.primary_id();
        let mut report = RekeyReport::default();
        let mut cursor = None;
        loop {
            let page = self.store.scan_sessions(cursor.as_deref(), PAGE).await?;
            for record in &page.sessions {
                report.sessions_seen += 1;
                if sealed_key_id(&record.sealed).map_err(|e| e.with_op(op))? == primary {
                    continue;
                }
                let resealed = self
                    .seal_session(op, &self.open_session(op, record)?)
                    .await?;
                if self
                    .store
                    .replace_session_blob(&record.jti, &record.sealed, &resealed.sealed)
                    .await?
                {
                    report.sessions_resealed += 1;
                } else {
                    report.sessions_changed += 1;
                }
            }
            progress(&report);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if let Some(stored) = self.store.get_record(SIGNING_KEY_RECORD).await?
            && sealed_key_id(&stored).map_err(|e| e.with_op(op))? != primary
        {
            let pem = self.open_pem(op, &self.signing_key_binding(), &stored)?;
            if self.replace_signing_key(op, &stored, &pem).await? {
                report.records_resealed += 1;
            }
            progress(&report);
        }
        if report.sessions_changed == 0 && self.signing_key_under(primary).await? {
            // Nothing readable is sealed under another key any more.
            for id in self.keyring.key_ids() {
                if id != primary {
                    self.store
                        .create_record(
                            &key_retired_record(id),
                            &crate::record::unix_now().to_be_bytes(),
                        )
                        .await
                        .map_err(|e| e.with_op(op))?;
                }
            }
        }
        tracing::info!(
            seen = report.sessions_seen,
            resealed = report.sessions_resealed,
            changed = report.sessions_changed,
            "re-encryption finished"
        );
        Ok(report)
    }
}
