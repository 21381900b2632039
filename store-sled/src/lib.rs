//! An embedded [`BrokerStore`] on [`sled`]: no server, no set-up, one
//! directory on disk. The default backend of `brokerctl demo` and the quick
//! start.
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
//! drop the stale entries they meet; until then a stale expiry entry is
//! counted by [`BrokerStore::stats`]. Revocation markers (rare) still change
//! with their expiry index in one transaction.
//!
//! Reads skip the revocation-marker lookup while the namespace is known to
//! hold no marker: the answer is cached per store and invalidated by a
//! process-wide count of marker writes (every marker writer is in this
//! process), so a marker written through any store handle is seen at once.
//! Write a namespace's trees only through a store: a marker inserted into
//! the tree directly (a restore with `Tree::insert` or `Db::import`) while
//! a store has the namespace open would stay unseen by that store.
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

#![warn(missing_docs)]

mod keys;

use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use async_trait::async_trait;
use broker_core::clock::{Clock, system_clock};
use broker_core::codec;
use broker_core::validate;
use broker_core::{
    BrokerStore, Corruption, Namespace, PeerJwks, Result, Revocation, RevocationPage, SessionPage,
    SessionRecord, StoreError, StoreStats, UnixTime,
};
use sled::transaction::TransactionError;
use sled::{IVec, Transactional, Tree};

pub use sled;

/// How many index entries purge and revoke read per batch.
const BATCH: usize = 256;
/// How many subjects' revocation markers a scan page keeps cached.
const REVOCATION_CACHE: usize = 1024;
/// The database directory [`SledStore::open_default`] uses inside the
/// platform data directory.
pub const DEFAULT_DB_DIR: &str = "broker-store.sled";

/// Number of per-session write locks (a `jti` hashes to one of them).
const LOCK_STRIPES: usize = 256;

/// The per-session write locks, shared by every store of the process (and
/// so by every handle on one database and namespace). Whoever changes a
/// session or its index entries holds the lock of its `jti`, and never
/// holds two locks at once.
static SESSION_LOCKS: [Mutex<()>; LOCK_STRIPES] = [const { Mutex::new(()) }; LOCK_STRIPES];

/// Revocation-marker writes (insert or removal) under way in this process.
static MARKER_WRITES_ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Revocation-marker writes finished in this process (any database).
static MARKER_WRITES_DONE: AtomicU64 = AtomicU64::new(0);
/// [`Trees::marker_cache`] when nothing is known.
const MARKERS_UNKNOWN: u64 = u64::MAX;

/// Held while a revocation tree is written: readers that cached "this
/// revocation tree is empty" stop trusting it from the start of the write
/// on, and re-check once it is done.
struct MarkerWrite;

