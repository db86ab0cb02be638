//! Dead-letter records: consumers' failure reports and events refused at ingest, their status, the
//! audit of every replay, the explorer's filtered listing and the summary.
//!
//! **Invariants:**
//! - A record keeps the original event exactly as it was reported or received; nothing rewrites it.
//! - A consumer reporting the same event again (same consumer, event id and source) while its
//!   record is open (`pending` or `replayed`) updates that record — one more attempt, the latest
//!   error — instead of adding one.
//! - Status moves `pending` → `replayed` → `resolved`, or to `discarded` with a reason; a failed
//!   replay or a new failure report moves it back to `pending`.
//! - The summary's tallies and flow are kept by triggers in the same transaction as the change, so
//!   they always agree with the records.
//! - A report read from a broker message (a Kafka dead-letter topic's) is applied once: the
//!   message's topic, partition and offset are remembered with the record in the same
//!   transaction, and the same message reported again changes nothing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rusqlite::types::{ToSql, ValueRef};
use rusqlite::{OptionalExtension, Row, Transaction, params};
use serde::Serialize;

use crate::{Store, StoreError};

/// The consumer of the records of inputs causeway itself refused at ingest.
pub const INGEST_CONSUMER: &str = "causeway";

/// An event refused at ingest, as the SLIs count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestRefusal {
    pub id: i64,
    pub event_type: Option<String>,
    pub source: Option<String>,
    pub failed_at: String,
    /// The event's own time, as its producer wrote it, when the refused input has one.
    pub time: Option<String>,
}

/// Where a record is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DlqStatus {
    Pending,
    Replayed,
    Resolved,
    Discarded,
}

impl DlqStatus {
    pub const ALL: [DlqStatus; 4] = [DlqStatus::Pending, DlqStatus::Replayed, DlqStatus::Resolved, DlqStatus::Discarded];

    pub fn as_str(self) -> &'static str {
        match self {
            DlqStatus::Pending => "pending",
            DlqStatus::Replayed => "replayed",
            DlqStatus::Resolved => "resolved",
            DlqStatus::Discarded => "discarded",
        }
    }

    pub fn parse(text: &str) -> Option<DlqStatus> {
        DlqStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A consumer's report of an event it could not process.
#[derive(Debug, Clone, Default)]
pub struct DlqReport {
    /// The event exactly as the consumer sent it.
    pub original: String,
    /// The input's exact bytes when they are not UTF-8 text: kept in place of `original` (as a
    /// BLOB), so that a record keeps what was received byte for byte.
    pub original_bytes: Option<Vec<u8>>,
    pub content_type: Option<String>,
    pub consumer: String,
    pub source_topic: Option<String>,
    /// The partition of `source_topic` the message was read from (Kafka).
    pub source_partition: Option<i32>,
    /// Its offset (Kafka) or stream sequence (NATS).
    pub source_offset: Option<i64>,
    pub error_type: String,
    pub error_message: String,
    pub stack: Option<String>,
    /// A JSON object the consumer attached.
    pub context: Option<String>,
    /// When it failed (canonical RFC 3339); the time of the report when not given.
    pub failed_at: Option<String>,
    /// Identity read from the event where it could be read.
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub correlation_id: Option<String>,
    pub source_service: Option<String>,
    /// The key of the Kafka message the original came in, byte for byte (for a replay to Kafka).
    pub original_key: Option<Vec<u8>>,
    /// That message's headers in order, each value byte for byte (`None`: a header without one).
    pub original_headers: Option<Vec<(String, Option<Vec<u8>>)>>,
    /// The broker message this report was read from — a dead-letter topic's topic, partition and
    /// offset: reporting the same message again (a redelivery) changes nothing.
    pub received_as: Option<(String, i32, i64)>,
}

/// What a report did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reported {
    pub id: i64,
    pub attempts: i64,
    pub status: DlqStatus,
    /// True when it updated the open record of an earlier report of the same event.
    pub repeated: bool,
}

/// The result of one replay attempt, to audit and apply to the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Nothing was sent.
    DryRun,
    /// The target accepted it: the record becomes `replayed`.
    Sent { http_status: u16 },
    /// The Kafka broker acknowledged it at this partition and offset: the record becomes `replayed`.
    Published { partition: i32, offset: i64 },
    /// The target refused it or could not be reached: the record is `pending` with this error.
    Failed { http_status: Option<u16>, error: String },
}

