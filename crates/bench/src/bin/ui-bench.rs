//! The web UI's pages at a million events (issue "The web UI", Done when): each page's time to
//! answer, as a browser asks for it (a keep-alive GET of the whole document), on a store holding
//! `--events` of the simulated order-fulfilment traffic with the bundled model, its journeys,
//! findings and dead letters (the notification service's failures reported as the demo does).
//!
//! The traffic's event times advance five seconds per thousand events and the journey engine runs
//! on the event clock, so deadlines and missing reactions are judged as they would be live. The
//! pages are asked for after the engine has caught up; each `--samples` times after two warm-up
//! requests, in turn, so that no page is measured on caches another just warmed more than the
//! others. The time is the client's, over loopback: the server's time plus a round trip of about
//! 0.1 ms.
//!
//! `cargo run --release -p causeway-bench --bin ui-bench -- [--events N] [--samples N] [--out FILE]`
//! (`scripts/bench ui` runs it and records the report).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use causeway_bench::http::HttpClient;
use causeway_bench::report::group;
use causeway_bench::traffic::{get_json, load_simulated, start_with_bundled_model};
use chrono::Utc;
use clap::Parser;
use serde_json::Value;

#[derive(Parser)]
struct Args {
    /// Events stored before the pages are asked for (duplicates and refusals do not count).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    #[arg(long, default_value_t = 30)]
    samples: usize,
    /// Where the store goes (default: the system's temporary directory).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Keep the store in this (new) directory after the run, to look into it with `causeway serve`.
    #[arg(long)]
    keep: Option<PathBuf>,
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The target of the issue: each page within this, server time.
const TARGET_MS: f64 = 200.0;

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let dir = match &args.data {
        Some(parent) => tempfile::Builder::new().prefix("causeway-ui-bench-").tempdir_in(parent)?,
        None => tempfile::Builder::new().prefix("causeway-ui-bench-").tempdir()?,
    };
    let path = match &args.keep {
        Some(keep) if keep.exists() => bail!("{} exists: --keep takes a new directory", keep.display()),
        Some(keep) => keep.clone(),
        None => dir.path().to_path_buf(),
    };
    let server = start_with_bundled_model(&path)?;
    let addr = server.addr;
    eprintln!("[ui-bench] ingesting {} events", args.events);
    let (dead_letters, ingest) = load_simulated(addr, args.events)?;
    let mut client = HttpClient::new(addr);
    let t = Instant::now();
    let summary = get_json(&mut client, "/v1/journeys/summary")?;
    let caught_up = t.elapsed();
    eprintln!("[ui-bench] {} events in {:.1} s; the engine caught up {:.1} s later", args.events, ingest.as_secs_f64(), caught_up.as_secs_f64());

    // The ids a reader would follow: an order whose notification went missing.
    let finding = get_json(&mut client, "/v1/findings?kind=missing_reaction&open=true&limit=1")?["findings"][0].clone();
    let key = finding["key"].as_str().context("no missing reaction was found: the traffic has no consumer failure")?.to_string();
    let correlation = finding["correlation_id"].as_str().unwrap_or_default().to_string();
    let event = get_json(&mut client, &format!("/v1/correlations/{correlation}"))?["events"][0]["id"].as_str().unwrap_or_default().to_string();
    let dlq = get_json(&mut client, "/v1/dlq?status=pending&limit=1")?["records"][0]["id"].as_i64().context("no dead letter")?;
    let pages: Vec<(&str, String)> = vec![
        ("overview", "/".into()),
        ("on-call (24h)", "/on-call".into()),
        ("on-call (all)", "/on-call?since=all".into()),
        ("journeys", "/journeys".into()),
        ("journeys, stalled", "/journeys?journey=order&state=stalled".into()),
        ("journey", format!("/journeys/order/{key}")),
        ("correlation", format!("/correlations/{correlation}")),
        ("event", format!("/events/{event}")),
        ("DLQ", "/dlq".into()),
        ("DLQ record", format!("/dlq/{dlq}")),
        ("canvas", "/canvas".into()),
        ("canvas note", "/canvas/notes/event-OrderCreated".into()),
        ("runbook", "/runbooks/findings/missing_reaction".into()),
        // What the on-call page asks of the API, for comparison.
        ("API: open findings", "/v1/findings?open=true&limit=500".into()),
        ("API: journey summary", "/v1/journeys/summary".into()),
        ("API: stalled journeys", "/v1/journeys?state=stalled&limit=50".into()),
        ("API: DLQ summary", "/v1/dlq/summary".into()),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); pages.len()];
    let mut sizes = vec![0usize; pages.len()];
    let mut body = Vec::new();
    for round in 0..args.samples + 2 {
        for (i, (name, path)) in pages.iter().enumerate() {
            let t = Instant::now();
            let status = client.get(path, &mut body)?;
            let took = t.elapsed();
            if status.0 != 200 {
                bail!("{name} ({path}) answered {}: {}", status.0, String::from_utf8_lossy(&body));
            }
            sizes[i] = body.len();
            if round >= 2 {
                times[i].push(took);
            }
        }
    }
    let stats = get_json(&mut client, "/v1/store")?;
    server.stop()?;

    let mut md = String::new();
    let _ = writeln!(md, "### Web UI pages: run of {} ({:.0} s)\n", Utc::now().format("%Y-%m-%d %H:%M UTC"), started.elapsed().as_secs_f64());
    let _ = writeln!(md, "Command: `scripts/bench ui`\n");
    causeway_bench::report::run_table_head(&mut md, &load_at_start);
    let _ = writeln!(
        md,
        "| store | {} events of the simulated order-fulfilment traffic (bundled model, event clock), {} journeys, {} dead letters; {} sealed segments |",
        group(stats["events"].as_f64().unwrap_or(0.0)),
        group(summary["journeys_by_state"].as_object().map_or(0.0, |o| o.values().filter_map(Value::as_f64).sum())),
        group(dead_letters as f64),
        stats["segments"].as_array().map_or(0, Vec::len),
    );
    let _ = writeln!(md, "| requests | {} per page after 2 warm-up, pages in turn, one keep-alive client |\n", args.samples);
    let _ = writeln!(md, "| page | address | p50 ms | p99 ms | max ms | bytes | ≤ {TARGET_MS:.0} ms |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---|");
    let mut all_pass = true;
    for (i, (name, path)) in pages.iter().enumerate() {
        let mut t: Vec<f64> = times[i].iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        t.sort_by(f64::total_cmp);
        let q = |p: f64| t[((p * (t.len() - 1) as f64).round() as usize).min(t.len() - 1)];
        let api = name.starts_with("API");
        let pass = q(0.99) <= TARGET_MS;
        all_pass &= pass || api;
        let shown = if path.len() > 48 { format!("{}…", &path[..47]) } else { path.clone() };
        let _ = writeln!(
            md,
            "| {name} | `{shown}` | {:.1} | {:.1} | {:.1} | {} | {} |",
            q(0.5),
            q(0.99),
            t[t.len() - 1],
            group(sizes[i] as f64),
            if api {
                "(API)"
            } else if pass {
                "PASS"
            } else {
                "FAIL"
            }
        );
    }
    let _ = writeln!(md, "\nEvery page's p99 within {TARGET_MS:.0} ms: **{}**.", if all_pass { "PASS" } else { "FAIL" });
    print!("{md}");
    if let Some(out) = &args.out {
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
