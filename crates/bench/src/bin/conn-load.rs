//! `conn-load`: many idle connections plus normal ingest against a `causeway serve` child on
//! 127.0.0.1. Reports the connections held (by the holders and by the server), the latency and
//! failures of health checks and ingest before and during, and the server's RSS before, during and
//! after. First a burst of large batches (its peak RSS and what stays after it), which also fills
//! the store, so the load meets the page cache of a store in use.
//!
//! Bounded: only 127.0.0.1 is targeted; every loop ends at its phase's deadline or count; the
//! holder processes (`conn-load hold`, 10,000 connections each at most, as one process may open
//! 20,000 files here) stop at their deadline by themselves, and are killed if they overstay it.
//!
//! ```sh
//! cargo build --release -p causeway -p causeway-bench
//! target/release/conn-load                      # a 200,000-event burst, then 20,000 idle connections for 60 s
//! target/release/conn-load --idle 2000 --seconds 10 --burst-events 0   # a quick look
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(about = "Idle connections plus normal ingest against a causeway server on 127.0.0.1")]
struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// The `causeway` binary [default: `causeway` beside this one].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Idle connections to hold during the load phase.
    #[arg(long, default_value_t = 20_000)]
    idle: usize,
    /// Processes the idle connections are spread over.
    #[arg(long, default_value_t = 2)]
    holders: usize,
    /// Seconds of the load phase.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seconds of ingest before the load, so the "before" RSS includes what ingest itself keeps.
    #[arg(long, default_value_t = 15)]
    warmup: u64,
    /// Seconds the RSS is watched after the load (and after the burst).
    #[arg(long, default_value_t = 20)]
    settle: u64,
    /// Producers posting during warm-up and load.
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// Events per producer request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Milliseconds between a producer's requests.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Events posted in the burst after the load, in batches of 10,000; 0: no burst.
    #[arg(long, default_value_t = 200_000)]
    burst_events: usize,
    /// Clients posting the burst at once.
    #[arg(long, default_value_t = 4)]
    burst_clients: usize,
    /// More arguments for `causeway serve` (repeat the flag: --serve-arg=--max-connections --serve-arg=1000).
    #[arg(long, allow_hyphen_values = true)]
    serve_arg: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Holds `count` idle connections to `addr` for `seconds` (a third each: silent, a head sent
    /// one line at a time, idle after one request), opening a new one whenever the server closes one.
    Hold {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        seconds: u64,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Sub::Hold { addr, count, seconds }) = args.command {
        return hold(addr, count, Duration::from_secs(seconds));
    }
    if args.holders == 0 || args.idle.div_ceil(args.holders) > 10_000 {
        bail!("at most 10,000 idle connections per holder: raise --holders");
    }
    run(&args)
}

// ---------------------------------------------------------------------------------------------
// The holders.

