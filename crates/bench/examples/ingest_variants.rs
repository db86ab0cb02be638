//! What the store's durable ingest costs, and what would change it: the store's writer transaction
//! replayed on a plain rusqlite connection with the store's schema and settings, with changes
//! combined by `+`. Reports events/s and bytes written to disk per event (from /proc/self/io).
//!
//! `cargo run --release -p causeway-bench --example ingest_variants -- EVENTS EVENTS_PER_COMMIT VARIANT...`
//!
//! A variant is `store` followed by any of: `+sync-off` (no fsync: the CPU cost alone),
//! `+no-returning` (`INSERT OR IGNORE` instead of the upsert with `RETURNING`), `+lean` (without
//! `events_subject`, `events_type_time`, `events_time`), `+no-subject`, `+no-autocheckpoint`,
//! `+wal1g` (checkpoints at 1 GiB of WAL), `+no-lineage` (without the correlation, causation and
//! subject indexes), `+int-keys` (those three keyed by the ingest order of the correlation's,
//! cause's and subject's first event instead of their text ids), `+cache1g` (a 1 GiB page cache),
//! `+old-settings` (the settings before commit 87d1676: 64 MiB cache, 4 MiB checkpoints, no
//! QPSG). Every 100,000 events the rate of the last 100,000 is printed, to show how it falls as
//! the store grows.

use std::time::Instant;

use causeway_bench::data::Dataset;
use causeway_envelope::{Event, ParseOptions, parse_body};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA_RS: &str = include_str!("../../store/src/schema.rs");

/// The first schema literal of `crates/store/src/schema.rs` (the events table and its indexes).
fn schema() -> String {
    let start = SCHEMA_RS.find("r#\"").expect("schema literal") + 3;
    let end = SCHEMA_RS[start..].find("\"#;").expect("schema literal end") + start;
    SCHEMA_RS[start..end].to_string()
}

