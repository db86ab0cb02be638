//! Sealed history: a store that seals its log into segment files answers every lookup and every SQL
//! view exactly as a store that keeps it all in `events_hot` does, across restarts, redeliveries
//! and interrupted seals.

use std::time::{Duration, Instant};

use causeway_envelope::{ParseOptions, parse_body};
use causeway_store::{EventOutcome, EventRow, NewEvent, Origin, SqlLimits, Store, StoreSettings};
use serde_json::json;

const CORRELATIONS: usize = 700;
const PER_CORRELATION: usize = 8;
const SEGMENT: u64 = 1_000;

/// The `k`th event of correlation `n`: a chain, each caused by the one before, some delivered by
/// a broker.
fn event(n: usize, k: usize) -> NewEvent {
    let id = format!("e-{n:05}-{k}");
    let cause = (k > 0).then(|| format!("e-{n:05}-{}", k - 1));
    let second = n * PER_CORRELATION + k;
    let v = json!({"specversion": "1.0", "id": id, "source": format!("svc-{}", k % 3), "type": format!("Step{k}"),
                   "time": format!("2026-11-23T{:02}:{:02}:{:02}.{:06}Z", 8 + second / 3600, (second / 60) % 60, second % 60, n),
                   "correlationid": format!("c-{n:05}"), "causationid": cause, "subject": format!("order-{}", n % 97),
                   "data": {"n": n, "k": k, "amount": (n * 37 + k * 11) % 1000, "sku": format!("SKU-{}", (n * 7) % 113)}});
    let items = parse_body(Some("application/json"), &[], v.to_string().as_bytes(), &ParseOptions::default()).unwrap();
    let mut new = NewEvent::new(items.into_iter().next().unwrap().result.unwrap());
    if n.is_multiple_of(5) {
        new.origin = Origin { topic: Some("orders".into()), partition: Some((n % 3) as i32), offset: Some((n * 10 + k) as i64), message_time: None };
    }
    new
}

/// Every event, in ingest order: correlations interleaved a little, as producers send them.
fn all_events() -> Vec<NewEvent> {
    let mut out = Vec::new();
    for block in (0..CORRELATIONS).step_by(10) {
        for k in 0..PER_CORRELATION {
            for n in block..(block + 10).min(CORRELATIONS) {
                out.push(event(n, k));
            }
        }
    }
    out
}

fn open(dir: &std::path::Path, segment_events: u64) -> Store {
    Store::open_with(dir, &StoreSettings { segment_events, ..StoreSettings::default() }).unwrap()
}

