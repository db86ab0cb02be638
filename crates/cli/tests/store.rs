//! `causeway store stats` against a real server whose store seals small segments
//! (`[store] segment_events = 1000`): the summary, the segments table and the ratio, `--json` as
//! `GET /v1/store` answers it, and every ingested event counted once.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{BIN, Server, get, stored};
use serde_json::{Value, json};

/// Events ingested: enough for at least two segments of 1,000 beside the half segment kept hot.
const EVENTS: usize = 4000;

fn causeway(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("CAUSEWAY_SERVER").output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `bytes` of `store.rs`, restated: the table's sizes as the test expects to read them.
fn human(n: u64) -> String {
    let units = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let (mut value, mut unit) = (n as f64 / 1024.0, 0);
    while value >= 1023.95 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

/// An order's four events, a tenth of a second apart, each order a second after the last.
fn events() -> String {
    let mut out = String::new();
    for i in 0..EVENTS {
        let (order, step) = (i / 4, i % 4);
        let ty = ["OrderCreated", "PaymentProcessed", "InventoryReserved", "ShipmentCreated"][step];
        let micros = (order as i64) * 1_000_000 + (step as i64) * 100_000;
        let time = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap() + chrono::Duration::microseconds(micros);
        let mut e = json!({"specversion": "1.0", "id": format!("ord-{order:05}-{step}"), "source": "order-service", "type": ty,
                           "time": time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), "correlationid": format!("corr-{order:05}"),
                           "subject": format!("ord-{order:05}"),
                           "data": {"orderId": format!("ord-{order:05}"), "amount": order % 97, "currency": "EUR", "note": "x".repeat(order % 40)}});
        if step > 0 {
            e["causationid"] = json!(format!("ord-{order:05}-{}", step - 1));
        }
        out.push_str(&e.to_string());
        out.push('\n');
    }
    out
}

#[test]
fn store_stats_shows_sealed_segments_and_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("causeway.toml");
    std::fs::write(&config, "[store]\nsegment_events = 1000\n").unwrap();
    let server = Server::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let s = server.url.as_str();

    // Nothing stored: the summary says so, and the JSON has no ratio.
    let out = causeway(&["store", "stats", "--server", s]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("events:  0 events (") && said.contains(" 0 sealed in 0 segments of 1000 events; log end 0)"), "{said}");
    assert!(said.contains("no segment sealed yet"), "{said}");
    assert_eq!(get(&format!("{s}/v1/store"))["disk_ratio"], Value::Null);

    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, events()).unwrap();
    let out = causeway(&["ingest", file.to_str().unwrap(), "--json", "--server", s]);
    assert!(out.status.success(), "{}", text(&out));
    let ingested: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ingested["accepted"], EVENTS, "{ingested}");

    // The sealer works behind the writer: wait for two segments, then for the answer to hold
    // still across the CLI's two calls (segments only grow, so equal answers before and after
    // mean the calls between saw the same store).
    let deadline = Instant::now() + Duration::from_secs(90);
    let (human_out, cli_json, stats) = loop {
        let before = get(&format!("{s}/v1/store"));
        if before["segments"].as_array().is_some_and(|g| g.len() >= 2) {
            let shown = causeway(&["store", "stats", "--server", s]);
            let as_json = causeway(&["store", "stats", "--json", "--server", s]);
            assert!(shown.status.success() && as_json.status.success(), "{}{}", text(&shown), text(&as_json));
            let after = get(&format!("{s}/v1/store"));
            if before == after {
                break (String::from_utf8(shown.stdout).unwrap(), serde_json::from_slice::<Value>(&as_json.stdout).unwrap(), after);
            }
        }
        assert!(Instant::now() < deadline, "no two segments sealed in time: {before}");
        std::thread::sleep(Duration::from_millis(100));
    };

    // --json is the server's answer as it is.
    assert_eq!(cli_json, stats);

    // Every ingested event is counted once, hot or sealed.
    let n = |v: &Value| v.as_u64().unwrap();
    assert_eq!(n(&stats["events"]), EVENTS as u64, "{stats}");
    assert_eq!(n(&stats["log_end"]), EVENTS as u64, "no redelivery was sent: {stats}");
    assert_eq!(n(&stats["hot_events"]) + n(&stats["sealed_events"]), EVENTS as u64, "{stats}");
    assert_eq!(stored(s), EVENTS as u64, "the SQL views agree");
    assert_eq!(n(&stats["segment_events"]), 1000);
    let segments = stats["segments"].as_array().unwrap();
    assert_eq!(segments.iter().map(|g| n(&g["events"])).sum::<u64>(), n(&stats["sealed_events"]));
    assert!(segments.iter().all(|g| n(&g["events"]) == 1000), "{stats}");
    assert_eq!(n(&segments[0]["first_seq"]), 1);
    for pair in segments.windows(2) {
        assert_eq!(n(&pair[1]["first_seq"]), n(&pair[0]["last_seq"]) + 1, "segments follow each other: {stats}");
    }
    assert_eq!(n(&stats["sealed_upto"]), n(&segments.last().unwrap()["last_seq"]));
    assert_eq!(n(&stats["disk_bytes"]), n(&stats["database_bytes"]) + n(&stats["segment_bytes"]));
    assert_eq!(n(&stats["segment_bytes"]), segments.iter().map(|g| n(&g["file_bytes"])).sum::<u64>());
    let ratio = stats["disk_ratio"].as_f64().unwrap();
    assert!((ratio - n(&stats["disk_bytes"]) as f64 / n(&stats["raw_bytes"]) as f64).abs() < 1e-9, "{stats}");
    assert!(stats["oldest_time"].as_str().unwrap().starts_with("2026-11-23T10:00:00"), "{stats}");
    assert_eq!(stats["oldest_received_at"], segments[0]["min_received_at"]);

    // The summary: counts, sizes with the ratio, the oldest times.
    let summary = format!(
        "events:  {EVENTS} events ({} hot, {} sealed in {} segments of 1000 events; log end {EVENTS})",
        stats["hot_events"],
        stats["sealed_events"],
        segments.len()
    );
    assert!(human_out.contains(&summary), "{summary}\nnot in\n{human_out}");
    let size = format!(
        "size:    {} as received, {} on disk, ratio {ratio:.2} (database {}, segments {})",
        human(n(&stats["raw_bytes"])),
        human(n(&stats["disk_bytes"])),
        human(n(&stats["database_bytes"])),
        human(n(&stats["segment_bytes"]))
    );
    assert!(human_out.contains(&size), "{size}\nnot in\n{human_out}");
    let oldest =
        format!("oldest:  event time {}, received {}", stats["oldest_time"].as_str().unwrap(), stats["oldest_received_at"].as_str().unwrap());
    assert!(human_out.contains(&oldest), "{oldest}\nnot in\n{human_out}");

    // The table: a row per segment with its file, seqs, events, time range, sizes and ratio.
    let header = human_out.lines().find(|l| l.contains("file")).unwrap_or_else(|| panic!("no table header:\n{human_out}"));
    for column in ["file", "seqs", "events", "time range (UTC)", "raw", "on disk", "ratio"] {
        assert!(header.contains(column), "{column} missing from {header}");
    }
    for g in segments {
        let file = g["file"].as_str().unwrap();
        let row = human_out.lines().find(|l| l.contains(file)).unwrap_or_else(|| panic!("no row for {file}:\n{human_out}"));
        let cells: Vec<&str> = row.split(['│', '┆']).map(str::trim).filter(|c| !c.is_empty()).collect();
        let (raw, on_disk) = (n(&g["raw_bytes"]), n(&g["file_bytes"]));
        let expected = [
            file.to_string(),
            format!("{}–{}", g["first_seq"], g["last_seq"]),
            "1000".to_string(),
            // Every event is on 2026-11-23: the date once, times to the second.
            format!("2026-11-23 {} – {}", &g["min_time"].as_str().unwrap()[11..19], &g["max_time"].as_str().unwrap()[11..19]),
            human(raw),
            human(on_disk),
            format!("{:.2}", on_disk as f64 / raw as f64),
        ];
        assert_eq!(cells, expected, "{row}");
        assert!(on_disk < raw, "a segment is compressed: {g}");
    }
}

