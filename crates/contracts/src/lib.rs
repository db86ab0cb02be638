//! Contracts at ingest: what the model promises about each event, checked as it arrives.
//!
//! For an accepted event: its payload against the JSON Schema of its `schemaversion`
//! (`schema_error`), its type against the model (`unknown_event_type`), its `source` against the
//! services of the owning context (`unauthorized_producer`). A failed contract never refuses the
//! event: it is stored and flagged by a finding.
//!
//! **Invariant:** [`Contracts::inspect`] redacts every `pii` pointer of the event's type (of every
//! type, when the model does not know it) before it returns, and no finding detail quotes a
//! redacted value; [`Contracts::redact_raw`] does the same for input refused at ingest, and
//! [`Contracts::redact_input`] for an event a consumer reports, whatever their shape — where input
//! is not JSON, the value of every member named like a PII field is replaced. A redacted value is
//! `hmac-sha256:<hex>` of its JSON text under the configured key, so equal values still correlate
//! while the raw value never reaches disk.

use std::borrow::Cow;
use std::collections::HashMap;

use causeway_envelope::Event;
use causeway_model::Model;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// A finding raised at ingest, about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractFinding {
    /// `schema_error`, `unknown_event_type`, `unauthorized_producer` or `missing_correlation`.
    pub kind: &'static str,
    pub detail: String,
    pub owner: Option<String>,
}

/// A loaded model with its compiled schemas and the PII key.
pub struct Contracts {
    model: Model,
    validators: HashMap<(String, u32), jsonschema::Validator>,
    pii_key: Vec<u8>,
    /// Every PII pointer of the model, once each: what applies to input whose type is unknown.
    all_pointers: Vec<String>,
    /// The member names the PII pointers end in (their last field that is not an array index):
    /// what is redacted in input that is not JSON.
    pii_names: Vec<String>,
}

/// What redacting one input came to: its text with every PII value replaced (`None` when nothing
/// needed replacing), and the values replaced, to scrub from whatever else quotes them.
#[derive(Debug, Default)]
pub struct Redaction {
    pub text: Option<String>,
    /// (raw text, its keyed hash), longest first.
    quoted: Vec<(String, String)>,
}

/// The shortest raw value [`Redaction::scrub`] replaces in free text: shorter ones would garble
/// any text they happen to occur in, and identify nobody.
const MIN_SCRUBBED_CHARS: usize = 3;

impl Redaction {
    /// `text` with every raw value this redaction replaced also replaced by its keyed hash (a
    /// consumer's error message or stack that quotes the event); `None` when it quotes none.
    pub fn scrub(&self, text: &str) -> Option<String> {
        let mut out = Cow::Borrowed(text);
        for (raw, hash) in &self.quoted {
            if out.contains(raw.as_str()) {
                out = Cow::Owned(out.replace(raw.as_str(), hash));
            }
        }
        match out {
            Cow::Owned(text) => Some(text),
            Cow::Borrowed(_) => None,
        }
    }
}

/// Prefix of a redacted value.
pub const REDACTED_PREFIX: &str = "hmac-sha256:";