/// Waits until the sealer has sealed up to at least `seq`.
fn wait_sealed(store: &Store, seq: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = store.stats().unwrap();
        if stats.sealed_upto >= seq {
            return;
        }
        assert!(Instant::now() < deadline, "sealed only up to {} of {seq} in 60 s", stats.sealed_upto);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A row without its receive time, which differs between two stores.
type RowKey = (i64, String, String, Option<String>, Option<String>, Option<String>, String, i64, String, Origin);

fn key(r: &EventRow) -> RowKey {
    (
        r.seq,
        r.event_id.clone(),
        r.source.clone(),
        r.correlation_id.clone(),
        r.causation_id.clone(),
        r.subject.clone(),
        r.time.clone(),
        r.redeliveries,
        r.envelope.clone(),
        r.origin.clone(),
    )
}

fn keys(rows: &[EventRow]) -> Vec<RowKey> {
    rows.iter().map(key).collect()
}

fn sql(store: &Store, query: &str) -> Vec<Vec<serde_json::Value>> {
    let r = store.sql(query, SqlLimits { max_rows: 1_000_000, ..SqlLimits::default() }).unwrap_or_else(|e| panic!("{query}: {e}"));
    assert!(!r.truncated, "{query}: truncated");
    r.rows
}

/// The queries engineers write against the views (PRODUCT §7), and some against `events`.
const QUERIES: &[&str] = &[
    "SELECT * FROM event_lineage ORDER BY event_id",
    "SELECT count(*) FROM events",
    "SELECT event_type, count(*) FROM event_lineage GROUP BY event_type ORDER BY 1",
    "SELECT * FROM event_lineage WHERE correlation_id = 'c-00042' ORDER BY timestamp",
    "SELECT * FROM event_lineage WHERE correlation_id IN ('c-00001', 'c-00500', 'c-00699') ORDER BY event_id",
    "SELECT event_id FROM event_lineage WHERE causation_id = 'e-00017-3'",
    "SELECT event_id, timestamp FROM event_lineage WHERE aggregate_id = 'order-5' ORDER BY timestamp, event_id",
    "SELECT event_id FROM event_lineage WHERE event_id = 'e-00003-7'",
    "SELECT count(*) FROM event_lineage WHERE timestamp BETWEEN '2026-11-23T08:10:00Z' AND '2026-11-23T08:20:00Z'",
    "SELECT topic, partition, count(*), min(\"offset\"), max(\"offset\") FROM event_lineage GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT json_extract(envelope, '$.data.sku') AS sku, count(*) FROM events GROUP BY sku ORDER BY 2 DESC, 1 LIMIT 5",
    "SELECT seq, event_id, redeliveries FROM events WHERE seq BETWEEN 1500 AND 1510 ORDER BY seq",
    "SELECT max(seq), min(seq) FROM events",
    "SELECT event_id FROM event_lineage WHERE event_type = 'Step3' ORDER BY event_id",
    "SELECT event_id, journey FROM event_lineage WHERE event_type IN ('Step1', 'Step6') AND correlation_id = 'c-00042' ORDER BY 1",
    "SELECT count(*) FROM events WHERE event_type = 'NoSuchType' OR event_id = 'e-00009-9'",
    // IN lists reach the table whole (one pass in seq order), with NULLs, repeats, unknown types,
    // an `=` beside them, a subquery's values and a time range.
    "SELECT seq, event_id FROM events WHERE event_type IN ('Step1', 'Step6', NULL, 'Step1') ORDER BY seq",
    "SELECT event_type, count(*), min(timestamp), max(timestamp) FROM event_lineage WHERE event_type IN ('Step2', 'Step5', 'NoSuchType') GROUP BY 1 ORDER BY 1",
    "SELECT count(*) FROM event_lineage WHERE event_type IN ('Step2', 'Step5') AND event_type = 'Step5'",
    "SELECT count(*) FROM event_lineage WHERE event_type IN ('Step2', 'Step5') AND event_type = 'Step4'",
    "SELECT event_id FROM event_lineage WHERE event_type IN (SELECT 'Step' || value FROM json_each('[1, 4]')) AND timestamp >= '2026-11-23T08:10:00Z' ORDER BY event_id",
    "SELECT journey_key, max(timestamp) FROM event_lineage WHERE event_type IN ('Step0', 'Step7') GROUP BY journey_key ORDER BY 1",
    "SELECT e.event_id FROM event_lineage e JOIN event_lineage p ON p.event_id = e.causation_id WHERE p.correlation_id = 'c-00100' ORDER BY 1",
];

fn assert_same_answers(sealed: &Store, plain: &Store) {
    for q in QUERIES {
        assert_eq!(sql(sealed, q), sql(plain, q), "{q}");
    }
    for n in [0, 1, 42, 350, 699] {
        let c = format!("c-{n:05}");
        assert_eq!(keys(&sealed.correlation(&c, 100).unwrap()), keys(&plain.correlation(&c, 100).unwrap()), "correlation {c}");
        let first = format!("e-{n:05}-0");
        let last = format!("e-{n:05}-7");
        assert_eq!(
            keys(&sealed.descendants(&first, 100).unwrap().unwrap()),
            keys(&plain.descendants(&first, 100).unwrap().unwrap()),
            "descendants of {first}"
        );
        let (root, hops) = sealed.root(&last).unwrap().unwrap();
        assert_eq!((root.event_id.as_str(), hops), (first.as_str(), 7));
        assert_eq!(key(&sealed.event(&last).unwrap().unwrap()), key(&plain.event(&last).unwrap().unwrap()));
    }
    assert_eq!(sealed.log_after(0, 100_000).unwrap().len(), plain.log_after(0, 100_000).unwrap().len());
    let entries =
        |s: &Store, after| s.log_after(after, 300).unwrap().into_iter().map(|e| (e.seq, e.redelivery, e.envelope, e.channel)).collect::<Vec<_>>();
    for after in [0, 999, 1_000, 2_345, 5_000] {
        assert_eq!(entries(sealed, after), entries(plain, after), "log after {after}");
    }
}

#[test]
fn a_sealed_store_answers_as_an_unsealed_one() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sealed, plain) = (open(a.path(), SEGMENT), open(b.path(), 0));
    let events = all_events();
    for chunk in events.chunks(250) {
        sealed.append_blocking(chunk.to_vec(), vec![]).unwrap();
        plain.append_blocking(chunk.to_vec(), vec![]).unwrap();
    }
    let total = events.len() as i64;
    // Everything but the newest 1.5 segments is sealed, a whole segment at a time.
    let expected_upto = (total - SEGMENT as i64 / 2) / SEGMENT as i64 * SEGMENT as i64;
    wait_sealed(&sealed, expected_upto);
    let stats = sealed.stats().unwrap();
    assert!(stats.segments.len() >= 3, "{stats:?}");
    assert!(stats.segments.iter().all(|s| s.events == SEGMENT as i64 && s.file_bytes > 0 && s.raw_bytes > s.file_bytes), "{stats:?}");
    assert_eq!(stats.events, total);
    assert_eq!(stats.hot_events + stats.sealed_events, total);
    assert!(stats.hot_events >= SEGMENT as i64 / 2, "the newest events stay unsealed: {stats:?}");

    // The lookups go to the segments' indexes, not through every sealed row.
    let plan = sql(&sealed, "EXPLAIN QUERY PLAN SELECT * FROM event_lineage WHERE correlation_id = 'c-00042'");
    let plan = serde_json::to_string(&plan).unwrap();
    assert!(plan.contains("correlation_id@"), "{plan}");
    // An IN list of event types is one scan, not one per value.
    let plan = sql(&sealed, "EXPLAIN QUERY PLAN SELECT count(*) FROM event_lineage WHERE event_type IN ('Step1', 'Step6')");
    let plan = serde_json::to_string(&plan).unwrap();
    assert!(plan.contains("event_type_in@"), "{plan}");

    assert_same_answers(&sealed, &plain);

    // Redeliveries of sealed events are duplicates, counted, and in the log.
    let again = vec![event(3, 2), event(3, 2), event(600, 1)];
    for store in [&sealed, &plain] {
        let r = store.append_blocking(again.clone(), vec![]).unwrap();
        assert_eq!(r.events, vec![EventOutcome::Duplicate; 3]);
        assert_eq!(store.event("e-00003-2").unwrap().unwrap().redeliveries, 2);
        assert_eq!(store.counts().unwrap().events, total);
    }
    assert_same_answers(&sealed, &plain);

    // A restart opens the segments and goes on from the same log position.
    drop(sealed);
    let sealed = open(a.path(), SEGMENT);
    assert_same_answers(&sealed, &plain);
    let more: Vec<NewEvent> = (CORRELATIONS..CORRELATIONS + 200).flat_map(|n| (0..PER_CORRELATION).map(move |k| event(n, k))).collect();
    for store in [&sealed, &plain] {
        let r = store.append_blocking(more.clone(), vec![]).unwrap();
        assert!(r.events.iter().all(|o| *o == EventOutcome::Accepted));
    }
    wait_sealed(&sealed, expected_upto + SEGMENT as i64);
    assert_same_answers(&sealed, &plain);
}

