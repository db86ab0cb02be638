//! The dead-letter explorer and replay endpoints (PRODUCT §6 `/v1/dlq…`); what a replay sends is
//! `replay.rs`'s.
//!
//! **Invariants:**
//! - Every replay attempt — dry runs included — is audited before it is answered.
//! - A record already replayed (or resolved, or discarded) is not sent again unless `force` is
//!   given; one record is never replayed by two requests at once (its slot is claimed first).
//! - A target that fails leaves the record `pending` with the target's error.
//! - Bulk replays go oldest first, no faster than their rate, and never past `stop_at` or `limit`.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use causeway_envelope::{format_time, parse_time, sniff_identity};
use causeway_store::{
    DlqFilter, DlqReport, DlqRow, DlqStatus, FindingFilter, FindingRow, INGEST_CONSUMER, ReplayAttempt, ReplayOutcome, StatusChange,
};
use chrono::Datelike as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::api::events::read_capped;
use crate::api::findings::finding_json;
use crate::api::journeys::journey_body;
use crate::api::params::{NotANumber, check_known, limit, param, params, rfc3339, time_param, whole_number};
use crate::api::query::{correlation_json, read};
use crate::auth::{Principal, actor};
use crate::engine::link_dead_letters;
use crate::error::{ApiError, remedy};
use crate::replay::{MAX_CONTENT_TYPE_BYTES, ReplayRequest, Target, is_media_type};
use crate::state::AppState;
use causeway_auth::Access;

/// Bulk replay: records per request by default and at most; replays per second by default and at most.
const BULK_DEFAULT_LIMIT: usize = 100;
const BULK_MAX_LIMIT: usize = 10_000;
const BULK_DEFAULT_RATE: f64 = 50.0;
const BULK_MIN_RATE: f64 = 0.1;
const BULK_MAX_RATE: f64 = 1_000.0;
/// A reported failure time must be written in this year or later, and be no later than a day after
/// the server's clock.
const EARLIEST_FAILED_YEAR: i32 = 2000;

// --- reports ------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    event: Box<RawValue>,
    consumer: String,
    error_type: String,
    error_message: String,
    source_topic: Option<String>,
    /// Where in `source_topic` the consumer read it.
    source_partition: Option<i32>,
    source_offset: Option<i64>,
    stack: Option<String>,
    context: Option<Map<String, Value>>,
    failed_at: Option<String>,
    /// How to send the event on replay; by default `application/cloudevents+json` for a
    /// structured CloudEvent, else `application/json`.
    content_type: Option<String>,
}

const REPORT_SHAPE: &str = r#"{"event": {…}, "consumer": "…", "error_type": "…", "error_message": "…"} (optional: source_topic, source_partition, source_offset, stack, context, failed_at, content_type)"#;

