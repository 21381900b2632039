//! The trees of one namespace, the process-wide count of revocation-marker
//! writes behind the "no marker" cache, and the count of namespace drops
//! that tells handles to re-open their trees.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use broker_core::Namespace;
use sled::Tree;

/// Revocation-marker writes (insert or removal) under way in this process.
pub(crate) static MARKER_WRITES_ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Revocation-marker writes finished in this process (any database).
static MARKER_WRITES_DONE: AtomicU64 = AtomicU64::new(0);
/// Namespaces dropped in this process (any database, any handle). A handle
/// whose trees were opened before the latest drop re-opens them, so it
/// never keeps writing into the detached trees of a dropped namespace.
pub(crate) static NAMESPACE_DROPS: AtomicU64 = AtomicU64::new(0);
/// [`Trees::marker_cache`] when nothing is known.
const MARKERS_UNKNOWN: u64 = u64::MAX;

/// Held while a revocation tree is written: readers that cached "this
/// revocation tree is empty" stop trusting it from the start of the write
/// on, and re-check once it is done.
pub(crate) struct MarkerWrite;

impl MarkerWrite {
    pub(crate) fn begin() -> Self {
        MARKER_WRITES_ACTIVE.fetch_add(1, Ordering::SeqCst);
        Self
    }
}

impl Drop for MarkerWrite {
    fn drop(&mut self) {
        MARKER_WRITES_DONE.fetch_add(1, Ordering::SeqCst);
        MARKER_WRITES_ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The tree suffixes of one namespace, in [`SledStore::tree_names`] order.
pub(crate) const TREE_SUFFIXES: [&str; 8] = [
    "sessions",
    "by_expiry",
    "by_subject",
    "revocations",
    "revoked_until",
    "records",
    "peers",
    crate::format::META_TREE,
];

/// The trees of one namespace.
pub(crate) struct Trees {
    pub(crate) sessions: Tree,
    pub(crate) by_expiry: Tree,
    pub(crate) by_subject: Tree,
    pub(crate) revocations: Tree,
    pub(crate) revoked_until: Tree,
    pub(crate) records: Tree,
    pub(crate) peers: Tree,
    /// `done << 1 | empty`: the revocation tree was empty (or not) when
    /// [`MARKER_WRITES_DONE`] was `done` and no marker write was under way;
    /// [`MARKERS_UNKNOWN`] before the first check.
    marker_cache: AtomicU64,
    /// [`NAMESPACE_DROPS`] before these trees were opened: once it moved
    /// on, some handle dropped a namespace and these may be stale.
    pub(crate) epoch: u64,
    /// Whether purge checked every index entry of these trees against its
    /// session yet (index entries a crash left behind predate the open).
    pub(crate) swept: AtomicBool,
}

impl Trees {
    pub(crate) fn open(db: &sled::Db, namespace: &Namespace) -> sled::Result<Self> {
        let epoch = NAMESPACE_DROPS.load(Ordering::SeqCst);
        let open = |suffix: &str| db.open_tree(tree_name(namespace, suffix));
        Ok(Self {
            sessions: open("sessions")?,
            by_expiry: open("by_expiry")?,
            by_subject: open("by_subject")?,
            revocations: open("revocations")?,
            revoked_until: open("revoked_until")?,
            records: open("records")?,
            peers: open("peers")?,
            marker_cache: AtomicU64::new(MARKERS_UNKNOWN),
            epoch,
            swept: AtomicBool::new(false),
        })
    }

    /// True if this namespace holds no revocation marker, known without a
    /// lookup: the tree was seen empty and no marker was written anywhere
    /// in the process since (markers are rare; most reads skip the lookup).
    ///
    /// Sound because every marker write runs inside a [`MarkerWrite`]: a
    /// marker inserted before the emptiness check was seen by it; one
    /// inserted after it bumps [`MARKER_WRITES_DONE`] or shows in
    /// [`MARKER_WRITES_ACTIVE`] before this returns, unless its write began
    /// after this call's (earlier) session read, which then comes first.
    pub(crate) fn markers_absent(&self) -> bool {
        let cache = self.marker_cache.load(Ordering::SeqCst);
        cache != MARKERS_UNKNOWN
            && cache & 1 == 1
            && MARKER_WRITES_ACTIVE.load(Ordering::SeqCst) == 0
            && MARKER_WRITES_DONE.load(Ordering::SeqCst) == cache >> 1
    }

    /// True while no namespace was dropped since these trees were opened.
    pub(crate) fn current(&self) -> bool {
        NAMESPACE_DROPS.load(Ordering::SeqCst) == self.epoch
    }

    /// Re-check whether the revocation tree is empty if the cached answer
    /// is out of date (a marker was written since), and cache it when no
    /// marker write ran meanwhile.
    pub(crate) fn refresh_marker_cache(&self) {
        let cache = self.marker_cache.load(Ordering::SeqCst);
        if MARKER_WRITES_ACTIVE.load(Ordering::SeqCst) != 0 {
            return;
        }
        let done = MARKER_WRITES_DONE.load(Ordering::SeqCst);
        if cache != MARKERS_UNKNOWN && cache >> 1 == done {
            return;
        }
        // An iteration error reads as "not empty", which is always safe.
        let empty = self.revocations.is_empty();
        if MARKER_WRITES_ACTIVE.load(Ordering::SeqCst) == 0
            && MARKER_WRITES_DONE.load(Ordering::SeqCst) == done
        {
            self.marker_cache
                .store(done << 1 | u64::from(empty), Ordering::SeqCst);
        }
    }
}

pub(crate) fn tree_name(namespace: &Namespace, suffix: &str) -> String {
    format!("{namespace}/{suffix}")
}
