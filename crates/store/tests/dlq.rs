//! Dead-letter records, their tallies and the aggregate lookups, against real SQLite files.

use std::collections::BTreeMap;

use causeway_envelope::{ParseOptions, parse_body};
use causeway_store::{AggregateLookup, DlqFilter, DlqReport, DlqStatus, NewEvent, ReplayAttempt, ReplayOutcome, SqlLimits, StatusChange, Store};
use serde_json::{Value, json};

fn report(event_id: &str, consumer: &str, topic: &str, error_type: &str, message: &str) -> DlqReport {
    DlqReport {
        original: format!(r#"{{"id": "{event_id}",  "spacing": "kept as sent"}}"#),
        content_type: Some("application/cloudevents+json".into()),
        consumer: consumer.into(),
        source_topic: Some(topic.into()),
        error_type: error_type.into(),
        error_message: message.into(),
        event_id: Some(event_id.into()),
        event_type: Some("ShipmentCreated".into()),
        correlation_id: Some(format!("c-{event_id}")),
        source_service: Some("fulfilment-service".into()),
        ..Default::default()
    }
}

fn rows(store: &Store, sql: &str) -> Vec<Vec<Value>> {
    store.sql(sql, SqlLimits::default()).unwrap().rows
}

#[tokio::test]
async fn a_repeated_failure_updates_the_open_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = store.report_failure(report("e1", "notification-service", "shipments", "KeyError", "'customerEmail'")).await.unwrap();
    assert_eq!((first.attempts, first.repeated, first.status), (1, false, DlqStatus::Pending));
    let again = store.report_failure(report("e1", "notification-service", "shipments", "KeyError", "'customerName'")).await.unwrap();
    assert_eq!((again.id, again.attempts, again.repeated), (first.id, 2, true));
    let other = store.report_failure(report("e1", "billing-service", "shipments", "Timeout", "slow")).await.unwrap();
    assert_ne!(other.id, first.id, "another consumer's failure is another record");

    let (row, replays) = store.dlq_record(first.id).unwrap().unwrap();
    assert_eq!(row.error_message, "'customerName'", "the latest error");
    assert_eq!(row.original_event.as_deref(), Some(r#"{"id": "e1",  "spacing": "kept as sent"}"#), "byte for byte");
    assert!(replays.is_empty());

    // Once discarded the record is closed: the next failure opens a new one.
    let change = StatusChange { id: first.id, to: DlqStatus::Discarded, reason: Some("test data".into()), from: vec![DlqStatus::Pending] };
    assert!(store.change_dlq_status(change.clone()).await.unwrap());
    assert!(!store.change_dlq_status(change).await.unwrap(), "only from pending");
    let third = store.report_failure(report("e1", "notification-service", "shipments", "KeyError", "x")).await.unwrap();
    assert!(!third.repeated && third.id != first.id);
}

#[tokio::test]
async fn replays_are_audited_and_move_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = store.report_failure(report("e1", "notification-service", "shipments", "KeyError", "boom")).await.unwrap();
    let attempt = |outcome| ReplayAttempt { dlq_id: r.id, actor: "ana".into(), target: Some("http://t/replay".into()), forced: false, outcome };
    store.record_replay(attempt(ReplayOutcome::DryRun)).await.unwrap();
    assert_eq!(store.dlq_record(r.id).unwrap().unwrap().0.status, "pending", "a dry run changes nothing");
    store.record_replay(attempt(ReplayOutcome::Failed { http_status: Some(500), error: "HTTP 500: down".into() })).await.unwrap();
    let (row, _) = store.dlq_record(r.id).unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts, row.last_error.as_deref()), ("pending", 2, Some("HTTP 500: down")));
    store.record_replay(attempt(ReplayOutcome::Sent { http_status: 202 })).await.unwrap();
    let (row, replays) = store.dlq_record(r.id).unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.replays, row.last_error), ("replayed", 1, None));
    let outcomes: Vec<(&str, bool, Option<i64>)> = replays.iter().map(|a| (a.outcome.as_str(), a.dry_run, a.http_status)).collect();
    assert_eq!(outcomes, [("dry_run", true, None), ("failed", false, Some(500)), ("sent", false, Some(202))]);
    assert!(replays.iter().all(|a| a.actor == "ana"));
}

