//! What the API tests share: the router on a real store in a temp dir, and the example model's
//! order journey.
#![allow(dead_code)] // each test binary uses its own part

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use causeway_envelope::{Limits, ParseOptions};
use causeway_server::{AppState, ModelSlot, app};
use causeway_store::{SqlLimits, Store};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct Api {
    pub router: Router,
    pub _dir: tempfile::TempDir,
}

impl Api {
    pub fn new() -> Api {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let state = AppState::new(store, ParseOptions { limits, correlation_required: true }, SqlLimits::default());
        Api { router: app(state), _dir: dir }
    }

    /// An API whose model is a copy of the example model in the temp dir (so tests may break it).
    pub fn with_example_model() -> (Api, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment");
        for f in ["model.yaml", "notification.yaml"] {
            std::fs::copy(example.join(f), dir.path().join(f)).unwrap();
        }
        let model_path = dir.path().join("model.yaml");
        let store = Store::open(&dir.path().join("data")).unwrap();
        let slot = ModelSlot::load(&model_path, b"test-key".to_vec()).unwrap();
        let state = AppState::new(store, ParseOptions::default(), SqlLimits::default()).with_model(slot);
        (Api { router: app(state), _dir: dir }, model_path)
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, body)
    }

    pub async fn post(&self, content_type: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        self.send(Request::post("/v1/events").header("content-type", content_type).body(body.into()).unwrap()).await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Request::post(path).header("content-type", "application/json").body(body.to_string().into()).unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Request::get(path).body(Body::empty()).unwrap()).await
    }

    pub async fn sql(&self, query: &str) -> Value {
        let (status, body) = self
            .send(Request::post("/v1/sql").header("content-type", "application/json").body(json!({"query": query}).to_string().into()).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// The DLQ records of the refused inputs, oldest first.
    pub async fn dlq(&self) -> Vec<Value> {
        self.sql("SELECT error_type, error_message, original_event, correlation_id FROM dlq_events ORDER BY id").await["rows"]
            .as_array()
            .unwrap()
            .clone()
    }
}

pub fn with_journeys() -> Api {
    with_journeys_and(|s| s)
}

/// [`with_journeys`], with a change to the state (consumers, say).
pub fn with_journeys_and(change: impl FnOnce(AppState) -> AppState) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment");
    for f in ["model.yaml", "notification.yaml"] {
        std::fs::copy(example.join(f), dir.path().join(f)).unwrap();
    }
    let store = Store::open(&dir.path().join("data")).unwrap();
    let slot = ModelSlot::load(&dir.path().join("model.yaml"), b"test-key".to_vec()).unwrap();
    let state = AppState::new(store, ParseOptions::default(), SqlLimits::default())
        .with_model(slot)
        .with_journeys(causeway_server::Clock::Wall);
    Api { router: app(change(state)), _dir: dir }
}

/// One step of order `order`'s journey, `second` seconds into 2026-11-23 10:00 (long past on the
/// wall clock, so every window after it has passed).
pub fn step(order: &str, n: u32, event_type: &str, source: &str, cause: Option<&str>, second: u32) -> Value {
    let mut data = json!({"orderId": order});
    match event_type {
        "OrderCreated" => data = json!({"orderId": order, "customerEmail": "a@b.c", "amount": 10, "currency": "EUR"}),
        "PaymentProcessed" => data = json!({"orderId": order, "amount": 10}),
        "InventoryReserved" => data = json!({"orderId": order, "items": 1}),
        "ShipmentCreated" => data = json!({"orderId": order, "carrier": "dhl", "customerEmail": "a@b.c"}),
        _ => {}
    }
    let mut e = json!({"specversion": "1.0", "id": format!("{order}-{n}"), "source": source, "type": event_type,
                       "time": format!("2026-11-23T10:{:02}:{:02}Z", second / 60, second % 60),
                       "correlationid": format!("corr-{order}"), "data": data});
    if let Some(c) = cause {
        e["causationid"] = json!(format!("{order}-{c}"));
    }
    e
}

pub fn first_four(order: &str) -> Vec<Value> {
    vec![
        step(order, 1, "OrderCreated", "order-service", None, 0),
        step(order, 2, "PaymentProcessed", "payment-service", Some("1"), 2),
        step(order, 3, "InventoryReserved", "inventory-service", Some("2"), 4),
        step(order, 4, "ShipmentCreated", "fulfilment-service", Some("3"), 6),
    ]
}

