//! The lag monitor (PRODUCT §6 `GET /v1/lag`): the estate's consumer groups, judged by Burrow's
//! rules (`causeway_lag`) plus lag in seconds, time to clear, trend and retention risk.
//!
//! Commits are read as Burrow reads them, from the brokers' `__consumer_offsets` topic, so each
//! commit is seen with its own time — which is what tells a group that stopped committing (STOP)
//! from one that commits the same offset over and over (STALL). High watermarks and log start
//! offsets are polled every `interval`; each poll evaluates every group and stores the windows.
//!
//! **Invariants:**
//! - The windows of commits survive restarts: they are stored (table `meta`, `lag:group:NAME`)
//!   with the position reached in `__consumer_offsets` in the same write, so a restart reads on
//!   from there and no commit is counted twice.
//! - A commit's lag is fixed when it is read, from the partition's high watermark known then (read
//!   from the broker at once for a partition not seen before), as Burrow does.
//! - Lag in seconds is the age of the message at the committed offset, placed in time by the
//!   partition's high watermark history; older than that history (just after a start), it is a
//!   lower bound and says so (`lag_seconds_at_least`).
//! - One thread, blocking calls only on it; the report is swapped whole, readers never wait on
//!   the broker.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use causeway_lag::offsets_topic::{OffsetsRecord, decode};
use causeway_lag::{
    GroupPartition, OffsetHistory, PartitionWindow, RetentionInput, RetentionRisk, Settings, Status, evaluate_group, evaluate_partition,
    group_expired, lag_seconds, retention_risk, time_to_clear_seconds, trend,
};
use causeway_store::{DerivedWrite, Store, StoreError};
use chrono::{DateTime, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// How long one broker lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Key prefix of the stored windows.
const GROUP_KEY: &str = "lag:group:";
/// Key of the stored position in the offsets topic.
const POSITION_KEY: &str = "lag:position";

/// `[lag]`, with the Kafka connection of `[kafka]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LagConfig {
    pub brokers: String,
    /// librdkafka properties (`[kafka.client]`).
    pub client: BTreeMap<String, String>,
    /// How often high watermarks are read and groups evaluated (Burrow's `offset-refresh`).
    pub interval: Duration,
    /// The groups to watch, each with the consumer of the model or `[consumers.*]` it belongs
    /// to; empty: every group that commits.
    pub groups: BTreeMap<String, String>,
    pub settings: Settings,
    /// Where the brokers keep commits.
    pub offsets_topic: String,
}

/// What `GET /v1/lag` answers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LagReport {
    /// `starting`, `watching`, or `retrying` after an error.
    pub state: String,
    /// When the groups were last evaluated.
    pub as_of: Option<String>,
    pub interval_seconds: f64,
    pub offsets_topic: String,
    /// Records read from the offsets topic since the start.
    pub commits_read: u64,
    /// How long the last evaluation took, broker reads included.
    pub evaluation_ms: f64,
    pub last_error: Option<String>,
    /// Worst status first, then by name.
    pub groups: Vec<GroupReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub group: String,
    /// The `[consumers.NAME]` whose group it is, if configured.
    pub consumer: Option<String>,
    /// Burrow's group status: OK, WARN, ERR or NOTFOUND.
    pub status: Status,
    pub complete: f32,
    pub total_lag: i64,
    /// The oldest unconsumed message's age, over the group's partitions.
    pub max_lag_seconds: Option<f64>,
    /// The partition with the most lag, as `topic/partition`.
    pub max_lag_partition: Option<String>,
    pub partitions: Vec<PartitionReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub topic: String,
    pub partition: i32,
    /// Burrow's partition status: OK, WARN, STOP, STALL or REWIND.
    pub status: Status,
    pub complete: f32,
    pub committed_offset: Option<i64>,
    pub last_commit_at: Option<String>,
    pub high_watermark: Option<i64>,
    pub log_start_offset: Option<i64>,
    /// Messages not consumed yet.
    pub lag: i64,
    /// Age of the oldest unconsumed message.
    pub lag_seconds: Option<f64>,
    /// `lag_seconds` is a lower bound: that message is older than the monitor's history.
    pub lag_seconds_at_least: bool,
    /// At the window's pace; `None`: never at this rate.
    pub time_to_clear_seconds: Option<f64>,
    /// `growing`, `shrinking` or `steady`.
    pub trend: &'static str,
    /// `safe`, `approaching` (the backlog's oldest messages are near deletion) or `data_lost`.
    pub retention: &'static str,
    pub retention_message: Option<&'static str>,
}

