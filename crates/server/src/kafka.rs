//! The Kafka source (PRODUCT §10 `[kafka]`): causeway's own consumer group on the configured
//! topics; each message mapped to an event (`causeway_envelope::parse_message`: the CloudEvents
//! Kafka binding, `ce_*` binary or structured, the hand-rolled headers, or a JSON body), stored
//! like an HTTP ingest with its topic, partition, offset and timestamp, and its position
//! committed only then.
//!
//! **Invariants:**
//! - At-least-once in, once stored: a partition's position is committed only after every message
//!   before it is durable (an event, or a DLQ record for what is refused), so a crash or a
//!   rebalance delivers again what was not committed, and the store keeps one copy (the event's
//!   identity; a refused message's topic, partition and offset).
//! - A message that cannot be decoded is a DLQ record and does not stop its partition.
//! - Positions are committed in the order of the batches, each once it is durable: at most
//!   [`IN_FLIGHT`] batches of at most [`BATCH`] messages are being stored at once (so the store's
//!   writer commits several together), and a failed one stops the source before any later
//!   position is committed.
//! - Bounded memory: no message is taken from librdkafka while [`IN_FLIGHT`] batches are being
//!   stored, and its prefetch queue is capped ([`PREFETCH_KIB`]), so a slow store pauses fetching
//!   instead of growing memory.
//! - `start` applies to a partition the group has no committed position for: `earliest`,
//!   `latest`, or the first message at or after a time.
//! - Dead-letter topics (`dlq_topics`) are read by the same consumer and become DLQ records, never
//!   events: a consumer's failure report each, stored as `POST /v1/dlq` stores one (a repeat of
//!   the same event updates its open record), committed only once durable, and once only — the
//!   store remembers each dead-letter message's topic, partition and offset, so a redelivery
//!   changes nothing. A dead-letter topic that does not exist is not an error: it is read once it
//!   appears (at librdkafka's next metadata refresh).
//! - A record keeps the Kafka message's key and headers, byte for byte (a dead letter's without
//!   the headers that describe its failure), for a replay to Kafka; a message refused at ingest
//!   keeps them too.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_envelope::{Identity, MAX_SOURCE_CHARS, format_time, parse_message, sniff_identity};
use causeway_store::{DlqReport, Origin, StoreError};
use chrono::{DateTime, Datelike as _, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::ingest::Provenance;
use crate::replay::is_media_type;
use crate::source::{Delivered, Sink, SourceStatus, Stored, content_type};

/// Messages stored and committed at once, at most.
pub const BATCH: usize = 1000;
/// Batches being stored at once: the store's writer commits those queued together.
pub const IN_FLIGHT: usize = 4;
/// How long a batch waits for more messages once it has one.
const LINGER: Duration = Duration::from_millis(20);
/// librdkafka's prefetch queue, KiB (`queued.max.messages.kbytes`; its default is 64 MiB).
pub const PREFETCH_KIB: u32 = 16 * 1024;
/// How long broker lookups at assignment (committed offsets, offsets for a time) may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a new group starts reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
    /// The first message whose timestamp is at or after this time.
    At(DateTime<Utc>),
}

impl Start {
    /// `earliest`, `latest` or an RFC 3339 time.
    pub fn parse(text: &str) -> Option<Start> {
        match text {
            "earliest" => Some(Start::Earliest),
            "latest" => Some(Start::Latest),
            _ => causeway_envelope::parse_time(text).ok().map(Start::At),
        }
    }
}

/// `[kafka]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topics: Vec<String>,
    /// causeway's own consumer group.
    pub group: String,
    pub start: Start,
    /// Further librdkafka properties (`[kafka.client]`: security, timeouts), applied last.
    pub client: BTreeMap<String, String>,
    /// Dead-letter topics, each a topic name in which `{topic}` stands for every source topic
    /// (`{topic}.dlq`: `orders.dlq` for `orders`); empty: none.
    pub dlq_topics: Vec<String>,
    /// Consumers whose dead letters are replayed to a Kafka topic: consumer name → topic
    /// (`[consumers.NAME] replay_topic`).
    pub replay_topics: BTreeMap<String, String>,
}

/// `[kafka] dlq_topics` when not set.
pub const DEFAULT_DLQ_TOPICS: &str = "{topic}.dlq";

impl KafkaConfig {
    /// The dead-letter topics to read, each with the source topic it is the dead-letter topic of
    /// when a `{topic}` pattern made it. A topic named both as a source and as a dead-letter topic
    /// is read as a dead-letter topic.
    pub fn dead_letter_topics(&self) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        for entry in &self.dlq_topics {
            if entry.contains("{topic}") {
                for topic in &self.topics {
                    out.insert(entry.replace("{topic}", topic), Some(topic.clone()));
                }
            } else {
                out.entry(entry.clone()).or_insert(None);
            }
        }
        out
    }

    /// The subscription: the source topics by name, the dead-letter topics by one pattern, which
    /// matches only topics that exist (librdkafka reports a missing topic named outright as an
    /// error at every metadata refresh, and a dead-letter topic often does not exist yet).
    fn subscription(&self) -> Vec<String> {
        let dead_letters = self.dead_letter_topics();
        let mut topics: Vec<String> = self.topics.iter().filter(|t| !dead_letters.contains_key(*t)).cloned().collect();
        if !dead_letters.is_empty() {
            let names: Vec<String> = dead_letters.keys().map(|t| t.replace('.', "\\.")).collect();
            topics.push(format!("^({})$", names.join("|")));
        }
        topics
    }
}

