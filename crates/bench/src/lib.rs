//! The foundation acceptance benchmark: causeway against the reference design engineers build by
//! hand (an `event_lineage` table on PostgreSQL), in one run, on the same generated data.
//!
//! For each size, on fresh stores:
//! 1. causeway over HTTP — the server runs in this process on its own tokio runtime, listening on
//!    `127.0.0.1:0` with a fresh data directory — receives NDJSON batches from `concurrency` client
//!    threads, each with its own keep-alive connection; a `200` means the batch is durable.
//! 2. causeway in-process: `Store::append_blocking` with batches of parsed events from the same
//!    number of threads, into another fresh store.
//! 3. The PostgreSQL reference: a fresh table, multi-row INSERTs of one batch per statement and one
//!    transaction per batch (`synchronous_commit=on`) from `concurrency` connections, then
//!    `VACUUM ANALYZE`.
//! 4. Lineage query latency, one client per side: causeway over HTTP (one keep-alive connection),
//!    causeway in-process (`Store` methods on the store filled over HTTP) and PostgreSQL (prepared
//!    statements), asked in turn id by id so that other work on the machine hits every side alike
//!    (HTTP before in-process, each timed request after an untimed round trip: `Sides::latency`);
//!    then the round trip without store work (`GET /healthz` against `SELECT 1`).
//!
//! Every side queries the same ids in the same order. The report judges the targets of the
//! foundation issue; missing one is reported, not an error.
//!
//! [`scale`] is the other benchmark of this crate: one store and one table grown to ten million
//! events, measured at checkpoints on the way (`scale-bench`).

macro_rules! progress {
    ($cfg:expr, $($arg:tt)*) => {
        if $cfg.verbose {
            eprintln!("[bench] {}", format!($($arg)*));
        }
    };
}

pub mod data;
pub mod http;
pub mod pg;
pub mod report;
pub mod scale;
pub mod traffic;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use causeway_envelope::{ParseOptions, parse_body};
use causeway_server::AppState;
use causeway_store::{EventOutcome, NewEvent, SqlLimits, Store};

use crate::data::Dataset;
use crate::http::HttpClient;
pub use crate::report::{Ingest, Machine, QueryKind, QueryResult, Report, Settings, SizeResult, Stats, Verdict};

/// The PostgreSQL the reference runs on unless told otherwise.
pub const DEFAULT_PG_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
pub const DEFAULT_PG_TABLE: &str = "bench_event_lineage";

#[derive(Debug, Clone)]
pub struct Config {
    /// Numbers of events; each size gets fresh stores and a fresh table.
    pub sizes: Vec<usize>,
    /// Concurrent ingest clients (threads / connections) per side.
    pub concurrency: usize,
    /// Events per ingest request / INSERT statement.
    pub batch: usize,
    /// Measured samples per query per side.
    pub samples: usize,
    /// Unmeasured queries per query per side before the samples.
    pub warmup: usize,
    pub seed: u64,
    /// libpq-style connection string.
    pub pg_url: String,
    /// The reference table; dropped at start and end.
    pub pg_table: String,
    /// Where causeway's temporary data directories go (default: the system temp dir).
    pub data_dir: Option<PathBuf>,
    /// The command line shown in the report.
    pub command: String,
    /// Progress lines on stderr.
    pub verbose: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sizes: vec![10_000, 1_000_000],
            concurrency: 4,
            batch: 1_000,
            samples: 2_000,
            warmup: 200,
            seed: 42,
            pg_url: DEFAULT_PG_URL.into(),
            pg_table: DEFAULT_PG_TABLE.into(),
            data_dir: None,
            command: "scripts/bench".into(),
            verbose: true,
        }
    }
}

impl Config {
    /// `--quick`: one small size and few samples, for a smoke run in seconds.
    pub fn quick() -> Config {
        Config { sizes: vec![2_000], samples: 200, warmup: 20, ..Config::default() }
    }
}

