//! Time travel (PRODUCT §6 `GET /v1/aggregates/{type}/{id}?at=`): a read model's state as of a
//! moment, folded from the stored events without side effects.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use causeway_envelope::{Event, format_time, parse_time};
use causeway_model::{Key, Model};
use causeway_readmodel::{Applied, apply, fold, key_of};
use causeway_store::{AggregateLookup, EventRow, Store};
use serde_json::{Map, Value, json};

use crate::api::params::{check_known, param, params};
use crate::engine::{JourneyEngine, parse_stored};
use crate::error::ApiError;
use crate::state::AppState;

/// Most events one reconstruction folds.
const MAX_EVENTS: usize = 100_000;

/// The events of `read_model`'s instance `id`, in the order they are folded, with their stored
/// rows (for cutting at an event). A read model keyed like a journey reads the events of the
/// journey instance's correlations (the engine first catches up with the log).
fn instance_events(
    store: &Store,
    engine: Option<&JourneyEngine>,
    model: &Model,
    read_model: &str,
    id: &str,
) -> Result<Vec<(EventRow, Event)>, ApiError> {
    let def = model.read_models.get(read_model).ok_or_else(|| unknown_read_model(model, read_model))?;
    let keyed_like = |key: &Key| model.journeys.iter().find(|(_, j)| &j.key == key).map(|(name, _)| name.clone());
    let lookup = match (&def.key, engine) {
        (Key::Subject, _) => AggregateLookup::Subject,
        (key @ Key::Pointer(pointer), Some(engine)) => {
            let correlations = match keyed_like(key) {
                Some(journey) => {
                    engine.read(|eval, _| eval.journey(&journey, id).map(|v| (v.correlation_ids, eval.config().max_correlations)))?.flatten()
                }
                None => None,
            };
            // Complete only when every event has a correlation id and the instance kept all of
            // its correlations (the engine keeps a bounded number); otherwise scan.
            match correlations {
                Some((c, kept)) if model.envelope.correlation_required && c.len() < kept => AggregateLookup::Correlations(c),
                _ => AggregateLookup::Pointer(pointer.clone()),
            }
        }
        (Key::Pointer(pointer), None) => AggregateLookup::Pointer(pointer.clone()),
    };
    let types: Vec<String> = def.on.keys().cloned().collect();
    let rows = store.aggregate_events(&lookup, &types, id, MAX_EVENTS)?;
    Ok(rows
        .into_iter()
        .filter_map(|row| parse_stored(&row.envelope).map(|e| (row, e)))
        // Membership also takes events that joined by correlation: keep those carrying the key.
        .filter(|(_, e)| key_of(def, e).as_deref() == Some(id))
        .collect())
}

/// How many of `events` (in fold order) come up to and including the stored event `event_id`,
/// which need not be one of them; `None` when no such event is stored.
fn cut_at_event(store: &Store, events: &[(EventRow, Event)], event_id: &str) -> Result<Option<(usize, EventRow)>, ApiError> {
    let at = match events.iter().find(|(row, _)| row.event_id == event_id) {
        Some((row, _)) => row.clone(),
        None => match store.event(event_id)? {
            Some(row) => row,
            None => return Ok(None),
        },
    };
    let cut = events.iter().take_while(|(row, _)| (&row.time, row.seq) <= (&at.time, at.seq)).count();
    Ok(Some((cut, at)))
}

fn unknown_read_model(model: &Model, name: &str) -> ApiError {
    let names: Vec<&str> = model.read_models.keys().map(String::as_str).collect();
    if names.is_empty() {
        return ApiError::not_found(format!("the model has no read models, so there is no '{name}' to show: add read_models to it"));
    }
    ApiError::not_found(format!("the model has no read model named '{name}'; its read models: {}", names.join(", ")))
}

fn applied_json(a: &Applied) -> Value {
    json!({"event_id": a.event_id, "event_type": a.event_type, "time": a.time, "changed": a.changed, "missing": a.missing})
}

/// `GET /v1/aggregates/{type}/{id}?at=TIME|EVENT_ID`.
pub async fn get_state(
    State(state): State<AppState>,
    Path((kind, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = params(&query);
    check_known(&pairs, &["at"])?;
    let at = param(&pairs, "at").map(str::to_owned);
    let loaded = state
        .model
        .current()
        .ok_or_else(|| ApiError::not_found("no model is loaded, so there are no read models: start the server with --model FILE"))?;
    let store = state.store.clone();
    let engine = state.journeys.clone();
    let body = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let model = loaded.model();
        let events = instance_events(&store, engine.as_ref(), model, &kind, &id)?;
        if events.is_empty() {
            let types: Vec<&str> = model.read_models[&kind].on.keys().map(String::as_str).collect();
            return Err(ApiError::not_found(format!("no stored event of {kind}'s types ({}) has the key '{id}'", types.join(", "))));
        }
        let total = events.len();
        // Cut where `at` says: at a time, every event up to it; at an event, every event up to
        // and including it, in the same order as the fold.
        let (cut, as_of) = match &at {
            None => (total, json!({"latest": true})),
            Some(text) => match parse_time(text) {
                Ok(t) => (events.iter().take_while(|(_, e)| e.time <= t).count(), json!({"time": format_time(&t)})),
                Err(_) => {
                    let (cut, at_row) = cut_at_event(&store, &events, text)?.ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_parameter",
                            format!("at takes an RFC 3339 time or a stored event id; no event has the id '{text}'"),
                        )
                    })?;
                    (cut, json!({"event_id": at_row.event_id, "time": at_row.time}))
                }
            },
        };
        let (state, applied) = fold(&model.read_models[&kind], events[..cut].iter().map(|(_, e)| e));
        Ok(json!({
            "type": kind,
            "id": id,
            "as_of": as_of,
            "state": Value::Object(state),
            "version": applied.len(),
            "events": applied.iter().map(applied_json).collect::<Vec<_>>(),
            "later_events": total - cut,
        }))
    })
    .await
    .map_err(|e| ApiError::internal("time travel", e))??;
    Ok(Json(body))
}

/// The state of each read model keyed like `journey` at each of `milestone_event_ids`: what the
/// journey view shows with `?states=true`.
pub(crate) fn states_at(
    store: &Store,
    engine: Option<&JourneyEngine>,
    model: &Model,
    journey_key: &Key,
    key: &str,
    milestone_event_ids: &[String],
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let mut out = vec![Map::new(); milestone_event_ids.len()];
    for (name, def) in &model.read_models {
        if &def.key != journey_key {
            continue;
        }
        let events = instance_events(store, engine, model, name, key)?;
        // One fold, snapshotted at each milestone's cut, in the order of the cuts.
        let mut cuts = Vec::new();
        for (i, milestone) in milestone_event_ids.iter().enumerate() {
            if let Some((cut, _)) = cut_at_event(store, &events, milestone)? {
                cuts.push((cut, i));
            }
        }
        cuts.sort_unstable();
        let (mut state, mut folded) = (Map::new(), 0);
        for (cut, i) in cuts {
            for (_, e) in &events[folded..cut] {
                apply(def, &mut state, e);
            }
            folded = cut;
            out[i].insert(name.clone(), Value::Object(state.clone()));
        }
    }
    Ok(out)
}
