//! The keyring: seal under the primary key, open under the key a blob names.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use secrecy::{ExposeSecretMut, SecretSlice};
use zeroize::Zeroize;

use crate::error::{Result, StoreError};

use super::*;

/// One key of a keyring with its expanded cipher (zeroized on drop).
struct Slot {
    id: KeyId,
    cipher: Aes256Gcm,
}

/// One primary key that seals, plus older keys that only open.
///
/// Opening uses only the key the envelope names (no trial decryption).
/// Cheap to clone. `Debug` shows key ids only.
#[derive(Clone)]
pub struct Keyring {
    primary: Arc<Slot>,
    keys: Arc<HashMap<KeyId, Arc<Slot>>>,
}

impl Keyring {
    /// A keyring sealing with `primary` and opening with it and `older`.
    /// Two keys with one id are refused.
    pub fn new(
        primary: EncryptionKey,
        older: impl IntoIterator<Item = EncryptionKey>,
    ) -> Result<Self> {
        let primary = Arc::new(Slot {
            id: primary.id(),
            cipher: primary.cipher(),
        });
        let mut keys = HashMap::new();
        keys.insert(primary.id, Arc::clone(&primary));
        for key in older {
            let slot = Arc::new(Slot {
                id: key.id(),
                cipher: key.cipher(),
            });
            if keys.insert(slot.id, slot).is_some() {
                return Err(StoreError::InvalidKey {
                    op: "open_keyring",
                    reason: "two keys in the keyring have the same key id",
                });
            }
        }
        Ok(Self {
            primary,
            keys: Arc::new(keys),
        })
    }

    /// The id of the key that seals.
    pub fn primary_id(&self) -> KeyId {
        self.primary.id
    }

    /// Every key id in the ring, sorted.
    pub fn key_ids(&self) -> Vec<KeyId> {
        let mut ids: Vec<KeyId> = self.keys.keys().copied().collect();
        ids.sort();
        ids
    }

    /// True if the ring holds a key with this id.
    pub fn contains(&self, id: KeyId) -> bool {
        self.keys.contains_key(&id)
    }

    /// Seal `plaintext` for `binding` under the primary key with a fresh
    /// random nonce.
    pub fn seal(&self, binding: &Binding<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.seal_parts(binding, &[plaintext])
    }

    /// Seal the concatenation of `parts`, exactly as [`Keyring::seal`] seals
    /// them joined, writing each part straight into the envelope (encrypted
    /// in place): no joined plaintext copy is made.
    ///
    /// The nonce comes straight from the operating system's generator
    /// (`getrandom`) on every seal, never from a generator in process
    /// memory: a `fork` or a restored VM snapshot copies such a generator,
    /// and the copies would repeat each other's nonces under the same key
    /// (SECURITY.md requirement 16). If the OS cannot supply randomness the
    /// seal fails with [`StoreError::Unavailable`].
    pub fn seal_parts(&self, binding: &Binding<'_>, parts: &[&[u8]]) -> Result<Vec<u8>> {
        self.seal_with_nonce(binding, parts, fresh_nonce()?)
    }

    /// Seal with a given nonce: only for the crate's own golden-vector test.
    pub(super) fn seal_with_nonce(
        &self,
        binding: &Binding<'_>,
        parts: &[&[u8]],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>> {
        let header = header(self.primary.id);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        // Exact capacity: the buffer holding plaintext never reallocates.
        let mut out = Vec::with_capacity(OVERHEAD + len);
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        for part in parts {
            out.extend_from_slice(part);
        }
        let sealed = binding.with_associated_data(&header, |ad| {
            self.primary.cipher.encrypt_inout_detached(
                &Nonce::from(nonce),
                ad,
                out[HEADER_LEN + NONCE_LEN..].as_mut().into(),
            )
        });
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(out)
            }
            Err(_) => {
                out.as_mut_slice().zeroize();
                Err(StoreError::invalid(
                    "seal",
                    "plaintext too long for AES-GCM",
                ))
            }
        }
    }

    /// Open a blob sealed for `binding`. Any change to the blob or the
    /// binding gives [`StoreError::Tampered`]; a key id not in the ring gives
    /// [`StoreError::UnknownKey`]; a blob that is no envelope at all gives
    /// [`StoreError::Corrupt`]. The plaintext is zeroized when dropped.
    pub fn open(&self, binding: &Binding<'_>, sealed: &[u8]) -> Result<SecretSlice<u8>> {
        let id = sealed_key_id(sealed)?;
        let slot = self.keys.get(&id).ok_or(StoreError::UnknownKey {
            op: "open",
            key_id: id,
        })?;
        let header: [u8; HEADER_LEN] = sealed[..HEADER_LEN].try_into().expect("checked length");
        let nonce: [u8; NONCE_LEN] = sealed[HEADER_LEN..HEADER_LEN + NONCE_LEN]
            .try_into()
            .expect("checked length");
        let body = &sealed[HEADER_LEN + NONCE_LEN..sealed.len() - TAG_LEN];
        let tag: [u8; TAG_LEN] = sealed[sealed.len() - TAG_LEN..]
            .try_into()
            .expect("checked length");
        // Decrypted in place inside a secret box (exact length, so it never
        // reallocates), which zeroizes it on drop.
        let mut plain = SecretSlice::from(body.to_vec());
        binding
            .with_associated_data(&header, |ad| {
                slot.cipher.decrypt_inout_detached(
                    &Nonce::from(nonce),
                    ad,
                    plain.expose_secret_mut().into(),
                    &Tag::from(tag),
                )
            })
            .map_err(|_| {
                // aes-gcm >= 0.10.3 leaves no plaintext behind on failure; the
                // buffer is zeroized on drop either way.
                StoreError::Tampered { op: "open" }
            })?;
        Ok(plain)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary.id)
            .field("keys", &self.key_ids())
            .finish()
    }
}
