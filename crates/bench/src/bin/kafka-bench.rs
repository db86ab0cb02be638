//! `kafka-bench`: the Kafka source of a `causeway serve` child against a Kafka-protocol broker in
//! this process (librdkafka's mock cluster, reached over TCP), each measured beside its reference
//! in the same run:
//!
//! 1. **Backlog catch-up against HTTP ingest.** The bench's generated events (`data.rs`, the same
//!    as the other benches) are produced to one topic before causeway starts; causeway then starts
//!    on a fresh data directory with `[kafka] start = "earliest"` and is timed from its start until
//!    every event is stored. Beside it, on another fresh data directory, the same events posted by
//!    the HTTP driver of the foundation bench (NDJSON batches of 1,000 from 4 keep-alive clients).
//!    The rounds alternate which side goes first. Target: catch-up rate ≥ HTTP ingest rate. The
//!    CPU each side's threads used (causeway's and this process's: the mock broker, the HTTP
//!    clients) is reported per event, and each store's commits are read back from it once stopped
//!    (the events of a commit share its receive stamp), to show where the time goes.
//!
//! The mock broker keeps at most 5 MiB per partition and drops older messages, so the backlog is
//! spread over as many partitions as keep it whole (checked: every partition starts at offset 0).
//! 2. **Memory under a slow store.** causeway, started with `CAUSEWAY_FAULT_COMMIT_DELAY_MS` (the
//!    store sleeps that long before each commit), against the same backlog for a fixed time; its
//!    RSS sampled from `/proc/PID/status` (`VmRSS`, `VmHWM`). Target: under 300 MiB. Beside it,
//!    the same without the delay, to show that the delay held the source back.
//!
//! The report is Markdown on stdout; progress on stderr.
//!
//! ```sh
//! cargo build --release -p causeway -p causeway-bench
//! target/release/kafka-bench                       # 1,000,000 events (several minutes)
//! target/release/kafka-bench --events 20000 --memory-seconds 10   # a quick look
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use causeway_bench::data::Dataset;
use causeway_bench::http::HttpClient;
use clap::{Parser, ValueEnum};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde_json::Value;

/// The topic the backlog is produced to.
const TOPIC: &str = "orders";
/// The fault-injection hook of the store (crates/store/src/writer.rs).
const COMMIT_DELAY_ENV: &str = "CAUSEWAY_FAULT_COMMIT_DELAY_MS";

