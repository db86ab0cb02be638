//! Every verb, its output piped into `head -1`, ends as Unix tools do when the reader goes away:
//! exit 0 (everything fitted in the pipe) or 141 (killed by SIGPIPE), never a panic.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use serde_json::{Value, json};

mod common;

use common::{BIN, Server};

fn example_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment/model.yaml")
}

/// A status as the shell reports it: 128 + the signal for a process killed by one.
fn shell_status(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

/// Runs `causeway ARGS | head -1`; the status is causeway's (pipefail: head exits 0).
fn piped(args: &[&str]) -> (i32, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"set -o pipefail; "$0" "$@" | head -1"#)
        .arg(BIN)
        .args(args)
        .env_remove("CAUSEWAY_SERVER")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (shell_status(out.status), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The statuses that are a normal end, and no panic message: otherwise a line saying what broke.
fn check(label: &str, status: i32, stderr: &str, allowed: &[i32], failures: &mut Vec<String>) {
    if !allowed.contains(&status) || stderr.contains("panicked") {
        failures.push(format!("`causeway {label} | head -1` exited {status}: {stderr}"));
    }
}

/// A `causeway serve` child on a free port; `url` is read from its first line, so it is up.
/// Simulated order traffic stamped long before now (so the wall clock raises many findings), plus
/// one correlation whose causation chain is long, so that `chain` prints far more than a pipe holds.
fn event_log(path: &Path) -> Vec<Value> {
    use causeway_sim::{SimConfig, Simulator};
    let mut sim = Simulator::new(SimConfig { seed: 11, fault_rate: 0.1, concurrency: 40 });
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-05T09:00:00Z").unwrap().to_utc();
    // Without the deliveries that lack a correlation id, which the model refuses: ingesting this
    // log is expected to exit 0.
    let mut events: Vec<Value> = (0..12)
        .flat_map(|k| sim.next_batch(250, base + chrono::TimeDelta::seconds(k)))
        .map(|d| d.event)
        .filter(|e| e.get("correlationid").is_some())
        .collect();
    for n in 0..1000 {
        let mut e = json!({"specversion": "1.0", "id": format!("long-{n}"), "source": "order-service", "type": "OrderCreated",
                           "time": "2026-01-05T10:00:00Z", "correlationid": "long-chain", "data": {"orderId": format!("long-{n}")}});
        if n > 0 {
            e["causationid"] = json!(format!("long-{}", n - 1));
        }
        events.push(e);
    }
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(path, text).unwrap();
    events
}

#[test]
fn client_verbs_end_quietly_when_the_pipe_closes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("causeway.toml");
    // Dry runs only: nothing listens there.
    std::fs::write(&config, "[consumers.notification-service]\nreplay_url = \"http://127.0.0.1:9/replay\"\n").unwrap();
    let model = example_model();
    // The wall clock: the old events below are judged at once, so findings exist to list.
    let server =
        Server::start(&dir.path().join("data"), &["--model", model.to_str().unwrap(), "--config", config.to_str().unwrap(), "--clock", "wall"]);
    let s = server.url.as_str();
    let log = dir.path().join("events.ndjson");
    let events = event_log(&log);
    let log = log.to_str().unwrap();
    let setup = Command::new(BIN).args(["ingest", log, "--server", s]).output().unwrap();
    assert!(setup.status.success(), "{}{}", String::from_utf8_lossy(&setup.stdout), String::from_utf8_lossy(&setup.stderr));

    let client = reqwest::blocking::Client::new();
    let mut dlq_ids = Vec::new();
    for event in events.iter().take(300) {
        let report = json!({"event": event, "consumer": "notification-service", "source_topic": "orders",
                            "error_type": "KeyError", "error_message": "'customerEmail' is missing from the payload"});
        let answer: Value = client.post(format!("{s}/v1/dlq")).json(&report).send().unwrap().json().unwrap();
        dlq_ids.push(answer["id"].to_string());
    }
    let findings: Value = client.get(format!("{s}/v1/findings?kind=missing_reaction&limit=1")).send().unwrap().json().unwrap();
    let key = findings["findings"][0]["key"].as_str().unwrap_or_else(|| panic!("a missing reaction: {findings}")).to_string();
    // Lines with rejections make ingest exit 1 by design; the clean log is the one expected to end 0.
    let rejected = dir.path().join("rejected.ndjson");
    std::fs::write(&rejected, "{broken\n".repeat(50)).unwrap();
    let rejected = rejected.to_str().unwrap();

    let (first_dlq, second_dlq, third_dlq) = (&dlq_ids[0], &dlq_ids[1], &dlq_ids[2]);
    let runs: Vec<Vec<&str>> = vec![
        vec!["ingest", log],
        vec!["chain", "long-chain"],
        vec!["journey", "order", &key],
        vec!["findings", "--limit", "10000"],
        vec!["dlq", "list", "--limit", "500"],
        vec!["dlq", "summary"],
        vec!["dlq", "show", first_dlq],
        vec!["dlq", "replay", first_dlq, "--dry-run"],
        vec!["dlq", "replay", "--consumer", "notification-service", "--dry-run", "--limit", "300", "--rate", "1000"],
        vec!["state", "Order", &key],
        vec!["sql", "SELECT * FROM events"],
    ];
    let mut failures = Vec::new();
    let mut statuses = Vec::new();
    for run in &runs {
        for json in [false, true] {
            let mut args = run.clone();
            args.extend(["--server", s]);
            if json {
                args.push("--json");
            }
            let (status, stderr) = piped(&args);
            check(&args.join(" "), status, &stderr, &[0, 141], &mut failures);
            statuses.push(status);
        }
    }
    for args in [vec!["ingest", rejected, "--server", s], vec!["ingest", rejected, "--json", "--server", s]] {
        let (status, stderr) = piped(&args);
        check(&args.join(" "), status, &stderr, &[1, 141], &mut failures);
    }
    for args in [vec!["dlq", "resolve", second_dlq, "--reason", "by hand"], vec!["dlq", "discard", third_dlq, "--reason", "obsolete"]] {
        let mut args = args;
        args.extend(["--server", s]);
        let (status, stderr) = piped(&args);
        check(&args.join(" "), status, &stderr, &[0, 141], &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(statuses.contains(&141), "some output outgrew the pipe, so the closed pipe was met: {statuses:?}");
}

#[test]
fn offline_verbs_end_quietly_when_the_pipe_closes() {
    let dir = tempfile::tempdir().unwrap();
    let model = example_model();
    let model = model.to_str().unwrap();
    let log = dir.path().join("events.ndjson");
    event_log(&log);
    let out = |kind: &str| dir.path().join(kind).to_str().unwrap().to_string();
    let (asyncapi, schemas, runbooks) = (out("asyncapi"), out("json-schema"), out("runbooks"));
    let runs: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["dlq", "--help"],
        vec!["model", "check", model],
        vec!["model", "check", model, "--json"],
        vec!["model", "render", model, "--format", "svg"],
        vec!["model", "render", model, "--format", "html"],
        vec!["gen", "asyncapi", "--model", model, "--out", &asyncapi],
        vec!["gen", "json-schema", "--model", model, "--out", &schemas],
        vec!["gen", "runbooks", "--model", model, "--out", &runbooks],
        vec!["analyze", log.to_str().unwrap(), "--model", model],
        vec!["analyze", log.to_str().unwrap(), "--model", model, "--json"],
    ];
    let mut failures = Vec::new();
    for args in &runs {
        let (status, stderr) = piped(args);
        check(&args.join(" "), status, &stderr, &[0, 141], &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn demo_ends_quietly_when_the_pipe_closes() {
    let args = ["demo", "--duration", "4s", "--listen", "127.0.0.1:0"];
    let (status, stderr) = piped(&args);
    let mut failures = Vec::new();
    check(&args.join(" "), status, &stderr, &[0, 141], &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `causeway serve | head -1`: head reads the address and exits; the server, told to stop with
/// SIGTERM, ends normally.
#[test]
fn serve_ends_quietly_when_the_pipe_closes() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .args(["--model", example_model().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = Command::new("head").arg("-1").stdin(serve.stdout.take().unwrap()).stdout(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    head.stdout.take().unwrap().read_to_string(&mut first).unwrap();
    assert!(head.wait().unwrap().success());
    let url = first.trim().strip_prefix("causeway listening on ").unwrap_or_else(|| panic!("unexpected: {first}")).to_string();
    // The pipe is closed now; the server goes on serving.
    let ready = reqwest::blocking::get(format!("{url}/readyz")).unwrap();
    assert!(ready.status().is_success());
    // SAFETY: a signal to the child this test started and has not waited for yet.
    assert_eq!(unsafe { libc::kill(serve.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let out = serve.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut failures = Vec::new();
    check("serve", shell_status(out.status), &stderr, &[0, 141], &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
