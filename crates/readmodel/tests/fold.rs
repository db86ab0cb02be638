//! Reducers on the example model's `Order` read model.

use std::path::Path;

use causeway_envelope::{Event, ParseOptions, parse_json_line};
use causeway_model::{Model, ReadModel};
use causeway_readmodel::{apply, fold, key_of};
use serde_json::{Map, Value, json};

fn model() -> Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment/model.yaml");
    causeway_model::load(&path).into_result().expect("the example model loads")
}

fn order(model: &Model) -> &ReadModel {
    &model.read_models["Order"]
}

fn event(id: &str, ty: &str, time: &str, data: Value) -> Event {
    let line = json!({
        "specversion": "1.0", "id": id, "source": "test", "type": ty, "time": time,
        "correlationid": "c-1", "data": data,
    });
    parse_json_line(line.to_string().as_bytes(), &ParseOptions::default()).result.expect("a valid event")
}

#[test]
fn each_reducer_does_what_the_model_says() {
    let model = model();
    let def = order(&model);
    let events = [
        event(
            "e1",
            "OrderCreated",
            "2026-12-01T10:00:00Z",
            json!({"orderId": "o-1", "amount": 42.5, "currency": "EUR", "customerEmail": "a@example.com"}),
        ),
        event("e2", "PaymentProcessed", "2026-12-01T10:01:00Z", json!({"orderId": "o-1", "amount": 42.5})),
        event("e3", "InventoryReserved", "2026-12-01T10:02:00Z", json!({"orderId": "o-1", "items": 2})),
        event("e4", "InventoryReserved", "2026-12-01T10:03:00Z", json!({"orderId": "o-1", "items": 1})),
        event("e5", "ShipmentCreated", "2026-12-01T10:04:00Z", json!({"orderId": "o-1", "carrier": "dhl"})),
        event("e6", "OrderCancelled", "2026-12-01T10:05:00Z", json!({"orderId": "o-1"})),
    ];
    let (state, applied) = fold(def, &events);
    assert_eq!(
        Value::Object(state),
        json!({
            "orderId": "o-1", "amount": 42.5, "currency": "EUR", "customerEmail": "a@example.com",
            "status": "cancelled", "paidAmount": 42.5, "reservations": [2, 1],
        }),
        "merge, set (pointer and constant), append and unset in model order"
    );
    assert_eq!(applied.len(), 6);
    assert_eq!(applied[5].changed, vec!["status", "carrier"], "OrderCancelled sets status then unsets carrier");
    assert!(applied.iter().all(|a| a.missing.is_empty()));
}

#[test]
fn a_pointer_that_does_not_resolve_changes_nothing_and_is_reported() {
    let model = model();
    let def = order(&model);
    let mut state = Map::new();
    state.insert("status".into(), json!("created"));
    let applied =
        apply(def, &mut state, &event("e1", "PaymentFailed", "2026-12-01T10:00:00Z", json!({"orderId": "o-1"}))).expect("PaymentFailed has reducers");
    assert_eq!(applied.missing, vec!["/reason"]);
    assert_eq!(Value::Object(state), json!({"status": "payment_failed"}), "the constant is still set");
}

#[test]
fn events_the_read_model_does_not_name_are_not_applied() {
    let model = model();
    let def = order(&model);
    let mut state = Map::new();
    assert!(apply(def, &mut state, &event("e1", "SomethingElse", "2026-12-01T10:00:00Z", json!({"orderId": "o-1"}))).is_none());
    assert!(state.is_empty());
}

#[test]
fn merge_is_a_json_merge_patch() {
    let model = causeway_model::load_str(
        "m.yaml",
        "name: m\ncontexts: {c: {services: [s]}}\nevents: {A: {context: c}, B: {context: c}}\n\
         read_models: {R: {key: /id, on: {A: {merge: /}, B: {merge: /patch}}}}\n",
    )
    .into_result()
    .expect("model loads");
    let def = &model.read_models["R"];
    let events = [
        event("e1", "A", "2026-12-01T10:00:00Z", json!({"id": 7, "address": {"city": "Oslo", "zip": "0150"}, "note": "x"})),
        event("e2", "B", "2026-12-01T10:01:00Z", json!({"id": 7, "patch": {"address": {"zip": null, "street": "Main"}, "note": null}})),
    ];
    assert_eq!(key_of(def, &events[0]).as_deref(), Some("7"), "a numeric key reads as its JSON text");
    let (state, _) = fold(def, &events);
    assert_eq!(Value::Object(state), json!({"id": 7, "address": {"city": "Oslo", "street": "Main"}}));
}

#[test]
fn the_state_at_a_moment_is_the_fold_of_the_events_before_it() {
    let model = model();
    let def = order(&model);
    let events = [
        event("e1", "OrderCreated", "2026-12-01T10:00:00Z", json!({"orderId": "o-1", "amount": 10})),
        event("e2", "PaymentProcessed", "2026-12-01T10:01:00Z", json!({"orderId": "o-1", "amount": 10})),
        event("e3", "ShipmentCreated", "2026-12-01T10:02:00Z", json!({"orderId": "o-1", "carrier": "ups"})),
    ];
    for n in 0..=events.len() {
        let (prefix, _) = fold(def, &events[..n]);
        let mut stepwise = Map::new();
        for e in &events[..n] {
            apply(def, &mut stepwise, e);
        }
        assert_eq!(prefix, stepwise);
    }
    let (two, _) = fold(def, &events[..2]);
    assert_eq!(two.get("status"), Some(&json!("paid")));
    assert!(!two.contains_key("carrier"));
}