#[derive(Parser, Debug)]
#[command(about = "The Kafka source against the mock broker: backlog catch-up beside HTTP ingest, and memory under a slow store")]
struct Args {
    /// Events in the backlog (and posted over HTTP).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Partitions of the topic [default: 6, or as many as the mock broker needs to keep the
    /// whole backlog: it keeps at most 5 MiB per partition].
    #[arg(long)]
    partitions: Option<i32>,
    /// How each event is a Kafka message.
    #[arg(long, value_enum, default_value_t = Format::Structured)]
    format: Format,
    /// Concurrent HTTP clients (as the foundation bench).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Events per HTTP request.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Rounds of catch-up beside HTTP ingest; the side that goes first alternates.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// The store's sleep before each commit in the memory measurement, ms.
    #[arg(long, default_value_t = 200)]
    commit_delay_ms: u64,
    /// Seconds each memory measurement watches causeway.
    #[arg(long, default_value_t = 60)]
    memory_seconds: u64,
    /// The memory target, MiB.
    #[arg(long, default_value_t = 300)]
    rss_limit_mib: u64,
    /// Only the catch-up measurement.
    #[arg(long)]
    no_memory: bool,
    /// Only the memory measurement.
    #[arg(long)]
    no_catchup: bool,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The `causeway` binary [default: `causeway` beside this one].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Where the temporary data directories go [default: the system's temp dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A librdkafka property for causeway's consumer (`[kafka.client]`), as KEY=VALUE; repeatable.
    #[arg(long = "client", value_name = "KEY=VALUE")]
    client: Vec<String>,
    /// The store's page cache for every causeway child (`[store] cache`, e.g. 128MiB) [default:
    /// causeway's, 64 MiB].
    #[arg(long, value_name = "SIZE")]
    store_cache: Option<String>,
    /// Longest a catch-up or an HTTP ingest may take, seconds.
    #[arg(long, default_value_t = 1_800)]
    timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The CloudEvent JSON as the value (the same bytes as an HTTP NDJSON line),
    /// `content-type: application/cloudevents+json`.
    Structured,
    /// The attributes as `ce_*` headers, `data` as the value, `content-type: application/json`.
    Binary,
}

macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("[kafka-bench] {}", format!($($arg)*)) };
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.events == 0 || args.partitions.is_some_and(|p| p <= 0) || args.concurrency == 0 || args.batch == 0 || args.rounds == 0 {
        bail!("--events, --partitions, --concurrency, --batch and --rounds must be positive");
    }
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("causeway"),
    };
    if !bin.exists() {
        bail!("{} not found: build it (cargo build --release -p causeway) or pass --server-bin", bin.display());
    }

    let clock = Instant::now();
    let data = Dataset::generate(args.events, args.seed);
    progress!("{} events generated ({} correlations, mean {:.0} B) in {:.1} s", args.events, data.correlations, data.mean_event_bytes(), secs(clock));

    // librdkafka's mock broker keeps at most 5 MiB of messages per partition (hard-coded in
    // rdkafka_mock.c, `mpart->max_size`) and drops the oldest beyond: a backlog larger than that
    // is spread over enough partitions to be kept whole (3.5 MiB each, with room for the keys,
    // headers and batch framing, and for an uneven spread of keys).
    let message_bytes: usize = data.events.iter().map(|e| e.json.len() + e.correlation_id.len() + 80).sum();
    let partitions = args.partitions.unwrap_or_else(|| 6.max(message_bytes.div_ceil(MOCK_PARTITION_BYTES) as i32));
    let cluster = MockCluster::new(1).context("starting librdkafka's mock cluster")?;
    cluster.create_topic(TOPIC, partitions, 1).context("creating the topic")?;
    let brokers = cluster.bootstrap_servers();
    let produced = produce(&brokers, &data, args.format, partitions)?;
    progress!("{} messages produced to {TOPIC} ({partitions} partitions, {}) in {:.1} s", args.events, format_name(args.format), produced.secs);

    let bench = Bench { args: &args, bin, brokers, groups: AtomicUsize::new(0) };
    println!("### Kafka source");
    println!();
    println!(
        "{} generated events (seed {}, {} correlations, mean {:.0} B of CloudEvent JSON) produced to topic `{TOPIC}` of {} partitions, keyed by correlation id, as {}, before causeway started: {:.1} s for {:.0} MiB of messages, every partition checked to still start at offset 0. Broker: librdkafka {}'s mock cluster (one broker) in the bench process, reached by causeway over TCP on 127.0.0.1 — the same machine's cores serve the broker, causeway and the HTTP clients. The mock keeps at most 5 MiB per partition (hard-coded) and drops older messages, so the backlog is spread over enough partitions to be kept whole (at most 3.5 MiB each). causeway: `causeway serve` (release build) as a child process, a fresh data directory for each measurement, no model.",
        args.events,
        args.seed,
        data.correlations,
        data.mean_event_bytes(),
        partitions,
        format_description(args.format),
        produced.secs,
        produced.bytes as f64 / MIB,
        rdkafka::util::get_rdkafka_version().1,
    );
    println!();

    if !args.no_catchup {
        catch_up(&bench, &data)?;
    }
    drop(data);
    if !args.no_memory {
        memory(&bench)?;
    }
    drop(cluster);
    progress!("done in {:.0} s", secs(clock));
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;
/// What the bench puts in one partition of the mock broker at most (it keeps 5 MiB).
const MOCK_PARTITION_BYTES: usize = 3584 * 1024;

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Structured => "structured",
        Format::Binary => "binary",
    }
}

fn format_description(format: Format) -> &'static str {
    match format {
        Format::Structured => {
            "structured CloudEvents (the value is the event's JSON, the same bytes as an HTTP NDJSON line; header `content-type: application/cloudevents+json`)"
        }
        Format::Binary => "binary CloudEvents (the attributes as `ce_*` headers, `data` as the value, header `content-type: application/json`)",
    }
}

struct Bench<'a> {
    args: &'a Args,
    bin: PathBuf,
    brokers: String,
    /// Each causeway gets a consumer group of its own, so each starts at the earliest offset.
    groups: AtomicUsize,
}

// ---------------------------------------------------------------------------------------------
// Producing the backlog

/// Counts failed deliveries.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.first_error.lock().expect("first error").get_or_insert_with(|| e.to_string());
        }
    }
}

struct Produced {
    secs: f64,
    bytes: u64,
}

