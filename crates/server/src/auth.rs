//! Who is asking, and may they (docs/security.md): every routed request passes [`authorize`],
//! which finds the route's [`Access`] in [`ROUTES`], authenticates a bearer token or the UI's
//! sign-in cookie, checks the role, the CSRF token of a cookie-borne write and the token's rate,
//! and afterwards writes the audit entry of a write, an action or an SQL query.
//!
//! **Invariants:**
//! - Fail closed: a route missing from [`ROUTES`] is refused to everyone (`500`), and a test walks
//!   every operation of the API document against a matrix of its own.
//! - With `--auth off` every request acts as `anonymous`, holding every role (loopback only, or
//!   `--insecure`); the audit log still records what it did.
//! - A write sent with the sign-in cookie carries `x-csrf-token` = [`csrf_token`] of the cookie's
//!   token, which a page of another site can neither read nor forge; bearer requests need none.
//! - A handler adds what the audit entry should say as an [`AuditNote`] response extension; the
//!   entry is written here, once, after the handler answered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use causeway_auth::audit::AuditLog;
use causeway_auth::rate::Limiter;
use causeway_auth::{Access, Denied, Role, TokenRecord, TokenStore, Verifier, csrf_matches, csrf_token};
use serde_json::{Value, json};

use crate::error::ApiError;

/// The cookie that keeps a signed-in token (HttpOnly: no script reads it).
pub const TOKEN_COOKIE: &str = "causeway_token";
/// The cookie the UI's script reads to send `x-csrf-token` with its writes.
pub const CSRF_COOKIE: &str = "causeway_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Set by [`authorize`] on a request made with a token (its label), after removing any a client
/// sent: who acted, for records that name an actor ([`actor`]).
const TOKEN_HEADER: &str = "x-causeway-token";
/// The most of an SQL query's text an audit entry keeps.
const AUDIT_QUERY_CHARS: usize = 4096;

/// Every route, and the access it needs. `HEAD` is `GET`'s.
pub const ROUTES: &[(&str, &str, Access)] = {
    use Access::*;
    &[
        ("GET", "/healthz", Public),
        ("GET", "/readyz", Public),
        ("GET", "/openapi.yaml", Public),
        ("GET", "/ui/causeway.css", Public),
        ("GET", "/ui/causeway.js", Public),
        ("GET", "/ui/icon.svg", Public),
        ("GET", "/favicon.ico", Public),
        ("GET", "/sign-in", Public),
        ("POST", "/sign-in", Public),
        ("POST", "/sign-out", Public),
        ("GET", "/", Read),
        ("GET", "/on-call", Read),
        ("GET", "/journeys", Read),
        ("GET", "/journeys/{journey}/{key}", Read),
        ("GET", "/correlations/{id}", Read),
        ("GET", "/events/{id}", Read),
        ("GET", "/dlq", Read),
        ("GET", "/dlq/{id}", Read),
        ("GET", "/canvas", Read),
        ("GET", "/canvas/notes/{id}", Read),
        ("GET", "/runbooks", Read),
        ("GET", "/runbooks/{section}/{name}", Read),
        ("GET", "/search", Read),
        ("POST", "/v1/events", Ingest),
        ("GET", "/v1/events/{id}", Read),
        ("GET", "/v1/events/{id}/descendants", Read),
        ("GET", "/v1/events/{id}/root", Read),
        ("GET", "/v1/correlations/{id}", Read),
        ("GET", "/v1/journeys", Read),
        ("GET", "/v1/journeys/summary", Read),
        ("GET", "/v1/clock", Read),
        ("GET", "/v1/journeys/{journey}/{key}", Read),
        ("GET", "/v1/findings", Read),
        ("GET", "/v1/dlq", Read),
        ("POST", "/v1/dlq", Ingest),
        ("GET", "/v1/dlq/summary", Read),
        ("POST", "/v1/dlq/replay", Operate),
        ("GET", "/v1/dlq/{id}", Read),
        ("GET", "/v1/dlq/{id}/original", Operate),
        ("POST", "/v1/dlq/{id}/replay", Operate),
        ("POST", "/v1/dlq/{id}/discard", Operate),
        ("POST", "/v1/dlq/{id}/resolve", Operate),
        ("GET", "/v1/aggregates/{kind}/{id}", Read),
        ("GET", "/v1/lag", Read),
        ("GET", "/v1/slo", Read),
        ("GET", "/v1/alerts", Read),
        ("GET", "/v1/silences", Read),
        ("POST", "/v1/silences", Operate),
        ("DELETE", "/v1/silences/{id}", Operate),
        ("GET", "/v1/store", Read),
        ("POST", "/v1/sql", Read),
        ("GET", "/v1/model", Read),
        ("POST", "/v1/model/reload", Operate),
        ("GET", "/v1/model/canvas.svg", Read),
        ("GET", "/metrics", Read),
        ("GET", "/v1/tokens", Admin),
        ("POST", "/v1/tokens", Admin),
        ("DELETE", "/v1/tokens/{id}", Admin),
        ("GET", "/v1/audit", Admin),
    ]
};

