//! PII redaction on every ingest path and in every export (the security issue's acceptance:
//! "grepping the data directory and all exports after ingesting PII-bearing events over every
//! ingest path finds no raw PII value").
//!
//! A model of the test's own declares `pii` pointers — top-level, nested, inside an array, a
//! number — and one `causeway serve` child takes PII-bearing events over HTTP (structured, plain
//! JSON, batch, metadata/payload, binary mode with JSON, text and bytes, NDJSON by POST and by
//! `causeway ingest`), flagged ones (schema error, unknown type), refused ones (no correlation id,
//! no type, malformed JSON, a malformed binary body, text that is not UTF-8, an event, a batch and
//! a body over the limits, a body nested too deep), consumers' failure reports (`POST /v1/dlq`),
//! Kafka (librdkafka's mock cluster: binary, structured and hand-rolled messages, refused ones, a
//! JSON-envelope and a Spring dead letter on `{topic}.dlq`) and NATS JetStream (the machine's
//! server), with enough traffic that part of the history is sealed into compressed segments.
//! Then every byte of the data directory (while running and after a graceful stop), every SQL
//! table and view read whole, every API answer and page about those events and records, the
//! CLI's outputs, the DLQ replays as the replay target receives them, the notifier's webhook
//! payloads and the server's log are searched for every raw PII value: none may be there.
//!
//! The search can fail: every PII value carries one marker (`piimark…`), and the numeric one is
//! sixteen random digits; each event carries a non-PII `note` with another marker (`ctlmark…`)
//! that the same search must find, per ingest path, in what was stored (the positive control);
//! and the keyed hash of a PII value, computed here from the data directory's key, must be where
//! the value was (the field was replaced, not dropped).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use chrono::Utc;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde_json::{Value, json};

/// The model: PII at the top level (`/customerEmail`), nested (`/customer/email`,
/// `/customer/phone`), inside an array (`/contacts/0/phone`, a number) and in a second type.
const MODEL: &str = r#"
name: pii-shop
contexts:
  ordering: {owner: team-orders, services: [order-service]}
  shipping: {owner: team-shipping, services: [shipping-service]}
events:
  OrderPlaced:
    context: ordering
    topic: pii-orders
    schema:
      type: object
      required: [orderId]
      properties:
        orderId: {type: string}
        amount: {type: number, minimum: 0}
        customer: {type: object, oneOf: [{required: [email]}, {required: [phone]}]}
    pii: [/customerEmail, /customer/email, /customer/phone, /contacts/0/phone]
  OrderShipped:
    context: shipping
    topic: pii-shipments
    schema: {type: object, required: [orderId], properties: {orderId: {type: string}}}
    pii: [/recipient]
policies:
  ship-after-order: {when: OrderPlaced, then: [OrderShipped], within: 1h}
journeys:
  order:
    key: /orderId
    milestones: [OrderPlaced, OrderShipped]
    outcomes: {shipped: [OrderShipped]}
read_models:
  Order:
    key: /orderId
    on:
      OrderPlaced: {merge: /, set: {status: placed}}
      OrderShipped: {set: {status: shipped, recipient: /recipient}}
"#;

/// Limits small enough to refuse a batch, an event and a body for their size, large enough for
/// the bulk batches.
const MAX_BATCH_EVENTS: usize = 700;
const MAX_EVENT_BYTES: usize = 65_536;
const MAX_REQUEST_BYTES: usize = 1_048_576;
/// Bulk traffic: enough log positions that the oldest 1,000 are sealed (`segment_events` plus the
/// half of it kept hot).
const BULK_BATCHES: usize = 3;
const BULK_BATCH: usize = 600;

/// The run's markers and PII values.
struct Pii {
    /// In every PII string value.
    marker: String,
    /// In every non-PII `note`.
    control: String,
    /// The numeric PII value (`/contacts/0/phone`), sixteen digits.
    number: u64,
}

