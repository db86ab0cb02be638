//! User SQL (`POST /v1/sql`, `causeway sql`) through the store's read-only path, on a small store
//! created once: events, a redelivery, a finding and a dead letter (so the DLQ's tallies and
//! full-text index hold rows too).
//!
//! Input: the query text (not UTF-8 is read lossily).
//!
//! Asserted beyond "no panic": nothing the query does changes the store — no other connection
//! commits (`PRAGMA data_version` of a connection of our own stays put), the content of every table
//! and the schema hash the same as before, no file appears or disappears in the data directory, and
//! the reader it ran on holds no temporary objects afterwards and still answers; a refusal is a
//! client error (a 4xx, never a server fault); an answer is no longer than the row cap and every row
//! as wide as the columns.

#![no_main]

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use causeway_envelope::{ParseOptions, parse_body};
use causeway_store::{DlqReport, INGEST_CONSUMER, NewEvent, NewFinding, NewRejection, SqlLimits, Store};
use libfuzzer_sys::fuzz_target;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::json;

/// Events as producers send them (docs/envelope.md): NDJSON, structured and metadata/payload.
const EVENTS: &str = r#"{"specversion":"1.0","id":"e1","source":"order-service","type":"OrderCreated","time":"2026-11-23T10:00:00Z","correlationid":"c1","subject":"ord-1","data":{"orderId":"ord-1","amount":12.5,"currency":"EUR","customerEmail":"a@example.com"}}
{"specversion":"1.0","id":"e2","source":"payment-service","type":"PaymentProcessed","time":"2026-11-23T10:00:01.5+01:00","correlationid":"c1","causationid":"e1","subject":"pay-1","sequence":2,"schemaversion":2,"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","data":{"orderId":"ord-1","amount":12.5,"currency":"EUR"}}
{"metadata":{"eventId":"e3","eventType":"InventoryReserved","source":"inventory-service","timestamp":"2026-11-23T10:00:02Z","correlationId":"c1","causationId":"e2","tenant-id":"acme"},"payload":{"orderId":"ord-1","items":2},"entityId":"res-1"}
{"specversion":"1.0","id":"e4","source":"order-service","type":"OrderCreated","time":"2026-11-23T11:00:00Z","correlationid":"c2","data":{"orderId":"ord-2"}}
{"specversion":"1.0","id":"e1","source":"order-service","type":"OrderCreated","time":"2026-11-23T10:00:00Z","correlationid":"c1","subject":"ord-1","data":{"orderId":"ord-1","amount":12.5,"currency":"EUR","customerEmail":"a@example.com"}}
"#;

struct Fixture {
    store: Store,
    /// Our own read-only connection to the same file, for the fingerprint.
    watcher: Mutex<Connection>,
    data_version: i64,
    fingerprint: u64,
    files: Vec<String>,
    events: i64,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("causeway-fuzz-sql").tempdir().expect("a temporary directory");
        let store = Store::open(dir.path()).expect("open the store");
        let items = parse_body(Some("application/x-ndjson"), &[], EVENTS.as_bytes(), &ParseOptions::default()).expect("events");
        let mut events: Vec<NewEvent> = items.into_iter().map(|i| NewEvent::new(i.result.expect("a valid event"))).collect();
        events[1].findings.push(NewFinding {
            kind: "schema_violation".into(),
            detail: "amount must be a number".into(),
            owner: Some("team-payments".into()),
            ..Default::default()
        });
        let rejection = NewRejection {
            record: DlqReport {
                original: "{\"specversion\":\"1.0\",\"id\":\"bad\"".into(),
                content_type: Some("application/cloudevents+json".into()),
                consumer: INGEST_CONSUMER.into(),
                error_type: "malformed_json".into(),
                error_message: "the body is not valid JSON: EOF while parsing an object".into(),
                event_id: Some("bad".into()),
                correlation_id: Some("c1".into()),
                ..Default::default()
            },
            findings: Vec::new(),
        };
        store.append_blocking(events, vec![rejection]).expect("append");
        let watcher = Connection::open_with_flags(store.path(), OpenFlags::SQLITE_OPEN_READ_ONLY).expect("watcher connection");
        let events = count_events(&store);
        assert_eq!(events, 4, "four events stored, one redelivery");
        Fixture {
            data_version: data_version(&watcher),
            fingerprint: fingerprint(&watcher),
            files: files(dir.path()),
            watcher: Mutex::new(watcher),
            store,
            events,
            _dir: dir,
        }
    })
}

