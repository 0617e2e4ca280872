//! The database every service shares: SQLite by default, PostgreSQL for deployments that
//! outgrow one machine. One code path serves both through sqlx's `Any` driver; the SQL is
//! portable (numbered `$n` placeholders, `BIGINT`/`TEXT` columns only). Each crate keeps its
//! own migrations and applies them with [`Database::apply`].

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Arguments, Executor};

/// Which server a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (WAL, `synchronous=FULL`).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A connection pool with the schema migrated.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// Where it was connected, for a PostgreSQL `LISTEN` connection of its own.
    url: std::sync::Arc<str>,
    /// SQLite allows one writer at a time; writers queue here instead of failing with `SQLITE_BUSY`.
    write_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Database {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`), creating a SQLite file if missing.
    /// The schema is each crate's own: it applies its migrations with [`Database::apply`].
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!(
                "unsupported database URL '{url}': use sqlite://PATH or postgres://USER@HOST/DB"
            );
        };
        if backend == Backend::Sqlite {
            // The Any driver cannot create the file; open it once natively with create_if_missing.
            let options = SqliteConnectOptions::from_str(url)?.create_if_missing(true);
            let conn = sqlx::ConnectOptions::connect(&options).await?;
            sqlx::Connection::close(conn).await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(30))
            // An embedded file cannot drop a connection, so it is not pinged (a round trip to
            // its worker thread) before every query; a server's connections are.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                             PRAGMA cache_size = -131072; PRAGMA temp_store = MEMORY; \
                             PRAGMA wal_autocheckpoint = 0;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the database at {url}: {e}"))?;
        if backend == Backend::Sqlite {
            tokio::spawn(checkpoint_wal(pool.clone()));
        }
        let database = Database {
            pool,
            backend,
            url: url.into(),
            write_lock: Default::default(),
        };
        Ok(database)
    }

    /// Applies a crate's migrations to this database: the crates share it, each with its own
    /// range of versions (integration 1–99 and 1000…, runtime 100…, store 200…, oauth 300…),
    /// so each migrator ignores the others' rows.
    pub async fn apply(&self, mut migrations: Migrations, what: &str) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &mut migrations.sqlite,
            Backend::Postgres => &mut migrations.postgres,
        };
        migrator.set_ignore_missing(true);
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| anyhow::anyhow!("{what} database migration failed: {e}"))
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which server this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Tells every process listening on `channel` (PostgreSQL `NOTIFY`, delivered when `tx`
    /// commits). SQLite has one process and nothing to tell: there it does nothing.
    pub async fn notify(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        channel: &str,
    ) -> sqlx::Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(channel)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Holds `key` until `tx` ends: transactions that lock the same key run one after the
    /// other, on every node (a PostgreSQL transaction-scoped advisory lock). SQLite's writers
    /// are serialised in process already ([`begin_write`](Self::begin_write)): there it does
    /// nothing.
    pub async fn lock(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        key: &str,
    ) -> sqlx::Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(key)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// A connection listening on `channels` (PostgreSQL `LISTEN`); `None` on SQLite. It
    /// reconnects by itself when the server goes away; a notification sent while it was
    /// away is lost, so listeners also poll.
    pub async fn listen(
        &self,
        channels: &[&str],
    ) -> anyhow::Result<Option<sqlx::postgres::PgListener>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot LISTEN on the database: {e}"))?;
        listener.listen_all(channels.iter().copied()).await?;
        Ok(Some(listener))
    }

    /// Starts a write transaction. On SQLite, writers are serialised in-process first.
    pub async fn begin_write(&self) -> sqlx::Result<WriteTx> {
        let guard = match self.backend {
            Backend::Sqlite => Some(self.write_lock.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        Ok(WriteTx {
            tx: self.pool.begin().await?,
            _guard: guard,
        })
    }
}

/// Copies the SQLite write-ahead log into the database file once a second, off the request
/// path. (SQLite's automatic checkpoint runs inside whichever commit crosses the threshold,
/// which is where the slowest audit writes came from.) Stops when the pool is closed.
async fn checkpoint_wal(pool: AnyPool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        tick.tick().await;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                break;
            }
            tracing::warn!(%error, "WAL checkpoint failed; retrying in a second");
        }
    }
}

/// A crate's migrations, one folder per backend (`sqlx::migrate!("./migrations/sqlite")`, …).
#[derive(Debug)]
pub struct Migrations {
    /// For SQLite.
    pub sqlite: sqlx::migrate::Migrator,
    /// For PostgreSQL.
    pub postgres: sqlx::migrate::Migrator,
}

/// A write transaction; holds the SQLite writer slot until committed or dropped.
pub struct WriteTx {
    /// The open transaction.
    pub tx: sqlx::Transaction<'static, sqlx::Any>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    /// Commits durably.
    pub async fn commit(self) -> sqlx::Result<()> {
        self.tx.commit().await
    }
}

/// One bound value of a [`Sql`] statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A text value.
    Text(String),
    /// An integer value.
    Int(i64),
    /// SQL NULL (typed as BIGINT, the only nullable columns we bind).
    NullInt,
    /// A byte string (BLOB / BYTEA).
    Bytes(Vec<u8>),
}

/// SQL text under construction with its arguments. Placeholders are written as each backend
/// likes them best: numbered `$1, $2, …` for PostgreSQL, anonymous `?` for SQLite, whose
/// lookup of numbered parameters is linear per parameter (quadratic for a multi-row INSERT).
#[derive(Debug, Clone)]
pub struct Sql {
    /// The statement text.
    pub text: String,
    /// The arguments in placeholder order.
    pub args: Vec<Arg>,
    backend: Backend,
}

impl Database {
    /// Starts a statement for this database.
    pub fn sql(&self, text: &str) -> Sql {
        Sql::new(self.backend, text)
    }
}

impl Sql {
    /// The backend it is written for.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a statement for `backend`.
    pub fn new(backend: Backend, text: &str) -> Self {
        Sql {
            text: text.to_owned(),
            args: Vec::new(),
            backend,
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `arg`.
    pub fn bind(&mut self, arg: impl Into<Arg>) -> &mut Self {
        self.args.push(arg.into());
        match self.backend {
            Backend::Sqlite => self.text.push('?'),
            Backend::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.args.len().to_string());
            }
        }
        self
    }

    /// Appends placeholders for `args`, separated by commas (a `VALUES` list).
    pub fn bind_list(&mut self, args: impl IntoIterator<Item = Arg>) -> &mut Self {
        for (index, arg) in args.into_iter().enumerate() {
            if index > 0 {
                self.text.push_str(", ");
            }
            self.bind(arg);
        }
        self
    }

    /// The sqlx arguments for execution.
    pub fn arguments(&self) -> AnyArguments<'_> {
        let mut arguments = AnyArguments::default();
        for arg in &self.args {
            // Adding a String/i64/Option<i64> to AnyArguments cannot fail.
            let _ = match arg {
                Arg::Text(s) => arguments.add(s.as_str()),
                Arg::Int(i) => arguments.add(*i),
                Arg::NullInt => arguments.add(None::<i64>),
                Arg::Bytes(b) => arguments.add(b.as_slice()),
            };
        }
        arguments
    }

    /// A query ready to run.
    pub fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, AnyArguments<'_>> {
        sqlx::query_with(&self.text, self.arguments())
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Self {
        Arg::Text(value)
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Arg::Text(value.to_owned())
    }
}

impl From<&String> for Arg {
    fn from(value: &String) -> Self {
        Arg::Text(value.clone())
    }
}

impl From<Vec<u8>> for Arg {
    fn from(value: Vec<u8>) -> Self {
        Arg::Bytes(value)
    }
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Arg::Int(value)
    }
}

impl From<Option<i64>> for Arg {
    fn from(value: Option<i64>) -> Self {
        value.map_or(Arg::NullInt, Arg::Int)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_backend() {
        let mut sql = Sql::new(Backend::Postgres, "SELECT 1 WHERE a = ");
        sql.bind("x").push(" AND b = ").bind(2i64);
        assert_eq!(sql.text, "SELECT 1 WHERE a = $1 AND b = $2");
        assert_eq!(sql.args, vec![Arg::Text("x".into()), Arg::Int(2)]);
        let mut sql = Sql::new(Backend::Sqlite, "SELECT 1 WHERE a = ");
        sql.bind("x").push(" AND b = ").bind(2i64);
        assert_eq!(sql.text, "SELECT 1 WHERE a = ? AND b = ?");
    }
}