impl ReplayOutcome {
    /// As audited: the outcome's name, the target's HTTP status, the error.
    pub fn parts(&self) -> (&'static str, Option<u16>, Option<&str>) {
        match self {
            ReplayOutcome::DryRun => ("dry_run", None, None),
            ReplayOutcome::Sent { http_status } => ("sent", Some(*http_status), None),
            ReplayOutcome::Published { .. } => ("sent", None, None),
            ReplayOutcome::Failed { http_status, error } => ("failed", *http_status, Some(error.as_str())),
        }
    }

    /// The record's status after this outcome, from `before`.
    pub fn status_after(&self, before: DlqStatus) -> DlqStatus {
        match self {
            ReplayOutcome::DryRun => before,
            ReplayOutcome::Sent { .. } | ReplayOutcome::Published { .. } => DlqStatus::Replayed,
            ReplayOutcome::Failed { .. } => DlqStatus::Pending,
        }
    }

    /// Where a replay to Kafka was written: partition and offset.
    pub fn written(&self) -> Option<(i32, i64)> {
        match self {
            ReplayOutcome::Published { partition, offset } => Some((*partition, *offset)),
            _ => None,
        }
    }
}

/// One replay attempt, audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayAttempt {
    pub dlq_id: i64,
    pub actor: String,
    pub target: Option<String>,
    pub forced: bool,
    pub outcome: ReplayOutcome,
}

/// A status change asked for by a person (discard, resolve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub id: i64,
    pub to: DlqStatus,
    pub reason: Option<String>,
    /// The change applies only from these statuses.
    pub from: Vec<DlqStatus>,
}

/// A write to the DLQ, done by the writer thread in a durable commit.
#[derive(Debug, Clone)]
pub(crate) enum DlqOp {
    Report(Box<DlqReport>),
    /// Several reports in one commit, in order.
    Reports(Vec<DlqReport>),
    Replay(ReplayAttempt),
    Status(StatusChange),
}

/// What a [`DlqOp`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DlqDone {
    Reported(Reported),
    ReportedEach(Vec<Reported>),
    /// The audit row's id.
    Replayed(i64),
    /// Whether the status changed.
    Status(bool),
}

pub(crate) fn apply(tx: &Transaction<'_>, op: &DlqOp, now: &str) -> Result<DlqDone, StoreError> {
    match op {
        DlqOp::Report(r) => report(tx, r, now).map(DlqDone::Reported),
        DlqOp::Reports(reports) => reports.iter().map(|r| report(tx, r, now)).collect::<Result<_, _>>().map(DlqDone::ReportedEach),
        DlqOp::Replay(a) => replay(tx, a, now).map(DlqDone::Replayed),
        DlqOp::Status(c) => {
            let from: Vec<&str> = c.from.iter().map(|s| s.as_str()).collect();
            let changed = tx.execute(
                "UPDATE dlq SET status = ?2, status_reason = ?3, status_changed_at = ?4
                 WHERE id = ?1 AND status IN (SELECT value FROM json_each(?5))",
                params![c.id, c.to.as_str(), c.reason, now, serde_json::to_string(&from).expect("strings")],
            )?;
            Ok(DlqDone::Status(changed == 1))
        }
    }
}

