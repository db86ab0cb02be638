//! `POST /v1/events`: any PRODUCT §2 form in, a result per event out, after the commit.

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_envelope::{BodyError, Item, parse_body, sniff_identity};
use causeway_store::{EventOutcome, NewRejection};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::json;

use crate::auth::{AuditNote, Principal, too_many};
use crate::error::ApiError;
use crate::ingest::{fence, prepare, refused};
use crate::metrics::{IngestLabels, Metrics};
use crate::model::LoadedModel;
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct IngestResponse {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub results: Vec<ItemResult>,
}

#[derive(Debug, Serialize)]
pub struct ItemResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
    /// The DLQ record keeping the refused input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlq_id: Option<i64>,
    /// Contract findings about an accepted event (it is stored and flagged).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingNote>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingNote {
    pub kind: String,
    pub detail: String,
}

pub async fn post_events(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let metrics = state.metrics.clone();
    let answer = ingest_request(state, who, headers, body).await;
    metrics.ingest_duration.lock().expect("ingest duration").observe(started.elapsed().as_secs_f64());
    answer
}

async fn ingest_request(state: AppState, who: Principal, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    Metrics::add(&state.metrics.requests, 1);
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let limit = state.parse.limits.max_request_bytes;
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    // Room for the body before it is read; held until the answer. Refused: nothing was read or stored.
    let _room = match state.admission.admit(&state.store, state.journeys.as_ref(), limit, length).await {
        Ok(room) => room,
        Err(overloaded) => return Ok(overloaded),
    };
    let timeout = state.admission.limits().body_read_timeout;
    let Ok(read) = tokio::time::timeout(timeout, read_capped(body, limit)).await else {
        let message = format!("the request body did not arrive within {} ms (--body-read-timeout-ms)", timeout.as_millis());
        let mut response = ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", message).into_response();
        // The rest of the body is not read: the connection ends with this answer.
        response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        return Ok(response);
    };
    let (bytes, complete) = read?;
    if !complete {
        let size = length.unwrap_or(limit + 1);
        let error = BodyError::TooLarge { size, limit };
        return Err(reject_body(&state, &error, &bytes, content_type, true).await);
    }
    // Every ce-* header, ASCII or not: the parser names a header that is not ASCII.
    let ce_headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("ce-"))
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let model = state.model.current();
    let mut parse = state.parse;
    if let Some(m) = &model {
        parse.correlation_required = m.model().envelope.correlation_required;
    }
    let ct = content_type.clone();
    let bytes = axum::body::Bytes::from(bytes);
    let body_for_parse = bytes.clone();
    // Parsing a 16 MiB batch takes milliseconds: keep it off the async workers.
    let parsed = tokio::task::spawn_blocking(move || parse_body(ct.as_deref(), &ce_headers, &body_for_parse, &parse))
        .await
        .map_err(|e| ApiError::internal("parsing the request", e))?;
    let items = match parsed {
        Ok(items) => items,
        Err(error) => return Err(reject_body(&state, &error, &bytes, content_type, false).await),
    };
    // The request took one unit of its token's rate; each further event takes one more.
    if let Err(wait) = state.auth.charge(&who, items.len().saturating_sub(1) as u64) {
        return Ok(too_many(&who, wait));
    }
    ingest_items(&state, &who, items, content_type, model.as_deref()).await
}

