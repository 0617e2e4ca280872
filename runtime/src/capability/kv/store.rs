use healthcloud_platform::db::{Backend, Database, Sql, WriteTx};
use sqlx::Row;

/// Key-value rows in the `app_kv` table, in partitions of (region, app, patient).
#[derive(Debug, Clone)]
pub struct KvStore {
    db: Database,
}

/// One partition: a region's install of an app, and the patient the values are about (`""`
/// for the install-wide partition).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Partition<'a> {
    pub region: &'a str,
    pub app: &'a str,
    pub patient: &'a str,
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

    /// A transaction for one call's work.
    pub(crate) async fn begin(&self) -> sqlx::Result<WriteTx> {
        self.db.begin_write().await
    }

    /// `{statement} WHERE region = … AND app = … AND patient = …`
    fn within(&self, statement: &str, partition: Partition<'_>) -> Sql {
        let mut sql = self.db.sql(statement);
        sql.push(" WHERE region = ")
            .bind(partition.region)
            .push(" AND app = ")
            .bind(partition.app)
            .push(" AND patient = ")
            .bind(partition.patient);
        sql
    }

    /// `{statement} WHERE … AND key = …`
    fn keyed(&self, statement: &str, partition: Partition<'_>, key: &str) -> Sql {
        let mut sql = self.within(statement, partition);
        sql.push(" AND key = ").bind(key);
        sql
    }

    pub(crate) async fn get(
        &self,
        tx: &mut WriteTx,
        partition: Partition<'_>,
        key: &str,
    ) -> sqlx::Result<Option<Vec<u8>>> {
        let sql = self.keyed("SELECT value FROM app_kv", partition, key);
        let row = sql.query().fetch_optional(&mut *tx.tx).await?;
        row.map(|row| row.try_get::<Vec<u8>, _>(0)).transpose()
    }

    /// Stores a value unless the partition would exceed `quota` bytes of keys plus values.
    pub(crate) async fn set(
        &self,
        tx: &mut WriteTx,
        partition: Partition<'_>,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), KvWriteError> {
        // Two writers must not both see the old usage: SQLite writers are serialised in
        // process; on PostgreSQL the partition is locked for the transaction.
        let bytes = match self.db.backend() {
            Backend::Sqlite => "LENGTH(CAST(key AS BLOB)) + LENGTH(value)",
            Backend::Postgres => {
                let Partition {
                    region,
                    app,
                    patient,
                } = partition;
                let key = format!("app_kv/{region}/{app}/{patient}");
                self.db.lock(&mut tx.tx, &key).await?;
                "OCTET_LENGTH(key) + OCTET_LENGTH(value)"
            }
        };
        let mut sql = self.within(
            &format!("SELECT COALESCE(SUM({bytes}), 0) FROM app_kv"),
            partition,
        );
        sql.push(" AND key <> ").bind(key);
        let used: i64 = sql.query().fetch_one(&mut *tx.tx).await?.try_get(0)?;
        let used = used.max(0) as u64;
        let needed = (key.len() + value.len()) as u64;
        if used + needed > quota {
            return Err(KvWriteError::Quota {
                used,
                quota,
                needed,
            });
        }
        let sql = self.keyed("DELETE FROM app_kv", partition, key);
        sql.query().execute(&mut *tx.tx).await?;
        let mut sql = self
            .db
            .sql("INSERT INTO app_kv (region, app, patient, key, value) VALUES (");
        sql.bind(partition.region)
            .push(", ")
            .bind(partition.app)
            .push(", ")
            .bind(partition.patient)
            .push(", ")
            .bind(key)
            .push(", ")
            .bind(value.to_vec())
            .push(")");
        sql.query().execute(&mut *tx.tx).await?;
        Ok(())
    }

    pub(crate) async fn delete(
        &self,
        tx: &mut WriteTx,
        partition: Partition<'_>,
        key: &str,
    ) -> sqlx::Result<()> {
        let sql = self.keyed("DELETE FROM app_kv", partition, key);
        sql.query().execute(&mut *tx.tx).await?;
        Ok(())
    }

    pub(crate) async fn keys(
        &self,
        tx: &mut WriteTx,
        partition: Partition<'_>,
        prefix: &str,
    ) -> sqlx::Result<Vec<String>> {
        let mut sql = self.within("SELECT key FROM app_kv", partition);
        sql.push(" AND SUBSTR(key, 1, ")
            .bind(prefix.chars().count() as i64)
            .push(") = ")
            .bind(prefix)
            .push(" ORDER BY key");
        let rows = sql.query().fetch_all(&mut *tx.tx).await?;
        rows.iter().map(|row| row.try_get::<String, _>(0)).collect()
    }
}
