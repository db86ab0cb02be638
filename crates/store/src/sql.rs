//! Read-only SQL over the store for users (`POST /v1/sql`, `causeway sql`).
//!
//! Three fences, any one of which suffices for safety: connections opened read-only with
//! `query_only`, an authorizer that allows reading and nothing else (no ATTACH, PRAGMA, transactions),
//! and `sqlite3_stmt_readonly` checked before running.
//!
//! And bounds, so that no query holds a core, memory or the answer past its limits whatever it
//! calls:
//! - **Time.** A watchdog thread interrupts the connection at the deadline (`sqlite3_interrupt`),
//!   which SQLite notices between VM steps. Inside one function call it is not noticed, so user
//!   queries run on their own connections where the functions whose one call could run for minutes
//!   (`instr`, `replace`, two-argument `trim`/`ltrim`/`rtrim`/`unhex`: quadratic; `like`, `glob`:
//!   backtracking) are replaced by ports that are linear or that stop at the same deadline
//!   ([`functions`]); every other built-in is linear in its input, which the next bound caps.
//! - **Size.** No value may grow past the answer limit (`SQLITE_LIMIT_LENGTH`): `printf` widths,
//!   `randomblob`, `zeroblob`, `replace` growth and concatenation fail at once with `TooLarge`.
//!   Functions take at most [`MAX_FUNCTION_ARGS`] arguments.
//! - **Answer.** Rows are counted in bytes of their JSON as they are read; the answer stops at the
//!   row limit or the byte limit, flagged `truncated` with the limit that stopped it.
//!
//! How many queries run at once is the server's business (`SqlLimits::max_concurrent`).

mod functions;
mod watchdog;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode};
use serde::Serialize;
use serde_json::Value;

use crate::{Store, StoreError};

/// The most arguments one function call may take in user SQL (SQLite's default is 1,000): a call
/// such as `json_set` or `json_extract` does work for each, over a value of up to the answer limit.
pub const MAX_FUNCTION_ARGS: i32 = 100;

#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    /// The longest a query runs before it is interrupted (`QueryTimeout`).
    pub timeout: Duration,
    /// The most rows one answer carries.
    pub max_rows: usize,
    /// The most bytes of JSON the rows of one answer take; also the most bytes one value (a string
    /// or blob, stored or computed) may hold while the query runs.
    pub max_answer_bytes: usize,
    /// The most queries that run at once; the server waits for a free slot at most `timeout`, then
    /// answers that it is busy. The store itself does not enforce it.
    pub max_concurrent: usize,
    /// The server runs queries at the lowest CPU priority (`SCHED_IDLE`): they get a core only
    /// when ingest and the writer leave it idle. The store itself does not use it.
    pub idle_priority: bool,
}

impl SqlLimits {
    /// One query at a time per core, leaving one core for ingest (and at least one).
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
    }
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            timeout: Duration::from_secs(5),
            max_rows: 10_000,
            max_answer_bytes: 16 * 1024 * 1024,
            max_concurrent: Self::default_concurrency(),
            idle_priority: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqlResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// The query matched more than the answer carries.
    pub truncated: bool,
    /// The limit that stopped the answer: `rows` or `bytes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_by: Option<&'static str>,
    /// What stopped the answer and how to narrow the query, when it was truncated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Who reads on a connection: the store's own lookups may hold one read transaction across their
/// statements (one snapshot, one read lock); users' SQL may not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    Store,
    User,
}

pub(crate) fn install_authorizer(conn: &mut Connection, reader: Reader) {
    // Returns an error only for a bad callback pointer, which a closure is not.
    let _ = conn.authorizer(Some(move |ctx: AuthContext<'_>| match ctx.action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Function { .. } | AuthAction::Recursive => Authorization::Allow,
        // The full-text index (FTS5) reads it to notice other connections' writes.
        AuthAction::Pragma { pragma_name: "data_version", pragma_value: None } => Authorization::Allow,
        AuthAction::Transaction { .. } if reader == Reader::Store => Authorization::Allow,
        _ => Authorization::Deny,
    }));
}

/// The columns holding what a dead letter carried (its payload, its Kafka key and headers): read
/// as NULL by a query whose [`SqlScope`] leaves out payloads.
pub const DLQ_PAYLOAD_COLUMNS: [&str; 3] = ["original_event", "original_key", "original_headers"];

/// What a user's query may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlScope {
    /// The payloads of dead letters ([`DLQ_PAYLOAD_COLUMNS`]); without it they read as NULL.
    pub dlq_payloads: bool,
}

impl SqlScope {
    pub const ALL: SqlScope = SqlScope { dlq_payloads: true };
}

/// A user's connection: the read-only authorizer, and payload columns read as NULL while
/// `payloads` is false (SQLite's `SQLITE_IGNORE`, decided as each statement is prepared).
fn install_user_authorizer(conn: &mut Connection, payloads: Arc<std::sync::atomic::AtomicBool>) {
    let _ = conn.authorizer(Some(move |ctx: AuthContext<'_>| match ctx.action {
        AuthAction::Read { table_name: "dlq", column_name, .. }
            if DLQ_PAYLOAD_COLUMNS.contains(&column_name) && !payloads.load(std::sync::atomic::Ordering::Acquire) =>
        {
            Authorization::Ignore
        }
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Function { .. } | AuthAction::Recursive => Authorization::Allow,
        AuthAction::Pragma { pragma_name: "data_version", pragma_value: None } => Authorization::Allow,
        _ => Authorization::Deny,
    }));
}

