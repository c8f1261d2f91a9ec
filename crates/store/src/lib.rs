//! Persistence for the server: runs, jobs, steps, projects, tokens, secrets and the event
//! log (which holds the audit trail) in SQLite (WAL, the default) or PostgreSQL through one sqlx code path, plus a
//! content-addressed blob store on disk for logs and artifacts.
#![forbid(unsafe_code)]

pub mod checks;
pub mod crypto;
pub mod deploy;
pub mod events;
pub mod incidents;
mod projects;
mod records;
mod runs;
pub use runs::RunFilter;
pub mod testing;
mod tokens;

pub use checks::{RunAnnotation, RunCheck};
pub use crypto::MasterKey;
pub use deploy::{DeployEvent, NewRelease, Release, Rollout, RolloutFilter};
pub use events::{follow, Event, EventFilter, EventRefs, NewEvent, MAX_EVENT_PAGE};
pub use incidents::{incident_event, Incident, IncidentEvent, NewIncident};
pub use mobius_blob::{BlobStore, FsBlobStore};
pub use records::*;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Crypto(String),
    /// A stored state that is none of its enum's names (the database's check
    /// constraint keeps this from happening).
    #[error("{table}.{column} holds `{value}`, which is not a known state")]
    UnknownState { table: &'static str, column: &'static str, value: String },
    /// A stored JSON document that does not read back (or a value that cannot be
    /// written as one).
    #[error("{table} row {id}: its document does not read back: {source}")]
    BadDocument {
        table: &'static str,
        id: i64,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A state stored by its name, parsed back with `parse`; a name `parse` does not know
/// is [`StoreError::UnknownState`] (the database's constraints keep that from happening).
pub(crate) fn state_of<T>(
    row: &sqlx::any::AnyRow,
    table: &'static str,
    column: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<T> {
    use sqlx::Row as _;
    let value: String = row.try_get(column)?;
    parse(&value).ok_or(StoreError::UnknownState { table, column, value })
}

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pool of the database's own driver, for reads where the `Any` driver's
/// conversions dominate (pages of the event log).
#[derive(Debug, Clone)]
enum Reader {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// The database behind the server.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// The event log's reads, through the database's own driver.
    reader: Reader,
    backend: Backend,
    /// The newest event id this process appended (see [`Store::subscribe`]).
    appended: std::sync::Arc<tokio::sync::watch::Sender<i64>>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Each SQLite connection's page cache, in KiB (set as `-KiB`: a size, not a page
/// count). SQLite's default is 2 MiB per connection; the server holds six connections,
/// whose full caches were a third of its idle memory after load, while a page the
/// cache misses is one read from the operating system's cache away. Measured in
/// docs/benchmarks.md: 512 KiB keeps every list latency and the event log's rates.
const SQLITE_CACHE_KIB: u32 = 512;

/// Whether a pooled connection may be handed out. A transaction whose COMMIT and
/// ROLLBACK both failed (a full disk) leaves its connection believing it is still
/// inside it; handed out again, every `begin` on it fails. Such a connection is
/// closed instead, and the pool opens a fresh one.
fn healthy(
    conn: &mut sqlx::AnyConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<bool, sqlx::Error>> + Send + '_>> {
    let open = sqlx::Connection::is_in_transaction(conn);
    if open {
        tracing::warn!("a connection left inside a failed transaction is closed");
    }
    Box::pin(async move { Ok(!open) })
}

/// A pool of SQLite connections with the store's settings.
fn sqlite_pool(connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(connections)
        // A connection to a local file cannot go stale: no ping (one more round trip to
        // the connection's thread) before every transaction.
        .test_before_acquire(false)
        .before_acquire(healthy)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // WAL lets readers run beside the one writer; FULL syncs each commit,
                // so whatever the API acknowledged survives a crash of the machine too.
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = FULL").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                conn.execute(format!("PRAGMA cache_size = -{SQLITE_CACHE_KIB}").as_str()).await?;
                Ok(())
            })
        })
}

impl Store {
    /// Connects (creating a SQLite file when missing) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let options = AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => sqlite_pool(4).connect_with(options).await?,
            Backend::Postgres => {
                AnyPoolOptions::new().max_connections(8).before_acquire(healthy).connect_with(options).await?
            }
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let reader = match backend {
            Backend::Sqlite => {
                // Reads map the file (no copy per page): a page of one project's events
                // touches a page of the file per event.
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                    .busy_timeout(std::time::Duration::from_secs(10))
                    .pragma("mmap_size", "268435456")
                    .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"));
                Reader::Sqlite(
                    sqlx::sqlite::SqlitePoolOptions::new()
                        .max_connections(2)
                        .test_before_acquire(false)
                        .connect_with(options)
                        .await?,
                )
            }
            Backend::Postgres => {
                let options = sqlx::postgres::PgConnectOptions::from_str(url)?;
                Reader::Postgres(sqlx::postgres::PgPoolOptions::new().max_connections(4).connect_with(options).await?)
            }
        };
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events").fetch_one(&pool).await?;
        let appended = std::sync::Arc::new(tokio::sync::watch::Sender::new(last));
        Ok(Store { pool, reader, backend, appended })
    }

    /// The SQLite URL of a database file, created when missing.
    pub fn sqlite_url(path: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    /// A transaction that writes. SQLite takes the write lock at once (`BEGIN IMMEDIATE`):
    /// a deferred transaction that reads first fails with "database is locked" when another
    /// writer commits meanwhile, and no busy timeout can save it.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let statement = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        Ok(self.pool.begin_with(statement).await?)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// SQLite's `PRAGMA integrity_check` ("ok" when sound); PostgreSQL answers "ok".
    pub async fn integrity_check(&self) -> Result<String> {
        match self.backend {
            Backend::Sqlite => {
                let (result,): (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&self.pool).await?;
                Ok(result)
            }
            Backend::Postgres => Ok("ok".into()),
        }
    }

    /// Closes every connection (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        match &self.reader {
            Reader::Sqlite(pool) => pool.close().await,
            Reader::Postgres(pool) => pool.close().await,
        }
        self.pool.close().await;
    }

    /// Takes the leader lock of this database, which the server that runs background
    /// work (schedules, runs, rollouts, alerting) holds: a PostgreSQL session advisory
    /// lock on a connection of its own, released when the holder's session ends (the
    /// process exits or dies). `None` when another session holds it. SQLite needs none:
    /// its database sits in the data directory, which the server locks.
    pub async fn try_leader_lock(&self) -> Result<Option<LeaderLock>> {
        if self.backend == Backend::Sqlite {
            return Ok(Some(LeaderLock { _connection: None }));
        }
        let mut connection = self.pool.acquire().await?.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK_KEY)
            .fetch_one(&mut connection)
            .await?;
        Ok(got.then_some(LeaderLock { _connection: Some(connection) }))
    }
}

/// `mobius` in ASCII: the advisory lock key of the leader.
const LEADER_LOCK_KEY: i64 = 0x6d6f_6269_7573;

/// The leader lock, held while this value lives.
#[derive(Debug)]
pub struct LeaderLock {
    _connection: Option<sqlx::AnyConnection>,
}
