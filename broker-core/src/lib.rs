//! placeholder
pub mod codec;
pub mod error;
pub mod memory;
pub mod record;
pub mod store;
pub mod validate;
pub mod crypto { #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)] pub struct KeyId(pub u32); impl std::fmt::Display for KeyId { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{:08x}", self.0) } } }
pub use error::{StoreError, Result, Corruption};
pub use record::*;
pub use store::BrokerStore;
pub use memory::MemoryStore;
