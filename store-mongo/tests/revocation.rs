//! MongoDB-specific checks of the revocation model and of time: take
//! against a revoke plus re-save slipping in between its steps, sessions an
//! interrupted save left behind, the marker's two-step forgetting, no TTL
//! on markers, and expiry decided by the injected clock (a `ManualClock`,
//! no sleeping).

mod common;

use std::sync::Arc;
use std::time::Duration;

use broker_core::clock::{Clock, ManualClock};
use broker_core::{BrokerStore, Namespace, Revocation, SessionRecord, unix_now};
use futures::TryStreamExt;
use store_mongo::MongoStore;
use store_mongo::mongodb::IndexModel;
use store_mongo::mongodb::bson::{Binary, Bson, DateTime, Document, doc, spec::BinarySubtype};
use store_mongo::mongodb::options::IndexOptions;

/// A set-up store on a fresh namespace, on `clock`; `None` without a server.
async fn fresh(clock: &ManualClock) -> Option<MongoStore> {
    let url = common::mongo_url().await?;
    let store = MongoStore::connect(&url)
        .await
        .expect("client")
        .with_namespace(Namespace::random("rv").expect("namespace"))
        .with_clock(Arc::new(clock.clone()));
    store.setup().await.expect("setup");
    Some(store)
}

async fn drop_all(store: &MongoStore) {
    store.drop_namespace().await.expect("drop");
}

fn session(jti: &str, sub: &str, expires_at: i64, auth_time: i64, tag: u8) -> SessionRecord {
    SessionRecord {
        jti: jti.to_owned(),
        sub: sub.to_owned(),
        expires_at,
        auth_time,
        sealed: vec![1, tag, 0, 7].into(),
    }
}

fn revocation(sub: &str, revoked_at: i64, keep_until: i64) -> Revocation {
    Revocation {
        sub: sub.to_owned(),
        revoked_at,
        keep_until,
    }
}

