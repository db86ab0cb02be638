//! The store against real SQLite files.

use std::time::Duration;

use causeway_envelope::{Event, ParseOptions, parse_body};
use causeway_store::{DlqReport, EventOutcome, INGEST_CONSUMER, NewEvent, NewRejection, SqlLimits, Store, StoreError};
use serde_json::json;

fn event(id: &str, corr: &str, cause: Option<&str>, second: u32) -> NewEvent {
    parsed(json!({"specversion": "1.0", "id": id, "source": "svc", "type": format!("T{id}"),
                  "time": format!("2026-11-23T10:00:{second:02}Z"), "correlationid": corr,
                  "causationid": cause, "subject": "agg-1", "data": {"n": second}}))
}

/// A CloudEvent as ingest parses it.
fn parsed(v: serde_json::Value) -> NewEvent {
    let items = parse_body(Some("application/json"), &[], v.to_string().as_bytes(), &ParseOptions::default()).unwrap();
    NewEvent::new(items.into_iter().next().unwrap().result.unwrap())
}

fn ids(rows: &[causeway_store::EventRow]) -> Vec<&str> {
    rows.iter().map(|r| r.event_id.as_str()).collect()
}

#[test]
fn append_is_idempotent_on_source_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = store.append_blocking(vec![event("a", "c", None, 1), event("a", "c", None, 1)], vec![]).unwrap();
    assert_eq!(r.events, vec![EventOutcome::Accepted, EventOutcome::Duplicate]);
    let r = store.append_blocking(vec![event("a", "c", None, 1)], vec![]).unwrap();
    assert_eq!(r.events, vec![EventOutcome::Duplicate]);
    let row = store.event("a").unwrap().unwrap();
    assert_eq!(row.redeliveries, 2, "redeliveries counted");
    assert_eq!(store.counts().unwrap().events, 1, "stored once");
    let stored: Event = Event::from_structured(serde_json::from_str(&row.envelope).unwrap(), true).unwrap();
    assert_eq!(stored.data.unwrap()["n"], 1);
}

/// A new store holding `events`.
fn store_with(events: Vec<NewEvent>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append_blocking(events, vec![]).unwrap();
    (dir, store)
}

#[test]
fn lineage_queries_follow_causation() {
    // Out of order on purpose: children before their parents.
    let (_dir, store) = store_with(vec![
        event("d", "c", Some("b"), 4),
        event("b", "c", Some("a"), 2),
        event("c2", "c", Some("a"), 3),
        event("a", "c", None, 1),
        event("other", "z", None, 5),
    ]);
    assert_eq!(ids(&store.correlation("c", 100).unwrap()), ["a", "b", "c2", "d"]);
    assert_eq!(ids(&store.descendants("a", 100).unwrap().unwrap()), ["b", "c2", "d"]);
    assert_eq!(ids(&store.descendants("d", 100).unwrap().unwrap()), Vec::<&str>::new());
    assert!(store.descendants("nope", 100).unwrap().is_none());
    let (root, hops) = store.root("d").unwrap().unwrap();
    assert_eq!((root.event_id.as_str(), hops), ("a", 2));
    assert!(store.root("nope").unwrap().is_none());
}

#[test]
fn descendants_of_a_causation_cycle_are_each_listed_once() {
    // a → b → {c, d}, d → e, and c → a closes a cycle: a walk that does not remember what it
    // expanded goes round it without end.
    let (_dir, store) = store_with(vec![
        event("a", "k", Some("c"), 1),
        event("b", "k", Some("a"), 2),
        event("c", "k", Some("b"), 3),
        event("d", "k", Some("b"), 4),
        event("e", "k", Some("d"), 5),
    ]);
    assert_eq!(ids(&store.descendants("a", 100).unwrap().unwrap()), ["b", "c", "d", "e"]);
    assert_eq!(ids(&store.descendants("b", 100).unwrap().unwrap()), ["a", "c", "d", "e"]);
    assert_eq!(ids(&store.descendants("a", 2).unwrap().unwrap()), ["b", "c"], "the limit keeps the earliest");
    // Up from e: d, b, a, c; c's cause b was seen, so the walk stops at c.
    let (root, hops) = store.root("e").unwrap().unwrap();
    assert_eq!((root.event_id.as_str(), hops), ("c", 4), "the root walk ends inside the cycle");
}

