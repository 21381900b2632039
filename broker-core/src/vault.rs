//! [`TokenVault`]: the facade applications use. Plaintext in, plaintext out;
//! everything secret is sealed before it reaches the store and verified on
//! the way back.

mod budget;
#[cfg(test)]
mod budget_tests;
mod entries;
mod peers;
mod rekey;
#[cfg(test)]
mod rekey_tests;
mod secrets;
#[cfg(test)]
mod tests;
mod user_info;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures::TryStreamExt as _;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use zeroize::Zeroizing;

use crate::crypto::{Binding, KeyId, Keyring, sealed_key_id};
use crate::error::{Corruption, Result, StoreError};
use crate::ext::BrokerStoreExt as _;
use crate::keys::{KeyConfig, open_keyring};
use crate::record::{Revocation, SessionRecord, UnixTime};
use crate::store::BrokerStore;
use crate::validate;

use budget::NonceBudget;
pub use budget::SEAL_CHECK_INTERVAL;
pub use entries::{Entry, MAX_ENTRY_PAYLOAD, NewEntry};
pub use rekey::{REKEY_SETTLE, RekeyReport};
pub use secrets::{SECRET_RECORD_PREFIX, Secret, Stamp, is_sealed_record};
pub use user_info::UserInfo;
use user_info::{WipingBuf, validated_json};

/// Name of the record holding the broker's sealed signing key.
pub const SIGNING_KEY_RECORD: &str = "signing_key";
/// Prefix of the per-key nonce counters (`nonces.<key id>`).
pub const NONCE_COUNTER_PREFIX: &str = "nonces.";
/// The namespace holding the per-key nonce counters, shared by every
/// namespace of a database (reached with [`BrokerStore::sibling`]): one key
/// used in several namespaces is counted once. Reserved: do not use it
/// for sessions.
pub const KEY_BUDGET_NAMESPACE: &str = "oidc_broker_key_budget";
/// Seals one key may make with random 96-bit nonces (0.9 · 2^32, NIST SP 800-38D).
pub const NONCE_LIMIT: u64 = 3_865_470_566;
/// Seals after which a warning is logged.
pub const NONCE_WARNING: u64 = 1 << 31;
/// Seals a process reserves from the persisted counter at a time.
const NONCE_BATCH: u64 = 1 << 16;
/// Sessions per page when re-encrypting or counting.
const PAGE: usize = 500;

/// A session in plaintext, as the application sees it. `Debug` shows no
/// refresh token and no user_info.
#[derive(Debug, Clone)]
pub struct Session {
    /// Id of the broker JWT handed to the client.
    pub jti: String,
    /// Subject at the identity provider.
    pub sub: String,
    /// The identity provider's refresh token.
    pub refresh_token: SecretString,
    /// The user's claims.
    pub user_info: UserInfo,
    /// When the session ends (Unix seconds).
    pub expires_at: UnixTime,
    /// When the user authenticated (Unix seconds); kept across refreshes.
    pub auth_time: UnixTime,
}

/// How many sealed values each key id protects in `store` (sessions, the
/// signing key and peer tags); needs no key, since the envelope names its
/// key id.
pub async fn key_usage(store: &dyn BrokerStore) -> Result<BTreeMap<KeyId, u64>> {
    let mut usage = BTreeMap::new();
    let mut sessions = store.sessions(PAGE);
    while let Some(s) = sessions.try_next().await? {
        if let Ok(id) = sealed_key_id(&s.sealed) {
            *usage.entry(id).or_insert(0) += 1;
        }
    }
    for (name, stored) in store.list_records().await? {
        if is_sealed_record(&name)
            && let Ok(id) = sealed_key_id(&stored)
        {
            *usage.entry(id).or_insert(0) += 1;
        }
    }
    for peer in store.load_peers().await? {
        if let Some(id) = peers::stored_key_id(&peer.jwks) {
            *usage.entry(id).or_insert(0) += 1;
        }
    }
    Ok(usage)
}

