//! The DLQ explorer at scale (issue "Dead letters, replay and time travel", Done when): the summary
//! and filtered listings over HTTP with 1,000,000 DLQ records stored. Target: p99 under 50 ms.
//!
//! Records are consumers' failure reports stored through the store's own path (triggers, tallies,
//! the text index), spread over 48 hours, with a realistic skew: a few consumers, topics and error
//! types take most of the records, the rest are rare. A fifth are replayed, a few resolved or
//! discarded. Each query is then asked `--samples` times over HTTP on one kept-alive connection.
//!
//! `cargo run --release -p causeway-bench --bin dlq-bench -- [--records N] [--samples N]`
//! (`scripts/bench-dlq` runs it and records the report).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use causeway_bench::Server;
use causeway_bench::http::HttpClient;
use causeway_bench::report::Stats;
use causeway_envelope::ParseOptions;
use causeway_server::AppState;
use causeway_store::{DlqReport, DlqStatus, ReplayAttempt, ReplayOutcome, SqlLimits, StatusChange, Store};
use chrono::{TimeDelta, Utc};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// DLQ records stored before measuring.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Requests per query.
    #[arg(long, default_value_t = 500)]
    samples: usize,
    /// Keep the store here (reused when it already holds the records) instead of a temp dir.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// The p99 every query must stay under.
const TARGET_P99_MS: f64 = 50.0;

const ERRORS: [(&str, &str); 6] = [
    ("KeyError", "'customerEmail'"),
    ("ValidationError", "amount must be positive, got -3"),
    ("TimeoutError", "payment gateway did not answer within 5s"),
    ("SchemaError", "field currency: expected string, got null"),
    ("ConnectionError", "connection refused by inventory-db:5432"),
    ("IntegrityError", "duplicate key value violates unique constraint shipments_pkey"),
];

