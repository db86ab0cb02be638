//! Dead letters, replay to a real HTTP receiver, and time travel, through the API on a real store.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use causeway_server::Consumer;
use common::{Api, first_four, step, with_journeys, with_journeys_and};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What the receiver got: when, which record header, the body's exact bytes.
struct Delivery {
    at: Instant,
    dlq_id: String,
    content_type: String,
    body: Vec<u8>,
}

/// An HTTP server standing in for a consumer's replay endpoint. It answers with `status`.
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    got: mpsc::UnboundedReceiver<Delivery>,
}

async fn receiver() -> Receiver {
    let (tx, got) = mpsc::unbounded_channel();
    let status = Arc::new(AtomicU16::new(202));
    let answer = status.clone();
    let app = axum::Router::new().route(
        "/replay",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            let answer = answer.clone();
            async move {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let _ = tx.send(Delivery {
                    at: Instant::now(),
                    dlq_id: header("x-causeway-dlq-id"),
                    content_type: header("content-type"),
                    body: body.to_vec(),
                });
                let code = StatusCode::from_u16(answer.load(Ordering::SeqCst)).unwrap();
                (code, if code.is_success() { "ok" } else { "notification-service is down" })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/replay", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, status, got }
}

fn consumers(url: &str) -> BTreeMap<String, Consumer> {
    BTreeMap::from([("notification-service".to_string(), Consumer { replay_url: Some(url.to_string()) })])
}

/// The shipment event exactly as the failing consumer read it off its topic (odd spacing kept).
fn shipment_text(order: &str) -> String {
    let e = step(order, 4, "ShipmentCreated", "fulfilment-service", Some("3"), 6);
    format!(
        "{{ \"specversion\":\"1.0\",  \"id\":\"{order}-4\", \"source\":\"fulfilment-service\", \"type\":\"ShipmentCreated\", \"time\":{}, \"correlationid\":\"corr-{order}\", \"causationid\":\"{order}-3\", \"data\":{} }}",
        e["time"], e["data"]
    )
}

/// The shipment as kept, and as a replay sends it: byte for byte, but for its PII value
/// (`customerEmail`, a `pii` pointer of the example model), which is its keyed hash under the
/// tests' key (`common`).
fn shipment_kept(order: &str) -> String {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment/model.yaml");
    let contracts = causeway_contracts::Contracts::new(causeway_model::load(&example).into_result().unwrap(), b"test-key".to_vec());
    let one = json!({"type": "ShipmentCreated", "id": "x", "data": {"customerEmail": "a@b.c"}}).to_string();
    let hash = serde_json::from_str::<Value>(&contracts.redact_raw(&one).unwrap()).unwrap()["data"]["customerEmail"].clone();
    assert!(hash.as_str().unwrap().starts_with("hmac-sha256:"), "{hash}");
    let text = shipment_text(order);
    assert!(text.contains("\"a@b.c\""), "{text}");
    text.replace("\"a@b.c\"", &hash.to_string())
}

async fn report(api: &Api, order: &str, failed_at: Option<&str>) -> Value {
    let body = format!(
        "{{\"event\": {}, \"consumer\": \"notification-service\", \"source_topic\": \"shipments\", \"error_type\": \"KeyError\", \"error_message\": \"'customerEmail'\", \"stack\": \"Traceback…\"{}}}",
        shipment_text(order),
        failed_at.map(|t| format!(", \"failed_at\": \"{t}\"")).unwrap_or_default()
    );
    let request = axum::http::Request::post("/v1/dlq").header("content-type", "application/json").body(body.into()).unwrap();
    let (status, answer) = api.send(request).await;
    assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{answer}");
    answer
}

/// The seed's detective workflow: an order's confirmation never arrived. Find its correlation,
/// pull the chain, see the missing reaction and the dead letter behind it, replay it to the
/// consumer, and watch the record and the finding resolve when the reaction arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detective_workflow_from_missing_reaction_to_replay_and_resolution() {
    let mut rx = receiver().await;
    let api = with_journeys_and(|s| s.with_consumers(consumers(&rx.url)));
    api.post("application/json", json!(first_four("ord-789")).to_string()).await;
    let reported = report(&api, "ord-789", None).await;
    let dlq_id = reported["id"].as_i64().unwrap();
    assert_eq!((reported["status"].as_str(), reported["attempts"].as_i64()), (Some("pending"), Some(1)));

    // Where is order ord-789? Its correlation, then its chain.
    let rows = api.sql("SELECT DISTINCT correlation_id FROM event_lineage WHERE journey = 'order' AND journey_key = 'ord-789'").await;
    assert_eq!(rows["rows"], json!([["corr-ord-789"]]));
    let (_, chain) = api.get("/v1/correlations/corr-ord-789").await;
    assert_eq!(chain["events"].as_array().unwrap().len(), 4);
    let rows = api.sql("SELECT event_id, event_type, source_service, timestamp, causation_id FROM event_lineage WHERE correlation_id = 'corr-ord-789' ORDER BY timestamp").await;
    assert_eq!(rows["rows"][3], json!(["ord-789-4", "ShipmentCreated", "fulfilment-service", "2026-11-23T10:00:06.000000Z", "ord-789-3"]));

    // The missing reaction says why: the consumer expected to react dead-lettered the shipment.
    let (_, journey) = api.get("/v1/journeys/order/ord-789").await;
    let missing = journey["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "missing_reaction" && f["open"] == true).unwrap().clone();
    assert!(missing["detail"].as_str().unwrap().contains("dead-lettered by notification-service: KeyError 'customerEmail'"), "{missing}");
    assert_eq!(missing["dead_letter"]["id"], dlq_id);
    let (_, listed) = api.get("/v1/findings?kind=missing_reaction&open=true").await;
    assert_eq!(listed["findings"][0]["dead_letter"]["id"], dlq_id, "{listed}");

    // The DLQ record, found by the consumer, with its chain, journey and finding.
    let (status, list) = api.get("/v1/dlq?consumer=notification-service&status=pending").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["records"][0]["id"], dlq_id);
    assert_eq!(list["records"][0]["error_message"], "'customerEmail'");
    let (status, record) = api.get(&format!("/v1/dlq/{dlq_id}")).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["record"]["event_id"], "ord-789-4");
    assert_eq!(record["record"]["correlation_id"], "corr-ord-789");
    assert_eq!(record["record"]["stack"], "Traceback…");
    assert_eq!(record["chain"]["events"].as_array().unwrap().len(), 4);
    assert_eq!(record["chain"]["tree"][0]["event_id"], "ord-789-1");
    assert_eq!((record["journey"]["journey"].as_str(), record["journey"]["key"].as_str()), (Some("order"), Some("ord-789")));
    assert_eq!(record["journey"]["next_expected"][0], "CustomerNotified");
    let about_it: Vec<&str> = record["findings"].as_array().unwrap().iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert!(about_it.contains(&"missing_reaction"), "{record}");
    assert_eq!(record["replay_target"], rx.url);
    let rows = api.sql("SELECT * FROM dlq_events WHERE correlation_id = 'corr-ord-789' AND source_service = 'fulfilment-service'").await;
    assert_eq!(rows["rows"].as_array().unwrap().len(), 1, "the seed's query works verbatim: {rows}");

    // Replay: the receiver gets the event as kept: byte for byte, but its PII is the keyed hash.
    let (status, done) = api.post_json(&format!("/v1/dlq/{dlq_id}/replay"), json!({"actor": "on-call"})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!((done["outcome"].as_str(), done["status"].as_str(), done["http_status"].as_u64()), (Some("sent"), Some("replayed"), Some(202)));
    let delivery = rx.got.recv().await.unwrap();
    assert_eq!(delivery.body, shipment_kept("ord-789").into_bytes(), "byte for byte, PII aside");
    assert_eq!(delivery.dlq_id, dlq_id.to_string());
    assert_eq!(delivery.content_type, "application/cloudevents+json");
    let (_, record) = api.get(&format!("/v1/dlq/{dlq_id}")).await;
    assert_eq!(record["record"]["status"], "replayed");
    assert_eq!(record["replays"][0]["actor"], "on-call");

    // The consumer now reacts: the confirmation arrives, the finding and the record resolve.
    let notified = step("ord-789", 5, "CustomerNotified", "notification-service", Some("4"), 400);
    api.post("application/json", json!([notified]).to_string()).await;
    let (_, journey) = api.get("/v1/journeys/order/ord-789").await;
    assert_eq!(journey["state"], "fulfilled");
    let finding = journey["findings"].as_array().unwrap().iter().find(|f| f["id"] == missing["id"]).unwrap();
    assert_eq!(finding["open"], false, "{finding}");
    let (_, record) = api.get(&format!("/v1/dlq/{dlq_id}")).await;
    assert_eq!(record["record"]["status"], "resolved", "{record}");
    assert!(record["record"]["status_reason"].as_str().unwrap().contains("CustomerNotified"));
    let (_, summary) = api.get("/v1/dlq/summary").await;
    assert_eq!(
        (summary["pending"].as_i64(), summary["inflow_last_hour"].as_i64(), summary["outflow_last_hour"].as_i64()),
        (Some(0), Some(1), Some(1)),
        "{summary}"
    );
    assert_eq!(summary["by_status"], json!({"resolved": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_safe_dry_runs_send_nothing_and_a_second_replay_needs_force() {
    let mut rx = receiver().await;
    let api = with_journeys_and(|s| s.with_consumers(consumers(&rx.url)));
    let id = report(&api, "o1", None).await["id"].as_i64().unwrap();

    let (status, dry) = api.post_json(&format!("/v1/dlq/{id}/replay"), json!({"dry_run": true})).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!((dry["outcome"].as_str(), dry["status"].as_str()), (Some("dry_run"), Some("pending")));
    assert!(rx.got.try_recv().is_err(), "a dry run sends nothing");
    // It shows what would be sent: where, with which headers, the body as kept (and parsed).
    let request = &dry["request"];
    assert_eq!((request["method"].as_str(), request["url"].as_str()), (Some("POST"), Some(rx.url.as_str())), "{dry}");
    assert_eq!(request["content_type"], "application/cloudevents+json");
    assert_eq!(request["headers"], json!({"content-type": "application/cloudevents+json", "x-causeway-dlq-id": id.to_string()}));
    assert_eq!((request["body"].as_str(), request["body_encoding"].as_str()), (Some(shipment_kept("o1").as_str()), Some("utf-8")));
    assert_eq!(request["body_bytes"].as_u64(), Some(shipment_kept("o1").len() as u64));
    assert_eq!(request["body_json"]["id"], "o1-4");

    let (status, _) = api.post_json(&format!("/v1/dlq/{id}/replay"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let sent = rx.got.recv().await.unwrap();
    // The replay sends exactly what the dry run showed.
    assert_eq!(sent.body, request["body"].as_str().unwrap().as_bytes());
    assert_eq!(
        (sent.content_type.as_str(), sent.dlq_id.as_str()),
        (request["headers"]["content-type"].as_str().unwrap(), request["headers"]["x-causeway-dlq-id"].as_str().unwrap())
    );
    let (status, again) = api.post_json(&format!("/v1/dlq/{id}/replay"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert!(again["error"]["message"].as_str().unwrap().contains("force"), "{again}");
    // The remedy is named, so clients with other terms (the CLI) can word it their way.
    let remedy = causeway_server::remedy::FORCE_REPLAY;
    assert_eq!(again["error"]["remedy"], remedy, "{again}");
    assert!(again["error"]["message"].as_str().unwrap().ends_with(&format!("; {remedy}")), "{again}");
    assert!(rx.got.try_recv().is_err(), "the refused replay sent nothing");
    let (status, forced) = api.post_json(&format!("/v1/dlq/{id}/replay"), json!({"force": true})).await;
    assert_eq!(status, StatusCode::OK, "{forced}");
    rx.got.recv().await.unwrap();

    // A target failing: the record is pending again, with the target's error.
    rx.status.store(500, Ordering::SeqCst);
    let (status, failed) = api.post_json(&format!("/v1/dlq/{id}/replay"), json!({"force": true})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{failed}");
    assert_eq!(failed["error"]["code"], "replay_failed");
    rx.got.recv().await.unwrap();
    let (_, record) = api.get(&format!("/v1/dlq/{id}")).await;
    assert_eq!(record["record"]["status"], "pending");
    assert!(record["record"]["last_error"].as_str().unwrap().contains("HTTP 500: notification-service is down"), "{record}");
    assert_eq!(record["record"]["attempts"], 2);
    let outcomes: Vec<&str> = record["replays"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["dry_run", "sent", "sent", "failed"], "every attempt audited");
    assert_eq!(record["replays"][2]["forced"], true);

    // Discard closes it; a discarded record is not replayed without force.
    let (status, _) = api.post_json(&format!("/v1/dlq/{id}/discard"), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a discard needs a reason");
    let (status, _) = api.post_json(&format!("/v1/dlq/{id}/discard"), json!({"reason": "test order", "actor": "ana"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = api.post_json(&format!("/v1/dlq/{id}/replay"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(refused["error"]["message"].as_str().unwrap().contains("test order (by ana)"), "{refused}");
}

/// Two replays of one record at the same moment: one is sent, the other refused, whichever wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_of_one_record_send_it_once() {
    let mut rx = receiver().await;
    let api = std::sync::Arc::new(with_journeys_and(|s| s.with_consumers(consumers(&rx.url))));
    let id = report(&api, "race", None).await["id"].as_i64().unwrap();
    let path = format!("/v1/dlq/{id}/replay");
    let (a, b) = tokio::join!(api.post_json(&path, json!({})), api.post_json(&path, json!({})));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{a:?} {b:?}");
    rx.got.recv().await.unwrap();
    let (_, record) = api.get(&format!("/v1/dlq/{id}")).await;
    assert_eq!(record["replays"].as_array().unwrap().len(), 1, "one attempt: {record}");
    assert!(rx.got.try_recv().is_err(), "sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_replay_honours_rate_stop_at_and_limit() {
    let mut rx = receiver().await;
    let api = with_journeys_and(|s| s.with_consumers(consumers(&rx.url)));
    let failed_at = ["2026-11-30T10:00:00Z", "2026-11-30T10:01:00Z", "2026-11-30T10:02:00Z", "2026-11-30T10:03:00Z", "2026-11-30T10:04:00Z"];
    for (i, at) in failed_at.iter().enumerate() {
        report(&api, &format!("b{i}"), Some(at)).await;
    }

    // stop_at: only what failed before the fix went out (10:02:30), oldest first, 10 per second.
    let started = Instant::now();
    let (status, done) = api.post_json("/v1/dlq/replay", json!({"stop_at": "2026-11-30T10:02:30Z", "rate": 10, "actor": "bulk"})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!((done["sent"].as_u64(), done["stopped"].as_str()), (Some(3), Some("done")), "{done}");
    let mut arrivals = Vec::new();
    for _ in 0..3 {
        arrivals.push(rx.got.recv().await.unwrap());
    }
    assert!(rx.got.try_recv().is_err(), "nothing past stop_at");
    let order: Vec<String> = arrivals.iter().map(|d| String::from_utf8_lossy(&d.body).split("\"id\":\"").nth(1).unwrap()[..4].to_string()).collect();
    assert_eq!(order, ["b0-4", "b1-4", "b2-4"], "oldest first");
    for (i, d) in arrivals.iter().enumerate() {
        // The rate: the i-th replay leaves no earlier than i tenths of a second after the start.
        assert!(
            d.at.duration_since(started) >= Duration::from_millis(100 * i as u64),
            "replay {i} came {:?} after the start",
            d.at.duration_since(started)
        );
    }

    // limit: one more, then it stops; a dry run over the rest sends nothing.
    let (_, dry) = api.post_json("/v1/dlq/replay", json!({"dry_run": true})).await;
    assert_eq!((dry["sent"].as_u64(), dry["results"].as_array().unwrap().len()), (Some(0), 2), "{dry}");
    assert!(rx.got.try_recv().is_err());
    let (_, one) = api.post_json("/v1/dlq/replay", json!({"limit": 1})).await;
    assert_eq!((one["sent"].as_u64(), one["stopped"].as_str()), (Some(1), Some("limit")), "{one}");
    assert!(rx.got.recv().await.unwrap().body.starts_with(b"{ \"specversion\""));

    // The last one, against a failing target with stop_on_error.
    rx.status.store(503, Ordering::SeqCst);
    let (_, failing) = api.post_json("/v1/dlq/replay", json!({"stop_on_error": true})).await;
    assert_eq!((failing["failed"].as_u64(), failing["stopped"].as_str()), (Some(1), Some("error")), "{failing}");
    let (_, summary) = api.get("/v1/dlq/summary").await;
    assert_eq!(summary["pending"], 1);
    assert_eq!(summary["by_status"], json!({"pending": 1, "replayed": 4}));

    for (body, code) in [
        (json!({"rate": 0}), StatusCode::BAD_REQUEST),
        (json!({"limit": 0}), StatusCode::BAD_REQUEST),
        (json!({"stop_at": "yesterday"}), StatusCode::BAD_REQUEST),
        (json!({"sttus": "pending"}), StatusCode::BAD_REQUEST),
    ] {
        let (status, answer) = api.post_json("/v1/dlq/replay", body.clone()).await;
        assert_eq!(status, code, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| m.len() > 20), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_explorer_refuse_mistakes_with_a_reason() {
    let api = with_journeys();
    for (body, needle) in [
        (json!({"consumer": "x", "error_type": "E", "error_message": "m"}), "event"),
        (json!({"event": {}, "consumer": "", "error_type": "E", "error_message": "m"}), "consumer must not be empty"),
        (json!({"event": {}, "consumer": "x", "error_type": "E", "error_message": "m", "failed_at": "noon"}), "RFC 3339"),
        (json!({"event": {}, "consumer": "x", "error_type": "E", "error_message": "m", "colour": 1}), "colour"),
    ] {
        let (status, answer) = api.post_json("/v1/dlq", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(needle), "{answer}");
    }
    for (path, code) in [
        ("/v1/dlq?status=stuck", StatusCode::BAD_REQUEST),
        ("/v1/dlq?since=yesterday", StatusCode::BAD_REQUEST),
        ("/v1/dlq?colour=red", StatusCode::BAD_REQUEST),
        ("/v1/dlq?before=x", StatusCode::BAD_REQUEST),
        ("/v1/dlq/999", StatusCode::NOT_FOUND),
        ("/v1/dlq/abc", StatusCode::NOT_FOUND),
    ] {
        let (status, answer) = api.get(path).await;
        assert_eq!(status, code, "{path}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some(), "{answer}");
    }
    // No replay target configured for this consumer: say how to add one.
    let id = report(&api, "n1", None).await["id"].as_i64().unwrap();
    let (status, answer) = api.post_json(&format!("/v1/dlq/{id}/replay"), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer["error"]["message"].as_str().unwrap().contains("[consumers.notification-service] replay_url"), "{answer}");
    // The same failure reported again is one record with two attempts; the original is kept.
    let again = report(&api, "n1", None).await;
    assert_eq!((again["id"].as_i64(), again["attempts"].as_i64(), again["repeated"].as_bool()), (Some(id), Some(2), Some(true)));
    let request = axum::http::Request::get(format!("/v1/dlq/{id}/original")).body(axum::body::Body::empty()).unwrap();
    let response = tower::ServiceExt::oneshot(api.router.clone(), request).await.unwrap();
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    assert_eq!(bytes.as_ref(), shipment_kept("n1").as_bytes());
    // Without a topic in the report, the model's topic for the event type is kept.
    let (status, plain) = api.post_json("/v1/dlq", json!({"event": step("n2", 4, "ShipmentCreated", "fulfilment-service", None, 6), "consumer": "x", "error_type": "E", "error_message": "m"})).await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    let (_, record) = api.get(&format!("/v1/dlq/{}", plain["id"])).await;
    assert_eq!(record["record"]["source_topic"], "shipments");
    // Free text and paging.
    let (_, found) = api.get("/v1/dlq?q=customerEmail").await;
    assert_eq!(found["records"].as_array().unwrap().len(), 1);
    let (_, none) = api.get("/v1/dlq?q=TimeoutError").await;
    assert_eq!(none["records"], json!([]));
}

/// The forgetful producer: a reaction refused at ingest (no correlation id; or an envelope error
/// with the correlation id present) is the dead letter behind the missing reaction it leaves,
/// found by the event — an expected type — and the journey instance it names: the key in its
/// payload, or its correlation id. Never by another instance's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_reaction_links_its_reaction_refused_at_ingest() {
    let api = with_journeys();
    let mut events = Vec::new();
    for order in ["r1", "r2", "r3", "r4"] {
        events.push(step(order, 1, "OrderCreated", "order-service", None, 0));
        events.push(step(order, 2, "PaymentProcessed", "payment-service", Some("1"), 2));
    }
    let (status, body) = api.post("application/json", json!(events).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // r1's reservation comes in the hand-rolled shape without a correlation id; r3's names another
    // order in its payload (r9) and must not be taken for r3's or r1's.
    let forgetful = |order: &str, key: &str| {
        json!({"metadata": {"eventId": format!("{order}-3"), "eventType": "InventoryReserved", "source": "inventory-service",
                            "timestamp": "2026-11-23T10:00:04Z", "causationId": format!("{order}-2")},
               "payload": {"orderId": key, "items": 1}, "entityId": format!("res-{order}")})
    };
    let (status, refused) = api.post("application/json", forgetful("r1", "r1").to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"]["code"], "missing_correlation");
    let r1_record = refused["dlq_id"].as_i64().or_else(|| refused["results"][0]["dlq_id"].as_i64()).unwrap();
    let (_, other) = api.post("application/json", forgetful("r3", "r9").to_string()).await;
    let r3_record = other["results"][0]["dlq_id"].as_i64().unwrap();
    // r2's reservation carries its correlation id but a broken traceparent: refused as well.
    let mut broken = step("r2", 3, "InventoryReserved", "inventory-service", Some("2"), 4);
    broken["traceparent"] = json!("00-not-a-trace");
    let (status, refused) = api.post("application/json", json!([broken]).to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let r2_record = refused["results"][0]["dlq_id"].as_i64().unwrap();

    let (_, listed) = api.get("/v1/findings?kind=missing_reaction&open=true").await;
    let by_key =
        |key: &str| listed["findings"].as_array().unwrap().iter().find(|f| f["key"] == key).unwrap_or_else(|| panic!("{key}: {listed}")).clone();
    let r1 = by_key("r1");
    assert_eq!(r1["expected"], json!(["InventoryReserved"]));
    assert_eq!((r1["dead_letter"]["id"].as_i64(), r1["dead_letter"]["consumer"].as_str()), (Some(r1_record), Some("causeway")), "{r1}");
    assert_eq!(r1["dead_letter"]["error_type"], "missing_correlation");
    assert!(r1["detail"].as_str().unwrap().contains("; the InventoryReserved was refused at ingest: missing_correlation "), "{r1}");
    let r2 = by_key("r2");
    assert_eq!(r2["dead_letter"]["id"].as_i64(), Some(r2_record), "{r2}");
    assert!(r2["detail"].as_str().unwrap().contains("refused at ingest: invalid_traceparent"), "{r2}");
    for key in ["r3", "r4"] {
        assert!(by_key(key).get("dead_letter").is_none(), "{key} has no refused reaction: {listed}");
    }
    assert_ne!(r1_record, r3_record);
    // The instance shows it too, with the refused event's own finding, which names the instance.
    let (_, journey) = api.get("/v1/journeys/order/r1").await;
    let findings = journey["findings"].as_array().unwrap();
    let missing = findings.iter().find(|f| f["kind"] == "missing_reaction").unwrap();
    assert_eq!(missing["dead_letter"]["id"].as_i64(), Some(r1_record), "{journey}");
    assert!(findings.iter().any(|f| f["kind"] == "missing_correlation" && f["event_id"] == "r1-3"), "{journey}");
    // The record, though never stored as an event, shows the instance it belongs to.
    let (_, record) = api.get(&format!("/v1/dlq/{r1_record}")).await;
    assert_eq!((record["journey"]["journey"].as_str(), record["journey"]["key"].as_str()), (Some("order"), Some("r1")), "{record}");
    assert_eq!(record["journey"]["next_expected"][0], "InventoryReserved", "{record}");

    // A discarded record explains nothing any more.
    let (status, _) = api.post_json(&format!("/v1/dlq/{r1_record}/discard"), json!({"reason": "sent again with its correlation id"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = api.get("/v1/findings?kind=missing_reaction&key=r1").await;
    assert!(listed["findings"][0].get("dead_letter").is_none(), "{listed}");
}

/// Regression: `GET /v1/dlq/99999999999999999999` said ids are whole numbers; it is one, too
/// large for any id. Every numeric path, query and body parameter says "out of range" instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_too_large_are_out_of_range_not_malformed() {
    let api = with_journeys();
    let huge = "99999999999999999999";
    for path in [
        format!("/v1/dlq/{huge}"),
        format!("/v1/dlq/{huge}/original"),
        format!("/v1/dlq?before={huge}"),
        format!("/v1/dlq?limit={huge}"),
        format!("/v1/findings?limit={huge}"),
        format!("/v1/journeys?limit={huge}"),
        format!("/v1/correlations/c1?limit={huge}"),
        format!("/v1/events/e1/descendants?limit={huge}"),
    ] {
        let (status, answer) = api.get(&path).await;
        assert!(status.is_client_error(), "{path}: {status} {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("out of range"), "{path}: {message}");
        assert!(!message.contains("whole number"), "{path}: {message}");
    }
    for action in ["replay", "discard", "resolve"] {
        let path = format!("/v1/dlq/{huge}/{action}");
        let (status, answer) = api.post_json(&path, json!({"reason": "r"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("out of range"), "{path}: {answer}");
    }
    for limit in [huge, "-1", "0"] {
        let body = format!("{{\"limit\": {limit}}}");
        let request = axum::http::Request::post("/v1/dlq/replay").header("content-type", "application/json").body(body.into()).unwrap();
        let (status, answer) = api.send(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{limit}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("out of range"), "{limit}: {answer}");
    }
    // What is not a number at all is still told so.
    let (status, answer) = api.get("/v1/dlq/abc").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"]["message"].as_str().unwrap().contains("whole numbers"), "{answer}");
    let (_, answer) = api.get("/v1/findings?limit=1.5").await;
    assert!(answer["error"]["message"].as_str().unwrap().contains("whole number"), "{answer}");
    let (status, answer) = api.post_json("/v1/dlq/replay", json!({"limit": 1.5})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]["message"].as_str().unwrap().contains("whole number"), "{answer}");
}

/// Time travel on the example model's `Order` read model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_as_of_a_time_or_an_event_is_the_fold_of_the_events_before_it() {
    let api = with_journeys();
    let mut events = first_four("tt1");
    events.push(step("tt1", 5, "CustomerNotified", "notification-service", Some("4"), 8));
    events.push(step("other", 1, "OrderCreated", "order-service", None, 1));
    api.post("application/json", json!(events).to_string()).await;

    let (status, now) = api.get("/v1/aggregates/Order/tt1").await;
    assert_eq!(status, StatusCode::OK, "{now}");
    assert_eq!(
        now["state"],
        json!({"orderId": "tt1", "customerEmail": now["state"]["customerEmail"], "amount": 10, "currency": "EUR", "status": "shipped",
               "paidAmount": 10, "reservations": [1], "carrier": "dhl", "notified": true})
    );
    assert_eq!((now["version"].as_u64(), now["later_events"].as_u64()), (Some(5), Some(0)));
    assert!(now["state"]["customerEmail"].as_str().unwrap().starts_with("hmac-sha256:"), "PII stays redacted");

    // Between the payment (10:00:02) and the reservation (10:00:04): the first two events folded.
    let (_, between) = api.get("/v1/aggregates/Order/tt1?at=2026-11-23T10:00:03Z").await;
    let model = causeway_model::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment/model.yaml"))
        .into_result()
        .unwrap();
    // The events as stored (PII redacted), folded here.
    let mut parsed = Vec::new();
    for id in ["tt1-1", "tt1-2"] {
        let (_, stored) = api.get(&format!("/v1/events/{id}")).await;
        parsed.push(causeway_envelope::parse_json_line(stored.to_string().as_bytes(), &Default::default()).result.unwrap());
    }
    let (expected, _) = causeway_readmodel::fold(&model.read_models["Order"], &parsed);
    assert_eq!(between["state"], Value::Object(expected));
    assert_eq!(between["state"]["status"], "paid");
    assert_eq!((between["version"].as_u64(), between["later_events"].as_u64()), (Some(2), Some(3)));
    let applied: Vec<&str> = between["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(applied, ["tt1-1", "tt1-2"]);

    // At an event: the state when it was published, that event included.
    let (_, at_event) = api.get("/v1/aggregates/Order/tt1?at=tt1-3").await;
    assert_eq!(at_event["version"], 3);
    assert_eq!(at_event["state"]["reservations"], json!([1]));
    assert!(at_event["state"].get("carrier").is_none());
    assert_eq!(at_event["as_of"]["event_id"], "tt1-3");

    // The journey view shows the state at each milestone.
    let (status, journey) = api.get("/v1/journeys/order/tt1?states=true").await;
    assert_eq!(status, StatusCode::OK, "{journey}");
    let statuses: Vec<&str> = journey["milestones"].as_array().unwrap().iter().map(|m| m["state"]["Order"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["created", "paid", "paid", "shipped", "shipped"]);

    for (path, code) in [
        ("/v1/aggregates/Nope/tt1", StatusCode::NOT_FOUND),
        ("/v1/aggregates/Order/nobody", StatusCode::NOT_FOUND),
        ("/v1/aggregates/Order/tt1?at=no-such-event", StatusCode::BAD_REQUEST),
        ("/v1/aggregates/Order/tt1?when=now", StatusCode::BAD_REQUEST),
    ] {
        let (status, answer) = api.get(path).await;
        assert_eq!(status, code, "{path}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| m.len() > 20), "{answer}");
    }
}

/// Consumers report under their own names — here a consumer group's, which the model names
/// nowhere: the missing reaction still names the dead letter of its cause event, and the record
/// resolves with it when the reaction arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_reaction_names_the_dead_letter_of_its_cause_whoever_reported_it() {
    let api = with_journeys();
    api.post("application/json", json!(first_four("ord-791")).to_string()).await;
    let body = json!({"event": serde_json::from_str::<Value>(&shipment_text("ord-791")).unwrap(), "consumer": "cg-notify-prod-eu1",
                      "source_topic": "shipments", "error_type": "KeyError", "error_message": "'customerEmail'"});
    let (status, reported) = api.post_json("/v1/dlq", body).await;
    assert_eq!(status, StatusCode::CREATED, "{reported}");
    let dlq_id = reported["id"].as_i64().unwrap();

    let (_, journey) = api.get("/v1/journeys/order/ord-791").await;
    let missing = journey["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "missing_reaction" && f["open"] == true).unwrap().clone();
    assert_eq!(
        (missing["dead_letter"]["id"].as_i64(), missing["dead_letter"]["consumer"].as_str()),
        (Some(dlq_id), Some("cg-notify-prod-eu1")),
        "{missing}"
    );
    assert!(missing["detail"].as_str().unwrap().contains("dead-lettered by cg-notify-prod-eu1: KeyError 'customerEmail'"), "{missing}");

    let notified = step("ord-791", 5, "CustomerNotified", "notification-service", Some("4"), 400);
    api.post("application/json", json!([notified]).to_string()).await;
    let (_, record) = api.get(&format!("/v1/dlq/{dlq_id}")).await;
    assert_eq!(record["record"]["status"], "resolved", "the reaction arrived: {record}");
}

/// The journey view lists what was found about each of its events at ingest, not only the
/// journey's own findings: here its first event broke its schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_view_lists_the_schema_error_of_its_first_event() {
    let api = with_journeys();
    let mut created = step("ord-792", 1, "OrderCreated", "order-service", None, 0);
    created["data"]["currency"] = json!("DOGE");
    let (_, answer) = api.post("application/json", json!([created]).to_string()).await;
    assert_eq!(answer["accepted"], 1, "a contract failure is a finding, not a refusal: {answer}");
    // Another order's schema error is not this journey's.
    let mut other = step("ord-793", 1, "OrderCreated", "order-service", None, 0);
    other["data"]["currency"] = json!("DOGE");
    api.post("application/json", json!([other]).to_string()).await;

    let (status, journey) = api.get("/v1/journeys/order/ord-792").await;
    assert_eq!(status, StatusCode::OK, "{journey}");
    let errors: Vec<&Value> = journey["findings"].as_array().unwrap().iter().filter(|f| f["kind"] == "schema_error").collect();
    assert_eq!(errors.len(), 1, "{journey}");
    assert_eq!(errors[0]["event_id"], "ord-792-1", "{journey}");
}