/// The message of one event: headers and value.
fn message(json: &str, format: Format) -> Result<(OwnedHeaders, Vec<u8>)> {
    match format {
        Format::Structured => {
            let headers = OwnedHeaders::new().insert(Header { key: "content-type", value: Some("application/cloudevents+json") });
            Ok((headers, json.as_bytes().to_vec()))
        }
        Format::Binary => {
            let Value::Object(attributes) = serde_json::from_str(json)? else { bail!("a generated event is not an object") };
            let mut headers = OwnedHeaders::new_with_capacity(attributes.len());
            let mut body = Vec::new();
            for (name, value) in &attributes {
                match name.as_str() {
                    "data" => body = serde_json::to_vec(value)?,
                    // The binding maps `datacontenttype` to the message's content-type.
                    "datacontenttype" => {
                        headers = headers.insert(Header { key: "content-type", value: Some(value.as_str().unwrap_or("application/json")) })
                    }
                    _ => {
                        let text = match value {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        headers = headers.insert(Header { key: &format!("ce_{name}"), value: Some(&text) });
                    }
                }
            }
            Ok((headers, body))
        }
    }
}

fn produce(brokers: &str, data: &Dataset, format: Format, partitions: i32) -> Result<Produced> {
    let clock = Instant::now();
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("compression.type", "none")
        .create_with_context(Deliveries::default())
        .context("creating the producer")?;
    let mut bytes = 0u64;
    for e in &data.events {
        let (headers, value) = message(&e.json, format)?;
        bytes += value.len() as u64;
        let mut record = BaseRecord::to(TOPIC).key(e.correlation_id.as_str()).payload(&value).headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(20));
                }
                Err((e, _)) => return Err(e).context("producing the backlog"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(300)).context("flushing the backlog to the mock broker")?;
    let context = producer.context();
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!(
            "{failed} messages were not delivered to the mock broker: {}",
            context.first_error.lock().expect("first error").clone().unwrap_or_default()
        );
    }
    // The whole backlog must still be there: the mock drops the oldest messages of a partition
    // past 5 MiB.
    let mut kept = 0;
    for partition in 0..partitions {
        let (low, high) = producer.client().fetch_watermarks(TOPIC, partition, Duration::from_secs(10))?;
        if low != 0 {
            bail!("the mock broker dropped the first {low} messages of partition {partition} (it keeps 5 MiB per partition): use more --partitions");
        }
        kept += high;
    }
    if kept != data.events.len() as i64 {
        bail!("the topic holds {kept} messages, not {}", data.events.len());
    }
    Ok(Produced { secs: secs(clock), bytes })
}

// ---------------------------------------------------------------------------------------------
// The causeway child

struct Causeway {
    child: std::process::Child,
    addr: SocketAddr,
    pid: u32,
    /// Kept until the child is gone: the data directory, its config and log.
    _dir: tempfile::TempDir,
    data: PathBuf,
    log: PathBuf,
}