static ACCESS: LazyLock<HashMap<(&'static str, &'static str), Access>> =
    LazyLock::new(|| ROUTES.iter().map(|(method, path, access)| ((*method, *path), *access)).collect());

/// The access a routed request needs; `None`: the route is missing from [`ROUTES`].
pub fn access(method: &Method, route: &str) -> Option<Access> {
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    ACCESS.get(&(method, route)).copied()
}

/// Whether tokens are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Off,
    Required,
}

/// The server's authentication: its mode, tokens, rates and audit log.
pub struct Auth {
    pub mode: AuthMode,
    pub tokens: Option<TokenStore>,
    verifier: Option<Verifier>,
    pub audit: Option<Arc<AuditLog>>,
    limiter: Limiter,
    /// Cookies are marked `Secure` (the server speaks TLS).
    pub secure_cookies: bool,
    /// Refusals by reason, in the order of [`REFUSALS`], for `/metrics`.
    refused: [AtomicU64; 4],
    /// Writes summed per action and token until their window ends ([`TALLY_WINDOW`]).
    tallies: Mutex<HashMap<(&'static str, String), Tally>>,
}

/// How long the writes of one token are summed into one audit entry: a producer sending a
/// thousand requests a second makes one line a minute, not a thousand a second.
pub const TALLY_WINDOW: Duration = Duration::from_secs(60);

/// The writes of one token in one window.
struct Tally {
    started: Instant,
    from: String,
    who: Principal,
    requests: u64,
    /// Number fields of the requests' notes (accepted, rejected, …), summed.
    sums: serde_json::Map<String, Value>,
    /// Requests by status.
    statuses: std::collections::BTreeMap<u16, u64>,
}

/// The reasons a request is refused, as `/metrics` names them.
const REFUSALS: [&str; 4] = ["unauthenticated", "forbidden", "csrf", "rate_limited"];

impl Auth {
    /// No tokens asked, nothing audited: the router called in-process.
    pub fn off() -> Auth {
        Auth {
            mode: AuthMode::Off,
            tokens: None,
            verifier: None,
            audit: None,
            limiter: Limiter::default(),
            secure_cookies: false,
            refused: Default::default(),
            tallies: Mutex::default(),
        }
    }

    /// The data directory's tokens and audit log; tokens are asked for when `mode` says so.
    pub fn open(data: &std::path::Path, mode: AuthMode, rates: HashMap<Role, causeway_auth::rate::Rate>) -> Result<Auth, causeway_auth::AuthError> {
        let tokens = TokenStore::new(data);
        let verifier = (mode == AuthMode::Required).then(|| Verifier::new(&tokens));
        let audit = Arc::new(AuditLog::open(data)?);
        Ok(Auth {
            mode,
            tokens: Some(tokens),
            verifier,
            audit: Some(audit),
            limiter: Limiter::new(rates),
            secure_cookies: false,
            refused: Default::default(),
            tallies: Mutex::default(),
        })
    }

    /// A token's record, or why it is refused (with auth off: every token is unknown).
    pub fn verify(&self, token: &str) -> Result<TokenRecord, Denied> {
        self.verifier.as_ref().ok_or(Denied::Unknown)?.verify(token)
    }

    /// Live tokens, when they are asked for (for the start-up line).
    pub fn live_tokens(&self) -> Option<Result<usize, String>> {
        self.verifier.as_ref().map(Verifier::live)
    }

    /// Writes an audit entry; a failure is logged, never answered (the action already happened).
    pub fn record(&self, action: &str, who: &Principal, data: Value) {
        let Some(audit) = &self.audit else { return };
        let mut data = data;
        if let Value::Object(map) = &mut data {
            map.insert("actor".into(), who.describe());
        }
        if let Err(e) = audit.append(action, who.subject(), data) {
            tracing::error!(message = "cannot write the audit log", error = %e);
        }
    }

