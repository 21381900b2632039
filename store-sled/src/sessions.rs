//! Writing sessions and their index entries, under in-process locks:
//! one per session (`jti`) and one per subject (`sub`), both striped and
//! static, so shared by every store handle of the process (sled allows
//! one process per database, so these are all the writers there are).

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::codec;
use broker_core::{Result, SessionRecord, StoreError, UnixTime};
use sled::{IVec, Tree};

use crate::trees::Trees;
use crate::{SledStore, keys, sled_error};

/// Number of per-session write locks (a `jti` hashes to one of them).
const LOCK_STRIPES: usize = 256;

/// The per-session write locks, shared by every store of the process (and
/// so by every handle on one database and namespace). Whoever changes a
/// session or its index entries holds the lock of its `jti`, and never
/// holds two session locks at once.
static SESSION_LOCKS: [Mutex<()>; LOCK_STRIPES] = [const { Mutex::new(()) }; LOCK_STRIPES];

/// The per-subject locks, shared the same way. A save or create holds the
/// lock of its session's `sub` while it checks the subject's marker and
/// writes; a revocation holds it while it writes the marker and deletes
/// the subject's sessions; purge holds it while it deletes the sessions a
/// marker hides and forgets the marker. So a save never slips a session
/// past a revocation, whichever store handle either runs on. Order: a
/// subject lock is taken before a session lock, never the other way, and
/// never two subject locks at once.
static SUBJECT_LOCKS: [Mutex<()>; LOCK_STRIPES] = [const { Mutex::new(()) }; LOCK_STRIPES];

/// What to do with one index entry (see [`SledStore::visit_indexed`]).
pub(crate) enum Entry {
    /// The entry does not describe the stored session: drop the entry.
    Stale,
    /// The entry is the session's and the session stays.
    Keep,
    /// The entry is the session's and the session goes (with its entries).
    Remove,
}

/// Stripe of `key` within namespace `ns` (FNV-1a), with `kind` keeping
/// session and subject keys apart.
fn stripe(kind: u8, ns: &str, key: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in [kind]
        .iter()
        .chain(ns.as_bytes())
        .chain(&[0])
        .chain(key.as_bytes())
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % LOCK_STRIPES as u64) as usize
}

impl SledStore {
    /// True if a revocation marker of `s.sub` hides `s` at `now`. Call it
    /// after reading `s`.
    pub(crate) fn revoked(
        t: &Trees,
        op: &'static str,
        s: &SessionRecord,
        now: UnixTime,
    ) -> Result<bool> {
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
    /// malformed entry. True if a session was removed.
    pub(crate) fn unlink_indexed(
        &self,
        t: &Trees,
        op: &'static str,
        index: &Tree,
        key: &[u8],
        jti: Option<&str>,
        current: impl FnOnce(&str, &[u8]) -> bool,
    ) -> Result<bool> {
        let done = self.visit_indexed(t, op, index, key, jti, |jti, bytes| {
            if current(jti, bytes) {
                Entry::Remove
            } else {
                Entry::Stale
            }
        })?;
        Ok(matches!(done, Entry::Remove))
    }

    /// Handle one entry of a session index (`key`, naming session `jti`):
    /// `judge(jti, stored bytes)` says whether to remove the session (which
    /// removes this very key too), keep it, or drop the entry as stale; an
    /// entry naming no stored session, or malformed, is stale. Returns what
    /// was done (`Remove` only if a session was removed). The session's lock is held until the key is
    /// gone: a writer adding this very key for a new session (entries go in
    /// before the session) waits, so it is never lost.
    pub(crate) fn visit_indexed(
        &self,
        t: &Trees,
        op: &'static str,
        index: &Tree,
        key: &[u8],
        jti: Option<&str>,
        judge: impl FnOnce(&str, &[u8]) -> Entry,
    ) -> Result<Entry> {
        let _lock = jti.map(|jti| self.session_lock(jti));
        let entry = match jti {
            Some(jti) => match t
                .sessions
                .get(jti.as_bytes())
                .map_err(|e| sled_error(op, e))?
            {
                Some(bytes) => judge(jti, &bytes),
                None => Entry::Stale,
            },
            None => Entry::Stale,
        };
        match (entry, jti) {
            (Entry::Keep, _) => return Ok(Entry::Keep),
            (Entry::Remove, Some(jti)) if unlink_locked(t, op, jti)? => return Ok(Entry::Remove),
            _ => {}
        }
        index.remove(key).map_err(|e| sled_error(op, e))?;
        Ok(Entry::Stale)
    }

    /// The write lock of session `jti` of this namespace (see
    /// [`SESSION_LOCKS`]). Hold it only around synchronous sled calls.
    pub(crate) fn session_lock(&self, jti: &str) -> MutexGuard<'static, ()> {
        SESSION_LOCKS[stripe(0, self.namespace.as_str(), jti)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock of subject `sub` of this namespace (see [`SUBJECT_LOCKS`]).
    /// Take it before any session lock. Hold it only around synchronous
    /// sled calls.
    pub(crate) fn subject_lock(&self, sub: &str) -> MutexGuard<'static, ()> {
        SUBJECT_LOCKS[stripe(1, self.namespace.as_str(), sub)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Insert (`create` = only over a missing or expired session) or
    /// replace a session together with its index entries. A session a kept
    /// marker hides is not stored (a save removes what was stored under its
    /// `jti`: the save replaced it); the subject's lock makes the marker
    /// check and the write one step against revocations and purges.
    pub(crate) async fn put_session(
        &self,
        op: &'static str,
        session: &SessionRecord,
        create: bool,
    ) -> Result<()> {
        let t = self.trees(op)?;
        let value = codec::encode_session(session);
        let wrote = {
            let _subject = self.subject_lock(&session.sub);
            let _session = self.session_lock(&session.jti);
            let now = self.clock.now();
            if create {
                refuse_live(&t, op, &session.jti, now)?;
            }
            if Self::revoked(&t, op, session, now)? {
                !create && unlink_locked(&t, op, &session.jti)?
            } else {
                put_locked(&t, op, session, &value, create, now)?;
                true
            }
        };
        if wrote {
            self.written(op).await?;
        }
        Ok(())
    }
}

/// A conflict if a live session is stored under `jti`. The caller holds
/// the session's lock.
fn refuse_live(t: &Trees, op: &'static str, jti: &str, now: UnixTime) -> Result<()> {
    let stored = t
        .sessions
        .get(jti.as_bytes())
        .map_err(|e| sled_error(op, e))?;
    if let Some(bytes) = stored
        && codec::decode_session(op, jti.to_owned(), &bytes)?.is_live_at(now)
    {
        return Err(StoreError::Conflict {
            op,
            what: "a session with this jti exists",
        });
    }
    Ok(())
}

/// Store `session` (encoded as `value`) with its index entries, replacing
/// any old one; with `create`, only over a missing or expired session. The
/// caller holds the session's lock.
///
/// Order (crash safety): the new index entries, then the session, then the
/// removal of the old session's entries that differ.
pub(crate) fn put_locked(
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
pub(crate) fn unindex_locked(
    t: &Trees,
    op: &'static str,
    jti: &str,
    rec: &SessionRecord,
) -> Result<()> {
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
pub(crate) fn unlink_locked(t: &Trees, op: &'static str, jti: &str) -> Result<bool> {
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