impl Drop for Causeway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Causeway {
    /// Starts `causeway serve` on a fresh data directory; with the Kafka source on the backlog
    /// (a consumer group of its own, from the earliest offset) when `kafka`.
    fn start(bench: &Bench<'_>, kafka: bool, commit_delay_ms: Option<u64>) -> Result<Causeway> {
        let mut b = tempfile::Builder::new();
        b.prefix("causeway-kafka-bench-");
        let dir = match &bench.args.data_dir {
            Some(parent) => {
                std::fs::create_dir_all(parent)?;
                b.tempdir_in(parent)?
            }
            None => b.tempdir()?,
        };
        let data = dir.path().join("data");
        let log = dir.path().join("causeway.log");
        let mut command = Command::new(&bench.bin);
        command.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(&data);
        let mut text = String::new();
        if let Some(cache) = &bench.args.store_cache {
            text.push_str(&format!("[store]\ncache = {cache:?}\n"));
        }
        if kafka {
            let group = format!("causeway-bench-{}", bench.groups.fetch_add(1, Ordering::Relaxed));
            text.push_str(&format!(
                "[kafka]\nbrokers = \"{}\"\ntopics = [\"{TOPIC}\"]\ngroup = \"{group}\"\nstart = \"earliest\"\n[kafka.client]\n\"session.timeout.ms\" = \"6000\"\n",
                bench.brokers
            ));
            for property in &bench.args.client {
                let (key, value) = property.split_once('=').with_context(|| format!("--client {property}: KEY=VALUE"))?;
                text.push_str(&format!("{:?} = {:?}\n", key.trim(), value.trim()));
            }
        }
        if !text.is_empty() {
            let config = dir.path().join("causeway.toml");
            std::fs::write(&config, text)?;
            command.arg("--config").arg(&config);
        }
        command.env_remove(COMMIT_DELAY_ENV);
        // The child goes when the bench goes, however it ends.
        // SAFETY: prctl only, between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        if let Some(ms) = commit_delay_ms {
            command.env(COMMIT_DELAY_ENV, ms.to_string());
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", bench.bin.display()))?;
        let pid = child.id();
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = match lines.next() {
            Some(line) => line?,
            None => {
                let _ = child.wait();
                bail!("causeway printed nothing; its log: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
        };
        let addr: SocketAddr =
            first.strip_prefix("causeway listening on http://").with_context(|| format!("unexpected first line: {first}"))?.parse()?;
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Causeway { child, addr, pid, _dir: dir, data, log })
    }

    /// Stops the child (SIGKILL: every acknowledged event is durable) and reads its store's
    /// commits: the events of one commit share its `received_at` stamp, taken as the commit starts.
    fn stop(mut self) -> Result<Commits> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let db = causeway_store::open_read_only(&self.data)?;
        let mut statement = db.prepare("SELECT received_at, count(*) FROM events GROUP BY received_at ORDER BY received_at")?;
        let mut stamps = Vec::new();
        for row in statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (stamp, events) = row?;
            let at = chrono::DateTime::parse_from_rfc3339(&stamp).with_context(|| format!("a commit stamp {stamp:?}"))?;
            stamps.push((at.timestamp_micros(), events as u64));
        }
        Ok(Commits::from_stamps(&stamps))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// What `/readyz` says.
struct Ready {
    /// Events stored.
    events: u64,
    /// The Kafka source: messages stored and acknowledged, refused, state, last error.
    messages: u64,
    refused: u64,
    state: String,
    last_error: Option<String>,
}

fn ready(client: &mut HttpClient, body: &mut Vec<u8>) -> Result<Ready> {
    let status = client.get("/readyz", body)?;
    if status.0 != 200 {
        bail!("/readyz answered {}: {}", status.0, String::from_utf8_lossy(body));
    }
    let v: Value = serde_json::from_slice(body)?;
    let kafka = &v["kafka"];
    Ok(Ready {
        events: v["events"].as_u64().unwrap_or(0),
        messages: kafka["messages"].as_u64().unwrap_or(0),
        refused: kafka["refused"].as_u64().unwrap_or(0),
        state: kafka["state"].as_str().unwrap_or("").to_string(),
        last_error: kafka["last_error"].as_str().map(str::to_string),
    })
}

fn sql_count(addr: SocketAddr, query: &str) -> Result<u64> {
    let mut client = HttpClient::new(addr);
    let mut body = Vec::new();
    let payload = serde_json::to_vec(&serde_json::json!({ "query": query }))?;
    let status = client.post("/v1/sql", "application/json", &payload, &mut body)?;
    if status.0 != 200 {
        bail!("POST /v1/sql answered {}: {}", status.0, String::from_utf8_lossy(&body));
    }
    let v: Value = serde_json::from_slice(&body)?;
    v["rows"][0][0].as_u64().with_context(|| format!("unexpected SQL answer: {v}"))
}

/// The commits of a store, from their stamps.
#[derive(Debug, Default, Clone)]
struct Commits {
    commits: usize,
    events: u64,
    /// Events per commit: median and largest.
    median_events: u64,
    max_events: u64,
    /// Milliseconds from one commit's start to the next one's: median and 90th percentile.
    median_gap_ms: f64,
    p90_gap_ms: f64,
    /// From the first commit's start to the last one's, seconds.
    span_s: f64,
}

impl Commits {
    fn from_stamps(stamps: &[(i64, u64)]) -> Commits {
        if stamps.is_empty() {
            return Commits::default();
        }
        let mut sizes: Vec<u64> = stamps.iter().map(|s| s.1).collect();
        sizes.sort_unstable();
        let mut gaps: Vec<f64> = stamps.windows(2).map(|w| (w[1].0 - w[0].0) as f64 / 1000.0).collect();
        gaps.sort_by(f64::total_cmp);
        let pick = |v: &[f64], q: f64| if v.is_empty() { 0.0 } else { v[((v.len() - 1) as f64 * q).round() as usize] };
        Commits {
            commits: stamps.len(),
            events: sizes.iter().sum(),
            median_events: sizes[sizes.len() / 2],
            max_events: *sizes.last().expect("not empty"),
            median_gap_ms: pick(&gaps, 0.5),
            p90_gap_ms: pick(&gaps, 0.9),
            span_s: (stamps[stamps.len() - 1].0 - stamps[0].0) as f64 / 1e6,
        }
    }
}

/// Milliseconds one fsync of a freshly written 1 MiB takes in `dir` (median of 20): what a
/// commit pays at least on this disk.
fn fsync_ms(dir: &Path) -> Result<f64> {
    use std::io::Write as _;
    let path = dir.join("kafka-bench-fsync.tmp");
    let mut file = std::fs::File::create(&path)?;
    let chunk = vec![7u8; 1024 * 1024];
    let mut times = Vec::new();
    for _ in 0..20 {
        file.write_all(&chunk)?;
        let start = Instant::now();
        file.sync_data()?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

// ---------------------------------------------------------------------------------------------
// CPU by thread

/// CPU seconds (user + system) by thread group, of every thread of `pid` alive now.
fn thread_cpu(pid: &str) -> BTreeMap<&'static str, f64> {
    let group = if pid == "self" { bench_thread_group } else { causeway_thread_group };
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let (Ok(comm), Some(cpu)) = (std::fs::read_to_string(task.path().join("comm")), stat_cpu(&task.path().join("stat"))) else {
            continue;
        };
        *out.entry(group(comm.trim())).or_insert(0.0) += cpu;
    }
    out
}

/// CPU seconds (user + system) from a `/proc/.../stat` file.
fn stat_cpu(path: &Path) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised name: utime is field 14, stime 15 (1-based).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    // USER_HZ is 100 on Linux.
    Some((ticks(14)? + ticks(15)?) as f64 / 100.0)
}

