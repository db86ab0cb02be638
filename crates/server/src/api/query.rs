//! Read endpoints: events, lineage, SQL, health, and the API description; [`read`], the way
//! handlers run a short blocking store read.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_auth::Access;
use causeway_store::{EventRow, SqlLimits, SqlScope, Store, StoreError, build_tree};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::params::limit;
use crate::auth::{AuditNote, Principal, audit_query};
use crate::error::ApiError;
use crate::state::AppState;

/// Default and largest number of events one lineage answer carries.
const DEFAULT_LIMIT: usize = 10_000;
const MAX_LIMIT: usize = 100_000;

/// Runs a blocking store read. Lineage reads take tens of microseconds: on a multi-threaded
/// runtime they run in place (the worker's other tasks move to other workers), which spares the
/// hand-off to the blocking pool that would dominate their latency.
pub(crate) async fn read<T: Send + 'static>(store: &Store, f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static) -> Result<T, ApiError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        return Ok(tokio::task::block_in_place(|| f(store))?);
    }
    let store = store.clone();
    Ok(tokio::task::spawn_blocking(move || f(&store)).await.map_err(|e| ApiError::internal("a store read", e))??)
}

/// Stored envelopes are already canonical JSON: answer them as they are.
fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A JSON object of fields already encoded as JSON, in order. The lineage answers splice the
/// stored envelopes in as they are: the store wrote them as canonical JSON, and re-checking each
/// (as a `RawValue`) cost more than the rest of the answer.
fn spliced_object(fields: &[(&str, &str)]) -> String {
    let mut body = String::with_capacity(fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>() + 2);
    body.push('{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push('"');
        body.push_str(key);
        body.push_str("\":");
        body.push_str(value);
    }
    body.push('}');
    body
}

/// The rows' stored envelopes as one JSON array.
fn envelopes_array(rows: &[EventRow]) -> String {
    let mut out = String::with_capacity(rows.iter().map(|r| r.envelope.len() + 1).sum::<usize>() + 2);
    out.push('[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&row.envelope);
    }
    out.push(']');
    out
}

fn json_text<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

fn json_bool(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

pub async fn get_event(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let lookup = id.clone();
    match read(&state.store, move |s| s.event(&lookup)).await? {
        Some(row) => {
            // The body stays the CloudEvent as stored; where and when it arrived go beside it.
            let o = &row.origin;
            let (partition, offset) = (o.partition.map(|p| p.to_string()), o.offset.map(|n| n.to_string()));
            let mut response = json_response(row.envelope);
            for (name, value) in [
                ("causeway-received-at", Some(&row.received_at)),
                ("causeway-topic", o.topic.as_ref()),
                ("causeway-partition", partition.as_ref()),
                ("causeway-offset", offset.as_ref()),
                ("causeway-message-time", o.message_time.as_ref()),
            ] {
                if let Some(value) = value.and_then(|v| header::HeaderValue::from_str(v).ok()) {
                    response.headers_mut().insert(name, value);
                }
            }
            Ok(response)
        }
        None => Err(ApiError::not_found(format!("no event with id '{id}' is stored"))),
    }
}

/// A correlation's answer, `{correlation_id, events, tree, truncated}`: its events by time (at
/// most `limit`) and their causation tree, as JSON text; `None` when none is stored. Blocking.
pub(crate) fn correlation_json(store: &Store, id: &str, limit: usize) -> Result<Option<String>, StoreError> {
    // One more than asked tells whether the answer is complete.
    let mut rows = store.correlation(id, limit + 1)?;
    if rows.is_empty() {
        return Ok(None);
    }
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    Ok(Some(spliced_object(&[
        ("correlation_id", &json_text(id)),
        ("events", &envelopes_array(&rows)),
        ("tree", &json_text(&build_tree(&rows))),
        ("truncated", json_bool(truncated)),
    ])))
}

pub async fn get_correlation(State(state): State<AppState>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let limit = limit(&query, DEFAULT_LIMIT, MAX_LIMIT)?;
    let lookup = id.clone();
    match read(&state.store, move |s| correlation_json(s, &lookup, limit)).await? {
        Some(body) => Ok(json_response(body)),
        None => Err(ApiError::not_found(format!("no events with correlation id '{id}' are stored"))),
    }
}

/// `{event_id, count, events, truncated}`.
pub async fn get_descendants(State(state): State<AppState>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let limit = limit(&query, DEFAULT_LIMIT, MAX_LIMIT)?;
    let lookup = id.clone();
    let Some(mut rows) = read(&state.store, move |s| s.descendants(&lookup, limit + 1)).await? else {
        return Err(ApiError::not_found(format!("no event with id '{id}' is stored")));
    };
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    Ok(json_response(spliced_object(&[
        ("event_id", &json_text(&id)),
        ("count", &rows.len().to_string()),
        ("events", &envelopes_array(&rows)),
        ("truncated", json_bool(truncated)),
    ])))
}

/// `{event_id, root, hops, complete}`: `hops` is the causation links followed from the event to
/// the root; `complete` is false when the chain stops at an event whose cause is not stored (yet).
pub async fn get_root(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let lookup = id.clone();
    let Some((root, hops)) = read(&state.store, move |s| s.root(&lookup)).await? else {
        return Err(ApiError::not_found(format!("no event with id '{id}' is stored")));
    };
    Ok(json_response(spliced_object(&[
        ("event_id", &json_text(&id)),
        ("root", &root.envelope),
        ("hops", &hops.to_string()),
        ("complete", json_bool(root.causation_id.is_none())),
    ])))
}

#[derive(Deserialize)]
struct SqlRequest {
    query: String,
}

/// `{"query": "SELECT …"}`; a body that is not JSON is taken as the query itself, for `curl -d`.
pub async fn post_sql(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let is_json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("application/json"));
    let query = if is_json {
        serde_json::from_slice::<SqlRequest>(&body)
            .map_err(|e| ApiError::bad_request("invalid_request", format!("expected {{\"query\": \"SELECT …\"}}: {e}")))?
            .query
    } else {
        String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad_request("invalid_request", "the query is not UTF-8 text"))?
    };
    let note = AuditNote(audit_query(&query));
    let answer = run_sql(&state, &who, query).await;
    let mut response = answer.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(note);
    Ok(response)
}

