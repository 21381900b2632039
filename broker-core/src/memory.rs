//! [`MemoryStore`]: a complete in-process store for tests and examples.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::StoreBackend;
use crate::clock::{Clock, system_clock};
use crate::error::{Result, StoreError};
use crate::record::{
    Namespace, PeerJwks, Revocation, RevocationPage, SessionPage, SessionRecord, StoreStats,
    UnixTime,
};
use crate::store::BrokerStore;

/// An in-memory [`BrokerStore`]. Clones and [`MemoryStore::with_namespace`]
/// share one database, so namespaces can be tested for isolation. Nothing
/// survives the process.
///
/// ```
/// # tokio_test_block_on(async {
/// use broker_core::{BrokerStore, MemoryStore};
/// let store = MemoryStore::new();
/// store.setup().await.unwrap();
/// assert!(store.get_session("unknown").await.unwrap().is_none());
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    namespace: Namespace,
    db: Arc<Mutex<HashMap<Namespace, Space>>>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            namespace: Namespace::default(),
            db: Arc::default(),
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// One namespace's data, with the indexes a real backend would keep.
#[derive(Default)]
struct Space {
    sessions: BTreeMap<String, SessionRecord>,
    by_expiry: BTreeSet<(i64, String)>,
    by_subject: HashMap<String, BTreeSet<String>>,
    revocations: HashMap<String, Revocation>,
    records: BTreeMap<String, Vec<u8>>,
    peers: BTreeMap<String, PeerJwks>,
}

impl Space {
    fn insert(&mut self, s: SessionRecord) {
        self.remove(&s.jti);
        self.by_expiry.insert((s.expires_at, s.jti.clone()));
        self.by_subject
            .entry(s.sub.clone())
            .or_default()
            .insert(s.jti.clone());
        self.sessions.insert(s.jti.clone(), s);
    }

    fn remove(&mut self, jti: &str) -> Option<SessionRecord> {
        let s = self.sessions.remove(jti)?;
        self.by_expiry.remove(&(s.expires_at, s.jti.clone()));
        if let Some(set) = self.by_subject.get_mut(&s.sub) {
            set.remove(jti);
            if set.is_empty() {
                self.by_subject.remove(&s.sub);
            }
        }
        Some(s)
    }

    fn is_hidden(&self, s: &SessionRecord, now: UnixTime) -> bool {
        self.revocations
            .get(&s.sub)
            .is_some_and(|r| r.hides(s.auth_time, now))
    }

    fn is_visible(&self, s: &SessionRecord, now: UnixTime) -> bool {
        s.is_live_at(now) && !self.is_hidden(s, now)
    }

    fn live(&self, jti: &str, now: i64) -> Option<&SessionRecord> {
        self.sessions.get(jti).filter(|s| self.is_visible(s, now))
    }
}

impl MemoryStore {
    /// A new, empty database with the default namespace.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store on the same database under another namespace.
    pub fn with_namespace(&self, namespace: Namespace) -> Self {
        Self {
            namespace,
            ..self.clone()
        }
    }

    /// Decide every time question by `clock` (the system clock by default).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Run `f` on this namespace's data.
    fn with<T>(&self, f: impl FnOnce(&mut Space) -> T) -> T {
        let mut db: MutexGuard<'_, _> = self.db.lock().unwrap_or_else(|e| e.into_inner());
        f(db.entry(self.namespace.clone()).or_default())
    }
}

