use healthcloud_integration::db::{Backend, Database, Sql};
use sqlx::Row;

/// Key-value rows in the `app_kv` table, namespaced by (region, app).
#[derive(Debug, Clone)]
pub struct KvStore {
    db: Database,
}

/// A write refused for the quota, with the numbers.
#[derive(Debug)]
pub(crate) enum KvWriteError {
    Quota { used: u64, quota: u64, needed: u64 },
    Storage(sqlx::Error),
}

impl From<sqlx::Error> for KvWriteError {
    fn from(error: sqlx::Error) -> Self {
        KvWriteError::Storage(error)
    }
}

impl KvStore {
    /// A store in `db` (whose `app_kv` table the runtime's migrations create).
    pub fn new(db: Database) -> Self {
        KvStore { db }
    }

    /// `{statement} WHERE region = … AND app = … AND key = …`
    fn keyed(&self, statement: &str, (region, app): (&str, &str), key: &str) -> Sql {
        let mut sql = self.db.sql(statement);
        sql.push(" WHERE region = ")
            .bind(region)
            .push(" AND app = ")
            .bind(app)
            .push(" AND key = ")
            .bind(key);
        sql
    }

    pub(crate) async fn get(
        &self,
        region: &str,
        app: &str,
        key: &str,
    ) -> sqlx::Result<Option<Vec<u8>>> {
        let sql = self.keyed("SELECT value FROM app_kv", (region, app), key);
        let row = sql.query().fetch_optional(self.db.pool()).await?;
        row.map(|row| row.try_get::<Vec<u8>, _>(0)).transpose()
    }

    /// Stores a value unless the namespace would exceed `quota` bytes of keys plus values.
    pub(crate) async fn set(
        &self,
        (region, app): (&str, &str),
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), KvWriteError> {
        let mut write = self.db.begin_write().await?;
        // Two writers must not both see the old usage: SQLite writers are serialised in
        // process; on PostgreSQL the namespace is locked for the transaction.
        let bytes = match self.db.backend() {
            Backend::Sqlite => "LENGTH(CAST(key AS BLOB)) + LENGTH(value)",
            Backend::Postgres => {
                let mut lock = self.db.sql("SELECT pg_advisory_xact_lock(hashtext(");
                lock.bind(format!("app_kv/{region}/{app}")).push("))");
                lock.query().execute(&mut *write.tx).await?;
                "OCTET_LENGTH(key) + OCTET_LENGTH(value)"
            }
        };
        let mut sql = self.db.sql(&format!(
            "SELECT COALESCE(SUM({bytes}), 0) FROM app_kv WHERE region = "
        ));
        sql.bind(region)
            .push(" AND app = ")
            .bind(app)
            .push(" AND key <> ")
            .bind(key);
        let used: i64 = sql.query().fetch_one(&mut *write.tx).await?.try_get(0)?;
        let used = used.max(0) as u64;
        let needed = (key.len() + value.len()) as u64;
        if used + needed > quota {
            return Err(KvWriteError::Quota {
                used,
                quota,
                needed,
            });
        }
        let sql = self.keyed("DELETE FROM app_kv", (region, app), key);
        sql.query().execute(&mut *write.tx).await?;
        let mut sql = self
            .db
            .sql("INSERT INTO app_kv (region, app, key, value) VALUES (");
        sql.bind(region)
            .push(", ")
            .bind(app)
            .push(", ")
            .bind(key)
            .push(", ")
            .bind(value.to_vec())
            .push(")");
        sql.query().execute(&mut *write.tx).await?;
        write.commit().await?;
        Ok(())
    }

    pub(crate) async fn delete(&self, region: &str, app: &str, key: &str) -> sqlx::Result<()> {
        let mut write = self.db.begin_write().await?;
        let sql = self.keyed("DELETE FROM app_kv", (region, app), key);
        sql.query().execute(&mut *write.tx).await?;
        write.commit().await
    }

    pub(crate) async fn keys(
        &self,
        region: &str,
        app: &str,
        prefix: &str,
    ) -> sqlx::Result<Vec<String>> {
        let mut sql = self.db.sql("SELECT key FROM app_kv WHERE region = ");
        sql.bind(region)
            .push(" AND app = ")
            .bind(app)
            .push(" AND SUBSTR(key, 1, ")
            .bind(prefix.chars().count() as i64)
            .push(") = ")
            .bind(prefix)
            .push(" ORDER BY key");
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        rows.iter().map(|row| row.try_get::<String, _>(0)).collect()
    }
}
