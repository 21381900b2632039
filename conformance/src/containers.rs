//! Throwaway servers in containers, for machines with a Docker engine and
//! no `BROKER_TEST_*` URL. One container per server kind per test process;
//! testcontainers' reaper removes it when the process ends.

use std::collections::HashMap;

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

use crate::provision::Server;

static STARTED: tokio::sync::Mutex<Option<HashMap<&'static str, String>>> =
    tokio::sync::Mutex::const_new(None);

/// True when a Docker engine may answer (a socket or `DOCKER_HOST`).
fn docker_present() -> bool {
    std::env::var_os("DOCKER_HOST").is_some()
        || std::path::Path::new("/var/run/docker.sock").exists()
}

/// The URL of a container of `server`, started once per process; `None`
/// when no engine answers.
pub(crate) async fn start(server: Server) -> Option<String> {
    if !docker_present() {
        return None;
    }
    let mut started = STARTED.lock().await;
    let started = started.get_or_insert_with(HashMap::new);
    if let Some(url) = started.get(server.env_var()) {
        return Some(url.clone());
    }
    let url = match server {
        Server::Postgres => {
            let image = GenericImage::new("postgres", "15-alpine")
                .with_exposed_port(5432.tcp())
                .with_wait_for(WaitFor::message_on_stderr(
                    "database system is ready to accept connections",
                ))
                .with_env_var("POSTGRES_PASSWORD", "broker")
                .with_env_var("POSTGRES_DB", "broker_test");
            let c = image.start().await.ok()?;
            let port = c.get_host_port_ipv4(5432).await.ok()?;
            std::mem::forget(c);
            format!("postgres://postgres:broker@127.0.0.1:{port}/broker_test")
        }
        Server::Mongo => {
            let image = GenericImage::new("mongo", "7")
                .with_exposed_port(27017.tcp())
                .with_wait_for(WaitFor::message_on_stdout("Waiting for connections"));
            let c = image.start().await.ok()?;
            let port = c.get_host_port_ipv4(27017).await.ok()?;
            std::mem::forget(c);
            format!("mongodb://127.0.0.1:{port}/broker_test")
        }
        Server::Redis => {
            let image = GenericImage::new("redis", "7-alpine")
                .with_exposed_port(6379.tcp())
                .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"));
            let c = image.start().await.ok()?;
            let port = c.get_host_port_ipv4(6379).await.ok()?;
            std::mem::forget(c);
            format!("redis://127.0.0.1:{port}/")
        }
        // A cluster needs announced addresses the host can reach; use
        // scripts/servers/redis.sh for it.
        Server::RedisCluster => return None,
    };
    started.insert(server.env_var(), url.clone());
    Some(url)
}
