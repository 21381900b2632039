//! A conformance factory over `MemoryStore`, shared by this crate's tests.

use std::sync::Arc;

use broker_core::{BrokerStore, MemoryStore, Namespace, PeerJwks, SessionRecord, StoreError};
use conformance::StoreFactory;

/// Opens `MemoryStore`s on one shared in-memory database, each wrapped by
/// `wrap` (identity for the real suite, a fault for the broken-store tests).
pub struct MemoryFactory<W> {
    pub db: MemoryStore,
    pub wrap: W,
    /// A "server restart" (rule 18) loses every namespace opened so far:
    /// a store that promises durability and does not keep it.
    pub loses_data_on_restart: bool,
    pub opened: std::sync::Mutex<Vec<Namespace>>,
}

impl<W> MemoryFactory<W> {
    pub fn new(wrap: W) -> Self {
        Self {
            db: MemoryStore::new(),
            wrap,
            loses_data_on_restart: false,
            opened: std::sync::Mutex::default(),
        }
    }
}

#[conformance::async_trait]
impl<W> StoreFactory for MemoryFactory<W>
where
    W: Fn(MemoryStore) -> Arc<dyn BrokerStore> + Send + Sync + 'static,
{
    fn name(&self) -> String {
        "memory".into()
    }

    async fn open(&self, namespace: &Namespace) -> Result<Arc<dyn BrokerStore>, StoreError> {
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(namespace.clone());
        Ok((self.wrap)(self.db.with_namespace(namespace.clone())))
    }

    /// The in-memory "server" restarts at once and, unless told to lose
    /// data, keeps everything.
    async fn restart_server(&self) -> Result<Option<std::time::Duration>, StoreError> {
        if self.loses_data_on_restart {
            let opened = self
                .opened
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for ns in opened {
                self.db.with_namespace(ns).drop_namespace().await?;
            }
        }
        Ok(Some(std::time::Duration::ZERO))
    }

    async fn open_from_handle(
        &self,
        namespace: &Namespace,
    ) -> Result<Option<Arc<dyn BrokerStore>>, StoreError> {
        // The shared database is the handle; clones of it must keep working.
        Ok(Some((self.wrap)(
            self.db.clone().with_namespace(namespace.clone()),
        )))
    }

    /// Everything the namespace holds, each record's fields concatenated
    /// as a key-value store would keep them (see [`session_bytes`]).
    async fn raw_contents(
        &self,
        namespace: &Namespace,
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let store = self.db.with_namespace(namespace.clone());
        let mut raw = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.scan_sessions(cursor.as_deref(), 1000).await?;
            for s in &page.sessions {
                raw.push(s.jti.clone().into_bytes());
                raw.push(session_bytes(s));
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        for (name, value) in store.list_records().await? {
            raw.push(name.into_bytes());
            raw.push(value);
        }
        for p in store.load_peers().await? {
            raw.push(peer_bytes(&p));
        }
        Ok(Some(raw))
    }
}

/// A session as the bytes a key-value store would keep under its `jti`:
/// the times, the subject, the sealed blob.
fn session_bytes(s: &SessionRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + s.sub.len() + s.sealed.len());
    out.extend_from_slice(&s.expires_at.to_be_bytes());
    out.extend_from_slice(&s.auth_time.to_be_bytes());
    out.extend_from_slice(s.sub.as_bytes());
    out.extend_from_slice(&s.sealed);
    out
}

/// A peer JWKS as the bytes a key-value store would keep.
fn peer_bytes(p: &PeerJwks) -> Vec<u8> {
    let mut out = p.issuer.as_bytes().to_vec();
    out.extend_from_slice(&p.fetched_at.to_be_bytes());
    out.extend_from_slice(p.jwks.as_bytes());
    out
}