impl Contracts {
    /// Compiles every schema of the model. The model must have loaded without errors (its schemas
    /// were checked then), so compiling cannot fail; a schema that does anyway is skipped.
    pub fn new(model: Model, pii_key: Vec<u8>) -> Contracts {
        let mut validators = HashMap::new();
        for (name, event) in &model.events {
            for (version, schema) in &event.versions {
                if let Ok(v) = jsonschema::draft202012::new(schema) {
                    validators.insert((name.clone(), *version), v);
                }
            }
        }
        let mut all_pointers: Vec<String> = model.events.values().flat_map(|e| e.pii.iter().cloned()).collect();
        all_pointers.sort();
        all_pointers.dedup();
        let mut pii_names: Vec<String> = all_pointers.iter().filter_map(|p| member_name(p)).collect();
        pii_names.sort();
        pii_names.dedup();
        Contracts { model, validators, pii_key, all_pointers, pii_names }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Checks an accepted event against the model and redacts its PII in place.
    pub fn inspect(&self, event: &mut Event) -> Vec<ContractFinding> {
        let mut findings = Vec::new();
        let source_context = self.model.context_of_service(&event.source).map(str::to_owned);
        let Some(def) = self.model.events.get(&event.event_type) else {
            let known = closest_names(&event.event_type, self.model.events.keys());
            findings.push(ContractFinding {
                kind: "unknown_event_type",
                detail: format!(
                    "event type '{}' from '{}' is not in model '{}'{known}: add it to the model or fix the producer",
                    event.event_type, event.source, self.model.name
                ),
                owner: source_context.as_deref().and_then(|c| self.model.owner_of_context(c)).map(str::to_owned),
            });
            // A type the model does not know declares no PII: every pointer of the model applies.
            self.redact_data(event, &self.all_pointers, &mut Vec::new());
            return findings;
        };
        let owner = self.model.owner_of_context(&def.context).map(str::to_owned);
        if source_context.as_deref() != Some(def.context.as_str()) {
            let services = self.model.contexts.get(&def.context).map(|c| c.services.join(", ")).unwrap_or_default();
            findings.push(ContractFinding {
                kind: "unauthorized_producer",
                detail: format!(
                    "'{}' produced {}, which context '{}' owns: only its services ({services}) may produce it",
                    event.source, event.event_type, def.context
                ),
                owner: owner.clone(),
            });
        }
        let version = event.schema_version.unwrap_or(1);
        match u32::try_from(version).ok().and_then(|v| self.validators.get(&(event.event_type.clone(), v))) {
            Some(validator) => {
                let empty = Value::Null;
                let data = event.data.as_ref().unwrap_or(&empty);
                let problems: Vec<String> = validator
                    .iter_errors(data)
                    .map(|e| {
                        let path = e.instance_path().to_string();
                        let rule = e.kind().keyword().to_string();
                        let shown = if path.is_empty() { "the payload".to_string() } else { format!("field {path}") };
                        if def.pii.iter().any(|p| path.starts_with(p.as_str())) {
                            format!("{shown} breaks rule '{rule}' (value redacted)")
                        } else {
                            format!("{shown} breaks rule '{rule}': {e}")
                        }
                    })
                    .collect();
                if !problems.is_empty() {
                    findings.push(ContractFinding {
                        kind: "schema_error",
                        detail: format!("{} v{version} from '{}' does not match its schema: {}", event.event_type, event.source, problems.join("; ")),
                        owner: owner.clone(),
                    });
                }
            }
            None if !def.versions.is_empty() => {
                let known: Vec<String> = def.versions.keys().map(u32::to_string).collect();
                findings.push(ContractFinding {
                    kind: "schema_error",
                    detail: format!(
                        "{} names schema version {version}, which the model does not define (known: {})",
                        event.event_type,
                        known.join(", ")
                    ),
                    owner: owner.clone(),
                });
            }
            None => {}
        }
        let mut replaced = Vec::new();
        self.redact_data(event, &def.pii, &mut replaced);
        // A rule broken above a PII field quotes the object holding it: the value shows as its hash.
        let redaction = Redaction { text: None, quoted: self.quoted(&replaced) };
        for finding in &mut findings {
            if let Some(detail) = redaction.scrub(&finding.detail) {
                finding.detail = detail;
            }
        }
        findings
    }

    /// The finding for an event refused because it had no correlation id.
    pub fn missing_correlation(&self, source: Option<&str>, detail: &str) -> ContractFinding {
        let owner = source.and_then(|s| self.model.context_of_service(s)).and_then(|c| self.model.owner_of_context(c));
        ContractFinding { kind: "missing_correlation", detail: detail.to_string(), owner: owner.map(str::to_owned) }
    }

    /// Redacts the PII of refused input: a CloudEvent's `data`, a metadata/payload `payload`, a
    /// binary-mode record's or a broker message's body, each element of a batch; at the pointers of
    /// its type, or of every type when the type cannot be read; by member name where the input is
    /// not JSON. `None` when nothing needed redacting.
    pub fn redact_raw(&self, raw: &str) -> Option<String> {
        self.redact_input(raw, None).text
    }

    /// [`Contracts::redact_raw`] for an event as a consumer read it and reported it: `event_type`
    /// (from the message's headers) applies when the event is a bare payload (a binary-mode body).
    pub fn redact_input(&self, text: &str, event_type: Option<&str>) -> Redaction {
        if self.all_pointers.is_empty() {
            return Redaction::default();
        }
        let mut replaced = Vec::new();
        let text = self.redact_text(text, event_type, &mut replaced);
        Redaction { text, quoted: self.quoted(&replaced) }
    }

    /// The pointers of a type; of every type when it is unknown or not given.
    fn pointers(&self, event_type: Option<&str>) -> &[String] {
        match event_type.and_then(|t| self.model.events.get(t)) {
            Some(def) => &def.pii,
            None => &self.all_pointers,
        }
    }

    fn redact_text(&self, text: &str, event_type: Option<&str>, replaced: &mut Vec<Value>) -> Option<String> {
        if let Ok(mut value) = serde_json::from_str::<Value>(text) {
            let before = replaced.len();
            if !self.redact_input_value(&mut value, event_type, replaced) {
                return None;
            }
            return Some(self.splice(text, &replaced[before..], &value).unwrap_or_else(|| value.to_string()));
        }
        // Lines of which some are JSON (NDJSON, a batch cut short): each line on its own.
        let lines: Vec<&str> = text.split('\n').collect();
        if lines.len() > 1 && lines.iter().any(|l| serde_json::from_str::<Value>(l).is_ok()) {
            let mut changed = false;
            let out: Vec<Cow<str>> = lines
                .iter()
                .map(|line| match self.redact_text(line, event_type, replaced) {
                    Some(redacted) => {
                        changed = true;
                        Cow::Owned(redacted)
                    }
                    None => Cow::Borrowed(*line),
                })
                .collect();
            return changed.then(|| out.join("\n"));
        }
        self.redact_lexically(text, replaced)
    }

    /// Redacts a JSON input by its shape; `true` when anything changed.
    fn redact_input_value(&self, value: &mut Value, event_type: Option<&str>, replaced: &mut Vec<Value>) -> bool {
        let shape = match &*value {
            Value::Array(_) => Shape::Batch,
            Value::Object(obj) => {
                let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
                if let Some(Value::Object(meta)) = obj.get("metadata") {
                    Shape::Envelope("payload", text(meta.get("eventType")))
                } else if let (Some(Value::Object(headers)), Some(_)) = (obj.get("headers"), obj.get("body")) {
                    let named = headers.iter().find(|(n, _)| ["ce-type", "ce_type", "event-type"].iter().any(|h| n.eq_ignore_ascii_case(h)));
                    Shape::Message(text(named.map(|(_, v)| v)), obj.get("body_is_base64") == Some(&Value::Bool(true)))
                } else if obj.contains_key("specversion")
                    || (obj.contains_key("type") && ["id", "source", "data"].iter().any(|k| obj.contains_key(*k)))
                {
                    Shape::Envelope("data", text(obj.get("type")))
                } else {
                    Shape::Payload
                }
            }
            _ => return false,
        };
        match shape {
            Shape::Batch => {
                let Value::Array(items) = value else { return false };
                items.iter_mut().fold(false, |changed, item| self.redact_input_value(item, event_type, replaced) | changed)
            }
            Shape::Envelope(container, own) => {
                let pointers = self.pointers(own.as_deref().or(event_type));
                value.get_mut(container).is_some_and(|c| self.redact_pointers(c, pointers, replaced))
            }
            Shape::Payload => self.redact_pointers(value, self.pointers(event_type), replaced),
            Shape::Message(own, base64) => {
                let Value::Object(obj) = value else { return false };
                let body = obj.get("body").expect("a message has a body");
                // The body as text: UTF-8 as it is, or decoded from its base64.
                let text = match body {
                    Value::String(s) if base64 => decode_base64(s).map(|b| String::from_utf8_lossy(&b).into_owned()),
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => {
                        o.get("base64").and_then(Value::as_str).and_then(decode_base64).map(|b| String::from_utf8_lossy(&b).into_owned())
                    }
                    _ => None,
                };
                // The body is the payload (binary mode, hand-rolled headers) or an event itself.
                let Some(redacted) = text.and_then(|t| self.redact_text(&t, own.as_deref().or(event_type), replaced)) else { return false };
                obj.insert("body".into(), Value::String(redacted));
                if base64 {
                    obj.insert("body_is_base64".into(), Value::Bool(false));
                }
                true
            }
        }
    }

    /// Redacts an event's data at `pointers`: JSON `data`, and JSON sent as text (a `text/*` body
    /// in binary mode) or as bytes (`data_base64`), inside the text or bytes.
    fn redact_data(&self, event: &mut Event, pointers: &[String], replaced: &mut Vec<Value>) {
        match event.data.as_mut() {
            Some(Value::String(text)) => {
                if let Some(redacted) = self.redact_json_text(text.as_bytes(), pointers, replaced) {
                    *text = redacted;
                }
            }
            Some(data) => {
                self.redact_pointers(data, pointers, replaced);
            }
            None => {}
        }
        if let Some(encoded) = event.data_base64.as_mut()
            && let Some(redacted) = decode_base64(encoded).and_then(|bytes| self.redact_json_text(&bytes, pointers, replaced))
        {
            *encoded = encode_base64(redacted.as_bytes());
        }
    }

    /// Text that is a JSON object or array, redacted at `pointers`; `None` when it is not JSON or
    /// nothing was redacted.
    fn redact_json_text(&self, text: &[u8], pointers: &[String], replaced: &mut Vec<Value>) -> Option<String> {
        let mut value = serde_json::from_slice::<Value>(text).ok().filter(|v| v.is_object() || v.is_array())?;
        self.redact_pointers(&mut value, pointers, replaced).then(|| value.to_string())
    }

    /// `text` as it was written, each replaced value's JSON text replaced by its hash — when that
    /// reads as `redacted` (no value was written in another form, none is also a key or part of
    /// another value); `None` otherwise. Keeps a kept input's bytes, PII aside.
    fn splice(&self, text: &str, replaced: &[Value], redacted: &Value) -> Option<String> {
        let mut out = text.to_string();
        for value in replaced {
            if value.is_object() || value.is_array() {
                return None;
            }
            let raw = value.to_string();
            out = out.replace(&raw, &Value::String(self.keyed_hash(&raw)).to_string());
        }
        (serde_json::from_str::<Value>(&out).ok()? == *redacted).then_some(out)
    }

    fn redact_pointers(&self, data: &mut Value, pointers: &[String], replaced: &mut Vec<Value>) -> bool {
        pointers.iter().fold(false, |changed, p| self.redact_at(data, p, replaced) | changed)
    }

    fn redact_at(&self, data: &mut Value, pointer: &str, replaced: &mut Vec<Value>) -> bool {
        let Some(slot) = data.pointer_mut(pointer) else { return false };
        if slot.as_str().is_some_and(|s| s.starts_with(REDACTED_PREFIX)) {
            return false;
        }
        let hash = Value::String(self.keyed_hash(&slot.to_string()));
        replaced.push(std::mem::replace(slot, hash));
        true
    }

    /// Text that is not JSON (cut short, malformed): the value of every member named like a PII
    /// field — a string, a number, an object or array up to its end — replaced by its keyed hash
    /// (of its JSON text, as by pointer, when it is whole). A string ends at its line's end.
    fn redact_lexically(&self, text: &str, replaced: &mut Vec<Value>) -> Option<String> {
        let bytes = text.as_bytes();
        let (mut out, mut copied, mut i, mut changed) = (String::new(), 0, 0, false);
        while i < bytes.len() {
            if bytes[i] != b'"' {
                i += 1;
                continue;
            }
            let end = string_end(bytes, i);
            let colon = skip_space(bytes, end);
            let name = (colon < bytes.len() && bytes[colon] == b':').then(|| serde_json::from_str::<String>(&text[i..end]).ok()).flatten();
            if !name.is_some_and(|n| self.pii_names.contains(&n)) {
                i = end;
                continue;
            }
            let start = skip_space(bytes, colon + 1);
            let stop = value_end(bytes, start);
            let token = &text[start..stop];
            if stop > start && !token.starts_with(&format!("\"{REDACTED_PREFIX}")) {
                let whole = serde_json::from_str::<Value>(token).ok();
                let hash = self.keyed_hash(&whole.as_ref().map_or_else(|| token.to_string(), Value::to_string));
                out.push_str(&text[copied..start]);
                out.push('"');
                out.push_str(&hash);
                out.push('"');
                (copied, changed) = (stop, true);
                // A string cut short is scrubbed elsewhere as the text it has.
                replaced.push(whole.unwrap_or_else(|| Value::String(token.strip_prefix('"').unwrap_or(token).to_string())));
            }
            i = stop.max(end);
        }
        changed.then(|| {
            out.push_str(&text[copied..]);
            out
        })
    }

    /// The raw texts of replaced values as free text would quote them — each string and number in
    /// them, and a string as JSON escapes it — with the keyed hash of each; longest first.
    fn quoted(&self, replaced: &[Value]) -> Vec<(String, String)> {
        fn leaves<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
            match v {
                Value::Array(items) => items.iter().for_each(|i| leaves(i, out)),
                Value::Object(members) => members.values().for_each(|i| leaves(i, out)),
                Value::String(_) | Value::Number(_) => out.push(v),
                _ => {}
            }
        }
        let mut found = Vec::new();
        replaced.iter().for_each(|v| leaves(v, &mut found));
        let mut quoted = Vec::new();
        for leaf in found {
            let json = leaf.to_string();
            let hash = self.keyed_hash(&json);
            let forms = match leaf {
                // As it reads, and as it reads inside JSON (escaped).
                Value::String(s) => vec![s.clone(), json[1..json.len() - 1].to_string()],
                _ => vec![json.clone()],
            };
            for form in forms {
                if form.chars().count() >= MIN_SCRUBBED_CHARS && !form.starts_with(REDACTED_PREFIX) {
                    quoted.push((form, hash.clone()));
                }
            }
        }
        quoted.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        quoted.dedup();
        quoted
    }

