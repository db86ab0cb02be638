//! Events of one aggregate instance, for time travel: the events a read model folds.
//!
//! A read model keyed like a journey (the same payload pointer, the usual case) finds its events
//! through the correlation ids of the journey instance (every event carrying the key joined it, so
//! its correlation is among them) and the correlation index: nothing is added to ingest. One keyed
//! by `subject` uses the subject index. Any other pointer reads the events of the read model's
//! types and compares the key's value — correct, but a scan of those types.

use rusqlite::params;

use crate::read::{EVENT_COLUMNS, EventRow};
use crate::{Store, StoreError};

/// How to find the events of one aggregate instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateLookup {
    /// The events of these correlations: those of the journey instance keyed like the read model.
    /// They include events of the correlations without the key: check each event's key.
    Correlations(Vec<String>),
    /// By the envelope's subject.
    Subject,
    /// By the value at this payload pointer.
    Pointer(String),
}

/// The SQL expression of a payload pointer's value as text; `None` for a field name with a quote,
/// which SQLite's JSON path syntax cannot express.
fn pointer_expression(pointer: &str) -> Option<String> {
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

impl Store {
    /// The events of `types` in the instance `key` found by `lookup`, by event time (then ingest
    /// order), at most `limit`.
    pub fn aggregate_events(&self, lookup: &AggregateLookup, types: &[String], key: &str, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        // ?1 is what the lookup matches (the correlation ids as a JSON array, or the key), ?2 the
        // types as a JSON array, ?3 the limit.
        let in_types = "event_type IN (SELECT value FROM json_each(?2))";
        let (sql, matched) = match lookup {
            AggregateLookup::Correlations(ids) => (
                format!("SELECT {EVENT_COLUMNS} FROM events WHERE correlation_id IN (SELECT value FROM json_each(?1)) AND {in_types}"),
                serde_json::to_string(ids).expect("strings"),
            ),
            AggregateLookup::Subject => (format!("SELECT {EVENT_COLUMNS} FROM events WHERE subject = ?1 AND {in_types}"), key.to_string()),
            AggregateLookup::Pointer(pointer) => {
                let Some(expression) = pointer_expression(pointer) else {
                    return Err(StoreError::InvalidQuery(format!(
                        "the read model's key pointer {pointer} names a field with a quote in it, which the store cannot look up"
                    )));
                };
                (format!("SELECT {EVENT_COLUMNS} FROM events WHERE {in_types} AND {expression} = ?1"), key.to_string())
            }
        };
        let types = serde_json::to_string(types).expect("strings");
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(&format!("{sql} ORDER BY time, seq LIMIT ?3"))?;
            let rows = stmt.query_map(params![matched, types, limit as i64], EventRow::from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}
