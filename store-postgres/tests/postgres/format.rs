//! The storage format at `setup`: recorded in `<ns>_meta` once, checked on
//! every setup (and `migrate`); a newer format is refused with a typed
//! `FormatError` and nothing changes; a namespace from before format
//! versions (no `<ns>_meta`) is recorded as format 1 and reads as before.

use crate::common;
use broker_core::{BrokerStore, FormatError, SessionRecord, StoreError, unix_now};
use sqlx::PgPool;
use store_postgres::{FORMAT_VERSION, PostgresStore};

async fn recorded(pool: &PgPool, ns: &broker_core::Namespace) -> Option<i32> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM \"{ns}_meta\" WHERE name = 'format'"
    )))
    .fetch_optional(pool)
    .await
    .expect("read the format record")
}

fn format_error(e: &StoreError) -> FormatError {
    FormatError::of(e)
        .unwrap_or_else(|| panic!("a FormatError, got {e:?}"))
        .clone()
}

/// Fails before format versions: `setup` saw every table in place and
/// answered `Ok`.
#[tokio::test]
async fn setup_refuses_a_newer_format_and_changes_nothing() {
    let Some(url) = common::postgres_url().await else {
        return;
    };
    let (pool, ns, store) = common::fresh_store(&url).await;
    assert_eq!(recorded(&pool, &ns).await, Some(FORMAT_VERSION as i32));
    let newer = FORMAT_VERSION as i32 + 1;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE \"{ns}_meta\" SET version = $1"
    )))
    .bind(newer)
    .execute(&pool)
    .await
    .expect("plant a newer format");
    // A newer version may have dropped a table this one would re-create.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE \"{ns}_peers\"")))
        .execute(&pool)
        .await
        .expect("drop");
    for (what, result) in [
        ("setup", store.setup().await),
        ("migrate", store.migrate().await),
    ] {
        let err = result.expect_err(what);
        assert!(err.to_string().starts_with(what), "{err}");
        let format = format_error(&err);
        assert!(format.is_newer(), "{what}: {format:?}");
        assert_eq!(
            (format.store, format.found, format.supported),
            ("store-postgres", Some(newer as u32), FORMAT_VERSION)
        );
    }
    assert_eq!(recorded(&pool, &ns).await, Some(newer), "left alone");
    let peers: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("\"{ns}_peers\""))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(peers, None, "nothing re-created");

    // A version no release writes is not one at all.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE \"{ns}_meta\" SET version = -1"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let format = format_error(&store.setup().await.expect_err("unreadable"));
    assert_eq!(format.found, None);
    common::drop_tables(&pool, None, &ns).await.unwrap();
}

/// A namespace of an older version of this crate, which recorded no
/// format: the first setup records format 1, and its data reads as before.
#[tokio::test]
async fn a_namespace_from_before_format_versions_is_recorded_and_reads() {
    let Some(url) = common::postgres_url().await else {
        return;
    };
    let (pool, ns, store) = common::fresh_store(&url).await;
    let now = unix_now();
    let s = SessionRecord {
        jti: "j".into(),
        sub: "alice".into(),
        expires_at: now + 600,
        auth_time: now,
        sealed: vec![1, 2, 3].into(),
    };
    store.save_session(&s).await.expect("save");
    // What the previous version left: the same tables, no `<ns>_meta`.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE \"{ns}_meta\"")))
        .execute(&pool)
        .await
        .expect("drop meta");

    let store = PostgresStore::new(pool.clone()).with_namespace(ns.clone());
    store.setup().await.expect("setup on a format-1 namespace");
    assert_eq!(recorded(&pool, &ns).await, Some(1));
    assert_eq!(store.get_session("j").await.expect("get"), Some(s));
    store.drop_namespace().await.expect("drop");
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
         AND tablename LIKE $1",
    )
    .bind(format!("{ns}\\_%"))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        left.is_empty(),
        "drop_namespace drops the record too: {left:?}"
    );
}
