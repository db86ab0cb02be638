//! `causeway dlq list|show|summary|replay|discard|resolve` and `causeway state`: the dead-letter
//! explorer and time travel against a running server.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Map, Value, json};

use crate::client::{api_error, call, cell, encode, http, query_string, read_or_print, url};
use crate::{ClientArgs, count};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-letter records, newest first.
    List {
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Most records to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Show records older than this id (the previous page's last id).
        #[arg(long)]
        before: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pending count, oldest age, inflow and outflow, counts by topic and error, 24 h trend.
    Summary {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One record: the error, the original event, its causation chain, journey and replays.
    Show {
        /// The record's id (the first column of `causeway dlq list`).
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send one record (ID) or every record a filter selects back to its consumer's replay target.
    Replay {
        /// The record; without it, every record the filters select (oldest first).
        id: Option<i64>,
        /// Without ID: replay every pending record, with no filter.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Without ID: only records that first failed at or before this RFC 3339 time.
        #[arg(long)]
        stop_at: Option<String>,
        /// Without ID: replays per second [server default: 50].
        #[arg(long)]
        rate: Option<f64>,
        /// Without ID: most records to replay [server default: 100].
        #[arg(long)]
        limit: Option<usize>,
        /// Without ID: stop at the first failure.
        #[arg(long)]
        stop_on_error: bool,
        /// Show what would be sent; send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Send records already replayed, resolved or discarded too.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        actor: ActorArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Close a record without replaying it.
    Discard {
        /// The record's id (the first column of `causeway dlq list`).
        id: i64,
        /// Why (kept on the record).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        actor: ActorArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Mark a record resolved by hand.
    Resolve {
        /// The record's id (the first column of `causeway dlq list`).
        id: i64,
        /// How it was resolved (kept on the record) [default: resolved by hand].
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        actor: ActorArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Filters shared by `dlq list` and bulk `dlq replay`.
#[derive(Debug, Clone, Default, Args)]
pub struct DlqFilterArgs {
    /// Only records in this status: pending, replayed, resolved or discarded.
    #[arg(long)]
    pub status: Option<String>,
    /// Only records reported by this consumer (`causeway` for events refused at ingest).
    #[arg(long)]
    pub consumer: Option<String>,
    /// Only records from this topic or queue.
    #[arg(long)]
    pub source_topic: Option<String>,
    /// Only records with this error type (e.g. KeyError, malformed_json).
    #[arg(long)]
    pub error_type: Option<String>,
    /// Only records whose event has this correlation id.
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// Failed (last) at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Text in the error message.
    #[arg(long, short = 'q')]
    pub query: Option<String>,
}

impl DlqFilterArgs {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("status", &self.status),
            ("consumer", &self.consumer),
            ("source_topic", &self.source_topic),
            ("error_type", &self.error_type),
            ("correlation_id", &self.correlation_id),
            ("since", &self.since),
            ("q", &self.query),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

/// Who is acting, for the audit.
#[derive(Debug, Clone, Args)]
pub struct ActorArgs {
    /// Recorded in the audit [default: $USER].
    #[arg(long, env = "CAUSEWAY_ACTOR", value_name = "NAME")]
    pub actor: Option<String>,
}

impl ActorArgs {
    fn name(&self) -> String {
        self.actor.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into())
    }
}

pub fn run(command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List { filter, limit, before, client } => list(&client, &filter, limit, before),
        DlqCommand::Summary { client } => summary(&client),
        DlqCommand::Show { id, client } => show(&client, id),
        DlqCommand::Replay { id, all, filter, stop_at, rate, limit, stop_on_error, dry_run, force, actor, client } => match id {
            Some(id) => replay_one(&client, id, dry_run, force, &actor.name()),
            None => {
                let mut body: Map<String, Value> = filter.pairs().into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                if body.is_empty() && !all {
                    bail!("name a record (causeway dlq replay ID), select records with filters (--consumer, --error-type, …) or pass --all");
                }
                for (k, v) in [("stop_at", stop_at.map(|v| json!(v))), ("rate", rate.map(|v| json!(v))), ("limit", limit.map(|v| json!(v)))] {
                    if let Some(v) = v {
                        body.insert(k.into(), v);
                    }
                }
                body.insert("stop_on_error".into(), json!(stop_on_error));
                body.insert("dry_run".into(), json!(dry_run));
                body.insert("force".into(), json!(force));
                body.insert("actor".into(), json!(actor.name()));
                replay_bulk(&client, Value::Object(body))
            }
        },
        DlqCommand::Discard { id, reason, actor, client } => {
            post(&client, &format!("/v1/dlq/{id}/discard"), json!({"reason": reason, "actor": actor.name()}))?;
            println!("DLQ record {id} discarded");
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Resolve { id, reason, actor, client } => {
            post(&client, &format!("/v1/dlq/{id}/resolve"), json!({"reason": reason, "actor": actor.name()}))?;
            println!("DLQ record {id} resolved");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn records_table(rows: &[Value]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["id", "status", "consumer", "topic", "error", "message", "event", "attempts", "last failed"]);
    for r in rows {
        table.add_row(
            [
                &r["id"],
                &r["status"],
                &r["consumer"],
                &r["source_topic"],
                &r["error_type"],
                &r["error_message"],
                &r["event_type"],
                &r["attempts"],
                &r["last_failed_at"],
            ]
            .map(cell),
        );
    }
    table
}

fn list(args: &ClientArgs, filter: &DlqFilterArgs, limit: usize, before: Option<i64>) -> anyhow::Result<ExitCode> {
    let mut pairs = filter.pairs();
    pairs.push(("limit", limit.to_string()));
    if let Some(b) = before {
        pairs.push(("before", b.to_string()));
    }
    let path = format!("/v1/dlq?{}", query_string(&pairs));
    let Some(body) = read_or_print(args, http(args)?.get(url(args, &path)))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let rows = body["records"].as_array().cloned().unwrap_or_default();
    println!("{}", records_table(&rows));
    match body["next_before"].as_i64() {
        Some(next) => println!("{}; more with --before {next}", count(rows.len() as u64, "record")),
        None => println!("{}", count(rows.len() as u64, "record")),
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let Some(s) = read_or_print(args, http(args)?.get(url(args, "/v1/dlq/summary")))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let oldest = match s["oldest_pending"].as_object() {
        Some(o) => format!("oldest pending failed {} ({} s ago)", cell(&o["failed_at"]), cell(&o["age_seconds"])),
        None => "nothing pending".into(),
    };
    println!("pending: {}   {oldest}", s["pending"]);
    println!("last hour: {} in, {} out", s["inflow_last_hour"], s["outflow_last_hour"]);
    for (title, key) in [
        ("by status", "by_status"),
        ("pending by source topic", "by_source_topic"),
        ("pending by error type", "by_error_type"),
        ("pending by consumer", "by_consumer"),
    ] {
        let counts: Vec<String> =
            s[key].as_object().into_iter().flatten().map(|(k, n)| format!("{} {n}", if k.is_empty() { "(none)" } else { k })).collect();
        if !counts.is_empty() {
            println!("{title}: {}", counts.join(", "));
        }
    }
    let trend: Vec<String> = s["trend"].as_array().into_iter().flatten().map(|b| format!("{}/{}", b["inflow"], b["outflow"])).collect();
    println!("24 h trend, in/out per hour, oldest first: {}", trend.join(" "));
    Ok(ExitCode::SUCCESS)
}

fn show(args: &ClientArgs, id: i64) -> anyhow::Result<ExitCode> {
    let Some(body) = read_or_print(args, http(args)?.get(url(args, &format!("/v1/dlq/{id}"))))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let r = &body["record"];
    println!("DLQ record {} [{}]  consumer {}  topic {}", r["id"], cell(&r["status"]), cell(&r["consumer"]), cell(&r["source_topic"]));
    println!("error: {}: {}", cell(&r["error_type"]), cell(&r["error_message"]));
    println!(
        "failed {} (first) .. {} (last), {}",
        cell(&r["failed_at"]),
        cell(&r["last_failed_at"]),
        count(r["attempts"].as_u64().unwrap_or(0), "attempt")
    );
    if let Some(reason) = r["status_reason"].as_str() {
        println!("status reason: {reason}");
    }
    if let Some(e) = r["last_error"].as_str() {
        println!("last replay error: {e}");
    }
    println!("event: {} {} (correlation {})", cell(&r["event_type"]), cell(&r["event_id"]), cell(&r["correlation_id"]));
    if let Some(stack) = r["stack"].as_str() {
        println!("stack:\n{stack}");
    }
    println!("replay target: {}", body["replay_target"].as_str().unwrap_or("none configured"));
    println!("original event:\n{}", serde_json::to_string_pretty(&r["original_event"])?);
    if let Some(events) = body["chain"]["events"].as_array() {
        println!("causation chain ({}):", count(events.len() as u64, "event"));
        for e in events {
            println!("  {}  {:<22} {}  ← {}", cell(&e["time"]), cell(&e["type"]), cell(&e["id"]), cell(&e["causationid"]));
        }
    }
    if body["journey"].is_object() {
        let j = &body["journey"];
        println!("journey: {} {} — {}", cell(&j["journey"]), cell(&j["key"]), cell(&j["state"]));
    }
    for f in body["findings"].as_array().into_iter().flatten() {
        println!("finding: {} — {}", cell(&f["kind"]), cell(&f["detail"]));
    }
    for a in body["replays"].as_array().into_iter().flatten() {
        println!(
            "replay {} by {}: {} {}{}",
            cell(&a["at"]),
            cell(&a["actor"]),
            cell(&a["outcome"]),
            cell(&a["http_status"]),
            a["error"].as_str().map(|e| format!(" — {e}")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// POSTs and returns the answer; an API error becomes its message.
fn post(args: &ClientArgs, path: &str, body: Value) -> anyhow::Result<Value> {
    post_with(http(args)?, args, path, body)
}

fn post_with(client: reqwest::blocking::Client, args: &ClientArgs, path: &str, body: Value) -> anyhow::Result<Value> {
    let (status, answer) = call(client.post(url(args, path)).json(&body), &args.server)?;
    if !(200..300).contains(&status) {
        bail!("{}", api_error(&answer));
    }
    Ok(answer)
}

fn replay_one(args: &ClientArgs, id: i64, dry_run: bool, force: bool, actor: &str) -> anyhow::Result<ExitCode> {
    /// JSON text indented two spaces a level, keys and values exactly as written (a parsed and
    /// re-serialised value would sort the keys and reformat numbers).
    fn indent(text: &str) -> String {
        let (mut out, mut depth) = (String::new(), 0usize);
        let newline = |out: &mut String, depth: usize| {
            out.push('\n');
            out.push_str(&"  ".repeat(depth));
        };
        let mut chars = text.trim().chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    out.push('"');
                    while let Some(s) = chars.next() {
                        out.push(s);
                        match s {
                            '\\' => out.extend(chars.next()),
                            '"' => break,
                            _ => {}
                        }
                    }
                }
                '{' | '[' => {
                    while chars.next_if(|n| n.is_whitespace()).is_some() {}
                    out.push(c);
                    if let Some(close) = chars.next_if(|n| *n == '}' || *n == ']') {
                        out.push(close);
                    } else {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
                '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                    out.push(c);
                }
                ',' => {
                    out.push(',');
                    newline(&mut out, depth);
                }
                ':' => out.push_str(": "),
                c if c.is_whitespace() => {}
                c => out.push(c),
            }
        }
        out
    }

    let done = post(args, &format!("/v1/dlq/{id}/replay"), json!({"dry_run": dry_run, "force": force, "actor": actor}))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else if dry_run {
        println!("dry run: DLQ record {id} would be sent to {} (nothing was sent)", cell(&done["target"]));
        // What the replay would send: request line, headers, body.
        let request = &done["request"];
        if request.is_object() {
            println!();
            println!("{} {}", cell(&request["method"]), cell(&request["url"]));
            for (name, value) in request["headers"].as_object().into_iter().flatten() {
                println!("{name}: {}", cell(value));
            }
            println!();
            let bytes = cell(&request["body_bytes"]);
            match (&request["body_json"], request["body_encoding"].as_str()) {
                (Value::Null, Some("base64")) => {
                    println!("{}", cell(&request["body"]));
                    println!();
                    println!("({bytes} bytes, base64 here: {})", cell(&request["note"]));
                }
                (Value::Null, _) => {
                    println!("{}", cell(&request["body"]));
                    println!();
                    println!("({bytes} bytes)");
                }
                _ => {
                    println!("{}", indent(&cell(&request["body"])));
                    println!();
                    println!("({bytes} bytes, sent as kept; indented here; --json shows the exact text)");
                }
            }
        }
    } else {
        println!("DLQ record {id} replayed to {} (HTTP {}); status {}", cell(&done["target"]), cell(&done["http_status"]), cell(&done["status"]));
    }
    Ok(ExitCode::SUCCESS)
}

fn replay_bulk(args: &ClientArgs, body: Value) -> anyhow::Result<ExitCode> {
    // A bulk run lasts as long as its rate and limit make it: no client time limit.
    let client = reqwest::blocking::Client::builder().timeout(None).build()?;
    let done = post_with(client, args, "/v1/dlq/replay", body)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["id", "outcome", "http", "error"]);
        for r in done["results"].as_array().into_iter().flatten() {
            table.add_row([&r["id"], &r["outcome"], &r["http_status"], &r["error"]].map(cell));
        }
        println!("{table}");
        println!(
            "{}sent {}, failed {}, skipped {}; stopped: {} after {} ms",
            if done["dry_run"] == true { "dry run: " } else { "" },
            done["sent"],
            done["failed"],
            done["skipped"],
            cell(&done["stopped"]),
            done["elapsed_ms"]
        );
    }
    Ok(if done["failed"].as_u64().unwrap_or(0) > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `causeway state TYPE ID [--at TIME|EVENT_ID]`.
pub fn state(args: &ClientArgs, kind: &str, id: &str, at: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut path = format!("/v1/aggregates/{}/{}", encode(kind), encode(id));
    if let Some(at) = at {
        path.push_str(&format!("?at={}", encode(at)));
    }
    let Some(body) = read_or_print(args, http(args)?.get(url(args, &path)))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let as_of = &body["as_of"];
    let when =
        if as_of["latest"] == true { "now".to_string() } else { format!("{} {}", cell(&as_of["time"]), cell(&as_of["event_id"])).trim().to_string() };
    println!("{kind} {id} as of {when} (version {}, {}):", body["version"], count(body["later_events"].as_u64().unwrap_or(0), "later event"));
    println!("{}", serde_json::to_string_pretty(&body["state"])?);
    for e in body["events"].as_array().into_iter().flatten() {
        let missing: Vec<String> = e["missing"].as_array().into_iter().flatten().map(cell).collect();
        let note = if missing.is_empty() { String::new() } else { format!("  (missing {})", missing.join(", ")) };
        println!("  {}  {:<22} {}  changed {}{note}", cell(&e["time"]), cell(&e["event_type"]), cell(&e["event_id"]), e["changed"]);
    }
    Ok(ExitCode::SUCCESS)
}