/// Why the monitor stopped (it starts again after a pause).
#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("the brokers have no topic '{0}', where Kafka keeps consumer groups' commits; lag cannot be watched without it")]
    NoOffsetsTopic(String),
}

/// A group's stored state: a window per partition (`topic/partition`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct GroupState {
    partitions: BTreeMap<String, PartitionState>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PartitionState {
    topic: String,
    partition: i32,
    window: PartitionWindow,
}

/// A topic partition's broker offsets: what every group reading it shares.
#[derive(Debug, Default)]
struct Broker {
    log_start: Option<i64>,
    high: Option<i64>,
    history: OffsetHistory,
}

/// Starts the monitor on its own thread; it runs until the process ends.
pub fn spawn(config: LagConfig, store: Store, report: Arc<RwLock<LagReport>>) {
    {
        let mut r = report.write().expect("lag report");
        r.state = "starting".into();
        r.interval_seconds = config.interval.as_secs_f64();
        r.offsets_topic = config.offsets_topic.clone();
    }
    std::thread::Builder::new()
        .name("causeway-lag".into())
        .spawn(move || {
            loop {
                if let Err(e) = Monitor::new(&config, &store, &report).and_then(|mut m| m.run()) {
                    tracing::warn!(message = "the lag monitor stopped; retrying", error = %e);
                    let mut r = report.write().expect("lag report");
                    r.state = "retrying".into();
                    r.last_error = Some(e.to_string());
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        })
        .expect("a thread for the lag monitor");
}

struct Monitor<'a> {
    config: &'a LagConfig,
    store: &'a Store,
    report: &'a RwLock<LagReport>,
    /// Reads `__consumer_offsets`.
    consumer: BaseConsumer,
    /// Reads partitions' offsets: a client of its own, as a broker answers a connection's requests
    /// in order, and the reader's long-polling fetches would hold each lookup up to `fetch.wait.max.ms`.
    offsets: BaseConsumer,
    groups: BTreeMap<String, GroupState>,
    /// The next offset to read in each partition of the offsets topic.
    position: BTreeMap<i32, i64>,
    brokers: HashMap<(String, i32), Broker>,
    commits_read: u64,
}

impl<'a> Monitor<'a> {
    fn new(config: &'a LagConfig, store: &'a Store, report: &'a RwLock<LagReport>) -> Result<Monitor<'a>, LagError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", "causeway-lag")
            .set("client.id", "causeway-lag")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        for (k, v) in &config.client {
            client.set(k, v);
        }
        let consumer: BaseConsumer = client.create()?;
        let offsets: BaseConsumer = client.set("client.id", "causeway-lag-offsets").create()?;
        let mut groups = BTreeMap::new();
        let mut position = BTreeMap::new();
        for (key, value) in store.meta_with_prefix("lag:")? {
            if let Some(group) = key.strip_prefix(GROUP_KEY) {
                match serde_json::from_str(&value) {
                    Ok(state) => {
                        groups.insert(group.to_string(), state);
                    }
                    Err(e) => tracing::warn!(message = "a stored lag window does not read; starting it afresh", group, error = %e),
                }
            } else if key == POSITION_KEY {
                position = serde_json::from_str(&value).unwrap_or_default();
            }
        }
        Ok(Monitor { config, store, report, consumer, offsets, groups, position, brokers: HashMap::new(), commits_read: 0 })
    }

    fn run(&mut self) -> Result<(), LagError> {
        let topic = self.config.offsets_topic.clone();
        let metadata = self.consumer.fetch_metadata(Some(&topic), LOOKUP_TIMEOUT)?;
        let partitions: Vec<i32> =
            metadata.topics().iter().filter(|t| t.error().is_none()).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        if partitions.is_empty() {
            return Err(LagError::NoOffsetsTopic(topic));
        }
        let mut assignment = TopicPartitionList::new();
        for p in partitions {
            let at = self.position.get(&p).map_or(Offset::Beginning, |&n| Offset::Offset(n));
            assignment.add_partition_offset(&topic, p, at)?;
        }
        self.consumer.assign(&assignment)?;
        {
            let mut r = self.report.write().expect("lag report");
            r.state = "watching".into();
            r.last_error = None;
        }
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_tick {
                self.tick()?;
                next_tick = Instant::now() + self.config.interval;
                continue;
            }
            let wait = (next_tick - now).min(Duration::from_millis(200));
            let record = match self.consumer.poll(wait) {
                None => continue,
                Some(Err(e)) => {
                    self.report.write().expect("lag report").last_error = Some(e.to_string());
                    continue;
                }
                Some(Ok(m)) => {
                    self.position.insert(m.partition(), m.offset() + 1);
                    m.key().and_then(|key| decode(key, m.payload()))
                }
            };
            self.commits_read += 1;
            match record {
                Some(OffsetsRecord::Commit { group, topic, partition, offset, timestamp_ms }) if self.watched(&group) => {
                    let high = match self.brokers.get(&(topic.clone(), partition)).and_then(|b| b.high) {
                        Some(high) => high,
                        None => self.read_broker(&topic, partition, Utc::now().timestamp_millis()).unwrap_or(offset),
                    };
                    let state = self.groups.entry(group).or_default();
                    let name = format!("{topic}/{partition}");
                    let p = state.partitions.entry(name).or_insert_with(|| PartitionState { topic, partition, window: PartitionWindow::new() });
                    p.window.record_commit(offset, timestamp_ms, high, &self.config.settings);
                }
                Some(OffsetsRecord::Deleted { group, topic, partition }) => {
                    if let Some(state) = self.groups.get_mut(&group) {
                        state.partitions.remove(&format!("{topic}/{partition}"));
                    }
                }
                _ => {}
            }
        }
    }

    fn watched(&self, group: &str) -> bool {
        self.config.groups.is_empty() || self.config.groups.contains_key(group)
    }

    /// Reads a partition's log start and high watermark; the high watermark, if it could be read.
    fn read_broker(&mut self, topic: &str, partition: i32, now_ms: i64) -> Option<i64> {
        match self.offsets.fetch_watermarks(topic, partition, LOOKUP_TIMEOUT) {
            Ok((low, high)) => {
                let b = self.brokers.entry((topic.to_string(), partition)).or_default();
                b.log_start = Some(low);
                b.high = Some(high);
                b.history.record(high, now_ms);
                Some(high)
            }
            Err(e) => {
                self.report.write().expect("lag report").last_error = Some(format!("reading {topic}/{partition}'s offsets: {e}"));
                None
            }
        }
    }

    /// Reads every watched partition's offsets, evaluates every group, stores the windows.
    fn tick(&mut self) -> Result<(), LagError> {
        let started = Instant::now();
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        let partitions: BTreeSet<(String, i32)> =
            self.groups.values().flat_map(|g| g.partitions.values().map(|p| (p.topic.clone(), p.partition))).collect();
        for (topic, partition) in &partitions {
            self.read_broker(topic, *partition, now_ms);
        }
        let settings = &self.config.settings;
        let mut reports = Vec::with_capacity(self.groups.len());
        for (name, state) in &mut self.groups {
            for p in state.partitions.values_mut() {
                if let Some(high) = self.brokers.get(&(p.topic.clone(), p.partition)).and_then(|b| b.high) {
                    p.window.record_high_watermark(high, now_ms, settings);
                }
            }
            reports.push(group_report(name, self.config.groups.get(name).cloned(), state, &self.brokers, now_ms, settings));
        }
        reports.sort_by(|a, b| b.status.cmp(&a.status).then_with(|| a.group.cmp(&b.group)));
        let mut meta = Vec::with_capacity(self.groups.len() + 1);
        for (name, state) in &self.groups {
            meta.push((format!("{GROUP_KEY}{name}"), serde_json::to_string(state).expect("windows serialize")));
        }
        meta.push((POSITION_KEY.to_string(), serde_json::to_string(&self.position).expect("positions serialize")));
        self.store.write_derived_blocking(DerivedWrite { meta, ..DerivedWrite::default() })?;
        let mut r = self.report.write().expect("lag report");
        r.groups = reports;
        r.as_of = Some(causeway_envelope::format_time(&now));
        r.commits_read = self.commits_read;
        r.evaluation_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(())
    }
}

