//! A request body (with its content type and headers) split into events: structured, batch and
//! binary CloudEvents HTTP modes, the `metadata/payload` shape, plain JSON and NDJSON.

use std::fmt;

use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::Limits;
use crate::event::{ErrorKind, Event, EventError};

/// How to parse: limits and the model's correlation rule.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    pub limits: Limits,
    /// PRODUCT §2: an event without a correlation id is rejected unless the model makes it optional.
    pub correlation_required: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions { limits: Limits::default(), correlation_required: true }
    }
}

/// One event of a request: its raw input (kept byte-for-byte where the form allows) and the outcome.
#[derive(Debug)]
pub struct Item {
    pub raw: String,
    /// The input's exact bytes when they are not UTF-8 (the item is then refused, and `raw` holds
    /// them with each bad sequence replaced by U+FFFD, for reading only).
    pub raw_bytes: Option<Vec<u8>>,
    pub result: Result<Event, EventError>,
}

impl Item {
    fn new(raw: String, result: Result<Event, EventError>) -> Item {
        Item { raw, raw_bytes: None, result }
    }
}

/// A request that cannot be split into events at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    Empty,
    TooLarge { size: usize, limit: usize },
    TooDeep { limit: usize },
    Malformed { message: String },
    BatchTooLong { len: usize, limit: usize },
    UnsupportedMediaType { content_type: String },
    NotAnEvent { message: String },
}

impl BodyError {
    /// Stable error code (API `error.code` and DLQ `error_type`).
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::Empty => "empty_body",
            BodyError::TooLarge { .. } => "payload_too_large",
            BodyError::TooDeep { .. } => "too_deeply_nested",
            BodyError::Malformed { .. } => "malformed_json",
            BodyError::BatchTooLong { .. } => "batch_too_large",
            BodyError::UnsupportedMediaType { .. } => "unsupported_media_type",
            BodyError::NotAnEvent { .. } => "not_an_event",
        }
    }
}

/// The remedy of a body over the size or event limit (the limits are the server's to raise).
pub const SMALLER_BATCHES: &str = "split it into smaller batches";

impl BodyError {
    /// What to do, when it is one remedy a client may word its own way (it ends the message).
    pub fn remedy(&self) -> Option<&'static str> {
        matches!(self, BodyError::TooLarge { .. } | BodyError::BatchTooLong { .. }).then_some(SMALLER_BATCHES)
    }

    /// The message without its [`remedy`](Self::remedy).
    pub fn what(&self) -> String {
        match self {
            BodyError::TooLarge { size, limit } => {
                format!("the request body is {size} bytes, over the {limit}-byte limit (the server's --max-request-bytes)")
            }
            BodyError::BatchTooLong { len, limit } => {
                format!("the request holds {len} events, over the {limit}-event limit (the server's --max-batch-events)")
            }
            other => other.to_string(),
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Empty => f.write_str("the request body is empty: send one event, a batch, or NDJSON lines"),
            BodyError::TooLarge { .. } | BodyError::BatchTooLong { .. } => {
                write!(f, "{}; {}", self.what(), self.remedy().unwrap_or_default())
            }
            BodyError::TooDeep { limit } => {
                write!(f, "the JSON is nested deeper than {limit} levels: flatten the payload (or raise --max-json-depth)")
            }
            BodyError::Malformed { message } => write!(f, "the body is not valid JSON: {message}"),
            BodyError::UnsupportedMediaType { content_type } => write!(
                f,
                "content type '{content_type}' is not accepted: use application/cloudevents+json, \
                 application/cloudevents-batch+json, application/json, application/x-ndjson, or binary mode with ce-* headers"
            ),
            BodyError::NotAnEvent { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for BodyError {}

/// Splits a request into events. `headers` are (lower-case name, value) pairs; only `ce-*` headers
/// are read (binary mode). A per-event problem is an [`Item`] with an error; a problem with the body
/// as a whole is a [`BodyError`].
pub fn parse_body(content_type: Option<&str>, headers: &[(String, String)], body: &[u8], options: &ParseOptions) -> Result<Vec<Item>, BodyError> {
    let limits = &options.limits;
    if body.len() > limits.max_request_bytes {
        return Err(BodyError::TooLarge { size: body.len(), limit: limits.max_request_bytes });
    }
    let media = content_type.map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).unwrap_or_default();
    let binary_mode = headers.iter().any(|(n, _)| n == "ce-specversion") && !media.starts_with("application/cloudevents");
    if binary_mode {
        return Ok(vec![parse_binary(content_type, &media, headers, body, options)?]);
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(BodyError::Empty);
    }
    match media.as_str() {
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" | "application/jsonlines" => parse_ndjson(body, options),
        "application/cloudevents+json" | "application/cloudevents-batch+json" | "application/json" | "" => {
            check_depth(body, limits.max_json_depth)?;
            let text = std::str::from_utf8(body).map_err(|e| BodyError::Malformed { message: format!("the body is not UTF-8 ({e})") })?;
            parse_json_document(text, &media, options)
        }
        _ if media.ends_with("+json") => {
            check_depth(body, limits.max_json_depth)?;
            let text = std::str::from_utf8(body).map_err(|e| BodyError::Malformed { message: format!("the body is not UTF-8 ({e})") })?;
            parse_json_document(text, &media, options)
        }
        _ => Err(BodyError::UnsupportedMediaType { content_type: content_type.unwrap_or("").to_string() }),
    }
}

fn parse_json_document(text: &str, media: &str, options: &ParseOptions) -> Result<Vec<Item>, BodyError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        if media == "application/cloudevents+json" {
            return Err(BodyError::NotAnEvent {
                message: "a JSON array was sent as application/cloudevents+json: send a batch as \
                          application/cloudevents-batch+json"
                    .into(),
            });
        }
        let raws: Vec<&RawValue> = serde_json::from_str(text).map_err(malformed)?;
        if raws.len() > options.limits.max_batch_events {
            return Err(BodyError::BatchTooLong { len: raws.len(), limit: options.limits.max_batch_events });
        }
        return Ok(raws.into_iter().map(|raw| item_from_json(raw.get(), options)).collect());
    }
    if media == "application/cloudevents-batch+json" {
        return Err(BodyError::NotAnEvent { message: "a batch (application/cloudevents-batch+json) must be a JSON array of events".into() });
    }
    let value = from_str_strict(text).map_err(malformed)?;
    Ok(vec![item_from_value(text.trim().to_string(), value, options)])
}