/// Whether `name` is a topic name Kafka accepts: 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
pub fn is_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Tracks assignments for `/readyz` and places new partitions at `start`.
struct SourceContext {
    start: Start,
    status: Arc<Mutex<SourceStatus>>,
    /// Told of the event partitions assigned: each is a source of its watermark clock.
    journeys: Option<crate::engine::JourneyEngine>,
    /// Topics read as dead letters, not events.
    dead_letter_topics: BTreeMap<String, Option<String>>,
}

impl ClientContext for SourceContext {
    /// librdkafka's client-wide errors: retried by librdkafka itself, shown on `/readyz`. A
    /// subscribed topic that does not exist — a dead-letter topic nobody has written to yet, by
    /// the default `{topic}.dlq` — is expected, so it is not logged as an error at every refresh.
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition) {
            tracing::debug!(message = "a subscribed Kafka topic does not exist (yet)", reason);
        } else {
            tracing::warn!(message = "the Kafka client reports an error; librdkafka retries", error = %error, reason);
            note_error(&self.status, &error, format!("{error}: {reason}"));
        }
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Start::At(time) = self.start {
                    start_at(consumer, tpl, time);
                }
                if let Err(e) = consumer.assign(tpl) {
                    tracing::warn!(message = "the Kafka source could not take its assignment", error = %e);
                }
                let assigned = names(tpl);
                if let Some(engine) = &self.journeys {
                    // Before any of their messages is stored: a partition not read yet holds the clock.
                    let events = tpl.elements().into_iter().filter(|e| !self.dead_letter_topics.contains_key(e.topic()));
                    engine.declare_channels(events.map(|e| format!("{}/{}", e.topic(), e.partition())));
                }
                self.status.lock().expect("status").assigned = Some(assigned);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let _ = consumer.unassign();
                self.status.lock().expect("status").assigned = Some(Vec::new());
            }
            other => {
                tracing::warn!(message = "the Kafka source's group rebalance failed", error = ?other);
                let _ = consumer.unassign();
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(e) = rebalance {
            self.status.lock().expect("status").last_error = Some(e.to_string());
        }
    }
}

/// Partitions the group has no committed position for start at the first message at or after
/// `time` (the end, when there is none yet).
fn start_at(consumer: &BaseConsumer<SourceContext>, tpl: &mut TopicPartitionList, time: DateTime<Utc>) {
    let committed = match consumer.committed_offsets(tpl.clone(), LOOKUP_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(message = "the Kafka source could not read its committed offsets; starting at `earliest`", error = %e);
            return;
        }
    };
    let mut wanted = TopicPartitionList::new();
    for e in committed.elements() {
        if e.offset() == Offset::Invalid {
            let _ = wanted.add_partition_offset(e.topic(), e.partition(), Offset::Offset(time.timestamp_millis()));
        }
    }
    if wanted.count() == 0 {
        return;
    }
    match consumer.offsets_for_times(wanted, LOOKUP_TIMEOUT) {
        Ok(found) => {
            for e in found.elements() {
                let _ = tpl.set_partition_offset(e.topic(), e.partition(), e.offset());
            }
        }
        Err(e) => tracing::warn!(message = "the Kafka source could not look up offsets for its start time", error = %e),
    }
}

/// Shows a Kafka error on `/readyz`. librdkafka reports a broker's failure — a refused TLS
/// handshake or SASL login, a connection refused — to the client with its reason, then again,
/// with its code alone, as a failed fetch, and then that all brokers are down: those echoes say
/// less than what is shown already, and do not replace it.
fn note_error(status: &Mutex<SourceStatus>, error: &KafkaError, text: String) {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let code = error.rdkafka_error_code();
    let echo = code == Some(Code::AllBrokersDown)
        || (matches!(error, KafkaError::MessageConsumption(_))
            && matches!(code, Some(Code::BrokerTransportFailure | Code::Resolve | Code::SSL | Code::Authentication)));
    let mut s = status.lock().expect("status");
    if !echo || s.last_error.is_none() {
        s.last_error = Some(text);
    }
}

fn names(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect()
}

/// Why the source stopped (it starts again after a pause).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("storing a batch stopped: {0}")]
    Stopped(String),
}

/// The consumer's settings: at-least-once (no automatic commits) and a capped prefetch.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("client.id", "causeway")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", if config.start == Start::Latest { "latest" } else { "earliest" })
        .set("queued.max.messages.kbytes", PREFETCH_KIB.to_string())
        .set("queued.min.messages", "10000")
        // With the prefetch queue full (catching up a backlog), librdkafka waits this long before
        // fetching again: its default, 1 s, left the source idle for a fifth of a catch-up.
        .set("fetch.queue.backoff.ms", "10");
    for (k, v) in &config.client {
        c.set(k, v);
    }
    c
}

