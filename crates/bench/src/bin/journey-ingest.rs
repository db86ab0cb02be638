//! End-to-end ingest with the journey engine on against off (issue "The journey engine", Done
//! when): the same simulated order-fulfilment traffic posted over HTTP (NDJSON batches of 1,000)
//! to a server on the bundled model, with and without the engine, in rounds (median ratio);
//! then the same traffic on a store already holding 1,000,000 open journeys (their stall and
//! completion timers pending) against one holding 1,000,000 events that open none; every
//! measurement of that comparison starts from a copy of its side's preloaded store, in a fresh
//! process. Every measurement starts right after touching and freeing 2 GiB (`warm_memory`): on
//! a VM that backs guest memory only on first touch, which side's page cache lands on never-used
//! pages is otherwise chance, and it moved the store writer's CPU per event by up to 20%.
//!
//! `cargo run --release -p causeway-bench --bin journey-ingest -- [--events N] [--rounds N]
//! [--open N] [--clients N]` (`scripts/bench-journeys` runs it and records the report).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use causeway_bench::http::HttpClient;
use causeway_bench::{SERVER_THREAD_NAME, Server};
use causeway_envelope::{ParseOptions, parse_json_line};
use causeway_server::{AppState, Clock, JOURNEY_THREAD_NAME, ModelSlot};
use causeway_sim::{SimConfig, Simulator};
use causeway_store::{NewEvent, SqlLimits, Store, WRITER_THREAD_NAME};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Events posted per measurement.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Rounds; each measures both sides, and the median of the rounds' ratios is the verdict.
    /// Rounds differ by ±5–10% on a shared machine; seven keep one outlier from deciding it.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Open journeys preloaded for the second comparison (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    open: usize,
    /// Skip the on/off comparison (only the open-journeys one).
    #[arg(long)]
    open_only: bool,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Internal: one open-journeys measurement on the store in this directory, in this process;
    /// prints `rebuild_seconds events_per_second journeys_in_flight` and the CPU microseconds per
    /// event of the engine, the writer and the HTTP workers. Each measurement of the comparison runs in a
    /// fresh process, so that none inherits another's memory.
    #[arg(long, hide = true)]
    measure_one: Option<PathBuf>,
    /// Keep the preloaded stores in DIR/reference and DIR/open and reuse them when they are
    /// already there (for reruns, and for profiling one measurement with `--measure-one`).
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Internal: the traffic's tag for `--measure-one`.
    #[arg(long, hide = true, default_value = "o")]
    tag: String,
}

/// `--measure-one`: rebuild, then post the traffic and wait until the engine caught up.
fn measure_one(dir: &Path, args: &Args) -> Result<()> {
    let batches = traffic(args.events, &args.tag, Utc::now());
    let server = start(Store::open(dir)?, true)?;
    let t = Instant::now();
    let s = summary(server.addr)?;
    let rebuild = t.elapsed().as_secs_f64();
    warm_memory(WARM_BYTES);
    let before = thread_use();
    let started = Instant::now();
    post_all(server.addr, &batches, args.clients)?;
    summary(server.addr)?;
    let r = rate(args.events, started.elapsed());
    let after = thread_use();
    let mut used = PartsPerEvent::default();
    for (i, (thread, _)) in PARTS.iter().enumerate() {
        // The kernel keeps a thread's name to its first 15 bytes.
        let name = &thread[..thread.len().min(15)];
        let (Some(a), Some(b)) = (after.get(name), before.get(name)) else { bail!("no thread named {name} in this process") };
        used.cpu_us[i] = (a.cpu_s - b.cpu_s) * 1e6 / args.events as f64;
        used.faults_per_1000[i] = (a.faults - b.faults) * 1e3 / args.events as f64;
    }
    let [c0, c1, c2] = used.cpu_us;
    let [f0, f1, f2] = used.faults_per_1000;
    println!("{rebuild} {r} {} {c0} {c1} {c2} {f0} {f1} {f2}", s["journeys_by_state"]["in_flight"].as_u64().unwrap_or(0));
    server.stop()?;
    Ok(())
}

