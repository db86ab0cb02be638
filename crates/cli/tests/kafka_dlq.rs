//! Kafka dead-letter topics and replay to Kafka, against a Kafka-protocol broker in the test
//! process (librdkafka's mock cluster, reached over TCP by the `causeway serve` child):
//! a Spring Kafka, a Kafka Connect and a JSON-envelope dead letter on `payments.dlq` become DLQ
//! records naming the original topic, partition and offset, the error and the consumer, linked to
//! the stored event by its id; a repeat of the same failure is one more attempt on its record; a
//! message the source refuses keeps its key and headers on its record; all of it read again by a restarted causeway (SIGKILL, then a new group that starts at the
//! beginning) adds no record and no attempt. A record replayed to a topic is read back with its
//! original key, headers and value byte for byte and a `causeway-replay` header; its dry run
//! writes nothing; the audit names `kafka:<topic>`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Server;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

/// The event a consumer failed on: structured, written with its own spacing, so that "byte for
/// byte" means something.
const EVENT: &str = r#"{"specversion":"1.0",  "id":"pay-3","source":"billing","type":"PaymentFailed","time":"2026-01-05T10:00:00Z","correlationid":"corr-1","data":{"orderId":"order-1", "amount": 42.5}}"#;
/// The headers it was written with.
fn event_headers() -> Vec<(&'static str, Vec<u8>)> {
    vec![("content-type", b"application/cloudevents+json".to_vec())]
}

/// The headers the failing consumer read it with and kept on its dead letter: one value is not
/// text (a header causeway's source would refuse, a consumer may well not).
fn dead_letter_headers() -> Vec<(&'static str, Vec<u8>)> {
    let mut headers = event_headers();
    headers.push(("x-trace", vec![0, 1, 2, 0xff]));
    headers
}