/// librdkafka's consumer-only properties (`C` in its CONFIGURATION.md), which a producer ignores.
const CONSUMER_ONLY: [&str; 31] = [
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.commit.enable",
    "auto.offset.reset",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "consume.callback.max.messages",
];

/// The replay producer's settings (`Replayer::with_kafka`): the brokers and `[kafka.client]`
/// properties of the source, every write acknowledged by all in-sync replicas, idempotent (a
/// retry inside librdkafka does not write twice), and a delivery timeout a person can wait for.
pub fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers).set("client.id", "causeway-replay").set("message.timeout.ms", "10000");
    // The consumer's own properties are left out: librdkafka would log that it ignores them.
    for (k, v) in config.client.iter().filter(|(k, _)| !CONSUMER_ONLY.contains(&k.as_str())) {
        c.set(k, v);
    }
    // Not to be loosened: a replay is a success only once every in-sync replica has it, once.
    c.set("acks", "all").set("enable.idempotence", "true");
    c
}

/// Runs the source until the server stops; errors (brokers down, a failed commit) are retried
/// every few seconds and shown in `status`.
pub async fn run(config: KafkaConfig, sink: Sink, status: Arc<Mutex<SourceStatus>>) {
    for t in config.dead_letter_topics().keys().filter(|t| config.topics.contains(t)) {
        tracing::warn!(message = "a topic named as a source and as a dead-letter topic is read as a dead-letter topic", topic = %t);
    }
    status.lock().expect("status").state = "starting".into();
    loop {
        if let Err(e) = consume(&config, &sink, &status).await {
            tracing::warn!(message = "the Kafka source stopped; retrying", error = %e);
            let mut s = status.lock().expect("status");
            s.state = "retrying".into();
            s.last_error = Some(e.to_string());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Messages taken from librdkafka together, ready to store.
#[derive(Default)]
struct Batch {
    events: Vec<Delivered>,
    /// Messages of dead-letter topics, as consumers' failure reports.
    dead_letters: Vec<DlqReport>,
    /// The next position of each partition in the batch.
    positions: BTreeMap<(String, i32), i64>,
}

impl Batch {
    fn len(&self) -> usize {
        self.events.len() + self.dead_letters.len()
    }
}

/// What a stored batch came to: its messages, what the store made of them, the positions to commit.
type StoredBatch = (usize, Stored, BTreeMap<(String, i32), i64>);

/// Stores a batch. The events are queued for the store's writer before this returns (the caller's
/// order is the log's); the returned future awaits them and the dead letters beside them (the
/// writer commits what arrives together), durable when it resolves.
fn store_batch(
    sink: &Sink,
    batch: Batch,
) -> Result<impl std::future::Future<Output = Result<StoredBatch, SourceError>> + Send + 'static, SourceError> {
    let messages = batch.len();
    let Batch { events, mut dead_letters, positions } = batch;
    // Consumers' reports keep no PII, as those sent to `POST /v1/dlq` do not.
    if let Some(model) = sink.model.current() {
        dead_letters.iter_mut().for_each(|report| model.redact_report(report));
    }
    let events = if events.is_empty() { None } else { Some(sink.queue(events)?) };
    let store = sink.store.clone();
    Ok(async move {
        let (done, _) = tokio::try_join!(
            async {
                match events {
                    None => Ok(Default::default()),
                    Some(answer) => answer.await,
                }
            },
            store.report_failures(dead_letters)
        )?;
        Ok((messages, done, positions))
    })
}

async fn consume(config: &KafkaConfig, sink: &Sink, status: &Arc<Mutex<SourceStatus>>) -> Result<(), SourceError> {
    let context = SourceContext {
        start: config.start,
        status: status.clone(),
        journeys: sink.journeys.clone(),
        dead_letter_topics: config.dead_letter_topics(),
    };
    let dead_letter_topics = context.dead_letter_topics.clone();
    let consumer: StreamConsumer<SourceContext> = client_config(config).create_with_context(context)?;
    let subscription = config.subscription();
    let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    status.lock().expect("status").state = "consuming".into();
    // Batches being stored, oldest first: up to IN_FLIGHT at once, so the store's writer commits
    // several together while the next is read; positions are committed in order as each is durable.
    let mut storing: VecDeque<tokio::task::JoinHandle<Result<StoredBatch, SourceError>>> = VecDeque::new();
    loop {
        tokio::select! {
            biased;
            stored = async { storing.front_mut().expect("a batch being stored").await }, if !storing.is_empty() => {
                storing.pop_front();
                let (messages, done, positions) = stored.map_err(|e| SourceError::Stopped(e.to_string()))??;
                // Durable now: commit. A crash before this delivers them again; the store keeps one copy.
                let mut commit = TopicPartitionList::new();
                for ((topic, partition), next) in &positions {
                    commit.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
                }
                if let Err(e) = consumer.commit(&commit, CommitMode::Async) {
                    // Not lost: the next commit covers these positions, or a restart delivers them again.
                    status.lock().expect("status").last_error = Some(format!("committing offsets: {e}"));
                }
                status.lock().expect("status").stored(messages, done);
            }
            first = consumer.recv(), if storing.len() < IN_FLIGHT => {
                let mut batch = Batch::default();
                let mut next = Some(first);
                let linger = tokio::time::Instant::now() + LINGER;
                while let Some(received) = next.take() {
                    match received {
                        Ok(m) => {
                            batch.positions.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                            if let Some(source) = dead_letter_topics.get(m.topic()) {
                                batch.dead_letters.push(dead_letter_report(&KafkaMessage::of(&m), source.as_deref(), Utc::now()));
                            } else {
                                batch.events.push(delivered(&m, sink));
                            }
                        }
                        // Per-partition trouble (an unknown topic, a broker away): librdkafka retries.
                        Err(e @ KafkaError::MessageConsumption(_)) | Err(e @ KafkaError::PartitionEOF(_)) => {
                            note_error(status, &e, e.to_string());
                        }
                        Err(e) => return Err(e.into()),
                    }
                    if batch.len() < BATCH {
                        next = tokio::time::timeout_at(linger, consumer.recv()).await.ok();
                    }
                }
                if batch.len() > 0 {
                    // Queued here, in order; awaited on a task of its own.
                    storing.push_back(tokio::spawn(store_batch(sink, batch)?));
                }
            }
        }
    }
}

/// A message parsed, with where it came from.
fn delivered<M: Message>(m: &M, sink: &Sink) -> Delivered {
    let headers: Vec<(String, Vec<u8>)> =
        m.headers().map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect()).unwrap_or_default();
    let timestamp = m.timestamp().to_millis().and_then(DateTime::<Utc>::from_timestamp_millis);
    let item = parse_message(&headers, m.payload().unwrap_or_default(), timestamp, &sink.parse);
    let origin = Origin {
        topic: Some(m.topic().to_string()),
        partition: Some(m.partition()),
        offset: Some(m.offset()),
        message_time: timestamp.as_ref().map(format_time),
    };
    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
    let context = serde_json::json!({
        "topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
        "timestamp": origin.message_time, "key": key,
    });
    // A refusal keeps the message's key and headers as they came, for a replay; an event, what
    // its envelope holds.
    let (key, kept) = match &item.result {
        Ok(_) => (None, None),
        Err(_) => (m.key().map(<[u8]>::to_vec), Some(KafkaMessage::headers_of(m))),
    };
    Delivered { item, content_type: content_type(&headers), from: Provenance { origin, context, key, headers: kept } }
}

// --- dead-letter topics -------------------------------------------------------------------------

/// A Kafka message as kept: where it was read, its key, headers and value, byte for byte.
#[derive(Debug, Clone, Default)]
pub(crate) struct KafkaMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<DateTime<Utc>>,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub value: Option<Vec<u8>>,
}

