//! Indexed lookups: by event id, correlation, causation (descendants and root), and DLQ records.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::{Store, StoreError};

/// Deepest causation chain followed; guards against cycles and runaway chains.
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
}

const EVENT_COLUMNS: &str =
    "seq, event_id, source, event_type, correlation_id, causation_id, subject, time, redeliveries, envelope";

impl EventRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
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
        })
    }
}

/// One dead-letter record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlqRow {
    pub id: i64,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub correlation_id: Option<String>,
    pub source_service: Option<String>,
    pub consumer: String,
    pub source_topic: Option<String>,
    pub error_type: String,
    pub error_message: String,
    pub failed_at: String,
    pub attempts: i64,
    pub status: String,
    pub content_type: Option<String>,
    pub original_event: String,
}

impl Store {
    /// The event with this id (the first stored, should two sources share an id).
    pub fn event(&self, event_id: &str) -> Result<Option<EventRow>, StoreError> {
        self.with_reader(|c| event_by_id(c, event_id))
    }

    /// Every event of a correlation, by time, at most `limit`.
    pub fn correlation(&self, correlation_id: &str, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE correlation_id = ?1 ORDER BY time, seq LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![correlation_id, limit as i64], EventRow::from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Every event caused directly or transitively by `event_id`, by time, at most `limit`.
    /// `None` when the event itself is not stored.
    pub fn descendants(&self, event_id: &str, limit: usize) -> Result<Option<Vec<EventRow>>, StoreError> {
        self.with_reader(|c| {
            if event_by_id(c, event_id)?.is_none() {
                return Ok(None);
            }
            // UNION (not UNION ALL) drops rows already seen, so a causation cycle terminates.
            let mut stmt = c.prepare_cached(&format!(
                "WITH RECURSIVE d(id, depth) AS (
                     SELECT ?1, 0
                     UNION
                     SELECT e.event_id, d.depth + 1 FROM events e JOIN d ON e.causation_id = d.id
                     WHERE d.depth < {MAX_CHAIN_DEPTH}
                 )
                 SELECT {EVENT_COLUMNS} FROM events
                 WHERE event_id IN (SELECT id FROM d WHERE depth > 0) AND event_id <> ?1
                 ORDER BY time, seq LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![event_id, limit as i64], EventRow::from_row)?;
            Ok(Some(rows.collect::<Result<Vec<_>, _>>()?))
        })
    }

    /// The originating event of `event_id`'s causation chain: follows causation ids up while the
    /// parent is stored. `None` when the event itself is not stored. The second value is the
    /// number of hops taken.
    pub fn root(&self, event_id: &str) -> Result<Option<(EventRow, usize)>, StoreError> {
        self.with_reader(|c| {
            let Some(mut current) = event_by_id(c, event_id)? else { return Ok(None) };
            let mut seen = HashSet::from([current.event_id.clone()]);
            let mut hops = 0;
            while let Some(parent_id) = current.causation_id.clone() {
                if !seen.insert(parent_id.clone()) || hops >= MAX_CHAIN_DEPTH {
                    break;
                }
                match event_by_id(c, &parent_id)? {
                    Some(parent) => {
                        current = parent;
                        hops += 1;
                    }
                    None => break,
                }
            }
            Ok(Some((current, hops)))
        })
    }

    /// DLQ records, newest first.
    pub fn dlq_records(&self, limit: usize) -> Result<Vec<DlqRow>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, event_id, event_type, correlation_id, source_service, consumer, source_topic,
                        error_type, error_message, failed_at, attempts, status, content_type, original_event
                 FROM dlq ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], |r| {
                Ok(DlqRow {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    event_type: r.get(2)?,
                    correlation_id: r.get(3)?,
                    source_service: r.get(4)?,
                    consumer: r.get(5)?,
                    source_topic: r.get(6)?,
                    error_type: r.get(7)?,
                    error_message: r.get(8)?,
                    failed_at: r.get(9)?,
                    attempts: r.get(10)?,
                    status: r.get(11)?,
                    content_type: r.get(12)?,
                    original_event: r.get(13)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Totals, read from the row ids (rows are never deleted), so this costs two index probes.
    pub fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.with_reader(|c| {
            let events: i64 = c.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?;
            let dlq: i64 = c.query_row("SELECT coalesce(max(id), 0) FROM dlq", [], |r| r.get(0))?;
            Ok(StoreCounts { events, dlq })
        })
    }
}

/// Totals kept by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    pub events: i64,
    pub dlq: i64,
}

fn event_by_id(c: &Connection, event_id: &str) -> Result<Option<EventRow>, StoreError> {
    let mut stmt =
        c.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1 ORDER BY seq LIMIT 1"))?;
    Ok(stmt.query_row(params![event_id], EventRow::from_row).optional()?)
}
