//! The NATS JetStream source against the machine's NATS server (127.0.0.1:4222, JetStream on):
//! events published with CloudEvents `ce-*` headers, as structured CloudEvents, with hand-rolled
//! headers and as plain JSON bodies are stored once each — across a SIGKILL of causeway in the
//! middle — with their subject as topic; a poison message becomes a DLQ record naming its subject
//! and stream sequence, and the stream goes on.

mod common;

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use causeway_sim::{SimConfig, Simulator};
use chrono::Utc;
use common::{Server, get, sql, stored};
use serde_json::{Value, json};

fn example_model() -> String {
    format!("{}/../../examples/order-fulfillment/model.yaml", env!("CARGO_MANIFEST_DIR"))
}

/// A message for one simulated event, in one of four forms by `n`.
fn message(e: &Value, n: usize) -> (HeaderMap, Vec<u8>) {
    let (pairs, body) = common::broker_message(e, n, "ce-");
    let mut headers = HeaderMap::new();
    for (name, value) in &pairs {
        headers.insert(name.as_str(), value.as_str());
    }
    (headers, body)
}

#[test]
fn events_from_a_jetstream_stream_are_stored_once_across_a_crash_and_a_poison_message_is_kept() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let unique = format!("{}{}", std::process::id(), Utc::now().timestamp_micros());
    let (stream_name, prefix) = (format!("CWTEST{unique}"), format!("cwtest{unique}"));
    let js = runtime.block_on(async {
        let client = async_nats::connect("nats://127.0.0.1:4222").await.expect("NATS with JetStream on 127.0.0.1:4222");
        let js = jetstream::new(client);
        js.create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{prefix}.>")],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
        js
    });

    // Simulated traffic without faults: every event is valid.
    let mut sim = Simulator::new(SimConfig { seed: 5, fault_rate: 0.0, concurrency: 10 });
    let events: Vec<Value> = sim.next_batch(600, Utc::now() - chrono::Duration::minutes(30)).into_iter().map(|d| d.event).collect();
    // The producer publishes at its own pace, a message a millisecond, so that causeway is killed
    // while the stream still grows; a poison message (not an event in any form) in the middle.
    let producer = {
        let (events, prefix) = (events.clone(), prefix.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let js = jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await.unwrap());
                for (i, e) in events.iter().enumerate() {
                    if i == 300 {
                        js.publish(format!("{prefix}.broken"), "{not json".into()).await.unwrap().await.unwrap();
                    }
                    let (headers, body) = message(e, i);
                    let source = e["source"].as_str().or(e["metadata"]["source"].as_str()).unwrap();
                    js.publish_with_headers(format!("{prefix}.{source}"), headers, body.into()).await.unwrap().await.unwrap();
                    // Pacing the producer, not waiting for causeway.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("causeway.toml");
    std::fs::write(&config, format!("[nats]\nurl = \"nats://127.0.0.1:4222\"\nstream = \"{stream_name}\"\nsubjects = [\"{prefix}.>\"]\n")).unwrap();
    let data = dir.path().join("data");
    let args = ["--model", &example_model(), "--config", config.to_str().unwrap(), "--clock", "event"];
    let server = Server::start(&data, &args);

    // Some are stored: kill causeway mid-stream, then start it again on the same data.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored(&server.url) < 100 {
        assert!(Instant::now() < deadline, "the source stored nothing: {}", get(&format!("{}/readyz", server.url)));
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = stored(&server.url);
    server.kill();
    let server = Server::start(&data, &args);
    producer.join().unwrap();
    assert!(before < events.len() as u64, "killed after everything was stored: the crash proves nothing");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored(&server.url) < events.len() as u64 {
        assert!(Instant::now() < deadline, "not all stored: {} of {}: {}", stored(&server.url), events.len(), get(&format!("{}/readyz", server.url)));
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready = get(&format!("{}/readyz", server.url));
    assert_eq!(ready["nats"]["state"], "consuming", "{ready}");

    // Nothing lost, nothing twice; each with its subject.
    let counts = sql(
        &server.url,
        r#"SELECT count(*), count(DISTINCT event_id), count(*) FILTER (WHERE topic LIKE 'cwtest%'), count(DISTINCT "offset") FROM event_lineage"#,
    );
    assert_eq!(counts["rows"][0], json!([events.len(), events.len(), events.len(), events.len()]), "{counts}");
    // The poison message is a DLQ record with its subject and position; the stream went on past it.
    let dlq = get(&format!("{}/v1/dlq?consumer=causeway", server.url));
    let records = dlq["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{dlq}");
    assert_eq!(records[0]["source_topic"], format!("{prefix}.broken"), "{dlq}");
    assert_eq!(records[0]["source_offset"], 301, "{dlq}");
    let record = get(&format!("{}/v1/dlq/{}", server.url, records[0]["id"]));
    assert_eq!(record["record"]["context"], json!({"stream": stream_name, "subject": format!("{prefix}.broken"), "sequence": 301}), "{record}");

    // Their journeys are what the offline analysis makes of the same events.
    let log = dir.path().join("events.ndjson");
    let mut sorted = events.clone();
    sorted.sort_by_key(|e| e["time"].as_str().or(e["metadata"]["timestamp"].as_str()).unwrap().to_string());
    std::fs::write(&log, sorted.iter().map(|e| format!("{e}\n")).collect::<String>()).unwrap();
    let out = std::process::Command::new(common::BIN).arg("analyze").arg(&log).args(["--model", &example_model(), "--json"]).output().unwrap();
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary = get(&format!("{}/v1/journeys/summary", server.url));
    assert_eq!(summary["journeys_by_state"], offline["journeys_by_state"], "{summary}");
    runtime.block_on(async { js.delete_stream(&stream_name).await.unwrap() });
}
