//! Client verbs against a running server: `ingest`, `chain`, `sql`.

use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Deserialize as _;
use serde_json::{Value, json};

use causeway_server::remedy;
use causeway_store::INGEST_CONSUMER;

use crate::{ClientArgs, count};

/// The HTTP client of a verb: its token (`--token`, `CAUSEWAY_TOKEN`) goes with every request.
pub(crate) fn http(args: &ClientArgs) -> anyhow::Result<reqwest::blocking::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = args.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("the token holds characters no HTTP header can carry: copy it again from `causeway token create`"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let mut builder = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).default_headers(headers);
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read the CA certificates {}", path.display()))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).with_context(|| format!("{} is not a PEM file of CA certificates", path.display()))?;
        anyhow::ensure!(!certs.is_empty(), "{} holds no certificate (PEM, -----BEGIN CERTIFICATE-----)", path.display());
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder.build()?)
}

pub(crate) fn url(args: &ClientArgs, path: &str) -> String {
    format!("{}{path}", args.server.trim_end_matches('/'))
}

/// Sends the request and returns the JSON answer; an API error becomes its message.
pub(crate) fn call(request: reqwest::blocking::RequestBuilder, server: &str) -> anyhow::Result<(u16, Value)> {
    let response =
        request.send().with_context(|| format!("cannot reach the causeway server at {server} (is `causeway serve` running? set --server)"))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().context("the server's answer could not be read")?;
    // A causation tree nests two levels per generation, and the server continues chains only
    // after 200: past serde_json's default limit of 128, yet bounded.
    let mut json = serde_json::Deserializer::from_slice(&bytes);
    json.disable_recursion_limit();
    let body = Value::deserialize(&mut json).context("the server's answer is not JSON")?;
    Ok((status, body))
}