fn limits() -> SqlLimits {
    // A short time limit keeps runaway queries from slowing the fuzzer; the cap on rows stays.
    SqlLimits { timeout: Duration::from_millis(250), ..SqlLimits::default() }
}

fn count_events(store: &Store) -> i64 {
    // The default time limit: the probe checks that the reader answers, not how fast on a loaded
    // machine (with the fuzzer's 250 ms it once timed out while builds ran beside it).
    let answer = store
        .sql("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM temp.sqlite_schema)", SqlLimits::default())
        .expect("the probe query runs");
    assert_eq!(answer.rows[0][1], json!(0), "a temporary object was left on the reader");
    answer.rows[0][0].as_i64().expect("a count")
}

fn data_version(conn: &Connection) -> i64 {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0)).expect("data_version")
}

/// A hash of the schema and of every row of every table, in rowid order.
fn fingerprint(conn: &Connection) -> u64 {
    let mut h = DefaultHasher::new();
    let mut tables = conn.prepare("SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema ORDER BY name").expect("schema");
    let schema: Vec<(String, String, String, String)> = tables
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("schema rows")
        .collect::<Result<_, _>>()
        .expect("schema rows");
    schema.hash(&mut h);
    for (kind, name, _, sql) in &schema {
        // FTS5's own table reads its shadow tables, which are hashed as tables themselves.
        if kind != "table" || sql.starts_with("CREATE VIRTUAL") {
            continue;
        }
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{}\"", name.replace('"', "\"\""))).expect("a table");
        let width = stmt.column_count();
        let mut rows = stmt.query([]).expect("rows");
        while let Some(row) = rows.next().expect("a row") {
            for i in 0..width {
                match row.get_ref(i).expect("a value") {
                    ValueRef::Null => 0u8.hash(&mut h),
                    ValueRef::Integer(n) => (1u8, n).hash(&mut h),
                    ValueRef::Real(f) => (2u8, f.to_bits()).hash(&mut h),
                    ValueRef::Text(t) => (3u8, t).hash(&mut h),
                    ValueRef::Blob(b) => (4u8, b).hash(&mut h),
                }
            }
        }
    }
    for pragma in ["user_version", "application_id", "page_count"] {
        let v: i64 = conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0)).expect(pragma);
        (pragma, v).hash(&mut h);
    }
    h.finish()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the data directory")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let query = String::from_utf8_lossy(data);
    let limits = limits();
    match f.store.sql(&query, limits) {
        Ok(answer) => {
            assert!(answer.rows.len() <= limits.max_rows, "{} rows over the cap", answer.rows.len());
            for row in &answer.rows {
                assert_eq!(row.len(), answer.columns.len(), "a row not as wide as the columns");
            }
        }
        Err(e) => assert!(e.is_client_error(), "user SQL caused a server fault: {e:?}"),
    }
    let watcher = f.watcher.lock().expect("watcher lock");
    assert_eq!(data_version(&watcher), f.data_version, "another connection committed a change");
    assert_eq!(fingerprint(&watcher), f.fingerprint, "the store's content changed");
    drop(watcher);
    assert_eq!(files(f._dir.path()), f.files, "files of the data directory changed");
    assert_eq!(count_events(&f.store), f.events, "the reader no longer answers the same");
});
