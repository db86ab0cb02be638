//! Read models (PRODUCT §3 `read_models`): the state of an aggregate folded from its events by the
//! model's reducers, for time travel (`GET /v1/aggregates/{type}/{id}?at=`).
//!
//! **Invariants:**
//! - Folding is a pure function of the events in the order given: no clock, no IO, no side
//!   effects. The state at a moment is the fold of the events up to it.
//! - An event whose type the read model does not name leaves the state alone and is not reported
//!   as applied.
//! - A pointer that does not resolve in the payload changes nothing; it is reported in the
//!   applied event's `missing`, so a surprising state can be explained.
//!
//! Reducers, in the order the model lists them for an event type:
//! - `merge: POINTER` — JSON Merge Patch (RFC 7396) of the object at the pointer (`/` is the whole
//!   payload) into the state: `null` members remove fields, nested objects merge.
//! - `set: {field: VALUE}` — a string starting with `/` is a pointer into the payload; anything else
//!   is a constant.
//! - `unset: [field, …]` — removes the fields.
//! - `append: {field: POINTER}` — appends the value at the pointer, as one element, to the array
//!   field (created when absent; a field that is not an array becomes one holding its old value).

use causeway_envelope::{Event, format_time};
use causeway_model::{Key, ReadModel, Reducer};
use serde_json::{Map, Value};

/// The instance of `def` that `event` belongs to: the key at the read model's pointer (strings as
/// they are, numbers and booleans as their JSON text), or the envelope's subject.
pub fn key_of(def: &ReadModel, event: &Event) -> Option<String> {
    match &def.key {
        Key::Subject => event.subject.clone(),
        Key::Pointer(p) => match event.data.as_ref()?.pointer(payload_pointer(p))? {
            Value::String(s) => Some(s.clone()),
            v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
            _ => None,
        },
    }
}

/// Whether `def` has reducers for this event type.
pub fn handles(def: &ReadModel, event_type: &str) -> bool {
    def.on.contains_key(event_type)
}

/// What one event did to the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub event_id: String,
    pub event_type: String,
    /// RFC 3339.
    pub time: String,
    /// Top-level fields the event set, merged, removed or appended to, in order, once each.
    pub changed: Vec<String>,
    /// Pointers that did not resolve in the payload.
    pub missing: Vec<String>,
}

/// Applies `event` to `state`. `None` when the read model has no reducer for its type.
pub fn apply(def: &ReadModel, state: &mut Map<String, Value>, event: &Event) -> Option<Applied> {
    let reducers = def.on.get(&event.event_type)?;
    let mut applied = Applied {
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        time: format_time(&event.time),
        changed: Vec::new(),
        missing: Vec::new(),
    };
    let payload = event.data.as_ref();
    let lookup = |pointer: &str| payload.and_then(|d| d.pointer(payload_pointer(pointer)));
    let changed = |field: &str, applied: &mut Applied| {
        if !applied.changed.iter().any(|f| f == field) {
            applied.changed.push(field.to_string());
        }
    };
    for reducer in reducers {
        match reducer {
            Reducer::Merge(pointer) => match lookup(pointer) {
                Some(Value::Object(patch)) => {
                    for (field, value) in patch {
                        merge_patch(state, field, value);
                        changed(field, &mut applied);
                    }
                }
                _ => applied.missing.push(pointer.clone()),
            },
            Reducer::Set(fields) => {
                for (field, value) in fields {
                    let value = match value {
                        Value::String(s) if s.starts_with('/') => match lookup(s) {
                            Some(v) => v.clone(),
                            None => {
                                applied.missing.push(s.clone());
                                continue;
                            }
                        },
                        constant => constant.clone(),
                    };
                    state.insert(field.clone(), value);
                    changed(field, &mut applied);
                }
            }
            Reducer::Unset(fields) => {
                for field in fields {
                    if state.remove(field).is_some() {
                        changed(field, &mut applied);
                    }
                }
            }
            Reducer::Append(fields) => {
                for (field, pointer) in fields {
                    let Some(value) = lookup(pointer) else {
                        applied.missing.push(pointer.clone());
                        continue;
                    };
                    let slot = state.entry(field.clone()).or_insert_with(|| Value::Array(Vec::new()));
                    if !slot.is_array() {
                        *slot = Value::Array(vec![slot.take()]);
                    }
                    slot.as_array_mut().expect("made an array").push(value.clone());
                    changed(field, &mut applied);
                }
            }
        }
    }
    Some(applied)
}

/// Folds `events`, in the order given, from an empty state.
pub fn fold<'e>(def: &ReadModel, events: impl IntoIterator<Item = &'e Event>) -> (Map<String, Value>, Vec<Applied>) {
    let mut state = Map::new();
    let applied = events.into_iter().filter_map(|e| apply(def, &mut state, e)).collect();
    (state, applied)
}

/// The model writes `/` for the whole payload, which is the empty pointer in RFC 6901.
fn payload_pointer(pointer: &str) -> &str {
    if pointer == "/" { "" } else { pointer }
}

/// RFC 7396 for one member of a patch.
fn merge_patch(target: &mut Map<String, Value>, field: &str, patch: &Value) {
    match patch {
        Value::Null => {
            target.remove(field);
        }
        Value::Object(members) => {
            let slot = target.entry(field.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let inner = slot.as_object_mut().expect("made an object");
            for (k, v) in members {
                merge_patch(inner, k, v);
            }
        }
        other => {
            target.insert(field.to_string(), other.clone());
        }
    }
}
