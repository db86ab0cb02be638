//! The model's SLOs as the journey engine judges them (PRODUCT §3 `slos`, §6 `/v1/slo`), and the
//! latency histograms beside them: fed with every log entry and every change the evaluator makes,
//! so rebuilt with it, from the log, after a restart or a model reload.
//!
//! What each SLI counts, each verdict filed under the event-time minute it happened in:
//! - `event_success`: every event stored (redeliveries aside) is good unless ingest found it
//!   breaking its schema (`schema_error`); every event refused at ingest is bad, filed at its own
//!   time when the refused input has a readable one, else at its arrival. By its type's context,
//!   else its source's.
//! - `reaction_latency`: a reaction on time is good (at the reaction's time); a `missing_reaction`
//!   is bad (at the deadline), whether the reaction comes late or never.
//! - `journey_completion`: each instance is judged once, by what comes first: an outcome reached
//!   within `complete_within` is good (at the outcome); an outcome reached later, a `stalled` or a
//!   `deadline_missed` is bad.
//!
//! **Invariant:** an instance is judged at most once, and a trigger's reaction at most once (the
//! evaluator reports each answered obligation once, and raises one `missing_reaction` per
//! obligation).

use std::collections::{HashMap, HashSet};

use causeway_envelope::Event;
use causeway_journey::{Change, Evaluator, FindingKind, InstanceId};
use causeway_model::{Model, Sli};
use causeway_slo::{Evaluation, Ledger, Objective, Tally};

use crate::metrics::Histogram;

/// Upper bounds of the latency histograms' buckets, in seconds (Prometheus `le`).
pub const LATENCY_BUCKETS_S: [f64; 16] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0];

/// Refusals read from the store per round trip.
const REFUSALS_BATCH: usize = 4096;

/// The SLOs of one model and what they have judged so far.
#[derive(Debug, Default)]
pub struct SloTracker {
    objectives: Vec<Objective>,
    ledgers: Vec<Ledger>,
    /// Event type → its context, and service → its context, for `event_success`.
    type_context: HashMap<String, String>,
    service_context: HashMap<String, String>,
    /// Whether any SLO counts events (the store is asked about schema errors only then).
    counts_events: bool,
    /// Instances judged for `journey_completion`, and instances whose outcome was measured.
    judged: Bits,
    completed: Bits,
    /// Events about to be fed that carry a `schema_error` from ingest.
    flagged: HashSet<String>,
    /// The last ingest refusal counted.
    refusals_after: i64,
    /// Latency from trigger to reaction, by policy (on time and late).
    pub reaction_latency: HashMap<String, Histogram>,
    /// Time from start to outcome, by journey.
    pub completion_time: HashMap<String, Histogram>,
}

impl SloTracker {
    pub fn new(model: &Model) -> SloTracker {
        let objectives = Objective::all(model);
        let counts_events = objectives.iter().any(|o| matches!(o.sli, Sli::EventSuccess { .. } | Sli::EventTypeSuccess { .. }));
        SloTracker {
            ledgers: vec![Ledger::default(); objectives.len()],
            objectives,
            type_context: model.events.iter().map(|(name, e)| (name.clone(), e.context.clone())).collect(),
            service_context: model.contexts.iter().flat_map(|(name, c)| c.services.iter().map(move |s| (s.clone(), name.clone()))).collect(),
            counts_events,
            ..SloTracker::default()
        }
    }

    pub fn counts_events(&self) -> bool {
        self.counts_events
    }

    /// Events about to be fed that ingest found breaking their schema (from
    /// `Store::schema_errors_among`); each is forgotten once fed.
    pub fn add_flagged(&mut self, flagged: HashSet<String>) {
        self.flagged.extend(flagged);
    }

    fn file(&mut self, matches: impl Fn(&Sli) -> bool, at_ms: i64, good: bool) {
        file(&self.objectives, &mut self.ledgers, matches, at_ms, good);
    }

    /// An event of the log, as stored.
    pub fn observe_event(&mut self, event: &Event, redelivery: bool) {
        if redelivery || !self.counts_events {
            return;
        }
        let good = !self.flagged.remove(&event.id);
        // Borrowed from the maps, beside the ledgers: no allocation per event.
        let context = context_of(&self.type_context, &self.service_context, Some(&event.event_type), Some(&event.source));
        let at = event.time.timestamp_millis();
        file(
            &self.objectives,
            &mut self.ledgers,
            |sli| match sli {
                Sli::EventSuccess { context: c } => context == Some(c.as_str()),
                Sli::EventTypeSuccess { event_type } => *event_type == event.event_type,
                _ => false,
            },
            at,
            good,
        );
    }

