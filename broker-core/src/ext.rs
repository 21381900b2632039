//! [`BrokerStoreExt`]: scans as streams, so callers stop writing paging
//! loops. Implemented for every [`BrokerStore`], `dyn` ones included.

use futures::stream::{self, BoxStream, StreamExt as _, TryStreamExt as _};

use crate::error::Result;
use crate::record::{Revocation, SessionRecord};
use crate::store::BrokerStore;

/// Page size the streams read with unless told otherwise.
pub const DEFAULT_PAGE: usize = 1000;

/// Streams over a store's scans, page by page, in bounded memory.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use futures::TryStreamExt as _;
/// use broker_core::{BrokerStore, BrokerStoreExt, MemoryStore, SessionRecord, unix_now};
///
/// let store = MemoryStore::new();
/// for i in 0..3 {
///     let s = SessionRecord { jti: format!("j{i}"), sub: "alice".into(),
///         expires_at: unix_now() + 60, auth_time: unix_now(), sealed: vec![1].into() };
///     store.save_session(&s).await?;
/// }
/// let jtis: Vec<String> = store.sessions(2).map_ok(|s| s.jti).try_collect().await?;
/// assert_eq!(jtis, ["j0", "j1", "j2"]);
/// # Ok::<(), broker_core::StoreError>(())
/// # }).unwrap();
/// ```
pub trait BrokerStoreExt: BrokerStore {
    /// Every live session, reading `page` at a time (see
    /// [`BrokerStore::scan_sessions`] for what a scan guarantees). The first
    /// error ends the stream.
    fn sessions(&self, page: usize) -> BoxStream<'_, Result<SessionRecord>> {
        pages(page, move |cursor, limit| async move {
            let p = self.scan_sessions(cursor.as_deref(), limit).await?;
            Ok((p.sessions, p.next))
        })
    }

    /// Every kept revocation marker, reading `page` at a time (see
    /// [`BrokerStore::scan_revocations`]).
    fn revocations(&self, page: usize) -> BoxStream<'_, Result<Revocation>> {
        pages(page, move |cursor, limit| async move {
            let p = self.scan_revocations(cursor.as_deref(), limit).await?;
            Ok((p.revocations, p.next))
        })
    }
}

impl<S: BrokerStore + ?Sized> BrokerStoreExt for S {}

/// Flatten the pages `fetch(cursor, limit)` returns into one stream.
fn pages<'a, T, F, Fut>(limit: usize, fetch: F) -> BoxStream<'a, Result<T>>
where
    T: Send + 'a,
    F: Fn(Option<String>, usize) -> Fut + Send + 'a,
    Fut: Future<Output = Result<(Vec<T>, Option<String>)>> + Send + 'a,
{
    // Position: `None` = not started, `Some(None)` = done, `Some(Some(c))`
    // = go on after `c`. The fetcher travels with it.
    stream::try_unfold(
        (fetch, None::<Option<String>>),
        move |(fetch, at)| async move {
            let cursor = match at {
                Some(None) => return Ok(None),
                Some(Some(c)) => Some(c),
                None => None,
            };
            let (items, next) = fetch(cursor, limit).await?;
            Ok(Some((
                stream::iter(items.into_iter().map(Ok)),
                (fetch, Some(next)),
            )))
        },
    )
    .try_flatten()
    .boxed()
}
