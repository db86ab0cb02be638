//! The executable event-storming model (PRODUCT §3): the board as code.
//!
//! `load(path)` reads a model file (and its `include:`s) into a typed [`Model`] and a list of
//! [`Diagnostic`]s, each pointing at `FILE:LINE:COLUMN`. The model is usable only when no diagnostic
//! is an error. Everything that judges runtime evidence reads the typed model, never YAML.
//!
//! **Invariants:** every name a model refers to (context, aggregate, event, journey) exists when
//! `load` reports no error; every schema is a valid JSON Schema 2020-12; durations are positive.
//! Maps keep the order of the file, so everything derived from a model (canvas, generated files)
//! is deterministic.

mod check;
mod diagnostic;
mod load;
mod units;
mod yaml;

use std::path::PathBuf;

use indexmap::IndexMap;
use serde_json::Value;

pub use diagnostic::{Diagnostic, Position, Severity};
pub use load::{Loaded, load, load_str};
pub use units::{format_duration, parse_duration, parse_percent};

/// A position in a model file, for diagnostics raised after loading.
pub type Span = Position;

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub name: String,
    /// Every file the model was read from, the main file first.
    pub files: Vec<PathBuf>,
    pub contexts: IndexMap<String, Context>,
    pub aggregates: IndexMap<String, Aggregate>,
    pub commands: IndexMap<String, Command>,
    pub events: IndexMap<String, EventDef>,
    pub policies: IndexMap<String, Policy>,
    pub journeys: IndexMap<String, Journey>,
    pub read_models: IndexMap<String, ReadModel>,
    pub slos: IndexMap<String, Slo>,
    pub externals: IndexMap<String, External>,
    pub envelope: EnvelopeRules,
}

/// A bounded context.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub owner: Option<String>,
    /// The services that belong to it: only they may produce its events.
    pub services: Vec<String>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub context: String,
    pub key: Option<Key>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub context: String,
    pub actor: Option<String>,
    pub aggregate: Option<String>,
    pub emits: Vec<String>,
    pub span: Span,
}

/// A domain event type.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDef {
    /// The owning context: only its services may produce it.
    pub context: String,
    pub aggregate: Option<String>,
    pub topic: Option<String>,
    /// JSON Schema (2020-12) of the payload by schema version; version 1 when not versioned.
    pub versions: IndexMap<u32, Value>,
    /// JSON pointers redacted before storage.
    pub pii: Vec<String>,
    pub span: Span,
}

/// "Whenever `when` happens, `then` is expected within `within`".
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub when: String,
    pub then: Vec<String>,
    pub within_ms: u64,
    pub span: Span,
}

/// Where a journey's business key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A JSON pointer into the payload.
    Pointer(String),
    /// The envelope's `subject`.
    Subject,
}

impl Key {
    pub fn as_str(&self) -> &str {
        match self {
            Key::Pointer(p) => p,
            Key::Subject => "subject",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    pub key: Key,
    pub milestones: Vec<String>,
    /// Terminal events by outcome name.
    pub outcomes: IndexMap<String, Vec<String>>,
    pub invariants: Vec<Invariant>,
    pub complete_within_ms: Option<u64>,
    /// Share of journeys that must complete within the window (0–100).
    pub objective_percent: Option<f64>,
    pub stall_after_ms: Option<u64>,
    pub reconciliation_owner: Option<String>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invariant {
    pub name: String,
    pub event: String,
    pub rule: InvariantRule,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InvariantRule {
    /// `event` may happen only after all of these.
    Requires(Vec<String>),
    /// `event` happens at most this many times per journey.
    AtMost(u32),
    /// `event` must not happen after any of these.
    ForbiddenAfter(Vec<String>),
}

/// A projection, for time travel.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadModel {
    pub key: Key,
    /// Reducers by event type, applied in order.
    pub on: IndexMap<String, Vec<Reducer>>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reducer {
    /// Merge the object at this pointer (`/` = the whole payload) into the state.
    Merge(String),
    /// Set fields: a value that is a string starting with `/` is a pointer, anything else a constant.
    Set(IndexMap<String, Value>),
    /// Remove fields.
    Unset(Vec<String>),
    /// Append the value at a pointer to an array field.
    Append(IndexMap<String, String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub sli: Sli,
    pub objective_percent: f64,
    pub window_ms: u64,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sli {
    /// Share of a context's events that were stored keeping their schema (no `schema_error`),
    /// over all it sent, those refused at ingest included.
    EventSuccess { context: String },
    /// The same for one event type.
    EventTypeSuccess { event_type: String },
    /// Share of a policy's reactions that came within its `within`: a reaction that never came
    /// (`missing_reaction`) or came late is bad.
    ReactionLatency { policy: String },
    /// Share of a journey's instances that reached an outcome within `complete_within`; one
    /// that stalled or missed its deadline first is bad.
    JourneyCompletion { journey: String },
}

/// A system outside the estate (a payment provider, an e-mail service): shown on the canvas.
#[derive(Debug, Clone, PartialEq)]
pub struct External {
    pub consumes: Vec<String>,
    pub produces: Vec<String>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeRules {
    pub correlation_required: bool,
}

impl Default for EnvelopeRules {
    fn default() -> Self {
        EnvelopeRules { correlation_required: true }
    }
}

impl Model {
    /// The context owning the service `source`, if any.
    pub fn context_of_service(&self, source: &str) -> Option<&str> {
        self.contexts.iter().find(|(_, c)| c.services.iter().any(|s| s == source)).map(|(n, _)| n.as_str())
    }

    /// The schema of `event` at `version` (1 when the envelope names none).
    pub fn schema(&self, event: &str, version: Option<i64>) -> Option<&Value> {
        let version = u32::try_from(version.unwrap_or(1)).ok()?;
        self.events.get(event)?.versions.get(&version)
    }

    /// The owner of a context, for findings.
    pub fn owner_of_context(&self, context: &str) -> Option<&str> {
        self.contexts.get(context)?.owner.as_deref()
    }
}