/// The store facade: seals sessions and the signing key on the way in,
/// verifies and opens them on the way out.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use broker_core::{KeyConfig, MemoryStore, Session, TokenVault, crypto::EncryptionKey};
/// use secrecy::ExposeSecret;
///
/// let vault = TokenVault::open(Arc::new(MemoryStore::new()), KeyConfig::new(EncryptionKey::generate())).await?;
/// let now = broker_core::unix_now();
/// vault.create_session(&Session {
///     jti: "jwt-id-1".into(),
///     sub: "alice".into(),
///     refresh_token: "idp-refresh-token".to_owned().into(),
///     user_info: serde_json::json!({"email": "alice@example.org"}).into(),
///     expires_at: now + 3600,
///     auth_time: now,
/// }).await?;
/// // Refresh: take the session (only one concurrent refresh wins) ...
/// let old = vault.take_session("jwt-id-1").await?.expect("live session");
/// assert_eq!(old.refresh_token.expose_secret(), "idp-refresh-token");
/// // ... and log the user out everywhere.
/// assert_eq!(vault.revoke_subject("alice").await?, 0);
/// # Ok::<(), broker_core::StoreError>(())
/// # }).unwrap();
/// ```
pub struct TokenVault {
    store: Arc<dyn BrokerStore>,
    keyring: Keyring,
    budget: NonceBudget,
}

impl fmt::Debug for TokenVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVault")
            .field("store", &self.store)
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

impl TokenVault {
    /// Set up `store` and open it with `keys`. A wrong key or passphrase is
    /// a [`StoreError::WrongKey`] here, before any session call. Passphrase
    /// keys are stretched once, here.
    #[tracing::instrument(skip_all, name = "vault.open")]
    pub async fn open(store: Arc<dyn BrokerStore>, keys: KeyConfig) -> Result<Self> {
        store.setup().await?;
        let keyring = open_keyring(store.as_ref(), keys).await?;
        Ok(Self {
            store,
            keyring,
            budget: NonceBudget::default(),
        })
    }

    /// The store underneath (sealed records only).
    pub fn store(&self) -> &Arc<dyn BrokerStore> {
        &self.store
    }

    /// The keyring in use.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Seal the concatenation of `parts` under the primary key, counting
    /// the nonce against its budget.
    async fn seal(&self, binding: &Binding<'_>, parts: &[&[u8]]) -> Result<Vec<u8>> {
        self.budget
            .take(self.store.as_ref(), self.keyring.primary_id())
            .await?;
        self.keyring.seal_parts(binding, parts)
    }

