//! The client verbs as a person at a terminal meets them: addresses, error messages that name the
//! command-line fix, ingest's file lines, counts in the right number, the findings table.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

mod common;

use common::{BIN, Server};

/// A `causeway serve` child process on a free port.
fn causeway(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("CAUSEWAY_SERVER").output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn example_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment/model.yaml")
}

fn order_event(id: &str, ty: &str, corr: &str, second: u32, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "order-service", "type": ty,
           "time": format!("2026-11-23T10:00:{second:02}Z"), "correlationid": corr, "data": data})
}

fn post_events(server: &Server, events: &[Value]) {
    let answer = reqwest::blocking::Client::new().post(format!("{}/v1/events", server.url)).json(&events).send().unwrap();
    assert!(answer.status().is_success(), "{}", answer.text().unwrap());
}

#[test]
fn server_is_a_url_or_host_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let host_port = server.url.strip_prefix("http://").unwrap();

    let out = causeway(&["sql", "SELECT 1 AS one", "--server", host_port]);
    assert!(out.status.success(), "host:port is read as http://host:port: {}", text(&out));
    let out = Command::new(BIN).args(["sql", "SELECT 1 AS one"]).env("CAUSEWAY_SERVER", host_port).output().unwrap();
    assert!(out.status.success(), "CAUSEWAY_SERVER takes host:port too: {}", text(&out));
    let out = causeway(&["sql", "SELECT 1 AS one", "--server", &format!("{}/", server.url)]);
    assert!(out.status.success(), "a trailing slash is fine: {}", text(&out));

    let out = causeway(&["sql", "SELECT 1", "--server", &format!("ftp://{host_port}")]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("ftp://") && said.contains("http://") && !said.contains("cannot reach"), "the wrong scheme is named: {said}");
}

/// The server words its errors for HTTP clients; on the command line the fix is a flag or a verb.
#[test]
fn errors_name_the_command_line_fix() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--model", example_model().to_str().unwrap()]);
    let s = server.url.as_str();
    let shipped = order_event("c1-3", "ShipmentCreated", "corr-c1", 3, json!({"orderId": "c1", "carrier": "ups", "customerEmail": "a@b.c"}));
    let report = json!({"event": shipped, "consumer": "notification-service", "source_topic": "shipments",
                        "error_type": "KeyError", "error_message": "'customerEmail'"});
    let answer: Value = reqwest::blocking::Client::new().post(format!("{s}/v1/dlq")).json(&report).send().unwrap().json().unwrap();
    let id = answer["id"].as_i64().unwrap().to_string();

    let out = causeway(&["dlq", "resolve", &id, "--server", s]);
    assert!(out.status.success(), "{}", text(&out));
    let out = causeway(&["dlq", "replay", &id, "--server", s]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("--force") && !said.contains("\"force\""), "a replay refused for its status points to --force: {said}");

    let out = causeway(&["dlq", "show", "999999", "--server", s]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("causeway dlq list") && !said.contains("/v1/"), "an unknown record points to `causeway dlq list`: {said}");

    let out = causeway(&["dlq", "discard", &id, "--reason", " ", "--server", s]);
    let said = text(&out);
    assert!(!out.status.success() && said.contains("--reason") && !said.contains("\"reason\""), "{said}");

    // An event refused at ingest has no consumer to replay to: correct it and ingest it again.
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, "{\"specversion\": \"1.0\"\n").unwrap();
    let out = causeway(&["ingest", file.to_str().unwrap(), "--json", "--server", s]);
    let ingested: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    let refused = ingested["rejections"][0]["dlq_id"].to_string();
    let out = causeway(&["dlq", "replay", &refused, "--server", s]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("causeway ingest") && said.contains(&format!("causeway dlq discard {refused}")) && !said.contains("/v1/"), "{said}");
}

/// A rejected line is named by its line in the file, blank lines included in the count.
#[test]
fn ingest_reports_rejections_by_file_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let file = dir.path().join("events.ndjson");
    let good = |id: &str| order_event(id, "OrderCreated", "corr-i", 1, json!({"n": 1})).to_string();
    let lines = [
        good("i-1"),
        String::new(),
        "{\"specversion\": \"1.0\", \"id\": \"broken\"".to_string(), // line 3: not JSON
        good("i-2"),
        "   ".to_string(),
        json!({"specversion": "1.0", "id": "no-source", "type": "OrderCreated"}).to_string(), // line 6: no source
        good("i-3"),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let path = file.to_str().unwrap();

    let out = causeway(&["ingest", path, "--batch", "2", "--server", &server.url]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let line3 = said.lines().find(|l| l.starts_with(&format!("{path}:3: "))).unwrap_or_else(|| panic!("line 3 named: {said}"));
    assert!(line3.contains("not valid JSON") && !line3.contains("line 1"), "{line3}");
    let line6 = said.lines().find(|l| l.starts_with(&format!("{path}:6: "))).unwrap_or_else(|| panic!("line 6 named: {said}"));
    assert!(line6.contains("no-source"), "the event's id is given: {line6}");

    let out = causeway(&["ingest", path, "--json", "--server", &server.url]);
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!((answer["accepted"].as_u64(), answer["duplicates"].as_u64(), answer["rejected"].as_u64()), (Some(0), Some(3), Some(2)), "{answer}");
    assert_eq!(answer["blank_lines"], 2, "{answer}");
    let rejections = answer["rejections"].as_array().unwrap();
    let lines: Vec<&Value> = rejections.iter().map(|r| &r["line"]).collect();
    assert_eq!(lines, [3, 6], "{answer}");
    assert_eq!(rejections[1]["id"], "no-source");
    assert!(rejections.iter().all(|r| r["reason"].as_str().is_some_and(|r| !r.is_empty()) && r["dlq_id"].is_i64()), "{answer}");
}

/// A request refused as a whole names its lines and the flag that avoids it.
#[test]
fn ingest_names_the_lines_of_a_refused_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--max-batch-events", "2"]);
    let file = dir.path().join("events.ndjson");
    let lines: Vec<String> = (1..=5).map(|n| order_event(&format!("r-{n}"), "OrderCreated", "corr-r", n, json!({})).to_string()).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let path = file.to_str().unwrap();
    let out = causeway(&["ingest", path, "--batch", "2", "--server", &server.url]);
    assert!(out.status.success(), "{}", text(&out));
    let out = causeway(&["ingest", path, "--batch", "3", "--server", &server.url]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("{path}:1-3:")) && said.contains("--batch"), "{said}");
}

