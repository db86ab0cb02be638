//! The store at scale (issue "store at ten million events"): one causeway store and one
//! PostgreSQL reference table grown side by side to ten million events of the generated traffic,
//! measured at checkpoints on the way.
//!
//! - **Streamed data.** Ten million events do not stay in memory: each side reads its own
//!   [`EventStream`] (the events `Dataset::generate` would give for the seed, one correlation at a
//!   time), turned into batches by a generator thread while the clients send them. Only a bounded
//!   uniform sample of the ids sent so far is kept, for the queries.
//! - **One store, one server, one table.** The causeway server (in this process, as in the
//!   foundation benchmark) starts once on a fresh data directory, with sealing on at the
//!   store's default segment size (`[store] segment_events`, 100,000): it seals
//!   history into segment files in the background while it ingests. The reference table is
//!   created once.
//! - **Stretches, in turn.** From one checkpoint to the next, causeway ingests the stretch over
//!   HTTP (`concurrency` clients, NDJSON batches), then PostgreSQL ingests the same stretch
//!   (multi-row INSERTs, a transaction per batch, `concurrency` connections); each side's stretch
//!   is timed on its own. After causeway's stretch the run waits, untimed, until the sealer has
//!   nothing left to seal, so that its work does not land in PostgreSQL's time, and after
//!   PostgreSQL's it runs `CHECKPOINT`, so that PostgreSQL's writes of dirty buffers do not land in
//!   causeway's next stretch (both waits are reported).
//! - **At each checkpoint** the bytes on disk of both sides are read; at the latency checkpoints
//!   PostgreSQL gets `VACUUM ANALYZE` (untimed, as in the foundation benchmark), then the lineage
//!   queries are asked of both sides id by id in turn, with ids drawn from everything ingested so
//!   far, then the bare round trip.

mod report;

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use causeway_envelope::ParseOptions;
use causeway_server::AppState;
use causeway_store::{RECOMMENDED_SEGMENT_EVENTS, SqlLimits, Store, StoreSettings, StoreStats};

pub use self::report::{BatchLatency, Checkpoint, Latency, RetentionRun, ScaleReport, ScaleSettings, Span};
use crate::data::{EventStream, GenEvent, SplitMix64, ndjson};
use crate::http::HttpClient;
use crate::report::{Machine, QueryKind};
use crate::{Server, Sides, dir_bytes, load_average, machine, pg, post_batch, read_dir_once, temp_dir, timed_threads};

/// The size.
pub const DEFAULT_EVENTS: usize = 10_000_000;
/// The reference table of the scale run (dropped at start and end); not the foundation
/// benchmark's, so both can run at once.
pub const DEFAULT_PG_TABLE: &str = "bench_event_lineage_scale";
/// Ids kept for the queries: a uniform sample of everything ingested so far.
const SAMPLE_IDS: usize = 100_000;
/// How long the sealer may take to catch up after a stretch before the run gives up.
const SEAL_WAIT_LIMIT: Duration = Duration::from_secs(1800);

#[derive(Debug, Clone)]
pub struct ScaleConfig {
    /// Events ingested by each side in all.
    pub events: usize,
    /// Where the run stops to measure, in events ingested (the total is always the last).
    pub checkpoints: Vec<usize>,
    /// The checkpoints at which the queries are timed.
    pub latency_at: Vec<usize>,
    /// Concurrent ingest clients (threads / connections) per side.
    pub concurrency: usize,
    /// Events per ingest request / INSERT statement.
    pub batch: usize,
    /// Measured samples per query per side at each latency checkpoint.
    pub samples: usize,
    /// Unmeasured queries per query per side before the samples.
    pub warmup: usize,
    /// Rounds of the latency measurement at each latency checkpoint, each with ids of its own; the
    /// report gives each side's median round.
    pub rounds: usize,
    pub seed: u64,
    /// The store's `[store] segment_events`: log positions per sealed segment (0: sealing off, the
    /// store's default). The run seals at the recommended size unless told otherwise.
    pub segment_events: u64,
    /// Events per stretch of the retention run after the last checkpoint (0: no retention run).
    pub retention_stretch: usize,
    /// libpq-style connection string.
    pub pg_url: String,
    /// The reference table; dropped at start and end.
    pub pg_table: String,
    /// Where causeway's temporary data directory goes (default: the system temp dir).
    pub data_dir: Option<PathBuf>,
    /// The command line shown in the report.
    pub command: String,
    /// Progress lines on stderr.
    pub verbose: bool,
}

