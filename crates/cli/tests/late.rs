//! Late evidence judged right (PRODUCT §4): a live server on the default clock (watermarks per
//! source, with idleness) ends with the journeys and findings that `causeway analyze` computes
//! offline from the same events sorted by event time — whether the evidence arrives in one late
//! batch, as each producer's own stream interleaved with the others, or live with one producer
//! a quarter of an hour behind — apart from the `out_of_order` findings, which record a delivery
//! order. A restart in the middle changes nothing, and a journey that stops while nothing arrives
//! is still flagged on time.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{BIN, Server};
use serde_json::{Value, json};

fn example_model() -> String {
    format!("{}/../../examples/order-fulfillment/model.yaml", env!("CARGO_MANIFEST_DIR"))
}

/// Longer than any delivery below takes (and a restart in the middle of one), so no producer
/// goes idle while it still has evidence to send; the servers are judged once all are idle.
const IDLE_AFTER: &str = "15s";

fn traffic(seed: u64) -> Vec<Value> {
    common::traffic(seed)
}

fn source_of(e: &Value) -> &str {
    e["source"].as_str().or(e["metadata"]["source"].as_str()).expect("a source")
}

fn time_of(e: &Value) -> DateTime<Utc> {
    let text = e["time"].as_str().or(e["metadata"]["timestamp"].as_str()).expect("a time");
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// Each producer's events in its time order, producers in the order they first appear.
fn streams(events: &[Value]) -> Vec<Vec<Value>> {
    let mut by_source: Vec<(String, Vec<Value>)> = Vec::new();
    for e in events {
        match by_source.iter_mut().find(|(s, _)| s == source_of(e)) {
            Some((_, list)) => list.push(e.clone()),
            None => by_source.push((source_of(e).to_owned(), vec![e.clone()])),
        }
    }
    by_source
        .into_iter()
        .map(|(_, mut list)| {
            list.sort_by_key(time_of);
            list
        })
        .collect()
}

/// SplitMix64, for batch sizes and interleavings that are random but the same every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

fn serve(data: &Path) -> Server {
    Server::start(data, &["--model", &example_model(), "--idle-after", IDLE_AFTER, "--max-batch-events", "100000"])
}

fn post(url: &str, events: &[Value]) {
    if events.is_empty() {
        return;
    }
    let answer = common::client().post(format!("{url}/v1/events")).json(&Value::Array(events.to_vec())).send().unwrap();
    let status = answer.status();
    let body: Value = answer.json().unwrap();
    assert!(status.is_success(), "{status}: {body}");
    let counted = ["accepted", "duplicates", "rejected"].iter().map(|k| body[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(counted, events.len() as u64, "{body}");
}

fn get(url: &str) -> Value {
    let answer = common::client().get(url).send().unwrap();
    assert!(answer.status().is_success(), "{url}: {}", answer.status());
    answer.json().unwrap()
}

/// Waits until every source is idle, so the server's clock follows the wall clock and every
/// deadline up to now has been judged.
fn wait_until_all_idle(url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let clock = get(&format!("{url}/v1/clock"));
        assert_eq!(clock["mode"], "watermark", "{clock}");
        let sources = clock["sources"].as_array().unwrap();
        if !sources.is_empty() && sources.iter().all(|s| s["idle"] == true) {
            return clock;
        }
        assert!(Instant::now() < deadline, "sources still active after 180 s: {clock}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A finding as both sides can name it: everything but its id and its wording.
fn canonical(f: &Value) -> String {
    json!([f["kind"], f["journey"], f["key"], f["event_id"], f["expected"], f["rule"], f["detected_at"], f["resolved_at"]]).to_string()
}

/// The journey engine's findings (not the contracts' nor `out_of_order`), canonical.
fn engine_findings(findings: &[Value]) -> BTreeSet<String> {
    const ENGINE: [&str; 6] = ["missing_reaction", "invariant_violation", "stalled", "deadline_missed", "duplicate", "duplicate_effect"];
    findings.iter().filter(|f| ENGINE.contains(&f["kind"].as_str().unwrap_or_default())).map(canonical).collect()
}

struct Verdict {
    findings: BTreeSet<String>,
    by_state: BTreeMap<String, u64>,
}

/// `causeway analyze --until now` over the events sorted by event time.
fn offline(dir: &Path, events: &[Value]) -> Verdict {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(time_of);
    let log = dir.join("sorted.ndjson");
    std::fs::write(&log, sorted.iter().map(|e| format!("{e}\n")).collect::<String>()).unwrap();
    let output = Command::new(BIN).arg("analyze").arg(&log).args(["--model", &example_model(), "--until", "now", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    Verdict {
        findings: engine_findings(json["findings"].as_array().unwrap()),
        by_state: json["journeys_by_state"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect(),
    }
}

fn live(url: &str) -> Verdict {
    wait_until_all_idle(url);
    let findings = get(&format!("{url}/v1/findings?limit=10000"));
    let summary = get(&format!("{url}/v1/journeys/summary"));
    Verdict {
        findings: engine_findings(findings["findings"].as_array().unwrap()),
        by_state: summary["journeys_by_state"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect(),
    }
}

fn assert_same(what: &str, live: &Verdict, offline: &Verdict) {
    let only_live: Vec<&String> = live.findings.difference(&offline.findings).collect();
    let only_offline: Vec<&String> = offline.findings.difference(&live.findings).collect();
    assert!(
        only_live.is_empty() && only_offline.is_empty(),
        "{what}: the live server and the offline analysis disagree\nonly live ({}): {:#?}\nonly offline ({}): {:#?}",
        only_live.len(),
        only_live.iter().take(15).collect::<Vec<_>>(),
        only_offline.len(),
        only_offline.iter().take(15).collect::<Vec<_>>()
    );
    assert_eq!(live.by_state, offline.by_state, "{what}: journeys by state");
    // The traffic is meant to break the model: the comparison covers real findings.
    let kinds: BTreeSet<String> =
        offline.findings.iter().map(|f| serde_json::from_str::<Value>(f).unwrap()[0].as_str().unwrap().to_owned()).collect();
    for kind in ["missing_reaction", "stalled", "deadline_missed", "duplicate"] {
        assert!(kinds.contains(kind), "{what}: the traffic raised no {kind}: {kinds:?}");
    }
}

#[test]
fn a_late_batch_is_judged_as_the_offline_analysis_judges_it() {
    let dir = tempfile::tempdir().unwrap();
    let events = traffic(11);
    let server = serve(&dir.path().join("data"));
    post(&server.url, &events);
    assert_same("one late batch", &live(&server.url), &offline(dir.path(), &events));
}

/// Every producer's stream in its time order, interleaved in batches of random size.
fn interleaved(events: &[Value], seed: u64) -> Vec<Vec<Value>> {
    let mut streams: Vec<std::collections::VecDeque<Value>> = streams(events).into_iter().map(Into::into).collect();
    let mut rng = Rng(seed);
    let mut batches = Vec::new();
    while streams.iter().any(|s| !s.is_empty()) {
        let open: Vec<usize> = (0..streams.len()).filter(|&i| !streams[i].is_empty()).collect();
        let s = &mut streams[open[rng.below(open.len())]];
        let n = 1 + rng.below(40);
        batches.push(s.drain(..n.min(s.len())).collect());
    }
    batches
}

#[test]
fn producers_streams_interleaved_are_judged_as_the_offline_analysis_judges_them_and_a_restart_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let events = traffic(12);
    let batches = interleaved(&events, 7);
    let (whole_data, broken_data) = (dir.path().join("whole"), dir.path().join("broken"));
    let whole = serve(&whole_data);
    let mut broken = serve(&broken_data);
    let half = batches.len() / 2;
    for (i, batch) in batches.iter().enumerate() {
        post(&whole.url, batch);
        if i == half {
            // kill -9 in the middle, then a restart on the same data.
            broken.kill();
            broken = serve(&broken_data);
        }
        post(&broken.url, batch);
    }
    let digest = |url: &str| get(&format!("{url}/v1/journeys/summary?digest=true"))["digest"].clone();
    assert_eq!(digest(&whole.url), digest(&broken.url), "right after the delivery, with every producer still active");
    let verdict = live(&whole.url);
    assert_same("interleaved streams", &verdict, &offline(dir.path(), &events));
    wait_until_all_idle(&broken.url);
    assert_eq!(digest(&whole.url), digest(&broken.url), "once every producer is idle");
}

#[test]
fn live_producers_with_one_a_quarter_of_an_hour_behind_are_judged_as_the_offline_analysis_judges_them() {
    let dir = tempfile::tempdir().unwrap();
    let events = traffic(13);
    let server = serve(&dir.path().join("data"));
    let mut streams: Vec<(String, std::collections::VecDeque<Value>)> =
        streams(&events).into_iter().map(|s| (source_of(&s[0]).to_owned(), s.into())).collect();
    let behind = chrono::Duration::minutes(15);
    let (first, last) = (events.iter().map(time_of).min().unwrap(), events.iter().map(time_of).max().unwrap());
    // Live: every 30 s of event time each producer sends what it has up to then, payment-service
    // what it had a quarter of an hour earlier; at the end it catches up.
    let mut now = first;
    let delivering = Instant::now();
    while now <= last + behind {
        for (source, stream) in &mut streams {
            let upto = if source == "payment-service" { now - behind } else { now };
            let n = stream.iter().take_while(|e| time_of(e) <= upto).count();
            let batch: Vec<Value> = stream.drain(..n).collect();
            post(&server.url, &batch);
        }
        now += chrono::Duration::seconds(30);
    }
    for (_, stream) in &mut streams {
        let rest: Vec<Value> = stream.drain(..).collect();
        post(&server.url, &rest);
    }
    // payment-service's first batch comes a quarter of an hour of event time after the others':
    // were the delivery slower than `IDLE_AFTER` up to there, it would go idle first.
    eprintln!("live delivery took {:?}", delivering.elapsed());
    assert_same("one producer behind", &live(&server.url), &offline(dir.path(), &events));
}

/// A model with windows of seconds: a policy expecting `Reacted` from svc-b within 2 s of
/// `Started`, and a journey that stalls 3 s after its latest milestone.
const SHORT_MODEL: &str = r#"
name: short-windows
contexts:
  a: {owner: team-a, services: [svc-a]}
  b: {owner: team-b, services: [svc-b]}
events:
  Started: {context: a, schema: {type: object, required: [id], properties: {id: {type: string}}}}
  Reacted: {context: b, schema: {type: object, required: [id], properties: {id: {type: string}}}}
  Finished: {context: a, schema: {type: object, required: [id], properties: {id: {type: string}}}}
policies:
  react: {when: Started, then: [Reacted], within: 2s}
journeys:
  flow:
    key: /id
    milestones: [Started, Reacted, Finished]
    outcomes:
      finished: [Finished]
    stall_after: 3s
"#;

#[test]
fn a_journey_that_stops_while_nothing_arrives_is_flagged_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("short.yaml");
    std::fs::write(&model, SHORT_MODEL).unwrap();
    let (idle, lateness) = (2.0, 1.0);
    let server = Server::start(&dir.path().join("data"), &["--model", model.to_str().unwrap(), "--idle-after", "2s", "--allowed-lateness", "1s"]);
    // Milliseconds, as producers stamp them: the finding's time is compared exactly below.
    let started = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let event = json!({"specversion": "1.0", "id": "e-1", "source": "svc-a", "type": "Started", "time": started.to_rfc3339(),
                       "correlationid": "c-1", "data": {"id": "j-1"}});
    post(&server.url, &[event]);
    let sent = Instant::now();
    let mut seen: BTreeMap<String, f64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "not flagged within 30 s: {seen:?}");
        for f in get(&format!("{}/v1/findings?journey=flow", server.url))["findings"].as_array().unwrap() {
            let kind = f["kind"].as_str().unwrap().to_owned();
            if let std::collections::btree_map::Entry::Vacant(slot) = seen.entry(kind.clone()) {
                // Judged in event time: the deadline itself, whenever the clock noticed it.
                let due = if kind == "missing_reaction" { 2 } else { 3 };
                assert_eq!(f["detected_at"].as_str().map(|t| time_of(&json!({"time": t}))), Some(started + chrono::Duration::seconds(due)), "{f}");
                slot.insert(sent.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (within, stall_after) = (2.0, 3.0);
    assert!(seen["missing_reaction"] <= within + idle + 1.0, "missing reaction flagged after {:.2} s: {seen:?}", seen["missing_reaction"]);
    assert!(seen["stalled"] <= stall_after + idle + 1.0, "stall flagged after {:.2} s: {seen:?}", seen["stalled"]);
    // Neither before its deadline plus the allowed lateness.
    assert!(seen["missing_reaction"] >= within + lateness - 0.5, "{seen:?}");
}

/// An event stamped before the clock when it arrives is late: applied by its event time all the
/// same, and counted per source in `GET /v1/clock` and on `/metrics` (which promtool accepts).
#[test]
fn late_events_are_counted_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("short.yaml");
    std::fs::write(&model, SHORT_MODEL).unwrap();
    let server = Server::start(&dir.path().join("data"), &["--model", model.to_str().unwrap(), "--idle-after", "1h", "--allowed-lateness", "0s"]);
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let started = |id: &str, key: &str, time: DateTime<Utc>, source: &str| {
        json!({"specversion": "1.0", "id": id, "source": source, "type": if source == "svc-a" { "Started" } else { "Reacted" },
               "time": time.to_rfc3339(), "correlationid": format!("c-{key}"), "data": {"id": key}})
    };
    // Both model services speak, so the clock is theirs: the least of their latest event times.
    post(&server.url, &[started("a-1", "k-1", now, "svc-a"), started("b-1", "k-1", now, "svc-b")]);
    // svc-a then retries an event an hour old: behind the clock, late.
    post(&server.url, &[started("a-0", "k-0", now - chrono::Duration::hours(1), "svc-a")]);
    let clock = get(&format!("{}/v1/clock", server.url));
    assert_eq!(clock["mode"], "watermark");
    assert_eq!(clock["late_events"], 1, "{clock}");
    let a = clock["sources"].as_array().unwrap().iter().find(|s| s["source"] == "svc-a").unwrap();
    assert_eq!((a["events"].as_u64(), a["late_events"].as_u64()), (Some(2), Some(1)), "{clock}");
    assert!((a["max_lateness_seconds"].as_f64().unwrap() - 3600.0).abs() < 1.0, "{clock}");
    assert_eq!(a["watermark"], json!(now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()), "the late event does not move it back: {clock}");
    let metrics = reqwest::blocking::get(format!("{}/metrics", server.url)).unwrap().text().unwrap();
    assert!(metrics.contains("causeway_source_late_events{source=\"svc-a\"} 1"), "{metrics}");
    assert!(metrics.contains("causeway_sources{state=\"active\"} 2"), "{metrics}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package, installed by scripts/test)");
    use std::io::Write as _;
    promtool.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(), "{}{}", String::from_utf8_lossy(&out.stderr), metrics);
    // Applied by its event time all the same: its journey exists.
    let journey = get(&format!("{}/v1/journeys/flow/k-0", server.url));
    assert_eq!(journey["milestones"][0]["event_id"], "a-0", "{journey}");
}
