//! What a full scan of sealed history costs against the same rows unsealed: `cargo run --release
//! -p causeway-store --example scan_cost [EVENTS]`. Prints the time of a few scanning queries on
//! both stores and the plan of the first.

use std::time::{Duration, Instant};

use causeway_envelope::{ParseOptions, parse_body};
use causeway_store::{NewEvent, SqlLimits, Store, StoreSettings};

fn event(i: usize) -> NewEvent {
    let n = i / 8;
    let k = i % 8;
    let v = serde_json::json!({"specversion": "1.0", "id": format!("e-{n:07}-{k}"), "source": "svc", "type": format!("Step{k}"),
        "time": format!("2026-11-23T10:{:02}:{:02}.{:06}Z", (i / 60_000_000) % 60, (i / 1_000_000) % 60, i % 1_000_000),
        "correlationid": format!("c-{n:07}"), "causationid": if k > 0 { Some(format!("e-{n:07}-{}", k - 1)) } else { None },
        "subject": format!("order-{}", n % 9973), "data": {"n": n, "amount": (n * 37) % 1000, "sku": format!("SKU-{}", n % 113)}});
    let items = parse_body(Some("application/json"), &[], v.to_string().as_bytes(), &ParseOptions::default()).unwrap();
    NewEvent::new(items.into_iter().next().unwrap().result.unwrap())
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sealed = Store::open_with(a.path(), &StoreSettings { segment_events: 10_000, ..StoreSettings::default() }).unwrap();
    let plain = Store::open_with(b.path(), &StoreSettings { segment_events: 0, ..StoreSettings::default() }).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let events: Vec<NewEvent> = chunk.iter().map(|&i| event(i)).collect();
        sealed.append_blocking(events.clone(), vec![]).unwrap();
        plain.append_blocking(events, vec![]).unwrap();
    }
    while sealed.stats().unwrap().sealed_upto < (n as i64 - 15_000) / 10_000 * 10_000 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = sealed.stats().unwrap();
    println!(
        "{} events, {} sealed in {} segments, disk ratio {:.3}",
        stats.events,
        stats.sealed_events,
        stats.segments.len(),
        stats.disk_ratio.unwrap_or(0.0)
    );
    let limits = SqlLimits { timeout: Duration::from_secs(600), max_rows: 100, ..SqlLimits::default() };
    for q in [
        "SELECT count(*) FROM events",
        "SELECT count(*) FROM event_lineage WHERE journey IS NULL",
        "SELECT count(*) FROM event_lineage WHERE event_type = 'Step3'",
        "SELECT count(*) FROM events WHERE json_extract(envelope, '$.data.amount') > 500",
        "SELECT max(seq) FROM events",
        // Event i's time is i microseconds after 10:00.
        "SELECT count(*) FROM events WHERE time BETWEEN '2026-11-23T10:00:00.195000Z' AND '2026-11-23T10:00:00.196000Z'",
        "SELECT count(*) FROM events WHERE event_type = 'Step3' AND time >= '2026-11-23T10:00:00.195000Z'",
        "SELECT count(*) FROM events WHERE time >= '2026-11-23T10:00:00.100000Z'",
    ] {
        for (name, store) in [("sealed", &sealed), ("plain", &plain)] {
            let t = Instant::now();
            let r = store.sql(q, limits).unwrap();
            println!("{name:>6} {:>8.1} ms  {q} -> {}", t.elapsed().as_secs_f64() * 1000.0, r.rows[0][0]);
        }
    }
    let plan = sealed.sql("EXPLAIN SELECT count(*) FROM event_lineage WHERE journey IS NULL", SqlLimits { max_rows: 1000, ..limits }).unwrap();
    for row in plan.rows.iter().filter(|r| r[1].as_str().is_some_and(|op| op.starts_with("V") || op == "Column")) {
        println!("{row:?}");
    }
}
