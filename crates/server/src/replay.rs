//! The DLQ replayer: what a replay sends, where, and that one record is sent by one request at a
//! time. The endpoints that drive it (`/v1/dlq/…/replay`) are in `api::dlq`.
//!
//! **Invariants:**
//! - A replay sends the original event exactly as it was kept: to the consumer's `replay_url`,
//!   the body byte for byte with its content type when that is a media type; to its Kafka
//!   `replay_topic`, the value byte for byte with the original message's key and headers, plus a
//!   `causeway-replay` header naming the record and who replayed it. A replay to Kafka succeeds
//!   when the broker acknowledges the write (`acks=all`, idempotent producer).
//! - A record's replay slot is taken before the record is read and held until the replay is
//!   audited ([`Replayer::claim`]): one record is never replayed by two requests at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use causeway_store::{DlqRow, ReplayOutcome};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::{Map, Value, json};

/// A consumer of the estate, from `[consumers.NAME]` in the server configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumer {
    /// Where a replay of its dead letters is POSTed.
    pub replay_url: Option<String>,
}

/// Where a consumer's dead letters are replayed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// POSTed to this URL.
    Http(String),
    /// Published to this Kafka topic.
    Kafka(String),
}

impl Target {
    /// As audited and shown: the URL, or `kafka:TOPIC`.
    pub(crate) fn name(&self) -> String {
        match self {
            Target::Http(url) => url.clone(),
            Target::Kafka(topic) => format!("kafka:{topic}"),
        }
    }
}

/// The header a replay to Kafka adds: `dlq-record=ID; actor=NAME`.
pub const REPLAY_HEADER: &str = "causeway-replay";

/// Sends replays; knows the consumers and which records are being replayed right now.
pub struct Replayer {
    consumers: BTreeMap<String, Consumer>,
    client: reqwest::Client,
    in_flight: Mutex<HashSet<i64>>,
    kafka: Option<KafkaReplay>,
}

/// Replays to Kafka: one producer for the server, and each consumer's topic.
struct KafkaReplay {
    producer: FutureProducer,
    topics: BTreeMap<String, String>,
}

/// How long a replay target may take to answer (HTTP), or the broker to acknowledge (Kafka).
const REPLAY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest accepted reported content type, in bytes.
pub(crate) const MAX_CONTENT_TYPE_BYTES: usize = 255;

impl Replayer {
    pub fn new(consumers: BTreeMap<String, Consumer>) -> Replayer {
        let client = reqwest::Client::builder().timeout(REPLAY_TIMEOUT).build().expect("an HTTP client without TLS builds");
        Replayer { consumers, client, in_flight: Mutex::new(HashSet::new()), kafka: None }
    }

    /// Replays to Kafka: `topics` maps a consumer to the topic its dead letters are published to,
    /// through one producer made from `client` (the brokers and security of `[kafka]`; see
    /// `kafka::producer_config`). A consumer with a topic here and a `replay_url` too is replayed
    /// over HTTP.
    pub fn with_kafka(mut self, client: &ClientConfig, topics: BTreeMap<String, String>) -> Result<Replayer, KafkaError> {
        if !topics.is_empty() {
            self.kafka = Some(KafkaReplay { producer: client.create()?, topics });
        }
        Ok(self)
    }

    /// Where `consumer`'s dead letters are replayed to, if configured.
    pub(crate) fn target(&self, consumer: &str) -> Option<Target> {
        if let Some(url) = self.consumers.get(consumer).and_then(|c| c.replay_url.clone()) {
            return Some(Target::Http(url));
        }
        self.kafka.as_ref()?.topics.get(consumer).map(|t| Target::Kafka(t.clone()))
    }

    /// The replay slot of record `id`, held until dropped; `None` while another request holds it.
    pub(crate) fn claim(&self, id: i64) -> Option<InFlight<'_>> {
        let claimed = self.in_flight.lock().expect("in-flight lock").insert(id);
        // Built only once claimed: dropping a guard frees the slot, even one another request holds.
        claimed.then(|| InFlight(self, id))
    }

    /// Sends the original event to its target, as it was kept.
    pub(crate) async fn send(&self, replay: ReplayRequest) -> ReplayOutcome {
        match replay {
            ReplayRequest::Http(request) => self.post(request).await,
            ReplayRequest::Kafka(record) => self.publish(record).await,
        }
    }

    async fn post(&self, replay: HttpRequest) -> ReplayOutcome {
        let mut request = self.client.post(&replay.url);
        for (name, value) in &replay.headers {
            request = request.header(*name, value);
        }
        match request.body(replay.body).send().await {
            Ok(response) if response.status().is_success() => ReplayOutcome::Sent { http_status: response.status().as_u16() },
            Ok(response) => {
                let code = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                ReplayOutcome::Failed { http_status: Some(code), error: format!("the target answered HTTP {code}: {}", text.trim()) }
            }
            Err(e) => ReplayOutcome::Failed { http_status: None, error: format!("the target could not be reached: {e}") },
        }
    }

    /// Publishes the record and waits for the broker's acknowledgement (the delivery report).
    async fn publish(&self, replay: KafkaRecord) -> ReplayOutcome {
        let Some(kafka) = &self.kafka else {
            return ReplayOutcome::Failed {
                http_status: None,
                error: format!("no Kafka producer is configured to publish to {}: configure [kafka] brokers", replay.topic),
            };
        };
        let mut headers = OwnedHeaders::new_with_capacity(replay.headers.len());
        for (name, value) in &replay.headers {
            headers = headers.insert(Header { key: name, value: value.as_deref() });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&replay.topic).payload(replay.value.as_slice()).headers(headers);
        if let Some(key) = &replay.key {
            record = record.key(key.as_slice());
        }
        match kafka.producer.send(record, Timeout::After(REPLAY_TIMEOUT)).await {
            Ok(delivery) => ReplayOutcome::Published { partition: delivery.partition, offset: delivery.offset },
            Err((e, _)) => ReplayOutcome::Failed { http_status: None, error: format!("the broker did not take it on {}: {e}", replay.topic) },
        }
    }
}