/// How much memory each measurement touches and frees right before it starts.
const WARM_BYTES: usize = 2 << 30;

/// Touches `bytes` of memory and hands it back to the kernel, so that what the server allocates
/// next (the page cache for the store's writes above all) lands on pages the machine used lately:
/// on a VM whose host backs guest memory only on first touch, a page the guest never used costs
/// several times more to fill, and which side of a comparison gets such pages is chance.
/// (`journey-bench` in `crates/journey` warms the same way before its in-process measurements.)
fn warm_memory(bytes: usize) {
    drop(std::hint::black_box(vec![1u8; bytes]));
}

/// The parts of the server whose use is measured: their threads, and their names in the report.
const PARTS: [(&str, &str); 3] =
    [(JOURNEY_THREAD_NAME, "journey engine"), (WRITER_THREAD_NAME, "store writer"), (SERVER_THREAD_NAME, "HTTP (parse, answer)")];

/// What threads used so far: CPU seconds (user + system) and minor page faults.
#[derive(Default)]
struct ThreadUse {
    cpu_s: f64,
    faults: f64,
}

/// What each of [`PARTS`] spent per event during one measurement.
#[derive(Default)]
struct PartsPerEvent {
    cpu_us: [f64; 3],
    faults_per_1000: [f64; 3],
}

/// What this process's threads used so far, by thread name (as the kernel keeps it: the first
/// 15 bytes).
fn thread_use() -> std::collections::HashMap<String, ThreadUse> {
    let mut by_name = std::collections::HashMap::new();
    let ticks = 100.0; // USER_HZ, fixed at 100 on Linux
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let (Ok(comm), Ok(stat)) = (std::fs::read_to_string(task.path().join("comm")), std::fs::read_to_string(task.path().join("stat"))) else {
            continue;
        };
        // Fields after the parenthesised name: state is field 3, minflt 10, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(f64::NAN)).collect();
        let (Some(faults), Some(u), Some(s)) = (f.get(7), f.get(11), f.get(12)) else {
            continue;
        };
        let used: &mut ThreadUse = by_name.entry(comm.trim().to_string()).or_default();
        used.cpu_s += (u + s) / ticks;
        used.faults += faults;
    }
    by_name
}

fn model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment/model.yaml")
}

/// Simulated traffic as NDJSON batches of 1,000, ids made unique by `tag`, stamped from `start`.
fn traffic(events: usize, tag: &str, start: DateTime<Utc>) -> Vec<Vec<u8>> {
    let mut sim = Simulator::new(SimConfig { seed: 11, fault_rate: 0.05, concurrency: 200 });
    let mut batches = Vec::new();
    let mut at = start;
    while batches.len() * 1000 < events {
        let mut body = Vec::with_capacity(1000 * 700);
        for d in sim.next_batch(1000, at) {
            let mut e = d.event;
            retag(&mut e, tag);
            serde_json::to_writer(&mut body, &e).expect("serialise");
            body.push(b'\n');
        }
        at += TimeDelta::seconds(1);
        batches.push(body);
    }
    batches
}

/// Makes ids, correlation ids, causation ids and order ids unique to one measurement.
fn retag(e: &mut Value, tag: &str) {
    for field in ["id", "correlationid", "causationid"] {
        if let Some(Value::String(s)) = e.get_mut(field) {
            *s = format!("{tag}-{s}");
        }
    }
    for field in ["data", "payload"] {
        if let Some(Value::String(s)) = e.get_mut(field).and_then(|d| d.get_mut("orderId")) {
            *s = format!("{tag}-{s}");
        }
    }
    if let Some(Value::Object(meta)) = e.get_mut("metadata") {
        for field in ["id", "correlationid", "causationid", "correlation_id", "causation_id", "eventId", "correlationId", "causationId"] {
            if let Some(Value::String(s)) = meta.get_mut(field) {
                *s = format!("{tag}-{s}");
            }
        }
    }
}

