//! One message of a broker (a Kafka record, a NATS JetStream message) as an event (PRODUCT §2):
//! the CloudEvents Kafka binding (binary: `ce_*` headers, body = data; structured:
//! `content-type: application/cloudevents+json`), the NATS binding (`ce-*` headers), the plain
//! headers hand-rolled producers write (`event-id`, `event-type`, `source-service`,
//! `correlation-id`, `causation-id`, `trace-parent` or `traceparent`), or a body that is itself an
//! event in any JSON shape. Where the message came from (topic, partition, offset) is the
//! caller's to keep.
//!
//! **Invariant:** every message gives exactly one item — a bad one is a refused item carrying
//! its headers and body, never an error that would stop the partition.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::body::{Item, ParseOptions, item_from_value, parse_body, parse_json_line};
use crate::event::{ErrorKind, EventError, format_time};

/// The hand-rolled headers, and the attribute each becomes.
const PLAIN_HEADERS: [(&str, &str); 7] = [
    ("event-id", "id"),
    ("event-type", "type"),
    ("source-service", "source"),
    ("correlation-id", "correlationid"),
    ("causation-id", "causationid"),
    ("trace-parent", "traceparent"),
    ("traceparent", "traceparent"),
];

/// The event a broker message carries. `timestamp` is the message's own (Kafka's record time):
/// the event time of a hand-rolled message that names none in an `event-time` or `timestamp`
/// header.
pub fn parse_message(headers: &[(String, Vec<u8>)], body: &[u8], timestamp: Option<DateTime<Utc>>, options: &ParseOptions) -> Item {
    // Header names are case-insensitive in both bindings; values must be UTF-8 text.
    let mut text_headers: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match std::str::from_utf8(value) {
            Ok(v) => text_headers.push((name, v.to_owned())),
            Err(_) => return refused(headers, body, ErrorKind::InvalidAttribute, format!("the header '{name}' is not UTF-8 text")),
        }
    }
    let content_type = text_headers.iter().find(|(n, _)| n == "content-type" || n == "ce_datacontenttype").map(|(_, v)| v.clone());
    let ce: Vec<(String, String)> = text_headers
        .iter()
        .filter_map(|(n, v)| n.strip_prefix("ce_").or_else(|| n.strip_prefix("ce-")).map(|attr| (format!("ce-{attr}"), v.clone())))
        .collect();
    let structured = content_type.as_deref().is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with("application/cloudevents"));
    if ce.iter().any(|(n, _)| n == "ce-specversion") || structured {
        return match parse_body(content_type.as_deref(), &ce, body, options) {
            Ok(mut items) if items.len() == 1 => items.pop().expect("one item"),
            Ok(items) => refused(headers, body, ErrorKind::InvalidAttribute, format!("a message must carry one event, not {}", items.len())),
            Err(e) => refused(headers, body, ErrorKind::MalformedJson, e.to_string()),
        };
    }
    if text_headers.iter().any(|(n, _)| n == "event-type" || n == "event-id") {
        return hand_rolled(&text_headers, headers, body, timestamp, options);
    }
    parse_json_line(body, options)
}

/// A message with the plain headers: they give the attributes, the body the data.
fn hand_rolled(
    text: &[(String, String)],
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    timestamp: Option<DateTime<Utc>>,
    options: &ParseOptions,
) -> Item {
    let mut obj = Map::new();
    obj.insert("specversion".into(), json!("1.0"));
    for (header, attr) in PLAIN_HEADERS {
        if let Some((_, v)) = text.iter().find(|(n, _)| n == header) {
            obj.entry(attr.to_string()).or_insert_with(|| json!(v));
        }
    }
    let time = text.iter().find(|(n, _)| n == "event-time" || n == "timestamp").map(|(_, v)| v.clone());
    match time.or_else(|| timestamp.map(|t| format_time(&t))) {
        Some(t) => obj.insert("time".into(), json!(t)),
        None => obj.insert("time".into(), Value::Null),
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(data) => {
            obj.insert("datacontenttype".into(), json!("application/json"));
            obj.insert("data".into(), data);
        }
        Err(_) if body.is_empty() => {}
        Err(_) => {
            obj.insert("data_base64".into(), json!(base64::engine::general_purpose::STANDARD.encode(body)));
        }
    }
    let value = Value::Object(obj);
    let raw = raw_of(headers, body);
    let mut item = item_from_value(value.to_string(), value, options);
    // The original message, not the event built from it, is what a rejection keeps.
    if item.result.is_err() {
        item.raw = raw;
    }
    item
}

fn refused(headers: &[(String, Vec<u8>)], body: &[u8], kind: ErrorKind, message: String) -> Item {
    Item { raw: raw_of(headers, body), raw_bytes: None, result: Err(EventError::new(kind, message)) }
}

