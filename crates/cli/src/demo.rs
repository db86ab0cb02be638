//! `causeway demo`: a server on a fresh embedded store, driven by the order-fulfilment simulator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use causeway_sim::{Fault, SimConfig, SimStats, Simulator};
use chrono::Utc;
use clap::Args;
use serde_json::Value;

use crate::serve::{self, DEFAULT_LISTEN, ServerConfig};

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: String,
    /// Data directory [default: a fresh temporary directory, removed on exit].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Simulated events per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// How long to run, e.g. 30s, 5m [default: until Ctrl-C].
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Seed of the simulator: the same seed gives the same traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of orders that suffer each kind of fault (0–1).
    #[arg(long, default_value_t = 0.05)]
    fault_rate: f64,
}

/// The bundled example model, the board of the simulated estate.
const EXAMPLE_MODEL: [(&str, &str); 2] = [
    ("model.yaml", include_str!("../../../examples/order-fulfillment/model.yaml")),
    ("notification.yaml", include_str!("../../../examples/order-fulfillment/notification.yaml")),
];

/// Writes the example model into DATA/model and returns its main file.
fn write_example_model(data: &std::path::Path) -> anyhow::Result<PathBuf> {
    let dir = data.join("model");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in EXAMPLE_MODEL {
        std::fs::write(dir.join(name), text).with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    Ok(dir.join("model.yaml"))
}

/// `30s`, `5m`…: the model's duration syntax.
fn parse_duration(text: &str) -> Result<Duration, String> {
    causeway_model::parse_duration(text).map(Duration::from_millis)
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    serve::init_logging();
    if args.rate == 0 {
        bail!("--rate must be at least 1 event per second");
    }
    if !(0.0..=1.0).contains(&args.fault_rate) {
        bail!("--fault-rate must be between 0 and 1");
    }
    let temp = match &args.data {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("causeway-demo-").tempdir()?),
    };
    let data = args.data.clone().unwrap_or_else(|| temp.as_ref().expect("temp dir").path().to_path_buf());
    let mut config = ServerConfig::resolve(&serve::ServeArgs {
        config: None,
        data: Some(data.clone()),
        listen: Some(args.listen.clone()),
        model: None,
        pii_secret: None,
        clock: None,
        limits: Default::default(),
    })?;
    config.data = data.clone();
    config.model = Some(write_example_model(&data)?);
    let runtime = tokio::runtime::Runtime::new()?;
    let running = runtime.block_on(serve::start(&config))?;
    let base = format!("http://{}", running.addr);
    println!("causeway demo: order fulfilment (order, payment, inventory, fulfilment, notification services)");
    println!("  web:  {base}/");
    println!("  data: {}{}", config.data.display(), if temp.is_some() { " (temporary)" } else { "" });
    println!(
        "  rate: {} events/s, seed {}, fault rate {}, {}",
        args.rate,
        args.seed,
        args.fault_rate,
        match args.duration {
            Some(d) => format!("for {}s", d.as_secs_f64()),
            None => "until Ctrl-C".into(),
        }
    );
    let stop = Arc::new(AtomicBool::new(false));
    let driver = {
        let (stop, base, args) = (stop.clone(), base.clone(), args.clone());
        std::thread::spawn(move || drive(&base, &args, &stop))
    };
    runtime.block_on(async {
        match args.duration {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = serve::shutdown_signal() => {}
                }
            }
            None => serve::shutdown_signal().await,
        }
    });
    stop.store(true, Ordering::Relaxed);
    let outcome = driver.join().map_err(|_| anyhow::anyhow!("the simulator thread panicked"))?;
    let summary = outcome?;
    print_final(&summary);
    runtime.block_on(running.stop())?;
    Ok(ExitCode::SUCCESS)
}

/// What the driver saw.
struct Summary {
    stats: SimStats,
    totals: [u64; 3],
    /// A correlation id whose shipment the notification consumer could not handle.
    broken_correlation: Option<String>,
    any_correlation: Option<String>,
    /// Findings raised, by kind: (kind, open, resolved).
    findings: Vec<(String, u64, u64)>,
    /// Journey instances by state.
    journeys: Vec<(String, u64)>,
    /// A journey with an open missing reaction: (journey, key, what was expected).
    example: Option<(String, String, String)>,
    /// Pending dead letters by error type.
    dead_letters: Vec<(String, u64)>,
}

