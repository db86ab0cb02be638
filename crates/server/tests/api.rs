//! The HTTP API through the router (no socket), on a real store in a temp dir.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use causeway_envelope::Limits;
use common::{Api, first_four, step, with_journeys};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn ce(id: &str, corr: &str, cause: Option<&str>, second: u32) -> Value {
    let mut e = json!({"specversion": "1.0", "id": id, "source": "order-service", "type": "OrderCreated",
                       "time": format!("2026-11-23T10:00:{second:02}Z"), "correlationid": corr,
                       "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                       "data": {"orderId": "ord-1"}});
    if let Some(c) = cause {
        e["causationid"] = json!(c);
    }
    e
}

#[tokio::test]
async fn accepted_events_are_readable_in_canonical_form() {
    let api = Api::new();
    let (status, body) = api.post("application/cloudevents+json", ce("e1", "c1", None, 1).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"accepted": 1, "duplicates": 0, "rejected": 0, "results": [{"id": "e1", "status": "accepted"}]}));
    let (status, event) = api.get("/v1/events/e1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(event["time"], "2026-11-23T10:00:01.000000Z");
    assert_eq!(event["correlationid"], "c1");
    let (status, body) = api.get("/v1/events/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].as_str().unwrap().contains("nope"));
}

#[tokio::test]
async fn redelivery_is_answered_duplicate_and_stored_once() {
    let api = Api::new();
    let batch = json!([ce("e1", "c1", None, 1), ce("e1", "c1", None, 1)]).to_string();
    let (_, body) = api.post("application/cloudevents-batch+json", batch).await;
    assert_eq!((body["accepted"].as_u64(), body["duplicates"].as_u64()), (Some(1), Some(1)));
    let (_, body) = api.post("application/cloudevents+json", ce("e1", "c1", None, 1).to_string()).await;
    assert_eq!(body["results"][0]["status"], "duplicate");
    let count = api.sql("SELECT count(*) FROM event_lineage WHERE event_id = 'e1'").await;
    assert_eq!(count["rows"], json!([[1]]));
}

#[tokio::test]
async fn orphan_appears_in_its_correlation_and_attaches_when_the_parent_arrives() {
    let api = Api::new();
    api.post("application/cloudevents+json", ce("child", "c1", Some("parent"), 2).to_string()).await;
    let (status, body) = api.get("/v1/correlations/c1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["tree"][0]["event_id"], "child");
    assert_eq!(body["tree"][0]["orphan"], true);
    let (_, root) = api.get("/v1/events/child/root").await;
    assert_eq!((root["hops"].as_u64(), &root["complete"]), (Some(0), &json!(false)));

    api.post("application/cloudevents+json", ce("parent", "c1", None, 1).to_string()).await;
    let (_, body) = api.get("/v1/correlations/c1").await;
    assert_eq!(body["tree"].as_array().unwrap().len(), 1);
    assert_eq!(body["tree"][0]["event_id"], "parent");
    assert_eq!(body["tree"][0]["children"][0]["event_id"], "child");
    assert!(body["tree"][0]["children"][0].get("orphan").is_none());
    let (_, root) = api.get("/v1/events/child/root").await;
    assert_eq!((root["root"]["id"].as_str(), root["hops"].as_u64(), &root["complete"]), (Some("parent"), Some(1), &json!(true)));
    let (_, d) = api.get("/v1/events/parent/descendants").await;
    assert_eq!(d["count"], 1);
}

/// The lineage answers are spliced from the stored JSON: each is one valid JSON object whose ids
/// come back escaped as sent, and whose events are the stored envelopes.
#[tokio::test]
async fn lineage_answers_are_json_with_ids_as_sent() {
    let api = Api::new();
    let (parent, child) = ("p\"1\\é", "c\"2");
    api.post("application/cloudevents-batch+json", json!([ce(parent, "q\"1", None, 1), ce(child, "q\"1", Some(parent), 2)]).to_string()).await;
    let (status, chain) = api.get("/v1/correlations/q%221").await;
    assert_eq!(status, StatusCode::OK, "{chain}");
    assert_eq!(chain.as_object().unwrap().keys().collect::<Vec<_>>(), ["correlation_id", "events", "tree", "truncated"]);
    assert_eq!((chain["correlation_id"].as_str(), &chain["truncated"]), (Some("q\"1"), &json!(false)));
    assert_eq!(chain["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect::<Vec<_>>(), [parent, child]);
    assert_eq!(chain["tree"][0]["children"][0]["event_id"], child);
    let (_, root) = api.get("/v1/events/c%222/root").await;
    assert_eq!(
        (root["event_id"].as_str(), root["root"]["id"].as_str(), &root["hops"], &root["complete"]),
        (Some(child), Some(parent), &json!(1), &json!(true))
    );
    let (_, down) = api.get("/v1/events/p%221%5C%C3%A9/descendants?limit=1").await;
    assert_eq!((down["event_id"].as_str(), &down["count"], &down["truncated"]), (Some(parent), &json!(1), &json!(false)));
    assert_eq!(down["events"][0]["id"], child);
}

/// Each client mistake: its status, its code, a sentence naming the problem, and the input kept.
#[tokio::test]
async fn every_bad_input_gets_a_4xx_with_a_reason_and_is_kept() {
    let api = Api::with_limits(Limits { max_request_bytes: 4096, max_event_bytes: 1024, max_json_depth: 8, max_batch_events: 3 });
    let mut missing = ce("m1", "c1", None, 1);
    missing.as_object_mut().unwrap().remove("type");
    let mut bad_tp = ce("t1", "c1", None, 1);
    bad_tp["traceparent"] = json!("00-abc-def-01");
    let mut bad_time = ce("b1", "c1", None, 1);
    bad_time["time"] = json!("23/11/2026 10:00");
    let mut no_corr = ce("n1", "c1", None, 1);
    no_corr.as_object_mut().unwrap().remove("correlationid");
    let deep = format!("{{\"specversion\":\"1.0\",\"data\":{}1{}}}", "[".repeat(10), "]".repeat(10));
    let cases: Vec<(&str, String, StatusCode, &str, &str)> = vec![
        ("application/json", "{\"specversion\": \"1.0\", ".into(), StatusCode::BAD_REQUEST, "malformed_json", "not valid JSON"),
        ("application/json", "x".repeat(5000), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "4096-byte limit"),
        ("application/json", deep, StatusCode::BAD_REQUEST, "too_deeply_nested", "deeper than 8 levels"),
        ("application/cloudevents+json", missing.to_string(), StatusCode::BAD_REQUEST, "missing_attribute", "'type'"),
        ("application/cloudevents+json", bad_tp.to_string(), StatusCode::BAD_REQUEST, "invalid_traceparent", "W3C"),
        ("application/cloudevents+json", bad_time.to_string(), StatusCode::BAD_REQUEST, "invalid_time", "RFC 3339"),
        ("application/cloudevents+json", no_corr.to_string(), StatusCode::BAD_REQUEST, "missing_correlation", "correlation id"),
        (
            "application/json",
            json!([ce("a", "c", None, 1), ce("b", "c", None, 1), ce("c", "c", None, 1), ce("d", "c", None, 1)]).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            "3-event limit",
        ),
        ("text/csv", "a,b".into(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "text/csv"),
        ("application/json", "   ".into(), StatusCode::BAD_REQUEST, "empty_body", "empty"),
    ];
    for (i, (content_type, body, status, code, needle)) in cases.iter().enumerate() {
        let (got, answer) = api.post(content_type, body.clone()).await;
        assert_eq!(got, *status, "{code}: {answer}");
        assert_eq!(answer["error"]["code"], *code, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{code}: {message}");
        let dlq = api.dlq().await;
        assert_eq!(dlq.len(), i + 1, "{code}: every refused input is kept");
        assert_eq!(dlq[i][0], *code);
        let kept = dlq[i][2].as_str().unwrap();
        if *code == "payload_too_large" {
            assert_eq!(kept.len(), 4096, "the first max_request_bytes are kept");
        } else {
            assert_eq!(kept, body, "{code}: raw input kept as sent");
        }
    }
    // Identity read from the refused input makes it findable.
    let dlq = api.dlq().await;
    assert_eq!(dlq[4][3], "c1", "correlation id of the bad-traceparent event");
}

#[tokio::test]
async fn a_mixed_batch_stores_the_good_and_reports_the_bad() {
    let api = Api::new();
    let ndjson = format!("{}\n{{oops\n{}\n", ce("g1", "c", None, 1), ce("g2", "c", Some("g1"), 2));
    let (status, body) = api.post("application/x-ndjson", ndjson).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert_eq!((body["accepted"].as_u64(), body["rejected"].as_u64()), (Some(2), Some(1)));
    assert_eq!(body["results"][1]["status"], "rejected");
    assert_eq!(body["results"][1]["error_type"], "malformed_json");
    assert!(body["results"][1]["dlq_id"].as_i64().unwrap() > 0);
    assert_eq!(api.dlq().await[0][2], "{oops");
    let (_, chain) = api.get("/v1/correlations/c").await;
    assert_eq!(chain["tree"][0]["children"][0]["event_id"], "g2");
}

#[tokio::test]
async fn metadata_payload_and_binary_mode_are_stored_canonically() {
    let api = Api::new();
    let mp = json!({"metadata": {"eventId": "m1", "eventType": "PaymentProcessed", "correlationId": "c9",
                                 "causationId": "e1", "timestamp": "2026-11-23T10:00:00Z", "source": "payment-service"},
                    "payload": {"orderId": "ord-1"}, "entityId": "pay-1"});
    let (status, _) = api.post("application/json", mp.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let (_, e) = api.get("/v1/events/m1").await;
    assert_eq!((e["type"].as_str(), e["subject"].as_str(), e["causationid"].as_str()), (Some("PaymentProcessed"), Some("pay-1"), Some("e1")));
    let request = Request::post("/v1/events")
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "b1")
        .header("ce-source", "payment-service")
        .header("ce-type", "PaymentProcessed")
        .header("ce-time", "2026-11-23T10:00:00Z")
        .header("ce-correlationid", "c9")
        .body(Body::from("{\"orderId\":\"ord-1\"}"))
        .unwrap();
    let (status, body) = api.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, e) = api.get("/v1/events/b1").await;
    assert_eq!(e["data"]["orderId"], "ord-1");
}

#[tokio::test]
async fn sql_endpoint_refuses_writes_and_times_out() {
    let api = Api::new();
    let mut sentences = std::collections::BTreeSet::new();
    for query in
        ["DELETE FROM events", "DELETE FROM dlq_events", "UPDATE findings SET kind = 'x'", "ATTACH DATABASE 'x' AS y", "PRAGMA writable_schema = 1"]
    {
        let (status, body) = api
            .send(Request::post("/v1/sql").header("content-type", "application/json").body(json!({"query": query}).to_string().into()).unwrap())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["error"]["code"], "read_only", "{query}: {body}");
        sentences.insert(body["error"]["message"].as_str().unwrap().to_string());
    }
    // A write to a view is refused in the same words as a write to a table.
    assert_eq!(sentences.len(), 1, "{sentences:?}");
    // A plain-text body is the query itself.
    let (status, body) = api.send(Request::post("/v1/sql").body("SELECT 1 + 1 AS two".into()).unwrap()).await;
    assert_eq!((status, &body["rows"]), (StatusCode::OK, &json!([[2]])));
    let (status, body) = api.send(Request::post("/v1/sql").header("content-type", "application/json").body("{\"q\": 1}".into()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("{\"query\""), "{body}");
}

#[tokio::test]
async fn unknown_routes_and_health() {
    let api = Api::new();
    let (status, body) = api.get("/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].as_str().unwrap().contains("/v2/nothing"));
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
    let (status, body) = api.get("/readyz").await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("ready")));
    let (_, limit) = api.get("/v1/correlations/x?limit=0").await;
    assert!(limit["error"]["message"].as_str().unwrap().contains("limit"));
}

#[tokio::test]
async fn metrics_count_outcomes() {
    let api = Api::new();
    api.post("application/json", json!([ce("a", "c", None, 1), ce("a", "c", None, 1)]).to_string()).await;
    api.post("application/json", "{".to_string()).await;
    let response = api.router.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    // Without a journey engine its kinds are zero; the exposition parses as a scraper would.
    let open = common::metric(&common::parse_exposition(&text), "causeway_findings_open");
    assert_eq!(open.len(), 11, "{open:?}");
    assert!(open.values().all(|n| *n == 0.0), "{open:?}");
    for line in [
        "causeway_events_ingested_total{context=\"unknown\",event_type=\"other\",outcome=\"accepted\"} 1",
        "causeway_events_ingested_total{context=\"unknown\",event_type=\"other\",outcome=\"duplicate\"} 1",
        "causeway_ingest_duration_seconds_count 2",
        "causeway_ingest_bodies_rejected_total 1",
        "causeway_store_events 1",
        "causeway_store_dlq_records 1",
        "causeway_dlq_records{status=\"pending\"} 1",
        "causeway_dlq_records{status=\"replayed\"} 0",
        "causeway_dlq_pending{error_type=\"malformed_json\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}

/// Order a1 fulfilled, a2 stopped after its shipment with its payment delivered twice (a duplicate
/// finding), a3 only created.
fn three_orders() -> Vec<Value> {
    let mut events = first_four("a1");
    events.push(step("a1", 5, "CustomerNotified", "notification-service", Some("4"), 8));
    events.extend(first_four("a2"));
    events.push(step("a3", 1, "OrderCreated", "order-service", None, 0));
    events.push(step("a2", 2, "PaymentProcessed", "payment-service", Some("1"), 2));
    events
}

/// `/metrics` counts open findings by kind: one series per kind of PRODUCT §5 (a fixed label set,
/// no ids), the engine's from its counters and those raised at ingest from the store; the whole
/// exposition parses as a scraper would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_open_findings_by_kind() {
    let api = with_journeys();
    let mut events = three_orders();
    // A schema error (stored, flagged) and an event without a correlation id (refused).
    let mut bad_schema = step("a4", 1, "OrderCreated", "order-service", None, 0);
    bad_schema["data"] = json!({"orderId": "a4"});
    events.push(bad_schema);
    let mut no_correlation = step("a5", 1, "OrderCreated", "order-service", None, 0);
    no_correlation.as_object_mut().unwrap().remove("correlationid");
    events.push(no_correlation);
    let (status, body) = api.post("application/json", json!(events).to_string()).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");

    // The summary catches the engine up; its open counts are what the metric must say.
    let (_, summary) = api.get("/v1/journeys/summary").await;
    let kinds = [
        "missing_reaction",
        "invariant_violation",
        "stalled",
        "deadline_missed",
        "duplicate",
        "duplicate_effect",
        "out_of_order",
        "schema_error",
        "unknown_event_type",
        "missing_correlation",
        "unauthorized_producer",
    ];
    // The engine's counters are read without waiting for it: ask again while it is mid-tick.
    let open = loop {
        let (_, text) = api.get("/metrics").await;
        let samples = common::parse_exposition(text.as_str().unwrap());
        let open = common::metric(&samples, "causeway_findings_open");
        if open.len() == kinds.len() {
            break open;
        }
        assert_eq!(open.len(), 4, "only the engine's kinds may be missing, while it is busy: {open:?}");
        tokio::task::yield_now().await;
    };
    for kind in kinds {
        let series = vec![("kind".to_string(), kind.to_string())];
        let expected = match summary["findings_by_kind"][kind]["open"].as_u64() {
            Some(n) => n,
            None => {
                api.sql(&format!("SELECT count(*) FROM findings WHERE kind = '{kind}' AND resolved_at IS NULL")).await["rows"][0][0].as_u64().unwrap()
            }
        };
        assert_eq!(open.get(&series).copied(), Some(expected as f64), "{kind}: {open:?}");
    }
    for (kind, n) in [("stalled", 3.0), ("duplicate", 1.0), ("missing_correlation", 1.0), ("unknown_event_type", 0.0)] {
        assert_eq!(open[&vec![("kind".to_string(), kind.to_string())]], n, "{kind}: {open:?}");
    }
}

/// The exposition check itself refuses what a scraper refuses.
#[test]
fn the_exposition_parser_refuses_invalid_text() {
    let good = "# HELP m_total Things.\n# TYPE m_total counter\nm_total{kind=\"a\\\"b\"} 1\nm_total{kind=\"c\"} 2\n";
    assert_eq!(common::parse_exposition(good).len(), 2);
    for bad in [
        "m 1\n",                                                    // no TYPE
        "# TYPE m gauge\nm{kind=a} 1\n",                            // unquoted label value
        "# TYPE m gauge\nm{kind=\"a\"} 1\nm{kind=\"a\"} 2\n",       // a series twice
        "# TYPE m gauge\n# TYPE n gauge\nm 1\nn 1\nm{a=\"b\"} 1\n", // a family split
        "# TYPE m gauge\nm{kind=\"a\\x\"} 1\n",                     // a bad escape
        "# TYPE m gauge\nm one\n",                                  // not a number
        "# TYPE m gauge\nm{0kind=\"a\"} 1\n",                       // a bad label name
    ] {
        assert!(std::panic::catch_unwind(|| common::parse_exposition(bad)).is_err(), "accepted: {bad}");
    }
}

/// Regression: a binary-mode event with malformed JSON data kept only its body in the DLQ, losing
/// the ce-* attributes that identify it.
#[tokio::test]
async fn binary_mode_with_malformed_data_keeps_its_attributes_in_the_dlq() {
    let api = Api::new();
    let request = Request::post("/v1/events")
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "bin-1")
        .header("ce-source", "payment-service")
        .header("ce-type", "PaymentProcessed")
        .header("ce-time", "2026-11-23T10:00:00Z")
        .header("ce-correlationid", "corr-bin")
        .body(Body::from("{bad"))
        .unwrap();
    let (status, body) = api.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "malformed_json");
    let rows = api.sql("SELECT correlation_id, original_event FROM dlq_events").await["rows"].clone();
    assert_eq!(rows[0][0], "corr-bin");
    let kept: Value = serde_json::from_str(rows[0][1].as_str().unwrap()).unwrap();
    assert_eq!((kept["headers"]["ce-id"].as_str(), kept["body"].as_str()), (Some("bin-1"), Some("{bad")));
}

/// Regression: a wrong method was a bare 405 and a non-numeric limit a text/plain 400.
#[tokio::test]
async fn wrong_method_and_bad_parameters_are_json_errors() {
    let api = Api::new();
    let (status, body) = api.get("/v1/events").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    for path in ["/v1/dlq?limit=ten", "/v1/correlations/c?limit=-1", "/v1/events/e/descendants?limit=x"] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{path}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("limit"), "{body}");
    }
}

/// Regression: an event naming itself as its cause reported one hop to itself.
#[tokio::test]
async fn self_caused_event_is_its_own_incomplete_root() {
    let api = Api::new();
    api.post("application/cloudevents+json", ce("selfie", "c", Some("selfie"), 1).to_string()).await;
    let (_, root) = api.get("/v1/events/selfie/root").await;
    assert_eq!((root["root"]["id"].as_str(), root["hops"].as_u64(), &root["complete"]), (Some("selfie"), Some(0), &json!(false)));
}

fn order_event(id: &str, event_type: &str, source: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": source, "type": event_type,
           "time": "2026-11-23T10:00:00Z", "correlationid": "corr-contract", "data": data})
}

