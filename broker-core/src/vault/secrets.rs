//! Sealed create-once records beyond the signing key: a broker's key set,
//! its state key, anything secret that one record holds and that workers
//! update by compare-and-set.
//!
//! Each lives in the store as the create-once record `secret.<name>`, sealed
//! like the signing key (bound to its namespace and name), counted against
//! the nonce budget, resealed by [`TokenVault::rekey`](super::TokenVault::rekey)
//! and counted by `key_usage`.

use std::fmt;

use secrecy::{ExposeSecret, SecretSlice};
use zeroize::Zeroizing;

use crate::crypto::Binding;
use crate::error::{Result, StoreError};
use crate::validate;

use super::{SIGNING_KEY_RECORD, TokenVault};

/// Prefix of the record names that hold vault secrets
/// ([`TokenVault::load_or_create_secret`]).
pub const SECRET_RECORD_PREFIX: &str = "secret.";

/// True for a create-once record the vault seals: the signing key and every
/// secret record.
pub fn is_sealed_record(name: &str) -> bool {
    name == SIGNING_KEY_RECORD || name.starts_with(SECRET_RECORD_PREFIX)
}

/// The stored form of a secret, for [`TokenVault::replace_secret`]'s
/// compare-and-set. Opaque; `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Stamp(pub(super) Vec<u8>);

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stamp({} bytes)", self.0.len())
    }
}

/// An opened secret record and the stamp to replace it with.
pub struct Secret {
    value: SecretSlice<u8>,
    stamp: Stamp,
}

impl Secret {
    /// The plaintext.
    pub fn expose(&self) -> &[u8] {
        self.value.expose_secret()
    }

    /// What [`TokenVault::replace_secret`] compares against.
    pub fn stamp(&self) -> &Stamp {
        &self.stamp
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("value", &"[REDACTED]")
            .field("stamp", &self.stamp)
            .finish()
    }
}

impl TokenVault {
    /// The secret `name`; the first caller's `generate` result is stored,
    /// and every other caller, in any process, gets that one.
    #[tracing::instrument(skip_all, name = "vault.load_or_create_secret")]
    pub async fn load_or_create_secret<F>(&self, name: &str, generate: F) -> Result<Secret>
    where
        F: FnOnce() -> Zeroizing<Vec<u8>> + Send,
    {
        let op = "load_or_create_secret";
        let record = secret_record_name(op, name)?;
        let stored = match self.store.get_record(&record).await? {
            Some(stored) => stored,
            None => {
                let value = generate();
                let sealed = self.seal_secret(op, &record, &value).await?;
                self.store.create_record(&record, &sealed).await?
            }
        };
        self.open_secret(op, &record, stored)
    }

    /// The secret `name`, if one is stored.
    #[tracing::instrument(skip_all, name = "vault.load_secret")]
    pub async fn load_secret(&self, name: &str) -> Result<Option<Secret>> {
        let op = "load_secret";
        let record = secret_record_name(op, name)?;
        self.store
            .get_record(&record)
            .await?
            .map(|stored| self.open_secret(op, &record, stored))
            .transpose()
    }

    /// Replace the secret `name` with `value` if it is still what `expected`
    /// stamps (compare-and-set). `Ok(Some(new))`: replaced; `Ok(None)`: it
    /// changed meanwhile (read it again and decide again).
    #[tracing::instrument(skip_all, name = "vault.replace_secret")]
    pub async fn replace_secret(
        &self,
        name: &str,
        expected: &Stamp,
        value: &[u8],
    ) -> Result<Option<Secret>> {
        let op = "replace_secret";
        let record = secret_record_name(op, name)?;
        let sealed = self.seal_secret(op, &record, value).await?;
        if !self
            .store
            .replace_record(&record, &expected.0, &sealed)
            .await?
        {
            return Ok(None);
        }
        Ok(Some(Secret {
            value: SecretSlice::from(value.to_vec()),
            stamp: Stamp(sealed),
        }))
    }

    /// Seal `value` as the record named `record`.
    pub(super) async fn seal_secret(
        &self,
        op: &'static str,
        record: &str,
        value: &[u8],
    ) -> Result<Vec<u8>> {
        self.seal(&self.record_binding(record), &[value])
            .await
            .map_err(|e| e.with_op(op))
    }

    /// Open the stored record `record`.
    pub(super) fn open_secret(
        &self,
        op: &'static str,
        record: &str,
        stored: Vec<u8>,
    ) -> Result<Secret> {
        let value = self
            .keyring
            .open(&self.record_binding(record), &stored)
            .map_err(|e| e.with_op(op))?;
        Ok(Secret {
            value,
            stamp: Stamp(stored),
        })
    }

