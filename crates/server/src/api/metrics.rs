//! `GET /metrics`: the process's counters (`metrics.rs`), the store's totals, the journey engine's
//! gauges and the DLQ's, as Prometheus text.
//!
//! **Invariant:** label values taken from clients (DLQ error types) are at most
//! [`ERROR_TYPE_SERIES`] plus `other`, each with control characters replaced and escaped, so a
//! client cannot grow the page or break its lines.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use causeway_journey::FindingKind;

use crate::api::findings::INGEST_KINDS;
use crate::engine::{Clock, ClockView};
use crate::metrics::Metrics;
use crate::state::AppState;

/// Series of `causeway_dlq_pending` by error type, beside `other`. Error types come from clients
/// (`POST /v1/dlq`), so their number is bounded here, not by them.
const ERROR_TYPE_SERIES: usize = 20;

/// The longest label value taken from a client, in characters; longer ones are cut and end in `…`.
const MAX_LABEL_CHARS: usize = 100;

/// The label value a client's text becomes: control characters and the Unicode line and
/// paragraph separators (which scrapers refuse, or split lines at) replaced by U+FFFD, and at most
/// [`MAX_LABEL_CHARS`] characters.
fn label_value(raw: &str) -> String {
    let breaks = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    let mut out: String = raw.chars().take(MAX_LABEL_CHARS).map(|c| if breaks(c) { '\u{FFFD}' } else { c }).collect();
    if raw.chars().nth(MAX_LABEL_CHARS).is_some() {
        out.pop();
        out.push('…');
    }
    out
}

/// A label value escaped as the text format requires: backslash, double quote and line feed.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Counts by client-given value (most first) as at most `top` series, one per [`label_value`]
/// (values that become the same label add up), then `other` with the rest, always present.
fn top_labels(counts: &[(String, i64)], top: usize) -> Vec<(String, i64)> {
    let mut merged: Vec<(String, i64)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut other = 0;
    for (raw, n) in counts {
        let label = label_value(raw);
        if label == "other" {
            other += n;
            continue;
        }
        match index.get(&label) {
            Some(&i) => merged[i].1 += n,
            None => {
                index.insert(label.clone(), merged.len());
                merged.push((label, *n));
            }
        }
    }
    merged.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    other += merged.iter().skip(top).map(|(_, n)| n).sum::<i64>();
    merged.truncate(top);
    merged.push(("other".into(), other));
    merged
}

