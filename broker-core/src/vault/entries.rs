//! Entries: sealed payloads of the caller's own format, stored as session
//! records. A broker keeps its refresh grants and login families this way,
//! so they expire, are revoked with their subject, purged, scanned, migrated
//! and re-encrypted exactly like sessions, and change by compare-and-set
//! ([`TokenVault::swap_entry`]).
//!
//! The plaintext is `0x02 ‖ payload`. A session's plaintext starts with the
//! big-endian length of its refresh token (at most 32 KiB), so its first
//! byte is `0x00` and the two never mix up: opening one as the other is a
//! corrupt-record error.

use std::fmt;

use secrecy::{ExposeSecret, SecretSlice};

use crate::error::{Corruption, Result, StoreError};
use crate::record::{SessionRecord, UnixTime};
use crate::validate;

use super::{Stamp, TokenVault};

/// First plaintext byte of an entry.
const ENTRY_TAG: u8 = 0x02;

/// Largest entry payload: the room a session has for its token and
/// user_info.
pub const MAX_ENTRY_PAYLOAD: usize =
    validate::MAX_REFRESH_TOKEN_BYTES + validate::MAX_USER_INFO_BYTES;

/// An entry to store.
pub struct NewEntry<'a> {
    /// The record key (a grant's `jti`, a family's id, ...).
    pub jti: &'a str,
    /// The subject: [`TokenVault::revoke_subject`] removes its entries.
    pub sub: &'a str,
    /// When the entry stops being returned (Unix seconds, exclusive).
    pub expires_at: UnixTime,
    /// When the user authenticated (a revocation at or after it hides it).
    pub auth_time: UnixTime,
    /// The caller's bytes, sealed.
    pub payload: &'a [u8],
}

