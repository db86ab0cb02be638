//! Every form `parse_body` accepts, and `parse_json_line`, on arbitrary input.
//!
//! Input layout: byte 0 picks the form (content type, binary mode, a single NDJSON line or a broker
//! message through `parse_message`), byte 1
//! the options (correlation optional, small limits), the rest is the body. In binary mode the body
//! starts with `name: value` header lines up to an empty line; with an explicit content type the
//! first line is the content type.
//!
//! Asserted beyond "no panic": every returned `Event` is valid (id, source and type non-empty, a UTC
//! time that is the canonical microsecond string's own value, a correlation id when required, a
//! valid traceparent, a positive schema version, extension names and values as CloudEvents allows,
//! data no deeper than the limit) and its canonical JSON parses back to the same event; every refusal
//! keeps its raw input (byte for byte when it is not UTF-8) and carries one of the stable error
//! codes; the limits hold.

#![no_main]

use base64::Engine as _;
use causeway_envelope::{
    BodyError, Event, EventError, Item, Limits, ParseOptions, format_time, parse_body, parse_json_line,
    parse_message, parse_time, sniff_identity, validate_traceparent,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const EVENT_CODES: &[&str] = &[
    "malformed_json", "too_deeply_nested", "not_an_event", "missing_attribute", "invalid_attribute",
    "unsupported_specversion", "invalid_time", "invalid_traceparent", "missing_correlation", "event_too_large",
];
const BODY_CODES: &[&str] = &[
    "empty_body", "payload_too_large", "too_deeply_nested", "malformed_json", "batch_too_large",
    "unsupported_media_type", "not_an_event",
];
/// Attributes CloudEvents or causeway define: never extensions.
const CORE: &[&str] = &[
    "specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema", "data", "data_base64",
    "correlationid", "causationid", "traceparent", "tracestate", "sequence", "idempotencykey", "schemaversion",
];
/// Content types a JSON body is sent with.
const JSON_TYPES: &[Option<&str>] = &[
    Some("application/cloudevents+json"),
    Some("application/cloudevents-batch+json"),
    Some("application/json"),
    None,
    Some("application/x-ndjson"),
];

#[derive(Clone, Copy, PartialEq)]
enum Form {
    /// A content type from `JSON_TYPES`.
    Json(Option<&'static str>),
    /// `ce-*` headers, then the body.
    Binary,
    /// One NDJSON line through `parse_json_line`.
    Line,
    /// The first line is the content type.
    Typed,
    /// A broker message through `parse_message`: header lines (bytes kept), then the body.
    Message,
}

fuzz_target!(|data: &[u8]| {
    let [form, flags, rest @ ..] = data else { return };
    let form = match form % 9 {
        n @ 0..=4 => Form::Json(JSON_TYPES[n as usize]),
        5 => Form::Binary,
        6 => Form::Line,
        7 => Form::Typed,
        _ => Form::Message,
    };
    let limits = if flags & 2 != 0 {
        Limits { max_request_bytes: 4096, max_event_bytes: 512, max_json_depth: 6, max_batch_events: 4 }
    } else {
        Limits::default()
    };
    let options = ParseOptions { limits, correlation_required: flags & 1 == 0 };

    match form {
        Form::Line => {
            let item = parse_json_line(rest, &options);
            assert_eq!(item.raw, String::from_utf8_lossy(rest), "a line is kept as sent");
            check_item(&item, &options);
        }
        Form::Json(content_type) => check_body(content_type, &[], rest, &options, false),
        Form::Typed => {
            let (line, body) = split_line(rest);
            let content_type = String::from_utf8_lossy(line);
            check_body(Some(content_type.trim()), &[], body, &options, false);
        }
        Form::Message => {
            let (headers, body) = message(rest);
            let timestamp = (flags & 4 != 0).then(|| parse_time("2026-01-01T00:00:00Z").expect("a time"));
            let item = parse_message(&headers, body, timestamp, &options);
            check_item(&item, &options);
        }
        Form::Binary => {
            let (headers, content_type, body) = binary_request(rest);
            // As parse_body decides: the media type before any parameters.
            let media = content_type.as_deref().map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
            let binary = !media.is_some_and(|m| m.starts_with("application/cloudevents"));
            check_body(content_type.as_deref(), &headers, body, &options, binary);
        }
    }
});

fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

/// Header lines (`name: value`, the value's bytes as they are) up to an empty line, then the body.
fn message(mut rest: &[u8]) -> (Vec<(String, Vec<u8>)>, &[u8]) {
    let mut headers = Vec::new();
    loop {
        let (line, after) = split_line(rest);
        if line.is_empty() || rest.is_empty() {
            return (headers, after);
        }
        rest = after;
        let colon = line.iter().position(|b| *b == b':').unwrap_or(line.len());
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
        let value = line.get(colon + 1..).unwrap_or_default().trim_ascii().to_vec();
        headers.push((name, value));
    }
}

/// Header lines (`name: value`, names lower-cased as HTTP servers hand them over) up to an empty
/// line, then the body. `ce-specversion: 1.0` is added when absent, so binary mode is reached.
fn binary_request(mut rest: &[u8]) -> (Vec<(String, String)>, Option<String>, &[u8]) {
    let mut headers = Vec::new();
    let mut content_type = None;
    loop {
        let (line, after) = split_line(rest);
        if line.is_empty() || rest.is_empty() {
            rest = after;
            break;
        }
        rest = after;
        let line = String::from_utf8_lossy(line);
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        if name == "content-type" {
            content_type = Some(value);
        } else {
            headers.push((name, value));
        }
    }
    if !headers.iter().any(|(n, _)| n == "ce-specversion") {
        headers.insert(0, ("ce-specversion".into(), "1.0".into()));
    }
    (headers, content_type, rest)
}

fn check_body(content_type: Option<&str>, headers: &[(String, String)], body: &[u8], options: &ParseOptions, binary: bool) {
    let limits = options.limits;
    let result = parse_body(content_type, headers, body, options);
    if body.len() > limits.max_request_bytes {
        assert!(matches!(result, Err(BodyError::TooLarge { .. })), "an oversize body is refused whole: {result:?}");
        return;
    }
    let items = match result {
        Ok(items) => items,
        Err(e) => {
            assert!(BODY_CODES.contains(&e.code()), "unknown body error code {}", e.code());
            assert!(!e.to_string().is_empty(), "a body error says what is wrong");
            assert!(!binary || matches!(e, BodyError::TooLarge { .. }), "binary mode refuses a body whole only when too large: {e:?}");
            return;
        }
    };
    if binary {
        assert_eq!(items.len(), 1, "binary mode carries one event");
        check_binary_raw(&items[0], headers, body);
    } else {
        // An empty array is an empty batch: zero items, not an error.
        assert!(items.len() <= limits.max_batch_events, "{} items over the batch limit", items.len());
        for item in &items {
            // Each item is a piece of the body as sent (its exact bytes when they are not UTF-8).
            let kept = item.raw_bytes.as_deref().unwrap_or(item.raw.as_bytes());
            assert!(body.windows(kept.len().max(1)).any(|w| w == kept), "raw input {:?} is not part of the body", item.raw);
            if item.result.is_ok() {
                assert!(item.raw.len() <= limits.max_event_bytes, "an accepted event is over the event limit");
            }
        }
    }
    for item in &items {
        assert!(!item.raw.is_empty(), "an item keeps its raw input");
        check_item(item, options);
    }
}

/// A binary-mode item keeps the `ce-*` headers as sent and the body (base64 when not UTF-8).
fn check_binary_raw(item: &Item, headers: &[(String, String)], body: &[u8]) {
    let raw: Value = serde_json::from_str(&item.raw).expect("a binary-mode raw record is JSON");
    for (name, value) in headers.iter().filter(|(n, _)| n.starts_with("ce-")) {
        let last = headers.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v);
        if last == Some(value) {
            assert_eq!(raw["headers"][name.as_str()], Value::String(value.clone()), "header {name} kept as sent");
        }
    }
    match std::str::from_utf8(body) {
        Ok(text) => {
            assert_eq!(raw["body"], Value::String(text.to_string()));
            assert_eq!(raw["body_is_base64"], Value::Bool(false));
        }
        Err(_) => {
            assert_eq!(raw["body"], Value::String(base64::engine::general_purpose::STANDARD.encode(body)));
            assert_eq!(raw["body_is_base64"], Value::Bool(true));
        }
    }
}

fn check_item(item: &Item, options: &ParseOptions) {
    let _ = sniff_identity(&item.raw);
    // Input that is not UTF-8 is refused and kept byte for byte; `raw` is then only for reading.
    if let Some(bytes) = &item.raw_bytes {
        assert!(item.result.is_err(), "an event accepted from bytes that are not UTF-8");
        assert!(std::str::from_utf8(bytes).is_err(), "raw_bytes kept for UTF-8 input");
        assert_eq!(item.raw, String::from_utf8_lossy(bytes), "raw is not the bytes read lossily");
    }
    match &item.result {
        Ok(event) => check_event(event, options),
        Err(e) => check_error(e),
    }
}

fn check_error(e: &EventError) {
    assert!(EVENT_CODES.contains(&e.kind.code()), "unknown error code {}", e.kind.code());
    assert!(!e.message.is_empty(), "a refusal says why");
    assert_eq!(e.to_string(), e.message);
}

fn check_event(e: &Event, options: &ParseOptions) {
    assert!(!e.id.is_empty() && !e.source.is_empty() && !e.event_type.is_empty(), "empty identity: {e:?}");
    let time = format_time(&e.time);
    assert!(time.len() == 27 && time.ends_with('Z'), "time {time} is not the canonical UTC form");
    assert_eq!(parse_time(&time).ok(), Some(e.time), "time {time} does not read back as the event's time {:?}", e.time);
    assert_eq!(e.time_string(), time);
    if options.correlation_required {
        assert!(e.correlation_id.is_some(), "accepted without the required correlation id");
    }
    for (name, v) in [("correlationid", &e.correlation_id), ("causationid", &e.causation_id)] {
        assert!(v.as_deref().is_none_or(|s| !s.is_empty()), "empty {name} kept");
    }
    if let Some(tp) = &e.traceparent {
        validate_traceparent(tp).expect("an accepted traceparent is valid");
    }
    assert!(e.schema_version.is_none_or(|v| v >= 1), "schemaversion {:?}", e.schema_version);
    assert!(!(e.data.is_some() && e.data_base64.is_some()), "both data and data_base64");
    if let Some(b64) = &e.data_base64 {
        base64::engine::general_purpose::STANDARD.decode(b64).expect("data_base64 decodes");
    }
    for (name, value) in &e.extensions {
        assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "extension name {name:?}");
        assert!(!CORE.contains(&name.as_str()), "core attribute {name} kept as an extension");
        assert!(matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)), "extension {name} = {value}");
    }
    if let Some(data) = &e.data {
        assert!(depth(data) <= options.limits.max_json_depth, "data nested deeper than the limit");
    }
    // The canonical form is what the store keeps: it must read back as the very same event.
    let json = e.to_json();
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&json) else { panic!("canonical JSON {json} is not an object") };
    let back = Event::from_structured(map, options.correlation_required);
    assert_eq!(back.as_ref(), Ok(e), "canonical JSON {json} does not read back");
    assert_eq!(back.map(|b| b.to_json()).ok(), Some(json), "canonical JSON is not stable");
}

/// Nesting depth of a value (an object or array counts one level), iteratively.
fn depth(value: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        max = max.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    max
}