impl ScaleConfig {
    /// `events` with the default checkpoints and latency checkpoints for it.
    pub fn new(events: usize) -> ScaleConfig {
        let checkpoints = default_checkpoints(events);
        ScaleConfig {
            events,
            latency_at: default_latency_at(&checkpoints),
            checkpoints,
            concurrency: 4,
            batch: 1_000,
            samples: 1_000,
            warmup: 100,
            rounds: 3,
            seed: 42,
            segment_events: RECOMMENDED_SEGMENT_EVENTS,
            retention_stretch: RETENTION_STRETCH,
            pg_url: crate::DEFAULT_PG_URL.into(),
            pg_table: DEFAULT_PG_TABLE.into(),
            data_dir: None,
            command: "scripts/bench scale".into(),
            verbose: true,
        }
    }

    /// `--quick`: 30,000 events, checkpoints at 10k, 20k and 30k, 200 samples; well under a minute.
    pub fn quick() -> ScaleConfig {
        let events = 30_000;
        let checkpoints = vec![10_000, 20_000, 30_000];
        ScaleConfig { latency_at: default_latency_at(&checkpoints), checkpoints, samples: 200, warmup: 20, rounds: 1, ..ScaleConfig::new(events) }
    }
}

impl Default for ScaleConfig {
    fn default() -> Self {
        ScaleConfig::new(DEFAULT_EVENTS)
    }
}

/// 10k, then every million below `events`, then `events`.
pub fn default_checkpoints(events: usize) -> Vec<usize> {
    let mut out: Vec<usize> = std::iter::once(10_000).chain((1..).map(|m| m * 1_000_000)).take_while(|&c| c < events).collect();
    out.push(events);
    out
}

/// The first checkpoint, the one at a million if there is one, and the last.
pub fn default_latency_at(checkpoints: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = [checkpoints.first().copied(), checkpoints.iter().copied().find(|&c| c == 1_000_000), checkpoints.last().copied()]
        .into_iter()
        .flatten()
        .collect();
    out.dedup();
    out
}

/// The checkpoints, sorted, with the total last; an error for one out of range or a latency
/// checkpoint that is not a checkpoint.
fn plan(cfg: &ScaleConfig) -> Result<Vec<usize>> {
    if cfg.events == 0 || cfg.concurrency == 0 || cfg.batch == 0 || cfg.samples == 0 || cfg.rounds == 0 {
        bail!("--events, --concurrency, --batch, --samples and --rounds must be positive");
    }
    let mut checkpoints = cfg.checkpoints.clone();
    if let Some(&c) = checkpoints.iter().find(|&&c| c == 0 || c > cfg.events) {
        bail!("checkpoint {c} is outside 1..={}", cfg.events);
    }
    checkpoints.push(cfg.events);
    checkpoints.sort_unstable();
    checkpoints.dedup();
    if cfg.latency_at.is_empty() {
        bail!("--latency-at needs at least one checkpoint");
    }
    if let Some(c) = cfg.latency_at.iter().find(|c| !checkpoints.contains(c)) {
        bail!("--latency-at {c} is not one of the checkpoints {checkpoints:?}");
    }
    Ok(checkpoints)
}

/// Runs the whole scale benchmark.
pub fn run(cfg: &ScaleConfig) -> Result<ScaleReport> {
    let checkpoints = plan(cfg)?;
    let started = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let clock = Instant::now();
    let machine = machine(&cfg.pg_url)?;
    let postgres_settings = pg::settings(&cfg.pg_url, &["max_wal_size", "checkpoint_timeout", "autovacuum", "work_mem"])?;
    progress!(cfg, "{} on {} × {}; {} events, checkpoints {checkpoints:?}", machine.postgres, machine.nproc, machine.cpu, cfg.events);
    pg::recreate(&cfg.pg_url, &cfg.pg_table)?;
    let measured = measure(cfg, &checkpoints);
    let _ = pg::drop_table(&cfg.pg_url, &cfg.pg_table);
    let measured = measured?;
    Ok(ScaleReport {
        started,
        elapsed_s: clock.elapsed().as_secs_f64(),
        machine: Machine { load_at_end: load_average(), ..machine },
        postgres_settings,
        settings: ScaleSettings {
            events: cfg.events,
            checkpoints,
            latency_at: cfg.latency_at.clone(),
            concurrency: cfg.concurrency,
            batch: cfg.batch,
            samples: cfg.samples,
            warmup: cfg.warmup,
            rounds: cfg.rounds,
            seed: cfg.seed,
            segment_events: cfg.segment_events,
            command: cfg.command.clone(),
        },
        correlations: measured.correlations,
        generate_us_per_event: measured.generate.as_secs_f64() * 1e6 / (2 * cfg.events) as f64,
        checkpoints: measured.checkpoints,
        store: measured.store,
        notes: measured.notes,
        retention: measured.retention,
    })
}