/// The summary reads tallies kept by triggers: after any mix of changes they must equal counting
/// the records, and inflow minus outflow must equal what is pending.
#[tokio::test]
async fn tallies_agree_with_the_records_after_any_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut ids = Vec::new();
    for i in 0..60 {
        let r = report(
            &format!("e{}", i % 45),
            ["a", "b", "c"][i % 3],
            ["orders", "payments"][i % 2],
            ["KeyError", "Timeout", "Schema"][(i / 3) % 3],
            "m",
        );
        ids.push(store.report_failure(r).await.unwrap().id);
    }
    for (n, id) in ids.iter().enumerate() {
        let outcome = match n % 5 {
            0 => Some(ReplayOutcome::Sent { http_status: 200 }),
            1 => Some(ReplayOutcome::Failed { http_status: None, error: "refused".into() }),
            _ => None,
        };
        if let Some(outcome) = outcome {
            store.record_replay(ReplayAttempt { dlq_id: *id, actor: "t".into(), target: None, forced: false, outcome }).await.unwrap();
        }
        if n % 7 == 0 {
            let to = if n % 2 == 0 { DlqStatus::Discarded } else { DlqStatus::Resolved };
            store.change_dlq_status(StatusChange { id: *id, to, reason: None, from: DlqStatus::ALL.to_vec() }).await.unwrap();
        }
    }
    // Repeated failures of replayed records bring them back to pending.
    for i in 0..10 {
        store.report_failure(report(&format!("e{i}"), ["a", "b", "c"][i % 3], "orders", "Late", "again")).await.unwrap();
    }
    let summary = store.dlq_summary(chrono::Utc::now().timestamp()).unwrap();
    let counted = |sql: &str| -> BTreeMap<String, i64> {
        rows(&store, sql).into_iter().map(|r| (r[0].as_str().unwrap_or_default().to_string(), r[1].as_i64().unwrap())).collect()
    };
    let as_map = |v: &[(String, i64)]| v.iter().cloned().collect::<BTreeMap<_, _>>();
    assert_eq!(as_map(&summary.by_status), counted("SELECT status, count(*) FROM dlq_events GROUP BY 1"));
    assert_eq!(as_map(&summary.by_error_type), counted("SELECT error_type, count(*) FROM dlq_events WHERE status = 'pending' GROUP BY 1"));
    assert_eq!(as_map(&summary.by_source_topic), counted("SELECT source_topic, count(*) FROM dlq_events WHERE status = 'pending' GROUP BY 1"));
    assert_eq!(as_map(&summary.by_consumer), counted("SELECT consumer, count(*) FROM dlq_events WHERE status = 'pending' GROUP BY 1"));
    let pending = rows(&store, "SELECT count(*) FROM dlq_events WHERE status = 'pending'")[0][0].as_i64().unwrap();
    assert_eq!(summary.pending, pending);
    assert!(pending > 0 && pending < 60, "the mix leaves some pending: {pending}");
    assert_eq!(summary.inflow_last_hour - summary.outflow_last_hour, pending);
    let last = summary.trend.last().unwrap();
    assert_eq!((last.inflow, last.outflow), (summary.inflow_last_hour, summary.outflow_last_hour), "all of it this hour");
    assert_eq!(summary.trend.len(), 24);
}

