//! The Kafka source against a Kafka-protocol broker in the test process (librdkafka's mock
//! cluster, reached over TCP by the `causeway serve` child), fed by a librdkafka producer:
//! events with CloudEvents `ce_*` headers (binary mode), as structured CloudEvents, with
//! hand-rolled headers and in the metadata/payload shape, on the model's four topics of three
//! partitions each, are stored once each — across a SIGKILL of causeway in the middle — with
//! their topic, partition and offset; a poison message becomes a DLQ record naming its topic,
//! partition and offset, and its partition goes on.
//!
//! With `CAUSEWAY_TEST_KAFKA=HOST:PORT` the tests that create the model's topics run against that
//! broker instead, creating the topics there: `tests/kafka/tansu.sh` runs them against tansu, an
//! Apache Kafka-compatible broker, one fresh broker per test.

mod common;

use std::time::{Duration, Instant};

use causeway_sim::{SimConfig, Simulator};
use chrono::Utc;
use common::{Server, get, sql, stored};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::{Value, json};

const TOPICS: [&str; 4] = ["orders", "payments", "inventory", "shipments"];
const PARTITIONS: i32 = 3;

fn example_model() -> String {
    format!("{}/../../examples/order-fulfillment/model.yaml", env!("CARGO_MANIFEST_DIR"))
}

/// The model's topic for an event type (examples/order-fulfillment/model.yaml).
fn topic_of(event_type: &str) -> &'static str {
    let prefix = |p: &str| event_type.starts_with(p);
    if prefix("Order") {
        "orders"
    } else if prefix("Payment") {
        "payments"
    } else if prefix("Inventory") {
        "inventory"
    } else {
        "shipments"
    }
}

/// A message for one simulated event, in one of four forms by `n`: headers and body.
fn message(e: &Value, n: usize) -> (Vec<(String, String)>, Vec<u8>) {
    common::broker_message(e, n, "ce_")
}

/// The model's four topics on the broker the test talks to: librdkafka's mock cluster, kept alive
/// by the returned handle, or the broker `CAUSEWAY_TEST_KAFKA` names (no handle). Bootstrap
/// servers second.
fn broker_with_topics() -> (Option<MockCluster<'static, DefaultProducerContext>>, String) {
    if let Ok(brokers) = std::env::var("CAUSEWAY_TEST_KAFKA") {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        let topics: Vec<NewTopic> = TOPICS.iter().map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1))).collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let created = runtime.block_on(admin.create_topics(&topics, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))))).unwrap();
        for result in created {
            result.unwrap_or_else(|(topic, e)| panic!("creating topic {topic} on {brokers}: {e} (a fresh broker per test)"));
        }
        return (None, brokers);
    }
    let cluster = MockCluster::new(1).unwrap();
    for topic in TOPICS {
        cluster.create_topic(topic, PARTITIONS, 1).unwrap();
    }
    let brokers = cluster.bootstrap_servers();
    (Some(cluster), brokers)
}