impl Default for Replayer {
    fn default() -> Self {
        Replayer::new(BTreeMap::new())
    }
}

/// Holds a record's replay slot until dropped.
pub(crate) struct InFlight<'r>(&'r Replayer, i64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.lock().expect("in-flight lock").remove(&self.1);
    }
}

/// What a replay of a record sends: one definition for the send and for the dry run's
/// description of it.
pub(crate) enum ReplayRequest {
    Http(HttpRequest),
    Kafka(KafkaRecord),
}

pub(crate) struct HttpRequest {
    url: String,
    content_type: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

pub(crate) struct KafkaRecord {
    topic: String,
    key: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    value: Vec<u8>,
}

impl ReplayRequest {
    /// The replay of `row` (read with its original) to `target`, asked for by `actor`.
    pub(crate) fn of(row: &DlqRow, target: &Target, actor: &str) -> ReplayRequest {
        let original = row.original().unwrap_or_default().to_vec();
        match target {
            Target::Http(url) => {
                // Reports are checked to carry a media type; a record kept before that check may not.
                let content_type = row.content_type.clone().filter(|ct| is_media_type(ct)).unwrap_or_else(|| "application/json".into());
                ReplayRequest::Http(HttpRequest {
                    url: url.clone(),
                    headers: vec![("content-type", content_type.clone()), ("x-causeway-dlq-id", row.id.to_string())],
                    content_type,
                    body: original,
                })
            }
            Target::Kafka(topic) => {
                let mut headers = row.original_headers.clone().unwrap_or_default();
                headers.push((REPLAY_HEADER.to_string(), Some(format!("dlq-record={}; actor={actor}", row.id).into_bytes())));
                ReplayRequest::Kafka(KafkaRecord { topic: topic.clone(), key: row.original_key.clone(), headers, value: original })
            }
        }
    }

    /// The request as a dry run answers it: the body (value) as the exact text sent, with
    /// `body_json` beside it when it is JSON (to print it readably); bytes that are not UTF-8 as
    /// base64 — for Kafka, the key and each header value likewise.
    pub(crate) fn describe(&self) -> Value {
        match self {
            ReplayRequest::Http(r) => {
                let headers: Map<String, Value> = r.headers.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                let mut v = json!({
                    "method": "POST", "url": r.url, "content_type": r.content_type, "headers": headers,
                    "body_bytes": r.body.len(),
                });
                describe_body(&mut v, &r.body);
                v
            }
            ReplayRequest::Kafka(r) => {
                let headers: Vec<Value> = r
                    .headers
                    .iter()
                    .map(|(name, value)| {
                        let mut h = json!({"name": name});
                        match value {
                            Some(value) => describe_bytes(&mut h, "value", value),
                            None => h["value"] = Value::Null,
                        }
                        h
                    })
                    .collect();
                let mut v = json!({"kafka_topic": r.topic, "headers": headers, "body_bytes": r.value.len()});
                match &r.key {
                    Some(key) => describe_bytes(&mut v, "key", key),
                    None => v["key"] = Value::Null,
                }
                describe_body(&mut v, &r.value);
                v
            }
        }
    }
}

/// `name` as text with `name_encoding` `utf-8`, or as base64 when it is not UTF-8.
fn describe_bytes(v: &mut Value, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            v[name] = json!(text);
            v[format!("{name}_encoding")] = json!("utf-8");
        }
        Err(_) => {
            v[name] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            v[format!("{name}_encoding")] = json!("base64");
        }
    }
}

/// The body as `describe` shows it.
fn describe_body(v: &mut Value, body: &[u8]) {
    describe_bytes(v, "body", body);
    match std::str::from_utf8(body) {
        Ok(text) => {
            if let Ok(parsed) = serde_json::from_str::<Value>(text) {
                v["body_json"] = parsed;
            }
        }
        Err(_) => v["note"] = json!("the body is not UTF-8 text: shown as base64; the replay sends the decoded bytes"),
    }
}

