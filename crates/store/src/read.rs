//! Indexed lookups: by event id, correlation, causation (descendants and root), and DLQ records.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::{Origin, Store, StoreError};

/// Deepest causation chain `root` follows up; guards against runaway chains.
const MAX_CHAIN_DEPTH: usize = 10_000;

/// One stored event with its indexed attributes and its canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    pub seq: i64,
    pub event_id: String,
    pub source: String,
    pub event_type: String,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub subject: Option<String>,
    pub time: String,
    pub redeliveries: i64,
    /// Canonical CloudEvents JSON.
    pub envelope: String,
    /// When the store accepted it (canonical RFC 3339).
    pub received_at: String,
    /// Where a broker delivered it, if one did.
    pub origin: Origin,
}

pub(crate) const EVENT_COLUMNS: &str = r#"seq, event_id, source, event_type, correlation_id, causation_id, subject, time, redeliveries, envelope, received_at, topic, partition, "offset", message_time"#;

impl EventRow {
    pub(crate) fn from_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
        Ok(EventRow {
            seq: r.get(0)?,
            event_id: r.get(1)?,
            source: r.get(2)?,
            event_type: r.get(3)?,
            correlation_id: r.get(4)?,
            causation_id: r.get(5)?,
            subject: r.get(6)?,
            time: r.get(7)?,
            redeliveries: r.get(8)?,
            envelope: r.get(9)?,
            received_at: r.get(10)?,
            origin: Origin { topic: r.get(11)?, partition: r.get(12)?, offset: r.get(13)?, message_time: r.get(14)? },
        })
    }
}

impl Store {
    /// The event with this id (the first stored, should two sources share an id).
    pub fn event(&self, event_id: &str) -> Result<Option<EventRow>, StoreError> {
        self.with_reader(|c| event_by_id(c, event_id))
    }