pub async fn exposition(State(state): State<AppState>) -> impl IntoResponse {
    let m = &state.metrics;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP causeway_ingest_requests_total Requests to POST /v1/events.");
    let _ = writeln!(out, "# TYPE causeway_ingest_requests_total counter");
    let _ = writeln!(out, "causeway_ingest_requests_total {}", Metrics::get(&m.requests));
    let _ = writeln!(out, "# HELP causeway_events_ingested_total Events received, by outcome.");
    let _ = writeln!(out, "# TYPE causeway_events_ingested_total counter");
    for (outcome, counter) in [("accepted", &m.accepted), ("duplicate", &m.duplicates), ("rejected", &m.rejected)] {
        let _ = writeln!(out, "causeway_events_ingested_total{{outcome=\"{outcome}\"}} {}", Metrics::get(counter));
    }
    let _ = writeln!(out, "# HELP causeway_ingest_bodies_rejected_total Request bodies refused as a whole (malformed, too large, too deep).");
    let _ = writeln!(out, "# TYPE causeway_ingest_bodies_rejected_total counter");
    let _ = writeln!(out, "causeway_ingest_bodies_rejected_total {}", Metrics::get(&m.bodies_rejected));
    let c = &state.connections;
    let load = |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::Relaxed);
    let count = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(out, "# HELP causeway_connections Connections open now: served as usual, or past the cap (one request each).");
    let _ = writeln!(out, "# TYPE causeway_connections gauge");
    let _ = writeln!(out, "causeway_connections{{state=\"open\"}} {}", load(&c.open));
    let _ = writeln!(out, "causeway_connections{{state=\"overflow\"}} {}", load(&c.overflow));
    let _ = writeln!(
        out,
        "# HELP causeway_connections_closed_total Connections the server closed: idle ones evicted at the cap, ones refused past it, ones timed out."
    );
    let _ = writeln!(out, "# TYPE causeway_connections_closed_total counter");
    for (reason, n) in [("evicted", count(&c.evicted)), ("refused", count(&c.refused)), ("timed_out", count(&c.timed_out))] {
        let _ = writeln!(out, "causeway_connections_closed_total{{reason=\"{reason}\"}} {n}");
    }
    let store = state.store.clone();
    let engine = state.journeys.clone();
    let engine_on = engine.is_some();
    let now = chrono::Utc::now().timestamp();
    let read = tokio::task::spawn_blocking(move || {
        let clock = engine.as_ref().and_then(|e| e.clock_snapshot());
        (store.counts(), engine.and_then(|e| e.stats()), store.dlq_summary(now), store.count_findings(&INGEST_KINDS), clock)
    });
    let Ok((counts, journeys, dlq, ingest_findings, clock)) = read.await else {
        return ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out);
    };
    // Open findings by kind: the label set is the fixed list of kinds, each always present. The
    // engine's come from its counters; without an engine there are none; while it is busy (a
    // rebuild) they are left out rather than reported as zero.
    let engine_open: Option<Vec<(&str, u64)>> = match &journeys {
        Some((stats, _)) => Some(FindingKind::ALL.iter().map(|k| (k.as_str(), stats.open_by_kind[k.index()])).collect()),
        None if !engine_on => Some(FindingKind::ALL.iter().map(|k| (k.as_str(), 0)).collect()),
        None => None,
    };
    let ingest_open: Option<Vec<(String, i64)>> = ingest_findings.ok();
    if engine_open.is_some() || ingest_open.is_some() {
        let _ = writeln!(
            out,
            "# HELP causeway_findings_open Findings not resolved, by kind: the journey engine's, and those raised at ingest (which never resolve)."
        );
        let _ = writeln!(out, "# TYPE causeway_findings_open gauge");
        for (kind, n) in engine_open.into_iter().flatten() {
            let _ = writeln!(out, "causeway_findings_open{{kind=\"{kind}\"}} {n}");
        }
        for (kind, n) in ingest_open.into_iter().flatten() {
            let _ = writeln!(out, "causeway_findings_open{{kind=\"{kind}\"}} {n}");
        }
    }
    if let Some((stats, position)) = journeys {
        let _ = writeln!(out, "# HELP causeway_journeys Journey instances, by state (completed: an outcome reached).");
        let _ = writeln!(out, "# TYPE causeway_journeys gauge");
        for (s, n) in [("in_flight", stats.in_flight), ("stalled", stats.stalled), ("completed", stats.completed)] {
            let _ = writeln!(out, "causeway_journeys{{state=\"{s}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP causeway_journey_findings Findings the journey engine raised, by status.");
        let _ = writeln!(out, "# TYPE causeway_journey_findings gauge");
        let _ = writeln!(out, "causeway_journey_findings{{status=\"open\"}} {}", stats.open_findings);
        let _ = writeln!(out, "causeway_journey_findings{{status=\"resolved\"}} {}", stats.findings - stats.open_findings);
        if let Ok(c) = &counts {
            let end = c.log_end;
            let _ = writeln!(out, "# HELP causeway_journey_engine_lag Log entries stored that the journey engine has not read yet.");
            let _ = writeln!(out, "# TYPE causeway_journey_engine_lag gauge");
            let _ = writeln!(out, "causeway_journey_engine_lag {}", (end - position).max(0));
        }
    }
    if let Some(clock) = clock {
        write_clock(&mut out, &clock);
    }
    if let Ok(counts) = counts {
        let _ = writeln!(out, "# HELP causeway_store_events Events stored.");
        let _ = writeln!(out, "# TYPE causeway_store_events gauge");
        let _ = writeln!(out, "causeway_store_events {}", counts.events);
        let _ = writeln!(out, "# HELP causeway_store_dlq_records Dead-letter records stored.");
        let _ = writeln!(out, "# TYPE causeway_store_dlq_records gauge");
        let _ = writeln!(out, "causeway_store_dlq_records {}", counts.dlq);
    }
    if let Ok(dlq) = dlq {
        let _ = writeln!(out, "# HELP causeway_dlq_records Dead-letter records, by status.");
        let _ = writeln!(out, "# TYPE causeway_dlq_records gauge");
        for status in causeway_store::DlqStatus::ALL {
            let n = dlq.by_status.iter().find(|(s, _)| s == status.as_str()).map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "causeway_dlq_records{{status=\"{}\"}} {n}", status.as_str());
        }
        let _ = writeln!(
            out,
            "# HELP causeway_dlq_pending Pending dead-letter records, by error type (the {ERROR_TYPE_SERIES} most common, then other)."
        );
        let _ = writeln!(out, "# TYPE causeway_dlq_pending gauge");
        for (label, n) in top_labels(&dlq.by_error_type, ERROR_TYPE_SERIES) {
            let _ = writeln!(out, "causeway_dlq_pending{{error_type=\"{}\"}} {n}", escape_label(&label));
        }
        let oldest = dlq.oldest_pending_failed_at.as_deref().and_then(|t| causeway_envelope::parse_time(t).ok());
        let _ = writeln!(out, "# HELP causeway_dlq_oldest_pending_age_seconds Age of the oldest pending dead letter (0 when none).");
        let _ = writeln!(out, "# TYPE causeway_dlq_oldest_pending_age_seconds gauge");
        let _ = writeln!(out, "causeway_dlq_oldest_pending_age_seconds {}", oldest.map_or(0, |t| (now - t.timestamp()).max(0)));
    }
    if let Some(lag) = &state.lag {
        write_lag(&mut out, &lag.read().expect("lag report"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Consumer groups given series, worst first: their names come from the brokers.
const GROUP_SERIES: usize = 200;

/// The lag monitor's evaluation (PRODUCT §6 `/v1/lag`).
fn write_lag(out: &mut String, report: &crate::lag::LagReport) {
    let groups = &report.groups[..report.groups.len().min(GROUP_SERIES)];
    let _ = writeln!(
        out,
        "# HELP causeway_consumer_group_status Burrow's status of each consumer group as a number: 0 NOTFOUND, 1 OK, 2 WARN, 3 ERR (the {GROUP_SERIES} worst groups)."
    );
    let _ = writeln!(out, "# TYPE causeway_consumer_group_status gauge");
    for g in groups {
        let _ = writeln!(out, "causeway_consumer_group_status{{group=\"{}\"}} {}", escape_label(&label_value(&g.group)), g.status as u8);
    }
    let _ = writeln!(out, "# HELP causeway_consumer_group_lag_messages Messages not consumed yet, over the group's partitions.");
    let _ = writeln!(out, "# TYPE causeway_consumer_group_lag_messages gauge");
    for g in groups {
        let _ = writeln!(out, "causeway_consumer_group_lag_messages{{group=\"{}\"}} {}", escape_label(&label_value(&g.group)), g.total_lag);
    }
    let _ = writeln!(out, "# HELP causeway_consumer_group_lag_seconds Age of the group's oldest unconsumed message (0 when caught up).");
    let _ = writeln!(out, "# TYPE causeway_consumer_group_lag_seconds gauge");
    for g in groups {
        let _ = writeln!(
            out,
            "causeway_consumer_group_lag_seconds{{group=\"{}\"}} {}",
            escape_label(&label_value(&g.group)),
            g.max_lag_seconds.unwrap_or(0.0)
        );
    }
}

/// Series of the late-event metrics by source, beside `other`: sources are named by clients.
const SOURCE_SERIES: usize = 20;

/// The journey engine's clock and its sources' lateness (PRODUCT §4).
fn write_clock(out: &mut String, clock: &ClockView) {
    if let Some(now) = clock.now {
        let _ = writeln!(out, "# HELP causeway_journey_clock_seconds The time journey deadlines are judged up to (Unix seconds).");
        let _ = writeln!(out, "# TYPE causeway_journey_clock_seconds gauge");
        let _ = writeln!(out, "causeway_journey_clock_seconds {:.3}", now.timestamp_micros() as f64 / 1e6);
    }
    if !matches!(clock.clock, Clock::Watermark(_)) {
        return;
    }
    let idle = clock.sources.iter().filter(|s| s.idle).count();
    let _ = writeln!(out, "# HELP causeway_sources Sources of evidence, by whether they hold the clock back (active) or not (idle).");
    let _ = writeln!(out, "# TYPE causeway_sources gauge");
    let _ = writeln!(out, "causeway_sources{{state=\"active\"}} {}", clock.sources.len() - idle);
    let _ = writeln!(out, "causeway_sources{{state=\"idle\"}} {idle}");
    let late: Vec<(String, i64)> = clock.sources.iter().map(|s| (s.name.clone(), s.late_events as i64)).collect();
    let _ = writeln!(
        out,
        "# HELP causeway_source_late_events Events stamped before the clock when they arrived (applied by event time all the same), so far, by source (the {SOURCE_SERIES} with most, then other)."
    );
    let _ = writeln!(out, "# TYPE causeway_source_late_events gauge");
    for (label, n) in top_labels(&late, SOURCE_SERIES) {
        let _ = writeln!(out, "causeway_source_late_events{{source=\"{}\"}} {n}", escape_label(&label));
    }
    let worst = clock.sources.iter().map(|s| s.max_lateness).max().unwrap_or_default();
    let _ = writeln!(out, "# HELP causeway_event_lateness_max_seconds The most any event was late (clock at arrival less its event time).");
    let _ = writeln!(out, "# TYPE causeway_event_lateness_max_seconds gauge");
    let _ = writeln!(out, "causeway_event_lateness_max_seconds {:.3}", worst.as_secs_f64());
}
