//! Simulated order-fulfilment traffic posted to a server, as the benchmarks over a loaded store
//! (web UI pages, metrics scrape) fill it.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use causeway_sim::{Fault, SimConfig, Simulator};
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};

use crate::Server;
use crate::http::HttpClient;

/// A server in this process on a store in `dir`, with the bundled order-fulfilment model (the
/// simulator's) and its journey engine on the event clock, as the benchmarks over a loaded store
/// run it.
pub fn start_with_bundled_model(dir: &std::path::Path) -> Result<Server> {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment/model.yaml");
    let store = causeway_store::Store::open(dir)?;
    let slot = causeway_server::ModelSlot::load(&model, b"bench".to_vec()).map_err(|d| anyhow::anyhow!("the bundled model: {d:?}"))?;
    let state = causeway_server::AppState::new(store, causeway_envelope::ParseOptions::default(), causeway_store::SqlLimits::default())
        .with_model(slot)
        .with_journeys(causeway_server::Clock::Event);
    Server::start(state)
}

/// Posts the simulated traffic in NDJSON batches of 1,000 (two clients) until `events` are
/// stored (duplicates and refused deliveries do not count), and reports each notification failure
/// to the DLQ as the demo's notification service does. Returns the dead letters reported and the
/// time taken.
pub fn load_simulated(addr: std::net::SocketAddr, events: usize) -> Result<(usize, Duration)> {
    let mut sim = Simulator::new(SimConfig { seed: 7, fault_rate: 0.05, concurrency: 200 });
    let mut at = Utc::now() - TimeDelta::seconds((events / 1000) as i64 * 5 + 3600);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, Vec<Value>)>(8);
    let started = Instant::now();
    let stored = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = stored.clone();
    let producer = std::thread::spawn(move || {
        // At most the channel's eight batches and two in flight past the goal.
        while counted.load(std::sync::atomic::Ordering::Relaxed) < events {
            let mut body = Vec::with_capacity(1000 * 700);
            let mut failures = Vec::new();
            for d in sim.next_batch(1000, at) {
                if d.fault == Some(Fault::ConsumerFailure) {
                    failures.push(d.event.clone());
                }
                serde_json::to_writer(&mut body, &d.event).expect("serialise");
                body.push(b'\n');
            }
            at += TimeDelta::seconds(5);
            if tx.send((body, failures)).is_err() {
                return;
            }
        }
    });
    let rx = std::sync::Mutex::new(rx);
    let dead = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut client = HttpClient::new(addr);
                    let mut answer = Vec::new();
                    loop {
                        let Ok((body, failures)) = rx.lock().expect("traffic").recv() else { return Ok(()) };
                        let status = client.post("/v1/events", "application/x-ndjson", &body, &mut answer)?;
                        if status.0 != 200 && status.0 != 207 {
                            bail!("ingest answered {}: {}", status.0, String::from_utf8_lossy(&answer));
                        }
                        let accepted = serde_json::from_slice::<Value>(&answer)?["accepted"].as_u64().unwrap_or(0);
                        stored.fetch_add(accepted as usize, std::sync::atomic::Ordering::Relaxed);
                        for event in failures {
                            let report = json!({"event": event, "consumer": "notification-service", "source_topic": "shipments",
                                "error_type": "KeyError", "error_message": "'customerEmail'"});
                            let status = client.post("/v1/dlq", "application/json", report.to_string().as_bytes(), &mut answer)?;
                            if status.0 != 201 && status.0 != 200 {
                                bail!("a DLQ report answered {}: {}", status.0, String::from_utf8_lossy(&answer));
                            }
                            dead.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    producer.join().expect("traffic thread");
    Ok((dead.into_inner(), started.elapsed()))
}

/// A GET that must answer 200 with JSON.
pub fn get_json(client: &mut HttpClient, path: &str) -> Result<Value> {
    let mut body = Vec::new();
    let status = client.get(path, &mut body)?;
    if status.0 != 200 {
        bail!("{path} answered {}: {}", status.0, String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}
