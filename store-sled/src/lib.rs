#![doc = include_str!("../README.md")]
//!
//! # Trees and write order
//!
//! Each namespace `ns` is a set of sled trees: `ns/sessions` (by `jti`),
//! `ns/by_expiry` and `ns/by_subject` (indexes), `ns/revocations` and
//! `ns/revoked_until` (subject revocation markers and their expiry index),
//! `ns/records` (create-once records) and `ns/peers` (peer JWKS).
//!
//! A session and its index entries are written without a sled transaction
//! (one costs sled a separate log write and `sync_file_range`, and takes a
//! process-wide lock): writers of one `jti` are serialized by an in-process
//! lock (sled is single-process, so every writer of the database is in this
//! process), and the writes are ordered so that a crash can only leave an
//! index entry too many, never a session its indexes miss: new index entries
//! are inserted before the session, old ones removed after it; a removal
//! removes the session first. sled recovers a prefix of its log after a
//! crash (the same property its own transactions rely on). Purge and revoke
//! drop the stale entries they meet, and the first purge after a namespace's
//! trees are opened checks every index entry against its session (crash
//! leftovers predate the opening); until then a stale expiry entry is
//! counted by [`BrokerStore::stats`]. Revocation markers (rare) still change
//! with their expiry index in one transaction.
//!
//! # Revocation never wears off
//!
//! Saves, creates, revocations and purge also hold an in-process lock of
//! the session's subject (striped, process-wide, so shared by every handle
//! on the database): a save checks the subject's marker and writes under
//! it, a revocation writes the marker and deletes the subject's sessions
//! under it. So a save either lands before the revocation (which deletes
//! it) or sees the marker, and a session a kept marker hides is never
//! stored. Purge, under the same lock, deletes every session a marker
//! hides before it forgets a marker past its keep time; nothing else
//! forgets markers.
//!
//! Reads (and saves) skip the revocation-marker lookup while the namespace
//! is known to hold no marker: the answer is cached per store and
//! invalidated by a process-wide count of marker writes (every marker
//! writer is in this process), so a marker written through any store handle
//! is seen at once; a save racing a revocation cannot miss it, as the
//! revocation's marker write ends before the subject lock is released.
//! Write a namespace's trees only through a store: a marker inserted into
//! the tree directly (a restore with `Tree::insert` or `Db::import`) while
//! a store has the namespace open would stay unseen by that store.
//!
//! A handle re-opens its trees after any handle in the process dropped a
//! namespace ([`BrokerStore::drop_namespace`]), so it never keeps writing
//! into the detached trees of a dropped (and maybe re-created) namespace.
//!
//! Writes are durable when the call returns under the default
//! [`Durability::Flush`]; see [`Durability`] for the faster alternative.
//!
//! sled calls that touch memory-resident pages run directly inside the
//! async methods (they take microseconds). Flushing, which waits for an
//! `fsync`, runs on tokio's blocking pool (`spawn_blocking`), so no async
//! worker thread waits on the disk. It deliberately avoids sled's
//! `flush_async`: that runs the flush on sled's own small I/O pool, and
//! concurrent `flush_async` calls racing a transaction deadlock sled 0.34
//! (each pool thread waits for sled's global lock held by a flush that is
//! itself waiting for a log write queued behind them on the same pool).
//!
//! # Time
//!
//! One clock decides everything: the store's injected `Clock`
//! ([`SledStore::with_clock`], the system clock by default) of the one
//! process that has the database open. It decides expiry (`expires_at <=
//! now` is gone), whether a marker is still kept, and what purge removes.
//! There is no second worker process, so no clock skew between workers;
//! moving the clock back only makes sessions and markers live longer until
//! it catches up.
//!
//! # File permissions
//!
//! On Unix, [`SledStore::open`], [`SledStore::open_default`] and
//! [`SledStore::from_config`] create the database directory with mode 0700
//! and, after opening, take group and other permissions off it and
//! everything in it (files 0600, directories 0700), whatever the process's
//! umask: the files hold sealed data only, but also who has sessions and
//! when. Symbolic links inside are neither followed nor changed. A
//! `sled::Db` you open yourself and hand to [`SledStore::new`] is left
//! as it is.
//!
//! # Durability
//!
//! - [`Durability::Flush`] (default): every write is flushed and fsynced
//!   before the call returns — an acknowledged write survives a crash,
//!   `SIGKILL` or power loss.
//! - [`Durability::Periodic`] ([`SledStore::with_durability`]): sled's
//!   background flusher writes every `flush_every_ms` (500 ms with
//!   [`SledStore::open`]; set your own with [`SledStore::from_config`]).
//!   Much faster; a crash loses the last interval. `store.flush().await`
//!   forces a flush.
//!
//! One process at a time: sled locks the directory. A second `open` of a
//! path in use fails at once with [`StoreError::Unavailable`] whose source
//! is [`DatabaseLocked`] ("another process has it open"); share one
//! `sled::Db` through [`SledStore::new`] inside a process.
//!
//! # Tests
//!
//! Sled needs no server, so every test always runs: `cargo test -p
//! store-sled` runs the whole conformance suite (one test per case, each on
//! a fresh database in a temporary directory, "no plaintext at rest"
//! reading every tree and every file on disk), a differential test against
//! `MemoryStore` with index checks, racing writers of the same sessions
//! from 16 tasks (indexes checked after), the "no marker" cache against
//! markers written through other handles, a SIGKILL crash test (a child
//! process reports each durable write; all are there after reopening), and
//! the two-process lock test. Rule 18 (a database server restarting) does
//! not apply to an embedded store: the factory's `restart_server` returns
//! `Ok(None)`, and those crash and process tests cover what sled promises
//! instead. `src/tests_lifecycle.rs` covers handles surviving another
//! handle's `drop_namespace` + `setup`, the purge sweep of crash leftovers,
//! saves racing revocations across handles, and a `ManualClock` moving time
//! for expiry, revocation and purge.

