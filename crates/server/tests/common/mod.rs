//! What the API tests share: the router on a real store in a temp dir, and the example model's
//! order journey.
#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;

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

    /// An API on a store opened with `settings` (small segments, say).
    pub fn with_store_settings(settings: &causeway_store::StoreSettings) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), settings).unwrap();
        let state = AppState::new(store, ParseOptions::default(), SqlLimits::default());
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
    let state = AppState::new(store, ParseOptions::default(), SqlLimits::default()).with_model(slot).with_journeys(causeway_server::Clock::Wall);
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

/// One series of a Prometheus text exposition: its name and labels (sorted).
pub type Series = (String, Vec<(String, String)>);

/// Parses a Prometheus text exposition (format 0.0.4) strictly, as a scraper would, and returns
/// every sample. Panics on anything a scraper rejects or that makes the exposition ambiguous: a
/// malformed line, name or label, a bad escape or value, a sample before its family's `# TYPE`,
/// a family declared twice or split in two, a series given twice.
pub fn parse_exposition(text: &str) -> BTreeMap<Series, f64> {
    fn is_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    let mut samples = BTreeMap::new();
    let (mut types, mut helps) = (BTreeMap::<String, String>::new(), std::collections::BTreeSet::new());
    let (mut current, mut closed) = (None::<String>, std::collections::BTreeSet::<String>::new());
    for line in text.lines() {
        assert!(!line.is_empty(), "no blank lines");
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            match keyword {
                "HELP" => {
                    assert!(is_name(name, true) && helps.insert(name.to_string()), "HELP: {line}");
                    let help = parts.next().unwrap_or("");
                    assert!(!help.replace("\\\\", "").replace("\\n", "").contains('\\'), "HELP escapes: {line}");
                }
                "TYPE" => {
                    let kind = parts.next().unwrap_or("");
                    assert!(is_name(name, true), "TYPE: {line}");
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "TYPE: {line}");
                    assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "TYPE given twice: {line}");
                    assert!(!samples.keys().any(|(n, _): &Series| n == name), "TYPE after its samples: {line}");
                }
                _ => {}
            }
            continue;
        }
        assert!(!line.starts_with('#'), "comment: {line}");
        let (name, rest) = line.split_at(line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}")));
        assert!(is_name(name, true), "metric name: {line}");
        let family = types.keys().find(|f| {
            name == f.as_str()
                || (["histogram", "summary"].contains(&types[*f].as_str())
                    && name.strip_prefix(f.as_str()).is_some_and(|s| ["_sum", "_count", "_bucket"].contains(&s)))
        });
        let family = family.unwrap_or_else(|| panic!("a sample before its family's TYPE: {line}")).clone();
        if current.as_ref() != Some(&family) {
            assert!(!closed.contains(&family), "family {family} split in two");
            if let Some(previous) = current.replace(family.clone()) {
                closed.insert(previous);
            }
        }
        let mut labels: Vec<(String, String)> = Vec::new();
        let mut rest = rest;
        if let Some(mut inner) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = inner.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = inner.find('=').unwrap_or_else(|| panic!("label without value: {line}"));
                let label = &inner[..eq];
                assert!(is_name(label, false) && !label.starts_with("__"), "label name '{label}': {line}");
                assert!(!labels.iter().any(|(l, _)| l == label), "label given twice: {line}");
                inner = inner[eq + 1..].strip_prefix('"').unwrap_or_else(|| panic!("label value not quoted: {line}"));
                let mut value = String::new();
                let mut chars = inner.char_indices();
                let close = loop {
                    match chars.next() {
                        None => panic!("unclosed label value: {line}"),
                        Some((i, '"')) => break i,
                        Some((_, '\\')) => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("bad escape {other:?}: {line}"),
                        },
                        Some((_, c)) => value.push(c),
                    }
                };
                labels.push((label.to_string(), value));
                inner = &inner[close + 1..];
                if let Some(after) = inner.strip_prefix(',') {
                    inner = after;
                } else {
                    assert!(inner.starts_with('}'), "after a label: {line}");
                }
            }
        }
        let mut fields = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no space before the value: {line}")).split(' ');
        let value = fields.next().unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("value '{v}': {line}")),
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().unwrap_or_else(|_| panic!("timestamp: {line}"));
        }
        assert!(fields.next().is_none(), "trailing fields: {line}");
        labels.sort();
        assert!(samples.insert((name.to_string(), labels), value).is_none(), "series given twice: {line}");
    }
    samples
}

/// The series of one metric: label set → value.
pub fn metric(samples: &BTreeMap<Series, f64>, name: &str) -> BTreeMap<Vec<(String, String)>, f64> {
    samples.iter().filter(|((n, _), _)| n == name).map(|((_, l), v)| (l.clone(), *v)).collect()
}