/// A reader kept for users' SQL only: its functions and limits differ from the store's own
/// readers, and changing functions on a connection would expire its cached statements.
pub(crate) struct SqlConn {
    conn: Connection,
    bounds: Arc<functions::Bounds>,
    payloads: Arc<std::sync::atomic::AtomicBool>,
}

/// The pool of [`SqlConn`]s; a field of the store, so they close before its writer.
#[derive(Default)]
pub(crate) struct SqlPool {
    conns: std::sync::Mutex<Vec<SqlConn>>,
}

impl SqlPool {
    fn take(&self, store: &Store) -> Result<SqlConn, StoreError> {
        if let Some(c) = self.conns.lock().expect("sql pool lock").pop() {
            return Ok(c);
        }
        let mut conn = crate::open_reader(store.path(), &store.inner.segments, Reader::User)?;
        conn.set_limit(Limit::SQLITE_LIMIT_FUNCTION_ARG, MAX_FUNCTION_ARGS)?;
        let bounds = functions::install(&mut conn)?;
        let payloads = Arc::new(std::sync::atomic::AtomicBool::new(true));
        install_user_authorizer(&mut conn, payloads.clone());
        Ok(SqlConn { conn, bounds, payloads })
    }

    fn give(&self, conn: SqlConn) {
        let mut pool = self.conns.lock().expect("sql pool lock");
        if pool.len() < 8 {
            pool.push(conn);
        }
    }
}

impl Store {
    /// Runs one read-only statement within `limits`, reading everything.
    pub fn sql(&self, query: &str, limits: SqlLimits) -> Result<SqlResult, StoreError> {
        self.sql_scoped(query, limits, SqlScope::ALL)
    }

    /// Runs one read-only statement within `limits`, reading what `scope` allows.
    pub fn sql_scoped(&self, query: &str, limits: SqlLimits, scope: SqlScope) -> Result<SqlResult, StoreError> {
        let pool = &self.inner.sql;
        let c = pool.take(self)?;
        c.payloads.store(scope.dlq_payloads, std::sync::atomic::Ordering::Release);
        let value_limit = limits.max_answer_bytes.clamp(1, 1_000_000_000);
        c.conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, value_limit as i32)?;
        let result = {
            let _watch = watchdog::watch(Instant::now() + limits.timeout, &c.conn, &c.bounds, value_limit);
            run(&c.conn, query, limits)
        };
        pool.give(c);
        result
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
    // Bytes of the rows as JSON: `[` `]`, and a comma before every row but the first.
    let mut bytes = 2;
    let mut stopped = None;
    while let Some(row) = rows.next().map_err(|e| classify(e, limits))? {
        if out.len() == limits.max_rows {
            stopped = Some("rows");
            break;
        }
        let mut values = Vec::with_capacity(width);
        let mut row_bytes = 2 + width.saturating_sub(1) + usize::from(!out.is_empty());
        for i in 0..width {
            let value = match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(f) => serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
                ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            };
            row_bytes += json_len(&value);
            values.push(value);
        }
        if bytes + row_bytes > limits.max_answer_bytes {
            if out.is_empty() {
                return Err(StoreError::TooLarge(format!(
                    "the first row alone is {row_bytes} bytes of JSON, more than the {} bytes an answer may hold: \
                     select a part of the large values (substr(x, 1, 1000), length(x)) instead of all of them",
                    limits.max_answer_bytes
                )));
            }
            stopped = Some("bytes");
            break;
        }
        bytes += row_bytes;
        out.push(values);
    }
    let message = stopped.map(|limit| match limit {
        "rows" => format!(
            "the answer stops at {} rows, the most one answer carries: add WHERE or LIMIT, or page with \
             ORDER BY and WHERE past the last row seen",
            limits.max_rows
        ),
        _ => format!(
            "the answer stops after {} rows, before {} bytes, the most one answer holds: select fewer or \
             shorter columns (substr(x, 1, 200), length(x)), or add WHERE or LIMIT",
            out.len(),
            limits.max_answer_bytes
        ),
    });
    Ok(SqlResult { columns, rows: out, truncated: stopped.is_some(), truncated_by: stopped, message })
}

/// The bytes `value` takes in compact JSON, as serde_json writes it.
fn json_len(value: &Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Number(n) => n.to_string().len(),
        Value::String(s) => {
            2 + s
                .bytes()
                .map(|b| match b {
                    b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
                    0..0x20 => 6,
                    _ => 1,
                })
                .sum::<usize>()
        }
        // Not produced from a row; counted generously.
        other => other.to_string().len(),
    }
}

/// Statements that write or change the connection, by their leading keyword.
const WRITE_KEYWORDS: [&str; 19] = [
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "CREATE",
    "DROP",
    "ALTER",
    "ATTACH",
    "DETACH",
    "PRAGMA",
    "BEGIN",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "VACUUM",
    "REINDEX",
    "ANALYZE",
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
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::TooBig => StoreError::TooLarge(format!(
            "a value in the query grew past {} bytes, the most one value may hold: work on a part of it \
             (substr(x, 1, 1000), length(x)) or build smaller values",
            limits.max_answer_bytes.min(1_000_000_000)
        )),
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::AuthorizationForStatementDenied => not_read_only(),
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ReadOnly => not_read_only(),
        rusqlite::Error::MultipleStatement => StoreError::InvalidQuery("send one statement per request (found more than one)".into()),
        rusqlite::Error::SqliteFailure(_, Some(msg)) => StoreError::InvalidQuery(format!("the query failed: {msg}")),
        _ => StoreError::InvalidQuery(format!("the query failed: {e}")),
    }
}
