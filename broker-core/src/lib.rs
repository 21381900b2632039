#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod clock;
pub mod crypto;
pub mod error;
pub mod ext;
pub mod format;
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
pub use format::FormatError;
pub use keys::{KeyConfig, KeySource};
pub use memory::MemoryStore;
pub use purge::{PurgeTask, spawn_purge_task};
pub use record::{
    Namespace, PeerJwks, Revocation, RevocationPage, SessionPage, SessionRecord, StoreStats,
    UnixTime, unix_now,
};
pub use store::BrokerStore;
pub use vault::{RekeyReport, Session, TokenVault, UserInfo};

pub use bytes;
pub use secrecy;
pub use serde_json;