struct Measured {
    correlations: usize,
    /// The generator threads' CPU time, both sides together.
    generate: Duration,
    checkpoints: Vec<Checkpoint>,
    store: StoreStats,
    notes: Vec<String>,
    retention: Option<RetentionRun>,
}

fn measure(cfg: &ScaleConfig, checkpoints: &[usize]) -> Result<Measured> {
    let dir = temp_dir(cfg.data_dir.as_deref())?;
    let settings = StoreSettings { segment_events: cfg.segment_events, ..StoreSettings::default() };
    let store = Store::open_with(dir.path(), &settings).context("opening the causeway store")?;
    let server = Server::start(AppState::new(store.clone(), ParseOptions::default(), SqlLimits::default()))?;
    let addr = server.addr;
    let mut causeway_feed = Feed::new(cfg, Some(Sample::new(SAMPLE_IDS, cfg.seed)));
    let mut postgres_feed = Feed::new(cfg, None);
    let mut out = Vec::with_capacity(checkpoints.len());
    let mut notes = Vec::new();
    let mut previous = 0;
    let mut last_stats = None;
    for &at in checkpoints {
        let stretch = at - previous;

        let causeway =
            http_stretch(&mut causeway_feed, stretch, cfg.concurrency, addr, None).with_context(|| format!("causeway ingest up to {at}"))?;
        let stored = store.counts()?.events as usize;
        if stored != at {
            bail!("causeway stored {stored} events over HTTP, expected {at}");
        }
        let (seal_wait, stats) = wait_sealed(&store, cfg.segment_events)?;
        let causeway_bytes = dir_bytes(dir.path());

        let postgres = ingest_stretch(
            &mut postgres_feed,
            stretch,
            cfg.concurrency,
            |events| events,
            || pg::Inserter::new(&cfg.pg_url, &cfg.pg_table),
            |inserter, rows| inserter.insert(&rows),
        )
        .with_context(|| format!("PostgreSQL ingest up to {at}"))?;
        let checkpoint_started = Instant::now();
        pg::checkpoint(&cfg.pg_url).context("PostgreSQL CHECKPOINT after its stretch")?;
        let pg_checkpoint = checkpoint_started.elapsed();
        progress!(
            cfg,
            "{at} events: ingest of {stretch} causeway {:.0}/s ({:.1} s, then {:.1} s for the sealer to catch up), PostgreSQL {:.0}/s ({:.1} s, then {:.1} s for its checkpoint)",
            stretch as f64 / causeway.as_secs_f64(),
            causeway.as_secs_f64(),
            seal_wait.as_secs_f64(),
            stretch as f64 / postgres.as_secs_f64(),
            postgres.as_secs_f64(),
            pg_checkpoint.as_secs_f64()
        );

        let latency = if cfg.latency_at.contains(&at) {
            let sample = causeway_feed.sample.as_ref().expect("causeway's feed keeps the sample");
            Some(latency(cfg, addr, &store, dir.path(), sample, at, &mut notes)?)
        } else {
            None
        };
        let checkpoint = Checkpoint {
            events: at,
            raw_bytes: causeway_feed.raw_bytes,
            causeway_s: causeway.as_secs_f64(),
            postgres_s: postgres.as_secs_f64(),
            seal_wait_s: seal_wait.as_secs_f64(),
            pg_checkpoint_s: pg_checkpoint.as_secs_f64(),
            causeway_bytes,
            database_bytes: stats.database_bytes,
            segment_bytes: stats.segment_bytes,
            segments: stats.segments.len(),
            sealed_events: stats.sealed_events as usize,
            hot_events: stats.hot_events as usize,
            postgres_bytes: pg::total_bytes(&cfg.pg_url, &cfg.pg_table)? as u64,
            latency,
        };
        progress!(
            cfg,
            "{at} events: on disk causeway {:.2}× the JSON ({} segments, {} hot events), PostgreSQL {:.2}×",
            checkpoint.causeway_bytes as f64 / checkpoint.raw_bytes as f64,
            checkpoint.segments,
            checkpoint.hot_events,
            checkpoint.postgres_bytes as f64 / checkpoint.raw_bytes as f64
        );
        out.push(checkpoint);
        last_stats = Some(stats);
        previous = at;
    }
    if causeway_feed.raw_bytes != postgres_feed.raw_bytes || causeway_feed.events.correlations() != postgres_feed.events.correlations() {
        bail!("the two sides were not fed the same events");
    }
    let retention = match retention_target(cfg, checkpoints) {
        Some(upto) => Some(retention_run(cfg, addr, &store, dir.path(), upto)?),
        None => None,
    };
    server.stop()?;
    drop(store);
    drop(dir);
    Ok(Measured {
        correlations: causeway_feed.events.correlations(),
        generate: causeway_feed.cpu + postgres_feed.cpu,
        checkpoints: out,
        store: last_stats.expect("at least one checkpoint"),
        notes,
        retention,
    })
}

