//! The built `causeway` binary, end to end: crash safety, client verbs, the demo, configuration.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

mod common;

use common::{BIN, Server, get};

/// A `causeway serve` child process on a free port.
fn causeway(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn event(id: &str, corr: &str, cause: Option<&str>, ms: u64) -> Value {
    let mut e = json!({"specversion": "1.0", "id": id, "source": "order-service", "type": "OrderCreated",
                       "time": format!("2026-11-23T10:00:00.{ms:03}Z"), "correlationid": corr, "data": {"n": ms}});
    if let Some(c) = cause {
        e["causationid"] = json!(c);
        e["type"] = json!("PaymentProcessed");
    }
    e
}

/// Posts batches until the server goes away; returns the ids it acknowledged.
fn produce(url: String, worker: usize, round: usize, acks: mpsc::Sender<usize>) -> Vec<String> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut acked = Vec::new();
    for batch in 0.. {
        let ids: Vec<String> = (0..200).map(|i| format!("r{round}-w{worker}-b{batch}-{i}")).collect();
        let body: String = ids.iter().map(|id| format!("{}\n", event(id, &format!("c-{id}"), None, 1))).collect();
        let sent = client.post(format!("{url}/v1/events")).header("content-type", "application/x-ndjson").body(body).send();
        match sent.and_then(|r| r.error_for_status()).and_then(|r| r.json::<Value>()) {
            Ok(answer) => {
                assert_eq!(answer["accepted"], 200, "{answer}");
                acked.extend(ids);
                let _ = acks.send(200);
            }
            Err(_) => return acked, // the server was killed mid-request: this batch is not acknowledged
        }
    }
    unreachable!()
}

/// SIGKILL during sustained ingest, five times over: every acknowledged event survives and the
/// store opens and passes SQLite's integrity check.
#[test]
fn sigkill_during_ingest_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: the kills land before, during and after seals.
    let (data, config) = data_and_config(dir.path(), "[store]\nsegment_events = 1000\n");
    let args = ["--config", config.as_str()];
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..5 {
        let server = Server::start(&data, &args);
        let (tx, rx) = mpsc::channel();
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (url, tx) = (server.url.clone(), tx.clone());
                std::thread::spawn(move || produce(url, w, round, tx))
            })
            .collect();
        drop(tx);
        // Kill at a different depth each round, while both producers are still sending, once the
        // store has sealed a segment more than the round's number: kills land between seals,
        // however fast ingest runs beside the sealer.
        let target = 1000 + 600 * round;
        let mut seen = 0;
        while seen < target || (round > 0 && sealed_segments(&server.url) < round + 1) {
            seen += rx.recv().expect("producers run until the kill");
            assert!(seen < 200_000, "round {round}: {} segments sealed after {seen} events", sealed_segments(&server.url));
        }
        server.kill();
        for w in workers {
            acknowledged.extend(w.join().unwrap());
        }
    }
    assert!(acknowledged.len() >= 5 * 1000);
    assert_all_stored_once(&data, &acknowledged);
    // And the server starts again on the recovered store.
    let server = Server::start(&data, &args);
    let ready: Value = reqwest::blocking::get(format!("{}/readyz", server.url)).unwrap().json().unwrap();
    assert!(ready["events"].as_i64().unwrap() >= acknowledged.len() as i64, "{ready}");
    drop(server);
    let segments: i64 = causeway_store::open_read_only(&data).unwrap().query_row("SELECT count(*) FROM segments", [], |r| r.get(0)).unwrap();
    assert!(segments >= 5, "the history was sealed along the way: {segments} segments");
}

