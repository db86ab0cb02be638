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
//! - Bounded memory: messages are taken from librdkafka only while no batch is being stored, at
//!   most [`BATCH`] at once, and librdkafka's prefetch queue is capped ([`PREFETCH_KIB`]), so a
//!   slow store pauses fetching instead of growing memory.
//! - `start` applies to a partition the group has no committed position for: `earliest`,
//!   `latest`, or the first message at or after a time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_envelope::{format_time, parse_message};
use causeway_store::{Origin, StoreError};
use chrono::{DateTime, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::ingest::Provenance;
use crate::source::{Delivered, Sink, SourceStatus, content_type};

/// Messages stored and committed at once, at most.
pub const BATCH: usize = 1000;
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
}

/// Tracks assignments for `/readyz` and places new partitions at `start`.
struct SourceContext {
    start: Start,
    status: Arc<Mutex<SourceStatus>>,
}

impl ClientContext for SourceContext {}

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
                self.status.lock().expect("status").assigned = Some(names(tpl));
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
        .set("queued.min.messages", "10000");
    for (k, v) in &config.client {
        c.set(k, v);
    }
    c
}

/// Runs the source until the server stops; errors (brokers down, a failed commit) are retried
/// every few seconds and shown in `status`.
pub async fn run(config: KafkaConfig, sink: Sink, status: Arc<Mutex<SourceStatus>>) {
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

async fn consume(config: &KafkaConfig, sink: &Sink, status: &Arc<Mutex<SourceStatus>>) -> Result<(), SourceError> {
    let context = SourceContext { start: config.start, status: status.clone() };
    let consumer: StreamConsumer<SourceContext> = client_config(config).create_with_context(context)?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    status.lock().expect("status").state = "consuming".into();
    loop {
        let mut batch = Vec::new();
        // The next position of each partition in the batch.
        let mut positions: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let first = consumer.recv().await;
        let mut next = Some(first);
        let linger = tokio::time::Instant::now() + LINGER;
        while let Some(received) = next.take() {
            match received {
                Ok(m) => {
                    positions.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                    batch.push(delivered(&m, sink));
                }
                // Per-partition trouble (an unknown topic, a broker away): librdkafka retries.
                Err(e @ KafkaError::MessageConsumption(_)) | Err(e @ KafkaError::PartitionEOF(_)) => {
                    status.lock().expect("status").last_error = Some(e.to_string());
                }
                Err(e) => return Err(e.into()),
            }
            if batch.len() < BATCH {
                next = tokio::time::timeout_at(linger, consumer.recv()).await.ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let messages = batch.len();
        let done = sink.store(batch).await?;
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
    Delivered { item, content_type: content_type(&headers), from: Provenance { origin, context } }
}
