//! Redis, one node or a cluster: one command per operation on keys under a
//! prefix, through the store's connection.

use std::hint::black_box;

use async_trait::async_trait;
use broker_core::{StoreError, unix_now};
use store_redis::redis::aio::ConnectionLike;
use store_redis::redis::{self, Cmd, FromRedisValue};

use super::super::OP;
use super::RawBaseline;

/// Keys `<name>:<k>` on a single node's connection manager or a cluster
/// connection.
pub(crate) struct RawRedis<C> {
    conn: C,
    prefix: String,
}

impl<C> RawRedis<C> {
    /// Keys under `<name>:` on `conn`.
    pub(crate) fn new(conn: C, name: &str) -> Self {
        Self {
            conn,
            prefix: format!("{name}:"),
        }
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }
}

impl<C: ConnectionLike + Clone + Send + Sync> RawRedis<C> {
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| StoreError::backend(OP, store_redis::DriverError::from(&e)))
    }
}

#[async_trait]
impl<C: ConnectionLike + Clone + Send + Sync + 'static> RawBaseline for RawRedis<C> {
    fn describe(&self) -> &'static str {
        "SET EX / GET / GETDEL / DEL"
    }

    async fn save(&self, k: &str, v: &[u8], exp: i64) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(k))
            .arg(v)
            .arg("EX")
            .arg((exp - unix_now()).max(1));
        self.query::<()>(&cmd).await
    }

    async fn get(&self, k: &str) -> Result<bool, StoreError> {
        let found: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(self.key(k))).await?;
        Ok(black_box(found).is_some())
    }

    async fn take(&self, k: &str) -> Result<bool, StoreError> {
        let found: Option<Vec<u8>> = self.query(redis::cmd("GETDEL").arg(self.key(k))).await?;
        Ok(black_box(found).is_some())
    }

    async fn delete(&self, k: &str) -> Result<bool, StoreError> {
        let n: i64 = self.query(redis::cmd("DEL").arg(self.key(k))).await?;
        Ok(n > 0)
    }

    async fn drop_all(&self) -> Result<bool, StoreError> {
        // No prefix drop that works on a cluster: delete key by key.
        Ok(false)
    }
}
