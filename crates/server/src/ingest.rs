//! Accepted and refused input made ready for the store, whichever way it came (HTTP, a broker):
//! the model's contracts checked and PII redacted on each event, each refusal kept as a DLQ
//! record with its reason (and, for a missing correlation id, the journey it would have joined).
//!
//! **Invariant:** nothing leaves here unredacted — contracts run, and refused input is redacted,
//! before anything is written; every input item is accounted for in `Placement`, in input order.

use causeway_contracts::ContractFinding;
use causeway_envelope::{ErrorKind, Event, Identity, Item, Limits, ParseOptions, parse_json_line, sniff_identity};
use causeway_store::{DlqReport, INGEST_CONSUMER, NewEvent, NewFinding, NewRejection, Origin};
use serde_json::{Map, Value};

use crate::model::LoadedModel;

/// Where an input item went: `Ok(index into the events)`, or `Err((index into the rejections,
/// event id, error code, reason))`.
pub(crate) type Placement = Result<usize, (usize, Option<String>, &'static str, String)>;

/// Where a broker message came from, kept on its event or its DLQ record.
pub(crate) struct Provenance {
    pub origin: Origin,
    /// A refusal's DLQ record `context`: the origin in full, e.g. the NATS stream.
    pub context: Value,
    /// The message's key and headers, byte for byte, kept on a refusal's record (for a replay).
    pub key: Option<Vec<u8>>,
    pub headers: Option<Vec<(String, Option<Vec<u8>>)>>,
}

fn to_new_finding(f: ContractFinding) -> NewFinding {
    NewFinding { kind: f.kind.to_string(), detail: f.detail, owner: f.owner, ..Default::default() }
}

/// The events to store and the refusals to keep, from parsed items.
pub(crate) fn prepare(
    items: Vec<Item>,
    content_type: Option<String>,
    model: Option<&LoadedModel>,
    limits: Limits,
    from: Option<&Provenance>,
) -> (Vec<NewEvent>, Vec<NewRejection>, Vec<Placement>) {
    let mut events = Vec::new();
    let mut rejections = Vec::new();
    let mut placement = Vec::with_capacity(items.len());
    for item in items {
        match item.result {
            Ok(mut event) => {
                placement.push(Ok(events.len()));
                // Contracts are checked, and PII redacted, before anything is written.
                let findings = model.map(|m| m.contracts.inspect(&mut event)).unwrap_or_default();
                let mut new = NewEvent::new(event);
                new.findings = findings.into_iter().map(to_new_finding).collect();
                new.origin = from.map(|p| p.origin.clone()).unwrap_or_default();
                events.push(new);
            }
            Err(error) => {
                let identity = sniff_identity(&item.raw);
                placement.push(Err((rejections.len(), identity.event_id.clone(), error.kind.code(), error.message.clone())));
                let mut findings = Vec::new();
                // Input that is not UTF-8 is kept as its bytes, unless PII had to be redacted from it.
                let redacted = model.and_then(|m| m.contracts.redact_raw(&item.raw));
                let original_bytes = if redacted.is_some() { None } else { item.raw_bytes };
                let original = redacted.unwrap_or(item.raw);
                if error.kind == ErrorKind::MissingCorrelation {
                    let owner = model.map(|m| m.contracts.missing_correlation(identity.source.as_deref(), &error.message).owner).unwrap_or_default();
                    // The journey instance it would have joined, by the key in its (redacted)
                    // payload: a missing reaction of that instance then points at this record.
                    let (journey, journey_key) = model
                        .and_then(|m| {
                            let event = uncorrelated_event(&original, limits)?;
                            m.keys.of(&event).into_iter().next().map(|(j, k)| (j.to_owned(), k))
                        })
                        .unzip();
                    findings.push(NewFinding {
                        kind: "missing_correlation".into(),
                        detail: error.message.clone(),
                        owner,
                        journey,
                        journey_key,
                        ..Default::default()
                    });
                }
                let mut record = refused(original, content_type.clone(), error.kind.code(), error.message, identity);
                record.original_bytes = original_bytes;
                if let Some(p) = from {
                    record.source_topic = p.origin.topic.clone();
                    record.source_partition = p.origin.partition;
                    record.source_offset = p.origin.offset;
                    record.context = Some(p.context.to_string());
                    record.original_key = p.key.clone();
                    record.original_headers = p.headers.clone();
                }
                rejections.push(NewRejection { findings, record });
            }
        }
    }
    (events, rejections, placement)
}

/// The error type and finding kind of an event its producer's token may not send.
pub(crate) const UNAUTHORIZED_PRODUCER: &str = "unauthorized_producer";

/// Takes out of `events` those whose owning context (the model's `context` of their type) the
/// producer does not hold, `may` saying which it does: each becomes a refusal — a DLQ record of
/// the (already redacted) event with an `unauthorized_producer` finding for the context's owner —
/// and its placement says so. Answers how many were refused.
pub(crate) fn fence(
    events: &mut Vec<NewEvent>,
    rejections: &mut Vec<NewRejection>,
    placement: &mut [Placement],
    model: Option<&LoadedModel>,
    may: impl Fn(Option<&str>) -> bool,
    who: &str,
) -> usize {
    let context_of = |event_type: &str| model.and_then(|m| m.model().events.get(event_type)).map(|e| e.context.clone());
    if events.iter().all(|e| may(context_of(&e.event().event_type).as_deref())) {
        return 0;
    }
    let mut kept = Vec::with_capacity(events.len());
    // Where each old index went: still an event (its new index), or a rejection.
    let mut moved: Vec<Placement> = Vec::with_capacity(events.len());
    for new in events.drain(..) {
        let event = new.event();
        let context = context_of(&event.event_type);
        if may(context.as_deref()) {
            moved.push(Ok(kept.len()));
            kept.push(new);
            continue;
        }
        let reason = match &context {
            Some(c) => format!("{who} may not produce {}: it is owned by the context {c}, which the token does not hold", event.event_type),
            None => format!("{who} may not produce {}: the model names no such event type, so no context owns it", event.event_type),
        };
        let owner = context.as_deref().and_then(|c| model?.model().owner_of_context(c)).map(str::to_owned);
        let finding = NewFinding {
            kind: UNAUTHORIZED_PRODUCER.into(),
            event_id: Some(event.id.clone()),
            correlation_id: event.correlation_id.clone(),
            detail: reason.clone(),
            owner,
            ..Default::default()
        };
        let identity = Identity {
            event_id: Some(event.id.clone()),
            event_type: Some(event.event_type.clone()),
            source: Some(event.source.clone()),
            correlation_id: event.correlation_id.clone(),
        };
        let record = refused(event.to_json(), Some("application/cloudevents+json".into()), UNAUTHORIZED_PRODUCER, reason.clone(), identity);
        moved.push(Err((rejections.len(), Some(event.id.clone()), UNAUTHORIZED_PRODUCER, reason)));
        rejections.push(NewRejection { record, findings: vec![finding] });
    }
    *events = kept;
    let mut refused_count = 0;
    for place in placement.iter_mut() {
        if let Ok(i) = *place {
            *place = moved[i].clone();
            refused_count += usize::from(place.is_err());
        }
    }
    refused_count
}

/// The event an input refused only for its missing correlation id would have been: parsed again
/// without that rule. Binary-mode input is kept as its `ce-*` headers and body.
fn uncorrelated_event(raw: &str, limits: Limits) -> Option<Event> {
    let options = ParseOptions { limits, correlation_required: false };
    let Ok(Value::Object(kept)) = serde_json::from_str::<Value>(raw) else { return None };
    let (Some(Value::Object(headers)), Some(Value::String(body))) = (kept.get("headers"), kept.get("body")) else {
        return parse_json_line(raw.as_bytes(), &options).result.ok();
    };
    let mut attributes: Map<String, Value> =
        headers.iter().filter_map(|(name, value)| Some((name.strip_prefix("ce-")?.to_string(), value.clone()))).collect();
    if kept.get("body_is_base64") != Some(&Value::Bool(true)) && !body.is_empty() {
        attributes.insert("data".into(), serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.clone())));
    }
    Event::from_structured(attributes, false).ok()
}

/// The DLQ record of an input refused at ingest, kept as received with the reason.
pub(crate) fn refused(original: String, content_type: Option<String>, error_type: &str, error_message: String, identity: Identity) -> DlqReport {
    DlqReport {
        original,
        content_type,
        consumer: INGEST_CONSUMER.to_string(),
        error_type: error_type.to_string(),
        error_message,
        event_id: identity.event_id,
        event_type: identity.event_type,
        correlation_id: identity.correlation_id,
        source_service: identity.source,
        ..Default::default()
    }
}