#![warn(missing_docs)]

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod codec;
#[cfg(not(feature = "fuzzing"))]
mod codec;
mod format;
mod keys;
mod ops;
mod revocation;
mod sessions;
mod trees;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

#[allow(unused_imports)] // named by intra-doc links
use broker_core::BrokerStore;
use broker_core::clock::{Clock, system_clock};
use broker_core::{Namespace, Result, StoreError};
use sled::IVec;
use sled::transaction::TransactionError;

use crate::trees::{TREE_SUFFIXES, Trees, tree_name};

pub use format::FORMAT_VERSION;
pub use sled;

/// How many index entries purge and revoke read per batch.
pub(crate) const BATCH: usize = 256;
/// How many subjects' revocation markers a scan page keeps cached.
const REVOCATION_CACHE: usize = 1024;
/// The database directory [`SledStore::open_default`] uses inside the
/// platform data directory.
pub const DEFAULT_DB_DIR: &str = "broker-store.sled";

/// When a write is on disk.
///
/// sled keeps writes in memory and appends them to its log on a flush. A
/// write that was not flushed yet is lost if the process dies (a crash,
/// `SIGKILL`, power loss); one that was flushed survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Flush (and `fsync`) after every write: a write is durable when its
    /// call returns. The default; costs one flush per write (concurrent
    /// writers share flushes).
    #[default]
    Flush,
    /// Leave flushing to sled's background flusher, which runs every
    /// `flush_every_ms` of the [`sled::Config`] the database was opened with
    /// (500 ms by default, and what [`SledStore::open`] uses). Much faster;
    /// a crash loses the writes of the last interval. Call
    /// [`SledStore::flush`] to force one. Warning: with `flush_every_ms(None)`
    /// nothing is flushed until the database is dropped.
    Periodic,
}

/// The database could not be opened because it is already open: sled
/// allows one open handle per database directory (it holds a file lock).
/// Found as the `source` of a [`StoreError::Unavailable`]; downcast to it
/// to tell this case apart.
#[derive(Debug)]
pub struct DatabaseLocked {
    path: PathBuf,
    source: std::io::Error,
}

impl DatabaseLocked {
    /// The database directory that is locked.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for DatabaseLocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the sled database at {} is locked: another process has it open (or this \
             process opened it already; share that sled::Db with SledStore::from_db)",
            self.path.display()
        )
    }
}