fn drive(base: &str, args: &DemoArgs, stop: &AtomicBool) -> anyhow::Result<Summary> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let mut sim = Simulator::new(SimConfig { seed: args.seed, fault_rate: args.fault_rate, concurrency: 50 });
    let started = Instant::now();
    let mut summary = Summary { stats: SimStats::default(), totals: [0; 3], broken_correlation: None, any_correlation: None, findings: Vec::new(), journeys: Vec::new(), example: None, dead_letters: Vec::new() };
    let mut sent = 0u64;
    let mut last_report = Instant::now();
    let mut hinted = false;
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
        let n = due.saturating_sub(sent).min(5_000) as usize;
        if n == 0 {
            // Pacing, not synchronisation: wait for the next slice of the rate.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let deliveries = sim.next_batch(n, Utc::now());
        for d in &deliveries {
            let corr = d.event.get("correlationid").and_then(Value::as_str);
            if d.fault == Some(Fault::ConsumerFailure) && summary.broken_correlation.is_none() {
                summary.broken_correlation = corr.map(str::to_owned);
            }
            if summary.any_correlation.is_none() {
                summary.any_correlation = corr.map(str::to_owned);
            }
        }
        // notification-service cannot handle a shipment without customerEmail: it dead-letters it.
        let failures: Vec<Value> = deliveries.iter().filter(|d| d.fault == Some(Fault::ConsumerFailure)).map(|d| d.event.clone()).collect();
        // The estate's producers write different shapes; a plain JSON array carries them all.
        let body = Value::Array(deliveries.into_iter().map(|d| d.event).collect()).to_string();
        let response = client
            .post(format!("{base}/v1/events"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .context("the demo server stopped answering")?;
        let answer: Value = response.json().context("the demo server's answer is not JSON")?;
        for (i, key) in ["accepted", "duplicates", "rejected"].iter().enumerate() {
            summary.totals[i] += answer[key].as_u64().unwrap_or(0);
        }
        for event in failures {
            let report = serde_json::json!({
                "event": event, "consumer": "notification-service", "source_topic": "shipments",
                "error_type": "KeyError", "error_message": "'customerEmail'",
                "stack": "Traceback (most recent call last):\n  File \"notify.py\", line 42, in handle\n    to = event[\"data\"][\"customerEmail\"]\nKeyError: 'customerEmail'",
            });
            client.post(format!("{base}/v1/dlq")).json(&report).send().context("the demo server stopped answering")?;
        }
        sent += n as u64;
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let s = sim.stats();
            println!(
                "[{:>4}s] {} events: {} accepted, {} duplicates, {} rejected | orders {} started, {} finished",
                started.elapsed().as_secs(),
                sent,
                summary.totals[0],
                summary.totals[1],
                summary.totals[2],
                s.orders_started,
                s.orders_finished
            );
            if !hinted && let Some(c) = summary.broken_correlation.as_ref().or(summary.any_correlation.as_ref()) {
                print_hints(base, c);
                hinted = true;
            }
        }
    }
    summary.stats = sim.stats().clone();
    let query = serde_json::json!({"query": "SELECT kind, sum(resolved_at IS NULL), sum(resolved_at IS NOT NULL) FROM findings GROUP BY kind ORDER BY count(*) DESC"});
    if let Ok(answer) = client.post(format!("{base}/v1/sql")).json(&query).send().and_then(|r| r.json::<Value>()) {
        summary.findings = answer["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r[0].as_str()?.to_string(), r[1].as_u64()?, r[2].as_u64()?)))
            .collect();
    }
    if let Ok(answer) = client.get(format!("{base}/v1/journeys/summary")).send().and_then(|r| r.json::<Value>()) {
        summary.journeys = answer["journeys_by_state"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(state, n)| Some((state.clone(), n.as_u64()?)))
            .collect();
        summary.journeys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    if let Ok(answer) = client.get(format!("{base}/v1/dlq/summary")).send().and_then(|r| r.json::<Value>()) {
        summary.dead_letters = answer["by_error_type"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(error, n)| Some((error.clone(), n.as_u64()?)))
            .collect();
    }
    let missing = format!("{base}/v1/findings?kind=missing_reaction&open=true&limit=1");
    if let Ok(answer) = client.get(missing).send().and_then(|r| r.json::<Value>()) {
        let f = &answer["findings"][0];
        if let (Some(j), Some(k)) = (f["journey"].as_str(), f["key"].as_str()) {
            let expected = f["expected"].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(" or ");
            summary.example = Some((j.to_string(), k.to_string(), expected));
        }
    }
    Ok(summary)
}

fn print_final(summary: &Summary) {
    let s = &summary.stats;
    println!();
    println!("summary: {} events delivered ({} orders started, {} finished)", s.deliveries, s.orders_started, s.orders_finished);
    println!(
        "  stored {} accepted, {} duplicates, {} rejected (kept in dlq_events)",
        summary.totals[0], summary.totals[1], summary.totals[2]
    );
    println!("  faults injected:");
    for (fault, n) in Fault::ALL.iter().zip(s.faults) {
        println!("    {:<34} {n}", fault.name());
    }
    println!("  journeys by state:");
    for (state, n) in &summary.journeys {
        println!("    {state:<34} {n}");
    }
    println!("  findings by kind (open / resolved):");
    for (kind, open, resolved) in &summary.findings {
        println!("    {kind:<34} {open} / {resolved}");
    }
    println!("  dead letters pending, by error type:");
    for (error, n) in &summary.dead_letters {
        println!("    {error:<34} {n}");
    }
    if let Some((journey, key, expected)) = &summary.example {
        println!("  e.g. {journey} {key} is still waiting for {expected} (`causeway journey {journey} {key}` shows it while a demo runs)");
    }
}

/// Commands to explore the running demo, on an order whose notification never happened.
fn print_hints(base: &str, correlation: &str) {
    let server = format!("--server {base}");
    println!("  explore it from another terminal:");
    println!("    causeway chain {correlation} {server}");
    println!(
        "    causeway sql \"SELECT event_id, event_type, source_service, timestamp, causation_id FROM event_lineage WHERE correlation_id = '{correlation}' ORDER BY timestamp\" {server}"
    );
    println!("    causeway sql \"SELECT error_type, count(*) FROM dlq_events GROUP BY error_type\" {server}");
    println!("    causeway findings --open {server}");
    println!("    causeway dlq list --consumer notification-service {server}");
}