impl Pii {
    fn new() -> Pii {
        let micros = Utc::now().timestamp_micros().unsigned_abs();
        let tag = format!("{:x}{:x}", std::process::id(), micros);
        Pii { marker: format!("piimark{tag}"), control: format!("ctlmark{tag}"), number: 4_477_000_000_000_000 + micros % 1_000_000_000_000 }
    }
    fn email(&self, label: &str) -> String {
        format!("{}-{label}@example.com", self.marker)
    }
    fn phone(&self, label: &str) -> String {
        format!("+44 7700 {}-{label}", self.marker)
    }
    fn name(&self, label: &str) -> String {
        format!("Ann {} {label}", self.marker)
    }
    /// Ends in `~`, so that no label's note is a prefix of another's.
    fn note(&self, label: &str) -> String {
        format!("{}-{label}~", self.control)
    }
    /// What must never be found.
    fn needles(&self) -> Vec<String> {
        vec![self.marker.clone(), self.number.to_string()]
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// An order's payload: every PII pointer of OrderPlaced, and a note.
fn order_data(p: &Pii, label: &str) -> Value {
    json!({"orderId": format!("o-{label}"), "amount": 10, "note": p.note(label), "customerEmail": p.email(label),
           "customer": {"email": p.email(label), "tier": "gold"}, "contacts": [{"phone": p.number, "kind": "mobile"}]})
}

/// A structured OrderPlaced CloudEvent.
fn order(p: &Pii, label: &str) -> Value {
    json!({"specversion": "1.0", "id": format!("ev-{label}"), "source": "order-service", "type": "OrderPlaced", "time": now(),
           "correlationid": format!("corr-{label}"), "data": order_data(p, label)})
}

/// A structured OrderShipped CloudEvent.
fn shipped(p: &Pii, label: &str, order_label: &str) -> Value {
    json!({"specversion": "1.0", "id": format!("ev-{label}"), "source": "shipping-service", "type": "OrderShipped", "time": now(),
           "correlationid": format!("corr-{order_label}"), "causationid": format!("ev-{order_label}"),
           "data": {"orderId": format!("o-{order_label}"), "recipient": p.name(label), "note": p.note(label)}})
}

// --- the server and its neighbours ---------------------------------------------------------------

/// `causeway serve`, as chatty as causeway gets, with its log (standard error) kept in a file.
fn serve(data: &Path, log: &Path, args: &[&str]) -> common::Server {
    let mut command = Command::new(common::BIN);
    command.env("CAUSEWAY_LOG", "info,causeway=trace,causeway_server=trace,causeway_store=trace,causeway_journey=trace,causeway_server::lag=error");
    common::Server::start_logged(command, data, args, log)
}

/// SIGTERM, and wait for the graceful stop (the WAL checkpointed into the database).
fn stop(mut server: common::Server) {
    let pid = libc::pid_t::try_from(server.child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "causeway serve stopped with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "causeway serve did not stop within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A JetStream stream of the test's own, deleted when dropped.
struct NatsStream {
    name: String,
    prefix: String,
}

impl NatsStream {
    fn create() -> NatsStream {
        let unique = format!("{}{}", std::process::id(), Utc::now().timestamp_micros());
        let s = NatsStream { name: format!("PIITEST{unique}"), prefix: format!("piitest{unique}") };
        block_on(async {
            let js = jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await.expect("NATS with JetStream on 127.0.0.1:4222"));
            js.create_stream(stream::Config {
                name: s.name.clone(),
                subjects: vec![format!("{}.>", s.prefix)],
                storage: stream::StorageType::Memory,
                ..Default::default()
            })
            .await
            .unwrap();
        });
        s
    }

    fn publish(&self, subject: &str, headers: &[(&str, String)], body: Vec<u8>) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.as_str());
        }
        let subject = format!("{}.{subject}", self.prefix);
        block_on(async {
            let js = jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await.unwrap());
            js.publish_with_headers(subject, map, body.into()).await.unwrap().await.unwrap();
        });
    }
}

impl Drop for NatsStream {
    fn drop(&mut self) {
        let name = self.name.clone();
        block_on(async move {
            if let Ok(client) = async_nats::connect("nats://127.0.0.1:4222").await {
                let _ = jetstream::new(client).delete_stream(&name).await;
            }
        });
    }
}

/// Headers as `produce` takes them.
fn refs(headers: &[(String, Vec<u8>)]) -> Vec<(&str, Vec<u8>)> {
    headers.iter().map(|(n, b)| (n.as_str(), b.clone())).collect()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// A Kafka message: topic, key, headers, value.
type KafkaMessage<'a> = (&'a str, Option<&'a str>, Vec<(&'a str, Vec<u8>)>, Vec<u8>);