impl std::error::Error for DatabaseLocked {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A [`BrokerStore`] on a sled database.
///
/// Clones share the database and the opened trees. Build one from a path
/// ([`SledStore::open`]), the platform data directory
/// ([`SledStore::open_default`]) or a [`sled::Db`] the application already
/// has open ([`SledStore::from_db`]).
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    namespace: Namespace,
    durability: Durability,
    clock: Arc<dyn Clock>,
    /// The namespace's trees once opened; emptied by `drop_namespace`.
    trees: Arc<RwLock<Option<Arc<Trees>>>>,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("namespace", &self.namespace)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// Owner-only permissions for the database directory and its files.
#[cfg(unix)]
mod private {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    use std::path::Path;

    /// Create the database directory with mode 0700 if it does not exist
    /// (its parents with the default mode).
    pub(super) fn create_dir(path: &Path) -> std::io::Result<()> {
        if path.exists() {
            return Ok(());
        }
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    }

    /// Take group and other permissions off `path` and everything under
    /// it; symbolic links are neither followed nor changed.
    pub(super) fn restrict(path: &Path) -> std::io::Result<()> {
        let meta = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        };
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                restrict(&entry?.path())?;
            }
        }
        Ok(())
    }
}

impl SledStore {
    /// A store on a database the application already has open, in the
    /// default namespace, with [`Durability::Flush`]. The store never closes
    /// or flushes away anything of `db` beyond its own writes; dropping the
    /// store only drops its handle.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use broker_core::{BrokerStore, Namespace};
    /// use store_sled::SledStore;
    ///
    /// let db = store_sled::sled::open("/var/lib/my-app/db")?; // the app's own database
    /// let store = SledStore::new(db.clone()).with_namespace(Namespace::new("broker")?);
    /// store.setup().await?;
    /// // `db` stays usable for the application's own trees.
    /// db.open_tree("my_app_data")?.insert("k", "v")?;
    /// # Ok(()) }
    /// ```
    pub fn new(db: sled::Db) -> Self {
        Self {
            db,
            namespace: Namespace::default(),
            durability: Durability::default(),
            clock: system_clock(),
            trees: Arc::default(),
        }
    }

    /// Same as [`SledStore::new`].
    pub fn from_db(db: sled::Db) -> Self {
        Self::new(db)
    }