fn group_report(
    name: &str,
    consumer: Option<String>,
    state: &GroupState,
    brokers: &HashMap<(String, i32), Broker>,
    now_ms: i64,
    settings: &Settings,
) -> GroupReport {
    let last_commit = state.partitions.values().filter_map(|p| p.window.last_commit_ms()).max();
    if group_expired(last_commit, now_ms, settings) {
        let g = causeway_lag::GroupStatus::not_found();
        return GroupReport {
            group: name.to_string(),
            consumer,
            status: g.status,
            complete: g.complete,
            total_lag: 0,
            max_lag_seconds: None,
            max_lag_partition: None,
            partitions: Vec::new(),
        };
    }
    let mut evaluated = Vec::with_capacity(state.partitions.len());
    let mut partitions = Vec::with_capacity(state.partitions.len());
    for p in state.partitions.values() {
        let status = evaluate_partition(&p.window, now_ms, settings);
        let broker = brokers.get(&(p.topic.clone(), p.partition));
        let committed = p.window.commits().last().map(|c| c.offset);
        let lag = status.current_lag;
        let written = committed.and_then(|c| broker.and_then(|b| b.history.written_at(c)));
        let seconds = lag_seconds(lag, written.map(|w| w.timestamp_ms), now_ms);
        let window = p.window.window(settings);
        let retention = match (broker.and_then(|b| b.log_start), committed, broker.and_then(|b| b.high)) {
            (Some(log_start_offset), Some(committed_offset), Some(high_watermark)) => retention_risk(
                &RetentionInput {
                    log_start_offset,
                    committed_offset,
                    high_watermark,
                    retention_ms: None,
                    oldest_unconsumed_timestamp_ms: written.map(|w| w.timestamp_ms),
                    now_ms,
                },
                settings,
            ),
            _ => RetentionRisk::Safe,
        };
        partitions.push(PartitionReport {
            topic: p.topic.clone(),
            partition: p.partition,
            status: status.status,
            complete: status.complete,
            committed_offset: committed,
            last_commit_at: p.window.last_commit_ms().and_then(DateTime::<Utc>::from_timestamp_millis).map(|t| causeway_envelope::format_time(&t)),
            high_watermark: broker.and_then(|b| b.high),
            log_start_offset: broker.and_then(|b| b.log_start),
            lag,
            lag_seconds: seconds,
            lag_seconds_at_least: lag > 0 && written.is_some_and(|w| w.at_most),
            time_to_clear_seconds: time_to_clear_seconds(window, lag),
            trend: trend(window, settings).as_str(),
            retention: match retention {
                RetentionRisk::Safe => "safe",
                RetentionRisk::Approaching { .. } => "approaching",
                RetentionRisk::DataLost { .. } => "data_lost",
            },
            retention_message: (!matches!(retention, RetentionRisk::Safe)).then(|| retention.message()),
        });
        evaluated.push(GroupPartition { topic: p.topic.clone(), partition: p.partition, status });
    }
    let g = evaluate_group(evaluated);
    GroupReport {
        group: name.to_string(),
        consumer,
        status: g.status,
        complete: g.complete,
        total_lag: g.total_lag,
        max_lag_seconds: partitions.iter().filter_map(|p| p.lag_seconds).reduce(f64::max),
        max_lag_partition: g.max_lag.map(|m| format!("{}/{}", m.topic, m.partition)),
        partitions,
    }
}