fn hold(addr: SocketAddr, count: usize, seconds: Duration) -> Result<()> {
    if !addr.ip().is_loopback() {
        bail!("conn-load targets the loopback interface only, not {addr}");
    }
    causeway_server::raise_file_limit()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let counters = Arc::new(HoldCounters::default());
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + seconds;
        let mut tasks = Vec::with_capacity(count);
        for i in 0..count {
            let counters = counters.clone();
            tasks.push(tokio::spawn(async move {
                // Opened in waves of 500 every 50 ms, so the listen backlog keeps up.
                tokio::time::sleep(Duration::from_millis((i / 500) as u64 * 50)).await;
                hold_one(addr, i % 3, deadline, &counters).await;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let c = &counters;
    println!(
        "{{\"connects\": {}, \"closed_by_server\": {}, \"connect_errors\": {}}}",
        c.connects.load(Ordering::Relaxed),
        c.closed_by_server.load(Ordering::Relaxed),
        c.connect_errors.load(Ordering::Relaxed)
    );
    Ok(())
}

#[derive(Default)]
struct HoldCounters {
    connects: AtomicU64,
    closed_by_server: AtomicU64,
    connect_errors: AtomicU64,
}

async fn hold_one(addr: SocketAddr, mode: usize, deadline: tokio::time::Instant, counters: &HoldCounters) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    while tokio::time::Instant::now() < deadline {
        let connected = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await;
        let Ok(Ok(mut stream)) = connected else {
            counters.connect_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + Duration::from_millis(200))).await;
            continue;
        };
        counters.connects.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 1024];
        let sent = match mode {
            0 => Ok(()),
            1 => stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: load\r\n").await,
            _ => match stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: load\r\n\r\n").await {
                Ok(()) => stream.read(&mut buf).await.map(|_| ()),
                Err(e) => Err(e),
            },
        };
        if sent.is_ok() {
            // Idle until the server closes the connection or the phase ends; the slow head gets a
            // line every 3 s.
            loop {
                let trickle = tokio::time::Instant::now() + Duration::from_secs(3);
                tokio::select! {
                    read = stream.read(&mut buf) => {
                        if matches!(read, Ok(0) | Err(_)) {
                            counters.closed_by_server.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => return,
                    () = tokio::time::sleep_until(trickle), if mode == 1 => {
                        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                            counters.closed_by_server.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
        }
        drop(stream);
        tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + Duration::from_millis(100))).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The driver.

struct Server {
    child: Child,
    addr: SocketAddr,
    pid: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(args: &Args, data: &std::path::Path) -> Result<Server> {
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("causeway"),
    };
    if !bin.exists() {
        bail!("{} not found: build it (cargo build --release -p causeway) or pass --server-bin", bin.display());
    }
    let log = std::fs::File::create(data.with_extension("log"))?;
    let mut child = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(&args.serve_arg)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let first = lines.next().context("the server printed nothing")??;
    let addr: SocketAddr = first.strip_prefix("causeway listening on http://").with_context(|| format!("unexpected first line: {first}"))?.parse()?;
    std::thread::spawn(move || for _ in lines {});
    let pid = child.id();
    Ok(Server { child, addr, pid })
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Latencies and outcomes of one kind of request.
#[derive(Default)]
struct Samples {
    millis: Vec<f64>,
    /// Answers by status (0: no answer — connect, write or read failed or timed out).
    statuses: std::collections::BTreeMap<u16, usize>,
}

impl Samples {
    fn add(&mut self, started: Instant, status: u16) {
        self.millis.push(started.elapsed().as_secs_f64() * 1000.0);
        *self.statuses.entry(status).or_default() += 1;
    }

    fn merge(&mut self, other: Samples) {
        self.millis.extend(other.millis);
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
    }

    fn summary(&self) -> String {
        let mut m = self.millis.clone();
        if m.is_empty() {
            return "no requests".into();
        }
        m.sort_by(f64::total_cmp);
        let q = |p: f64| m[((m.len() - 1) as f64 * p).round() as usize];
        let statuses: Vec<String> =
            self.statuses.iter().map(|(s, n)| format!("{}: {n}", if *s == 0 { "none".to_string() } else { s.to_string() })).collect();
        format!("{} requests; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {}", m.len(), q(0.5), q(0.99), m[m.len() - 1], statuses.join(", "))
    }
}

/// One request on `conn` (opened if `None`, kept if the server keeps it), with timeouts.
fn request(addr: SocketAddr, conn: &mut Option<TcpStream>, method: &str, path: &str, body: &[u8], keep: bool) -> u16 {
    for attempt in 0..2 {
        let reused = conn.is_some();
        if conn.is_none() {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                    let _ = s.set_nodelay(true);
                    *conn = Some(s);
                }
                Err(_) => return 0,
            }
        }
        let stream = conn.as_mut().expect("connected");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: load\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if keep { "" } else { "Connection: close\r\n" }
        );
        let answer = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body)).and_then(|_| read_answer(stream));
        match answer {
            Ok((status, close)) => {
                if close || !keep {
                    *conn = None;
                }
                return status;
            }
            // A kept connection the server closed meanwhile: once more on a new one.
            Err(_) if reused && attempt == 0 => *conn = None,
            Err(_) => {
                *conn = None;
                return 0;
            }
        }
    }
    0
}