/// `POST /v1/dlq`: a consumer reports an event it could not process.
pub async fn report(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let limit = state.parse.limits.max_request_bytes;
    let (bytes, complete) = read_capped(body, limit).await?;
    if !complete {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the report is over the {limit}-byte request limit: send the event without large attachments"),
        ));
    }
    let body: ReportBody =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request("invalid_request", format!("expected {REPORT_SHAPE}: {e}")))?;
    for (name, value) in [("consumer", &body.consumer), ("error_type", &body.error_type), ("error_message", &body.error_message)] {
        if value.trim().is_empty() {
            return Err(ApiError::bad_request("invalid_request", format!("{name} must not be empty: say which consumer failed and how")));
        }
    }
    let failed_at = body.failed_at.as_deref().map(failed_at_param).transpose()?;
    if let Some(ct) = body.content_type.as_deref().filter(|ct| !is_media_type(ct)) {
        let shown: String = ct.chars().take(80).collect();
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "content_type {shown:?} is not a media type: send type/subtype with optional ; name=value parameters, \
                 at most {MAX_CONTENT_TYPE_BYTES} bytes of ASCII (e.g. application/cloudevents+json)"
            ),
        ));
    }
    let original = body.event.get().to_string();
    let identity = sniff_identity(&original);
    let structured = serde_json::from_str::<Map<String, Value>>(&original).is_ok_and(|m| m.contains_key("specversion"));
    let content_type =
        body.content_type.clone().unwrap_or_else(|| if structured { "application/cloudevents+json" } else { "application/json" }.to_string());
    // Without a topic in the report, the model's topic for the event type (if it names one).
    let model = state.model.current();
    let source_topic = body.source_topic.or_else(|| {
        let event = model.as_ref()?.model().events.get(identity.event_type.as_deref()?)?;
        event.topic.clone()
    });
    let mut report = DlqReport {
        original,
        // A JSON request is UTF-8 text.
        original_bytes: None,
        content_type: Some(content_type),
        consumer: body.consumer,
        source_topic,
        source_partition: body.source_partition,
        source_offset: body.source_offset,
        error_type: body.error_type,
        error_message: body.error_message,
        stack: body.stack,
        context: body.context.map(|c| Value::Object(c).to_string()),
        failed_at,
        event_id: identity.event_id,
        event_type: identity.event_type,
        correlation_id: identity.correlation_id,
        source_service: identity.source,
        original_key: None,
        original_headers: None,
        received_as: None,
    };
    if let Some(model) = &model {
        model.redact_report(&mut report);
    }
    let reported = state.store.report_failure(report).await?;
    let status = if reported.repeated { StatusCode::OK } else { StatusCode::CREATED };
    let location = format!("/v1/dlq/{}", reported.id);
    Ok((status, [(header::LOCATION, location)], Json(json!(reported))).into_response())
}

/// A reported failure time: RFC 3339, written in the year 2000 or later (in its own offset, as the
/// OpenAPI document's pattern reads it) and no later than a day after the server's clock. A time
/// outside would make the record look decades old, or from the future, in every age and trend.
fn failed_at_param(text: &str) -> Result<String, ApiError> {
    let canonical = rfc3339("failed_at", text, "invalid_request")?;
    let time = parse_time(&canonical).map_err(|e| ApiError::internal("reading a canonical time", e))?;
    let written = chrono::DateTime::parse_from_rfc3339(text).map_err(|e| ApiError::internal("reading a checked time", e))?;
    let latest = chrono::Utc::now() + chrono::TimeDelta::days(1);
    if written.year() < EARLIEST_FAILED_YEAR || time > latest {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "failed_at {text} is outside the accepted window, from the year {EARLIEST_FAILED_YEAR} to a day after the \
                 server's clock ({}): send when the consumer failed (or leave it out for the time of the report)",
                format_time(&latest)
            ),
        ));
    }
    Ok(canonical)
}

// --- explorer -----------------------------------------------------------------------------------

fn status_param(text: &str) -> Result<DlqStatus, ApiError> {
    DlqStatus::parse(text)
        .ok_or_else(|| ApiError::bad_request("invalid_parameter", format!("status must be pending, replayed, resolved or discarded, not '{text}'")))
}

fn id_param(name: &str, text: &str) -> Result<i64, ApiError> {
    whole_number(text).map_err(|why| {
        let message = match why {
            NotANumber::NotWhole => format!("{name} must be a DLQ record id (a whole number), not '{text}'"),
            NotANumber::OutOfRange => format!("{name} must be a DLQ record id, from 1 to {}: {text} is out of range", i64::MAX),
        };
        ApiError::bad_request("invalid_parameter", message)
    })
}

/// `GET /v1/dlq`: newest first; page with `before` (the `next_before` of the previous page).
pub async fn list(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = params(&query);
    check_known(&pairs, &["status", "consumer", "source_topic", "error_type", "correlation_id", "event_id", "since", "q", "before", "limit"])?;
    let limit = limit(&query, 100, 1_000)?;
    let owned = |name: &str| param(&pairs, name).map(str::to_owned);
    let filter = DlqFilter {
        status: param(&pairs, "status").map(status_param).transpose()?,
        consumer: owned("consumer"),
        source_topic: owned("source_topic"),
        error_type: owned("error_type"),
        correlation_id: owned("correlation_id"),
        event_id: owned("event_id"),
        since: time_param(&pairs, "since")?,
        text: owned("q").filter(|q| !q.is_empty()),
        before: param(&pairs, "before").map(|b| id_param("before", b)).transpose()?,
        limit,
        ..Default::default()
    };
    let records = read(&state.store, move |s| s.dlq_list(&filter)).await?;
    let next_before = if records.len() == limit { records.last().map(|r| r.id) } else { None };
    Ok(Json(json!({"records": records, "next_before": next_before})))
}

