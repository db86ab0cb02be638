//! The journey engine, data-driven: each file in `tests/cases/` is a model, a script of events and
//! clock ticks, and the expected journeys, findings and log. `UPDATE_EXPECT=1 cargo test -p
//! causeway-journey` rewrites the `=== expected` sections; review the diff.
//!
//! A case file:
//!
//! ```text
//! # What the case shows (comment lines at the top).
//! model: example                      # the bundled order-fulfilment model, or a `=== model` section
//! config: pending_per_correlation=2   # optional `Config` fields
//! clock: event                        # optional: advance to the event-time watermark before each event
//! === script
//! 0s OrderCreated id=e1 corr=c1 {"orderId":"o1"}
//! clock 31s
//! === expected
//! …
//! ```
//!
//! Times are offsets from 2024-01-01T00:00:00Z (`0s`, `1.5s`, `2m3s`, `500ms`). An event line is
//! `TIME TYPE [id=] [src=] [corr=] [cause=] [subj=] [seq=] [idem=] [redelivered] [JSON payload]`;
//! `id` defaults to `e<n>`, `src` to the first service of the type's context. `clock T` calls
//! `advance(T)`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use causeway_envelope::Event;
use causeway_journey::{Change, Config, Evaluator, Finding, InstanceId};
use causeway_model::Model;
use chrono::{DateTime, TimeDelta, Utc};

fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example_model() -> Model {
    let path = crate_dir().join("../../examples/order-fulfillment/model.yaml");
    causeway_model::load(&path).into_result().unwrap_or_else(|d| panic!("example model: {d:?}"))
}

/// `1m2s`, `1.5s`, `500ms` → offset.
fn parse_offset(text: &str) -> TimeDelta {
    let mut total_ms = 0.0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or_else(|| panic!("bad time '{text}'"));
        let (number, tail) = rest.split_at(n);
        let number: f64 = number.parse().unwrap_or_else(|_| panic!("bad time '{text}'"));
        let (unit, tail) = if let Some(t) = tail.strip_prefix("ms") {
            (1.0, t)
        } else if let Some(t) = tail.strip_prefix('s') {
            (1_000.0, t)
        } else if let Some(t) = tail.strip_prefix('m') {
            (60_000.0, t)
        } else if let Some(t) = tail.strip_prefix('h') {
            (3_600_000.0, t)
        } else {
            panic!("bad unit in '{text}'")
        };
        total_ms += number * unit;
        rest = tail;
    }
    TimeDelta::microseconds((total_ms * 1000.0).round() as i64)
}

