//! The web UI (PRODUCT §9) at its stable addresses: each page gathers what it shows from the same
//! handlers and store reads as the JSON API, and `causeway-ui` renders it.
//!
//! **Invariants:**
//! - A page shows what the API answers: its numbers come from the same functions.
//! - A request with `x-causeway-fragment: main` gets the page's `<main>` alone (the script's live
//!   updates); any other gets the whole document.
//! - An `ApiError` becomes a page with the same status and sentence ([`PageError`]): the status
//!   is decided where the error is made, as for the JSON API.
//! - Actions that change things (replay, discard, model reload) are offered to the operator role,
//!   or with auth off on a loopback connection only ([`Viewer::may_act`]).

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Extension, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use causeway_canvas::Kind;
use causeway_store::{DlqFilter, FindingFilter};
use causeway_ui::charts::Column;
use causeway_ui::pages::canvas::NoteEvidence;
use causeway_ui::pages::n;
use causeway_ui::pages::overview::{ContextHealth, JourneySlo, Overview, SloRow};
use causeway_ui::pages::{RANGES, canvas, dlq as dlq_page, journey as journey_page, oncall, overview};
use causeway_ui::{Section, Shell, link};
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::api::findings::INGEST_KINDS;
use crate::api::params::{check_known, param, params};
use crate::api::query::{correlation_json, read};
use crate::api::{dlq, journeys};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Seconds between live updates of the pages that follow the estate.
const LIVE_SECONDS: u32 = 5;
/// Findings listed on the on-call page.
const ONCALL_FINDINGS: usize = 500;
/// Events of a correlation drawn on a journey page.
const CHAIN_EVENTS: usize = 500;

/// Who views a page: the principal `auth.rs` found, and the connection's peer (unknown in tests
/// that call the router directly).
pub struct Viewer {
    principal: Option<Principal>,
    peer: Option<SocketAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Viewer { principal: parts.extensions.get::<Principal>().cloned(), peer: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0) })
    }
}

impl Viewer {
    /// Whether actions that change things may be offered: to a token with the operator role, or,
    /// with auth off, on a loopback connection (or none known: the router called in-process).
    fn may_act(&self) -> bool {
        match &self.principal {
            Some(p) if !p.open => p.may(causeway_auth::Access::Operate),
            _ => self.peer.is_none_or(|a| a.ip().is_loopback()),
        }
    }

    fn principal(&self) -> Principal {
        self.principal.clone().unwrap_or_else(|| Principal::open(self.peer))
    }
}

/// An error answered as a page.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<causeway_store::StoreError> for PageError {
    fn from(e: causeway_store::StoreError) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        let title = if e.status == StatusCode::NOT_FOUND { "Not found" } else { "Cannot show this page" };
        let mut sentence = e.message.clone();
        if let Some(remedy) = e.remedy {
            sentence.push_str(&format!(" ({remedy})"));
        }
        let page = Shell::new(title, Section::Other).document(causeway_ui::problem(title, &sentence));
        (e.status, html_headers(), page).into_response()
    }
}

type PageResult = Result<Response, PageError>;

fn html_headers() -> [(header::HeaderName, &'static str); 2] {
    [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")]
}

/// The page, or its `<main>` alone for a live update.
fn respond(headers: &HeaderMap, shell: Shell, main: Markup) -> Response {
    let fragment = headers.get("x-causeway-fragment").is_some_and(|v| v == "main");
    let body = if fragment { shell.fragment(main) } else { shell.document(main) };
    (html_headers(), body).into_response()
}

fn model_name(state: &AppState) -> Option<String> {
    state.model.current().map(|m| m.model().name.clone())
}

fn shell(state: &AppState, title: impl Into<String>, section: Section) -> Shell {
    Shell::new(title, section).model(model_name(state))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal("rendering a page", e))?
}

fn query_of(pairs: &[(String, String)]) -> Option<String> {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    let text = out.finish();
    (!text.is_empty()).then_some(text)
}

// ---- assets -------------------------------------------------------------------------------------

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", causeway_ui::STYLE)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", causeway_ui::SCRIPT)
}

