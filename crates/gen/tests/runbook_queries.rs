//! Every query the generated runbooks contain runs on a store of a million events, answers with
//! rows for real placeholders, and costs at most six passes over the whole history (issue 13: a
//! correlated subquery per row ran into the 5 s SQL limit at 35,000 events).
//!
//! The store is filled by bulk SQL straight into the tables the views read (`events`,
//! `event_journeys`, `finding_records`, `dlq`), shaped like the demo: order journeys of up to five
//! events with `orderId` payloads, correlation and causation ids, some stopping part-way with the
//! findings and dead letters the journey engine and consumers would record. The queries are taken
//! from the generated Markdown (every fenced block of every runbook), so a new query is covered
//! without touching this test, and run through `Store::sql`, the path `POST /v1/sql` takes, with
//! its placeholders filled from the store. Each is judged by the CPU time of the thread that ran
//! it, so the verdict does not depend on what else the machine runs, against the CPU time of one
//! pass over the history measured in the same run, so it does not depend on the machine either.
//!
//! The absolute target (each query within 1 s of CPU at a million events) is a benchmark:
//! `scripts/bench runbooks` runs this test in a release build with `CAUSEWAY_RUNBOOK_REPORT` set,
//! and the report it writes says which queries meet it (docs/benchmarks.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use causeway_gen::GeneratedFile;
use causeway_store::{SqlLimits, Store, StoreSettings, build_tree};
use rusqlite::Connection;

/// The requirement of issue 13.
const EVENTS: i64 = 1_000_000;
/// One pass over the whole history, joined to its journeys, reading every event's time: the unit
/// a runbook query's cost is judged in.
const ONE_PASS: &str = "SELECT count(*), max(timestamp) FROM event_lineage WHERE journey IS NOT NULL";
/// No runbook query may cost more than this many passes. The slowest today take 2.0–2.3 (unsealed:
/// the stalled instances, a scan for the outcomes and a scan grouped by key) and 2.5–3.5 (sealed: a
/// policy's missing reactions, 10,000 lookups by correlation id, whose cost does not follow the
/// pass's, so the ratio moves with the build and the core); a plan that grows faster than the
/// history (a subquery per row) costs thousands.
const AT_MOST_PASSES: u32 = 6;
/// The benchmark's target, reported (not asserted) when `CAUSEWAY_RUNBOOK_REPORT` names a file.
const TARGET: Duration = Duration::from_secs(1);
/// A query over the bound is run this many times in all and judged by its best run: a slow plan is
/// slow every time, while CPU time too grows when a busy neighbour shares the core's caches.
const ATTEMPTS: usize = 3;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn runbooks() -> Vec<GeneratedFile> {
    let path = repo().join("examples/order-fulfillment/model.yaml");
    let model = causeway_model::load(&path).into_result().unwrap_or_else(|d| panic!("the example model has errors: {d:?}"));
    causeway_gen::runbooks(&model)
}

// ---------------------------------------------------------------------------------------------
// The queries, as the runbooks give them

#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Sql(String),
    Chain(String),
}

