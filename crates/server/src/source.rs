//! What the broker sources (Kafka, NATS) share: where their events go, how a batch of messages is
//! stored, and what `/readyz` says of a source.
//!
//! **Invariant:** a batch is stored — events, and DLQ records for what is refused — before
//! [`Sink::store`] returns; a source acknowledges (commits) its messages only after that.

use std::sync::Arc;

use causeway_envelope::{Item, ParseOptions};
use causeway_store::{EventOutcome, Store, StoreError};
use serde::Serialize;

use crate::engine::JourneyEngine;
use crate::ingest::{Provenance, prepare};
use crate::metrics::Metrics;
use crate::model::ModelSlot;

/// Where a source's events go: what an HTTP ingest writes to (`AppState::sink`).
#[derive(Clone)]
pub struct Sink {
    pub store: Store,
    pub model: ModelSlot,
    pub journeys: Option<JourneyEngine>,
    pub parse: ParseOptions,
    pub metrics: Arc<Metrics>,
}

/// One broker message, parsed, with where it came from.
pub(crate) struct Delivered {
    pub item: Item,
    pub content_type: Option<String>,
    pub from: Provenance,
}

/// What a stored batch came to.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stored {
    pub accepted: usize,
    pub duplicates: usize,
    pub refused: usize,
}

impl Sink {
    /// Checks, redacts and stores a batch (HTTP ingest's rules); durable when it returns.
    pub(crate) async fn store(&self, batch: Vec<Delivered>) -> Result<Stored, StoreError> {
        self.queue(batch)?.await
    }

    /// [`Sink::store`], with the batch queued for the store's writer before this returns: batches
    /// queued one after the other are logged in that order, however their answers are awaited
    /// (a partition's events must reach the log in its order). The future resolves once durable.
    pub(crate) fn queue(
        &self,
        batch: Vec<Delivered>,
    ) -> Result<impl std::future::Future<Output = Result<Stored, StoreError>> + Send + 'static, StoreError> {
        let model = self.model.current();
        let (mut events, mut rejections) = (Vec::with_capacity(batch.len()), Vec::new());
        for d in batch {
            // A refused message keeps its key and headers: PII its body carried is replaced there too.
            let refused = d.item.result.is_err().then(|| d.item.raw.clone());
            let (e, mut r, _) = prepare(vec![d.item], d.content_type, model.as_deref(), self.parse.limits, Some(&d.from));
            if let (Some(raw), Some(model)) = (refused, model.as_deref()) {
                r.iter_mut().for_each(|rejection| model.redact_refused_message(&raw, &mut rejection.record));
            }
            events.extend(e);
            rejections.extend(r);
        }
        let refused = rejections.len();
        let labels = crate::metrics::IngestLabels::of(&events, &rejections);
        let answer = self.store.queue_append(events, rejections)?;
        let sink = self.clone();
        Ok(async move {
            let stored = answer.await?;
            if let Some(engine) = &sink.journeys {
                engine.notify();
            }
            let accepted = stored.events.iter().filter(|o| matches!(o, EventOutcome::Accepted)).count();
            let done = Stored { accepted, duplicates: stored.events.len() - accepted, refused };
            Metrics::add(&sink.metrics.accepted, done.accepted);
            Metrics::add(&sink.metrics.duplicates, done.duplicates);
            Metrics::add(&sink.metrics.rejected, done.refused);
            sink.metrics.count_ingested(model.as_deref().map(|m| m.model()), &labels, &stored.events);
            Ok(done)
        })
    }
}

/// What `/readyz` says of a source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    /// `starting`, `consuming`, or `retrying` after an error.
    pub state: String,
    /// Messages stored and acknowledged.
    pub messages: u64,
    /// Of which refused (kept as DLQ records).
    pub refused: u64,
    /// Kafka: the partitions assigned to causeway's consumer, as `topic/partition`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned: Option<Vec<String>>,
    pub last_error: Option<String>,
}

impl SourceStatus {
    pub(crate) fn stored(&mut self, messages: usize, done: Stored) {
        self.messages += messages as u64;
        self.refused += done.refused as u64;
    }
}

/// The `content-type` header of a message, if any.
pub(crate) fn content_type(headers: &[(String, Vec<u8>)]) -> Option<String> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-type")).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}