/// Events per stretch of the retention run (each measured batch by batch), unless configured.
pub const RETENTION_STRETCH: usize = 300_000;

/// The checkpoint up to which the retention run removes history: the first at or past a million
/// events (half the run when that is smaller), if sealing is on and the run goes past it.
fn retention_target(cfg: &ScaleConfig, checkpoints: &[usize]) -> Option<usize> {
    let wanted = 1_000_000.min(cfg.events / 2);
    let at = checkpoints.iter().copied().find(|&c| c >= wanted)?;
    (cfg.retention_stretch > 0 && cfg.segment_events > 0 && at < cfg.events && at as u64 >= cfg.segment_events).then_some(at)
}

/// Retention while ingest runs: a stretch of new events over HTTP, every batch timed, then the
/// same again while retention removes the history sealed up to `upto` (the age set so that those
/// segments, received first, are due at once, and the next ones, received after PostgreSQL's
/// stretch and the queries that followed, are not). The batch latencies of both, and the bytes
/// on disk before and after.
fn retention_run(cfg: &ScaleConfig, addr: std::net::SocketAddr, store: &Store, dir: &std::path::Path, upto: usize) -> Result<RetentionRun> {
    // Events of their own (another seed): new ids, the same shape.
    let mut feed = Feed {
        events: EventStream::new(2 * cfg.retention_stretch, cfg.seed ^ 0x7e7e_7e7e),
        batch: cfg.batch,
        raw_bytes: 0,
        cpu: Duration::ZERO,
        sample: None,
    };
    let baseline = timed_batches(&mut feed, cfg, addr)?;
    wait_sealed(store, cfg.segment_events)?;
    let before = store.stats()?;
    let bytes_before = dir_bytes(dir);
    let due: Vec<_> = before.segments.iter().filter(|s| s.last_seq <= upto as i64).collect();
    let last = due.last().context("no sealed segment to remove")?;
    let newest = chrono::DateTime::parse_from_rfc3339(&last.max_received_at)?.with_timezone(&chrono::Utc);
    let age = (chrono::Utc::now() - newest).to_std()?.saturating_sub(Duration::from_millis(1));
    let removing: i64 = due.iter().map(|s| s.events).sum();
    progress!(
        cfg,
        "retention: {} events received in the first {} segments go (age {:.1} s) while {} more are ingested",
        removing,
        due.len(),
        age.as_secs_f64(),
        cfg.retention_stretch
    );
    store.set_retention(causeway_store::Retention { age: Some(age), max_disk_bytes: None });
    let started = Instant::now();
    let during = timed_batches(&mut feed, cfg, addr)?;
    let stretch_s = started.elapsed().as_secs_f64();
    store.set_retention(causeway_store::Retention::default());
    wait_sealed(store, cfg.segment_events)?;
    let after = store.stats()?;
    let removed = before.sealed_events + before.hot_events + cfg.retention_stretch as i64 - after.sealed_events - after.hot_events;
    let removed_segments: Vec<_> = before.segments.iter().filter(|s| !after.segments.iter().any(|a| a.file == s.file)).collect();
    let segments_dir = dir.join(causeway_store::SEGMENTS_DIR);
    let run = RetentionRun {
        stretch: cfg.retention_stretch,
        removed_events: removed,
        removed_segments: removed_segments.len(),
        removed_bytes: removed_segments.iter().map(|s| s.file_bytes as u64).sum(),
        removed_files_left: removed_segments.iter().filter(|s| segments_dir.join(&s.file).exists()).count(),
        baseline,
        during,
        stretch_s,
        bytes_before,
        bytes_after: dir_bytes(dir),
        segment_bytes_before: before.segment_bytes,
        segment_bytes_after: after.segment_bytes,
        raw_bytes_before: before.raw_bytes,
        raw_bytes_after: after.raw_bytes,
    };
    progress!(
        cfg,
        "retention: batch p99 {:.1} ms during the removal of {} events, {:.1} ms before; {} of segment files removed, {} left on disk",
        run.during.p99_ms,
        run.removed_events,
        run.baseline.p99_ms,
        mib_text(run.removed_bytes),
        run.removed_files_left
    );
    Ok(run)
}