/// The commands of every fenced code block of `markdown`, each split into shell words.
fn commands(markdown: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut block: Option<(String, String)> = None; // (fence, text)
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match &mut block {
            None => {
                if let Some(fence) = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f)) {
                    let len = trimmed.len() - trimmed.trim_start_matches(fence.chars().next().unwrap()).len();
                    block = Some((trimmed[..len].to_string(), String::new()));
                }
            }
            Some((fence, text)) => {
                if trimmed.starts_with(fence.as_str()) && trimmed.trim_start_matches(fence.chars().next().unwrap()).trim().is_empty() {
                    out.extend(shell_commands(text));
                    block = None;
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    assert!(block.is_none(), "an unclosed code block");
    out
}

/// POSIX shell words of `script`, command by command: quotes, backslashes, line continuations,
/// `;` and newlines between commands, `#` comments. Enough for what a runbook asks to paste.
fn shell_commands(script: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(next) => word.get_or_insert_default().push(next),
            },
            '\'' => {
                let w = word.get_or_insert_default();
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_default();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(e @ ('$' | '`' | '"' | '\\')) => w.push(e),
                            Some('\n') => {}
                            Some(other) => {
                                w.push('\\');
                                w.push(other);
                            }
                            None => panic!("unterminated double quote in {script:?}"),
                        },
                        '$' | '`' => {
                            panic!("a runbook command expands {c} inside quotes: {script:?}")
                        }
                        _ => w.push(c),
                    }
                }
            }
            '#' if word.is_none() => while chars.next_if(|c| *c != '\n').is_some() {},
            ' ' | '\t' | '\n' | ';' => {
                words.extend(word.take());
                if matches!(c, '\n' | ';') && !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            _ => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

/// Every distinct command of the runbooks, with the files it appears in.
fn runbook_commands(files: &[GeneratedFile]) -> Vec<(Command, Vec<String>)> {
    let mut out: Vec<(Command, Vec<String>)> = Vec::new();
    for f in files {
        let found = commands(&f.contents);
        if f.contents.contains("## Query to run") {
            assert!(!found.is_empty(), "{}: a `Query to run` section without a command in a code block", f.path);
        }
        for words in found {
            let command = match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["causeway", "sql", query] => Command::Sql(query.to_string()),
                ["causeway", "chain", id] => Command::Chain(id.to_string()),
                other => panic!("{}: this test does not know how to run {other:?}: teach it, so the command is tested too", f.path),
            };
            match out.iter_mut().find(|(c, _)| *c == command) {
                Some((_, paths)) => paths.push(f.path.clone()),
                None => out.push((command, vec![f.path.clone()])),
            }
        }
    }
    out
}