/// A model whose journeys end when `Finished` comes.
const FLOW_MODEL: &str = r#"
name: flow
contexts:
  a: {owner: team-a, services: [svc-a]}
events:
  Started: {context: a, schema: {type: object, required: [id], properties: {id: {type: string}}}}
  Finished: {context: a, schema: {type: object, required: [id], properties: {id: {type: string}}}}
journeys:
  flow:
    key: /id
    milestones: [Started, Finished]
    outcomes:
      finished: [Finished]
"#;

/// Retention with the journey engine: once every sealed segment is due (`max_disk` below anything),
/// the events of journeys still in flight stay, in a kept segment, and those of finished ones go.
#[test]
fn retention_keeps_the_events_of_journeys_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let (config, model) = (dir.path().join("causeway.toml"), dir.path().join("flow.yaml"));
    std::fs::write(&config, "[store]\nsegment_events = 1000\nmax_disk = \"1B\"\n").unwrap();
    std::fs::write(&model, FLOW_MODEL).unwrap();
    let server = Server::start(&dir.path().join("data"), &["--config", config.to_str().unwrap(), "--model", model.to_str().unwrap()]);
    let s = server.url.as_str();
    // 1,500 journeys: each started, then finished, but for j-7 and j-8, left in flight.
    let mut lines = String::new();
    for j in 0..1500 {
        for (ty, second) in [("Started", 0), ("Finished", 1)] {
            if ty == "Finished" && (j == 7 || j == 8) {
                continue;
            }
            let e = json!({"specversion": "1.0", "id": format!("{ty}-{j}"), "source": "svc-a", "type": ty,
                           "time": format!("2026-11-23T10:{:02}:{:02}Z", j / 30, (j % 30) * 2 + second), "correlationid": format!("c-{j}"),
                           "data": {"id": format!("j-{j}")}});
            lines.push_str(&format!("{e}\n"));
        }
    }
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, lines).unwrap();
    let out = causeway(&["ingest", file.to_str().unwrap(), "--json", "--server", s]);
    let ingested: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ingested["accepted"], 2998, "{}", &text(&out)[..text(&out).len().min(2000)]);
    // 2,998 events: the first 2,000 sealed, then removed but for what is kept.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        let stats = get(&format!("{s}/v1/store"));
        let segments = stats["segments"].as_array().unwrap();
        if stats["sealed_upto"].as_i64() >= Some(2000) && segments.len() == 1 && segments[0]["file"].as_str().unwrap().contains(".kept-") {
            break stats;
        }
        assert!(Instant::now() < deadline, "retention did not remove the sealed history: {stats}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(stats["segments"][0]["events"], 2, "the two open journeys' events: {stats}");
    for (id, kept) in [("Started-7", true), ("Started-8", true), ("Started-9", false), ("Finished-9", false), ("Started-0", false)] {
        let status = reqwest::blocking::get(format!("{s}/v1/events/{id}")).unwrap().status();
        assert_eq!(status.is_success(), kept, "{id}: {status}");
    }
    let journey = get(&format!("{s}/v1/journeys/flow/j-7"));
    assert_eq!(journey["state"], "in_flight", "{journey}");
}
