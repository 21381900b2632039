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

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use base64::Engine as _;
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretSlice, SecretString};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Corruption, Result, StoreError};
use crate::record::UnixTime;

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

    fn cipher(&self) -> Aes256Gcm {
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

/// Where a sealed blob belongs. The fields are bound into the associated
/// data, so a blob opens only at the place it was sealed for.
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    /// A session's refresh token and user_info.
    Session {
        /// The store's namespace.
        namespace: &'a str,
        /// The session id.
        jti: &'a str,
        /// The subject.
        sub: &'a str,
        /// The stored expiry.
        expires_at: UnixTime,
        /// The stored authentication time.
        auth_time: UnixTime,
    },
    /// The broker's private signing key.
    SigningKey {
        /// The store's namespace.
        namespace: &'a str,
        /// The record name.
        name: &'a str,
    },
    /// A peer's JWKS document: the tag (a seal of nothing) authenticates
    /// the issuer, the fetch time and the exact document text.
    Peer {
        /// The store's namespace.
        namespace: &'a str,
        /// The peer's issuer URL.
        issuer: &'a str,
        /// When the document was fetched.
        fetched_at: UnixTime,
        /// The JWKS document, as stored.
        jwks: &'a [u8],
    },
    /// The check value that proves a key belongs to this store; `kdf` is the
    /// encoded key-derivation record (params and salt) for passphrase keys,
    /// empty for raw keys.
    KeyCheck {
        /// The store's namespace.
        namespace: &'a str,
        /// The encoded key-derivation parameters and salt (empty for raw keys).
        kdf: &'a [u8],
    },
}

impl Binding<'_> {
    /// The fields bound into the associated data, in order.
    fn for_each_field(&self, header: &[u8; HEADER_LEN], mut field: impl FnMut(&[u8])) {
        field(header);
        field(FORMAT_LABEL);
        match *self {
            Binding::Session {
                namespace,
                jti,
                sub,
                expires_at,
                auth_time,
            } => {
                field(b"session");
                field(namespace.as_bytes());
                field(jti.as_bytes());
                field(sub.as_bytes());
                field(&(expires_at as u64).to_be_bytes());
                field(&(auth_time as u64).to_be_bytes());
            }
            Binding::SigningKey { namespace, name } => {
                field(b"signing_key");
                field(namespace.as_bytes());
                field(name.as_bytes());
            }
            Binding::Peer {
                namespace,
                issuer,
                fetched_at,
                jwks,
            } => {
                field(b"peer_jwks");
                field(namespace.as_bytes());
                field(issuer.as_bytes());
                field(&(fetched_at as u64).to_be_bytes());
                field(jwks);
            }
            Binding::KeyCheck { namespace, kdf } => {
                field(b"key_check");
                field(namespace.as_bytes());
                field(kdf);
            }
        }
    }

    /// The unambiguous associated data for a blob with envelope `header`:
    /// every field u32-BE-length-prefixed.
    pub fn associated_data(&self, header: &[u8; HEADER_LEN]) -> Vec<u8> {
        let mut ad = Vec::with_capacity(128);
        self.for_each_field(header, |field| push_field(&mut ad, field));
        ad
    }

    /// Call `f` with [`Binding::associated_data`], built on the stack when
    /// it fits in [`AD_INLINE`] bytes (every session with typical ids).
    fn with_associated_data<R>(&self, header: &[u8; HEADER_LEN], f: impl FnOnce(&[u8]) -> R) -> R {
        let mut len = 0;
        self.for_each_field(header, |field| len += 4 + field.len());
        if len > AD_INLINE {
            return f(&self.associated_data(header));
        }
        let mut ad = [0u8; AD_INLINE];
        let mut at = 0;
        self.for_each_field(header, |field| {
            ad[at..at + 4].copy_from_slice(&(field.len() as u32).to_be_bytes());
            ad[at + 4..at + 4 + field.len()].copy_from_slice(field);
            at += 4 + field.len();
        });
        f(&ad[..at])
    }
}

/// Bytes of associated data built on the stack; longer data goes to the heap.
const AD_INLINE: usize = 256;

