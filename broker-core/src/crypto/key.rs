//! Encryption keys and their ids.

use std::fmt;

use aes_gcm::aead::KeyInit;
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Result, StoreError};

use super::*;

/// The 4-byte id of an encryption key, derived from the key itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 256-bit encryption key. Zeroized on drop; `Debug` shows only its id.
pub struct EncryptionKey {
    bytes: SecretBox<[u8; 32]>,
    id: KeyId,
}

impl EncryptionKey {
    /// A key from exactly 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| StoreError::InvalidKey {
            op: "load_key",
            reason: "a raw key must be exactly 32 bytes",
        })?;
        Ok(Self::from_array(array))
    }

    /// A key from base64 (standard or URL-safe alphabet, padding optional)
    /// of exactly 32 bytes; surrounding whitespace is ignored.
    pub fn from_base64(text: &str) -> Result<Self> {
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
        let lenient =
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        let text = text.trim();
        let decoded = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient)
            .decode(text)
            .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient).decode(text))
            .map(Zeroizing::new)
            .map_err(|_| StoreError::InvalidKey {
                op: "load_key",
                reason: "the key is not valid base64",
            })?;
        Self::from_bytes(&decoded)
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        os_random(&mut bytes[..]);
        Self::from_array(*bytes)
    }

    /// The key as standard base64, for handing to an operator once.
    pub fn to_base64(&self) -> SecretString {
        base64::engine::general_purpose::STANDARD
            .encode(self.bytes.expose_secret())
            .into()
    }

    /// This key's id (the first 4 bytes of HKDF-SHA256 of the key).
    pub fn id(&self) -> KeyId {
        self.id
    }

    fn from_array(mut array: [u8; 32]) -> Self {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, &array);
        let mut id = [0u8; 4];
        hk.expand(KEY_ID_INFO, &mut id)
            .expect("4 bytes is a valid HKDF-SHA256 output length");
        let bytes = SecretBox::new(Box::new(array));
        array.zeroize();
        Self {
            bytes,
            id: KeyId(u32::from_be_bytes(id)),
        }
    }

    /// A second copy of this key (for a vault that must derive its keyring
    /// again, e.g. after losing a race to create the `kdf` record).
    pub(crate) fn duplicate(&self) -> Self {
        Self::from_array(*self.bytes.expose_secret())
    }

    pub(super) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.bytes.expose_secret()))
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}
