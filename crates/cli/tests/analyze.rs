//! `causeway analyze` on a log of the past: judged until its latest event time by default, saying
//! so, and counting the findings whose deadlines fall after it; `--until` judges those too.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

fn example_model() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment/model.yaml")
}

/// One order created and paid, then nothing: its reservation is due 30 s after the payment, which
/// is after the log's last event; a second order completes its payment's reaction in time.
fn past_log(dir: &Path) -> std::path::PathBuf {
    let event = |id: &str, ty: &str, order: &str, time: &str, data: Value| {
        let source = if ty == "PaymentProcessed" { "payment-service" } else { "order-service" };
        json!({"specversion": "1.0", "id": id, "source": source, "type": ty, "time": time,
               "correlationid": format!("c-{order}"), "data": data})
    };
    let created = |order: &str| json!({"orderId": order, "customerEmail": "a@example.com", "amount": 1.0, "currency": "EUR"});
    let lines = [
        event("e1", "OrderCreated", "o1", "2025-01-01T10:00:00Z", created("o1")),
        event("e2", "PaymentProcessed", "o1", "2025-01-01T10:00:01Z", json!({"orderId": "o1", "amount": 1.0})),
        event("e3", "OrderCreated", "o2", "2025-01-01T10:00:02Z", created("o2")),
    ];
    let path = dir.join("past.ndjson");
    std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    path
}

fn analyze(log: &Path, extra: &[&str]) -> (String, Value) {
    let run = |json: bool| {
        let mut command = Command::new(BIN);
        command.arg("analyze").arg(log).arg("--model").arg(example_model()).args(extra);
        if json {
            command.arg("--json");
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    (run(false), serde_json::from_str(&run(true)).unwrap())
}

#[test]
fn a_log_is_judged_until_its_last_event_and_says_what_falls_due_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = past_log(dir.path());

    let (text, json) = analyze(&log, &[]);
    assert!(text.contains("judged until 2025-01-01T10:00:02.000000Z (the latest event time in the log)"), "{text}");
    assert_eq!(json["judged_until"], "2025-01-01T10:00:02.000000Z");
    assert!(json["findings_by_kind"].get("missing_reaction").is_none(), "{json}");
    // By now: o1's reservation (reserve-after-payment), both orders' stall and completion windows.
    let later = json["due_later"].as_u64().unwrap();
    assert!(later >= 3, "{json}");
    assert!(text.contains(&format!("{later} more findings would fall due after it, by now: --until now judges them")), "{text}");

    let (text, json) = analyze(&log, &["--until", "now"]);
    assert!(text.contains("(--until)"), "{text}");
    assert_eq!(json["due_later"], Value::Null);
    assert_eq!(json["findings_by_kind"]["missing_reaction"]["open"], 1, "{json}");
    let judged: u64 = json["findings_by_kind"].as_object().unwrap().values().map(|k| k["open"].as_u64().unwrap()).sum();
    assert_eq!(judged, later, "--until now finds exactly the findings the default run counted as due later: {json}");

    // A time between: only o1's reservation is due by 10:00:32.
    let (_, json) = analyze(&log, &["--until", "2025-01-01T10:00:32Z"]);
    assert_eq!(json["findings_by_kind"]["missing_reaction"]["open"], 1, "{json}");
    assert!(json["findings_by_kind"].get("stalled").is_none(), "{json}");
}
