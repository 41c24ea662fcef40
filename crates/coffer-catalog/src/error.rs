//! [`CatalogError`]: failures of the catalog, classified.
//!
//! Lost connections, pool timeouts, deadlocks and lock-wait timeouts are retryable; everything
//! else (a constraint violated, a migration that does not apply, bad configuration) is permanent.

use coffer_core::{Classify, ErrorClass, IdError};

/// A failed catalog operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The database could not be reached or the connection broke.
    #[error("catalog database unavailable: {0}")]
    Unavailable(String),
    /// The database refused a statement.
    #[error("catalog query failed ({code}): {message}")]
    Query {
        /// MySQL error code (e.g. `1213` for a deadlock) or `unknown`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// Migrations could not be applied.
    #[error("catalog migration failed: {0}")]
    Migration(String),
    /// Invalid configuration (such as a malformed database URL).
    #[error("catalog configuration: {0}")]
    Config(String),
    /// A stored value no longer parses (a row written by hand, or a bug).
    #[error("corrupt catalog row: {0}")]
    Corrupt(String),
    /// A row that must exist does not.
    #[error("{0}")]
    NotFound(String),
    /// The change is not allowed in the current state (the message says what to do first).
    #[error("{0}")]
    Refused(String),
    /// Another process holds what this needs for a while (the message says what); try later.
    #[error("{0}")]
    Busy(String),
}

/// MySQL error codes that mean "try again": deadlock, lock wait timeout, too many connections,
/// server gone away / lost connection.
const RETRYABLE_MYSQL_CODES: &[&str] = &["1213", "1205", "1040", "2006", "2013"];

/// The codes of a lock conflict, which InnoDB resolves by rolling back one side: deadlock and
/// lock wait timeout. Running the whole transaction again is the documented remedy.
const LOCK_CONFLICT_CODES: &[&str] = &["1213", "1205"];

/// The server's error number (`1213`), not the SQLSTATE (`40001`) that `DatabaseError::code`
/// gives: several numbers share one SQLSTATE (`HY000` covers most of them), so only the number
/// classifies. Falls back to the SQLSTATE, then `unknown`, for other drivers.
fn mysql_error_code(db: &dyn sqlx::error::DatabaseError) -> String {
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return mysql.number().to_string();
    }
    db.code()
        .map(|c| c.into_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl CatalogError {
    /// A deadlock or lock wait timeout: the transaction lost a lock conflict and can run again.
    pub fn is_lock_conflict(&self) -> bool {
        matches!(self, CatalogError::Query { code, .. } if LOCK_CONFLICT_CODES.contains(&code.as_str()))
    }
}

impl Classify for CatalogError {
    fn class(&self) -> ErrorClass {
        match self {
            CatalogError::Unavailable(_) | CatalogError::Busy(_) => ErrorClass::Retryable,
            CatalogError::Query { code, .. } if RETRYABLE_MYSQL_CODES.contains(&code.as_str()) => {
                ErrorClass::Retryable
            }
            _ => ErrorClass::Permanent,
        }
    }
}

impl From<sqlx::Error> for CatalogError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Database(db) => CatalogError::Query {
                code: mysql_error_code(db.as_ref()),
                message: db.message().to_owned(),
            },
            sqlx::Error::Io(io) => CatalogError::Unavailable(io.to_string()),
            sqlx::Error::PoolTimedOut => {
                CatalogError::Unavailable("connection pool timed out".to_owned())
            }
            sqlx::Error::PoolClosed => {
                CatalogError::Unavailable("connection pool closed".to_owned())
            }
            sqlx::Error::Protocol(p) => CatalogError::Unavailable(p),
            sqlx::Error::Tls(t) => CatalogError::Unavailable(t.to_string()),
            sqlx::Error::ColumnDecode { index, source } => {
                CatalogError::Corrupt(format!("column {index}: {source}"))
            }
            sqlx::Error::Decode(d) => CatalogError::Corrupt(d.to_string()),
            sqlx::Error::Configuration(_) => {
                CatalogError::Config("invalid database configuration".to_owned())
            }
            other => CatalogError::Query {
                code: "unknown".to_owned(),
                message: other.to_string(),
            },
        }
    }
}

impl From<sqlx::migrate::MigrateError> for CatalogError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(inner) => match CatalogError::from(inner) {
                CatalogError::Unavailable(m) => CatalogError::Unavailable(m),
                other => CatalogError::Migration(other.to_string()),
            },
            other => CatalogError::Migration(other.to_string()),
        }
    }
}

impl From<IdError> for CatalogError {
    fn from(e: IdError) -> Self {
        CatalogError::Corrupt(e.to_string())
    }
}
