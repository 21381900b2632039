//! Test support shared by this crate's test binaries: the server URL, a
//! conformance factory, and raw SQL helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use broker_core::{BrokerStore, Namespace, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor as _, Row};
use store_postgres::PostgresStore;

pub mod restart;

/// The test server's URL, or `None` (skipped loudly; a panic under CI=true).
pub async fn postgres_url() -> Option<String> {
    conformance::provision::postgres_url().await
}

/// A small pool of our own, for raw SQL in tests.
pub async fn admin_pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .expect("the test server answers")
}

/// A pool, a fresh random namespace, and a set-up store on both.
pub async fn fresh_store(url: &str) -> (PgPool, Namespace, store_postgres::PostgresStore) {
    let pool = admin_pool(url).await;
    let ns = Namespace::random("pgt").expect("valid prefix");
    let store = store_postgres::PostgresStore::new(pool.clone()).with_namespace(ns.clone());
    store.setup().await.expect("setup");
    (pool, ns, store)
}

/// The five table names of `ns`.
pub fn tables(ns: &Namespace) -> [String; 5] {
    ["sessions", "revocations", "records", "peers", "meta"].map(|t| format!("{ns}_{t}"))
}

/// Every value of every column of every table of `ns` (in the connection's
/// current schema, or `schema`), read with plain SQL: bytea as its bytes,
/// every other type cast to text and then to its UTF-8 bytes. Table and
/// column names are included too.
pub async fn raw_rows(
    pool: &PgPool,
    schema: Option<&str>,
    ns: &Namespace,
) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    let schema: String = match schema {
        Some(s) => s.to_owned(),
        None => {
            sqlx::query_scalar("SELECT current_schema()")
                .fetch_one(pool)
                .await?
        }
    };
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text \
         FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = ANY($2) \
         ORDER BY table_name, ordinal_position",
    )
    .bind(&schema)
    .bind(tables(ns).to_vec())
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    let mut by_table: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (table, column, ty) in columns {
        out.push(table.clone().into_bytes());
        out.push(column.clone().into_bytes());
        match by_table.last_mut() {
            Some((t, cols)) if *t == table => cols.push((column, ty)),
            _ => by_table.push((table, vec![(column, ty)])),
        }
    }
    for (table, cols) in by_table {
        let exprs: Vec<String> = cols
            .iter()
            .map(|(c, ty)| {
                if ty == "bytea" {
                    format!("\"{c}\"")
                } else {
                    format!("convert_to(\"{c}\"::text, 'UTF8')")
                }
            })
            .collect();
        // Names come from the catalog of tables this test created
        // ([a-z0-9_] only), not from user input.
        let sql = format!("SELECT {} FROM \"{schema}\".\"{table}\"", exprs.join(", "));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await?;
        for row in rows {
            for i in 0..cols.len() {
                let v: Option<Vec<u8>> = row.try_get(i)?;
                out.extend(v);
            }
        }
    }
    Ok(out)
}

/// DROP the four tables of `ns` (indexes go with them).
pub async fn drop_tables(
    pool: &PgPool,
    schema: Option<&str>,
    ns: &Namespace,
) -> Result<(), sqlx::Error> {
    let names: Vec<String> = tables(ns)
        .iter()
        .map(|t| match schema {
            Some(s) => format!("\"{s}\".\"{t}\""),
            None => format!("\"{t}\""),
        })
        .collect();
    let sql = format!("DROP TABLE IF EXISTS {}", names.join(", "));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await?;
    Ok(())
}

/// How the factory's stores reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `PostgresStore::connect(url)`.
    Plain,
    /// A pool whose connections default to `SERIALIZABLE` transactions
    /// (`SET default_transaction_isolation` in `after_connect`).
    Serializable,
    /// sqlx's statement cache off and unnamed statements, as behind
    /// PgBouncer in transaction mode.
    NoStatementCache,
    /// Short timeouts (1 s pool acquire, 3 s per operation), for the
    /// restart case.
    ShortTimeouts,
}