/// An API error as the command line says it. The server's sentences name the HTTP API's fix (a JSON
/// field, an endpoint); here the fix is a flag or a verb, translated by error code and status. A
/// message in any other wording is shown as the server gave it.
pub(crate) fn api_error(body: &Value) -> String {
    let Some(message) = body["error"]["message"].as_str() else {
        return body.to_string();
    };
    // The server names the remedy that ends its message; the command line has its own words for
    // some of them.
    let Some(remedy) = body["error"]["remedy"].as_str() else { return message.to_string() };
    let ours = match remedy {
        remedy::FORCE_REPLAY => "to send it again anyway, add --force".to_string(),
        remedy::LIST_DLQ => "list them with `causeway dlq list`".to_string(),
        remedy::INGEST_AGAIN => {
            let id = body["id"].as_i64().map_or("ID".to_string(), |id| id.to_string());
            format!("correct it and send it with `causeway ingest FILE`, then `causeway dlq discard {id} --reason TEXT`")
        }
        remedy::GIVE_REASON => "say why with --reason TEXT".to_string(),
        remedy::SMALLER_BATCHES => "send fewer events per request with a smaller --batch".to_string(),
        _ => return message.to_string(),
    };
    match message.strip_suffix(remedy).and_then(|m| m.strip_suffix("; ")) {
        Some(what) => format!("{what}; {ours}"),
        None => message.to_string(),
    }
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

/// One line of the file the server refused.
struct Rejection {
    line: u64,
    id: Option<String>,
    error_type: String,
    reason: String,
    dlq_id: Option<i64>,
}

/// A request the server refused as a whole: no event of it was stored.
struct Refusal {
    lines: (u64, u64),
    status: u16,
    code: String,
    message: String,
    dlq_id: Option<i64>,
}

/// What one `causeway ingest` run did.
#[derive(Default)]
struct IngestTally {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    blank_lines: u64,
    rejections: Vec<Rejection>,
    refusal: Option<Refusal>,
}

/// Rejections listed without `--json` (all of them are in the DLQ, and with `--json`).
const REJECTIONS_SHOWN: usize = 10;

/// The progress bar of `ingest`: it counts the file's bytes, so rates are bytes per second.
fn progress_style(total_known: bool) -> indicatif::ProgressStyle {
    let template = if total_known { "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}" } else { "{spinner} {bytes} {bytes_per_sec} {msg}" };
    indicatif::ProgressStyle::with_template(template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// A per-event reason as read against a file line: the event is the whole line, so serde's
/// "line 1 column N" inside it is just the column.
fn line_reason(reason: &str) -> String {
    reason.replace(" at line 1 column ", " at column ")
}

pub fn ingest(args: &ClientArgs, file: &Path, batch: usize) -> anyhow::Result<ExitCode> {
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    let stdin = file == Path::new("-");
    let name = if stdin { "stdin".to_string() } else { file.display().to_string() };
    let (reader, total_bytes): (Box<dyn Read>, Option<u64>) = if stdin {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot open {name}"))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = match total_bytes {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(progress_style(total_bytes.is_some()));
        bar
    });
    let mut tally = IngestTally::default();
    let sent = send_lines(args, BufReader::new(reader), &name, batch, progress.as_ref(), &mut tally);
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    // What was stored before a failure is reported as well as the failure.
    if sent.is_ok() || tally.accepted + tally.duplicates + tally.rejected > 0 {
        print_tally(args, &name, &tally)?;
    }
    sent?;
    if let Some(r) = &tally.refusal {
        let kept = r.dlq_id.map(|id| format!(", kept as DLQ record {id}")).unwrap_or_default();
        bail!(
            "{name}:{}-{}: the server refused these lines as a whole (HTTP {}{kept}): {}; nothing from line {} on was ingested",
            r.lines.0,
            r.lines.1,
            r.status,
            r.message,
            r.lines.0
        );
    }
    Ok(if tally.rejected > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Sends the lines in requests of `batch` events, tallying each answer against the file lines the
/// request held (the answer's `results` are in input order). Stops at a request refused whole.
fn send_lines(
    args: &ClientArgs,
    mut reader: impl BufRead,
    name: &str,
    batch: usize,
    progress: Option<&indicatif::ProgressBar>,
    tally: &mut IngestTally,
) -> anyhow::Result<()> {
    let client = http(args)?;
    let mut line_no = 0u64;
    let mut raw = Vec::new();
    loop {
        let mut body = Vec::new();
        let mut lines: Vec<u64> = Vec::with_capacity(batch);
        while lines.len() < batch {
            raw.clear();
            if reader.read_until(b'\n', &mut raw).with_context(|| format!("cannot read {name}"))? == 0 {
                break;
            }
            line_no += 1;
            if let Some(bar) = progress {
                bar.inc(raw.len() as u64);
            }
            let line = raw.strip_suffix(b"\n").unwrap_or(&raw);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // The server skips the same lines, so the answer's results pair with `lines`.
            if line.iter().all(u8::is_ascii_whitespace) {
                tally.blank_lines += 1;
                continue;
            }
            if std::str::from_utf8(line).is_err() {
                bail!("{name}:{line_no}: the line is not UTF-8 text (events are UTF-8 JSON)");
            }
            body.extend_from_slice(line);
            body.push(b'\n');
            lines.push(line_no);
        }
        let (Some(&first), Some(&last)) = (lines.first(), lines.last()) else {
            return Ok(());
        };
        let request = client.post(url(args, "/v1/events")).header("content-type", "application/x-ndjson").body(body);
        let (status, answer) = call(request, &args.server)?;
        let Some(results) = answer["results"].as_array() else {
            tally.refusal = Some(Refusal {
                lines: (first, last),
                status,
                code: answer["error"]["code"].as_str().unwrap_or("").to_string(),
                message: api_error(&answer),
                dlq_id: answer["dlq_id"].as_i64(),
            });
            return Ok(());
        };
        if results.len() != lines.len() {
            bail!("{name}:{first}-{last}: the server answered {} for {}", count(results.len() as u64, "result"), count(lines.len() as u64, "event"));
        }
        for (r, &line) in results.iter().zip(&lines) {
            match r["status"].as_str() {
                Some("accepted") => tally.accepted += 1,
                Some("duplicate") => tally.duplicates += 1,
                _ => {
                    tally.rejected += 1;
                    // Without --json only the first few are shown: keep only those.
                    if args.json || tally.rejections.len() < REJECTIONS_SHOWN {
                        tally.rejections.push(Rejection {
                            line,
                            id: r["id"].as_str().map(str::to_owned),
                            error_type: cell(&r["error_type"]),
                            reason: line_reason(r["reason"].as_str().unwrap_or("")),
                            dlq_id: r["dlq_id"].as_i64(),
                        });
                    }
                }
            }
        }
        if let Some(bar) = progress {
            bar.set_message(format!("{} accepted", tally.accepted));
        }
    }
}

fn print_tally(args: &ClientArgs, name: &str, t: &IngestTally) -> anyhow::Result<()> {
    if args.json {
        let rejections: Vec<Value> = t
            .rejections
            .iter()
            .map(|r| json!({"line": r.line, "id": r.id, "error_type": r.error_type, "reason": r.reason, "dlq_id": r.dlq_id}))
            .collect();
        let mut out = json!({"accepted": t.accepted, "duplicates": t.duplicates, "rejected": t.rejected,
                             "blank_lines": t.blank_lines, "rejections": rejections});
        if let Some(r) = &t.refusal {
            out["refused"] = json!({"first_line": r.lines.0, "last_line": r.lines.1, "status": r.status, "code": r.code,
                                    "message": r.message, "dlq_id": r.dlq_id});
        }
        println!("{out}");
        return Ok(());
    }
    let blank = if t.blank_lines > 0 { format!(" ({} skipped)", count(t.blank_lines, "blank line")) } else { String::new() };
    println!("{} accepted, {}, {} rejected{blank}", t.accepted, count(t.duplicates, "duplicate"), t.rejected);
    for r in &t.rejections {
        let mut about = Vec::new();
        if let Some(id) = &r.id {
            about.push(format!("event {id}"));
        }
        if let Some(dlq) = r.dlq_id {
            about.push(format!("DLQ record {dlq}"));
        }
        let about = if about.is_empty() { String::new() } else { format!(" ({})", about.join(", ")) };
        println!("{name}:{}: {}{about}", r.line, r.reason);
    }
    if t.rejected > t.rejections.len() as u64 {
        println!(
            "… {} more: --json lists every one; they are kept as DLQ records (causeway dlq list --consumer {INGEST_CONSUMER})",
            t.rejected - t.rejections.len() as u64
        );
    }
    Ok(())
}

pub fn chain(args: &ClientArgs, id: &str) -> anyhow::Result<ExitCode> {
    let Some(body) = read_or_print(args, http(args)?.get(url(args, &format!("/v1/correlations/{}", encode(id)))))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let events = body["events"].as_array().map(Vec::len).unwrap_or(0);
    println!("correlation {id}: {}{}", count(events as u64, "event"), if body["truncated"] == true { " (truncated)" } else { "" });
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
    let request = http(args)?.post(url(args, "/v1/sql")).json(&json!({"query": query}));
    let Some(body) = read_or_print(args, request)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(body["columns"].as_array().into_iter().flatten().map(|c| c.as_str().unwrap_or("").to_string()));
    let rows = body["rows"].as_array().cloned().unwrap_or_default();
    for row in &rows {
        table.add_row(row.as_array().into_iter().flatten().map(cell));
    }
    println!("{table}");
    println!("{}{}", count(rows.len() as u64, "row"), if body["truncated"] == true { " (truncated)" } else { "" });
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
    let Some(body) = read_or_print(args, http(args)?.get(url(args, &path)))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    println!(
        "{} {}: {}  (started {}, updated {})",
        s(&body["journey"]),
        s(&body["key"]),
        s(&body["state"]),
        s(&body["started_at"]),
        s(&body["updated_at"])
    );
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
    let Some(body) = read_or_print(args, http(args)?.get(url(args, &path)))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let rows = body["findings"].as_array().cloned().unwrap_or_default();
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    // Full event and correlation ids: they are what `chain`, `state --at` and `dlq list
    // --correlation-id` take, and the only handle on a finding outside any journey.
    table.set_header(["id", "kind", "journey", "key", "event", "correlation", "detected at", "resolved at", "detail"]);
    for f in &rows {
        table.add_row(
            [
                &f["id"],
                &f["kind"],
                &f["journey"],
                &f["key"],
                &f["event_id"],
                &f["correlation_id"],
                &f["detected_at"],
                &f["resolved_at"],
                &f["detail"],
            ]
            .map(cell),
        );
    }
    println!("{table}");
    println!("{}", count(rows.len() as u64, "finding"));
    Ok(ExitCode::SUCCESS)
}

/// `causeway lag`: a row per consumer group, its worst partition beside it.
pub fn lag(args: &ClientArgs, group: Option<&str>, status: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(g) = group {
        query.push(("group", g.to_string()));
    }
    if let Some(s) = status {
        query.push(("status", s.to_string()));
    }
    let Some(body) = read_or_print(args, http(args)?.get(url(args, &format!("/v1/lag?{}", query_string(&query)))))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let groups = body["groups"].as_array().cloned().unwrap_or_default();
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["group", "status", "lag", "lag (s)", "worst partition", "its status", "trend", "clears in (s)", "retention"]);
    let seconds = |v: &Value| v.as_f64().map_or("-".to_string(), |s| format!("{s:.0}"));
    for g in &groups {
        let worst = g["partitions"].as_array().and_then(|ps| ps.iter().max_by_key(|p| (status_rank(&p["status"]), p["lag"].as_i64())));
        let at_least = worst.is_some_and(|p| p["lag_seconds_at_least"] == true);
        let pick = |key: &str| worst.map_or(Value::Null, |p| p[key].clone());
        table.add_row([
            cell(&g["group"]),
            cell(&g["status"]),
            cell(&g["total_lag"]),
            format!("{}{}", if at_least { "≥" } else { "" }, seconds(&g["max_lag_seconds"])),
            worst.map_or("-".into(), |p| format!("{}/{}", p["topic"].as_str().unwrap_or(""), p["partition"])),
            cell(&pick("status")),
            cell(&pick("trend")),
            seconds(&pick("time_to_clear_seconds")),
            cell(&pick("retention")),
        ]);
    }
    println!("{table}");
    let as_of = body["as_of"].as_str().unwrap_or("not yet");
    println!("{}, evaluated {as_of}", count(groups.len() as u64, "group"));
    Ok(ExitCode::SUCCESS)
}

/// `causeway slo`: a row per SLO.
pub fn slo(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let Some(body) = read_or_print(args, http(args)?.get(url(args, "/v1/slo")))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let slos = body["slos"].as_array().cloned().unwrap_or_default();
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["slo", "measures", "objective", "window", "sli", "budget left", "burn 5m", "1h", "6h", "1d", "3d", "alert"]);
    let percent = |v: &Value| v.as_f64().map_or("-".to_string(), |r| format!("{}%", trim_number(r * 100.0)));
    let burn = |s: &Value, w: &str| s["burn_rates"][w].as_f64().map_or("-".to_string(), |b| format!("{b:.1}×"));
    for s in &slos {
        let subject = ["context", "event_type", "policy", "journey"]
            .iter()
            .find_map(|k| s[*k].as_str().map(|v| format!("{} of {v}", s["sli"].as_str().unwrap_or("?"))));
        table.add_row([
            cell(&s["name"]),
            subject.unwrap_or_default(),
            percent(&s["objective"]),
            cell(&s["window"]),
            percent(&s["sli_value"]),
            percent(&s["error_budget_remaining"]),
            burn(s, "5m"),
            burn(s, "1h"),
            burn(s, "6h"),
            burn(s, "1d"),
            burn(s, "3d"),
            s["alert"].as_str().unwrap_or("-").to_string(),
        ]);
    }
    println!("{table}");
    let clock = body["clock"].as_str().unwrap_or("not set yet");
    println!("{}, judged by event time up to {clock}", count(slos.len() as u64, "SLO"));
    Ok(ExitCode::SUCCESS)
}

/// A number with at most three decimals and no trailing zeros.
fn trim_number(n: f64) -> String {
    let text = format!("{n:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Burrow's order of statuses, best to worst.
fn status_rank(status: &Value) -> usize {
    ["NOTFOUND", "OK", "WARN", "ERR", "STOP", "STALL", "REWIND"].iter().position(|s| status == *s).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A terminal that keeps what is drawn on it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            200
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(&format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The bar counts bytes of the file, so its rate must read as bytes per second, not a bare
    /// number per second.
    #[test]
    fn ingest_progress_rate_has_a_unit() {
        for total_known in [true, false] {
            let screen = Screen::default();
            let bar = indicatif::ProgressBar::with_draw_target(
                total_known.then_some(50_000_000),
                indicatif::ProgressDrawTarget::term_like(Box::new(screen.clone())),
            );
            bar.set_style(progress_style(total_known));
            bar.inc(8_864_709);
            bar.force_draw();
            let drawn = screen.0.lock().unwrap().clone();
            let rate = drawn.split_whitespace().find(|w| w.ends_with("/s")).unwrap_or_else(|| panic!("no rate in {drawn:?}"));
            assert!(rate.ends_with("B/s"), "rate without a unit: {rate:?} in {drawn:?}");
        }
    }
}
