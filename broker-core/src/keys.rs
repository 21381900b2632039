//! Where keys come from, and checking them against a store when a vault opens.
//!
//! Keys are raw 32-byte keys or passphrases (at least
//! [`MIN_PASSPHRASE_CHARS`] characters) stretched with Argon2id. The store
//! holds, as create-once records: the key-derivation record (salt and
//! parameters, `kdf`), one sealed key-check value per registered key id
//! (`key_check.<id>`), and the id of the first key the store saw
//! (`keys.founder`). A key whose id has no key-check record is refused at
//! open — a wrong key or passphrase is caught before any session call —
//! unless it is the store's first key or a new primary registered on purpose
//! with [`KeyConfig::rotate_to`]. Every check runs before anything is
//! written, so a refused open leaves the store as it was.
//!
//! [`TokenVault::rekey`](crate::TokenVault::rekey) first *closes* the older
//! keys (`key_closed.<id>`: no vault seals under them any more, and none
//! opens with one as its primary, [`StoreError::KeyRetired`]), then moves
//! everything to the primary and *retires* them (`key_retired.<id>`). A
//! registered key may be left out of the keyring only once retired; before
//! that, leaving it out is refused with [`StoreError::KeyInUse`].

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

/// Prefix of the records closing a key for sealing (`key_closed.<key id>`,
/// holding the Unix time in milliseconds when it was closed), written by
/// [`TokenVault::rekey`](crate::TokenVault::rekey) before it moves
/// anything: from then on sealing under that key is refused
/// ([`StoreError::KeyRetired`]).
pub const KEY_CLOSED_PREFIX: &str = "key_closed.";

/// Fewest characters (Unicode scalar values, not bytes) a passphrase may
/// have; an empty passphrase is refused like any short one.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// The name of the closing record of `id`.
pub fn key_closed_record(id: KeyId) -> String {
    format!("{KEY_CLOSED_PREFIX}{id}")
}

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

/// Refuse a passphrase shorter than [`MIN_PASSPHRASE_CHARS`] characters
/// (an empty one included), before any I/O.
pub fn check_passphrase(passphrase: &SecretString) -> Result<()> {
    if passphrase.expose_secret().chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(StoreError::InvalidKey {
            op: "open_keyring",
            reason: "a passphrase must be at least 12 characters",
        });
    }
    Ok(())
}

/// Resolve `config` against `store` and check every key: the keyring a
/// vault seals and opens with.
///
/// Everything is checked before anything is written: a wrong key, a wrong
/// passphrase, an unknown older key or a left-out key leaves the store as
/// it was (no `kdf` record, no founder, no key check for a new primary), so
/// one mistyped key cannot lock later, correct opens out. Only once every
/// check passed are the missing records created.
pub(crate) async fn open_keyring(store: &dyn BrokerStore, config: KeyConfig) -> Result<Keyring> {
    for source in std::iter::once(&config.primary).chain(&config.older) {
        if let KeySource::Passphrase(passphrase) = source {
            check_passphrase(passphrase)?;
        }
    }
    // A first open that loses the race to create the `kdf` record derives
    // again with the winner's salt.
    for _ in 0..2 {
        if let Some(ring) = try_open(store, &config).await? {
            return Ok(ring);
        }
    }
    Err(StoreError::Conflict {
        op: "open_keyring",
        what: "the key-derivation record changed while the keyring opened",
    })
}

/// The stored key-derivation record, or a fresh proposal (`Some` as the
/// second value) when the store has none yet.
async fn kdf_params(store: &dyn BrokerStore) -> Result<(KdfParams, Vec<u8>, Option<Vec<u8>>)> {
    match store
        .get_record(KDF_RECORD)
        .await
        .map_err(|e| e.with_op("open_keyring"))?
    {
        Some(stored) => {
            let params = KdfParams::decode(&stored)?;
            params.check_bounds()?;
            Ok((params, stored, None))
        }
        None => {
            let params = KdfParams::generate();
            let encoded = params.encode();
            Ok((params, encoded.clone(), Some(encoded)))
        }
    }
}

/// The keys of `config`, passphrases stretched with `kdf`.
async fn resolve(config: &KeyConfig, kdf: Option<&(KdfParams, Vec<u8>)>) -> Result<Vec<Resolved>> {
    let mut resolved = Vec::with_capacity(1 + config.older.len());
    for source in std::iter::once(&config.primary).chain(&config.older) {
        resolved.push(match (source, kdf) {
            (KeySource::Raw(key), _) => Resolved {
                key: key.duplicate(),
                kdf: Vec::new(),
            },
            (KeySource::Passphrase(passphrase), Some((params, encoded))) => {
                let (params, passphrase) = (params.clone(), passphrase.clone());
                let key = tokio::task::spawn_blocking(move || params.derive(&passphrase))
                    .await
                    .map_err(|_| StoreError::InvalidKey {
                        op: "open_keyring",
                        reason: "key derivation was interrupted",
                    })??;
                Resolved {
                    key,
                    kdf: encoded.clone(),
                }
            }
            (KeySource::Passphrase(_), None) => {
                return Err(StoreError::InvalidKey {
                    op: "open_keyring",
                    reason: "a passphrase needs the key-derivation record",
                });
            }
        });
    }
    Ok(resolved)
}