/// Neither get, take nor scan returns `jti`.
async fn assert_gone(store: &MongoStore, jti: &str, when: &str) {
    assert_eq!(store.get_session(jti).await.unwrap(), None, "get {when}");
    let mut cursor = None;
    loop {
        let page = store.scan_sessions(cursor.as_deref(), 50).await.unwrap();
        assert!(
            !page.sessions.iter().any(|s| s.jti == jti),
            "scan returned {jti} {when}"
        );
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(store.take_session(jti).await.unwrap(), None, "take {when}");
}

async fn raw(store: &MongoStore, which: usize) -> Vec<Document> {
    let name = &store.collection_names()[which];
    store
        .database()
        .collection::<Document>(name)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Item 2: a take runs on a client whose every round trip takes 200 ms
/// (a latency proxy), so its steps are far apart on the server; between
/// them, another client revokes the subject and saves the session again
/// with the login's `auth_time` (a refresh in flight). The take must never
/// return that re-saved session: the revocation hides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_never_returns_a_session_revoked_and_saved_again_between_its_steps() {
    let Some(url) = common::mongo_url().await else {
        return;
    };
    let ns = Namespace::random("rv").unwrap();
    let fast = MongoStore::connect(&url)
        .await
        .unwrap()
        .with_namespace(ns.clone());
    fast.setup().await.unwrap();
    let proxy = common::proxy::LatencyProxy::start(
        common::proxy::host_port(&url),
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    let slow = MongoStore::connect(&proxy.url(&url))
        .await
        .unwrap()
        .with_namespace(ns);
    // Open the slow client's pooled connection before the rounds.
    slow.health().await.unwrap();
    assert_eq!(slow.get_session("warm-up").await.unwrap(), None);

    let mut returned_revoked = Vec::new();
    for round in 0..3u8 {
        let t = fast.clock().now();
        let (jti, sub) = (format!("jti-{round}"), format!("sub-{round}"));
        let first = session(&jti, &sub, t + 3600, t - 30, round);
        fast.save_session(&first).await.unwrap();
        let taker = {
            let slow = slow.clone();
            let jti = jti.clone();
            tokio::spawn(async move { slow.take_session(&jti).await })
        };
        // The take's first command reaches the server after ~100 ms, a
        // second one would after ~300 ms.
        tokio::time::sleep(Duration::from_millis(150)).await;
        fast.revoke_subject(&revocation(&sub, t, t + 3600))
            .await
            .unwrap();
        let again = SessionRecord {
            sealed: vec![2, round, 0, 7].into(),
            ..first.clone()
        };
        fast.save_session(&again).await.unwrap();
        let taken = taker.await.unwrap().unwrap();
        eprintln!(
            "round {round}: take returned {:?}",
            taken.as_ref().map(|s| s.sealed.clone())
        );
        if taken.as_ref() == Some(&again) {
            returned_revoked.push(round);
        }
        assert_eq!(fast.get_session(&jti).await.unwrap(), None, "round {round}");
    }
    assert!(
        returned_revoked.is_empty(),
        "take returned a session saved after its subject was revoked \
         (auth_time <= revoked_at) in rounds {returned_revoked:?}"
    );
    drop_all(&fast).await;
}

/// Items 1 and 8: take → revoke → save and create with the login's
/// `auth_time` → the marker passes its keep time and is purged → neither
/// session ever comes back. Time moves by a `ManualClock`.
#[tokio::test]
async fn revocation_outlives_its_marker_by_the_manual_clock() {
    let clock = ManualClock::starting_now();
    let Some(store) = fresh(&clock).await else {
        return;
    };
    let t = clock.now();
    let old = session("old", "alice", t + 7200, t - 30, 1);
    store.save_session(&old).await.unwrap();
    let taken = store.take_session("old").await.unwrap().expect("taken");
    store
        .revoke_subject(&revocation("alice", t, t + 60))
        .await
        .unwrap();
    let rotated = SessionRecord {
        jti: "rotated".into(),
        ..taken.clone()
    };
    store.save_session(&rotated).await.unwrap();
    store
        .create_session(&SessionRecord {
            jti: "created".into(),
            ..taken
        })
        .await
        .unwrap();
    assert!(
        raw(&store, 0).await.is_empty(),
        "the sessions the marker hides were stored"
    );
    for jti in ["rotated", "created"] {
        assert_gone(&store, jti, "while the marker is kept").await;
    }
    clock.advance(61);
    store.purge_expired().await.unwrap();
    for jti in ["rotated", "created"] {
        assert_gone(&store, jti, "after the marker was purged").await;
    }
    clock.advance(3600);
    store.purge_expired().await.unwrap();
    store.save_session(&rotated).await.unwrap();
    assert_eq!(
        store.get_session("rotated").await.unwrap(),
        Some(rotated),
        "a session saved once the marker is forgotten"
    );
    drop_all(&store).await;
}

/// Item 1: a save that wrote its session but never got to its marker
/// check (the caller dropped the future, the process died) leaves a
/// session the marker hides. It stays hidden after the marker's keep time
/// too, and purge deletes it before it forgets the marker.
#[tokio::test]
async fn a_session_an_interrupted_save_left_stays_hidden_past_the_keep_time() {
    let clock = ManualClock::starting_now();
    let Some(store) = fresh(&clock).await else {
        return;
    };
    let t = clock.now();
    store
        .revoke_subject(&revocation("bob", t, t + 10))
        .await
        .unwrap();
    // What the interrupted save wrote, one second after the revocation.
    let [sessions, ..] = store.collection_names();
    store
        .database()
        .collection::<Document>(&sessions)
        .insert_one(doc! {
            "_id": "left-behind", "sub": "bob",
            "expires_at": DateTime::from_millis((t + 7200) * 1000),
            "expires_at_secs": t + 7200,
            "auth_time": t - 5,
            "saved_at": t + 1,
            "sealed": Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2, 3] },
        })
        .await
        .unwrap();
    assert_gone(&store, "left-behind", "while the marker is kept").await;
    // take deleted it; plant it again for the time after the keep time.
    store
        .database()
        .collection::<Document>(&sessions)
        .insert_one(doc! {
            "_id": "left-behind", "sub": "bob",
            "expires_at": DateTime::from_millis((t + 7200) * 1000),
            "expires_at_secs": t + 7200,
            "auth_time": t - 5,
            "saved_at": t + 1,
            "sealed": Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2, 3] },
        })
        .await
        .unwrap();
    clock.advance(20);
    assert_eq!(
        store.get_session("left-behind").await.unwrap(),
        None,
        "get after the keep time, before purge"
    );
    assert!(
        store
            .scan_sessions(None, 10)
            .await
            .unwrap()
            .sessions
            .is_empty(),
        "scan after the keep time, before purge"
    );
    assert_eq!(store.purge_expired().await.unwrap(), 1, "purged sessions");
    assert!(raw(&store, 0).await.is_empty(), "purge left the session");
    assert_eq!(store.stats().await.unwrap().revocations, 0);
    // A login after the keep time is not covered any more.
    let late = session("late", "bob", t + 7200, t - 5, 9);
    store.save_session(&late).await.unwrap();
    assert_eq!(store.get_session("late").await.unwrap(), Some(late));
    drop_all(&store).await;
}

