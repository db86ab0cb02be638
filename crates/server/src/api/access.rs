//! Signing in to the web UI (`/sign-in`, `/sign-out`), tokens (`/v1/tokens`) and the audit log
//! (`/v1/audit`). Who may reach them is `auth.rs`'s table; these handlers do the work.
//!
//! **Invariants:**
//! - A token is shown once, in the answer that made it; lists never carry a token or its hash.
//! - Sign-in sends the browser back only to a path of this server (`next` starting with one `/`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use causeway_auth::{AuthError, Role, TokenRecord, TokenStore};
use causeway_ui::{Section, Shell};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::params::{check_known, limit, param, params};
use crate::auth::{AuditNote, AuthMode, sign_in_cookies};
use crate::error::ApiError;
use crate::state::AppState;

/// Most audit entries one answer carries.
const MAX_AUDIT_ENTRIES: usize = 10_000;

/// `GET /sign-in`: the form.
pub async fn sign_in_page(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let pairs = params(&query);
    let next = safe_next(param(&pairs, "next"));
    page(&state, StatusCode::OK, next, None)
}

fn page(state: &AppState, status: StatusCode, next: &str, problem: Option<&str>) -> Response {
    let off = state.auth.mode == AuthMode::Off;
    let main = html! {
        h1 { "Sign in" }
        @if off {
            p { "This server does not ask for tokens (" code { "--auth off" } "): every page is open." }
        }
        @if let Some(problem) = problem {
            p.problem role="alert" { (problem) }
        }
        form.sign-in method="post" action="/sign-in" {
            input type="hidden" name="next" value=(next);
            label for="token" { "API token" }
            input #token type="password" name="token" autocomplete="off" required placeholder="cw_…";
            button type="submit" { "Sign in" }
        }
        p.muted { "Make a token with " code { "causeway token create --role reader" } " (or operator, to act on the DLQ)." }
    };
    let body = Shell::new("Sign in", Section::Other).document(main);
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], body).into_response()
}

/// Where to go after signing in: a path of this server, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.chars().any(char::is_control) => n,
        _ => "/",
    }
}

/// `POST /sign-in` (a form: `token`, `next`): sets the cookies and goes to `next`.
pub async fn sign_in(State(state): State<AppState>, body: Bytes) -> Response {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let next = safe_next(param(&pairs, "next")).to_owned();
    let token = param(&pairs, "token").unwrap_or_default().trim().to_owned();
    if state.auth.mode == AuthMode::Off {
        return Redirect::to(&next).into_response();
    }
    match state.auth.verify(&token) {
        Ok(record) => {
            let mut response = Redirect::to(&next).into_response();
            for cookie in sign_in_cookies(Some(&token), state.auth.secure_cookies) {
                response.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a cookie is a header value"));
            }
            response.extensions_mut().insert(AuditNote(json!({"signed_in": record.id, "role": record.role.name()})));
            response
        }
        Err(denied) => {
            let mut response = page(&state, StatusCode::UNAUTHORIZED, &next, Some(&format!("Not signed in: {}.", denied.sentence())));
            response.extensions_mut().insert(AuditNote(json!({"refused": denied.sentence()})));
            response
        }
    }
}

/// `POST /sign-out`: clears the cookies.
pub async fn sign_out(State(state): State<AppState>) -> Response {
    let mut response = Redirect::to("/sign-in").into_response();
    for cookie in sign_in_cookies(None, state.auth.secure_cookies) {
        response.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a cookie is a header value"));
    }
    response
}

fn token_store(state: &AppState) -> Result<&TokenStore, ApiError> {
    state
        .auth
        .tokens
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "no_tokens", "this server keeps no tokens (it has no data directory)"))
}

fn auth_error(e: AuthError) -> ApiError {
    match e {
        AuthError::Invalid(m) => ApiError::bad_request("invalid_token_request", m),
        AuthError::NoSuchToken(id) => ApiError::not_found(format!("no token has the id {id}: list them with GET /v1/tokens")),
        other => ApiError::internal("the token file", other),
    }
}

