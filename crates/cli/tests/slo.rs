//! SLOs judged from stored evidence (issue 19): a server given crafted events counts exactly the
//! good and bad verdicts each SLI defines — schema errors and refused events for
//! `event_success`, late and missing reactions for `reaction_latency`, stalled journeys for
//! `journey_completion` — and counts the same after a restart, which rebuilds them from the log.
//! `/metrics` carries them, `promtool check metrics` accepts the page, and `causeway slo` shows
//! them.

mod common;

use std::process::Command;

use common::{BIN, Server, get};
use serde_json::{Value, json};

const MODEL: &str = r#"
name: shop
contexts:
  ordering: {owner: team-orders, services: [order-service]}
  shipping: {owner: team-shipping, services: [shipping-service]}
events:
  OrderPlaced:
    context: ordering
    schema: {type: object, required: [orderId, amount], properties: {orderId: {type: string}, amount: {type: number}}}
  OrderShipped:
    context: shipping
    schema: {type: object, required: [orderId], properties: {orderId: {type: string}}}
policies:
  ship-order: {when: OrderPlaced, then: [OrderShipped], within: 1m}
journeys:
  order:
    key: /orderId
    milestones: [OrderPlaced, OrderShipped]
    outcomes: {shipped: [OrderShipped]}
    stall_after: 5m
    complete_within: 10m
slos:
  placing:         {sli: event_success, context: ordering, objective: 99%, window: 1d}
  placed-type:     {sli: event_success, event_type: OrderPlaced, objective: 99.5%, window: 1d}
  shipping-fast:   {sli: reaction_latency, policy: ship-order, objective: 99%, window: 1d}
  orders-complete: {sli: journey_completion, journey: order, objective: 99%, window: 1d}
"#;

/// Seconds after 2026-01-05T09:00:00Z.
fn at(seconds: i64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339("2026-01-05T09:00:00Z").unwrap() + chrono::TimeDelta::seconds(seconds);
    t.to_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn event(id: &str, ty: &str, seconds: i64, data: Value, correlation: Option<&str>) -> Value {
    let source = if ty == "OrderPlaced" { "order-service" } else { "shipping-service" };
    let mut e = json!({"specversion": "1.0", "id": id, "source": source, "type": ty, "time": at(seconds), "data": data});
    if let Some(c) = correlation {
        e["correlationid"] = json!(c);
    }
    e
}

/// Order a: placed and shipped on time. Order b: placed breaking its schema, shipped two minutes
/// later (the reaction is late; the journey still completes within ten minutes). Order c: placed,
/// never shipped (the reaction is missing; the journey stalls after five minutes). A placement
/// without a correlation id: refused. Order d, twenty minutes on: on time, and moves the clock.
fn evidence() -> Vec<Value> {
    vec![
        event("a1", "OrderPlaced", 0, json!({"orderId": "a", "amount": 10}), Some("ca")),
        event("a2", "OrderShipped", 30, json!({"orderId": "a"}), Some("ca")),
        event("b1", "OrderPlaced", 60, json!({"orderId": "b"}), Some("cb")),
        event("b2", "OrderShipped", 180, json!({"orderId": "b"}), Some("cb")),
        event("c1", "OrderPlaced", 120, json!({"orderId": "c", "amount": 5}), Some("cc")),
        event("x1", "OrderPlaced", 240, json!({"orderId": "x", "amount": 1}), None),
        event("d1", "OrderPlaced", 1200, json!({"orderId": "d", "amount": 7}), Some("cd")),
        event("d2", "OrderShipped", 1210, json!({"orderId": "d"}), Some("cd")),
    ]
}

/// (good, bad) over the window, and since the start, per SLO name.
fn verdicts(url: &str) -> Vec<(String, u64, u64, u64, u64)> {
    let body = get(&format!("{url}/v1/slo"));
    body["slos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
            (s["name"].as_str().unwrap().to_string(), n("good"), n("bad"), n("total_good"), n("total_bad"))
        })
        .collect()
}

