//! Does SQLite re-prepare the store's read statements on every execution? Counts re-prepares
//! (SQLITE_STMTSTATUS_REPREPARE) and times each lineage statement of `crates/store/src/read.rs`
//! on a kept store, with and without the query planner stability guarantee (QPSG).
//!
//! `cargo run --release -p causeway-bench --example reprepare -- DIR` (DIR from the `breakdown` example)

use std::time::{Duration, Instant};

use causeway_bench::data::Dataset;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, StatementStatus, params};

const COLUMNS: &str = "seq, event_id, source, event_type, correlation_id, causation_id, subject, time, redeliveries, envelope";

fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/tmp/causeway-breakdown".into()));
    let n: i64 = Connection::open(dir.join("causeway.db"))?.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    let data = Dataset::generate(n as usize, 42);
    let picks = data.sample_indexes(2000, 3);
    let statements = [
        ("by id (ORDER BY seq LIMIT 1)", format!("SELECT {COLUMNS} FROM events WHERE event_id = ?1 ORDER BY seq LIMIT 1"), false),
        ("by id (no ORDER BY/LIMIT)", format!("SELECT {COLUMNS} FROM events WHERE event_id = ?1"), false),
        ("correlation (LIMIT ?2)", format!("SELECT {COLUMNS} FROM events WHERE correlation_id = ?1 ORDER BY time, seq LIMIT ?2"), true),
        ("correlation (no LIMIT)", format!("SELECT {COLUMNS} FROM events WHERE correlation_id = ?1 ORDER BY time, seq"), false),
        (
            "descendants CTE (LIMIT ?2)",
            format!(
                "WITH RECURSIVE d(id, depth) AS (
                     SELECT ?1, 0
                     UNION
                     SELECT e.event_id, d.depth + 1 FROM events e JOIN d ON e.causation_id = d.id
                     WHERE d.depth < 10000
                 )
                 SELECT {COLUMNS} FROM events
                 WHERE event_id IN (SELECT id FROM d WHERE depth > 0) AND event_id <> ?1
                 ORDER BY time, seq LIMIT ?2"
            ),
            true,
        ),
        (
            "descendants CTE carrying rows",
            format!(
                "WITH RECURSIVE d AS (
                     SELECT {COLUMNS}, 1 AS depth FROM events WHERE causation_id = ?1
                     UNION ALL
                     SELECT e.seq, e.event_id, e.source, e.event_type, e.correlation_id, e.causation_id, e.subject,
                            e.time, e.redeliveries, e.envelope, d.depth + 1
                     FROM events e JOIN d ON e.causation_id = d.event_id
                     WHERE d.depth < 10000
                 )
                 SELECT {COLUMNS} FROM d ORDER BY time, seq LIMIT ?2"
            ),
            true,
        ),
        (
            "descendants CTE of seqs (UNION)",
            format!(
                "WITH RECURSIVE d(seq, id) AS (
                     SELECT seq, event_id FROM events WHERE causation_id = ?1 AND event_id <> ?1
                     UNION
                     SELECT e.seq, e.event_id FROM events e JOIN d ON e.causation_id = d.id WHERE e.event_id <> ?1
                 )
                 SELECT {COLUMNS} FROM events WHERE seq IN (SELECT seq FROM d) ORDER BY time, seq LIMIT ?2"
            ),
            true,
        ),
        ("children by causation (one BFS step)", format!("SELECT {COLUMNS} FROM events WHERE causation_id = ?1"), false),
    ];
    for qpsg in [false, true] {
        let conn = Connection::open_with_flags(
            dir.join("causeway.db"),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, qpsg)?;
        // The store's reader settings (crates/store/src/schema.rs prepare_reader).
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "cache_size", -16384)?;
        for (name, sql, limit) in &statements {
            let mut times = Vec::new();
            let mut reprepares = 0;
            for round in 0..2 {
                times.clear();
                for &i in &picks {
                    let e = &data.events[i];
                    let key = if name.starts_with("correlation") { &e.correlation_id } else { &e.id };
                    let t = Instant::now();
                    let mut stmt = conn.prepare_cached(sql)?;
                    let before = stmt.get_status(StatementStatus::RePrepare);
                    let mut rows = if *limit { stmt.query(params![key, 10_001])? } else { stmt.query(params![key])? };
                    while let Some(r) = rows.next()? {
                        std::hint::black_box(r.get_ref(9)?);
                    }
                    drop(rows);
                    let after = stmt.get_status(StatementStatus::RePrepare);
                    drop(stmt);
                    times.push(t.elapsed());
                    if round == 1 {
                        reprepares += after - before;
                    }
                }
            }
            times.sort();
            let p = |q: f64| times[((q * times.len() as f64) as usize).min(times.len() - 1)].as_secs_f64() * 1e6;
            let mean = times.iter().sum::<Duration>().as_secs_f64() * 1e6 / times.len() as f64;
            println!(
                "QPSG {:<5} {name:<30} p50 {:>6.1} µs  p99 {:>6.1} µs  mean {:>6.1} µs  re-prepares {reprepares}/{}",
                qpsg,
                p(0.5),
                p(0.99),
                mean,
                picks.len()
            );
        }
    }
    Ok(())
}
