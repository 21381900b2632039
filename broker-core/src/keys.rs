//! Where keys come from, and checking them against a store when a vault opens.
//!
//! Keys are raw 32-byte keys or passphrases stretched with Argon2id. The
//! store holds, as create-once records: the key-derivation record (salt and
//! parameters, `kdf`), one sealed key-check value per registered key id
//! (`key_check.<id>`), and the id of the first key the store saw
//! (`keys.founder`). A key whose id has no key-check record is refused at
//! open — a wrong key or passphrase is caught before any session call —
//! unless it is the store's first key or a new primary registered on purpose
//! with [`KeyConfig::rotate_to`]. A registered key may be left out of the
//! keyring only once a completed re-encryption retired it
//! (`key_retired.<id>`, written by [`TokenVault::rekey`](crate::TokenVault::rekey));
//! before that, leaving it out is refused with [`StoreError::KeyInUse`].

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::crypto::{Binding, EncryptionKey, KeyId, Keyring};
use crate::error::{Corruption, Result, StoreError};
use crate::store::BrokerStore;

/// Record holding the Argon2id salt and parameters.
pub const KDF_RECORD: &str = "kdf";
/// Record holding the id of the first key a store was opened with.
pub const FOUNDER_RECORD: &str = "keys.founder";
/// Prefix of the key-check records (`key_check.<key id>`).
pub const KEY_CHECK_PREFIX: &str = "key_check.";
const KEY_CHECK_PLAINTEXT: &[u8] = b"oidc-broker-store key check v1";

/// Prefix of the records marking a key as no longer protecting anything
/// (`key_retired.<key id>`).
pub const KEY_RETIRED_PREFIX: &str = "key_retired.";

/// The name of the key-check record of `id`.
pub fn key_check_record(id: KeyId) -> String {
    format!("{KEY_CHECK_PREFIX}{id}")
}

/// The name of the retirement record of `id`.
pub fn key_retired_record(id: KeyId) -> String {
    format!("{KEY_RETIRED_PREFIX}{id}")
}

/// Refuse a keyring that leaves out a registered key not yet retired.
async fn refuse_left_out_keys(store: &dyn BrokerStore, ring: &Keyring) -> Result<()> {
    let op = "open_keyring";
    let names: Vec<String> = store
        .list_records()
        .await
        .map_err(|e| e.with_op(op))?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for name in &names {
        let Some(hex) = name.strip_prefix(KEY_CHECK_PREFIX) else {
            continue;
        };
        let id = u32::from_str_radix(hex, 16)
            .map(KeyId)
            .map_err(|_| StoreError::corrupt(op, Corruption::Malformed("key-check record name")))?;
        if !ring.contains(id) && !names.contains(&key_retired_record(id)) {
            return Err(StoreError::KeyInUse { op, key_id: id });
        }
    }
    Ok(())
}

/// A key: raw bytes, or a passphrase to stretch with the store's Argon2id salt.
pub enum KeySource {
    /// A raw 256-bit key.
    Raw(EncryptionKey),
    /// A passphrase; the key derives from it with the store's `kdf` record.
    Passphrase(SecretString),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Raw(k) => f.debug_tuple("Raw").field(&k.id()).finish(),
            Self::Passphrase(_) => f.write_str("Passphrase([REDACTED])"),
        }
    }
}

impl From<EncryptionKey> for KeySource {
    fn from(key: EncryptionKey) -> Self {
        Self::Raw(key)
    }
}

impl From<SecretString> for KeySource {
    fn from(passphrase: SecretString) -> Self {
        Self::Passphrase(passphrase)
    }
}

/// The keys a [`TokenVault`](crate::TokenVault) opens with: one primary that
/// seals, older keys that only open.
///
/// ```
/// use broker_core::crypto::EncryptionKey;
/// use broker_core::KeyConfig;
/// let old = EncryptionKey::generate();
/// let new = EncryptionKey::generate();
/// // Rotation: `new` seals from now on and is registered with the store;
/// // blobs under `old` still open until re-encryption moves them.
/// let keys = KeyConfig::new(old).rotate_to(new);
/// assert_eq!(keys.older_count(), 1);
/// ```
#[derive(Debug)]
pub struct KeyConfig {
    primary: KeySource,
    older: Vec<KeySource>,
    register_primary: bool,
}

impl KeyConfig {
    /// Open with one key, which must be the store's (or the store is new).
    pub fn new(primary: impl Into<KeySource>) -> Self {
        Self {
            primary: primary.into(),
            older: Vec::new(),
            register_primary: false,
        }
    }