/// Runs the whole benchmark.
pub fn run(cfg: &Config) -> Result<Report> {
    if cfg.sizes.is_empty() || cfg.sizes.contains(&0) {
        bail!("--sizes needs at least one positive size");
    }
    if cfg.concurrency == 0 || cfg.batch == 0 || cfg.samples == 0 {
        bail!("--concurrency, --batch and --samples must be positive");
    }
    let started = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let clock = Instant::now();
    let machine = machine(&cfg.pg_url)?;
    progress!(cfg, "{} on {} × {}", machine.postgres, machine.nproc, machine.cpu);
    pg::drop_table(&cfg.pg_url, &cfg.pg_table)?;
    let mut sizes = Vec::new();
    for &n in &cfg.sizes {
        let result = run_size(cfg, n);
        let _ = pg::drop_table(&cfg.pg_url, &cfg.pg_table);
        sizes.push(result?);
    }
    let machine = Machine { load_at_end: load_average(), ..machine };
    Ok(Report {
        started,
        elapsed_s: clock.elapsed().as_secs_f64(),
        machine,
        settings: Settings {
            sizes: cfg.sizes.clone(),
            concurrency: cfg.concurrency,
            batch: cfg.batch,
            samples: cfg.samples,
            warmup: cfg.warmup,
            seed: cfg.seed,
            command: cfg.command.clone(),
        },
        sizes,
    })
}

fn run_size(cfg: &Config, n: usize) -> Result<SizeResult> {
    let clock = Instant::now();
    let data = Dataset::generate(n, cfg.seed);
    let bodies = data.ndjson_batches(cfg.batch);
    progress!(
        cfg,
        "{n} events: generated {} correlations, {} batches, mean {:.0} B/event in {:.1} s",
        data.correlations,
        bodies.len(),
        data.mean_event_bytes(),
        clock.elapsed().as_secs_f64()
    );

    // 1. causeway over HTTP; the server keeps running for the queries.
    let dir = temp_dir(cfg.data_dir.as_deref())?;
    let store = Store::open(dir.path()).context("opening the causeway store")?;
    let server = Server::start(AppState::new(store.clone(), ParseOptions::default(), SqlLimits::default()))?;
    let http_eps = ingest_http(server.addr, &bodies, cfg.concurrency, n)?;
    let stored = store.counts()?.events as usize;
    if stored != n {
        bail!("causeway stored {stored} events over HTTP, expected {n}");
    }
    progress!(cfg, "{n} events: causeway HTTP ingest {http_eps:.0} events/s");

    // 2. causeway in-process, into another fresh store.
    let inproc_eps = ingest_in_process(cfg, &bodies, n)?;
    progress!(cfg, "{n} events: causeway in-process ingest {inproc_eps:.0} events/s");
    drop(bodies);

    // 3. The PostgreSQL reference.
    pg::recreate(&cfg.pg_url, &cfg.pg_table)?;
    let pg_eps = ingest_postgres(cfg, &data)?;
    let stored = pg::count(&cfg.pg_url, &cfg.pg_table)? as usize;
    if stored != n {
        bail!("PostgreSQL stored {stored} rows, expected {n}");
    }
    progress!(cfg, "{n} events: PostgreSQL ingest {pg_eps:.0} events/s");
    pg::vacuum_analyze(&cfg.pg_url, &cfg.pg_table)?;
    let postgres_bytes = pg::total_bytes(&cfg.pg_url, &cfg.pg_table)? as u64;

    // 4. Latency, the three sides interleaved query by query, so a burst of other work on the
    //    machine hits every side alike.
    let total = cfg.warmup + cfg.samples;
    let mut sides = Sides { http: HttpClient::new(server.addr), store: &store, pg: pg::Queries::new(&cfg.pg_url, &cfg.pg_table)? };
    let mut queries = Vec::new();
    let mut notes = Vec::new();
    for (k, kind) in QueryKind::ALL.into_iter().enumerate() {
        let ids: Vec<&str> = data
            .sample_indexes(total, k as u64 + 1)
            .into_iter()
            .map(|i| {
                let e = &data.events[i];
                match kind {
                    QueryKind::Chain => e.correlation_id.as_str(),
                    QueryKind::Descendants | QueryKind::Root => e.id.as_str(),
                }
            })
            .collect();
        let result = sides.latency(kind, &ids, cfg.warmup)?;
        let (a, b) = (result.causeway_in_process.mean_rows, result.postgres.mean_rows);
        if a != b {
            notes.push(format!(
                "{}: PostgreSQL answered {:.2} rows per query on average, causeway {:.2}, for the same ids",
                kind.name(),
                b.unwrap_or(0.0),
                a.unwrap_or(0.0)
            ));
        }
        progress!(
            cfg,
            "{n} events: {} p99 HTTP {:.3} ms, in-process {:.3} ms, PostgreSQL {:.3} ms",
            kind.name(),
            result.causeway_http.p99_ms,
            result.causeway_in_process.p99_ms,
            result.postgres.p99_ms
        );
        queries.push(result);
    }
    let (floor_http, floor_postgres) = sides.floor(total, cfg.warmup)?;
    drop(sides);
    server.stop()?;
    drop(store);
    let causeway_bytes = dir_bytes(dir.path());
    drop(dir);
    progress!(cfg, "{n} events: done in {:.0} s", clock.elapsed().as_secs_f64());
    Ok(SizeResult {
        events: n,
        correlations: data.correlations,
        mean_event_bytes: data.mean_event_bytes(),
        ingest: Ingest { causeway_http: http_eps, causeway_in_process: inproc_eps, postgres: pg_eps },
        queries,
        floor_http,
        floor_postgres,
        causeway_bytes,
        postgres_bytes,
        notes,
    })
}

