//! Tokens and roles against the real binary (`causeway serve --auth required`, tokens made by
//! `causeway token create`): every route with every role against a matrix stated here, apart from
//! the server's own table; a producer refused for a context it does not hold; revocation; the
//! UI's sign-in cookie and its CSRF token; what SQL may read; per-token rates; the audit log; and
//! when `--auth off` is refused.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use causeway_auth::Role;
use common::{BIN, Server};
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};

fn example_model() -> String {
    format!("{}/../../examples/order-fulfillment/model.yaml", env!("CARGO_MANIFEST_DIR"))
}

fn causeway(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// `causeway token create`, its token.
fn token(data: &Path, role: &str, contexts: &[&str]) -> String {
    let mut args = vec!["token", "create", "--role", role, "--data", data.to_str().unwrap()];
    for c in contexts {
        args.extend(["--context", c]);
    }
    let out = causeway(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn client() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(std::time::Duration::from_secs(30)).build().unwrap()
}

/// A form post, as a browser sends the sign-in form.
fn form(request: RequestBuilder, pairs: &[(&str, &str)]) -> RequestBuilder {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    request.header("content-type", "application/x-www-form-urlencoded").body(body)
}

fn with(request: RequestBuilder, token: Option<&str>) -> RequestBuilder {
    match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    }
}

/// Tokens of each role (the producer holds every context).
struct Tokens {
    reader: String,
    producer: String,
    operator: String,
    admin: String,
}

impl Tokens {
    fn make(data: &Path) -> Tokens {
        Tokens {
            reader: token(data, "reader", &[]),
            producer: token(data, "producer", &["*"]),
            operator: token(data, "operator", &[]),
            admin: token(data, "admin", &[]),
        }
    }

    fn of(&self, role: Role) -> &str {
        match role {
            Role::Reader => &self.reader,
            Role::Producer => &self.producer,
            Role::Operator => &self.operator,
            Role::Admin => &self.admin,
        }
    }
}

fn order(id: &str, order_id: &str) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "order-service", "type": "OrderCreated",
        "time": chrono::Utc::now().to_rfc3339(), "correlationid": format!("c-{order_id}"),
        "data": {"orderId": order_id, "customerEmail": "ana@example.com", "amount": 12.5, "currency": "EUR"},
    })
}

fn payment(id: &str, order_id: &str) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "payment-service", "type": "PaymentProcessed",
        "time": chrono::Utc::now().to_rfc3339(), "correlationid": format!("c-{order_id}"),
        "data": {"orderId": order_id, "amount": 12.5},
    })
}

const PUBLIC: &[Role] = &[Role::Reader, Role::Producer, Role::Operator, Role::Admin];
const READ: &[Role] = &[Role::Reader, Role::Operator, Role::Admin];
const INGEST: &[Role] = &[Role::Producer];
const OPERATE: &[Role] = &[Role::Operator, Role::Admin];
const ADMIN: &[Role] = &[Role::Admin];

