//! The canonical event and its conversion from one JSON object (CloudEvents structured form or the
//! hand-rolled `metadata/payload` shape).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Datelike, SecondsFormat, SubsecRound, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::traceparent::validate_traceparent;

/// Why one event was refused. The `kind` is its DLQ error type; the message a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    pub kind: ErrorKind,
    pub message: String,
}

/// The classes of per-event rejection; [`ErrorKind::code`] is the stable string used in the API,
/// the DLQ `error_type` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    MalformedJson,
    TooDeeplyNested,
    NotAnEvent,
    MissingAttribute,
    InvalidAttribute,
    UnsupportedSpecversion,
    InvalidTime,
    InvalidTraceparent,
    MissingCorrelation,
    EventTooLarge,
}

impl ErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::MalformedJson => "malformed_json",
            ErrorKind::TooDeeplyNested => "too_deeply_nested",
            ErrorKind::NotAnEvent => "not_an_event",
            ErrorKind::MissingAttribute => "missing_attribute",
            ErrorKind::InvalidAttribute => "invalid_attribute",
            ErrorKind::UnsupportedSpecversion => "unsupported_specversion",
            ErrorKind::InvalidTime => "invalid_time",
            ErrorKind::InvalidTraceparent => "invalid_traceparent",
            ErrorKind::MissingCorrelation => "missing_correlation",
            ErrorKind::EventTooLarge => "event_too_large",
        }
    }
}

impl EventError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        EventError { kind, message: message.into() }
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EventError {}

/// An event in canonical CloudEvents 1.0 form with causeway's extension attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    /// The producing service.
    pub source: String,
    pub event_type: String,
    /// Event time, UTC.
    pub time: DateTime<Utc>,
    /// The aggregate id.
    pub subject: Option<String>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    pub correlation_id: Option<String>,
    /// `None` for a root event.
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub sequence: Option<i64>,
    pub idempotency_key: Option<String>,
    pub schema_version: Option<i64>,
    /// Other extension attributes, by name.
    pub extensions: BTreeMap<String, Value>,
    pub data: Option<Value>,
    pub data_base64: Option<String>,
}

/// Longest accepted `id`, `type`, `subject`, `correlationid`, `causationid` and `idempotencykey`,
/// in characters (at most 1 KiB of UTF-8, 3 KiB percent-encoded): identifiers are carried in URLs.
/// Characters, as JSON Schema's `maxLength` counts, so the OpenAPI document states it exactly.
pub const MAX_ID_CHARS: usize = 256;
/// Longest accepted `source` (a URI reference), in characters.
pub const MAX_SOURCE_CHARS: usize = 1024;

/// Attributes the CloudEvents spec or causeway defines; anything else is an extension.
const CORE_ATTRIBUTES: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
    "correlationid",
    "causationid",
    "traceparent",
    "tracestate",
    "sequence",
    "idempotencykey",
    "schemaversion",
];

impl Event {
    /// The event time as stored and compared: RFC 3339, UTC, fixed microsecond precision, so that
    /// the lexical order of these strings is their chronological order.
    pub fn time_string(&self) -> String {
        format_time(&self.time)
    }