/// Status, and whether the server closes the connection.
fn read_answer(stream: &mut TcpStream) -> std::io::Result<(u16, bool)> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let close = head.lines().any(|l| l.starts_with("connection:") && l.contains("close"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((status, close))
}

fn ndjson(prefix: &str, n: usize) -> Vec<u8> {
    let mut out = String::with_capacity(n * 220);
    for i in 0..n {
        out.push_str(&format!(
            "{{\"specversion\":\"1.0\",\"id\":\"{prefix}-{i}\",\"source\":\"conn-load\",\"type\":\"LoadTested\",\"time\":\"2026-01-01T00:00:00Z\",\"correlationid\":\"{prefix}\",\"data\":{{\"n\":{i},\"pad\":\"{}\"}}}}\n",
            "x".repeat(64)
        ));
    }
    out.into_bytes()
}

/// What a phase of ingest and health checks measured.
#[derive(Default)]
struct Phase {
    ingest: Samples,
    health: Samples,
    rss_max: u64,
    server_files: Vec<usize>,
    holder_files: Vec<usize>,
}

/// Producers and a health checker until `length` has passed; the server's RSS and open files, and
/// the holders' open files, sampled every second.
fn drive(args: &Args, server: &Server, label: &str, length: Duration, holders: &[u32]) -> Phase {
    let deadline = Instant::now() + length;
    let phase = Mutex::new(Phase::default());
    let addr = server.addr;
    std::thread::scope(|s| {
        for p in 0..args.producers {
            let phase = &phase;
            s.spawn(move || {
                let mut samples = Samples::default();
                let mut conn = None;
                let mut n = 0;
                while Instant::now() < deadline {
                    let body = ndjson(&format!("{label}-p{p}-r{n}"), args.batch);
                    let started = Instant::now();
                    samples.add(started, request(addr, &mut conn, "POST", "/v1/events", &body, true));
                    n += 1;
                    let next = started + Duration::from_millis(args.interval_ms);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()).min(deadline.saturating_duration_since(Instant::now())));
                }
                phase.lock().unwrap().ingest.merge(samples);
            });
        }
        let phase_ref = &phase;
        s.spawn(move || {
            let mut samples = Samples::default();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let path = if i.is_multiple_of(2) { "/healthz" } else { "/readyz" };
                let started = Instant::now();
                // A new connection each time, as a load balancer's check opens one.
                samples.add(started, request(addr, &mut None, "GET", path, b"", false));
                i += 1;
                std::thread::sleep(Duration::from_millis(250).min(deadline.saturating_duration_since(Instant::now())));
            }
            phase_ref.lock().unwrap().health.merge(samples);
        });
        let phase_ref = &phase;
        s.spawn(move || {
            while Instant::now() < deadline {
                let rss = rss_kib(server.pid);
                let files = open_files(server.pid);
                let held: usize = holders.iter().map(|pid| open_files(*pid)).sum();
                let mut ph = phase_ref.lock().unwrap();
                ph.rss_max = ph.rss_max.max(rss);
                ph.server_files.push(files);
                ph.holder_files.push(held);
                drop(ph);
                std::thread::sleep(Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now())));
            }
        });
    });
    phase.into_inner().unwrap()
}

fn spread(v: &[usize]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    format!("min {}, median {}, max {}", s[0], s[s.len() / 2], s[s.len() - 1])
}

/// Watches the RSS for `seconds`, once a second; returns the samples.
fn watch_rss(pid: u32, seconds: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..seconds.max(1) {
        std::thread::sleep(Duration::from_secs(1));
        out.push(rss_kib(pid));
    }
    out
}