fn report(tx: &Transaction<'_>, r: &DlqReport, now: &str) -> Result<Reported, StoreError> {
    if let Some((topic, partition, offset)) = &r.received_as {
        let before: Option<(i64, i64, String)> = tx
            .prepare_cached(
                "SELECT d.id, d.attempts, d.status FROM dlq_messages m JOIN dlq d ON d.id = m.dlq_id
                 WHERE m.topic = ?1 AND m.partition = ?2 AND m.\"offset\" = ?3",
            )?
            .query_row(params![topic, partition, offset], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .optional()?;
        if let Some((id, attempts, status)) = before {
            let status = DlqStatus::parse(&status).unwrap_or(DlqStatus::Pending);
            return Ok(Reported { id, attempts, status, repeated: true });
        }
        let reported = first_report(tx, r, now)?;
        tx.prepare_cached("INSERT INTO dlq_messages (topic, partition, \"offset\", dlq_id) VALUES (?1, ?2, ?3, ?4)")?.execute(params![
            topic,
            partition,
            offset,
            reported.id
        ])?;
        return Ok(reported);
    }
    first_report(tx, r, now)
}

/// A report not seen before: a new record, or one more attempt on the open record of its event.
fn first_report(tx: &Transaction<'_>, r: &DlqReport, now: &str) -> Result<Reported, StoreError> {
    let failed_at = r.failed_at.as_deref().unwrap_or(now);
    if r.event_id.is_some() {
        let open: Option<i64> = tx
            .prepare_cached(
                // INDEXED BY: without it the planner may walk the table backwards for the ORDER BY.
                "SELECT id FROM dlq INDEXED BY dlq_event
                 WHERE event_id = ?1 AND source_service IS ?2 AND consumer = ?3 AND status IN ('pending', 'replayed')
                 ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![r.event_id, r.source_service, r.consumer], |row| row.get(0))
            .optional()?;
        if let Some(id) = open {
            let attempts: i64 = tx
                .prepare_cached(
                    "UPDATE dlq SET attempts = attempts + 1, last_failed_at = max(last_failed_at, ?2),
                         error_type = ?3, error_message = ?4, stack = coalesce(?5, stack),
                         context = coalesce(?6, context), source_topic = coalesce(?7, source_topic),
                         status = 'pending',
                         status_changed_at = CASE WHEN status = 'pending' THEN status_changed_at ELSE ?8 END
                     WHERE id = ?1 RETURNING attempts",
                )?
                .query_row(params![id, failed_at, r.error_type, r.error_message, r.stack, r.context, r.source_topic, now], |row| row.get(0))?;
            return Ok(Reported { id, attempts, status: DlqStatus::Pending, repeated: true });
        }
    }
    Ok(Reported { id: insert(tx, r, now)?, attempts: 1, status: DlqStatus::Pending, repeated: false })
}

/// Adds `r` as a new pending record (first failed at `r.failed_at`, else `now`); its id.
pub(crate) fn insert(tx: &Transaction<'_>, r: &DlqReport, now: &str) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO dlq (event_id, event_type, correlation_id, source_service, consumer, source_topic, error_type,
                          error_message, failed_at, last_failed_at, content_type, original_event, stack, context,
                          source_partition, source_offset, original_key, original_headers)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        r.event_id,
        r.event_type,
        r.correlation_id,
        r.source_service,
        r.consumer,
        r.source_topic,
        r.error_type,
        r.error_message,
        r.failed_at.as_deref().unwrap_or(now),
        r.content_type,
        original_value(r),
        r.stack,
        r.context,
        r.source_partition,
        r.source_offset,
        r.original_key,
        headers_json(r)
    ])?;
    Ok(tx.last_insert_rowid())
}

/// A message's headers as stored: JSON `[[name, base64 value or null], …]`.
fn headers_json(r: &DlqReport) -> Option<String> {
    let headers = r.original_headers.as_ref()?;
    let pairs: Vec<(&str, Option<String>)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_deref().map(|v| BASE64.encode(v)))).collect();
    Some(serde_json::to_string(&pairs).expect("strings"))
}

/// Headers as [`headers_json`] stored them; `None` when the text is not that.
fn headers_from_json(text: &str) -> Option<Vec<(String, Option<Vec<u8>>)>> {
    let pairs: Vec<(String, Option<String>)> = serde_json::from_str(text).ok()?;
    pairs.into_iter().map(|(n, v)| Some((n, v.map(|v| BASE64.decode(v)).transpose().ok()?))).collect()
}

/// The record already made for this broker message by the same consumer (the message delivered
/// again after a crash before its position was committed), if any.
pub(crate) fn refused_before(tx: &Transaction<'_>, r: &DlqReport) -> Result<Option<i64>, StoreError> {
    let (Some(topic), Some(offset)) = (&r.source_topic, r.source_offset) else { return Ok(None) };
    Ok(tx
        .prepare_cached(
            "SELECT id FROM dlq INDEXED BY dlq_origin
             WHERE source_topic = ?1 AND source_offset = ?2 AND source_partition IS ?3 AND consumer = ?4 LIMIT 1",
        )?
        .query_row(params![topic, offset, r.source_partition, r.consumer], |row| row.get(0))
        .optional()?)
}