pub async fn icon() -> Response {
    asset("image/svg+xml", causeway_ui::ICON)
}

// ---- overview -----------------------------------------------------------------------------------

pub async fn overview(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let shell = shell(&state, "Overview", Section::Overview).live(LIVE_SECONDS);
    let summary = dlq::summary(State(state.clone())).await?.0;
    let (engine, store, model) = (state.journeys.clone(), state.store.clone(), state.model.current());
    let page = blocking(move || {
        let counts = store.counts()?;
        let failed_by_type = store.dlq_by_event_type()?;
        // Findings raised at ingest never resolve: all of them are open.
        let ingest_findings = store.count_findings(&INGEST_KINDS)?.iter().map(|(_, n)| n).sum::<i64>();
        let mut page = Overview {
            model: model.as_ref().map(|m| m.model().name.clone()),
            events: counts.events,
            journeys_by_state: Vec::new(),
            open_findings: ingest_findings,
            dlq_pending: n(&summary, "pending"),
            contexts: Vec::new(),
            failing_types: failed_by_type.iter().filter(|(t, _)| !t.is_empty()).cloned().collect(),
            slos: Vec::new(),
            objectives: Vec::new(),
            throughput: Vec::new(),
        };
        let Some(engine) = engine else { return Ok(page) };
        engine.read_with_evidence(|eval, loaded, evidence| {
            let m = loaded.model();
            page.journeys_by_state = eval.count_by_state().into_iter().map(|(s, n)| (s, n as i64)).collect();
            page.open_findings += eval.count_findings_by_kind().iter().map(|(_, open, _)| *open as i64).sum::<i64>();
            let failed: HashMap<&str, i64> = failed_by_type.iter().map(|(t, n)| (t.as_str(), *n)).collect();
            page.contexts = m
                .contexts
                .iter()
                .map(|(name, c)| {
                    let types = m.events.iter().filter(|(_, e)| &e.context == name).map(|(t, _)| t.as_str());
                    let (mut events, mut fails) = (0, 0);
                    for t in types {
                        events += evidence.of(t).map_or(0, |e| e.count as i64);
                        fails += failed.get(t).copied().unwrap_or(0);
                    }
                    ContextHealth { context: name.clone(), owner: c.owner.clone(), events, failed: fails }
                })
                .collect();
            let now_us = eval.now().map(|t| t.timestamp_micros());
            let mut slos: Vec<JourneySlo> = m
                .journeys
                .iter()
                .filter_map(|(name, j)| {
                    Some(JourneySlo {
                        journey: name.clone(),
                        objective: j.objective_percent? / 100.0,
                        window: causeway_model::format_duration(j.complete_within_ms?),
                        good: 0,
                        bad: 0,
                        running: 0,
                    })
                })
                .collect();
            // By hour of event time, the day up to the latest event.
            let latest_us = evidence.latest_ms().map(|ms| ms * 1000);
            let hour = 3_600_000_000i64;
            let last_hour = latest_us.map(|l| l.div_euclid(hour));
            let mut by_hour = [[0f64; 2]; 24];
            for inst in eval.instance_times() {
                if let Some(last) = last_hour {
                    let started = last - inst.started_us.div_euclid(hour);
                    if (0..24).contains(&started) {
                        by_hour[23 - started as usize][0] += 1.0;
                    }
                    let done = last - inst.updated_us.div_euclid(hour);
                    if inst.terminal && (0..24).contains(&done) {
                        by_hour[23 - done as usize][1] += 1.0;
                    }
                }
                if let Some(slo) = slos.iter_mut().find(|s| s.journey == inst.journey) {
                    let within = m.journeys[inst.journey].complete_within_ms.unwrap_or(u64::MAX) as i64 * 1000;
                    if inst.terminal {
                        if inst.updated_us - inst.started_us <= within { slo.good += 1 } else { slo.bad += 1 }
                    } else if inst.state == "stalled" || now_us.is_some_and(|now| now - inst.started_us > within) {
                        slo.bad += 1;
                    } else {
                        slo.running += 1;
                    }
                }
            }
            if let Some(last) = last_hour {
                page.throughput = (0..24)
                    .map(|i| {
                        let start = (last - 23 + i as i64) * 3600;
                        let label = chrono::DateTime::from_timestamp(start, 0).map(|t| t.format("%H:00").to_string()).unwrap_or_default();
                        Column { label, values: by_hour[i].to_vec() }
                    })
                    .collect();
            }
            page.slos = slos;
        })?;
        page.objectives = engine
            .read_slos(|tracker, now| {
                tracker
                    .evaluate(now)
                    .into_iter()
                    .map(|v| {
                        let (_, name) = v.objective.subject();
                        SloRow {
                            name: v.objective.name.clone(),
                            measures: format!("{} of {name}", v.objective.sli_kind()),
                            objective: v.objective.target,
                            window: causeway_model::format_duration(v.objective.window_minutes as u64 * 60_000),
                            good: v.evaluation.window.good,
                            bad: v.evaluation.window.bad,
                            sli: v.evaluation.sli,
                            budget_left: v.evaluation.budget_remaining,
                            burn_1h: v.evaluation.burn_rate("1h"),
                            burn_6h: v.evaluation.burn_rate("6h"),
                            alert: v.evaluation.alert.map(|a| a.as_str().to_string()),
                        }
                    })
                    .collect()
            })?
            .unwrap_or_default();
        Ok(page)
    })
    .await?;
    Ok(respond(&headers, shell, overview::render(&page)))
}