/// Posts `total` events in batches of 10,000 from `clients` clients at once (a 503 is retried
/// after its Retry-After, at most 100 times a batch); the RSS is sampled every 100 ms.
fn burst(args: &Args, server: &Server) -> (Samples, u64) {
    const BATCH: usize = 10_000;
    let batches = args.burst_events.div_ceil(BATCH);
    let next = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let samples = Mutex::new(Samples::default());
    let peak = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(600);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                peak.fetch_max(rss_kib(server.pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let workers: Vec<_> = (0..args.burst_clients.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Samples::default();
                    let mut conn = None;
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if b >= batches || Instant::now() >= deadline {
                            break;
                        }
                        let n = BATCH.min(args.burst_events - b * BATCH);
                        let body = ndjson(&format!("burst-{b}"), n);
                        for _ in 0..100 {
                            let started = Instant::now();
                            let status = request(server.addr, &mut conn, "POST", "/v1/events", &body, true);
                            mine.add(started, status);
                            if status != 503 {
                                break;
                            }
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                    samples.lock().unwrap().merge(mine);
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        done.store(true, Ordering::Relaxed);
    });
    (samples.into_inner().unwrap(), peak.load(Ordering::Relaxed))
}

fn run(args: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let server = start_server(args, &data)?;
    let started = Instant::now();
    while request(server.addr, &mut None, "GET", "/healthz", b"", false) != 200 {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the server did not answer /healthz within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("server pid {} on {}; serve arguments: {:?}", server.pid, server.addr, args.serve_arg);
    let rss_start = rss_kib(server.pid);
    // A burst of large batches first: what it holds at its peak and keeps after; it also fills the
    // store, so that the page cache the load phase finds is that of a store in use.
    let mut burst_lines = Vec::new();
    if args.burst_events > 0 {
        let before = rss_kib(server.pid);
        let started = Instant::now();
        let (samples, peak) = burst(args, &server);
        let took = started.elapsed();
        let after = watch_rss(server.pid, args.settle);
        burst_lines.push(format!(
            "| burst: {} events in batches of 10,000 from {} clients | {:.1} s; {} |",
            args.burst_events,
            args.burst_clients,
            took.as_secs_f64(),
            samples.summary()
        ));
        burst_lines.push(format!(
            "| RSS before the burst / peak / {} s after | {} / {} / {} |",
            args.settle,
            mib(before),
            mib(peak),
            mib(*after.last().expect("a sample"))
        ));
    }
    let warm = drive(args, &server, "warm", Duration::from_secs(args.warmup), &[]);
    let settled = watch_rss(server.pid, 5);
    let rss_before = *settled.last().expect("a sample");
    let files_before = open_files(server.pid);
    println!("warm-up ({} s): ingest {}", args.warmup, warm.ingest.summary());
    println!("warm-up: health {}", warm.health.summary());

    // The load: holders, producers, health checks.
    let me = std::env::current_exe()?;
    let per = args.idle.div_ceil(args.holders);
    let mut holders: Vec<Child> = Vec::new();
    let mut left = args.idle;
    for _ in 0..args.holders {
        let count = per.min(left);
        left -= count;
        if count == 0 {
            break;
        }
        holders.push(
            Command::new(&me)
                .args(["hold", "--addr", &server.addr.to_string(), "--count", &count.to_string(), "--seconds", &args.seconds.to_string()])
                .stdout(Stdio::piped())
                .spawn()?,
        );
    }
    let pids: Vec<u32> = holders.iter().map(Child::id).collect();
    let load = drive(args, &server, "load", Duration::from_secs(args.seconds), &pids);
    let mut holder_reports = Vec::new();
    for mut h in holders {
        let stop_by = Instant::now() + Duration::from_secs(30);
        while h.try_wait()?.is_none() {
            if Instant::now() > stop_by {
                let _ = h.kill();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut out = String::new();
        if let Some(mut o) = h.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        holder_reports.push(out.trim().to_string());
    }
    // After: the connections are gone once the server's open files are back to where they were.
    let wait_from = Instant::now();
    while open_files(server.pid) > files_before + 16 && wait_from.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let closed_after = wait_from.elapsed();
    let rss_just_after = rss_kib(server.pid);
    let after = watch_rss(server.pid, args.settle);
    let rss_after = *after.last().expect("a sample");
    let check = drive(args, &server, "after", Duration::from_secs(3), &[]);

    println!();
    println!("| | |\n|---|---|");
    println!("| idle connections asked for | {} ({} holder processes, {} s) |", args.idle, args.holders, args.seconds);
    println!("| holders' open connections, sampled each second | {} |", spread(&load.holder_files));
    println!("| server's open files, sampled each second | {} (before: {files_before}) |", spread(&load.server_files));
    println!("| holders' counts | {} |", holder_reports.join("; "));
    println!("| health checks during (new connection each) | {} |", load.health.summary());
    println!(
        "| ingest during ({} producers, {} events per request every {} ms) | {} |",
        args.producers,
        args.batch,
        args.interval_ms,
        load.ingest.summary()
    );
    println!("| health / ingest before (warm-up) | {} / {} |", warm.health.summary(), warm.ingest.summary());
    println!("| health / ingest after | {} / {} |", check.health.summary(), check.ingest.summary());
    println!("| RSS at start / before the load / peak during | {} / {} / {} |", mib(rss_start), mib(rss_before), mib(load.rss_max));
    println!(
        "| RSS after: connections closed ({:.1} s) / {} s later | {} / {} ({:.2}× before) |",
        closed_after.as_secs_f64(),
        args.settle,
        mib(rss_just_after),
        mib(rss_after),
        rss_after as f64 / rss_before as f64
    );
    let every: Vec<String> = after.iter().step_by(5).map(|k| format!("{:.0}", *k as f64 / 1024.0)).collect();
    println!("| RSS every 5 s after the connections closed, MiB | {} |", every.join(", "));
    for line in burst_lines {
        println!("{line}");
    }
    let db: u64 = std::fs::read_dir(&data)?.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
    println!("| store on disk at the end | {} |", mib(db / 1024));
    drop(server);
    Ok(())
}