impl MarkerWrite {
    fn begin() -> Self {
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
const TREE_SUFFIXES: [&str; 7] = [
    "sessions",
    "by_expiry",
    "by_subject",
    "revocations",
    "revoked_until",
    "records",
    "peers",
];

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

/// The trees of one namespace.
struct Trees {
    sessions: Tree,
    by_expiry: Tree,
    by_subject: Tree,
    revocations: Tree,
    revoked_until: Tree,
    records: Tree,
    peers: Tree,
    /// `done << 1 | empty`: the revocation tree was empty (or not) when
    /// [`MARKER_WRITES_DONE`] was `done` and no marker write was under way;
    /// [`MARKERS_UNKNOWN`] before the first check.
    marker_cache: AtomicU64,
}

impl Trees {
    fn open(db: &sled::Db, namespace: &Namespace) -> sled::Result<Self> {
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
    fn markers_absent(&self) -> bool {
        let cache = self.marker_cache.load(Ordering::SeqCst);
        cache != MARKERS_UNKNOWN
            && cache & 1 == 1
            && MARKER_WRITES_ACTIVE.load(Ordering::SeqCst) == 0
            && MARKER_WRITES_DONE.load(Ordering::SeqCst) == cache >> 1
    }

    /// Re-check whether the revocation tree is empty if the cached answer
    /// is out of date (a marker was written since), and cache it when no
    /// marker write ran meanwhile.
    fn refresh_marker_cache(&self) {
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

fn tree_name(namespace: &Namespace, suffix: &str) -> String {
    format!("{namespace}/{suffix}")
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
    /// let store = SledStore::from_db(db.clone()).with_namespace(Namespace::new("broker")?);
    /// store.setup().await?;
    /// // `db` stays usable for the application's own trees.
    /// db.open_tree("my_app_data")?.insert("k", "v")?;
    /// # Ok(()) }
    /// ```
    pub fn from_db(db: sled::Db) -> Self {
        Self {
            db,
            namespace: Namespace::default(),
            durability: Durability::default(),
            clock: system_clock(),
            trees: Arc::default(),
        }
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
    fn trees(&self, op: &'static str) -> Result<Arc<Trees>> {
        if let Some(t) = &*self.trees.read().unwrap_or_else(PoisonError::into_inner) {
            return Ok(Arc::clone(t));
        }
        let mut slot = self.trees.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = &*slot {
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

    /// True if a revocation marker of `s.sub` hides `s` at `now`. Call it
    /// after reading `s`.
    fn revoked(t: &Trees, op: &'static str, s: &SessionRecord, now: UnixTime) -> Result<bool> {
        if t.markers_absent() {
            return Ok(false);
        }
        let marker = t
            .revocations
            .get(s.sub.as_bytes())
            .map_err(|e| sled_error(op, e))?;
        t.refresh_marker_cache();
        match marker {
            Some(bytes) => {
                Ok(codec::decode_revocation(op, s.sub.clone(), &bytes)?.hides(s.auth_time, now))
            }
            None => Ok(false),
        }
    }

    /// Handle one entry of a session index (`key`, naming session `jti`):
    /// remove the session if `current(jti, stored bytes)` says the entry is
    /// its (which removes this very key too), else drop the stale or
    /// malformed entry. True if a session was removed. The session's lock
    /// is held until the key is gone: a writer adding this very key for a
    /// new session waits, so it is never lost.
    fn unlink_indexed(
        &self,
        t: &Trees,
        op: &'static str,
        index: &Tree,
        key: &[u8],
        jti: Option<&str>,
        current: impl FnOnce(&str, &[u8]) -> bool,
    ) -> Result<bool> {
        let _lock = jti.map(|jti| self.session_lock(jti));
        if let Some(jti) = jti {
            let stored = t
                .sessions
                .get(jti.as_bytes())
                .map_err(|e| sled_error(op, e))?;
            if stored.is_some_and(|bytes| current(jti, &bytes)) && unlink_locked(t, op, jti)? {
                return Ok(true);
            }
        }
        index.remove(key).map_err(|e| sled_error(op, e))?;
        Ok(false)
    }

    /// The write lock of session `jti` of this namespace (see
    /// [`SESSION_LOCKS`]). Hold it only around synchronous sled calls.
    fn session_lock(&self, jti: &str) -> MutexGuard<'static, ()> {
        // FNV-1a over the namespace and the jti.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let ns = self.namespace.as_str().as_bytes();
        for &b in ns.iter().chain(&[0]).chain(jti.as_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        SESSION_LOCKS[(h % LOCK_STRIPES as u64) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Insert (`create` = only over a missing or expired session) or
    /// replace a session together with its index entries.
    async fn put_session(
        &self,
        op: &'static str,
        session: &SessionRecord,
        create: bool,
    ) -> Result<()> {
        validate::session(op, session)?;
        let t = self.trees(op)?;
        let value = codec::encode_session(session);
        {
            let _lock = self.session_lock(&session.jti);
            put_locked(&t, op, session, &value, create, self.clock.now())?;
        }
        self.written(op).await
    }
}

/// Store `session` (encoded as `value`) with its index entries, replacing
/// any old one; with `create`, only over a missing or expired session. The
/// caller holds the session's lock.
///
/// Order (crash safety): the new index entries, then the session, then the
/// removal of the old session's entries that differ.
fn put_locked(
    t: &Trees,
    op: &'static str,
    session: &SessionRecord,
    value: &[u8],
    create: bool,
    now: UnixTime,
) -> Result<()> {
    let jti = session.jti.as_bytes();
    let new_e = keys::timed(session.expires_at, &session.jti);
    let new_b = keys::subject(&session.sub, &session.jti);
    // A create must look before it writes. A save need not: the session
    // insert hands back the old record, whose entries are removed after it
    // (re-inserting an entry the old record shares is harmless).
    let known_old = if create {
        match t.sessions.get(jti).map_err(|e| sled_error(op, e))? {
            Some(bytes) => {
                let old = codec::decode_session(op, session.jti.clone(), &bytes)?;
                if old.is_live_at(now) {
                    return Err(StoreError::Conflict {
                        op,
                        what: "a session with this jti exists",
                    });
                }
                Some(old)
            }
            None => None,
        }
    } else {
        None
    };
    let same_e = known_old
        .as_ref()
        .is_some_and(|o| o.expires_at == session.expires_at);
    let same_b = known_old.as_ref().is_some_and(|o| o.sub == session.sub);
    if !same_e {
        t.by_expiry
            .insert(&new_e[..], IVec::default())
            .map_err(|e| sled_error(op, e))?;
    }
    if !same_b {
        t.by_subject
            .insert(&new_b[..], IVec::default())
            .map_err(|e| sled_error(op, e))?;
    }
    let replaced = t
        .sessions
        .insert(jti, value)
        .map_err(|e| sled_error(op, e))?;
    let old = match known_old {
        Some(old) => Some(old),
        // An undecodable old record has no index entries we can name; any
        // it had are dropped as stale by purge / revoke when they meet them.
        None => replaced.and_then(|b| codec::decode_session(op, session.jti.clone(), &b).ok()),
    };
    if let Some(old) = old {
        let old_e = keys::timed(old.expires_at, &session.jti);
        if old_e != new_e {
            t.by_expiry.remove(old_e).map_err(|e| sled_error(op, e))?;
        }
        let old_b = keys::subject(&old.sub, &session.jti);
        if old_b != new_b {
            t.by_subject.remove(old_b).map_err(|e| sled_error(op, e))?;
        }
    }
    Ok(())
}

/// Remove the index entries of `rec` (stored under `jti`) after the
/// session itself was removed. The caller holds the session's lock.
fn unindex_locked(t: &Trees, op: &'static str, jti: &str, rec: &SessionRecord) -> Result<()> {
    t.by_expiry
        .remove(keys::timed(rec.expires_at, jti))
        .map_err(|e| sled_error(op, e))?;
    t.by_subject
        .remove(keys::subject(&rec.sub, jti))
        .map_err(|e| sled_error(op, e))?;
    Ok(())
}

/// Remove session `jti` (first) and then its index entries; true if there
/// was one. The caller holds the session's lock.
fn unlink_locked(t: &Trees, op: &'static str, jti: &str) -> Result<bool> {
    let Some(old) = t
        .sessions
        .remove(jti.as_bytes())
        .map_err(|e| sled_error(op, e))?
    else {
        return Ok(false);
    };
    // An undecodable record has no index entries we can name; any it had
    // are dropped as stale by purge / revoke when they meet them.
    if let Ok(rec) = codec::decode_session(op, jti.to_owned(), &old) {
        unindex_locked(t, op, jti, &rec)?;
    }
    Ok(true)
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

#[async_trait]
impl BrokerStore for SledStore {
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        Arc::new(self.clone().with_namespace(namespace))
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    async fn setup(&self) -> Result<()> {
        self.trees("setup").map(|_| ())
    }

    async fn drop_namespace(&self) -> Result<()> {
        const OP: &str = "drop_namespace";
        {
            let mut slot = self.trees.write().unwrap_or_else(PoisonError::into_inner);
            *slot = None;
            for name in self.tree_names() {
                self.db.drop_tree(name).map_err(|e| sled_error(OP, e))?;
            }
        }
        self.written(OP).await
    }

    async fn health(&self) -> Result<()> {
        const OP: &str = "health";
        let t = self.trees(OP)?;
        t.records
            .contains_key(b"")
            .map(|_| ())
            .map_err(|e| sled_error(OP, e))
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        self.put_session("create_session", session, true).await
    }

    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        self.put_session("save_session", session, false).await
    }

    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "get_session";
        validate::jti(OP, jti)?;
        let t = self.trees(OP)?;
        let Some(bytes) = t
            .sessions
            .get(jti.as_bytes())
            .map_err(|e| sled_error(OP, e))?
        else {
            return Ok(None);
        };
        let s = codec::decode_session(OP, jti.to_owned(), &bytes)?;
        let now = self.clock.now();
        if !s.is_live_at(now) || Self::revoked(&t, OP, &s, now)? {
            return Ok(None);
        }
        Ok(Some(s))
    }

    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "take_session";
        validate::jti(OP, jti)?;
        let t = self.trees(OP)?;
        let taken = {
            let _lock = self.session_lock(jti);
            // Atomic against every other taker: they wait for the lock.
            match t
                .sessions
                .get(jti.as_bytes())
                .map_err(|e| sled_error(OP, e))?
            {
                None => None,
                Some(bytes) => {
                    let rec = codec::decode_session(OP, jti.to_owned(), &bytes)?;
                    let now = self.clock.now();
                    if !rec.is_live_at(now) || Self::revoked(&t, OP, &rec, now)? {
                        None
                    } else {
                        t.sessions
                            .remove(jti.as_bytes())
                            .map_err(|e| sled_error(OP, e))?;
                        unindex_locked(&t, OP, jti, &rec)?;
                        Some(rec)
                    }
                }
            }
        };
        if taken.is_some() {
            self.written(OP).await?;
        }
        Ok(taken)
    }

    async fn delete_session(&self, jti: &str) -> Result<bool> {
        const OP: &str = "delete_session";
        validate::jti(OP, jti)?;
        let t = self.trees(OP)?;
        let removed = {
            let _lock = self.session_lock(jti);
            unlink_locked(&t, OP, jti)?
        };
        if removed {
            self.written(OP).await?;
        }
        Ok(removed)
    }

    async fn replace_session_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        const OP: &str = "replace_session_blob";
        validate::jti(OP, jti)?;
        validate::sealed(OP, sealed)?;
        let t = self.trees(OP)?;
        // The blob is not indexed, so only the sessions tree changes.
        let replaced = {
            let _lock = self.session_lock(jti);
            match t
                .sessions
                .get(jti.as_bytes())
                .map_err(|e| sled_error(OP, e))?
            {
                None => false,
                Some(bytes) => {
                    let mut rec = codec::decode_session(OP, jti.to_owned(), &bytes)?;
                    if rec.sealed == expected {
                        rec.sealed = sealed.to_vec();
                        t.sessions
                            .insert(jti.as_bytes(), codec::encode_session(&rec))
                            .map_err(|e| sled_error(OP, e))?;
                        true
                    } else {
                        false
                    }
                }
            }
        };
        if replaced {
            self.written(OP).await?;
        }
        Ok(replaced)
    }

    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64> {
        const OP: &str = "revoke_subject";
        validate::revocation(OP, revocation)?;
        let t = self.trees(OP)?;
        let sub = revocation.sub.as_str();

        // 1. The marker first: from here on a session of `sub` with
        //    auth_time <= revoked_at is hidden, wherever it is saved.
        let marker_write = MarkerWrite::begin();
        (&t.revocations, &t.revoked_until)
            .transaction(|(r, u)| {
                let mut merged = revocation.clone();
                if let Some(old) = r.get(sub.as_bytes())? {
                    // A damaged marker is overwritten; its index entry (if
                    // any) is dropped as stale by purge.
                    if let Ok(old) = codec::decode_revocation(OP, sub.to_owned(), &old) {
                        u.remove(keys::timed(old.keep_until, sub))?;
                        merged.merge(&old);
                    }
                }
                r.insert(sub.as_bytes(), codec::encode_revocation(&merged))?;
                u.insert(keys::timed(merged.keep_until, sub), IVec::default())?;
                Ok(())
            })
            .map_err(|e| tx_error(OP, e))?;
        drop(marker_write);

        // 2. Delete the subject's sessions through the subject index, each
        //    under its lock. Every key of a batch leaves the index, so the
        //    loop makes progress.
        let prefix = keys::subject_prefix(sub);
        let mut deleted = 0u64;
        loop {
            let batch = key_batch(OP, t.by_subject.scan_prefix(&prefix))?;
            if batch.is_empty() {
                break;
            }
            for key in &batch {
                let jti = keys::split_subject(key).map(|(_, jti)| jti);
                let of_sub = |jti: &str, bytes: &[u8]| {
                    codec::decode_session(OP, jti.to_owned(), bytes).is_ok_and(|rec| rec.sub == sub)
                };
                if self.unlink_indexed(&t, OP, &t.by_subject, key, jti, of_sub)? {
                    deleted += 1;
                }
            }
            if batch.len() < BATCH {
                break;
            }
        }
        self.written(OP).await?;
        Ok(deleted)
    }

    async fn purge_expired(&self) -> Result<u64> {
        const OP: &str = "purge_expired";
        let t = self.trees(OP)?;
        let now = self.clock.now();
        // Index keys below ts(now + 1) are exactly the entries with expiry <= now.
        let end = keys::ts(now.saturating_add(1));
        let mut removed = 0u64;
        let mut wrote = false;

        loop {
            let batch = key_batch(OP, t.by_expiry.range(..&end[..]))?;
            if batch.is_empty() {
                break;
            }
            wrote = true;
            for key in &batch {
                let entry = keys::split_timed(key);
                let due = |_: &str, bytes: &[u8]| {
                    entry.is_some_and(|(at, _)| {
                        codec::session_expires_at(OP, bytes).is_ok_and(|x| x == at)
                    })
                };
                let jti = entry.map(|(_, jti)| jti);
                if self.unlink_indexed(&t, OP, &t.by_expiry, key, jti, due)? {
                    removed += 1;
                }
            }
            if batch.len() < BATCH {
                break;
            }
        }

        loop {
            let batch = key_batch(OP, t.revoked_until.range(..&end[..]))?;
            if batch.is_empty() {
                break;
            }
            wrote = true;
            // Lets cached "no markers" answers notice the tree emptying.
            let _marker_write = MarkerWrite::begin();
            (&t.revocations, &t.revoked_until)
                .transaction(|(r, u)| {
                    for key in &batch {
                        if let Some((at, sub)) = keys::split_timed(key) {
                            let current = r.get(sub.as_bytes())?.is_some_and(|bytes| {
                                codec::decode_revocation(OP, sub.to_owned(), &bytes)
                                    .is_ok_and(|rv| rv.keep_until == at)
                            });
                            if current {
                                r.remove(sub.as_bytes())?;
                            }
                        }
                        u.remove(key)?;
                    }
                    Ok(())
                })
                .map_err(|e| tx_error(OP, e))?;
            if batch.len() < BATCH {
                break;
            }
        }

        if wrote {
            self.written(OP).await?;
        }
        Ok(removed)
    }

    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        const OP: &str = "scan_sessions";
        validate::page_limit(OP, limit)?;
        let t = self.trees(OP)?;
        t.refresh_marker_cache();
        let now = self.clock.now();
        let iter = match cursor {
            Some(c) => t
                .sessions
                .range::<&[u8], _>((Bound::Excluded(c.as_bytes()), Bound::Unbounded)),
            None => t.sessions.iter(),
        };
        let mut sessions = Vec::new();
        let mut last = None;
        let mut more = false;
        let mut revocations: HashMap<String, Option<Revocation>> = HashMap::new();
        for item in iter {
            let (key, value) = item.map_err(|e| sled_error(OP, e))?;
            if sessions.len() == limit {
                more = true;
                break;
            }
            let jti = String::from_utf8(key.to_vec())
                .map_err(|_| StoreError::corrupt(OP, Corruption::Malformed("session key")))?;
            let s = codec::decode_session(OP, jti, &value)?;
            if !s.is_live_at(now) {
                continue;
            }
            // With no marker in the namespace, skip the lookups.
            let markers = !t.markers_absent();
            if markers && !revocations.contains_key(&s.sub) {
                if revocations.len() >= REVOCATION_CACHE {
                    revocations.clear();
                }
                let rv = match t
                    .revocations
                    .get(s.sub.as_bytes())
                    .map_err(|e| sled_error(OP, e))?
                {
                    Some(bytes) => Some(codec::decode_revocation(OP, s.sub.clone(), &bytes)?),
                    None => None,
                };
                revocations.insert(s.sub.clone(), rv);
            }
            let hidden = markers
                && revocations
                    .get(&s.sub)
                    .and_then(Option::as_ref)
                    .is_some_and(|rv| rv.hides(s.auth_time, now));
            if hidden {
                continue;
            }
            last = Some(s.jti.clone());
            sessions.push(s);
        }
        Ok(SessionPage {
            sessions,
            next: if more { last } else { None },
        })
    }

    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        const OP: &str = "scan_revocations";
        validate::page_limit(OP, limit)?;
        let t = self.trees(OP)?;
        let now = self.clock.now();
        let iter = match cursor {
            Some(c) => t
                .revocations
                .range::<&[u8], _>((Bound::Excluded(c.as_bytes()), Bound::Unbounded)),
            None => t.revocations.iter(),
        };
        let mut page = RevocationPage::default();
        for item in iter {
            let (key, value) = item.map_err(|e| sled_error(OP, e))?;
            if page.revocations.len() == limit {
                page.next = page.revocations.last().map(|r| r.sub.clone());
                break;
            }
            let sub = String::from_utf8(key.to_vec())
                .map_err(|_| StoreError::corrupt(OP, Corruption::Malformed("revocation key")))?;
            let r = codec::decode_revocation(OP, sub, &value)?;
            if r.keep_until > now {
                page.revocations.push(r);
            }
        }
        Ok(page)
    }

    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        const OP: &str = "create_record";
        validate::record_name(OP, name)?;
        validate::sealed(OP, value)?;
        let t = self.trees(OP)?;
        // Records are never deleted through the store, so a failed swap
        // always shows the winner; the bound only guards against a record
        // removed behind our back over and over.
        for _ in 0..16 {
            match t
                .records
                .compare_and_swap(name.as_bytes(), None::<&[u8]>, Some(value))
                .map_err(|e| sled_error(OP, e))?
            {
                Ok(()) => {
                    self.written(OP).await?;
                    return Ok(value.to_vec());
                }
                Err(sled::CompareAndSwapError {
                    current: Some(current),
                    ..
                }) => {
                    // The winner's value must be durable before anyone uses it.
                    self.written(OP).await?;
                    return Ok(current.to_vec());
                }
                Err(_) => continue,
            }
        }
        Err(StoreError::backend(
            OP,
            std::io::Error::other("the record kept changing; giving up"),
        ))
    }

    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        const OP: &str = "get_record";
        validate::record_name(OP, name)?;
        let t = self.trees(OP)?;
        Ok(t.records
            .get(name.as_bytes())
            .map_err(|e| sled_error(OP, e))?
            .map(|v| v.to_vec()))
    }

    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        const OP: &str = "replace_record";
        validate::record_name(OP, name)?;
        validate::sealed(OP, value)?;
        let t = self.trees(OP)?;
        let swapped = t
            .records
            .compare_and_swap(name.as_bytes(), Some(expected), Some(value))
            .map_err(|e| sled_error(OP, e))?
            .is_ok();
        if swapped {
            self.written(OP).await?;
        }
        Ok(swapped)
    }

    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        const OP: &str = "list_records";
        let t = self.trees(OP)?;
        t.records
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(|e| sled_error(OP, e))?;
                let name = String::from_utf8(k.to_vec())
                    .map_err(|_| StoreError::corrupt(OP, Corruption::Malformed("record name")))?;
                Ok((name, v.to_vec()))
            })
            .collect()
    }

    async fn save_peer(&self, peer: &PeerJwks) -> Result<()> {
        const OP: &str = "save_peer";
        validate::peer(OP, peer)?;
        let t = self.trees(OP)?;
        t.peers
            .insert(peer.issuer.as_bytes(), codec::encode_peer(peer))
            .map_err(|e| sled_error(OP, e))?;
        self.written(OP).await
    }

    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        const OP: &str = "load_peers";
        let t = self.trees(OP)?;
        t.peers
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(|e| sled_error(OP, e))?;
                let issuer = String::from_utf8(k.to_vec())
                    .map_err(|_| StoreError::corrupt(OP, Corruption::Malformed("issuer")))?;
                codec::decode_peer(OP, issuer, &v)
            })
            .collect()
    }

    async fn delete_peer(&self, issuer: &str) -> Result<bool> {
        const OP: &str = "delete_peer";
        validate::issuer(OP, issuer)?;
        let t = self.trees(OP)?;
        let removed = t
            .peers
            .remove(issuer.as_bytes())
            .map_err(|e| sled_error(OP, e))?
            .is_some();
        if removed {
            self.written(OP).await?;
        }
        Ok(removed)
    }

    async fn stats(&self) -> Result<StoreStats> {
        const OP: &str = "stats";
        let t = self.trees(OP)?;
        let now = self.clock.now();
        let end = keys::ts(now.saturating_add(1));
        let count = |iter: sled::Iter| -> Result<u64> {
            let mut n = 0u64;
            for k in iter.keys() {
                k.map_err(|e| sled_error(OP, e))?;
                n += 1;
            }
            Ok(n)
        };
        let expired_sessions = count(t.by_expiry.range(..&end[..]))?;
        let live_sessions = count(t.by_expiry.range(&end[..]..))?;

        // Distinct subjects with a live session: walk the subject index
        // (grouped by subject) and stop checking a subject at its first
        // live session. Memory stays bounded by one subject name.
        let mut subjects = 0u64;
        let mut current: Option<(String, bool)> = None;
        for k in t.by_subject.iter().keys() {
            let k = k.map_err(|e| sled_error(OP, e))?;
            let Some((sub, jti)) = keys::split_subject(&k) else {
                continue;
            };
            match &current {
                Some((c, counted)) if c == sub => {
                    if *counted {
                        continue;
                    }
                }
                _ => current = Some((sub.to_owned(), false)),
            }
            let live = t
                .sessions
                .get(jti.as_bytes())
                .map_err(|e| sled_error(OP, e))?
                .is_some_and(|bytes| codec::session_expires_at(OP, &bytes).is_ok_and(|x| x > now));
            if live {
                subjects += 1;
                current = Some((sub.to_owned(), true));
            }
        }

        let mut stats = StoreStats::default();
        stats.live_sessions = live_sessions;
        stats.expired_sessions = expired_sessions;
        stats.subjects = Some(subjects);
        stats.peers = t.peers.len() as u64;
        stats.records = t.records.len() as u64;
        stats.revocations = t.revocations.len() as u64;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests;