fn parse_ndjson(body: &[u8], options: &ParseOptions) -> Result<Vec<Item>, BodyError> {
    let lines: Vec<&[u8]> =
        body.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).filter(|l| !l.iter().all(|b| b.is_ascii_whitespace())).collect();
    if lines.len() > options.limits.max_batch_events {
        return Err(BodyError::BatchTooLong { len: lines.len(), limit: options.limits.max_batch_events });
    }
    Ok(lines.into_iter().map(|line| parse_json_line(line, options)).collect())
}

/// One NDJSON line: any JSON event shape. A bad line is a rejected item, not a failed request.
/// A line that is not UTF-8 is refused as `malformed_json` with its exact bytes in `raw_bytes`:
/// replacing its bad bytes would make distinct events (ids `a\xff`, `a\xfe`) one.
pub fn parse_json_line(line: &[u8], options: &ParseOptions) -> Item {
    let raw = match std::str::from_utf8(line) {
        Ok(text) => text.to_owned(),
        Err(e) => {
            let message = format!(
                "the event is not UTF-8 text (an invalid byte at offset {}): JSON is UTF-8; send other \
                 bytes base64-encoded in data_base64",
                e.valid_up_to()
            );
            return Item {
                raw: String::from_utf8_lossy(line).into_owned(),
                raw_bytes: Some(line.to_vec()),
                result: Err(EventError::new(ErrorKind::MalformedJson, message)),
            };
        }
    };
    if let Err(e) = check_depth(line, options.limits.max_json_depth) {
        return Item::new(raw, Err(EventError::new(ErrorKind::TooDeeplyNested, e.to_string())));
    }
    item_from_json(&raw, options)
}

fn item_from_json(raw: &str, options: &ParseOptions) -> Item {
    match from_str_strict(raw) {
        Ok(value) => item_from_value(raw.to_string(), value, options),
        Err(e) => Item::new(raw.to_string(), Err(EventError::new(ErrorKind::MalformedJson, format!("the event is not valid JSON: {e}")))),
    }
}

/// Parses JSON as `serde_json` does, but refuses an object that holds a key twice: with the last
/// value winning silently, an event's id or type would be whatever one of them the parser kept.
fn from_str_strict(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict>(text).map(|s| s.0)
}

