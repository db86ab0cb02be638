//! Notifications (issue 19): webhook receivers started here (plain TCP, HTTP parsed by hand) get
//! one grouped notification per alert from `causeway serve`, in Alertmanager's format and the
//! plain one, a resolve when it clears, and nothing while it is silenced — across a restart too,
//! which keeps the silence; deleting the silence sends it. A stall surge fires and resolves.
//!
//! Time is the event clock (`--clock event`): events hours apart move the SLO windows on. The
//! test waits on the notifier's round count (`GET /v1/alerts`), never on a sleep.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::{Duration, Instant};

use common::{Server, get};
use serde_json::{Value, json};

const MODEL: &str = r#"
name: shop
contexts:
  ordering: {owner: team-orders, services: [order-service]}
  shipping: {owner: team-shipping, services: [shipping-service]}
events:
  OrderPlaced:
    context: ordering
    schema: {type: object, required: [orderId, amount], properties: {orderId: {type: string}, amount: {type: number}}}
  OrderShipped:
    context: shipping
    schema: {type: object, required: [orderId], properties: {orderId: {type: string}}}
slos:
  placing:  {sli: event_success, context: ordering, objective: 99%, window: 1d}
  shipping: {sli: event_success, event_type: OrderShipped, objective: 99%, window: 1d}
"#;

/// A webhook receiver: every POSTed body, in order.
struct Hook {
    url: String,
    bodies: Receiver<Value>,
}

impl Hook {
    fn start(path: &str) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let (tx, bodies) = channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let tx = tx.clone();
                std::thread::spawn(move || answer(stream, tx));
            }
        });
        Hook { url, bodies }
    }

    /// The next notification.
    fn next(&self) -> Value {
        self.bodies.recv_timeout(Duration::from_secs(30)).expect("a notification within 30 s")
    }

    /// The next `n` notifications, by group key.
    fn next_groups(&self, n: usize) -> Vec<Value> {
        let mut got: Vec<Value> = (0..n).map(|_| self.next()).collect();
        got.sort_by_key(group_of);
        got
    }

    fn nothing_more(&self) {
        match self.bodies.try_recv() {
            Err(TryRecvError::Empty) => {}
            other => panic!("{} got more than expected: {other:?}", self.url),
        }
    }
}

/// The group a notification of either format is about.
fn group_of(body: &Value) -> String {
    body.get("groupKey").or_else(|| body.get("group")).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// Serves one connection: HTTP/1.1 requests one after another, each answered 200 once its body
/// is handed to the test.
fn answer(stream: TcpStream, bodies: Sender<Value>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        assert!(line.starts_with("POST "), "a receiver is POSTed to: {line}");
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let _ = bodies.send(serde_json::from_slice(&body).expect("a JSON body"));
        writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap();
    }
}

