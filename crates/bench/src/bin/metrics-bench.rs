//! A Prometheus scrape of `/metrics` on a loaded server (issue "SLIs, SLOs and alerts", Done
//! when: under 100 ms at 1,000,000 events stored and 100,000 open journeys).
//!
//! The store is filled with the simulated order-fulfilment traffic (bundled model, event clock,
//! its journeys, findings and dead letters) up to `--events` less `--open`, then with `--open`
//! orders that are created and go no further: open journeys, stalled once their `stall_after`
//! passes on the event clock. The scrape is timed once the engine has caught up, `--samples`
//! times after two warm-up scrapes, as a scraper asks (a keep-alive GET); the time is the
//! client's, over loopback.
//!
//! `cargo run --release -p causeway-bench --bin metrics-bench -- [--events N] [--open N] [--samples N] [--out FILE]`
//! (`scripts/bench metrics` runs it and records the report).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use causeway_bench::http::HttpClient;
use causeway_bench::report::group;
use causeway_bench::traffic::{get_json, load_simulated, start_with_bundled_model};
use chrono::{TimeDelta, Utc};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Events stored in all (the open orders' included).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Orders created and never continued: open journeys.
    #[arg(long, default_value_t = 100_000)]
    open: usize,
    #[arg(long, default_value_t = 50)]
    samples: usize,
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The target for a scrape.
const TARGET_MS: f64 = 100.0;

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.open < args.events, "--open must be below --events");
    let started = Instant::now();
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let dir = tempfile::Builder::new().prefix("causeway-metrics-bench-").tempdir()?;
    let server = start_with_bundled_model(dir.path())?;
    let addr = server.addr;
    eprintln!("[metrics-bench] ingesting {} simulated events, then {} open orders", args.events - args.open, args.open);
    let (dead_letters, ingest) = load_simulated(addr, args.events - args.open)?;
    let t = Instant::now();
    post_open_orders(addr, args.open)?;
    let open_ingest = t.elapsed();
    let mut client = HttpClient::new(addr);
    let t = Instant::now();
    let summary = get_json(&mut client, "/v1/journeys/summary")?;
    eprintln!(
        "[metrics-bench] stored in {:.1} s + {:.1} s; the engine caught up {:.1} s later",
        ingest.as_secs_f64(),
        open_ingest.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let by_state = summary["journeys_by_state"].as_object().cloned().unwrap_or_default();
    let count = |s: &str| by_state.get(s).and_then(Value::as_u64).unwrap_or(0);
    let open = count("in_flight") + count("stalled");
    let journeys: u64 = by_state.values().filter_map(Value::as_u64).sum();

    let mut times = Vec::with_capacity(args.samples);
    let mut body = Vec::new();
    for round in 0..args.samples + 2 {
        let t = Instant::now();
        let status = client.get("/metrics", &mut body)?;
        let took = t.elapsed();
        if status.0 != 200 {
            bail!("/metrics answered {}: {}", status.0, String::from_utf8_lossy(&body));
        }
        if round >= 2 {
            times.push(took);
        }
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let series = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    // The page must have carried what the scrape is for: the SLOs, judged (not skipped while busy).
    anyhow::ensure!(text.contains("causeway_slo_events_total{"), "the scrape carried no SLO series:\n{text}");
    let stats = get_json(&mut client, "/v1/store")?;
    server.stop()?;

    let mut t: Vec<f64> = times.iter().map(|d: &Duration| d.as_secs_f64() * 1000.0).collect();
    t.sort_by(f64::total_cmp);
    let q = |p: f64| t[((p * (t.len() - 1) as f64).round() as usize).min(t.len() - 1)];
    let pass = q(0.99) < TARGET_MS;
    let mut md = String::new();
    let _ = writeln!(md, "### Metrics scrape: run of {} ({:.0} s)\n", Utc::now().format("%Y-%m-%d %H:%M UTC"), started.elapsed().as_secs_f64());
    let _ = writeln!(md, "Command: `scripts/bench metrics`\n");
    causeway_bench::report::run_table_head(&mut md, &load_at_start);
    let _ = writeln!(
        md,
        "| store | {} events (simulated order-fulfilment traffic and {} orders that never continue; bundled model, event clock), {} journeys of which {} open, {} dead letters |",
        group(stats["events"].as_f64().unwrap_or(0.0)),
        group(args.open as f64),
        group(journeys as f64),
        group(open as f64),
        group(dead_letters as f64),
    );
    let _ = writeln!(md, "| page | {} series, {} bytes |", group(series as f64), group(body.len() as f64));
    let _ = writeln!(md, "| scrapes | {} after 2 warm-up, one keep-alive client |\n", args.samples);
    let _ = writeln!(md, "| p50 ms | p99 ms | max ms | < {TARGET_MS:.0} ms |");
    let _ = writeln!(md, "|---:|---:|---:|---|");
    let _ = writeln!(md, "| {:.1} | {:.1} | {:.1} | **{}** |", q(0.5), q(0.99), t[t.len() - 1], if pass { "PASS" } else { "FAIL" });
    print!("{md}");
    if let Some(out) = &args.out {
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// `open` orders created (an `OrderCreated` each, with its own correlation id) an hour before now
/// in event time, so that the event clock judges them stalled; in NDJSON batches of 1,000.
fn post_open_orders(addr: std::net::SocketAddr, open: usize) -> Result<()> {
    let mut client = HttpClient::new(addr);
    let mut answer = Vec::new();
    let at = Utc::now() - TimeDelta::hours(1);
    for start in (0..open).step_by(1000) {
        let mut body = Vec::with_capacity(1000 * 400);
        for n in start..(start + 1000).min(open) {
            let event = json!({
                "specversion": "1.0", "id": format!("open-{n}"), "source": "order-service", "type": "OrderCreated",
                "time": (at + TimeDelta::milliseconds(n as i64)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "correlationid": format!("open-corr-{n}"), "subject": format!("open-{n}"),
                "data": {"orderId": format!("open-{n}"), "customerEmail": "someone@example.com", "amount": 10, "currency": "EUR"},
            });
            serde_json::to_writer(&mut body, &event)?;
            body.push(b'\n');
        }
        loop {
            let status = client.post("/v1/events", "application/x-ndjson", &body, &mut answer)?;
            match status.0 {
                200 => break,
                // Back-pressure (the journey engine is behind): as a producer does, wait the
                // second the answer asks for and send the batch again.
                503 => std::thread::sleep(Duration::from_secs(1)),
                other => bail!("ingest answered {other}: {}", String::from_utf8_lossy(&answer)),
            }
        }
    }
    Ok(())
}