/// Who may call what: stated here on its own, so that a change to the server's table
/// (`causeway_server::auth::ROUTES`) that this does not also make fails.
const MATRIX: &[(&str, &str, &[Role], bool)] = &[
    // (method, route, the roles that may, public: no token needed)
    ("GET", "/healthz", PUBLIC, true),
    ("GET", "/readyz", PUBLIC, true),
    ("GET", "/openapi.yaml", PUBLIC, true),
    ("GET", "/ui/causeway.css", PUBLIC, true),
    ("GET", "/ui/causeway.js", PUBLIC, true),
    ("GET", "/ui/icon.svg", PUBLIC, true),
    ("GET", "/favicon.ico", PUBLIC, true),
    ("GET", "/sign-in", PUBLIC, true),
    ("POST", "/sign-in", PUBLIC, true),
    ("POST", "/sign-out", PUBLIC, true),
    ("GET", "/", READ, false),
    ("GET", "/on-call", READ, false),
    ("GET", "/journeys", READ, false),
    ("GET", "/journeys/{journey}/{key}", READ, false),
    ("GET", "/correlations/{id}", READ, false),
    ("GET", "/events/{id}", READ, false),
    ("GET", "/dlq", READ, false),
    ("GET", "/dlq/{id}", READ, false),
    ("GET", "/canvas", READ, false),
    ("GET", "/canvas/notes/{id}", READ, false),
    ("GET", "/runbooks", READ, false),
    ("GET", "/runbooks/{section}/{name}", READ, false),
    ("GET", "/search", READ, false),
    ("POST", "/v1/events", INGEST, false),
    ("GET", "/v1/events/{id}", READ, false),
    ("GET", "/v1/events/{id}/descendants", READ, false),
    ("GET", "/v1/events/{id}/root", READ, false),
    ("GET", "/v1/correlations/{id}", READ, false),
    ("GET", "/v1/journeys", READ, false),
    ("GET", "/v1/journeys/summary", READ, false),
    ("GET", "/v1/clock", READ, false),
    ("GET", "/v1/journeys/{journey}/{key}", READ, false),
    ("GET", "/v1/findings", READ, false),
    ("GET", "/v1/dlq", READ, false),
    ("POST", "/v1/dlq", INGEST, false),
    ("GET", "/v1/dlq/summary", READ, false),
    ("POST", "/v1/dlq/replay", OPERATE, false),
    ("GET", "/v1/dlq/{id}", READ, false),
    ("GET", "/v1/dlq/{id}/original", OPERATE, false),
    ("POST", "/v1/dlq/{id}/replay", OPERATE, false),
    ("POST", "/v1/dlq/{id}/discard", OPERATE, false),
    ("POST", "/v1/dlq/{id}/resolve", OPERATE, false),
    ("GET", "/v1/aggregates/{kind}/{id}", READ, false),
    ("GET", "/v1/lag", READ, false),
    ("GET", "/v1/slo", READ, false),
    ("GET", "/v1/alerts", READ, false),
    ("GET", "/v1/silences", READ, false),
    ("POST", "/v1/silences", OPERATE, false),
    ("DELETE", "/v1/silences/{id}", OPERATE, false),
    ("GET", "/v1/store", READ, false),
    ("POST", "/v1/sql", READ, false),
    ("GET", "/v1/model", READ, false),
    ("POST", "/v1/model/reload", OPERATE, false),
    ("GET", "/v1/model/canvas.svg", READ, false),
    ("GET", "/metrics", READ, false),
    ("GET", "/v1/tokens", ADMIN, false),
    ("POST", "/v1/tokens", ADMIN, false),
    ("DELETE", "/v1/tokens/{id}", ADMIN, false),
    ("GET", "/v1/audit", ADMIN, false),
];

/// A request of `method` to `route` with its parameters filled in (ids that need not exist: a
/// role that may call it gets a 404 or a 400, never a 401 or 403).
fn request(c: &Client, base: &str, method: &str, route: &str, token: Option<&str>) -> RequestBuilder {
    let path = route
        .replace("{journey}", "order")
        .replace("{key}", "o-1")
        .replace("{kind}", "Order")
        .replace("{section}", "journeys")
        .replace("{name}", "order")
        .replace("{id}", "1");
    let url = format!("{base}{path}");
    let request = match method {
        "GET" => c.get(url),
        "DELETE" => c.delete(url),
        "POST" if route == "/sign-in" => form(c.post(url), &[("token", token.unwrap_or("")), ("next", "/")]),
        "POST" => c.post(url).json(&json!({})),
        other => panic!("no request for {other}"),
    };
    with(request, token)
}