    fn keyed_hash(&self, text: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.pii_key).expect("HMAC takes keys of any length");
        mac.update(text.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(REDACTED_PREFIX.len() + 64);
        out.push_str(REDACTED_PREFIX);
        for b in digest.iter() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// How a refused or reported input holds its event.
enum Shape {
    /// A JSON array: each element an input of its own.
    Batch,
    /// A CloudEvent (`data`) or metadata/payload (`payload`), with its own type if it names one.
    Envelope(&'static str, Option<String>),
    /// A broker message or binary-mode record as kept (`headers`, `body`): the type its headers
    /// name, and whether the body is base64.
    Message(Option<String>, bool),
    /// JSON that is none of these: a payload.
    Payload,
}

/// The member a PII pointer ends in: its last field that is not an array index, unescaped.
fn member_name(pointer: &str) -> Option<String> {
    let tokens: Vec<&str> = pointer.split('/').skip(1).collect();
    tokens
        .into_iter()
        .rev()
        .find(|t| !t.is_empty() && *t != "-" && !t.bytes().all(|b| b.is_ascii_digit()))
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
}

/// Where the JSON string starting at `start` (a quote) ends: after its closing quote, or at the
/// end of its line or the text when it has none.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            b'\n' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Where the JSON value starting at `start` ends: a string's closing quote, an object's or array's
/// closing bracket (or the end of the text), a scalar's next delimiter.
fn value_end(bytes: &[u8], start: usize) -> usize {
    match bytes.get(start) {
        None => start,
        Some(b'"') => string_end(bytes, start),
        Some(b'{' | b'[') => {
            let (mut depth, mut i) = (0usize, start);
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => {
                        i = string_end(bytes, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            bytes.len()
        }
        Some(_) => {
            let mut i = start;
            while i < bytes.len() && !matches!(bytes[i], b',' | b'}' | b']') && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            i
        }
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as CloudEvents' `data_base64`.
fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() { BASE64[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// Standard base64 (padding optional), as the envelope keeps bytes that are not UTF-8.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0u32);
    for b in text.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=') {
        let v = BASE64.iter().position(|c| *c == b)? as u8;
        bits = (bits << 6) | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

fn closest_names<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> String {
    let lower = name.to_lowercase();
    let near: Vec<&String> = known
        .filter(|k| {
            let k = k.to_lowercase();
            k.contains(&lower) || lower.contains(&k)
        })
        .take(3)
        .collect();
    if near.is_empty() { String::new() } else { format!(" (similar: {})", near.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_envelope::{ParseOptions, parse_body};
    use serde_json::json;

    const MODEL: &str = r#"
name: shop
contexts:
  ordering: {owner: team-a, services: [order-service]}
events:
  OrderCreated:
    context: ordering
    versions:
      1: {schema: {type: object, required: [orderId, email], properties: {orderId: {type: string}, email: {type: string}, amount: {type: number, minimum: 0}}}}
      2: {schema: {type: object, required: [orderId, currency]}}
    pii: [/email]
journeys:
  order: {key: /orderId, milestones: [OrderCreated], outcomes: {done: [OrderCreated]}}
"#;

    /// The contracts of a model given as YAML, under the tests' key.
    fn contracts_of(yaml: &str) -> Contracts {
        Contracts::new(causeway_model::load_str("shop.yaml", yaml).into_result().unwrap(), b"secret".to_vec())
    }

    fn contracts() -> Contracts {
        contracts_of(MODEL)
    }

    fn event(v: Value) -> Event {
        let items = parse_body(Some("application/json"), &[], v.to_string().as_bytes(), &ParseOptions::default()).unwrap();
        items.into_iter().next().unwrap().result.unwrap()
    }

    fn base(data: Value) -> Value {
        json!({"specversion": "1.0", "id": "e1", "source": "order-service", "type": "OrderCreated",
               "time": "2026-11-23T10:00:00Z", "correlationid": "c", "data": data})
    }

    #[test]
    fn valid_event_passes_and_is_redacted() {
        let c = contracts();
        let mut e = event(base(json!({"orderId": "o1", "email": "bob@example.com"})));
        assert_eq!(c.inspect(&mut e), vec![]);
        let email = e.data.as_ref().unwrap()["email"].as_str().unwrap().to_string();
        assert!(email.starts_with(REDACTED_PREFIX));
        assert!(!e.to_json().contains("bob@example.com"));
        // Equal values still correlate; redaction is idempotent.
        let mut again = event(base(json!({"orderId": "o2", "email": "bob@example.com"})));
        c.inspect(&mut again);
        assert_eq!(again.data.as_ref().unwrap()["email"].as_str().unwrap(), email);
    }

    #[test]
    fn schema_error_names_the_field_and_rule_without_leaking_pii() {
        let c = contracts();
        let mut e = event(base(json!({"orderId": 7, "email": 12345, "amount": -1})));
        let findings = c.inspect(&mut e);
        assert_eq!(findings.len(), 1);
        let detail = &findings[0].detail;
        assert_eq!(findings[0].kind, "schema_error");
        assert!(detail.contains("field /orderId breaks rule 'type'"), "{detail}");
        assert!(detail.contains("field /amount breaks rule 'minimum'"), "{detail}");
        assert!(detail.contains("field /email breaks rule 'type' (value redacted)"), "{detail}");
        assert!(!detail.contains("12345"), "{detail}");
        assert_eq!(findings[0].owner.as_deref(), Some("team-a"));
    }

    #[test]
    fn version_picks_the_schema() {
        let c = contracts();
        let mut v2 = base(json!({"orderId": "o1", "currency": "EUR"}));
        v2["schemaversion"] = json!(2);
        assert_eq!(c.inspect(&mut event(v2.clone())), vec![]);
        v2["schemaversion"] = json!(9);
        let f = c.inspect(&mut event(v2));
        assert!(f[0].detail.contains("schema version 9") && f[0].detail.contains("known: 1, 2"), "{:?}", f);
    }

    #[test]
    fn unknown_type_and_unauthorized_producer() {
        let c = contracts();
        let mut unknown = base(json!({}));
        unknown["type"] = json!("OrderCreatedV2");
        let f = c.inspect(&mut event(unknown));
        assert_eq!(f[0].kind, "unknown_event_type");
        assert!(f[0].detail.contains("similar: OrderCreated"), "{}", f[0].detail);
        let mut rogue = base(json!({"orderId": "o1", "email": "x"}));
        rogue["source"] = json!("payment-service");
        let f = c.inspect(&mut event(rogue));
        assert_eq!(f[0].kind, "unauthorized_producer");
        assert!(f[0].detail.contains("only its services (order-service)"), "{}", f[0].detail);
    }

    #[test]
    fn refused_input_is_redacted_too() {
        let c = contracts();
        let raw = base(json!({"orderId": "o1", "email": "bob@example.com"})).to_string();
        let redacted = c.redact_raw(&raw).unwrap();
        assert!(!redacted.contains("bob@example.com"));
        let mp = json!({"metadata": {"eventType": "OrderCreated"}, "payload": {"email": "bob@example.com"}}).to_string();
        assert!(!c.redact_raw(&mp).unwrap().contains("bob@example.com"));
        let binary = json!({"headers": {"ce-type": "OrderCreated"}, "body": "{\"email\":\"bob@example.com\"}"}).to_string();
        assert!(!c.redact_raw(&binary).unwrap().contains("bob@example.com"));
        assert_eq!(c.redact_raw("{not json"), None);
    }
    /// A model with nested and array PII, for the refused-input tests.
    const NESTED: &str = r#"
name: shop
contexts:
  ordering: {owner: team-a, services: [order-service]}
events:
  OrderCreated:
    context: ordering
    schema:
      type: object
      properties:
        customer: {type: object, oneOf: [{required: [email]}, {required: [phone]}]}
    pii: [/customer/email, /customer/phone, /contacts/0/phone]
  OrderShipped:
    context: ordering
    pii: [/recipient]
journeys:
  order: {key: /orderId, milestones: [OrderCreated], outcomes: {done: [OrderCreated]}}
"#;

    fn nested() -> Contracts {
        contracts_of(NESTED)
    }

    const EMAIL: &str = "pii-7f3a@example.com";
    const PHONE: &str = "+44 7700 900123";

    /// Regression: a schema error at a parent of a PII pointer quoted the whole object, PII
    /// included ("{…} is valid under more than one of the schemas listed in the 'oneOf' keyword").
    #[test]
    fn a_schema_error_above_a_pii_field_does_not_quote_it() {
        let c = nested();
        let mut e = event(json!({"specversion": "1.0", "id": "e1", "source": "order-service", "type": "OrderCreated",
            "time": "2026-11-23T10:00:00Z", "correlationid": "c",
            "data": {"orderId": "o1", "customer": {"email": EMAIL, "phone": PHONE}, "contacts": [{"phone": PHONE}]}}));
        let findings = c.inspect(&mut e);
        assert_eq!(findings.len(), 1, "{findings:?}");
        let detail = &findings[0].detail;
        assert!(detail.contains("field /customer breaks rule 'oneOf'"), "{detail}");
        assert!(!detail.contains(EMAIL) && !detail.contains(PHONE), "{detail}");
        assert!(detail.contains(REDACTED_PREFIX), "the quoted object shows the keyed hash where the value was: {detail}");
        let stored = e.to_json();
        assert!(!stored.contains(EMAIL) && !stored.contains(PHONE), "{stored}");
    }

    /// An event of a type the model does not know declares no PII of its own: every pointer of the
    /// model applies to it.
    #[test]
    fn an_unknown_type_is_redacted_at_every_pointer_of_the_model() {
        let c = nested();
        let mut e = event(json!({"specversion": "1.0", "id": "e1", "source": "order-service", "type": "OrderCreatedV2",
            "time": "2026-11-23T10:00:00Z", "correlationid": "c", "data": {"customer": {"email": EMAIL}, "recipient": "Ann Example"}}));
        assert_eq!(c.inspect(&mut e)[0].kind, "unknown_event_type");
        let stored = e.to_json();
        assert!(!stored.contains(EMAIL) && !stored.contains("Ann Example"), "{stored}");
    }

    /// JSON sent as text (binary mode, `text/plain`) or as bytes (`data_base64`) is redacted inside.
    #[test]
    fn json_data_sent_as_text_or_bytes_is_redacted_inside() {
        let c = nested();
        let payload = json!({"orderId": "o1", "customer": {"email": EMAIL}}).to_string();
        let mut attributes = json!({"specversion": "1.0", "id": "e1", "source": "order-service", "type": "OrderCreated",
            "time": "2026-11-23T10:00:00Z", "correlationid": "c", "data": payload});
        let mut as_text = event(attributes.clone());
        c.inspect(&mut as_text);
        let text = as_text.data.as_ref().unwrap().as_str().unwrap();
        assert!(!text.contains(EMAIL) && text.contains(REDACTED_PREFIX), "{text}");
        attributes.as_object_mut().unwrap().remove("data");
        attributes["data_base64"] = json!(encode_base64(payload.as_bytes()));
        let mut as_bytes = event(attributes);
        c.inspect(&mut as_bytes);
        let decoded = String::from_utf8(decode_base64(as_bytes.data_base64.as_ref().unwrap()).unwrap()).unwrap();
        assert!(!decoded.contains(EMAIL) && decoded.contains(REDACTED_PREFIX), "{decoded}");
        assert_eq!(decode_base64(&encode_base64(b"ab")).unwrap(), b"ab");
    }

    /// Regression: refused input was kept as sent whenever its type could not be read — malformed
    /// JSON, an event without a type, a whole batch refused, a broker message with `ce_type`.
    #[test]
    fn refused_input_is_redacted_whatever_its_shape() {
        let c = nested();
        let redacted = |raw: &str| {
            let out = c.redact_raw(raw).unwrap_or_else(|| panic!("nothing redacted in {raw}"));
            assert!(!out.contains(EMAIL) && !out.contains(PHONE) && !out.contains("Ann Example"), "{out}");
            assert!(out.contains(REDACTED_PREFIX), "{out}");
            out
        };
        let event = json!({"specversion": "1.0", "id": "e1", "source": "order-service", "type": "OrderCreated",
            "data": {"orderId": "o1", "customer": {"email": EMAIL}, "contacts": [{"phone": PHONE}]}});
        // Malformed JSON: the members named like a PII field, by name.
        let text = event.to_string();
        let cut = format!(
            "{{\"type\": \"OrderCreated\", \"data\": {{\"orderId\":\"o1\", \"customer\": {{\"email\": \"{EMAIL}\"}}, \"phone\": \"{}",
            &PHONE[..5]
        );
        let out = redacted(&cut);
        assert!(out.contains("\"orderId\":\"o1\"") && !out.contains(&PHONE[..5]), "only PII is replaced, a value cut short too: {out}");
        redacted(&format!("{{\"type\": \"OrderCreated\", \"data\": {{\"customer\": {{\"email\": \"{EMAIL}\",}}}}"));
        // Over several lines, some JSON (NDJSON) and some not.
        redacted(&format!("{event}\n{{not json \"recipient\": \"Ann Example\"\n"));
        // Without a type (refused for it): every pointer of the model.
        let mut untyped = event.clone();
        untyped.as_object_mut().unwrap().remove("type");
        redacted(&untyped.to_string());
        // A whole batch refused (too many events, too large).
        redacted(&json!([event, {"specversion": "1.0", "type": "OrderShipped", "data": {"recipient": "Ann Example"}}]).to_string());
        // A broker message: Kafka's ce_ headers, the hand-rolled ones, a structured body, a body
        // that is not JSON, and one that is not UTF-8 (kept as base64).
        let data = json!({"customer": {"email": EMAIL}}).to_string();
        redacted(&json!({"headers": {"ce_type": "OrderCreated"}, "body": data}).to_string());
        redacted(&json!({"headers": {"event-type": "OrderCreated"}, "body": data}).to_string());
        redacted(&json!({"headers": {"content-type": "application/cloudevents+json"}, "body": text}).to_string());
        redacted(&json!({"headers": {"ce-type": "OrderCreated"}, "body": format!("{{\"customer\": {{\"email\": \"{EMAIL}\"")}).to_string());
        let mut latin1 = format!("{{\"customer\": {{\"email\": \"{EMAIL}\", \"name\": \"M").into_bytes();
        latin1.extend([0xfc, b'l', b'"', b'}', b'}']);
        let b64 = encode_base64(&latin1);
        let out = redacted(&json!({"headers": {"ce_type": "OrderCreated"}, "body": {"base64": b64}}).to_string());
        assert!(!out.contains(&b64), "{out}");
        redacted(&json!({"headers": {"ce-type": "OrderCreated"}, "body": b64, "body_is_base64": true}).to_string());
        // Nothing to redact: nothing changes.
        assert_eq!(c.redact_raw("{not json"), None);
        assert_eq!(c.redact_raw(&json!({"type": "OrderShipped", "data": {"orderId": "o1"}}).to_string()), None);
    }

    /// Equal values get equal hashes whichever way they were read: by pointer, or by name in
    /// text that is not JSON.
    #[test]
    fn a_value_found_by_name_gets_the_hash_it_gets_by_pointer() {
        let c = nested();
        let valid = json!({"type": "OrderShipped", "data": {"recipient": "Ann Example"}}).to_string();
        let by_pointer: Value = serde_json::from_str(&c.redact_raw(&valid).unwrap()).unwrap();
        let hash = by_pointer["data"]["recipient"].as_str().unwrap();
        let by_name = c.redact_raw("{\"type\": \"OrderShipped\", \"data\": {\"recipient\": \"Ann Example\"").unwrap();
        assert!(by_name.contains(hash), "{by_name} lacks {hash}");
    }

    /// A consumer's report: the event as the consumer read it (a binary-mode body is just the
    /// payload; its type comes from the headers), and every value redacted from it wherever the
    /// report quotes it again.
    #[test]
    fn a_reported_event_is_redacted_and_its_values_scrubbed_from_the_report() {
        let c = nested();
        let body = json!({"orderId": "o1", "customer": {"email": EMAIL}}).to_string();
        let r = c.redact_input(&body, Some("OrderCreated"));
        let text = r.text.clone().unwrap();
        assert!(!text.contains(EMAIL) && text.contains("\"orderId\":\"o1\""), "{text}");
        let message = format!("mail server refused <{EMAIL}>");
        let scrubbed = r.scrub(&message).unwrap();
        assert!(!scrubbed.contains(EMAIL) && scrubbed.contains(REDACTED_PREFIX), "{scrubbed}");
        assert_eq!(r.scrub("nothing personal"), None);
        // Without a type, every pointer of the model.
        assert!(!c.redact_input(&body, None).text.unwrap().contains(EMAIL));
        // The event as it was written, byte for byte but for the PII value.
        let written =
            format!("{{ \"type\":\"OrderCreated\",  \"id\": \"e1\", \"data\": {{\"customer\": {{\"email\": \"{EMAIL}\"}}, \"note\": 1.50}} }}");
        let kept = c.redact_input(&written, None).text.unwrap();
        let hash = c.keyed_hash(&json!(EMAIL).to_string());
        assert_eq!(kept, written.replace(&format!("\"{EMAIL}\""), &format!("\"{hash}\"")));
        // A value also written elsewhere, not at a PII pointer: the event is written anew.
        let twice =
            format!("{{\"type\": \"OrderCreated\", \"id\": \"e1\", \"data\": {{\"customer\": {{\"email\": \"{EMAIL}\"}}, \"cc\": \"{EMAIL}\"}}}}");
        let kept: Value = serde_json::from_str(&c.redact_input(&twice, None).text.unwrap()).unwrap();
        assert_eq!((kept["data"]["customer"]["email"].as_str(), kept["data"]["cc"].as_str()), (Some(hash.as_str()), Some(EMAIL)));
    }
}
