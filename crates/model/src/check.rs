//! Checks that need the whole model: references, journey keys, and the board's conventions.

use std::collections::HashSet;

use serde_json::Value;

use crate::load::{Builder, RefKind};
use crate::yaml::closest;
use crate::{Key, Model};

pub(crate) fn check(b: &mut Builder) {
    references(b);
    journey_keys(b);
    conventions(b);
}

fn references(b: &mut Builder) {
    let refs = std::mem::take(&mut b.refs);
    for r in &refs {
        let (section, names): (&str, Vec<&str>) = match r.kind {
            RefKind::Context => ("context", b.model.contexts.keys().map(String::as_str).collect()),
            RefKind::Aggregate => ("aggregate", b.model.aggregates.keys().map(String::as_str).collect()),
            RefKind::Event => ("event", b.model.events.keys().map(String::as_str).collect()),
            RefKind::Journey => ("journey", b.model.journeys.keys().map(String::as_str).collect()),
            RefKind::Policy => ("policy", b.model.policies.keys().map(String::as_str).collect()),
        };
        if !names.contains(&r.name.as_str()) {
            let hint = closest(&r.name, names.iter().copied()).map(|n| format!("; did you mean '{n}'?")).unwrap_or_default();
            b.sink.error(r.at, format!("{} names unknown {section} '{}'{hint}", r.what, r.name));
        }
    }
    b.refs = refs;
    // An event's aggregate belongs to its context.
    let mut mismatches = Vec::new();
    for (name, event) in &b.model.events {
        if let Some(agg) = event.aggregate.as_ref().and_then(|a| b.model.aggregates.get(a).map(|x| (a, x)))
            && !event.context.is_empty()
            && agg.1.context != event.context
        {
            mismatches.push((
                event.span,
                format!("event '{name}' belongs to context '{}' but its aggregate '{}' to '{}'", event.context, agg.0, agg.1.context),
            ));
        }
    }
    for (at, message) in mismatches {
        b.sink.warning(at, message);
    }
}

/// Whether a payload valid against `schema` can carry a value at `pointer`: `Some(true)` when the
/// schema requires the first segment, `Some(false)` when it rules it out, `None` when it allows it.
pub fn schema_carries(schema: &Value, pointer: &str) -> Option<bool> {
    let first = pointer.trim_start_matches('/').split('/').next().unwrap_or("");
    let first = first.replace("~1", "/").replace("~0", "~");
    let Value::Object(s) = schema else { return if schema == &Value::Bool(false) { Some(false) } else { None } };
    if s.get("required").and_then(Value::as_array).is_some_and(|r| r.iter().any(|f| f == first.as_str())) {
        return Some(true);
    }
    if let Some(t) = s.get("type").and_then(Value::as_str)
        && t != "object"
    {
        return Some(false);
    }
    let declared = s.get("properties").and_then(Value::as_object).is_some_and(|p| p.contains_key(&first));
    if !declared && s.get("additionalProperties") == Some(&Value::Bool(false)) {
        return Some(false);
    }
    None
}

fn journey_keys(b: &mut Builder) {
    let model: &Model = &b.model;
    let mut problems = Vec::new();
    for (name, journey) in &model.journeys {
        let Key::Pointer(pointer) = &journey.key else { continue };
        let Some(&at) = b.key_positions.get(name) else { continue };
        let mut any_can = false;
        let mut cannot = Vec::new();
        for m in &journey.milestones {
            let Some(event) = model.events.get(m) else { continue };
            let verdicts: Vec<Option<bool>> =
                if event.versions.is_empty() { vec![None] } else { event.versions.values().map(|s| schema_carries(s, pointer)).collect() };
            if verdicts.iter().any(|v| *v != Some(false)) {
                any_can = true;
            } else {
                cannot.push(m.clone());
            }
        }
        if !journey.milestones.is_empty() && !any_can {
            problems.push((
                true,
                at,
                format!("key {pointer} of journey '{name}' cannot be read from any milestone: no milestone's schema allows it"),
            ));
        } else {
            for m in cannot {
                problems.push((false, at, format!("key {pointer} of journey '{name}' cannot be read from milestone '{m}' (its schema rules it out): such events join only by correlation id")));
            }
        }
    }
    for (error, at, message) in problems {
        if error { b.sink.error(at, message) } else { b.sink.warning(at, message) }
    }
}

