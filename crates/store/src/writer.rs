//! The single writer thread and its group commit.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use causeway_envelope::Event;
use chrono::Utc;
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use crate::StoreError;

/// An accepted event to store. Its canonical JSON is rendered here, on the caller's thread, so the
/// single writer thread only writes.
#[derive(Debug, Clone)]
pub struct NewEvent {
    event: Event,
    envelope: String,
    time: String,
    /// The Kafka topic it came from, if any.
    pub topic: Option<String>,
    /// Findings about this event, stored with it unless it is a duplicate.
    pub findings: Vec<NewFinding>,
}

impl NewEvent {
    /// Takes the event as it will be stored: redact before, never after.
    pub fn new(event: Event) -> NewEvent {
        NewEvent { envelope: event.to_json(), time: event.time_string(), event, topic: None, findings: Vec::new() }
    }

    pub fn event(&self) -> &Event {
        &self.event
    }
}

/// A finding to store (PRODUCT §5). For an event's finding, the event and correlation ids are
/// taken from the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewFinding {
    pub kind: String,
    pub journey: Option<String>,
    pub journey_key: Option<String>,
    pub correlation_id: Option<String>,
    pub event_id: Option<String>,
    pub expected: Option<String>,
    pub detail: String,
    pub owner: Option<String>,
}

/// Input refused at ingest, kept as a dead-letter record with its reason.
#[derive(Debug, Clone, Default)]
pub struct NewRejection {
    pub original: String,
    pub content_type: Option<String>,
    pub error_type: String,
    pub error_message: String,
    /// Identity fields read from the input where it could be read, for finding it later.
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub correlation_id: Option<String>,
    pub source_service: Option<String>,
    pub source_topic: Option<String>,
    /// Findings about the refused input (e.g. `missing_correlation`).
    pub findings: Vec<NewFinding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Accepted,
    Duplicate,
}

/// What an append did, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    pub events: Vec<EventOutcome>,
    /// The DLQ record id of each rejection.
    pub dlq_ids: Vec<i64>,
}

struct Job {
    events: Vec<NewEvent>,
    rejections: Vec<NewRejection>,
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

pub(crate) struct WriterHandle {
    tx: mpsc::Sender<Job>,
    poisoned: Arc<Mutex<Option<String>>>,
}

/// Most rows one group commit takes before it commits and starts the next.
const MAX_ROWS_PER_COMMIT: usize = 50_000;

impl WriterHandle {
    pub(crate) fn spawn(conn: Connection) -> Result<WriterHandle, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let poisoned = Arc::new(Mutex::new(None));
        let flag = poisoned.clone();
        std::thread::Builder::new()
            .name("causeway-store-writer".into())
            .spawn(move || run(conn, rx, flag))
            .map_err(|e| StoreError::Io { path: "writer thread".into(), source: e })?;
        Ok(WriterHandle { tx, poisoned })
    }

    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        match self.poisoned.lock().expect("poison flag").clone() {
            Some(why) => Err(StoreError::Poisoned(why)),
            None => Ok(()),
        }
    }

    pub(crate) fn submit(
        &self,
        events: Vec<NewEvent>,
        rejections: Vec<NewRejection>,
    ) -> Result<oneshot::Receiver<Result<AppendResult, StoreError>>, StoreError> {
        self.check_writable()?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { events, rejections, reply })
            .map_err(|_| StoreError::WriterGone)?;
        Ok(rx)
    }
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Job>, poisoned: Arc<Mutex<Option<String>>>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut rows = jobs[0].events.len() + jobs[0].rejections.len();
        while rows < MAX_ROWS_PER_COMMIT {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.events.len() + job.rejections.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        if let Some(why) = poisoned.lock().expect("poison flag").clone() {
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::Poisoned(why.clone())));
            }
            continue;
        }
        match commit(&mut conn, &jobs) {
            Ok(results) => {
                for (job, result) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(Ok(result));
                }
            }
            Err(e) => {
                tracing::error!(message = "store commit failed; refusing further writes", error = %e);
                *poisoned.lock().expect("poison flag") = Some(e.to_string());
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::Poisoned(e.to_string())));
                }
            }
        }
    }
}

fn commit(conn: &mut Connection, jobs: &[Job]) -> Result<Vec<AppendResult>, StoreError> {
    let now = causeway_envelope::format_time(&Utc::now());
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(jobs.len());
    {
        // Only the identity conflict is ignored (never NOT NULL or other constraints); a
        // redelivery then costs one indexed update. Cheaper than an upsert with RETURNING.
        let mut insert_event = tx.prepare_cached(
            "INSERT INTO events (event_id, source, event_type, correlation_id, causation_id, subject, time,
                                 topic, received_at, envelope)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (event_id, source) DO NOTHING",
        )?;
        let mut count_redelivery = tx.prepare_cached(
            "UPDATE events SET redeliveries = redeliveries + 1 WHERE event_id = ?1 AND source = ?2",
        )?;
        let mut insert_finding = tx.prepare_cached(
            "INSERT INTO finding_records (kind, journey, journey_key, correlation_id, event_id, expected,
                                          detected_at, detail, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut add_finding = |f: &NewFinding, event_id: Option<&String>, correlation_id: Option<&String>| {
            insert_finding.execute(params![
                f.kind, f.journey, f.journey_key, f.correlation_id.as_ref().or(correlation_id),
                f.event_id.as_ref().or(event_id), f.expected, now, f.detail, f.owner
            ])
        };
        let mut insert_dlq = tx.prepare_cached(
            "INSERT INTO dlq (event_id, event_type, correlation_id, source_service, consumer, source_topic,
                              error_type, error_message, failed_at, last_failed_at, content_type, original_event)
             VALUES (?1, ?2, ?3, ?4, 'causeway', ?5, ?6, ?7, ?8, ?8, ?9, ?10)",
        )?;
        for job in jobs {
            let mut outcomes = Vec::with_capacity(job.events.len());
            for new in &job.events {
                let e = &new.event;
                let inserted = insert_event.execute(params![
                    e.id, e.source, e.event_type, e.correlation_id, e.causation_id, e.subject,
                    new.time, new.topic, now, new.envelope
                ])?;
                if inserted == 1 {
                    for f in &new.findings {
                        add_finding(f, Some(&e.id), e.correlation_id.as_ref())?;
                    }
                    outcomes.push(EventOutcome::Accepted);
                } else {
                    count_redelivery.execute(params![e.id, e.source])?;
                    outcomes.push(EventOutcome::Duplicate);
                }
            }
            let mut dlq_ids = Vec::with_capacity(job.rejections.len());
            for r in &job.rejections {
                insert_dlq.execute(params![
                    r.event_id, r.event_type, r.correlation_id, r.source_service, r.source_topic,
                    r.error_type, r.error_message, now, r.content_type, r.original
                ])?;
                dlq_ids.push(tx.last_insert_rowid());
                for f in &r.findings {
                    add_finding(f, r.event_id.as_ref(), r.correlation_id.as_ref())?;
                }
            }
            results.push(AppendResult { events: outcomes, dlq_ids });
        }
    }
    tx.commit()?;
    Ok(results)
}
