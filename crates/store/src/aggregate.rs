//! Events of one aggregate instance, for time travel: the events a read model folds, found by the
//! read model's key through an index instead of a scan.
//!
//! A read model keyed by a payload pointer gets a partial expression index on the key's value in
//! the stored envelope, limited to the event types it folds (so other events cost nothing to
//! index). The indexes follow the loaded model: [`Store::ensure_key_indexes`] creates the missing
//! ones and drops those no read model uses any more. Without its index a lookup is still correct,
//! only slower.

use rusqlite::params;

use crate::read::{EVENT_COLUMNS, EventRow};
use crate::{Store, StoreError};

/// How a read model finds its events: by the envelope's subject, or by the value at a pointer into
/// the payload; only events of `types`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndex {
    /// `None`: the envelope's subject.
    pub pointer: Option<String>,
    pub types: Vec<String>,
}

/// Prefix of the indexes this module owns.
const INDEX_PREFIX: &str = "events_key_";

impl KeyIndex {
    /// The SQL expression of the key's value as text; `None` for a pointer SQLite's JSON path
    /// syntax cannot express (such a read model's lookups scan its event types).
    fn expression(&self) -> Option<String> {
        let Some(pointer) = &self.pointer else { return Some("subject".to_string()) };
        let mut path = String::from("$.data");
        if pointer != "/" {
            for token in pointer.strip_prefix('/')?.split('/') {
                let token = token.replace("~1", "/").replace("~0", "~");
                if token.contains(['"', '\'']) {
                    return None;
                }
                path.push_str(&format!(".\"{token}\""));
            }
        }
        Some(format!("CAST(json_extract(envelope, '{path}') AS TEXT)"))
    }

    /// The event types as an SQL list of literals: a partial index is used only for a query whose
    /// WHERE repeats its condition literally.
    fn type_list(&self) -> String {
        self.types.iter().map(|t| format!("'{}'", t.replace('\'', "''"))).collect::<Vec<_>>().join(", ")
    }

    fn index_name(&self, expression: &str) -> String {
        // FNV-1a: stable across builds, unlike the std hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in expression.bytes().chain([0]).chain(self.type_list().bytes()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{INDEX_PREFIX}{hash:016x}")
    }

    /// `CREATE INDEX` for pointer keys (subject lookups use `events_subject`).
    fn create_sql(&self) -> Option<(String, String)> {
        self.pointer.as_ref()?;
        let expression = self.expression()?;
        let name = self.index_name(&expression);
        let sql = format!(
            "CREATE INDEX IF NOT EXISTS {name} ON events({expression}, time) WHERE event_type IN ({})",
            self.type_list()
        );
        Some((name, sql))
    }
}

impl Store {
    /// Creates the indexes `wanted` needs and drops the ones of earlier models. Blocking: creating
    /// an index reads every stored event of its types once.
    pub fn ensure_key_indexes(&self, wanted: &[KeyIndex]) -> Result<(), StoreError> {
        let creates: Vec<(String, String)> = wanted.iter().filter_map(KeyIndex::create_sql).collect();
        let existing: Vec<String> = self.with_reader(|c| {
            let mut stmt = c.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE ?1")?;
            let rows = stmt.query_map(params![format!("{INDEX_PREFIX}%")], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })?;
        let mut statements: Vec<String> = existing
            .iter()
            .filter(|name| !creates.iter().any(|(n, _)| n == *name))
            .map(|name| format!("DROP INDEX IF EXISTS {name}"))
            .collect();
        statements.extend(creates.into_iter().filter(|(n, _)| !existing.contains(n)).map(|(_, sql)| sql));
        if statements.is_empty() {
            return Ok(());
        }
        self.inner.writer.submit_schema(statements)?.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }

    /// The events of `index`'s types whose key is `value`, by event time (then ingest order), at
    /// most `limit`.
    pub fn aggregate_events(&self, index: &KeyIndex, value: &str, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        let Some(expression) = index.expression() else {
            return Err(StoreError::InvalidQuery(format!(
                "the read model's key pointer {} names a field with a quote in it, which the store cannot look up",
                index.pointer.as_deref().unwrap_or_default()
            )));
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE {expression} = ?1 AND event_type IN ({}) ORDER BY time, seq LIMIT ?2",
            index.type_list()
        );
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![value, limit as i64], EventRow::from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}