#[test]
fn every_route_answers_each_role_as_the_matrix_says() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::make(dir.path());
    let server = Server::start(dir.path(), &["--auth", "required", "--model", &example_model()]);

    // The matrix names every route the server has, and nothing else.
    let ours: BTreeSet<(&str, &str)> = MATRIX.iter().map(|(m, r, _, _)| (*m, *r)).collect();
    let servers: BTreeSet<(&str, &str)> = causeway_server::auth::ROUTES.iter().map(|(m, r, _)| (*m, *r)).collect();
    assert_eq!(ours, servers, "the matrix and the server's route table name different routes");
    let c = client();
    let mut wrong = Vec::new();
    for &(method, route, roles, public) in MATRIX {
        // Without a token: public routes answer, pages send the browser to sign in, the rest 401.
        let status = request(&c, &server.url, method, route, None).send().unwrap().status();
        let expected_anonymous = if public {
            // Only a sign-in with no token is refused.
            status != StatusCode::FORBIDDEN && (status != StatusCode::UNAUTHORIZED || route == "/sign-in")
        } else if method == "GET" && !route.starts_with("/v1/") && route != "/metrics" {
            status == StatusCode::SEE_OTHER
        } else {
            status == StatusCode::UNAUTHORIZED
        };
        if !expected_anonymous {
            wrong.push(format!("{method} {route} without a token: {status}"));
        }
        for role in Role::ALL {
            let response = request(&c, &server.url, method, route, Some(tokens.of(role))).send().unwrap();
            let status = response.status();
            let may = roles.contains(&role);
            let ok = if may {
                !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) && !status.is_server_error()
            } else {
                status == StatusCode::FORBIDDEN
            };
            if !ok {
                wrong.push(format!("{method} {route} as {role}: {status} ({})", if may { "may" } else { "may not" }));
            }
        }
    }
    assert!(wrong.is_empty(), "answers against the matrix:\n{}", wrong.join("\n"));

    // A refusal says what is needed; a 401 says how to authenticate.
    let refused: Value =
        with(c.post(format!("{}/v1/dlq/1/replay", server.url)), Some(&tokens.reader)).json(&json!({})).send().unwrap().json().unwrap();
    let sentence = refused["error"]["message"].as_str().unwrap();
    assert!(sentence.contains("reader role") && sentence.contains("operator or admin"), "{sentence}");
    let anonymous = c.get(format!("{}/v1/findings", server.url)).send().unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer realm=\"causeway\"");
    let bogus = with(c.get(format!("{}/v1/findings", server.url)), Some("cw_0123456789_nope")).send().unwrap();
    assert_eq!(bogus.status(), StatusCode::UNAUTHORIZED);

    // The refusals are counted on /metrics, which passes promtool.
    let metrics = with(c.get(format!("{}/metrics", server.url)), Some(&tokens.reader)).send().unwrap().text().unwrap();
    common::promtool_check_metrics(&metrics);
    let refusals = |reason: &str| -> u64 {
        let series = format!("causeway_auth_refusals_total{{reason=\"{reason}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&series)).unwrap_or_else(|| panic!("no {series}")).parse().unwrap()
    };
    let expected_forbidden: u64 = MATRIX.iter().map(|(_, _, roles, _)| (Role::ALL.len() - roles.len()) as u64).sum::<u64>() + 1;
    assert_eq!(refusals("forbidden"), expected_forbidden, "one per role refused a route, and the reader's replay");
    assert!(refusals("unauthenticated") > 0);
    assert_eq!(refusals("csrf"), 0);
}

/// Runs `query` over `POST /v1/sql` with `token`.
fn sql(server: &Server, token: &str, query: &str) -> Value {
    with(client().post(format!("{}/v1/sql", server.url)), Some(token)).json(&json!({"query": query})).send().unwrap().json().unwrap()
}