/// The original as stored: text, or a BLOB of the exact bytes when they are not UTF-8.
fn original_value(r: &DlqReport) -> rusqlite::types::Value {
    match &r.original_bytes {
        Some(bytes) => rusqlite::types::Value::Blob(bytes.clone()),
        None => rusqlite::types::Value::Text(r.original.clone()),
    }
}

fn replay(tx: &Transaction<'_>, a: &ReplayAttempt, now: &str) -> Result<i64, StoreError> {
    let (outcome, http_status, error) = a.outcome.parts();
    let (partition, offset) = a.outcome.written().unzip();
    tx.prepare_cached(
        "INSERT INTO dlq_replays (dlq_id, at, actor, target, dry_run, forced, outcome, http_status, error, partition, \"offset\")
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        a.dlq_id,
        now,
        a.actor,
        a.target,
        a.outcome == ReplayOutcome::DryRun,
        a.forced,
        outcome,
        http_status,
        error,
        partition,
        offset
    ])?;
    let audit_id = tx.last_insert_rowid();
    match &a.outcome {
        ReplayOutcome::DryRun => {}
        ReplayOutcome::Sent { .. } | ReplayOutcome::Published { .. } => {
            tx.prepare_cached(
                "UPDATE dlq SET status = 'replayed', replays = replays + 1, last_error = NULL,
                     status_reason = NULL, status_changed_at = ?2
                 WHERE id = ?1",
            )?
            .execute(params![a.dlq_id, now])?;
        }
        ReplayOutcome::Failed { error, .. } => {
            tx.prepare_cached(
                "UPDATE dlq SET status = 'pending', attempts = attempts + 1, last_failed_at = ?2, last_error = ?3,
                     status_changed_at = CASE WHEN status = 'pending' THEN status_changed_at ELSE ?2 END
                 WHERE id = ?1",
            )?
            .execute(params![a.dlq_id, now, error])?;
        }
    }
    Ok(audit_id)
}

/// Marks the open records of `event_id` held by one of `consumers` resolved: the reaction they
/// failed to produce has arrived. Used by the journey engine's derived writes.
pub(crate) fn resolve_for_event(tx: &Transaction<'_>, event_id: &str, consumers: &[String], reason: &str, at: &str) -> Result<(), StoreError> {
    // The records of `consumers` (the services the model says react); when none of them reported
    // the event — consumers report under their own names, often a consumer group's — the oldest
    // open record of another consumer, the one a missing reaction links to.
    tx.prepare_cached(
        "UPDATE dlq SET status = 'resolved', status_reason = ?3, status_changed_at = ?4
         WHERE id IN (
             SELECT id FROM dlq WHERE event_id = ?1 AND status IN ('pending', 'replayed') AND consumer IN (SELECT value FROM json_each(?2))
             UNION ALL
             SELECT id FROM (SELECT min(id) AS id FROM dlq WHERE event_id = ?1 AND status IN ('pending', 'replayed') AND consumer != ?5)
              WHERE id IS NOT NULL AND NOT EXISTS (
                  SELECT 1 FROM dlq WHERE event_id = ?1 AND status IN ('pending', 'replayed') AND consumer IN (SELECT value FROM json_each(?2))))",
    )?
    .execute(params![event_id, serde_json::to_string(consumers).expect("strings"), reason, at, crate::INGEST_CONSUMER])?;
    Ok(())
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
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub error_type: String,
    pub error_message: String,
    pub failed_at: String,
    pub last_failed_at: String,
    pub attempts: i64,
    pub status: String,
    pub status_reason: Option<String>,
    pub status_changed_at: Option<String>,
    pub last_error: Option<String>,
    pub replays: i64,
    pub content_type: Option<String>,
    pub stack: Option<String>,
    /// JSON text.
    pub context: Option<String>,
    /// The input as received, when it is UTF-8 text; left out of listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_event: Option<String>,
    /// The input as received, when it is not UTF-8 text (then `original_event` is `None`).
    #[serde(skip)]
    pub original_bytes: Option<Vec<u8>>,
    /// The key of the Kafka message the original came in (read with the original).
    #[serde(skip)]
    pub original_key: Option<Vec<u8>>,
    /// That message's headers, in order (read with the original).
    #[serde(skip)]
    pub original_headers: Option<Vec<(String, Option<Vec<u8>>)>>,
}