fn from_slice_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(bytes).map(|s| s.0)
}

/// A JSON value without duplicate object keys (see [`from_str_strict`]). Nesting is bounded by
/// [`check_depth`] before any parse.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(serde::de::Error::custom(format_args!(
                    "the key '{shown}' appears twice in one object, so its value is ambiguous: send each key once"
                )));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

pub(crate) fn item_from_value(raw: String, value: Value, options: &ParseOptions) -> Item {
    let result = if raw.len() > options.limits.max_event_bytes {
        Err(EventError::new(
            ErrorKind::EventTooLarge,
            format!(
                "the event is {} bytes, over the {}-byte limit: keep large documents out of events \
                 (or raise --max-event-bytes)",
                raw.len(),
                options.limits.max_event_bytes
            ),
        ))
    } else {
        event_from_value(value, options.correlation_required)
    };
    Item::new(raw, result)
}

/// Recognises the JSON shape of one event and parses it.
fn event_from_value(value: Value, correlation_required: bool) -> Result<Event, EventError> {
    let Value::Object(obj) = value else {
        return Err(EventError::new(ErrorKind::NotAnEvent, "an event must be a JSON object"));
    };
    if obj.contains_key("specversion") {
        Event::from_structured(obj, correlation_required)
    } else if obj.contains_key("metadata") && obj.contains_key("payload") {
        Event::from_metadata_payload(obj, correlation_required)
    } else {
        Err(EventError::new(
            ErrorKind::NotAnEvent,
            "not an event: expected a CloudEvents object (with \"specversion\": \"1.0\") or a \
             {\"metadata\": {…}, \"payload\": {…}} object",
        ))
    }
}

/// Binary mode: attributes in `ce-*` headers (percent-encoded per the HTTP binding), body = data.
fn parse_binary(
    content_type: Option<&str>,
    media: &str,
    headers: &[(String, String)],
    body: &[u8],
    options: &ParseOptions,
) -> Result<Item, BodyError> {
    let mut obj = Map::new();
    let mut raw_headers = Map::new();
    // The first header that cannot be read as an attribute value: refused once `raw` is built.
    let mut bad_header = None;
    for (name, value) in headers {
        if let Some(attr) = name.strip_prefix("ce-") {
            raw_headers.insert(name.clone(), Value::String(value.clone()));
            match header_attribute(name, value) {
                Ok(decoded) => {
                    obj.insert(attr.to_string(), Value::String(decoded));
                }
                Err(message) => {
                    bad_header.get_or_insert(message);
                }
            }
        }
    }
    if let Some(ct) = content_type {
        raw_headers.insert("content-type".into(), Value::String(ct.to_string()));
        obj.insert("datacontenttype".into(), Value::String(ct.to_string()));
    }
    let is_json = media == "application/json" || media.ends_with("+json") || media.is_empty();
    let is_text = media.starts_with("text/");
    let text = std::str::from_utf8(body).ok();
    let raw_body = match text {
        Some(t) => Value::String(t.to_string()),
        None => Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
    };
    let raw = serde_json::to_string(&serde_json::json!({"headers": raw_headers, "body": raw_body, "body_is_base64": text.is_none()}))
        .expect("JSON values serialise");
    // A bad body is this one event's problem: the rejection keeps the headers that identify it.
    let reject = |kind: ErrorKind, message: String| Ok(Item::new(raw.clone(), Err(EventError::new(kind, message))));
    if let Some(message) = bad_header {
        return reject(ErrorKind::InvalidAttribute, message);
    }
    if !body.is_empty() {
        let (key, value) = if is_json {
            if let Err(e) = check_depth(body, options.limits.max_json_depth) {
                return reject(ErrorKind::TooDeeplyNested, e.to_string());
            }
            match from_slice_strict(body) {
                Ok(v) => ("data", v),
                Err(e) => return reject(ErrorKind::MalformedJson, format!("the event data is not valid JSON: {e}")),
            }
        } else if let (true, Some(t)) = (is_text, text) {
            ("data", Value::String(t.to_string()))
        } else {
            ("data_base64", Value::String(base64::engine::general_purpose::STANDARD.encode(body)))
        };
        obj.insert(key.to_string(), value);
    }
    let result = if body.len() > options.limits.max_event_bytes {
        Err(EventError::new(
            ErrorKind::EventTooLarge,
            format!("the event data is {} bytes, over the {}-byte limit", body.len(), options.limits.max_event_bytes),
        ))
    } else {
        Event::from_structured(obj, options.correlation_required)
    };
    Ok(Item::new(raw, result))
}