impl KafkaMessage {
    fn of<M: Message>(m: &M) -> KafkaMessage {
        KafkaMessage {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis().and_then(DateTime::<Utc>::from_timestamp_millis),
            key: m.key().map(<[u8]>::to_vec),
            headers: KafkaMessage::headers_of(m),
            value: m.payload().map(<[u8]>::to_vec),
        }
    }

    /// A message's headers, byte for byte (a header without a value stays without one).
    fn headers_of<M: Message>(m: &M) -> Vec<(String, Option<Vec<u8>>)> {
        m.headers().map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect()).unwrap_or_default()
    }

    /// The last header of this name (a dead letter's latest failure).
    fn last(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().rev().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }

    /// The first header of this name (where a message dead-lettered more than once came from).
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }
}

/// The prefix of Kafka Connect's dead-letter headers (`errors.deadletterqueue.context.headers.enable`).
pub const CONNECT_HEADERS: &str = "__connect.errors.";
/// The prefix of Spring Kafka's (`DeadLetterPublishingRecoverer`).
pub const SPRING_HEADERS: &str = "kafka_dlt-";
/// The exception Spring Kafka wraps a listener's failure in: the cause names the failure.
const SPRING_WRAPPER: &str = "org.springframework.kafka.listener.ListenerExecutionFailedException";
/// The error type of a dead letter that names none.
pub const UNKNOWN_ERROR: &str = "unknown";

/// How a dead-letter message describes its failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadLetterFormat {
    KafkaConnect,
    SpringKafka,
    JsonEnvelope,
    /// None of these: kept with the error type `unknown`.
    Unrecognised,
}

impl DeadLetterFormat {
    fn name(self) -> &'static str {
        match self {
            DeadLetterFormat::KafkaConnect => "kafka_connect",
            DeadLetterFormat::SpringKafka => "spring_kafka",
            DeadLetterFormat::JsonEnvelope => "json_envelope",
            DeadLetterFormat::Unrecognised => "unrecognised",
        }
    }
}

/// A JSON dead letter: `{"event", "error": {"type", "message", "stack"}, "consumer", "context":
/// {"topic", "partition", "offset", …}}`, or the body of `POST /v1/dlq` (`error_type`,
/// `error_message`, `source_topic`, …).
#[derive(Deserialize)]
struct Envelope {
    event: Box<RawValue>,
    error: Option<EnvelopeError>,
    consumer: Option<String>,
    context: Option<Map<String, Value>>,
    failed_at: Option<String>,
    content_type: Option<String>,
    error_type: Option<String>,
    error_message: Option<String>,
    stack: Option<String>,
    source_topic: Option<String>,
    source_partition: Option<Value>,
    source_offset: Option<Value>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
    stack: Option<String>,
}