const ROW_COLUMNS: &str = "id, event_id, event_type, correlation_id, source_service, consumer, source_topic, error_type,
     error_message, failed_at, last_failed_at, attempts, status, status_reason, status_changed_at, last_error,
     replays, content_type, stack, context, source_partition, source_offset";

impl DlqRow {
    fn from_row(r: &Row<'_>, with_original: bool) -> rusqlite::Result<DlqRow> {
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
            last_failed_at: r.get(10)?,
            attempts: r.get(11)?,
            status: r.get(12)?,
            status_reason: r.get(13)?,
            status_changed_at: r.get(14)?,
            last_error: r.get(15)?,
            replays: r.get(16)?,
            content_type: r.get(17)?,
            stack: r.get(18)?,
            context: r.get(19)?,
            source_partition: r.get(20)?,
            source_offset: r.get(21)?,
            original_event: None,
            original_bytes: None,
            original_key: if with_original { r.get(23)? } else { None },
            original_headers: if with_original { r.get::<_, Option<String>>(24)?.as_deref().and_then(headers_from_json) } else { None },
        }
        .with_original(if with_original { Some(r.get_ref(22)?) } else { None }))
    }

    fn with_original(mut self, original: Option<ValueRef<'_>>) -> DlqRow {
        match original {
            Some(ValueRef::Text(t) | ValueRef::Blob(t)) => match std::str::from_utf8(t) {
                Ok(text) => self.original_event = Some(text.to_owned()),
                Err(_) => self.original_bytes = Some(t.to_vec()),
            },
            Some(ValueRef::Integer(n)) => self.original_event = Some(n.to_string()),
            Some(ValueRef::Real(f)) => self.original_event = Some(f.to_string()),
            Some(ValueRef::Null) | None => {}
        }
        self
    }

    /// The input exactly as received (for a record read with its original).
    pub fn original(&self) -> Option<&[u8]> {
        self.original_event.as_deref().map(str::as_bytes).or(self.original_bytes.as_deref())
    }
}

/// Which records to list. Newest first, unless `oldest_first`; `before`/`after` page by id.
#[derive(Debug, Clone, Default)]
pub struct DlqFilter {
    pub status: Option<DlqStatus>,
    pub consumer: Option<String>,
    pub source_topic: Option<String>,
    pub error_type: Option<String>,
    pub correlation_id: Option<String>,
    pub event_id: Option<String>,
    /// Canonical RFC 3339: last failed at or after.
    pub since: Option<String>,
    /// Canonical RFC 3339: first failed at or before.
    pub failed_until: Option<String>,
    /// Words in the error message.
    pub text: Option<String>,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub oldest_first: bool,
    pub limit: usize,
}

/// Shortest text the trigram index can search; shorter text (and text holding a NUL character,
/// which FTS5 cannot take) is matched by a scan.
const MIN_INDEXED_TEXT: usize = 3;

/// One audited replay attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub target: Option<String>,
    pub dry_run: bool,
    pub forced: bool,
    pub outcome: String,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    /// A replay to Kafka: the partition and offset the broker wrote it at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// The state of the DLQ at a glance (`GET /v1/dlq/summary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlqSummary {
    pub pending: i64,
    pub by_status: Vec<(String, i64)>,
    /// First failure of the oldest pending record.
    pub oldest_pending_failed_at: Option<String>,
    pub inflow_last_hour: i64,
    pub outflow_last_hour: i64,
    /// Pending records, most first.
    pub by_source_topic: Vec<(String, i64)>,
    pub by_error_type: Vec<(String, i64)>,
    pub by_consumer: Vec<(String, i64)>,
    /// The last 24 hours, oldest first, one bucket per hour (the last one is the current hour).
    pub trend: Vec<FlowBucket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowBucket {
    /// Start of the hour, seconds since the epoch.
    pub hour: i64,
    pub inflow: i64,
    pub outflow: i64,
}