/// Each contract outcome through POST /v1/events: valid, schema error naming the field, unknown
/// type, unauthorized producer. Failed contracts store and flag the event; they never refuse it.
#[tokio::test]
async fn contract_outcomes_at_ingest() {
    let (api, _) = Api::with_example_model();
    let valid =
        order_event("v1", "OrderCreated", "order-service", json!({"orderId": "o1", "customerEmail": "a@b.c", "amount": 10, "currency": "EUR"}));
    let bad_schema = order_event("s1", "ShipmentCreated", "fulfilment-service", json!({"orderId": "o1", "carrier": 7}));
    let unknown = order_event("u1", "OrderTeleported", "order-service", json!({"orderId": "o1"}));
    let rogue = order_event("r1", "PaymentProcessed", "order-service", json!({"orderId": "o1", "amount": 10}));
    let (status, body) = api.post("application/json", json!([valid, bad_schema, unknown, rogue]).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 4, "contract failures are stored: {body}");
    let results = body["results"].as_array().unwrap();
    assert!(results[0].get("findings").is_none(), "{body}");
    let schema = &results[1]["findings"][0];
    assert_eq!(schema["kind"], "schema_error");
    let detail = schema["detail"].as_str().unwrap();
    assert!(detail.contains("field /carrier breaks rule 'type'"), "{detail}");
    assert!(detail.contains("\"customerEmail\" is a required property"), "{detail}");
    assert_eq!(results[2]["findings"][0]["kind"], "unknown_event_type");
    assert_eq!(results[3]["findings"][0]["kind"], "unauthorized_producer");
    let rows = api.sql("SELECT kind, event_id, correlation_id, owner FROM findings ORDER BY id").await["rows"].clone();
    assert_eq!(
        rows,
        json!([
            ["schema_error", "s1", "corr-contract", "team-logistics"],
            ["unknown_event_type", "u1", "corr-contract", "team-checkout"],
            ["unauthorized_producer", "r1", "corr-contract", "team-payments"],
        ])
    );
    // A redelivery does not raise its findings again.
    api.post("application/json", json!([order_event("s1", "ShipmentCreated", "fulfilment-service", json!({}))]).to_string()).await;
    assert_eq!(api.sql("SELECT count(*) FROM findings").await["rows"], json!([[3]]));
}

