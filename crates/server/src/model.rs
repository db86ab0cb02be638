//! The loaded model: swapped atomically on reload; a model with errors is refused and the running
//! one stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_contracts::Contracts;
use causeway_model::{Diagnostic, InvariantRule, Key, Model};
use serde_json::{Value, json};

use crate::{ApiError, AppState};

/// A model in force, with its compiled contracts.
pub struct LoadedModel {
    pub contracts: Contracts,
    /// Reads the journey keys of events the engine never sees (those refused at ingest).
    pub keys: causeway_journey::JourneyKeys,
    pub path: PathBuf,
    pub loaded_at: String,
}

impl LoadedModel {
    pub fn model(&self) -> &Model {
        self.contracts.model()
    }
}

/// The slot holding the model in force; cheap to clone and share.
#[derive(Clone, Default)]
pub struct ModelSlot {
    current: Arc<RwLock<Option<Arc<LoadedModel>>>>,
    pii_key: Arc<Vec<u8>>,
}

impl ModelSlot {
    /// A slot with no model: events are stored without contract checks.
    pub fn empty() -> ModelSlot {
        ModelSlot::default()
    }

    /// Loads the model file; any error diagnostic refuses it.
    pub fn load(path: &Path, pii_key: Vec<u8>) -> Result<ModelSlot, Vec<Diagnostic>> {
        let slot = ModelSlot { current: Arc::default(), pii_key: Arc::new(pii_key) };
        slot.install(path)?;
        Ok(slot)
    }

    pub fn current(&self) -> Option<Arc<LoadedModel>> {
        self.current.read().expect("model slot").clone()
    }

    /// Re-reads the model file. On errors the running model stays and the diagnostics come back.
    pub fn reload(&self) -> Result<Option<Arc<LoadedModel>>, Vec<Diagnostic>> {
        let Some(path) = self.current().map(|m| m.path.clone()) else { return Ok(None) };
        self.install(&path).map(Some)
    }

    fn install(&self, path: &Path) -> Result<Arc<LoadedModel>, Vec<Diagnostic>> {
        let model = causeway_model::load(path).into_result()?;
        let loaded = Arc::new(LoadedModel {
            keys: causeway_journey::JourneyKeys::new(&model),
            contracts: Contracts::new(model, self.pii_key.as_ref().clone()),
            path: path.to_path_buf(),
            loaded_at: causeway_envelope::format_time(&chrono::Utc::now()),
        });
        *self.current.write().expect("model slot") = Some(loaded.clone());
        Ok(loaded)
    }
}

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