// ---- on-call ------------------------------------------------------------------------------------

pub async fn on_call(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> PageResult {
    let pairs = params(&query);
    check_known(&pairs, &["since"])?;
    // An empty value (a form's) is the default.
    let range = param(&pairs, "since").filter(|s| !s.is_empty()).unwrap_or("24h").to_string();
    let Some((_, seconds)) = RANGES.iter().find(|(name, _)| *name == range) else {
        return Err(ApiError::bad_request("invalid_parameter", format!("since must be one of 1h, 6h, 24h, 7d or all, not '{range}'")).into());
    };
    let since = seconds.map(|s| causeway_envelope::format_time(&(chrono::Utc::now() - chrono::Duration::seconds(s))));
    let mut findings_query = vec![("open".to_string(), "true".to_string()), ("limit".to_string(), ONCALL_FINDINGS.to_string())];
    if let Some(since) = &since {
        findings_query.push(("since".into(), since.clone()));
    }
    let findings = journeys::list_findings(State(state.clone()), RawQuery(query_of(&findings_query))).await?.0;
    let (summary, stalled) = if state.journeys.is_some() {
        let summary = journeys::journey_summary(State(state.clone()), RawQuery(None)).await.ok().map(|j| j.0);
        let stalled = journeys::list_journeys(State(state.clone()), RawQuery(Some("state=stalled&limit=50".into()))).await.ok().map(|j| j.0);
        (summary, stalled)
    } else {
        (None, None)
    };
    let dlq_summary = dlq::summary(State(state.clone())).await?.0;
    let lag = state.lag.as_ref().map(|r| serde_json::to_value(&*r.read().expect("lag report")).unwrap_or(Value::Null));
    let list: Vec<Value> = findings.get("findings").and_then(Value::as_array).cloned().unwrap_or_default();
    let main = oncall::render(&oncall::OnCall {
        range: &range,
        summary: summary.as_ref(),
        findings: &list,
        stalled: stalled.as_ref(),
        dlq: &dlq_summary,
        lag: lag.as_ref(),
    });
    Ok(respond(&headers, shell(&state, "On-call", Section::OnCall).live(LIVE_SECONDS), main))
}

// ---- journeys, correlations, events -------------------------------------------------------------

pub async fn journey_list(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> PageResult {
    let pairs = params(&query);
    check_known(&pairs, &["journey", "state"])?;
    let journey = param(&pairs, "journey").unwrap_or("").to_string();
    let wanted = param(&pairs, "state").unwrap_or("").to_string();
    let mut q = vec![("limit".to_string(), "200".to_string())];
    if !journey.is_empty() {
        q.push(("journey".into(), journey.clone()));
    }
    if !wanted.is_empty() {
        q.push(("state".into(), wanted.clone()));
    }
    let body = journeys::list_journeys(State(state.clone()), RawQuery(query_of(&q))).await?.0;
    let names: Vec<String> = state.model.current().map(|m| m.model().journeys.keys().cloned().collect()).unwrap_or_default();
    let main = journey_page::journeys_list(&body, &names, &journey, &wanted);
    Ok(respond(&headers, shell(&state, "Journeys", Section::Journeys).live(LIVE_SECONDS), main))
}

pub async fn journey(State(state): State<AppState>, headers: HeaderMap, Path((journey, key)): Path<(String, String)>) -> PageResult {
    let body = journeys::get_journey(State(state.clone()), Path((journey.clone(), key.clone())), RawQuery(Some("states=true".into()))).await?.0;
    let model = state.model.current();
    let def = model.as_ref().and_then(|m| m.model().journeys.get(&journey).cloned());
    let expected = def.as_ref().map(|d| d.milestones.clone()).unwrap_or_default();
    let outcomes: Vec<(String, Vec<String>)> = def.map(|d| d.outcomes.into_iter().collect()).unwrap_or_default();
    let correlations: Vec<String> = body
        .get("correlation_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let (events, dead) = read(&state.store, move |s| {
        let (mut events, mut dead) = (Vec::new(), Vec::new());
        for c in correlations.iter().take(10) {
            events.extend(s.correlation(c, CHAIN_EVENTS)?);
            dead.extend(s.dlq_list(&DlqFilter { correlation_id: Some(c.clone()), limit: 50, ..Default::default() })?);
        }
        Ok((events, dead))
    })
    .await?;
    let events: Vec<Value> = events.iter().filter_map(|row| serde_json::from_str(&row.envelope).ok()).collect();
    let dead: Vec<Value> = dead.iter().map(|r| json!(r)).collect();
    let main = journey_page::journey_page(&journey_page::Journey {
        body: &body,
        expected: &expected,
        outcomes: &outcomes,
        events: &events,
        dead_letters: &dead,
    });
    Ok(respond(&headers, shell(&state, format!("{journey} {key}"), Section::Journeys).live(LIVE_SECONDS), main))
}

pub async fn correlation(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> PageResult {
    let lookup = id.clone();
    let (body, journey) = read(&state.store, move |s| Ok((correlation_json(s, &lookup, CHAIN_EVENTS)?, s.journey_of(None, Some(&lookup))?))).await?;
    let Some(body) = body else { return Err(ApiError::not_found(format!("no events with correlation id '{id}' are stored")).into()) };
    let body: Value = serde_json::from_str(&body).map_err(|e| ApiError::internal("reading a correlation", e))?;
    let main = journey_page::correlation_page(&body, journey.as_ref().map(|(j, k)| (j.as_str(), k.as_str())));
    Ok(respond(&headers, shell(&state, format!("correlation {id}"), Section::Other), main))
}

pub async fn event(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> PageResult {
    let lookup = id.clone();
    let found = read(&state.store, move |s| {
        let Some(row) = s.event(&lookup)? else { return Ok(None) };
        let root = s.root(&lookup)?;
        let descendants = s.descendants(&lookup, 200)?.unwrap_or_default();
        let journey = s.journey_of(Some(&lookup), None)?;
        let findings = s.findings(&FindingFilter { event_id: Some(lookup.clone()), limit: 200, ..Default::default() })?;
        let dead = s.dlq_list(&DlqFilter { event_id: Some(lookup.clone()), limit: 50, ..Default::default() })?;
        Ok(Some((row, root, descendants, journey, findings, dead)))
    })
    .await?;
    let Some((row, root, descendants, journey, findings, dead)) = found else {
        return Err(ApiError::not_found(format!("no event with id '{id}' is stored")).into());
    };
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let envelope = parse(&row.envelope);
    let root = root.map(|(r, hops)| (parse(&r.envelope), hops as i64));
    let descendants: Vec<Value> = descendants.iter().map(|r| parse(&r.envelope)).collect();
    let findings: Vec<Value> = findings.iter().map(crate::api::findings::finding_json).collect();
    let dead: Vec<Value> = dead.iter().map(|r| json!(r)).collect();
    let o = &row.origin;
    let mut arrival: Vec<(&'static str, String)> = vec![("received", row.received_at.clone())];
    arrival.extend(o.topic.clone().map(|t| ("topic", t)));
    arrival.extend(o.partition.map(|p| ("partition", p.to_string())));
    arrival.extend(o.offset.map(|p| ("offset", p.to_string())));
    let main = journey_page::event_page(&journey_page::EventPage {
        envelope: &envelope,
        arrival: &arrival,
        root: root.as_ref().map(|(r, h)| (r, *h)),
        descendants: &descendants,
        journey: journey.as_ref().map(|(j, k)| (j.as_str(), k.as_str())),
        findings: &findings,
        dead_letters: &dead,
    });
    Ok(respond(&headers, shell(&state, format!("event {id}"), Section::Other), main))
}

// ---- DLQ ----------------------------------------------------------------------------------------

pub async fn dlq_list(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> PageResult {
    let pairs = params(&query);
    check_known(&pairs, &["status", "source_topic", "error_type", "q", "before"])?;
    let get = |name: &str| param(&pairs, name).unwrap_or("").to_string();
    let filters = dlq_page::Filters { status: get("status"), source_topic: get("source_topic"), error_type: get("error_type"), q: get("q") };
    // Empty fields of the form are no filter.
    let api: Vec<(String, String)> = pairs.iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
    let records = dlq::list(State(state.clone()), RawQuery(query_of(&api))).await?.0;
    let summary = dlq::summary(State(state.clone())).await?.0;
    Ok(respond(&headers, shell(&state, "DLQ", Section::Dlq).live(LIVE_SECONDS), dlq_page::list_page(&summary, &records, &filters)))
}

pub async fn dlq_record(State(state): State<AppState>, headers: HeaderMap, viewer: Viewer, Path(id): Path<String>) -> PageResult {
    let body = dlq::get(State(state.clone()), Extension(viewer.principal()), Path(id.clone())).await?.0;
    Ok(respond(&headers, shell(&state, format!("dead letter {id}"), Section::Dlq), dlq_page::record_page(&body, viewer.may_act())))
}

// ---- canvas -------------------------------------------------------------------------------------

/// The open findings the canvas draws (the latest 10,000), read once per request.
fn open_findings(state: &AppState) -> Result<Vec<causeway_store::FindingRow>, ApiError> {
    Ok(state.store.findings(&FindingFilter { open_only: true, limit: 10_000, ..Default::default() })?)
}

/// The model element a note stands for: its kind and model name.
fn evidence_of_notes(
    board: &causeway_canvas::Board,
    state: &AppState,
    open: &[causeway_store::FindingRow],
) -> Result<(Vec<Option<NoteEvidence>>, Option<String>), PageError> {
    let Some(engine) = state.journeys.clone() else { return Ok((vec![None; board.notes.len()], None)) };
    let read = engine.read_with_evidence(|_, loaded, evidence| {
        let model = loaded.model();
        let latest = evidence.latest_ms().unwrap_or(0);
        let notes = board
            .notes
            .iter()
            .map(|note| match note.kind {
                Kind::Event => {
                    let e = evidence.of(&note.name);
                    Some(NoteEvidence {
                        count: e.map_or(0, |e| e.count as i64),
                        last_hour: e.map_or(0, |e| e.last_hour(latest) as i64),
                        p95_from_cause_ms: e.and_then(|e| e.latency_quantile_ms(0.95)),
                        open_findings: open.iter().filter(|f| f.expected.contains(&note.name)).count() as i64,
                        alarm: false,
                    })
                }
                Kind::Policy => {
                    let policy = model.policies.get(&note.name)?;
                    let missing =
                        open.iter().filter(|f| f.kind == "missing_reaction" && f.rule.as_deref() == Some(note.name.as_str())).count() as i64;
                    let reactions: Vec<_> = policy.then.iter().filter_map(|t| evidence.of(t)).collect();
                    Some(NoteEvidence {
                        count: reactions.iter().map(|e| e.count as i64).sum(),
                        last_hour: reactions.iter().map(|e| e.last_hour(latest) as i64).sum(),
                        p95_from_cause_ms: reactions.iter().filter_map(|e| e.latency_quantile_ms(0.95)).reduce(f64::max),
                        open_findings: missing,
                        alarm: missing > 0,
                    })
                }
                _ => None,
            })
            .collect();
        (notes, evidence.latest_ms().and_then(chrono::DateTime::from_timestamp_millis).map(|t| causeway_envelope::format_time(&t)))
    })?;
    Ok(read.unwrap_or_else(|| (vec![None; board.notes.len()], None)))
}

pub async fn canvas_page(State(state): State<AppState>, headers: HeaderMap, viewer: Viewer) -> PageResult {
    let loaded =
        state.model.current().ok_or_else(|| ApiError::not_found("no model is loaded, so there is no board: start the server with --model FILE"))?;
    let shell = shell(&state, "Canvas", Section::Canvas).live(LIVE_SECONDS * 2);
    let page = blocking(move || {
        let board = causeway_canvas::layout(loaded.model());
        let open = open_findings(&state)?;
        let (evidence, as_of) = evidence_of_notes(&board, &state, &open).map_err(|e| e.0)?;
        Ok(canvas::render(&board, &evidence, as_of.as_deref(), viewer.may_act()))
    })
    .await?;
    Ok(respond(&headers, shell, page))
}

/// `/canvas/notes/{id}`: the panel of one note (a fragment, for the canvas's script).
pub async fn canvas_note(State(state): State<AppState>, Path(id): Path<String>) -> PageResult {
    let loaded = state.model.current().ok_or_else(|| ApiError::not_found("no model is loaded"))?;
    let markup = blocking(move || {
        let board = causeway_canvas::layout(loaded.model());
        let Some(index) = board.notes.iter().position(|n| n.id == id) else {
            return Err(ApiError::not_found(format!("the board has no note '{id}'")));
        };
        let note = &board.notes[index];
        let open = open_findings(&state)?;
        let (evidence, _) = evidence_of_notes(&board, &state, &open).map_err(|e| e.0)?;
        let types: Vec<String> = match note.kind {
            Kind::Event => vec![note.name.clone()],
            Kind::Policy => loaded.model().policies.get(&note.name).map(|p| p.then.clone()).unwrap_or_default(),
            _ => Vec::new(),
        };
        let recent = recent_events(&state, &types)?;
        let findings: Vec<Value> = open
            .iter()
            .filter(|f| match note.kind {
                Kind::Policy => f.rule.as_deref() == Some(note.name.as_str()),
                _ => f.expected.contains(&note.name),
            })
            .take(20)
            .map(crate::api::findings::finding_json)
            .collect();
        Ok(canvas::note_panel(note.kind.label(), &note.name, evidence[index].as_ref(), &recent, &findings))
    })
    .await?;
    Ok((html_headers(), markup.into_string()).into_response())
}

/// The latest events of these types by event time, newest first, as the evidence keeps them.
fn recent_events(state: &AppState, types: &[String]) -> Result<Vec<Value>, ApiError> {
    let Some(engine) = &state.journeys else { return Ok(Vec::new()) };
    let mut recent: Vec<(i64, String, String)> = engine
        .read_with_evidence(|_, _, evidence| types.iter().filter_map(|t| evidence.of(t)).flat_map(|e| e.recent().iter().cloned()).collect())?
        .unwrap_or_default();
    recent.sort_by_key(|r| std::cmp::Reverse(r.0));
    recent.truncate(crate::evidence::RECENT_KEPT);
    Ok(recent
        .into_iter()
        .map(|(ms, id, source)| {
            let time = chrono::DateTime::from_timestamp_millis(ms).map(|t| causeway_envelope::format_time(&t));
            json!({"id": id, "time": time, "source": source})
        })
        .collect())
}

// ---- runbooks and search ------------------------------------------------------------------------

pub async fn runbooks(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    runbook_page(&state, &headers, "README.md").await
}

pub async fn runbook(State(state): State<AppState>, headers: HeaderMap, Path((section, name)): Path<(String, String)>) -> PageResult {
    runbook_page(&state, &headers, &format!("{section}/{name}")).await
}

async fn runbook_page(state: &AppState, headers: &HeaderMap, path: &str) -> PageResult {
    let loaded = state
        .model
        .current()
        .ok_or_else(|| ApiError::not_found("no model is loaded, so there are no runbooks: start the server with --model FILE"))?;
    let files = causeway_gen::runbooks(loaded.model());
    let wanted = if path.ends_with(".md") { path.to_string() } else { format!("{path}.md") };
    let Some(file) = files.iter().find(|f| f.path == wanted) else {
        return Err(ApiError::not_found(format!("there is no runbook '{path}'; the runbooks are listed at /runbooks")).into());
    };
    // The generated Markdown links runbooks to each other by relative `.md` paths.
    let text = file.contents.replace(".md)", ")").replace("](../README)", "](/runbooks)");
    let main = html! { (causeway_ui::markdown(&text)) };
    Ok(respond(headers, shell(state, "Runbooks", Section::Runbooks), main))
}

/// `/search?q=`: an event id, a correlation id, a DLQ record id or a business key goes straight
/// to its page (303); anything else gets a page saying what was looked for (200).
pub async fn search(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> PageResult {
    let pairs = params(&query);
    let q = param(&pairs, "q").unwrap_or("").trim().to_string();
    if q.is_empty() {
        return Ok(Redirect::to("/").into_response());
    }
    let engine = state.journeys.clone();
    let lookup = q.clone();
    let target = read(&state.store, move |s| {
        if let Some(id) = lookup.strip_prefix('#').unwrap_or(&lookup).parse::<i64>().ok().filter(|id| *id > 0)
            && s.dlq_record(id)?.is_some()
        {
            return Ok(Some(link::dlq_href(id)));
        }
        if s.event(&lookup)?.is_some() {
            return Ok(Some(link::event_href(&lookup)));
        }
        if !s.correlation(&lookup, 1)?.is_empty() {
            return Ok(Some(link::correlation_href(&lookup)));
        }
        Ok(None)
    })
    .await?;
    let target = match target {
        Some(t) => Some(t),
        None => {
            let key = q.clone();
            match engine {
                Some(engine) => {
                    blocking(move || {
                        Ok(engine
                            .read(|eval, loaded| {
                                loaded.model().journeys.keys().find(|j| eval.journey(j, &key).is_some()).map(|j| link::journey_href(j, &key))
                            })?
                            .flatten())
                    })
                    .await?
                }
                None => None,
            }
        }
    };
    match target {
        Some(href) => Ok(Redirect::to(&href).into_response()),
        None => {
            let main = causeway_ui::problem(
                "Nothing found",
                &format!(
                    "No event, correlation, DLQ record or journey key is '{q}'. Ids are matched whole; a business key is looked up in every journey."
                ),
            );
            // A search that finds nothing is an answer, not a missing page (a 404 would also be a
            // console error in the browser).
            Ok(respond(&headers, shell(&state, "Search", Section::Other).query(q), main))
        }
    }
}
