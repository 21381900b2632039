//! PostgreSQL: one statement per operation on a `(k, v, exp)` table,
//! through the store's pool.

use std::hint::black_box;

use async_trait::async_trait;
use broker_core::StoreError;
use store_postgres::sqlx::postgres::PgRow;
use store_postgres::sqlx::{self, AssertSqlSafe, PgPool, Row, SqlSafeStr, SqlStr};

use super::{PreloadPlan, RawBaseline, driver};

/// The statements, on the table `name`.
pub(crate) struct RawPostgres {
    pool: PgPool,
    save: SqlStr,
    get: SqlStr,
    take: SqlStr,
    delete: SqlStr,
    preload: SqlStr,
    drop: SqlStr,
}

impl RawPostgres {
    /// Create the table `name` (a valid namespace plus `_raw`: a plain
    /// identifier) and prepare its statements.
    pub(crate) async fn open(pool: PgPool, name: &str) -> Result<Self, StoreError> {
        let s = |t: String| AssertSqlSafe(t).into_sql_str();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {name} \
             (k text COLLATE \"C\" PRIMARY KEY, v bytea NOT NULL, exp bigint NOT NULL)"
        )))
        .execute(&pool)
        .await
        .map_err(driver)?;
        Ok(Self {
            save: s(format!(
                "INSERT INTO {name} (k, v, exp) VALUES ($1, $2, $3) \
                 ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v, exp = EXCLUDED.exp"
            )),
            get: s(format!("SELECT v, exp FROM {name} WHERE k = $1")),
            take: s(format!("DELETE FROM {name} WHERE k = $1 RETURNING v, exp")),
            delete: s(format!("DELETE FROM {name} WHERE k = $1")),
            preload: s(format!(
                "INSERT INTO {name} (k, v, exp) \
                 SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::int8[])"
            )),
            drop: s(format!("DROP TABLE IF EXISTS {name}")),
            pool,
        })
    }

    /// Decode a `(v, exp)` row as the store decodes its rows.
    fn row(row: Option<PgRow>) -> Result<bool, StoreError> {
        match row {
            Some(r) => {
                let v: Vec<u8> = r.try_get(0).map_err(driver)?;
                let exp: i64 = r.try_get(1).map_err(driver)?;
                black_box((v, exp));
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[async_trait]
impl RawBaseline for RawPostgres {
    fn describe(&self) -> &'static str {
        "INSERT … ON CONFLICT DO UPDATE / SELECT / DELETE … RETURNING / DELETE on (k text primary key, v bytea, exp bigint)"
    }

    async fn save(&self, k: &str, v: &[u8], exp: i64) -> Result<(), StoreError> {
        sqlx::query(self.save.clone())
            .bind(k)
            .bind(v)
            .bind(exp)
            .execute(&self.pool)
            .await
            .map_err(driver)?;
        Ok(())
    }

    async fn get(&self, k: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(self.get.clone())
            .bind(k)
            .fetch_optional(&self.pool)
            .await
            .map_err(driver)?;
        Self::row(row)
    }

    async fn take(&self, k: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(self.take.clone())
            .bind(k)
            .fetch_optional(&self.pool)
            .await
            .map_err(driver)?;
        Self::row(row)
    }

    async fn delete(&self, k: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(self.delete.clone())
            .bind(k)
            .execute(&self.pool)
            .await
            .map_err(driver)?;
        Ok(done.rows_affected() > 0)
    }

    fn preload_plan(&self, concurrency: usize) -> PreloadPlan {
        PreloadPlan {
            batch: 1000,
            concurrency: concurrency.min(8),
        }
    }

    async fn insert_batch(
        &self,
        entries: Vec<(String, Vec<u8>)>,
        exp: i64,
    ) -> Result<(), StoreError> {
        let es = vec![exp; entries.len()];
        let (ks, vs): (Vec<String>, Vec<Vec<u8>>) = entries.into_iter().unzip();
        sqlx::query(self.preload.clone())
            .bind(ks)
            .bind(vs)
            .bind(es)
            .execute(&self.pool)
            .await
            .map_err(driver)?;
        Ok(())
    }

    async fn drop_all(&self) -> Result<bool, StoreError> {
        sqlx::query(self.drop.clone())
            .execute(&self.pool)
            .await
            .map_err(driver)?;
        Ok(true)
    }
}