/// Item 1: purge forgets a marker past its keep time at once (not counted,
/// not listed, no longer hiding later logins) but deletes the document
/// only `FORGOTTEN_MARKER_GRACE` later; a revocation of a forgotten
/// subject starts afresh instead of merging into the forgotten marker.
#[tokio::test]
async fn purge_forgets_markers_first_and_deletes_them_after_the_grace() {
    let clock = ManualClock::starting_now();
    let Some(store) = fresh(&clock).await else {
        return;
    };
    let t = clock.now();
    store
        .revoke_subject(&revocation("carol", t + 100, t + 5))
        .await
        .unwrap();
    clock.advance(10);
    store.purge_expired().await.unwrap();
    assert_eq!(store.stats().await.unwrap().revocations, 0);
    assert!(
        store
            .scan_revocations(None, 10)
            .await
            .unwrap()
            .revocations
            .is_empty()
    );
    let markers = raw(&store, 1).await;
    assert_eq!(markers.len(), 1, "{markers:?}");
    assert_eq!(markers[0].get("forgotten_at"), Some(&Bson::Int64(t + 10)));
    // A back-dated revocation of the forgotten subject: fresh, not merged.
    store
        .revoke_subject(&revocation("carol", t - 100, t + 1000))
        .await
        .unwrap();
    let s = session("carol-1", "carol", t + 7200, t, 1);
    store.save_session(&s).await.unwrap();
    assert_eq!(store.get_session("carol-1").await.unwrap(), Some(s));
    assert_eq!(
        store.scan_revocations(None, 10).await.unwrap().revocations,
        vec![revocation("carol", t - 100, t + 1000)]
    );
    // Forget it again, then let the grace pass.
    clock.advance(1000);
    store.purge_expired().await.unwrap();
    assert_eq!(raw(&store, 1).await.len(), 1, "deleted before the grace");
    clock.advance(store_mongo::FORGOTTEN_MARKER_GRACE.as_secs() as i64 + 1);
    store.purge_expired().await.unwrap();
    assert!(raw(&store, 1).await.is_empty(), "kept after the grace");
    drop_all(&store).await;
}

/// Item 1: no TTL index forgets markers behind purge's back; `setup` drops
/// the one older versions created.
#[tokio::test]
async fn setup_drops_the_legacy_marker_ttl_index() {
    let clock = ManualClock::starting_now();
    let Some(store) = fresh(&clock).await else {
        return;
    };
    let [_, revocations, ..] = store.collection_names();
    let markers = store.database().collection::<Document>(&revocations);
    markers
        .create_index(
            IndexModel::builder()
                .keys(doc! { "keep_until_date": 1 })
                .options(
                    IndexOptions::builder()
                        .name("keep_until_ttl".to_owned())
                        .expire_after(Duration::ZERO)
                        .build(),
                )
                .build(),
        )
        .await
        .unwrap();
    store.setup().await.unwrap();
    store.setup().await.unwrap();
    let indexes: Vec<_> = markers
        .list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        indexes
            .iter()
            .all(|i| i.options.as_ref().and_then(|o| o.expire_after).is_none()),
        "a TTL index on the markers: {indexes:?}"
    );
    assert_eq!(indexes.len(), 1, "only _id: {indexes:?}");
    drop_all(&store).await;
}

/// Item 8: expiry follows the injected clock, not the server's. The clock
/// stands a year ahead of the server, so the TTL monitor (server clock)
/// never removes the session; the store still treats it as expired the
/// moment its own clock passes `expires_at`, and purge removes it.
#[tokio::test]
async fn expiry_follows_the_injected_clock_not_the_servers() {
    let clock = ManualClock::new(unix_now() + 365 * 86_400);
    let Some(store) = fresh(&clock).await else {
        return;
    };
    let t = clock.now();
    let s = session("soon", "dave", t + 2, t - 10, 1);
    store.save_session(&s).await.unwrap();
    assert_eq!(store.get_session("soon").await.unwrap(), Some(s.clone()));
    clock.advance(2);
    assert_gone(&store, "soon", "at its expires_at").await;
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.live_sessions, stats.expired_sessions), (0, 1));
    // create over the expired session succeeds; it expires in turn.
    let again = session("soon", "erin", t + 4, t - 10, 2);
    store.create_session(&again).await.unwrap();
    assert_eq!(store.get_session("soon").await.unwrap(), Some(again));
    clock.advance(10);
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    assert!(raw(&store, 0).await.is_empty());
    drop_all(&store).await;
}