#[tokio::test]
async fn the_summary_places_old_failures_in_their_hour() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T12:30:00Z").unwrap().timestamp();
    for (id, at) in [
        ("a", "2026-12-01T09:10:00.000000Z"),
        ("b", "2026-12-01T09:50:00.000000Z"),
        ("c", "2026-12-01T12:00:00.000000Z"),
        ("d", "2026-11-20T00:00:00.000000Z"),
    ] {
        let mut r = report(id, "n", "t", "E", "m");
        r.failed_at = Some(at.into());
        store.report_failure(r).await.unwrap();
    }
    let s = store.dlq_summary(now).unwrap();
    assert_eq!(s.pending, 4);
    assert_eq!(s.oldest_pending_failed_at.as_deref(), Some("2026-11-20T00:00:00.000000Z"));
    assert_eq!((s.inflow_last_hour, s.outflow_last_hour), (1, 0));
    let by_hour: Vec<i64> = s.trend.iter().map(|b| b.inflow).collect();
    assert_eq!(by_hour.iter().sum::<i64>(), 3, "the one from 11 days ago is outside the 24 hours");
    assert_eq!(by_hour[23 - 3], 2, "two at 09:xx, three hours before the current one");
    assert_eq!(by_hour[23], 1);
}

#[tokio::test]
async fn listing_filters_searches_text_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..30 {
        let message = if i % 10 == 3 { format!("KeyError: 'customerEmail' in record {i}") } else { format!("timeout after {i} s") };
        store
            .report_failure(report(&format!("e{i}"), ["a", "b"][i % 2], "orders", ["KeyError", "Timeout"][usize::from(i % 10 != 3)], &message))
            .await
            .unwrap();
    }
    let list = |f: DlqFilter| store.dlq_list(&DlqFilter { limit: 100, ..f }).unwrap().iter().map(|r| r.event_id.clone().unwrap()).collect::<Vec<_>>();
    assert_eq!(list(DlqFilter { text: Some("customerEm".into()), ..Default::default() }), ["e23", "e13", "e3"]);
    assert_eq!(list(DlqFilter { text: Some("Ke".into()), ..Default::default() }), ["e23", "e13", "e3"], "short text is matched too");
    assert_eq!(list(DlqFilter { text: Some("customerEmail".into()), consumer: Some("b".into()), ..Default::default() }), ["e23", "e13", "e3"]);
    assert_eq!(list(DlqFilter { text: Some("customerEmail".into()), consumer: Some("a".into()), ..Default::default() }), Vec::<String>::new());
    assert_eq!(list(DlqFilter { error_type: Some("KeyError".into()), ..Default::default() }).len(), 3);
    assert_eq!(list(DlqFilter { correlation_id: Some("c-e7".into()), ..Default::default() }), ["e7"]);
    let page1 = store.dlq_list(&DlqFilter { limit: 4, ..Default::default() }).unwrap();
    let page2 = store.dlq_list(&DlqFilter { limit: 4, before: Some(page1.last().unwrap().id), ..Default::default() }).unwrap();
    assert_eq!(page1.len() + page2.len(), 8);
    assert!(page1.last().unwrap().id > page2[0].id);
    let oldest = store.dlq_list(&DlqFilter { limit: 2, oldest_first: true, ..Default::default() }).unwrap();
    assert_eq!(oldest.iter().map(|r| r.event_id.clone().unwrap()).collect::<Vec<_>>(), ["e0", "e1"]);
    assert!(page1.iter().all(|r| r.original_event.is_none()), "listings leave the original out");

    for (filter, index) in [
        ("consumer = 'a'", "dlq_consumer"),
        ("source_topic = 'x'", "dlq_source_topic"),
        ("error_type = 'x'", "dlq_error_type"),
        ("status = 'pending'", "dlq_status_id"),
        ("correlation_id = 'x'", "dlq_correlation"),
    ] {
        let plan = rows(&store, &format!("EXPLAIN QUERY PLAN SELECT * FROM dlq_events WHERE {filter} ORDER BY id DESC LIMIT 50"));
        let text = format!("{plan:?}");
        assert!(text.contains(index), "{filter}: {text}");
        assert!(!text.contains("TEMP B-TREE"), "{filter} sorts: {text}");
    }
}