/// `GET /v1/dlq/summary`.
pub async fn summary(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = chrono::Utc::now();
    let s = read(&state.store, move |s| s.dlq_summary(now.timestamp())).await?;
    let object = |pairs: &[(String, i64)]| pairs.iter().map(|(k, n)| (k.clone(), json!(n))).collect::<Map<String, Value>>();
    let oldest = s.oldest_pending_failed_at.as_deref().and_then(|t| parse_time(t).ok());
    Ok(Json(json!({
        "pending": s.pending,
        "oldest_pending": oldest.map(|t| json!({"failed_at": format_time(&t), "age_seconds": (now - t).num_seconds().max(0)})),
        "inflow_last_hour": s.inflow_last_hour,
        "outflow_last_hour": s.outflow_last_hour,
        "by_status": object(&s.by_status),
        "by_source_topic": object(&s.by_source_topic),
        "by_error_type": object(&s.by_error_type),
        "by_consumer": object(&s.by_consumer),
        "trend": s.trend.iter().map(|b| json!({
            "hour": chrono::DateTime::from_timestamp(b.hour, 0).map(|t| format_time(&t)),
            "inflow": b.inflow, "outflow": b.outflow,
        })).collect::<Vec<_>>(),
    })))
}

fn record_json(row: &DlqRow) -> Value {
    let mut v = json!(row);
    if let Some(original) = &row.original_event {
        // Shown as JSON when it is; the exact bytes are at /v1/dlq/{id}/original.
        v["original_event"] = serde_json::from_str::<Value>(original).unwrap_or_else(|_| json!(original));
    } else if let Some(bytes) = &row.original_bytes {
        v["original_event"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        v["original_event_encoding"] = json!("base64");
    }
    if let Some(context) = &row.context {
        v["context"] = serde_json::from_str::<Value>(context).unwrap_or_else(|_| json!(context));
    }
    // The Kafka message the original came in: its key and headers, text or else base64.
    let shown = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) => json!({"value": text, "encoding": "utf-8"}),
        Err(_) => json!({"value": base64::engine::general_purpose::STANDARD.encode(bytes), "encoding": "base64"}),
    };
    if let Some(key) = &row.original_key {
        v["original_key"] = shown(key);
    }
    if let Some(headers) = &row.original_headers {
        v["original_headers"] = headers
            .iter()
            .map(|(name, value)| {
                let mut h = value.as_deref().map_or_else(|| json!({"value": null}), shown);
                h["name"] = json!(name);
                h
            })
            .collect();
    }
    v
}

/// A record as a token without the operator role sees it: what it carried is left out, and
/// `payload` says why (docs/security.md).
fn hide_payload(record: &mut Value) {
    if let Value::Object(fields) = record {
        for name in ["original_event", "original_event_encoding", "original_key", "original_headers"] {
            fields.remove(name);
        }
        fields.insert("payload".into(), json!("hidden: what a dead letter carried is shown to the operator and admin roles"));
    }
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("no DLQ record has the id {id}")).with_remedy(remedy::LIST_DLQ)
}

fn path_id(text: &str) -> Result<i64, ApiError> {
    whole_number(text).map_err(|why| match why {
        NotANumber::NotWhole => ApiError::not_found(format!("'{text}' is not a DLQ record id: ids are whole numbers")),
        NotANumber::OutOfRange => ApiError::not_found(format!("no DLQ record has the id {text}: it is out of range (ids go from 1 to {})", i64::MAX))
            .with_remedy(remedy::LIST_DLQ),
    })
}

