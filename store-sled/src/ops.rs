//! The [`BrokerStore`] operations of [`SledStore`].

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use crate::codec;
use broker_core::bytes::Bytes;
use broker_core::clock::Clock;
use broker_core::{
    BrokerStore, Corruption, Namespace, PeerJwks, Result, Revocation, RevocationPage, SessionPage,
    SessionRecord, StoreBackend, StoreError, StoreStats,
};

use crate::sessions::{unindex_locked, unlink_locked};
use crate::trees::NAMESPACE_DROPS;
use crate::{REVOCATION_CACHE, SledStore, format, keys, sled_error};

impl StoreBackend for SledStore {
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        Arc::new(self.clone().with_namespace(namespace))
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// Records the storage format or checks it ([`crate::FORMAT_VERSION`];
    /// a newer one fails with a [`broker_core::FormatError`]), then opens
    /// the namespace's trees.
    async fn setup(&self) -> Result<()> {
        const OP: &str = "setup";
        let recorded = format::check(&self.db, &self.namespace, OP)?;
        self.trees(OP)?;
        if recorded {
            self.written(OP).await?;
        }
        Ok(())
    }

    async fn drop_namespace(&self) -> Result<()> {
        const OP: &str = "drop_namespace";
        {
            let mut slot = self.trees.write().unwrap_or_else(PoisonError::into_inner);
            *slot = None;
            let dropped = self
                .tree_names()
                .into_iter()
                .try_for_each(|name| self.db.drop_tree(name).map(|_| ()));
            // After the drop (even a partial one): every handle that opened
            // trees before it re-opens them on its next call.
            NAMESPACE_DROPS.fetch_add(1, Ordering::SeqCst);
            dropped.map_err(|e| sled_error(OP, e))?;
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
        let t = self.trees(OP)?;
        let Some(bytes) = t
            .sessions
            .get(jti.as_bytes())
            .map_err(|e| sled_error(OP, e))?
        else {
            return Ok(None);
        };
        let s = codec::decode_session_shared(OP, jti.to_owned(), bytes)?;
        let now = self.clock.now();
        if !s.is_live_at(now) || Self::revoked(&t, OP, &s, now)? {
            return Ok(None);
        }
        Ok(Some(s))
    }

    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        const OP: &str = "take_session";
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
                    let rec = codec::decode_session_shared(OP, jti.to_owned(), bytes)?;
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
                    let mut rec = codec::decode_session_shared(OP, jti.to_owned(), bytes)?;
                    if rec.sealed == expected {
                        rec.sealed = Bytes::copy_from_slice(sealed);
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
        let t = self.trees(OP)?;
        let deleted = self.revoke_locked(&t, revocation)?;
        self.written(OP).await?;
        Ok(deleted)
    }

    async fn purge_expired(&self) -> Result<u64> {
        const OP: &str = "purge_expired";
        let t = self.trees(OP)?;
        let now = self.clock.now();
        // Many small sled calls (the first purge of an opening checks every
        // index entry): on tokio's blocking pool, not an async worker.
        let (removed, wrote) = match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let store = self.clone();
                handle
                    .spawn_blocking(move || store.purge_locked(&t, now))
                    .await
                    .map_err(|e| StoreError::backend(OP, e))??
            }
            Err(_) => self.purge_locked(&t, now)?,
        };
        if wrote {
            self.written(OP).await?;
        }
        Ok(removed)
    }

    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        const OP: &str = "scan_sessions";
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
            let s = codec::decode_session_shared(OP, jti, value)?;
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
        let t = self.trees(OP)?;
        Ok(t.records
            .get(name.as_bytes())
            .map_err(|e| sled_error(OP, e))?
            .map(|v| v.to_vec()))
    }

    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        const OP: &str = "replace_record";
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
