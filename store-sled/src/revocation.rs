//! Revocation and purge: markers, the sessions they hide, and the index
//! entries a crash left behind.

use std::sync::atomic::Ordering;

use crate::codec;
use broker_core::{Result, Revocation, UnixTime};
use sled::{IVec, Transactional};

use crate::sessions::Entry;
use crate::trees::{MarkerWrite, Trees};
use crate::{BATCH, SledStore, key_batch, keys, sled_error, tx_error};

impl SledStore {
    /// [`broker_core::BrokerStore::revoke_subject`]: under the subject's
    /// lock, merge the marker in, then delete the subject's sessions. A
    /// save of the subject waits for the lock, and then sees the marker.
    pub(crate) fn revoke_locked(&self, t: &Trees, revocation: &Revocation) -> Result<u64> {
        const OP: &str = "revoke_subject";
        let sub = revocation.sub.as_str();
        let _subject = self.subject_lock(sub);

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
        //    under its lock.
        self.remove_of_subject(t, OP, sub, |_| true)
    }

    /// Remove the sessions of `sub` that `doomed(auth_time)` picks, through
    /// the subject index, dropping stale entries met on the way. The caller
    /// holds the subject's lock. Returns how many sessions were removed.
    fn remove_of_subject(
        &self,
        t: &Trees,
        op: &'static str,
        sub: &str,
        doomed: impl Fn(UnixTime) -> bool,
    ) -> Result<u64> {
        let prefix = keys::subject_prefix(sub);
        let mut removed = 0u64;
        let mut after: Option<IVec> = None;
        loop {
            let iter = match &after {
                None => t.by_subject.scan_prefix(&prefix),
                Some(last) => t.by_subject.range::<&[u8], _>((
                    std::ops::Bound::Excluded(&last[..]),
                    std::ops::Bound::Unbounded,
                )),
            };
            let batch: Vec<IVec> = key_batch(op, iter)?
                .into_iter()
                .take_while(|k| k.starts_with(&prefix))
                .collect();
            let Some(last) = batch.last() else {
                break;
            };
            after = Some(last.clone());
            for key in &batch {
                let jti = keys::split_subject(key).map(|(_, jti)| jti);
                let judge = |jti: &str, bytes: &[u8]| match codec::decode_session(
                    op,
                    jti.to_owned(),
                    bytes,
                ) {
                    Ok(rec) if rec.sub != sub => Entry::Stale,
                    Ok(rec) if doomed(rec.auth_time) => Entry::Remove,
                    Ok(_) => Entry::Keep,
                    Err(_) => Entry::Stale,
                };
                if matches!(
                    self.visit_indexed(t, op, &t.by_subject, key, jti, judge)?,
                    Entry::Remove
                ) {
                    removed += 1;
                }
            }
            if batch.len() < BATCH {
                break;
            }
        }
        Ok(removed)
    }

    /// Under the subject's lock: delete every stored session the marker of
    /// `sub` hides (kept or not: `auth_time <= revoked_at`), then, if the
    /// marker's keep time has passed, forget the marker. Returns how many
    /// sessions were removed and whether anything was written.
    fn purge_marker(
        &self,
        t: &Trees,
        op: &'static str,
        sub: &str,
        now: UnixTime,
    ) -> Result<(u64, bool)> {
        let _subject = self.subject_lock(sub);
        let Some(bytes) = t
            .revocations
            .get(sub.as_bytes())
            .map_err(|e| sled_error(op, e))?
        else {
            return Ok((0, false));
        };
        let marker = codec::decode_revocation(op, sub.to_owned(), &bytes)?;
        let removed = self.remove_of_subject(t, op, sub, |auth| auth <= marker.revoked_at)?;
        if marker.keep_until <= now {
            let _marker_write = MarkerWrite::begin();
            (&t.revocations, &t.revoked_until)
                .transaction(|(r, u)| {
                    r.remove(sub.as_bytes())?;
                    u.remove(keys::timed(marker.keep_until, sub))?;
                    Ok(())
                })
                .map_err(|e| tx_error(op, e))?;
            return Ok((removed, true));
        }
        Ok((removed, removed > 0))
    }