/// A stored entry, opened.
pub struct Entry {
    /// The record key.
    pub jti: String,
    /// The subject.
    pub sub: String,
    /// Expiry (Unix seconds).
    pub expires_at: UnixTime,
    /// Authentication time (Unix seconds).
    pub auth_time: UnixTime,
    /// The caller's bytes.
    pub payload: SecretSlice<u8>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("expires_at", &self.expires_at)
            .field("auth_time", &self.auth_time)
            .field("payload", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl TokenVault {
    /// Store a new entry; a live record with the same `jti` is a
    /// [`StoreError::Conflict`] and stays as it was.
    #[tracing::instrument(skip_all, name = "vault.create_entry")]
    pub async fn create_entry(&self, entry: &NewEntry<'_>) -> Result<Stamp> {
        let op = "create_entry";
        let record = self.seal_entry(op, entry).await?;
        self.store.create_session(&record).await?;
        Ok(Stamp(record.sealed.into()))
    }

    /// The live entry `jti`, opened, and the stamp to swap it with.
    /// A session (not an entry) under that key is a corrupt-record error.
    #[tracing::instrument(skip_all, name = "vault.get_entry")]
    pub async fn get_entry(&self, jti: &str) -> Result<Option<(Entry, Stamp)>> {
        let op = "get_entry";
        let Some(record) = self.store.get_session(jti).await? else {
            return Ok(None);
        };
        let entry = self.open_entry(op, &record)?;
        Ok(Some((entry, Stamp(record.sealed.into()))))
    }

    /// Replace entry `jti`'s payload if it is still what `expected` stamps
    /// (compare-and-set; its key, subject and times stay). `Ok(Some(new))`:
    /// swapped; `Ok(None)`: it changed, was taken or expired meanwhile.
    #[tracing::instrument(skip_all, name = "vault.swap_entry")]
    pub async fn swap_entry(
        &self,
        current: &Entry,
        expected: &Stamp,
        payload: &[u8],
    ) -> Result<Option<Stamp>> {
        let op = "swap_entry";
        let record = self
            .seal_entry(
                op,
                &NewEntry {
                    jti: &current.jti,
                    sub: &current.sub,
                    expires_at: current.expires_at,
                    auth_time: current.auth_time,
                    payload,
                },
            )
            .await?;
        let swapped = self
            .store
            .replace_session_blob(&current.jti, &expected.0, &record.sealed)
            .await?;
        Ok(swapped.then_some(Stamp(record.sealed.into())))
    }

    /// Atomically remove and return the live entry `jti`: of many
    /// concurrent takers exactly one gets it.
    #[tracing::instrument(skip_all, name = "vault.take_entry")]
    pub async fn take_entry(&self, jti: &str) -> Result<Option<Entry>> {
        let op = "take_entry";
        self.store
            .take_session(jti)
            .await?
            .map(|record| self.open_entry(op, &record))
            .transpose()
    }

    async fn seal_entry(&self, op: &'static str, entry: &NewEntry<'_>) -> Result<SessionRecord> {
        validate::jti(op, entry.jti)?;
        validate::sub(op, entry.sub)?;
        validate::timestamp(op, "expires_at", entry.expires_at)?;
        validate::timestamp(op, "auth_time", entry.auth_time)?;
        if entry.payload.len() > MAX_ENTRY_PAYLOAD {
            return Err(StoreError::invalid(
                op,
                format!("an entry payload is larger than {MAX_ENTRY_PAYLOAD} bytes"),
            ));
        }
        let binding = self.session_binding(entry.jti, entry.sub, entry.expires_at, entry.auth_time);
        let sealed = self
            .seal(&binding, &[&[ENTRY_TAG], entry.payload])
            .await
            .map_err(|e| e.with_op(op))?;
        Ok(SessionRecord {
            jti: entry.jti.to_owned(),
            sub: entry.sub.to_owned(),
            expires_at: entry.expires_at,
            auth_time: entry.auth_time,
            sealed: sealed.into(),
        })
    }

    fn open_entry(&self, op: &'static str, record: &SessionRecord) -> Result<Entry> {
        let plain = self.open_record(op, record)?;
        let bytes = plain.expose_secret();
        if bytes.first() != Some(&ENTRY_TAG) {
            return Err(StoreError::corrupt(
                op,
                Corruption::Malformed("a session, not an entry"),
            ));
        }
        Ok(Entry {
            jti: record.jti.clone(),
            sub: record.sub.clone(),
            expires_at: record.expires_at,
            auth_time: record.auth_time,
            payload: SecretSlice::from(bytes[1..].to_vec()),
        })
    }
}

/// True if an opened session plaintext is an entry's.
pub(super) fn is_entry(plain: &[u8]) -> bool {
    plain.first() == Some(&ENTRY_TAG)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::EncryptionKey;
    use crate::keys::KeyConfig;
    use crate::memory::MemoryStore;
    use crate::record::{Namespace, unix_now};
    use crate::store::BrokerStore;
    use crate::vault::Session;

    async fn vault(store: &MemoryStore, key: u8) -> TokenVault {
        let key = EncryptionKey::from_bytes(&[key; 32]).unwrap();
        TokenVault::open(Arc::new(store.clone()), KeyConfig::new(key))
            .await
            .unwrap()
    }

    fn entry<'a>(jti: &'a str, payload: &'a [u8]) -> NewEntry<'a> {
        let now = unix_now();
        NewEntry {
            jti,
            sub: "alice",
            expires_at: now + 3600,
            auth_time: now - 10,
            payload,
        }
    }

    #[tokio::test]
    async fn entries_swap_by_compare_and_set_and_take_once() {
        let store = MemoryStore::new();
        let v = vault(&store, 1).await;
        v.create_entry(&entry("grant-1", b"live")).await.unwrap();
        assert!(matches!(
            v.create_entry(&entry("grant-1", b"other")).await,
            Err(StoreError::Conflict { .. })
        ));
        let (e, stamp) = v.get_entry("grant-1").await.unwrap().unwrap();
        assert_eq!(e.payload.expose_secret(), b"live");
        let claimed = v.swap_entry(&e, &stamp, b"claimed").await.unwrap();
        assert!(claimed.is_some());
        // The loser of the race still holds the old stamp.
        assert!(
            v.swap_entry(&e, &stamp, b"also-claimed")
                .await
                .unwrap()
                .is_none()
        );
        let (e2, _) = v.get_entry("grant-1").await.unwrap().unwrap();
        assert_eq!(e2.payload.expose_secret(), b"claimed");
        assert!(v.take_entry("grant-1").await.unwrap().is_some());
        assert!(v.take_entry("grant-1").await.unwrap().is_none());
        assert!(!format!("{e2:?}").contains("claimed"));
    }

    #[tokio::test]
    async fn entries_and_sessions_never_read_as_each_other() {
        let store = MemoryStore::new();
        let v = vault(&store, 1).await;
        v.create_entry(&entry("an-entry", b"{}")).await.unwrap();
        let now = unix_now();
        v.save_session(&Session {
            jti: "a-session".into(),
            sub: "alice".into(),
            refresh_token: "rt".to_owned().into(),
            user_info: serde_json::json!({}).into(),
            expires_at: now + 60,
            auth_time: now,
        })
        .await
        .unwrap();
        assert!(matches!(
            v.get_session("an-entry").await,
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            v.get_entry("a-session").await,
            Err(StoreError::Corrupt { .. })
        ));
        // Revoked with their subject like sessions.
        assert_eq!(v.revoke_subject("alice").await.unwrap(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rekey_and_copy_keep_entries_intact() {
        let store = MemoryStore::new();
        let old = vault(&store, 1).await;
        old.create_entry(&entry("grant", b"payload-bytes"))
            .await
            .unwrap();
        drop(old);
        let keys = KeyConfig::new(EncryptionKey::from_bytes(&[1; 32]).unwrap())
            .rotate_to(EncryptionKey::from_bytes(&[2; 32]).unwrap());
        let rotated = TokenVault::open(Arc::new(store.clone()), keys)
            .await
            .unwrap();
        let report = rotated.rekey(|_| {}).await.unwrap();
        assert_eq!(report.sessions_resealed, 1);
        let new_only = vault(&store, 2).await;
        let (e, _) = new_only.get_entry("grant").await.unwrap().unwrap();
        assert_eq!(e.payload.expose_secret(), b"payload-bytes");
        // Copied to another namespace (a migration), it opens there.
        let other = store.with_namespace(Namespace::new("elsewhere").unwrap());
        let dest = vault(&other, 2).await;
        let record = store.get_session("grant").await.unwrap().unwrap();
        let copied = dest.copy_record(&new_only, &record).await.unwrap();
        other.save_session(&copied).await.unwrap();
        let (e, _) = dest.get_entry("grant").await.unwrap().unwrap();
        assert_eq!(e.payload.expose_secret(), b"payload-bytes");
    }
}