/// Each lookup reaches both halves of the history by an index: `events` is handed the lookup (its
/// plan names it), reads the sealed rows through the segments' indexes, and the unsealed ones with
/// a nested statement on `events_hot` that SQLite answers by rowid: each seq the in-memory keys
/// name for an id, or their times for a narrow time range.
#[test]
fn lookups_use_indexes_not_scans() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (query, handed, nested, index) in [
        ("SELECT * FROM events WHERE event_id = 'x'", "event_id@", "seq = 1 AND event_id = 'x'", "INTEGER PRIMARY KEY (rowid=?)"),
        (
            "SELECT event_id, event_type, source_service, timestamp, causation_id FROM event_lineage WHERE correlation_id = 'c' ORDER BY timestamp",
            "correlation_id@",
            "seq = 1 AND correlation_id = 'c'",
            "INTEGER PRIMARY KEY (rowid=?)",
        ),
        ("SELECT * FROM events WHERE causation_id = 'x'", "causation_id@", "seq = 1 AND causation_id = 'x'", "INTEGER PRIMARY KEY (rowid=?)"),
        ("SELECT * FROM event_lineage WHERE aggregate_id = 'x'", "subject@", "seq = 1 AND subject = 'x'", "INTEGER PRIMARY KEY (rowid=?)"),
        (
            "SELECT * FROM event_lineage WHERE event_type = 'T' AND timestamp > '2026'",
            "event_type@",
            "seq > 0 AND event_type = 'T' AND time >= '2026'",
            "events_type_time",
        ),
        (
            "SELECT * FROM event_lineage WHERE timestamp BETWEEN '2026-11-01' AND '2026-11-02'",
            "time<=",
            "seq = 1 AND time >= '2026-11-01' AND time <= '2026-11-02'",
            "INTEGER PRIMARY KEY (rowid=?)",
        ),
        ("SELECT * FROM events WHERE seq > 10 ORDER BY seq LIMIT 5", "seq>@", "seq > 10", "INTEGER PRIMARY KEY"),
    ] {
        let plan = store.sql(&format!("EXPLAIN QUERY PLAN {query}"), SqlLimits::default()).unwrap();
        let text = format!("{:?}", plan.rows);
        assert!(text.contains("VIRTUAL TABLE") && text.contains(handed), "{query}: {text}");
        assert!(!text.contains("TEMP B-TREE FOR ORDER BY") || query.contains("ORDER BY timestamp"), "{query}: {text}");
        let hot = store.sql(&format!("EXPLAIN QUERY PLAN SELECT * FROM events_hot WHERE {nested} ORDER BY seq"), SqlLimits::default()).unwrap();
        let hot = format!("{:?}", hot.rows);
        assert!(hot.contains(index) && !hot.contains("SCAN events_hot"), "{query}: the unsealed rows are read with {hot}");
    }
}

/// Regression: a row looked up by seq was found by reading every unsealed row before it (the
/// nested statement had two lower bounds on seq, and SQLite started its range at the log's
/// unsealed start): `descendants` took 25 ms a row at 100,000 unsealed events. Counted in SQLite's
/// own steps, so the verdict does not depend on the machine's speed.
#[test]
fn a_lookup_by_seq_reads_its_row_not_the_rows_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for from in (0..20_000u32).step_by(1_000) {
        store
            .append_blocking((from..from + 1_000).map(|n| event(&format!("e{n}"), &format!("c{}", n / 10), None, n % 60)).collect(), vec![])
            .unwrap();
    }
    for query in ["SELECT * FROM events WHERE seq = 19990", "SELECT event_id FROM events WHERE seq >= 19990 AND seq < 19992"] {
        let before = store.nested_steps();
        let rows = store.sql(query, SqlLimits::default()).unwrap().rows;
        let steps = store.nested_steps() - before;
        assert!(!rows.is_empty() && steps < 200, "{query}: {} rows in {steps} steps", rows.len());
    }
    let before = store.nested_steps();
    assert_eq!(store.descendants("e19000", 100).unwrap().unwrap().len(), 0);
    assert!(store.nested_steps() - before < 200, "descendants of a late event read {} steps", store.nested_steps() - before);
}