/// What a dead letter says of its failure, whatever its format.
#[derive(Default)]
struct Failure {
    source_topic: Option<String>,
    source_partition: Option<i32>,
    source_offset: Option<i64>,
    error_type: Option<String>,
    error_message: Option<String>,
    stack: Option<String>,
    consumer: Option<String>,
    failed_at: Option<String>,
}

/// The failure report a message of a dead-letter topic carries: the original event (the value,
/// or a JSON envelope's `event`), its error, consumer and origin (the topic it failed on, not
/// the dead-letter topic), linked to its event by the id read from it. `source`: the source
/// topic whose dead-letter topic this is, when a `{topic}` pattern named it.
pub(crate) fn dead_letter_report(m: &KafkaMessage, source: Option<&str>, now: DateTime<Utc>) -> DlqReport {
    let value = m.value.as_deref().unwrap_or_default();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let is_connect = m.headers.iter().any(|(n, _)| n.starts_with(CONNECT_HEADERS));
    let is_spring = m.headers.iter().any(|(n, _)| n.starts_with(SPRING_HEADERS));
    let envelope = if is_connect || is_spring {
        None
    } else {
        serde_json::from_slice::<Envelope>(value).ok().filter(|e| e.error.is_some() || e.error_type.is_some())
    };
    let mut context = Map::new();
    let mut failure = Failure::default();
    let mut original: Vec<u8> = value.to_vec();
    let mut content_type = None;
    // The message's own headers: a dead letter's without those describing its failure.
    let mut original_headers = m.headers.clone();
    let format = if is_connect {
        let header = |name: &str| m.last(&format!("{CONNECT_HEADERS}{name}")).map(text);
        failure = Failure {
            source_topic: header("topic"),
            source_partition: m.last("__connect.errors.partition").and_then(decimal),
            source_offset: m.last("__connect.errors.offset").and_then(decimal),
            error_type: header("exception.class.name"),
            error_message: header("exception.message"),
            stack: header("exception.stacktrace"),
            consumer: header("connector.name"),
            failed_at: None,
        };
        let described: Map<String, Value> =
            m.headers.iter().filter(|(n, _)| n.starts_with(CONNECT_HEADERS)).map(|(n, v)| (n.clone(), json!(v.as_deref().map(text)))).collect();
        context.insert("headers".into(), Value::Object(described));
        original_headers.retain(|(n, _)| !n.starts_with(CONNECT_HEADERS));
        DeadLetterFormat::KafkaConnect
    } else if is_spring {
        let header = |name: &str| m.last(&format!("{SPRING_HEADERS}{name}")).map(text);
        let fqcn = header("exception-fqcn");
        let cause = header("exception-cause-fqcn");
        // Spring wraps what the listener threw: its cause is the failure worth grouping by.
        let error_type = match (fqcn, cause) {
            (Some(f), Some(c)) if f == SPRING_WRAPPER => Some(c),
            (Some(f), _) => Some(f),
            (None, _) => header("key-exception-fqcn"),
        };
        failure = Failure {
            source_topic: m.first("kafka_dlt-original-topic").map(text),
            source_partition: m.first("kafka_dlt-original-partition").and_then(spring_int),
            source_offset: m.first("kafka_dlt-original-offset").and_then(spring_long),
            error_type,
            error_message: header("exception-message").or_else(|| header("key-exception-message")),
            stack: header("exception-stacktrace").or_else(|| header("key-exception-stacktrace")),
            consumer: m.first("kafka_dlt-original-consumer-group").map(text),
            failed_at: None,
        };
        let described: Map<String, Value> =
            m.headers.iter().filter(|(n, _)| n.starts_with(SPRING_HEADERS)).map(|(n, v)| (n.clone(), spring_header_json(n, v.as_deref()))).collect();
        context.insert("headers".into(), Value::Object(described));
        original_headers.retain(|(n, _)| !n.starts_with(SPRING_HEADERS));
        DeadLetterFormat::SpringKafka
    } else if let Some(e) = envelope {
        original = e.event.get().as_bytes().to_vec();
        let given = e.context.unwrap_or_default();
        let number = |v: Option<&Value>| match v? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let error = e.error.unwrap_or(EnvelopeError { kind: None, message: None, stack: None });
        failure = Failure {
            source_topic: e.source_topic.or_else(|| given.get("topic").and_then(Value::as_str).map(str::to_owned)),
            source_partition: number(e.source_partition.as_ref().or(given.get("partition"))).and_then(|p| i32::try_from(p).ok()),
            source_offset: number(e.source_offset.as_ref().or(given.get("offset"))),
            error_type: error.kind.or(e.error_type),
            error_message: error.message.or(e.error_message),
            stack: error.stack.or(e.stack),
            consumer: e.consumer,
            failed_at: e.failed_at.and_then(|t| failure_time(&t, now)),
        };
        content_type = e.content_type.filter(|ct| is_media_type(ct));
        context = given;
        DeadLetterFormat::JsonEnvelope
    } else {
        failure.error_message = Some(
            "the dead letter does not say how it failed: it has no Kafka Connect (__connect.errors.*) or Spring Kafka (kafka_dlt-*) \
             headers and is not a JSON envelope with `event` and `error`"
                .into(),
        );
        DeadLetterFormat::Unrecognised
    };
    context.insert(
        "dead_letter".into(),
        json!({
            "topic": m.topic, "partition": m.partition, "offset": m.offset,
            "timestamp": m.timestamp.as_ref().map(format_time), "format": format.name(),
        }),
    );
    let (original, original_bytes) = match String::from_utf8(original) {
        Ok(text) => (text, None),
        Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), Some(e.into_bytes())),
    };
    // The event as the value carries it, else (binary mode, hand-rolled headers) its headers'.
    let sniffed = sniff_identity(&original);
    let identity = if sniffed.event_id.is_some() || format == DeadLetterFormat::JsonEnvelope { sniffed } else { header_identity(&original_headers) };
    let content_type = content_type
        .or_else(|| content_type_header(&original_headers).filter(|ct| is_media_type(ct)))
        .unwrap_or_else(|| default_content_type(original_bytes.is_none().then_some(original.as_str())).to_string());
    let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    DlqReport {
        original,
        original_bytes,
        content_type: Some(content_type),
        consumer: non_empty(failure.consumer).unwrap_or_else(|| m.topic.clone()),
        source_topic: non_empty(failure.source_topic).or_else(|| source.map(str::to_owned)),
        source_partition: failure.source_partition,
        source_offset: failure.source_offset,
        error_type: non_empty(failure.error_type).unwrap_or_else(|| UNKNOWN_ERROR.to_string()),
        error_message: failure.error_message.unwrap_or_default(),
        stack: non_empty(failure.stack),
        context: Some(Value::Object(context).to_string()),
        failed_at: failure.failed_at.or_else(|| m.timestamp.as_ref().and_then(|t| failure_time(&format_time(t), now))),
        event_id: identity.event_id,
        event_type: identity.event_type,
        correlation_id: identity.correlation_id,
        source_service: identity.source,
        original_key: m.key.clone(),
        original_headers: Some(original_headers),
        received_as: Some((m.topic.clone(), m.partition, m.offset)),
    }
}