/// Time ranges over events that arrived out of order, as a keyed topic's backlog does (partition by
/// partition, each spanning the whole time range): every bound finds exactly the events whose time
/// text SQLite's comparison accepts, narrow ranges (read by the unsealed times in memory) and wide
/// ones (read in order), sealed and unsealed, and again once a restart reloaded the times.
#[test]
fn time_ranges_find_events_that_arrived_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SEGMENT);
    let mut events = all_events();
    events.sort_by_key(|e| (e.event().correlation_id.clone().unwrap().bytes().last(), e.event().time));
    for chunk in events.chunks(250) {
        store.append_blocking(chunk.to_vec(), vec![]).unwrap();
    }
    let total = events.len() as i64;
    wait_sealed(&store, (total - SEGMENT as i64 / 2) / SEGMENT as i64 * SEGMENT as i64);
    let timed: Vec<(String, String, String)> =
        events.iter().map(|e| (e.event().id.clone(), causeway_envelope::format_time(&e.event().time), e.event().event_type.clone())).collect();
    let ranges = [
        ("2026-11-23T08:10:00Z", "2026-11-23T08:11:00Z"),
        ("2026-11-23T09:30:00.000350Z", "2026-11-23T09:30:05"),
        ("2026-11-23T09:33", "9"),
        ("2026-11-23T09:33:19.000699Z", "2026-11-23T09:33:19.000699Z"),
        ("2026-11-23T08", "2026-11-23T09"),
        ("", "2026-11-23T08:00:30"),
        ("2026", "2027"),
        ("2027", "2028"),
    ];
    let check = |store: &Store| {
        for (min, max) in ranges {
            let want = |strict: bool, event_type: Option<&str>| -> Vec<Vec<serde_json::Value>> {
                let mut ids: Vec<&String> = timed
                    .iter()
                    .filter(|(_, t, ty)| {
                        (if strict { t.as_str() > min } else { t.as_str() >= min }) && t.as_str() <= max && event_type.is_none_or(|x| x == ty)
                    })
                    .map(|(id, _, _)| id)
                    .collect();
                ids.sort();
                ids.into_iter().map(|id| vec![json!(id)]).collect()
            };
            let between = format!("SELECT event_id FROM events WHERE time >= '{min}' AND time <= '{max}' ORDER BY event_id");
            assert_eq!(sql(store, &between), want(false, None), "{between}");
            let strict = format!("SELECT event_id FROM event_lineage WHERE timestamp > '{min}' AND timestamp <= '{max}' ORDER BY event_id");
            assert_eq!(sql(store, &strict), want(true, None), "{strict}");
            let typed = format!("SELECT event_id FROM events WHERE event_type = 'Step3' AND time >= '{min}' AND time <= '{max}' ORDER BY event_id");
            assert_eq!(sql(store, &typed), want(false, Some("Step3")), "{typed}");
        }
    };
    check(&store);
    drop(store);
    check(&open(dir.path(), SEGMENT));
}