/// A message as JSON text: its headers and body, each as text or, where not UTF-8, base64.
fn raw_of(headers: &[(String, Vec<u8>)], body: &[u8]) -> String {
    let text = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(t) => json!(t),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(bytes)}),
    };
    let headers: Map<String, Value> = headers.iter().map(|(n, v)| (n.clone(), text(v))).collect();
    json!({"headers": headers, "body": text(body)}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect()
    }

    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn kafka_binary_mode_reads_ce_underscore_headers() {
        let headers = h(&[
            ("ce_specversion", "1.0"),
            ("ce_id", "e-1"),
            ("ce_source", "order-service"),
            ("ce_type", "OrderCreated"),
            ("ce_time", "2026-01-01T10:00:00Z"),
            ("ce_correlationid", "c-1"),
            ("content-type", "application/json"),
        ]);
        let item = parse_message(&headers, br#"{"orderId":"o-1"}"#, None, &ParseOptions::default());
        let e = item.result.unwrap();
        assert_eq!((e.id.as_str(), e.source.as_str(), e.event_type.as_str()), ("e-1", "order-service", "OrderCreated"));
        assert_eq!(e.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(e.data, Some(json!({"orderId": "o-1"})));
    }

    #[test]
    fn nats_binary_mode_reads_ce_dash_headers_and_structured_mode_reads_the_body() {
        let headers = h(&[
            ("Ce-Specversion", "1.0"),
            ("Ce-Id", "e-2"),
            ("Ce-Source", "s"),
            ("Ce-Type", "T"),
            ("Ce-Time", "2026-01-01T10:00:00Z"),
            ("Ce-Correlationid", "c"),
        ]);
        assert_eq!(parse_message(&headers, b"{}", None, &ParseOptions::default()).result.unwrap().id, "e-2");
        let body = br#"{"specversion":"1.0","id":"e-3","source":"s","type":"T","time":"2026-01-01T10:00:00Z","correlationid":"c"}"#;
        let item = parse_message(&h(&[("content-type", "application/cloudevents+json; charset=utf-8")]), body, None, &ParseOptions::default());
        assert_eq!(item.result.unwrap().id, "e-3");
    }

    #[test]
    fn hand_rolled_headers_take_the_message_time_when_they_name_none() {
        let headers = h(&[
            ("event-id", "e-4"),
            ("event-type", "PaymentProcessed"),
            ("source-service", "payment-service"),
            ("correlation-id", "c-4"),
            ("causation-id", "e-3"),
            ("trace-parent", TRACE),
        ]);
        let at = DateTime::parse_from_rfc3339("2026-02-03T04:05:06.123456Z").unwrap().with_timezone(&Utc);
        let e = parse_message(&headers, br#"{"amount":10}"#, Some(at), &ParseOptions::default()).result.unwrap();
        assert_eq!((e.id.as_str(), e.event_type.as_str(), e.source.as_str()), ("e-4", "PaymentProcessed", "payment-service"));
        assert_eq!((e.correlation_id.as_deref(), e.causation_id.as_deref()), (Some("c-4"), Some("e-3")));
        assert_eq!(e.traceparent.as_deref(), Some(TRACE));
        assert_eq!(e.time, at);
        assert_eq!(e.data, Some(json!({"amount": 10})));
    }

    #[test]
    fn a_plain_json_body_is_an_event_in_any_shape() {
        let body = br#"{"metadata":{"eventId":"e-5","eventType":"T","correlationId":"c","timestamp":"2026-01-01T10:00:00Z","source":"s"},"payload":{"x":1}}"#;
        assert_eq!(parse_message(&[], body, None, &ParseOptions::default()).result.unwrap().id, "e-5");
    }

    #[test]
    fn a_poison_message_is_one_refused_item_keeping_its_bytes() {
        for (headers, body) in [(h(&[]), b"\xff\xfe not json".to_vec()), (h(&[("ce_specversion", "1.0")]), b"{}".to_vec())] {
            let item = parse_message(&headers, &body, None, &ParseOptions::default());
            assert!(item.result.is_err(), "{:?}", item.result);
        }
        let bad_header = vec![("event-id".to_string(), vec![0xff])];
        let item = parse_message(&bad_header, b"{}", None, &ParseOptions::default());
        let e = item.result.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidAttribute);
        assert!(item.raw.contains("\"base64\""), "{}", item.raw);
        // Without a time anywhere, a hand-rolled message is refused, not stamped by the reader.
        let no_time = h(&[("event-id", "e-6"), ("event-type", "T"), ("source-service", "s"), ("correlation-id", "c")]);
        let item = parse_message(&no_time, b"{}", None, &ParseOptions::default());
        assert!(item.result.is_err());
        assert!(item.raw.contains("\"headers\""), "the message is kept as it came: {}", item.raw);
    }
}
