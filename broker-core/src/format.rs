//! Storage-format versions. Each backend owns the layout of what it
//! persists (tables, documents, keys, value encodings) and records a
//! format version per namespace at [`BrokerStore::setup`]. `setup` refuses
//! a namespace it cannot use with a [`StoreError::Backend`] whose source is
//! a [`FormatError`] (the same type for every backend), and migrates an
//! older version it knows in place. The upgrade path of every backend is
//! in the workspace's `docs/UPGRADING.md`.
//!
//! ```
//! use broker_core::{FormatError, StoreError};
//!
//! let e = StoreError::backend("setup", FormatError::newer("store-example", 3, 2));
//! let format = FormatError::of(&e).expect("a format error");
//! assert!(format.is_newer());
//! assert_eq!((format.found, format.supported), (Some(3), 2));
//! ```
//!
//! [`BrokerStore::setup`]: crate::BrokerStore::setup

use std::fmt;

use crate::error::StoreError;

/// Why `setup` refused a namespace's storage format: the source of the
/// [`StoreError::Backend`] it returns. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FormatError {
    /// The backend that refused (`"store-sled"`, `"store-redis"`, ...).
    pub store: &'static str,
    /// The format version the namespace records, or `None` when its record
    /// of the format is not one this backend writes (another program's data).
    pub found: Option<u32>,
    /// The newest format version this build reads (and writes).
    pub supported: u32,
    /// The oldest format version this build migrates in place.
    pub oldest: u32,
}

impl FormatError {
    /// The namespace is in format `found`, newer than `supported`: it was
    /// set up by a newer version of the backend.
    pub fn newer(store: &'static str, found: u32, supported: u32) -> Self {
        Self {
            store,
            found: Some(found),
            supported,
            oldest: supported,
        }
    }

    /// The namespace is in format `found`, older than any this build
    /// migrates (`oldest..=supported`).
    pub fn too_old(store: &'static str, found: u32, oldest: u32, supported: u32) -> Self {
        Self {
            store,
            found: Some(found),
            supported,
            oldest,
        }
    }

    /// The namespace's record of its format is not one `store` writes.
    pub fn unreadable(store: &'static str, supported: u32) -> Self {
        Self {
            store,
            found: None,
            supported,
            oldest: supported,
        }
    }

    /// Whether a build of `store` that reads format `supported` and
    /// migrates formats `oldest..supported` in place can use a namespace
    /// recorded as format `found`: `Ok(found)`, or the error `setup`
    /// returns.
    ///
    /// ```
    /// use broker_core::FormatError;
    /// assert_eq!(FormatError::check("store-x", 2, 1, 2), Ok(2));
    /// assert!(FormatError::check("store-x", 3, 1, 2).unwrap_err().is_newer());
    /// ```
    pub fn check(
        store: &'static str,
        found: u32,
        oldest: u32,
        supported: u32,
    ) -> Result<u32, Self> {
        if found > supported {
            Err(Self::newer(store, found, supported))
        } else if found < oldest {
            Err(Self::too_old(store, found, oldest, supported))
        } else {
            Ok(found)
        }
    }

    /// True if the namespace was set up by a newer version of the backend
    /// (upgrade this program; never run an older one on it).
    pub fn is_newer(&self) -> bool {
        self.found.is_some_and(|found| found > self.supported)
    }

    /// The [`FormatError`] behind `error`, if `setup` failed with one.
    pub fn of(error: &StoreError) -> Option<&FormatError> {
        match error {
            StoreError::Backend { source, .. } => source.downcast_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            store,
            found,
            supported,
            oldest,
        } = self;
        match found {
            Some(found) if found > supported => write!(
                f,
                "{store}: the namespace is in storage format {found}, newer than this \
                 version reads ({supported}); run a version of {store} that reads format \
                 {found} (see docs/UPGRADING.md)"
            ),
            Some(found) => write!(
                f,
                "{store}: the namespace is in storage format {found}, which this version \
                 does not migrate (it migrates {oldest} to {supported}); upgrade through a \
                 version that migrates it, or copy the namespace (see docs/UPGRADING.md)"
            ),
            None => write!(
                f,
                "{store}: the namespace's storage-format record was not written by {store}; \
                 use another namespace"
            ),
        }
    }
}

impl std::error::Error for FormatError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let newer = FormatError::newer("store-x", 4, 3);
        assert!(newer.is_newer());
        assert!(newer.to_string().contains("newer"), "{newer}");
        let old = FormatError::too_old("store-x", 1, 2, 3);
        assert!(!old.is_newer());
        assert!(old.to_string().contains("migrates 2 to 3"), "{old}");
        let foreign = FormatError::unreadable("store-x", 3);
        assert!(!foreign.is_newer() && foreign.found.is_none());
        let e = StoreError::backend("setup", foreign.clone());
        assert_eq!(FormatError::of(&e), Some(&foreign));
        assert_eq!(FormatError::of(&StoreError::Tampered { op: "x" }), None);
    }
}
