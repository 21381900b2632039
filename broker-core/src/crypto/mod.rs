//! AES-256-GCM sealing per `shared/SECURITY.md`.
//!
//! Envelope: `0x01 | key id (u32 BE) | nonce (12) | ciphertext | tag (16)`,
//! 33 bytes of overhead. The associated data binds each blob to its place
//! ([`Binding`]): moving it to another record, namespace or `jti`, or editing
//! a bound field, makes it fail to open with [`StoreError::Tampered`].
//!
//! ```
//! use broker_core::secrecy::ExposeSecret;
//! use broker_core::crypto::{Binding, EncryptionKey, Keyring};
//! let ring = Keyring::new(EncryptionKey::generate(), []).unwrap();
//! let place = Binding::SigningKey { namespace: "app", name: "signing_key" };
//! let sealed = ring.seal(&place, b"-----BEGIN PRIVATE KEY-----...").unwrap();
//! assert_eq!(ring.open(&place, &sealed).unwrap().expose_secret(), b"-----BEGIN PRIVATE KEY-----...");
//! let elsewhere = Binding::SigningKey { namespace: "other", name: "signing_key" };
//! assert!(ring.open(&elsewhere, &sealed).is_err());
//! ```

mod binding;
mod key;
mod keyring;
#[cfg(test)]
mod tests;

pub use binding::Binding;
pub use key::{EncryptionKey, KeyId};
pub use keyring::Keyring;

use crate::error::{Corruption, Result, StoreError};

/// Envelope version byte of AES-256-GCM blobs (`0x02` is kept free for AES-GCM-SIV).
pub const VERSION_AES_GCM: u8 = 0x01;
/// Bytes of the envelope header: version and key id.
pub const HEADER_LEN: usize = 5;
/// Bytes of a GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of a GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed blob is longer than its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
/// Label bound into every blob's associated data (the format's name and version).
const FORMAT_LABEL: &[u8] = b"oidc-broker-store/seal/v1";
/// HKDF info string from which key ids derive.
const KEY_ID_INFO: &[u8] = b"oidc-broker-store/key-id/v1";
/// A nonce drawn from the operating system for this one seal.
fn fresh_nonce() -> Result<[u8; NONCE_LEN]> {
    use rand::TryRng as _;
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::SysRng
        .try_fill_bytes(&mut nonce)
        .map_err(|e| StoreError::unavailable("seal", e))?;
    Ok(nonce)
}

/// Fill `buf` from the operating system's generator (falling back to the
/// OS-seeded thread generator if the OS call fails).
pub(crate) fn os_random(buf: &mut [u8]) {
    use rand::TryRng as _;
    if rand::rngs::SysRng.try_fill_bytes(buf).is_err() {
        rand::Rng::fill_bytes(&mut rand::rng(), buf);
    }
}

fn header(id: KeyId) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = VERSION_AES_GCM;
    h[1..].copy_from_slice(&id.0.to_be_bytes());
    h
}

/// The key id a sealed blob names, after checking its version and length.
pub fn sealed_key_id(sealed: &[u8]) -> Result<KeyId> {
    match sealed.first() {
        None => return Err(StoreError::corrupt("open", Corruption::Truncated)),
        Some(&VERSION_AES_GCM) => {}
        Some(&v) => {
            return Err(StoreError::corrupt(
                "open",
                Corruption::UnsupportedVersion(v),
            ));
        }
    }
    if sealed.len() < OVERHEAD {
        // A real envelope cut short is tampering, not an unknown format.
        return Err(StoreError::Tampered { op: "open" });
    }
    Ok(KeyId(u32::from_be_bytes(
        sealed[1..HEADER_LEN].try_into().expect("4 bytes"),
    )))
}
