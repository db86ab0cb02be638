//! `causeway analyze FILE --model FILE`: the journey engine and the contracts over an event log
//! file, offline. The same evaluator the server runs, fed the file's events in order; the clock is
//! the event-time watermark (PRODUCT §4) unless `--clock wall` judges them as if all arrived now.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use causeway_contracts::Contracts;
use causeway_envelope::{ParseOptions, format_time, parse_json_line, parse_time};
use causeway_journey::{Evaluator, Finding};
use causeway_store::FindingRow;
use chrono::{DateTime, Utc};
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// NDJSON event log, one event per line in any accepted shape (`-` reads standard input).
    pub file: PathBuf,
    /// The event-storming model (YAML).
    #[arg(long)]
    pub model: PathBuf,
    /// `event`: deadlines pass as event time does (the latest event time seen); `wall`: as if
    /// every event arrived now, which is what a server on the wall clock judges a backfill by.
    #[arg(long, default_value = "event", value_parser = ["wall", "event"])]
    pub clock: String,
    /// After the last event, move the clock to this time (RFC 3339, or `now`), so that deadlines
    /// up to it pass too.
    #[arg(long)]
    pub until: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let model = causeway_model::load(&args.model).into_result().map_err(|diagnostics| {
        let shown: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the model {} has errors:\n{}", args.model.display(), shown.join("\n"))
    })?;
    let until = match args.until.as_deref() {
        None => None,
        Some("now") => Some(Utc::now()),
        Some(text) => Some(parse_time(text).map_err(|e| anyhow::anyhow!("--until must be 'now' or an RFC 3339 time: {e}"))?),
    };
    let wall = args.clock == "wall";
    let contracts = Contracts::new(model.clone(), Vec::new());
    let mut eval = Evaluator::new(&model);
    let options = ParseOptions { correlation_required: true, ..ParseOptions::default() };
    let reader: Box<dyn Read> = if args.file == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?)
    };
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let (mut accepted, mut duplicates, mut rejected) = (0u64, 0u64, 0u64);
    let mut contract_findings: Vec<Value> = Vec::new();
    let mut watermark: Option<DateTime<Utc>> = None;
    let started = Utc::now();
    let mut changes = Vec::new();
    for (n, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", args.file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let item = parse_json_line(line.as_bytes(), &options);
        let mut event = match item.result {
            Ok(e) => e,
            Err(e) => {
                rejected += 1;
                if e.kind.code() == "missing_correlation" {
                    let f = contracts.missing_correlation(None, &e.message);
                    contract_findings.push(json!({"kind": f.kind, "line": n + 1, "detail": f.detail, "owner": f.owner}));
                }
                continue;
            }
        };
        let redelivery = !seen.insert((event.source.clone(), event.id.clone()));
        if redelivery {
            duplicates += 1;
        } else {
            accepted += 1;
            for f in contracts.inspect(&mut event) {
                contract_findings.push(json!({
                    "kind": f.kind, "event_id": event.id, "correlation_id": event.correlation_id,
                    "detail": f.detail, "owner": f.owner,
                }));
            }
        }
        let clock = if wall {
            started
        } else {
            let w = watermark.map_or(event.time, |w| w.max(event.time));
            watermark = Some(w);
            w
        };
        eval.advance_into(clock, &mut changes);
        eval.ingest_into(&event, redelivery, &mut changes);
        changes.clear();
    }
    // On the wall clock every event arrived "now", and the verdict is as of now. Otherwise a log
    // is judged until its latest event time: a log is an excerpt, and judging it as of now would
    // call every journey still running at its end stuck. What falls due later is counted below.
    let (judged_until, judged_by) = match (until, wall) {
        (Some(t), _) => (Some(t), "--until"),
        (None, true) => (Some(started), "the wall clock (--clock wall)"),
        (None, false) => (watermark, "the latest event time in the log"),
    };
    if let Some(t) = judged_until {
        eval.advance_into(t, &mut changes);
    }
    let verdict = Verdict::of(&eval, [accepted, duplicates, rejected], contract_findings);
    // Deadlines still pending at the judged time: how many findings `--until now` would add.
    let due_later = match (until, wall) {
        (None, false) => {
            let judged = eval.findings().len();
            eval.advance_into(started.max(judged_until.unwrap_or(started)), &mut changes);
            Some((eval.findings().len() - judged) as u64)
        }
        _ => None,
    };
    report(&args, &verdict, judged_until, judged_by, due_later)
}