/// Hours and minutes after 2026-01-05T09:00:00Z.
fn at(minutes: i64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339("2026-01-05T09:00:00Z").unwrap() + chrono::TimeDelta::minutes(minutes);
    t.to_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn event(id: &str, ty: &str, minutes: i64, data: Value) -> Value {
    let source = if ty == "OrderShipped" { "shipping-service" } else { "order-service" };
    json!({"specversion": "1.0", "id": id, "source": source, "type": ty, "time": at(minutes), "data": data, "correlationid": format!("c-{id}")})
}

fn post(url: &str, events: &[Value]) {
    let response = reqwest::blocking::Client::new().post(format!("{url}/v1/events")).json(events).send().unwrap();
    assert!(response.status().is_success(), "{}", response.text().unwrap());
}

fn evaluations(url: &str) -> u64 {
    get(&format!("{url}/v1/alerts"))["evaluations"].as_u64().expect("evaluations")
}

/// Polls `GET /v1/alerts` until `done` holds of it.
fn wait_for_alerts(url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alerts = get(&format!("{url}/v1/alerts"));
        if done(&alerts) {
            return alerts;
        }
        assert!(Instant::now() < deadline, "waited a minute for {what}: {alerts}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the notifier completed `rounds` more rounds (deliveries included).
fn wait_rounds(url: &str, rounds: u64) {
    let from = evaluations(url);
    wait_for_alerts(url, &format!("{rounds} more rounds"), |a| a["evaluations"].as_u64().unwrap() >= from + rounds);
}

fn config(dir: &std::path::Path, hooks: &[(&str, &Hook, &str)], extra: &str) -> std::path::PathBuf {
    let mut text =
        format!("[notify]\ninterval = \"100ms\"\nrepeat_interval = \"1h\"\nrunbook_base = \"https://runbooks.example/causeway/\"\n{extra}\n");
    for (name, hook, format) in hooks {
        text.push_str(&format!("[[notify.webhook]]\nname = \"{name}\"\nurl = \"{}\"\nformat = \"{format}\"\n", hook.url));
    }
    let path = dir.join("causeway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn label<'a>(alert: &'a Value, name: &str) -> &'a str {
    alert["labels"][name].as_str().unwrap_or_else(|| panic!("label {name} in {alert}"))
}

#[test]
fn receivers_get_one_grouped_notification_per_alert_a_resolve_and_nothing_while_silenced() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.yaml");
    std::fs::write(&model, MODEL).unwrap();
    let (am, plain) = (Hook::start("/alertmanager"), Hook::start("/plain"));
    let config = config(dir.path(), &[("am", &am, "alertmanager"), ("chat", &plain, "plain")], "");
    let data = dir.path().join("data");
    let args = ["--model", model.to_str().unwrap(), "--clock", "event", "--config", config.to_str().unwrap()];
    let server = Server::start(&data, &args);
    // The first round records the finding kinds already there (none) as the baseline.
    wait_for_alerts(&server.url, "the first round", |a| a["notifier"] == "running" && a["evaluations"].as_u64() >= Some(1));

    // One of two placements breaks its schema: half bad against a 1% budget pages, and
    // schema_error is a kind of finding not seen before.
    post(&server.url, &[event("a1", "OrderPlaced", 0, json!({"orderId": "a", "amount": 5})), event("b1", "OrderPlaced", 0, json!({"orderId": "b"}))]);
    let sent = am.next_groups(2);
    let (kind, page) = (&sent[0], &sent[1]);
    assert_eq!(page["version"], "4");
    assert_eq!(page["status"], "firing");
    assert_eq!(page["receiver"], "am");
    assert_eq!(page["truncatedAlerts"], 0);
    assert_eq!(page["groupKey"], r#"{}:{alertname="SLOBurnRate", severity="page", slo="placing"}"#);
    assert_eq!(page["groupLabels"], json!({"alertname": "SLOBurnRate", "severity": "page", "slo": "placing"}));
    assert_eq!(page["externalURL"], server.url);
    assert_eq!(page["alerts"].as_array().unwrap().len(), 1);
    let alert = &page["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(
        (label(alert, "slo"), label(alert, "sli"), label(alert, "context"), label(alert, "severity")),
        ("placing", "event_success", "ordering", "page")
    );
    assert_eq!(page["commonLabels"], alert["labels"]);
    assert_eq!(alert["annotations"]["summary"], "placing: context ordering burns its error budget at 50× over 1h");
    assert_eq!(alert["annotations"]["runbook_url"], "https://runbooks.example/causeway/README.md#findings");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alert["generatorURL"], format!("{}/v1/slo", server.url));
    let fingerprint = alert["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fingerprint.len(), 16);
    assert_eq!((kind["status"].as_str(), label(&kind["alerts"][0], "kind")), (Some("firing"), "schema_error"));
    assert_eq!(kind["alerts"][0]["annotations"]["runbook_url"], "https://runbooks.example/causeway/findings/schema_error.md");

    let sent = plain.next_groups(2);
    let page_text = &sent[1];
    assert_eq!(
        (page_text["status"].as_str(), page_text["group"].as_str(), page_text["severity"].as_str()),
        (Some("firing"), Some("slo=placing"), Some("page"))
    );
    let text = page_text["text"].as_str().unwrap();
    assert!(text.starts_with("[PAGE] FIRING: placing: context ordering burns its error budget at 50× over 1h."), "{text}");
    assert!(text.contains("1 bad of 2 over the window") && text.ends_with("Runbook: https://runbooks.example/causeway/README.md#findings"), "{text}");
    assert_eq!(page_text["alerts"][0]["labels"]["slo"], "placing");
    assert_eq!(page_text["alerts"][0]["starts_at"], alert["startsAt"]);
    assert_eq!(sent[0]["group"], "kind=schema_error");

    // The same state is not sent again.
    wait_rounds(&server.url, 3);
    am.nothing_more();
    plain.nothing_more();

    // Seven hours on, a good placement: every window short enough to alert on is clean.
    post(&server.url, &[event("c1", "OrderPlaced", 7 * 60, json!({"orderId": "c", "amount": 5}))]);
    let resolved = am.next();
    assert_eq!((resolved["status"].as_str(), group_of(&resolved)), (Some("resolved"), page["groupKey"].as_str().unwrap().to_string()));
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["fingerprint"], fingerprint.as_str());
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    let resolved = plain.next();
    assert_eq!((resolved["status"].as_str(), resolved["group"].as_str()), (Some("resolved"), Some("slo=placing")));
    assert!(resolved["text"].as_str().unwrap().starts_with("[PAGE] RESOLVED: placing:"), "{resolved}");

    // A silence on the other SLO, then it pages: nothing is sent while the silence holds.
    let client = reqwest::blocking::Client::new();
    let created = client
        .post(format!("{}/v1/silences", server.url))
        .json(&json!({"matchers": {"slo": "shipping"}, "duration": "1h", "comment": "shipping-service is being redeployed", "created_by": "on-call"}))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let silence: Value = created.json().unwrap();
    let id = silence["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/v1/silences/{id}"));
    assert_eq!((silence["state"].as_str(), silence["created_by"].as_str()), (Some("active"), Some("on-call")));
    // A silence without a matcher is refused with a sentence.
    let refused = client.post(format!("{}/v1/silences", server.url)).json(&json!({"matchers": {}, "duration": "1h", "comment": "x"})).send().unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.json::<Value>().unwrap()["error"]["message"].as_str().unwrap().contains("at least one matcher"));

    post(
        &server.url,
        &[event("s1", "OrderShipped", 7 * 60 + 1, json!({"orderId": "c"})), event("s2", "OrderShipped", 7 * 60 + 1, json!({"order": "d"}))],
    );
    let silenced = |a: &Value| {
        a["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["labels"]["slo"] == "shipping" && x["state"] == "silenced" && x["silenced_by"][0] == id.as_str())
    };
    wait_for_alerts(&server.url, "the shipping SLO silenced", silenced);
    wait_rounds(&server.url, 2);
    am.nothing_more();
    plain.nothing_more();
    let metrics = client.get(format!("{}/metrics", server.url)).send().unwrap().text().unwrap();
    for line in [
        "causeway_alerts{alertname=\"SLOBurnRate\",severity=\"page\",state=\"silenced\"} 1\n",
        "causeway_alerts{alertname=\"SLOBurnRate\",severity=\"page\",state=\"firing\"} 0\n",
        "causeway_alerts{alertname=\"NewFindingKind\",severity=\"ticket\",state=\"firing\"} 1\n",
        "causeway_notifications_total{receiver=\"am\",status=\"sent\"} 3\n",
        "causeway_notifications_total{receiver=\"chat\",status=\"failed\"} 0\n",
    ] {
        assert!(metrics.contains(line), "{line}in:\n{metrics}");
    }
    common::promtool_check_metrics(&metrics);

    // A restart keeps the silence, and what was delivered: still nothing is sent.
    server.kill();
    let server = Server::start(&data, &args);
    let listed = get(&format!("{}/v1/silences", server.url));
    assert_eq!(listed["silences"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["silences"][0]["state"], "active");
    wait_for_alerts(&server.url, "the shipping SLO silenced after the restart", silenced);
    wait_rounds(&server.url, 2);
    am.nothing_more();
    plain.nothing_more();

    // Expired: the alert still fires, so it is sent.
    let deleted = client.delete(format!("{}/v1/silences/{id}", server.url)).send().unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.json::<Value>().unwrap()["state"], "expired");
    let page = am.next();
    assert_eq!(
        (page["status"].as_str(), group_of(&page).as_str()),
        (Some("firing"), r#"{}:{alertname="SLOBurnRate", severity="page", slo="shipping"}"#)
    );
    let alert = &page["alerts"][0];
    assert_eq!((label(alert, "slo"), label(alert, "event_type"), label(alert, "severity")), ("shipping", "OrderShipped", "page"));
    let page = plain.next();
    assert_eq!((page["status"].as_str(), page["group"].as_str()), (Some("firing"), Some("slo=shipping")));
    let again = client.delete(format!("{}/v1/silences/{id}", server.url)).send().unwrap();
    assert_eq!(again.status(), 409);
    wait_rounds(&server.url, 2);
    am.nothing_more();
    plain.nothing_more();
}

const JOURNEY_MODEL: &str = r#"
name: shop
contexts:
  ordering: {owner: team-orders, services: [order-service]}
  shipping: {owner: team-shipping, services: [shipping-service]}
events:
  OrderPlaced: {context: ordering, schema: {type: object}}
  OrderShipped: {context: shipping, schema: {type: object}}
journeys:
  order:
    key: /orderId
    milestones: [OrderPlaced, OrderShipped]
    outcomes: {shipped: [OrderShipped]}
    stall_after: 5m
"#;

#[test]
fn a_stall_surge_is_sent_and_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.yaml");
    std::fs::write(&model, JOURNEY_MODEL).unwrap();
    let hook = Hook::start("/plain");
    let config = config(dir.path(), &[("chat", &hook, "plain")], "stall_surge = 2");
    let args = ["--model", model.to_str().unwrap(), "--clock", "event", "--config", config.to_str().unwrap()];
    let server = Server::start(&dir.path().join("data"), &args);
    wait_for_alerts(&server.url, "the first round", |a| a["evaluations"].as_u64() >= Some(1));

    // Two orders placed, then ten minutes on: both stalled, a surge of two.
    post(&server.url, &[event("a1", "OrderPlaced", 0, json!({"orderId": "a"})), event("b1", "OrderPlaced", 0, json!({"orderId": "b"}))]);
    post(&server.url, &[event("z1", "OrderPlaced", 10, json!({"orderId": "z"}))]);
    let sent = hook.next_groups(2);
    assert_eq!((sent[0]["group"].as_str(), sent[0]["status"].as_str()), (Some("journey=order"), Some("firing")));
    let alert = &sent[0]["alerts"][0];
    assert_eq!((label(alert, "alertname"), label(alert, "severity")), ("JourneyStallSurge", "ticket"));
    assert_eq!(alert["annotations"]["summary"], "journey order: 2 instances stalled (a surge is 2 or more)");
    assert_eq!(alert["annotations"]["runbook_url"], "https://runbooks.example/causeway/journeys/order.md");
    assert_eq!((sent[1]["group"].as_str(), label(&sent[1]["alerts"][0], "kind")), (Some("kind=stalled"), "stalled"));

    // Order a ships: one stalled instance is no surge.
    post(&server.url, &[event("a2", "OrderShipped", 11, json!({"orderId": "a"}))]);
    let resolved = hook.next();
    assert_eq!((resolved["group"].as_str(), resolved["status"].as_str()), (Some("journey=order"), Some("resolved")));
    wait_rounds(&server.url, 2);
    hook.nothing_more();
}
