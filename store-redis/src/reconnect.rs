//! [`ReconnectingCluster`]: a Redis Cluster connection that rebuilds itself
//! when every node was lost at once.
//!
//! After all masters restart together, redis-rs's async cluster connection
//! can keep failing on its stale node connections for a long time (seen here
//! under load: more than 20 s with no successful call; compare redis-rs
//! issue #2277). This wrapper answers a lost connection by building a fresh
//! one from the same client — at most once per [`REBUILD_INTERVAL`] — so a
//! worker recovers within about a second of the cluster's return.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

/// The shortest time between two rebuilds of the connection.
pub const REBUILD_INTERVAL: Duration = Duration::from_secs(1);

/// A cloneable Redis Cluster connection (clones share one underlying
/// [`ClusterConnection`]) that replaces that connection with a fresh one
/// from its [`ClusterClient`] when a call fails because the connection was
/// lost. The failing call still fails (as `Unavailable` in the store); the
/// next ones use the new connection. Made by
/// [`RedisStore::connect_cluster`](crate::RedisStore::connect_cluster).
#[derive(Clone)]
pub struct ReconnectingCluster {
    client: Arc<ClusterClient>,
    state: Arc<Mutex<State>>,
}

struct State {
    conn: ClusterConnection,
    last_rebuild: Instant,
}

impl ReconnectingCluster {
    /// Connect with `client`.
    pub async fn connect(client: ClusterClient) -> Result<Self, RedisError> {
        let conn = client.get_async_connection().await?;
        Ok(Self {
            client: Arc::new(client),
            state: Arc::new(Mutex::new(State {
                conn,
                last_rebuild: Instant::now(),
            })),
        })
    }

    /// The connection in use now.
    pub fn current(&self) -> ClusterConnection {
        self.lock().conn.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After `e`, replace the connection if it was lost and the last
    /// rebuild is older than [`REBUILD_INTERVAL`].
    async fn heal(&self, e: &RedisError) {
        if !is_lost(e) {
            return;
        }
        {
            let mut state = self.lock();
            if state.last_rebuild.elapsed() < REBUILD_INTERVAL {
                return;
            }
            state.last_rebuild = Instant::now();
        }
        if let Ok(conn) = self.client.get_async_connection().await {
            tracing::info!("redis cluster connection rebuilt after a lost connection");
            self.lock().conn = conn;
        }
    }
}

/// Errors that mean the connection, not the command, failed.
fn is_lost(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound
    ) || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
}

impl ConnectionLike for ReconnectingCluster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.current().req_packed_command(cmd).await;
            if let Err(e) = &result {
                self.heal(e).await;
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self
                .current()
                .req_packed_commands(pipeline, offset, count)
                .await;
            if let Err(e) = &result {
                self.heal(e).await;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}
