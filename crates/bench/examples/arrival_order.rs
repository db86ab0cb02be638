//! What the order events arrive in costs the store: ingests N generated events in-process, once
//! in event-time order (as the HTTP bench sends them) and once as a Kafka consumer takes a keyed
//! topic's backlog (partition by partition, each partition's events spanning the whole time range),
//! and prints events/s and the bytes the process wrote to disk per event for each
//! (`cargo run --release -p causeway-bench --example arrival_order -- N [PARTITIONS] [CHUNK]`).

use std::time::Instant;

use causeway_bench::data::{Dataset, GenEvent, ndjson};
use causeway_envelope::{ParseOptions, parse_body};
use causeway_store::{NewEvent, Store};

fn written_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn ingest(events: &[&GenEvent], label: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let options = ParseOptions::default();
    let (start, before) = (Instant::now(), written_bytes());
    for chunk in events.chunks(4000) {
        let owned: Vec<GenEvent> = chunk.iter().map(|e| (*e).clone()).collect();
        let body = ndjson(&owned);
        let parsed: Vec<NewEvent> =
            parse_body(Some("application/x-ndjson"), &[], &body, &options)?.into_iter().map(|i| NewEvent::new(i.result.unwrap())).collect();
        store.append_blocking(parsed, vec![])?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let written = written_bytes() - before;
    println!("{label}: {:.0} events/s, {:.0} bytes written per event", events.len() as f64 / seconds, written as f64 / events.len() as f64);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(300_000);
    let partitions: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(188);
    let chunk: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1700);
    let data = Dataset::generate(n, 42);
    let in_time: Vec<&GenEvent> = data.events.iter().collect();
    let mut by_partition: Vec<Vec<&GenEvent>> = vec![Vec::new(); partitions as usize];
    for e in &data.events {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&e.correlation_id, &mut hasher);
        by_partition[(std::hash::Hasher::finish(&hasher) % partitions) as usize].push(e);
    }
    // Round-robin over the partitions, a fetch's worth of messages from each in turn.
    let mut by_fetch = Vec::with_capacity(n);
    let mut at = vec![0; by_partition.len()];
    while by_fetch.len() < n {
        for (p, events) in by_partition.iter().enumerate() {
            let end = (at[p] + chunk).min(events.len());
            by_fetch.extend_from_slice(&events[at[p]..end]);
            at[p] = end;
        }
    }
    ingest(&in_time, "in event-time order")?;
    ingest(&by_fetch, "partition by partition")?;
    ingest(&in_time, "in event-time order")?;
    ingest(&by_fetch, "partition by partition")?;
    Ok(())
}