fn bench_thread_group(comm: &str) -> &'static str {
    if comm.starts_with("rdk:") { "mock broker (librdkafka threads)" } else { "other threads (polling /readyz)" }
}

fn causeway_thread_group(comm: &str) -> &'static str {
    if comm.starts_with("rdk:") {
        "librdkafka threads (fetch, decode)"
    } else if comm.starts_with("causeway-store") {
        "store writer (SQLite, commit)"
    } else if comm.starts_with("tokio-") {
        "tokio workers (Kafka: the consumer loop, parse, prepare; HTTP: parse, prepare, answer)"
    } else if comm == "causeway" {
        "main thread"
    } else if comm.starts_with("jemalloc") {
        "allocator (jemalloc background)"
    } else {
        "other threads"
    }
}

fn cpu_delta(after: &BTreeMap<&'static str, f64>, before: &BTreeMap<&'static str, f64>) -> BTreeMap<&'static str, f64> {
    after.iter().map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0.0))).filter(|(_, v)| *v > 0.005).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Catch-up beside HTTP ingest

struct CatchUp {
    /// From the start of the child until the first event stored, and until the last.
    first_s: f64,
    total_s: f64,
    /// CPU of causeway's threads and of this process's (the mock broker) during the run.
    causeway_cpu: BTreeMap<&'static str, f64>,
    bench_cpu: BTreeMap<&'static str, f64>,
    commits: Commits,
    /// causeway's peak RSS (`VmHWM`), KiB.
    hwm_kib: u64,
}

struct HttpIngest {
    secs: f64,
    causeway_cpu: BTreeMap<&'static str, f64>,
    bench_cpu: BTreeMap<&'static str, f64>,
    commits: Commits,
    hwm_kib: u64,
}

fn kafka_catch_up(bench: &Bench<'_>) -> Result<CatchUp> {
    let n = bench.args.events as u64;
    let bench_before = thread_cpu("self");
    let clock = Instant::now();
    let server = Causeway::start(bench, true, None)?;
    let mut client = HttpClient::new(server.addr);
    let mut body = Vec::new();
    let mut first_s = None;
    let deadline = Duration::from_secs(bench.args.timeout);
    let mut last_report = Instant::now();
    loop {
        let r = ready(&mut client, &mut body)?;
        if first_s.is_none() && r.events > 0 {
            first_s = Some(secs(clock));
        }
        if r.events >= n {
            break;
        }
        if clock.elapsed() > deadline {
            bail!(
                "the Kafka source stored {} of {n} events in {} s (state {}, last error {:?}); causeway's log:\n{}",
                r.events,
                deadline.as_secs(),
                r.state,
                r.last_error,
                server.log_tail()
            );
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            progress!("  catch-up: {} of {n} stored after {:.0} s (state {})", r.events, secs(clock), r.state);
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let total_s = secs(clock);
    let causeway_cpu = thread_cpu(&server.pid.to_string());
    let bench_cpu = cpu_delta(&thread_cpu("self"), &bench_before);
    // Wait until the source has acknowledged the last batch too, then check what was stored.
    let settle = Instant::now();
    let r = loop {
        let r = ready(&mut client, &mut body)?;
        if r.messages >= n || settle.elapsed() > Duration::from_secs(10) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stored = sql_count(server.addr, "SELECT count(*) FROM event_lineage")?;
    let places = sql_count(server.addr, r#"SELECT count(DISTINCT topic || '/' || partition || '/' || "offset") FROM event_lineage"#)?;
    if stored != n || places != n || r.refused != 0 || r.messages != n {
        bail!(
            "the Kafka source: {stored} events stored at {places} offsets, {} messages acknowledged, {} refused; expected {n}",
            r.messages,
            r.refused
        );
    }
    let hwm_kib = status_kib(server.pid, "VmHWM:");
    let commits = server.stop()?;
    Ok(CatchUp { first_s: first_s.unwrap_or(total_s), total_s, causeway_cpu, bench_cpu, commits, hwm_kib })
}

#[derive(serde::Deserialize)]
struct IngestAnswer {
    accepted: usize,
    duplicates: usize,
    rejected: usize,
}

/// The foundation bench's HTTP driver (`ingest_http` in lib.rs): NDJSON batches from
/// `concurrency` threads with a keep-alive connection each, started together.
fn http_ingest(bench: &Bench<'_>, bodies: &[Vec<u8>]) -> Result<HttpIngest> {
    let n = bench.args.events as u64;
    let server = Causeway::start(bench, false, None)?;
    let addr = server.addr;
    let next = AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(bench.args.concurrency + 1);
    let pid = server.pid.to_string();
    let clients_cpu = Mutex::new(0.0f64);
    let (elapsed, causeway_cpu) = std::thread::scope(|scope| -> Result<_> {
        let handles: Vec<_> = (0..bench.args.concurrency)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    let mut client = HttpClient::new(addr);
                    let mut answer = Vec::with_capacity(64 * 1024);
                    barrier.wait();
                    let before = stat_cpu(Path::new("/proc/thread-self/stat")).unwrap_or(0.0);
                    let result = (|| loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else { return Ok(()) };
                        let status = client.post("/v1/events", "application/x-ndjson", body, &mut answer)?;
                        let sent = body.iter().filter(|&&b| b == b'\n').count();
                        if status.0 != 200 {
                            bail!("POST /v1/events answered {}: {}", status.0, String::from_utf8_lossy(&answer[..answer.len().min(500)]));
                        }
                        let a: IngestAnswer = serde_json::from_slice(&answer).context("reading the ingest answer")?;
                        if a.accepted != sent || a.duplicates != 0 || a.rejected != 0 {
                            bail!("batch {i}: {} accepted, {} duplicates, {} rejected of {sent}", a.accepted, a.duplicates, a.rejected);
                        }
                    })();
                    let cpu = stat_cpu(Path::new("/proc/thread-self/stat")).unwrap_or(0.0) - before;
                    *clients_cpu.lock().expect("clients' CPU") += cpu;
                    result
                })
            })
            .collect();
        let causeway_before = thread_cpu(&pid);
        barrier.wait();
        let start = Instant::now();
        let mut first_error = None;
        for h in handles {
            if let Err(e) = h.join().expect("an HTTP client thread panicked") {
                first_error.get_or_insert(e);
            }
        }
        let elapsed = start.elapsed();
        let causeway_cpu = cpu_delta(&thread_cpu(&pid), &causeway_before);
        match first_error {
            Some(e) => Err(e),
            None => Ok((elapsed, causeway_cpu)),
        }
    })?;
    let bench_cpu = BTreeMap::from([("HTTP clients", clients_cpu.into_inner().expect("clients' CPU"))]);
    let stored = sql_count(addr, "SELECT count(*) FROM event_lineage")?;
    if stored != n {
        bail!("HTTP ingest stored {stored} events, expected {n}");
    }
    let hwm_kib = status_kib(server.pid, "VmHWM:");
    let commits = server.stop()?;
    Ok(HttpIngest { secs: elapsed.as_secs_f64(), causeway_cpu, bench_cpu, commits, hwm_kib })
}

