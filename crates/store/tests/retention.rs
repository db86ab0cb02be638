//! Retention: the oldest sealed segments go whole, the events still needed stay (those of pending
//! dead letters and of open journeys), the files leave the disk, and every view answers from what
//! is kept, across a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_envelope::{ParseOptions, parse_body};
use causeway_store::{DerivedWrite, DlqReport, EventOutcome, NewEvent, Retention, SqlLimits, Store, StoreSettings};
use serde_json::json;

const SEGMENT: u64 = 1_000;

fn event(n: usize) -> NewEvent {
    let v = json!({"specversion": "1.0", "id": format!("e-{n:05}"), "source": "svc", "type": format!("Step{}", n % 4),
                   "time": format!("2026-11-23T08:{:02}:{:02}Z", (n / 60) % 60, n % 60),
                   "correlationid": format!("c-{:04}", n / 4), "causationid": (!n.is_multiple_of(4)).then(|| format!("e-{:05}", n - 1)),
                   "subject": format!("order-{}", n / 4), "data": {"n": n}});
    let items = parse_body(Some("application/json"), &[], v.to_string().as_bytes(), &ParseOptions::default()).unwrap();
    NewEvent::new(items.into_iter().next().unwrap().result.unwrap())
}

fn open(dir: &std::path::Path) -> Store {
    // A disk bound nothing fits under: every sealed segment is due as soon as it is sealed.
    let retention = Retention { age: None, max_disk_bytes: Some(1) };
    // As a server with a model opens it: retention waits for the journey engine's answer.
    Store::open_with(dir, &StoreSettings { segment_events: SEGMENT, retention, journey_engine: true, ..StoreSettings::default() }).unwrap()
}

/// The first column of `query`'s rows, as text.
fn event_ids(store: &Store, query: &str) -> Vec<String> {
    store.sql(query, SqlLimits::default()).unwrap().rows.iter().map(|r| r[0].as_str().unwrap().to_string()).collect()
}

fn count(store: &Store, query: &str) -> i64 {
    store.sql(query, SqlLimits::default()).unwrap().rows[0][0].as_i64().unwrap()
}