fn produce(brokers: &str, messages: Vec<KafkaMessage>) {
    let producer: ThreadedProducer<_> = ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "0").create().unwrap();
    for (topic, key, headers, value) in &messages {
        let mut kafka_headers = OwnedHeaders::new();
        for (name, v) in headers {
            kafka_headers = kafka_headers.insert(Header { key: name, value: Some(v) });
        }
        let mut record = BaseRecord::to(topic).payload(value).headers(kafka_headers);
        if let Some(key) = key {
            record = record.key(*key);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// CloudEvents attributes as binding headers (`ce_` for Kafka, `ce-` for NATS and HTTP), the data
/// apart.
fn ce_headers(event: &Value, prefix: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let mut headers = Vec::new();
    for (name, value) in event.as_object().unwrap() {
        if name != "data" {
            headers.push((format!("{prefix}{name}"), value.as_str().map_or_else(|| value.to_string(), str::to_owned)));
        }
    }
    (headers, event["data"].to_string().into_bytes())
}

// --- HTTP ----------------------------------------------------------------------------------------

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// What left causeway, by where it was read: searched for PII at the end.
#[derive(Default)]
struct Exports(Vec<(String, Vec<u8>)>);

impl Exports {
    fn add(&mut self, what: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.0.push((what.into(), bytes.into()));
    }

    /// GET, kept; the answer as JSON (Null when it is not).
    fn get(&mut self, url: &str, path: &str) -> Value {
        let answer = client().get(format!("{url}{path}")).send().unwrap();
        let status = answer.status();
        let headers = format!("{:?}", answer.headers());
        let bytes = answer.bytes().unwrap().to_vec();
        assert!(status.is_success(), "GET {path}: {status}: {}", String::from_utf8_lossy(&bytes));
        self.add(format!("GET {path} (headers)"), headers);
        self.add(format!("GET {path}"), bytes.clone());
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    /// POST JSON, kept; status and answer.
    fn post(&mut self, url: &str, path: &str, body: &Value) -> (u16, Value) {
        let answer = client().post(format!("{url}{path}")).json(body).send().unwrap();
        let status = answer.status().as_u16();
        let bytes = answer.bytes().unwrap().to_vec();
        self.add(format!("POST {path}"), bytes.clone());
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Ingest: POST /v1/events with a content type and headers; the answer is kept (a producer
    /// reads its findings there).
    fn ingest(&mut self, url: &str, label: &str, content_type: &str, headers: &[(String, String)], body: Vec<u8>) -> (u16, Value) {
        let mut request = client().post(format!("{url}/v1/events")).header("content-type", content_type);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        match request.body(body).send() {
            Ok(answer) => {
                let status = answer.status().as_u16();
                let bytes = answer.bytes().unwrap_or_default().to_vec();
                self.add(format!("ingest answer ({label})"), bytes.clone());
                (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
            }
            // A body refused before it was read whole may end the connection under the upload.
            Err(e) => (0, json!({"error": e.to_string()})),
        }
    }

    /// Every table and view of the store, read whole over `POST /v1/sql`, page by page.
    fn sql_dump(&mut self, url: &str) -> BTreeMap<String, String> {
        let (_, names) = self.post(url, "/v1/sql", &json!({"query": "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"}));
        let mut names: Vec<String> = names["rows"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap().to_string()).collect();
        // `events` is a virtual table over the hot and the sealed events, made per connection.
        names.push("events".into());
        for needed in ["events", "dlq", "dlq_events", "findings", "finding_records", "event_lineage", "dlq_replays"] {
            assert!(names.iter().any(|n| n == needed), "no {needed} among {names:?}");
        }
        let mut dumps = BTreeMap::new();
        for name in names {
            let mut text = String::new();
            for page in 0.. {
                let query = format!("SELECT * FROM \"{name}\" LIMIT 2000 OFFSET {}", page * 2000);
                let (status, answer) = self.post(url, "/v1/sql", &json!({"query": query}));
                text.push_str(&answer.to_string());
                if status != 200 {
                    assert!(!["events", "dlq", "dlq_events", "findings", "finding_records"].contains(&name.as_str()), "{query}: {answer}");
                    break;
                }
                if answer["rows"].as_array().map_or(0, Vec::len) < 2000 {
                    break;
                }
            }
            dumps.insert(name, text);
        }
        dumps
    }
}

/// The `causeway` CLI, its output kept.
fn cli(exports: &mut Exports, args: &[&str]) -> Output {
    let out = Command::new(common::BIN).args(args).output().unwrap();
    assert!(out.status.success(), "causeway {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    exports.add(format!("causeway {}", args.join(" ")), [out.stdout.clone(), out.stderr.clone()].concat());
    out
}

fn wait_until(what: &str, url: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: {}", common::get(&format!("{url}/readyz")));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            // A file the server removed between listing and reading (a WAL checkpointed) is gone.
            out.push((path, bytes));
        }
    }
    out
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut bits, mut count) = (Vec::new(), 0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

fn find(haystack: &[u8], needle: &str) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle.as_bytes())
}

/// Where each needle is found, with the text around it.
fn leaks(what: &str, bytes: &[u8], needles: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for needle in needles {
        if let Some(at) = find(bytes, needle) {
            let (from, to) = (at.saturating_sub(160), (at + needle.len() + 160).min(bytes.len()));
            found.push(format!("{what}: raw PII {needle:?} in …{}…", String::from_utf8_lossy(&bytes[from..to])));
        }
    }
    found
}

#[test]
fn no_raw_pii_value_is_stored_or_leaves_causeway_on_any_path() {
    let p = Pii::new();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.yaml");
    std::fs::write(&model, MODEL).unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");

    // Kafka: the model's topics and their dead-letter topics.
    let cluster = MockCluster::new(1).unwrap();
    for topic in ["pii-orders", "pii-shipments", "pii-orders.dlq", "pii-shipments.dlq"] {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    let brokers = cluster.bootstrap_servers();
    let nats = NatsStream::create();
    let (replay_url, replayed) = common::receiver("/replay");
    let (hook_url, hooked) = common::receiver("/hook");
    let config = dir.path().join("causeway.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nsegment_events = 1000\n\
             [consumers.mailer]\nreplay_url = \"{replay_url}\"\n[consumers.shipper]\nreplay_url = \"{replay_url}\"\n\
             [kafka]\nbrokers = \"{brokers}\"\ngroup = \"pii-test\"\n[lag]\nenabled = false\n\
             [nats]\nurl = \"nats://127.0.0.1:4222\"\nstream = \"{}\"\nsubjects = [\"{}.>\"]\n\
             [notify]\ninterval = \"500ms\"\n[[notify.webhook]]\nurl = \"{hook_url}\"\nformat = \"plain\"\n",
            nats.name, nats.prefix
        ),
    )
    .unwrap();
    let limits = [
        ("--max-batch-events", MAX_BATCH_EVENTS.to_string()),
        ("--max-event-bytes", MAX_EVENT_BYTES.to_string()),
        ("--max-request-bytes", MAX_REQUEST_BYTES.to_string()),
    ];
    let mut args = vec!["--model".to_string(), model.to_str().unwrap().to_string(), "--config".into(), config.to_str().unwrap().into()];
    args.extend(limits.iter().flat_map(|(flag, n)| [flag.to_string(), n.clone()]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = serve(&data, &log, &args);
    let url = server.url.clone();
    let mut x = Exports::default();
    // The notifier's first round records the finding kinds present (none) as its baseline, so
    // that the kinds this test raises are announced to the webhook.
    wait_until("the notifier has not judged once", &url, || common::get(&format!("{url}/v1/alerts"))["evaluations"].as_u64() >= Some(1));

    // Labels of the inputs that must be stored (events or DLQ records), each with its note.
    let mut labels: Vec<String> = Vec::new();
    let mut label = |l: &str| {
        labels.push(l.to_string());
        l.to_string()
    };

    // --- HTTP ingest: accepted ------------------------------------------------------------------
    let l = label("single");
    let (status, _) = x.ingest(&url, &l, "application/cloudevents+json", &[], order(&p, &l).to_string().into_bytes());
    assert_eq!(status, 200);
    let l = label("plain");
    let (status, _) = x.ingest(&url, &l, "application/json", &[], order(&p, &l).to_string().into_bytes());
    assert_eq!(status, 200);
    let (b1, b2, bmeta) = (label("batch-1"), label("batch-2"), label("batch-meta"));
    let meta = json!({"metadata": {"eventId": "ev-batch-meta", "eventType": "OrderPlaced", "timestamp": now(), "source": "order-service",
                      "correlationId": "corr-batch-meta"}, "payload": order_data(&p, &bmeta)});
    let batch = json!([order(&p, &b1), shipped(&p, &b2, &b1), meta]);
    let (status, answer) = x.ingest(&url, "batch", "application/cloudevents-batch+json", &[], batch.to_string().into_bytes());
    assert_eq!((status, &answer["accepted"]), (200, &json!(3)), "{answer}");
    // Binary mode: a JSON body, JSON sent as text, JSON sent as bytes.
    for (l, content_type) in
        [(label("binary"), "application/json"), (label("binary-text"), "text/plain"), (label("binary-bytes"), "application/octet-stream")]
    {
        let (headers, body) = ce_headers(&order(&p, &l), "ce-");
        let (status, answer) = x.ingest(&url, &l, content_type, &headers, body);
        assert!(status == 200 && answer["accepted"] == 1, "{l}: {answer}");
    }
    // NDJSON, by POST and by `causeway ingest`.
    let (n1, n2) = (label("ndjson-1"), label("ndjson-2"));
    let ndjson = format!("{}\n{}\n", order(&p, &n1), shipped(&p, &n2, &n1));
    let (status, _) = x.ingest(&url, "ndjson", "application/x-ndjson", &[], ndjson.into_bytes());
    assert_eq!(status, 200);
    let (c1, c2) = (label("cli-ingest-1"), label("cli-ingest-2"));
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, format!("{}\n{}\n", order(&p, &c1), shipped(&p, &c2, &c1))).unwrap();
    cli(&mut x, &["ingest", file.to_str().unwrap(), "--server", &url]);

    // --- HTTP ingest: flagged (stored with a finding) -------------------------------------------
    // A schema error above a PII field (a rule of /customer quotes the object), and a number
    // below its minimum.
    let l = label("schema-error");
    let mut invalid = order(&p, &l);
    invalid["data"]["customer"]["phone"] = json!(p.phone(&l));
    invalid["data"]["amount"] = json!(-1);
    let (status, answer) = x.ingest(&url, &l, "application/cloudevents+json", &[], invalid.to_string().into_bytes());
    assert!(status == 200 && answer["results"][0]["findings"][0]["kind"] == "schema_error", "{answer}");
    // A type the model does not know: every pointer of the model applies.
    let l = label("unknown-type");
    let mut unknown = order(&p, &l);
    unknown["type"] = json!("OrderPlacedV2");
    unknown["data"]["recipient"] = json!(p.name(&l));
    let (status, answer) = x.ingest(&url, &l, "application/cloudevents+json", &[], unknown.to_string().into_bytes());
    assert!(status == 200 && answer["results"][0]["findings"][0]["kind"] == "unknown_event_type", "{answer}");

    // --- HTTP ingest: refused (kept as DLQ records) ---------------------------------------------
    let l = label("no-correlation");
    let mut uncorrelated = order(&p, &l);
    uncorrelated.as_object_mut().unwrap().remove("correlationid");
    let l2 = label("no-type");
    let mut untyped = shipped(&p, &l2, "single");
    untyped.as_object_mut().unwrap().remove("type");
    let l3 = label("malformed-line");
    let malformed = format!(
        "{{\"specversion\": \"1.0\", \"type\": \"OrderPlaced\", \"data\": {{\"note\": \"{}\", \"customer\": {{\"email\": \"{}\",}}, \"contacts\": [{{\"phone\": {}}}]",
        p.note(&l3),
        p.email(&l3),
        p.number
    );
    let l4 = label("not-utf8");
    let mut latin1 = order(&p, &l4);
    latin1["data"]["tier"] = json!("M\u{fc}ller");
    let latin1 = latin1.to_string().replace('\u{fc}', "\u{1}").into_bytes().iter().map(|b| if *b == 1 { 0xfc } else { *b }).collect::<Vec<u8>>();
    let mut lines = format!("{uncorrelated}\n{untyped}\n{malformed}\n").into_bytes();
    lines.extend(latin1);
    lines.push(b'\n');
    let (status, answer) = x.ingest(&url, "refused lines", "application/x-ndjson", &[], lines);
    assert!(status == 400 && answer["rejected"] == 4, "{answer}");
    // Whole bodies: malformed JSON, a malformed binary-mode body, too deep, too many events, too
    // large; an event over its limit.
    let l = label("malformed-body");
    let body = format!(
        "{{\"specversion\": \"1.0\", \"id\": \"ev-{l}\", \"type\": \"OrderPlaced\", \"data\": {{\"note\": \"{}\", \"customerEmail\": \"{}\"",
        p.note(&l),
        p.email(&l)
    );
    let (status, _) = x.ingest(&url, &l, "application/json", &[], body.into_bytes());
    assert_eq!(status, 400);
    let l = label("binary-malformed");
    let (headers, _) = ce_headers(&order(&p, &l), "ce-");
    let body = format!("{{\"note\": \"{}\", \"customer\": {{\"email\": \"{}\"", p.note(&l), p.email(&l));
    let (status, _) = x.ingest(&url, &l, "application/json", &headers, body.into_bytes());
    assert_eq!(status, 400);
    let l = label("too-deep");
    let mut deep = order(&p, &l);
    let mut nest = json!("bottom");
    for _ in 0..70 {
        nest = json!({"n": nest});
    }
    deep["data"]["nest"] = nest;
    let (status, _) = x.ingest(&url, &l, "application/cloudevents+json", &[], deep.to_string().into_bytes());
    assert_eq!(status, 400);
    let l = label("too-many");
    let mut many = vec![order(&p, &l)];
    many.extend((0..MAX_BATCH_EVENTS).map(|i| json!({"specversion": "1.0", "id": format!("filler-{i}")})));
    let (status, _) = x.ingest(&url, &l, "application/cloudevents-batch+json", &[], json!(many).to_string().into_bytes());
    assert_eq!(status, 413);
    let l = label("too-large");
    let mut large = format!("[{}", order(&p, &l)).into_bytes();
    while large.len() <= MAX_REQUEST_BYTES + 10_000 {
        large.extend(format!(",{}", order(&p, &format!("{l}-pad"))).into_bytes());
    }
    large.push(b']');
    x.ingest(&url, &l, "application/cloudevents-batch+json", &[], large);
    let l = label("event-too-large");
    let mut big = order(&p, &l);
    big["data"]["padding"] = json!("x".repeat(MAX_EVENT_BYTES));
    let (status, _) = x.ingest(&url, &l, "application/cloudevents+json", &[], big.to_string().into_bytes());
    assert_eq!(status, 400);

    // --- consumers' failure reports (POST /v1/dlq) ----------------------------------------------
    let l = label("report");
    let report = json!({"event": order(&p, &l), "consumer": "mailer", "source_topic": "pii-orders", "error_type": "SmtpRejected",
        "error_message": format!("550 mailbox {} unavailable", p.email(&l)),
        "stack": format!("SmtpRejected: {}\n\tat send(mailer.py:42) contact {}", p.email(&l), p.number),
        "context": {"attempt": 3, "to": p.email(&l)}});
    let (status, reported) = x.post(&url, "/v1/dlq", &report);
    assert_eq!(status, 201, "{reported}");
    let report_id = reported["id"].as_i64().unwrap();
    // A bare payload, no type: every pointer of the model.
    let l = label("report-payload");
    let (status, reported) =
        x.post(&url, "/v1/dlq", &json!({"event": order_data(&p, &l), "consumer": "mailer", "error_type": "KeyError", "error_message": "'orderId'"}));
    assert_eq!(status, 201, "{reported}");
    let payload_report_id = reported["id"].as_i64().unwrap();

    // --- Kafka ----------------------------------------------------------------------------------
    let mut kafka: Vec<KafkaMessage> = Vec::new();
    let owned = |pairs: Vec<(String, String)>| -> Vec<(String, Vec<u8>)> { pairs.into_iter().map(|(n, v)| (n, v.into_bytes())).collect() };
    let l = label("kafka-binary");
    let (h, body) = ce_headers(&order(&p, &l), "ce_");
    let kafka_binary = owned(h);
    let l = label("kafka-structured");
    let kafka_structured = order(&p, &l).to_string().into_bytes();
    let l = label("kafka-handrolled");
    let hand = order(&p, &l);
    let handrolled: Vec<(String, Vec<u8>)> =
        [("event-id", "id"), ("event-type", "type"), ("source-service", "source"), ("correlation-id", "correlationid"), ("event-time", "time")]
            .iter()
            .map(|(h, a)| (h.to_string(), hand[*a].as_str().unwrap().as_bytes().to_vec()))
            .collect();
    // Refused, with its PII in its key and a header too (kept on the record for a replay).
    let l = label("kafka-refused");
    let (h, _) = ce_headers(&order(&p, &l), "ce_");
    let mut kafka_refused = owned(h);
    kafka_refused.push(("x-reply-to".into(), p.email(&l).into_bytes()));
    let refused_key = p.email(&l);
    let refused_body = format!("{{\"note\": \"{}\", \"customerEmail\": \"{}\"", p.note(&l), p.email(&l)).into_bytes();
    let l = label("kafka-refused-plain");
    let refused_plain =
        format!("{{\"type\": \"OrderPlaced\", \"data\": {{\"note\": \"{}\", \"customer\": {{\"email\": \"{}\"", p.note(&l), p.email(&l));
    // Dead letters: a consumer's JSON envelope, and Spring's (a binary-mode event: the value is
    // the payload, its type in the ce_ headers), each quoting PII in its error.
    let l = label("kafka-dlt-envelope");
    let envelope = json!({"event": order(&p, &l), "error": {"type": "SmtpRejected", "message": format!("550 mailbox {} unavailable", p.email(&l))},
                          "consumer": "mailer", "context": {"attempt": 2}});
    let l = label("kafka-dlt-spring");
    let (h, spring_value) = ce_headers(&order(&p, &l), "ce_");
    let mut spring = owned(h);
    spring.extend([
        ("kafka_dlt-original-topic".to_string(), b"pii-orders".to_vec()),
        ("kafka_dlt-original-partition".to_string(), 0i32.to_be_bytes().to_vec()),
        ("kafka_dlt-original-offset".to_string(), 0i64.to_be_bytes().to_vec()),
        ("kafka_dlt-original-consumer-group".to_string(), b"shipper".to_vec()),
        ("kafka_dlt-exception-fqcn".to_string(), b"com.acme.AddressInvalid".to_vec()),
        ("kafka_dlt-exception-message".to_string(), format!("no route to {}", p.email("kafka-dlt-spring")).into_bytes()),
        ("kafka_dlt-exception-stacktrace".to_string(), format!("com.acme.AddressInvalid: {}\n\tat x", p.number).into_bytes()),
    ]);
    let structured_headers = vec![("content-type", b"application/cloudevents+json".to_vec())];
    kafka.push(("pii-orders", Some("k1"), refs(&kafka_binary), body));
    kafka.push(("pii-orders", Some("k2"), structured_headers, kafka_structured));
    kafka.push(("pii-orders", Some("k3"), refs(&handrolled), order_data(&p, "kafka-handrolled").to_string().into_bytes()));
    kafka.push(("pii-orders", Some(&refused_key), refs(&kafka_refused), refused_body));
    kafka.push(("pii-shipments", None, vec![], refused_plain.into_bytes()));
    kafka.push(("pii-orders.dlq", Some("k6"), vec![], envelope.to_string().into_bytes()));
    let spring_key = p.email("kafka-dlt-spring");
    kafka.push(("pii-orders.dlq", Some(&spring_key), refs(&spring), spring_value));
    let kafka_messages = kafka.len() as u64;
    produce(&brokers, kafka);

    // --- NATS JetStream -------------------------------------------------------------------------
    let l = label("nats-binary");
    let (h, body) = ce_headers(&order(&p, &l), "ce-");
    let h: Vec<(&str, String)> = h.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    nats.publish("orders", &h, body);
    let l = label("nats-structured");
    nats.publish("orders", &[("content-type", "application/cloudevents+json".into())], order(&p, &l).to_string().into_bytes());
    let l = label("nats-refused");
    nats.publish(
        "orders",
        &[],
        format!("{{\"type\": \"OrderPlaced\", \"data\": {{\"note\": \"{}\", \"customerEmail\": \"{}\"", p.note(&l), p.email(&l)).into_bytes(),
    );

    // --- bulk: enough history that the oldest is sealed into compressed segments ----------------
    for b in 0..BULK_BATCHES {
        let events: Vec<Value> = (0..BULK_BATCH)
            .map(|i| {
                let mut e = order(&p, &format!("bulk-{}", b * BULK_BATCH + i));
                e["correlationid"] = json!(format!("corr-bulk-{b}"));
                e
            })
            .collect();
        let (status, answer) = x.ingest(&url, "bulk", "application/cloudevents-batch+json", &[], json!(events).to_string().into_bytes());
        assert!(status == 200 && answer["accepted"] == BULK_BATCH, "{answer}");
    }
    wait_until("nothing sealed", &url, || common::get(&format!("{url}/v1/store"))["sealed_upto"].as_i64() > Some(0));
    wait_until("the Kafka messages are not all stored", &url, || {
        common::get(&format!("{url}/readyz"))["kafka"]["messages"].as_u64() >= Some(kafka_messages)
    });
    wait_until("the NATS messages are not all stored", &url, || common::get(&format!("{url}/readyz"))["nats"]["messages"].as_u64() >= Some(3));

    // --- replays: what the target receives ------------------------------------------------------
    let records = common::get(&format!("{url}/v1/dlq?limit=1000"))["records"].as_array().cloned().unwrap();
    let id_of = |consumer: &str, event: &str| -> i64 {
        records.iter().find(|r| r["consumer"] == consumer && r["event_id"] == event).unwrap_or_else(|| panic!("no record of {consumer}, {event}"))["id"]
            .as_i64()
            .unwrap()
    };
    let replays = [report_id, payload_report_id, id_of("mailer", "ev-kafka-dlt-envelope"), id_of("shipper", "ev-kafka-dlt-spring")];
    let mut received = Vec::new();
    for id in replays {
        let (status, dry) = x.post(&url, &format!("/v1/dlq/{id}/replay"), &json!({"dry_run": true, "actor": "pii-test"}));
        assert_eq!((status, &dry["outcome"]), (200, &json!("dry_run")), "{dry}");
        let (status, done) = x.post(&url, &format!("/v1/dlq/{id}/replay"), &json!({"actor": "pii-test"}));
        assert_eq!((status, &done["outcome"]), (200, &json!("sent")), "{done}");
        let body = replayed.recv_timeout(Duration::from_secs(30)).expect("the replay target receives the record");
        x.add(format!("replay of DLQ record {id} as the target received it"), body.clone());
        received.push(String::from_utf8(body).unwrap());
    }

    // --- reading it all back --------------------------------------------------------------------
    let dumps = x.sql_dump(&url);
    // Data sent as bytes is kept as base64, which no search for text would see through: decoded.
    let bytes = x.get(&url, "/v1/events/ev-binary-bytes");
    let decoded = decode_base64(bytes["data_base64"].as_str().unwrap());
    x.add("ev-binary-bytes's data_base64, decoded", decoded.clone());
    let stored_text = format!("{}{}{}", dumps["events"], dumps["dlq"], String::from_utf8_lossy(&decoded));
    for l in &labels {
        assert!(stored_text.contains(&p.note(l)), "the input '{l}' is stored nowhere (or the search reads nothing): positive control");
    }
    // The whole history came back, the sealed part too.
    let store = x.get(&url, "/v1/store");
    let sealed_upto = store["sealed_upto"].as_i64().unwrap();
    let (_, oldest) = x.post(&url, "/v1/sql", &json!({"query": "SELECT seq FROM events WHERE event_id = 'ev-bulk-0'"}));
    assert!(oldest["rows"][0][0].as_i64().unwrap() <= sealed_upto, "the first bulk event is sealed: {oldest}, {store}");
    for i in 0..BULK_BATCHES * BULK_BATCH {
        assert!(dumps["events"].contains(&p.note(&format!("bulk-{i}"))), "bulk event {i} was not read back");
    }
    // Each PII field holds the keyed hash of its value, as computed here from the data
    // directory's key; equal values have equal hashes, whichever path they came by.
    let key = std::fs::read(data.join("pii.key")).unwrap();
    let contracts = causeway_contracts::Contracts::new(causeway_model::load(&model).into_result().unwrap(), key);
    let hash_of = |data: Value| -> Value {
        let redacted = contracts.redact_raw(&json!({"type": "OrderPlaced", "id": "x", "data": data}).to_string()).unwrap();
        serde_json::from_str::<Value>(&redacted).unwrap()["data"].clone()
    };
    let expected = hash_of(json!({"customerEmail": p.email("single"), "contacts": [{"phone": p.number}]}));
    let (email_hash, number_hash) = (expected["customerEmail"].as_str().unwrap(), expected["contacts"][0]["phone"].as_str().unwrap());
    assert!(email_hash.starts_with("hmac-sha256:") && number_hash.starts_with("hmac-sha256:"), "{expected}");
    let single = x.get(&url, "/v1/events/ev-single");
    let single_data = &single["data"];
    assert_eq!(single_data["customerEmail"], email_hash, "{single}");
    assert_eq!(single_data["customer"]["email"], email_hash, "{single}");
    assert_eq!(single_data["contacts"][0]["phone"], number_hash, "{single}");
    assert_eq!(single_data["note"], p.note("single"), "{single}");
    for (what, text) in [("the events", &dumps["events"]), ("the refused inputs", &dumps["dlq"]), ("the replays", &received.concat())] {
        assert!(text.contains(number_hash), "{what} lack the number's hash {number_hash}");
    }
    let report_hash = hash_of(json!({"customerEmail": p.email("report")}))["customerEmail"].as_str().unwrap().to_string();
    assert!(received[0].contains(&report_hash) && received[0].contains(&p.note("report")), "the replay: {}", received[0]);
    assert!(dumps["dlq"].contains(&report_hash), "the report's error message shows the hash");

    // Answers and pages about every input.
    for path in ["/v1/dlq?limit=1000", "/v1/dlq/summary", "/v1/findings?limit=10000", "/v1/journeys?limit=1000", "/v1/journeys/summary", "/metrics"] {
        x.get(&url, path);
    }
    for path in ["/readyz", "/v1/clock", "/v1/alerts", "/v1/slo", "/", "/on-call", "/journeys", "/dlq", "/v1/model"] {
        x.get(&url, path);
    }
    for l in labels.iter().filter(|l| !l.starts_with("bulk")) {
        // Those stored as events (the rest are DLQ records, read below).
        if client().get(format!("{url}/v1/events/ev-{l}")).send().unwrap().status() == 200 {
            for path in
                [format!("/v1/events/ev-{l}"), format!("/v1/events/ev-{l}/descendants"), format!("/v1/events/ev-{l}/root"), format!("/events/ev-{l}")]
            {
                x.get(&url, &path);
            }
            let correlation = common::get(&format!("{url}/v1/events/ev-{l}"))["correlationid"].as_str().unwrap().to_string();
            x.get(&url, &format!("/v1/correlations/{correlation}"));
            x.get(&url, &format!("/correlations/{correlation}"));
            let aggregate = client().get(format!("{url}/v1/aggregates/Order/o-{l}")).send().unwrap();
            if aggregate.status() == 200 {
                x.get(&url, &format!("/v1/aggregates/Order/o-{l}"));
                cli(&mut x, &["state", "Order", &format!("o-{l}"), "--server", &url]);
            }
            let journey = client().get(format!("{url}/v1/journeys/order/o-{l}")).send().unwrap();
            if journey.status() == 200 {
                x.get(&url, &format!("/v1/journeys/order/o-{l}"));
                x.get(&url, &format!("/journeys/order/o-{l}"));
                cli(&mut x, &["journey", "order", &format!("o-{l}"), "--server", &url]);
            }
            cli(&mut x, &["chain", &correlation, "--server", &url]);
        }
    }
    let state = x.get(&url, "/v1/aggregates/Order/o-single");
    assert_eq!(state["state"]["customerEmail"], email_hash, "the read model shows the hash: {state}");
    for record in common::get(&format!("{url}/v1/dlq?limit=1000"))["records"].as_array().unwrap() {
        let id = record["id"].to_string();
        x.get(&url, &format!("/v1/dlq/{id}"));
        x.get(&url, &format!("/dlq/{id}"));
        let original = client().get(format!("{url}/v1/dlq/{id}/original")).send().unwrap().bytes().unwrap();
        x.add(format!("GET /v1/dlq/{id}/original"), original.to_vec());
        cli(&mut x, &["dlq", "show", &id, "--server", &url]);
        cli(&mut x, &["dlq", "show", &id, "--json", "--server", &url]);
    }
    for verb in [
        vec!["dlq", "list", "--limit", "1000"],
        vec!["dlq", "summary"],
        vec!["findings", "--limit", "10000"],
        vec!["findings", "--limit", "10000", "--json"],
        vec!["sql", "SELECT * FROM events WHERE event_id NOT LIKE 'ev-bulk-%'"],
        vec!["sql", "SELECT * FROM dlq_events", "--json"],
        vec!["store", "stats"],
    ] {
        let mut args = verb.clone();
        args.extend(["--server", &url]);
        cli(&mut x, &args);
    }
    let (_, findings) = x.post(&url, "/v1/sql", &json!({"query": "SELECT kind, detail FROM findings WHERE kind = 'schema_error'"}));
    assert!(findings.to_string().contains("field /customer breaks rule 'oneOf'"), "the schema error is explained: {findings}");
    // The notifier announced the new finding kinds.
    let hook = hooked.recv_timeout(Duration::from_secs(60)).expect("a webhook notification");
    x.add("webhook notification", hook);
    while let Ok(more) = hooked.try_recv() {
        x.add("webhook notification", more);
    }

    // The data directory while the server runs (the WAL holds the recent writes).
    let running = files(&data);
    assert!(running.iter().any(|(path, _)| path.extension().is_some_and(|e| e == "cwseg")), "no sealed segment file");
    stop(server);
    let stopped = files(&data);
    x.add("the server's log", std::fs::read(&log).unwrap());

    // The search, everywhere.
    let needles = p.needles();
    let mut found = Vec::new();
    for (path, bytes) in running.iter().chain(&stopped) {
        found.extend(leaks(&format!("data file {}", path.display()), bytes, &needles));
    }
    for (what, bytes) in &x.0 {
        found.extend(leaks(what, bytes, &needles));
    }
    assert!(found.is_empty(), "{} places hold raw PII:\n{}", found.len(), found.join("\n\n"));
    // Positive controls: the same search finds the notes in the data directory and the exports.
    let control = p.control.clone();
    assert!(running.iter().chain(&stopped).any(|(_, b)| find(b, &control).is_some()), "the data files were not read");
    for what in ["GET /v1/events/ev-single", "GET /dlq/", "causeway sql ", "causeway dlq show ", "replay of DLQ record ", "POST /v1/sql"] {
        let searched = x.0.iter().filter(|(w, _)| w.starts_with(what) && !w.ends_with("(headers)")).any(|(_, b)| find(b, &control).is_some());
        assert!(searched, "no export named '{what}…' was searched, or none holds a note");
    }
    let logged = &x.0.iter().find(|(w, _)| w == "the server's log").unwrap().1;
    assert!(find(logged, "sealed a segment").is_some(), "the server's log was not read: {}", String::from_utf8_lossy(logged));
}
