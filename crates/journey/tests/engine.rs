//! The evaluator through its API: the journey view of the end-to-end case, listings,
//! the digest's properties, rebuild equality (what a restart relies on), and the simulator's
//! faults surfacing as findings.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use causeway_envelope::{Event, ParseOptions, parse_body};
use causeway_journey::{Change, Config, Evaluator, FindingKind, JourneyState};
use causeway_model::Model;
use causeway_sim::{Fault, SimConfig, Simulator};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

fn example_model() -> Model {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment/model.yaml");
    causeway_model::load(&path).into_result().expect("the example model loads")
}

fn at(seconds: f64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().with_timezone(&Utc) + TimeDelta::milliseconds((seconds * 1000.0) as i64)
}

/// An event built the way the server gets it: parsed from a CloudEvent.
fn event(id: &str, event_type: &str, seconds: f64, correlation: &str, cause: Option<&str>, data: serde_json::Value) -> Event {
    let mut ce = json!({"specversion": "1.0", "id": id, "source": "test-service", "type": event_type,
                        "time": at(seconds).to_rfc3339(), "correlationid": correlation, "data": data});
    if let Some(c) = cause {
        ce["causationid"] = json!(c);
    }
    let items = parse_body(Some("application/cloudevents+json"), &[], ce.to_string().as_bytes(), &ParseOptions::default()).expect("a valid body");
    items.into_iter().next().expect("one item").result.expect("a valid event")
}

fn order_events(order: &str, corr: &str, start: f64) -> Vec<Event> {
    let steps = ["OrderCreated", "PaymentProcessed", "InventoryReserved", "ShipmentCreated"];
    let mut out: Vec<Event> = Vec::new();
    for (k, t) in steps.iter().enumerate() {
        let id = format!("{order}-{k}");
        let cause = (k > 0).then(|| format!("{order}-{}", k - 1));
        out.push(event(&id, t, start + k as f64, corr, cause.as_deref(), json!({"orderId": order})));
    }
    out
}

#[test]
fn order_confirmation_never_arrived_is_visible_in_the_journey_view() {
    let mut ev = Evaluator::new(&example_model());
    for e in order_events("o1", "c1", 0.0) {
        ev.advance(e.time);
        ev.ingest(&e, false);
    }
    // Within the window nothing is missing yet; just past it, CustomerNotified is.
    assert!(ev.advance(at(33.0)).is_empty());
    let changes = ev.advance(at(33.5));
    assert!(matches!(changes.as_slice(), [Change::Raised(_)]), "{changes:?}");

    let view = ev.journey("order", "o1").expect("the journey exists");
    assert_eq!(view.state, JourneyState::InFlight);
    assert_eq!(view.milestones.len(), 4);
    assert_eq!(view.milestones[3].event, "ShipmentCreated");
    assert_eq!(view.milestones[3].event_id, "o1-3");
    assert_eq!(view.next_expected, vec!["CustomerNotified"]);
    assert_eq!(view.correlation_ids, vec!["c1"]);
    assert_eq!(view.started_at, at(0.0));
    assert_eq!(view.updated_at, at(3.0));
    let [f] = view.findings.as_slice() else { panic!("one finding: {:?}", view.findings) };
    assert_eq!(f.kind, FindingKind::MissingReaction);
    assert_eq!(f.expected, vec!["CustomerNotified"]);
    assert_eq!(f.event_id.as_deref(), Some("o1-3"));
    assert_eq!(f.rule.as_deref(), Some("notify-after-shipment"));
    assert_eq!(f.owner.as_deref(), Some("team-checkout"));
    assert_eq!(f.detected_at, at(33.0));
    assert!(f.is_open());

    let in_flight: Vec<_> = ev.instances(Some("order"), Some("in_flight")).collect();
    assert_eq!(in_flight, vec![view.id]);
    assert_eq!(ev.instances(Some("order"), Some("stalled")).count(), 0);
    assert_eq!(ev.instances(Some("no-such-journey"), None).count(), 0);
    assert!(ev.journey("order", "o2").is_none());
    assert!(ev.journey("no-such-journey", "o1").is_none());

    // The confirmation, late, resolves it; the finding keeps its history.
    let late = event("o1-4", "CustomerNotified", 40.0, "c1", Some("o1-3"), json!({"orderId": "o1"}));
    ev.ingest(&late, false);
    let view = ev.journey("order", "o1").unwrap();
    assert_eq!(view.state.as_str(), "fulfilled");
    assert!(view.state.is_terminal());
    assert!(view.next_expected.is_empty());
    assert_eq!(view.findings[0].resolved_at, Some(at(40.0)));
    assert_eq!(ev.instances(Some("order"), Some("fulfilled")).count(), 1);
    let stats = ev.stats();
    assert_eq!((stats.instances, stats.completed, stats.findings, stats.open_findings), (1, 1, 1, 0));
}

