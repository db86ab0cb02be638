//! `GET /v1/slo`: each SLO of the model as the journey engine judged it by event time — the SLI
//! over its window, the error budget left, the burn rate over each window of the SRE workbook's
//! table and the alert state it gives (PRODUCT §6).

use axum::Json;
use axum::extract::{RawQuery, State};
use causeway_envelope::format_time;
use serde_json::{Map, Value, json};

use crate::api::journeys::{blocking, engine, no_model};
use crate::api::params::{check_known, params};
use crate::error::ApiError;
use crate::slo::SloView;
use crate::state::AppState;

pub async fn get_slo(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    check_known(&params(&query), &[])?;
    let engine = engine(&state)?;
    blocking(move || {
        let (now, views) = engine.read_slos(|tracker, now| (now, tracker.evaluate(now)))?.ok_or_else(no_model)?;
        Ok(Json(json!({
            "clock": now.as_ref().map(format_time),
            "slos": views.iter().map(slo_json).collect::<Vec<_>>(),
        })))
    })
    .await
}

/// One SLO as answered.
pub(crate) fn slo_json(v: &SloView) -> Value {
    let o = &v.objective;
    let e = &v.evaluation;
    let (subject, name) = o.subject();
    let mut burn = Map::new();
    for (window, rate) in &e.burn_rates {
        burn.insert(window.to_string(), json!(rate));
    }
    json!({
        "name": o.name,
        "sli": o.sli_kind(),
        subject: name,
        "objective": o.target,
        "window": causeway_model::format_duration(o.window_minutes as u64 * 60_000),
        "good": e.window.good,
        "bad": e.window.bad,
        "sli_value": e.sli,
        "error_budget_remaining": e.budget_remaining,
        "burn_rates": burn,
        "alert": e.alert.map(|s| s.as_str()),
        "firing": e.firing.iter().map(|r| json!({"severity": r.severity.as_str(), "factor": r.factor, "long_window": r.long, "short_window": r.short})).collect::<Vec<_>>(),
        "total_good": v.totals.good,
        "total_bad": v.totals.bad,
    })
}