/// A skewed pick: index 0 is most common, the tail rare (roughly Zipf-like).
fn skewed(seed: u64, n: usize) -> usize {
    let r = (seed % 1_000_003) as f64 / 1_000_003.0;
    ((r * r * r) * n as f64) as usize % n
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn report(i: usize, total: usize, now: chrono::DateTime<Utc>, span_s: i64) -> DlqReport {
    let h = mix(i as u64 + 1);
    let consumer = format!("consumer-{:02}", skewed(h, 20));
    let topic = format!("topic-{:02}", skewed(h >> 8, 30));
    let (kind, message) = ERRORS[skewed(h >> 16, ERRORS.len())];
    // Forty-four more rare error types beside the six common ones.
    let error_type = if (h >> 24).is_multiple_of(10) { format!("RareError{:02}", (h >> 32) % 44) } else { kind.to_string() };
    let event_id = format!("evt-{i:08}");
    let correlation = format!("corr-{:08}", i / 3);
    let failed_at = now - TimeDelta::seconds(60 + span_s - (i as i64 * span_s / total as i64).min(span_s));
    DlqReport {
        original: format!(
            r#"{{"specversion":"1.0","id":"{event_id}","source":"svc-{}","type":"OrderEvent","time":"2026-11-30T10:00:00Z","correlationid":"{correlation}","data":{{"orderId":"o-{i}","attempt":{}}}}}"#,
            h % 7,
            h % 3
        ),
        content_type: Some("application/cloudevents+json".into()),
        consumer,
        source_topic: Some(topic),
        error_type,
        error_message: format!("{message} (record {i})"),
        failed_at: Some(causeway_envelope::format_time(&failed_at)),
        event_id: Some(event_id),
        event_type: Some("OrderEvent".into()),
        correlation_id: Some(correlation),
        source_service: Some(format!("svc-{}", h % 7)),
        ..Default::default()
    }
}

fn fill(store: &Store, records: usize) -> Result<Duration> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let started = Instant::now();
    let now = Utc::now();
    // 48 hours of failures, the newest a minute ago.
    let span = 48 * 3600;
    runtime.block_on(async {
        let chunk = 4_000;
        let mut done = 0;
        while done < records {
            let mut set = tokio::task::JoinSet::new();
            for i in done..(done + chunk).min(records) {
                let store = store.clone();
                set.spawn(async move {
                    let r = store.report_failure(report(i, records, now, span)).await?;
                    let h = mix(i as u64 + 7) % 100;
                    if h < 20 {
                        let outcome = ReplayOutcome::Sent { http_status: 200 };
                        store.record_replay(ReplayAttempt { dlq_id: r.id, actor: "bench".into(), target: None, forced: false, outcome }).await?;
                    } else if h < 25 {
                        let to = if h < 23 { DlqStatus::Resolved } else { DlqStatus::Discarded };
                        store.change_dlq_status(StatusChange { id: r.id, to, reason: Some("bench".into()), from: vec![DlqStatus::Pending] }).await?;
                    }
                    anyhow::Ok(())
                });
            }
            while let Some(result) = set.join_next().await {
                result??;
            }
            done = (done + chunk).min(records);
            if done % 100_000 == 0 {
                eprintln!("  {done} records stored ({:.0} s)", started.elapsed().as_secs_f64());
            }
        }
        anyhow::Ok(())
    })?;
    Ok(started.elapsed())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let dir = args.data.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let store = Store::open(&dir)?;
    let have = store.counts()?.dlq as usize;
    let fill_time = if have >= args.records {
        None
    } else if have == 0 {
        eprintln!("storing {} DLQ records in {}", args.records, dir.display());
        Some(fill(&store, args.records)?)
    } else {
        bail!("{} holds {have} DLQ records, fewer than --records {}: use an empty directory", dir.display(), args.records);
    };
    let records = store.counts()?.dlq;
    let server = Server::start(AppState::new(store.clone(), ParseOptions::default(), SqlLimits::default()))?;
    let mut client = HttpClient::new(server.addr);
    let since = causeway_envelope::format_time(&(Utc::now() - TimeDelta::hours(1)));
    let middle = records / 2;
    let queries: Vec<(&str, String)> = vec![
        ("summary", "/v1/dlq/summary".into()),
        ("newest 100", "/v1/dlq".into()),
        ("status=pending", "/v1/dlq?status=pending".into()),
        ("status=discarded (2%)", "/v1/dlq?status=discarded".into()),
        ("consumer (most common)", "/v1/dlq?consumer=consumer-00".into()),
        ("consumer (rare)", "/v1/dlq?consumer=consumer-19".into()),
        ("source_topic", "/v1/dlq?source_topic=topic-03".into()),
        ("error_type (rare)", "/v1/dlq?error_type=RareError07".into()),
        ("correlation_id", format!("/v1/dlq?correlation_id=corr-{:08}", middle / 3)),
        ("since (last hour)", format!("/v1/dlq?since={since}")),
        ("q (common text)", "/v1/dlq?q=gateway".into()),
        ("q (one record)", format!("/v1/dlq?q=record%20{middle})")),
        ("consumer + error_type", "/v1/dlq?consumer=consumer-01&error_type=TimeoutError&status=pending".into()),
        ("page deep (before=middle)", format!("/v1/dlq?before={middle}&limit=100")),
        ("one record", format!("/v1/dlq/{middle}")),
    ];
    let mut body = Vec::new();
    println!("### DLQ explorer with {records} records\n");
    if let Some(t) = fill_time {
        println!(
            "Stored through the store's report path in {:.0} s ({:.0} records/s, with tallies, flow and text index kept by triggers).\n",
            t.as_secs_f64(),
            records as f64 / t.as_secs_f64()
        );
    }
    println!("Each query asked {} times over HTTP (one kept-alive connection), after 20 unmeasured.\n", args.samples);
    println!("| query | records answered | p50 ms | p99 ms | mean ms | p99 under {TARGET_P99_MS} ms |");
    println!("|---|---|---|---|---|---|");
    let mut failures = Vec::new();
    for (name, path) in &queries {
        let mut samples = Vec::with_capacity(args.samples);
        let mut answered = 0;
        for n in 0..args.samples + 20 {
            let start = Instant::now();
            let status = client.get(path, &mut body)?;
            let elapsed = start.elapsed();
            if status.0 != 200 {
                bail!("{path} answered {}: {}", status.0, String::from_utf8_lossy(&body));
            }
            if n == 0 {
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                answered = v["records"].as_array().map_or(1, Vec::len);
            }
            if n >= 20 {
                samples.push(elapsed);
            }
        }
        let stats = Stats::from_samples(samples, None);
        let pass = stats.p99_ms < TARGET_P99_MS;
        if !pass {
            failures.push(*name);
        }
        println!(
            "| {name} | {answered} | {:.3} | {:.3} | {:.3} | {} |",
            stats.p50_ms,
            stats.p99_ms,
            stats.mean_ms,
            if pass { "yes" } else { "**no**" }
        );
    }
    println!();
    if failures.is_empty() {
        println!("Verdict: every query's p99 is under {TARGET_P99_MS} ms with {records} records.");
    } else {
        println!("Verdict: over {TARGET_P99_MS} ms at p99: {}.", failures.join(", "));
    }
    server.stop()?;
    Ok(())
}
