//! The journey and finding endpoints of PRODUCT §6 (`/v1/journeys…`, `/v1/findings`): reads of
//! the journey engine (`engine.rs`) and of the stored findings.
//!
//! **Invariant:** every read first catches up with the log (`JourneyEngine::read`, `sync`), so an
//! answer reflects every event acknowledged before the request.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use causeway_envelope::format_time;
use causeway_journey::JourneyView;
use causeway_store::{FindingFilter, FindingRow, Store};
use serde_json::{Map, Value, json};

use crate::api::aggregates::states_at;
use crate::api::findings::{finding_json, is_known_kind, known_kinds};
use crate::api::params::{bool_param, check_known, limit, param, params, time_param};
use crate::engine::{Clock, JourneyEngine, link_dead_letters};
use crate::error::ApiError;
use crate::model::LoadedModel;
use crate::state::AppState;

pub(super) fn engine(state: &AppState) -> Result<JourneyEngine, ApiError> {
    state.journeys.clone().ok_or_else(|| ApiError::not_found("the journey engine is off in this server: start it with `causeway serve --model FILE`"))
}

pub(super) fn no_model() -> ApiError {
    ApiError::not_found("no model is loaded, so there are no journeys: start the server with --model FILE")
}

pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal("the journey engine", e))?
}

/// One instance as answered: its view, with the findings as stored (the engine's, and those raised
/// at ingest about any of its events; oldest first, with their stored ids) and the dead letters behind its missing reactions. Blocking.
pub(crate) fn journey_body(store: &Store, model: Option<&causeway_model::Model>, view: &JourneyView) -> Result<Value, ApiError> {
    let mut findings = store.instance_findings(&view.journey, &view.key, &view.correlation_ids, 10_000)?;
    findings.reverse();
    let mut body = journey_json(view, &findings);
    if let Some(Value::Array(findings)) = body.get_mut("findings") {
        link_dead_letters(store, model, findings)?;
    }
    Ok(body)
}

fn journey_json(v: &JourneyView, findings: &[FindingRow]) -> Value {
    json!({
        "journey": v.journey,
        "key": v.key,
        "state": v.state.as_str(),
        "terminal": v.state.is_terminal(),
        "milestones": v.milestones.iter().map(|m| json!({
            "event": m.event, "reached_at": format_time(&m.reached_at), "event_id": m.event_id,
        })).collect::<Vec<_>>(),
        "next_expected": v.next_expected,
        "findings": findings.iter().map(finding_json).collect::<Vec<_>>(),
        "correlation_ids": v.correlation_ids,
        "started_at": format_time(&v.started_at),
        "updated_at": format_time(&v.updated_at),
        "events": v.events,
    })
}

fn unknown_journey(model: &LoadedModel, journey: &str) -> ApiError {
    let names: Vec<&str> = model.model().journeys.keys().map(String::as_str).collect();
    ApiError::not_found(format!("the model has no journey named '{journey}'; its journeys: {}", names.join(", ")))
}