/// Check that the key-check value `stored` opens under `ring` to the constant.
fn verify_check(ring: &Keyring, binding: &Binding<'_>, stored: &[u8], id: KeyId) -> Result<()> {
    match ring.open(binding, stored) {
        Ok(plain) if plain.expose_secret() == KEY_CHECK_PLAINTEXT => Ok(()),
        _ => Err(StoreError::WrongKey {
            op: "open_keyring",
            reason: format!("key id {id} does not pass this store's key check"),
        }),
    }
}

fn unknown_primary(id: KeyId) -> StoreError {
    StoreError::WrongKey {
        op: "open_keyring",
        reason: format!(
            "the primary key (id {id}) is not one this store knows: check the key or \
             passphrase; to start using a new key, rotate to it"
        ),
    }
}

/// One attempt at [`open_keyring`]; `None` if the `kdf` record proposed
/// here lost a creation race (derive again with the stored one).
async fn try_open(store: &dyn BrokerStore, config: &KeyConfig) -> Result<Option<Keyring>> {
    let op = "open_keyring";
    // 1. Read what the store holds and derive the keys: no writes.
    let needs_kdf = std::iter::once(&config.primary)
        .chain(&config.older)
        .any(|k| matches!(k, KeySource::Passphrase(_)));
    let (kdf, kdf_proposal) = if needs_kdf {
        let (params, encoded, proposal) = kdf_params(store).await?;
        (Some((params, encoded)), proposal)
    } else {
        (None, None)
    };
    let resolved = resolve(config, kdf.as_ref()).await?;
    let ns = store.namespace().as_str().to_owned();
    let checks: Vec<(KeyId, Vec<u8>)> = resolved
        .iter()
        .map(|r| (r.key.id(), r.kdf.clone()))
        .collect();
    let mut keys = resolved.into_iter().map(|r| r.key);
    let primary_key = keys.next().expect("a primary key");
    let ring = Keyring::new(primary_key, keys)?;
    let primary = ring.primary_id();
    let founder = match store
        .get_record(FOUNDER_RECORD)
        .await
        .map_err(|e| e.with_op(op))?
    {
        Some(stored) => Some(decode_founder(&stored)?),
        None => None,
    };
    if kdf_proposal.is_some()
        && founder.is_some()
        && store
            .get_record(KDF_RECORD)
            .await
            .map_err(|e| e.with_op(op))?
            .is_some()
    {
        // Another first opener created the `kdf` record (and the founder)
        // since it was read: our keys came from our own proposal.
        return Ok(None);
    }

    // 2. Check every key against the store: still no writes.
    let mut register = false;
    for (i, (id, kdf)) in checks.iter().enumerate() {
        let binding = Binding::KeyCheck {
            namespace: &ns,
            kdf,
        };
        match store
            .get_record(&key_check_record(*id))
            .await
            .map_err(|e| e.with_op(op))?
        {
            Some(stored) => verify_check(&ring, &binding, &stored, *id)?,
            None if i == 0 && (config.register_primary || founder.is_none_or(|f| f == *id)) => {
                register = true;
            }
            None if i == 0 => return Err(unknown_primary(*id)),
            None => {
                return Err(StoreError::WrongKey {
                    op,
                    reason: format!("the older key with id {id} is not one this store knows"),
                });
            }
        }
    }
    refuse_left_out_keys(store, &ring).await?;
    if store
        .get_record(&key_closed_record(primary))
        .await
        .map_err(|e| e.with_op(op))?
        .is_some()
    {
        return Err(StoreError::KeyRetired {
            op,
            key_id: primary,
        });
    }

    // 3. Every check passed: create what is missing.
    if let Some(proposal) = kdf_proposal {
        let stored = store
            .create_record(KDF_RECORD, &proposal)
            .await
            .map_err(|e| e.with_op(op))?;
        if stored != proposal {
            return Ok(None);
        }
    }
    let founder = match founder {
        Some(founder) => founder,
        None => decode_founder(
            &store
                .create_record(FOUNDER_RECORD, &primary.0.to_be_bytes())
                .await
                .map_err(|e| e.with_op(op))?,
        )?,
    };
    if register {
        if !config.register_primary && founder != primary {
            // Another first opener with another key won the founder race.
            return Err(unknown_primary(primary));
        }
        let binding = Binding::KeyCheck {
            namespace: &ns,
            kdf: &checks[0].1,
        };
        let check = ring.seal(&binding, KEY_CHECK_PLAINTEXT)?;
        let stored = store
            .create_record(&key_check_record(primary), &check)
            .await
            .map_err(|e| e.with_op(op))?;
        verify_check(&ring, &binding, &stored, primary)?;
    }
    Ok(Some(ring))
}

fn decode_founder(stored: &[u8]) -> Result<KeyId> {
    let founder: [u8; 4] = stored.try_into().map_err(|_| {
        StoreError::corrupt("open_keyring", Corruption::Malformed("key founder record"))
    })?;
    Ok(KeyId(u32::from_be_bytes(founder)))
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
