//! broker-issuer's integration tests, one binary (BROKER.md §6): the
//! issuer's own keys (`keys`: A1–A3, A5–A7, A9's kid), federation with
//! peer brokers (`federation`: A18–A20, A22, A23, A32) and its faults
//! (`faults`: A21). The real py-oidc-auth peer (A8) is `tests/pyoidc.rs`,
//! a binary of its own because it needs a server; it may share
//! `tests/common`.

#[cfg(feature = "federation")]
#[path = "../common/mod.rs"]
mod common;
#[cfg(feature = "federation")]
mod faults;
#[cfg(feature = "federation")]
mod federation;
mod keys;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The CPU of this process: every test holds a share of it, and A21's
/// timing test holds it alone, so that no other test's RSA key generation
/// (on another thread, competing for the machine's cores) is measured as
/// a late timer.
static CPU: RwLock<()> = RwLock::const_new(());

/// A share of the CPU: every test but the timing one takes it first.
pub async fn share() -> RwLockReadGuard<'static, ()> {
    CPU.read().await
}

/// The CPU alone, for a test that measures the runtime's responsiveness.
pub async fn alone() -> RwLockWriteGuard<'static, ()> {
    CPU.write().await
}
