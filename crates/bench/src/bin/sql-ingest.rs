//! Ingest beside hostile SQL (issue "Hostile and careless input", Done when): eight concurrent
//! expensive SQL queries of any kind are each cut at the time limit, and ingest p99 during them
//! stays within 3× of ingest p99 without them.
//!
//! The server runs in this process with its default SQL limits (5 s, 16 MiB answers, one query at
//! a time per core less one; the limit counts from the request, so a query that waits for a slot
//! runs for what is left). Producers post NDJSON batches at a fixed pace, each on its own
//! kept-alive connection; a request's latency counts from the moment it was due, so a producer
//! held up is not let off. Phases of `--seconds` each, in turn: ingest alone, ingest with eight
//! SQL clients each sending one expensive query again and again (every answer timed), `--rounds`
//! times, then alone once more; whatever else runs on the machine falls on both kinds alike.
//!
//! `cargo run --release -p causeway-bench --bin sql-ingest -- [--seconds N] [--producers N]`
//! (`scripts/bench-sql` runs it and records the report).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use causeway_bench::Server;
use causeway_bench::data::Dataset;
use causeway_bench::http::HttpClient;
use causeway_bench::report::Stats;
use causeway_envelope::ParseOptions;
use causeway_server::AppState;
use causeway_store::{SqlLimits, Store};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Length of each phase.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Rounds of a phase alone then a phase with the SQL clients (and a last phase alone), so that
    /// whatever else the machine does falls on both alike.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Ingest clients, each on its own connection.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Requests per second of each producer.
    #[arg(long, default_value_t = 50)]
    rate: u64,
    /// Events per request.
    #[arg(long, default_value_t = 10)]
    batch: usize,
}

/// The most ingest p99 may grow while the queries run.
const TARGET_RATIO: f64 = 3.0;
/// What may pass between a query's deadline and its answer.
const MARGIN: Duration = Duration::from_millis(500);

fn over_rows(rows: usize, select: &str) -> String {
    format!("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT {rows}) {select}")
}

/// Eight expensive queries, one per SQL client.
fn queries() -> Vec<(&'static str, String)> {
    vec![
        ("printf width 100 MB (the issue's query)", over_rows(200, "SELECT count(*) FROM c WHERE length(printf('%.*c',100000000+x,'x'))>0")),
        ("printf width 16 MB", over_rows(2000, "SELECT count(*) FROM c WHERE length(printf('%.*c',16000000+x,'x'))>0")),
        ("randomblob 16 MB", over_rows(200, "SELECT count(*) FROM c WHERE length(randomblob(16000000))>0")),
        ("1,000 rows of a 1 MB blob", over_rows(1000, "SELECT randomblob(1000000) FROM c")),
        (
            "instr 8 MB × 4 MB",
            over_rows(200, "SELECT count(*) FROM c WHERE instr(printf('%.*c', 8000000 + x, 'a'), printf('%.*c', 4000000, 'a') || 'b') >= 0"),
        ),
        (
            "LIKE backtracking",
            over_rows(200, "SELECT count(*) FROM c WHERE printf('%.*c', 8000000 + x, 'a') LIKE '%' || printf('%.*c', 900, 'a') || 'b'"),
        ),
        (
            "replace 8 MB × 4 MB",
            over_rows(
                200,
                "SELECT count(*) FROM c WHERE length(replace(printf('%.*c', 8000000 + x, 'a'), printf('%.*c', 4000000, 'a') || 'b', 'c')) > 0",
            ),
        ),
        ("cross join of 1.6e9 rows", over_rows(200, "SELECT count(*) FROM c, c AS d, c AS e, c AS f")),
    ]
}

/// One SQL answer: what it was and how long it took.
struct Answer {
    outcome: String,
    took: Duration,
}