#[test]
fn a_segment_file_no_commit_registered_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SEGMENT);
    store.append_blocking(all_events()[..3_000].to_vec(), vec![]).unwrap();
    wait_sealed(&store, 2_000);
    let before = store.stats().unwrap();
    drop(store);
    // What a crash between writing a segment and its commit leaves.
    let orphan = dir.path().join(causeway_store::SEGMENTS_DIR).join("000000002001-000000003000.cwseg");
    std::fs::write(&orphan, b"half a segment").unwrap();
    let store = open(dir.path(), SEGMENT);
    assert!(!orphan.exists(), "the unregistered file is gone");
    let after = store.stats().unwrap();
    assert_eq!(after.segments, before.segments);
    assert_eq!(sql(&store, "SELECT count(*) FROM events"), vec![vec![json!(3_000)]]);
}

/// A store written before sealing existed (layout version 7, every event in `events`) opens,
/// migrates, seals its history in the background, and answers the same queries with the same
/// results as before.
#[test]
fn a_version_7_store_migrates_and_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let db = causeway_store::create_at_version(&dir.path().join(causeway_store::DB_FILE), 7).unwrap();
    let events = all_events();
    db.execute_batch("BEGIN").unwrap();
    {
        let mut insert = db
            .prepare(
                r#"INSERT INTO events (seq, event_id, source, event_type, correlation_id, causation_id, subject, time, topic, received_at,
                                      redeliveries, envelope, partition, "offset", message_time)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, '2026-11-23T12:00:00.000000Z', ?10, ?11, ?12, ?13, NULL)"#,
            )
            .unwrap();
        for (i, new) in events.iter().enumerate() {
            let e = new.event();
            insert
                .execute(rusqlite::params![
                    i as i64 + 1,
                    e.id,
                    e.source,
                    e.event_type,
                    e.correlation_id,
                    e.causation_id,
                    e.subject,
                    e.time_string(),
                    new.origin.topic,
                    (i % 50 == 7) as i64,
                    e.to_json(),
                    new.origin.partition,
                    new.origin.offset
                ])
                .unwrap();
        }
    }
    db.execute_batch("COMMIT").unwrap();
    let before: Vec<_> = QUERIES
        .iter()
        .map(|q| {
            let mut stmt = db.prepare(q).unwrap();
            let n = stmt.column_count();
            stmt.query_map([], |r| (0..n).map(|i| r.get::<_, rusqlite::types::Value>(i)).collect::<Result<Vec<_>, _>>())
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        })
        .collect();
    drop(db);

    let store = open(dir.path(), SEGMENT);
    let total = events.len() as i64;
    wait_sealed(&store, (total - SEGMENT as i64 / 2) / SEGMENT as i64 * SEGMENT as i64);
    assert_eq!(store.stats().unwrap().events, total);
    for (q, before) in QUERIES.iter().zip(before) {
        let before: Vec<Vec<serde_json::Value>> = before
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| match v {
                        rusqlite::types::Value::Null => serde_json::Value::Null,
                        rusqlite::types::Value::Integer(i) => json!(i),
                        rusqlite::types::Value::Real(f) => json!(f),
                        rusqlite::types::Value::Text(t) => json!(t),
                        rusqlite::types::Value::Blob(b) => json!(b),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(sql(&store, q), before, "{q}");
    }
    assert_eq!(store.event("e-00007-0").unwrap().unwrap().redeliveries, 1, "redeliveries counted before the migration are kept");
}