/// A token as listed: everything but its hash.
fn shown(t: &TokenRecord) -> Value {
    json!({"id": t.id, "name": t.name, "role": t.role.name(), "contexts": t.contexts, "created_at": t.created_at, "revoked_at": t.revoked_at})
}

/// `GET /v1/tokens`.
pub async fn list_tokens(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    check_known(&params(&query), &[])?;
    let tokens = token_store(&state)?.list().map_err(auth_error)?;
    Ok(Json(json!({"auth": auth_mode(&state), "tokens": tokens.iter().map(shown).collect::<Vec<_>>()})))
}

fn auth_mode(state: &AppState) -> &'static str {
    match state.auth.mode {
        AuthMode::Off => "off",
        AuthMode::Required => "required",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenRequest {
    role: String,
    #[serde(default)]
    contexts: Vec<String>,
    name: Option<String>,
}

/// `POST /v1/tokens` `{"role", "contexts"?, "name"?}`: `201` with the token, shown this once.
pub async fn create_token(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let request: NewTokenRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("expected {{\"role\": \"reader|producer|operator|admin\", \"contexts\": [\"…\"], \"name\": \"…\"}}: {e}"),
        )
    })?;
    let role = Role::parse(&request.role).ok_or_else(|| {
        ApiError::bad_request("invalid_token_request", format!("role must be reader, producer, operator or admin, not '{}'", request.role))
    })?;
    if let Some(model) = state.model.current() {
        let known = &model.model().contexts;
        if let Some(unknown) = request.contexts.iter().find(|c| *c != causeway_auth::ANY_CONTEXT && !known.contains_key(c.as_str())) {
            let names: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(ApiError::bad_request(
                "invalid_token_request",
                format!("the model has no context '{unknown}': its contexts are {} (or '*' for any)", names.join(", ")),
            ));
        }
    }
    let made = token_store(&state)?.create(role, request.contexts, request.name).map_err(auth_error)?;
    let mut answer = shown(&made.record);
    answer["token"] = json!(made.token);
    let mut response = (StatusCode::CREATED, Json(answer)).into_response();
    response.extensions_mut().insert(AuditNote(json!({"token_id": made.record.id, "role": role.name(), "contexts": made.record.contexts})));
    Ok(response)
}

/// `DELETE /v1/tokens/{id}`.
pub async fn revoke_token(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let record = token_store(&state)?.revoke(&id).map_err(auth_error)?;
    let mut response = Json(shown(&record)).into_response();
    response.extensions_mut().insert(AuditNote(json!({"token_id": record.id})));
    Ok(response)
}

/// `GET /v1/audit?since=&limit=`: entries as CloudEvents, oldest first.
pub async fn audit(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let pairs = params(&query);
    check_known(&pairs, &["since", "limit"])?;
    let limit = limit(&query, 1000, MAX_AUDIT_ENTRIES)?;
    let since = match param(&pairs, "since") {
        None => None,
        Some(text) => Some(causeway_envelope::parse_time(text).map_err(|_| {
            ApiError::bad_request("invalid_parameter", format!("since must be an RFC 3339 time such as 2026-11-30T12:00:00Z, not '{text}'"))
        })?),
    };
    // Writes still being summed are written first, so the answer holds everything up to now.
    let auth = state.auth.clone();
    tokio::task::spawn_blocking(move || auth.flush(true)).await.map_err(|e| ApiError::internal("flushing the audit log", e))?;
    let Some(log) = state.auth.audit.clone() else {
        return Ok(Json(json!({"entries": [], "truncated": false})).into_response());
    };
    let (entries, truncated) = tokio::task::spawn_blocking(move || log.read(since, limit))
        .await
        .map_err(|e| ApiError::internal("reading the audit log", e))?
        .map_err(|e| ApiError::internal("reading the audit log", e))?;
    Ok(Json(json!({"entries": entries, "truncated": truncated})).into_response())
}