fn conventions(b: &mut Builder) {
    let mut warnings = Vec::new();
    let model = &b.model;
    for (name, event) in &model.events {
        if !is_past_tense(name) {
            warnings.push((
                event.span,
                format!("event '{name}' is not named in the past tense: events are facts that happened (e.g. OrderCreated, not CreateOrder)"),
            ));
        }
    }
    let mut used: HashSet<&str> = HashSet::new();
    for c in model.commands.values() {
        used.extend(c.emits.iter().map(String::as_str));
    }
    for p in model.policies.values() {
        used.insert(p.when.as_str());
        used.extend(p.then.iter().map(String::as_str));
    }
    let mut in_journeys: HashSet<&str> = HashSet::new();
    for j in model.journeys.values() {
        in_journeys.extend(j.milestones.iter().map(String::as_str));
        in_journeys.extend(j.outcomes.values().flatten().map(String::as_str));
        for i in &j.invariants {
            in_journeys.insert(i.event.as_str());
        }
    }
    used.extend(in_journeys.iter().copied());
    for r in model.read_models.values() {
        used.extend(r.on.keys().map(String::as_str));
    }
    for x in model.externals.values() {
        used.extend(x.consumes.iter().chain(&x.produces).map(String::as_str));
    }
    for (name, event) in &model.events {
        if !used.contains(name.as_str()) {
            warnings.push((event.span, format!("event '{name}' is not used by any command, policy, journey, read model or external system")));
        }
    }
    for (name, policy) in &model.policies {
        for reaction in &policy.then {
            if model.events.contains_key(reaction) && !in_journeys.contains(reaction.as_str()) {
                warnings.push((
                    policy.span,
                    format!("policy '{name}' expects '{reaction}', which no journey names: the missing reaction cannot be tied to a journey"),
                ));
            }
        }
    }
    for (at, message) in warnings {
        b.sink.warning(at, message);
    }
}

/// Past participles that do not end in -ed.
const IRREGULAR: &[&str] = &[
    "Sent",
    "Paid",
    "Built",
    "Made",
    "Held",
    "Lost",
    "Won",
    "Begun",
    "Done",
    "Taken",
    "Given",
    "Written",
    "Known",
    "Shown",
    "Drawn",
    "Chosen",
    "Frozen",
    "Spent",
    "Left",
    "Met",
    "Set",
    "Put",
    "Cut",
    "Shut",
    "Read",
    "Found",
    "Bought",
    "Sold",
    "Told",
    "Kept",
    "Brought",
    "Thought",
    "Caught",
    "Taught",
    "Withdrawn",
    "Undone",
    "Forgotten",
    "Run",
    "Become",
    "Come",
    "Hit",
    "Quit",
    "Split",
    "Spread",
    "Bid",
    "Let",
    "Reset",
    "Broken",
    "Hidden",
    "Spoken",
    "Stolen",
    "Torn",
    "Worn",
    "Sworn",
    "Grown",
    "Thrown",
    "Flown",
    "Seen",
    "Driven",
    "Ridden",
    "Risen",
    "Eaten",
    "Fallen",
    "Got",
    "Gotten",
    "Laid",
    "Led",
    "Lent",
    "Dealt",
    "Sent",
    "Sold",
    "Bound",
    "Wound",
    "Upheld",
    "Overridden",
    "Rewritten",
];

fn is_past_tense(name: &str) -> bool {
    let last_word_start = name.char_indices().filter(|(_, c)| c.is_uppercase()).map(|(i, _)| i).next_back().unwrap_or(0);
    let word = &name[last_word_start..];
    word.ends_with("ed") || IRREGULAR.contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn past_tense_heuristic() {
        for yes in ["OrderCreated", "PaymentProcessed", "EmailSent", "InvoicePaid", "LoanWithdrawn", "Shipped"] {
            assert!(is_past_tense(yes), "{yes}");
        }
        for no in ["CreateOrder", "OrderCreation", "PaymentRequest", "Ship"] {
            assert!(!is_past_tense(no), "{no}");
        }
    }

    #[test]
    fn schema_key_verdicts() {
        assert_eq!(schema_carries(&json!({"required": ["id"]}), "/id"), Some(true));
        assert_eq!(schema_carries(&json!({"properties": {"a": {}}, "additionalProperties": false}), "/id"), Some(false));
        assert_eq!(schema_carries(&json!({"type": "string"}), "/id"), Some(false));
        assert_eq!(schema_carries(&json!({"type": "object"}), "/id"), None);
        assert_eq!(schema_carries(&json!(true), "/id"), None);
    }
}
