//! What the store's durable ingest costs, and what would change it: the store's writer transaction
//! replayed on a plain rusqlite connection with the store's schema, one setting changed at a time.
//! Reports events/s and bytes written to disk per event (from /proc/self/io).
//!
//! `cargo run --release -p causeway-bench --example ingest_variants -- [EVENTS] [EVENTS_PER_COMMIT] [VARIANT...]`

use std::time::Instant;

use causeway_bench::data::Dataset;
use causeway_envelope::{ParseOptions, parse_body};
use rusqlite::{Connection, params};

const SCHEMA_RS: &str = include_str!("../../store/src/schema.rs");

fn schema() -> String {
    let start = SCHEMA_RS.find("r#\"").expect("schema literal") + 3;
    let end = SCHEMA_RS[start..].find("\"#;").expect("schema literal end") + start;
    SCHEMA_RS[start..end].to_string()
}

fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("write_bytes:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200_000);
    let per_commit: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4_000);
    let mut variants: Vec<String> = args.collect();
    if variants.is_empty() {
        variants = ["store", "sync-off", "no-autocheckpoint", "big-cache", "lean-indexes", "page-8k", "mmap"].map(String::from).to_vec();
    }
    let data = Dataset::generate(n, 42);
    let options = ParseOptions::default();
    let mut events = Vec::with_capacity(n);
    for body in data.ndjson_batches(1000) {
        for item in parse_body(Some("application/x-ndjson"), &[], &body, &options)? {
            events.push(item.result?);
        }
    }
    println!("{n} events, {per_commit} per commit");
    for variant in &variants {
        let dir = tempfile::tempdir()?;
        let conn = Connection::open(dir.path().join("v.db"))?;
        if let Some(size) = variant.strip_prefix("page-") {
            let bytes: i64 = match size {
                "1k" => 1024,
                "2k" => 2048,
                "8k" => 8192,
                _ => 4096,
            };
            conn.pragma_update(None, "page_size", bytes)?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", if variant == "sync-off" || variant.starts_with("cpu-") { "OFF" } else { "FULL" })?;
        conn.pragma_update(None, "cache_size", if variant == "big-cache" { -1_048_576 } else { -65536 })?;
        if variant == "no-autocheckpoint" || variant == "big-wal" {
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        }
        if variant == "mmap" {
            conn.pragma_update(None, "mmap_size", 1i64 << 32)?;
        }
        let mut ddl = schema();
        let dropped: &[&str] = match variant.as_str() {
            // Only what the three lineage queries and the identity need.
            "lean-indexes" | "cpu-lean" => &["events_subject", "events_type_time", "events_time"],
            "no-subject" | "cpu-no-subject" => &["events_subject"],
            _ => &[],
        };
        {
            for idx in dropped {
                let start = ddl.find(&format!("CREATE INDEX {idx} ")).expect("index");
                let end = ddl[start..].find(';').unwrap() + start + 1;
                ddl.replace_range(start..end, "");
            }
        }
        conn.execute_batch(&ddl)?;
        let mut conn = conn;
        if variant == "big-wal" {
            // What a background checkpointer would give: checkpoints every ~64 MiB of WAL instead
            // of every 4 MiB, still on this thread so their cost is counted.
        }
        let before = written_bytes();
        let clock = Instant::now();
        let mut to_json = std::time::Duration::ZERO;
        for chunk in events.chunks(per_commit) {
            let now = "2026-11-23T10:00:00.000000Z";
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut plain = tx.prepare_cached(
                    "INSERT OR IGNORE INTO events (event_id, source, event_type, correlation_id, causation_id, subject, time,
                                         topic, received_at, envelope)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO events (event_id, source, event_type, correlation_id, causation_id, subject, time,
                                         topic, received_at, envelope)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (event_id, source) DO UPDATE SET redeliveries = redeliveries + 1
                     RETURNING redeliveries",
                )?;
                for e in chunk {
                    let t = Instant::now();
                    let json = e.to_json();
                    let time = e.time_string();
                    to_json += t.elapsed();
                    if variant == "cpu-no-returning" {
                        let inserted = plain.execute(params![
                            e.id, e.source, e.event_type, e.correlation_id, e.causation_id, e.subject, time, None::<String>, now, json
                        ])?;
                        std::hint::black_box(inserted);
                    } else {
                        let _: i64 = insert.query_row(
                            params![e.id, e.source, e.event_type, e.correlation_id, e.causation_id, e.subject, time, None::<String>, now, json],
                            |r| r.get(0),
                        )?;
                    }
                }
            }
            tx.commit()?;
            if variant == "big-wal" {
                let wal = std::fs::metadata(dir.path().join("v.db-wal")).map(|m| m.len()).unwrap_or(0);
                if wal > 64 << 20 {
                    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                }
            }
        }
        let elapsed = clock.elapsed().as_secs_f64();
        let written = written_bytes() - before;
        let wal = std::fs::metadata(dir.path().join("v.db-wal")).map(|m| m.len()).unwrap_or(0);
        let db = std::fs::metadata(dir.path().join("v.db")).map(|m| m.len()).unwrap_or(0);
        println!(
            "{variant:>18}: {:>7.0} events/s, {:>6.1} KiB written per event, to_json+time {:.0}% of the time, db {:.0} MiB, wal {:.0} MiB",
            n as f64 / elapsed,
            written as f64 / n as f64 / 1024.0,
            to_json.as_secs_f64() / elapsed * 100.0,
            db as f64 / 1048576.0,
            wal as f64 / 1048576.0
        );
    }
    Ok(())
}