/// A fresh data directory under `parent` (default: the system temp dir), removed when dropped.
pub(crate) fn temp_dir(parent: Option<&Path>) -> Result<tempfile::TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix("causeway-bench-");
    Ok(match parent {
        Some(parent) => {
            std::fs::create_dir_all(parent)?;
            b.tempdir_in(parent)?
        }
        None => b.tempdir()?,
    })
}

/// Every file under `dir`, subdirectories included (sealed segments live in `segments/`).
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Reads every file under `dir` once, start to end, and returns the bytes read: causeway's
/// counterpart of the `VACUUM ANALYZE` PostgreSQL gets before the queries, which reads its whole
/// heap. Without it one side answers from pages just read and the other from pages the kernel
/// has taken back since they were written.
pub(crate) fn read_dir_once(dir: &Path) -> std::io::Result<u64> {
    use std::io::Read as _;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            total += read_dir_once(&entry.path())?;
            continue;
        }
        // A file removed since the listing (a WAL checkpoint, a retention sweep) is skipped.
        let Ok(mut file) = std::fs::File::open(entry.path()) else { continue };
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(total)
}

/// The name of [`Server`]'s runtime threads.
pub const SERVER_THREAD_NAME: &str = "causeway-server";

/// The causeway server on its own runtime, listening on a free local port.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    pub addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub fn start(state: AppState) -> Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name(SERVER_THREAD_NAME).build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(causeway_server::serve(listener, state, async move {
            let _ = stop.await;
        }));
        Ok(Server { runtime, addr, shutdown, task })
    }

    pub fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(());
        let result = self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(30), self.task).await });
        self.runtime.shutdown_timeout(Duration::from_secs(5));
        match result {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.into()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => bail!("the server did not shut down within 30 s"),
        }
    }
}

#[derive(serde::Deserialize)]
struct IngestAnswer {
    accepted: usize,
    duplicates: usize,
    rejected: usize,
}

/// Runs `work(thread)` on `threads` threads that start together; returns the wall time from the
/// common start to the last finish.
pub(crate) fn timed_threads<S: Send>(
    threads: usize,
    setup: impl Fn() -> Result<S> + Sync,
    work: impl Fn(&mut S) -> Result<()> + Sync,
) -> Result<Duration> {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let state = setup();
                    barrier.wait();
                    let mut state = state?;
                    work(&mut state)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut first_error = None;
        for h in handles {
            if let Err(e) = h.join().expect("a bench thread panicked")
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        let elapsed = start.elapsed();
        match first_error {
            Some(e) => Err(e),
            None => Ok(elapsed),
        }
    })
}

fn ingest_http(addr: SocketAddr, bodies: &[Vec<u8>], concurrency: usize, n: usize) -> Result<f64> {
    let next = AtomicUsize::new(0);
    let elapsed = timed_threads(
        concurrency,
        || Ok((HttpClient::new(addr), Vec::with_capacity(64 * 1024))),
        |(client, answer)| {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { return Ok(()) };
                let sent = body.iter().filter(|&&b| b == b'\n').count();
                post_batch(client, answer, body, sent).with_context(|| format!("batch {i}"))?;
            }
        },
    )?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// `POST /v1/events` with one NDJSON body of `sent` events; an error unless every one was
/// accepted (and so is durable).
pub(crate) fn post_batch(client: &mut HttpClient, answer: &mut Vec<u8>, body: &[u8], sent: usize) -> Result<()> {
    let status = client.post("/v1/events", "application/x-ndjson", body, answer)?;
    if status.0 != 200 {
        bail!("POST /v1/events answered {}: {}", status.0, String::from_utf8_lossy(&answer[..answer.len().min(500)]));
    }
    let a: IngestAnswer = serde_json::from_slice(answer).context("reading the ingest answer")?;
    if a.accepted != sent || a.duplicates != 0 || a.rejected != 0 {
        bail!("{} accepted, {} duplicates, {} rejected of {sent}", a.accepted, a.duplicates, a.rejected);
    }
    Ok(())
}

