//! Single-node vs cluster-safe saves: how the store learns its topology,
//! how many requests each session operation sends on each path, and that
//! both paths keep the subject's index and revocation marker under the
//! same keys (hostile subjects included).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use broker_core::{BrokerStore, Namespace, Revocation, SessionRecord, unix_now};
use common::Topology;
use store_redis::redis::aio::ConnectionLike;
use store_redis::redis::{self, Cmd, Pipeline, RedisFuture, Value};
use store_redis::{RedisStore, Topology as Mode};

/// Subjects whose keys the single-node scripts must build exactly as the
/// Rust side does (the last is the longest a subject may be, 255 bytes).
fn hostile_subjects() -> Vec<String> {
    let mut out: Vec<String> = [
        "plain",
        "{a}",
        "x}y{z",
        "a:b",
        "*?[ ",
        "\u{e9}\u{1F600}",
        "\"quoted\"\\",
    ]
    .map(str::to_owned)
    .into();
    out.push(format!("{}\u{e9}", "s".repeat(253)));
    out
}

fn session(jti: &str, sub: &str, auth_time: i64) -> SessionRecord {
    SessionRecord {
        jti: jti.into(),
        sub: sub.into(),
        expires_at: unix_now() + 600,
        auth_time,
        sealed: b"opaque sealed bytes".to_vec().into(),
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A connection that counts the requests (commands or pipelines) sent.
#[derive(Clone)]
struct Counting<C> {
    inner: C,
    sent: Arc<AtomicUsize>,
}

impl<C: ConnectionLike + Send> ConnectionLike for Counting<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.inner.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.inner.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// A raw connection to the topology (cluster-aware for a cluster).
enum Raw {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Raw {
    async fn open(topology: &Topology) -> Self {
        match topology {
            Topology::Single(url) => Raw::Single(
                redis::Client::open(url.as_str())
                    .expect("url")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connect"),
            ),
            Topology::Cluster(urls) => Raw::Cluster(
                redis::cluster::ClusterClient::new(urls.clone())
                    .expect("urls")
                    .get_async_connection()
                    .await
                    .expect("connect"),
            ),
        }
    }

    fn counting(&self) -> (Counting<Raw>, Arc<AtomicUsize>) {
        let sent = Arc::new(AtomicUsize::new(0));
        let inner = match self {
            Raw::Single(c) => Raw::Single(c.clone()),
            Raw::Cluster(c) => Raw::Cluster(c.clone()),
        };
        (
            Counting {
                inner,
                sent: Arc::clone(&sent),
            },
            sent,
        )
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> T {
        match self {
            Raw::Single(c) => cmd.query_async(&mut c.clone()).await,
            Raw::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
        .expect("raw command")
    }

    /// Is `jti` in `sub`'s index (key built here, as keys.rs documents)?
    async fn indexed(&self, ns: &Namespace, sub: &str, jti: &str) -> bool {
        let key = format!("{ns}:u:{{{ns}:u:{}}}", hex(sub));
        let score: Option<f64> = self
            .query(redis::cmd("ZSCORE").arg(key).arg(hex(jti)))
            .await;
        score.is_some()
    }
}

impl Clone for Raw {
    fn clone(&self) -> Self {
        match self {
            Raw::Single(c) => Raw::Single(c.clone()),
            Raw::Cluster(c) => Raw::Cluster(c.clone()),
        }
    }
}

impl ConnectionLike for Raw {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Raw::Single(c) => c.req_packed_command(cmd),
            Raw::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Raw::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Raw::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

async fn topologies() -> Vec<Topology> {
    let mut out = Vec::new();
    out.extend(Topology::single().await);
    out.extend(Topology::cluster().await);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_knows_its_topology() {
    if let Some(Topology::Single(url)) = Topology::single().await {
        let store = RedisStore::connect(&url).await.expect("connect");
        assert_eq!(store.topology(), Mode::SingleNode, "connect() probes");
        let clone = store
            .clone()
            .with_namespace(Namespace::random("rs").expect("ns"));
        assert_eq!(clone.topology(), Mode::SingleNode);
        let manager = redis::Client::open(url.as_str())
            .expect("url")
            .get_connection_manager()
            .await
            .expect("connect");
        let unknown = RedisStore::new(manager.clone());
        assert_eq!(unknown.topology(), Mode::Cluster, "new() stays safe");
        unknown.setup().await.expect("setup");
        assert_eq!(unknown.topology(), Mode::Cluster, "setup never upgrades");
        let asserted = RedisStore::new(manager).with_topology(Mode::SingleNode);
        asserted.setup().await.expect("setup");
        assert_eq!(asserted.topology(), Mode::SingleNode, "a true assertion");
    }
    if let Some(topology @ Topology::Cluster(_)) = Topology::cluster().await {
        let Topology::Cluster(urls) = &topology else {
            unreachable!()
        };
        let store = RedisStore::connect_cluster(urls)
            .await
            .expect("connect")
            .with_namespace(Namespace::random("rs").expect("ns"));
        assert_eq!(store.topology(), Mode::Cluster);
        // A wrong assertion on a cluster connection is caught by setup,
        // and the store then works on the cluster-safe path.
        let ns = Namespace::random("rs").expect("ns");
        let wrong = RedisStore::new(store.connection().clone())
            .with_namespace(ns.clone())
            .with_topology(Mode::SingleNode);
        let sharing = wrong.clone();
        wrong.setup().await.expect("setup");
        assert_eq!(wrong.topology(), Mode::Cluster, "setup falls back");
        assert_eq!(sharing.topology(), Mode::Cluster, "for every clone");
        for (i, sub) in hostile_subjects().iter().enumerate() {
            let jti = format!("j-{i}");
            wrong
                .save_session(&session(&jti, sub, unix_now()))
                .await
                .expect("save");
            assert!(wrong.get_session(&jti).await.expect("get").is_some());
            assert!(wrong.take_session(&jti).await.expect("take").is_some());
        }
        topology.teardown(&ns).await.expect("teardown");
    }
}

/// Requests each session operation sends, after a warm-up that loads the
/// scripts: [save, get, take, delete].
async fn requests_per_op(store: &RedisStore<Counting<Raw>>, sent: &AtomicUsize) -> [usize; 4] {
    let now = unix_now();
    let mut out = [0; 4];
    for round in 0..2 {
        let jti = format!("count-{round}");
        let other = format!("count-other-{round}");
        let mut counts = [0; 4];
        let before = sent.load(Ordering::SeqCst);
        store
            .save_session(&session(&jti, "counted", now))
            .await
            .expect("save");
        store
            .save_session(&session(&other, "counted", now))
            .await
            .expect("save");
        counts[0] = (sent.load(Ordering::SeqCst) - before) / 2;
        let before = sent.load(Ordering::SeqCst);
        assert!(store.get_session(&jti).await.expect("get").is_some());
        counts[1] = sent.load(Ordering::SeqCst) - before;
        let before = sent.load(Ordering::SeqCst);
        assert!(store.take_session(&jti).await.expect("take").is_some());
        counts[2] = sent.load(Ordering::SeqCst) - before;
        let before = sent.load(Ordering::SeqCst);
        assert!(store.delete_session(&other).await.expect("delete"));
        counts[3] = sent.load(Ordering::SeqCst) - before;
        // Round 0 loads the scripts (NOSCRIPT, SCRIPT LOAD, EVALSHA).
        if round == 1 {
            out = counts;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_per_session_operation_on_a_single_node() {
    for topology in topologies().await {
        let raw = Raw::open(&topology).await;
        let ns = Namespace::random("rs").expect("ns");

        let (conn, sent) = raw.counting();
        let safe = RedisStore::new(conn).with_namespace(ns.clone());
        safe.setup().await.expect("setup");
        let counts = requests_per_op(&safe, &sent).await;
        eprintln!(
            "{}: cluster-safe path, requests per save/get/take/delete: {counts:?}",
            topology.name()
        );
        // save: the subject's slot, then the session's; the others one each.
        assert_eq!(counts, [2, 1, 1, 1], "{}", topology.name());

        if let Topology::Single(_) = topology {
            let (conn, sent) = raw.counting();
            let single = RedisStore::new(conn)
                .with_namespace(ns.clone())
                .with_topology(Mode::SingleNode);
            single.setup().await.expect("setup");
            assert_eq!(single.topology(), Mode::SingleNode);
            let counts = requests_per_op(&single, &sent).await;
            eprintln!("redis: single-node path, requests per save/get/take/delete: {counts:?}");
            assert_eq!(counts, [1, 1, 1, 1]);
        }
        topology.teardown(&ns).await.expect("teardown");
    }
}

/// Both save paths index a session under its subject and check its
/// marker, for any subject: revocation deletes and hides. Take and delete
/// leave the jti in the subject's index (until it expires): a revoke
/// running meanwhile must never lose a session saved again under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_find_the_subject_keys_of_hostile_subjects() {
    for topology in topologies().await {
        let raw = Raw::open(&topology).await;
        let mut modes = vec![Mode::Cluster];
        if let Topology::Single(_) = topology {
            modes.push(Mode::SingleNode);
        }
        for mode in modes {
            let ns = Namespace::random("rs").expect("ns");
            let store = RedisStore::new(raw.clone())
                .with_namespace(ns.clone())
                .with_topology(mode);
            store.setup().await.expect("setup");
            assert_eq!(store.topology(), mode);
            let now = unix_now();
            let mut checked = 0;
            for (i, sub) in hostile_subjects().iter().enumerate() {
                let (a, b, c) = (format!("a-{i}"), format!("b-{i}"), format!("c-{i}"));
                for jti in [&a, &b, &c] {
                    store
                        .create_session(&session(jti, sub, now - 10))
                        .await
                        .expect("create");
                    assert!(raw.indexed(&ns, sub, jti).await, "{mode:?}: indexed");
                }
                // A refused create changes nothing.
                assert!(
                    store
                        .create_session(&session(&a, "intruder", now))
                        .await
                        .is_err()
                );
                assert_eq!(
                    store.get_session(&a).await.expect("get").map(|s| s.sub),
                    Some(sub.to_string())
                );
                assert!(store.take_session(&a).await.expect("take").is_some());
                assert!(raw.indexed(&ns, sub, &a).await, "{mode:?}: take keeps");
                assert!(store.delete_session(&b).await.expect("delete"));
                assert!(raw.indexed(&ns, sub, &b).await, "{mode:?}: delete keeps");
                assert!(!store.delete_session(&b).await.expect("delete again"));

                // Revocation: deletes c (found through the index), then
                // hides a session of that login saved afterwards, on get
                // and take, but not a later login.
                let revocation = Revocation {
                    sub: sub.to_string(),
                    revoked_at: now - 5,
                    keep_until: now + 600,
                };
                assert_eq!(store.revoke_subject(&revocation).await.expect("revoke"), 1);
                assert!(store.get_session(&c).await.expect("get").is_none());
                let stale = format!("stale-{i}");
                store
                    .save_session(&session(&stale, sub, now - 10))
                    .await
                    .expect("save");
                assert!(
                    store.get_session(&stale).await.expect("get").is_none(),
                    "{mode:?}: hidden"
                );
                assert!(
                    store.take_session(&stale).await.expect("take").is_none(),
                    "{mode:?}: hidden"
                );
                let fresh = format!("fresh-{i}");
                store
                    .save_session(&session(&fresh, sub, now))
                    .await
                    .expect("save");
                assert!(store.get_session(&fresh).await.expect("get").is_some());
                assert!(store.take_session(&fresh).await.expect("take").is_some());
                checked += 1;
            }
            eprintln!(
                "{} {mode:?}: {checked} hostile subjects checked",
                topology.name()
            );
            assert_eq!(checked, hostile_subjects().len());
            topology.teardown(&ns).await.expect("teardown");
        }
    }
}

/// Why `Topology::SingleNode` stays: on one server, the same saves and
/// takes timed side by side (interleaved in rounds, 32 at a time) through
/// both paths. A measurement, not a check (timings on a shared machine
/// flake): `cargo test -p store-redis --test topology --
/// --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand"]
async fn single_node_path_vs_cluster_safe_path_timed() {
    let Some(topology) = Topology::single().await else {
        return;
    };
    let raw = Raw::open(&topology).await;
    let ns = Namespace::random("rb").expect("ns");
    let (conn, _) = raw.counting();
    let safe = Arc::new(RedisStore::new(conn).with_namespace(ns.clone()));
    safe.setup().await.expect("setup");
    let (conn, _) = raw.counting();
    let single = Arc::new(
        RedisStore::new(conn)
            .with_namespace(ns.clone())
            .with_topology(Mode::SingleNode),
    );
    single.setup().await.expect("setup");
    const N: usize = 4000;
    async fn run(
        store: Arc<RedisStore<Counting<Raw>>>,
        prefix: String,
        take: bool,
    ) -> std::time::Duration {
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..32)
            .map(|t| {
                let (store, prefix) = (Arc::clone(&store), prefix.clone());
                tokio::spawn(async move {
                    for i in (t..N).step_by(32) {
                        let jti = format!("{prefix}-{i}");
                        if take {
                            store.take_session(&jti).await.expect("take");
                        } else {
                            let s = session(&jti, &format!("u{}", i % 97), unix_now() - 5);
                            store.save_session(&s).await.expect("save");
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        started.elapsed()
    }
    let (mut s_save, mut c_save, mut s_take, mut c_take) = Default::default();
    for round in 0..4 {
        let (a, b) = (format!("s{round}"), format!("c{round}"));
        s_save += run(Arc::clone(&single), a.clone(), false).await;
        c_save += run(Arc::clone(&safe), b.clone(), false).await;
        c_take += run(Arc::clone(&safe), b, true).await;
        s_take += run(Arc::clone(&single), a, true).await;
    }
    let rate = |d: std::time::Duration| (4 * N) as f64 / d.as_secs_f64();
    eprintln!(
        "one server, c32: save {:.0}/s single-node vs {:.0}/s cluster-safe; \
         take {:.0}/s vs {:.0}/s",
        rate(s_save),
        rate(c_save),
        rate(s_take),
        rate(c_take)
    );
    topology.teardown(&ns).await.expect("teardown");
}
