//! Snapshot tests of every generator on the bundled example model, plus checks of what the
//! generated files mean: schemas that validate (and refuse) real events, AsyncAPI references that
//! resolve, runbooks with every section. The Prometheus rules and Grafana dashboards are checked
//! with promtool in `tests/prometheus.rs`.
//!
//! The expected files live in `tests/expected/<kind>/`. After an intended change, rewrite them with
//! `UPDATE_EXPECT=1 cargo test -p causeway-gen` and review the diff.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use causeway_gen::{FINDING_KINDS, GeneratedFile, Kind};
use causeway_model::Model;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example() -> Model {
    let path = repo().join("examples/order-fulfillment/model.yaml");
    causeway_model::load(&path).into_result().unwrap_or_else(|d| panic!("the example model has errors: {d:?}"))
}

fn files_under(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        if entry.path().is_dir() {
            files_under(&entry.path(), &rel, out);
        } else {
            out.insert(rel);
        }
    }
}

/// Compares generated files with `tests/expected/<kind>/`, or rewrites them under `UPDATE_EXPECT`.
fn expect(kind: Kind, files: &[GeneratedFile]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected").join(kind.name());
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        let _ = fs::remove_dir_all(&dir);
        for f in files {
            let path = dir.join(&f.path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &f.contents).unwrap();
        }
        return;
    }
    let mut problems = Vec::new();
    for f in files {
        match fs::read_to_string(dir.join(&f.path)) {
            Ok(expected) if expected == f.contents => {}
            Ok(expected) => {
                let line = expected
                    .lines()
                    .zip(f.contents.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(expected.lines().count().min(f.contents.lines().count()));
                problems.push(format!(
                    "{}: differs from line {}:\n  expected: {:?}\n  actual:   {:?}",
                    f.path,
                    line + 1,
                    expected.lines().nth(line).unwrap_or("<end of file>"),
                    f.contents.lines().nth(line).unwrap_or("<end of file>")
                ));
            }
            Err(_) => problems.push(format!("{}: not in {}", f.path, dir.display())),
        }
    }
    let mut on_disk = BTreeSet::new();
    files_under(&dir, "", &mut on_disk);
    let generated: BTreeSet<String> = files.iter().map(|f| f.path.clone()).collect();
    for stale in on_disk.difference(&generated) {
        problems.push(format!("{stale}: expected but no longer generated"));
    }
    assert!(
        problems.is_empty(),
        "{} output differs from tests/expected/{}:\n{}\n\nIf the change is intended: UPDATE_EXPECT=1 cargo test -p causeway-gen",
        kind.name(),
        kind.name(),
        problems.join("\n")
    );
}

#[test]
fn json_schema_matches_the_expected_files() {
    expect(Kind::JsonSchema, &causeway_gen::json_schema(&example()));
}

#[test]
fn asyncapi_matches_the_expected_file() {
    expect(Kind::AsyncApi, &causeway_gen::asyncapi(&example()));
}

#[test]
fn runbooks_match_the_expected_files() {
    expect(Kind::Runbooks, &causeway_gen::runbooks(&example()));
}

#[test]
fn prometheus_rules_match_the_expected_file() {
    expect(Kind::PrometheusRules, &causeway_gen::prometheus_rules(&example(), &causeway_gen::Options::default()));
}

#[test]
fn grafana_matches_the_expected_files() {
    expect(Kind::Grafana, &causeway_gen::grafana(&example()));
}

#[test]
fn output_is_deterministic_and_paths_stay_relative() {
    let model = example();
    for kind in Kind::ALL {
        let a = kind.generate(&model);
        let b = kind.generate(&example());
        assert_eq!(a, b, "{} differs between two runs", kind.name());
        let mut seen = BTreeSet::new();
        for f in &a {
            assert!(!f.path.starts_with('/') && !f.path.split('/').any(|s| s == ".." || s.is_empty()), "bad path {}", f.path);
            assert!(seen.insert(f.path.clone()), "{} generated twice", f.path);
            assert!(f.contents.ends_with('\n'));
            assert!(!f.contents.contains(&*repo().to_string_lossy()), "{} leaks a local path", f.path);
        }
    }
}

fn schema_file(files: &[GeneratedFile], path: &str) -> Value {
    let f = files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{path} not generated"));
    serde_json::from_str(&f.contents).unwrap()
}

fn sample_event() -> Value {
    json!({
        "specversion": "1.0",
        "id": "3f1c2a9e-0b7d-4c1e-9a51-2d0c6f1e8b42",
        "source": "payment-service",
        "type": "PaymentProcessed",
        "subject": "pay-1",
        "time": "2026-11-23T10:15:00.500Z",
        "datacontenttype": "application/json",
        "correlationid": "c-1",
        "causationid": "e-0",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "sequence": 3,
        "idempotencykey": "pay-1-capture",
        "schemaversion": 2,
        "data": {"orderId": "ord-1", "amount": 42.5, "currency": "EUR"}
    })
}

