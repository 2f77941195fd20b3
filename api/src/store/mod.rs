//! The API's state store: SQLite (embedded default) or PostgreSQL, one interface.
//!
//! Built on sqlx's `Any` driver so every query is written once: the schema uses
//! only types both databases spell alike (TEXT, BIGINT), timestamps are Unix
//! milliseconds and structured settings are JSON text validated by the API. Queries
//! use `$n` placeholders, which both drivers accept. Migrations (`api/migrations`)
//! are embedded in the binary and applied at connect.

mod keys;
mod templates;
mod tenants;
mod usage;
mod webhooks;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

pub use keys::KeyRecord;
pub use templates::TemplateOverride;
pub use tenants::TenantRow;
pub use webhooks::{
    AttemptRecord, Claimed, DeliveryRow, EndpointRow, FanOutProgress, MessageRow, NewMessage,
    NextState, OutcomeWrite,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("database URL {url:?} is not supported: use sqlite://PATH or postgres://…")]
    UnsupportedUrl { url: String },
    #[error("cannot create the directory for {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored settings are not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Which database sits behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Connects, creating an SQLite file (and its directory) when missing, and
    /// applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: path.to_string(),
                    source,
                })?;
            }
            let sep = if url.contains('?') { '&' } else { '?' };
            (Backend::Sqlite, format!("{url}{sep}mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl {
                url: url.to_string(),
            });
        };
        let sqlite = backend == Backend::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL with synchronous=NORMAL: a commit survives the
                        // process being killed (the WAL is written before the
                        // commit returns); only an OS crash or power loss can
                        // lose the last commits. FULL would fsync every commit,
                        // which caps the webhook queue at a few thousand/s.
                        sqlx::Executor::execute(&mut *conn, "PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            // Readers never block the writer; the setting is stored in the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The wall clock in Unix milliseconds (how the store keeps time).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Maps a unique-constraint violation to a conflict with `what` as its message.
pub(crate) fn conflict_on_unique(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return StoreError::Conflict(what());
    }
    StoreError::Database(e)
}