    /// Open with a passphrase (Argon2id with the store's salt).
    pub fn passphrase(passphrase: impl Into<SecretString>) -> Self {
        Self::new(KeySource::Passphrase(passphrase.into()))
    }

    /// Also accept blobs sealed under `key` (decrypt only).
    pub fn with_older(mut self, key: impl Into<KeySource>) -> Self {
        self.older.push(key.into());
        self
    }

    /// Rotate: `new_primary` seals from now on and is registered with the
    /// store at open; the current primary becomes an older key.
    pub fn rotate_to(mut self, new_primary: impl Into<KeySource>) -> Self {
        let old = std::mem::replace(&mut self.primary, new_primary.into());
        self.older.insert(0, old);
        self.register_primary = true;
        self
    }

    /// How many decrypt-only keys the config holds.
    pub fn older_count(&self) -> usize {
        self.older.len()
    }
}

/// Argon2id parameters and salt, as stored in the `kdf` record.
#[derive(Clone, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
    /// 16 random bytes.
    pub salt: [u8; 16],
}

impl fmt::Debug for KdfParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KdfParams")
            .field("m_cost", &self.m_cost)
            .field("t_cost", &self.t_cost)
            .field("p_cost", &self.p_cost)
            .finish_non_exhaustive()
    }
}

impl KdfParams {
    /// The OWASP minimum (`argon2::Params::DEFAULT`) with a fresh OS salt.
    pub fn generate() -> Self {
        let mut salt = [0u8; 16];
        crate::crypto::os_random(&mut salt);
        Self {
            m_cost: argon2::Params::DEFAULT_M_COST,
            t_cost: argon2::Params::DEFAULT_T_COST,
            p_cost: argon2::Params::DEFAULT_P_COST,
            salt,
        }
    }

    /// `0x01 | m u32 | t u32 | p u32 | salt (16)`, all big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(29);
        out.push(1);
        out.extend_from_slice(&self.m_cost.to_be_bytes());
        out.extend_from_slice(&self.t_cost.to_be_bytes());
        out.extend_from_slice(&self.p_cost.to_be_bytes());
        out.extend_from_slice(&self.salt);
        out
    }

    /// Decode a stored record; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = |reason| StoreError::corrupt("open_keyring", reason);
        match bytes.first() {
            None => return Err(corrupt(Corruption::Truncated)),
            Some(1) => {}
            Some(&v) => return Err(corrupt(Corruption::UnsupportedVersion(v))),
        }
        if bytes.len() != 29 {
            return Err(corrupt(Corruption::Malformed(
                "key-derivation record length",
            )));
        }
        let word = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        Ok(Self {
            m_cost: word(1),
            t_cost: word(5),
            p_cost: word(9),
            salt: bytes[13..29].try_into().expect("16 bytes"),
        })
    }

    /// Refuse parameters that would weaken the key or stall start-up:
    /// m in 19456..=1048576 KiB, t in 2..=10, p in 1..=8.
    pub fn check_bounds(&self) -> Result<()> {
        let ok = (19_456..=1_048_576).contains(&self.m_cost)
            && (2..=10).contains(&self.t_cost)
            && (1..=8).contains(&self.p_cost);
        if ok {
            Ok(())
        } else {
            Err(StoreError::WrongKey {
                op: "open_keyring",
                reason: "the stored key-derivation parameters are outside the accepted range \
                         (m 19456..=1048576 KiB, t 2..=10, p 1..=8); the record was edited"
                    .into(),
            })
        }
    }

    /// Stretch `passphrase` into a key (about 40 ms at the defaults; run it
    /// off the async executor).
    pub fn derive(&self, passphrase: &SecretString) -> Result<EncryptionKey> {
        self.check_bounds()?;
        let params =
            argon2::Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32)).map_err(|_| {
                StoreError::WrongKey {
                    op: "open_keyring",
                    reason: "the stored key-derivation parameters are invalid".into(),
                }
            })?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(
                passphrase.expose_secret().as_bytes(),
                &self.salt,
                &mut out[..],
            )
            .map_err(|_| StoreError::InvalidKey {
                op: "open_keyring",
                reason: "the passphrase cannot be stretched (empty or too long)",
            })?;
        EncryptionKey::from_bytes(&out[..])
    }
}

/// A key ready for the ring, with what its key check is bound to.
struct Resolved {
    key: EncryptionKey,
    kdf: Vec<u8>,
}