    /// The canonical CloudEvents JSON (structured mode) of this event.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event always serialises")
    }

    /// Parses a CloudEvents structured-mode object. `correlation_required` applies PRODUCT §2's rule.
    pub fn from_structured(mut obj: Map<String, Value>, correlation_required: bool) -> Result<Event, EventError> {
        let specversion = take_string(&mut obj, "specversion")?;
        if specversion != "1.0" {
            return Err(EventError::new(
                ErrorKind::UnsupportedSpecversion,
                format!("specversion '{specversion}' is not supported: send CloudEvents 1.0 (\"specversion\": \"1.0\")"),
            ));
        }
        let id = take_string(&mut obj, "id")?;
        let source = take_string(&mut obj, "source")?;
        let event_type = take_string(&mut obj, "type")?;
        let time = parse_time(&take_string(&mut obj, "time")?)?;
        let subject = take_opt_string(&mut obj, "subject")?;
        let datacontenttype = take_opt_string(&mut obj, "datacontenttype")?;
        let dataschema = take_opt_string(&mut obj, "dataschema")?;
        let correlation_id = take_opt_string(&mut obj, "correlationid")?.filter(|s| !s.is_empty());
        let causation_id = take_opt_string(&mut obj, "causationid")?.filter(|s| !s.is_empty());
        let traceparent = take_opt_string(&mut obj, "traceparent")?;
        if let Some(tp) = &traceparent {
            validate_traceparent(tp).map_err(|m| EventError::new(ErrorKind::InvalidTraceparent, m))?;
        }
        let tracestate = take_opt_string(&mut obj, "tracestate")?;
        let sequence = take_opt_integer(&mut obj, "sequence")?;
        let idempotency_key = take_opt_string(&mut obj, "idempotencykey")?;
        let schema_version = check_schema_version(take_opt_integer(&mut obj, "schemaversion")?, "schemaversion")?;
        let data = obj.remove("data");
        let data_base64 = take_opt_string(&mut obj, "data_base64")?;
        if data.is_some() && data_base64.is_some() {
            return Err(EventError::new(ErrorKind::InvalidAttribute, "an event carries either 'data' or 'data_base64', not both"));
        }
        if let Some(b64) = &data_base64
            && base64::engine::general_purpose::STANDARD.decode(b64).is_err()
        {
            return Err(EventError::new(ErrorKind::InvalidAttribute, "data_base64 is not valid base64"));
        }
        let mut extensions = BTreeMap::new();
        for (name, value) in obj {
            check_extension_name(&name)?;
            match value {
                Value::Null => {}
                Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                    extensions.insert(name, value);
                }
                _ => {
                    return Err(EventError::new(
                        ErrorKind::InvalidAttribute,
                        format!("extension attribute '{name}' must be a string, number or boolean, not an object or array"),
                    ));
                }
            }
        }
        let event = Event {
            id,
            source,
            event_type,
            time,
            subject,
            datacontenttype,
            dataschema,
            correlation_id,
            causation_id,
            traceparent,
            tracestate,
            sequence,
            idempotency_key,
            schema_version,
            extensions,
            data,
            data_base64,
        };
        event.checked(false, correlation_required)
    }

    /// Parses the hand-rolled `{"metadata":{…},"payload":{…},"entityId"?}` shape.
    pub fn from_metadata_payload(mut obj: Map<String, Value>, correlation_required: bool) -> Result<Event, EventError> {
        let Some(Value::Object(mut meta)) = obj.remove("metadata") else {
            return Err(EventError::new(ErrorKind::NotAnEvent, "'metadata' must be an object"));
        };
        let data = obj.remove("payload");
        let field = |meta: &mut Map<String, Value>, names: &[&str]| -> Result<Option<String>, EventError> {
            for name in names {
                if let Some(v) = meta.remove(*name) {
                    return scalar_to_string(v, &format!("metadata.{name}")).map(Some);
                }
            }
            Ok(None)
        };
        let required = |v: Option<String>, name: &str| {
            v.filter(|s| !s.is_empty())
                .ok_or_else(|| EventError::new(ErrorKind::MissingAttribute, format!("metadata.{name} is required and must not be empty")))
        };
        let id = required(field(&mut meta, &["eventId"])?, "eventId")?;
        let event_type = required(field(&mut meta, &["eventType"])?, "eventType")?;
        let source = required(field(&mut meta, &["source", "sourceService"])?, "source")?;
        let time = parse_time(&required(field(&mut meta, &["timestamp"])?, "timestamp")?)?;
        let correlation_id = field(&mut meta, &["correlationId"])?.filter(|s| !s.is_empty());
        let causation_id = field(&mut meta, &["causationId"])?.filter(|s| !s.is_empty());
        let traceparent = field(&mut meta, &["traceparent", "traceParent"])?;
        if let Some(tp) = &traceparent {
            validate_traceparent(tp).map_err(|m| EventError::new(ErrorKind::InvalidTraceparent, m))?;
        }
        let tracestate = field(&mut meta, &["tracestate", "traceState"])?;
        let sequence = take_opt_integer(&mut meta, "sequence")?;
        let idempotency_key = field(&mut meta, &["idempotencyKey"])?;
        let schema_version = check_schema_version(take_opt_integer(&mut meta, "schemaVersion")?, "metadata.schemaVersion")?;
        let subject = match obj.remove("entityId") {
            Some(v) => Some(scalar_to_string(v, "entityId")?),
            None => field(&mut meta, &["entityId", "aggregateId"])?,
        };
        // Other scalar metadata is kept as extensions, named as CloudEvents requires.
        let mut extensions = BTreeMap::new();
        for (name, value) in meta {
            let ext: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
            if ext.is_empty() || CORE_ATTRIBUTES.contains(&ext.as_str()) || !is_scalar(&value) {
                continue;
            }
            extensions.entry(ext).or_insert(value);
        }
        let event = Event {
            id,
            source,
            event_type,
            time,
            subject,
            datacontenttype: Some("application/json".into()),
            dataschema: None,
            correlation_id,
            causation_id,
            traceparent,
            tracestate,
            sequence,
            idempotency_key,
            schema_version,
            extensions,
            data,
            data_base64: None,
        };
        event.checked(true, correlation_required)
    }

    /// The checks every input shape ends with; `metadata` names attributes as that shape does.
    fn checked(self, metadata: bool, correlation_required: bool) -> Result<Event, EventError> {
        self.check_lengths(metadata)?;
        self.check_correlation(correlation_required)?;
        Ok(self)
    }

    /// Identifiers are looked up by value and carried in URLs (`GET /v1/events/{id}`,
    /// `/v1/correlations/{id}`): each has a length cap ([`MAX_ID_CHARS`], [`MAX_SOURCE_CHARS`]).
    fn check_lengths(&self, metadata: bool) -> Result<(), EventError> {
        let fields = [
            ("id", "metadata.eventId", Some(&self.id), MAX_ID_CHARS),
            ("source", "metadata.source", Some(&self.source), MAX_SOURCE_CHARS),
            ("type", "metadata.eventType", Some(&self.event_type), MAX_ID_CHARS),
            ("subject", "entityId", self.subject.as_ref(), MAX_ID_CHARS),
            ("correlationid", "metadata.correlationId", self.correlation_id.as_ref(), MAX_ID_CHARS),
            ("causationid", "metadata.causationId", self.causation_id.as_ref(), MAX_ID_CHARS),
            ("idempotencykey", "metadata.idempotencyKey", self.idempotency_key.as_ref(), MAX_ID_CHARS),
        ];
        for (name, metadata_name, value, limit) in fields {
            let Some(value) = value else { continue };
            // Bytes bound characters from above: most values are counted only when long.
            if value.len() > limit && value.chars().count() > limit {
                let name = if metadata { metadata_name } else { name };
                let start: String = value.chars().take(40).collect();
                return Err(EventError::new(
                    ErrorKind::InvalidAttribute,
                    format!(
                        "{name} is {} characters ('{start}…'), over the {limit}-character limit for identifiers: \
                         they are looked up by value and carried in URLs; use a shorter one (a UUID is 36)",
                        value.chars().count()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_correlation(&self, required: bool) -> Result<(), EventError> {
        if required && self.correlation_id.is_none() {
            return Err(EventError::new(
                ErrorKind::MissingCorrelation,
                format!(
                    "event '{}' of type '{}' from '{}' has no correlation id: set the 'correlationid' attribute \
                     (or metadata.correlationId), generated at the boundary and propagated",
                    self.id, self.event_type, self.source
                ),
            ));
        }
        Ok(())
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("specversion", "1.0")?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("source", &self.source)?;
        map.serialize_entry("type", &self.event_type)?;
        map.serialize_entry("time", &self.time_string())?;
        let optional = [
            ("subject", &self.subject),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
            ("correlationid", &self.correlation_id),
            ("causationid", &self.causation_id),
            ("traceparent", &self.traceparent),
            ("tracestate", &self.tracestate),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                map.serialize_entry(name, v)?;
            }
        }
        if let Some(v) = self.sequence {
            map.serialize_entry("sequence", &v)?;
        }
        if let Some(v) = &self.idempotency_key {
            map.serialize_entry("idempotencykey", v)?;
        }
        if let Some(v) = self.schema_version {
            map.serialize_entry("schemaversion", &v)?;
        }
        for (name, value) in &self.extensions {
            map.serialize_entry(name, value)?;
        }
        if let Some(v) = &self.data {
            map.serialize_entry("data", v)?;
        }
        if let Some(v) = &self.data_base64 {
            map.serialize_entry("data_base64", v)?;
        }
        map.end()
    }
}

/// Formats a time the way causeway stores it (see [`Event::time_string`]).
pub fn format_time(time: &DateTime<Utc>) -> String {
    format_micros(time.timestamp_micros()).unwrap_or_else(|| time.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// [`format_time`] of a time given in microseconds since the Unix epoch, for the years 0000–9999
/// (the only ones [`parse_time`] accepts); `None` outside them. Formatted by hand: a scan of
/// sealed history formats one per row, and with chrono's `to_rfc3339_opts` the slowest runbook
/// query over a million sealed events took 1.02–1.10 s of CPU, by hand 0.85–0.88 s.
pub fn format_micros(micros: i64) -> Option<String> {
    let (days, micros_of_day) = (micros.div_euclid(86_400_000_000), micros.rem_euclid(86_400_000_000));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (secs, frac) = (micros_of_day / 1_000_000, micros_of_day % 1_000_000);
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    for (at, width, mut v) in
        [(0, 4, year), (5, 2, month), (8, 2, day), (11, 2, secs / 3600), (14, 2, secs / 60 % 60), (17, 2, secs % 60), (20, 6, frac)]
    {
        for digit in out[at..at + width].iter_mut().rev() {
            *digit = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    Some(String::from_utf8(out.to_vec()).expect("ASCII"))
}

/// Year, month and day of the proleptic Gregorian calendar for days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Parses an RFC 3339 time to UTC: the inverse of [`format_time`], with an actionable error.
///
/// The time is truncated to whole microseconds, the precision it is stored with, so an event in
/// memory and the same event read back from the store carry the same time. A time that falls
/// outside the years 0000–9999 once converted to UTC (`0000-01-01T00:00:00+01:00`) is refused: its
/// canonical form would not be RFC 3339 and would not sort as time.
pub fn parse_time(value: &str) -> Result<DateTime<Utc>, EventError> {
    let time = DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).map_err(|e| {
        EventError::new(ErrorKind::InvalidTime, format!("time '{value}' is not an RFC 3339 timestamp ({e}): use e.g. 2026-11-23T10:15:00.123Z"))
    })?;
    if !(0..=9999).contains(&time.year()) {
        return Err(EventError::new(
            ErrorKind::InvalidTime,
            format!("time '{value}' is year {} in UTC, outside 0000–9999: send a time in UTC or a nearer offset", time.year()),
        ));
    }
    Ok(time.trunc_subsecs(6))
}

fn missing(name: &str) -> EventError {
    EventError::new(ErrorKind::MissingAttribute, format!("required attribute '{name}' is missing or empty"))
}

fn take_string(obj: &mut Map<String, Value>, name: &str) -> Result<String, EventError> {
    match obj.remove(name) {
        None | Some(Value::Null) => Err(missing(name)),
        Some(Value::String(s)) if s.is_empty() => Err(missing(name)),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(EventError::new(ErrorKind::InvalidAttribute, format!("attribute '{name}' must be a string, got {}", type_name(&other)))),
    }
}

fn take_opt_string(obj: &mut Map<String, Value>, name: &str) -> Result<Option<String>, EventError> {
    match obj.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(EventError::new(ErrorKind::InvalidAttribute, format!("attribute '{name}' must be a string, got {}", type_name(&other)))),
    }
}

/// CloudEvents integers arrive as JSON numbers, or as strings in binary mode and Kafka headers.
fn take_opt_integer(obj: &mut Map<String, Value>, name: &str) -> Result<Option<i64>, EventError> {
    let invalid = |shown: String| EventError::new(ErrorKind::InvalidAttribute, format!("attribute '{name}' must be an integer, got {shown}"));
    match obj.remove(name) {
        None | Some(Value::Null) => Ok(None),
        // A whole number written with a fraction (5.0) is the integer JSON Schema says it is.
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && (-9.2e18..=9.2e18).contains(f)).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| invalid(n.to_string())),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| invalid(format!("'{s}'"))),
        Some(other) => Err(invalid(type_name(&other).to_string())),
    }
}

/// A schema version is a positive integer, in every form an event arrives in.
fn check_schema_version(version: Option<i64>, name: &str) -> Result<Option<i64>, EventError> {
    match version {
        Some(v) if v < 1 => {
            Err(EventError::new(ErrorKind::InvalidAttribute, format!("{name} {v} is not a schema version: use a positive integer (1, 2, …)")))
        }
        _ => Ok(version),
    }
}

fn scalar_to_string(value: Value, name: &str) -> Result<String, EventError> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(EventError::new(ErrorKind::InvalidAttribute, format!("{name} must be a string, got {}", type_name(&other)))),
    }
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_extension_name(name: &str) -> Result<(), EventError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Ok(());
    }
    let folded: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
    let hint = if CORE_ATTRIBUTES.contains(&folded.as_str()) { format!("; did you mean '{folded}'?") } else { String::new() };
    Err(EventError::new(
        ErrorKind::InvalidAttribute,
        format!("'{name}' is not a valid CloudEvents attribute name (lower-case letters and digits only){hint}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_format_as_chrono_formats_them() {
        let chrono = |micros: i64| DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true));
        // The first and last microsecond of 0000–9999, the epoch and around it, a leap day.
        let edges = [-62_167_219_200_000_000i64, 253_402_300_799_999_999, 0, -1, 951_782_400_000_000, 1_767_225_600_000_000];
        // splitmix64 over the whole range, and a little past both ends.
        let mut state = 11u64;
        let random = std::iter::repeat_with(move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) % 316_000_000_000_000_000) as i64 - 62_167_219_200_000_000
        });
        for micros in edges.into_iter().chain(random.take(200_000)) {
            let want = chrono(micros).filter(|t| t.len() == 27);
            assert_eq!(format_micros(micros), want, "{micros}");
            if let Some(t) = DateTime::from_timestamp_micros(micros) {
                assert_eq!(format_time(&t), chrono(micros).unwrap(), "{micros}");
            }
        }
        // Sub-microsecond digits are cut, as chrono cuts them.
        let t = DateTime::parse_from_rfc3339("2026-11-23T10:15:00.1234567Z").unwrap().with_timezone(&Utc);
        assert_eq!(format_time(&t), "2026-11-23T10:15:00.123456Z");
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn structured() -> Value {
        json!({
            "specversion": "1.0", "id": "e1", "source": "order-service", "type": "OrderCreated",
            "time": "2026-11-23T10:15:00.5+01:00", "subject": "ord-1", "correlationid": "c1",
            "causationid": "", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "sequence": "3", "region": "eu", "data": {"orderId": "ord-1"}
        })
    }

    #[test]
    fn structured_event_is_normalised() {
        let e = Event::from_structured(obj(structured()), true).unwrap();
        assert_eq!(e.time_string(), "2026-11-23T09:15:00.500000Z");
        assert_eq!(e.causation_id, None, "an empty causation id means root");
        assert_eq!(e.sequence, Some(3));
        let canonical: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(canonical["region"], "eu");
        assert_eq!(canonical["data"]["orderId"], "ord-1");
        assert!(canonical.get("causationid").is_none());
        // The canonical form parses back to the same event.
        assert_eq!(Event::from_structured(obj(canonical), true).unwrap(), e);
    }

    #[test]
    fn each_bad_attribute_gets_its_own_reason() {
        let cases: &[(&str, Value, ErrorKind, &str)] = &[
            ("specversion", json!("0.3"), ErrorKind::UnsupportedSpecversion, "CloudEvents 1.0"),
            ("id", json!(""), ErrorKind::MissingAttribute, "'id'"),
            ("source", Value::Null, ErrorKind::MissingAttribute, "'source'"),
            ("type", json!(7), ErrorKind::InvalidAttribute, "must be a string"),
            ("time", json!("yesterday"), ErrorKind::InvalidTime, "RFC 3339"),
            ("traceparent", json!("00-xyz"), ErrorKind::InvalidTraceparent, "W3C"),
            ("sequence", json!("three"), ErrorKind::InvalidAttribute, "integer"),
            ("correlationId", json!("c1"), ErrorKind::InvalidAttribute, "did you mean 'correlationid'"),
            ("nested", json!({"a": 1}), ErrorKind::InvalidAttribute, "string, number or boolean"),
            ("schemaversion", json!(0), ErrorKind::InvalidAttribute, "positive integer"),
        ];
        for (name, value, kind, needle) in cases {
            let mut v = structured();
            v[*name] = value.clone();
            let err = Event::from_structured(obj(v), true).unwrap_err();
            assert_eq!(err.kind, *kind, "{name}: {err}");
            assert!(err.message.contains(needle), "{name}: {err}");
        }
    }

    #[test]
    fn correlation_is_required_unless_optional() {
        let mut v = structured();
        v.as_object_mut().unwrap().remove("correlationid");
        let err = Event::from_structured(obj(v.clone()), true).unwrap_err();
        assert_eq!(err.kind, ErrorKind::MissingCorrelation);
        assert!(Event::from_structured(obj(v), false).is_ok());
    }

    #[test]
    fn metadata_payload_shape_maps_to_canonical() {
        let v = json!({
            "metadata": {"eventId": "m1", "eventType": "PaymentProcessed", "correlationId": "c9",
                         "causationId": "e1", "timestamp": "2026-11-23T10:00:00Z", "source": "payment-service",
                         "tenant-id": "acme"},
            "payload": {"orderId": "ord-1", "amount": 12.5},
            "entityId": "pay-1"
        });
        let e = Event::from_metadata_payload(obj(v), true).unwrap();
        assert_eq!((e.id.as_str(), e.event_type.as_str(), e.source.as_str()), ("m1", "PaymentProcessed", "payment-service"));
        assert_eq!(e.correlation_id.as_deref(), Some("c9"));
        assert_eq!(e.causation_id.as_deref(), Some("e1"));
        assert_eq!(e.subject.as_deref(), Some("pay-1"));
        assert_eq!(e.extensions["tenantid"], "acme");
        assert_eq!(e.data.unwrap()["amount"], 12.5);
    }

    #[test]
    fn metadata_payload_missing_fields_are_named() {
        let v = json!({"metadata": {"eventType": "X", "correlationId": "c", "timestamp": "2026-11-23T10:00:00Z", "source": "s"}, "payload": {}});
        let err = Event::from_metadata_payload(obj(v), true).unwrap_err();
        assert_eq!(err.kind, ErrorKind::MissingAttribute);
        assert!(err.message.contains("metadata.eventId"), "{err}");
    }

    /// Regression: `sequence: 5.0`, an integer as JSON Schema counts, was refused.
    #[test]
    fn whole_numbers_written_with_a_fraction_are_integers() {
        let mut v = structured();
        v["sequence"] = json!(5.0);
        v["schemaversion"] = json!(2.0);
        let e = Event::from_structured(obj(v.clone()), true).unwrap();
        assert_eq!((e.sequence, e.schema_version), (Some(5), Some(2)));
        v["sequence"] = json!(5.5);
        assert_eq!(Event::from_structured(obj(v.clone()), true).unwrap_err().kind, ErrorKind::InvalidAttribute);
        v["sequence"] = json!(1e19);
        assert_eq!(Event::from_structured(obj(v), true).unwrap_err().kind, ErrorKind::InvalidAttribute);
    }

    /// Regression: ids up to the 1 MiB event limit were stored but could not be fetched
    /// (`GET /v1/events/{id}` answered 414).
    #[test]
    fn identifiers_are_capped() {
        for (name, limit) in [
            ("id", MAX_ID_CHARS),
            ("source", MAX_SOURCE_CHARS),
            ("type", MAX_ID_CHARS),
            ("subject", MAX_ID_CHARS),
            ("correlationid", MAX_ID_CHARS),
            ("causationid", MAX_ID_CHARS),
        ] {
            let mut v = structured();
            // Characters, not bytes, as JSON Schema's maxLength counts.
            v[name] = json!("\u{e9}".repeat(limit));
            assert!(Event::from_structured(obj(v.clone()), true).is_ok(), "{name} at its limit");
            v[name] = json!("x".repeat(limit + 1));
            let err = Event::from_structured(obj(v), true).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidAttribute, "{name}");
            assert!(
                err.message.starts_with(&format!("{name} is {} characters", limit + 1)) && err.message.contains(&format!("{limit}-character limit")),
                "{err}"
            );
        }
        let v = json!({"metadata": {"eventId": "m".repeat(300), "eventType": "T", "correlationId": "c",
                                    "timestamp": "2026-11-23T10:00:00Z", "source": "s"}, "payload": {}});
        let err = Event::from_metadata_payload(obj(v), true).unwrap_err();
        assert!(err.message.starts_with("metadata.eventId is 300 characters"), "{err}");
    }

    /// Regression (fuzz target `envelope`): the metadata/payload shape took `schemaVersion: 0`,
    /// which the structured form refuses, so its canonical form did not read back.
    #[test]
    fn metadata_payload_schema_version_must_be_positive() {
        for bad in [json!(0), json!(-3), json!("0")] {
            let v = json!({"metadata": {"eventId": "m1", "eventType": "PaymentProcessed", "correlationId": "c",
                                        "timestamp": "2026-11-23T10:00:00Z", "source": "s", "schemaVersion": bad},
                           "payload": {}});
            let err = Event::from_metadata_payload(obj(v), true).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidAttribute, "{bad}: {err}");
            assert!(err.message.contains("metadata.schemaVersion") && err.message.contains("positive integer"), "{err}");
        }
    }

    /// Regression (fuzz target `envelope`): a time with nanoseconds kept them in memory while the
    /// store keeps microseconds, so an event differed from its own canonical form read back.
    #[test]
    fn times_are_truncated_to_the_stored_microseconds() {
        let t = parse_time("2026-11-23T10:00:00.999999999+01:00").unwrap();
        assert_eq!(format_time(&t), "2026-11-23T09:00:00.999999Z");
        assert_eq!(parse_time(&format_time(&t)).unwrap(), t);
        let mut v = structured();
        v["time"] = json!("2026-11-23T10:15:00.1234567Z");
        let e = Event::from_structured(obj(v), true).unwrap();
        assert_eq!(e.time_string(), "2026-11-23T10:15:00.123456Z");
        let canonical: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(Event::from_structured(obj(canonical), true).unwrap(), e);
    }

    /// Regression: a four-digit year whose offset moves it outside 0000–9999 in UTC formatted as
    /// `-0001-…` or `+10000-…`, which is not RFC 3339 and does not sort as time.
    #[test]
    fn times_outside_four_digit_years_in_utc_are_refused() {
        for bad in ["0000-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"] {
            let err = parse_time(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidTime, "{bad}");
            assert!(err.message.contains("outside 0000–9999"), "{err}");
        }
        for good in ["0000-01-01T00:00:00Z", "0000-01-01T01:00:00+01:00", "9999-12-31T23:59:59.999999Z"] {
            let t = parse_time(good).unwrap();
            assert_eq!(parse_time(&format_time(&t)).unwrap(), t, "{good}");
        }
    }
}