#[test]
fn every_schema_is_valid_2020_12_and_the_cloudevent_schema_judges_real_events() {
    let files = causeway_gen::json_schema(&example());
    for f in &files {
        let schema: Value = serde_json::from_str(&f.contents).unwrap();
        jsonschema::draft202012::meta::validate(&schema).unwrap_or_else(|e| panic!("{}: {e}", f.path));
        jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{} does not compile: {e}", f.path));
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    }
    let payload = schema_file(&files, "OrderCreated.v1.schema.json");
    assert_eq!(payload["$id"], "urn:causeway:order-fulfillment:OrderCreated:v1");
    assert!(payload["description"].as_str().unwrap().contains("team-checkout"));

    let ce = jsonschema::draft202012::new(&schema_file(&files, "PaymentProcessed.v2.cloudevent.schema.json")).unwrap();
    let good = sample_event();
    assert!(ce.is_valid(&good), "{:?}", ce.iter_errors(&good).map(|e| e.to_string()).collect::<Vec<_>>());
    let mut bad_cases = Vec::new();
    for (field, value) in [
        ("source", json!("order-service")),    // not a payments service
        ("type", json!("PaymentFailed")),      // another event
        ("time", json!("yesterday")),          // not RFC 3339 (format is asserted below)
        ("traceparent", json!("00-abc-01")),   // not W3C
        ("schemaversion", json!(1)),           // the v1 schema is another file
        ("data", json!({"orderId": "ord-1"})), // amount and currency missing
        ("sequence", json!("three")),
    ] {
        let mut e = good.clone();
        e[field] = value;
        bad_cases.push((field, e));
    }
    for missing in ["correlationid", "subject", "schemaversion", "time"] {
        let mut e = good.clone();
        e.as_object_mut().unwrap().remove(missing);
        bad_cases.push((missing, e));
    }
    let mut e = good.clone();
    e["correlationId"] = json!("c-1"); // camelCase is not a CloudEvents attribute name
    bad_cases.push(("correlationId", e));
    let mut e = good.clone();
    e["traceparent"] = json!("00-00000000000000000000000000000000-00f067aa0ba902b7-01");
    bad_cases.push(("all-zero trace id", e));

    let with_formats = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema_file(&files, "PaymentProcessed.v2.cloudevent.schema.json"))
        .unwrap();
    for (what, event) in bad_cases {
        assert!(!with_formats.is_valid(&event), "an event with a bad {what} passed");
    }
}

#[test]
fn the_v1_cloudevent_schema_allows_an_absent_schemaversion() {
    let files = causeway_gen::json_schema(&example());
    let ce = jsonschema::draft202012::new(&schema_file(&files, "PaymentProcessed.v1.cloudevent.schema.json")).unwrap();
    let mut event = sample_event();
    event.as_object_mut().unwrap().remove("schemaversion");
    event["data"] = json!({"orderId": "ord-1", "amount": 1});
    assert!(ce.is_valid(&event));
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("{reference} is not local"));
    doc.pointer(pointer).unwrap_or_else(|| panic!("{reference} does not resolve"))
}

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| refs(i, out)),
        _ => {}
    }
}

#[test]
fn asyncapi_references_resolve_and_operations_follow_the_model() {
    let files = causeway_gen::asyncapi(&example());
    assert_eq!(files.len(), 1);
    let doc: Value = serde_json::from_str(&files[0].contents).unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["info"]["title"], "order-fulfillment");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        resolve(&doc, r);
    }
    // An operation's messages are messages of its channel.
    for (id, op) in doc["operations"].as_object().unwrap() {
        let channel = op["channel"]["$ref"].as_str().unwrap();
        for m in op["messages"].as_array().unwrap() {
            assert!(m["$ref"].as_str().unwrap().starts_with(&format!("{channel}/messages/")), "{id}");
        }
    }
    let ops = doc["operations"].as_object().unwrap();
    assert_eq!(ops["order-service.send.OrderCreated"]["action"], "send");
    assert_eq!(ops["inventory-service.receive.PaymentProcessed"]["action"], "receive");
    assert_eq!(ops["inventory-service.receive.PaymentProcessed"]["x-policies"], json!(["reserve-after-payment"]));
    assert_eq!(ops["EmailProvider.receive.CustomerNotified"]["x-external"], true);
    assert_eq!(doc["channels"]["payments"]["address"], "payments");
    let messages = doc["channels"]["payments"]["messages"].as_object().unwrap();
    assert_eq!(messages.keys().collect::<Vec<_>>(), ["PaymentFailed", "PaymentProcessed"]);
    // The payload is the latest version.
    assert_eq!(doc["components"]["messages"]["PaymentProcessed"]["payload"]["$ref"], "#/components/schemas/PaymentProcessed.v2");
    assert_eq!(doc["components"]["messages"]["OrderCreated"]["x-owner"], "team-checkout");
}

