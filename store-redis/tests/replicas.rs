//! Reads never go to a replica (issue 15, item 3), on a Redis Cluster
//! handle built to read from replicas (`read_routing_strategy`).
//!
//! The shared test cluster has no replicas, so this test starts a private
//! one: 3 masters with a replica each, on free ports of 127.0.0.1, in a
//! temporary directory, stopped (by the process ids it started) at the end.
//! It needs `redis-server` and `redis-cli` on the PATH (skipped loudly
//! without them, a failure under `CI=true`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker_core::{BrokerStore, Namespace, PeerJwks, Revocation, SessionRecord, unix_now};
use store_redis::redis::{self, cluster_read_routing::RandomReplicaStrategy};
use store_redis::{RedisStore, SetupError};

/// A throwaway Redis Cluster with one replica per master.
struct PrivateCluster {
    children: Vec<Child>,
    dir: PathBuf,
    masters: Vec<u16>,
    replicas: Vec<u16>,
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

fn sync_conn(port: u16) -> redis::Connection {
    redis::Client::open(url(port))
        .expect("url")
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connect")
}

fn info(port: u16, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query(&mut sync_conn(port))
        .expect("INFO")
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "private cluster: {what} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl PrivateCluster {
    fn start() -> Option<Self> {
        if !have("redis-server") || !have("redis-cli") {
            assert!(
                !conformance::provision::in_ci(),
                "CI=true and redis-server/redis-cli are not on the PATH: the replica test must run"
            );
            eprintln!("\n==== SKIP replica test: redis-server/redis-cli not on the PATH ====\n");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("store-redis-replicas-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut cluster = Self {
            children: Vec::new(),
            dir,
            masters: Vec::new(),
            replicas: Vec::new(),
        };
        let mut ports = Vec::new();
        for _ in 0..6 {
            let (port, bus) = (free_port(), free_port());
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--protected-mode", "yes"])
                .args(["--port", &port.to_string()])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--cluster-port", &bus.to_string()])
                .args(["--cluster-node-timeout", "2000"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            cluster.children.push(child);
            ports.push(port);
        }
        for &port in &ports {
            wait_until("every node answers PING", || {
                redis::Client::open(url(port))
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok()
            });
        }
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(created.success(), "redis-cli --cluster create failed");
        for &port in &ports {
            wait_until("cluster_state:ok on every node", || {
                redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query::<String>(&mut sync_conn(port))
                    .is_ok_and(|i| i.contains("cluster_state:ok"))
            });
            if info(port, "replication").contains("role:master") {
                cluster.masters.push(port);
            } else {
                cluster.replicas.push(port);
            }
        }
        assert_eq!((cluster.masters.len(), cluster.replicas.len()), (3, 3));
        for &port in &cluster.replicas.clone() {
            wait_until("every replica in sync", || {
                info(port, "replication").contains("master_link_status:up")
            });
        }
        for &port in &cluster.masters.clone() {
            wait_until("every master lists a replica for every slot range", || {
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query::<Vec<redis::Value>>(&mut sync_conn(port))
                    .is_ok_and(|ranges| {
                        ranges.len() == 3
                            && ranges.iter().all(
                                |r| matches!(r, redis::Value::Array(items) if items.len() >= 4),
                            )
                    })
            });
        }
        Some(cluster)
    }
}

/// Read commands a replica served, by name (from `INFO commandstats`).
fn reads_served(port: u16) -> Vec<String> {
    const READS: &[&str] = &[
        "get",
        "mget",
        "exists",
        "hget",
        "hgetall",
        "hlen",
        "hexists",
        "strlen",
        "type",
        "ttl",
        "pttl",
        "zrange",
        "zrangebylex",
        "zrangebyscore",
        "zcount",
        "zcard",
        "zscore",
        "zrank",
        "scan",
        "evalsha_ro",
        "eval_ro",
        "fcall_ro",
    ];
    info(port, "commandstats")
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter(|l| READS.iter().any(|r| l.starts_with(&format!("{r}:"))))
        .map(str::to_owned)
        .collect()
}

fn session(jti: &str, sub: &str) -> SessionRecord {
    let now = unix_now();
    SessionRecord {
        jti: jti.into(),
        sub: sub.into(),
        expires_at: now + 600,
        auth_time: now - 5,
        sealed: format!("sealed-{jti}").into_bytes().into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_reading_from_replicas_never_reads_a_replica() {
    let Some(cluster) = PrivateCluster::start() else {
        return;
    };
    let client = redis::cluster::ClusterClient::builder(
        cluster.masters.iter().map(|p| url(*p)).collect::<Vec<_>>(),
    )
    .read_routing_strategy(RandomReplicaStrategy)
    .response_timeout(Duration::from_secs(3))
    .build()
    .expect("client");
    let conn = client.get_async_connection().await.expect("connect");
    let store = RedisStore::new(conn).with_namespace(Namespace::random("rr").expect("ns"));
    store.setup().await.expect("setup");
    for &port in &cluster.replicas {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut sync_conn(port))
            .expect("CONFIG RESETSTAT");
    }

    // Every kind of read the store makes.
    for i in 0..20 {
        store
            .save_session(&session(&format!("j{i}"), &format!("u{}", i % 3)))
            .await
            .expect("save");
    }
    for i in 0..20 {
        assert!(
            store
                .get_session(&format!("j{i}"))
                .await
                .expect("get")
                .is_some()
        );
    }
    assert!(store.take_session("j0").await.expect("take").is_some());
    assert_eq!(
        store
            .scan_sessions(None, 1000)
            .await
            .expect("scan")
            .sessions
            .len(),
        19
    );
    store.create_record("k", b"v").await.expect("record");
    assert!(store.get_record("k").await.expect("get record").is_some());
    assert_eq!(store.list_records().await.expect("records").len(), 1);
    store
        .save_peer(&PeerJwks {
            issuer: "https://peer".into(),
            jwks: "{\"keys\":[]}".into(),
            fetched_at: 1,
        })
        .await
        .expect("peer");
    assert_eq!(store.load_peers().await.expect("peers").len(), 1);
    store
        .revoke_subject(&Revocation::now("u1"))
        .await
        .expect("revoke");
    assert_eq!(
        store
            .scan_revocations(None, 10)
            .await
            .expect("markers")
            .revocations
            .len(),
        1
    );
    store.stats().await.expect("stats");
    store.purge_expired().await.expect("purge");
    for &port in &cluster.replicas {
        let served = reads_served(port);
        assert!(
            served.is_empty(),
            "replica {port} served reads of the store: {served:?}"
        );
    }

    // A replica that lags: pausing a replica's writes also stops it
    // applying its master's stream, so a taken session is still on the
    // replica. A get must not find it there.
    let s = session("lagging", "lag-user");
    store.save_session(&s).await.expect("save");
    std::thread::sleep(Duration::from_millis(200)); // replicated
    for &port in &cluster.replicas {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(3000)
            .arg("WRITE")
            .query(&mut sync_conn(port))
            .expect("CLIENT PAUSE");
    }
    assert_eq!(store.take_session("lagging").await.expect("take"), Some(s));
    for _ in 0..10 {
        assert_eq!(
            store.get_session("lagging").await.expect("get"),
            None,
            "a taken session was read back from a lagging replica"
        );
    }
    for &port in &cluster.replicas {
        let _: () = redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query(&mut sync_conn(port))
            .expect("CLIENT UNPAUSE");
    }

    // A single-node store pointed at a replica is refused by setup.
    let on_replica = RedisStore::connect(&url(cluster.replicas[0]))
        .await
        .expect("connect");
    let err = on_replica.setup().await.expect_err("setup on a replica");
    assert_eq!(
        std::error::Error::source(&err).and_then(|s| s.downcast_ref::<SetupError>()),
        Some(&SetupError::Replica),
        "{err:?}"
    );
    drop(cluster);
}
