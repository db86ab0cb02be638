//! End-to-end ingest with the journey engine on against off (issue "The journey engine", Done
//! when): the same simulated order-fulfilment traffic posted over HTTP (NDJSON batches of 1,000)
//! to a server on the bundled model, with and without the engine, alternating, best of rounds;
//! then the same traffic on a store already holding 1,000,000 open journeys (their stall and
//! completion timers pending) against one holding 1,000,000 events that open none.
//!
//! `cargo run --release -p causeway-bench --bin journey-ingest -- [--events N] [--rounds N]
//! [--open N] [--clients N]` (`scripts/bench-journeys` runs it and records the report).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use causeway_bench::http::HttpClient;
use causeway_envelope::{ParseOptions, parse_json_line};
use causeway_server::{AppState, Clock, ModelSlot};
use causeway_sim::{SimConfig, Simulator};
use causeway_store::{NewEvent, SqlLimits, Store};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Events posted per measurement.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Measurements per mode; the best counts.
    #[arg(long, default_value_t = 3)]
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

struct Server {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn start(store: Store, engine: bool) -> Result<Server> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let slot = ModelSlot::load(&model_path(), b"bench".to_vec()).map_err(|d| anyhow::anyhow!("model: {d:?}"))?;
    let mut state = AppState::new(store, ParseOptions::default(), SqlLimits::default()).with_model(slot);
    if engine {
        state = state.with_journeys(Clock::Wall);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(causeway_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Ok(Server { runtime, addr, _stop: stop })
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
    drop(server.runtime);
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

fn main() -> Result<()> {
    let args = Args::parse();
    println!("# journey engine: ingest with the engine on against off\n");
    println!(
        "{} simulated order-fulfilment events (5% faults) per measurement, NDJSON batches of 1,000 over HTTP from {} clients, bundled model, wall clock; best of {} alternating rounds.\n",
        args.events, args.clients, args.rounds
    );
    let (mut off, mut on_ack, mut on_done) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for round in 0..if args.open_only { 0 } else { args.rounds } {
        for engine in [false, true] {
            // Stamped from now, for each side: traffic stamped minutes earlier would find windows
            // passed on the wall clock, and the engine would raise and resolve findings for it.
            let batches = traffic(args.events, &format!("r{round}"), Utc::now());
            let dir = tempfile::tempdir()?;
            let m = measure(Store::open(dir.path())?, engine, &batches, args.clients)?;
            if engine {
                on_ack = on_ack.min(m.acked);
                on_done = on_done.min(m.caught_up);
            } else {
                off = off.min(m.acked);
            }
            eprintln!(
                "round {round} engine {}: acknowledged at {:.0} events/s, caught up at {:.0} events/s",
                if engine { "on" } else { "off" },
                rate(args.events, m.acked),
                rate(args.events, m.caught_up)
            );
        }
    }
    println!("| mode | events/s | vs off |");
    println!("|---|---|---|");
    println!("| engine off | {:.0} | 1.00 |", rate(args.events, off));
    println!("| engine on, all acknowledged | {:.0} | {:.2} |", rate(args.events, on_ack), off.as_secs_f64() / on_ack.as_secs_f64());
    println!(
        "| engine on, engine caught up (journeys and findings written) | {:.0} | {:.2} |",
        rate(args.events, on_done),
        off.as_secs_f64() / on_done.as_secs_f64()
    );

    if args.open == 0 {
        return Ok(());
    }
    println!("\n## with {} open journeys\n", args.open);
    let mut lines = Vec::new();
    let mut best = [Duration::MAX; 2];
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    for (k, open) in [false, true].into_iter().enumerate() {
        let t = Instant::now();
        drop(preload(dirs[k].path(), args.open, open)?);
        lines.push(format!(
            "preloaded {} {} in {:.1} s",
            args.open,
            if open { "OrderCreated events (one open journey each)" } else { "OrderCreated events without the journey key (reference)" },
            t.elapsed().as_secs_f64()
        ));
    }
    for round in 0..args.rounds {
        for (k, open) in [false, true].into_iter().enumerate() {
            let batches = traffic(args.events, &format!("o{round}"), Utc::now());
            let store = Store::open(dirs[k].path())?;
            let server = start(store, true)?;
            let t = Instant::now();
            let s = summary(server.addr)?;
            if round == 0 {
                let open_now = s["journeys_by_state"]["in_flight"].as_u64().unwrap_or(0);
                lines.push(format!(
                    "engine rebuilt from the {} store in {:.1} s ({} journeys in flight; the reference's events wait for a key, bounded)",
                    if open { "open-journeys" } else { "reference" },
                    t.elapsed().as_secs_f64(),
                    open_now
                ));
            }
            let started = Instant::now();
            post_all(server.addr, &batches, args.clients)?;
            summary(server.addr)?;
            let took = started.elapsed();
            best[k] = best[k].min(took);
            eprintln!("round {round} {}: {:.0} events/s to caught up", if open { "open" } else { "reference" }, rate(args.events, took));
            drop(server.runtime);
        }
    }
    for l in lines {
        println!("- {l}");
    }
    println!("\n| store before the run | events/s, engine on, to caught up | vs reference |");
    println!("|---|---|---|");
    println!("| {} OrderCreated events without the journey key, no journey open (reference) | {:.0} | 1.00 |", args.open, rate(args.events, best[0]));
    println!(
        "| {} open journeys with timers pending | {:.0} | {:.2} |",
        args.open,
        rate(args.events, best[1]),
        best[0].as_secs_f64() / best[1].as_secs_f64()
    );
    Ok(())
}