fn outcome(status: u16, body: &[u8]) -> String {
    // A 16 MiB answer is not parsed: this process's clients should not eat the CPU under measure.
    if status == 200 && body.len() > 1 << 16 {
        let tail = String::from_utf8_lossy(&body[body.len() - 1024..]);
        return match ["rows", "bytes"].into_iter().find(|by| tail.contains(&format!("\"truncated_by\":\"{by}\""))) {
            Some(by) => format!("200 truncated by {by}"),
            None => "200".into(),
        };
    }
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match (status, v["error"]["code"].as_str()) {
        (200, _) if v["truncated_by"].is_string() => format!("200 truncated by {}", v["truncated_by"].as_str().unwrap_or("")),
        (200, _) => "200".into(),
        (status, Some(code)) => format!("{status} {code}"),
        (status, None) => format!("{status}"),
    }
}

/// Posts batches at the producers' pace until `stop`; the latency of each request, from when it
/// was due.
fn ingest(server: std::net::SocketAddr, bodies: &[Vec<u8>], args: &Args, stop: &AtomicBool) -> Result<Vec<Duration>> {
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::new());
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    std::thread::scope(|s| {
        let mut producers = Vec::new();
        for p in 0..args.producers {
            let (next, latencies) = (&next, &latencies);
            producers.push(s.spawn(move || -> Result<()> {
                let mut client = HttpClient::new(server);
                let mut answer = Vec::new();
                let mut mine = Vec::new();
                // Producers start spread over one interval.
                let start = Instant::now() + interval.mul_f64(p as f64 / args.producers as f64);
                let mut k = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let due = start + interval * k;
                    k += 1;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { bail!("the generated events ran out: raise their number") };
                    let status = client.post("/v1/events", "application/x-ndjson", body, &mut answer)?;
                    mine.push(due.elapsed());
                    if status.0 != 200 {
                        bail!("ingest answered {}: {}", status.0, String::from_utf8_lossy(&answer));
                    }
                }
                latencies.lock().expect("latencies").extend(mine);
                Ok(())
            }));
        }
        producers.into_iter().try_for_each(|p| p.join().expect("producer thread"))
    })?;
    Ok(latencies.into_inner().expect("latencies"))
}

