//! Users' SQL stays within its limits whatever it calls: the time limit reaches inside costly
//! function calls, no value grows past the answer limit, and answers are bounded in bytes.

use std::time::{Duration, Instant};

use causeway_store::{SqlLimits, Store, StoreError};

/// 200 rows, each calling the costly expression once (each depends on the row, so SQLite cannot
/// compute it once for all): before the bounds, each of these ran from 18 s (the first) to hours.
fn over_rows(condition: &str) -> String {
    format!("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 200) SELECT count(*) FROM c WHERE {condition}")
}

/// Costly queries, and whether each is cut by the clock (`true`) or refused at once for a value
/// too large (`false`).
fn costly() -> Vec<(&'static str, String, bool)> {
    vec![
        ("printf width past the value limit", over_rows("length(printf('%.*c',100000000+x,'x'))>0"), false),
        ("printf width within the value limit", over_rows("length(printf('%.*c',16000000+x,'x'))>0"), true),
        ("randomblob", over_rows("length(randomblob(16000000))>0"), true),
        ("randomblob past the value limit", over_rows("length(randomblob(100000000))>0"), false),
        ("hex of zeroblob", over_rows("length(hex(zeroblob(8000000 + x)))>0"), true),
        ("replace growth", over_rows("length(replace(printf('%.*c', 1000, 'a'), 'a', printf('%.*c', 100000, 'b')))>0"), false),
        ("instr", over_rows("instr(printf('%.*c', 8000000 + x, 'a'), printf('%.*c', 4000000, 'a') || 'b')>=0"), true),
        ("replace", over_rows("length(replace(printf('%.*c', 8000000 + x, 'a'), printf('%.*c', 4000000, 'a') || 'b', 'c'))>0"), true),
        ("trim", over_rows("length(trim(printf('%.*c', 8000000 + x, 'b'), printf('%.*c', 1300000, 'a') || 'b'))>=0"), true),
        ("unhex", over_rows("unhex(printf('%.*c', 8000000 + x, 'z'), printf('%.*c', 4000000, 'y') || 'z') IS NULL"), true),
        ("like", over_rows("printf('%.*c', 8000000 + x, 'a') LIKE '%' || printf('%.*c', 900, 'a') || 'b'"), true),
        ("glob", over_rows("printf('%.*c', 8000000 + x, 'a') GLOB '*' || printf('%.*c', 900, 'a') || 'b'"), true),
        ("endless recursion", "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n) SELECT count(*) FROM n".into(), true),
    ]
}

const LIMIT: Duration = Duration::from_millis(1000);
/// What may pass between the deadline and the answer: the last function call in progress (tens of
/// milliseconds in a release build) on a machine busy with other tests.
const MARGIN: Duration = Duration::from_millis(1500);

fn check(store: &Store, name: &str, query: &str, by_clock: bool) {
    let limits = SqlLimits { timeout: LIMIT, ..SqlLimits::default() };
    let started = Instant::now();
    let result = store.sql(query, limits);
    let took = started.elapsed();
    eprintln!("{name}: {took:?}");
    match (&result, by_clock) {
        (Err(StoreError::QueryTimeout(ms)), true) => assert_eq!(*ms, LIMIT.as_millis() as u64),
        (Err(StoreError::TooLarge(message)), false) => {
            assert!(message.contains("16777216 bytes"), "{name}: {message}")
        }
        other => panic!("{name}: expected {}, got {other:?}", if by_clock { "the time limit" } else { "too large" }),
    }
    assert!(took < LIMIT + MARGIN, "{name}: answered after {took:?}, limit {LIMIT:?}");
}

#[test]
fn costly_function_calls_are_cut_at_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (name, query, by_clock) in costly() {
        check(&store, name, &query, by_clock);
    }
    // The connections are fine afterwards.
    let ok = store.sql("SELECT instr('abc', 'c'), 'abc' LIKE 'A%', replace('aXa', 'X', 'b')", SqlLimits::default()).unwrap();
    assert_eq!(ok.rows, vec![vec![serde_json::json!(3), serde_json::json!(1), serde_json::json!("aba")]]);
}

/// Eight at once, as eight clients would send them: each is cut at its own deadline.
#[test]
fn eight_costly_queries_at_once_are_each_cut_at_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let queries: Vec<_> = costly().into_iter().filter(|(_, _, by_clock)| *by_clock).take(8).collect();
    assert_eq!(queries.len(), 8);
    std::thread::scope(|s| {
        for (name, query, by_clock) in &queries {
            let store = &store;
            s.spawn(move || check(store, name, query, *by_clock));
        }
    });
}

#[test]
fn answers_are_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // The query: 1,000 rows of a 1 MB blob (1.33 GB of base64) before the bound.
    let big = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 1000) SELECT x, randomblob(1000000) FROM c";
    let answer = store.sql(big, SqlLimits::default()).unwrap();
    assert!(answer.truncated);
    assert_eq!(answer.truncated_by, Some("bytes"));
    // 1,333,336 bytes of base64 per row, plus the number, brackets and commas.
    assert_eq!(answer.rows.len(), 12);
    let message = answer.message.as_deref().unwrap();
    assert!(message.contains("16777216 bytes") && message.contains("substr"), "{message}");
    assert!(serde_json::to_string(&answer.rows).unwrap().len() <= 16 * 1024 * 1024);

    // A smaller limit applies to the answer and to every value alike.
    let small = SqlLimits { max_answer_bytes: 1000, ..SqlLimits::default() };
    let answer =
        store.sql("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 100) SELECT printf('%.*c', 95, 'a') FROM c", small).unwrap();
    assert_eq!((answer.rows.len(), answer.truncated_by), (9, Some("bytes")));
    assert!(serde_json::to_string(&answer.rows).unwrap().len() <= 1000);
    let err = store.sql("SELECT length(printf('%.*c', 1001, 'a'))", small).unwrap_err();
    assert!(matches!(&err, StoreError::TooLarge(m) if m.contains("grew past 1000 bytes")), "{err:?}");
    let err = store.sql("SELECT printf('%.*c', 600, 'a'), printf('%.*c', 600, 'b')", small).unwrap_err();
    assert!(matches!(&err, StoreError::TooLarge(m) if m.contains("first row")), "{err:?}");
    assert!(err.is_client_error());

    // The row limit says so too.
    let rows = SqlLimits { max_rows: 10, ..SqlLimits::default() };
    let answer = store.sql("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 50) SELECT x FROM c", rows).unwrap();
    assert_eq!((answer.rows.len(), answer.truncated, answer.truncated_by), (10, true, Some("rows")));
    let complete = store.sql("SELECT 1", rows).unwrap();
    assert_eq!((complete.truncated, complete.truncated_by, complete.message), (false, None, None));
}