impl Store {
    /// Stores a consumer's failure report (or updates the open record of an earlier one).
    pub async fn report_failure(&self, report: DlqReport) -> Result<Reported, StoreError> {
        match self.dlq_write(DlqOp::Report(Box::new(report))).await? {
            DlqDone::Reported(r) => Ok(r),
            other => unreachable!("a report answers Reported, not {other:?}"),
        }
    }

    /// Stores several failure reports in one commit, each as [`Store::report_failure`] would; a
    /// report whose `received_as` message was reported before changes nothing and answers the
    /// record it made.
    pub async fn report_failures(&self, reports: Vec<DlqReport>) -> Result<Vec<Reported>, StoreError> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        match self.dlq_write(DlqOp::Reports(reports)).await? {
            DlqDone::ReportedEach(r) => Ok(r),
            other => unreachable!("reports answer ReportedEach, not {other:?}"),
        }
    }

    /// Audits a replay attempt and applies its outcome to the record. Returns the audit id.
    pub async fn record_replay(&self, attempt: ReplayAttempt) -> Result<i64, StoreError> {
        match self.dlq_write(DlqOp::Replay(attempt)).await? {
            DlqDone::Replayed(id) => Ok(id),
            other => unreachable!("a replay answers Replayed, not {other:?}"),
        }
    }

    /// Changes a record's status if it is in one of `change.from`; `false` when it was not.
    pub async fn change_dlq_status(&self, change: StatusChange) -> Result<bool, StoreError> {
        match self.dlq_write(DlqOp::Status(change)).await? {
            DlqDone::Status(changed) => Ok(changed),
            other => unreachable!("a status change answers Status, not {other:?}"),
        }
    }

    async fn dlq_write(&self, op: DlqOp) -> Result<DlqDone, StoreError> {
        self.inner.writer.submit_dlq(op)?.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Records matching `filter`.
    pub fn dlq_list(&self, filter: &DlqFilter) -> Result<Vec<DlqRow>, StoreError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut values: Vec<Box<dyn ToSql>> = Vec::new();
        let mut add = |clause: &str, value: Box<dyn ToSql>| {
            values.push(value);
            clauses.push(clause.replace('?', &format!("?{}", values.len())));
        };
        if let Some(s) = filter.status {
            add("status = ?", Box::new(s.as_str()));
        }
        for (column, value) in [
            ("consumer", &filter.consumer),
            ("source_topic", &filter.source_topic),
            ("error_type", &filter.error_type),
            ("correlation_id", &filter.correlation_id),
            ("event_id", &filter.event_id),
        ] {
            if let Some(v) = value {
                add(&format!("{column} = ?"), Box::new(v.clone()));
            }
        }
        if let Some(since) = &filter.since {
            add("last_failed_at >= ?", Box::new(since.clone()));
        }
        if let Some(until) = &filter.failed_until {
            add("failed_at <= ?", Box::new(until.clone()));
        }
        if let Some(before) = filter.before {
            add("id < ?", Box::new(before));
        }
        if let Some(after) = filter.after {
            add("id > ?", Box::new(after));
        }
        // Text of three characters or more is found through the trigram index, which then drives
        // the query in id order, so a common word stops at `limit` matches instead of collecting
        // them all first.
        let mut from = "dlq".to_string();
        let mut columns = ROW_COLUMNS.to_string();
        let mut order_by = "id";
        if let Some(text) = &filter.text {
            // FTS5 reads its query as a C string: a NUL ends it mid-phrase ("unterminated string").
            if text.chars().count() >= MIN_INDEXED_TEXT && !text.contains('\0') {
                let phrase = format!("\"{}\"", text.replace('"', "\"\""));
                add("dlq_text MATCH ?", Box::new(phrase));
                from = "dlq_text JOIN dlq ON dlq.id = dlq_text.rowid".into();
                columns = ROW_COLUMNS.split(',').map(|c| format!("dlq.{}", c.trim())).collect::<Vec<_>>().join(", ");
                order_by = "dlq_text.rowid";
            } else {
                add("instr(error_message, ?) > 0", Box::new(text.clone()));
            }
        }
        values.push(Box::new(filter.limit as i64));
        let order = if filter.oldest_first { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {columns} FROM {from} {} ORDER BY {order_by} {order} LIMIT ?{}",
            if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) },
            values.len()
        );
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let params: Vec<&dyn ToSql> = values.iter().map(|v| v.as_ref()).collect();
            let rows = stmt.query_map(params.as_slice(), |r| DlqRow::from_row(r, false))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// One record with its original event, and its replay audit, oldest first.
    pub fn dlq_record(&self, id: i64) -> Result<Option<(DlqRow, Vec<ReplayRow>)>, StoreError> {
        self.with_reader(|c| {
            let row = c
                .prepare_cached(&format!("SELECT {ROW_COLUMNS}, original_event, original_key, original_headers FROM dlq WHERE id = ?1"))?
                .query_row(params![id], |r| DlqRow::from_row(r, true))
                .optional()?;
            let Some(row) = row else { return Ok(None) };
            let mut stmt = c.prepare_cached(
                "SELECT id, at, actor, target, dry_run, forced, outcome, http_status, error, partition, \"offset\"
                 FROM dlq_replays WHERE dlq_id = ?1 ORDER BY id",
            )?;
            let replays = stmt
                .query_map(params![id], |r| {
                    Ok(ReplayRow {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        actor: r.get(2)?,
                        target: r.get(3)?,
                        dry_run: r.get(4)?,
                        forced: r.get(5)?,
                        outcome: r.get(6)?,
                        http_status: r.get(7)?,
                        error: r.get(8)?,
                        partition: r.get(9)?,
                        offset: r.get(10)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some((row, replays)))
        })
    }

    /// Events refused at ingest (records of [`INGEST_CONSUMER`]) after record `after`, oldest
    /// first, at most `limit`. What the `event_success` SLIs count as bad beside the events
    /// stored; read by id through `dlq_consumer`.
    pub fn ingest_refusals_after(&self, after: i64, limit: usize) -> Result<Vec<IngestRefusal>, StoreError> {
        self.with_reader(|c| {
            let mut q = c.prepare_cached(
                "SELECT id, event_type, source_service, failed_at, CASE WHEN json_valid(original_event) THEN \
                        coalesce(json_extract(original_event, '$.time'), json_extract(original_event, '$.metadata.timestamp')) END \
                 FROM dlq INDEXED BY dlq_consumer WHERE consumer = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = q.query_map(params![INGEST_CONSUMER, after, limit as i64], |r| {
                let time: Option<rusqlite::types::Value> = r.get(4)?;
                let time = match time {
                    Some(rusqlite::types::Value::Text(t)) => Some(t),
                    _ => None,
                };
                Ok(IngestRefusal { id: r.get(0)?, event_type: r.get(1)?, source: r.get(2)?, failed_at: r.get(3)?, time })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Records by event type (every status; records without a type under `""`), most first: the
    /// overview's failures per type. A scan of the records, which are few next to the events.
    pub fn dlq_by_event_type(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.with_reader(|c| {
            let mut q = c.prepare_cached("SELECT coalesce(event_type, ''), count(*) FROM dlq GROUP BY 1 ORDER BY 2 DESC, 1")?;
            Ok(q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The summary as of `now` (seconds since the epoch), read from the tallies: its cost does
    /// not grow with the number of records.
    pub fn dlq_summary(&self, now: i64) -> Result<DlqSummary, StoreError> {
        self.with_reader(|c| {
            let mut tally =
                c.prepare_cached("SELECT value, records FROM dlq_tally WHERE dimension = ?1 AND records > 0 ORDER BY records DESC, value")?;
            let mut by = |dimension: &str| -> rusqlite::Result<Vec<(String, i64)>> {
                tally.query_map(params![dimension], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
            };
            let by_status = by("status")?;
            let (by_source_topic, by_error_type, by_consumer) = (by("source_topic")?, by("error_type")?, by("consumer")?);
            let pending = by_status.iter().find(|(s, _)| s == "pending").map_or(0, |(_, n)| *n);
            let oldest_pending_failed_at: Option<String> =
                c.prepare_cached("SELECT min(failed_at) FROM dlq WHERE status = 'pending'")?.query_row([], |r| r.get(0))?;
            let minute = now.div_euclid(60);
            let (inflow_last_hour, outflow_last_hour): (i64, i64) = c
                .prepare_cached("SELECT coalesce(sum(inflow), 0), coalesce(sum(outflow), 0) FROM dlq_flow WHERE minute > ?1 AND minute <= ?2")?
                .query_row(params![minute - 60, minute], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let hour = now.div_euclid(3600);
            let mut trend: Vec<FlowBucket> = (hour - 23..=hour).map(|h| FlowBucket { hour: h * 3600, inflow: 0, outflow: 0 }).collect();
            let mut stmt = c.prepare_cached(
                "SELECT minute / 60, sum(inflow), sum(outflow) FROM dlq_flow
                 WHERE minute >= ?1 AND minute < ?2 GROUP BY 1",
            )?;
            let rows =
                stmt.query_map(params![(hour - 23) * 60, (hour + 1) * 60], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
            for row in rows {
                let (h, inflow, outflow) = row?;
                if let Some(bucket) = trend.get_mut((h - (hour - 23)) as usize) {
                    bucket.inflow = inflow;
                    bucket.outflow = outflow;
                }
            }
            Ok(DlqSummary {
                pending,
                by_status,
                oldest_pending_failed_at,
                inflow_last_hour,
                outflow_last_hour,
                by_source_topic,
                by_error_type,
                by_consumer,
                trend,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(offset: i64, message: &str) -> DlqReport {
        DlqReport {
            original: r#"{"id":"e-1"}"#.into(),
            consumer: "billing".into(),
            error_type: "Declined".into(),
            error_message: message.into(),
            event_id: Some("e-1".into()),
            original_key: Some(vec![0xff, 0x00]),
            original_headers: Some(vec![("a".into(), Some(b"1".to_vec())), ("b".into(), None), ("c".into(), Some(vec![0x80]))]),
            received_as: Some(("payments.dlq".into(), 0, offset)),
            ..Default::default()
        }
    }

    /// A dead-letter message stored again (a redelivery) answers its record and changes nothing;
    /// another message of the same failure is one more attempt; key and headers come back as kept.
    #[tokio::test]
    async fn a_redelivered_dead_letter_changes_nothing_and_the_message_parts_are_kept_with_their_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store.report_failures(vec![dead_letter(5, "first"), dead_letter(6, "second")]).await.unwrap();
        assert_eq!((first[0].id, first[0].attempts, first[1].id, first[1].attempts, first[1].repeated), (first[0].id, 1, first[0].id, 2, true));
        let again = store.report_failures(vec![dead_letter(5, "first"), dead_letter(6, "second")]).await.unwrap();
        assert!(again.iter().all(|r| r.id == first[0].id && r.attempts == 2 && r.repeated), "{again:?}");
        let (row, _) = store.dlq_record(first[0].id).unwrap().unwrap();
        assert_eq!((row.attempts, row.error_message.as_str()), (2, "second"));
        assert_eq!(row.original_key, Some(vec![0xff, 0x00]));
        assert_eq!(row.original_headers, dead_letter(5, "").original_headers);
        // A message refused at ingest keeps its key and headers, written with its record; the
        // same message delivered again finds that record.
        let refused = DlqReport {
            original: "{bad".into(),
            consumer: INGEST_CONSUMER.into(),
            error_type: "malformed_json".into(),
            source_topic: Some("payments".into()),
            source_partition: Some(1),
            source_offset: Some(9),
            original_key: Some(b"k".to_vec()),
            original_headers: Some(vec![("h".into(), Some(b"v".to_vec()))]),
            ..Default::default()
        };
        let rejection = || crate::NewRejection { record: refused.clone(), findings: Vec::new() };
        let id = store.append(Vec::new(), vec![rejection()]).await.unwrap().dlq_ids[0];
        let (row, _) = store.dlq_record(id).unwrap().unwrap();
        assert_eq!((row.original_key, row.original_headers), (Some(b"k".to_vec()), Some(vec![("h".into(), Some(b"v".to_vec()))])));
        assert_eq!(store.append(Vec::new(), vec![rejection()]).await.unwrap().dlq_ids, [id], "a redelivery makes no second record");
    }

    #[test]
    fn headers_round_trip_through_their_json() {
        let r = dead_letter(0, "");
        assert_eq!(headers_from_json(&headers_json(&r).unwrap()), r.original_headers);
        assert_eq!(headers_json(&r).unwrap(), r#"[["a","MQ=="],["b",null],["c","gA=="]]"#);
        assert_eq!(headers_from_json("not json"), None);
    }
}
