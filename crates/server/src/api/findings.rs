//! A finding as the API and `causeway analyze` show it, and the finding kinds.
//!
//! **Invariant:** one JSON form of a finding: every answer that carries findings (`/v1/findings`,
//! a journey, a DLQ record) and `causeway analyze --json` build it with [`finding_json`].

use causeway_journey::FindingKind;
use causeway_store::FindingRow;
use serde_json::{Value, json};

/// The wire form of a finding (the OpenAPI document's `Finding`, without the `dead_letter` that
/// `engine::link_dead_letters` adds to some).
pub fn finding_json(f: &FindingRow) -> Value {
    json!({
        "id": f.id,
        "kind": f.kind,
        "journey": f.journey,
        "key": f.key,
        "correlation_id": f.correlation_id,
        "event_id": f.event_id,
        "expected": f.expected,
        "rule": f.rule,
        "detected_at": f.detected_at,
        "resolved_at": f.resolved_at,
        "open": f.resolved_at.is_none(),
        "detail": f.detail,
        "owner": f.owner,
    })
}

/// Kinds raised at ingest by the envelope rules and the model's contracts.
pub(crate) const INGEST_KINDS: [&str; 4] = ["schema_error", "unknown_event_type", "missing_correlation", "unauthorized_producer"];

/// Every finding kind (PRODUCT §5): the journey engine's, then those raised at ingest.
pub(crate) fn is_known_kind(kind: &str) -> bool {
    FindingKind::ALL.iter().any(|k| k.as_str() == kind) || INGEST_KINDS.contains(&kind)
}

pub(crate) fn known_kinds() -> String {
    let mut all: Vec<&str> = FindingKind::ALL.iter().map(|k| k.as_str()).collect();
    all.extend(INGEST_KINDS);
    all.join(", ")
}