/// A decimal integer written as text (Kafka Connect's headers).
fn decimal<T: std::str::FromStr>(bytes: &[u8]) -> Option<T> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// Whether `bytes` are a decimal number as text rather than a binary one.
fn is_decimal_text(bytes: &[u8]) -> bool {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// Spring Kafka's original partition: a 4-byte big-endian int (`ByteBuffer.putInt`), or decimal
/// text as other libraries write it. Text wins when the bytes read as digits: as an int, such
/// bytes would be a partition number over 800 million.
pub(crate) fn spring_int(bytes: &[u8]) -> Option<i32> {
    if is_decimal_text(bytes) {
        return decimal(bytes);
    }
    Some(i32::from_be_bytes(bytes.try_into().ok()?))
}

/// Spring Kafka's original offset or timestamp: an 8-byte big-endian long (`ByteBuffer.putLong`),
/// or decimal text.
pub(crate) fn spring_long(bytes: &[u8]) -> Option<i64> {
    if is_decimal_text(bytes) {
        return decimal(bytes);
    }
    Some(i64::from_be_bytes(bytes.try_into().ok()?))
}

/// A Spring Kafka header as shown in a record's context: numbers as numbers, the rest as text.
fn spring_header_json(name: &str, value: Option<&[u8]>) -> Value {
    let Some(value) = value else { return Value::Null };
    match name {
        "kafka_dlt-original-partition" => spring_int(value).map_or(Value::Null, |n| json!(n)),
        "kafka_dlt-original-offset" | "kafka_dlt-original-timestamp" => spring_long(value).map_or(Value::Null, |n| json!(n)),
        _ => json!(String::from_utf8_lossy(value)),
    }
}

/// A failure time as kept: canonical, in the year 2000 or later and no later than a day after
/// `now` (as `POST /v1/dlq` accepts one); otherwise none, and the time of storing stands.
fn failure_time(text: &str, now: DateTime<Utc>) -> Option<String> {
    let time = causeway_envelope::parse_time(text).ok()?;
    (time.year() >= 2000 && time <= now + chrono::TimeDelta::days(1)).then(|| format_time(&time))
}

/// The `content-type` header, if any and if text.
fn content_type_header(headers: &[(String, Option<Vec<u8>>)]) -> Option<String> {
    let (_, value) = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-type"))?;
    std::str::from_utf8(value.as_deref()?).ok().map(str::to_owned)
}

/// How an original without a content type is sent by an HTTP replay: a structured CloudEvent as
/// such, other JSON as JSON, anything else as bytes.
fn default_content_type(text: Option<&str>) -> &'static str {
    match text.map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(o))) if o.contains_key("specversion") => "application/cloudevents+json",
        Some(Ok(_)) => "application/json",
        _ => "application/octet-stream",
    }
}