/// Waits until retention has removed every segment but the one holding the kept events, with
/// `sealed_upto` at least `upto`.
fn wait_retired(store: &Store, upto: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = store.stats().unwrap();
        if stats.sealed_upto >= upto && stats.segments.len() == 1 && stats.segments[0].file.contains(".kept-") {
            return;
        }
        assert!(Instant::now() < deadline, "retention did not catch up: {stats:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 3,600 events, of which this stores the first 100, each in the `order` journey of its
/// `subject`, with order-10's journey open (kept by retention).
async fn first_hundred_with_order_10_open(store: &Store) -> Vec<NewEvent> {
    store.set_open_journeys(Arc::new(|_| Some(HashSet::from([("order".to_string(), "order-10".to_string())]))));
    let events: Vec<NewEvent> = (0..3_600).map(event).collect();
    store.append(events[..100].to_vec(), vec![]).await.unwrap();
    let memberships = (0..100).map(|n| ((n + 1) as i64, "order".to_string(), format!("order-{}", n / 4))).collect();
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.write_derived_blocking(DerivedWrite { memberships, ..DerivedWrite::default() })).await.unwrap().unwrap();
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_removes_whole_segments_and_keeps_what_is_still_needed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // The journey of order-10 is open, that of order-20 is done.
    let events = first_hundred_with_order_10_open(&store).await;
    // A consumer failed on e-00050 (pending) and on e-00060 (then resolved).
    let mut reported = Vec::new();
    for id in ["e-00050", "e-00060"] {
        let report = DlqReport {
            original: format!("{{\"id\":\"{id}\"}}"),
            consumer: "billing".into(),
            error_type: "Timeout".into(),
            error_message: "slow".into(),
            event_id: Some(id.into()),
            ..DlqReport::default()
        };
        reported.push(store.report_failure(report).await.unwrap().id);
    }
    let change = causeway_store::StatusChange {
        id: reported[1],
        to: causeway_store::DlqStatus::Resolved,
        reason: Some("fixed".into()),
        from: vec![causeway_store::DlqStatus::Pending],
    };
    assert!(store.change_dlq_status(change).await.unwrap());
    for chunk in events[100..].chunks(500) {
        store.append(chunk.to_vec(), vec![]).await.unwrap();
    }
    // 3,600 events: 3,000 sealed, each segment retired as soon as it is sealed.
    let s = store.clone();
    tokio::task::spawn_blocking(move || wait_retired(&s, 3_000)).await.unwrap();

    // Kept: order-10's four events (40..=43) and the pending dead letter's event.
    assert_eq!(
        event_ids(&store, "SELECT event_id FROM events WHERE seq <= 3000 ORDER BY seq"),
        ["e-00040", "e-00041", "e-00042", "e-00043", "e-00050"]
    );
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 600 + 5);
    // A kept event keeps its journey membership (e-00050 is in the closed order-12).
    assert_eq!(count(&store, "SELECT count(*) FROM event_lineage WHERE journey = 'order'"), 5);
    assert!(store.event("e-00060").unwrap().is_none(), "a resolved dead letter's event goes");
    assert_eq!(store.event("e-00050").unwrap().unwrap().seq, 51);
    assert_eq!(store.correlation("c-0010", 100).unwrap().len(), 4);
    assert_eq!(store.root("e-00043").unwrap().unwrap().1, 3);
    // The dead letters themselves stay, and the pending one still finds its event.
    assert_eq!(count(&store, "SELECT count(*) FROM dlq"), 2);
    assert_eq!(count(&store, "SELECT count(*) FROM dlq_events d JOIN events e ON e.event_id = d.event_id"), 1);

    // The removed files left the disk.
    let stats = store.stats().unwrap();
    let files: HashSet<String> = std::fs::read_dir(dir.path().join(causeway_store::SEGMENTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, HashSet::from([stats.segments[0].file.clone()]));
    assert_eq!(stats.segment_bytes as i64, stats.segments[0].file_bytes);
    let next = stats.next_removal.as_ref().expect("retention is on");
    assert_eq!((next.reason, next.events), ("max_disk", 5));

    // Outside the window, an event is new again: a redelivery of a removed event is stored.
    let again = store.append(vec![events[7].clone(), events[50].clone()], vec![]).await.unwrap();
    assert_eq!(again.events, vec![EventOutcome::Accepted, EventOutcome::Duplicate]);

    // A restart opens the kept segment and answers the same.
    drop(store);
    let store = open(dir.path());
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 600 + 5 + 1);
    assert_eq!(store.event("e-00042").unwrap().unwrap().seq, 43);

    // order-10 finishes; the next removal takes the kept segment with the newly sealed ones, and
    // keeps only the pending dead letter's event. One registered segment, one file.
    let s = store.clone();
    store.set_open_journeys(Arc::new(|_| Some(HashSet::new())));
    store.append((3_600..4_800).map(event).collect(), vec![]).await.unwrap();
    tokio::task::spawn_blocking(move || wait_retired(&s, 4_000)).await.unwrap();
    assert_eq!(event_ids(&store, "SELECT event_id FROM events WHERE seq <= 4000"), ["e-00050"]);
    let stats = store.stats().unwrap();
    assert_eq!((stats.segments.len(), stats.segments[0].first_seq, stats.segments[0].events), (1, 1, 1), "{stats:?}");
    let files = std::fs::read_dir(dir.path().join(causeway_store::SEGMENTS_DIR)).unwrap().count();
    assert_eq!(files, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_retention_kept_is_found_beside_groups_of_removed_segments() {
    // 20 events a segment, grouped by 16 before retention starts: the kept events' new segment
    // lies within the seq range of a group whose members are gone, and must still be asked.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), &StoreSettings { segment_events: 20, journey_engine: true, ..StoreSettings::default() }).unwrap();
    let events = first_hundred_with_order_10_open(&store).await;
    for chunk in events[100..].chunks(500) {
        store.append(chunk.to_vec(), vec![]).await.unwrap();
    }
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while s.segment_groups() < 10 {
            assert!(Instant::now() < deadline, "{} segment groups built in 60 s", s.segment_groups());
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert_eq!(store.event("e-00044").unwrap().unwrap().seq, 45, "a grouped segment's event is found");

    store.set_retention(Retention { age: None, max_disk_bytes: Some(1) });
    let s = store.clone();
    tokio::task::spawn_blocking(move || wait_retired(&s, 3_560)).await.unwrap();
    assert_eq!(event_ids(&store, "SELECT event_id FROM events WHERE seq <= 3560 ORDER BY seq"), ["e-00040", "e-00041", "e-00042", "e-00043"]);
    assert_eq!(store.event("e-00043").unwrap().unwrap().seq, 44);
    assert!(store.event("e-00044").unwrap().is_none(), "a removed segment's event is gone");
    assert_eq!(store.root("e-00043").unwrap().unwrap().1, 3);
    assert_eq!(store.descendants("e-00040", 10).unwrap().unwrap().len(), 3);
    assert_eq!(store.correlation("c-0010", 100).unwrap().len(), 4);
    assert_eq!(event_ids(&store, "SELECT event_id FROM event_lineage WHERE causation_id = 'e-00041'"), ["e-00042"]);
    assert_eq!(
        event_ids(&store, "SELECT event_id FROM event_lineage WHERE aggregate_id = 'order-10' ORDER BY 1"),
        ["e-00040", "e-00041", "e-00042", "e-00043"]
    );
}

#[test]
fn retention_removes_nothing_until_the_journey_engine_answers() {
    // A server with a model opens its store before its journey engine starts: retention must not
    // remove the events of journeys still open in between.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let events: Vec<NewEvent> = (0..3_600).map(event).collect();
    store.append_blocking(events.clone(), vec![]).unwrap();
    // The sealer runs a retention pass after each seal, on its one thread: once the third segment
    // is sealed, the first two have been offered to retention.
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.stats().unwrap().sealed_upto < 3_000 {
        assert!(Instant::now() < deadline, "not sealed in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 3_600, "retention removed events before the journey engine answered");
    // Once it answers (no journey open), the due segments go.
    store.set_open_journeys(Arc::new(|_| Some(HashSet::new())));
    store.append_blocking((3_600..4_600).map(event).collect(), vec![]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&store, "SELECT count(*) FROM events WHERE seq <= 3000") > 0 {
        assert!(Instant::now() < deadline, "retention removed nothing in 60 s after the journey engine answered: {:?}", store.stats().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}
