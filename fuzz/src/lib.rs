//! Fixtures shared by the fuzz targets: fixed keys and places, a runtime,
//! a vault on a [`MemoryStore`], and the one check every target makes on
//! an error (it is one of the typed kinds and formats without panicking).

use std::sync::{Arc, OnceLock};

use broker_core::crypto::{Binding, EncryptionKey, Keyring};
use broker_core::{KeyConfig, MemoryStore, Namespace, StoreError, TokenVault};

/// The primary key every target seals and opens with.
pub const PRIMARY: [u8; 32] = [0x42; 32];
/// A decrypt-only older key in [`ring`].
pub const OLDER: [u8; 32] = [0x17; 32];
/// The namespace of [`MemoryStore::new`].
pub const NAMESPACE: &str = Namespace::DEFAULT;
/// The session every fuzzed blob is opened as.
pub const JTI: &str = "fuzz-jti";
/// Its subject.
pub const SUB: &str = "fuzz-sub";
/// Its expiry (2100-01-01).
pub const EXPIRES_AT: i64 = 4_102_444_800;
/// Its authentication time.
pub const AUTH_TIME: i64 = 1_700_000_000;

/// The place fuzzed envelopes are opened for (a session).
pub const PLACE: Binding<'static> = Binding::Session {
    namespace: NAMESPACE,
    jti: JTI,
    sub: SUB,
    expires_at: EXPIRES_AT,
    auth_time: AUTH_TIME,
};

/// A key from fixed bytes.
pub fn key(bytes: [u8; 32]) -> EncryptionKey {
    EncryptionKey::from_bytes(&bytes).expect("32 bytes")
}

/// A keyring sealing with [`PRIMARY`] and also opening [`OLDER`].
pub fn ring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| Keyring::new(key(PRIMARY), [key(OLDER)]).expect("distinct key ids"))
}

/// A single-threaded runtime for the async surface (MemoryStore never waits).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

/// A vault on a fresh [`MemoryStore`] opened with [`PRIMARY`].
pub fn vault() -> &'static TokenVault {
    static VAULT: OnceLock<TokenVault> = OnceLock::new();
    VAULT.get_or_init(|| {
        runtime()
            .block_on(TokenVault::open(
                Arc::new(MemoryStore::new()),
                KeyConfig::new(key(PRIMARY)),
            ))
            .expect("a fresh store opens")
    })
}

/// Format an error both ways (neither may panic) and return its Display text.
pub fn formats(e: &StoreError) -> String {
    let text = e.to_string();
    let debug = format!("{e:?}");
    assert!(!text.is_empty() && !debug.is_empty());
    assert!(!e.op().is_empty(), "an error names its operation");
    text
}
