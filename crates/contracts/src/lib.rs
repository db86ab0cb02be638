//! Contracts at ingest: what the model promises about each event, checked as it arrives.
//!
//! For an accepted event: its payload against the JSON Schema of its `schemaversion`
//! (`schema_error`), its type against the model (`unknown_event_type`), its `source` against the
//! services of the owning context (`unauthorized_producer`). A failed contract never refuses the
//! event: it is stored and flagged by a finding.
//!
//! **Invariant:** [`Contracts::inspect`] redacts every `pii` pointer of the event's type before it
//! returns, and no finding detail quotes a redacted value; [`Contracts::redact_raw`] does the same
//! for input refused at ingest. A redacted value is `hmac-sha256:<hex>` of its JSON text under the
//! configured key, so equal values still correlate while the raw value never reaches disk.

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
        Contracts { model, validators, pii_key }
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
        if let Some(data) = event.data.as_mut() {
            for pointer in &def.pii {
                self.redact_at(data, pointer);
            }
        }
        findings
    }

    /// The finding for an event refused because it had no correlation id.
    pub fn missing_correlation(&self, source: Option<&str>, detail: &str) -> ContractFinding {
        let owner = source.and_then(|s| self.model.context_of_service(s)).and_then(|c| self.model.owner_of_context(c));
        ContractFinding { kind: "missing_correlation", detail: detail.to_string(), owner: owner.map(str::to_owned) }
    }

    /// Redacts the PII of refused input, where its shape and type can be recognised: a CloudEvent's
    /// `data`, a metadata/payload `payload`, or a binary-mode record's JSON body. `None` when
    /// nothing needed redacting.
    pub fn redact_raw(&self, raw: &str) -> Option<String> {
        let mut value: Value = serde_json::from_str(raw).ok()?;
        let (event_type, container) = if let Some(meta) = value.get("metadata") {
            (meta.get("eventType")?.as_str()?.to_string(), "payload")
        } else if let Some(headers) = value.get("headers") {
            (headers.get("ce-type")?.as_str()?.to_string(), "body")
        } else {
            (value.get("type")?.as_str()?.to_string(), "data")
        };
        let pii = &self.model.events.get(&event_type)?.pii;
        if pii.is_empty() {
            return None;
        }
        let target = value.get_mut(container)?;
        if container == "body" {
            // A binary-mode body is kept as text; redact inside it when it is JSON.
            let mut body: Value = serde_json::from_str(target.as_str()?).ok()?;
            for p in pii {
                self.redact_at(&mut body, p);
            }
            *target = Value::String(body.to_string());
        } else {
            for p in pii {
                self.redact_at(target, p);
            }
        }
        Some(value.to_string())
    }

    fn redact_at(&self, data: &mut Value, pointer: &str) {
        if let Some(slot) = data.pointer_mut(pointer)
            && !slot.as_str().is_some_and(|s| s.starts_with(REDACTED_PREFIX))
        {
            *slot = Value::String(self.keyed_hash(&slot.to_string()));
        }
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

    fn contracts() -> Contracts {
        let model = causeway_model::load_str("shop.yaml", MODEL).into_result().unwrap();
        Contracts::new(model, b"secret".to_vec())
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
}