/// Runs a user's query within the SQL limits: dead letters' payloads read as NULL unless `who`
/// holds the operator role.
async fn run_sql(state: &AppState, who: &Principal, query: String) -> Result<Response, ApiError> {
    let scope = SqlScope { dlq_payloads: who.may(Access::Operate) };
    let limits = state.sql;
    let started = Instant::now();
    // At most `max_concurrent` queries run at once, so that queries cannot take every core from
    // ingest. The time limit counts from the request: a query waits for a free slot within it and
    // runs for what is left, so every answer comes within the limit; one that finds no slot in
    // time is told to come back.
    let deadline = started + limits.timeout;
    let Ok(Ok(_slot)) = tokio::time::timeout_at(deadline.into(), state.sql_slots.clone().acquire_owned()).await else {
        return Ok(busy(limits));
    };
    let waited = started.elapsed();
    let run = SqlLimits { timeout: limits.timeout.saturating_sub(waited), ..limits };
    // The journey engine's rows (event_lineage.journey, findings) first catch up with every event
    // acknowledged before this query, as the journey endpoints do.
    let engine = state.journeys.clone();
    let store = state.store.clone();
    let answer = state.sql_workers.run(move || -> Result<Vec<u8>, StoreError> {
        if let Some(engine) = engine {
            engine.sync()?;
        }
        let result = store.sql_scoped(&query, run, scope)?;
        #[derive(Serialize)]
        struct Answer {
            #[serde(flatten)]
            result: causeway_store::SqlResult,
            elapsed_ms: f64,
        }
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(serde_json::to_vec(&Answer { result, elapsed_ms }).expect("an SQL answer encodes as JSON"))
    });
    let body = match answer.await {
        Some(Ok(body)) => body,
        Some(Err(StoreError::QueryTimeout(_))) => return Err(timed_out(limits, waited)),
        Some(Err(e)) => return Err(e.into()),
        None => return Err(ApiError::internal("the SQL query", "its thread is gone")),
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `400 query_timeout`, in terms of the whole limit and of the time spent waiting for a slot.
fn timed_out(limits: SqlLimits, waited: std::time::Duration) -> ApiError {
    let limit = limits.timeout.as_millis();
    let advice = "narrow it with WHERE on an indexed column or add LIMIT";
    let message = if waited.as_millis() == 0 {
        format!("the query ran longer than its {limit} ms limit: {advice}")
    } else {
        format!(
            "the query did not finish within its {limit} ms limit, {} ms of which it waited for a free slot \
             (other queries were running): try again when fewer run, or {advice}",
            waited.as_millis()
        )
    };
    ApiError::bad_request("query_timeout", message)
}

/// `503 sql_busy`: every slot stayed taken for as long as a query may run.
fn busy(limits: SqlLimits) -> Response {
    let seconds = limits.timeout.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "sql_busy",
        format!(
            "{} SQL {} already running, the most at once (--sql-max-concurrent), and none finished within {} ms: \
             try again in {seconds} s",
            limits.max_concurrent.max(1),
            if limits.max_concurrent.max(1) == 1 { "query is" } else { "queries are" },
            limits.timeout.as_millis()
        ),
    )
    .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    response
}

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers a read and accepts writes.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store.clone();
    let check = tokio::task::spawn_blocking(move || store.check_writable().and_then(|_| store.counts())).await;
    // The journey engine's failures do not make the server unready (ingest and reads go on, the
    // engine rebuilds itself), but they show here.
    let journeys = state.journeys.as_ref().map(|engine| {
        let health = engine.health();
        json!({
            "failures": health.failures,
            "last_failure": health.last_failure.map(|(at, what)| json!({"at": causeway_envelope::format_time(&at), "message": what})),
            "skipped_log_entries": health.skipped,
        })
    });
    match check {
        Ok(Ok(counts)) => {
            let nats = state.nats.as_ref().map(|s| s.lock().expect("status").clone());
            let kafka = state.kafka.as_ref().map(|s| s.lock().expect("status").clone());
            Json(json!({"status": "ready", "events": counts.events, "journeys": journeys, "nats": nats, "kafka": kafka})).into_response()
        }
        Ok(Err(e)) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.to_string()).into_response(),
        Err(e) => ApiError::internal("the readiness check", e).into_response(),
    }
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml; charset=utf-8")], include_str!("../../../../docs/openapi.yaml")).into_response()
}
