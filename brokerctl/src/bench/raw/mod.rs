//! The raw-driver ceiling: one statement or command per operation, on a
//! throwaway table, collection, key prefix or tree, through the **same**
//! pool, connection or database the store uses. One module per backend,
//! each behind its cargo feature; [`Backend::raw`] is the only place that
//! chooses among them.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use broker_core::StoreError;

use super::OP;
use super::workload::{PRELOAD_SPACE, drive, jti, noise};

mod memory;
#[cfg(feature = "mongo")]
mod mongo;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sled")]
mod sled;

/// The database handle behind a [`StoreOpener`](crate::StoreOpener)'s
/// stores (see [`StoreOpener::backend`](crate::StoreOpener::backend)): the
/// same pool, connection or sled database.
#[non_exhaustive]
pub enum Backend {
    /// `memory://` (the raw ceiling is a `Mutex<HashMap>`).
    Memory,
    /// A sled database, and whether the store flushes after every write.
    #[cfg(feature = "sled")]
    Sled {
        /// The open database.
        db: store_sled::sled::Db,
        /// True under [`store_sled::Durability::Flush`].
        flush: bool,
    },
    /// A PostgreSQL pool.
    #[cfg(feature = "postgres")]
    Postgres(store_postgres::sqlx::PgPool),
    /// A MongoDB database.
    #[cfg(feature = "mongo")]
    Mongo(store_mongo::mongodb::Database),
    /// A single Redis server's connection manager.
    #[cfg(feature = "redis")]
    Redis(store_redis::redis::aio::ConnectionManager),
    /// A Redis Cluster connection.
    #[cfg(feature = "redis")]
    RedisCluster(store_redis::ReconnectingCluster),
}

impl Backend {
    /// The raw ceiling on this handle, in a table (or collection, key
    /// prefix, tree) called `name`, created here.
    pub(crate) async fn raw(self, name: &str) -> Result<Arc<dyn RawBaseline>, StoreError> {
        Ok(match self {
            Backend::Memory => {
                let _ = name; // a map of its own: no table to name
                Arc::new(memory::RawMemory::default())
            }
            #[cfg(feature = "sled")]
            Backend::Sled { db, flush } => Arc::new(sled::RawSled::open(db, name, flush)?),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => Arc::new(postgres::RawPostgres::open(pool, name).await?),
            #[cfg(feature = "mongo")]
            Backend::Mongo(db) => Arc::new(mongo::RawMongo::open(&db, name)),
            #[cfg(feature = "redis")]
            Backend::Redis(conn) => Arc::new(redis::RawRedis::new(conn, name)),
            #[cfg(feature = "redis")]
            Backend::RedisCluster(conn) => Arc::new(redis::RawRedis::new(conn, name)),
        })
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nothing of the handle: its own Debug may show connection options.
        f.debug_struct("Backend").finish_non_exhaustive()
    }
}

/// How the preload writes the raw table: entries per
/// [`RawBaseline::insert_batch`] call, and calls in flight at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreloadPlan {
    pub(crate) batch: usize,
    pub(crate) concurrency: usize,
}

/// The raw ceiling of one backend. Keys are session ids, values the sealed
/// blobs (or noise of the same size), `exp` their expiry in Unix seconds.
/// Each operation reports whether it found something, as the store's does.
#[async_trait]
pub(crate) trait RawBaseline: Send + Sync + 'static {
    /// What the four operations run, for the report.
    fn describe(&self) -> &'static str;
    /// Insert or replace `k`.
    async fn save(&self, k: &str, v: &[u8], exp: i64) -> Result<(), StoreError>;
    /// Read `k` (and decode it as the store decodes its rows).
    async fn get(&self, k: &str) -> Result<bool, StoreError>;
    /// Read and remove `k` in one statement.
    async fn take(&self, k: &str) -> Result<bool, StoreError>;
    /// Remove `k`.
    async fn delete(&self, k: &str) -> Result<bool, StoreError>;

    /// How the preload writes; the default saves one entry per call, 64 or
    /// more at once (a server with no bulk form).
    fn preload_plan(&self, concurrency: usize) -> PreloadPlan {
        PreloadPlan {
            batch: 1,
            concurrency: concurrency.max(64),
        }
    }
    /// Insert a preload batch, in bulk where the driver has a bulk form.
    async fn insert_batch(
        &self,
        entries: Vec<(String, Vec<u8>)>,
        exp: i64,
    ) -> Result<(), StoreError> {
        for (k, v) in &entries {
            self.save(k, v, exp).await?;
        }
        Ok(())
    }
    /// After the preload (sled flushes).
    async fn preloaded(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Drop the whole table, collection or tree; `false` if the backend
    /// cannot in one call (the bench then deletes every key it wrote).
    async fn drop_all(&self) -> Result<bool, StoreError>;
}

/// Store `n` entries of `len` incompressible bytes under the preloaded
/// session ids, as the backend's [`PreloadPlan`] says.
pub(crate) async fn preload(
    raw: &Arc<dyn RawBaseline>,
    n: usize,
    len: usize,
    exp: i64,
    concurrency: usize,
) -> Result<(), StoreError> {
    let plan = raw.preload_plan(concurrency);
    let batch = plan.batch.max(1);
    let raw2 = raw.clone();
    drive(plan.concurrency, n.div_ceil(batch), move |b| {
        let raw = raw2.clone();
        async move {
            let entries = (b * batch..((b + 1) * batch).min(n))
                .map(|i| (jti(PRELOAD_SPACE, i), noise(i as u64, len)))
                .collect();
            raw.insert_batch(entries, exp).await?;
            Ok(true)
        }
    })
    .await?;
    raw.preloaded().await
}

/// Remove what the raw side wrote: drop it whole, or else delete `keys()`
/// (every id the bench may have written; most are gone already).
pub(crate) async fn cleanup(
    raw: &Arc<dyn RawBaseline>,
    keys: impl FnOnce() -> Vec<String>,
) -> Result<(), StoreError> {
    if raw.drop_all().await? {
        return Ok(());
    }
    let keys = Arc::new(keys());
    let raw = raw.clone();
    drive(64, keys.len(), move |i| {
        let (raw, keys) = (raw.clone(), keys.clone());
        async move { raw.delete(&keys[i]).await }
    })
    .await?;
    Ok(())
}

/// A driver error as a bench failure (bench data holds no secrets). Unused
/// in a build with neither sled, PostgreSQL nor MongoDB (Redis keeps its
/// typed driver errors).
#[allow(dead_code)]
pub(crate) fn driver(e: impl fmt::Display) -> StoreError {
    StoreError::backend(OP, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_baseline_preloads_and_cleans_up() {
        let raw = Backend::Memory.raw("t").await.unwrap();
        preload(&raw, 10, 100, i64::MAX, 4).await.unwrap();
        assert!(raw.get(&jti(PRELOAD_SPACE, 9)).await.unwrap());
        assert!(raw.take(&jti(PRELOAD_SPACE, 9)).await.unwrap());
        assert!(!raw.get(&jti(PRELOAD_SPACE, 9)).await.unwrap());
        raw.save("k", b"v", 1).await.unwrap();
        assert!(raw.delete("k").await.unwrap());
        cleanup(&raw, Vec::new).await.unwrap();
        assert!(!raw.get(&jti(PRELOAD_SPACE, 0)).await.unwrap());
        assert!(format!("{:?}", Backend::Memory).starts_with("Backend"));
    }
}