/// The unsealed history's lookup keys are in memory and forgotten once a seal commits. A read that
/// began before that seal still reads those rows from `events_hot`, and still finds them by key:
/// through their new segment, not a scan.
#[test]
fn a_read_that_began_before_a_seal_finds_its_rows_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SEGMENT);
    let events = all_events();
    store.append_blocking(events[..1_000].to_vec(), vec![]).unwrap();
    let by_key = [("correlation_id", "c-00042"), ("event_id", "e-00003-2"), ("causation_id", "e-00017-3"), ("subject", "order-5")];
    let query = |conn: &rusqlite::Connection, column: &str, value: &str| -> Vec<i64> {
        let mut s = conn.prepare(&format!("SELECT seq FROM events WHERE {column} = ?1 ORDER BY seq")).unwrap();
        s.query_map([value], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let before: Vec<Vec<i64>> = store.with_reader(|conn| Ok(by_key.iter().map(|(c, v)| query(conn, c, v)).collect())).unwrap();
    assert!(before.iter().all(|seqs| !seqs.is_empty()), "{before:?}");
    store
        .with_reader(|conn| {
            // A statement left on a row keeps the connection's read transaction, and its
            // snapshot, open for the statements after it.
            let mut holding = conn.prepare("SELECT seq FROM events_hot ORDER BY seq").unwrap();
            let mut rows = holding.query([]).unwrap();
            assert_eq!(rows.next().unwrap().unwrap().get::<_, i64>(0).unwrap(), 1);
            // Meanwhile the first 1,000 are sealed and leave events_hot.
            store.append_blocking(events[1_000..1_600].to_vec(), vec![]).unwrap();
            wait_sealed(&store, 1_000);
            assert_eq!(store.stats().unwrap().hot_events, 600);
            // This snapshot still has them all in events_hot, and finds them by every key.
            assert_eq!(conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0)).unwrap(), 1_000);
            let during: Vec<Vec<i64>> = by_key.iter().map(|(c, v)| query(conn, c, v)).collect();
            assert_eq!(during, before);
            drop(rows);
            Ok(())
        })
        .unwrap();
    // A new read finds them in the segment, and the newer events by their keys in memory.
    let after: Vec<Vec<i64>> = store.with_reader(|conn| Ok(by_key.iter().map(|(c, v)| query(conn, c, v)).collect())).unwrap();
    assert_eq!(after.iter().map(|s| s.iter().filter(|q| **q <= 1_000).count()).collect::<Vec<_>>(), before.iter().map(Vec::len).collect::<Vec<_>>());
    let newer = store.correlation("c-00150", 100).unwrap();
    assert_eq!(newer.len(), PER_CORRELATION, "an unsealed correlation is found whole");
}