    /// Adds a write to its token's tally for `action`, written as one entry when its window ends.
    fn tally(&self, action: &'static str, who: &Principal, status: u16, note: Option<Value>) {
        if self.audit.is_none() {
            return;
        }
        let mut tallies = self.tallies.lock().expect("tallies lock");
        let t = tallies.entry((action, who.subject().to_string())).or_insert_with(|| Tally {
            started: Instant::now(),
            from: now_rfc3339(),
            who: who.clone(),
            requests: 0,
            sums: serde_json::Map::new(),
            statuses: Default::default(),
        });
        t.requests += 1;
        *t.statuses.entry(status).or_default() += 1;
        if let Some(Value::Object(fields)) = note {
            for (k, v) in fields {
                if let Some(n) = v.as_u64() {
                    let sum = t.sums.entry(k).or_insert(json!(0));
                    *sum = json!(sum.as_u64().unwrap_or(0) + n);
                }
            }
        }
    }

    /// Writes the tallies whose window has ended, or all of them with `all` (before the audit
    /// log is read, and at shutdown); flushes the log to the disk. The server calls it every second.
    pub fn flush(&self, all: bool) {
        let due: Vec<((&'static str, String), Tally)> = {
            let mut tallies = self.tallies.lock().expect("tallies lock");
            let keys: Vec<_> = tallies.iter().filter(|(_, t)| all || t.started.elapsed() >= TALLY_WINDOW).map(|(k, _)| k.clone()).collect();
            keys.into_iter().filter_map(|k| tallies.remove_entry(&k)).collect()
        };
        for ((action, _), t) in due {
            let statuses: serde_json::Map<String, Value> = t.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect();
            let mut data = json!({"from": t.from, "to": now_rfc3339(), "requests": t.requests, "statuses": statuses});
            data.as_object_mut().expect("object").extend(t.sums);
            self.record(action, &t.who, data);
        }
        if let Some(audit) = &self.audit
            && let Err(e) = audit.sync()
        {
            tracing::error!(message = "cannot flush the audit log", error = %e);
        }
    }

    /// Takes `units` from the principal's rate bucket.
    pub fn charge(&self, who: &Principal, units: u64) -> Result<(), Duration> {
        let taken = match &who.token {
            Some(t) => self.limiter.take(&t.id, t.role, units, Instant::now()),
            None => Ok(()),
        };
        if taken.is_err() {
            self.count_refusal("rate_limited");
        }
        taken
    }

    fn count_refusal(&self, reason: &str) {
        if let Some(i) = REFUSALS.iter().position(|r| *r == reason) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests refused so far, by reason.
    pub fn refusals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REFUSALS.iter().zip(&self.refused).map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
    }
}

/// Who a request acts as.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token it presented, if any.
    pub token: Option<TokenRecord>,
    /// Auth is off: it may do everything.
    pub open: bool,
    pub peer: Option<SocketAddr>,
}

impl Principal {
    /// Whoever calls with auth off: everything is allowed.
    pub fn open(peer: Option<SocketAddr>) -> Principal {
        Principal { token: None, open: true, peer }
    }

    fn nobody(peer: Option<SocketAddr>) -> Principal {
        Principal { token: None, open: false, peer }
    }

    pub fn authenticated(&self) -> bool {
        self.token.is_some()
    }

    /// Whether it holds `access`.
    pub fn may(&self, access: Access) -> bool {
        self.open || self.token.as_ref().is_some_and(|t| t.role.allows(access))
    }

    /// Whether it may send events owned by `context` (`None`: a type the model does not name).
    pub fn may_produce(&self, context: Option<&str>) -> bool {
        self.open || self.token.as_ref().is_some_and(|t| t.may_produce(context))
    }

    pub fn subject(&self) -> &str {
        self.token.as_ref().map_or("anonymous", |t| t.id.as_str())
    }

