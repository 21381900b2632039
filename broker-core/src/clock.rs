//! Where "now" comes from. Every decision a store or the vault takes about
//! time (is this session expired? does this revocation still hide it? may
//! purge forget this marker?) reads one injected [`Clock`], so tests move
//! time with a [`ManualClock`] instead of sleeping.
//!
//! Stores take their clock with a `with_clock` builder and use the
//! [`SystemClock`] otherwise. Which clock decides what, backend by backend,
//! is in each store crate's README ("Time").

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::record::{UnixTime, unix_now};

/// A source of the current time in Unix seconds.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> UnixTime;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        unix_now()
    }
}

/// The shared default clock: the [`SystemClock`].
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to: for tests. Clones share one time.
///
/// ```
/// use broker_core::clock::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// let seen_by_store = clock.clone();
/// clock.advance(30);
/// assert_eq!(seen_by_store.now(), 1_030);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: UnixTime) -> Self {
        Self(Arc::new(AtomicI64::new(now)))
    }

    /// A clock standing at the system's current time.
    pub fn starting_now() -> Self {
        Self::new(unix_now())
    }

    /// Move the clock forward (or back, with a negative `secs`).
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Set the clock to `now`.
    pub fn set(&self, now: UnixTime) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}