/// `GET /v1/dlq/{id}`: the record, its replays, its correlation's causation chain, the journey it
/// belongs to, and the findings about its event.
pub async fn get(State(state): State<AppState>, Extension(who): Extension<Principal>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let payloads = who.may(Access::Operate);
    let id = path_id(&id)?;
    let engine = state.journeys.clone();
    let model = state.model.current();
    let store = state.store.clone();
    let target = |consumer: &str| state.dlq.target(consumer).map(|t| t.name());
    // The engine first: a reaction acknowledged before this request may have resolved the record.
    if let Some(engine) = engine.clone() {
        tokio::task::spawn_blocking(move || engine.sync()).await.map_err(|e| ApiError::internal("the journey engine", e))??;
    }
    let Some((row, replays)) = read(&state.store, move |s| s.dlq_record(id)).await? else { return Err(not_found(id)) };
    let replay_url = target(&row.consumer);
    // Caught up above; `read` below catches up again only with what came since.
    tokio::task::spawn_blocking(move || {
        let chain = match &row.correlation_id {
            // The lineage endpoint's answer, as a value of this one.
            Some(c) => correlation_json(&store, c, 10_000)?.map(|text| serde_json::from_str::<Value>(&text).expect("the store's JSON parses")),
            None => None,
        };
        let model = model.as_ref().map(|m| m.model());
        let findings: Vec<FindingRow> = match &row.event_id {
            Some(event_id) => store.findings(&FindingFilter { event_id: Some(event_id.clone()), limit: 1_000, ..Default::default() })?,
            None => Vec::new(),
        };
        // An event refused for lacking a correlation id was never stored: its instance is the one
        // its missing_correlation finding names by key.
        let named = || {
            let refused = row.consumer == INGEST_CONSUMER;
            refused.then(|| findings.iter().find_map(|f| Some((f.journey.clone()?, f.key.clone()?)))).flatten()
        };
        let instance = store.journey_of(row.event_id.as_deref(), row.correlation_id.as_deref())?.or_else(named);
        let journey = match instance {
            Some((journey, key)) => {
                let view = engine.as_ref().map(|e| e.read(|eval, _| eval.journey(&journey, &key))).transpose()?.flatten().flatten();
                match view {
                    Some(v) => journey_body(&store, model, &v)?,
                    None => json!({"journey": journey, "key": key}),
                }
            }
            None => Value::Null,
        };
        let mut findings: Vec<Value> = findings.iter().map(finding_json).collect();
        link_dead_letters(&store, model, &mut findings)?;
        let mut record = record_json(&row);
        if !payloads {
            hide_payload(&mut record);
        }
        Ok(Json(json!({
            "record": record,
            "replay_target": replay_url,
            "replays": replays,
            "chain": chain,
            "journey": journey,
            "findings": findings,
        })))
    })
    .await
    .map_err(|e| ApiError::internal("reading a DLQ record", e))?
}

/// `GET /v1/dlq/{id}/original`: the event exactly as it was kept, as a download. Whatever a client
/// sent is served as `application/octet-stream` with `nosniff` and as an attachment, never as the
/// type it claimed (a stored `text/html` would run as a page of this server's origin); that type,
/// when it is a media type at all, is in `X-Causeway-Original-Content-Type`.
pub async fn original(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let Some((row, _)) = read(&state.store, move |s| s.dlq_record(id)).await? else { return Err(not_found(id)) };
    let mut response = row.original().unwrap_or_default().to_vec().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    let disposition = format!("attachment; filename=\"dlq-{id}-original\"");
    headers.insert(header::CONTENT_DISPOSITION, header::HeaderValue::from_str(&disposition).map_err(|e| ApiError::internal("a header", e))?);
    if let Some(value) = row.content_type.as_deref().filter(|ct| is_media_type(ct)).and_then(|ct| header::HeaderValue::from_str(ct).ok()) {
        headers.insert("x-causeway-original-content-type", value);
    }
    Ok(response)
}

// --- replay -------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    force: bool,
    actor: Option<String>,
}