    fn describe(&self) -> Value {
        let mut v = match &self.token {
            Some(t) => json!({"token": t.id, "name": t.name, "role": t.role.name()}),
            None => json!({"token": null, "role": null}),
        };
        if let Some(peer) = self.peer {
            v["peer"] = json!(peer.to_string());
        }
        v
    }
}

/// What a handler wants its audit entry to say, beside the request and the status.
#[derive(Debug, Clone)]
pub struct AuditNote(pub Value);

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Writes summed per token and window ([`TALLY_WINDOW`]) rather than written one by one, but for
/// their refusals for want of a right.
const TALLIED: [&str; 2] = ["events.ingest", "dlq.report"];

/// The audit action of a route that changes something (or runs SQL); `None`: not audited.
fn audited(method: &Method, route: &str) -> Option<&'static str> {
    Some(match (method.as_str(), route) {
        ("POST", "/v1/events") => "events.ingest",
        ("POST", "/v1/dlq") => "dlq.report",
        ("POST", "/v1/dlq/replay") => "dlq.replay_bulk",
        ("POST", "/v1/dlq/{id}/replay") => "dlq.replay",
        ("POST", "/v1/dlq/{id}/discard") => "dlq.discard",
        ("POST", "/v1/dlq/{id}/resolve") => "dlq.resolve",
        ("GET", "/v1/dlq/{id}/original") => "dlq.read_payload",
        ("POST", "/v1/model/reload") => "model.reload",
        ("POST", "/v1/silences") => "silence.create",
        ("DELETE", "/v1/silences/{id}") => "silence.delete",
        ("POST", "/v1/sql") => "sql.query",
        ("POST", "/v1/tokens") => "token.create",
        ("DELETE", "/v1/tokens/{id}") => "token.revoke",
        ("POST", "/sign-in") => "ui.sign_in",
        _ => return None,
    })
}

/// The middleware of every routed request.
pub async fn authorize(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let Some(access) = access(&method, &route) else {
        tracing::error!(message = "a route has no access rule; refused", %method, route);
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no_access_rule",
            format!("{method} {route} has no access rule; it is refused to everyone"),
        )
        .into_response();
    };
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    // A public route answers whatever credentials come with it: none is checked.
    let (identified, via_cookie) = if access == Access::Public {
        (Ok(Principal { open: auth.mode == AuthMode::Off, ..Principal::nobody(peer) }), false)
    } else {
        identify(&auth, request.headers(), peer)
    };
    let (principal, refused) = match identified {
        Ok(found) => (found, None),
        // A stale sign-in cookie (its token revoked) is no credential at all: its browser is
        // sent to sign in again.
        Err(denied) if via_cookie => (Principal::nobody(peer), Some(denied)),
        Err(denied) => {
            auth.count_refusal("unauthenticated");
            return unauthorized(&denied.sentence(), &route);
        }
    };
    if access != Access::Public {
        if !principal.open && !principal.authenticated() {
            auth.count_refusal("unauthenticated");
            if is_page(&method, &route) {
                let next_page = request.uri().path_and_query().map_or("/", |p| p.as_str());
                let to = format!("/sign-in?{}", form_urlencoded::Serializer::new(String::new()).append_pair("next", next_page).finish());
                return Redirect::to(&to).into_response();
            }
            let sentence = match refused {
                Some(denied) => format!("{}: sign in again with another token", denied.sentence()),
                None => "this server asks for a token: send Authorization: Bearer <token> (make one with `causeway token create`)".into(),
            };
            return unauthorized(&sentence, &route);
        }
        if !principal.may(access) {
            let t = principal.token.as_ref().expect("authenticated");
            let sentence = format!("token {} ({} role) may not {method} {route}: that needs the {} role", t.label(), t.role, access.roles());
            auth.count_refusal("forbidden");
            auth.record("denied", &principal, json!({"method": method.as_str(), "path": request.uri().path(), "status": 403}));
            return ApiError::new(StatusCode::FORBIDDEN, "forbidden", sentence).into_response();
        }
        if via_cookie && !matches!(method, Method::GET | Method::HEAD) && !csrf_ok(request.headers()) {
            auth.count_refusal("csrf");
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "a write signed in by cookie must carry the x-csrf-token header the UI's pages send; reload the page and try again",
            )
            .into_response();
        }
        if let Err(wait) = auth.charge(&principal, 1) {
            return too_many(&principal, wait);
        }
    }
    let action = audited(&method, &route);
    let path = request.uri().path().to_owned();
    let mut request = request;
    request.headers_mut().remove(TOKEN_HEADER);
    if let Some(t) = &principal.token {
        let label = HeaderValue::from_str(&t.label()).unwrap_or_else(|_| HeaderValue::from_str(&t.id).expect("a token id is ASCII"));
        request.headers_mut().insert(TOKEN_HEADER, label);
    }
    request.extensions_mut().insert(principal.clone());
    let mut response = next.run(request).await;
    if let Some(action) = action {
        let note = response.extensions_mut().remove::<AuditNote>().map(|n| n.0);
        let status = response.status().as_u16();
        let unauthorized = note.as_ref().and_then(|n| n["unauthorized"].as_u64()).unwrap_or(0);
        if TALLIED.contains(&action) && unauthorized == 0 && status != 403 {
            auth.tally(action, &principal, status, note);
            return response;
        }
        let mut data = json!({"method": method.as_str(), "path": path, "status": status});
        if let Some(Value::Object(fields)) = note {
            data.as_object_mut().expect("object").extend(fields);
        }
        auth.record(action, &principal, data);
    }
    response
}