#[tokio::test]
async fn missing_correlation_is_rejected_with_a_finding() {
    let (api, _) = Api::with_example_model();
    let mut e = order_event("m1", "OrderCreated", "order-service", json!({"orderId": "o1"}));
    e.as_object_mut().unwrap().remove("correlationid");
    let (status, _) = api.post("application/cloudevents+json", e.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let rows = api.sql("SELECT kind, event_id, owner FROM findings").await["rows"].clone();
    assert_eq!(rows, json!([["missing_correlation", "m1", "team-checkout"]]));
}

/// A broken model sent to reload is refused with its diagnostics; ingest goes on under the old.
#[tokio::test]
async fn reload_refuses_a_broken_model_and_keeps_the_running_one() {
    let (api, model_path) = Api::with_example_model();
    let good = std::fs::read_to_string(&model_path).unwrap();
    std::fs::write(&model_path, good.replace("when: PaymentProcessed", "when: PaymentProcesed")).unwrap();
    let (status, body) = api.send(Request::post("/v1/model/reload").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_model");
    let diagnostic = body["diagnostics"][0].as_str().unwrap();
    assert!(diagnostic.contains("model.yaml:") && diagnostic.contains("unknown event 'PaymentProcesed'"), "{diagnostic}");
    // Ingest continues under the old model: its contracts still apply.
    let (status, body) = api.post("application/json", json!([order_event("t1", "OrderTeleported", "order-service", json!({}))]).to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"][0]["findings"][0]["kind"], "unknown_event_type");
    // A fixed model that knows the type is taken.
    let extended = good.replace("events:\n", "events:\n  OrderTeleported: {context: ordering, aggregate: Order}\n");
    let extended = extended.replace("milestones: [OrderCreated,", "milestones: [OrderTeleported, OrderCreated,");
    std::fs::write(&model_path, extended).unwrap();
    let (status, body) = api.send(Request::post("/v1/model/reload").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["events"].get("OrderTeleported").is_some());
    let (_, body) = api.post("application/json", json!([order_event("t2", "OrderTeleported", "order-service", json!({}))]).to_string()).await;
    assert!(body["results"][0].get("findings").is_none(), "{body}");
    let (status, model) = api.get("/v1/model").await;
    assert_eq!((status, model["name"].as_str()), (StatusCode::OK, Some("order-fulfillment")));
    // The canvas follows the reloaded model.
    let response = api.router.clone().oneshot(Request::get("/v1/model/canvas.svg").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let svg = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{}", &svg[..80]);
    assert!(svg.contains("data-name=\"OrderTeleported\""));
}

#[tokio::test]
async fn without_a_model_the_model_endpoints_say_how_to_load_one() {
    let api = Api::new();
    let (status, body) = api.get("/v1/model").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].as_str().unwrap().contains("--model"));
}

// --- The journey engine ------------------------------------------------------------------------

/// An API on the example model with the journey engine on the wall clock.
/// The order confirmation never arrived: after the policy window the journey shows a
/// missing_reaction naming CustomerNotified; the late confirmation resolves it and completes the
/// journey, and the finding's history stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_confirmation_never_arrived_end_to_end() {
    let api = with_journeys();
    let (status, body) = api.post("application/json", json!(first_four("ord-789")).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, j) = api.get("/v1/journeys/order/ord-789").await;
    assert_eq!(status, StatusCode::OK, "{j}");
    assert_eq!(j["journey"], "order");
    assert_eq!(j["key"], "ord-789");
    let reached: Vec<&str> = j["milestones"].as_array().unwrap().iter().map(|m| m["event"].as_str().unwrap()).collect();
    assert_eq!(reached, ["OrderCreated", "PaymentProcessed", "InventoryReserved", "ShipmentCreated"]);
    assert_eq!(j["milestones"][3]["event_id"], "ord-789-4");
    assert_eq!(j["next_expected"][0], "CustomerNotified", "{j}");
    assert_eq!(j["correlation_ids"], json!(["corr-ord-789"]));
    assert_eq!(j["started_at"], "2026-11-23T10:00:00.000000Z");
    // The events arrive long after their time, all at once: on the wall clock each earlier
    // window had passed before the next event came, so those findings were raised and resolved
    // at once (history kept); the last one stays open.
    let missing: Vec<&Value> = j["findings"].as_array().unwrap().iter().filter(|f| f["kind"] == "missing_reaction" && f["open"] == true).collect();
    assert_eq!(missing.len(), 1, "{j}");
    assert_eq!(missing[0]["expected"], json!(["CustomerNotified"]));
    assert_eq!(missing[0]["event_id"], "ord-789-4", "about the shipment that expected it");
    assert_eq!(missing[0]["detected_at"], "2026-11-23T10:00:36.000000Z", "the deadline, not the wall clock");
    assert_eq!(missing[0]["open"], true);
    assert_eq!(missing[0]["owner"], "team-checkout");
    assert!(missing[0]["detail"].as_str().unwrap().contains("CustomerNotified"), "{}", missing[0]);
    // Past stall_after (2m) and complete_within (5m) as well.
    assert_eq!(j["state"], "stalled", "{j}");
    let kinds: Vec<&str> = j["findings"].as_array().unwrap().iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"stalled") && kinds.contains(&"deadline_missed"), "{kinds:?}");

    // The same finding through GET /v1/findings and the findings SQL view.
    let (status, f) = api.get("/v1/findings?kind=missing_reaction&open=true").await;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert_eq!(f["findings"].as_array().unwrap().len(), 1, "{f}");
    assert_eq!(f["findings"][0]["id"], missing[0]["id"]);
    let rows = api
        .sql("SELECT kind, journey, journey_key, expected, resolved_at FROM findings WHERE kind = 'missing_reaction' AND resolved_at IS NULL")
        .await;
    assert_eq!(rows["rows"], json!([["missing_reaction", "order", "ord-789", "CustomerNotified", null]]));
    // Membership in event_lineage.
    let rows = api.sql("SELECT event_id, journey, journey_key FROM event_lineage WHERE correlation_id = 'corr-ord-789' ORDER BY timestamp").await;
    assert_eq!(rows["rows"][0], json!(["ord-789-1", "order", "ord-789"]));
    assert_eq!(rows["rows"][3], json!(["ord-789-4", "order", "ord-789"]));

    // The confirmation arrives (stamped late): the journey completes, the finding is resolved.
    let late = step("ord-789", 5, "CustomerNotified", "notification-service", Some("4"), 400);
    api.post("application/json", json!([late]).to_string()).await;
    let (_, j) = api.get("/v1/journeys/order/ord-789").await;
    assert_eq!(j["state"], "fulfilled", "{j}");
    let resolved = j["findings"].as_array().unwrap().iter().find(|f| f["id"] == missing[0]["id"]).unwrap();
    assert_eq!(resolved["resolved_at"], "2026-11-23T10:06:40.000000Z", "{resolved}");
    assert_eq!(resolved["open"], false);
    let (_, f) = api.get("/v1/findings?kind=missing_reaction&open=true").await;
    assert_eq!(f["findings"], json!([]), "no longer open");
    let (_, f) = api.get("/v1/findings?kind=missing_reaction").await;
    assert_eq!(f["findings"].as_array().unwrap().len(), 3, "history kept: {f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_are_listed_by_state_and_summarised() {
    let api = with_journeys();
    let events = three_orders();
    let (status, body) = api.post("application/json", json!(events).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicates"], 1);

    let (status, list) = api.get("/v1/journeys?journey=order&state=stalled").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let keys: Vec<&str> = list["journeys"].as_array().unwrap().iter().map(|j| j["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["a2", "a3"]);
    assert_eq!(list["total"], 2);
    let (_, list) = api.get("/v1/journeys?state=fulfilled").await;
    assert_eq!(list["journeys"][0]["key"], "a1");
    let (_, list) = api.get("/v1/journeys?limit=1").await;
    assert_eq!((list["total"].as_u64(), list["journeys"].as_array().unwrap().len()), (Some(3), 1));

    let (status, s) = api.get("/v1/journeys/summary?digest=true").await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["journeys_by_state"], json!({"fulfilled": 1, "stalled": 2}));
    assert_eq!(s["findings_by_kind"]["duplicate"], json!({"open": 1, "resolved": 0}), "{s}");
    assert_eq!(s["redeliveries"], 1);
    assert_eq!(s["digest"].as_str().unwrap().len(), 16);
    let (_, f) = api.get("/v1/findings?kind=duplicate").await;
    assert_eq!(f["findings"][0]["event_id"], "a2-2", "{f}");
    let (_, metrics) = api.get("/metrics").await;
    let metrics = metrics.as_str().unwrap();
    for line in [
        "causeway_journeys{journey=\"order\",state=\"stalled\"} 2",
        "causeway_journeys{journey=\"order\",state=\"completed\"} 1",
        "causeway_journey_engine_lag 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing from\n{metrics}");
    }

    // Mistakes are 4xx with a sentence.
    for (path, status, needle) in [
        ("/v1/journeys/shipment/a1", StatusCode::NOT_FOUND, "no journey named 'shipment'"),
        ("/v1/journeys/order/nope", StatusCode::NOT_FOUND, "no 'order' journey has the key 'nope'"),
        ("/v1/journeys?journey=shipment", StatusCode::NOT_FOUND, "its journeys: order"),
        ("/v1/journeys?colour=red", StatusCode::BAD_REQUEST, "unknown parameter 'colour'"),
        ("/v1/findings?kind=broken", StatusCode::BAD_REQUEST, "unknown finding kind 'broken'"),
        ("/v1/findings?since=yesterday", StatusCode::BAD_REQUEST, "RFC 3339"),
        ("/v1/findings?open=maybe", StatusCode::BAD_REQUEST, "true or false"),
        ("/v1/findings?limit=0", StatusCode::BAD_REQUEST, "limit must be"),
    ] {
        let (got, body) = api.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{path}: {message}");
    }
}

#[tokio::test]
async fn without_the_engine_the_journey_endpoints_say_how_to_start_it() {
    let api = Api::new();
    let (status, body) = api.get("/v1/journeys/order/x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].as_str().unwrap().contains("--model"), "{body}");
    // Findings are stored ones: listing them needs no engine.
    let (status, body) = api.get("/v1/findings").await;
    assert_eq!((status, &body["findings"]), (StatusCode::OK, &json!([])));
}

/// `GET /v1/store`: every documented field, counts that add up, and a sealed segment once enough
/// of the log is unsealed (segments of 1,000 events here).
#[tokio::test]
async fn store_stats_count_hot_and_sealed_events() {
    let api = Api::with_store_settings(&causeway_store::StoreSettings { segment_events: 1000, ..Default::default() });
    let (status, empty) = api.get("/v1/store").await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(
        (&empty["events"], &empty["segments"], &empty["disk_ratio"], &empty["oldest_time"]),
        (&json!(0), &json!([]), &Value::Null, &Value::Null)
    );
    let (status, body) = api.get("/v1/store?verbose=1").await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("invalid_parameter")), "{body}");
    assert_eq!(body["error"]["message"], json!("unknown parameter 'verbose'; this endpoint takes none"));

    let body: String = (0..2000).map(|i| format!("{}\n", ce(&format!("s-{i}"), &format!("c-{}", i / 4), None, (i % 60) as u32))).collect();
    let (status, answer) = api.post("application/x-ndjson", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let stats = loop {
        let (status, stats) = api.get("/v1/store").await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        if !stats["segments"].as_array().unwrap().is_empty() {
            break stats;
        }
        assert!(std::time::Instant::now() < deadline, "nothing sealed in time: {stats}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };

    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let mut expected = [
        "events",
        "log_end",
        "hot_events",
        "sealed_events",
        "sealed_upto",
        "segments",
        "raw_bytes",
        "database_bytes",
        "segment_bytes",
        "disk_bytes",
        "disk_ratio",
        "oldest_time",
        "oldest_received_at",
        "segment_events",
        "retention_seconds",
        "max_disk_bytes",
        "next_removal",
    ];
    expected.sort();
    assert_eq!(keys(&stats), expected, "{stats}");
    // No retention configured: nothing to tell of it.
    assert_eq!((&stats["retention_seconds"], &stats["max_disk_bytes"], &stats["next_removal"]), (&Value::Null, &Value::Null, &Value::Null));
    let segment = &stats["segments"][0];
    let mut segment_keys = [
        "file",
        "first_seq",
        "last_seq",
        "events",
        "min_time",
        "max_time",
        "min_received_at",
        "max_received_at",
        "raw_bytes",
        "file_bytes",
        "sealed_at",
    ];
    segment_keys.sort();
    assert_eq!(keys(segment), segment_keys, "{segment}");
    let n = |v: &Value| v.as_i64().unwrap_or_else(|| panic!("not a whole number: {v}"));
    assert_eq!((n(&stats["events"]), n(&stats["log_end"]), n(&stats["segment_events"])), (2000, 2000, 1000));
    assert_eq!(n(&stats["hot_events"]) + n(&stats["sealed_events"]), 2000, "{stats}");
    assert_eq!((n(&segment["first_seq"]), n(&segment["last_seq"]), n(&segment["events"])), (1, 1000, 1000), "{segment}");
    assert_eq!(n(&stats["sealed_upto"]), 1000);
    assert!(segment["file"].as_str().unwrap().ends_with(".cwseg"), "{segment}");
    assert_eq!(segment["min_time"], json!("2026-11-23T10:00:00.000000Z"));
    assert_eq!(stats["oldest_time"], segment["min_time"]);
    assert!(n(&segment["file_bytes"]) < n(&segment["raw_bytes"]), "compressed: {segment}");
    assert_eq!(n(&stats["disk_bytes"]), n(&stats["database_bytes"]) + n(&stats["segment_bytes"]));
    let ratio = stats["disk_ratio"].as_f64().unwrap();
    assert!((ratio - n(&stats["disk_bytes"]) as f64 / n(&stats["raw_bytes"]) as f64).abs() < 1e-9, "{stats}");
}