/// The `+int-keys` insert: looks up (or records) the seq of the correlation's and the subject's
/// first event, and the cause's seq, and stores them with the event. Read first, insert only when
/// new: an upsert would rewrite the `keys` row, and dirty its page, for every event. `true` when
/// the event was new.
fn insert_keyed(tx: &rusqlite::Transaction<'_>, seq: i64, e: &Event, json: &str, time: &str, now: &str) -> rusqlite::Result<bool> {
    let first = |kind: i64, key: &Option<String>| -> rusqlite::Result<Option<i64>> {
        let Some(key) = key else { return Ok(None) };
        let known =
            tx.prepare_cached("SELECT first_seq FROM keys WHERE kind = ?1 AND key = ?2")?.query_row(params![kind, key], |r| r.get(0)).optional()?;
        if known.is_none() {
            tx.prepare_cached("INSERT INTO keys (kind, key, first_seq) VALUES (?1, ?2, ?3)")?.execute(params![kind, key, seq])?;
        }
        Ok(Some(known.unwrap_or(seq)))
    };
    let (corr, subj) = (first(0, &e.correlation_id)?, first(1, &e.subject)?);
    let parent: Option<i64> = match &e.causation_id {
        Some(c) => tx.prepare_cached("SELECT seq FROM events WHERE event_id = ?1 LIMIT 1")?.query_row(params![c], |r| r.get(0)).optional()?,
        None => None,
    };
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO events (seq, event_id, source, event_type, correlation_id, causation_id, subject,
                                           time, topic, received_at, envelope, corr, parent, subj)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            seq,
            e.id,
            e.source,
            e.event_type,
            e.correlation_id,
            e.causation_id,
            e.subject,
            time,
            None::<String>,
            now,
            json,
            corr,
            parent,
            subj
        ])?;
    Ok(inserted == 1)
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
        variants = ["store", "store+sync-off", "store+no-returning", "store+lean"].map(String::from).to_vec();
    }
    let data = Dataset::generate(n, 42);
    let options = ParseOptions::default();
    let mut events = Vec::with_capacity(n);
    for body in data.ndjson_batches(1000) {
        for item in parse_body(Some("application/x-ndjson"), &[], &body, &options)? {
            let e = item.result?;
            // Rendered before the writer, as the store's NewEvent::new does.
            let (json, time) = (e.to_json(), e.time_string());
            events.push((e, json, time));
        }
    }
    println!("{n} events, {per_commit} per commit");
    for variant in &variants {
        let has = |flag: &str| variant.split('+').any(|f| f == flag);
        let dir = tempfile::tempdir()?;
        let mut conn = Connection::open(dir.path().join("v.db"))?;
        let old = has("old-settings");
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, !old)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", if has("sync-off") { "OFF" } else { "FULL" })?;
        conn.pragma_update(
            None,
            "cache_size",
            if old {
                -65536
            } else if has("cache1g") {
                -1048576
            } else {
                -262144
            },
        )?;
        let checkpoint = if has("no-autocheckpoint") {
            0
        } else if has("wal1g") {
            262_144
        } else if old {
            1000
        } else {
            16384
        };
        conn.pragma_update(None, "wal_autocheckpoint", checkpoint)?;
        conn.pragma_update(None, "journal_size_limit", 128 * 1024 * 1024)?;
        let mut ddl = schema();
        let mut dropped: Vec<&str> = Vec::new();
        if has("lean") {
            dropped.extend(["events_subject", "events_type_time", "events_time"]);
        }
        if has("no-subject") {
            dropped.push("events_subject");
        }
        let int_keys = has("int-keys");
        if has("no-lineage") || int_keys {
            dropped.extend(["events_correlation", "events_causation", "events_subject"]);
        }
        for idx in dropped {
            let start = ddl.find(&format!("CREATE INDEX {idx} ")).expect("index");
            let end = ddl[start..].find(';').unwrap() + start + 1;
            ddl.replace_range(start..end, "");
        }
        conn.execute_batch(&ddl)?;
        if int_keys {
            // Lineage keyed by ingest order: a correlation or subject by the seq of its first event,
            // a cause by its seq; inserts land at the right edge of these indexes.
            conn.execute_batch(
                "ALTER TABLE events ADD COLUMN corr INTEGER;
                 ALTER TABLE events ADD COLUMN parent INTEGER;
                 ALTER TABLE events ADD COLUMN subj INTEGER;
                 CREATE TABLE keys (kind INTEGER, key TEXT, first_seq INTEGER NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID;
                 CREATE INDEX events_corr ON events(corr, time);
                 CREATE INDEX events_parent ON events(parent);
                 CREATE INDEX events_subj ON events(subj, time);",
            )?;
        }
        let mut seq: i64 = 0;
        let mut block_clock = Instant::now();
        let no_returning = has("no-returning");
        let before = written_bytes();
        let clock = Instant::now();
        let now = "2026-11-23T10:00:00.000000Z";
        for chunk in events.chunks(per_commit) {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut plain = tx.prepare_cached(
                    "INSERT OR IGNORE INTO events (event_id, source, event_type, correlation_id, causation_id, subject,
                                                   time, topic, received_at, envelope)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                let mut duplicate = tx.prepare_cached("UPDATE events SET redeliveries = redeliveries + 1 WHERE event_id = ?1 AND source = ?2")?;
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO events (event_id, source, event_type, correlation_id, causation_id, subject, time,
                                         topic, received_at, envelope)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (event_id, source) DO UPDATE SET redeliveries = redeliveries + 1
                     RETURNING redeliveries",
                )?;
                for (e, json, time) in chunk {
                    seq += 1;
                    if seq % 100_000 == 0 {
                        eprintln!("  {seq}: {:.0} events/s", 100_000.0 / block_clock.elapsed().as_secs_f64());
                        block_clock = Instant::now();
                    }
                    if int_keys {
                        if !insert_keyed(&tx, seq, e, json, time, now)? {
                            duplicate.execute(params![e.id, e.source])?;
                        }
                        continue;
                    }
                    let p = params![e.id, e.source, e.event_type, e.correlation_id, e.causation_id, e.subject, time, None::<String>, now, json];
                    let accepted = if no_returning {
                        let inserted = plain.execute(p)? == 1;
                        if !inserted {
                            duplicate.execute(params![e.id, e.source])?;
                        }
                        inserted
                    } else {
                        upsert.query_row(p, |r| r.get::<_, i64>(0))? == 0
                    };
                    std::hint::black_box(accepted);
                }
            }
            tx.commit()?;
        }
        let elapsed = clock.elapsed().as_secs_f64();
        let written = written_bytes() - before;
        println!(
            "{variant:>36}: {:>7.0} events/s, {:>5.1} KiB written per event{}",
            n as f64 / elapsed,
            written as f64 / n as f64 / 1024.0,
            if has("sync-off") { " (not yet flushed: not comparable)" } else { "" }
        );
    }
    Ok(())
}
