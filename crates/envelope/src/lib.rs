//! The canonical event envelope (PRODUCT §2): every accepted input form parsed, validated and
//! normalised to one CloudEvents 1.0 shape, with explicit limits. Pure: no IO, no clock.
//!
//! **Invariant:** anything this crate returns as an [`Event`] is valid — it has an id, a source, a
//! type, an RFC 3339 time normalised to UTC, a W3C `traceparent` if any, and (unless the options say
//! otherwise) a correlation id. Anything it refuses comes back with its raw input and a reason, so the
//! caller can keep it.

mod body;
mod event;
mod message;
mod traceparent;

pub use body::{BodyError, Identity, Item, ParseOptions, SMALLER_BATCHES, parse_body, parse_json_line, sniff_identity};
pub use event::{ErrorKind, Event, EventError, MAX_ID_CHARS, MAX_SOURCE_CHARS, format_micros, format_time, parse_time};
pub use message::parse_message;
pub use traceparent::validate_traceparent;

/// Limits on what one request may carry. Every limit has a default and a documented flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body, in bytes.
    pub max_request_bytes: usize,
    /// Largest accepted single event (its raw JSON, or the body in binary mode), in bytes.
    pub max_event_bytes: usize,
    /// Deepest accepted JSON nesting of a request body (objects and arrays).
    pub max_json_depth: usize,
    /// Most events accepted in one request (batch or NDJSON lines).
    pub max_batch_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_request_bytes: 16 * 1024 * 1024, max_event_bytes: 1024 * 1024, max_json_depth: 64, max_batch_events: 10_000 }
    }
}
