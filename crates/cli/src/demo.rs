//! `causeway demo`: a server on a fresh embedded store, driven by the order-fulfilment simulator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::http::StatusCode;
use causeway_server::Consumer;
use causeway_sim::{Fault, SimConfig, SimStats, Simulator};
use chrono::{SecondsFormat, Utc};
use clap::Args;
use serde_json::{Value, json};

use causeway_server::kafka::{KafkaConfig, Start};
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};

use crate::out::say;
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
    /// Kafka brokers (bootstrap servers): the simulated producers write to the model's topics
    /// there, and the server reads them with its Kafka source, instead of posting over HTTP.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
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
        allowed_lateness: None,
        idle_after: None,
        // The demo serves plain HTTP.
        tls_cert: None,
        tls_key: None,
        // The demo asks for no tokens, so it listens on loopback only (`serve::auth_mode`).
        auth: Some("off".into()),
        insecure: false,
        limits: Default::default(),
    })?;
    config.data = data.clone();
    config.model = Some(write_example_model(&data)?);
    if let Some(brokers) = &args.kafka {
        config.kafka = Some(KafkaConfig {
            brokers: brokers.clone(),
            // The model's topics.
            topics: Vec::new(),
            group: "causeway-demo".into(),
            start: Start::Earliest,
            // Topics the demo's producers create as they start are found within seconds.
            client: [("topic.metadata.refresh.interval.ms".to_string(), "2000".to_string())].into(),
            dlq_topics: vec![causeway_server::kafka::DEFAULT_DLQ_TOPICS.to_string()],
            replay_topics: Default::default(),
        });
    }
    let runtime = tokio::runtime::Runtime::new()?;
    // notification-service, fixed, takes the replays of the shipments it could not handle.
    let consumer = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).context("cannot listen for replays")?;
    let replay_url = format!("http://{}/replay", consumer.local_addr()?);
    config.consumers.insert(NOTIFIER.into(), Consumer { replay_url: Some(replay_url) });
    let running = runtime.block_on(serve::start(&config))?;
    let base = format!("http://{}", running.addr);
    runtime.spawn(fixed_notification_service(consumer, base.clone()));
    let program = program_name();
    let server_flag = if base == format!("http://{DEFAULT_LISTEN}") { String::new() } else { format!(" --server {base}") };
    say!("causeway demo: order fulfilment (order, payment, inventory, fulfilment, notification services)");
    say!("  web:  {base}/");
    say!("  data: {}{}", config.data.display(), if temp.is_some() { " (temporary)" } else { "" });
    say!("  auth: off, on loopback only: every client on this machine may read, write and replay (serve asks for tokens)");
    if let Some(brokers) = &args.kafka {
        say!("  kafka: the producers write to the model's topics on {brokers}; the server reads them in group causeway-demo");
    }
    say!(
        "  rate: {} events/s, seed {}, fault rate {}, {}",
        args.rate,
        args.seed,
        args.fault_rate,
        match args.duration {
            Some(d) => format!("for {}s", d.as_secs_f64()),
            None => "until Ctrl-C".into(),
        }
    );
    if program != "causeway" {
        say!("  cli:  {program}  (`cargo install --path crates/cli` puts `causeway` on your PATH)");
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Dropped when the driver ends, for any reason: the wait below ends with it.
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    let driver = {
        let (stop, base, args) = (stop.clone(), base.clone(), args.clone());
        let command = format!("{program}{{}}{server_flag}");
        std::thread::spawn(move || {
            let _ended = ended_tx;
            drive(&base, &args, &stop, &command)
        })
    };
    runtime.block_on(async {
        let until_stopped = async {
            match args.duration {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = serve::shutdown_signal() => {}
                    }
                }
                None => serve::shutdown_signal().await,
            }
        };
        tokio::select! {
            _ = until_stopped => {}
            _ = ended_rx => {}
        }
    });
    stop.store(true, Ordering::Relaxed);
    let outcome = driver.join().map_err(|_| anyhow::anyhow!("the simulator thread panicked"))?;
    let summary = outcome?;
    print_final(&summary, &program, args.data.as_deref());
    runtime.block_on(running.stop())?;
    Ok(ExitCode::SUCCESS)
}

/// The consumer whose failures the demo reports and replays.
const NOTIFIER: &str = "notification-service";

