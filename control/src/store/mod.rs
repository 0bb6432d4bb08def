//! The SQLite database: the only source of truth about sandboxes.
//!
//! Opened in WAL mode with `synchronous = FULL`, so a transaction that
//! committed survives a `kill -9` and a power cut. Migrations are embedded in
//! the binary and run on open.

mod sandboxes;
mod tasks;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use sandboxes::{DesiredState, Egress, IdlePolicy, NewSandbox, SandboxRecord, Status};
pub use tasks::{NewTask, TaskEvent, TaskRecord, TaskStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a sandbox with id `{0}` already exists")]
    Exists(String),
    #[error("no sandbox with id `{0}`")]
    NotFound(String),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
}

impl StoreError {
    /// Whether the database could not grow: its disk (or quota) is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlx(sqlx::Error::Database(db)) => db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                // SQLITE_FULL, in the low byte of an extended code.
                .is_some_and(|c| c & 0xff == 13),
            StoreError::Sqlx(sqlx::Error::Io(e)) => crate::workspace::is_disk_full(e),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// Milliseconds since the Unix epoch, the unit of every stored timestamp.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // Deleted rows (a purged sandbox's env, its tasks' keys) are
            // overwritten, not left in free pages.
            .pragma("secure_delete", "on");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        // Sandbox and task environments hold provider keys: owner-only.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| StoreError::Sqlx(sqlx::Error::Io(e)))?;
        Ok(Self { pool })
    }

    /// Answers when the database can be read.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The id of this berth instance, made on first use. It labels every
    /// container so that two installs on one host never touch each other's.
    pub async fn instance_id(&self) -> Result<String, StoreError> {
        let fresh = ulid::Ulid::generate().to_string().to_ascii_lowercase();
        sqlx::query("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance_id', ?)")
            .bind(&fresh)
            .execute(&self.pool)
            .await?;
        let (id,): (String,) = sqlx::query_as("SELECT value FROM meta WHERE key = 'instance_id'")
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    /// The key preview tokens are signed with, made on first use.
    pub async fn preview_key(&self) -> Result<Vec<u8>, StoreError> {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh)
            .map_err(|e| StoreError::Sqlx(sqlx::Error::Io(std::io::Error::other(e.to_string()))))?;
        sqlx::query("INSERT OR IGNORE INTO meta (key, value) VALUES ('preview_key', ?)")
            .bind(engine.encode(fresh))
            .execute(&self.pool)
            .await?;
        let (key,): (String,) = sqlx::query_as("SELECT value FROM meta WHERE key = 'preview_key'")
            .fetch_one(&self.pool)
            .await?;
        engine
            .decode(key)
            .map_err(|e| StoreError::Sqlx(sqlx::Error::Decode(Box::new(e))))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