/// A store of the first 4,000 events in segments of 20, every full segment sealed (199 of them).
fn four_thousand_in_segments_of_20() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 20);
    store.append_blocking(all_events()[..4_000].to_vec(), vec![]).unwrap();
    wait_sealed(&store, 3_980);
    (dir, store)
}

#[test]
fn a_lookup_does_not_walk_every_segment_row_of_the_database() {
    // Many small segments: a lookup's cost must not grow with their number in SQL steps (the
    // statement that reads a snapshot's sealed range once read every `segments` row).
    let (_dir, store) = four_thousand_in_segments_of_20();
    assert!(store.stats().unwrap().segments.len() >= 199);
    let before = store.nested_steps();
    let row = store.event("e-00003-2").unwrap().expect("stored");
    let steps = store.nested_steps() - before;
    assert_eq!(row.event_id, "e-00003-2");
    assert!(steps < 100, "a lookup by id over 199 segments took {steps} SQL steps");
}

#[test]
fn a_root_walk_decompresses_only_the_root_s_envelope() {
    // Small segments: each hop of a chain lies in another segment, so a walk that read whole
    // rows would decompress an envelope frame per hop.
    let (_dir, store) = four_thousand_in_segments_of_20();
    let last = format!("e-00003-{}", PER_CORRELATION - 1);
    let before = store.envelope_frames_decoded();
    let (root, hops) = store.root(&last).unwrap().expect("stored");
    assert_eq!((root.event_id.as_str(), hops), ("e-00003-0", PER_CORRELATION - 1));
    assert!(root.envelope.contains("\"e-00003-0\""), "the root comes with its envelope: {}", root.envelope);
    let decoded = store.envelope_frames_decoded() - before;
    assert_eq!(decoded, 1, "a walk of {hops} hops decompressed {decoded} envelope frames");
}

/// Waits until the store has combined its segments into at least `groups` groups.
fn wait_groups(store: &Store, groups: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.segment_groups() < groups {
        assert!(Instant::now() < deadline, "{} of {groups} segment groups built in 60 s", store.segment_groups());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn groups_of_segments_answer_as_their_segments_do() {
    // 20 events a segment: lookups ask groups of 16 segments' combined filters first.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sealed, plain) = (open(a.path(), 20), open(b.path(), 0));
    let events = all_events();
    for chunk in events.chunks(250) {
        sealed.append_blocking(chunk.to_vec(), vec![]).unwrap();
        plain.append_blocking(chunk.to_vec(), vec![]).unwrap();
    }
    let total = events.len() as i64;
    wait_sealed(&sealed, (total - 10) / 20 * 20);
    let groups = sealed.stats().unwrap().segments.len() / 16;
    assert!(groups >= 17, "{groups} groups");
    wait_groups(&sealed, groups);
    assert_same_answers(&sealed, &plain);
    for n in (0..CORRELATIONS).step_by(7) {
        for k in 0..PER_CORRELATION {
            let id = format!("e-{n:05}-{k}");
            assert_eq!(sealed.event(&id).unwrap().map(|r| r.seq), plain.event(&id).unwrap().map(|r| r.seq), "{id}");
        }
        let first = format!("e-{n:05}-0");
        assert_eq!(sealed.descendants(&first, 100).unwrap().unwrap().len(), PER_CORRELATION - 1, "descendants of {first}");
        assert_eq!(sealed.correlation(&format!("c-{n:05}"), 100).unwrap().len(), PER_CORRELATION);
    }
    // Reopened, the store groups its segments again.
    drop(sealed);
    let sealed = open(a.path(), 20);
    wait_groups(&sealed, groups);
    assert_same_answers(&sealed, &plain);
}