fn order_event(id: &str, ty: &str, order: &str, second: u32) -> NewEvent {
    let v = json!({"specversion": "1.0", "id": id, "source": "svc", "type": ty,
                   "time": format!("2026-12-01T10:00:{second:02}Z"), "correlationid": "c", "data": {"orderId": order}});
    let items = parse_body(Some("application/json"), &[], v.to_string().as_bytes(), &ParseOptions::default()).unwrap();
    NewEvent::new(items.into_iter().next().unwrap().result.unwrap())
}

#[test]
fn aggregate_events_are_found_through_correlations_or_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append_blocking(
            vec![
                order_event("3", "Shipped", "o-1", 3),
                order_event("1", "Created", "o-1", 1),
                order_event("2", "Created", "o-2", 2),
                order_event("4", "Other", "o-1", 4),
            ],
            vec![],
        )
        .unwrap();
    let types = vec!["Created".to_string(), "Shipped".to_string()];
    let ids = |rows: Vec<causeway_store::EventRow>| rows.into_iter().map(|r| r.event_id).collect::<Vec<_>>();
    // By the key's value in the payload (a scan of the types).
    let by_pointer = store.aggregate_events(&AggregateLookup::Pointer("/orderId".into()), &types, "o-1", 100).unwrap();
    assert_eq!(ids(by_pointer), ["1", "3"], "by event time, only the read model's types");
    // Through the instance's correlations: every event of them, of the types (the caller checks
    // each event's key).
    let by_correlation = store.aggregate_events(&AggregateLookup::Correlations(vec!["c".into()]), &types, "o-1", 100).unwrap();
    assert_eq!(ids(by_correlation), ["1", "2", "3"]);
    let none = store.aggregate_events(&AggregateLookup::Correlations(vec!["other".into()]), &types, "o-1", 100).unwrap();
    assert!(none.is_empty());
    let err = store.aggregate_events(&AggregateLookup::Pointer("/a\"b".into()), &types, "x", 1).unwrap_err();
    assert!(err.is_client_error(), "{err}");
}

/// A query without payload rights reads every dead letter's metadata but its payload, key and
/// headers as NULL, through the view and the table alike, and cannot get round it with an
/// expression or a subquery; the same connection then serves a query with the rights in full.
#[tokio::test]
async fn payloads_read_as_null_without_the_right_to_them() {
    use causeway_store::SqlScope;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.report_failure(report("e1", "notification-service", "shipments", "KeyError", "boom")).await.unwrap();
    let hidden = SqlScope { dlq_payloads: false };
    let scoped = |sql: &str, scope| store.sql_scoped(sql, SqlLimits::default(), scope).unwrap().rows;
    for query in [
        "SELECT original_event FROM dlq_events",
        "SELECT original_event FROM dlq",
        "SELECT upper(original_event) FROM dlq",
        "SELECT (SELECT original_event FROM dlq LIMIT 1)",
        "SELECT original_key FROM dlq",
        "SELECT original_headers FROM dlq",
        "SELECT json_extract(original_event, '$.spacing') FROM dlq_events",
    ] {
        assert_eq!(scoped(query, hidden), vec![vec![Value::Null]], "{query}");
    }
    // Metadata stays readable, and a filter on the payload finds nothing (it reads NULL).
    assert_eq!(scoped("SELECT error_type, consumer FROM dlq_events", hidden), vec![vec![json!("KeyError"), json!("notification-service")]]);
    assert!(scoped("SELECT id FROM dlq WHERE original_event LIKE '%kept%'", hidden).is_empty());
    // The same pooled connection, with the right: the payload in full.
    assert_eq!(scoped("SELECT original_event FROM dlq", SqlScope::ALL), vec![vec![json!(r#"{"id": "e1",  "spacing": "kept as sent"}"#)]]);
    assert_eq!(scoped("SELECT original_event FROM dlq", hidden), vec![vec![Value::Null]]);
}