#[test]
fn a_producer_sends_only_its_contexts_events_and_the_rest_is_refused_kept_flagged_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::make(dir.path());
    let ordering = token(dir.path(), "producer", &["ordering"]);
    let ordering_id = ordering.split('_').nth(1).unwrap().to_string();
    let server = Server::start(dir.path(), &["--auth", "required", "--model", &example_model()]);
    let c = client();
    let post = |events: Value| with(c.post(format!("{}/v1/events", server.url)), Some(&ordering)).json(&events).send().unwrap();

    // Its own context's event is stored beside the refusal of another context's.
    let mixed = post(json!([order("e-order", "o-1"), payment("e-pay", "o-1")]));
    assert_eq!(mixed.status(), StatusCode::MULTI_STATUS);
    let mixed: Value = mixed.json().unwrap();
    assert_eq!((mixed["accepted"].as_u64(), mixed["rejected"].as_u64()), (Some(1), Some(1)), "{mixed}");
    let refusal = &mixed["results"][1];
    assert_eq!(refusal["error_type"], "unauthorized_producer");
    assert!(refusal["reason"].as_str().unwrap().contains("owned by the context payments"), "{refusal}");
    assert!(refusal["dlq_id"].is_i64());

    // Only another context's events: 403, nothing accepted.
    let alone = post(json!([payment("e-pay-2", "o-2")]));
    assert_eq!(alone.status(), StatusCode::FORBIDDEN);
    let alone: Value = alone.json().unwrap();
    assert_eq!((alone["accepted"].as_u64(), alone["error"]["code"].as_str()), (Some(0), Some("unauthorized_producer")), "{alone}");

    // Nothing of theirs is stored as accepted; each is kept in the DLQ, with a finding for the
    // owning context's team, and an audit entry.
    let stored = sql(&server, &tokens.admin, "SELECT event_id FROM event_lineage ORDER BY event_id");
    assert_eq!(stored["rows"], json!([["e-order"]]), "{stored}");
    let kept = sql(&server, &tokens.admin, "SELECT error_type, json_extract(original_event, '$.id') FROM dlq_events ORDER BY id");
    assert_eq!(kept["rows"], json!([["unauthorized_producer", "e-pay"], ["unauthorized_producer", "e-pay-2"]]), "{kept}");
    let findings = sql(&server, &tokens.admin, "SELECT kind, event_id, owner FROM findings WHERE kind = 'unauthorized_producer' ORDER BY event_id");
    assert_eq!(findings["rows"], json!([["unauthorized_producer", "e-pay", "team-payments"], ["unauthorized_producer", "e-pay-2", "team-payments"]]));
    let audit: Value = with(c.get(format!("{}/v1/audit", server.url)), Some(&tokens.admin)).send().unwrap().json().unwrap();
    let ingests: Vec<&Value> = audit["entries"].as_array().unwrap().iter().filter(|e| e["type"] == "causeway.audit.events.ingest").collect();
    assert_eq!(ingests.len(), 2, "{audit}");
    assert!(ingests.iter().all(|e| e["subject"] == ordering_id.as_str() && e["data"]["actor"]["role"] == "producer"));
    assert_eq!((ingests[0]["data"]["status"].as_u64(), ingests[0]["data"]["unauthorized"].as_u64()), (Some(207), Some(1)));
    assert_eq!((ingests[1]["data"]["status"].as_u64(), ingests[1]["data"]["unauthorized"].as_u64()), (Some(403), Some(1)));

    // No token's secret is kept anywhere in the data directory.
    for t in [&tokens.reader, &tokens.producer, &tokens.operator, &tokens.admin, &ordering] {
        // `cw_<id>_<secret>`; the secret itself may hold '_'.
        let secret = t.strip_prefix("cw_").unwrap().split_once('_').unwrap().1;
        for entry in walk(dir.path()) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{} holds a token's secret", entry.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn sql_reads_no_tokens_and_dead_letter_payloads_only_with_the_operator_role() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::make(dir.path());
    let server = Server::start(dir.path(), &["--auth", "required", "--model", &example_model()]);
    let c = client();
    let report = json!({"event": order("e-failed", "o-9"), "consumer": "notification-service", "error_type": "KeyError", "error_message": "boom"});
    let made = with(c.post(format!("{}/v1/dlq", server.url)), Some(&tokens.producer)).json(&report).send().unwrap();
    assert!(made.status().is_success(), "{}", made.text().unwrap());

    let payload = "SELECT json_extract(original_event, '$.id') FROM dlq_events";
    assert_eq!(sql(&server, &tokens.reader, payload)["rows"], json!([[null]]));
    assert_eq!(sql(&server, &tokens.operator, payload)["rows"], json!([["e-failed"]]));
    // The record's page of the API: the payload is left out for a reader, and said why.
    let id = sql(&server, &tokens.admin, "SELECT id FROM dlq_events")["rows"][0][0].as_i64().unwrap();
    let as_reader: Value = with(c.get(format!("{}/v1/dlq/{id}", server.url)), Some(&tokens.reader)).send().unwrap().json().unwrap();
    assert!(as_reader["record"].get("original_event").is_none() && as_reader["record"]["payload"].is_string(), "{as_reader}");
    let as_operator: Value = with(c.get(format!("{}/v1/dlq/{id}", server.url)), Some(&tokens.operator)).send().unwrap().json().unwrap();
    assert_eq!(as_operator["record"]["original_event"]["id"], "e-failed");

    // Who discarded it is the token, whatever actor the client claims.
    let operator_id = tokens.operator.strip_prefix("cw_").unwrap().split_once('_').unwrap().0;
    let discard = with(c.post(format!("{}/v1/dlq/{id}/discard", server.url)), Some(&tokens.operator))
        .json(&json!({"reason": "test data", "actor": "ana"}))
        .send()
        .unwrap();
    assert_eq!(discard.status(), StatusCode::OK);
    let reason = sql(&server, &tokens.admin, "SELECT status_reason FROM dlq")["rows"][0][0].as_str().unwrap().to_string();
    assert_eq!(reason, format!("test data (by ana (token {operator_id}))"));

    // Tokens are not in the store: no table holds them and the files cannot be attached.
    let tables = sql(&server, &tokens.admin, "SELECT group_concat(name) FROM sqlite_master");
    let names = tables["rows"][0][0].as_str().unwrap();
    assert!(!names.contains("token") && !names.contains("audit"), "{names}");
    let attach = format!("ATTACH '{}' AS t", dir.path().join("auth/tokens.json").display());
    assert_eq!(sql(&server, &tokens.admin, &attach)["error"]["code"], "read_only");
    assert_eq!(sql(&server, &tokens.admin, "SELECT readfile('auth/tokens.json')")["error"]["code"], "invalid_query");
}