/// Resolve `config` against `store` and check every key: the keyring a
/// vault seals and opens with.
pub(crate) async fn open_keyring(store: &dyn BrokerStore, config: KeyConfig) -> Result<Keyring> {
    let KeyConfig {
        primary,
        older,
        register_primary,
    } = config;
    let kdf = if std::iter::once(&primary)
        .chain(&older)
        .any(|k| matches!(k, KeySource::Passphrase(_)))
    {
        let proposal = KdfParams::generate().encode();
        let stored = store
            .create_record(KDF_RECORD, &proposal)
            .await
            .map_err(|e| e.with_op("open_keyring"))?;
        let params = KdfParams::decode(&stored)?;
        params.check_bounds()?;
        Some((params, stored))
    } else {
        None
    };

    let mut resolved = Vec::with_capacity(1 + older.len());
    for source in std::iter::once(primary).chain(older) {
        resolved.push(match source {
            KeySource::Raw(key) => Resolved {
                key,
                kdf: Vec::new(),
            },
            KeySource::Passphrase(passphrase) => {
                let (params, encoded) = kdf.clone().expect("kdf loaded when a passphrase is given");
                let key = tokio::task::spawn_blocking(move || params.derive(&passphrase))
                    .await
                    .map_err(|_| StoreError::InvalidKey {
                        op: "open_keyring",
                        reason: "key derivation was interrupted",
                    })??;
                Resolved { key, kdf: encoded }
            }
        });
    }

    let ns = store.namespace().as_str().to_owned();
    let checks: Vec<(KeyId, Vec<u8>)> = resolved
        .iter()
        .map(|r| (r.key.id(), r.kdf.clone()))
        .collect();
    let mut keys = resolved.into_iter().map(|r| r.key);
    let primary_key = keys.next().expect("a primary key");
    let ring = Keyring::new(primary_key, keys)?;

    let founder = store
        .create_record(FOUNDER_RECORD, &ring.primary_id().0.to_be_bytes())
        .await
        .map_err(|e| e.with_op("open_keyring"))?;
    let founder: [u8; 4] = founder.as_slice().try_into().map_err(|_| {
        StoreError::corrupt("open_keyring", Corruption::Malformed("key founder record"))
    })?;
    let founder = KeyId(u32::from_be_bytes(founder));

    for (i, (id, kdf)) in checks.iter().enumerate() {
        let binding = Binding::KeyCheck {
            namespace: &ns,
            kdf,
        };
        let name = key_check_record(*id);
        let stored = match store
            .get_record(&name)
            .await
            .map_err(|e| e.with_op("open_keyring"))?
        {
            Some(stored) => stored,
            None if i == 0 && (register_primary || founder == *id) => {
                let check = ring.seal(&binding, KEY_CHECK_PLAINTEXT)?;
                store
                    .create_record(&name, &check)
                    .await
                    .map_err(|e| e.with_op("open_keyring"))?
            }
            None if i == 0 => {
                return Err(StoreError::WrongKey {
                    op: "open_keyring",
                    reason: format!(
                        "the primary key (id {id}) is not one this store knows: check the key or \
                         passphrase; to start using a new key, rotate to it"
                    ),
                });
            }
            None => {
                return Err(StoreError::WrongKey {
                    op: "open_keyring",
                    reason: format!("the older key with id {id} is not one this store knows"),
                });
            }
        };
        match ring.open(&binding, &stored) {
            Ok(plain) if plain.expose_secret() == KEY_CHECK_PLAINTEXT => {}
            _ => {
                return Err(StoreError::WrongKey {
                    op: "open_keyring",
                    reason: format!("key id {id} does not pass this store's key check"),
                });
            }
        }
    }
    refuse_left_out_keys(store, &ring).await?;
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kdf_record_round_trips_and_bounds() {
        let p = KdfParams::generate();
        assert_eq!(KdfParams::decode(&p.encode()).unwrap(), p);
        assert!(p.check_bounds().is_ok());
        let weak = KdfParams {
            m_cost: 8,
            ..p.clone()
        };
        assert!(matches!(
            weak.check_bounds(),
            Err(StoreError::WrongKey { .. })
        ));
        let stall = KdfParams { t_cost: 11, ..p };
        assert!(stall.derive(&"x".to_owned().into()).is_err());
    }

    #[test]
    fn debug_of_sources_hides_secrets() {
        let text = format!(
            "{:?}",
            KeyConfig::passphrase("canary-passphrase".to_owned())
                .rotate_to(EncryptionKey::from_bytes(&[0x63; 32]).unwrap())
        );
        assert!(!text.contains("canary"), "{text}");
        assert!(!text.contains("6363"), "{text}");
    }

    proptest! {
        #[test]
        fn kdf_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = KdfParams::decode(&bytes);
        }
    }
}