fn start(store: Store, engine: bool) -> Result<Server> {
    let slot = ModelSlot::load(&model_path(), b"bench".to_vec()).map_err(|d| anyhow::anyhow!("model: {d:?}"))?;
    let mut state = AppState::new(store, ParseOptions::default(), SqlLimits::default()).with_model(slot);
    if engine {
        state = state.with_journeys(Clock::Wall);
    }
    Server::start(state)
}

/// Posts every batch from `clients` threads; returns the time until the last acknowledgement.
fn post_all(addr: SocketAddr, batches: &[Vec<u8>], clients: usize) -> Result<Duration> {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut client = HttpClient::new(addr);
                    let mut body = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(batch) = batches.get(i) else { return Ok(()) };
                        let status = client.post("/v1/events", "application/x-ndjson", batch, &mut body)?;
                        if status.0 != 200 && status.0 != 207 {
                            bail!("ingest answered {}: {}", status.0, String::from_utf8_lossy(&body));
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("client thread")?;
        }
        Ok(())
    })?;
    Ok(started.elapsed())
}

/// Journey counts; the call returns once the engine caught up with every acknowledged event.
fn summary(addr: SocketAddr) -> Result<Value> {
    let mut client = HttpClient::new(addr);
    let mut body = Vec::new();
    let status = client.get("/v1/journeys/summary", &mut body)?;
    if status.0 != 200 {
        bail!("summary answered {}: {}", status.0, String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

struct Measured {
    acked: Duration,
    caught_up: Duration,
}

/// One measurement on a fresh store: ack time, and (engine on) the time until the engine caught up.
fn measure(store: Store, engine: bool, batches: &[Vec<u8>], clients: usize) -> Result<Measured> {
    let server = start(store, engine)?;
    let started = Instant::now();
    let acked = post_all(server.addr, batches, clients)?;
    if engine {
        summary(server.addr)?;
    }
    let caught_up = started.elapsed();
    server.stop()?;
    Ok(Measured { acked, caught_up })
}

fn rate(events: usize, d: Duration) -> f64 {
    events as f64 / d.as_secs_f64()
}

/// `n` events appended in process: OrderCreated for `n` distinct orders, each opening a journey
/// whose stall and completion timers stay pending (stamped an hour ahead); or, for the reference
/// store, the same events without the journey key, which open none.
fn preload(dir: &Path, n: usize, open: bool) -> Result<Store> {
    let store = Store::open(dir)?;
    let at = Utc::now() + TimeDelta::hours(1);
    let options = ParseOptions::default();
    let mut made = 0;
    while made < n {
        let batch: Vec<NewEvent> = (made..(made + 10_000).min(n))
            .map(|i| {
                // The same events either way (type, subject, size), but only the open store's carry
                // the journey key: the reference's OrderCreated events open no journey.
                let key = if open { "orderId" } else { "orderRef" };
                let e = json!({"specversion": "1.0", "id": format!("pre-{i}"), "source": "order-service", "type": "OrderCreated",
                       "time": causeway_envelope::format_time(&(at + TimeDelta::milliseconds(i as i64))),
                       "correlationid": format!("pre-corr-{i}"), "subject": format!("pre-ord-{i}"),
                       "data": {key: format!("pre-ord-{i}"), "customerEmail": "hmac-sha256:00", "amount": 10, "currency": "EUR"}});
                let item = parse_json_line(e.to_string().as_bytes(), &options);
                NewEvent::new(item.result.expect("a valid preload event"))
            })
            .collect();
        made += batch.len();
        store.append_blocking(batch, Vec::new())?;
    }
    Ok(store)
}

/// Waits until the store in `dir` is closed: its last handle's drop checkpoints the WAL into the
/// database and removes it, after which the database file alone is the whole store. A stopped
/// server's engine thread may hold the store a moment longer.
fn settle(dir: &Path) -> Result<()> {
    let wal = dir.join(format!("{}-wal", causeway_store::DB_FILE));
    let deadline = Instant::now() + Duration::from_secs(120);
    while wal.exists() {
        if Instant::now() > deadline {
            bail!("the preloaded store in {} kept its WAL for 2 minutes after its server stopped", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn copy_store(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from.join(causeway_store::DB_FILE), to.join(causeway_store::DB_FILE))?;
    Ok(())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The sides of a comparison in round `round`: alternating which goes first, so that whatever
/// drifts over a run (the machine, the stores growing) does not favour one side.
fn order(round: usize) -> [usize; 2] {
    if round.is_multiple_of(2) { [0, 1] } else { [1, 0] }
}

/// Per-round rates of both sides and their ratio, and the median ratio (the verdict): rounds
/// differ more from each other than the sides within a round do.
fn report(names: [&str; 2], rates: &[[f64; 2]]) -> f64 {
    println!("| round | {} events/s | {} events/s | ratio |", names[0], names[1]);
    println!("|---|---|---|---|");
    for (r, [a, b]) in rates.iter().enumerate() {
        println!("| {r} | {a:.0} | {b:.0} | {:.2} |", b / a);
    }
    let m = median(rates.iter().map(|[a, b]| b / a).collect());
    println!("| median | | | **{m:.2}** |");
    m
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.measure_one {
        return measure_one(dir, &args);
    }
    println!("# journey engine: ingest with the engine on against off\n");
    println!(
        "{} simulated order-fulfilment events (5% faults) per measurement, NDJSON batches of 1,000 over HTTP from {} clients, bundled model, wall clock; {} rounds, the side that goes first alternating; each side's traffic stamped when it is posted.\n",
        args.events, args.clients, args.rounds
    );
    let (mut acked, mut done) = (Vec::new(), Vec::new());
    for round in 0..if args.open_only { 0 } else { args.rounds } {
        let mut a = [0.0; 2];
        let mut d = [0.0; 2];
        for side in order(round) {
            let engine = side == 1;
            // Stamped from now, for each side: traffic stamped minutes earlier would find windows
            // passed on the wall clock, and the engine would raise and resolve findings for it.
            let batches = traffic(args.events, &format!("r{round}"), Utc::now());
            let dir = tempfile::tempdir()?;
            warm_memory(WARM_BYTES);
            let m = measure(Store::open(dir.path())?, engine, &batches, args.clients)?;
            a[side] = rate(args.events, m.acked);
            d[side] = rate(args.events, m.caught_up);
            eprintln!(
                "round {round} engine {}: acknowledged at {:.0} events/s, caught up at {:.0} events/s",
                if engine { "on" } else { "off" },
                a[side],
                d[side]
            );
        }
        acked.push(a);
        done.push([a[0], d[1]]);
    }
    if !args.open_only {
        println!("Until every batch was acknowledged:\n");
        report(["engine off", "engine on"], &acked);
        println!("\nUntil the engine caught up (journeys and findings written; engine off: acknowledged):\n");
        report(["engine off", "engine on"], &done);
    }

    if args.open == 0 {
        return Ok(());
    }
    println!("\n## with {} open journeys\n", args.open);
    let mut lines = Vec::new();
    // Each measurement starts from a copy of its side's preloaded store, so that every round sees
    // the same stores (appending to one store round after round made later rounds slower than the
    // difference between the sides), and from the steady state of a server restarted on them.
    let scratch = tempfile::tempdir()?;
    let root = args.templates.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    let templates = [root.join("reference"), root.join("open")];
    for (k, open) in [false, true].into_iter().enumerate() {
        let kept = templates[k].join(causeway_store::DB_FILE);
        if args.templates.is_some() && kept.exists() {
            lines.push(format!("reused the preloaded store {}", templates[k].display()));
            continue;
        }
        std::fs::create_dir_all(&templates[k])?;
        let t = Instant::now();
        let store = preload(&templates[k], args.open, open)?;
        // As a server that ran with these journeys open would have left it: the engine's rows
        // (each event's journey) written and checkpointed, so that no measurement pays for
        // writing a million of them first.
        let server = start(store, true)?;
        summary(server.addr)?;
        server.stop()?;
        settle(&templates[k])?;
        lines.push(format!(
            "preloaded {} {} in {:.1} s",
            args.open,
            if open { "OrderCreated events (one open journey each)" } else { "OrderCreated events without the journey key (reference)" },
            t.elapsed().as_secs_f64()
        ));
    }
    let mut rates = Vec::new();
    let mut used: [Vec<PartsPerEvent>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.rounds {
        let mut r = [0.0; 2];
        for k in order(round) {
            let open = k == 1;
            let dir = tempfile::tempdir()?;
            copy_store(&templates[k], dir.path())?;
            let out = std::process::Command::new(std::env::current_exe()?)
                .arg("--measure-one")
                .arg(dir.path())
                .args(["--tag", &format!("o{round}"), "--events", &args.events.to_string(), "--clients", &args.clients.to_string()])
                .output()?;
            if !out.status.success() {
                bail!("a measurement failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let fields: Vec<f64> = text.split_whitespace().filter_map(|f| f.parse().ok()).collect();
            let [rebuild, events_per_second, open_now, engine_us, writer_us, server_us, engine_pf, writer_pf, server_pf] = fields[..] else {
                bail!("unexpected measurement output: {text}")
            };
            used[k].push(PartsPerEvent { cpu_us: [engine_us, writer_us, server_us], faults_per_1000: [engine_pf, writer_pf, server_pf] });
            if round == 0 {
                lines.push(format!(
                    "engine rebuilt from the {} store in {rebuild:.1} s ({open_now} journeys in flight)",
                    if open { "open-journeys" } else { "reference" },
                ));
            }
            r[k] = events_per_second;
            eprintln!(
                "round {round} {}: {:.0} events/s to caught up; CPU µs per event: engine {engine_us:.2}, writer {writer_us:.2}, HTTP {server_us:.2}; page faults per 1,000 events: engine {engine_pf:.1}, writer {writer_pf:.1}, HTTP {server_pf:.1}",
                if open { "open" } else { "reference" },
                r[k]
            );
        }
        rates.push(r);
    }
    for l in lines {
        println!("- {l}");
    }
    println!("\nEngine on, until caught up; reference: the same {} events without the journey key (no journey open):\n", args.open);
    let label = format!("{} open journeys", args.open);
    report(["reference", &label], &rates);
    // Wall-clock rates carry the machine's noise; the CPU each part of the server spent per event
    // (thread CPU time over the measurement) shows where a difference between the sides comes from.
    println!(
        "\nCPU per event during the measurement (µs, median of the rounds; threads: the journey engine, the store's writer, the HTTP workers):\n"
    );
    println!("| part | reference | {label} | ratio |");
    println!("|---|---|---|---|");
    let medians = |of: &dyn Fn(&PartsPerEvent) -> f64| [0, 1].map(|k| median(used[k].iter().map(of).collect()));
    for (i, (_, part)) in PARTS.iter().enumerate() {
        let [a, b] = medians(&|u| u.cpu_us[i]);
        println!("| {part} | {a:.2} | {b:.2} | {:.2} |", b / a);
    }
    let [a, b] = medians(&|u| u.cpu_us.iter().sum());
    println!("| the three together | {a:.2} | {b:.2} | {:.2} |", b / a);
    println!("\nMinor page faults per 1,000 events during the measurement (median of the rounds):\n");
    println!("| part | reference | {label} |");
    println!("|---|---|---|");
    for (i, (_, part)) in PARTS.iter().enumerate() {
        let [a, b] = medians(&|u| u.faults_per_1000[i]);
        println!("| {part} | {a:.1} | {b:.1} |");
    }
    Ok(())
}
