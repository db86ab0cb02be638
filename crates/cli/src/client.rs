//! Client verbs against a running server: `ingest`, `chain`, `sql`.

use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};

use crate::ClientArgs;

pub(crate) fn http() -> anyhow::Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build()?)
}

pub(crate) fn url(args: &ClientArgs, path: &str) -> String {
    format!("{}{path}", args.server.trim_end_matches('/'))
}

/// Sends the request and returns the JSON answer; an API error becomes its message.
pub(crate) fn call(request: reqwest::blocking::RequestBuilder, server: &str) -> anyhow::Result<(u16, Value)> {
    let response = request.send().with_context(|| format!("cannot reach the causeway server at {server} (is `causeway serve` running? set --server)"))?;
    let status = response.status().as_u16();
    let body: Value = response.json().context("the server's answer is not JSON")?;
    Ok((status, body))
}

pub(crate) fn api_error(body: &Value) -> String {
    body["error"]["message"].as_str().map(str::to_owned).unwrap_or_else(|| body.to_string())
}

/// Sends a read request. An API error becomes its message; with `--json` the answer is printed
/// as it is and `None` comes back, otherwise the answer, for a human rendering.
pub(crate) fn read_or_print(args: &ClientArgs, request: reqwest::blocking::RequestBuilder) -> anyhow::Result<Option<Value>> {
    let (status, body) = call(request, &args.server)?;
    if status != 200 {
        bail!("{}", api_error(&body));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(None);
    }
    Ok(Some(body))
}