#[test]
fn sql_refuses_anything_but_reading() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append_blocking(vec![event("a", "c", None, 1)], vec![]).unwrap();
    for query in [
        "DELETE FROM events",
        "INSERT INTO dlq(consumer, error_type, error_message, failed_at, last_failed_at, original_event) VALUES ('a','b','c','d','e','f')",
        "DROP VIEW event_lineage",
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "PRAGMA query_only = 0",
        "PRAGMA journal_mode",
        "BEGIN",
        "CREATE TABLE t(x)",
    ] {
        let err = store.sql(query, SqlLimits::default()).unwrap_err();
        assert!(matches!(err, StoreError::NotReadOnly(_)), "{query}: {err:?}");
    }
    let err = store.sql("SELECT 1; DELETE FROM events", SqlLimits::default()).unwrap_err();
    assert!(err.is_client_error(), "{err:?}");
    let err = store.sql("SELECT 1; SELECT 2", SqlLimits::default()).unwrap_err();
    assert!(err.to_string().contains("one statement"), "{err:?}");
    let err = store.sql("SELEC 1", SqlLimits::default()).unwrap_err();
    assert!(err.to_string().contains("syntax error"), "{err}");
    assert_eq!(store.counts().unwrap().events, 1);
}

/// Regression: a write to a view (`DELETE FROM dlq_events`) answered SQLite's "cannot modify
/// dlq_events because it is a view" where a write to a table said read-only.
#[test]
fn every_write_gets_the_same_read_only_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let sentence = store.sql("DELETE FROM events", SqlLimits::default()).unwrap_err().to_string();
    assert!(sentence.contains("only read-only queries are allowed"), "{sentence}");
    for query in [
        "DELETE FROM dlq_events",
        "delete from findings where id = 1",
        "UPDATE event_lineage SET topic = 'x'",
        "INSERT INTO dlq_events (id) VALUES (1)",
        "REPLACE INTO findings (id) VALUES (1)",
        "DELETE FROM no_such_table",
        "  -- a comment first\n/* and another */ DELETE FROM dlq_events;",
        "WITH doomed AS (SELECT id FROM dlq) DELETE FROM dlq_events WHERE id IN (SELECT id FROM doomed)",
        "EXPLAIN DELETE FROM dlq_events",
        "EXPLAIN QUERY PLAN UPDATE findings SET kind = 'x'",
        "DROP VIEW findings",
        "ANALYZE",
        "VACUUM",
    ] {
        let err = store.sql(query, SqlLimits::default()).unwrap_err();
        assert!(matches!(err, StoreError::NotReadOnly(_)), "{query}: {err:?}");
        assert_eq!(err.to_string(), sentence, "{query}");
    }
    // Reads that merely mention write words are still reads.
    for query in [
        "SELECT 'DELETE FROM dlq' AS \"update\"",
        "WITH \"insert\" AS (SELECT 1 AS x) SELECT x FROM \"insert\"",
        "EXPLAIN QUERY PLAN SELECT * FROM dlq_events",
        "VALUES (1)",
    ] {
        store.sql(query, SqlLimits::default()).unwrap_or_else(|e| panic!("{query}: {e}"));
    }
}

#[test]
fn sql_time_limit_interrupts_a_runaway_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let limits = SqlLimits { timeout: Duration::from_millis(200), max_rows: 10, ..SqlLimits::default() };
    let err = store.sql("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n", limits).unwrap_err();
    assert!(matches!(err, StoreError::QueryTimeout(200)), "{err:?}");
    // The connection is usable again afterwards.
    let ok = store.sql("SELECT 42 AS answer", limits).unwrap();
    assert_eq!(ok.rows, vec![vec![json!(42)]]);
    let many = store.sql("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 50) SELECT x FROM n", limits).unwrap();
    assert_eq!((many.rows.len(), many.truncated), (10, true));
}