/// One phase: ingest latencies, and each SQL client's answers (when `with_sql`). The SQL clients
/// stop after their answer in progress; ingest is measured only while they all still run.
fn phase(server: std::net::SocketAddr, bodies: &[Vec<u8>], args: &Args, with_sql: bool) -> Result<(Vec<Duration>, Vec<Vec<Answer>>)> {
    let stop = AtomicBool::new(false);
    let sql_stop = Arc::new(AtomicBool::new(false));
    let answers: Vec<Mutex<Vec<Answer>>> = queries().iter().map(|_| Mutex::new(Vec::new())).collect();
    let latencies = std::thread::scope(|s| -> Result<Vec<Duration>> {
        if with_sql {
            for ((_, query), answers) in queries().into_iter().zip(&answers) {
                let sql_stop = sql_stop.clone();
                s.spawn(move || -> Result<()> {
                    let mut client = HttpClient::new(server);
                    let mut body = Vec::new();
                    let payload = serde_json::json!({"query": query}).to_string();
                    while !sql_stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let status = client.post("/v1/sql", "application/json", payload.as_bytes(), &mut body)?;
                        let took = started.elapsed();
                        answers.lock().expect("answers").push(Answer { outcome: outcome(status.0, &body), took });
                    }
                    Ok(())
                });
            }
        }
        let timer = s.spawn(|| {
            std::thread::sleep(Duration::from_secs(args.seconds));
            stop.store(true, Ordering::Relaxed);
        });
        let latencies = ingest(server, bodies, args, &stop);
        timer.join().expect("timer");
        sql_stop.store(true, Ordering::Relaxed);
        latencies
    })?;
    Ok((latencies, answers.into_iter().map(|a| a.into_inner().expect("answers")).collect()))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let limits = SqlLimits::default();
    let phases = 2 * args.rounds + 1;
    let per_phase = (args.seconds * args.rate) as usize * args.producers + 1000;
    eprintln!("generating {} events", phases * per_phase * args.batch);
    let data = Dataset::generate(phases * per_phase * args.batch, 42);
    let bodies = data.ndjson_batches(args.batch);
    let temp = tempfile::tempdir()?;
    let store = Store::open(temp.path())?;
    let server = Server::start(AppState::new(store, ParseOptions::default(), limits))?;

    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    let mut answers: Vec<Vec<Answer>> = queries().iter().map(|_| Vec::new()).collect();
    let mut rows = Vec::new();
    for n in 0..phases {
        let with_sql = n % 2 == 1;
        eprintln!("phase {} of {phases}: ingest {} ({} s)", n + 1, if with_sql { "with eight expensive SQL clients" } else { "alone" }, args.seconds);
        let (latencies, got) = phase(server.addr, &bodies[n * per_phase..(n + 1) * per_phase], &args, with_sql)?;
        rows.push((n + 1, with_sql, Stats::from_samples(latencies.clone(), None)));
        if with_sql {
            beside.extend(latencies);
            for (all, mine) in answers.iter_mut().zip(got) {
                all.extend(mine);
            }
        } else {
            alone.extend(latencies);
        }
    }
    server.stop()?;
    let (before, during) = (Stats::from_samples(alone, None), Stats::from_samples(beside, None));

    println!("### Ingest beside eight expensive SQL queries\n");
    println!(
        "{} producers, each posting {} events per request {} times a second ({} events/s in all), latency counted from when each request was due; \
         SQL limits: {} ms, {} bytes per answer, {} quer{} at a time on {} cores; {} phases of {} s, alone and with the eight SQL clients in turn.\n",
        args.producers,
        args.batch,
        args.rate,
        args.producers as u64 * args.rate * args.batch as u64,
        limits.timeout.as_millis(),
        limits.max_answer_bytes,
        limits.max_concurrent,
        if limits.max_concurrent == 1 { "y" } else { "ies" },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        phases,
        args.seconds
    );
    println!("| phase | ingest | requests | p50 ms | p99 ms | mean ms |");
    println!("|---|---|---|---|---|---|");
    for (n, with_sql, s) in &rows {
        let what = if *with_sql { "with eight SQL clients" } else { "alone" };
        println!("| {n} | {what} | {} | {:.2} | {:.2} | {:.2} |", s.samples, s.p50_ms, s.p99_ms, s.mean_ms);
    }
    for (name, s) in [("all alone", &before), ("all with eight SQL clients", &during)] {
        println!("| **{name}** | | {} | {:.2} | **{:.2}** | {:.2} |", s.samples, s.p50_ms, s.p99_ms, s.mean_ms);
    }
    let ratio = during.p99_ms / before.p99_ms;
    println!();
    println!(
        "Ingest p99 with the queries ÷ without: **{ratio:.2}×** (target ≤ {TARGET_RATIO}×): {}.\n",
        if ratio <= TARGET_RATIO { "PASS" } else { "FAIL" }
    );
    println!("| query | answers | outcomes | longest answer s | longest `query_timeout` answer s |");
    println!("|---|---|---|---|---|");
    let mut over = Vec::new();
    for ((name, _), answers) in queries().iter().zip(&answers) {
        let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
        for a in answers {
            *outcomes.entry(a.outcome.as_str()).or_default() += 1;
        }
        let longest = answers.iter().map(|a| a.took).max().unwrap_or_default();
        let cut = answers.iter().filter(|a| a.outcome.ends_with("query_timeout")).map(|a| a.took).max();
        // The limit counts from the request, the wait for a slot included.
        if longest > limits.timeout + MARGIN {
            over.push(*name);
        }
        let outcomes: Vec<String> = outcomes.iter().map(|(o, n)| format!("{n} × {o}")).collect();
        println!(
            "| {name} | {} | {} | {:.2} | {} |",
            answers.len(),
            outcomes.join(", "),
            longest.as_secs_f64(),
            cut.map_or("—".into(), |c| format!("{:.2}", c.as_secs_f64()))
        );
    }
    println!();
    println!(
        "Every answer within the time limit, the wait for a slot included ({} s + {} ms): {}.",
        limits.timeout.as_secs(),
        MARGIN.as_millis(),
        if over.is_empty() { "PASS".to_string() } else { format!("FAIL ({})", over.join(", ")) }
    );
    Ok(())
}
