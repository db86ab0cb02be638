//! The notifier's alerts and its silences (issue 19): `GET /v1/alerts`, `GET /v1/silences`,
//! `POST /v1/silences`, `DELETE /v1/silences/{id}`. What is judged and sent is `notify.rs`'s.
//!
//! **Invariants:**
//! - A silence is answered `201` only once it is on disk; every client mistake is a `400` that
//!   says what to change, an unknown id a `404`, a silence already expired a `409`.
//! - Making and expiring silences needs the operator role (`auth.rs`); who made one is recorded
//!   from `created_by`, else the `x-causeway-actor` header, with the token used (`auth::actor`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_envelope::format_time;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::params::{check_known, params};
use crate::auth::actor;
use crate::error::ApiError;
use crate::notify::{Ends, NewSilence, SilenceError};
use crate::state::AppState;

/// `GET /v1/alerts`: what the notifier judged in its last round.
pub async fn list_alerts(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    check_known(&params(&query), &[])?;
    let s = state.notify.status();
    Ok(Json(json!({
        "notifier": if s.running { "running" } else { "off" },
        "interval_seconds": s.running.then_some(s.interval.as_secs_f64()),
        "evaluations": s.evaluations,
        "skipped": s.skipped,
        "evaluated_at": s.evaluated_at.as_ref().map(format_time),
        "clock": s.clock.as_ref().map(format_time),
        "last_error": s.last_error,
        "alerts": s.alerts.iter().map(|a| json!({
            "fingerprint": a.fingerprint,
            "state": a.state(),
            "labels": a.alert.labels,
            "annotations": a.alert.annotations,
            "starts_at": format_time(&a.alert.starts_at),
            "generator_url": a.alert.generator_url,
            "silenced_by": a.silenced_by,
        })).collect::<Vec<_>>(),
        "receivers": s.receivers.iter().map(|r| json!({
            "name": r.name, "format": r.format.as_str(), "sent": r.sent, "failed": r.failed, "last_error": r.last_error,
        })).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/silences`: active silences, then those expired within the last day.
pub async fn list_silences(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    check_known(&params(&query), &[])?;
    let now = Utc::now();
    let silences: Vec<Value> = state.notify.silences(now).iter().map(|s| s.json(now)).collect();
    Ok(Json(json!({ "silences": silences })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    matchers: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "present")]
    duration: Option<String>,
    #[serde(default, deserialize_with = "present")]
    ends_at: Option<String>,
    comment: String,
    #[serde(default, deserialize_with = "present")]
    created_by: Option<String>,
}

/// An optional field that, when given, is a string: `null` is refused, as the document says.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

const SILENCE_SHAPE: &str = r#"{"matchers": {"slo": "…"}, "duration": "2h" (or "ends_at": "RFC 3339 time"), "comment": "…", "created_by": "…"}"#;

/// `POST /v1/silences`: `201` with the silence and its `Location`.
pub async fn create_silence(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let body: SilenceBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_request", format!("expected {SILENCE_SHAPE}: {e}")))?;
    let ends = match (body.duration, body.ends_at) {
        (Some(d), None) => Ends::After(d),
        (None, Some(at)) => Ends::At(at),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "say when the silence ends with one of duration (e.g. \"2h\") or ends_at (an RFC 3339 time), not both",
            ));
        }
    };
    let created_by = actor(body.created_by, &headers);
    let new = NewSilence { matchers: body.matchers, ends, comment: body.comment, created_by };
    let notify = state.notify.clone();
    let now = Utc::now();
    let silence = tokio::task::spawn_blocking(move || notify.add_silence(new, now))
        .await
        .map_err(|e| ApiError::internal("saving the silence", e))?
        .map_err(silence_error)?;
    let location = format!("/v1/silences/{}", silence.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(silence.json(now))).into_response())
}

/// `DELETE /v1/silences/{id}`: expires it now.
pub async fn delete_silence(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let notify = state.notify.clone();
    let now = Utc::now();
    let expired = tokio::task::spawn_blocking(move || notify.expire_silence(&id, now))
        .await
        .map_err(|e| ApiError::internal("expiring the silence", e))?
        .map_err(silence_error)?;
    Ok(Json(expired.json(now)))
}

fn silence_error(e: SilenceError) -> ApiError {
    match e {
        SilenceError::Invalid(m) => ApiError::bad_request("invalid_request", m),
        SilenceError::NotFound(_) => ApiError::not_found(format!("{e}: list them with GET /v1/silences")),
        SilenceError::AlreadyExpired(_) => ApiError::new(StatusCode::CONFLICT, "already_expired", format!("{e}: nothing to do")),
        SilenceError::TooMany => ApiError::new(StatusCode::CONFLICT, "too_many_silences", e.to_string()),
        SilenceError::Io(e) => ApiError::internal("saving the silences", e),
    }
}
