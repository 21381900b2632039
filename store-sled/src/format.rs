//! The storage format of a namespace: its trees (see [`crate::keys`]) and
//! their values ([`crate::codec`]), versioned by [`FORMAT_VERSION`],
//! recorded in the namespace's `meta` tree under the key `format` (a u32,
//! big-endian) by the first [`setup`](broker_core::BrokerStore::setup) and
//! checked by every later one.
//!
//! A namespace with no record predates format versions: it is format 1,
//! the layout this crate has always written, and `setup` records it.

use broker_core::{FormatError, Namespace, Result, StoreError};

use crate::sled_error;
use crate::trees::tree_name;

/// The storage format this version of the crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The oldest storage format `setup` migrates in place.
pub(crate) const OLDEST_MIGRATED: u32 = 1;
/// The tree suffix of the format record.
pub(crate) const META_TREE: &str = "meta";
/// The key of the format record in the `meta` tree.
pub(crate) const FORMAT_KEY: &[u8] = b"format";
/// The name [`FormatError`]s carry.
const STORE: &str = "store-sled";

/// Record [`FORMAT_VERSION`] in `namespace` unless a format is recorded,
/// and check what is. Returns true if it wrote the record. A newer or
/// unknown format fails with a [`FormatError`] and writes nothing.
pub(crate) fn check(db: &sled::Db, namespace: &Namespace, op: &'static str) -> Result<bool> {
    let meta = db
        .open_tree(tree_name(namespace, META_TREE))
        .map_err(|e| sled_error(op, e))?;
    let stored = meta.get(FORMAT_KEY).map_err(|e| sled_error(op, e))?;
    let found = match &stored {
        Some(bytes) => version(op, bytes)?,
        // Before versions: format 1. Migrations (none yet) run from there.
        None => OLDEST_MIGRATED,
    };
    if stored.is_some() && found == FORMAT_VERSION {
        return Ok(false);
    }
    // Migrations from `found` to FORMAT_VERSION go here (in-process: every
    // writer of a sled database is in this process). Then record it, unless
    // another handle changed the record meanwhile.
    let recorded = meta
        .compare_and_swap(FORMAT_KEY, stored, Some(&FORMAT_VERSION.to_be_bytes()[..]))
        .map_err(|e| sled_error(op, e))?;
    match recorded {
        Ok(()) => Ok(true),
        Err(raced) => match raced.current {
            Some(bytes) if version(op, &bytes)? == FORMAT_VERSION => Ok(false),
            _ => Err(StoreError::backend(
                op,
                FormatError::unreadable(STORE, FORMAT_VERSION),
            )),
        },
    }
}

/// The recorded format version `bytes`, if this version can use it.
fn version(op: &'static str, bytes: &[u8]) -> Result<u32> {
    <[u8; 4]>::try_from(bytes)
        .map_err(|_| FormatError::unreadable(STORE, FORMAT_VERSION))
        .and_then(|b| {
            FormatError::check(
                STORE,
                u32::from_be_bytes(b),
                OLDEST_MIGRATED,
                FORMAT_VERSION,
            )
        })
        .map_err(|e| StoreError::backend(op, e))
}