fn ingest_in_process(cfg: &Config, bodies: &[Vec<u8>], n: usize) -> Result<f64> {
    // Parsing is not timed: the batches arrive parsed, as from a library caller.
    let options = ParseOptions::default();
    let mut batches = Vec::with_capacity(bodies.len());
    for body in bodies {
        let items = parse_body(Some("application/x-ndjson"), &[], body, &options)?;
        let events =
            items.into_iter().map(|item| item.result.map(NewEvent::new)).collect::<Result<Vec<_>, _>>().context("a generated event did not parse")?;
        batches.push(Mutex::new(Some(events)));
    }
    let dir = temp_dir(cfg.data_dir.as_deref())?;
    let store = Store::open(dir.path()).context("opening the causeway store")?;
    let next = AtomicUsize::new(0);
    let elapsed = timed_threads(
        cfg.concurrency,
        || Ok(()),
        |_| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = batches.get(i) else { return Ok(()) };
            let events = slot.lock().expect("batch slot").take().expect("each batch is taken once");
            let len = events.len();
            let result = store.append_blocking(events, vec![])?;
            if result.events.len() != len || result.events.iter().any(|o| *o != EventOutcome::Accepted) {
                bail!("batch {i}: not every event was accepted");
            }
        },
    )?;
    let stored = store.counts()?.events as usize;
    if stored != n {
        bail!("causeway stored {stored} events in-process, expected {n}");
    }
    drop(store);
    drop(dir);
    Ok(n as f64 / elapsed.as_secs_f64())
}

fn ingest_postgres(cfg: &Config, data: &Dataset) -> Result<f64> {
    let chunks: Vec<_> = data.events.chunks(cfg.batch).collect();
    let next = AtomicUsize::new(0);
    let elapsed = timed_threads(
        cfg.concurrency,
        || pg::Inserter::new(&cfg.pg_url, &cfg.pg_table),
        |inserter| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(rows) = chunks.get(i) else { return Ok(()) };
            inserter.insert(rows)?;
        },
    )?;
    Ok(data.events.len() as f64 / elapsed.as_secs_f64())
}

fn query_path(kind: QueryKind, id: &str) -> String {
    match kind {
        QueryKind::Chain => format!("/v1/correlations/{id}"),
        QueryKind::Descendants => format!("/v1/events/{id}/descendants"),
        QueryKind::Root => format!("/v1/events/{id}/root"),
    }
}

/// The limit the HTTP API uses by default (`?limit` absent), plus the one it adds to detect truncation.
const API_LIMIT: usize = 10_001;

#[derive(Clone, Copy)]
enum Side {
    Http,
    InProcess,
    Postgres,
}

/// The orders the sides are asked an id in, id after id: causeway over HTTP always before causeway
/// in-process, so that HTTP finds the id's blocks as a server asked about it for the first time
/// does, never decoded by the in-process read (which then measures the store with them decoded);
/// PostgreSQL first, between or last in turn.
const ORDERS: [[Side; 3]; 3] =
    [[Side::Postgres, Side::Http, Side::InProcess], [Side::Http, Side::Postgres, Side::InProcess], [Side::Http, Side::InProcess, Side::Postgres]];

/// The three ways of asking, each with its own connection.
pub(crate) struct Sides<'a> {
    pub(crate) http: HttpClient,
    pub(crate) store: &'a Store,
    pub(crate) pg: pg::Queries,
}