/// A JSON value as a table cell: strings bare, null empty.
pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn ingest(args: &ClientArgs, file: &Path, batch: usize) -> anyhow::Result<ExitCode> {
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (reader, total_bytes): (Box<dyn Read>, Option<u64>) = if file == Path::new("-") {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let progress = if std::io::stderr().is_terminal() {
        let bar = match total_bytes {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {per_sec} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let client = http()?;
    let mut totals = [0u64; 3];
    let mut rejected_reasons: Vec<String> = Vec::new();
    let mut lines = BufReader::new(reader).lines();
    let mut line_no = 0u64;
    loop {
        let mut body = String::new();
        let mut n = 0;
        for line in lines.by_ref() {
            let line = line.with_context(|| format!("cannot read {}", file.display()))?;
            line_no += 1;
            if line.trim().is_empty() {
                continue;
            }
            if let Some(bar) = &progress {
                bar.inc(line.len() as u64 + 1);
            }
            body.push_str(&line);
            body.push('\n');
            n += 1;
            if n == batch {
                break;
            }
        }
        if n == 0 {
            break;
        }
        let request = client.post(url(args, "/v1/events")).header("content-type", "application/x-ndjson").body(body);
        let (status, answer) = call(request, &args.server)?;
        if answer.get("results").is_none() {
            bail!("the server refused the batch ending at line {line_no} ({status}): {}", api_error(&answer));
        }
        for (i, key) in ["accepted", "duplicates", "rejected"].iter().enumerate() {
            totals[i] += answer[key].as_u64().unwrap_or(0);
        }
        for r in answer["results"].as_array().into_iter().flatten() {
            if r["status"] == "rejected" && rejected_reasons.len() < 10 {
                rejected_reasons.push(format!("{}: {}", r["id"].as_str().unwrap_or("(no id)"), r["reason"].as_str().unwrap_or("")));
            }
        }
        if let Some(bar) = &progress {
            bar.set_message(format!("{} accepted", totals[0]));
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if args.json {
        println!("{}", json!({"accepted": totals[0], "duplicates": totals[1], "rejected": totals[2]}));
    } else {
        println!("{} accepted, {} duplicates, {} rejected", totals[0], totals[1], totals[2]);
        for reason in &rejected_reasons {
            println!("  rejected {reason}");
        }
        if totals[2] > rejected_reasons.len() as u64 {
            println!("  … see them all: causeway sql \"SELECT * FROM dlq_events ORDER BY id DESC\"");
        }
    }
    Ok(if totals[2] > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn chain(args: &ClientArgs, id: &str) -> anyhow::Result<ExitCode> {
    let Some(body) = read_or_print(args, http()?.get(url(args, &format!("/v1/correlations/{}", encode(id)))))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let events = body["events"].as_array().map(Vec::len).unwrap_or(0);
    println!("correlation {id}: {events} events{}", if body["truncated"] == true { " (truncated)" } else { "" });
    let mut out = String::new();
    for (i, node) in body["tree"].as_array().into_iter().flatten().enumerate() {
        let last = i + 1 == body["tree"].as_array().map(Vec::len).unwrap_or(0);
        render_node(node, "", last, &mut out);
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn render_node(node: &Value, prefix: &str, last: bool, out: &mut String) {
    let branch = if last { "└─ " } else { "├─ " };
    let mut note = String::new();
    if node["orphan"] == true {
        note = format!("  (cause {} not stored)", node["causation_id"].as_str().unwrap_or("?"));
    } else if node["cycle"] == true {
        note = "  (causation cycle)".into();
    } else if node["continued"] == true {
        note = format!("  (continues from {})", node["causation_id"].as_str().unwrap_or("?"));
    }
    out.push_str(&format!(
        "{prefix}{branch}{}  {}  {}  {}{note}\n",
        node["event_type"].as_str().unwrap_or(""),
        node["source"].as_str().unwrap_or(""),
        node["time"].as_str().unwrap_or(""),
        node["event_id"].as_str().unwrap_or(""),
    ));
    let children = node["children"].as_array().cloned().unwrap_or_default();
    let child_prefix = format!("{prefix}{}", if last { "   " } else { "│  " });
    for (i, child) in children.iter().enumerate() {
        render_node(child, &child_prefix, i + 1 == children.len(), out);
    }
}

pub fn sql(args: &ClientArgs, query: &str) -> anyhow::Result<ExitCode> {
    let request = http()?.post(url(args, "/v1/sql")).json(&json!({"query": query}));
    let Some(body) = read_or_print(args, request)? else { return Ok(ExitCode::SUCCESS) };
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(body["columns"].as_array().into_iter().flatten().map(|c| c.as_str().unwrap_or("").to_string()));
    let rows = body["rows"].as_array().cloned().unwrap_or_default();
    for row in &rows {
        table.add_row(row.as_array().into_iter().flatten().map(cell));
    }
    println!("{table}");
    println!("{} row{}{}", rows.len(), if rows.len() == 1 { "" } else { "s" }, if body["truncated"] == true { " (truncated)" } else { "" });
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a path segment.
/// `k=v&…`, each value percent-encoded.
pub(crate) fn query_string(pairs: &[(&str, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&")
}

pub(crate) fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn journey(args: &ClientArgs, name: &str, key: &str) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/journeys/{}/{}", encode(name), encode(key));
    let Some(body) = read_or_print(args, http()?.get(url(args, &path)))? else { return Ok(ExitCode::SUCCESS) };
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    println!("{} {}: {}  (started {}, updated {})", s(&body["journey"]), s(&body["key"]), s(&body["state"]), s(&body["started_at"]), s(&body["updated_at"]));
    println!("milestones reached:");
    for m in body["milestones"].as_array().into_iter().flatten() {
        println!("  ✓ {:<24} {}  {}", s(&m["event"]), s(&m["reached_at"]), s(&m["event_id"]));
    }
    let next: Vec<String> = body["next_expected"].as_array().into_iter().flatten().map(s).collect();
    if !next.is_empty() {
        println!("next expected: {}", next.join(", "));
    }
    let findings = body["findings"].as_array().cloned().unwrap_or_default();
    if findings.is_empty() {
        println!("no findings");
    } else {
        println!("findings:");
        for f in &findings {
            let state = match f["resolved_at"].as_str() {
                Some(at) => format!("resolved {at}"),
                None => "OPEN".into(),
            };
            println!("  {} [{}] {}: {}", s(&f["kind"]), state, s(&f["detected_at"]), s(&f["detail"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Filters of `causeway findings`, passed to `GET /v1/findings` as they are.
#[derive(Debug, Clone, clap::Args)]
pub struct FindingArgs {
    /// Only this kind (missing_reaction, stalled, schema_error, …).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this journey.
    #[arg(long)]
    pub journey: Option<String>,
    /// Only this journey instance (with --journey).
    #[arg(long)]
    pub key: Option<String>,
    /// Only findings not resolved yet.
    #[arg(long)]
    pub open: bool,
    /// Only findings detected at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Most findings shown, newest first.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

pub fn findings(args: &ClientArgs, filter: &FindingArgs) -> anyhow::Result<ExitCode> {
    let mut query: Vec<(&str, String)> = vec![("limit", filter.limit.to_string())];
    if let Some(k) = &filter.kind {
        query.push(("kind", k.clone()));
    }
    if let Some(j) = &filter.journey {
        query.push(("journey", j.clone()));
    }
    if let Some(k) = &filter.key {
        query.push(("key", k.clone()));
    }
    if filter.open {
        query.push(("open", "true".into()));
    }
    if let Some(s) = &filter.since {
        query.push(("since", s.clone()));
    }
    let path = format!("/v1/findings?{}", query_string(&query));
    let Some(body) = read_or_print(args, http()?.get(url(args, &path)))? else { return Ok(ExitCode::SUCCESS) };
    let rows = body["findings"].as_array().cloned().unwrap_or_default();
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["id", "kind", "journey", "key", "detected at", "resolved at", "detail"]);
    for f in &rows {
        table.add_row([&f["id"], &f["kind"], &f["journey"], &f["key"], &f["detected_at"], &f["resolved_at"], &f["detail"]].map(cell));
    }
    println!("{table}");
    println!("{} finding{}", rows.len(), if rows.len() == 1 { "" } else { "s" });
    Ok(ExitCode::SUCCESS)
}