/// Stores the parsed items and answers with a result per item, in input order; the answer carries
/// the audit entry's counts.
async fn ingest_items(
    state: &AppState,
    who: &Principal,
    items: Vec<Item>,
    content_type: Option<String>,
    model: Option<&LoadedModel>,
) -> Result<Response, ApiError> {
    let (mut events, mut rejections, mut placement) = prepare(items, content_type, model, state.parse.limits, None);
    // A producer token sends only events of the contexts it holds; the others are refused and kept.
    let unauthorized = match &who.token {
        Some(token) => fence(&mut events, &mut rejections, &mut placement, model, |c| who.may_produce(c), &format!("token {}", token.label())),
        None => 0,
    };
    let labels = IngestLabels::of(&events, &rejections);
    let ids: Vec<String> = events.iter().map(|e| e.event().id.clone()).collect();
    let event_findings: Vec<Vec<FindingNote>> =
        events.iter().map(|e| e.findings.iter().map(|f| FindingNote { kind: f.kind.clone(), detail: f.detail.clone() }).collect()).collect();
    let stored = state.store.append(events, rejections).await?;
    if let Some(engine) = &state.journeys {
        engine.notify();
    }
    let mut response = IngestResponse { accepted: 0, duplicates: 0, rejected: 0, results: Vec::with_capacity(placement.len()) };
    for place in placement {
        response.results.push(match place {
            Ok(i) => {
                let status = match stored.events[i] {
                    EventOutcome::Accepted => {
                        response.accepted += 1;
                        "accepted"
                    }
                    EventOutcome::Duplicate => {
                        response.duplicates += 1;
                        "duplicate"
                    }
                };
                // A duplicate's findings were raised when it was first stored.
                let findings = if status == "accepted" { event_findings[i].clone() } else { Vec::new() };
                ItemResult { id: Some(ids[i].clone()), status, reason: None, error_type: None, dlq_id: None, findings }
            }
            Err((i, id, code, reason)) => {
                response.rejected += 1;
                ItemResult {
                    id,
                    status: "rejected",
                    reason: Some(reason),
                    error_type: Some(code),
                    dlq_id: Some(stored.dlq_ids[i]),
                    findings: Vec::new(),
                }
            }
        });
    }
    let m = &state.metrics;
    Metrics::add(&m.accepted, response.accepted);
    Metrics::add(&m.duplicates, response.duplicates);
    Metrics::add(&m.rejected, response.rejected);
    m.count_ingested(model.map(|m| m.model()), &labels, &stored.events);
    let total = response.results.len();
    let note = AuditNote(json!({
        "accepted": response.accepted,
        "duplicates": response.duplicates,
        "rejected": response.rejected,
        "unauthorized": unauthorized,
    }));
    let noted = |mut answer: Response| {
        answer.extensions_mut().insert(note.clone());
        answer
    };
    if response.rejected == 0 {
        return Ok(noted(Json(response).into_response()));
    }
    if response.rejected < total {
        // Some stored, some refused: the client must read the per-event results.
        return Ok(noted((StatusCode::MULTI_STATUS, Json(response)).into_response()));
    }
    let first = response.results.iter().find_map(|r| r.reason.clone()).unwrap_or_default();
    let code = response.results.iter().find_map(|r| r.error_type).unwrap_or("invalid_event");
    let message = if total == 1 {
        format!("the event was rejected: {first} (kept as a DLQ record)")
    } else {
        format!("all {total} events were rejected (kept as DLQ records); the first: {first}")
    };
    let body = serde_json::to_value(&response).map_err(|e| ApiError::internal("encoding the answer", e))?;
    // Refused for who sent them, not for what they are: 403, as for any other right not held.
    let status = if unauthorized == total { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
    let mut error = ApiError::new(status, code, message);
    if let serde_json::Value::Object(fields) = body {
        error.extra = fields;
    }
    Ok(noted(error.into_response()))
}

/// A body refused as a whole is still kept, as one DLQ record.
async fn reject_body(state: &AppState, error: &BodyError, bytes: &[u8], content_type: Option<String>, truncated: bool) -> ApiError {
    Metrics::add(&state.metrics.bodies_rejected, 1);
    let raw = String::from_utf8_lossy(bytes).into_owned();
    let identity = sniff_identity(&raw);
    let redacted = state.model.current().and_then(|m| m.contracts.redact_raw(&raw));
    // A body that is not UTF-8 (or cut inside a character) is kept as its bytes, unless PII had
    // to be redacted from it.
    let original_bytes = (redacted.is_none() && std::str::from_utf8(bytes).is_err()).then(|| bytes.to_vec());
    let text = redacted.unwrap_or(raw);
    let mut message = error.what();
    if truncated {
        message.push_str(&format!(" (the DLQ record keeps the first {} bytes)", bytes.len()));
    }
    let status = match error {
        BodyError::TooLarge { .. } | BodyError::BatchTooLong { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut answer = ApiError::new(status, error.code(), message);
    if let Some(remedy) = error.remedy() {
        answer = answer.with_remedy(remedy);
    }
    let mut record = refused(text, content_type, error.code(), answer.message.clone(), identity);
    record.original_bytes = original_bytes;
    let rejection = NewRejection { record, findings: Vec::new() };
    match state.store.append(vec![], vec![rejection]).await {
        Ok(stored) => answer.with("dlq_id", json!(stored.dlq_ids[0])),
        Err(e) => e.into(),
    }
}

/// Reads at most `limit` bytes; `false` when the body is longer (the prefix is returned).
pub(crate) async fn read_capped(body: Body, limit: usize) -> Result<(Vec<u8>, bool), ApiError> {
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request("body_read", format!("the request body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                let room = limit - out.len();
                out.extend_from_slice(&data[..room]);
                return Ok((out, false));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok((out, true))
}