    /// Events refused at ingest since the last call: each a bad `event_success` verdict.
    pub fn observe_refusals(&mut self, store: &causeway_store::Store) -> Result<(), causeway_store::StoreError> {
        if !self.counts_events {
            return Ok(());
        }
        loop {
            let batch = store.ingest_refusals_after(self.refusals_after, REFUSALS_BATCH)?;
            for r in &batch {
                self.refusals_after = r.id;
                // By its own time when it has a readable one, else by its arrival.
                let own = r.time.as_deref().and_then(|t| causeway_envelope::parse_time(t).ok());
                let Some(at) = own.or_else(|| causeway_envelope::parse_time(&r.failed_at).ok()) else { continue };
                let context = context_of(&self.type_context, &self.service_context, r.event_type.as_deref(), r.source.as_deref());
                file(
                    &self.objectives,
                    &mut self.ledgers,
                    |sli| match sli {
                        Sli::EventSuccess { context: c } => context == Some(c.as_str()),
                        Sli::EventTypeSuccess { event_type } => r.event_type.as_deref() == Some(event_type.as_str()),
                        _ => false,
                    },
                    at.timestamp_millis(),
                    false,
                );
            }
            if batch.len() < REFUSALS_BATCH {
                return Ok(());
            }
        }
    }

    /// A change the evaluator made; `event_ms` is the event time of the event being ingested,
    /// if the change came from one (and not from the clock).
    pub fn observe_change(&mut self, eval: &Evaluator, change: &Change, event_ms: Option<i64>) {
        match change {
            Change::Reacted { policy, latency_us, on_time, .. } => {
                let name = eval.policy_name(*policy);
                self.reaction_latency.entry(name.to_string()).or_insert_with(|| Histogram::new(&LATENCY_BUCKETS_S)).observe(*latency_us as f64 / 1e6);
                if *on_time && let Some(at) = event_ms {
                    self.file(|sli| matches!(sli, Sli::ReactionLatency { policy: p } if p == name), at, true);
                }
            }
            Change::Raised(id) => {
                let Some(f) = eval.finding(*id) else { return };
                let at = f.detected_at.timestamp_millis();
                match f.kind {
                    FindingKind::MissingReaction => {
                        if let Some(rule) = &f.rule {
                            self.file(|sli| matches!(sli, Sli::ReactionLatency { policy } if policy == rule), at, false);
                        }
                    }
                    FindingKind::Stalled | FindingKind::DeadlineMissed => {
                        if let (Some(i), Some(journey)) = (f.instance, &f.journey)
                            && self.judged.insert(i.0)
                        {
                            self.file(|sli| matches!(sli, Sli::JourneyCompletion { journey: j } if j == journey), at, false);
                        }
                    }
                    _ => {}
                }
            }
            Change::Updated(i) => {
                let Some(at_ms) = event_ms else { return };
                self.judge_outcome(eval, *i, at_ms);
            }
            _ => {}
        }
    }

    /// An instance that reached its outcome with the event at `at_ms`.
    fn judge_outcome(&mut self, eval: &Evaluator, i: InstanceId, at_ms: i64) {
        let times = eval.times_of(i);
        if !times.terminal || !self.completed.insert(i.0) {
            return;
        }
        let took_us = (at_ms * 1000 - times.started_us).max(0);
        self.completion_time.entry(times.journey.to_string()).or_insert_with(|| Histogram::new(&LATENCY_BUCKETS_S)).observe(took_us as f64 / 1e6);
        if !self.judged.insert(i.0) {
            return;
        }
        let good = eval.complete_within_us(times.journey).is_none_or(|w| took_us <= w);
        let journey = times.journey.to_string();
        self.file(|sli| matches!(sli, Sli::JourneyCompletion { journey: j } if *j == journey), at_ms, good);
    }

    /// Every SLO as of the engine's clock, in the model's order; before the clock is set, as of a
    /// time no window reaches (nothing judged yet).
    pub fn evaluate(&self, now: Option<chrono::DateTime<chrono::Utc>>) -> Vec<SloView> {
        let now_ms = now.map_or(i64::MIN / 2, |n| n.timestamp_millis());
        self.objectives
            .iter()
            .zip(&self.ledgers)
            .map(|(o, l)| SloView { objective: o.clone(), totals: l.totals(), evaluation: causeway_slo::evaluate(o, l, now_ms) })
            .collect()
    }
}

/// Files a verdict with every SLO whose SLI `matches`.
fn file(objectives: &[Objective], ledgers: &mut [Ledger], matches: impl Fn(&Sli) -> bool, at_ms: i64, good: bool) {
    for (o, ledger) in objectives.iter().zip(ledgers.iter_mut()) {
        if matches(&o.sli) {
            ledger.record(at_ms, good, o.minutes_kept());
        }
    }
}

/// An event's context: its type's, else its source's.
fn context_of<'a>(
    types: &'a HashMap<String, String>,
    services: &'a HashMap<String, String>,
    event_type: Option<&str>,
    source: Option<&str>,
) -> Option<&'a str> {
    event_type.and_then(|t| types.get(t)).or_else(|| source.and_then(|s| services.get(s))).map(String::as_str)
}

/// A set of instance ids (dense from 0): a bit each.
#[derive(Debug, Default)]
struct Bits(Vec<u64>);

impl Bits {
    /// Adds `i`; `false` if it was there.
    fn insert(&mut self, i: u32) -> bool {
        let (word, bit) = (i as usize / 64, 1u64 << (i % 64));
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }
}

/// One SLO as `/v1/slo` and `/metrics` show it.
#[derive(Debug, Clone)]
pub struct SloView {
    pub objective: Objective,
    /// Every verdict since the log's start (what the counters report).
    pub totals: Tally,
    pub evaluation: Evaluation,
}