/// A pool of `flavor` on `url` (one per call).
pub async fn flavored_pool(url: &str, flavor: Flavor) -> Result<PgPool, sqlx::Error> {
    let mut options = PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(5));
    let mut connect: PgConnectOptions = url.parse()?;
    match flavor {
        Flavor::Plain => {}
        Flavor::Serializable => {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET default_transaction_isolation TO 'serializable'")
                        .await?;
                    Ok(())
                })
            });
        }
        Flavor::NoStatementCache => connect = connect.statement_cache_capacity(0),
        Flavor::ShortTimeouts => options = options.acquire_timeout(Duration::from_secs(1)),
    }
    options.connect_with(connect).await
}

/// A store of `flavor` on `pool`.
pub fn flavored_store(pool: PgPool, flavor: Flavor) -> PostgresStore {
    let store = PostgresStore::new(pool);
    match flavor {
        Flavor::Plain | Flavor::Serializable => store,
        Flavor::NoStatementCache => store.with_prepared_statements(false),
        Flavor::ShortTimeouts => store.with_operation_timeout(Duration::from_secs(3)),
    }
}

/// The conformance factory: `open` makes a pool of its own per call (so
/// `open_again` means another connection pool), `open_from_handle` shares
/// one pool; raw reads and teardown use plain SQL on a direct pool.
pub struct PgFactory {
    /// Where the stores connect (PostgreSQL, or PgBouncer in front of it).
    pub url: String,
    pub flavor: Flavor,
    /// The "application's" pool handed to stores by `open_from_handle`.
    pub pool: PgPool,
    /// A direct pool for raw SQL and teardown.
    pub admin: PgPool,
    /// The command restarting the server (rule 18), if any.
    pub restart_cmd: Option<String>,
}

impl PgFactory {
    pub async fn new() -> Option<Self> {
        Self::with_flavor(Flavor::Plain).await
    }

    pub async fn with_flavor(flavor: Flavor) -> Option<Self> {
        let url = postgres_url().await?;
        Some(Self::on(url.clone(), url, flavor).await)
    }

    /// Stores on `url` (e.g. PgBouncer), raw SQL on `admin_url`.
    pub async fn on(url: String, admin_url: String, flavor: Flavor) -> Self {
        let pool = flavored_pool(&url, flavor)
            .await
            .expect("the test server answers");
        if flavor == Flavor::Serializable {
            let level: String = sqlx::query_scalar("SHOW default_transaction_isolation")
                .fetch_one(&pool)
                .await
                .expect("SHOW works");
            assert_eq!(level, "serializable", "the pool's default isolation");
        }
        let admin = admin_pool(&admin_url).await;
        Self {
            url,
            flavor,
            pool,
            admin,
            restart_cmd: None,
        }
    }
}

fn backend(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::backend(op, e)
}

#[conformance::async_trait]
impl conformance::StoreFactory for PgFactory {
    fn name(&self) -> String {
        format!("postgres ({:?})", self.flavor)
    }

    async fn open(&self, namespace: &Namespace) -> Result<Arc<dyn BrokerStore>, StoreError> {
        let store = match self.flavor {
            Flavor::Plain => PostgresStore::connect(&self.url).await?,
            flavor => flavored_store(
                flavored_pool(&self.url, flavor)
                    .await
                    .map_err(|e| StoreError::unavailable("open", e))?,
                flavor,
            ),
        };
        Ok(Arc::new(store.with_namespace(namespace.clone())))
    }

    async fn open_from_handle(
        &self,
        namespace: &Namespace,
    ) -> Result<Option<Arc<dyn BrokerStore>>, StoreError> {
        let store =
            flavored_store(self.pool.clone(), self.flavor).with_namespace(namespace.clone());
        Ok(Some(Arc::new(store)))
    }

    async fn raw_contents(
        &self,
        namespace: &Namespace,
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let rows = raw_rows(&self.admin, None, namespace)
            .await
            .map_err(backend("raw_contents"))?;
        Ok(Some(rows))
    }

    async fn restart_server(&self) -> Result<Option<Duration>, StoreError> {
        match &self.restart_cmd {
            Some(cmd) => restart::restart(cmd, &self.url).await.map(Some),
            None => Ok(None),
        }
    }

    async fn teardown(&self, namespace: &Namespace) -> Result<(), StoreError> {
        drop_tables(&self.admin, None, namespace)
            .await
            .map_err(backend("teardown"))
    }
}