fn catch_up(bench: &Bench<'_>, data: &Dataset) -> Result<()> {
    let args = bench.args;
    let n = args.events as f64;
    let bodies = data.ndjson_batches(args.batch);
    let load_start = load_average();
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let kafka_first = round % 2 == 0;
        let (mut kafka, mut http) = (None, None);
        for turn in 0..2 {
            if (turn == 0) == kafka_first {
                progress!("round {round}: Kafka catch-up of {} events", args.events);
                let k = kafka_catch_up(bench)?;
                progress!("  stored in {:.1} s ({:.0} events/s; first after {:.1} s)", k.total_s, n / k.total_s, k.first_s);
                kafka = Some(k);
            } else {
                progress!("round {round}: HTTP ingest of {} events", args.events);
                let h = http_ingest(bench, &bodies)?;
                progress!("  acknowledged in {:.1} s ({:.0} events/s)", h.secs, n / h.secs);
                http = Some(h);
            }
        }
        rounds.push((kafka_first, kafka.expect("measured"), http.expect("measured")));
    }

    println!("#### Backlog catch-up against HTTP ingest");
    println!();
    println!(
        "Kafka: `causeway serve` with `[kafka] topics = [\"{TOPIC}\"]`, `start = \"earliest\"`, a new group{}, timed from the child's start (process start, group join, assignment included) until `/readyz` counts all {} events stored (polled every 20 ms); then checked with `SELECT count(*) FROM event_lineage` and one event per topic/partition/offset. HTTP: the foundation bench's driver against another `causeway serve` on a fresh data directory, NDJSON batches of {} from {} keep-alive clients, timed from the first request to the last answer (every batch durable). Load average {} at start.",
        if args.client.is_empty() {
            String::new()
        } else {
            format!(" and `[kafka.client]` {}", args.client.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "))
        },
        args.events,
        args.batch,
        args.concurrency,
        load_start
    );
    println!();
    println!(
        "| round | first | Kafka catch-up s | of which to first stored | Kafka events/s end to end | Kafka events/s after first stored | HTTP s | HTTP events/s | Kafka ÷ HTTP |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for (i, (kafka_first, k, h)) in rounds.iter().enumerate() {
        let (ke, kr, he) = (n / k.total_s, n / (k.total_s - k.first_s).max(1e-9), n / h.secs);
        ratios.push(ke / he);
        println!(
            "| {i} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {:.0} | **{:.2}×** |",
            if *kafka_first { "Kafka" } else { "HTTP" },
            k.total_s,
            k.first_s,
            ke,
            kr,
            h.secs,
            he,
            ke / he
        );
    }
    ratios.sort_by(f64::total_cmp);
    // The median; of an even number of rounds, the mean of the middle two.
    let ratio = (ratios[(ratios.len() - 1) / 2] + ratios[ratios.len() / 2]) / 2.0;
    println!();
    println!(
        "Target: Kafka catch-up rate ≥ HTTP ingest rate. Measured{}: **{ratio:.2}×** — {}.",
        if ratios.len() > 1 { " (median of the rounds)" } else { "" },
        if ratio >= 1.0 { "PASS" } else { "FAIL" }
    );
    println!();
    println!("CPU per event (µs; user + system, summed over the threads of each group; the wall time per event is in the last row):");
    println!();
    println!("| round | process | threads | Kafka catch-up | HTTP ingest |");
    println!("|---|---|---|---:|---:|");
    for (i, (_, k, h)) in rounds.iter().enumerate() {
        let per = |s: f64| s * 1e6 / n;
        for (process, kafka_cpu, http_cpu) in
            [("causeway", &k.causeway_cpu, &h.causeway_cpu), ("bench (mock broker; HTTP clients)", &k.bench_cpu, &h.bench_cpu)]
        {
            let groups: std::collections::BTreeSet<&str> = kafka_cpu.keys().chain(http_cpu.keys()).copied().collect();
            for g in groups {
                let cell = |m: &BTreeMap<&str, f64>| m.get(g).map_or("—".to_string(), |s| format!("{:.1}", per(*s)));
                println!("| {i} | {process} | {g} | {} | {} |", cell(kafka_cpu), cell(http_cpu));
            }
            let total = |m: &BTreeMap<&str, f64>| per(m.values().sum::<f64>());
            println!("| {i} | {process} | **all** | **{:.1}** | **{:.1}** |", total(kafka_cpu), total(http_cpu));
        }
        println!("| {i} | | wall time per event | {:.1} | {:.1} |", per(k.total_s), per(h.secs));
    }
    println!();
    let fsync = match &args.data_dir {
        Some(d) => fsync_ms(d),
        None => fsync_ms(&std::env::temp_dir()),
    }?;
    println!(
        "The store's commits, read from the stopped store (the events of one commit share its receive stamp, taken as the commit starts); an fsync of 1 MiB written takes {fsync:.1} ms on this disk (median of 20):"
    );
    println!();
    println!(
        "| round | side | commits | events per commit, median | largest | ms from one commit to the next, median | p90 | µs per event between commits (span ÷ events) | causeway's peak RSS (VmHWM) MiB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, (_, k, h)) in rounds.iter().enumerate() {
        for (side, c, hwm) in [("Kafka", &k.commits, k.hwm_kib), ("HTTP", &h.commits, h.hwm_kib)] {
            println!(
                "| {i} | {side} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                c.commits,
                c.median_events,
                c.max_events,
                c.median_gap_ms,
                c.p90_gap_ms,
                c.span_s * 1e6 / c.events.max(1) as f64,
                hwm as f64 / 1024.0
            );
        }
    }
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Memory under a slow store

struct Watched {
    delay_ms: Option<u64>,
    seconds: f64,
    stored: u64,
    peak_rss_kib: u64,
    hwm_kib: u64,
    end_rss_kib: u64,
    /// `RssAnon`, `RssFile`, `RssShmem` at the end, KiB.
    end_parts_kib: (u64, u64, u64),
    /// (seconds, VmRSS KiB, events stored) every ten seconds.
    timeline: Vec<(f64, u64, u64)>,
    state: String,
    last_error: Option<String>,
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

fn watch(bench: &Bench<'_>, delay_ms: Option<u64>) -> Result<Watched> {
    let seconds = Duration::from_secs(bench.args.memory_seconds);
    let clock = Instant::now();
    let server = Causeway::start(bench, true, delay_ms)?;
    let mut client = HttpClient::new(server.addr);
    let mut body = Vec::new();
    let (mut peak, mut stored, mut next_mark) = (0u64, 0u64, 0.0f64);
    let mut timeline = Vec::new();
    let mut last_ready = Instant::now() - Duration::from_secs(1);
    let mut last_error = None;
    while clock.elapsed() < seconds {
        let rss = status_kib(server.pid, "VmRSS:");
        peak = peak.max(rss);
        if last_ready.elapsed() >= Duration::from_millis(500) {
            let r = ready(&mut client, &mut body)?;
            stored = r.events;
            last_error = r.last_error.or(last_error);
            last_ready = Instant::now();
        }
        let t = secs(clock);
        if t >= next_mark {
            timeline.push((t, rss, stored));
            next_mark += 10.0;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = ready(&mut client, &mut body)?;
    let (end_rss, hwm) = (status_kib(server.pid, "VmRSS:"), status_kib(server.pid, "VmHWM:"));
    let end_parts_kib = (status_kib(server.pid, "RssAnon:"), status_kib(server.pid, "RssFile:"), status_kib(server.pid, "RssShmem:"));
    let t = secs(clock);
    timeline.push((t, end_rss, r.events));
    Ok(Watched {
        delay_ms,
        seconds: t,
        stored: r.events,
        peak_rss_kib: peak.max(end_rss),
        hwm_kib: hwm,
        end_rss_kib: end_rss,
        end_parts_kib,
        timeline,
        state: r.state,
        last_error: r.last_error.or(last_error),
    })
}

fn memory(bench: &Bench<'_>) -> Result<()> {
    let args = bench.args;
    let load_start = load_average();
    progress!("memory: {} s with the store sleeping {} ms before each commit", args.memory_seconds, args.commit_delay_ms);
    let slow = watch(bench, Some(args.commit_delay_ms))?;
    progress!("  {} stored, peak RSS {:.1} MiB", slow.stored, slow.hwm_kib as f64 / 1024.0);
    progress!("memory: {} s without the delay (the reference)", args.memory_seconds);
    let fast = watch(bench, None)?;
    progress!("  {} stored, peak RSS {:.1} MiB", fast.stored, fast.hwm_kib as f64 / 1024.0);

    println!("#### Memory under a slow store");
    println!();
    println!(
        "causeway against the backlog of {} events (a new group, from the earliest offset) for {} s, its RSS read from `/proc/PID/status` every 100 ms (`VmHWM` is the kernel's own peak), events stored from `/readyz`. Slow store: `{COMMIT_DELAY_ENV}={}` (the writer sleeps that long before each commit; the source has at most four batches of 1,000 being stored, which the writer commits together, so at most {:.0} events/s). Reference: the same without the delay. Load average {} at start.",
        args.events,
        args.memory_seconds,
        args.commit_delay_ms,
        4.0 * 1000.0 * 1000.0 / args.commit_delay_ms.max(1) as f64,
        load_start
    );
    if let Some(cache) = &args.store_cache {
        println!();
        println!("The store's page cache: `[store] cache = \"{cache}\"` (the default is 64 MiB).");
    }
    println!();
    println!(
        "| run | seconds | events stored | events/s | peak VmRSS MiB | VmHWM MiB | VmRSS at end MiB | of which anonymous, file, shared MiB | source state |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|---|");
    for w in [&slow, &fast] {
        let name = match w.delay_ms {
            Some(ms) => format!("store slowed, {ms} ms before each commit"),
            None => "reference, no delay".to_string(),
        };
        println!(
            "| {name} | {:.0} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1}, {:.1}, {:.1} | {}{} |",
            w.seconds,
            w.stored,
            w.stored as f64 / w.seconds,
            w.peak_rss_kib as f64 / 1024.0,
            w.hwm_kib as f64 / 1024.0,
            w.end_rss_kib as f64 / 1024.0,
            w.end_parts_kib.0 as f64 / 1024.0,
            w.end_parts_kib.1 as f64 / 1024.0,
            w.end_parts_kib.2 as f64 / 1024.0,
            w.state,
            w.last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
        );
    }
    println!();
    println!("VmRSS MiB (events stored) over time:");
    println!();
    println!("| s | slowed store | reference |");
    println!("|---:|---:|---:|");
    for i in 0..slow.timeline.len().max(fast.timeline.len()) {
        let cell = |w: &Watched| w.timeline.get(i).map_or(String::new(), |(_, rss, stored)| format!("{:.1} ({stored})", *rss as f64 / 1024.0));
        let t = slow.timeline.get(i).or(fast.timeline.get(i)).map_or(0.0, |p| p.0);
        println!("| {t:.0} | {} | {} |", cell(&slow), cell(&fast));
    }
    println!();
    let peak = slow.hwm_kib.max(slow.peak_rss_kib) as f64 / 1024.0;
    let held = slow.stored < fast.stored;
    println!(
        "Target: RSS under {} MiB while the source is held back. Measured peak {peak:.1} MiB — {}. The delay held the source back: {} events stored against {} without it — {}.",
        args.rss_limit_mib,
        if peak < args.rss_limit_mib as f64 { "PASS" } else { "FAIL" },
        slow.stored,
        fast.stored,
        if held { "yes" } else { "NO (the comparison shows nothing)" }
    );
    println!();
    println!("Load average {} at the end.", load_average());
    println!();
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}
