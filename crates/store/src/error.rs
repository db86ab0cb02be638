//! The store's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store was written by a newer causeway (schema version {found}, this build knows {known}); upgrade causeway")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("a write to the store failed earlier ({0}); writes are refused until the server is restarted")]
    Poisoned(String),
    #[error("the store's writer has stopped")]
    WriterGone,
    /// User SQL that is not a single read-only statement.
    #[error("{0}")]
    NotReadOnly(String),
    /// User SQL that SQLite refused (syntax, unknown column…).
    #[error("{0}")]
    InvalidQuery(String),
    #[error("the query ran longer than its {0} ms limit: narrow it with WHERE on an indexed column or add LIMIT")]
    QueryTimeout(u64),
    /// User SQL that made a value, or a first row, larger than the answer limit.
    #[error("{0}")]
    TooLarge(String),
    /// A sealed segment file that cannot be written or read as one (`segment.rs`).
    #[error("segment file {path}: {reason}")]
    Segment { path: PathBuf, reason: String },
}

impl StoreError {
    /// True when the caller's input caused the error (maps to a 4xx).
    pub fn is_client_error(&self) -> bool {
        matches!(self, StoreError::NotReadOnly(_) | StoreError::InvalidQuery(_) | StoreError::QueryTimeout(_) | StoreError::TooLarge(_))
    }
}