    /// [`broker_core::BrokerStore::purge_expired`], synchronous part:
    /// expired sessions, the sessions markers hide, markers past their
    /// keep time (each with or after what it hides), stale marker-index
    /// entries, and once per opening of the trees every index entry a
    /// crash left behind. Returns `(sessions removed, anything written)`.
    pub(crate) fn purge_locked(&self, t: &Trees, now: UnixTime) -> Result<(u64, bool)> {
        const OP: &str = "purge_expired";
        // Index keys below ts(now + 1) are exactly the entries with expiry <= now.
        let end = keys::ts(now.saturating_add(1));
        let mut removed = 0u64;
        let mut wrote = false;

        // 1. Expired sessions, oldest first.
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
                if self.unlink_indexed(t, OP, &t.by_expiry, key, jti, due)? {
                    removed += 1;
                }
            }
            if batch.len() < BATCH {
                break;
            }
        }

        // 2. Every marker: the sessions it hides, then (past its keep time)
        //    the marker itself.
        let mut after: Option<IVec> = None;
        loop {
            let iter = match &after {
                None => t.revocations.iter(),
                Some(last) => t.revocations.range::<&[u8], _>((
                    std::ops::Bound::Excluded(&last[..]),
                    std::ops::Bound::Unbounded,
                )),
            };
            let batch = key_batch(OP, iter)?;
            let Some(last) = batch.last() else {
                break;
            };
            after = Some(last.clone());
            for key in &batch {
                // A key that is not UTF-8 was never written by a store.
                if let Ok(sub) = std::str::from_utf8(key) {
                    let (gone, changed) = self.purge_marker(t, OP, sub, now)?;
                    removed += gone;
                    wrote |= changed;
                }
            }
            if batch.len() < BATCH {
                break;
            }
        }

        // 3. Marker-index entries due now whose marker is gone or changed.
        loop {
            let batch = key_batch(OP, t.revoked_until.range(..&end[..]))?;
            if batch.is_empty() {
                break;
            }
            wrote = true;
            for key in &batch {
                if let Some((at, sub)) = keys::split_timed(key) {
                    let current = t
                        .revocations
                        .get(sub.as_bytes())
                        .map_err(|e| sled_error(OP, e))?
                        .is_some_and(|bytes| {
                            codec::decode_revocation(OP, sub.to_owned(), &bytes)
                                .is_ok_and(|rv| rv.keep_until == at)
                        });
                    if current {
                        // Written since step 2 passed it.
                        removed += self.purge_marker(t, OP, sub, now)?.0;
                        continue;
                    }
                }
                t.revoked_until.remove(key).map_err(|e| sled_error(OP, e))?;
            }
            if batch.len() < BATCH {
                break;
            }
        }

        // 4. Once per opening: index entries a crash left behind.
        if !t.swept.load(Ordering::SeqCst) {
            wrote |= self.sweep_stale_entries(t, OP, &end)?;
            t.swept.store(true, Ordering::SeqCst);
        }
        Ok((removed, wrote))
    }

    /// Drop every index entry that does not describe its stored session:
    /// subject entries, and expiry entries not yet due (step 1 of purge
    /// handles the due ones). A crash between a writer's steps leaves at
    /// most such an entry, never a session its indexes miss. True if an
    /// entry was dropped.
    fn sweep_stale_entries(&self, t: &Trees, op: &'static str, due_end: &[u8]) -> Result<bool> {
        let mut dropped = false;
        let mut after: Option<IVec> = None;
        loop {
            let iter = match &after {
                None => t.by_subject.iter(),
                Some(last) => t.by_subject.range::<&[u8], _>((
                    std::ops::Bound::Excluded(&last[..]),
                    std::ops::Bound::Unbounded,
                )),
            };
            let batch = key_batch(op, iter)?;
            let Some(last) = batch.last() else {
                break;
            };
            after = Some(last.clone());
            for key in &batch {
                let entry = keys::split_subject(key);
                let judge = |jti: &str, bytes: &[u8]| {
                    let own = entry.is_some_and(|(sub, _)| {
                        codec::decode_session(op, jti.to_owned(), bytes)
                            .is_ok_and(|rec| rec.sub == sub)
                    });
                    if own { Entry::Keep } else { Entry::Stale }
                };
                let jti = entry.map(|(_, jti)| jti);
                let done = self.visit_indexed(t, op, &t.by_subject, key, jti, judge)?;
                dropped |= matches!(done, Entry::Stale);
            }
            if batch.len() < BATCH {
                break;
            }
        }
        let mut after: IVec = IVec::from(due_end);
        let mut first = true;
        loop {
            let lower = if first {
                std::ops::Bound::Included(&after[..])
            } else {
                std::ops::Bound::Excluded(&after[..])
            };
            let batch = key_batch(
                op,
                t.by_expiry
                    .range::<&[u8], _>((lower, std::ops::Bound::Unbounded)),
            )?;
            let Some(last) = batch.last().cloned() else {
                break;
            };
            for key in &batch {
                let entry = keys::split_timed(key);
                let judge = |_: &str, bytes: &[u8]| {
                    let own = entry.is_some_and(|(at, _): (UnixTime, &str)| {
                        codec::session_expires_at(op, bytes).is_ok_and(|x| x == at)
                    });
                    if own { Entry::Keep } else { Entry::Stale }
                };
                let jti = entry.map(|(_, jti)| jti);
                let done = self.visit_indexed(t, op, &t.by_expiry, key, jti, judge)?;
                dropped |= matches!(done, Entry::Stale);
            }
            if batch.len() < BATCH {
                break;
            }
            after = last;
            first = false;
        }
        Ok(dropped)
    }
}