/// Append `field` to `out` with a u32 BE length prefix.
pub fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

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
    fn seal_with_nonce(
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn key(byte: u8) -> EncryptionKey {
        EncryptionKey::from_bytes(&[byte; 32]).unwrap()
    }

    const PLACE: Binding<'static> = Binding::Session {
        namespace: "ns",
        jti: "jti-1",
        sub: "alice",
        expires_at: 2_000_000_000,
        auth_time: 1_700_000_000,
    };

    #[test]
    fn associated_data_is_the_same_on_the_stack_and_the_heap() {
        let header = header(KeyId(7));
        let sub = "s".repeat(255);
        let ring = Keyring::new(key(7), []).unwrap();
        // Lengths on both sides of AD_INLINE.
        for jti_len in [1, 100, 120, 130, 255] {
            let jti = "j".repeat(jti_len);
            let binding = Binding::Session {
                namespace: "ns",
                jti: &jti,
                sub: if jti_len > 100 { &sub } else { "alice" },
                expires_at: 2_000_000_000,
                auth_time: 1_700_000_000,
            };
            let inline = binding.with_associated_data(&header, <[u8]>::to_vec);
            assert_eq!(inline, binding.associated_data(&header), "jti of {jti_len}");
            let sealed = ring.seal(&binding, b"refresh").unwrap();
            assert_eq!(
                ring.open(&binding, &sealed).unwrap().expose_secret(),
                b"refresh"
            );
            let elsewhere = Binding::Session {
                namespace: "ns",
                jti: &jti,
                sub: "bob",
                expires_at: 2_000_000_000,
                auth_time: 1_700_000_000,
            };
            assert!(matches!(
                ring.open(&elsewhere, &sealed),
                Err(StoreError::Tampered { .. })
            ));
        }
        let long = Binding::Session {
            namespace: "ns",
            jti: &sub,
            sub: &sub,
            expires_at: 1,
            auth_time: 1,
        };
        assert!(long.associated_data(&header).len() > AD_INLINE);
    }

    #[test]
    fn golden_vector() {
        let ring = Keyring::new(key(7), []).unwrap();
        let sealed = ring
            .seal_with_nonce(&PLACE, &[b"refresh"], [9; 12])
            .unwrap();
        assert_eq!(sealed.len(), 7 + OVERHEAD);
        assert_eq!(sealed[0], 0x01);
        assert_eq!(&sealed[1..5], &ring.primary_id().0.to_be_bytes());
        assert_eq!(&sealed[5..17], &[9; 12]);
        // Fixed output for fixed key, nonce, binding and plaintext.
        let hex: String = sealed.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, GOLDEN_HEX, "the sealed format changed");
        assert_eq!(
            ring.open(&PLACE, &sealed).unwrap().expose_secret(),
            b"refresh"
        );
    }

    // Computed independently from the spec with Python's `cryptography` (AESGCM, HKDF by hand).
    const GOLDEN_HEX: &str =
        "01893735f209090909090909090909090955e0e2e6db83a9dc9a2607d94d9820254cc859b3413d98";

    #[test]
    fn every_flipped_bit_and_truncation_fails_typed() {
        let ring = Keyring::new(key(1), []).unwrap();
        let sealed = ring.seal(&PLACE, &[0x5a; 67]).unwrap();
        assert_eq!(sealed.len(), 100);
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[i] ^= 1 << bit;
                let err = ring.open(&PLACE, &bad).unwrap_err();
                assert!(
                    matches!(
                        err,
                        StoreError::Tampered { .. }
                            | StoreError::UnknownKey { .. }
                            | StoreError::Corrupt {
                                reason: Corruption::UnsupportedVersion(_),
                                ..
                            }
                    ),
                    "byte {i} bit {bit}: {err:?}"
                );
            }
        }
        for len in 0..sealed.len() {
            assert!(
                ring.open(&PLACE, &sealed[..len]).is_err(),
                "truncated to {len}"
            );
        }
    }

    #[test]
    fn blob_is_bound_to_its_place() {
        let ring = Keyring::new(key(1), []).unwrap();
        let sealed = ring.seal(&PLACE, b"rt").unwrap();
        let Binding::Session {
            namespace,
            jti,
            sub,
            expires_at,
            auth_time,
        } = PLACE
        else {
            unreachable!()
        };
        let moved = [
            Binding::Session {
                namespace: "other",
                jti,
                sub,
                expires_at,
                auth_time,
            },
            Binding::Session {
                namespace,
                jti: "jti-2",
                sub,
                expires_at,
                auth_time,
            },
            Binding::Session {
                namespace,
                jti,
                sub: "mallory",
                expires_at,
                auth_time,
            },
            Binding::Session {
                namespace,
                jti,
                sub,
                expires_at: expires_at + 1,
                auth_time,
            },
            Binding::Session {
                namespace,
                jti,
                sub,
                expires_at,
                auth_time: auth_time - 1,
            },
            Binding::SigningKey {
                namespace,
                name: jti,
            },
            Binding::KeyCheck {
                namespace,
                kdf: b"",
            },
            Binding::Peer {
                namespace,
                issuer: jti,
                fetched_at: expires_at,
                jwks: b"",
            },
        ];
        for place in moved {
            assert!(
                matches!(ring.open(&place, &sealed), Err(StoreError::Tampered { .. })),
                "{place:?}"
            );
        }
    }

    #[test]
    fn unknown_key_and_rotation() {
        let old = Keyring::new(key(1), []).unwrap();
        let sealed = old.seal(&PLACE, b"rt").unwrap();
        let other = Keyring::new(key(2), []).unwrap();
        assert!(
            matches!(other.open(&PLACE, &sealed), Err(StoreError::UnknownKey { key_id, .. }) if key_id == old.primary_id())
        );
        let rotated = Keyring::new(key(2), [key(1)]).unwrap();
        assert_eq!(
            rotated.open(&PLACE, &sealed).unwrap().expose_secret(),
            b"rt"
        );
        let resealed = rotated.seal(&PLACE, b"rt").unwrap();
        assert_eq!(sealed_key_id(&resealed).unwrap(), rotated.primary_id());
        assert!(
            Keyring::new(key(3), [key(3)]).is_err(),
            "duplicate ids are refused"
        );
    }

    #[test]
    fn raw_key_lengths_and_base64() {
        assert!(EncryptionKey::from_bytes(&[0; 31]).is_err());
        assert!(EncryptionKey::from_bytes(&[0; 33]).is_err());
        let k = EncryptionKey::generate();
        let text = k.to_base64();
        let back = EncryptionKey::from_base64(text.expose_secret()).unwrap();
        assert_eq!(back.id(), k.id());
        assert!(EncryptionKey::from_base64("not base64!").is_err());
        assert!(EncryptionKey::from_base64("AAAA").is_err(), "3 bytes");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let k = key(0xab);
        let ring = Keyring::new(key(0xab), []).unwrap();
        for text in [format!("{k:?}"), format!("{ring:?}")] {
            assert!(!text.contains("171"), "{text}");
            assert!(!text.to_lowercase().contains("abab"), "{text}");
            assert!(!text.contains("q6ur"), "{text}");
        }
    }

    #[test]
    fn nonces_never_repeat() {
        let ring = Keyring::new(key(1), []).unwrap();
        let n = 1_000_000;
        let mut seen = HashSet::with_capacity(n);
        for _ in 0..n {
            let sealed = ring.seal(&PLACE, b"same plaintext").unwrap();
            let nonce: [u8; 12] = sealed[5..17].try_into().unwrap();
            assert!(seen.insert(nonce), "nonce repeated");
        }
        assert_eq!(seen.len(), n);
    }

    proptest! {
        #[test]
        fn field_encoding_is_injective(a in proptest::collection::vec(".{0,4}", 0..4), b in proptest::collection::vec(".{0,4}", 0..4)) {
            let enc = |fields: &Vec<String>| {
                let mut out = Vec::new();
                for f in fields { push_field(&mut out, f.as_bytes()); }
                out
            };
            prop_assert_eq!(a == b, enc(&a) == enc(&b));
        }

        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let ring = Keyring::new(key(1), []).unwrap();
            prop_assert!(ring.open(&PLACE, &bytes).is_err());
        }
    }

    #[test]
    fn split_fields_differ() {
        let mut a = Vec::new();
        push_field(&mut a, b"ab");
        push_field(&mut a, b"c");
        let mut b = Vec::new();
        push_field(&mut b, b"a");
        push_field(&mut b, b"bc");
        assert_ne!(a, b);
    }
}