#[test]
fn digest_depends_on_what_was_found_not_on_numbering() {
    let model = example_model();
    let (a, b) = (order_events("o1", "c1", 0.0), order_events("o2", "c2", 0.5));
    let run = |events: Vec<&Event>| {
        let mut ev = Evaluator::new(&model);
        for e in events {
            ev.ingest(e, false);
        }
        ev.advance(at(60.0));
        ev
    };
    // o2 then o1, against the two interleaved: different ids, the same journeys and findings.
    let first = run(b.iter().chain(&a).collect());
    let mixed = run(a.iter().zip(&b).flat_map(|(x, y)| [x, y]).collect());
    assert_eq!(first.findings().len(), 2);
    assert_ne!(first.journey("order", "o1").unwrap().id, mixed.journey("order", "o1").unwrap().id);
    assert_eq!(first.canonical_lines(), mixed.canonical_lines());
    assert_eq!(first.digest(), mixed.digest());
    // Something else found: another digest.
    let fewer = run(b.iter().collect());
    assert_ne!(first.digest(), fewer.digest());
}

/// Deliveries of the seeded simulator, parsed as the server parses them: (event, redelivery);
/// refused inputs (no correlation id) are left out, as the server keeps them out of the store.
fn simulated(seed: u64, deliveries: usize, fault_rate: f64) -> (Vec<(Event, bool)>, [u64; Fault::ALL.len()]) {
    let mut sim = Simulator::new(SimConfig { seed, fault_rate, concurrency: 40 });
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let start = at(0.0);
    for d in sim.next_batch(deliveries, start) {
        let body = d.event.to_string();
        let items = parse_body(Some("application/json"), &[], body.as_bytes(), &ParseOptions::default()).expect("a body");
        for item in items {
            if let Ok(e) = item.result {
                let redelivery = !seen.insert((e.source.clone(), e.id.clone()));
                out.push((e, redelivery));
            }
        }
    }
    (out, sim.stats().faults)
}

#[test]
fn a_rebuild_from_the_log_equals_the_live_run() {
    let model = example_model();
    let (events, _) = simulated(7, 3_000, 0.1);
    // Live: each event received some time after it happened, and a clock tick every 250 ms of
    // wall time in between (as `serve` does), with a tick before each ingest.
    let mut live = Evaluator::new(&model);
    let mut log = Vec::new();
    let mut wall = at(0.0);
    for (k, (e, redelivery)) in events.iter().enumerate() {
        let received = (e.time + TimeDelta::milliseconds(40 + (k as i64 * 37) % 900)).max(wall);
        while wall + TimeDelta::milliseconds(250) < received {
            wall += TimeDelta::milliseconds(250);
            live.advance(wall);
        }
        wall = received;
        live.advance(received);
        live.ingest(e, *redelivery);
        log.push((received, e, *redelivery));
    }
    let end = wall + TimeDelta::minutes(10);
    live.advance(end);

    // Rebuild: the stored events with their receive times, no ticks in between.
    let mut rebuilt = Evaluator::new(&model);
    for (received, e, redelivery) in &log {
        rebuilt.advance(*received);
        rebuilt.ingest(e, *redelivery);
    }
    rebuilt.advance(end);
    assert!(live.findings().len() > 10, "the faults were found: {}", live.findings().len());
    assert_eq!(live.findings(), rebuilt.findings(), "same findings, same ids, same order");
    assert_eq!(live.canonical_lines(), rebuilt.canonical_lines());
    assert_eq!(live.digest(), rebuilt.digest());
}

