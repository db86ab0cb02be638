//! The store against real SQLite files.

use std::time::Duration;

use causeway_envelope::{Event, ParseOptions, parse_body};
use causeway_store::{EventOutcome, NewEvent, NewRejection, SqlLimits, Store, StoreError};
use serde_json::json;

fn event(id: &str, corr: &str, cause: Option<&str>, second: u32) -> NewEvent {
    let v = json!({"specversion": "1.0", "id": id, "source": "svc", "type": format!("T{id}"),
                   "time": format!("2026-11-23T10:00:{second:02}Z"), "correlationid": corr,
                   "causationid": cause, "subject": "agg-1", "data": {"n": second}});
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

#[test]
fn lineage_queries_follow_causation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Out of order on purpose: children before their parents.
    store
        .append_blocking(
            vec![event("d", "c", Some("b"), 4), event("b", "c", Some("a"), 2), event("c2", "c", Some("a"), 3),
                 event("a", "c", None, 1), event("other", "z", None, 5)],
            vec![],
        )
        .unwrap();
    assert_eq!(ids(&store.correlation("c", 100).unwrap()), ["a", "b", "c2", "d"]);
    assert_eq!(ids(&store.descendants("a", 100).unwrap().unwrap()), ["b", "c2", "d"]);
    assert_eq!(ids(&store.descendants("d", 100).unwrap().unwrap()), Vec::<&str>::new());
    assert!(store.descendants("nope", 100).unwrap().is_none());
    let (root, hops) = store.root("d").unwrap().unwrap();
    assert_eq!((root.event_id.as_str(), hops), ("a", 2));
    assert!(store.root("nope").unwrap().is_none());
}

#[test]
fn lookups_use_indexes_not_scans() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (query, index) in [
        ("SELECT * FROM events WHERE event_id = 'x'", "events_identity"),
        ("SELECT event_id, event_type, source_service, timestamp, causation_id FROM event_lineage WHERE correlation_id = 'c' ORDER BY timestamp", "events_correlation"),
        ("SELECT * FROM events WHERE causation_id = 'x'", "events_causation"),
        ("SELECT * FROM event_lineage WHERE aggregate_id = 'x'", "events_subject"),
        ("SELECT * FROM event_lineage WHERE event_type = 'T' AND timestamp > '2026'", "events_type_time"),
        ("SELECT * FROM event_lineage WHERE timestamp BETWEEN '2026-11-01' AND '2026-11-02'", "events_time"),
    ] {
        let plan = store.sql(&format!("EXPLAIN QUERY PLAN {query}"), SqlLimits::default()).unwrap();
        let text = format!("{:?}", plan.rows);
        assert!(text.contains(index), "{query}: {text}");
        assert!(!text.contains("SCAN events"), "{query}: {text}");
        assert!(!text.contains("TEMP B-TREE"), "{query} sorts in memory: {text}");
    }
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

#[test]
fn sql_time_limit_interrupts_a_runaway_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let limits = SqlLimits { timeout: Duration::from_millis(200), max_rows: 10 };
    let err = store
        .sql("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n", limits)
        .unwrap_err();
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
                original: "{bad".into(),
                error_type: "malformed_json".into(),
                error_message: "the body is not valid JSON".into(),
                correlation_id: Some("c7".into()),
                ..Default::default()
            }],
        )
        .unwrap();
    assert_eq!(r.dlq_ids.len(), 1);
    let rows = store
        .sql("SELECT consumer, error_type, status, original_event FROM dlq_events WHERE correlation_id = 'c7'", SqlLimits::default())
        .unwrap();
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