fn mib_text(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// Sends the next `retention_stretch` events of `feed` over HTTP, timing each batch.
fn timed_batches(feed: &mut Feed, cfg: &ScaleConfig, addr: std::net::SocketAddr) -> Result<BatchLatency> {
    let times = Mutex::new(Vec::with_capacity(cfg.retention_stretch / cfg.batch + 1));
    http_stretch(feed, cfg.retention_stretch, cfg.concurrency, addr, Some(&times))?;
    Ok(BatchLatency::of(times.into_inner().expect("batch times")))
}

/// [`ingest_stretch`] to causeway over HTTP (NDJSON batches), each batch's time added to `times`
/// when given.
fn http_stretch(
    feed: &mut Feed,
    count: usize,
    concurrency: usize,
    addr: std::net::SocketAddr,
    times: Option<&Mutex<Vec<Duration>>>,
) -> Result<Duration> {
    ingest_stretch(
        feed,
        count,
        concurrency,
        |events| {
            let sent = events.len();
            (ndjson(&events), sent)
        },
        || Ok((HttpClient::new(addr), Vec::with_capacity(64 * 1024))),
        |(client, answer), (body, sent)| {
            let t = Instant::now();
            let result = post_batch(client, answer, &body, sent);
            if let Some(times) = times {
                times.lock().expect("batch times").push(t.elapsed());
            }
            result
        },
    )
}

/// The lineage queries on both sides, id by id in turn, then the bare round trip.
fn latency(
    cfg: &ScaleConfig,
    addr: std::net::SocketAddr,
    store: &Store,
    data_dir: &std::path::Path,
    sample: &Sample,
    at: usize,
    notes: &mut Vec<String>,
) -> Result<Latency> {
    let vacuum = Instant::now();
    pg::vacuum_analyze(&cfg.pg_url, &cfg.pg_table)?;
    let vacuum = vacuum.elapsed();
    let warm = Instant::now();
    let warm_bytes = read_dir_once(data_dir).context("reading the data directory before the queries")?;
    let warm = warm.elapsed();
    let total = cfg.warmup + cfg.samples;
    let mut sides = Sides { http: HttpClient::new(addr), store, pg: pg::Queries::new(&cfg.pg_url, &cfg.pg_table)? };
    let mut queries = Vec::new();
    let mut rounds_p99_ms = Vec::new();
    for (k, kind) in QueryKind::ALL.into_iter().enumerate() {
        let mut rounds = Vec::with_capacity(cfg.rounds);
        for round in 0..cfg.rounds {
            let ids = sample.draw(kind, total, (round as u64) << 48 | (at as u64) << 8 | (k as u64 + 1));
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            rounds.push(sides.latency(kind, &ids, cfg.warmup)?);
        }
        rounds_p99_ms.push(rounds.iter().map(|r| (r.causeway_http.p99_ms, r.postgres.p99_ms)).collect());
        let result = report::median_round(&rounds);
        let (a, b) = (result.causeway_in_process.mean_rows, result.postgres.mean_rows);
        if a != b {
            notes.push(format!(
                "{}: {}: PostgreSQL answered {:.2} rows per query on average, causeway {:.2}, for the same ids",
                crate::report::size_label(at),
                kind.name(),
                b.unwrap_or(0.0),
                a.unwrap_or(0.0)
            ));
        }
        progress!(
            cfg,
            "{at} events: {} p99 HTTP {:.3} ms, in-process {:.3} ms, PostgreSQL {:.3} ms",
            kind.name(),
            result.causeway_http.p99_ms,
            result.causeway_in_process.p99_ms,
            result.postgres.p99_ms
        );
        queries.push(result);
    }
    let floors = (0..cfg.rounds).map(|_| sides.floor(total, cfg.warmup)).collect::<Result<Vec<_>>>()?;
    let floor_http = report::median_stats(&floors.iter().map(|(h, _)| h).collect::<Vec<_>>());
    let floor_postgres = report::median_stats(&floors.iter().map(|(_, g)| g).collect::<Vec<_>>());
    Ok(Latency { queries, rounds_p99_ms, floor_http, floor_postgres, vacuum_s: vacuum.as_secs_f64(), warm_s: warm.as_secs_f64(), warm_bytes })
}

/// Waits (untimed) until the sealer has nothing left to seal; returns the time waited and the
/// store's statistics then.
fn wait_sealed(store: &Store, segment_events: u64) -> Result<(Duration, StoreStats)> {
    let start = Instant::now();
    // The sealer seals a run once `segment_events` more positions than the newest half-run it keeps are unsealed.
    let sealable = (segment_events + segment_events / 2) as i64;
    loop {
        let stats = store.stats()?;
        if segment_events == 0 || stats.log_end - stats.sealed_upto < sealable {
            return Ok((start.elapsed(), stats));
        }
        if start.elapsed() > SEAL_WAIT_LIMIT {
            bail!("the sealer has not caught up after {} s: {} positions unsealed", SEAL_WAIT_LIMIT.as_secs(), stats.log_end - stats.sealed_upto);
        }
        // `stats` reads every hot row: not too often, the sealer needs the cores.
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Sends the next `count` events of `feed`: a generator thread makes the batches (`make`) while
/// `concurrency` client threads send them (`send`, each on its own `setup` state). Returns the
/// time from the clients' common start to the last answer.
fn ingest_stretch<S: Send, B: Send>(
    feed: &mut Feed,
    count: usize,
    concurrency: usize,
    make: impl Fn(Vec<GenEvent>) -> B + Send,
    setup: impl Fn() -> Result<S> + Sync,
    send: impl Fn(&mut S, B) -> Result<()> + Sync,
) -> Result<Duration> {
    // A few batches ahead per client: the generator never makes a client wait, and memory stays small.
    let (tx, rx) = sync_channel::<B>(2 * concurrency);
    std::thread::scope(|scope| {
        let generator = scope.spawn(move || feed.produce(count, make, &tx));
        let rx = Mutex::new(rx);
        let elapsed = timed_threads(concurrency, setup, |state| {
            loop {
                let next = rx.lock().expect("the batch queue").recv();
                let Ok(batch) = next else { return Ok(()) };
                send(state, batch)?;
            }
        });
        // Clients that failed leave batches behind: closing the queue ends the generator.
        drop(rx);
        let complete = generator.join().expect("the generator panicked");
        let elapsed = elapsed?;
        if !complete {
            bail!("the generator ran out of events");
        }
        Ok(elapsed)
    })
}

/// One side's copy of the generated traffic, handed out stretch by stretch.
struct Feed {
    events: EventStream,
    batch: usize,
    /// The JSON of the events handed out so far (without the NDJSON newlines).
    raw_bytes: u64,
    /// The generator thread's CPU time.
    cpu: Duration,
    /// A uniform sample of the ids handed out so far.
    sample: Option<Sample>,
}

impl Feed {
    fn new(cfg: &ScaleConfig, sample: Option<Sample>) -> Feed {
        Feed { events: EventStream::new(cfg.events, cfg.seed), batch: cfg.batch, raw_bytes: 0, cpu: Duration::ZERO, sample }
    }

    /// Hands out the next `count` events in batches of `batch` (the last one shorter) until done
    /// (`true`) or the clients are gone.
    fn produce<B>(&mut self, count: usize, make: impl Fn(Vec<GenEvent>) -> B, tx: &SyncSender<B>) -> bool {
        let start = thread_cpu();
        let done = self.send(count, make, tx);
        self.cpu += thread_cpu().saturating_sub(start);
        done
    }

    fn send<B>(&mut self, count: usize, make: impl Fn(Vec<GenEvent>) -> B, tx: &SyncSender<B>) -> bool {
        let mut left = count;
        while left > 0 {
            let n = left.min(self.batch);
            let events: Vec<GenEvent> = self.events.by_ref().take(n).collect();
            if events.len() != n {
                return false;
            }
            for e in &events {
                self.raw_bytes += e.json.len() as u64;
                if let Some(sample) = &mut self.sample {
                    sample.offer(e);
                }
            }
            let batch = make(events);
            left -= n;
            if tx.send(batch).is_err() {
                return false;
            }
        }
        true
    }
}

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
    if ok { Duration::new(t.tv_sec as u64, t.tv_nsec as u32) } else { Duration::ZERO }
}

/// A reservoir sample (Vitter's algorithm R) of (event id, correlation id) pairs: at any point,
/// a uniform sample of every event offered so far, in bounded memory.
struct Sample {
    capacity: usize,
    seen: u64,
    seed: u64,
    rng: SplitMix64,
    ids: Vec<(String, String)>,
}

impl Sample {
    fn new(capacity: usize, seed: u64) -> Sample {
        Sample { capacity, seen: 0, seed, rng: SplitMix64::new(seed ^ 0x5A4D_B1E0_0000_0000), ids: Vec::with_capacity(capacity) }
    }

    fn offer(&mut self, e: &GenEvent) {
        self.seen += 1;
        if self.ids.len() < self.capacity {
            self.ids.push((e.id.clone(), e.correlation_id.clone()));
        } else {
            let j = self.rng.below(self.seen) as usize;
            if j < self.capacity {
                self.ids[j] = (e.id.clone(), e.correlation_id.clone());
            }
        }
    }

    /// `count` ids to ask `kind` about (correlation ids for the chain, event ids otherwise), drawn
    /// uniformly with replacement, as the foundation benchmark draws them from the whole data set.
    fn draw(&self, kind: QueryKind, count: usize, stream: u64) -> Vec<String> {
        let mut rng = SplitMix64::new(self.seed ^ 0x5EED_0000_0000_0000 ^ stream.wrapping_mul(0x9E37_79B9));
        (0..count)
            .map(|_| {
                let (id, correlation) = &self.ids[rng.below(self.ids.len() as u64) as usize];
                match kind {
                    QueryKind::Chain => correlation.clone(),
                    QueryKind::Descendants | QueryKind::Root => id.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plans() {
        assert_eq!(
            default_checkpoints(10_000_000),
            [10_000, 1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000, 6_000_000, 7_000_000, 8_000_000, 9_000_000, 10_000_000]
        );
        assert_eq!(default_latency_at(&default_checkpoints(10_000_000)), [10_000, 1_000_000, 10_000_000]);
        assert_eq!(default_checkpoints(300_000), [10_000, 300_000]);
        assert_eq!(default_checkpoints(5_000), [5_000]);
        assert_eq!(default_latency_at(&[5_000]), [5_000]);
        let quick = ScaleConfig::quick();
        assert_eq!((quick.events, quick.latency_at.as_slice()), (30_000, &[10_000, 30_000][..]));
        assert_eq!(plan(&quick).unwrap(), [10_000, 20_000, 30_000]);
        let cfg = ScaleConfig { checkpoints: vec![200, 100], latency_at: vec![100], ..ScaleConfig::new(300) };
        assert_eq!(plan(&cfg).unwrap(), [100, 200, 300]);
        assert!(plan(&ScaleConfig { latency_at: vec![150], ..cfg.clone() }).is_err());
        assert!(plan(&ScaleConfig { checkpoints: vec![400], ..cfg }).is_err());
    }

    #[test]
    fn the_sample_is_uniform_and_bounded() {
        let mut sample = Sample::new(1_000, 3);
        let events: Vec<GenEvent> = EventStream::new(20_000, 3).collect();
        for e in &events {
            sample.offer(e);
        }
        assert_eq!(sample.ids.len(), 1_000);
        // As many from the first half as from the second, give or take.
        let position: std::collections::HashMap<&str, usize> = events.iter().enumerate().map(|(i, e)| (e.id.as_str(), i)).collect();
        let early = sample.ids.iter().filter(|(id, _)| position[id.as_str()] < 10_000).count();
        assert!((400..=600).contains(&early), "{early} of 1,000 from the first half");
        let chains = sample.draw(QueryKind::Chain, 50, 1);
        assert_eq!(chains, sample.draw(QueryKind::Chain, 50, 1));
        assert!(chains.iter().all(|c| events.iter().any(|e| &e.correlation_id == c)));
    }
}