#[test]
fn the_simulators_faults_surface_as_findings() {
    let model = example_model();
    let (events, faults) = simulated(3, 20_000, 0.05);
    let mut ev = Evaluator::new(&model);
    let mut watermark = at(0.0);
    for (e, redelivery) in &events {
        watermark = watermark.max(e.time);
        ev.advance(watermark);
        ev.ingest(e, *redelivery);
    }
    ev.advance(watermark + TimeDelta::minutes(10));
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    for f in ev.findings() {
        *by_kind.entry(f.kind.as_str()).or_default() += 1;
        if let Some(r) = &f.rule {
            *by_rule.entry(r.clone()).or_default() += 1;
        }
    }
    eprintln!("findings by kind {by_kind:?}, by rule {by_rule:?}; simulator faults {faults:?}");
    let fault = |f: Fault| faults[Fault::ALL.iter().position(|x| *x == f).unwrap()] as usize;
    // Every redelivered payment is reported once.
    assert_eq!(by_kind.get("duplicate").copied().unwrap_or(0), fault(Fault::DuplicateDelivery), "{by_kind:?}");
    // Shipments delivered before their reservation.
    assert!(by_kind.get("out_of_order").copied().unwrap_or(0) >= fault(Fault::OutOfOrder) / 2, "{by_kind:?} {faults:?}");
    // A shipment without customerEmail: the notification never happens.
    assert!(by_rule.get("notify-after-shipment").copied().unwrap_or(0) >= fault(Fault::ConsumerFailure) / 2, "{by_rule:?} {faults:?}");
    // A reservation without a correlation id was refused: the order never sees it.
    assert!(by_rule.get("reserve-after-payment").copied().unwrap_or(0) >= 1, "{by_rule:?} {faults:?}");
    assert!(by_kind.contains_key("stalled") && by_kind.contains_key("deadline_missed"), "{by_kind:?}");
    // And the journeys that suffered nothing completed: most of them.
    let s = ev.stats();
    assert!(s.completed * 10 > s.instances * 7, "{s:?}");
}

#[test]
fn the_memory_report_adds_up() {
    let mut ev = Evaluator::with_config(&example_model(), Config::default());
    for n in 0..2_000 {
        for e in order_events(&format!("o{n}"), &format!("c{n}"), n as f64) {
            ev.ingest(&e, false);
        }
    }
    let m = ev.memory();
    assert!(m.instances > 2_000 * 150 && m.records > 2_000 * 4 * 40, "{m:?}");
    assert_eq!(m.total(), m.instances + m.records + m.obligations + m.indexes + m.sequences + m.timers + m.findings + m.pending);
    // Well under a KiB per open journey of four events.
    assert!(m.total() < 2_000 * 1024, "{} bytes per journey", m.total() / 2_000);
}

/// `JourneyKeys` reads the keys an event carries as the evaluator does, for events it never sees
/// (refused at ingest): only journeys the type is relevant to, only keys that resolve.
#[test]
fn journey_keys_of_an_event_without_an_evaluator() {
    let model = example_model();
    let keys = causeway_journey::JourneyKeys::new(&model);
    let reserved = |data| event("x", "InventoryReserved", 0.0, "c", None, data);
    assert_eq!(keys.of(&reserved(json!({"orderId": "o7", "items": 1}))), vec![("order", "o7".to_string())]);
    assert_eq!(keys.of(&reserved(json!({"orderId": 42}))), vec![("order", "42".to_string())]);
    assert!(keys.of(&reserved(json!({"items": 1}))).is_empty(), "no key in the payload");
    assert!(keys.of(&event("y", "OrderTeleported", 0.0, "c", None, json!({"orderId": "o7"}))).is_empty(), "a type no journey names");
    // The evaluator puts such an event in the same instance.
    let mut ev = Evaluator::new(&model);
    ev.ingest(&event("o7-0", "OrderCreated", 0.0, "c7", None, json!({"orderId": "o7"})), false);
    let changes = ev.ingest(&reserved(json!({"orderId": "o7", "items": 1})), false);
    let Some(Change::Joined(i)) = changes.first() else { panic!("{changes:?}") };
    assert_eq!(ev.instance_key(*i), ("order", "o7".to_string()));
}
