//! The model endpoints (`/v1/model`, `/v1/model/reload`, `/v1/model/canvas.svg`): the model in
//! force (`model.rs`), described, reloaded and drawn.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_model::{InvariantRule, Key};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::model::LoadedModel;
use crate::state::AppState;

fn no_model() -> ApiError {
    ApiError::not_found("no model is loaded: start the server with --model FILE (or `model` in the config file)")
}

pub async fn get_model(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let loaded = state.model.current().ok_or_else(no_model)?;
    Ok(Json(describe(&loaded)))
}

/// The board of the model in force, as an event-storming canvas.
pub async fn canvas(State(state): State<AppState>) -> Result<Response, ApiError> {
    let loaded = state.model.current().ok_or_else(no_model)?;
    let svg = tokio::task::spawn_blocking(move || causeway_canvas::render_svg(loaded.model()))
        .await
        .map_err(|e| ApiError::internal("rendering the canvas", e))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

pub async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let slot = state.model.clone();
    let outcome = tokio::task::spawn_blocking(move || slot.reload()).await.map_err(|e| ApiError::internal("reloading the model", e))?;
    match outcome {
        Ok(Some(loaded)) => Ok(Json(describe(&loaded))),
        Ok(None) => Err(no_model()),
        Err(diagnostics) => {
            let errors = diagnostics.iter().filter(|d| d.severity == causeway_model::Severity::Error).count();
            let list: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_model",
                format!("the model has {errors} error{}; the running model is unchanged", if errors == 1 { "" } else { "s" }),
            )
            .with("diagnostics", json!(list)))
        }
    }
}

/// The wire form of a model: what it says, for clients and the UI.
fn describe(loaded: &LoadedModel) -> Value {
    let m = loaded.model();
    let key = |k: &Key| k.as_str().to_string();
    json!({
        "name": m.name,
        "path": loaded.path,
        "loaded_at": loaded.loaded_at,
        "contexts": m.contexts.iter().map(|(n, c)| (n.clone(), json!({"owner": c.owner, "services": c.services}))).collect::<serde_json::Map<_, _>>(),
        "events": m.events.iter().map(|(n, e)| (n.clone(), json!({
            "context": e.context, "aggregate": e.aggregate, "topic": e.topic,
            "versions": e.versions.iter().map(|(v, s)| (v.to_string(), s.clone())).collect::<serde_json::Map<_, _>>(),
            "pii": e.pii,
        }))).collect::<serde_json::Map<_, _>>(),
        "commands": m.commands.iter().map(|(n, c)| (n.clone(), json!({"context": c.context, "actor": c.actor, "aggregate": c.aggregate, "emits": c.emits}))).collect::<serde_json::Map<_, _>>(),
        "policies": m.policies.iter().map(|(n, p)| (n.clone(), json!({"when": p.when, "then": p.then, "within_ms": p.within_ms}))).collect::<serde_json::Map<_, _>>(),
        "journeys": m.journeys.iter().map(|(n, j)| (n.clone(), json!({
            "key": key(&j.key), "milestones": j.milestones,
            "outcomes": j.outcomes.iter().map(|(o, e)| (o.clone(), json!(e))).collect::<serde_json::Map<_, _>>(),
            "invariants": j.invariants.iter().map(|i| match &i.rule {
                InvariantRule::Requires(r) => json!({"name": i.name, "event": i.event, "requires": r}),
                InvariantRule::AtMost(n) => json!({"name": i.name, "event": i.event, "at_most": n}),
                InvariantRule::ForbiddenAfter(f) => json!({"name": i.name, "event": i.event, "forbidden_after": f}),
            }).collect::<Vec<_>>(),
            "complete_within_ms": j.complete_within_ms, "objective_percent": j.objective_percent,
            "stall_after_ms": j.stall_after_ms, "reconciliation_owner": j.reconciliation_owner,
        }))).collect::<serde_json::Map<_, _>>(),
        "envelope": {"correlation": if m.envelope.correlation_required { "required" } else { "optional" }},
    })
}
