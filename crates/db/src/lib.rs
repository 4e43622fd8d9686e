//! One repository API over SQLite and PostgreSQL (sqlx `Any`), with the migrations from
//! `migrations/{sqlite,postgres}` embedded. SQL is written once in the dialect both share.

mod accounts;
mod blobs;
mod chat;
mod credentials;
mod devices;
mod error;
mod groups;
mod keys;
mod media;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod uploads;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use accounts::AccountRow;
pub use blobs::{BlobCompletion, BlobRow};
pub use chat::{InboxCopy, InboxRow, NewInboxMessage, NewSend, SendRecord};
pub use devices::DeviceRow;
pub use error::DbError;
pub use groups::{GroupRow, MemberChange, MemberRow};
pub use keys::{ClaimedKeys, DeviceKeysRow, NewDeviceKeys, Published};
pub use media::{MediaOutcome, MediaRow, RenditionRow};
pub use uploads::{NewUpload, UploadRow, UploadUsage};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The database engine behind a [`Db`], chosen by the URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (`sqlite://path`).
    Sqlite,
    /// PostgreSQL (`postgres://…`).
    Postgres,
}

impl Backend {
    /// Picks the backend from a database URL, or explains which schemes are supported.
    pub fn from_url(url: &str) -> Result<Self, DbError> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(DbError::Config(format!(
                "unsupported database URL scheme {scheme:?}: use sqlite://PATH or postgres://USER:PASS@HOST/DB"
            ))),
        }
    }
}

/// A handle to the metadata database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    /// Reads (and, on PostgreSQL, everything).
    pool: AnyPool,
    /// Writes. On SQLite one connection, which writers take in turn: SQLite lets one write at
    /// a time anyway, and writers on several connections would wait in its busy handler,
    /// which sleeps and retries (up to 100 ms a round) instead of queueing, so a busy moment
    /// gave every write a tail of tens or hundreds of milliseconds. On PostgreSQL the pool.
    writer: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects (creating an SQLite file if needed) without running migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| DbError::Config(format!("invalid database URL: {e}")))?
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let pool = Self::pool(backend, max_connections)
            .connect_with(options.clone())
            .await?;
        let writer = match backend {
            Backend::Sqlite => Self::pool(backend, 1).connect_with(options).await?,
            Backend::Postgres => pool.clone(),
        };
        Ok(Self {
            pool,
            writer,
            backend,
        })
    }

    /// Options of a pool of at most `max_connections`.
    fn pool(backend: Backend, max_connections: u32) -> AnyPoolOptions {
        AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                             PRAGMA wal_autocheckpoint = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`, waiting out the busy timeout): a transaction that read first could
    /// not write after another connection did (`SQLITE_BUSY_SNAPSHOT`, failing at once).
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, DbError> {
        Ok(match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        })
    }

    /// Applies pending migrations for this backend.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.writer).await?;
        Ok(())
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// On SQLite, copies what the write-ahead log holds into the database file as far as
    /// readers allow, without waiting for anyone (`PASSIVE`), on a reading connection: the
    /// server does this every second, so the copy and its `fsync` (the only one with
    /// `synchronous=NORMAL`) happen beside the writes rather than in one of them, as
    /// SQLite's own checkpoint after 1,000 pages would (it still steps in at 10,000, should
    /// this fall behind). Nothing to do on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<(), DbError> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Round-trips a trivial query (readiness).
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` parameters.
pub(crate) fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=columns)
                .map(|c| format!("${}", row * columns + c))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