impl Sides<'_> {
    fn http_get(&mut self, path: &str, body: &mut Vec<u8>) -> Result<Duration> {
        let start = Instant::now();
        let status = self.http.get(path, body)?;
        let elapsed = start.elapsed();
        if status.0 != 200 || body.is_empty() {
            bail!("GET {path} answered {}: {}", status.0, String::from_utf8_lossy(&body[..body.len().min(500)]));
        }
        Ok(elapsed)
    }

    fn in_process(&self, kind: QueryKind, id: &str) -> Result<(Duration, usize)> {
        let start = Instant::now();
        let rows = match kind {
            QueryKind::Chain => self.store.correlation(id, API_LIMIT)?.len(),
            QueryKind::Descendants => self.store.descendants(id, API_LIMIT)?.context("a generated event is missing")?.len(),
            QueryKind::Root => self.store.root(id)?.map(|_| 1).context("a generated event is missing")?,
        };
        Ok((start.elapsed(), rows))
    }

    fn postgres(&mut self, kind: QueryKind, id: &str) -> Result<(Duration, usize)> {
        let start = Instant::now();
        let rows = match kind {
            QueryKind::Chain => self.pg.chain(id)?,
            QueryKind::Descendants => self.pg.descendants(id)?,
            QueryKind::Root => self.pg.root(id)?,
        };
        Ok((start.elapsed(), rows))
    }

    /// Every id asked of every side in turn, in one of [`ORDERS`]; the first `warmup` answers are
    /// not counted. Each timed request over a socket follows an untimed round trip to the same
    /// side (`GET /healthz`, `SELECT 1`), so that neither side pays for waking what the other
    /// side's query left idle: PostgreSQL's descendants query takes 6–10 ms at ten million events,
    /// and after that long on this virtual machine a request paid for waking a core (`idle_wake`
    /// example, docs/benchmarks.md).
    pub(crate) fn latency(&mut self, kind: QueryKind, ids: &[&str], warmup: usize) -> Result<QueryResult> {
        let measured = ids.len().saturating_sub(warmup);
        let (mut http, mut inproc, mut pg) = (Vec::with_capacity(measured), Vec::with_capacity(measured), Vec::with_capacity(measured));
        let (mut inproc_rows, mut pg_rows) = (0, 0);
        let mut body = Vec::with_capacity(64 * 1024);
        for (k, id) in ids.iter().enumerate() {
            let path = query_path(kind, id);
            for side in ORDERS[k % ORDERS.len()] {
                match side {
                    Side::Http => {
                        self.http_get("/healthz", &mut body)?;
                        let t = self.http_get(&path, &mut body)?;
                        if k >= warmup {
                            http.push(t);
                        }
                    }
                    Side::InProcess => {
                        let (t, rows) = self.in_process(kind, id)?;
                        if k >= warmup {
                            inproc.push(t);
                            inproc_rows += rows;
                        }
                    }
                    Side::Postgres => {
                        self.pg.ping()?;
                        let (t, rows) = self.postgres(kind, id)?;
                        if k >= warmup {
                            pg.push(t);
                            pg_rows += rows;
                        }
                    }
                }
            }
        }
        Ok(QueryResult {
            kind,
            causeway_http: Stats::from_samples(http, None),
            causeway_in_process: Stats::from_samples(inproc, Some(inproc_rows)),
            postgres: Stats::from_samples(pg, Some(pg_rows)),
        })
    }

    /// The round trip without store work: `GET /healthz` against `SELECT 1`, interleaved.
    pub(crate) fn floor(&mut self, total: usize, warmup: usize) -> Result<(Stats, Stats)> {
        let (mut http, mut pg) = (Vec::new(), Vec::new());
        let mut body = Vec::new();
        for k in 0..total {
            let a = self.http_get("/healthz", &mut body)?;
            let b = {
                let start = Instant::now();
                self.pg.ping()?;
                start.elapsed()
            };
            if k >= warmup {
                http.push(a);
                pg.push(b);
            }
        }
        Ok((Stats::from_samples(http, None), Stats::from_samples(pg, None)))
    }
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

pub(crate) fn machine(pg_url: &str) -> Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: u64 = m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0)))
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .map(|commit| {
            let dirty = std::process::Command::new("git")
                .args(["status", "--porcelain", "--untracked-files=no"])
                .output()
                .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
            if dirty { format!("{commit} (with uncommitted changes)") } else { commit }
        })
        .unwrap_or_else(|| "unknown".into());
    Ok(Machine {
        nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu,
        memory,
        kernel,
        load_at_start: load_average(),
        load_at_end: String::new(),
        postgres: pg::describe_server(pg_url)?,
        commit,
    })
}

/// A bench binary's ending: the Markdown report of `result` printed (and written to `out`), or the
/// error. Missing a target is a result, not a failure of the run.
pub fn finish(name: &str, result: Result<String>, out: Option<&Path>) -> std::process::ExitCode {
    let markdown = match result {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    print!("{markdown}");
    if let Some(path) = out
        && let Err(e) = std::fs::write(path, &markdown)
    {
        eprintln!("{name}: cannot write {}: {e}", path.display());
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