pub async fn get_journey(
    State(state): State<AppState>,
    Path((journey, key)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = params(&query);
    check_known(&pairs, &["states"])?;
    let with_states = bool_param(&pairs, "states")?;
    let engine = engine(&state)?;
    let store = state.store.clone();
    let model = state.model.clone();
    blocking(move || {
        let found = engine
            .read(|eval, model| {
                if !model.model().journeys.contains_key(&journey) {
                    return Err(unknown_journey(model, &journey));
                }
                eval.journey(&journey, &key)
                    .ok_or_else(|| ApiError::not_found(format!("no '{journey}' journey has the key '{key}' (no event with that key was stored)")))
            })?
            .ok_or_else(no_model)??;
        let model = model.current();
        let mut body = journey_body(&store, model.as_ref().map(|m| m.model()), &found)?;
        if with_states
            && let Some(loaded) = &model
            && let Some(def) = loaded.model().journeys.get(&found.journey)
        {
            let ids: Vec<String> = found.milestones.iter().map(|m| m.event_id.clone()).collect();
            let states = states_at(&store, Some(&engine), loaded.model(), &def.key, &found.key, &ids)?;
            if let Some(Value::Array(milestones)) = body.get_mut("milestones") {
                for (m, state) in milestones.iter_mut().zip(states) {
                    m["state"] = Value::Object(state);
                }
            }
        }
        Ok(Json(body))
    })
    .await
}

pub async fn list_journeys(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = params(&query);
    check_known(&pairs, &["journey", "state", "limit"])?;
    let limit = limit(&query, 100, 10_000)?;
    let journey = param(&pairs, "journey").map(str::to_owned);
    let wanted = param(&pairs, "state").map(str::to_owned);
    let engine = engine(&state)?;
    blocking(move || {
        let (total, views) = engine
            .read(|eval, model| {
                if let Some(j) = &journey
                    && !model.model().journeys.contains_key(j)
                {
                    return Err(unknown_journey(model, j));
                }
                let mut total = 0usize;
                let mut views = Vec::new();
                for i in eval.instances(journey.as_deref(), wanted.as_deref()) {
                    total += 1;
                    if views.len() < limit {
                        views.push(eval.view(i));
                    }
                }
                Ok((total, views))
            })?
            .ok_or_else(no_model)??;
        let journeys: Vec<Value> = views
            .iter()
            .map(|v| {
                json!({
                    "journey": v.journey, "key": v.key, "state": v.state.as_str(),
                    "milestones": v.milestones.iter().map(|m| m.event.clone()).collect::<Vec<_>>(),
                    "next_expected": v.next_expected,
                    "open_findings": v.findings.iter().filter(|f| f.is_open()).count(),
                    "started_at": format_time(&v.started_at), "updated_at": format_time(&v.updated_at),
                })
            })
            .collect();
        Ok(Json(json!({"total": total, "journeys": journeys})))
    })
    .await
}

pub async fn journey_summary(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = params(&query);
    check_known(&pairs, &["digest"])?;
    let digest = bool_param(&pairs, "digest")?;
    let engine = engine(&state)?;
    blocking(move || {
        let s = engine.summary(digest)?.ok_or_else(no_model)?;
        let by_state: Map<String, Value> = s.by_state.iter().map(|(k, n)| (k.clone(), json!(n))).collect();
        let findings: Map<String, Value> =
            s.findings_by_kind.iter().map(|(k, open, resolved)| (k.to_string(), json!({"open": open, "resolved": resolved}))).collect();
        Ok(Json(json!({
            "model": s.model,
            "log_position": s.position,
            "events": s.events,
            "redeliveries": s.redeliveries,
            "journeys_by_state": by_state,
            "findings_by_kind": findings,
            "clock": s.now.as_ref().map(format_time),
            "digest": s.digest.map(|d| format!("{d:016x}")),
        })))
    })
    .await
}

/// `GET /v1/clock`: the time deadlines are judged up to, and why — every source's watermark,
/// whether it is idle, and the late events it delivered (PRODUCT §4).
pub async fn get_clock(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    check_known(&params(&query), &[])?;
    let engine = engine(&state)?;
    blocking(move || {
        let view = engine.clock_view()?.ok_or_else(no_model)?;
        let (lateness, idle) = match view.clock {
            Clock::Watermark(c) => (Some(c.allowed_lateness), Some(c.idle_after)),
            Clock::Wall | Clock::Event => (None, None),
        };
        let secs = |d: std::time::Duration| d.as_secs_f64();
        let sources: Vec<Value> = view
            .sources
            .iter()
            .map(|s| {
                json!({
                    "source": s.name,
                    "watermark": s.watermark.as_ref().map(format_time),
                    "last_heard": s.last_heard.as_ref().map(format_time),
                    "idle": s.idle,
                    "events": s.events,
                    "late_events": s.late_events,
                    "max_lateness_seconds": secs(s.max_lateness),
                    "mean_lateness_seconds": if s.late_events == 0 { 0.0 } else { secs(s.total_lateness) / s.late_events as f64 },
                })
            })
            .collect();
        Ok(Json(json!({
            "mode": view.clock.name(),
            "clock": view.now.as_ref().map(format_time),
            "as_of": format_time(&view.as_of),
            "allowed_lateness_seconds": lateness.map(secs),
            "idle_after_seconds": idle.map(secs),
            "late_events": view.sources.iter().map(|s| s.late_events).sum::<u64>(),
            "sources": sources,
        })))
    })
    .await
}

pub async fn list_findings(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = params(&query);
    check_known(&pairs, &["kind", "journey", "key", "event_id", "open", "since", "limit"])?;
    let limit = limit(&query, 100, 10_000)?;
    let open_only = bool_param(&pairs, "open")?;
    let since = time_param(&pairs, "since")?;
    if let Some(kind) = param(&pairs, "kind")
        && !is_known_kind(kind)
    {
        return Err(ApiError::bad_request("invalid_parameter", format!("unknown finding kind '{kind}'; the kinds are {}", known_kinds())));
    }
    let filter = FindingFilter {
        kind: param(&pairs, "kind").map(str::to_owned),
        journey: param(&pairs, "journey").map(str::to_owned),
        key: param(&pairs, "key").map(str::to_owned),
        event_id: param(&pairs, "event_id").map(str::to_owned),
        since,
        open_only,
        limit,
    };
    let engine = state.journeys.clone();
    let store = state.store.clone();
    let model = state.model.current();
    blocking(move || {
        if let Some(engine) = engine {
            engine.sync()?;
        }
        let rows = store.findings(&filter)?;
        let mut findings: Vec<Value> = rows.iter().map(finding_json).collect();
        link_dead_letters(&store, model.as_ref().map(|m| m.model()), &mut findings)?;
        Ok(Json(json!({"findings": findings})))
    })
    .await
}