fn wait_until(what: &str, url: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: {}", get(&format!("{url}/readyz")));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn events_from_kafka_topics_are_stored_once_across_a_crash_and_a_poison_message_is_kept() {
    let (_cluster, brokers) = broker_with_topics();

    let mut sim = Simulator::new(SimConfig { seed: 7, fault_rate: 0.0, concurrency: 10 });
    let events: Vec<Value> = sim.next_batch(600, Utc::now() - chrono::Duration::minutes(30)).into_iter().map(|d| d.event).collect();
    // The producer writes half the events, keyed by correlation id; causeway is killed once it
    // has stored some, and the producer writes the other half, a message a millisecond, while
    // causeway starts again; a poison message in the middle.
    let (go, gone) = std::sync::mpsc::channel::<()>();
    let producer = {
        let (events, brokers) = (events.clone(), brokers.clone());
        std::thread::spawn(move || {
            let producer: ThreadedProducer<_> = ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "0").create().unwrap();
            for (i, e) in events.iter().enumerate() {
                if i == 300 {
                    producer.flush(Duration::from_secs(30)).unwrap();
                    gone.recv().unwrap();
                    producer.send(BaseRecord::to("payments").key("poison").payload("{not json").partition(1)).map_err(|(e, _)| e).unwrap();
                }
                let (headers, body) = message(e, i);
                let event_type = e["type"].as_str().or(e["metadata"]["eventType"].as_str()).unwrap();
                let key = e["correlationid"].as_str().or(e["metadata"]["correlationId"].as_str()).unwrap().to_string();
                let mut kafka_headers = OwnedHeaders::new();
                for (name, value) in &headers {
                    kafka_headers = kafka_headers.insert(Header { key: name, value: Some(value) });
                }
                producer.send(BaseRecord::to(topic_of(event_type)).key(&key).payload(&body).headers(kafka_headers)).map_err(|(e, _)| e).unwrap();
                // Pacing the producer, not waiting for causeway.
                std::thread::sleep(Duration::from_millis(1));
            }
            producer.flush(Duration::from_secs(30)).unwrap();
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("causeway.toml");
    // No topics: the model's. A short session, so that the killed member's partitions go to the
    // restarted one in seconds, not in the default 45 s.
    std::fs::write(
        &config,
        format!("[kafka]\nbrokers = \"{brokers}\"\ngroup = \"causeway-test\"\n[kafka.client]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let args = ["--model", &example_model(), "--config", config.to_str().unwrap(), "--clock", "event"];
    let server = Server::start(&data, &args);

    // Some are stored: kill causeway mid-stream, then start it again on the same data.
    wait_until("the source stored nothing", &server.url, || stored(&server.url) >= 100);
    let before = stored(&server.url);
    server.kill();
    go.send(()).unwrap();
    let server = Server::start(&data, &args);
    producer.join().unwrap();
    assert!(before < events.len() as u64, "killed after everything was stored: the crash proves nothing");
    wait_until("not all stored", &server.url, || stored(&server.url) >= events.len() as u64);
    let ready = get(&format!("{}/readyz", server.url));
    assert_eq!(ready["kafka"]["state"], "consuming", "{ready}");
    assert_eq!(ready["kafka"]["assigned"].as_array().map(Vec::len), Some(TOPICS.len() * PARTITIONS as usize), "{ready}");

    // Nothing lost, nothing twice; each with its topic, partition and offset, one event per offset.
    let counts = sql(
        &server.url,
        r#"SELECT count(*), count(DISTINCT event_id), count(DISTINCT topic), count(DISTINCT topic || '/' || partition || '/' || "offset")
           FROM event_lineage"#,
    );
    assert_eq!(counts["rows"][0], json!([events.len(), events.len(), TOPICS.len(), events.len()]), "{counts}");
    // Each event is on its type's topic.
    let misplaced = sql(&server.url, "SELECT event_type, topic FROM event_lineage");
    for row in misplaced["rows"].as_array().unwrap() {
        assert_eq!(row[1], topic_of(row[0].as_str().unwrap()), "{row}");
    }
    // An event shows where it came from.
    let id = events[5]["id"].as_str().or(events[5]["metadata"]["eventId"].as_str()).unwrap();
    let answer = reqwest::blocking::get(format!("{}/v1/events/{id}", server.url)).unwrap();
    let topic = answer.headers().get("causeway-topic").map(|v| v.to_str().unwrap().to_string());
    let offset = answer.headers().get("causeway-offset").map(|v| v.to_str().unwrap().parse::<i64>().unwrap());
    assert!(topic.is_some() && offset.is_some(), "{:?}", answer.headers());

    // The poison message is a DLQ record with its topic, partition and offset; once, though it was
    // perhaps delivered twice; its partition went on past it.
    let dlq = get(&format!("{}/v1/dlq?consumer=causeway", server.url));
    let records = dlq["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{dlq}");
    assert_eq!((&records[0]["source_topic"], &records[0]["source_partition"]), (&json!("payments"), &json!(1)), "{dlq}");
    let poison_offset = records[0]["source_offset"].as_i64().unwrap();
    let after =
        sql(&server.url, &format!(r#"SELECT count(*) FROM event_lineage WHERE topic = 'payments' AND partition = 1 AND "offset" > {poison_offset}"#));
    assert!(after["rows"][0][0].as_u64().unwrap() > 0, "nothing stored after the poison message on its partition: {after}");
    let record = get(&format!("{}/v1/dlq/{}", server.url, records[0]["id"]));
    assert_eq!(record["record"]["context"]["key"], "poison", "{record}");

    // Their journeys are what the offline analysis makes of the same events.
    let log = dir.path().join("events.ndjson");
    let mut sorted = events.clone();
    sorted.sort_by_key(|e| e["time"].as_str().or(e["metadata"]["timestamp"].as_str()).unwrap().to_string());
    std::fs::write(&log, sorted.iter().map(|e| format!("{e}\n")).collect::<String>()).unwrap();
    let out = std::process::Command::new(common::BIN).arg("analyze").arg(&log).args(["--model", &example_model(), "--json"]).output().unwrap();
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary = get(&format!("{}/v1/journeys/summary", server.url));
    assert_eq!(summary["journeys_by_state"], offline["journeys_by_state"], "{summary}");
}

/// A finding as both sides can name it: everything but its id and its wording.
fn canonical(f: &Value) -> String {
    json!([f["kind"], f["journey"], f["key"], f["event_id"], f["expected"], f["rule"], f["detected_at"], f["resolved_at"]]).to_string()
}

fn engine_findings(findings: &[Value]) -> std::collections::BTreeSet<String> {
    const ENGINE: [&str; 6] = ["missing_reaction", "invariant_violation", "stalled", "deadline_missed", "duplicate", "duplicate_effect"];
    findings.iter().filter(|f| ENGINE.contains(&f["kind"].as_str().unwrap_or_default())).map(canonical).collect()
}

#[test]
fn a_backlog_caught_up_from_partitions_raises_only_the_findings_that_happened_in_event_time() {
    let (_cluster, brokers) = broker_with_topics();
    let events = common::traffic(21);
    // The backlog is on the topics before causeway starts: each event on its type's topic, keyed
    // by correlation id (partitioned as producers do), appended as it happened (a partition keeps
    // its producers' order; the simulator's reordering in transit is HTTP's, not a log's).
    let mut appended = events.clone();
    appended.sort_by_key(|e| e["time"].as_str().or(e["metadata"]["timestamp"].as_str()).unwrap().to_string());
    let producer: ThreadedProducer<_> = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    for (i, e) in appended.iter().enumerate() {
        let (headers, body) = message(e, i);
        let event_type = e["type"].as_str().or(e["metadata"]["eventType"].as_str()).unwrap();
        let key = e["correlationid"].as_str().or(e["metadata"]["correlationId"].as_str()).unwrap_or("none").to_string();
        let mut kafka_headers = OwnedHeaders::new();
        for (name, value) in &headers {
            kafka_headers = kafka_headers.insert(Header { key: name, value: Some(value) });
        }
        producer.send(BaseRecord::to(topic_of(event_type)).key(&key).payload(&body).headers(kafka_headers)).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("causeway.toml");
    std::fs::write(&config, format!("[kafka]\nbrokers = \"{brokers}\"\n[lag]\nenabled = false\n")).unwrap();
    // The default clock: a watermark per source of evidence, each partition one of them.
    let server = Server::start(&dir.path().join("data"), &["--model", &example_model(), "--config", config.to_str().unwrap(), "--idle-after", "10s"]);
    wait_until("the backlog is not all read", &server.url, || get(&format!("{}/readyz", server.url))["kafka"]["messages"] == events.len());
    let clock = get(&format!("{}/v1/clock", server.url));
    let partitions = clock["sources"].as_array().unwrap().iter().filter(|s| s["source"].as_str().unwrap().contains('/')).count();
    assert_eq!(partitions, TOPICS.len() * PARTITIONS as usize, "each partition is a source of the clock: {clock}");
    // Once every source is idle, the clock follows the wall clock: everything due is judged.
    wait_until("sources still active", &server.url, || {
        get(&format!("{}/v1/clock", server.url))["sources"].as_array().unwrap().iter().all(|s| s["idle"] == true)
    });
    let live = engine_findings(get(&format!("{}/v1/findings?limit=10000", server.url))["findings"].as_array().unwrap());

    let mut sorted = events.clone();
    sorted.sort_by_key(|e| e["time"].as_str().or(e["metadata"]["timestamp"].as_str()).unwrap().to_string());
    let log = dir.path().join("sorted.ndjson");
    std::fs::write(&log, sorted.iter().map(|e| format!("{e}\n")).collect::<String>()).unwrap();
    let out = std::process::Command::new(common::BIN)
        .arg("analyze")
        .arg(&log)
        .args(["--model", &example_model(), "--until", "now", "--json"])
        .output()
        .unwrap();
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    let offline_findings = engine_findings(offline["findings"].as_array().unwrap());
    let only_live: Vec<&String> = live.difference(&offline_findings).collect();
    let only_offline: Vec<&String> = offline_findings.difference(&live).collect();
    assert!(
        only_live.is_empty() && only_offline.is_empty(),
        "live and offline disagree\nonly live ({}): {:#?}\nonly offline ({}): {:#?}",
        only_live.len(),
        only_live.iter().take(10).collect::<Vec<_>>(),
        only_offline.len(),
        only_offline.iter().take(10).collect::<Vec<_>>()
    );
    assert!(offline_findings.iter().any(|f| f.contains("missing_reaction")), "the traffic raised real findings: {offline_findings:?}");
    let summary = get(&format!("{}/v1/journeys/summary", server.url));
    assert_eq!(summary["journeys_by_state"], offline["journeys_by_state"], "{summary}");
}

#[test]
fn the_demo_drives_its_traffic_through_kafka_topics() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--duration", "12s", "--rate", "100", "--kafka", &brokers, "--data"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("kafka: the producers write to the model's topics on {brokers}")), "{text}");
    // Everything delivered was read from the topics and stored (or refused, or a duplicate).
    let number = |prefix: &str, after: &str| -> u64 {
        let line = text.lines().find(|l| l.trim_start().starts_with(prefix)).unwrap_or_else(|| panic!("no '{prefix}' line: {text}"));
        let rest = &line[line.find(after).unwrap() + after.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let delivered = number("summary:", "summary:");
    let accepted = number("stored", "stored");
    assert!(delivered > 500 && accepted > delivered * 8 / 10, "{text}");
    // The model's topics hold them, with their partitions and offsets.
    let server = Server::start(&dir.path().join("data"), &["--model", dir.path().join("data/model/model.yaml").to_str().unwrap()]);
    let topics = sql(&server.url, r#"SELECT DISTINCT topic FROM event_lineage WHERE "offset" IS NOT NULL ORDER BY 1"#);
    assert_eq!(topics["rows"], json!([["inventory"], ["notifications"], ["orders"], ["payments"], ["shipments"]]), "{topics}");
}