#[test]
fn slis_count_what_the_model_promises_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.yaml");
    std::fs::write(&model, MODEL).unwrap();
    let data = dir.path().join("data");
    let args = ["--model", model.to_str().unwrap(), "--clock", "event"];
    let server = Server::start(&data, &args);
    let client = reqwest::blocking::Client::new();
    let response = client.post(format!("{}/v1/events", server.url)).json(&evidence()).send().unwrap();
    assert!(response.status().is_success(), "{}", response.text().unwrap());

    let expected = vec![
        ("placing".to_string(), 3, 2, 3, 2),
        ("placed-type".to_string(), 3, 2, 3, 2),
        ("shipping-fast".to_string(), 2, 2, 2, 2),
        ("orders-complete".to_string(), 3, 1, 3, 1),
    ];
    assert_eq!(verdicts(&server.url), expected);

    let body = get(&format!("{}/v1/slo", server.url));
    let placing = &body["slos"][0];
    assert_eq!(placing["sli"], "event_success");
    assert_eq!(placing["context"], "ordering");
    assert_eq!(placing["window"], "1d");
    // 2 bad of 5 against a 1% budget: the budget is spent 40 times over.
    assert!((placing["sli_value"].as_f64().unwrap() - 0.6).abs() < 1e-9, "{placing}");
    assert!((placing["error_budget_remaining"].as_f64().unwrap() - (1.0 - 40.0)).abs() < 1e-6, "{placing}");
    // Everything happened within the last half hour, but the last five minutes hold order d
    // alone (all good): every window but 5m burns 40×, so the 1h/5m pair stays quiet while the
    // 6h/30m pair pages and both ticket pairs fire.
    assert!((placing["burn_rates"]["1d"].as_f64().unwrap() - 40.0).abs() < 1e-6, "{placing}");
    assert_eq!(placing["burn_rates"]["5m"], 0.0);
    let firing: Vec<(&str, &str, &str)> = placing["firing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["severity"].as_str().unwrap(), r["long_window"].as_str().unwrap(), r["short_window"].as_str().unwrap()))
        .collect();
    assert_eq!(firing, [("page", "6h", "30m"), ("ticket", "1d", "2h"), ("ticket", "3d", "6h")]);
    assert_eq!(placing["alert"], "page");
    assert_eq!(body["clock"], format!("{}.000000Z", at(1210).trim_end_matches('Z')));

    // The page Prometheus scrapes: counters by verdict, and promtool accepts it.
    let metrics = client.get(format!("{}/metrics", server.url)).send().unwrap().text().unwrap();
    for (name, _, _, good, bad) in &expected {
        assert!(metrics.contains(&format!("causeway_slo_events_total{{slo=\"{name}\",outcome=\"good\"}} {good}\n")), "{name}:\n{metrics}");
        assert!(metrics.contains(&format!("causeway_slo_events_total{{slo=\"{name}\",outcome=\"bad\"}} {bad}\n")), "{name}:\n{metrics}");
    }
    let burn_1d = metrics.lines().find_map(|l| l.strip_prefix("causeway_slo_burn_rate{slo=\"placing\",window=\"1d\"} ")).expect("a 1d burn rate");
    assert!((burn_1d.parse::<f64>().unwrap() - 40.0).abs() < 1e-6, "{burn_1d}");
    assert!(metrics.contains("causeway_slo_alert{slo=\"placing\",severity=\"page\"} 1\n"), "{metrics}");
    // Reactions measured: a (30 s), b (120 s, late) and d (10 s); c never reacted.
    assert!(metrics.contains("causeway_reaction_latency_seconds_count{policy=\"ship-order\"} 3\n"), "{metrics}");
    assert!(metrics.contains("causeway_reaction_latency_seconds_bucket{policy=\"ship-order\",le=\"30\"} 2\n"), "{metrics}");
    assert!(metrics.contains("causeway_journey_completion_seconds_count{journey=\"order\"} 3\n"), "{metrics}");
    // Ingest by context, type and outcome: b1 broke its schema, x1 was refused.
    for (labels, n) in [
        ("context=\"ordering\",event_type=\"OrderPlaced\",outcome=\"accepted\"", 3),
        ("context=\"ordering\",event_type=\"OrderPlaced\",outcome=\"schema_error\"", 1),
        ("context=\"ordering\",event_type=\"OrderPlaced\",outcome=\"rejected\"", 1),
        ("context=\"shipping\",event_type=\"OrderShipped\",outcome=\"accepted\"", 3),
    ] {
        assert!(metrics.contains(&format!("causeway_events_ingested_total{{{labels}}} {n}\n")), "{labels}:\n{metrics}");
    }
    common::promtool_check_metrics(&metrics);

    // The CLI's table.
    let out = Command::new(BIN).args(["slo", "--server", &server.url]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("reaction_latency of ship-order") && said.contains("4 SLOs, judged by event time up to"), "{said}");

    // A restart rebuilds the verdicts from the log: the same counts.
    server.kill();
    let server = Server::start(&data, &args);
    assert_eq!(verdicts(&server.url), expected);
}
