//! How large the write-ahead log grows under continuous appends while readers keep reading — the
//! figures in docs/operations.md ("The write-ahead log").
//!
//! ```sh
//! cargo run --release -p causeway-store --example wal_growth -- [SECONDS] [READERS] [EVENTS_PER_APPEND] [EVENTS_PER_SECOND]
//! ```
//!
//! Defaults: 30 s, 4 reader threads, 10 events per append, no rate limit (0). The demo's load is
//! about `30 4 10 200`. Readers run what the server runs: the journey engine's log reads, lineage
//! lookups and a user query; each holds its read transaction only for its statement.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use causeway_envelope::Event;
use causeway_store::{NewEvent, SqlLimits, Store};
use serde_json::json;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The `n`th event: a random id (as producers send), one correlation per order of five events.
fn event(n: u64) -> NewEvent {
    let order = n / 5;
    let types = ["OrderCreated", "PaymentProcessed", "InventoryReserved", "ShipmentCreated", "CustomerNotified"];
    let value = json!({
        "specversion": "1.0", "id": format!("{:016x}-{n}", mix(n)), "source": "order-service",
        "type": types[(n % 5) as usize],
        "time": "2026-11-23T10:00:00Z", "correlationid": format!("{:016x}", mix(order)),
        "causationid": (!n.is_multiple_of(5)).then(|| format!("{:016x}-{}", mix(n - 1), n - 1)), "subject": format!("ord-{order:06}"),
        "data": {"orderId": format!("ord-{order:06}"), "customerEmail": "someone@example.com", "amount": 42.5,
                 "currency": "EUR", "lines": [{"sku": "sku-1", "qty": 1}, {"sku": "sku-2", "qty": 3}]},
    });
    let serde_json::Value::Object(obj) = value else { unreachable!() };
    NewEvent::new(Event::from_structured(obj, true).expect("a valid event"))
}

fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn main() {
    let args: Vec<f64> = std::env::args().skip(1).map(|a| a.parse().expect("numbers")).collect();
    let arg = |i: usize, default: f64| args.get(i).copied().unwrap_or(default);
    let (seconds, readers, batch, rate) = (arg(0, 30.0), arg(1, 4.0) as usize, arg(2, 10.0) as u64, arg(3, 0.0));
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(dir.path()).expect("a store");
    let wal = dir.path().join("causeway.db-wal");
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..readers)
        .map(|r| {
            let (store, stop, written, reads) = (store.clone(), stop.clone(), written.clone(), reads.clone());
            std::thread::spawn(move || {
                let mut i = r as u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = mix(i) % written.load(Ordering::Relaxed).max(1);
                    match i % 4 {
                        0 => drop(store.log_after(n as i64, 256).expect("log")),
                        1 => drop(store.event(&format!("{:016x}-{n}", mix(n))).expect("event")),
                        2 => drop(store.correlation(&format!("{:016x}", mix(n / 5)), 100).expect("correlation")),
                        _ => drop(store.sql("SELECT count(*) FROM event_lineage WHERE event_type = 'OrderCreated'", SqlLimits::default())),
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += readers as u64;
                }
            })
        })
        .collect();
    let started = Instant::now();
    let (mut n, mut max_wal, mut next_report) = (0u64, 0u64, 1.0);
    while started.elapsed().as_secs_f64() < seconds {
        if rate > 0.0 {
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        store.append_blocking((n..n + batch).map(event).collect(), vec![]).expect("append");
        n += batch;
        written.store(n, Ordering::Relaxed);
        max_wal = max_wal.max(size(&wal));
        let t = started.elapsed().as_secs_f64();
        if t >= next_report {
            println!(
                "{t:5.1} s  {n:>8} events  wal {:>6.1} MiB  db {:>6.1} MiB",
                size(&wal) as f64 / 1048576.0,
                size(store.path()) as f64 / 1048576.0
            );
            next_report += 1.0;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().expect("reader"));
    println!(
        "{n} events in {elapsed:.1} s: {:.0} events/s, {} reads; WAL at most {:.1} MiB, at the end {:.1} MiB; database {:.1} MiB",
        n as f64 / elapsed,
        reads.load(Ordering::Relaxed),
        max_wal as f64 / 1048576.0,
        size(&wal) as f64 / 1048576.0,
        size(store.path()) as f64 / 1048576.0
    );
}