/// A media type as HTTP writes one: `type/subtype`, then `; name=value` parameters (a value a
/// token or a quoted string), printable ASCII, at most [`MAX_CONTENT_TYPE_BYTES`] bytes.
pub(crate) fn is_media_type(text: &str) -> bool {
    fn token(c: u8) -> bool {
        c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
    }
    fn text_char(c: u8) -> bool {
        c == b'\t' || (0x20..0x7f).contains(&c)
    }
    let b = text.as_bytes();
    if b.is_empty() || b.len() > MAX_CONTENT_TYPE_BYTES {
        return false;
    }
    let take = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && token(b[*i]) {
            *i += 1;
        }
        *i > start
    };
    let skip_space = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let mut i = 0;
    if !take(&mut i) || b.get(i) != Some(&b'/') {
        return false;
    }
    i += 1;
    if !take(&mut i) {
        return false;
    }
    loop {
        skip_space(&mut i);
        if i == b.len() {
            return true;
        }
        if b[i] != b';' {
            return false;
        }
        i += 1;
        skip_space(&mut i);
        if !take(&mut i) || b.get(i) != Some(&b'=') {
            return false;
        }
        i += 1;
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match b.get(i) {
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if b.get(i + 1).is_some_and(|c| text_char(*c)) => i += 2,
                    Some(c) if text_char(*c) && *c != b'\\' => i += 1,
                    _ => return false,
                }
            }
        } else if !take(&mut i) {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(content_type: &str, body: &[u8]) -> ReplayRequest {
        ReplayRequest::Http(HttpRequest { url: "http://t/replay".into(), content_type: content_type.into(), headers: vec![], body: body.to_vec() })
    }

    /// A body that is not UTF-8 is described as base64, with a note; text as it is.
    #[test]
    fn a_dry_run_describes_a_body_that_is_not_text_as_base64() {
        let v = http("application/octet-stream", &[0xff, 0x00, 0x61]).describe();
        assert_eq!((v["body"].as_str(), v["body_encoding"].as_str(), v["body_bytes"].as_u64()), (Some("/wBh"), Some("base64"), Some(3)));
        assert!(v["note"].as_str().unwrap().contains("not UTF-8"), "{v}");
        assert!(v.get("body_json").is_none());
        let v = http("text/plain", b"not json").describe();
        assert_eq!((v["body"].as_str(), v["body_encoding"].as_str()), (Some("not json"), Some("utf-8")));
        assert!(v.get("body_json").is_none() && v.get("note").is_none(), "{v}");
    }

    /// A replay to Kafka sends the original key, headers and value, and names the record and the
    /// actor in its own header; the dry run shows binary header values as base64.
    #[test]
    fn a_replay_to_kafka_keeps_the_message_and_adds_its_header() {
        let row = DlqRow {
            id: 42,
            original_event: Some(r#"{"id":"e-1"}"#.into()),
            original_key: Some(b"order-7".to_vec()),
            original_headers: Some(vec![("trace".into(), Some(vec![0, 1, 0xff])), ("empty".into(), None)]),
            ..row()
        };
        let ReplayRequest::Kafka(record) = ReplayRequest::of(&row, &Target::Kafka("payments".into()), "alice") else { panic!("not Kafka") };
        assert_eq!(
            (record.topic.as_str(), record.key.as_deref(), record.value.as_slice()),
            ("payments", Some(&b"order-7"[..]), &br#"{"id":"e-1"}"#[..])
        );
        assert_eq!(record.headers[..2], row.original_headers.clone().unwrap()[..]);
        assert_eq!(record.headers[2], (REPLAY_HEADER.to_string(), Some(b"dlq-record=42; actor=alice".to_vec())));
        let v = ReplayRequest::Kafka(record).describe();
        assert_eq!(v["headers"][0], json!({"name": "trace", "value": "AAH/", "value_encoding": "base64"}), "{v}");
        assert_eq!(v["headers"][1], json!({"name": "empty", "value": null}), "{v}");
        assert_eq!((v["key"].as_str(), v["body_json"]["id"].as_str(), v["kafka_topic"].as_str()), (Some("order-7"), Some("e-1"), Some("payments")));
        assert_eq!(Target::Kafka("payments".into()).name(), "kafka:payments");
    }

    fn row() -> DlqRow {
        DlqRow {
            id: 1,
            event_id: None,
            event_type: None,
            correlation_id: None,
            source_service: None,
            consumer: "c".into(),
            source_topic: None,
            source_partition: None,
            source_offset: None,
            error_type: "e".into(),
            error_message: "m".into(),
            failed_at: String::new(),
            last_failed_at: String::new(),
            attempts: 1,
            status: "pending".into(),
            status_reason: None,
            status_changed_at: None,
            last_error: None,
            replays: 0,
            content_type: None,
            stack: None,
            context: None,
            original_event: None,
            original_bytes: None,
            original_key: None,
            original_headers: None,
        }
    }
}