/// What the analysis found, taken before the clock is moved on to count what falls due later.
struct Verdict {
    counts: [u64; 3],
    by_state: BTreeMap<String, u64>,
    by_kind: BTreeMap<String, (u64, u64)>,
    /// The evaluator's findings as JSON, then the contracts'.
    findings: Vec<Value>,
    /// Open findings for the table: kind, journey, key, detected at, detail.
    open: Vec<[String; 5]>,
    digest: String,
}

impl Verdict {
    fn of(eval: &Evaluator, counts: [u64; 3], contract_findings: Vec<Value>) -> Verdict {
        let mut by_kind: BTreeMap<String, (u64, u64)> =
            eval.count_findings_by_kind().into_iter().map(|(k, open, resolved)| (k.to_string(), (open, resolved))).collect();
        for f in &contract_findings {
            by_kind.entry(f["kind"].as_str().unwrap_or("").to_string()).or_default().0 += 1;
        }
        let open = eval
            .findings()
            .iter()
            .filter(|f| f.is_open())
            .map(|f| {
                [
                    f.kind.as_str().to_string(),
                    f.journey.clone().unwrap_or_default(),
                    f.key.clone().unwrap_or_default(),
                    format_time(&f.detected_at),
                    f.detail.clone(),
                ]
            })
            .collect();
        Verdict {
            counts,
            by_state: eval.count_by_state().into_iter().collect(),
            by_kind,
            findings: eval.findings().iter().map(finding_json).chain(contract_findings).collect(),
            open,
            digest: format!("{:016x}", eval.digest()),
        }
    }
}

fn report(
    args: &AnalyzeArgs,
    verdict: &Verdict,
    judged_until: Option<DateTime<Utc>>,
    judged_by: &str,
    due_later: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let Verdict { counts, by_state, by_kind, findings, open, digest } = verdict;
    if args.json {
        let out = json!({
            "events": {"accepted": counts[0], "duplicates": counts[1], "rejected": counts[2]},
            "journeys_by_state": by_state,
            "findings_by_kind": by_kind.iter().map(|(k, (o, r))| (k.clone(), json!({"open": o, "resolved": r}))).collect::<serde_json::Map<_, _>>(),
            "findings": findings,
            "judged_until": judged_until.as_ref().map(format_time),
            "judged_by": judged_by,
            "due_later": due_later,
            "digest": digest,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: {} accepted, {}, {} rejected",
        crate::count(counts.iter().sum(), "event"),
        counts[0],
        crate::count(counts[1], "duplicate"),
        counts[2]
    );
    match judged_until {
        Some(t) => println!("judged until {} ({judged_by})", format_time(&t)),
        None => println!("judged at no time: the log holds no accepted event"),
    }
    if let Some(n) = due_later.filter(|n| *n > 0) {
        println!(
            "  {n} more {} fall due after it, by now: --until now judges them (or --until TIME)",
            if n == 1 { "finding would" } else { "findings would" }
        );
    }
    println!("journeys by state:");
    for (state, n) in by_state {
        println!("  {state:<20} {n}");
    }
    println!("findings by kind (open / resolved):");
    for (kind, (open, resolved)) in by_kind {
        println!("  {kind:<22} {open} / {resolved}");
    }
    if !open.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["kind", "journey", "key", "detected at", "detail"]);
        for row in open.iter().take(20) {
            table.add_row(row.clone());
        }
        println!("{table}");
        if open.len() > 20 {
            println!("… {} open findings in all (--json lists every one)", open.len());
        }
    }
    println!("digest {digest}");
    Ok(ExitCode::SUCCESS)
}

/// An evaluator finding in the server's JSON form ([`causeway_server::finding_json`]), so both
/// outputs agree; its id is the evaluator's (the server's is the stored row's).
fn finding_json(f: &Finding) -> Value {
    causeway_server::finding_json(&FindingRow {
        id: f.id.0 as i64,
        kind: f.kind.as_str().to_string(),
        journey: f.journey.clone(),
        key: f.key.clone(),
        correlation_id: f.correlation_id.clone(),
        event_id: f.event_id.clone(),
        expected: f.expected.clone(),
        rule: f.rule.clone(),
        detected_at: format_time(&f.detected_at),
        resolved_at: f.resolved_at.as_ref().map(format_time),
        detail: f.detail.clone(),
        owner: f.owner.clone(),
    })
}
