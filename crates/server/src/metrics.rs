//! Internal counters of the ingest path; `api::metrics` writes them, with the store's and the
//! journey engine's gauges, as Prometheus text.
//!
//! **Invariant:** the labels of [`Metrics::ingested`] are bounded by the model: an event type the
//! model does not name counts as `other`, a context neither its type nor its source names as
//! `unknown`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use causeway_model::Model;
use causeway_store::{EventOutcome, NewEvent, NewRejection};

/// Upper bounds of the ingest duration histogram's buckets, in seconds.
pub const DURATION_BUCKETS_S: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Counters of the ingest path. Process-local: they start at zero with the process, as Prometheus
/// counters do; totals that survive restarts come from the store.
#[derive(Debug)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub bodies_rejected: AtomicU64,
    /// Events by (context, event type, outcome).
    pub ingested: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    /// How long `POST /v1/events` took, from its first byte read to its answer.
    pub ingest_duration: Mutex<Histogram>,
}

/// A cumulative histogram in the Prometheus sense, over fixed upper bounds in seconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    pub bounds: &'static [f64],
    /// Observations at most each bound.
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, buckets: vec![0; bounds.len()], count: 0, sum_seconds: 0.0 }
    }

    pub fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(self.bounds) {
            if seconds <= *bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }
}

/// What the ingest counters need of a batch before it is stored: per event its type, its source
/// and whether it broke its schema; per refusal its type and source, as far as they were read.
pub struct IngestLabels {
    events: Vec<(String, String, bool)>,
    refused: Vec<(Option<String>, Option<String>)>,
}

impl IngestLabels {
    pub fn of(events: &[NewEvent], rejections: &[NewRejection]) -> IngestLabels {
        IngestLabels {
            events: events
                .iter()
                .map(|e| (e.event().event_type.clone(), e.event().source.clone(), e.findings.iter().any(|f| f.kind == "schema_error")))
                .collect(),
            refused: rejections.iter().map(|r| (r.record.event_type.clone(), r.record.source_service.clone())).collect(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: AtomicU64::default(),
            accepted: AtomicU64::default(),
            duplicates: AtomicU64::default(),
            rejected: AtomicU64::default(),
            bodies_rejected: AtomicU64::default(),
            ingested: Mutex::default(),
            ingest_duration: Mutex::new(Histogram::new(&DURATION_BUCKETS_S)),
        }
    }
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts a stored batch by context, event type and outcome (`accepted`, `schema_error`,
    /// `duplicate`, `rejected`); `outcomes` are the store's answers for `labels.events`.
    pub fn count_ingested(&self, model: Option<&Model>, labels: &IngestLabels, outcomes: &[EventOutcome]) {
        let label = |event_type: Option<&str>, source: Option<&str>| -> (String, String) {
            let known = event_type.and_then(|t| model.and_then(|m| m.events.get_key_value(t)));
            let context = known
                .map(|(_, e)| e.context.as_str())
                .or_else(|| source.and_then(|s| model.and_then(|m| m.context_of_service(s))))
                .unwrap_or("unknown");
            (context.to_string(), known.map_or("other", |(name, _)| name.as_str()).to_string())
        };
        let mut counts = self.ingested.lock().expect("ingest counters");
        for ((event_type, source, schema_error), outcome) in labels.events.iter().zip(outcomes) {
            let outcome = match outcome {
                EventOutcome::Duplicate => "duplicate",
                EventOutcome::Accepted if *schema_error => "schema_error",
                EventOutcome::Accepted => "accepted",
            };
            let (context, event_type) = label(Some(event_type), Some(source));
            *counts.entry((context, event_type, outcome)).or_default() += 1;
        }
        for (event_type, source) in &labels.refused {
            let (context, event_type) = label(event_type.as_deref(), source.as_deref());
            *counts.entry((context, event_type, "rejected")).or_default() += 1;
        }
    }
}