    /// Open (or create) the database in directory `path`.
    ///
    /// Fails with [`StoreError::Unavailable`] whose source is
    /// [`DatabaseLocked`] when another process (or another handle in this
    /// process) has the database open.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), broker_core::StoreError> {
    /// use broker_core::BrokerStore;
    /// let store = store_sled::SledStore::open("./broker-data")?;
    /// store.setup().await?;
    /// # Ok(()) }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_config(sled::Config::new().path(path.as_ref()))
    }

    /// Open the database with a sled configuration of your own (cache size,
    /// `flush_every_ms`, ...).
    ///
    /// On Unix the database directory is created readable by its owner
    /// only (0700), and after opening, group and other permissions are
    /// taken off the directory and everything in it (files 0600,
    /// directories 0700): sled's files hold sealed data, but also who has
    /// sessions. Files sled writes later land inside the private
    /// directory. A database opened by the application itself and handed
    /// to [`SledStore::from_db`] is left as it is.
    pub fn from_config(config: sled::Config) -> Result<Self> {
        const OP: &str = "open";
        #[cfg(unix)]
        private::create_dir(&config.path).map_err(|e| StoreError::backend(OP, e))?;
        match config.open() {
            Ok(db) => {
                #[cfg(unix)]
                private::restrict(&config.path).map_err(|e| StoreError::backend(OP, e))?;
                Ok(Self::from_db(db))
            }
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                Err(StoreError::unavailable(
                    OP,
                    DatabaseLocked {
                        path: config.path.clone(),
                        source: e,
                    },
                ))
            }
            Err(e) => Err(sled_error(OP, e)),
        }
    }

    /// Open (or create) the database in the platform data directory of
    /// `app_name` (see [`SledStore::default_path`]), as py-oidc-auth does
    /// with its SQLite file.
    pub fn open_default(app_name: &str) -> Result<Self> {
        Self::open(Self::default_path(app_name)?)
    }

    /// Where [`SledStore::open_default`] keeps the database:
    /// `<data dir>/<app>/broker-store.sled`, e.g.
    /// `~/.local/share/<app>/broker-store.sled` on Linux,
    /// `~/Library/Application Support/<app>/broker-store.sled` on macOS and
    /// `%APPDATA%\<app>\data\broker-store.sled` on Windows.
    ///
    /// `app_name` must be 1..=64 ASCII letters, digits, `-`, `_` or `.`,
    /// not starting with `.`.
    pub fn default_path(app_name: &str) -> Result<PathBuf> {
        const OP: &str = "open_default";
        let valid = !app_name.is_empty()
            && app_name.len() <= 64
            && !app_name.starts_with('.')
            && app_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(StoreError::invalid(
                OP,
                "app name must be 1..=64 of [A-Za-z0-9._-], not starting with '.'",
            ));
        }
        let dirs = directories::ProjectDirs::from("", "", app_name).ok_or_else(|| {
            StoreError::unavailable(
                OP,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no home directory, so no platform data directory",
                ),
            )
        })?;
        Ok(dirs.data_dir().join(DEFAULT_DB_DIR))
    }

    /// The same database under another namespace (a separate set of trees).
    pub fn with_namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self.trees = Arc::default();
        self
    }

    /// Decide expiry and revocation by `clock` (default: the system clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Choose when writes are durable (default [`Durability::Flush`]).
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The durability this store writes with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The underlying database, e.g. to open trees of your own.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The names of the sled trees this store's namespace uses (for
    /// backups, inspection or removing a namespace with
    /// [`sled::Db::drop_tree`] once no store uses it any more). Restore
    /// into them only while no store has the namespace open (see the
    /// crate docs on the revocation-marker cache).
    pub fn tree_names(&self) -> Vec<String> {
        TREE_SUFFIXES
            .iter()
            .map(|s| tree_name(&self.namespace, s))
            .collect()
    }

    /// Write everything buffered to disk; returns the number of bytes
    /// flushed. Useful with [`Durability::Periodic`] before a planned stop.
    pub async fn flush(&self) -> Result<usize> {
        flush_db(&self.db, "flush").await
    }

    /// The namespace's trees, opened on first use.
    /// Opened again when any handle dropped a namespace since: the trees of
    /// a dropped namespace are detached, and writes to them would be lost.
    fn trees(&self, op: &'static str) -> Result<Arc<Trees>> {
        if let Some(t) = &*self.trees.read().unwrap_or_else(PoisonError::into_inner)
            && t.current()
        {
            return Ok(Arc::clone(t));
        }
        let mut slot = self.trees.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = &*slot
            && t.current()
        {
            return Ok(Arc::clone(t));
        }
        let opened =
            Arc::new(Trees::open(&self.db, &self.namespace).map_err(|e| sled_error(op, e))?);
        *slot = Some(Arc::clone(&opened));
        Ok(opened)
    }

    /// Make a write durable according to the chosen [`Durability`].
    async fn written(&self, op: &'static str) -> Result<()> {
        match self.durability {
            Durability::Flush => {
                flush_db(&self.db, op).await?;
            }
            Durability::Periodic => {}
        }
        Ok(())
    }
}

/// Flush `db` to disk on tokio's blocking pool (never on sled's own pool:
/// see the crate docs), or on this thread outside a tokio runtime.
async fn flush_db(db: &sled::Db, op: &'static str) -> Result<usize> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            let db = db.clone();
            handle
                .spawn_blocking(move || db.flush())
                .await
                .map_err(|e| StoreError::backend(op, e))?
                .map_err(|e| sled_error(op, e))
        }
        Err(_) => db.flush().map_err(|e| sled_error(op, e)),
    }
}

/// Map a sled error: I/O failures are "unavailable", the rest "backend".
fn sled_error(op: &'static str, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => StoreError::unavailable(op, io),
        other => StoreError::backend(op, other),
    }
}

fn tx_error(op: &'static str, e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => sled_error(op, e),
    }
}

/// Up to [`BATCH`] keys of an iterator.
fn key_batch(op: &'static str, iter: sled::Iter) -> Result<Vec<IVec>> {
    iter.keys()
        .take(BATCH)
        .collect::<sled::Result<Vec<_>>>()
        .map_err(|e| sled_error(op, e))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_format;
#[cfg(test)]
mod tests_lifecycle;