fn show_time(t: DateTime<Utc>) -> String {
    let us = (t - epoch()).num_microseconds().unwrap();
    if us < 0 {
        return format!("-{}", show_time(epoch() + TimeDelta::microseconds(-us)));
    }
    if us == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = us;
    for (unit, size) in [("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1_000), ("us", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

struct Case {
    model: Model,
    config: Config,
    event_clock: bool,
    script: Vec<String>,
    /// The file up to and including the `=== expected` line.
    head: String,
    expected: String,
}

fn read_case(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = "header".to_string();
    let mut head = String::new();
    let mut expected = String::new();
    for line in text.lines() {
        if current == "expected" {
            expected.push_str(line);
            expected.push('\n');
            continue;
        }
        head.push_str(line);
        head.push('\n');
        if let Some(name) = line.strip_prefix("=== ") {
            current = name.trim().to_string();
            continue;
        }
        sections.entry(current.clone()).or_default().push(line.to_string());
    }
    assert!(head.contains("=== expected"), "{}: no '=== expected' section", path.display());
    let mut model = None;
    let mut config = Config::default();
    let mut event_clock = false;
    for line in sections.get("header").into_iter().flatten() {
        if let Some(m) = line.strip_prefix("model:") {
            assert_eq!(m.trim(), "example", "model: example, or a '=== model' section");
            model = Some(example_model());
        } else if let Some(c) = line.strip_prefix("clock:") {
            event_clock = c.trim() == "event";
        } else if let Some(settings) = line.strip_prefix("config:") {
            for kv in settings.split_whitespace() {
                let (k, v) = kv.split_once('=').expect("config: name=value");
                match k {
                    "max_records" => config.max_records = v.parse().unwrap(),
                    "max_correlations" => config.max_correlations = v.parse().unwrap(),
                    "pending_per_correlation" => config.pending_per_correlation = v.parse().unwrap(),
                    "pending_total" => config.pending_total = v.parse().unwrap(),
                    "delivery_order" => config.delivery_order = v.parse().unwrap(),
                    "max_aggregates" => config.max_aggregates = v.parse().unwrap(),
                    other => panic!("unknown config '{other}'"),
                }
            }
        }
    }
    if let Some(yaml) = sections.get("model") {
        let loaded = causeway_model::load_str("case.yaml", &yaml.join("\n"));
        let errors: Vec<String> =
            loaded.diagnostics.iter().filter(|d| d.severity == causeway_model::Severity::Error).map(ToString::to_string).collect();
        assert!(errors.is_empty(), "{}: model errors: {errors:#?}", path.display());
        model = Some(loaded.model);
    }
    let script = sections
        .get("script")
        .unwrap_or_else(|| panic!("{}: no '=== script' section", path.display()))
        .iter()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .cloned()
        .collect();
    Case { model: model.expect("a model"), config, event_clock, script, head, expected }
}

enum Step {
    Clock(DateTime<Utc>),
    Event(Box<Event>, bool),
}

fn parse_step(model: &Model, line: &str, n: usize) -> Step {
    if let Some(t) = line.strip_prefix("clock ") {
        return Step::Clock(epoch() + parse_offset(t.trim()));
    }
    let (head, json) = match line.find('{') {
        Some(i) => (&line[..i], Some(&line[i..])),
        None => (line, None),
    };
    let mut tokens = head.split_whitespace();
    let time = epoch() + parse_offset(tokens.next().expect("a time"));
    let event_type = tokens.next().expect("an event type").to_string();
    let source = model
        .events
        .get(&event_type)
        .and_then(|d| model.contexts.get(&d.context))
        .and_then(|c| c.services.first().cloned())
        .unwrap_or_else(|| "test-service".to_string());
    let mut event = Event {
        id: format!("e{n}"),
        source,
        event_type,
        time,
        subject: None,
        datacontenttype: None,
        dataschema: None,
        correlation_id: None,
        causation_id: None,
        traceparent: None,
        tracestate: None,
        sequence: None,
        idempotency_key: None,
        schema_version: None,
        extensions: Default::default(),
        data: json.map(|j| serde_json::from_str(j).unwrap_or_else(|e| panic!("payload of '{line}': {e}"))),
        data_base64: None,
    };
    let mut redelivered = false;
    for token in tokens {
        if token == "redelivered" {
            redelivered = true;
            continue;
        }
        let (k, v) = token.split_once('=').unwrap_or_else(|| panic!("'{token}' in '{line}' is not name=value"));
        match k {
            "id" => event.id = v.to_string(),
            "src" => event.source = v.to_string(),
            "corr" => event.correlation_id = Some(v.to_string()),
            "cause" => event.causation_id = Some(v.to_string()),
            "subj" => event.subject = Some(v.to_string()),
            "seq" => event.sequence = Some(v.parse().unwrap()),
            "idem" => event.idempotency_key = Some(v.to_string()),
            other => panic!("unknown attribute '{other}' in '{line}'"),
        }
    }
    Step::Event(Box::new(event), redelivered)
}

/// Runs a script; returns the evaluator and the log.
fn run(case: &Case) -> (Evaluator, Vec<String>) {
    let mut ev = Evaluator::with_config(&case.model, case.config.clone());
    let mut log = Vec::new();
    let mut states: HashMap<InstanceId, String> = HashMap::new();
    let mut watermark: Option<DateTime<Utc>> = None;
    let mut n = 0;
    for line in &case.script {
        let step = parse_step(&case.model, line.trim(), n + 1);
        let (label, changes) = match step {
            Step::Clock(t) => (format!("clock {}", show_time(t)), ev.advance(t)),
            Step::Event(event, redelivered) => {
                n += 1;
                let mut changes = Vec::new();
                if case.event_clock {
                    let w = watermark.map_or(event.time, |w| w.max(event.time));
                    watermark = Some(w);
                    changes.extend(ev.advance(w));
                }
                changes.extend(ev.ingest(&event, redelivered));
                let label = format!("{} {} {}{}", show_time(event.time), event.event_type, event.id, if redelivered { " (redelivered)" } else { "" });
                (label, changes)
            }
        };
        let mut said = Vec::new();
        for change in changes {
            match change {
                Change::Joined(i) => {
                    let v = ev.view(i);
                    said.push(format!("joins {} {}", v.journey, v.key));
                    states.entry(i).or_insert_with(|| "in_flight".into());
                }
                Change::Attached { instance, event_id } => {
                    let v = ev.view(instance);
                    said.push(format!("attaches {event_id} to {} {}", v.journey, v.key));
                }
                Change::Updated(i) => {
                    let v = ev.view(i);
                    let s = v.state.as_str().to_string();
                    if states.insert(i, s.clone()).is_some_and(|old| old != s) {
                        said.push(format!("{} {} is {s}", v.journey, v.key));
                    }
                }
                Change::Raised(f) => said.push(format!("raises f{} {}", f.0, ev.finding(f).unwrap().kind.as_str())),
                Change::Resolved(f) => said.push(format!("resolves f{}", f.0)),
                Change::Reacted { policy, latency_us, on_time, .. } => {
                    let late = if on_time { "" } else { ", late" };
                    said.push(format!("{} answered ({} ms{late})", ev.policy_name(policy), latency_us / 1000));
                }
                Change::Reassigned(f) => {
                    let found = ev.finding(f).unwrap();
                    said.push(format!("f{} now names {} {}", f.0, found.journey.as_deref().unwrap_or("-"), found.key.as_deref().unwrap_or("-")));
                }
            }
        }
        dedup_in_order(&mut said);
        log.push(if said.is_empty() { label } else { format!("{label}: {}", said.join(", ")) });
    }
    (ev, log)
}

fn dedup_in_order(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|s| seen.insert(s.clone()));
}

fn render(ev: &Evaluator, log: &[String]) -> String {
    let mut out = String::from("journeys:\n");
    let ids: Vec<InstanceId> = ev.instances(None, None).collect();
    if ids.is_empty() {
        out.push_str("  none\n");
    }
    for id in ids {
        let v = ev.view(id);
        out.push_str(&format!("  {} {}: {}\n", v.journey, v.key, v.state.as_str()));
        out.push_str(&format!(
            "    started {}, updated {}, {} event{}, correlations {}\n",
            show_time(v.started_at),
            show_time(v.updated_at),
            v.events,
            if v.events == 1 { "" } else { "s" },
            if v.correlation_ids.is_empty() { "-".to_string() } else { v.correlation_ids.join(", ") }
        ));
        let reached: Vec<String> = v.milestones.iter().map(|m| format!("{} {} {}", m.event, show_time(m.reached_at), m.event_id)).collect();
        out.push_str(&format!("    reached: {}\n", if reached.is_empty() { "-".into() } else { reached.join(", ") }));
        out.push_str(&format!("    next: {}\n", if v.next_expected.is_empty() { "-".into() } else { v.next_expected.join(", ") }));
        if !v.findings.is_empty() {
            let ids: Vec<String> = v.findings.iter().map(|f| format!("f{}", f.id.0)).collect();
            out.push_str(&format!("    findings: {}\n", ids.join(", ")));
        }
    }
    out.push_str("findings:\n");
    if ev.findings().is_empty() {
        out.push_str("  none\n");
    }
    for f in ev.findings() {
        out.push_str(&render_finding(f));
    }
    let s = ev.stats();
    out.push_str(&format!(
        "stats: {} events, {} redeliveries, {} waiting for a key, {} dropped while waiting\n",
        s.events, s.redeliveries, s.pending, s.pending_dropped
    ));
    out.push_str("log:\n");
    for line in log {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

fn render_finding(f: &Finding) -> String {
    let mut about = Vec::new();
    if let (Some(j), Some(k)) = (&f.journey, &f.key) {
        about.push(format!("{j} {k}"));
    }
    if let Some(r) = &f.rule {
        about.push(format!("rule {r}"));
    }
    if let Some(e) = &f.event_id {
        about.push(format!("event {e}"));
    }
    if let Some(c) = &f.correlation_id {
        about.push(format!("correlation {c}"));
    }
    if !f.expected.is_empty() {
        about.push(format!("expected {}", f.expected.join(" | ")));
    }
    about.push(format!("owner {}", f.owner.as_deref().unwrap_or("-")));
    let when = match f.resolved_at {
        Some(r) => format!("detected {}, resolved {}", show_time(f.detected_at), show_time(r)),
        None => format!("detected {}, open", show_time(f.detected_at)),
    };
    format!("  f{} {}: {}\n    {when}\n    {}\n", f.id.0, f.kind.as_str(), about.join(", "), f.detail)
}

fn check(name: &str) {
    let path = crate_dir().join("tests/cases").join(format!("{name}.case"));
    let case = read_case(&path);
    let (ev, log) = run(&case);
    let got = render(&ev, &log);

    // Properties every case must keep.
    let stats = ev.stats();
    assert_eq!(stats.open_findings, ev.findings().iter().filter(|f| f.is_open()).count() as u64, "{name}: open count");
    for (i, kind) in causeway_journey::FindingKind::ALL.iter().enumerate() {
        let open = ev.findings().iter().filter(|f| f.is_open() && f.kind == *kind).count() as u64;
        assert_eq!((kind.index(), stats.open_by_kind[i]), (i, open), "{name}: open {} findings", kind.as_str());
    }
    assert_eq!(stats.in_flight + stats.stalled + stats.completed, stats.instances, "{name}: state counters");
    for f in ev.findings() {
        assert!(f.resolved_at.is_none_or(|r| r >= f.detected_at), "{name}: f{} resolved before detected", f.id.0);
        assert!(!f.detail.is_empty());
    }
    let (again, _) = run(&case);
    assert_eq!(ev.digest(), again.digest(), "{name}: the same script gives the same digest");
    assert_eq!(ev.canonical_lines(), again.canonical_lines());

    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, format!("{}{got}", case.head)).unwrap();
        return;
    }
    if got != case.expected {
        let diff = first_difference(&case.expected, &got);
        panic!("{name}: output differs from tests/cases/{name}.case ({diff}); rerun with UPDATE_EXPECT=1 and review the diff\n--- got\n{got}");
    }
}

fn first_difference(expected: &str, got: &str) -> String {
    for (n, (a, b)) in expected.lines().zip(got.lines()).enumerate() {
        if a != b {
            return format!("first at line {} of the expectation: expected {a:?}, got {b:?}", n + 1);
        }
    }
    format!("{} expected lines, {} got", expected.lines().count(), got.lines().count())
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { check(stringify!($name)); } )*

        /// Every case file has a test, and every test a file.
        #[test]
        fn every_case_file_is_listed() {
            let listed = [$(stringify!($name)),*];
            let mut files: Vec<String> = std::fs::read_dir(crate_dir().join("tests/cases"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "case"))
                .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let mut listed: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
            listed.sort();
            assert_eq!(files, listed);
        }
    };
}

cases! {
    order_confirmation_never_arrived,
    order_fulfilled,
    late_reaction_resolves_missing_reaction,
    late_reaction_between_ticks,
    reaction_delivered_before_its_trigger,
    reactions_answered,
    policy_any_of_reactions,
    payment_declined_and_cancelled,
    membership_by_correlation,
    pending_until_key_arrives,
    pending_bounds,
    subject_keyed_journey,
    invariant_requires_cleared_by_late_arrival,
    invariant_at_most,
    invariant_forbidden_after,
    stalled_then_back_in_flight,
    deadline_missed_then_completed_late,
    deadline_missed_names_either_outcome,
    duplicate_redelivery,
    duplicate_effect,
    out_of_order_sequence_gap_filled,
    out_of_order_sequence_regression,
    out_of_order_effect_before_cause,
    delivery_order_off,
    sequence_memory_is_bounded,
    records_beyond_the_bound,
    event_clock_watermark,
}