/// The body of a POST that may be empty: empty means every field's default.
fn optional_body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8], shape: &str) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request("invalid_request", format!("expected {shape}: {e}")))
}

/// The outcome of replaying one record, as answered.
struct Replayed {
    outcome: &'static str,
    target: Option<String>,
    http_status: Option<u16>,
    /// A replay to Kafka: the partition and offset the broker wrote it at.
    written: Option<(i32, i64)>,
    error: Option<String>,
    status: DlqStatus,
    audit_id: i64,
    /// For a dry run: what a replay would send.
    request: Option<Value>,
}

impl Replayed {
    fn to_json(&self, id: i64) -> Value {
        let mut v = json!({
            "id": id, "outcome": self.outcome, "target": self.target, "http_status": self.http_status,
            "error": self.error, "status": self.status, "audit_id": self.audit_id,
        });
        if let Some((partition, offset)) = self.written {
            v["partition"] = json!(partition);
            v["offset"] = json!(offset);
        }
        if let Some(request) = &self.request {
            v["request"] = request.clone();
        }
        v
    }
}

/// Replays one record: refuses what must not be sent, sends, audits. With `pace`, a send waits
/// until then (a bulk run's rate), and the record is read and checked again after the wait; a
/// record refused is refused at once.
async fn replay_one(state: &AppState, id: i64, dry_run: bool, force: bool, actor: &str, pace: Option<Instant>) -> Result<Replayed, ApiError> {
    // The slot first, then the record: a request that read the record before another replay of it
    // finished would otherwise send it again.
    let Some(_slot) = state.dlq.claim(id) else {
        return Err(ApiError::new(StatusCode::CONFLICT, "replay_in_progress", format!("DLQ record {id} is being replayed by another request")));
    };
    let (mut row, mut status, mut target) = sendable(state, id, dry_run, force).await?;
    if let Some(due) = pace.filter(|due| *due > Instant::now() && !dry_run) {
        tokio::time::sleep_until(due.into()).await;
        (row, status, target) = sendable(state, id, dry_run, force).await?;
    }
    let request = ReplayRequest::of(&row, &target, actor);
    let description = dry_run.then(|| request.describe());
    let outcome = if dry_run { ReplayOutcome::DryRun } else { state.dlq.send(request).await };
    let (name, http_status, error) = outcome.parts();
    let error = error.map(str::to_owned);
    let written = outcome.written();
    let new_status = outcome.status_after(status);
    let target = target.name();
    let audit_id = state
        .store
        .record_replay(ReplayAttempt { dlq_id: id, actor: actor.to_string(), target: Some(target.clone()), forced: force, outcome })
        .await?;
    Ok(Replayed { outcome: name, target: Some(target), http_status, written, error, status: new_status, audit_id, request: description })
}

/// The record, its status and its replay target, or why it must not be sent.
async fn sendable(state: &AppState, id: i64, dry_run: bool, force: bool) -> Result<(DlqRow, DlqStatus, Target), ApiError> {
    let Some((row, replays)) = read(&state.store, move |s| s.dlq_record(id)).await? else { return Err(not_found(id)) };
    let status = DlqStatus::parse(&row.status).unwrap_or(DlqStatus::Pending);
    if status != DlqStatus::Pending && !force && !dry_run {
        let when = replays.iter().rev().find(|r| r.outcome == "sent").map(|r| format!(" at {}", r.at)).unwrap_or_default();
        let why = match status {
            DlqStatus::Replayed => format!("was already replayed{when}"),
            DlqStatus::Resolved => "is resolved".to_string(),
            _ => format!("was discarded ({})", row.status_reason.as_deref().unwrap_or("no reason given")),
        };
        return Err(ApiError::new(StatusCode::CONFLICT, "already_replayed", format!("DLQ record {id} {why}"))
            .with_remedy(remedy::FORCE_REPLAY)
            .with("status", status.as_str()));
    }
    let Some(target) = state.dlq.target(&row.consumer) else {
        return Err(if row.consumer == INGEST_CONSUMER {
            let what = format!("causeway refused this event at ingest ({}), so it has no consumer to replay to", row.error_type);
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_replay_target", what).with_remedy(remedy::INGEST_AGAIN).with("id", id)
        } else {
            let message = format!(
                "there is no replay target for consumer '{}': add [consumers.{}] replay_url = \"http://…\" (or replay_topic = \"…\", \
                 with the Kafka source) to the server configuration",
                row.consumer, row.consumer
            );
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_replay_target", message)
        });
    };
    Ok((row, status, target))
}