impl StoreBackend for MemoryStore {
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn sibling(&self, namespace: Namespace) -> Arc<dyn BrokerStore> {
        Arc::new(self.with_namespace(namespace))
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    async fn setup(&self) -> Result<()> {
        self.with(|_| ());
        Ok(())
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        let now = self.clock.now();
        self.with(|space| {
            if space
                .sessions
                .get(&session.jti)
                .is_some_and(|s| s.is_live_at(now))
            {
                return Err(StoreError::Conflict {
                    op: "create_session",
                    what: "a session with this jti exists",
                });
            }
            if !space.is_hidden(session, now) {
                space.insert(session.clone());
            }
            Ok(())
        })
    }

    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        let now = self.clock.now();
        self.with(|space| {
            if space.is_hidden(session, now) {
                // Never stored; an older session under this jti goes too.
                space.remove(&session.jti);
            } else {
                space.insert(session.clone());
            }
        });
        Ok(())
    }

    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        let now = self.clock.now();
        Ok(self.with(|space| space.live(jti, now).cloned()))
    }

    async fn take_session(&self, jti: &str) -> Result<Option<SessionRecord>> {
        let now = self.clock.now();
        Ok(self.with(|space| {
            space.live(jti, now)?;
            space.remove(jti)
        }))
    }

    async fn delete_session(&self, jti: &str) -> Result<bool> {
        Ok(self.with(|space| space.remove(jti).is_some()))
    }

    async fn replace_session_blob(
        &self,
        jti: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        Ok(self.with(|space| match space.sessions.get_mut(jti) {
            Some(s) if s.sealed == expected => {
                s.sealed = bytes::Bytes::copy_from_slice(sealed);
                true
            }
            _ => false,
        }))
    }

    async fn revoke_subject(&self, revocation: &Revocation) -> Result<u64> {
        Ok(self.with(|space| {
            space
                .revocations
                .entry(revocation.sub.clone())
                .and_modify(|r| r.merge(revocation))
                .or_insert_with(|| revocation.clone());
            let jtis = space.by_subject.remove(&revocation.sub).unwrap_or_default();
            jtis.iter().filter(|j| space.remove(j).is_some()).count() as u64
        }))
    }

    async fn purge_expired(&self) -> Result<u64> {
        let now = self.clock.now();
        Ok(self.with(|space| {
            let mut doomed: BTreeSet<String> = space
                .by_expiry
                .range(..(now + 1, String::new()))
                .map(|(_, jti)| jti.clone())
                .collect();
            // Hidden sessions go with (here: before) every marker, kept or not.
            for (sub, r) in &space.revocations {
                let hidden = space.by_subject.get(sub).into_iter().flatten();
                doomed.extend(
                    hidden
                        .filter(|j| space.sessions[*j].auth_time <= r.revoked_at)
                        .cloned(),
                );
            }
            let removed = doomed.iter().filter(|j| space.remove(j).is_some()).count();
            space.revocations.retain(|_, r| r.keep_until > now);
            removed as u64
        }))
    }

    async fn scan_revocations(&self, cursor: Option<&str>, limit: usize) -> Result<RevocationPage> {
        let now = self.clock.now();
        Ok(self.with(|space| {
            let mut kept: Vec<&Revocation> = space
                .revocations
                .values()
                .filter(|r| r.keep_until > now && cursor.is_none_or(|c| r.sub.as_str() > c))
                .collect();
            kept.sort_by(|a, b| a.sub.cmp(&b.sub));
            let more = kept.len() > limit;
            kept.truncate(limit);
            RevocationPage {
                next: more.then(|| kept.last().map(|r| r.sub.clone())).flatten(),
                revocations: kept.into_iter().cloned().collect(),
            }
        }))
    }

    async fn scan_sessions(&self, cursor: Option<&str>, limit: usize) -> Result<SessionPage> {
        let now = self.clock.now();
        let start = cursor.map_or(Bound::Unbounded, |c| Bound::Excluded(c.to_owned()));
        Ok(self.with(|space| {
            let mut last = None;
            let mut sessions = Vec::new();
            for (jti, s) in space.sessions.range((start, Bound::Unbounded)) {
                if sessions.len() == limit {
                    break;
                }
                last = Some(jti.clone());
                if space.is_visible(s, now) {
                    sessions.push(s.clone());
                }
            }
            let more = last.as_ref().is_some_and(|l| {
                space
                    .sessions
                    .range::<String, _>((Bound::Excluded(l), Bound::Unbounded))
                    .next()
                    .is_some()
            });
            SessionPage {
                sessions,
                next: if more { last } else { None },
            }
        }))
    }

    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        Ok(self.with(|space| {
            space
                .records
                .entry(name.to_owned())
                .or_insert_with(|| value.to_vec())
                .clone()
        }))
    }

    async fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.with(|space| space.records.get(name).cloned()))
    }

    async fn replace_record(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool> {
        Ok(self.with(|space| match space.records.get_mut(name) {
            Some(v) if v.as_slice() == expected => {
                *v = value.to_vec();
                true
            }
            _ => false,
        }))
    }

    async fn list_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self.with(|space| {
            space
                .records
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
    }

    async fn save_peer(&self, peer: &PeerJwks) -> Result<()> {
        self.with(|space| space.peers.insert(peer.issuer.clone(), peer.clone()));
        Ok(())
    }

    async fn load_peers(&self) -> Result<Vec<PeerJwks>> {
        Ok(self.with(|space| space.peers.values().cloned().collect()))
    }

    async fn delete_peer(&self, issuer: &str) -> Result<bool> {
        Ok(self.with(|space| space.peers.remove(issuer).is_some()))
    }

    async fn stats(&self) -> Result<StoreStats> {
        let now = self.clock.now();
        Ok(self.with(|space| {
            let live: Vec<&SessionRecord> = space
                .sessions
                .values()
                .filter(|s| s.is_live_at(now))
                .collect();
            let subjects: BTreeSet<&str> = live.iter().map(|s| s.sub.as_str()).collect();
            StoreStats {
                live_sessions: live.len() as u64,
                expired_sessions: (space.sessions.len() - live.len()) as u64,
                subjects: Some(subjects.len() as u64),
                peers: space.peers.len() as u64,
                records: space.records.len() as u64,
                revocations: space.revocations.len() as u64,
            }
        }))
    }

    async fn drop_namespace(&self) -> Result<()> {
        let mut db: MutexGuard<'_, _> = self.db.lock().unwrap_or_else(|e| e.into_inner());
        db.remove(&self.namespace);
        Ok(())
    }
}
