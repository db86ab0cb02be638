//! A failure of the journey engine (a panic while it applies an event) fails no later request: the
//! engine drops its state, rebuilds it from the log without the entry it failed on, and says so
//! on `/readyz`; the server and its other journeys go on.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Server};
use serde_json::{Value, json};

fn order_created(id: &str, order: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "order-service", "type": "OrderCreated", "time": "2026-01-01T10:00:00Z",
           "subject": order, "correlationid": format!("c-{order}"),
           "data": {"orderId": order, "customerEmail": "a@example.com", "amount": 10, "currency": "EUR"}})
}

#[test]
fn a_panic_of_the_journey_engine_is_survived_reported_and_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let model = format!("{}/../../examples/order-fulfillment/model.yaml", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(BIN);
    command.env("CAUSEWAY_FAULT_PANIC_ON_EVENT", "poison");
    let server = Server::start_with(command, &dir.path().join("data"), &["--model", &model]);
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let events = vec![order_created("before", "ord-1"), order_created("poison", "ord-2"), order_created("after", "ord-3")];
    let answer = client.post(format!("{}/v1/events", server.url)).json(&events).send().unwrap();
    assert!(answer.status().is_success());
    let answer: Value = answer.json().unwrap();
    assert_eq!(answer["accepted"], 3, "{answer}");

    // The request that meets the failure may answer 500; the ones after it are served.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let ready: Value = client.get(format!("{}/readyz", server.url)).send().unwrap().json().unwrap();
        if ready["journeys"]["failures"].as_u64().unwrap_or(0) >= 1 {
            break ready;
        }
        assert!(Instant::now() < deadline, "no failure reported: {ready}");
        let _ = client.get(format!("{}/v1/journeys/summary", server.url)).send();
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["journeys"]["skipped_log_entries"], json!([2]), "the poison event is the log's second entry: {ready}");
    assert!(ready["journeys"]["last_failure"]["message"].as_str().unwrap().contains("log entry 2"), "{ready}");

    for (order, found) in [("ord-1", true), ("ord-2", false), ("ord-3", true)] {
        let answer = client.get(format!("{}/v1/journeys/order/{order}", server.url)).send().unwrap();
        assert_eq!(answer.status().is_success(), found, "{order}: {}", answer.status());
    }
    let summary: Value = client.get(format!("{}/v1/journeys/summary", server.url)).send().unwrap().json().unwrap();
    assert_eq!(summary["events"], 2, "the engine read every entry but the one it failed on: {summary}");
    // Still one failure: the rebuilt engine does not meet it again.
    let ready: Value = client.get(format!("{}/readyz", server.url)).send().unwrap().json().unwrap();
    assert_eq!(ready["journeys"]["failures"], 1, "{ready}");
}