    /// Every event of a correlation, by time, at most `limit`.
    pub fn correlation(&self, correlation_id: &str, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE correlation_id = ?1 ORDER BY time, seq LIMIT ?2"))?;
            let rows = stmt.query_map(params![correlation_id, limit as i64], EventRow::from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Every event caused directly or transitively by `event_id`, by time, at most `limit`.
    /// `None` when the event itself is not stored.
    pub fn descendants(&self, event_id: &str, limit: usize) -> Result<Option<Vec<EventRow>>, StoreError> {
        self.with_reader(|c| {
            // One snapshot for the whole walk, and one read lock instead of one per statement.
            let c = &c.unchecked_transaction()?;
            if link_by_id(c, event_id)?.is_none() {
                return Ok(None);
            }
            // A walk down the causation index, one indexed lookup per event reached: a
            // recursive CTE doing the same costs 10–30 times more here, in the ephemeral tables
            // for its UNION, its IN and its sort (`reprepare` example). Each event id is expanded
            // once, so a causation cycle ends the walk. Only ids and sort keys are kept until the
            // `limit` earliest are known; then their rows are read by `seq`.
            let mut children = c.prepare_cached("SELECT time, seq, event_id FROM events WHERE causation_id = ?1")?;
            let mut expanded = HashSet::from([event_id.to_string()]);
            let mut frontier = vec![event_id.to_string()];
            let mut found: Vec<(String, i64)> = Vec::new();
            while let Some(parent) = frontier.pop() {
                let mut rows = children.query(params![parent])?;
                while let Some(r) = rows.next()? {
                    let id: String = r.get(2)?;
                    if id == event_id {
                        continue;
                    }
                    found.push((r.get(0)?, r.get(1)?));
                    if expanded.insert(id.clone()) {
                        frontier.push(id);
                    }
                }
            }
            found.sort_unstable();
            found.truncate(limit);
            let rows = found.iter().map(|(_, seq)| event_by_seq(c, *seq));
            Ok(Some(rows.collect::<Result<Vec<_>, _>>()?))
        })
    }

    /// The originating event of `event_id`'s causation chain: follows causation ids up while the
    /// parent is stored. `None` when the event itself is not stored. The second value is the
    /// number of hops taken.
    pub fn root(&self, event_id: &str) -> Result<Option<(EventRow, usize)>, StoreError> {
        self.with_reader(|c| {
            let c = &c.unchecked_transaction()?;
            // The walk up reads links only; the root's whole row is read once, at the end.
            let Some(mut current) = link_by_id(c, event_id)? else { return Ok(None) };
            let mut seen = HashSet::from([event_id.to_string()]);
            let mut hops = 0;
            while let Some(parent_id) = current.causation_id.take() {
                if !seen.insert(parent_id.clone()) || hops >= MAX_CHAIN_DEPTH {
                    break;
                }
                match link_by_id(c, &parent_id)? {
                    Some(parent) => {
                        current = parent;
                        hops += 1;
                    }
                    None => break,
                }
            }
            Ok(Some((event_by_seq(c, current.seq)?, hops)))
        })
    }

    /// The journey instance an event belongs to (from the journey engine's derived rows): the
    /// event's own, else that of another event of its correlation.
    pub fn journey_of(&self, event_id: Option<&str>, correlation_id: Option<&str>) -> Result<Option<(String, String)>, StoreError> {
        self.with_reader(|c| {
            let pair = |r: &Row<'_>| Ok((r.get(0)?, r.get(1)?));
            if let Some(id) = event_id {
                let own = c
                    .prepare_cached(
                        "SELECT j.journey, j.journey_key FROM events e JOIN event_journeys j ON j.seq = e.seq
                         WHERE e.event_id = ?1 LIMIT 1",
                    )?
                    .query_row(params![id], pair)
                    .optional()?;
                if own.is_some() {
                    return Ok(own);
                }
            }
            let Some(correlation) = correlation_id else { return Ok(None) };
            Ok(c.prepare_cached(
                "SELECT j.journey, j.journey_key FROM events e JOIN event_journeys j ON j.seq = e.seq
                 WHERE e.correlation_id = ?1 ORDER BY e.time LIMIT 1",
            )?
            .query_row(params![correlation], pair)
            .optional()?)
        })
    }

    /// The log in ingest order after `after`: stored events and redeliveries, at most `limit`.
    pub fn log_after(&self, after: i64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, received_at, 0, envelope, CASE WHEN partition IS NULL THEN topic ELSE topic || '/' || partition END FROM (
                     SELECT seq, received_at, envelope, topic, partition FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2)
                 UNION ALL
                 SELECT r.seq, r.received_at, 1, e.envelope, NULL FROM (
                     SELECT seq, event_seq, received_at FROM redeliveries WHERE seq > ?1 ORDER BY seq LIMIT ?2) r
                 JOIN events e ON e.seq = r.event_seq
                 ORDER BY 1 LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit as i64], |r| {
                Ok(LogEntry { seq: r.get(0)?, received_at: r.get(1)?, redelivery: r.get(2)?, envelope: r.get(3)?, channel: r.get(4)? })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The model the journey engine's stored rows were derived under, and the log position they
    /// are derived up to (see [`DerivedWrite`]).
    ///
    /// [`DerivedWrite`]: crate::DerivedWrite
    pub fn derived_state(&self) -> Result<Option<(String, i64)>, StoreError> {
        self.with_reader(|c| {
            let meta = |key: &str| -> rusqlite::Result<Option<String>> {
                c.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0)).optional()
            };
            let Some(model) = meta("journey_model")? else { return Ok(None) };
            let position = meta("journey_position")?.and_then(|p| p.parse().ok()).unwrap_or(0);
            Ok(Some((model, position)))
        })
    }

    /// Rows of the key-value table `meta` whose key starts with `prefix`, by key.
    pub fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached("SELECT key, value FROM meta WHERE key >= ?1 AND key < ?1 || char(1114111) ORDER BY key")?;
            let rows = stmt.query_map(params![prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Findings, the most recently recorded first ([`findings_query`]).
    pub fn findings(&self, filter: &FindingFilter) -> Result<Vec<FindingRow>, StoreError> {
        let (sql, values) = findings_query(filter);
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(values.iter()), finding_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The findings of one journey instance, newest first: those raised about the instance (the
    /// engine's, and refused events' that name it), and those raised at ingest about any event
    /// that joined it (`schema_error`, `unknown_event_type`, …), found through its correlation ids
    /// and checked against the event's membership.
    pub fn instance_findings(&self, journey: &str, key: &str, correlation_ids: &[String], limit: usize) -> Result<Vec<FindingRow>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, kind, journey, journey_key, correlation_id, event_id, expected, detected_at,
                        resolved_at, detail, owner, rule
                 FROM finding_records WHERE journey = ?1 AND journey_key = ?2
                 UNION
                 SELECT f.id, f.kind, f.journey, f.journey_key, f.correlation_id, f.event_id, f.expected, f.detected_at,
                        f.resolved_at, f.detail, f.owner, f.rule
                 FROM finding_records f
                 WHERE f.correlation_id IN (SELECT value FROM json_each(?3)) AND f.engine_id IS NULL AND f.event_id IS NOT NULL
                   AND EXISTS (SELECT 1 FROM events e JOIN event_journeys m ON m.seq = e.seq
                               WHERE e.event_id = f.event_id AND m.journey = ?1 AND m.journey_key = ?2)
                 ORDER BY id DESC LIMIT ?4",
            )?;
            let ids = serde_json::to_string(correlation_ids).expect("strings");
            let rows = stmt.query_map(params![journey, key, ids, limit as i64], finding_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// How many findings of each of `kinds` are stored, open or not, counted on the kind index
    /// (its entries, not the rows). For the kinds raised at ingest, which never resolve, that is
    /// how many are open.
    pub fn count_findings(&self, kinds: &[&str]) -> Result<Vec<(String, i64)>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached("SELECT count(*) FROM finding_records INDEXED BY findings_kind WHERE kind = ?1")?;
            kinds.iter().map(|k| Ok((k.to_string(), stmt.query_row(params![k], |r| r.get(0))?))).collect()
        })
    }

    /// Which of `event_ids` carry a `schema_error` raised at ingest: one lookup per id through
    /// `findings_event`, in one statement.
    pub fn schema_errors_among(&self, event_ids: &[&str]) -> Result<std::collections::HashSet<String>, StoreError> {
        if event_ids.is_empty() {
            return Ok(Default::default());
        }
        let ids = serde_json::to_string(event_ids).expect("strings serialise");
        self.with_reader(|c| {
            let mut q = c.prepare_cached(
                "SELECT DISTINCT event_id FROM finding_records WHERE event_id IN (SELECT value FROM json_each(?1)) \
                 AND kind = 'schema_error' AND engine_id IS NULL",
            )?;
            Ok(q.query_map(params![ids], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Totals, read from the row ids (rows are never deleted), so this costs a few index probes.
    pub fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.with_reader(|c| {
            // Events and redeliveries share the ingest order; it has no other gaps.
            let log_end: i64 = c.query_row(crate::schema::LOG_END, [], |r| r.get(0))?;
            let redelivered: i64 = c.query_row("SELECT count(*) FROM redeliveries", [], |r| r.get(0))?;
            let dlq: i64 = c.query_row("SELECT coalesce(max(id), 0) FROM dlq", [], |r| r.get(0))?;
            Ok(StoreCounts { events: log_end - redelivered, dlq, log_end })
        })
    }
}

/// [`Store::findings`]'s statement and its values: only the filters given are named, so that
/// SQLite can use the index each one has (`findings_journey`, `findings_kind`, `findings_event`).
/// Written as `(?1 IS NULL OR kind = ?1)`, it scanned every finding, and a missing reaction's
/// dead letter is looked for by journey and key once per finding shown (1.2 s for 500 open
/// findings of 100,000).
fn findings_query(filter: &FindingFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    for (column, value) in [("kind", &filter.kind), ("journey", &filter.journey), ("journey_key", &filter.key), ("event_id", &filter.event_id)] {
        if let Some(v) = value {
            values.push(Value::Text(v.clone()));
            clauses.push(format!("{column} = ?{}", values.len()));
        }
    }
    // `+` keeps SQLite off `findings_open` for these: reading every open finding through it to
    // sort them by id took 0.2 s at 100,000 findings, where a walk down the ids stops at the
    // limit. `findings_kind` serves a time bound beside a kind.
    if let Some(since) = &filter.since {
        values.push(Value::Text(since.clone()));
        let column = if filter.kind.is_some() { "detected_at" } else { "+detected_at" };
        clauses.push(format!("{column} >= ?{}", values.len()));
    }
    if filter.open_only {
        clauses.push("+resolved_at IS NULL".into());
    }
    values.push(Value::Integer(filter.limit as i64));
    let sql = format!(
        "SELECT id, kind, journey, journey_key, correlation_id, event_id, expected, detected_at, resolved_at, detail, owner, rule
         FROM finding_records {} ORDER BY id DESC LIMIT ?{}",
        if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) },
        values.len()
    );
    (sql, values)
}

/// One entry of the log: a stored event, or a redelivery of one (its envelope as first stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: i64,
    pub received_at: String,
    pub redelivery: bool,
    pub envelope: String,
    /// The broker channel that delivered a stored event — `topic/partition` (Kafka) or the NATS
    /// subject — a source of evidence of its own for the watermark clock; `None` for HTTP
    /// ingest and for redeliveries.
    pub channel: Option<String>,
}

/// Which findings to list (`GET /v1/findings`).
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    pub kind: Option<String>,
    pub journey: Option<String>,
    pub key: Option<String>,
    /// RFC 3339: detected at or after.
    pub since: Option<String>,
    pub open_only: bool,
    /// Findings about this event.
    pub event_id: Option<String>,
    pub limit: usize,
}

/// A stored finding (PRODUCT §5): raised at ingest by the contracts, or by the journey engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingRow {
    pub id: i64,
    pub kind: String,
    pub journey: Option<String>,
    pub key: Option<String>,
    pub correlation_id: Option<String>,
    pub event_id: Option<String>,
    pub expected: Vec<String>,
    /// The policy or invariant that was broken, if any (only the journey engine's findings name one).
    pub rule: Option<String>,
    pub detected_at: String,
    pub resolved_at: Option<String>,
    pub detail: String,
    pub owner: Option<String>,
}

/// Totals kept by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    pub events: i64,
    pub dlq: i64,
    /// The last position of the log (events and redeliveries).
    pub log_end: i64,
}