/// SIGKILL during sustained ingest while retention removes every segment as soon as it is sealed
/// (`max_disk` smaller than anything): the events still stored are exactly the newest ones
/// acknowledged, none lost after the oldest kept; no segment file is left that no commit names.
#[test]
fn sigkill_during_ingest_and_retention_loses_only_what_retention_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = data_and_config(dir.path(), "[store]\nsegment_events = 1000\nmax_disk = \"1B\"\n");
    let args = ["--config", config.as_str()];
    // One producer: the order it is answered in is the log's order.
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..4 {
        let server = Server::start(&data, &args);
        let start = removed_upto(&server.url);
        let (tx, rx) = mpsc::channel();
        let url = server.url.clone();
        let producer = std::thread::spawn(move || produce(url, 0, round, tx));
        let target = 1000 + 700 * round;
        let mut seen = 0;
        // Killed once the store has sealed and removed at least one segment more this round.
        while seen < target || removed_upto(&server.url) < start + 1000 {
            seen += rx.recv().expect("the producer runs until the kill");
            assert!(seen < 200_000, "round {round}: removed up to {} after {seen} events", removed_upto(&server.url));
        }
        server.kill();
        acknowledged.extend(producer.join().unwrap());
    }
    let server = Server::start(&data, &args);
    // Nothing arrives any more: once retention has removed every sealed segment and too few
    // events are left unsealed to fill one (a segment's worth beside the newest half segment the
    // sealer keeps), the store holds still, and everything sealed (up to `sealed_upto`) is what
    // retention removed. The restarted store may still hold more than that unsealed: it seals and
    // removes it first.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let stats = loop {
        let stats = get(&format!("{}/v1/store", server.url));
        let segment = stats["segment_events"].as_i64().unwrap();
        if stats["segments"].as_array().is_some_and(Vec::is_empty) && stats["hot_events"].as_i64().unwrap() < segment + segment / 2 {
            break stats;
        }
        assert!(std::time::Instant::now() < deadline, "retention left segments a minute after the restart: {stats}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = text(&causeway(&["store", "stats", "--server", &server.url]));
    drop(server);
    let removed = stats["sealed_upto"].as_i64().unwrap();
    let recorded: String =
        causeway_store::open_read_only(&data).unwrap().query_row("SELECT value FROM meta WHERE key = 'retired_upto'", [], |r| r.get(0)).unwrap();
    assert_eq!(recorded, removed.to_string(), "the store removed more after it said it held still: {stats}");
    assert!(removed >= 4000, "{stats}");
    assert!(said.contains("retention: at most 1 B on disk; "), "{said}");
    let ids = stored_once(&data);
    let stored: HashSet<&String> = ids.iter().collect();
    let first_kept = acknowledged.iter().position(|id| stored.contains(id)).expect("the newest events are kept");
    let lost: Vec<&String> = acknowledged[first_kept..].iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged events after the oldest kept are lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    // Retention removed the seqs up to `removed`, and only those: every acknowledged event among
    // them is gone and every later one kept. At each kill one batch may be stored without its
    // answer: it holds a seq but is not among the acknowledged, so up to four batches of the
    // removed seqs are not acknowledged events.
    let unanswered_at_kills = 4 * 200;
    assert!(
        (removed - unanswered_at_kills..=removed).contains(&(first_kept as i64)),
        "retention removed up to seq {removed}, yet {first_kept} of {} acknowledged events are gone",
        acknowledged.len()
    );
    let files: HashSet<String> =
        std::fs::read_dir(data.join(causeway_store::SEGMENTS_DIR)).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let registered: HashSet<String> = causeway_store::open_read_only(&data)
        .unwrap()
        .prepare("SELECT file FROM segments")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(files, registered, "no segment file outlives its removal");
}

/// How far the server at `url` has sealed, when retention has removed all it sealed (no segment
/// left); else 0.
fn removed_upto(url: &str) -> i64 {
    let stats = get(&format!("{url}/v1/store"));
    if stats["segments"].as_array().is_some_and(Vec::is_empty) { stats["sealed_upto"].as_i64().unwrap_or(0) } else { 0 }
}

/// How many segments the server at `url` has sealed (`GET /v1/store`).
fn sealed_segments(url: &str) -> usize {
    let stats: Value = reqwest::blocking::get(format!("{url}/v1/store")).unwrap().json().unwrap();
    stats["segments"].as_array().map_or(0, Vec::len)
}

/// The event ids the store in `data` holds, once it passed SQLite's integrity check and held
/// each once.
fn stored_once(data: &std::path::Path) -> Vec<String> {
    let db = causeway_store::open_read_only(data).unwrap();
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let ids: Vec<String> = db.prepare("SELECT event_id FROM events").unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "every event is stored once");
    ids
}

/// A data directory and a config file with `toml` in `dir`: (data, config path).
fn data_and_config(dir: &Path, toml: &str) -> (std::path::PathBuf, String) {
    let config = dir.join("causeway.toml");
    std::fs::write(&config, toml).unwrap();
    (dir.join("data"), config.to_string_lossy().into_owned())
}

/// The store in `data` passes SQLite's integrity check and holds each of `acknowledged` once.
fn assert_all_stored_once(data: &std::path::Path, acknowledged: &[String]) {
    let ids = stored_once(data);
    let stored: HashSet<&String> = ids.iter().collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
}