#[test]
fn a_revoked_token_is_refused_and_the_ui_signs_in_with_a_cookie_and_csrf() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::make(dir.path());
    let server = Server::start(dir.path(), &["--auth", "required", "--model", &example_model()]);
    let c = client();

    // An admin makes and revokes a token over the API; the revoked one is refused at once.
    let made: Value = with(c.post(format!("{}/v1/tokens", server.url)), Some(&tokens.admin))
        .json(&json!({"role": "reader", "name": "dashboards"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let fresh = made["token"].as_str().unwrap();
    assert_eq!(with(c.get(format!("{}/v1/slo", server.url)), Some(fresh)).send().unwrap().status(), StatusCode::OK);
    let listed: Value = with(c.get(format!("{}/v1/tokens", server.url)), Some(&tokens.admin)).send().unwrap().json().unwrap();
    assert!(!listed.to_string().contains(fresh) && !listed.to_string().contains("sha256"), "a list never shows a token or its hash");
    // Signed in in a browser with it, too.
    let stale = format!("causeway_token={fresh}");
    let revoked = with(c.delete(format!("{}/v1/tokens/{}", server.url, made["id"].as_str().unwrap())), Some(&tokens.admin)).send().unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let refused: Value = with(c.get(format!("{}/v1/slo", server.url)), Some(fresh)).send().unwrap().json().unwrap();
    assert!(refused["error"]["message"].as_str().unwrap().contains("revoked"), "{refused}");
    // A stale cookie locks no one out: pages send its browser to sign in again, and the sign-in
    // page, sign-out, the assets and health answer as for anyone.
    let page = c.get(format!("{}/on-call", server.url)).header("cookie", &stale).send().unwrap();
    assert_eq!((page.status(), page.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/sign-in?next=%2Fon-call"));
    for (method, path) in [("GET", "/sign-in"), ("POST", "/sign-out"), ("GET", "/ui/causeway.css"), ("GET", "/healthz")] {
        let r = if method == "GET" { c.get(format!("{}{path}", server.url)) } else { c.post(format!("{}{path}", server.url)) };
        let status = r.header("cookie", &stale).send().unwrap().status();
        assert!(status.is_success() || status.is_redirection(), "{method} {path} with a stale cookie: {status}");
    }
    // And so do they with a refused bearer token.
    assert_eq!(with(c.get(format!("{}/healthz", server.url)), Some(fresh)).send().unwrap().status(), StatusCode::OK);
    // A producer context the model does not have is refused when the token is made.
    let unknown = with(c.post(format!("{}/v1/tokens", server.url)), Some(&tokens.admin))
        .json(&json!({"role": "producer", "contexts": ["billing"]}))
        .send()
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);

    // Sign-in sets an HttpOnly, SameSite cookie and a CSRF cookie the page's script reads.
    let signed = form(c.post(format!("{}/sign-in", server.url)), &[("token", tokens.operator.as_str()), ("next", "/dlq")]).send().unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed.headers()["location"], "/dlq");
    let cookies: Vec<String> = signed.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let session = cookies.iter().find(|c| c.starts_with("causeway_token=")).unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"), "{session}");
    let csrf = cookies.iter().find(|c| c.starts_with("causeway_csrf=")).unwrap();
    let csrf_value = csrf.split(';').next().unwrap().trim_start_matches("causeway_csrf=").to_string();
    let cookie_header = format!("causeway_token={}; causeway_csrf={csrf_value}", tokens.operator);
    let page = c.get(format!("{}/dlq", server.url)).header("cookie", &cookie_header).send().unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    // Elsewhere, a sign-in never sends the browser off this server.
    let away = form(c.post(format!("{}/sign-in", server.url)), &[("token", tokens.reader.as_str()), ("next", "//evil.example/")]).send().unwrap();
    assert_eq!(away.headers()["location"], "/");

    // A write by cookie needs the CSRF header; with it, it is the operator's.
    let reload = |csrf: Option<&str>| {
        let mut r = c.post(format!("{}/v1/model/reload", server.url)).header("cookie", &cookie_header).json(&json!({}));
        if let Some(v) = csrf {
            r = r.header("x-csrf-token", v);
        }
        r.send().unwrap()
    };
    let without = reload(None);
    assert_eq!(without.status(), StatusCode::FORBIDDEN);
    assert_eq!(without.json::<Value>().unwrap()["error"]["code"], "csrf");
    assert_eq!(reload(Some("0".repeat(64).as_str())).status(), StatusCode::FORBIDDEN, "a made-up CSRF token");
    assert_eq!(reload(Some(&csrf_value)).status(), StatusCode::OK);
    // A bearer request needs none.
    assert_eq!(
        with(c.post(format!("{}/v1/model/reload", server.url)), Some(&tokens.operator)).json(&json!({})).send().unwrap().status(),
        StatusCode::OK
    );
}

#[test]
fn a_token_over_its_rate_waits_and_nothing_of_the_refused_request_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::make(dir.path());
    let config = dir.path().join("causeway.toml");
    std::fs::write(&config, "[auth]\nmode = \"required\"\n[auth.rates]\nproducer = \"6/m\"\n").unwrap();
    let server = Server::start(dir.path(), &["--config", config.to_str().unwrap(), "--model", &example_model()]);
    let c = client();
    let post = |events: Value| with(c.post(format!("{}/v1/events", server.url)), Some(&tokens.producer)).json(&events).send().unwrap();
    // A bucket of one unit at 6 a minute: the first event passes, the next waits ten seconds.
    assert_eq!(post(json!([order("r-1", "o-1")])).status(), StatusCode::OK);
    let refused = post(json!([order("r-2", "o-2")]));
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&wait), "{wait}");
    assert_eq!(refused.json::<Value>().unwrap()["error"]["code"], "rate_limited");
    assert_eq!(sql(&server, &tokens.admin, "SELECT event_id FROM event_lineage")["rows"], json!([["r-1"]]));
    // Another role's token has no rate set here.
    for _ in 0..5 {
        assert_eq!(with(c.get(format!("{}/v1/slo", server.url)), Some(&tokens.reader)).send().unwrap().status(), StatusCode::OK);
    }
}