/// The principal of a request: its bearer token, else its sign-in cookie, else nobody; and
/// whether the credential came in the cookie. `Err` only for a token presented and refused.
fn identify(auth: &Auth, headers: &HeaderMap, peer: Option<SocketAddr>) -> (Result<Principal, Denied>, bool) {
    let Some(verifier) = &auth.verifier else { return (Ok(Principal::open(peer)), false) };
    let bearer = headers.get(header::AUTHORIZATION).map(|v| {
        let text = v.to_str().unwrap_or_default();
        text.strip_prefix("Bearer ").or_else(|| text.strip_prefix("bearer ")).unwrap_or(text).trim().to_owned()
    });
    let (token, via_cookie) = match bearer {
        Some(token) => (token, false),
        None => match cookie(headers, TOKEN_COOKIE) {
            Some(token) => (token, true),
            None => return (Ok(Principal::nobody(peer)), false),
        },
    };
    (verifier.verify(&token).map(|record| Principal { token: Some(record), open: false, peer }), via_cookie)
}

fn csrf_ok(headers: &HeaderMap) -> bool {
    let (Some(token), Some(sent)) = (cookie(headers, TOKEN_COOKIE), headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok())) else {
        return false;
    };
    csrf_matches(&token, sent)
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// A page route (HTML), answered by sending the browser to sign in rather than with `401`.
fn is_page(method: &Method, route: &str) -> bool {
    method == Method::GET && !route.starts_with("/v1/") && route != "/metrics"
}

fn unauthorized(sentence: &str, route: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", sentence.to_string()).into_response();
    let realm = if route.starts_with("/v1/") || route == "/metrics" {
        "Bearer realm=\"causeway\""
    } else {
        "Bearer realm=\"causeway\", sign-in=\"/sign-in\""
    };
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(realm));
    response
}

/// `429` with `Retry-After` in whole seconds, rounded up.
pub fn too_many(who: &Principal, wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let token = who.token.as_ref().map_or_else(|| "this client".to_string(), |t| format!("token {}", t.label()));
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("{token} is over its role's rate ([auth.rates]); try again in {seconds} s"),
    )
    .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// Who acted, for a replay's, a status change's or a silence's record: the actor the client
/// claimed (`claimed`, else the `x-causeway-actor` header), and the token it used when it used one
/// — the claim alone cannot pass for someone else.
pub fn actor(claimed: Option<String>, headers: &HeaderMap) -> String {
    let claimed =
        claimed.filter(|a| !a.trim().is_empty()).or_else(|| headers.get("x-causeway-actor").and_then(|v| v.to_str().ok()).map(str::to_owned));
    let token = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    match (claimed, token) {
        (Some(c), Some(t)) => format!("{c} (token {t})"),
        (None, Some(t)) => format!("token {t}"),
        (Some(c), None) => c,
        (None, None) => "anonymous".to_string(),
    }
}

/// A short SQL query text for the audit entry.
pub fn audit_query(query: &str) -> Value {
    if query.chars().count() <= AUDIT_QUERY_CHARS {
        return json!({"query": query});
    }
    json!({"query": query.chars().take(AUDIT_QUERY_CHARS).collect::<String>(), "query_truncated": true})
}

/// `Set-Cookie` values that sign `token` in (or out, with `None`).
pub fn sign_in_cookies(token: Option<&str>, secure: bool) -> [String; 2] {
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(token) => [
            format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"),
            format!("{CSRF_COOKIE}={}; Path=/; SameSite=Strict{secure}", csrf_token(token)),
        ],
        None => [
            format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
            format!("{CSRF_COOKIE}=; Path=/; SameSite=Strict; Max-Age=0{secure}"),
        ],
    }
}