/// How to run this binary from the current directory: `causeway` when that is what PATH finds,
/// else the path it was started by.
fn program_name() -> String {
    let Ok(exe) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "causeway".into();
    };
    let on_path =
        std::env::var_os("PATH").map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("causeway")).collect::<Vec<_>>()).unwrap_or_default();
    if on_path.iter().filter_map(|p| std::fs::canonicalize(p).ok()).next().is_some_and(|found| found == exe) {
        return "causeway".into();
    }
    match std::env::current_dir().ok().and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf)) {
        Some(relative) => relative.display().to_string(),
        None => exe.display().to_string(),
    }
}

/// notification-service after its fix: given the replay of a shipment it could not handle, it
/// finds the customer's address another way and emits the missing `CustomerNotified`.
async fn fixed_notification_service(listener: tokio::net::TcpListener, causeway: String) {
    let app = axum::Router::new().route(
        "/replay",
        axum::routing::post(move |body: Bytes| {
            let causeway = causeway.clone();
            async move { notify(&causeway, &body).await }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("the demo's notification-service stopped: {e}");
    }
}

async fn notify(causeway: &str, body: &[u8]) -> StatusCode {
    let Ok(shipment) = serde_json::from_slice::<Value>(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let (Some(id), Some(order)) = (shipment["id"].as_str(), shipment["data"]["orderId"].as_str()) else {
        return StatusCode::BAD_REQUEST;
    };
    let notified = json!({
        "specversion": "1.0", "id": format!("{id}-notified"), "source": NOTIFIER, "type": "CustomerNotified",
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true), "subject": order,
        "correlationid": shipment["correlationid"], "causationid": id,
        "data": {"orderId": order, "channel": "email", "to": format!("{order}@customers.example.com")},
    });
    match reqwest::Client::new().post(format!("{causeway}/v1/events")).json(&notified).send().await {
        Ok(answer) if answer.status().is_success() => StatusCode::OK,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// What the driver saw.
struct Summary {
    stats: SimStats,
    totals: [u64; 3],
    /// Findings raised, by kind: (kind, open, resolved).
    findings: Vec<(String, u64, u64)>,
    /// Journey instances by state.
    journeys: Vec<(String, u64)>,
    /// Pending dead letters by error type.
    dead_letters: Vec<(String, u64)>,
    tour: Option<Tour>,
}

/// An order whose notification went missing, and the ids to explore it by: the README's tour.
struct Tour {
    order: String,
    correlation: String,
    dead_letter: u64,
    /// The payment's event id: the order's state as of then.
    payment: String,
}

/// Where the simulated producers write: the server's ingest over HTTP, or Kafka topics.
enum Outlet {
    Http,
    Kafka(ThreadedProducer<rdkafka::producer::DefaultProducerContext>),
}

/// The example model's topic of each event type.
fn topic_of(event_type: &str) -> &'static str {
    match event_type {
        "OrderCreated" | "OrderCancelled" => "orders",
        "PaymentProcessed" | "PaymentFailed" => "payments",
        "InventoryReserved" => "inventory",
        "ShipmentCreated" => "shipments",
        _ => "notifications",
    }
}

/// Writes each event to its type's topic, keyed by correlation id; the broker's acknowledgements
/// come back on the producer's own thread.
fn produce(producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>, events: &[Value]) -> anyhow::Result<()> {
    for e in events {
        let event_type = e["type"].as_str().or(e["metadata"]["eventType"].as_str()).unwrap_or_default();
        let key = e["correlationid"].as_str().or(e["metadata"]["correlationId"].as_str()).unwrap_or_default();
        let body = e.to_string();
        let record = BaseRecord::to(topic_of(event_type)).key(key).payload(&body);
        producer.send(record).map_err(|(e, _)| anyhow::anyhow!("cannot produce to Kafka: {e}"))?;
    }
    Ok(())
}

/// With Kafka, the totals as the server stored them: (accepted, duplicates, rejected).
fn kafka_totals(client: &reqwest::blocking::Client, base: &str) -> Option<[u64; 3]> {
    let ready: Value = client.get(format!("{base}/readyz")).send().ok()?.json().ok()?;
    let (messages, refused) = (ready["kafka"]["messages"].as_u64()?, ready["kafka"]["refused"].as_u64()?);
    let accepted = ready["events"].as_u64()?;
    Some([accepted, messages.saturating_sub(refused + accepted), refused])
}

fn drive(base: &str, args: &DemoArgs, stop: &AtomicBool, command: &str) -> anyhow::Result<Summary> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let outlet = match &args.kafka {
        None => Outlet::Http,
        Some(brokers) => Outlet::Kafka(
            rdkafka::ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("client.id", "causeway-demo")
                .set("linger.ms", "5")
                .create()
                .context("cannot make a Kafka producer")?,
        ),
    };
    let mut sim = Simulator::new(SimConfig { seed: args.seed, fault_rate: args.fault_rate, concurrency: 50 });
    // Requests of a fixed size: the same seed then gives the same DLQ record ids, as the tour shows.
    let chunk = u64::from(args.rate / 20).clamp(1, 1000);
    let started = Instant::now();
    let mut summary =
        Summary { stats: SimStats::default(), totals: [0; 3], findings: Vec::new(), journeys: Vec::new(), dead_letters: Vec::new(), tour: None };
    // The first order whose only fault is the notification consumer's failure: the tour's.
    let mut tour_order: Option<String> = None;
    let mut sent = 0u64;
    let mut last_report = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * f64::from(args.rate)) as u64;
        if sent + chunk > due {
            // Pacing, not synchronisation: wait for the next slice of the rate.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let deliveries = sim.next_batch(chunk as usize, Utc::now());
        // notification-service cannot handle a shipment without customerEmail: it dead-letters it.
        let failures: Vec<Value> = deliveries.iter().filter(|d| d.fault == Some(Fault::ConsumerFailure)).map(|d| d.event.clone()).collect();
        if tour_order.is_none() {
            tour_order = deliveries
                .iter()
                .find(|d| d.fault == Some(Fault::ConsumerFailure) && d.order_faults == [Fault::ConsumerFailure])
                .and_then(|d| d.event["data"]["orderId"].as_str().map(str::to_owned));
        }
        let events: Vec<Value> = deliveries.into_iter().map(|d| d.event).collect();
        match &outlet {
            Outlet::Kafka(producer) => produce(producer, &events)?,
            Outlet::Http => {
                // The estate's producers write different shapes; a plain JSON array carries them all.
                let response = client
                    .post(format!("{base}/v1/events"))
                    .header("content-type", "application/json")
                    .body(Value::Array(events).to_string())
                    .send()
                    .context("the demo server stopped answering")?;
                let answer: Value = response.json().context("the demo server's answer is not JSON")?;
                for (i, key) in ["accepted", "duplicates", "rejected"].iter().enumerate() {
                    summary.totals[i] += answer[key].as_u64().unwrap_or(0);
                }
            }
        }
        for event in failures {
            let report = json!({
                "event": event, "consumer": NOTIFIER, "source_topic": "shipments",
                "error_type": "KeyError", "error_message": "'customerEmail'",
                "stack": "Traceback (most recent call last):\n  File \"notify.py\", line 42, in handle\n    to = event[\"data\"][\"customerEmail\"]\nKeyError: 'customerEmail'",
            });
            client.post(format!("{base}/v1/dlq")).json(&report).send().context("the demo server stopped answering")?;
        }
        sent += chunk;
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            if let Outlet::Kafka(_) = outlet {
                summary.totals = kafka_totals(&client, base).unwrap_or(summary.totals);
            }
            let s = sim.stats();
            let printed = say!(
                "[{:>4}s] {} events: {} accepted, {} duplicates, {} rejected | orders {} started, {} finished",
                started.elapsed().as_secs(),
                sent,
                summary.totals[0],
                summary.totals[1],
                summary.totals[2],
                s.orders_started,
                s.orders_finished
            );
            if !printed {
                break; // stdout closed: nobody is watching, the demo ends
            }
            if summary.tour.is_none() {
                summary.tour = tour_order.as_deref().and_then(|order| find_tour(&client, base, order));
                if let Some(tour) = &summary.tour {
                    print_tour(tour, command);
                }
            }
        }
    }
    summary.stats = sim.stats().clone();
    if let Outlet::Kafka(producer) = &outlet {
        producer.flush(Duration::from_secs(10)).context("the Kafka brokers did not take the last events")?;
        // What was produced is stored within moments; the summary counts it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            summary.totals = kafka_totals(&client, base).unwrap_or(summary.totals);
            if summary.totals.iter().sum::<u64>() >= sent {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let query =
        json!({"query": "SELECT kind, sum(resolved_at IS NULL), sum(resolved_at IS NOT NULL) FROM findings GROUP BY kind ORDER BY count(*) DESC"});
    if let Ok(answer) = client.post(format!("{base}/v1/sql")).json(&query).send().and_then(|r| r.json::<Value>()) {
        summary.findings = answer["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r[0].as_str()?.to_string(), r[1].as_u64()?, r[2].as_u64()?)))
            .collect();
    }
    if let Ok(answer) = client.get(format!("{base}/v1/journeys/summary")).send().and_then(|r| r.json::<Value>()) {
        summary.journeys =
            answer["journeys_by_state"].as_object().into_iter().flatten().filter_map(|(state, n)| Some((state.clone(), n.as_u64()?))).collect();
        summary.journeys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    if let Ok(answer) = client.get(format!("{base}/v1/dlq/summary")).send().and_then(|r| r.json::<Value>()) {
        summary.dead_letters =
            answer["by_error_type"].as_object().into_iter().flatten().filter_map(|(error, n)| Some((error.clone(), n.as_u64()?))).collect();
    }
    Ok(summary)
}

/// The tour on `order`, once its missing notification is an open finding with its dead letter
/// linked. Only the seed's first such order is asked about, so the same seed gives the same tour.
fn find_tour(client: &reqwest::blocking::Client, base: &str, order: &str) -> Option<Tour> {
    let journey: Value = client.get(format!("{base}/v1/journeys/order/{order}")).send().ok()?.json().ok()?;
    let finding = journey["findings"].as_array()?.iter().find(|f| {
        f["kind"] == "missing_reaction" && f["open"] == true && f["expected"].as_array().is_some_and(|e| e.iter().any(|x| x == "CustomerNotified"))
    })?;
    let payment = journey["milestones"].as_array()?.iter().find(|m| m["event"] == "PaymentProcessed")?;
    Some(Tour {
        order: order.to_string(),
        correlation: finding["correlation_id"].as_str()?.to_string(),
        dead_letter: finding["dead_letter"]["id"].as_u64()?,
        payment: payment["event_id"].as_str()?.to_string(),
    })
}

/// The commands of the README's tour, on this run's ids. `command` is `PROGRAM{}FLAGS`. Replays
/// need the demo's notification-service, so a store served again after the demo has none.
fn tour_commands(tour: &Tour, command: &str, with_replay: bool) -> Vec<String> {
    let Tour { order, correlation, dead_letter, payment } = tour;
    let mut verbs = vec![format!(" chain {correlation}"), format!(" journey order {order}"), format!(" dlq show {dead_letter}")];
    if with_replay {
        verbs.push(format!(" dlq replay {dead_letter} --dry-run"));
        verbs.push(format!(" dlq replay {dead_letter}"));
    }
    verbs.push(format!(" state Order {order} --at {payment}"));
    verbs.iter().map(|verb| command.replace("{}", verb)).collect()
}

fn print_tour(tour: &Tour, command: &str) {
    say!(
        "  order {} lost its customer notification (correlation {}, dead letter {}); from another terminal:",
        tour.order,
        tour.correlation,
        tour.dead_letter
    );
    for line in tour_commands(tour, command, true) {
        say!("    {line}");
    }
}

fn print_final(summary: &Summary, program: &str, kept: Option<&Path>) {
    let s = &summary.stats;
    say!();
    say!("summary: {} events delivered ({} orders started, {} finished)", s.deliveries, s.orders_started, s.orders_finished);
    say!("  stored {} accepted, {} duplicates, {} rejected (kept in dlq_events)", summary.totals[0], summary.totals[1], summary.totals[2]);
    say!("  faults injected, and what they raise:");
    for (fault, n) in Fault::ALL.iter().zip(s.faults) {
        say!("    {:<34} {n:>6}  → {}", fault.name(), fault.raises());
    }
    say!("  journeys by state:");
    for (state, n) in &summary.journeys {
        say!("    {state:<34} {n:>6}");
    }
    say!("  findings by kind (open / resolved):");
    for (kind, open, resolved) in &summary.findings {
        say!("    {kind:<34} {open:>6} / {resolved}");
    }
    say!("  dead letters pending, by error type:");
    for (error, n) in &summary.dead_letters {
        say!("    {error:<34} {n:>6}");
    }
    match (&summary.tour, kept) {
        (Some(tour), Some(data)) => {
            say!(
                "  the store is kept: `{program} serve --data {0} --model {0}/model/model.yaml`, then explore order {1}:",
                data.display(),
                tour.order
            );
            for line in tour_commands(tour, &format!("{program}{{}}"), false) {
                say!("    {line}");
            }
        }
        (Some(tour), None) => {
            say!(
                "  the ids to explore (order {}, correlation {}, dead letter {}) were in a temporary store: run with --data DIR to keep it",
                tour.order,
                tour.correlation,
                tour.dead_letter
            );
        }
        (None, _) => {
            say!("  no order lost its notification in time to show one: run longer (an order's reaction is due 30 s after its shipment)");
        }
    }
}