/// SIGKILL after a segment file is written and before its commit registers it: the restarted
/// store removes the file, seals the same events again, and loses and doubles nothing.
#[test]
fn sigkill_between_a_seal_and_its_commit_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("causeway.toml");
    std::fs::write(&config, "[store]\nsegment_events = 1000\n").unwrap();
    let data = dir.path().join("data");
    let args = ["--config", config.to_str().unwrap()];
    let mut stalled = Command::new(BIN);
    stalled.env("CAUSEWAY_FAULT_SEAL_STALL_MS", "600000");
    let server = Server::start_with(stalled, &data, &args);
    let (tx, rx) = mpsc::channel();
    let url = server.url.clone();
    let producer = std::thread::spawn(move || produce(url, 0, 0, tx));
    let mut seen = 0;
    while seen < 2_000 {
        seen += rx.recv().expect("the producer runs until the kill");
    }
    // The first segment's file is written; its registration waits on the fault hook.
    let segments = data.join(causeway_store::SEGMENTS_DIR);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let written = loop {
        let files: Vec<_> = std::fs::read_dir(&segments).into_iter().flatten().flatten().map(|e| e.path()).collect();
        if let Some(f) = files.into_iter().find(|p| p.extension().is_some_and(|x| x == "cwseg")) {
            break f;
        }
        assert!(std::time::Instant::now() < deadline, "no segment written in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    server.kill();
    let acknowledged = producer.join().unwrap();
    let registered: i64 = causeway_store::open_read_only(&data).unwrap().query_row("SELECT count(*) FROM segments", [], |r| r.get(0)).unwrap();
    assert_eq!(registered, 0, "the kill came before the registration");
    assert_all_stored_once(&data, &acknowledged);

    let server = Server::start(&data, &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let registered: i64 = causeway_store::open_read_only(&data).unwrap().query_row("SELECT count(*) FROM segments", [], |r| r.get(0)).unwrap();
        if registered >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the restarted store sealed nothing in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server);
    assert!(written.exists(), "the same events sealed again, into a segment of the same name");
    assert_all_stored_once(&data, &acknowledged);
}

#[test]
fn client_verbs_ingest_chain_and_sql() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let file = dir.path().join("events.ndjson");
    let lines = [
        event("root", "corr-1", None, 1).to_string(),
        event("pay", "corr-1", Some("root"), 2).to_string(),
        "{broken".to_string(),
        String::new(),
        event("ship", "corr-1", Some("pay"), 3).to_string(),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = causeway(&["ingest", file.to_str().unwrap(), "--batch", "2", "--server", &server.url]);
    assert_eq!(out.status.code(), Some(1), "a rejected line makes ingest exit 1: {}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("3 accepted, 0 duplicates, 1 rejected"), "{printed}");
    assert!(printed.contains("not valid JSON"), "{printed}");
    let again = causeway(&["ingest", file.to_str().unwrap(), "--json", "--server", &server.url]);
    let counts: Value = serde_json::from_slice(&again.stdout).unwrap();
    for (key, n) in [("accepted", 0), ("duplicates", 3), ("rejected", 1)] {
        assert_eq!(counts[key], n, "{counts}");
    }

    let chain = causeway(&["chain", "corr-1", "--server", &server.url]);
    assert!(chain.status.success(), "{}", text(&chain));
    let tree = String::from_utf8(chain.stdout).unwrap();
    let expected = ["└─ OrderCreated", "   └─ PaymentProcessed", "      └─ PaymentProcessed"];
    let got: Vec<&str> = tree.lines().skip(1).collect();
    for (line, prefix) in got.iter().zip(expected) {
        assert!(line.starts_with(prefix), "{tree}");
    }
    assert!(tree.starts_with("correlation corr-1: 3 events"), "{tree}");
    let json_chain = causeway(&["chain", "corr-1", "--json", "--server", &server.url]);
    let body: Value = serde_json::from_slice(&json_chain.stdout).unwrap();
    assert_eq!(body["tree"][0]["children"][0]["children"][0]["event_id"], "ship");
    let missing = causeway(&["chain", "nope", "--server", &server.url]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("no events with correlation id 'nope'"));

    let seed =
        "SELECT event_id, event_type, source_service, timestamp, causation_id FROM event_lineage WHERE correlation_id = 'corr-1' ORDER BY timestamp";
    let table = causeway(&["sql", seed, "--server", &server.url]);
    let printed = text(&table);
    let order: Vec<usize> = ["root", "pay", "ship"].iter().map(|id| printed.find(&format!(" {id} ")).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{printed}");
    assert!(printed.contains("3 rows"), "{printed}");
    let json_rows = causeway(&["sql", seed, "--json", "--server", &server.url]);
    let body: Value = serde_json::from_slice(&json_rows.stdout).unwrap();
    assert_eq!(body["rows"][2][4], "pay");
    let refused = causeway(&["sql", "DELETE FROM events", "--server", &server.url]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("only read-only queries"), "{}", text(&refused));
    let unreachable = causeway(&["sql", "SELECT 1", "--server", "http://127.0.0.1:9"]);
    assert!(text(&unreachable).contains("cannot reach the causeway server"), "{}", text(&unreachable));
}

fn demo(data: &Path, seed: &str) -> String {
    let out = causeway(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--duration",
        "3s",
        "--rate",
        "400",
        "--seed",
        seed,
        "--fault-rate",
        "0.2",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

fn first_ids(data: &Path, n: usize) -> Vec<String> {
    let db = causeway_store::open_read_only(data).unwrap();
    db.prepare("SELECT event_id FROM events ORDER BY seq LIMIT ?1")
        .unwrap()
        .query_map([n as i64], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn demo_runs_injects_faults_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let printed = demo(&dir.path().join("a"), "42");
    assert!(printed.contains("web:  http://127.0.0.1:"), "{printed}");
    let accepted: u64 = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("stored "))
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(accepted > 500, "{printed}");
    for fault in ["duplicate delivery", "out-of-order delivery", "consumer failure", "missing correlation id"] {
        assert!(printed.contains(fault), "{printed}");
    }
    // The journey engine judged the traffic: journeys by state, and the faults as findings.
    let section = |title: &str| -> Vec<String> {
        printed.lines().skip_while(|l| !l.contains(title)).skip(1).take_while(|l| l.starts_with("    ")).map(|l| l.trim().to_string()).collect()
    };
    let states = section("journeys by state:");
    assert!(states.iter().any(|l| l.starts_with("fulfilled ") || l.starts_with("in_flight ")), "{printed}");
    let findings = section("findings by kind");
    for kind in ["duplicate ", "out_of_order ", "schema_error ", "missing_correlation "] {
        assert!(findings.iter().any(|l| l.starts_with(kind)), "no {kind}in {printed}");
    }
    // Every finding kind the demo raised is explained by an injected fault it names.
    let faults = section("faults injected");
    assert_eq!(faults.len(), 5, "{printed}");
    assert!(faults.iter().any(|l| l.starts_with("producer clock behind ")), "{printed}");
    for line in &findings {
        let kind = line.split_whitespace().next().unwrap();
        assert!(faults.iter().any(|f| f.contains(kind)), "finding kind {kind} is raised by no fault the demo names: {printed}");
    }
    // `causeway` is not on PATH here: the demo says how to run the binary it was started as.
    let program = std::fs::canonicalize(BIN).unwrap();
    assert!(printed.contains(&format!("cli:  {}  (`cargo install --path crates/cli`", program.display())), "{printed}");
    // notification-service dead-lettered the shipments it could not handle.
    let dead = section("dead letters pending");
    assert!(dead.iter().any(|l| l.starts_with("KeyError ")), "{printed}");
    // Rejected events (missing correlation) are kept with their reason.
    let db = causeway_store::open_read_only(&dir.path().join("a")).unwrap();
    let missing: i64 = db.query_row("SELECT count(*) FROM dlq_events WHERE error_type = 'missing_correlation'", [], |r| r.get(0)).unwrap();
    assert!(missing > 0);
    // The same seed drives the same traffic.
    demo(&dir.path().join("b"), "42");
    assert_eq!(first_ids(&dir.path().join("a"), 500), first_ids(&dir.path().join("b"), 500));
    demo(&dir.path().join("c"), "43");
    assert_ne!(first_ids(&dir.path().join("a"), 500), first_ids(&dir.path().join("c"), 500));
}

#[test]
fn serve_config_file_flags_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("causeway.toml");
    std::fs::write(&config, format!("data = {:?}\n[limits]\nmax_batch_events = 2\n", dir.path().join("from-file"))).unwrap();
    let server = Server::start(&dir.path().join("from-flag"), &["--config", config.to_str().unwrap()]);
    let batch = json!([event("a", "c", None, 1), event("b", "c", None, 2), event("d", "c", None, 3)]).to_string();
    let client = reqwest::blocking::Client::new();
    let answer = client.post(format!("{}/v1/events", server.url)).header("content-type", "application/json").body(batch.clone()).send().unwrap();
    assert_eq!(answer.status(), 413, "the file's limit applies");
    assert!(dir.path().join("from-flag/causeway.db").exists(), "the flag beats the file");
    assert!(!dir.path().join("from-file").exists());
    drop(server);
    // The environment fills what the flags leave unset, and beats the file.
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()])
        .env("CAUSEWAY_DATA", dir.path().join("from-env"))
        .env("CAUSEWAY_MAX_BATCH_EVENTS", "5")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.next().unwrap().unwrap().replace("causeway listening on ", "");
    let answer = client.post(format!("{url}/v1/events")).header("content-type", "application/json").body(batch).send().unwrap();
    assert_eq!(answer.status(), 200);
    assert!(dir.path().join("from-env/causeway.db").exists());
    child.kill().unwrap();
    child.wait().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = 5\nunknown_key = true\n").unwrap();
    let out = causeway(&["serve", "--config", bad.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("bad.toml is not valid"), "{}", text(&out));
    // A section for a part this version does not have yet is refused with a sentence saying so.
    let later = dir.path().join("later.toml");
    std::fs::write(&later, "[store]\nurl = \"postgres://localhost/causeway\"\n").unwrap();
    let out = causeway(&["serve", "--config", later.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("[store] url configures an external store, which this version of causeway does not have yet"), "{}", text(&out));
    // Retention removes sealed segments: without sealing, it is refused with what to set.
    for (setting, says) in [
        ("segment_events = 0\nretention = \"30d\"", "sealing is off: set [store] segment_events too (100000 is recommended"),
        ("segment_events = 0\nmax_disk = \"50GiB\"", "sealing is off: set [store] segment_events too"),
        ("segment_events = 100000\nretention = \"a month\"", "[store] retention: 'a month' is not a duration"),
        ("segment_events = 100000\nmax_disk = \"50 parsecs\"", "[store] max_disk: unknown unit"),
    ] {
        std::fs::write(&later, format!("[store]\n{setting}\n")).unwrap();
        let out = causeway(&["serve", "--config", later.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
        assert!(!out.status.success() && text(&out).contains(says), "{setting}: {}", text(&out));
    }
    // A Kafka start that is neither a position nor a time is refused with what is accepted.
    let kafka = dir.path().join("kafka.toml");
    std::fs::write(&kafka, "[kafka]\nbrokers = \"127.0.0.1:9092\"\ntopics = [\"orders\"]\nstart = \"yesterday\"\n").unwrap();
    let out = causeway(&["serve", "--config", kafka.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(text(&out).contains(r#"[kafka] start must be "earliest", "latest" or an RFC 3339 time"#), "{}", text(&out));
    // The store's cache is a size with its unit.
    let cache = dir.path().join("cache.toml");
    std::fs::write(&cache, "[store]\ncache = \"64 parsecs\"\n").unwrap();
    let out = causeway(&["serve", "--config", cache.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("[store] cache: unknown unit 'parsecs' in '64 parsecs': use B, KiB, MiB, GiB, KB, MB or GB"), "{}", text(&out));
}

#[test]
fn sigterm_stops_the_server_leaving_its_database_file_whole() {
    // The documented backup: a server that stopped cleanly leaves `causeway.db` alone, the WAL
    // checkpointed into it, so copying that one file copies the store.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--model", example_model().to_str().unwrap()]);
    let body: String = (0..50).map(|i| format!("{}\n", event(&format!("t{i}"), &format!("c{i}"), None, i))).collect();
    let client = reqwest::blocking::Client::new();
    let answer: Value =
        client.post(format!("{}/v1/events", server.url)).header("content-type", "application/x-ndjson").body(body).send().unwrap().json().unwrap();
    assert_eq!(answer["accepted"], 50, "{answer}");
    assert!(data.join("causeway.db-wal").exists(), "a running store writes ahead");
    let term = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert!(server.child.wait().unwrap().success(), "SIGTERM is a clean stop");
    assert!(!data.join("causeway.db-wal").exists(), "the WAL is checkpointed and removed on a clean stop");
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(data.join("causeway.db"), copy.join("causeway.db")).unwrap();
    let restored = Server::start(&copy, &[]);
    let out = causeway(&["sql", "--server", &restored.url, "--json", "SELECT count(*) AS n FROM event_lineage"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows["rows"], json!([[50]]), "the copy holds every event: {rows}");
}

#[test]
fn help_lists_every_verb() {
    let help = text(&causeway(&["--help"]));
    for verb in ["serve", "demo", "model", "gen", "ingest", "chain", "journey", "findings", "dlq", "state", "analyze", "lag", "slo", "store", "sql"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(verb)), "{verb} missing from:\n{help}");
    }
}

#[test]
fn model_check_reports_positions_and_exit_codes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = root.join("examples/order-fulfillment/model.yaml");
    let ok = causeway(&["model", "check", example.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("model 'order-fulfillment': 5 contexts, 7 events, 4 policies, 1 journey; 0 warnings"), "{}", text(&ok));
    let broken = root.join("crates/model/tests/broken/03-unknown-references.yaml");
    let out = causeway(&["model", "check", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let printed = text(&out);
    assert!(printed.contains("03-unknown-references.yaml:8:19: error: 'when' of policy 'ship-it' names unknown event 'OrderCreatd'"), "{printed}");
    assert!(printed.contains("4 errors, 0 warnings"), "{printed}");
    let warnings = root.join("crates/model/tests/broken/13-warnings.yaml");
    assert_eq!(causeway(&["model", "check", warnings.to_str().unwrap()]).status.code(), Some(0), "warnings alone pass");
    let strict = causeway(&["model", "check", "--strict", warnings.to_str().unwrap()]);
    assert_eq!(strict.status.code(), Some(1), "--strict fails on warnings");
    let json_out = causeway(&["model", "check", "--json", broken.to_str().unwrap()]);
    let body: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(body["errors"], 4);
    assert_eq!((body["diagnostics"][0]["line"].as_u64(), body["diagnostics"][0]["column"].as_u64()), (Some(5), Some(27)));
}

/// Every file under `dir`, as bytes.
fn all_bytes(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn example_model() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment/model.yaml")
}

/// PII pointers are replaced by a keyed hash before anything is written: no raw value is anywhere
/// in the data directory, whether the event was accepted, flagged or refused.
#[test]
fn no_raw_pii_reaches_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--model", example_model().to_str().unwrap()]);
    let canary = |n: u32| format!("pii-canary-{n}@example.com");
    let order = |id: &str, email: String| {
        json!({"specversion": "1.0", "id": id, "source": "order-service", "type": "OrderCreated",
        "time": "2026-11-23T10:00:00Z", "correlationid": "c-pii", "subject": "ord-9",
        "data": {"orderId": "ord-9", "customerEmail": email, "amount": 5, "currency": "EUR"}})
    };
    let mut refused = order("p3", canary(3));
    refused.as_object_mut().unwrap().remove("correlationid");
    let mut invalid = order("p4", canary(4));
    invalid["data"]["amount"] = json!(-1);
    let shipment = json!({"specversion": "1.0", "id": "p5", "source": "fulfilment-service", "type": "ShipmentCreated",
        "time": "2026-11-23T10:00:01Z", "correlationid": "c-pii", "data": {"orderId": "ord-9", "carrier": "DHL", "customerEmail": canary(5)}});
    let metadata_shape = json!({"metadata": {"eventId": "p6", "eventType": "OrderCreated", "timestamp": "2026-11-23T10:00:02Z",
        "source": "order-service"}, "payload": {"orderId": "ord-9", "customerEmail": canary(6)}});
    let client = reqwest::blocking::Client::new();
    let batch = json!([order("p1", canary(1)), order("p2", canary(1)), refused, invalid, shipment, metadata_shape]);
    let answer: Value = client.post(format!("{}/v1/events", server.url)).json(&batch).send().unwrap().json().unwrap();
    assert_eq!((answer["accepted"].as_u64(), answer["rejected"].as_u64()), (Some(4), Some(2)), "{answer}");
    // Binary mode: the body is the payload.
    let binary = client
        .post(format!("{}/v1/events", server.url))
        .header("ce-specversion", "1.0")
        .header("ce-id", "p7")
        .header("ce-source", "order-service")
        .header("ce-type", "OrderCreated")
        .header("ce-time", "2026-11-23T10:00:03Z")
        .header("ce-correlationid", "c-pii")
        .header("content-type", "application/json")
        .body(json!({"orderId": "ord-9", "customerEmail": canary(7), "amount": 1, "currency": "EUR"}).to_string())
        .send()
        .unwrap();
    assert_eq!(binary.status(), 200);
    // Equal values still correlate: the same hash for the same address.
    let rows: Value = client
        .post(format!("{}/v1/sql", server.url))
        .json(&json!({"query": "SELECT json_extract(envelope, '$.data.customerEmail') FROM events WHERE event_id IN ('p1', 'p2')"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let hashes = rows["rows"].as_array().unwrap();
    assert_eq!(hashes.len(), 2);
    assert_eq!(hashes[0], hashes[1]);
    assert!(hashes[0][0].as_str().unwrap().starts_with("hmac-sha256:"));
    server.kill();
    let files = all_bytes(&data);
    assert!(files.iter().any(|(p, _)| p.ends_with("causeway.db-wal") || p.ends_with("causeway.db")));
    for n in 1..=7 {
        let needle = canary(n);
        for (path, bytes) in &files {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "raw PII {needle} found in {}", path.display());
        }
    }
}

/// SIGHUP reloads the model: a broken one is refused (logged) and the running one stays.
#[test]
fn sighup_reloads_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let example = example_model();
    for f in ["model.yaml", "notification.yaml"] {
        std::fs::copy(example.parent().unwrap().join(f), dir.path().join(f)).unwrap();
    }
    let model = dir.path().join("model.yaml");
    // Under nohup SIGHUP starts out ignored, as in a service started that way (or a CI runner):
    // a signal that comes before the server's handler is then lost without a trace, so the first
    // one goes right after the server says it listens.
    let mut child = Command::new("nohup")
        .arg(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--model")
        .arg(&model)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap().replace("causeway listening on ", "");
    let log = LogLines::new(child.stderr.take().unwrap());
    let good = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, good.replace("name: order-fulfillment", "name: order-fulfillment\nbogus: 1")).unwrap();
    let hup = |pid: u32| assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    hup(child.id());
    let refused = log.until("model reload refused");
    assert!(refused.contains("unknown key 'bogus'"), "{refused}");
    std::fs::write(&model, good.replace("name: order-fulfillment", "name: order-fulfillment-v2")).unwrap();
    hup(child.id());
    let reloaded = log.until("model reloaded");
    assert!(reloaded.contains("order-fulfillment-v2"), "{reloaded}");
    let current: Value = reqwest::blocking::get(format!("{url}/v1/model")).unwrap().json().unwrap();
    assert_eq!(current["name"], "order-fulfillment-v2");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A child's log lines, read on a thread, so that a line that never comes fails the test after a
/// minute instead of hanging it.
struct LogLines(mpsc::Receiver<String>);

impl LogLines {
    fn new(from: impl std::io::Read + Send + 'static) -> LogLines {
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        LogLines(lines)
    }

    /// The first line from now on that contains `needle`.
    fn until(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?} within a minute ({e})"),
            }
        }
    }
}

/// A log of simulated order-fulfilment traffic with every fault, stamped in January 2026 (long
/// before the wall clock), with pauses between bursts so that some reactions come late.
fn simulated_log(path: &Path, batches: usize) {
    use causeway_sim::{SimConfig, Simulator};
    let mut sim = Simulator::new(SimConfig { seed: 7, fault_rate: 0.1, concurrency: 40 });
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-05T09:00:00Z").unwrap().to_utc();
    let mut out = String::new();
    let mut at = base;
    for k in 0..batches {
        for d in sim.next_batch(250, at) {
            out.push_str(&d.event.to_string());
            out.push('\n');
        }
        at += chrono::TimeDelta::seconds(if k % 3 == 2 { 45 } else { 1 });
    }
    std::fs::write(path, out).unwrap();
}

fn get_json(url: &str) -> Value {
    let response = reqwest::blocking::get(url).unwrap();
    assert!(response.status().is_success(), "{url}: {}", response.status());
    response.json().unwrap()
}

/// A stored finding: id, kind, journey key, detected at, resolved at.
type FindingRow = (i64, String, Option<String>, String, Option<String>);

fn findings_table(data: &Path) -> Vec<FindingRow> {
    let db = causeway_store::open_read_only(data).unwrap();
    db.prepare("SELECT id, kind, journey_key, detected_at, resolved_at FROM findings ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn analyze_digest(log: &Path, clock: &str) -> (String, Value) {
    let model = example_model();
    let out = causeway(&["analyze", log.to_str().unwrap(), "--model", model.to_str().unwrap(), "--clock", clock, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    (report["digest"].as_str().unwrap().to_string(), report)
}

/// Journeys and findings after SIGKILL and restart are exactly those before (same digest, same
/// stored findings with the same ids), and `causeway analyze` on the same events agrees — on the
/// wall clock (the backfill judged as of now) and on the event clock.
#[test]
fn journeys_survive_sigkill_and_match_analyze() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");
    simulated_log(&log, 24);
    let model = example_model();
    for clock in ["wall", "event"] {
        let data = dir.path().join(format!("data-{clock}"));
        let flags = ["--model", model.to_str().unwrap(), "--clock", clock];
        let server = Server::start(&data, &flags);
        let out = causeway(&["ingest", log.to_str().unwrap(), "--batch", "500", "--server", &server.url]);
        assert!(text(&out).contains("accepted"), "{}", text(&out));
        let before = get_json(&format!("{}/v1/journeys/summary?digest=true", server.url));
        let stored_before = findings_table(&data);
        server.kill();

        let server = Server::start(&data, &flags);
        let after = get_json(&format!("{}/v1/journeys/summary?digest=true", server.url));
        assert_eq!(after["digest"], before["digest"], "{clock} clock: before {before:#}\nafter {after:#}");
        assert_eq!(after["journeys_by_state"], before["journeys_by_state"]);
        assert_eq!(findings_table(&data), stored_before, "{clock} clock: stored findings rewritten in place");

        let (digest, report) = analyze_digest(&log, clock);
        assert_eq!(digest, before["digest"].as_str().unwrap(), "{clock} clock: analyze {report:#}\nserver {before:#}");
        assert_eq!(report["journeys_by_state"], before["journeys_by_state"]);
        // Both write a finding in the one JSON form, field for field.
        let listed = get_json(&format!("{}/v1/findings?kind=duplicate&limit=1", server.url));
        let fields = |f: &Value| f.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
        let analyzed = report["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "duplicate").unwrap();
        assert_eq!(fields(analyzed), fields(&listed["findings"][0]), "{clock} clock: analyze {analyzed:#}\nserver {listed:#}");
        assert!(fields(analyzed).unwrap().contains(&"rule".to_string()));
        // The simulator's faults surface as findings.
        for kind in ["duplicate", "out_of_order", "missing_reaction"] {
            assert!(before["findings_by_kind"][kind].is_object(), "{clock} clock: no {kind} in {before:#}");
        }
        server.kill();
    }
}

/// `causeway journey` and `causeway findings` against a server, human and JSON.
#[test]
fn journey_and_findings_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.ndjson");
    simulated_log(&log, 4);
    let model = example_model();
    let server = Server::start(&dir.path().join("data"), &["--model", model.to_str().unwrap()]);
    causeway(&["ingest", log.to_str().unwrap(), "--server", &server.url]);
    let out = causeway(&["findings", "--kind", "missing_reaction", "--open", "--json", "--server", &server.url]);
    assert!(out.status.success(), "{}", text(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &listed["findings"][0];
    let key = first["key"].as_str().unwrap_or_else(|| panic!("an open missing reaction: {listed:#}"));
    let out = causeway(&["journey", "order", key, "--server", &server.url]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains(&format!("order {key}")) && shown.contains("milestones reached") && shown.contains("missing_reaction [OPEN]"), "{shown}");
    let out = causeway(&["journey", "order", "no-such-order", "--server", &server.url]);
    assert!(!out.status.success() && text(&out).contains("no 'order' journey has the key 'no-such-order'"), "{}", text(&out));
    let out = causeway(&["findings", "--open", "--limit", "10000", "--server", &server.url]);
    assert!(text(&out).contains("missing_reaction"), "{}", text(&out));
    let out = causeway(&["findings", "--kind", "nonsense", "--server", &server.url]);
    assert!(!out.status.success() && text(&out).contains("unknown finding kind"), "{}", text(&out));
}

#[test]
fn dlq_and_state_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let (target, received) = common::receiver("/replay");
    let config = dir.path().join("causeway.toml");
    std::fs::write(&config, format!("[consumers.notification-service]\nreplay_url = {target:?}\n")).unwrap();
    let model = example_model();
    let server = Server::start(&dir.path().join("data"), &["--model", model.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    let order = |n: u32, ty: &str, source: &str, data: Value| {
        json!({"specversion": "1.0", "id": format!("c1-{n}"), "source": source, "type": ty, "time": format!("2026-11-23T10:00:0{n}Z"),
               "correlationid": "corr-c1", "data": data})
    };
    let created = order(1, "OrderCreated", "order-service", json!({"orderId": "c1", "customerEmail": "a@b.c", "amount": 5, "currency": "EUR"}));
    let paid = order(2, "PaymentProcessed", "payment-service", json!({"orderId": "c1", "amount": 5}));
    let shipped = order(3, "ShipmentCreated", "fulfilment-service", json!({"orderId": "c1", "carrier": "ups"}));
    let client = reqwest::blocking::Client::new();
    let answer = client.post(format!("{}/v1/events", server.url)).json(&json!([created, paid, shipped])).send().unwrap();
    assert!(answer.status().is_success());
    let report = json!({"event": shipped, "consumer": "notification-service", "source_topic": "shipments",
                        "error_type": "KeyError", "error_message": "'customerEmail'"});
    let answer: Value = client.post(format!("{}/v1/dlq", server.url)).json(&report).send().unwrap().json().unwrap();
    let id = answer["id"].as_i64().unwrap().to_string();
    let s = server.url.as_str();

    let out = causeway(&["dlq", "list", "--consumer", "notification-service", "--server", s]);
    assert!(out.status.success() && text(&out).contains("KeyError") && text(&out).contains("1 record"), "{}", text(&out));
    let out = causeway(&["dlq", "list", "-q", "customerEmail", "--json", "--server", s]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["records"][0]["id"].to_string(), id);
    let out = causeway(&["dlq", "show", &id, "--server", s]);
    let shown = text(&out);
    assert!(
        shown.contains("KeyError: 'customerEmail'")
            && shown.contains(&format!("replay target: {target}"))
            && shown.contains("causation chain (3 events)"),
        "{shown}"
    );

    let out = causeway(&["dlq", "replay", &id, "--dry-run", "--server", s]);
    assert!(out.status.success() && text(&out).contains("would be sent"), "{}", text(&out));
    assert!(received.try_recv().is_err(), "a dry run sends nothing");
    let out = causeway(&["dlq", "replay", &id, "--actor", "ana", "--server", s]);
    assert!(out.status.success() && text(&out).contains("status replayed"), "{}", text(&out));
    let body: Value = serde_json::from_slice(&received.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(body, shipped, "the original event");
    let out = causeway(&["dlq", "replay", &id, "--server", s]);
    assert!(!out.status.success() && text(&out).contains("force"), "{}", text(&out));
    let out = causeway(&["dlq", "replay", "--server", s]);
    assert!(!out.status.success() && text(&out).contains("--all"), "{}", text(&out));
    let out = causeway(&["dlq", "summary", "--server", s]);
    assert!(out.status.success() && text(&out).contains("pending: 0") && text(&out).contains("replayed 1"), "{}", text(&out));
    let out = causeway(&["dlq", "resolve", &id, "--reason", "customer e-mailed by hand", "--server", s]);
    assert!(out.status.success(), "{}", text(&out));
    let out = causeway(&["dlq", "discard", &id, "--reason", "too late", "--server", s]);
    assert!(!out.status.success() && text(&out).contains("already resolved"), "{}", text(&out));

    let out = causeway(&["state", "Order", "c1", "--at", "c1-2", "--server", s]);
    let shown = text(&out);
    assert!(out.status.success() && shown.contains("\"status\": \"paid\"") && !shown.contains("carrier"), "{shown}");
    let out = causeway(&["state", "Order", "c1", "--json", "--server", s]);
    let now: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(now["state"]["carrier"], "ups");

    // A replay target that is not plain HTTP is refused at start-up, with the fix.
    std::fs::write(&config, "[consumers.x]\nreplay_url = \"https://x.example/replay\"\n").unwrap();
    let out =
        causeway(&["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0", "--data", dir.path().join("other").to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("replay targets are http://"), "{}", text(&out));
}