#[test]
fn the_audit_log_is_exported_as_cloudevents_and_its_chain_verified() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::make(dir.path());
    let server = Server::start(dir.path(), &["--auth", "required", "--model", &example_model()]);
    // Three ingests of one producer are summed into one entry (written when its minute ends, or
    // when the log is read).
    for i in 0..3 {
        let events = json!([order(&format!("a-{i}"), &format!("o-{i}")), order(&format!("b-{i}"), &format!("o-{i}"))]);
        assert_eq!(
            with(client().post(format!("{}/v1/events", server.url)), Some(&tokens.producer)).json(&events).send().unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(sql(&server, &tokens.reader, "SELECT 1")["rows"], json!([[1]]));
    let out = causeway(&["audit", "export", "--server", &server.url, "--token", &tokens.admin]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let entries: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // The four tokens made by `causeway token create`, the query, then the ingests' tally.
    let types: Vec<&str> = entries.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let expected = ["causeway.audit.token.create"; 4].into_iter().chain(["causeway.audit.sql.query", "causeway.audit.events.ingest"]);
    assert_eq!(types, expected.collect::<Vec<_>>());
    let tally = &entries[5]["data"];
    assert_eq!((tally["requests"].as_u64(), tally["accepted"].as_u64(), tally["statuses"]["200"].as_u64()), (Some(3), Some(6), Some(3)), "{tally}");
    assert_eq!(tally["actor"]["role"], "producer");
    let query = &entries[4];
    assert_eq!((query["specversion"].as_str(), query["data"]["query"].as_str()), (Some("1.0"), Some("SELECT 1")));
    assert_eq!(query["data"]["actor"]["role"], "reader");
    // The reader may not read it.
    let denied = causeway(&["audit", "export", "--server", &server.url, "--token", &tokens.reader]);
    assert!(!denied.status.success() && String::from_utf8_lossy(&denied.stderr).contains("admin role"));
    let verified = causeway(&["audit", "verify", "--data", dir.path().to_str().unwrap()]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    // A line changed on disk breaks the chain, and verify says where.
    let path = dir.path().join("auth/audit.ndjson");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"role\":\"reader\"", "\"role\":\"admin\"", 1)).unwrap();
    let broken = causeway(&["audit", "verify", "--data", dir.path().to_str().unwrap()]);
    assert!(!broken.status.success());
    assert!(String::from_utf8_lossy(&broken.stderr).contains("line"), "{}", String::from_utf8_lossy(&broken.stderr));
}

#[test]
fn auth_is_asked_for_beyond_loopback_and_off_there_needs_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let refused = Command::new(BIN).args(["serve", "--listen", "0.0.0.0:0", "--auth", "off", "--data"]).arg(dir.path()).output().unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--insecure") && said.contains("--auth required"), "{said}");

    // Beyond loopback with no flag: tokens are asked for, and the server says none exists yet.
    let mut wide =
        Command::new(BIN).args(["serve", "--listen", "0.0.0.0:0", "--data"]).arg(dir.path()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(wide.stdout.take().unwrap()));
    let address = lines.next().unwrap().unwrap();
    let port = address.rsplit(':').next().unwrap().to_string();
    let _data = lines.next().unwrap().unwrap();
    let auth = lines.next().unwrap().unwrap();
    assert!(auth.starts_with("auth: required, and no token exists yet"), "{auth}");
    let status = client().get(format!("http://127.0.0.1:{port}/v1/findings")).send().unwrap().status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    wide.kill().unwrap();
    wide.wait().unwrap();

    // On loopback auth is off by default, and the server says so.
    let mut local =
        Command::new(BIN).args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(dir.path()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(local.stdout.take().unwrap()));
    let _ = (lines.next(), lines.next());
    assert!(lines.next().unwrap().unwrap().starts_with("auth: off (loopback only)"));
    local.kill().unwrap();
    local.wait().unwrap();
}