/// The event's identity from a message's headers: the CloudEvents Kafka binding's `ce_*`, the
/// NATS binding's `ce-*`, or the hand-rolled `event-id`, `event-type`, `source-service`,
/// `correlation-id`.
fn header_identity(headers: &[(String, Option<Vec<u8>>)]) -> Identity {
    let find = |names: &[&str]| {
        headers.iter().find_map(|(n, v)| {
            let v = std::str::from_utf8(v.as_deref()?).ok()?;
            let fits = !v.is_empty() && v.chars().count() <= MAX_SOURCE_CHARS;
            (names.iter().any(|name| n.eq_ignore_ascii_case(name)) && fits).then(|| v.to_string())
        })
    };
    Identity {
        event_id: find(&["ce_id", "ce-id", "event-id"]),
        event_type: find(&["ce_type", "ce-type", "event-type"]),
        source: find(&["ce_source", "ce-source", "source-service"]),
        correlation_id: find(&["ce_correlationid", "ce-correlationid", "correlation-id"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(headers: &[(&str, &[u8])], value: &[u8]) -> KafkaMessage {
        KafkaMessage {
            topic: "payments.dlq".into(),
            partition: 0,
            offset: 7,
            timestamp: DateTime::from_timestamp_millis(1_767_607_200_000),
            key: Some(b"order-1".to_vec()),
            headers: headers.iter().map(|(n, v)| (n.to_string(), Some(v.to_vec()))).collect(),
            value: Some(value.to_vec()),
        }
    }

    const EVENT: &str = r#"{"specversion":"1.0","id":"e-1","source":"billing","type":"PaymentFailed","correlationid":"c-1"}"#;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_767_700_000_000).unwrap()
    }

    /// Spring writes the partition as a 4-byte and the offset as an 8-byte big-endian number;
    /// other libraries that mimic its headers write decimal text, which is read as such.
    #[test]
    fn spring_numbers_are_read_as_binary_or_as_decimal_text() {
        assert_eq!(spring_int(&3i32.to_be_bytes()), Some(3));
        assert_eq!(spring_int(&0i32.to_be_bytes()), Some(0));
        assert_eq!(spring_int(&(-1i32).to_be_bytes()), Some(-1));
        assert_eq!(spring_int(b"12"), Some(12));
        assert_eq!(spring_int(b"1234"), Some(1234), "four digits are text, not the int 0x31323334");
        assert_eq!(spring_int(&[0, 1, 2]), None);
        assert_eq!(spring_long(&123_456_789_012i64.to_be_bytes()), Some(123_456_789_012));
        assert_eq!(spring_long(b"12345678"), Some(12_345_678));
        assert_eq!(spring_long(&[0, 0, 0, 1]), None);
        assert_eq!(decimal::<i32>(b" 5 "), Some(5));
    }

    #[test]
    fn a_spring_dead_letter_names_the_original_topic_the_cause_and_the_group() {
        let m = message(
            &[
                ("content-type", b"application/cloudevents+json"),
                ("kafka_dlt-original-topic", b"payments"),
                ("kafka_dlt-original-partition", &2i32.to_be_bytes()),
                ("kafka_dlt-original-offset", &41i64.to_be_bytes()),
                ("kafka_dlt-original-consumer-group", b"billing"),
                ("kafka_dlt-exception-fqcn", SPRING_WRAPPER.as_bytes()),
                ("kafka_dlt-exception-cause-fqcn", b"com.acme.CardDeclined"),
                ("kafka_dlt-exception-message", b"declined"),
                ("kafka_dlt-exception-stacktrace", b"at com.acme"),
            ],
            EVENT.as_bytes(),
        );
        let r = dead_letter_report(&m, Some("payments"), now());
        assert_eq!((r.source_topic.as_deref(), r.source_partition, r.source_offset), (Some("payments"), Some(2), Some(41)));
        assert_eq!((r.error_type.as_str(), r.error_message.as_str(), r.stack.as_deref()), ("com.acme.CardDeclined", "declined", Some("at com.acme")));
        assert_eq!((r.consumer.as_str(), r.event_id.as_deref(), r.correlation_id.as_deref()), ("billing", Some("e-1"), Some("c-1")));
        assert_eq!((r.original.as_str(), r.content_type.as_deref()), (EVENT, Some("application/cloudevents+json")));
        assert_eq!(r.original_headers, Some(vec![("content-type".into(), Some(b"application/cloudevents+json".to_vec()))]));
        assert_eq!((r.original_key.as_deref(), r.received_as.clone()), (Some(&b"order-1"[..]), Some(("payments.dlq".into(), 0, 7))));
        assert_eq!(r.failed_at.as_deref(), Some("2026-01-05T10:00:00.000000Z"));
        let context: Value = serde_json::from_str(r.context.as_deref().unwrap()).unwrap();
        assert_eq!(context["headers"]["kafka_dlt-original-partition"], 2);
        assert_eq!(
            context["dead_letter"],
            json!({"topic": "payments.dlq", "partition": 0, "offset": 7, "timestamp": "2026-01-05T10:00:00.000000Z", "format": "spring_kafka"})
        );
    }

    #[test]
    fn a_connect_dead_letter_reads_its_text_headers_and_the_event_from_ce_headers() {
        let m = message(
            &[
                ("ce_id", b"e-9"),
                ("ce_type", b"OrderPlaced"),
                ("ce_source", b"shop"),
                ("ce_correlationid", b"c-9"),
                ("__connect.errors.topic", b"orders"),
                ("__connect.errors.partition", b"1"),
                ("__connect.errors.offset", b"99"),
                ("__connect.errors.connector.name", b"jdbc-sink"),
                ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
                ("__connect.errors.exception.message", b"bad"),
            ],
            br#"{"orderId":"o-1"}"#,
        );
        let r = dead_letter_report(&m, None, now());
        assert_eq!((r.source_topic.as_deref(), r.source_partition, r.source_offset), (Some("orders"), Some(1), Some(99)));
        assert_eq!(
            (r.error_type.as_str(), r.error_message.as_str(), r.consumer.as_str()),
            ("org.apache.kafka.connect.errors.DataException", "bad", "jdbc-sink")
        );
        assert_eq!((r.event_id.as_deref(), r.event_type.as_deref(), r.source_service.as_deref()), (Some("e-9"), Some("OrderPlaced"), Some("shop")));
        assert_eq!(r.original_headers.as_ref().map(Vec::len), Some(4), "the ce_ headers stay, the __connect ones go to the context");
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn a_json_envelope_carries_the_event_its_error_and_its_context() {
        let body = format!(
            r#"{{"event": {EVENT}, "error": {{"type": "Timeout", "message": "slow", "stack": "s"}}, "consumer": "mailer", "context": {{"topic": "payments", "partition": "3", "offset": 12, "host": "m1"}}, "failed_at": "2026-01-05T09:00:00Z"}}"#
        );
        let r = dead_letter_report(&message(&[], body.as_bytes()), Some("payments"), now());
        assert_eq!((r.original.as_str(), r.event_id.as_deref()), (EVENT, Some("e-1")));
        assert_eq!(
            (r.error_type.as_str(), r.error_message.as_str(), r.stack.as_deref(), r.consumer.as_str()),
            ("Timeout", "slow", Some("s"), "mailer")
        );
        assert_eq!((r.source_partition, r.source_offset, r.failed_at.as_deref()), (Some(3), Some(12), Some("2026-01-05T09:00:00.000000Z")));
        let context: Value = serde_json::from_str(r.context.as_deref().unwrap()).unwrap();
        assert_eq!((context["host"].as_str(), context["dead_letter"]["format"].as_str()), (Some("m1"), Some("json_envelope")));
        // POST /v1/dlq's own body is read too.
        let body =
            format!(r#"{{"event": {EVENT}, "consumer": "mailer", "error_type": "Timeout", "error_message": "slow", "source_topic": "orders"}}"#);
        let r = dead_letter_report(&message(&[], body.as_bytes()), Some("payments"), now());
        assert_eq!((r.error_type.as_str(), r.source_topic.as_deref()), ("Timeout", Some("orders")));
    }

    /// A message that says nothing of its failure is still a record: the value kept, the error
    /// `unknown`, the consumer the dead-letter topic, the source topic the one the pattern names.
    #[test]
    fn an_unrecognised_dead_letter_is_kept_as_unknown() {
        let r = dead_letter_report(&message(&[("k", &[0xff])], &[0xfe, 0x00]), Some("payments"), now());
        assert_eq!((r.error_type.as_str(), r.consumer.as_str(), r.source_topic.as_deref()), (UNKNOWN_ERROR, "payments.dlq", Some("payments")));
        assert_eq!((r.original_bytes.as_deref(), r.content_type.as_deref()), (Some(&[0xfe, 0x00][..]), Some("application/octet-stream")));
        assert!(r.error_message.contains("does not say how it failed"), "{}", r.error_message);
        // A failure time out of bounds is not kept: the time of storing stands.
        let mut m = message(&[], b"{}");
        m.timestamp = DateTime::from_timestamp_millis(0);
        assert_eq!(dead_letter_report(&m, None, now()).failed_at, None);
    }

    #[test]
    fn dead_letter_topics_follow_the_pattern_and_are_subscribed_by_one_regex() {
        let config = KafkaConfig {
            brokers: String::new(),
            topics: vec!["orders".into(), "payments".into()],
            group: "g".into(),
            start: Start::Earliest,
            client: BTreeMap::new(),
            dlq_topics: vec!["{topic}.dlq".into(), "connect-dlq".into()],
            replay_topics: BTreeMap::new(),
        };
        let topics = config.dead_letter_topics();
        assert_eq!(topics.get("orders.dlq"), Some(&Some("orders".to_string())));
        assert_eq!(topics.get("connect-dlq"), Some(&None));
        assert_eq!(topics.len(), 3);
        assert_eq!(config.subscription(), vec!["orders", "payments", r"^(connect-dlq|orders\.dlq|payments\.dlq)$"]);
        let none = KafkaConfig { dlq_topics: vec![], ..config };
        assert_eq!(none.subscription(), vec!["orders", "payments"]);
        assert!(is_topic_name("a.b-c_d") && !is_topic_name("a/b") && !is_topic_name("..") && !is_topic_name(""));
    }
}