#[test]
fn rejections_are_kept_in_the_dlq_view() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = store
        .append_blocking(
            vec![],
            vec![NewRejection {
                record: DlqReport {
                    original: "{bad".into(),
                    consumer: INGEST_CONSUMER.into(),
                    error_type: "malformed_json".into(),
                    error_message: "the body is not valid JSON".into(),
                    correlation_id: Some("c7".into()),
                    ..Default::default()
                },
                findings: Vec::new(),
            }],
        )
        .unwrap();
    assert_eq!(r.dlq_ids.len(), 1);
    let rows =
        store.sql("SELECT consumer, error_type, status, original_event FROM dlq_events WHERE correlation_id = 'c7'", SqlLimits::default()).unwrap();
    assert_eq!(rows.rows, vec![vec![json!("causeway"), json!("malformed_json"), json!("pending"), json!("{bad")]]);
}

#[test]
fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append_blocking(vec![event("a", "c", None, 1)], vec![]).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert!(store.event("a").unwrap().is_some());
    let r = store.append_blocking(vec![event("a", "c", None, 1)], vec![]).unwrap();
    assert_eq!(r.events, vec![EventOutcome::Duplicate]);
}

/// Events and redeliveries share one ingest order: the log replays both, the follower receives
/// them as they commit, and the counts stay right across a reopen.
#[test]
fn the_log_holds_events_and_redeliveries_in_ingest_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let follower = store.follow();
    let before = store.watermark();
    store.append_blocking(vec![event("a", "c", None, 1), event("b", "c", Some("a"), 2)], vec![]).unwrap();
    store.append_blocking(vec![event("a", "c", None, 1), event("d", "c", None, 3)], vec![]).unwrap();
    let log = store.log_after(0, 100).unwrap();
    let order: Vec<(i64, bool, String)> = log
        .iter()
        .map(|e| (e.seq, e.redelivery, serde_json::from_str::<serde_json::Value>(&e.envelope).unwrap()["id"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(order, vec![(1, false, "a".into()), (2, false, "b".into()), (3, true, "a".into()), (4, false, "d".into())]);
    assert_eq!(store.log_after(2, 1).unwrap()[0].seq, 3, "paged from a position");
    assert!(log[0].received_at <= log[3].received_at);
    assert!(before <= store.watermark(), "the watermark never goes back");

    let mut handed = Vec::new();
    assert!(follower.drain(&mut handed), "a new follower first reads the log");
    let handed: Vec<(i64, bool, &str)> = handed.iter().map(|c| (c.seq, c.redelivery, c.event.id.as_str())).collect();
    assert_eq!(handed, vec![(1, false, "a"), (2, false, "b"), (3, true, "a"), (4, false, "d")]);
    let received = causeway_envelope::format_time(&store.watermark());
    assert!(log[3].received_at <= received);

    assert_eq!(store.counts().unwrap().events, 3);
    assert_eq!(store.counts().unwrap().log_end, 4);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    store.append_blocking(vec![event("e", "c", None, 4)], vec![]).unwrap();
    assert_eq!(store.counts().unwrap().log_end, 5, "the order goes on after a reopen");
    assert_eq!(store.counts().unwrap().events, 4);
}

/// Derived rows are rewritten in place: the same finding written again keeps its row id, a
/// rebuild drops findings beyond the engine's, and a model change drops them all.
#[test]
fn derived_writes_upsert_by_engine_id() {
    use causeway_store::{DerivedFinding, DerivedWrite, FindingFilter, NewFinding};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append_blocking(vec![event("a", "c", None, 1)], vec![]).unwrap();
    let finding = |id: u64, resolved: Option<&str>| DerivedFinding {
        engine_id: id,
        finding: NewFinding {
            kind: "stalled".into(),
            journey: Some("order".into()),
            journey_key: Some("o1".into()),
            detail: format!("f{id}"),
            ..Default::default()
        },
        detected_at: "2026-11-23T10:00:00.000000Z".into(),
        resolved_at: resolved.map(str::to_owned),
    };
    let all = FindingFilter { limit: 100, ..Default::default() };
    store
        .write_derived_blocking(DerivedWrite {
            reset_for_model: Some("m1".into()),
            memberships: vec![(1, "order".into(), "o1".into())],
            findings: vec![finding(1, None), finding(2, None)],
            drop_findings_above: None,
            position: Some(1),
            resolved_dead_letters: Vec::new(),
            meta: Vec::new(),
        })
        .unwrap();
    let rows = store.findings(&all).unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    store
        .write_derived_blocking(DerivedWrite {
            findings: vec![finding(1, Some("2026-11-23T10:01:00.000000Z"))],
            drop_findings_above: Some(1),
            ..Default::default()
        })
        .unwrap();
    let rows = store.findings(&all).unwrap();
    assert_eq!(rows.len(), 1, "finding 2 is gone after the rebuild");
    assert_eq!(rows[0].id, *ids.last().unwrap(), "finding 1 kept its row");
    assert_eq!(rows[0].resolved_at.as_deref(), Some("2026-11-23T10:01:00.000000Z"));
    assert_eq!(store.derived_state().unwrap(), Some(("m1".into(), 1)));
    let lineage = store
        .with_reader(|c| {
            Ok(c.query_row("SELECT journey, journey_key FROM event_lineage", [], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?)
        })
        .unwrap();
    assert_eq!(lineage, ("order".into(), "o1".into()));
    store.write_derived_blocking(DerivedWrite { reset_for_model: Some("m2".into()), ..Default::default() }).unwrap();
    assert!(store.findings(&all).unwrap().is_empty(), "another model's findings are dropped");
    assert_eq!(store.derived_state().unwrap(), Some(("m2".into(), 0)), "a new model starts from the beginning");
}

/// A store written by version 4 (findings without `rule`) opens: the column is added, findings
/// kept, and the engine's position dropped so that it writes its findings again, in place and now
/// with their rule.
#[test]
fn a_version_4_store_gains_the_finding_rule() {
    use causeway_store::{DerivedFinding, DerivedWrite, FindingFilter, NewFinding};
    let dir = tempfile::tempdir().unwrap();
    let finding = |rule: Option<&str>| DerivedFinding {
        engine_id: 1,
        finding: NewFinding { kind: "missing_reaction".into(), rule: rule.map(str::to_owned), detail: "late".into(), ..Default::default() },
        detected_at: "2026-11-23T10:00:00.000000Z".into(),
        resolved_at: None,
    };
    // What version 4 left: an event, a finding of the journey engine without a rule, the
    // engine's recorded position.
    let db = causeway_store::create_at_version(&dir.path().join(causeway_store::DB_FILE), 4).unwrap();
    db.execute_batch(
        r#"INSERT INTO events (seq, event_id, source, event_type, correlation_id, time, received_at, envelope)
               VALUES (1, 'a', 's', 'T', 'c', '2026-11-23T10:00:00.000000Z', '2026-11-23T10:00:00.000000Z', '{}');
           INSERT INTO finding_records (kind, detected_at, detail, engine_id) VALUES ('missing_reaction', '2026-11-23T10:00:00.000000Z', 'late', 1);
           INSERT INTO meta (key, value) VALUES ('journey_model', 'm1'), ('journey_position', '1');"#,
    )
    .unwrap();
    drop(db);

    let store = Store::open(dir.path()).unwrap();
    let all = FindingFilter { limit: 100, ..Default::default() };
    let before = store.findings(&all).unwrap();
    assert_eq!((before.len(), before[0].rule.as_deref()), (1, None));
    assert_eq!(store.derived_state().unwrap(), Some(("m1".into(), 0)), "the engine derives from the start again");
    store.write_derived_blocking(DerivedWrite { findings: vec![finding(Some("notify-after-shipment"))], ..Default::default() }).unwrap();
    let after = store.findings(&all).unwrap();
    assert_eq!((after[0].id, after[0].rule.as_deref()), (before[0].id, Some("notify-after-shipment")), "rewritten in place");
}

#[test]
fn dropping_the_last_handle_closes_the_store_before_returning() {
    // Readers in use leave their connections in the pool; the writer's connection must still be
    // the last to close, so that it checkpoints the WAL into the database file and removes it.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append_blocking((0..100).map(|i| event(&format!("e{i}"), "c", None, i % 60)).collect(), vec![]).unwrap();
    assert_eq!(store.counts().unwrap().events, 100);
    assert_eq!(ids(&store.correlation("c", 1).unwrap()).len(), 1);
    let wal = dir.path().join(format!("{}-wal", causeway_store::DB_FILE));
    assert!(wal.exists(), "a store in use writes ahead");
    drop(store);
    assert!(!wal.exists(), "the WAL is checkpointed and removed by the time drop returns");
    // The database file alone holds every event.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join(causeway_store::DB_FILE), copy.path().join(causeway_store::DB_FILE)).unwrap();
    assert_eq!(Store::open(copy.path()).unwrap().counts().unwrap().events, 100);
}

/// Regression: the demo's store reached 156 MB, 100 MB of it write-ahead log, because SQLite's own
/// checkpoints never wait for readers: with reads always in flight the log never started again
/// from its beginning and grew with every commit. Under continuous appends and three readers that
/// never pause, the `-wal` file stays under the bound docs/operations.md states: twice the 64 MiB
/// checkpoint interval, for the commit that crosses it and the tries readers hold up (each costs
/// 100 ms of commits, about 14 MiB at this test's rate).
#[test]
fn the_wal_stays_bounded_under_appends_and_concurrent_readers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const BOUND: u64 = 128 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let wal = dir.path().join("causeway.db-wal");
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3u64)
        .map(|r| {
            let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = (reads * 7919 + r) % written.load(Ordering::Relaxed).max(1);
                    match (reads + r) % 3 {
                        0 => drop(store.log_after(n as i64, 512).unwrap()),
                        1 => drop(store.event(&format!("e{n}")).unwrap()),
                        _ => drop(store.correlation(&format!("c{}", n / 5), 100).unwrap()),
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    // Random-looking ids, as producers send them; small commits of events of 1 KB, enough to fill
    // the log to its checkpoint more than once.
    let batch = |from: u64| -> Vec<NewEvent> {
        (from..from + 50)
            .map(|n| {
                parsed(json!({"specversion": "1.0", "id": format!("e{}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 1_000_003_000),
                              "source": "svc", "type": "T", "time": "2026-11-23T10:00:00Z", "correlationid": format!("c{}", n / 5),
                              "data": {"note": "x".repeat(800)}}))
            })
            .collect()
    };
    let mut largest = 0;
    for from in (0..100_000u64).step_by(50) {
        store.append_blocking(batch(from), vec![]).unwrap();
        written.store(from + 50, Ordering::Relaxed);
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(reads > 1_000, "the readers read throughout: {reads}");
    let database = std::fs::metadata(store.path()).unwrap().len();
    assert!(largest <= BOUND, "the WAL reached {:.1} MiB (database {:.1} MiB)", largest as f64 / 1048576.0, database as f64 / 1048576.0);
    assert!(database > 8 * 1024 * 1024, "checkpoints copied the log into the database: {database} bytes");
}

#[test]
fn kept_state_is_written_with_derived_rows_and_read_back_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let meta = [("lag:group:b", "2"), ("lag:group:a", "1"), ("lag:position", "{}"), ("lag:groupie", "no")];
    store
        .write_derived_blocking(causeway_store::DerivedWrite {
            meta: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        })
        .unwrap();
    let read = store.meta_with_prefix("lag:group:").unwrap();
    assert_eq!(read, [("lag:group:a".to_string(), "1".to_string()), ("lag:group:b".to_string(), "2".to_string())]);
    // Written again, a key keeps one row with the new value.
    store.write_derived_blocking(causeway_store::DerivedWrite { meta: vec![("lag:group:a".into(), "3".into())], ..Default::default() }).unwrap();
    assert_eq!(store.meta_with_prefix("lag:group:a").unwrap(), [("lag:group:a".to_string(), "3".to_string())]);
}

/// An id compared with a number compares as text (the column's affinity), as over the table
/// before `events` became a virtual table; `= NULL` matches nothing.
#[test]
fn an_id_given_as_a_number_is_compared_as_text() {
    let (_dir, store) = store_with(vec![event("42", "7", None, 1)]);
    for (query, rows) in [
        ("SELECT event_id FROM events WHERE event_id = 42", 1),
        ("SELECT event_id FROM event_lineage WHERE correlation_id = 7", 1),
        ("SELECT event_id FROM events WHERE event_id = NULL", 0),
        ("SELECT event_id FROM events WHERE event_id = x'3432'", 0),
    ] {
        assert_eq!(store.sql(query, SqlLimits::default()).unwrap().rows.len(), rows, "{query}");
    }
}