/// Runs a replay on its own task: a client that goes away does not cut it between the send and
/// its audit, and a bulk run goes on to its end.
async fn detached<T: Send + 'static>(work: impl Future<Output = Result<T, ApiError>> + Send + 'static) -> Result<T, ApiError> {
    tokio::spawn(work).await.map_err(|e| ApiError::internal("a replay", e))?
}

/// `POST /v1/dlq/{id}/replay` with `{"dry_run", "force", "actor"}` (all optional).
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let body: ReplayBody = optional_body(&body, r#"{"dry_run": false, "force": false, "actor": "…"} (all optional)"#)?;
    let actor = actor(body.actor, &headers);
    let run = state.clone();
    let done = detached(async move { replay_one(&run, id, body.dry_run, body.force, &actor, None).await }).await?;
    if done.outcome == "failed" {
        let message = format!("{}; DLQ record {id} stays pending", done.error.as_deref().unwrap_or("the replay failed"));
        let mut error = ApiError::new(StatusCode::BAD_GATEWAY, "replay_failed", message);
        if let Value::Object(fields) = done.to_json(id) {
            error.extra = fields;
        }
        return Err(error);
    }
    Ok(Json(done.to_json(id)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    status: Option<String>,
    consumer: Option<String>,
    source_topic: Option<String>,
    error_type: Option<String>,
    correlation_id: Option<String>,
    q: Option<String>,
    since: Option<String>,
    /// Only records that first failed at or before this time (the fix's deployment, say).
    stop_at: Option<String>,
    /// Replays per second.
    rate: Option<f64>,
    /// A JSON number as sent, so that one too large for any count is answered as out of range.
    limit: Option<serde_json::Number>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    stop_on_error: bool,
    actor: Option<String>,
}

/// `POST /v1/dlq/replay`: replays the records a filter selects, oldest first.
pub async fn replay_bulk(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let body: BulkBody = optional_body(
        &body,
        r#"{"status", "consumer", "source_topic", "error_type", "correlation_id", "q", "since", "stop_at", "rate", "limit", "dry_run", "force", "stop_on_error", "actor"} (all optional)"#,
    )?;
    let rate = body.rate.unwrap_or(BULK_DEFAULT_RATE);
    if !(BULK_MIN_RATE..=BULK_MAX_RATE).contains(&rate) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("rate is replays per second, from {BULK_MIN_RATE} (one every 10 s) to {BULK_MAX_RATE}, not {rate}"),
        ));
    }
    let limit = match &body.limit {
        None => BULK_DEFAULT_LIMIT,
        // A whole number written with a fraction (5.0) is the integer JSON Schema says it is.
        Some(n) => {
            match n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && (1.0..=BULK_MAX_LIMIT as f64).contains(f)).map(|f| f as u64)) {
                Some(l) if (1..=BULK_MAX_LIMIT as u64).contains(&l) => l as usize,
                _ if n.as_i64().is_some() || n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
                    return Err(ApiError::bad_request("invalid_request", format!("limit must be from 1 to {BULK_MAX_LIMIT}: {n} is out of range")));
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_request",
                        format!("limit must be a whole number from 1 to {BULK_MAX_LIMIT}, not {n}"),
                    ));
                }
            }
        }
    };
    let time = |name: &str, text: &Option<String>| text.as_deref().map(|t| rfc3339(name, t, "invalid_request")).transpose();
    let mut filter = DlqFilter {
        status: Some(body.status.as_deref().map(status_param).transpose()?.unwrap_or(DlqStatus::Pending)),
        consumer: body.consumer.clone(),
        source_topic: body.source_topic.clone(),
        error_type: body.error_type.clone(),
        correlation_id: body.correlation_id.clone(),
        text: body.q.clone().filter(|q| !q.is_empty()),
        since: time("since", &body.since)?,
        failed_until: time("stop_at", &body.stop_at)?,
        oldest_first: true,
        limit: limit.min(500),
        ..Default::default()
    };
    let actor = actor(body.actor.clone(), &headers);
    let (dry_run, force, stop_on_error) = (body.dry_run, body.force, body.stop_on_error);
    let answer = detached(async move {
        let started = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / rate);
        let (mut results, mut sent, mut failed, mut skipped) = (Vec::new(), 0usize, 0usize, 0usize);
        let mut stopped = "done";
        'pages: loop {
            let page_filter = filter.clone();
            let page = read(&state.store, move |s| s.dlq_list(&page_filter)).await?;
            let Some(last) = page.last() else { break };
            filter.after = Some(last.id);
            for row in page {
                if results.len() == limit {
                    stopped = "limit";
                    break 'pages;
                }
                // Paced from the start, so a slow target does not earn a burst afterwards; only
                // sends count (a record skipped waits for nothing).
                let due = started + interval.mul_f64((sent + failed) as f64);
                match replay_one(&state, row.id, dry_run, force, &actor, Some(due)).await {
                    Ok(done) => {
                        match done.outcome {
                            "sent" => sent += 1,
                            "failed" => failed += 1,
                            _ => {}
                        }
                        let failed_now = done.outcome == "failed";
                        // What each would send is shown by a single record's dry run only: a bulk
                        // answer would carry every body.
                        let done = Replayed { request: None, ..done };
                        results.push(done.to_json(row.id));
                        if failed_now && stop_on_error {
                            stopped = "error";
                            break 'pages;
                        }
                    }
                    Err(e) if e.status.is_client_error() => {
                        skipped += 1;
                        results.push(json!({"id": row.id, "outcome": "skipped", "error": e.message}));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(json!({
            "dry_run": dry_run,
            "sent": sent,
            "failed": failed,
            "skipped": skipped,
            "stopped": stopped,
            "elapsed_ms": started.elapsed().as_millis() as u64,
            "results": results,
        }))
    })
    .await?;
    Ok(Json(answer))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    reason: Option<String>,
    actor: Option<String>,
}

async fn change_status(state: &AppState, id: i64, to: DlqStatus, reason: String) -> Result<Json<Value>, ApiError> {
    let from = vec![DlqStatus::Pending, DlqStatus::Replayed];
    if !state.store.change_dlq_status(StatusChange { id, to, reason: Some(reason), from }).await? {
        let Some((row, _)) = read(&state.store, move |s| s.dlq_record(id)).await? else { return Err(not_found(id)) };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_closed",
            format!("DLQ record {id} is already {}; only pending or replayed records can become {}", row.status, to.as_str()),
        ));
    }
    Ok(Json(json!({"id": id, "status": to})))
}

/// `POST /v1/dlq/{id}/discard` with `{"reason": "…"}`.
pub async fn discard(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(&id)?;
    let body: StatusBody = optional_body(&body, r#"{"reason": "…", "actor": "…"}"#)?;
    let Some(reason) = body.reason.filter(|r| !r.trim().is_empty()) else {
        return Err(ApiError::bad_request("invalid_request", "a record is discarded with a reason").with_remedy(remedy::GIVE_REASON));
    };
    let reason = format!("{reason} (by {})", actor(body.actor, &headers));
    change_status(&state, id, DlqStatus::Discarded, reason).await
}

/// `POST /v1/dlq/{id}/resolve` with an optional `{"reason": "…"}`.
pub async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(&id)?;
    let body: StatusBody = optional_body(&body, r#"{"reason": "…", "actor": "…"}"#)?;
    let reason = format!("{} (by {})", body.reason.unwrap_or_else(|| "resolved by hand".into()), actor(body.actor, &headers));
    change_status(&state, id, DlqStatus::Resolved, reason).await
}