/// A `ce-*` header's attribute value. The HTTP binding carries header values as ASCII, with
/// other text percent-encoded as UTF-8: raw non-ASCII text, or a percent-encoding that decodes to
/// bytes that are not UTF-8, is refused with a sentence saying so (replacing the bad bytes would
/// make distinct ids one).
fn header_attribute(name: &str, value: &str) -> Result<String, String> {
    if !value.is_ascii() {
        let shown: String = value.chars().take(40).collect();
        return Err(format!(
            "header {name} holds text that is not ASCII ('{shown}'): HTTP header values are ASCII, so \
             percent-encode the UTF-8 bytes as the CloudEvents HTTP binding says ('é' is %C3%A9)"
        ));
    }
    String::from_utf8(percent_decode(value)).map_err(|_| {
        let shown: String = value.chars().take(40).collect();
        format!("header {name} ('{shown}') percent-decodes to bytes that are not UTF-8: percent-encode UTF-8 text")
    })
}

fn percent_decode(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn malformed(e: serde_json::Error) -> BodyError {
    BodyError::Malformed { message: e.to_string() }
}

/// Rejects JSON nested deeper than `limit` without parsing it (a linear scan that skips strings),
/// so a hostile body never reaches the recursive parser.
fn check_depth(body: &[u8], limit: usize) -> Result<(), BodyError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Err(BodyError::TooDeep { limit });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ce(id: &str) -> Value {
        json!({"specversion": "1.0", "id": id, "source": "s", "type": "T", "time": "2026-11-23T10:00:00Z",
               "correlationid": "c", "data": {"k": 1}})
    }

    fn parse(ct: &str, body: &str) -> Result<Vec<Item>, BodyError> {
        parse_body(Some(ct), &[], body.as_bytes(), &ParseOptions::default())
    }

    #[test]
    fn structured_batch_and_plain_json() {
        let one = parse("application/cloudevents+json; charset=utf-8", &ce("a").to_string()).unwrap();
        assert_eq!(one[0].result.as_ref().unwrap().id, "a");
        let batch = json!([ce("a"), ce("b"), 5]).to_string();
        let items = parse("application/cloudevents-batch+json", &batch).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].result.as_ref().unwrap().id, "b");
        assert_eq!(items[2].result.as_ref().unwrap_err().kind, ErrorKind::NotAnEvent);
        assert_eq!(items[2].raw, "5", "raw input kept byte-for-byte");
        assert_eq!(parse("application/json", &batch).unwrap().len(), 3);
    }

    #[test]
    fn ndjson_keeps_good_lines_around_a_bad_one() {
        let body = format!("{}\n{{not json\n\n{}\r\n", ce("a"), ce("b"));
        let items = parse("application/x-ndjson", &body).unwrap();
        assert_eq!(items.len(), 3);
        assert!(items[0].result.is_ok() && items[2].result.is_ok());
        let err = items[1].result.as_ref().unwrap_err();
        assert_eq!(err.kind, ErrorKind::MalformedJson);
        assert_eq!(items[1].raw, "{not json");
    }

    /// The `ce-*` headers of a minimal binary-mode event, with `overrides` replacing or adding some.
    fn binary_headers(overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let base = [
            ("ce-specversion", "1.0"),
            ("ce-id", "b"),
            ("ce-source", "s"),
            ("ce-type", "T"),
            ("ce-time", "2026-11-23T10:00:00Z"),
            ("ce-correlationid", "c"),
        ];
        let kept = base.iter().filter(|(name, _)| !overrides.iter().any(|(o, _)| o == name));
        kept.chain(overrides).map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn binary_mode_reads_ce_headers() {
        let headers: Vec<(String, String)> = [
            ("ce-specversion", "1.0"),
            ("ce-id", "b1"),
            ("ce-source", "payment-service"),
            ("ce-type", "PaymentProcessed"),
            ("ce-time", "2026-11-23T10:00:00Z"),
            ("ce-correlationid", "corr%20one"),
            ("ce-sequence", "4"),
            ("x-other", "ignored"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let items = parse_body(Some("application/json"), &headers, br#"{"orderId":"o1"}"#, &ParseOptions::default()).unwrap();
        let e = items[0].result.as_ref().unwrap();
        assert_eq!(e.correlation_id.as_deref(), Some("corr one"));
        assert_eq!(e.sequence, Some(4));
        assert_eq!(e.data.as_ref().unwrap()["orderId"], "o1");
        assert!(items[0].raw.contains("ce-id"));
        let bytes = parse_body(Some("application/octet-stream"), &headers, &[0xff, 0x00], &ParseOptions::default()).unwrap();
        assert_eq!(bytes[0].result.as_ref().unwrap().data_base64.as_deref(), Some("/wA="));
    }

    #[test]
    fn whole_body_errors() {
        assert_eq!(parse("application/json", "{\"a\": ").unwrap_err().code(), "malformed_json");
        assert_eq!(parse("application/json", "  ").unwrap_err(), BodyError::Empty);
        assert_eq!(parse("text/csv", "a,b").unwrap_err().code(), "unsupported_media_type");
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(parse("application/json", &deep).unwrap_err(), BodyError::TooDeep { limit: 64 });
        // Brackets inside strings do not count.
        let mut e = ce("s");
        e["data"] = json!({"text": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["});
        assert!(parse("application/json", &e.to_string()).unwrap()[0].result.is_ok());
        let opts = ParseOptions { limits: Limits { max_request_bytes: 10, ..Limits::default() }, ..Default::default() };
        let err = parse_body(Some("application/json"), &[], &[b' '; 11], &opts).unwrap_err();
        assert_eq!(err, BodyError::TooLarge { size: 11, limit: 10 });
        let opts = ParseOptions { limits: Limits { max_batch_events: 1, ..Limits::default() }, ..Default::default() };
        let err = parse_body(Some("application/json"), &[], json!([ce("a"), ce("b")]).to_string().as_bytes(), &opts).unwrap_err();
        assert_eq!(err, BodyError::BatchTooLong { len: 2, limit: 1 });
    }

    #[test]
    fn oversize_event_is_rejected_alone() {
        let opts = ParseOptions { limits: Limits { max_event_bytes: 200, ..Limits::default() }, ..Default::default() };
        let mut big = ce("big");
        big["data"] = json!({"blob": "x".repeat(300)});
        let body = json!([ce("small"), big]).to_string();
        let items = parse_body(Some("application/json"), &[], body.as_bytes(), &opts).unwrap();
        assert!(items[0].result.is_ok());
        assert_eq!(items[1].result.as_ref().unwrap_err().kind, ErrorKind::EventTooLarge);
    }

    /// Regression: invalid UTF-8 in an NDJSON line was replaced by U+FFFD and accepted, so ids
    /// `n-\xff` and `n-\xfe` became one id and the second was answered "duplicate" and dropped.
    #[test]
    fn an_ndjson_line_that_is_not_utf8_is_refused_with_its_exact_bytes() {
        let line = |id: &[u8]| {
            let mut l = br#"{"specversion":"1.0","id":"n-"#.to_vec();
            l.extend_from_slice(id);
            l.extend_from_slice(br#"","source":"s","type":"T","time":"2026-11-23T10:00:00Z","correlationid":"c"}"#);
            l
        };
        let mut data_line = ce("d").to_string().into_bytes();
        let at = data_line.windows(3).position(|w| w == b"\"k\"").unwrap();
        data_line.insert(at + 1, 0xfe);
        let mut body = line(b"\xff");
        for l in [line(b"\xfe"), line(b"ok"), data_line.clone()] {
            body.push(b'\n');
            body.extend_from_slice(&l);
        }
        let items = parse_body(Some("application/x-ndjson"), &[], &body, &ParseOptions::default()).unwrap();
        assert_eq!(items.len(), 4);
        for (i, sent) in [(0, line(b"\xff")), (1, line(b"\xfe")), (3, data_line)] {
            let err = items[i].result.as_ref().unwrap_err();
            assert_eq!(err.kind, ErrorKind::MalformedJson, "line {i}");
            assert!(err.message.contains("not UTF-8"), "{err}");
            assert_eq!(items[i].raw_bytes.as_deref(), Some(sent.as_slice()), "line {i} kept byte for byte");
        }
        assert_eq!(items[2].result.as_ref().unwrap().id, "n-ok");
        assert!(items[2].raw_bytes.is_none());
    }

    /// Regression: a key given twice was accepted with the last value winning, so an event's id
    /// was whichever the parser kept.
    #[test]
    fn duplicate_keys_are_refused_as_malformed() {
        let twice = r#"{"specversion":"1.0","id":"a","id":"b","source":"s","type":"T","time":"2026-11-23T10:00:00Z","correlationid":"c"}"#;
        let err = parse("application/cloudevents+json", twice).unwrap_err();
        assert_eq!(err.code(), "malformed_json");
        assert!(err.to_string().contains("the key 'id' appears twice"), "{err}");
        let nested =
            r#"{"specversion":"1.0","id":"a","source":"s","type":"T","time":"2026-11-23T10:00:00Z","correlationid":"c","data":{"k":1,"k":2}}"#;
        for (ct, body) in [("application/json", format!("[{twice}, {}]", ce("ok"))), ("application/x-ndjson", format!("{nested}\n{}", ce("ok")))] {
            let items = parse(ct, &body).unwrap();
            let err = items[0].result.as_ref().unwrap_err();
            assert_eq!(err.kind, ErrorKind::MalformedJson, "{ct}");
            assert!(err.message.contains("appears twice"), "{err}");
            assert!(items[1].result.is_ok());
        }
        let headers = binary_headers(&[]);
        let items = parse_body(Some("application/json"), &headers, br#"{"k":1,"k":2}"#, &ParseOptions::default()).unwrap();
        assert_eq!(items[0].result.as_ref().unwrap_err().kind, ErrorKind::MalformedJson);
        // Equal keys in different objects are fine.
        assert!(parse("application/json", r#"{"specversion":"1.0","id":"a","source":"s","type":"T","time":"2026-11-23T10:00:00Z","correlationid":"c","data":{"id":1,"x":{"id":2}}}"#).unwrap()[0].result.is_ok());
    }

    /// Regression: raw UTF-8 in a ce-* header was dropped and answered "attribute 'type' is
    /// missing"; a percent-encoding of bytes that are not UTF-8 was replaced by U+FFFD.
    #[test]
    fn ce_headers_must_be_ascii_and_decode_to_utf8() {
        let with = |name: &str, value: &str| binary_headers(&[(name, value)]);
        let first = |h: Vec<(String, String)>| parse_body(Some("text/plain"), &h, b"hi", &ParseOptions::default()).unwrap().remove(0).result;
        let err = first(with("ce-type", "Zahlung\u{e9}")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidAttribute);
        assert!(err.message.contains("ce-type") && err.message.contains("not ASCII") && err.message.contains("%C3%A9"), "{err}");
        let err = first(with("ce-id", "a%FF")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidAttribute);
        assert!(err.message.contains("ce-id") && err.message.contains("not UTF-8"), "{err}");
        assert_eq!(first(with("ce-type", "Zahlung%C3%A9")).unwrap().event_type, "Zahlung\u{e9}");
    }
}

/// Identity fields read from input that was refused, where they can be read at all, so a
/// dead-letter record can be found by correlation id or event id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub source: Option<String>,
    pub correlation_id: Option<String>,
}

/// Best-effort [`Identity`] of a raw event: CloudEvents attributes, `metadata/payload` fields, or
/// the `ce-*` headers of a binary-mode record.
pub fn sniff_identity(raw: &str) -> Identity {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(raw) else { return Identity::default() };
    // A value over the identifier caps is no identity (and is not echoed back in answers).
    let text = |m: &Map<String, Value>, keys: &[&str]| {
        keys.iter().find_map(|k| match m.get(*k) {
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= crate::MAX_SOURCE_CHARS => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    };
    if let Some(Value::Object(meta)) = obj.get("metadata") {
        return Identity {
            event_id: text(meta, &["eventId"]),
            event_type: text(meta, &["eventType"]),
            source: text(meta, &["source", "sourceService"]),
            correlation_id: text(meta, &["correlationId"]),
        };
    }
    if let Some(Value::Object(headers)) = obj.get("headers") {
        return Identity {
            event_id: text(headers, &["ce-id"]),
            event_type: text(headers, &["ce-type"]),
            source: text(headers, &["ce-source"]),
            correlation_id: text(headers, &["ce-correlationid"]),
        };
    }
    Identity {
        event_id: text(&obj, &["id"]),
        event_type: text(&obj, &["type"]),
        source: text(&obj, &["source"]),
        correlation_id: text(&obj, &["correlationid", "correlationId", "correlation_id"]),
    }
}