/// An event's place in its causation chain: its seq and its causation id.
struct Link {
    seq: i64,
    causation_id: Option<String>,
}

/// The [`Link`] of the event [`event_by_id`] would return, without reading its row: a sealed
/// event's envelope stays compressed.
fn link_by_id(c: &Connection, event_id: &str) -> Result<Option<Link>, StoreError> {
    let mut stmt = c.prepare_cached("SELECT seq, causation_id FROM events WHERE event_id = ?1 ORDER BY seq LIMIT 1")?;
    Ok(stmt.query_row(params![event_id], |r| Ok(Link { seq: r.get(0)?, causation_id: r.get(1)? })).optional()?)
}

/// The stored event at log position `seq`.
fn event_by_seq(c: &Connection, seq: i64) -> Result<EventRow, StoreError> {
    Ok(c.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?1"))?.query_row(params![seq], EventRow::from_row)?)
}

fn event_by_id(c: &Connection, event_id: &str) -> Result<Option<EventRow>, StoreError> {
    let mut stmt = c.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1 ORDER BY seq LIMIT 1"))?;
    Ok(stmt.query_row(params![event_id], EventRow::from_row).optional()?)
}

/// A finding row from `SELECT id, kind, journey, journey_key, correlation_id, event_id, expected,
/// detected_at, resolved_at, detail, owner, rule`.
fn finding_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FindingRow> {
    Ok(FindingRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        journey: r.get(2)?,
        key: r.get(3)?,
        correlation_id: r.get(4)?,
        event_id: r.get(5)?,
        expected: r.get::<_, Option<String>>(6)?.map(|e| e.split(',').map(str::to_owned).collect()).unwrap_or_default(),
        detected_at: r.get(7)?,
        resolved_at: r.get(8)?,
        detail: r.get(9)?,
        owner: r.get(10)?,
        rule: r.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `/v1/findings?open=true&limit=500` took 1.2 s over 100,000 findings, because
    /// each missing reaction's dead letter was looked for with a statement that scanned every
    /// finding. Each filter now reaches its index, and open findings are read down the ids.
    #[test]
    fn findings_are_found_through_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let text = |s: &str| Some(s.to_string());
        for (filter, wanted) in [
            (
                FindingFilter { kind: text("missing_correlation"), journey: text("order"), key: text("o-1"), limit: 20, ..Default::default() },
                "INDEX findings_journey",
            ),
            (FindingFilter { event_id: text("e-1"), limit: 20, ..Default::default() }, "INDEX findings_event"),
            (FindingFilter { kind: text("stalled"), since: text("2026-12-01"), limit: 20, ..Default::default() }, "INDEX findings_kind"),
            (FindingFilter { open_only: true, since: text("2026-12-01"), limit: 500, ..Default::default() }, "SCAN finding_records"),
        ] {
            let (sql, values) = findings_query(&filter);
            let plan = store
                .with_reader(|c| {
                    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let rows = stmt.query_map(rusqlite::params_from_iter(values.iter()), |r| r.get::<_, String>(3))?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?.join("; "))
                })
                .unwrap();
            assert!(plan.contains(wanted), "{filter:?}: {plan}");
            // Open findings, the most of them all: read down the ids, not gathered and sorted.
            if filter.open_only {
                assert!(!plan.contains("TEMP B-TREE"), "{filter:?} sorts what it found instead of reading it in order: {plan}");
            }
        }
    }
}
