//! The core of an OIDC token broker's server-side state: the
//! [`BrokerStore`] trait every backend implements, the records it keeps,
//! one typed [`StoreError`], AES-256-GCM sealing with key rotation
//! ([`crypto`], [`keys`]), the [`TokenVault`] facade applications use, and a
//! [`MemoryStore`].
//!
//! A store never sees a plaintext secret: the vault seals each session's
//! refresh token and user_info, bound to its `jti`, `sub`, expiry and
//! namespace, before handing it over, and verifies it on the way back.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use broker_core::{KeyConfig, MemoryStore, TokenVault};
//!
//! let store = Arc::new(MemoryStore::new()); // or store_sled / store_postgres / ...
//! let vault = TokenVault::open(store, KeyConfig::passphrase("from a secret manager".to_owned())).await?;
//! let pem = vault.load_or_create_signing_key(|| "-----BEGIN PRIVATE KEY-----...".to_owned().into()).await?;
//! # let _ = pem;
//! # Ok::<(), broker_core::StoreError>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod clock;
pub mod codec;
pub mod crypto;
pub mod error;
pub mod ext;
pub mod keys;
pub mod memory;
pub mod purge;
pub mod record;
pub mod store;
pub mod validate;
pub mod vault;

pub use backend::StoreBackend;
pub use clock::{Clock, ManualClock, SystemClock};
pub use crypto::{EncryptionKey, KeyId};
pub use error::{BoxError, Corruption, Result, StoreError};
pub use ext::BrokerStoreExt;
pub use keys::{KeyConfig, KeySource};
pub use memory::MemoryStore;
pub use purge::{PurgeTask, spawn_purge_task};
pub use record::{
    Namespace, PeerJwks, Revocation, RevocationPage, SessionPage, SessionRecord, StoreStats,
    UnixTime, unix_now,
};
pub use store::BrokerStore;
pub use vault::{RekeyReport, Session, TokenVault, UserInfo};

pub use secrecy;
pub use serde_json;