/// One of a thing is singular, wherever a count is printed.
#[test]
fn counts_agree_in_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--model", example_model().to_str().unwrap()]);
    let s = server.url.as_str();
    let created =
        order_event("n1-1", "OrderCreated", "corr-n1", 1, json!({"orderId": "n1", "customerEmail": "a@b.c", "amount": 5, "currency": "EUR"}));
    let file = dir.path().join("one.ndjson");
    std::fs::write(&file, format!("{created}\n")).unwrap();
    causeway(&["ingest", file.to_str().unwrap(), "--server", s]);
    let out = causeway(&["ingest", file.to_str().unwrap(), "--server", s]);
    assert!(text(&out).contains("1 duplicate,"), "{}", text(&out));
    let out = causeway(&["chain", "corr-n1", "--server", s]);
    assert!(text(&out).starts_with("correlation corr-n1: 1 event\n"), "{}", text(&out));

    let mut paid = order_event("n1-2", "PaymentProcessed", "corr-n1", 2, json!({"orderId": "n1", "amount": 5}));
    paid["source"] = json!("payment-service");
    post_events(&server, &[paid.clone()]);
    let out = causeway(&["state", "Order", "n1", "--at", "n1-1", "--server", s]);
    let said = text(&out);
    assert!(out.status.success() && said.contains(", 1 later event)") && !said.contains("(s)"), "{said}");

    let client = reqwest::blocking::Client::new();
    let mut ids = Vec::new();
    for event in [created, paid] {
        let report = json!({"event": event, "consumer": "ledger", "error_type": "Timeout", "error_message": "slow"});
        let answer: Value = client.post(format!("{s}/v1/dlq")).json(&report).send().unwrap().json().unwrap();
        ids.push(answer["id"].to_string());
    }
    let out = causeway(&["dlq", "show", &ids[1], "--server", s]);
    let said = text(&out);
    assert!(said.contains(", 1 attempt\n") && said.contains("causation chain (2 events)") && !said.contains("(s)"), "{said}");
    let out = causeway(&["dlq", "list", "--limit", "1", "--server", s]);
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("1 record;"), "a page of one, with more to come: {}", text(&out));
}

/// A finding outside any journey (a schema error) is actionable from the table: its event and
/// correlation ids are there, whole.
#[test]
fn findings_table_names_event_and_correlation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--model", example_model().to_str().unwrap()]);
    let (event_id, correlation) = ("evt-0f6e1c1e-4a4b-4f0e-9d55-3b2a9c1d7e21", "corr-7d3c2b1a-9e8f-4a5b-8c7d-6e5f4a3b2c1d");
    // `amount` must be a number: the event is stored with a schema_error finding.
    let bad = order_event(
        event_id,
        "OrderCreated",
        correlation,
        1,
        json!({"orderId": "s1", "customerEmail": "a@b.c", "amount": "five", "currency": "EUR"}),
    );
    post_events(&server, &[bad]);
    let out = causeway(&["findings", "--kind", "schema_error", "--server", &server.url]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let row = said.lines().find(|l| l.contains("schema_error")).unwrap_or_else(|| panic!("{said}"));
    assert!(row.contains(event_id) && row.contains(correlation), "{row}");
    let header = said.lines().find(|l| l.contains("kind")).unwrap();
    assert!(header.contains("event") && header.contains("correlation"), "{header}");
}

/// A causation chain deeper than JSON parsers nest by default (the server continues it as a new
/// root only after 200 generations) is still shown.
#[test]
fn chain_shows_a_deep_causation_chain() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let events: Vec<Value> = (0..250)
        .map(|n| {
            let mut e = order_event(&format!("deep-{n}"), "OrderCreated", "corr-deep", 1, json!({}));
            if n > 0 {
                e["causationid"] = json!(format!("deep-{}", n - 1));
            }
            e
        })
        .collect();
    post_events(&server, &events);
    let out = causeway(&["chain", "corr-deep", "--server", &server.url]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    for n in [0, 199, 249] {
        assert!(said.contains(&format!("  deep-{n}")), "deep-{n} missing: {said}");
    }
}