    fn session_binding<'a>(
        &'a self,
        jti: &'a str,
        sub: &'a str,
        expires_at: UnixTime,
        auth_time: UnixTime,
    ) -> Binding<'a> {
        Binding::Session {
            namespace: self.store.namespace().as_str(),
            jti,
            sub,
            expires_at,
            auth_time,
        }
    }

    /// Seal a session into the record a store keeps (no I/O but the nonce
    /// counter). Input limits are checked first.
    pub async fn seal_session(&self, op: &'static str, session: &Session) -> Result<SessionRecord> {
        validate::jti(op, &session.jti)?;
        validate::sub(op, &session.sub)?;
        validate::timestamp(op, "expires_at", session.expires_at)?;
        validate::timestamp(op, "auth_time", session.auth_time)?;
        let token = session.refresh_token.expose_secret().as_bytes();
        if token.len() > validate::MAX_REFRESH_TOKEN_BYTES {
            return Err(StoreError::invalid(
                op,
                format!(
                    "refresh token is larger than {} bytes",
                    validate::MAX_REFRESH_TOKEN_BYTES
                ),
            ));
        }
        let mut serialized;
        let info = match session.user_info.sealed_json() {
            Some(json) => json,
            None => {
                serialized = WipingBuf(Zeroizing::new(Vec::with_capacity(512)));
                serde_json::to_writer(&mut serialized, session.user_info.expose())
                    .map_err(|_| StoreError::invalid(op, "user_info cannot be serialized"))?;
                serialized.0.as_slice()
            }
        };
        if info.len() > validate::MAX_USER_INFO_BYTES {
            return Err(StoreError::invalid(
                op,
                format!(
                    "user_info is larger than {} bytes",
                    validate::MAX_USER_INFO_BYTES
                ),
            ));
        }
        let binding = self.session_binding(
            &session.jti,
            &session.sub,
            session.expires_at,
            session.auth_time,
        );
        let token_len = (token.len() as u32).to_be_bytes();
        let sealed = self
            .seal(&binding, &[&token_len, token, info])
            .await
            .map_err(|e| e.with_op(op))?;
        Ok(SessionRecord {
            jti: session.jti.clone(),
            sub: session.sub.clone(),
            expires_at: session.expires_at,
            auth_time: session.auth_time,
            sealed: sealed.into(),
        })
    }

    /// Verify and open a stored session record's plaintext, whatever it
    /// holds (a session or an entry).
    fn open_record(&self, op: &'static str, record: &SessionRecord) -> Result<SecretSlice<u8>> {
        let binding = self.session_binding(
            &record.jti,
            &record.sub,
            record.expires_at,
            record.auth_time,
        );
        self.keyring
            .open(&binding, &record.sealed)
            .map_err(|e| e.with_op(op))
    }

    /// `record` (sealed by `source`, for `source`'s namespace) sealed again
    /// by this vault for its own namespace: what a migration writes. Works
    /// for sessions and entries alike.
    pub async fn copy_record(
        &self,
        source: &TokenVault,
        record: &SessionRecord,
    ) -> Result<SessionRecord> {
        let op = "copy_record";
        let plain = source.open_record(op, record)?;
        self.reseal(op, record, &plain).await
    }

    /// `plain` sealed under the primary key for `record`'s place.
    async fn reseal(
        &self,
        op: &'static str,
        record: &SessionRecord,
        plain: &SecretSlice<u8>,
    ) -> Result<SessionRecord> {
        let binding = self.session_binding(
            &record.jti,
            &record.sub,
            record.expires_at,
            record.auth_time,
        );
        let sealed = self
            .seal(&binding, &[plain.expose_secret()])
            .await
            .map_err(|e| e.with_op(op))?;
        Ok(SessionRecord {
            sealed: sealed.into(),
            ..record.clone()
        })
    }

    /// Verify and open a stored session record.
    pub fn open_session(&self, op: &'static str, record: &SessionRecord) -> Result<Session> {
        let plain = self.open_record(op, record)?;
        let plain = plain.expose_secret();
        if entries::is_entry(plain) {
            return Err(StoreError::corrupt(
                op,
                Corruption::Malformed("an entry, not a session"),
            ));
        }
        let malformed = || StoreError::corrupt(op, Corruption::Malformed("session plaintext"));
        let len_bytes: [u8; 4] = plain
            .get(..4)
            .ok_or_else(malformed)?
            .try_into()
            .map_err(|_| malformed())?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let token = plain.get(4..4 + len).ok_or_else(malformed)?;
        let token = std::str::from_utf8(token).map_err(|_| malformed())?;
        let info = validated_json(&plain[4 + len..]).ok_or_else(malformed)?;
        Ok(Session {
            jti: record.jti.clone(),
            sub: record.sub.clone(),
            refresh_token: SecretString::from(token),
            user_info: UserInfo::from_sealed_json(info),
            expires_at: record.expires_at,
            auth_time: record.auth_time,
        })
    }

    /// Store a new session; a live session with the same `jti` is a
    /// [`StoreError::Conflict`] and stays as it was.
    #[tracing::instrument(skip_all, name = "vault.create_session")]
    pub async fn create_session(&self, session: &Session) -> Result<()> {
        let record = self.seal_session("create_session", session).await?;
        self.store.create_session(&record).await
    }

    /// Store a session, replacing any with the same `jti`.
    #[tracing::instrument(skip_all, name = "vault.save_session")]
    pub async fn save_session(&self, session: &Session) -> Result<()> {
        let record = self.seal_session("save_session", session).await?;
        self.store.save_session(&record).await
    }

    /// The live session with this `jti`, verified and opened.
    #[tracing::instrument(skip_all, name = "vault.get_session")]
    pub async fn get_session(&self, jti: &str) -> Result<Option<Session>> {
        match self.store.get_session(jti).await? {
            Some(record) => self.open_session("get_session", &record).map(Some),
            None => Ok(None),
        }
    }

    /// Atomically remove and return the live session with this `jti` (the
    /// refresh step: of concurrent takers only one gets it).
    #[tracing::instrument(skip_all, name = "vault.take_session")]
    pub async fn take_session(&self, jti: &str) -> Result<Option<Session>> {
        match self.store.take_session(jti).await? {
            Some(record) => self.open_session("take_session", &record).map(Some),
            None => Ok(None),
        }
    }

    /// Remove a session; true if one was stored.
    #[tracing::instrument(skip_all, name = "vault.delete_session")]
    pub async fn delete_session(&self, jti: &str) -> Result<bool> {
        self.store.delete_session(jti).await
    }

    /// Log `sub` out everywhere now (by the store's clock): returns how many
    /// sessions were removed. A refresh in flight cannot bring a session
    /// back, then or ever.
    #[tracing::instrument(skip_all, name = "vault.revoke_subject")]
    pub async fn revoke_subject(&self, sub: &str) -> Result<u64> {
        let now = self.store.clock().now();
        self.store.revoke_subject(&Revocation::at(sub, now)).await
    }

    /// Remove expired sessions and those a revocation hides; returns how many.
    #[tracing::instrument(skip_all, name = "vault.purge_expired")]
    pub async fn purge_expired(&self) -> Result<u64> {
        self.store.purge_expired().await
    }

    /// The broker's signing key (PEM). The first caller's `generate` result
    /// is stored; every other caller, in any process, gets that one.
    #[tracing::instrument(skip_all, name = "vault.load_or_create_signing_key")]
    pub async fn load_or_create_signing_key<F>(&self, generate: F) -> Result<SecretString>
    where
        F: FnOnce() -> SecretString + Send,
    {
        let op = "load_or_create_signing_key";
        let binding = self.signing_key_binding();
        let stored = match self.store.get_record(SIGNING_KEY_RECORD).await? {
            Some(stored) => stored,
            None => {
                let pem = generate();
                let sealed = self
                    .seal(&binding, &[pem.expose_secret().as_bytes()])
                    .await
                    .map_err(|e| e.with_op(op))?;
                self.store
                    .create_record(SIGNING_KEY_RECORD, &sealed)
                    .await?
            }
        };
        self.open_pem(op, &binding, &stored)
    }

    /// Replace the signing key (rotation). Refused with a conflict if the
    /// stored key changed since `current` was read.
    #[tracing::instrument(skip_all, name = "vault.rotate_signing_key")]
    pub async fn rotate_signing_key(
        &self,
        current: &SecretString,
        new_pem: &SecretString,
    ) -> Result<()> {
        let op = "rotate_signing_key";
        let binding = self.signing_key_binding();
        let stored =
            self.store
                .get_record(SIGNING_KEY_RECORD)
                .await?
                .ok_or(StoreError::Conflict {
                    op,
                    what: "there is no signing key to rotate",
                })?;
        if self.open_pem(op, &binding, &stored)?.expose_secret() != current.expose_secret() {
            return Err(StoreError::Conflict {
                op,
                what: "the signing key changed meanwhile",
            });
        }
        if self.replace_signing_key(op, &stored, new_pem).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                op,
                what: "the signing key changed meanwhile",
            })
        }
    }

    /// Seal `pem` as the signing key and store it if the stored blob is
    /// still `stored` (compare-and-set); true if replaced.
    async fn replace_signing_key(
        &self,
        op: &'static str,
        stored: &[u8],
        pem: &SecretString,
    ) -> Result<bool> {
        let sealed = self
            .seal(
                &self.signing_key_binding(),
                &[pem.expose_secret().as_bytes()],
            )
            .await
            .map_err(|e| e.with_op(op))?;
        self.store
            .replace_record(SIGNING_KEY_RECORD, stored, &sealed)
            .await
    }

    fn signing_key_binding(&self) -> Binding<'_> {
        Binding::SigningKey {
            namespace: self.store.namespace().as_str(),
            name: SIGNING_KEY_RECORD,
        }
    }

    fn open_pem(
        &self,
        op: &'static str,
        binding: &Binding<'_>,
        sealed: &[u8],
    ) -> Result<SecretString> {
        let plain = self
            .keyring
            .open(binding, sealed)
            .map_err(|e| e.with_op(op))?;
        let pem = std::str::from_utf8(plain.expose_secret())
            .map_err(|_| StoreError::corrupt(op, Corruption::Malformed("signing key text")))?;
        Ok(SecretString::from(pem.to_owned()))
    }

    /// How many sealed values each key id protects (sessions and signing
    /// keys): a key may be dropped once its count is zero.
    #[tracing::instrument(skip_all, name = "vault.key_usage")]
    pub async fn key_usage(&self) -> Result<BTreeMap<KeyId, u64>> {
        key_usage(self.store.as_ref()).await
    }
}
