//! Read-only SQL over the store for users (`POST /v1/sql`, `causeway sql`).
//!
//! Three fences, any one of which suffices for safety: connections opened read-only with
//! `query_only`, an authorizer that allows reading and nothing else (no ATTACH, PRAGMA, transactions),
//! and `sqlite3_stmt_readonly` checked before running. A progress handler enforces the time limit.

use std::time::{Duration, Instant};

use base64::Engine as _;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode};
use serde::Serialize;
use serde_json::Value;

use crate::{Store, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub max_rows: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits { timeout: Duration::from_secs(5), max_rows: 10_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqlResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// More rows matched than `max_rows`.
    pub truncated: bool,
}

pub(crate) fn install_authorizer(conn: &mut Connection) {
    // Returns an error only for a bad callback pointer, which a closure is not.
    let _ = conn.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Function { .. } | AuthAction::Recursive => {
            Authorization::Allow
        }
        // The full-text index (FTS5) reads it to notice other connections' writes.
        AuthAction::Pragma { pragma_name: "data_version", pragma_value: None } => Authorization::Allow,
        _ => Authorization::Deny,
    }));
}

impl Store {
    /// Runs one read-only statement.
    pub fn sql(&self, query: &str, limits: SqlLimits) -> Result<SqlResult, StoreError> {
        self.with_reader(|conn| {
            let deadline = Instant::now() + limits.timeout;
            conn.progress_handler(10_000, Some(move || Instant::now() > deadline))?;
            let result = run(conn, query, limits);
            conn.progress_handler(0, None::<fn() -> bool>)?;
            result
        })
    }
}

fn run(conn: &Connection, query: &str, limits: SqlLimits) -> Result<SqlResult, StoreError> {
    let query = query.trim().trim_end_matches(';').trim();
    if query.is_empty() {
        return Err(StoreError::InvalidQuery("the query is empty: send one SELECT statement".into()));
    }
    // A write SQLite cannot even prepare (a DELETE from a view, an INSERT into a table that does
    // not exist) would otherwise answer with SQLite's own words ("it is a view"); every write
    // gets the one sentence. The fences stay the authorizer and the read-only connection.
    if is_write(query) {
        return Err(not_read_only());
    }
    let mut stmt = conn.prepare(query).map_err(|e| classify(e, limits))?;
    if !stmt.readonly() {
        return Err(not_read_only());
    }
    let columns: Vec<String> = stmt.column_names().map(String::from).collect();
    let width = columns.len();
    let mut rows = stmt.query([]).map_err(|e| classify(e, limits))?;
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(row) = rows.next().map_err(|e| classify(e, limits))? {
        if out.len() == limits.max_rows {
            truncated = true;
            break;
        }
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(f) => serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
                ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            });
        }
        out.push(values);
    }
    Ok(SqlResult { columns, rows: out, truncated })
}

/// Statements that write or change the connection, by their leading keyword.
const WRITE_KEYWORDS: [&str; 19] = [
    "INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "ATTACH", "DETACH", "PRAGMA", "BEGIN", "COMMIT",
    "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "VACUUM", "REINDEX", "ANALYZE",
];

/// Whether the (first) statement is a write, read from its words outside parentheses, strings
/// and comments: the first keyword after `EXPLAIN [QUERY PLAN]`, and after a `WITH` clause the
/// statement it introduces.
fn is_write(query: &str) -> bool {
    let mut words = top_level_words(query).into_iter().map(|w| w.to_ascii_uppercase()).peekable();
    if words.peek().is_some_and(|w| w == "EXPLAIN") {
        words.next();
        if words.peek().is_some_and(|w| w == "QUERY") {
            words.next();
            words.next();
        }
    }
    let Some(first) = words.next() else { return false };
    let statement = if first == "WITH" {
        match words.find(|w| ["SELECT", "VALUES", "INSERT", "UPDATE", "DELETE", "REPLACE"].contains(&w.as_str())) {
            Some(w) => w,
            None => return false,
        }
    } else {
        first
    };
    WRITE_KEYWORDS.contains(&statement.as_str())
}

/// The bare words of the first statement at parenthesis depth 0 (quoted names, strings, numbers,
/// comments and anything in parentheses left out).
fn top_level_words(query: &str) -> Vec<&str> {
    let bytes = query.as_bytes();
    let (mut i, mut depth, mut words) = (0, 0usize, Vec::new());
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = query[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = query[i + 2..].find("*/").map_or(bytes.len(), |n| i + 2 + n + 2);
            }
            b'\'' | b'"' | b'`' | b'[' => {
                let close = if b == b'[' { b']' } else { b };
                i += 1;
                // A doubled quote is an escaped one: skipping both keeps the scan inside.
                while i < bytes.len() {
                    if bytes[i] == close {
                        if close != b']' && bytes.get(i + 1) == Some(&close) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b';' if depth == 0 => break,
            _ if b.is_ascii_alphabetic() || b == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'$') {
                    i += 1;
                }
                if depth == 0 {
                    words.push(&query[start..i]);
                }
            }
            _ if b.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    words
}

fn not_read_only() -> StoreError {
    StoreError::NotReadOnly(
        "only read-only queries are allowed (SELECT, WITH … SELECT, VALUES, EXPLAIN): \
         writes, ATTACH, PRAGMA and transactions are refused"
            .into(),
    )
}

fn classify(e: rusqlite::Error, limits: SqlLimits) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::OperationInterrupted => {
            StoreError::QueryTimeout(limits.timeout.as_millis() as u64)
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::AuthorizationForStatementDenied => not_read_only(),
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ReadOnly => not_read_only(),
        rusqlite::Error::MultipleStatement => {
            StoreError::InvalidQuery("send one statement per request (found more than one)".into())
        }
        rusqlite::Error::SqliteFailure(_, Some(msg)) => StoreError::InvalidQuery(format!("the query failed: {msg}")),
        _ => StoreError::InvalidQuery(format!("the query failed: {e}")),
    }
}