#[test]
fn commands_are_split_as_a_shell_would() {
    let md = "text `causeway sql \"x\"`\n\n```sh\ncauseway sql \"SELECT '\\$a' AS \\\"b\\\"\" # why\ncauseway chain C-1; causeway \\\n  chain 'C 2'\n```\n\n~~~\ncauseway sql \"SELECT 1\nFROM t\"\n~~~\n";
    assert_eq!(
        commands(md),
        vec![
            vec!["causeway", "sql", "SELECT '$a' AS \"b\""],
            vec!["causeway", "chain", "C-1"],
            vec!["causeway", "chain", "C 2"],
            vec!["causeway", "sql", "SELECT 1\nFROM t"],
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// A million events shaped like the demo

/// A UUID-like id, unique per (order, step) and scattered like a random one. Products stay below
/// 2^63: SQLite turns an overflowing integer product into a float.
fn event_id(n: &str, k: &str) -> String {
    format!(
        "printf('%08x-%04x-4%03x-%04x-%012x', (({n}) * 2654435761 + ({k}) * 40503) % 4294967296, (({n}) * 40503 + ({k})) % 65536, (({n}) * ({k}) * 31) % 4096, 32768 + ({n}) % 16384, ({n}) * 8 + ({k}))"
    )
}

fn correlation_id(n: &str) -> String {
    format!(
        "printf('%08x-%04x-4%03x-b%03x-%012x', (({n}) * 2246822519) % 4294967296, (({n}) * 3266489917) % 65536, ({n}) % 4096, (({n}) * 7) % 4096, ({n}))"
    )
}

/// The time of order `n`'s `k`th event in µs after midnight: an order starts every 250 ms, its
/// events 0.4–1.2 s apart, so orders interleave as in the demo. 232,000 orders end within the day.
fn time_us(n: &str, k: &str) -> String {
    format!("(({n}) * 250000 + (({k}) - 1) * 800000 + (({n}) * 7919 + ({k}) * 104729) % 400000)")
}

/// RFC 3339 with microseconds, as the store writes times (one `printf`: `strftime` is slower).
fn rfc3339(us: &str) -> String {
    format!("printf('2026-11-23T%02d:%02d:%02d.%06dZ', ({us}) / 3600000000, ({us}) / 60000000 % 60, ({us}) / 1000000 % 60, ({us}) % 1000000)")
}

fn key(n: &str) -> String {
    format!("printf('ord-%06d', ({n}))")
}

/// Fills the store's tables in one transaction. Orders follow the demo's paths: most complete;
/// one in twelve fails payment and is cancelled; some stop after `OrderCreated`,
/// `PaymentProcessed` (a consumer fails, or `InventoryReserved` was refused for its missing
/// correlation id), `ShipmentCreated` (the notification service dead-letters it), and a rare few
/// after `InventoryReserved`, spread over the whole history: the case where a query looking for
/// missing reactions cannot stop early.
fn fill(db: &Path) {
    let conn = Connection::open(db).unwrap();
    // Nothing to recover if the test dies mid-way: no journal, no fsync.
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144; PRAGMA temp_store = MEMORY;").unwrap();
    let script = format!(
        r#"
BEGIN;
CREATE TEMP TABLE orders (n INTEGER PRIMARY KEY, path TEXT NOT NULL, last INTEGER NOT NULL);
WITH RECURSIVE o(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM o WHERE n < 231999)
INSERT INTO orders
SELECT n, CASE WHEN n % 12 = 5 THEN 'failed' ELSE 'ok' END,
       CASE WHEN n % 12 = 5 THEN 3 WHEN n % 20 = 11 THEN 1 WHEN n % 20 = 3 OR n % 50 = 9 THEN 2 WHEN n % 20 = 7 THEN 4
            WHEN n % 4999 = 1000 THEN 3 ELSE 5 END
FROM o;
CREATE TEMP TABLE paths (path TEXT, k INTEGER, event_type TEXT, source TEXT, topic TEXT, prefix TEXT);
INSERT INTO paths VALUES
    ('ok', 1, 'OrderCreated', 'order-service', 'orders', 'ord'),
    ('ok', 2, 'PaymentProcessed', 'payment-service', 'payments', 'pay'),
    ('ok', 3, 'InventoryReserved', 'inventory-service', 'inventory', 'res'),
    ('ok', 4, 'ShipmentCreated', 'fulfilment-service', 'shipments', 'shp'),
    ('ok', 5, 'CustomerNotified', 'notification-service', 'notifications', 'ord'),
    ('failed', 1, 'OrderCreated', 'order-service', 'orders', 'ord'),
    ('failed', 2, 'PaymentFailed', 'payment-service', 'payments', 'pay'),
    ('failed', 3, 'OrderCancelled', 'order-service', 'orders', 'ord');

-- In time order, as ingest stores them (seq, the rowid, follows the insertion order); the envelope
-- is the size of the demo's, about 500 bytes.
INSERT INTO events_hot (event_id, source, event_type, correlation_id, causation_id, subject, time, topic, received_at, envelope)
SELECT id, source, event_type, corr, cause, subject, time, topic, received_at,
       printf('{{"specversion":"1.0","id":"%s","source":"%s","type":"%s","time":"%s","subject":"%s","datacontenttype":"application/json","correlationid":"%s",%s"traceparent":"00-%032x-%016x-01","sequence":%d,"data":{{"orderId":"%s","amount":%d.%02d,"currency":"EUR","customerEmail":"[redacted]","lines":[{{"sku":"SKU-1","qty":1}}]}}}}',
              id, source, event_type, time, subject, corr, CASE WHEN cause IS NULL THEN '' ELSE printf('"causationid":"%s",', cause) END,
              n + 1, n * 8 + k, k, orderid, 5 + n % 500, n % 100)
FROM (
    SELECT n, k, source, event_type, topic, subject, {id} AS id, {corr} AS corr,
           CASE WHEN k > 1 THEN {id_prev} END AS cause, {key} AS orderid, {time} AS time, {received} AS received_at
    FROM (SELECT o.n, p.k, p.event_type, p.source, p.topic, p.prefix || printf('-%06d', o.n) AS subject, {t} AS t
          FROM orders o JOIN paths p ON p.path = o.path AND p.k <= o.last
          ORDER BY t LIMIT {EVENTS})
);

-- The journey engine puts every event with an orderId in the `order` instance of that key.
INSERT INTO event_journeys (seq, journey, journey_key) SELECT seq, 'order', 'ord-' || substr(subject, 5) FROM events_hot;

-- The engine's findings (engine_id set) for the orders that stopped, each for a stored event;
-- a third of them resolved since.
WITH f(slot, kind, after_s) AS (VALUES (0, 'stalled', 120), (1, 'deadline_missed', 300), (2, 'missing_reaction', 30))
INSERT INTO finding_records (engine_id, kind, journey, journey_key, correlation_id, event_id, expected, detected_at, resolved_at, detail, owner)
SELECT o.n * 8 + f.slot, f.kind, 'order', {okey}, {ocorr}, ev.event_id,
       CASE WHEN f.slot = 2 THEN (SELECT event_type FROM paths WHERE path = 'ok' AND k = o.last + 1) END,
       {detected}, CASE WHEN o.n % 3 = 0 THEN {resolved} END, f.kind || ' after ' || p.event_type, 'team-checkout'
FROM orders o JOIN paths p ON p.path = o.path AND p.k = o.last
JOIN f ON f.slot < 2 OR o.last > 1
JOIN events_hot ev ON ev.event_id = {olast_id}
WHERE o.path = 'ok' AND o.last < 5;
-- Findings raised at ingest (no engine_id): redelivered and malformed events.
INSERT INTO finding_records (kind, journey, journey_key, correlation_id, event_id, detected_at, detail, owner)
SELECT CASE WHEN event_type = 'ShipmentCreated' THEN 'schema_error' WHEN CAST(substr(subject, 5) AS INTEGER) % 3 = 0 THEN 'duplicate_effect' ELSE 'duplicate' END,
       'order', 'ord-' || substr(subject, 5), correlation_id, event_id, received_at, 'ingest finding', 'team-checkout'
FROM events_hot
WHERE (event_type = 'PaymentProcessed' AND CAST(substr(subject, 5) AS INTEGER) % 40 = 13)
   OR (event_type = 'ShipmentCreated' AND CAST(substr(subject, 5) AS INTEGER) % 20 = 7);
INSERT INTO finding_records (engine_id, kind, journey, journey_key, correlation_id, event_id, detected_at, detail, owner)
SELECT CAST(substr(subject, 5) AS INTEGER) * 8 + 3, 'invariant_violation', 'order', 'ord-' || substr(subject, 5), correlation_id, event_id, received_at,
       'single-payment: PaymentProcessed more than once', 'team-checkout'
FROM events_hot WHERE event_type = 'PaymentProcessed' AND CAST(substr(subject, 5) AS INTEGER) % 1000 = 17;

-- Dead letters: the notification service fails on a ShipmentCreated without customerEmail, the
-- inventory service on some PaymentProcessed, and ingest refuses InventoryReserved without a
-- correlation id.
WITH c(event_type, rest, consumer, error_type, message) AS (
    VALUES ('ShipmentCreated', 7, 'notification-service', 'ValidationError', 'customerEmail is required'),
           ('PaymentProcessed', 3, 'inventory-service', 'TimeoutError', 'warehouse API timed out after 10s'))
INSERT INTO dlq (event_id, event_type, correlation_id, source_service, consumer, source_topic, error_type, error_message,
                 failed_at, last_failed_at, attempts, status, content_type, original_event)
SELECT e.event_id, e.event_type, e.correlation_id, e.source, c.consumer, e.topic, c.error_type, c.message,
       e.received_at, e.received_at, 3, CASE WHEN CAST(substr(e.subject, 5) AS INTEGER) % 3 = 0 THEN 'resolved' ELSE 'pending' END,
       'application/json', e.envelope
FROM events_hot e JOIN c ON c.event_type = e.event_type
WHERE CAST(substr(e.subject, 5) AS INTEGER) % 20 = c.rest;
INSERT INTO dlq (event_id, event_type, correlation_id, source_service, consumer, source_topic, error_type, error_message,
                 failed_at, last_failed_at, status, content_type, original_event)
SELECT {id3}, 'InventoryReserved', NULL, 'inventory-service', 'causeway', NULL, 'missing_correlation',
       'the event has no correlation id', {t3}, {t3}, 'pending', 'application/json',
       json_object('metadata', json_object('eventId', {id3}, 'eventType', 'InventoryReserved', 'source', 'inventory-service'),
                   'payload', json_object('orderId', {key}, 'items', 1))
FROM orders WHERE n % 50 = 9 AND n % 12 != 5 AND n * 5 < {EVENTS};
COMMIT;
PRAGMA journal_mode = WAL;
"#,
        id = event_id("n", "k"),
        id_prev = event_id("n", "k - 1"),
        corr = correlation_id("n"),
        key = key("n"),
        t = time_us("n", "k"),
        time = rfc3339("t"),
        received = rfc3339("t + 40000"),
        okey = key("o.n"),
        ocorr = correlation_id("o.n"),
        olast_id = event_id("o.n", "o.last"),
        detected = rfc3339(&format!("{} + f.after_s * 1000000", time_us("o.n", "o.last"))),
        resolved = rfc3339(&format!("{} + f.after_s * 1000000 + 60000000", time_us("o.n", "o.last"))),
        id3 = event_id("n", "3"),
        t3 = rfc3339(&time_us("n", "3")),
    );
    conn.execute_batch(&script).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The test

/// The CPU time of the calling thread: what a query costs, whatever else the machine runs.
/// `Store::sql` runs on the calling thread.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

struct Answer {
    cpu: Duration,
    wall: Duration,
    rows: usize,
}

/// Runs `query` as `POST /v1/sql` does, under the server's default limits; `Err` says what went
/// wrong, with the query plan. A query over the bound is tried again (up to `ATTEMPTS` in all) and
/// judged by its best run.
fn answer(store: &Store, query: &str, bound: Duration) -> Result<Answer, String> {
    let mut best: Option<Answer> = None;
    for _ in 0..ATTEMPTS {
        let (wall, cpu) = (Instant::now(), thread_cpu());
        let result = store.sql(query, SqlLimits::default());
        let a = Answer { cpu: thread_cpu() - cpu, wall: wall.elapsed(), rows: 0 };
        match result {
            Ok(r) => {
                let a = Answer { rows: r.rows.len(), ..a };
                if best.as_ref().is_none_or(|b| a.cpu < b.cpu) {
                    best = Some(a);
                }
                if best.as_ref().is_some_and(|b| b.cpu <= bound) {
                    break;
                }
            }
            Err(e) => {
                return Err(format!("failed after {:?}: {e}\n{}", a.wall, plan(store, query)));
            }
        }
    }
    let best = best.expect("at least one attempt");
    if best.cpu > bound {
        return Err(format!("took {:?} of CPU ({:?} wall) at best of {ATTEMPTS}, over {bound:?}\n{}", best.cpu, best.wall, plan(store, query)));
    }
    Ok(best)
}

/// The CPU time of [`ONE_PASS`], at best of [`ATTEMPTS`] runs, as the queries are judged.
fn one_pass(store: &Store) -> Duration {
    let runs = (0..ATTEMPTS).map(|_| {
        let cpu = thread_cpu();
        store.sql(ONE_PASS, SqlLimits::default()).unwrap_or_else(|e| panic!("one pass over the history: {e}"));
        thread_cpu() - cpu
    });
    runs.min().expect("at least one attempt").max(Duration::from_millis(1))
}

fn plan(store: &Store, query: &str) -> String {
    match store.sql(&format!("EXPLAIN QUERY PLAN {query}"), SqlLimits::default()) {
        Ok(r) => r.rows.iter().map(|row| format!("  plan: {}", row.last().and_then(|v| v.as_str()).unwrap_or("?"))).collect::<Vec<_>>().join("\n"),
        Err(e) => format!("  no plan: {e}"),
    }
}

#[test]
fn every_runbook_query_costs_at_most_six_passes_over_a_million_events() {
    runbook_queries_answer_within_the_bound(0);
}

/// The same, with nine tenths of the history sealed into segment files (`[store] segment_events`
/// at its recommended size): the scans by event type and time read the segments' lineage columns.
#[test]
fn every_runbook_query_costs_at_most_six_passes_over_a_million_sealed_events() {
    runbook_queries_answer_within_the_bound(causeway_store::RECOMMENDED_SEGMENT_EVENTS);
}

/// The two million-event tests, one at a time: each bounds the CPU time of its queries, and the
/// other's fill (its writer and sealer, on both cores of a two-core machine whose cores may be
/// one core's two threads) running beside the measurement raised it by a quarter (two queries at
/// 1.05–1.09 s of CPU, 0.85–0.88 s alone on the same machine).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn runbook_queries_answer_within_the_bound(segment_events: u64) {
    // A test that failed while holding it poisons it; the next still runs alone.
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let files = runbooks();
    let commands = runbook_commands(&files);
    assert!(commands.iter().any(|(c, _)| matches!(c, Command::Sql(_))), "no SQL found in the runbooks");

    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // The store creates its layout; the bulk rows then go straight into its tables.
    let db = Store::open(dir.path()).unwrap().path().to_path_buf();
    fill(&db);
    let store = Store::open_with(dir.path(), &StoreSettings { segment_events, ..StoreSettings::default() }).unwrap();
    if segment_events > 0 {
        // The sealer seals whole segments, leaving at least the newest half segment unsealed.
        let segment = segment_events as i64;
        let expected = (EVENTS - segment / 2) / segment * segment;
        let deadline = Instant::now() + Duration::from_secs(900);
        while store.stats().unwrap().sealed_upto < expected {
            assert!(Instant::now() < deadline, "sealed only up to {} of {expected}", store.stats().unwrap().sealed_upto);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let filled = started.elapsed();
    let count = store.sql("SELECT count(*) FROM event_lineage WHERE journey = 'order'", SqlLimits::default()).unwrap();
    assert_eq!(count.rows[0][0], EVENTS, "every event is in an order journey");

    // Placeholders get the values of an instance with dead letters and open findings.
    let pick = store
        .sql(
            "SELECT e.journey_key, e.correlation_id, e.aggregate_id FROM event_lineage e \
             WHERE e.correlation_id = (SELECT correlation_id FROM dlq_events WHERE consumer = 'notification-service' AND status = 'pending' ORDER BY id LIMIT 1) \
             AND e.event_type = 'OrderCreated'",
            SqlLimits::default(),
        )
        .unwrap();
    let value = |i: usize| pick.rows[0][i].as_str().unwrap().to_string();
    let placeholders = [("KEY", value(0)), ("CORRELATION_ID", value(1)), ("AGGREGATE_ID", value(2))];

    let pass = one_pass(&store);
    let bound = pass * AT_MOST_PASSES;
    let mut measured: Vec<(String, Duration)> = Vec::new();

    let mut problems = Vec::new();
    let mut report = Vec::new();
    for (command, paths) in &commands {
        let fill_in = |text: &str| placeholders.iter().fold(text.to_string(), |t, (p, v)| t.replace(&format!("'{p}'"), &format!("'{v}'")));
        match command {
            Command::Sql(original) => {
                let query = fill_in(original);
                if let Some(p) = leftover_placeholder(&query) {
                    problems.push(format!("{}: a placeholder '{p}' this test has no value for: {query}", paths.join(", ")));
                    continue;
                }
                match answer(&store, &query, bound) {
                    Ok(a) => {
                        report.push(format!(
                            "{:>9.3?} cpu {:>5.2} passes {:>9.3?} wall {:>6} rows  {query}",
                            a.cpu,
                            ratio(a.cpu, pass),
                            a.wall,
                            a.rows
                        ));
                        measured.push((paths.join(", "), a.cpu));
                        if query != *original && a.rows == 0 {
                            problems.push(format!("{}: no rows for the placeholders' real values: {query}", paths.join(", ")));
                        }
                    }
                    Err(e) => problems.push(format!("{}: {query}\n  {e}", paths.join(", "))),
                }
            }
            Command::Chain(id) => {
                let id = placeholders.iter().find(|(p, _)| p == id).map(|(_, v)| v.clone()).unwrap_or_else(|| id.clone());
                let (wall, cpu) = (Instant::now(), thread_cpu());
                let events = store.correlation(&id, 10_001).unwrap();
                let tree = build_tree(&events);
                let took = thread_cpu() - cpu;
                report.push(format!(
                    "{took:>9.3?} cpu {:>5.2} passes {:>9.3?} wall {:>6} events  causeway chain {id}",
                    ratio(took, pass),
                    wall.elapsed(),
                    events.len()
                ));
                measured.push((format!("{} (`causeway chain`)", paths.join(", ")), took));
                if events.is_empty() || tree.is_empty() {
                    problems.push(format!("{}: causeway chain {id} found nothing", paths.join(", ")));
                } else if took > bound {
                    problems.push(format!("{}: causeway chain {id} took {took:?} of CPU", paths.join(", ")));
                }
            }
        }
    }
    eprintln!(
        "store filled (segment_events {segment_events}) in {filled:?}; one pass {pass:?} of CPU; {} commands:\n{}",
        commands.len(),
        report.join("\n")
    );
    if let Some(path) = std::env::var_os("CAUSEWAY_RUNBOOK_REPORT") {
        write_report(Path::new(&path), segment_events, pass, &measured);
    }
    assert!(
        problems.is_empty(),
        "{} of {} runbook commands fail the bound ({AT_MOST_PASSES} passes over the history, {bound:?} of CPU in this run):\n{}",
        problems.len(),
        commands.len(),
        problems.join("\n\n")
    );
}

fn ratio(cpu: Duration, pass: Duration) -> f64 {
    cpu.as_secs_f64() / pass.as_secs_f64()
}

/// Appends this run's Markdown table to the benchmark's report at `path`: each command's CPU
/// time against the absolute target, slowest first.
fn write_report(path: &Path, segment_events: u64, pass: Duration, measured: &[(String, Duration)]) {
    use std::io::Write;
    let mut rows = measured.to_vec();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    let over = rows.iter().filter(|(_, cpu)| *cpu > TARGET).count();
    let store = if segment_events == 0 { "all unsealed".to_string() } else { format!("sealed in segments of {segment_events}") };
    let mut text = format!(
        "\n**A million events, {store}**: one pass over the history {:.0} ms of CPU; {} of {} commands within {TARGET:?}, the slowest {:.0} ms ({:.2} passes).\n\n| runbooks | CPU ms | passes | within {TARGET:?} |\n|---|---:|---:|---|\n",
        pass.as_secs_f64() * 1000.0,
        rows.len() - over,
        rows.len(),
        rows.first().map_or(0.0, |r| r.1.as_secs_f64() * 1000.0),
        rows.first().map_or(0.0, |r| ratio(r.1, pass)),
    );
    for (paths, cpu) in &rows {
        let verdict = if *cpu <= TARGET { "yes" } else { "**no**" };
        text.push_str(&format!("| {paths} | {:.1} | {:.2} | {verdict} |\n", cpu.as_secs_f64() * 1000.0, ratio(*cpu, pass)));
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.write_all(text.as_bytes()).unwrap();
}

/// A quoted all-capital literal such as `'KEY'` left in a query: a placeholder without a value.
fn leftover_placeholder(query: &str) -> Option<&str> {
    query
        .split('\'')
        .skip(1)
        .step_by(2)
        .find(|lit| lit.len() > 1 && lit.chars().all(|c| c.is_ascii_uppercase() || c == '_') && lit.chars().next().unwrap().is_ascii_uppercase())
}