/// One message to produce.
struct Record {
    topic: &'static str,
    partition: i32,
    key: Option<&'static str>,
    headers: Vec<(&'static str, Vec<u8>)>,
    value: Vec<u8>,
}

fn produce(brokers: &str, records: Vec<Record>) {
    let producer: ThreadedProducer<_> = ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "0").create().unwrap();
    for r in &records {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &r.headers {
            headers = headers.insert(Header { key: name, value: Some(value) });
        }
        let mut record = BaseRecord::to(r.topic).partition(r.partition).payload(&r.value).headers(headers);
        if let Some(key) = r.key {
            record = record.key(key);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
        // One at a time, so that each partition's offsets follow the order written here.
        producer.flush(Duration::from_secs(30)).unwrap();
    }
}

/// A payment event on `payments` partition 1 (the third there, offset 2, is [`EVENT`]).
fn payment(n: usize) -> Record {
    let value = if n == 3 { EVENT.to_string() } else { EVENT.replace("pay-3", &format!("pay-{n}")) };
    Record { topic: "payments", partition: 1, key: Some("order-1"), headers: event_headers(), value: value.into_bytes() }
}

/// Spring Kafka's DeadLetterPublishingRecoverer: the original key, headers and value, and its
/// `kafka_dlt-*` headers (partition a 4-byte and offset an 8-byte big-endian number).
fn spring(message: &str) -> Record {
    let mut headers = dead_letter_headers();
    headers.extend([
        ("kafka_dlt-original-topic", b"payments".to_vec()),
        ("kafka_dlt-original-partition", 1i32.to_be_bytes().to_vec()),
        ("kafka_dlt-original-offset", 2i64.to_be_bytes().to_vec()),
        ("kafka_dlt-original-timestamp", 1_767_607_200_000i64.to_be_bytes().to_vec()),
        ("kafka_dlt-original-consumer-group", b"billing".to_vec()),
        ("kafka_dlt-exception-fqcn", b"org.springframework.kafka.listener.ListenerExecutionFailedException".to_vec()),
        ("kafka_dlt-exception-cause-fqcn", b"com.acme.billing.CardDeclined".to_vec()),
        ("kafka_dlt-exception-message", message.as_bytes().to_vec()),
        (
            "kafka_dlt-exception-stacktrace",
            b"com.acme.billing.CardDeclined: declined\n\tat com.acme.billing.Charger.charge(Charger.java:42)".to_vec(),
        ),
    ]);
    Record { topic: "payments.dlq", partition: 0, key: Some("order-1"), headers, value: EVENT.as_bytes().to_vec() }
}

/// Kafka Connect's dead-letter queue with `errors.deadletterqueue.context.headers.enable`.
fn connect() -> Record {
    let headers = vec![
        ("__connect.errors.topic", b"payments".to_vec()),
        ("__connect.errors.partition", b"1".to_vec()),
        ("__connect.errors.offset", b"2".to_vec()),
        ("__connect.errors.connector.name", b"ledger-sink".to_vec()),
        ("__connect.errors.task.id", b"0".to_vec()),
        ("__connect.errors.stage", b"VALUE_CONVERTER".to_vec()),
        ("__connect.errors.class.name", b"org.apache.kafka.connect.json.JsonConverter".to_vec()),
        ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException".to_vec()),
        ("__connect.errors.exception.message", b"Converting byte[] to Kafka Connect data failed".to_vec()),
        ("__connect.errors.exception.stacktrace", b"org.apache.kafka.connect.errors.DataException: Converting\n\tat ...".to_vec()),
    ];
    Record { topic: "payments.dlq", partition: 0, key: Some("order-1"), headers, value: EVENT.as_bytes().to_vec() }
}

/// A consumer's own JSON envelope.
fn envelope() -> Record {
    let event: Value = serde_json::from_str(EVENT).unwrap();
    let body = json!({
        "event": event,
        "error": {"type": "SmtpTimeout", "message": "smtp.internal timed out after 30 s", "stack": "Traceback (most recent call last): …"},
        "consumer": "notification-service",
        "context": {"topic": "payments", "partition": 1, "offset": 2, "attempt": 3},
    });
    Record { topic: "payments.dlq", partition: 0, key: Some("order-1"), headers: vec![], value: body.to_string().into_bytes() }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

fn get(url: &str) -> Value {
    client().get(url).send().unwrap().json().unwrap()
}

fn post(url: &str, body: Value) -> (u16, Value) {
    let answer = client().post(url).json(&body).send().unwrap();
    (answer.status().as_u16(), answer.json().unwrap())
}

fn wait_until(what: &str, url: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: {}", get(&format!("{url}/readyz")));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// causeway's configuration: the `payments` topic (and so `payments.dlq`), its group, billing's
/// dead letters replayed to `payments.retry`. A short session, so that a restarted member takes
/// over in seconds.
fn write_config(path: &Path, brokers: &str, group: &str) {
    std::fs::write(
        path,
        format!(
            "[kafka]\nbrokers = \"{brokers}\"\ntopics = [\"payments\"]\ngroup = \"{group}\"\n\
             [kafka.client]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
             [consumers.billing]\nreplay_topic = \"payments.retry\"\n"
        ),
    )
    .unwrap();
}

fn cluster() -> (MockCluster<'static, rdkafka::producer::DefaultProducerContext>, String) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("payments", 2, 1).unwrap();
    cluster.create_topic("payments.dlq", 1, 1).unwrap();
    cluster.create_topic("payments.retry", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    (cluster, brokers)
}

/// `causeway serve`; the lag monitor, which the mock cluster cannot serve (it has no
/// `__consumer_offsets`), kept quiet.
fn start(data: &Path, args: &[&str]) -> Server {
    let mut command = std::process::Command::new(common::BIN);
    command.env("CAUSEWAY_LOG", "warn,causeway_server::lag=error");
    Server::start_with(command, data, args)
}

/// The records of the failed event, by consumer.
fn records_of_event(url: &str) -> Vec<Value> {
    let mut records = get(&format!("{url}/v1/dlq?event_id=pay-3"))["records"].as_array().cloned().unwrap_or_default();
    records.sort_by_key(|r| r["consumer"].as_str().unwrap_or_default().to_string());
    records
}

#[test]
fn dead_letters_on_a_dlq_topic_become_records_once_each_across_a_crash() {
    let (_cluster, brokers) = cluster();
    // A message the source itself refuses, on the other partition.
    let poison = Record {
        topic: "payments",
        partition: 0,
        key: Some("poison"),
        headers: vec![("x-origin", b"batch-7".to_vec())],
        value: b"{not json".to_vec(),
    };
    produce(
        &brokers,
        vec![payment(1), payment(2), payment(3), poison, spring("card declined"), connect(), envelope(), spring("card declined again")],
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("causeway.toml");
    write_config(&config, &brokers, "causeway-dlq");
    let data = dir.path().join("data");
    let args = ["--config", config.to_str().unwrap()];
    let server = start(&data, &args);

    // The event is stored; the four dead letters are three records, the repeat one more attempt.
    wait_until("the dead letters are not all recorded", &server.url, || {
        let records = records_of_event(&server.url);
        records.len() == 3 && records[0]["attempts"] == 2
    });
    wait_until("the event is not stored", &server.url, || client().get(format!("{}/v1/events/pay-3", server.url)).send().unwrap().status() == 200);
    let records = records_of_event(&server.url);
    let origin = |r: &Value| (r["source_topic"].clone(), r["source_partition"].clone(), r["source_offset"].clone());
    for r in &records {
        assert_eq!(origin(r), (json!("payments"), json!(1), json!(2)), "{r}");
        assert_eq!((&r["event_id"], &r["event_type"], &r["correlation_id"]), (&json!("pay-3"), &json!("PaymentFailed"), &json!("corr-1")), "{r}");
        assert_eq!(r["status"], "pending", "{r}");
    }
    // The stored event is where the records say it failed.
    let stored =
        post(&format!("{}/v1/sql", server.url), json!({"query": "SELECT topic, partition, \"offset\" FROM event_lineage WHERE event_id = 'pay-3'"}));
    assert_eq!(stored.1["rows"], json!([["payments", 1, 2]]), "{stored:?}");

    let [billing, ledger, notification] = &records[..] else { panic!("{records:?}") };
    assert_eq!(billing["consumer"], "billing");
    assert_eq!((&billing["error_type"], &billing["error_message"]), (&json!("com.acme.billing.CardDeclined"), &json!("card declined again")));
    assert_eq!(billing["attempts"], 2);
    assert_eq!(ledger["consumer"], "ledger-sink");
    assert_eq!(
        (&ledger["error_type"], &ledger["error_message"], &ledger["attempts"]),
        (&json!("org.apache.kafka.connect.errors.DataException"), &json!("Converting byte[] to Kafka Connect data failed"), &json!(1))
    );
    assert_eq!(notification["consumer"], "notification-service");
    assert_eq!((&notification["error_type"], &notification["error_message"]), (&json!("SmtpTimeout"), &json!("smtp.internal timed out after 30 s")));

    // One record in full: the original as it was, its key and headers (the dead letter's own
    // headers kept apart), where the dead letter was read.
    let one = get(&format!("{}/v1/dlq/{}", server.url, billing["id"]));
    let record = &one["record"];
    assert_eq!(record["original_event"], serde_json::from_str::<Value>(EVENT).unwrap(), "{one}");
    assert_eq!(record["original_key"], json!({"value": "order-1", "encoding": "utf-8"}), "{one}");
    assert_eq!(
        record["original_headers"],
        json!([
            {"name": "content-type", "value": "application/cloudevents+json", "encoding": "utf-8"},
            {"name": "x-trace", "value": "AAEC/w==", "encoding": "base64"},
        ]),
        "{one}"
    );
    assert!(record["stack"].as_str().unwrap().starts_with("com.acme.billing.CardDeclined"), "{one}");
    assert_eq!(record["context"]["dead_letter"]["topic"], "payments.dlq", "{one}");
    assert_eq!(record["context"]["dead_letter"]["format"], "spring_kafka", "{one}");
    assert_eq!(record["context"]["headers"]["kafka_dlt-original-offset"], 2, "{one}");
    assert_eq!(one["replay_target"], "kafka:payments.retry", "{one}");
    let original = client().get(format!("{}/v1/dlq/{}/original", server.url, billing["id"])).send().unwrap().bytes().unwrap();
    assert_eq!(&original[..], EVENT.as_bytes());
    let envelope_record = get(&format!("{}/v1/dlq/{}", server.url, notification["id"]));
    assert_eq!(envelope_record["record"]["context"]["attempt"], 3, "{envelope_record}");
    assert_eq!(envelope_record["record"]["context"]["dead_letter"]["format"], "json_envelope", "{envelope_record}");
    // Filtering by the original topic finds them, not by the dead-letter topic.
    assert_eq!(get(&format!("{}/v1/dlq?source_topic=payments&consumer=billing", server.url))["records"].as_array().unwrap().len(), 1);
    assert_eq!(get(&format!("{}/v1/dlq?source_topic=payments.dlq", server.url))["records"].as_array().unwrap().len(), 0);

    // The refused message's record keeps its key and headers too.
    let refused = get(&format!("{}/v1/dlq?consumer=causeway", server.url))["records"].as_array().cloned().unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let refused_id = refused[0]["id"].clone();
    wait_until("the refused message's key is not kept", &server.url, || {
        get(&format!("{}/v1/dlq/{refused_id}", server.url))["record"]["original_key"] == json!({"value": "poison", "encoding": "utf-8"})
    });
    let refused = get(&format!("{}/v1/dlq/{refused_id}", server.url));
    assert_eq!(refused["record"]["original_headers"], json!([{"name": "x-origin", "value": "batch-7", "encoding": "utf-8"}]), "{refused}");
    let all = get(&format!("{}/v1/dlq", server.url));

    // SIGKILL, and a causeway whose new group reads every message again from the start: the
    // events are duplicates, the dead letters change nothing.
    server.kill();
    write_config(&config, &brokers, "causeway-dlq-again");
    let server = start(&data, &args);
    wait_until("the topics are not read again", &server.url, || get(&format!("{}/readyz", server.url))["kafka"]["messages"].as_u64() >= Some(8));
    assert_eq!(records_of_event(&server.url), records, "a redelivered dead letter changed the records");
    assert_eq!(get(&format!("{}/v1/dlq", server.url)), all, "a redelivered message changed the DLQ");
    let events = post(&format!("{}/v1/sql", server.url), json!({"query": "SELECT count(*) FROM event_lineage"}));
    assert_eq!(events.1["rows"], json!([[3]]), "{events:?}");
}

#[test]
fn a_record_replayed_to_a_topic_is_read_back_as_it_was_with_its_replay_header() {
    let (_cluster, brokers) = cluster();
    produce(&brokers, vec![spring("card declined")]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("causeway.toml");
    write_config(&config, &brokers, "causeway-replay");
    let server = start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    wait_until("the dead letter is not recorded", &server.url, || records_of_event(&server.url).len() == 1);
    let id = records_of_event(&server.url)[0]["id"].as_i64().unwrap();
    let replay = format!("{}/v1/dlq/{id}/replay", server.url);

    // The dry run says what would be written, and writes nothing.
    let (status, dry) = post(&replay, json!({"dry_run": true, "actor": "alice"}));
    assert_eq!((status, &dry["outcome"], &dry["target"]), (200, &json!("dry_run"), &json!("kafka:payments.retry")), "{dry}");
    assert_eq!((&dry["request"]["kafka_topic"], &dry["request"]["key"]), (&json!("payments.retry"), &json!("order-1")), "{dry}");
    assert_eq!(
        dry["request"]["headers"][2],
        json!({"name": "causeway-replay", "value": format!("dlq-record={id}; actor=alice"), "value_encoding": "utf-8"})
    );
    let reader: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &brokers).set("group.id", "replay-reader").set("enable.auto.commit", "false").create().unwrap();
    let (low, high) = reader.fetch_watermarks("payments.retry", 0, Duration::from_secs(10)).unwrap();
    assert_eq!((low, high), (0, 0), "the dry run wrote to the topic");

    // The replay: acknowledged by the broker at a partition and offset, audited, replayed.
    let (status, done) = post(&replay, json!({"actor": "alice"}));
    assert_eq!(
        (status, &done["outcome"], &done["target"], &done["status"]),
        (200, &json!("sent"), &json!("kafka:payments.retry"), &json!("replayed")),
        "{done}"
    );
    assert_eq!((&done["partition"], &done["offset"]), (&json!(0), &json!(0)), "{done}");

    // Read back: the original key, headers and value, and the replay header.
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset("payments.retry", 0, Offset::Beginning).unwrap();
    reader.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let message = loop {
        assert!(Instant::now() < deadline, "the replay was not read back");
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => break m.detach(),
            Some(Err(e)) => panic!("reading the replay: {e}"),
            None => {}
        }
    };
    assert_eq!(message.payload(), Some(EVENT.as_bytes()), "the value is not the original byte for byte");
    assert_eq!(message.key(), Some(&b"order-1"[..]));
    let headers: Vec<(String, Vec<u8>)> =
        message.headers().unwrap().iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect();
    let mut expected: Vec<(String, Vec<u8>)> = dead_letter_headers().into_iter().map(|(n, v)| (n.to_string(), v)).collect();
    expected.push(("causeway-replay".into(), format!("dlq-record={id}; actor=alice").into_bytes()));
    assert_eq!(headers, expected);
    assert_eq!(reader.fetch_watermarks("payments.retry", 0, Duration::from_secs(10)).unwrap(), (0, 1), "more than one message was written");

    // The audit: the dry run and the replay, both to kafka:payments.retry, the replay with where it was written.
    let record = get(&format!("{}/v1/dlq/{id}", server.url));
    let replays = record["replays"].as_array().unwrap();
    assert_eq!(replays.len(), 2, "{record}");
    assert_eq!(
        (&replays[0]["outcome"], &replays[0]["target"], &replays[0]["dry_run"]),
        (&json!("dry_run"), &json!("kafka:payments.retry"), &json!(true))
    );
    assert_eq!(
        (&replays[1]["outcome"], &replays[1]["target"], &replays[1]["actor"], &replays[1]["partition"], &replays[1]["offset"]),
        (&json!("sent"), &json!("kafka:payments.retry"), &json!("alice"), &json!(0), &json!(0))
    );
    assert_eq!(record["record"]["status"], "replayed");
    // Sent once: again only with force.
    let (status, again) = post(&replay, json!({"actor": "alice"}));
    assert_eq!((status, &again["error"]["code"]), (409, &json!("already_replayed")), "{again}");
}

#[test]
fn a_replay_topic_without_the_kafka_source_is_refused_at_start_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("causeway.toml");
    std::fs::write(&config, "[consumers.billing]\nreplay_topic = \"payments.retry\"\n").unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[consumers.billing] replay_topic = \"payments.retry\" publishes replays through the Kafka source"), "{stderr}");
    std::fs::write(&config, "[kafka]\nbrokers = \"127.0.0.1:9\"\ntopics = [\"payments\"]\ndlq_topics = \"{topic}/dlq\"\n").unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("[kafka] dlq_topics: \"{topic}/dlq\" is not a topic name"), "{stderr}");
}