    /// Where a sealed create-once record belongs (the signing key's kind of
    /// binding: namespace and record name).
    pub(super) fn record_binding<'a>(&'a self, record: &'a str) -> Binding<'a> {
        Binding::SigningKey {
            namespace: self.store.namespace().as_str(),
            name: record,
        }
    }
}

/// `secret.<name>`, checked as a record name.
fn secret_record_name(op: &'static str, name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(StoreError::invalid(op, "a secret's name is empty"));
    }
    let record = format!("{SECRET_RECORD_PREFIX}{name}");
    validate::record_name(op, &record)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::EncryptionKey;
    use crate::keys::KeyConfig;
    use crate::memory::MemoryStore;
    use crate::store::BrokerStore;

    async fn vault(store: &MemoryStore, key: u8) -> TokenVault {
        let key = EncryptionKey::from_bytes(&[key; 32]).unwrap();
        TokenVault::open(Arc::new(store.clone()), KeyConfig::new(key))
            .await
            .unwrap()
    }

    fn bytes(s: &str) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(s.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn one_value_wins_and_changes_only_by_compare_and_set() {
        let store = MemoryStore::new();
        let v = Arc::new(vault(&store, 1).await);
        let racers = (0..16).map(|i| {
            let v = Arc::clone(&v);
            tokio::spawn(async move {
                v.load_or_create_secret("keys", move || bytes(&format!("candidate-{i}")))
                    .await
                    .unwrap()
                    .expose()
                    .to_vec()
            })
        });
        let mut seen = std::collections::BTreeSet::new();
        for r in racers {
            seen.insert(r.await.unwrap());
        }
        assert_eq!(seen.len(), 1, "every racer got the winner");
        let first = v.load_secret("keys").await.unwrap().unwrap();
        let second = v
            .replace_secret("keys", first.stamp(), b"rotated")
            .await
            .unwrap()
            .expect("replaced");
        assert_eq!(second.expose(), b"rotated");
        // A writer still holding the first stamp loses.
        assert!(
            v.replace_secret("keys", first.stamp(), b"stale")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            v.load_secret("keys").await.unwrap().unwrap().expose(),
            b"rotated"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rekey_moves_secrets_to_the_new_key_and_key_usage_counts_them() {
        let store = MemoryStore::new();
        let old = vault(&store, 1).await;
        old.load_or_create_secret("keys", || bytes("keyset"))
            .await
            .unwrap();
        let old_id = EncryptionKey::from_bytes(&[1; 32]).unwrap().id();
        assert_eq!(old.key_usage().await.unwrap().get(&old_id), Some(&1));
        drop(old);
        let keys = KeyConfig::new(EncryptionKey::from_bytes(&[1; 32]).unwrap())
            .rotate_to(EncryptionKey::from_bytes(&[2; 32]).unwrap());
        let rotated = TokenVault::open(Arc::new(store.clone()), keys)
            .await
            .unwrap();
        let report = rotated.rekey(|_| {}).await.unwrap();
        assert_eq!(report.records_resealed, 1, "{report:?}");
        let new_only = vault(&store, 2).await;
        assert_eq!(
            new_only
                .load_secret("keys")
                .await
                .unwrap()
                .unwrap()
                .expose(),
            b"keyset"
        );
        assert_eq!(new_only.key_usage().await.unwrap().get(&old_id), None);
    }

    #[tokio::test]
    async fn secrets_are_sealed_and_bound_to_their_name() {
        let store = MemoryStore::new();
        let v = vault(&store, 1).await;
        v.load_or_create_secret("a", || bytes("canary-secret-a"))
            .await
            .unwrap();
        v.load_or_create_secret("b", || bytes("canary-secret-b"))
            .await
            .unwrap();
        let raw = store.get_record("secret.a").await.unwrap().unwrap();
        assert!(
            !raw.windows(6).any(|w| w == b"canary"),
            "stored in the clear"
        );
        // Moved to another name, the blob fails to open.
        let b = store.get_record("secret.b").await.unwrap().unwrap();
        store.replace_record("secret.b", &b, &raw).await.unwrap();
        assert!(matches!(
            v.load_secret("b").await,
            Err(StoreError::Tampered { .. })
        ));
        assert!(format!("{:?}", v.load_secret("a").await).contains("REDACTED"));
        assert!(!format!("{:?}", v.load_secret("a").await).contains("canary"));
        assert!(matches!(
            v.load_secret("").await,
            Err(StoreError::InvalidInput { .. })
        ));
    }
}