#[test]
fn runbooks_have_every_section_and_the_index_links_them_all() {
    let files = causeway_gen::runbooks(&example());
    let index = &files.iter().find(|f| f.path == "README.md").unwrap().contents;
    for f in files.iter().filter(|f| f.path != "README.md") {
        assert!(index.contains(&format!("]({})", f.path)), "README.md does not link {}", f.path);
        for section in ["## Symptoms", "## Query to run", "## Owner", "## Compensating actions"] {
            assert!(f.contents.contains(section), "{} lacks {section}", f.path);
        }
        assert!(f.contents.contains("causeway sql \"SELECT") || f.contents.contains("causeway chain"), "{} has no query", f.path);
        assert!(f.contents.contains("- [ ] "), "{} has no checklist", f.path);
    }
    for (kind, _) in FINDING_KINDS {
        assert!(files.iter().any(|f| f.path == format!("findings/{kind}.md")), "no runbook for {kind}");
    }
    let journey = &files.iter().find(|f| f.path == "journeys/order.md").unwrap().contents;
    assert!(journey.contains("`team-checkout`"));
    assert!(journey.contains("journey = 'order'"));
    let policy = &files.iter().find(|f| f.path == "policies/reserve-after-payment.md").unwrap().contents;
    // A missing reaction is compensated by re-driving the `then` event's producer.
    assert!(policy.contains("re-drive `inventory-service`"), "{policy}");
    assert!(policy.contains("`ReserveInventory`"));
}

const EDGE_MODEL: &str = r##"
name: edge cases
contexts:
  core: {services: [core-svc]}
  lonely: {owner: team-lonely}
events:
  ThingHappened:
    context: core
    schema:
      type: object
      required: [line]
      properties: {line: {$ref: "#/$defs/Line"}}
      $defs: {Line: {type: object, required: [sku], properties: {sku: {type: string}}}}
  NothingDeclared: {context: lonely}
policies:
  react: {when: ThingHappened, then: [NothingDeclared], within: 90s}
envelope:
  correlation: optional
"##;

#[test]
fn edge_cases_no_topic_no_schema_no_services_optional_correlation_local_refs() {
    let loaded = causeway_model::load_str("edge.yaml", EDGE_MODEL);
    let model = loaded.into_result().unwrap_or_else(|d| panic!("{d:?}"));

    let files = causeway_gen::json_schema(&model);
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "ThingHappened.v1.schema.json",
            "ThingHappened.v1.cloudevent.schema.json",
            "NothingDeclared.v1.schema.json",
            "NothingDeclared.v1.cloudevent.schema.json"
        ]
    );
    let payload = schema_file(&files, "ThingHappened.v1.schema.json");
    assert_eq!(payload["$id"], "urn:causeway:edge%20cases:ThingHappened:v1");
    let ce_schema = schema_file(&files, "ThingHappened.v1.cloudevent.schema.json");
    assert!(!ce_schema["required"].as_array().unwrap().contains(&json!("correlationid")));
    // The payload's own `#/$defs/…` reference resolves inside the embedded payload resource.
    let ce = jsonschema::draft202012::new(&ce_schema).unwrap();
    let mut event = json!({"specversion": "1.0", "id": "1", "source": "core-svc", "type": "ThingHappened",
                           "time": "2026-01-01T00:00:00Z", "data": {"line": {"sku": "A"}}});
    assert!(ce.is_valid(&event), "{:?}", ce.iter_errors(&event).map(|e| e.to_string()).collect::<Vec<_>>());
    event["data"]["line"] = json!({});
    assert!(!ce.is_valid(&event));
    let nothing = jsonschema::draft202012::new(&schema_file(&files, "NothingDeclared.v1.cloudevent.schema.json")).unwrap();
    assert!(nothing.is_valid(
        &json!({"specversion": "1.0", "id": "1", "source": "any", "type": "NothingDeclared", "time": "2026-01-01T00:00:00Z", "data": [1]})
    ));

    let doc: Value = serde_json::from_str(&causeway_gen::asyncapi(&model)[0].contents).unwrap();
    assert_eq!(doc["channels"]["NothingDeclared"]["address"], "NothingDeclared");
    assert_eq!(doc["id"], "urn:causeway:edge%20cases");
    assert!(doc["operations"].get("lonely.send.NothingDeclared").is_some());
    assert!(doc["operations"].get("lonely.receive.ThingHappened").is_some());
    // Local references are rewritten to where the schema lives in the document.
    assert_eq!(doc["components"]["schemas"]["ThingHappened.v1"]["properties"]["line"]["$ref"], "#/components/schemas/ThingHappened.v1/$defs/Line");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        resolve(&doc, r);
    }

    let runbooks = causeway_gen::runbooks(&model);
    let readme = &runbooks[0].contents;
    assert!(readme.contains("The model declares no journeys."));
    let missing_correlation = runbooks.iter().find(|f| f.path == "findings/missing_correlation.md").unwrap();
    assert!(missing_correlation.contents.contains("optional"));
}
